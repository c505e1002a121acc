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
from typing import Dict, List, Optional

STAGES = ('check', 'speed', 'search', 'retrain')
STAGE_LIMIT_S = 420  # 7 minutes of wall time per stage on one H200

_CUDA_TESTS = 'tests/test_cuda.py'
# the tiny speed stage's networks; bf16 on a CPU without bf16 units takes seconds per step
_TINY_NETS = {'DeCoNASNet': {'num_feat': 8, 'num_blocks': 2, 'num_nodes': 2},
              'EDSR-baseline': {'num_feat': 8, 'num_block': 2}, 'CARN': {'num_feat': 8}}
_TINY_STEP = {'batch': 1, 'patch': 8, 'reps': 1, 'warmup': 0, 'nets': _TINY_NETS}


def _part(name: str, fn: str, limit_s: int, estimate_s: int, tiny: Optional[dict] = None, **args) -> dict:
    """A part; ``tiny``: what its arguments become in the tiny plan (None: it is not in the tiny plan)."""
    return {'name': name, 'fn': fn, 'limit_s': limit_s, 'estimate_s': estimate_s, 'args': args, 'tiny': tiny}


FULL = {
    'check': [
        _part('environment', 'check:environment', 20, 8, {}),
        # one pytest selection per part, so that the compiled retrain (inductor compiles twice: the run and its
        # resume) cannot eat the others; at the last H200 run the file's first 3 tests took 98 s together.
        # Tiny: one pytest run of the file (on a CPU every test skips).
        _part('cuda_tests', 'check:cuda_tests', 105, 60, {'select': 'not quick_benchmark and not compile'},
              path=_CUDA_TESTS, select='not compile and not cuda_graph and not quick_benchmark'),
        _part('cuda_compile_test', 'check:cuda_tests', 160, 110, path=_CUDA_TESTS, select='compile'),
        _part('cuda_graph_tests', 'check:cuda_tests', 40, 15, path=_CUDA_TESTS, select='cuda_graph'),
        _part('cuda_benchmark_test', 'check:cuda_tests', 75, 45, path=_CUDA_TESTS, select='quick_benchmark'),
    ],
    'speed': [
        _part('retrain_eager', 'speed:retrain_eager', 60, 30, dict(_TINY_STEP, precisions=['fp32']),
              batch=16, patch=64, reps=7, warmup=3),
        _part('adam', 'speed:versus_eager', 40, 15, dict(_TINY_STEP, check_steps=1),
              path='adam', batch=16, patch=64, reps=9, warmup=3, check_steps=5, precisions=['fp32']),
        _part('cuda_graph', 'speed:versus_eager', 60, 30, dict(_TINY_STEP, check_steps=1),
              path='cuda_graph', batch=16, patch=64, reps=7, warmup=3, check_steps=5),
        # tiny: aot_eager needs no C++ compiler
        _part('compile', 'speed:versus_eager', 120, 90,
              dict(_TINY_STEP, check_steps=1, compile_args={'backend': 'aot_eager'}, precisions=['fp32']),
              path='compile', batch=16, patch=64, reps=7, warmup=3, check_steps=5,
              compile_args={'mode': 'reduce-overhead'}),
        _part('supernet', 'speed:supernet', 50, 25,
              dict(_TINY_STEP, genotypes=2, reward_patches=2, reward_patch=8, controller_steps=2),
              batch=16, patch=64, reps=5, warmup=2, genotypes=6, reward_patches=10, reward_patch=48,
              controller_steps=30),
        _part('inference', 'speed:inference', 30, 15, {'size': 16, 'reps': 1, 'nets': _TINY_NETS}, size=256, reps=5),
    ],
    'search': [
        # child steps: as many as ~200 s allow at the measured 20-40 ms (30 ms assumed), at least 4,000
        _part('search', 'search:search', 290, 250,
              {'num_feat': 4, 'num_blocks': 2, 'num_nodes': 2, 'batch': 2, 'lr_patch': 12, 'child_budget_s': 0,
               'min_child_steps': 6, 'max_child_steps': 6, 'controller_start_iter': 4, 'child_steps': 2,
               'controller_steps': 2, 'reward_patches': 2, 'reward_lr_patch': 12, 'signal_probe': 2, 'num_workers': 0},
              num_feat=64, num_blocks=4, num_nodes=4, batch=16, lr_patch=64, child_budget_s=200, child_step_s=0.030,
              min_child_steps=4000, max_child_steps=12000, controller_start_iter=4000, child_steps=500,
              controller_steps=100, reward_patches=10, reward_lr_patch=48, signal_probe=4, num_workers=8),
        # 32 controller samples x ~250 reward tiles, one forward each
        _part('derive', 'search:derive', 45, 20, {'samples': 4}, samples=32),
        _part('evaluate', 'search:evaluate', 60, 25, {'samples': 3, 'batches': 2, 'patches': 2},
              samples=64, batches=4, patches=16, settled=0.9),
    ],
    'retrain': [
        # 6 retrains of ~1,200 steps at ~25 ms + start and test: about 55 s each (batch, patch and loaders: the
        # search's); tiny: the found genotype and one random one, one seed
        _part(f'{label}_seed{seed}', 'retrain:retrain_one', 65, 55,
              {'iterations': 2} if seed == 0 and label != 'random2' else None, label=label, seed=seed, iterations=1200)
        for seed in (0, 1) for label in ('found', 'random1', 'random2')
    ],
}


def plan(tiny: bool = False) -> Dict[str, List[dict]]:
    """``{stage: [part, ...]}``; each part ``{name, fn, limit_s, estimate_s, args}`` (a fresh copy)."""
    out = {}
    for stage, parts in copy.deepcopy(FULL).items():
        if tiny:
            parts = [dict(p, args=dict(p['args'], **p['tiny']), limit_s=120, estimate_s=5)
                     for p in parts if p['tiny'] is not None]
        out[stage] = [{k: v for k, v in p.items() if k != 'tiny'} for p in parts]
    return out
