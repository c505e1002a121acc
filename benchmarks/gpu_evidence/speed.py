"""Stage ``speed``: the CUDA rows the docs leave open, and the evidence that would switch each opt-in
CUDA path on (side-by-side ratios, interleaved ABBA medians, plus a correctness check against eager).

Parts: ``retrain_eager`` (retrain step of DeCoNASNet, EDSR-baseline and CARN, fp32 and bf16 autocast, and
CUDA kernels per step); ``adam``, ``cuda_graph`` and ``compile`` (``versus_eager``: the eager step, Adam
``foreach`` being PyTorch's default on CUDA, against ``fused=True``, the whole step replayed as one CUDA graph,
``torch.compile``); ``supernet`` (child step supernet / fixed net, the reward step and the paper's N4 M4
search-hour estimate), ``inference`` (TMAC/s at x2). Timing helpers, networks and the opt-in steps and kernel
counter are the benchmark's (``benchmarks.timing``, ``.retrain``).

A path "would be switched on" when it is at least ``SWITCH_SPEEDUP`` times faster than eager and its
weights after ``check_steps`` steps from the same start, batch and precision (strict fp32) differ from
eager's by at most ``WEIGHT_RTOL`` (relative, max over tensors); ``summarize`` writes that verdict.
"""
import contextlib
import copy
import time
from typing import Dict, List, Optional

import torch

from ..common import make_supernet, random_batch
from ..retrain import (adam_steps, compiled_step, count_cuda_kernels, cuda_graph_step, error_text,
                       retrain_models)
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
    builders = retrain_models()
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
    return random_batch({'batch': batch, 'patch': patch}, device, seed)


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
                kernels[key] = error_text(e)
    return {'step_ms': ms, 'kernels': kernels, 'params': params, 'batch': batch, 'lr_patch': patch,
            'precisions': list(precisions)}


def _opt_in_step(path: str, model, x, y, dtype, compile_args: Optional[dict]):
    """The retrain step of ``model`` through an opt-in path: fused Adam, the whole step as one CUDA graph
    (after its 3 eager warm-up steps) or ``torch.compile(**compile_args)`` (``train.compile``)."""
    if path == 'adam':
        return adam_steps(model, x, y)['fused']  # on a copy of model: its .model
    if path == 'cuda_graph':
        return cuda_graph_step(model, x, y, dtype)
    return compiled_step(model, x, y, dtype, compile_args)


def versus_eager(ctx: dict, path: str, batch: int, patch: int, reps: int, warmup: int, check_steps: int,
                 nets: Optional[dict] = None, precisions=tuple(PRECISIONS),
                 compile_args: Optional[dict] = None) -> dict:
    """An opt-in path's step (``_opt_in_step``) against the eager one, per network (DeCoNASNet; every retrain
    network for the CUDA graph, which needs CUDA) and precision: its first step's seconds, the weights of both
    after ``check_steps`` steps from the same start (fp32 only, strict on CUDA), then both timed side by side at the
    default precision (a recompile for it falls in the warm-up). A path that fails is a result (its error)."""
    device = _device(ctx)
    if path == 'cuda_graph' and device.type != 'cuda':
        return {'skipped': 'a CUDA graph needs CUDA'}
    x, y = _batch(batch, patch, device)
    builders = _networks(nets)
    names = list(builders) if path == 'cuda_graph' else ['DeCoNASNet']
    rows = {}
    for name in names:
        for prec in precisions:
            key, dtype = (f'{name} {prec}' if len(names) > 1 else prec), PRECISIONS[prec]
            try:
                model = _fresh(builders[name], device)
                with strict_fp32() if dtype is None and device.type == 'cuda' else contextlib.nullcontext():
                    t0 = time.perf_counter()
                    step = _opt_in_step(path, model, x, y, dtype, compile_args)
                    _train(step, 1, device)
                    first_s, diff = time.perf_counter() - t0, None
                    eager = TrainStep(_fresh(builders[name], device), x, y, amp_dtype=dtype)
                    if dtype is None:  # bf16 rounding differs between any two schedules: timed only
                        _train(step, check_steps - 1, device)
                        _train(eager, check_steps + (3 if path == 'cuda_graph' else 0), device)
                        diff = max_rel_diff(eager.model, getattr(step, 'model', model))
                if dtype is None and path == 'cuda_graph':  # timed as captured at the default precision (TF32)
                    step = _opt_in_step(path, _fresh(builders[name], device), x, y, dtype, compile_args)
                ms = _timing({'eager': eager, path: step}, reps, warmup, device)
                rows[key] = {'first_step_s': first_s, 'ms': ms, 'speedup': ms['eager'] / ms[path],
                             'max_rel_weight_diff': diff}
            except Exception as e:  # noqa: BLE001  (a capture or compile failure is a result)
                rows[key] = {'error': error_text(e)}
            if path == 'compile':
                torch._dynamo.reset()
    return {'rows': rows, 'check_steps': check_steps, 'compile_args': compile_args}


