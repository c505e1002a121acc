"""The stages of the GPU evidence runner, their parts, and the sizes, time limits and estimates of each.

A stage is an ordered list of parts; a part is one function (``module:function``) called with the
run context and its own arguments, under its own time limit (seconds), so that a slow part cannot eat
its stage. ``plan(tiny)`` gives the sizes: the full plan is sized for one H200 from
``../shared/gpu/measurements-h200.md`` (retrain step of the paper DeCoNASNet 24 ms, supernet child step
20-40 ms, reward step 10-13 ms, ``tests/test_cuda.py`` 98 s), every stage's limits adding up to at
most ``STAGE_LIMIT_S`` with some seconds to spare (a part stopped at its limit overruns it by the kill grace);
the tiny plan runs the same parts at tiny sizes on a CPU in seconds.
"""
import copy
from typing import Dict, List

STAGES = ('check', 'speed', 'search', 'retrain')
STAGE_LIMIT_S = 420  # 7 minutes of wall time per stage on one H200

# Data a stage reads (prepared beforehand by ``--prepare`` into ``.gpu/data``), relative to that folder.
SEARCH_DATA = ('train', 'reward', 'eval')
TEST_SETS = ('Set5', 'Set14', 'B100')

_CUDA_TESTS = 'tests/test_cuda.py'

FULL = {
    'check': [
        {'name': 'environment', 'fn': 'check:environment', 'limit_s': 20, 'estimate_s': 8, 'args': {}},
        # one pytest selection per part, so that the compiled retrain (inductor compiles twice: the run and its
        # resume) cannot eat the others; at the last H200 run the file's first 3 tests took 98 s together
        {'name': 'cuda_tests', 'fn': 'check:cuda_tests', 'limit_s': 105, 'estimate_s': 60,
         'args': {'path': _CUDA_TESTS, 'select': 'not compile and not cuda_graph and not quick_benchmark'}},
        {'name': 'cuda_compile_test', 'fn': 'check:cuda_tests', 'limit_s': 160, 'estimate_s': 110,
         'args': {'path': _CUDA_TESTS, 'select': 'compile'}},
        {'name': 'cuda_graph_tests', 'fn': 'check:cuda_tests', 'limit_s': 40, 'estimate_s': 15,
         'args': {'path': _CUDA_TESTS, 'select': 'cuda_graph'}},
        {'name': 'cuda_benchmark_test', 'fn': 'check:cuda_tests', 'limit_s': 75, 'estimate_s': 45,
         'args': {'path': _CUDA_TESTS, 'select': 'quick_benchmark'}},
    ],
    'speed': [
        {'name': 'retrain_eager', 'fn': 'speed:retrain_eager', 'limit_s': 60, 'estimate_s': 30,
         'args': {'batch': 16, 'patch': 64, 'reps': 7, 'warmup': 3}},
        {'name': 'adam', 'fn': 'speed:adam', 'limit_s': 40, 'estimate_s': 15,
         'args': {'batch': 16, 'patch': 64, 'reps': 9, 'warmup': 3, 'check_steps': 5}},
        {'name': 'cuda_graph', 'fn': 'speed:cuda_graph', 'limit_s': 60, 'estimate_s': 30,
         'args': {'batch': 16, 'patch': 64, 'reps': 7, 'warmup': 3, 'check_steps': 5}},
        {'name': 'compile', 'fn': 'speed:compile_step', 'limit_s': 120, 'estimate_s': 90,
         'args': {'batch': 16, 'patch': 64, 'reps': 7, 'warmup': 3, 'check_steps': 5,
                  'compile_args': {'mode': 'reduce-overhead'}}},
        {'name': 'supernet', 'fn': 'speed:supernet', 'limit_s': 50, 'estimate_s': 25,
         'args': {'batch': 16, 'patch': 64, 'reps': 5, 'warmup': 2, 'genotypes': 6, 'reward_patches': 10,
                  'reward_patch': 48, 'controller_steps': 30}},
        {'name': 'inference', 'fn': 'speed:inference', 'limit_s': 30, 'estimate_s': 15,
         'args': {'size': 256, 'reps': 5}},
    ],
    'search': [
        # child steps: as many as ~200 s allow at the measured 20-40 ms (30 ms assumed), at least 4,000
        {'name': 'search', 'fn': 'search:search', 'limit_s': 290, 'estimate_s': 250,
         'args': {'num_feat': 64, 'num_blocks': 4, 'num_nodes': 4, 'batch': 16, 'lr_patch': 64,
                  'child_budget_s': 200, 'child_step_s': 0.030, 'min_child_steps': 4000, 'max_child_steps': 12000,
                  'controller_start_iter': 4000, 'child_steps': 500, 'controller_steps': 100,
                  'reward_patches': 10, 'reward_lr_patch': 48, 'signal_probe': 4, 'num_workers': 8}},
        # 32 controller samples x ~250 reward tiles, one forward each
        {'name': 'derive', 'fn': 'search:derive', 'limit_s': 45, 'estimate_s': 20, 'args': {'samples': 32}},
        {'name': 'evaluate', 'fn': 'search:evaluate', 'limit_s': 60, 'estimate_s': 25,
         'args': {'samples': 64, 'batches': 4, 'patches': 16, 'settled': 0.9}},
    ],
    'retrain': [
        # 6 retrains of ~1,200 steps at ~25 ms + start and test: about 55 s each
        {'name': f'{label}_seed{seed}', 'fn': 'retrain:retrain_one', 'limit_s': 65, 'estimate_s': 55,
         'args': {'label': label, 'seed': seed, 'iterations': 1200, 'batch': 16, 'lr_patch': 64, 'num_workers': 8}}
        for seed in (0, 1) for label in ('found', 'random1', 'random2')
    ],
}

