"""Stage ``speed``: the CUDA rows the docs leave open, and the evidence that would switch each opt-in
CUDA path on (side-by-side ratios, interleaved ABBA medians, plus a correctness check against eager).

Parts: ``retrain_eager`` (retrain step of DeCoNASNet, EDSR-baseline and CARN, fp32 and bf16 autocast, and
CUDA kernels per step), ``adam`` (Adam ``foreach``, PyTorch's default on CUDA, vs ``fused=True``),
``cuda_graph`` (eager vs the whole step replayed as one CUDA graph), ``compile`` (eager vs ``torch.compile``),
``supernet`` (child step supernet / fixed net, the reward step and the paper's N4 M4 search-hour estimate), ``inference`` (TMAC/s at x2). Timing helpers,
networks and the CUDA graph / kernel counter are the benchmark's (``benchmarks.timing``, ``.retrain``).

A path "would be switched on" when it is at least ``SWITCH_SPEEDUP`` times faster than eager and its
weights after ``check_steps`` steps from the same start, batch and precision (strict fp32) differ from
eager's by at most ``WEIGHT_RTOL`` (relative, max over tensors); ``summarize`` writes that verdict.
"""
import contextlib
import copy
import time
from typing import Dict, List, Optional

import torch

from ..common import _batch as _random_batch
from ..retrain import _error, _retrain_models, count_cuda_kernels, cuda_graph_step
from ..timing import TrainStep, interleaved, median_ms
from ..zeromask import strict_fp32

SWITCH_SPEEDUP = 1.05
WEIGHT_RTOL = 1e-3
PAPER_CHILD_STEPS, PAPER_CONTROLLER_STEPS = 200_000, 19_500  # DESIGN.md: 200 epochs; 19,500 REINFORCE steps
PRECISIONS = {'fp32': None, 'bf16': torch.bfloat16}


def check_inputs(runner, stage):
    """Nothing to prepare: random batches."""


# --------------------------------------------------------------------------------------------- helpers
def _device(ctx: dict) -> torch.device:
    device = torch.device(ctx['device'])
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True  # as BasicSR's train pipeline
    return device


def _networks(nets: Optional[dict]) -> dict:
    """Builders of the retrain networks: the benchmark's (paper DeCoNASNet C=64, EDSR-baseline, CARN), or with
    ``nets`` (the tiny plan) DeCoNASNet of the full genotype at ``nets['DeCoNASNet']`` sizes and EDSR / CARN
    with ``nets[name]`` arguments."""
    builders = _retrain_models()
    if nets:
        from basicsr.utils.registry import ARCH_REGISTRY

        from deconas_plugin.genotype import Genotype
        genotype = Genotype.full(nets['DeCoNASNet']['num_nodes'])
        builders = {
            'DeCoNASNet': lambda: ARCH_REGISTRY.get('DeCoNASNet')(genotype, upscale=2, **nets['DeCoNASNet']),
            'EDSR-baseline': lambda: ARCH_REGISTRY.get('EDSR')(num_in_ch=3, num_out_ch=3, upscale=2,
                                                               **nets['EDSR-baseline']),
            'CARN': lambda: ARCH_REGISTRY.get('CARN')(upscale=2, multi_scale=True, **nets['CARN'])}
    return builders


def _batch(batch: int, patch: int, device: torch.device, seed: int = 0):
    """(x (batch, 3, patch, patch), y (batch, 3, 2 patch, 2 patch)) uniform in [0, 1), fixed by ``seed``."""
    return _random_batch({'batch': batch, 'patch': patch}, device, seed)


def _fresh(build, device, seed: int = 0):
    torch.manual_seed(seed)
    return build().to(device)


def max_rel_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    """Max over parameters of max|a - b| / max(max|a|, 1e-12): how far two trainings of one start drifted."""
    out = 0.0
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        if pa.is_floating_point():
            out = max(out, float((pa.float() - pb.float()).abs().max() / pa.float().abs().max().clamp_min(1e-12)))
    return out


def _train(step, steps: int, device: torch.device):
    for _ in range(steps):
        step()
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _timing(fns: Dict, reps: int, warmup: int, device) -> Dict[str, float]:
    return {k: median_ms(v) for k, v in interleaved(fns, reps, warmup, device).items()}