def supernet(ctx: dict, batch: int, patch: int, reps: int, warmup: int, genotypes: int, reward_patches: int,
             reward_patch: int, controller_steps: int, nets: Optional[dict] = None) -> dict:
    """Child step of the supernet vs its extracted fixed net (the benchmark's section 1), the reward step
    (shared-weight PSNR-Y of ``reward_patches`` LR patches + one REINFORCE controller step), and the paper's
    search (200,000 child steps, 19,500 controller steps) in hours from these."""
    from deconas_plugin.archs.deconas_controller_arch import DeCoNASController
    from deconas_plugin.reward import psnr_y

    from ..config import make_config
    from ..supernet import bench_supernet
    device = _device(ctx)
    sizes = nets['DeCoNASNet'] if nets else {'num_feat': 64, 'num_blocks': 4, 'num_nodes': 4}
    cfg = make_config(device, quick=bool(nets), genotypes=genotypes, reps=reps, warmup=warmup, patch=patch,
                      batch=batch, **sizes)
    child = bench_supernet(cfg, device)
    net = make_supernet(cfg, device).eval()
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
VERDICT_NAMES = {'adam': 'optim_g.fused', 'compile': 'train.compile ({})', 'cuda_graph': 'whole-step CUDA graph ({})'}


def summarize(parts: dict, ctx: dict) -> dict:
    """Per opt-in CUDA path: the measured speedup, whether it matched eager, and the verdict."""
    got = {n: p['result'] for n, p in parts.items() if p.get('status') == 'done'}
    cuda = ctx['device'].startswith('cuda') and not ctx['tiny']
    verdicts = {}
    for part, name in VERDICT_NAMES.items():
        for key, row in ((got.get(part) or {}).get('rows') or {}).items():
            speedup, diff = row.get('speedup'), row.get('max_rel_weight_diff')
            correct = diff is None or diff <= WEIGHT_RTOL
            verdicts[name.format(key)] = dict(row, verdict=(
                'keep off: ' + row['error'] if 'error' in row else 'not a GPU measurement' if not cuda else
                'evidence to switch on' if speedup >= SWITCH_SPEEDUP and correct else
                'keep off: ' + ('weights differ from eager' if not correct else f'not {SWITCH_SPEEDUP}x faster')))
    s = got.get('supernet')
    return {'verdicts': verdicts, 'search_hours_paper': s['search_hours_paper'] if s else None}


def markdown(result: dict) -> List[str]:
    got = {n: p['result'] for n, p in result['parts'].items() if p.get('status') == 'done'}
    lines = [f'A path would be switched on when it is at least {SWITCH_SPEEDUP}x faster than eager and its weights '
             f'after the check steps differ from eager by at most {WEIGHT_RTOL:g} (relative; strict fp32).', '',
             '| opt-in path | speedup vs eager | max rel. weight diff | verdict |', '|---|---:|---:|---|']
    for name, v in ((result.get('summary') or {}).get('verdicts') or {}).items():
        lines.append(f'| `{name}` | {_x(v.get("speedup"))} | {_g(v.get("max_rel_weight_diff"))} | {v["verdict"]} |')
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
                        f'{row["ms"]["eager"]:.1f} ms, compiled {row["ms"]["compile"]:.1f} ms')
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