# The same parts at tiny sizes, on a CPU, in seconds.
_TINY_ARGS = {
    'check': {'cuda_tests': {'select': 'not quick_benchmark and not compile'}},
    'speed': {name: {'batch': 1, 'patch': 8, 'reps': 1, 'warmup': 0} for name in
              ('retrain_eager', 'adam', 'cuda_graph', 'compile', 'supernet')},
    'search': {'search': {'num_feat': 4, 'num_blocks': 2, 'num_nodes': 2, 'batch': 2, 'lr_patch': 12,
                          'child_budget_s': 0, 'min_child_steps': 6, 'max_child_steps': 6, 'controller_start_iter': 4,
                          'child_steps': 2, 'controller_steps': 2, 'reward_patches': 2, 'reward_lr_patch': 12,
                          'signal_probe': 2, 'num_workers': 0},
               'derive': {'samples': 4},
               'evaluate': {'samples': 3, 'batches': 2, 'patches': 2}},
}
_TINY_EXTRA = {
    ('speed', 'adam'): {'check_steps': 1}, ('speed', 'cuda_graph'): {'check_steps': 1},
    ('speed', 'retrain_eager'): {'precisions': ['fp32']},  # bf16 on a CPU without bf16 units: seconds per step
    ('speed', 'compile'): {'check_steps': 1, 'compile_args': {'backend': 'aot_eager'},  # no C++ compiler needed
                           'precisions': ['fp32']},
    ('speed', 'supernet'): {'genotypes': 2, 'reward_patches': 2, 'reward_patch': 8, 'controller_steps': 2},
    ('speed', 'inference'): {'size': 16, 'reps': 1},
}
_TINY_NETS = {'DeCoNASNet': {'num_feat': 8, 'num_blocks': 2, 'num_nodes': 2},  # the tiny speed stage's networks
              'EDSR-baseline': {'num_feat': 8, 'num_block': 2}, 'CARN': {'num_feat': 8}}


def plan(tiny: bool = False) -> Dict[str, List[dict]]:
    """``{stage: [part, ...]}``; each part ``{name, fn, limit_s, estimate_s, args}`` (a fresh copy)."""
    out = copy.deepcopy(FULL)
    if not tiny:
        return out
    for stage, parts in out.items():
        if stage == 'check':  # one pytest run of the file: on a CPU every test skips
            parts[:] = [parts[0], dict(parts[1], args=dict(parts[1]['args'], **_TINY_ARGS['check']['cuda_tests']))]
        if stage == 'retrain':  # the found genotype and one random one, one seed
            parts[:] = [p for p in parts if p['args']['seed'] == 0 and p['args']['label'] != 'random2']
        for part in parts:
            part['args'].update(_TINY_ARGS.get(stage, {}).get(part['name'], {}))
            part['args'].update(_TINY_EXTRA.get((stage, part['name']), {}))
            if stage == 'speed':
                part['args']['nets'] = copy.deepcopy(_TINY_NETS)
            if stage == 'retrain':
                part['args'].update(iterations=2, batch=2, lr_patch=12, num_workers=0)
            part['limit_s'], part['estimate_s'] = 120, 5
    return out


def stage_estimate_s(parts: List[dict]) -> int:
    return sum(p['estimate_s'] for p in parts)


def stage_limit_s(parts: List[dict]) -> int:
    return sum(p['limit_s'] for p in parts)