# ------------------------------------------------------------------------------------------------ parts
def retrain_eager(ctx: dict, batch: int, patch: int, reps: int, warmup: int, nets: Optional[dict] = None,
                  precisions=tuple(PRECISIONS)) -> dict:
    """ms per eager retrain step (zero_grad, forward, L1, backward, Adam) of each network in fp32 and bf16
    autocast, interleaved; CUDA kernels per step (torch.profiler) on CUDA."""
    device = _device(ctx)
    x, y = _batch(batch, patch, device)
    steps, params = {}, {}
    for name, build in _networks(nets).items():
        model = _fresh(build, device)
        params[name] = sum(p.numel() for p in model.parameters())
        for prec in precisions:
            steps[f'{name} {prec}'] = TrainStep(copy.deepcopy(model), x, y, amp_dtype=PRECISIONS[prec])
    ms = _timing(steps, reps, warmup, device)
    kernels = {}
    if device.type == 'cuda':
        for key, step in steps.items():
            try:
                kernels[key] = count_cuda_kernels(step, device)
            except Exception as e:  # noqa: BLE001  (a profiler without CUPTI: recorded)
                kernels[key] = _error(e)
    return {'step_ms': ms, 'kernels': kernels, 'params': params, 'batch': batch, 'lr_patch': patch,
            'precisions': list(precisions)}


def adam(ctx: dict, batch: int, patch: int, reps: int, warmup: int, check_steps: int,
         nets: Optional[dict] = None) -> dict:
    """DeCoNASNet's step with Adam ``foreach=True`` (PyTorch's default on CUDA) vs ``fused=True``: ms, and the
    weights after ``check_steps`` steps from the same start (strict fp32)."""
    device = _device(ctx)
    x, y = _batch(batch, patch, device)
    build = _networks(nets)['DeCoNASNet']
    variants = {'foreach': {'foreach': True}, 'fused': {'fused': True}}

    def step(kwargs):
        st = TrainStep(_fresh(build, device), x, y)
        st.optimizer = torch.optim.Adam(st.model.parameters(), lr=1e-4, **kwargs)
        return st
    with strict_fp32():
        runs = {k: step(kw) for k, kw in variants.items()}
        for st in runs.values():
            _train(st, check_steps, device)
        diff = max_rel_diff(runs['foreach'].model, runs['fused'].model)
    ms = _timing({k: step(kw) for k, kw in variants.items()}, reps, warmup, device)
    return {'ms': ms, 'speedup': ms['foreach'] / ms['fused'], 'max_rel_weight_diff': diff, 'check_steps': check_steps}


def cuda_graph(ctx: dict, batch: int, patch: int, reps: int, warmup: int, check_steps: int,
               nets: Optional[dict] = None, precisions=tuple(PRECISIONS)) -> dict:
    """Eager step vs the whole step replayed as one CUDA graph: ms per network and
    precision, and the weights after warm-up + ``check_steps`` steps of each (strict fp32). CUDA only."""
    device = _device(ctx)
    if device.type != 'cuda':
        return {'skipped': 'a CUDA graph needs CUDA'}
    x, y = _batch(batch, patch, device)
    rows = {}
    for name, build in _networks(nets).items():
        for prec in precisions:
            key = f'{name} {prec}'
            try:
                rows[key] = _graph_vs_eager(build, x, y, PRECISIONS[prec], reps, warmup, check_steps, device)
            except Exception as e:  # noqa: BLE001  (a capture failure is a result)
                rows[key] = {'error': _error(e)}
    return {'rows': rows}


def _graph_vs_eager(build, x, y, dtype, reps, warmup, check_steps, device) -> dict:
    warm = 3  # cuda_graph_step's eager warm-up steps before the capture
    if dtype is None:
        with strict_fp32():
            eager = TrainStep(_fresh(build, device), x, y)
            _train(eager, warm + check_steps, device)
            graph_model = _fresh(build, device)
            replay = cuda_graph_step(graph_model, x, y)
            _train(replay, check_steps, device)
            diff = max_rel_diff(eager.model, graph_model)
    else:
        diff = None  # bf16 rounding differs between any two schedules: timed only
    eager = TrainStep(_fresh(build, device), x, y, amp_dtype=dtype)
    replay = cuda_graph_step(_fresh(build, device), x, y, dtype)
    ms = _timing({'eager': eager, 'graph': replay}, reps, warmup, device)
    return {'ms': ms, 'speedup': ms['eager'] / ms['graph'], 'max_rel_weight_diff': diff}


def compile_step(ctx: dict, batch: int, patch: int, reps: int, warmup: int, check_steps: int, compile_args: dict,
                 nets: Optional[dict] = None, precisions=tuple(PRECISIONS)) -> dict:
    """DeCoNASNet's step eager vs through ``torch.compile(**compile_args)`` (``train.compile``): the first
    (compiling) step's seconds, steady ms, and the weights after ``check_steps`` steps (fp32, strict)."""
    device = _device(ctx)
    x, y = _batch(batch, patch, device)
    build = _networks(nets)['DeCoNASNet']
    rows = {}
    for prec in precisions:
        try:
            rows[prec] = _compiled_vs_eager(build, x, y, PRECISIONS[prec], compile_args, reps, warmup, check_steps,
                                            device)
        except Exception as e:  # noqa: BLE001  (a compile failure is a result)
            rows[prec] = {'error': _error(e)}
        torch._dynamo.reset()
    return {'compile_args': compile_args, 'rows': rows}


def _compiled_step(model, x, y, dtype, compile_args):
    compiled = torch.compile(model, **compile_args)
    step = TrainStep(compiled, x, y, amp_dtype=dtype, params=model.parameters())
    graphs = compile_args.get('mode') == 'reduce-overhead'

    def run():
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        return step()
    return run


def _compiled_vs_eager(build, x, y, dtype, compile_args, reps, warmup, check_steps, device) -> dict:
    """One compiled step function: its first (compiling) step timed; in fp32 it and an eager step from the
    same start take ``check_steps`` steps (strict fp32 on CUDA) and their weights are compared; then both
    are timed side by side (default precision; a recompile for it falls in the warm-up)."""
    model = _fresh(build, device)
    run = _compiled_step(model, x, y, dtype, compile_args)
    check = dtype is None
    ctx = strict_fp32() if check and device.type == 'cuda' else contextlib.nullcontext()
    with ctx:
        t0 = time.perf_counter()
        _train(run, 1, device)
        first_s = time.perf_counter() - t0
        diff = None
        if check:
            _train(run, check_steps - 1, device)
            ref = TrainStep(_fresh(build, device), x, y)
            _train(ref, check_steps, device)
            diff = max_rel_diff(ref.model, model)
    eager = TrainStep(_fresh(build, device), x, y, amp_dtype=dtype)
    ms = _timing({'eager': eager, 'compiled': run}, reps, warmup, device)
    return {'first_step_s': first_s, 'ms': ms, 'speedup': ms['eager'] / ms['compiled'], 'max_rel_weight_diff': diff}


def supernet(ctx: dict, batch: int, patch: int, reps: int, warmup: int, genotypes: int, reward_patches: int,
             reward_patch: int, controller_steps: int, nets: Optional[dict] = None) -> dict:
    """Child step of the supernet vs its extracted fixed net (the benchmark's section 1), the reward step
    (shared-weight PSNR-Y of ``reward_patches`` LR patches + one REINFORCE controller step), and the paper's
    search (200,000 child steps, 19,500 controller steps) in hours from these."""
    from deconas_plugin.archs.deconas_controller_arch import DeCoNASController
    from deconas_plugin.reward import psnr_y

    from ..common import _supernet
    from ..config import make_config
    from ..supernet import bench_supernet
    device = _device(ctx)
    sizes = nets['DeCoNASNet'] if nets else {'num_feat': 64, 'num_blocks': 4, 'num_nodes': 4}
    cfg = make_config(device, quick=bool(nets), genotypes=genotypes, reps=reps, warmup=warmup, patch=patch,
                      batch=batch, **sizes)
    child = bench_supernet(cfg, device)
    net = _supernet(cfg, device).eval()
    controller = DeCoNASController(num_nodes=sizes['num_nodes'], num_blocks=sizes['num_blocks']).to(device)
    opt = torch.optim.Adam(controller.parameters(), lr=3e-4)
    lq, gt = _batch(reward_patches, reward_patch, device, seed=1)

    def reward_step():
        bits = controller.decide(1, 'sample')
        log_prob, entropy = controller.score_logits(controller.logits(bits), bits)
        with torch.no_grad():
            reward = psnr_y(net, controller.bits_to_genotype(bits[0]), lq, gt, 2)
        loss = -(reward - 30.0) * log_prob.sum() - 1e-4 * entropy.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    reward_ms = _timing({'reward': reward_step}, controller_steps, warmup, device)['reward']
    child_ms = sum(r['supernet_ms'] for r in child['per_genotype']) / len(child['per_genotype'])
    hours = (PAPER_CHILD_STEPS * child_ms + PAPER_CONTROLLER_STEPS * reward_ms) / 3.6e6
    return {'child': {k: child[k] for k in ('mean_ratio', 'min_ratio', 'max_ratio', 'max_abs_diff', 'setup')},
            'child_ms': child_ms, 'child_ms_range': [min(r['supernet_ms'] for r in child['per_genotype']),
                                                    max(r['supernet_ms'] for r in child['per_genotype'])],
            'reward_step_ms': reward_ms, 'reward_patches': reward_patches, 'reward_lr_patch': reward_patch,
            'search_hours_paper': hours, 'sizes': sizes}


def inference(ctx: dict, size: int, reps: int, nets: Optional[dict] = None) -> dict:
    """ms per x2 image of ``size``x``size`` LR (no_grad, eval, round robin), params, MACs
    (``complexity_table.model_complexity``) and TMAC/s of the retrain networks."""
    from deconas_plugin.reporting.complexity_table import model_complexity
    device = _device(ctx)
    fns, info = {}, {}
    for name, build in _networks(nets).items():
        model = _fresh(build, torch.device('cpu')).eval()
        info[name] = model_complexity(model, (size, size))  # on the CPU, before moving
        model, x = model.to(device), torch.rand(1, 3, size, size, device=device)

        def run(model=model, x=x):
            with torch.no_grad():
                return model(x)
        fns[name] = run
    ms = _timing(fns, reps, 1, device)
    rows = [{'model': n, 'ms': ms[n], 'params': info[n]['params'], 'macs': info[n]['macs'],
             'tmac_per_s': info[n]['macs'] / ms[n] / 1e9 if info[n]['macs'] else None} for n in fns]
    return {'rows': rows, 'size': size}


# ------------------------------------------------------------------------------------------ the answer
def summarize(parts: dict, ctx: dict) -> dict:
    """Per opt-in CUDA path: the measured speedup, whether it matched eager, and the verdict."""
    got = {n: p['result'] for n, p in parts.items() if p.get('status') == 'done'}
    cuda = ctx['device'].startswith('cuda') and not ctx['tiny']
    verdicts = {}

    def verdict(speedup, diff):
        if speedup is None:
            return 'not measured'
        correct = diff is None or diff <= WEIGHT_RTOL
        if not cuda:
            return 'not a GPU measurement'
        return ('evidence to switch on' if speedup >= SWITCH_SPEEDUP and correct else
                'keep off: ' + ('weights differ from eager' if not correct else f'not {SWITCH_SPEEDUP}x faster'))
    a = got.get('adam')
    if a:
        verdicts['optim_g.fused'] = {'speedup': a['speedup'], 'max_rel_weight_diff': a['max_rel_weight_diff'],
                                     'verdict': verdict(a['speedup'], a['max_rel_weight_diff'])}
    c = got.get('compile')
    for prec, row in ((c or {}).get('rows') or {}).items():
        verdicts[f'train.compile ({prec})'] = {
            'speedup': row.get('speedup'), 'max_rel_weight_diff': row.get('max_rel_weight_diff'),
            'first_step_s': row.get('first_step_s'), 'error': row.get('error'),
            'verdict': verdict(row.get('speedup'), row.get('max_rel_weight_diff')) if 'error' not in row else
            'keep off: ' + row['error']}
    g = got.get('cuda_graph')
    for key, row in ((g or {}).get('rows') or {}).items():
        verdicts[f'whole-step CUDA graph ({key})'] = {
            'speedup': row.get('speedup'), 'max_rel_weight_diff': row.get('max_rel_weight_diff'),
            'error': row.get('error'),
            'verdict': verdict(row.get('speedup'), row.get('max_rel_weight_diff')) if 'error' not in row else
            'keep off: ' + row['error']}
    s = got.get('supernet')
    return {'verdicts': verdicts, 'search_hours_paper': s['search_hours_paper'] if s else None}


def markdown(result: dict) -> List[str]:
    got = {n: p['result'] for n, p in result['parts'].items() if p.get('status') == 'done'}
    lines = [f'A path would be switched on when it is at least {SWITCH_SPEEDUP}x faster than eager and its weights '
             f'after the check steps differ from eager by at most {WEIGHT_RTOL:g} (relative; strict fp32).', '',
             '| opt-in path | speedup vs eager | max rel. weight diff | verdict |', '|---|---:|---:|---|']
    for name, v in ((result.get('summary') or {}).get('verdicts') or {}).items():
        diff = v.get('max_rel_weight_diff', v.get('max_abs_output_diff'))
        lines.append(f'| `{name}` | {_x(v.get("speedup"))} | {_g(diff)} | {v["verdict"]} |')
    r = got.get('retrain_eager')
    if r:
        lines += ['', f'Eager retrain step, batch {r["batch"]}, LR patch {r["lr_patch"]}, x2 (ms; kernels per step on '
                  'CUDA):', '', '| network | params | fp32 ms | bf16 ms | kernels fp32 | kernels bf16 |',
                  '|---|---:|---:|---:|---:|---:|']
        for name, n in r['params'].items():
            k = r.get('kernels') or {}
            ms = {p: r['step_ms'].get(f'{name} {p}') for p in PRECISIONS}
            lines.append(f'| {name} | {n:,} | {_g(ms["fp32"])} | {_g(ms["bf16"])} '
                         f'| {k.get(f"{name} fp32", "-")} | {k.get(f"{name} bf16", "-")} |')
    c = got.get('compile')
    if c:
        lines += ['', f'`torch.compile({c["compile_args"]})` of DeCoNASNet: ' + '; '.join(
            f'{p}: ' + (row['error'] if 'error' in row else f'first step {row["first_step_s"]:.1f} s, eager '
                        f'{row["ms"]["eager"]:.1f} ms, compiled {row["ms"]["compiled"]:.1f} ms')
            for p, row in c['rows'].items()) + '.']
    s = got.get('supernet')
    if s:
        lines += ['', f'Supernet child step (N{s["sizes"]["num_blocks"]} M{s["sizes"]["num_nodes"]} '
                  f'C{s["sizes"]["num_feat"]}): {s["child_ms"]:.1f} ms mean ({s["child_ms_range"][0]:.1f}-'
                  f'{s["child_ms_range"][1]:.1f}), supernet / fixed net {s["child"]["mean_ratio"]:.3f}; reward step '
                  f'({s["reward_patches"]} LR {s["reward_lr_patch"]}x{s["reward_lr_patch"]} patches + a controller '
                  f'step) {s["reward_step_ms"]:.1f} ms. The paper\'s search ({PAPER_CHILD_STEPS:,} child steps, '
                  f'{PAPER_CONTROLLER_STEPS:,} controller steps) would take **{s["search_hours_paper"]:.2f} h** '
                  '(data loading and validation not included).']
    i = got.get('inference')
    if i:
        lines += ['', f'Inference x2, {i["size"]}x{i["size"]} LR:', '', '| network | ms | GMACs | TMAC/s |',
                  '|---|---:|---:|---:|']
        for row in i['rows']:
            lines.append(f'| {row["model"]} | {row["ms"]:.1f} | {(row["macs"] or 0) / 1e9:.1f} | '
                         f'{_g(row["tmac_per_s"])} |')
    return lines


def _x(v) -> str:
    return '-' if v is None else f'{v:.2f}x'


def _g(v) -> str:
    return '-' if v is None else f'{v:.3g}'
