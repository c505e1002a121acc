"""Section 8, ``retrain``: the retrain step of DeCoNASNet (paper genotype) against EDSR-baseline and CARN.

* dispatched aten ops per step (``utils.op_count``, on the CPU: the count does not depend on the machine or
  its load, and on a GPU each op is about one kernel launch), with the goal: forward, L1 loss
  and backward of DeCoNASNet in at most 800 ops;
* ms per retrain step (zero_grad, forward, L1, backward, Adam) of each network in fp32 and with bf16 autocast,
  interleaved, and the DeCoNASNet / EDSR-baseline ratios (``step_times``);
* on CUDA only: CUDA kernels per step (torch.profiler), and each opt-in CUDA path against the eager step
  (``versus_eager``): fused Adam, the whole step replayed as one CUDA graph and the step through
  ``torch.compile(mode='reduce-overhead')`` (``train.compile``), each with how far its weights drift from
  eager's and the verdict whether that would switch it on (``verdicts``).

The GPU runner's ``speed`` stage calls ``step_times``, ``versus_eager`` and ``verdicts`` with its own sizes.
A path "would be switched on" when it is at least ``SWITCH_SPEEDUP`` times faster than eager and its weights
after ``check_steps`` steps from the same start, batch and precision (strict fp32) differ from eager's by at
most ``WEIGHT_RTOL`` (relative, max over tensors).
"""
import contextlib
import copy
import time
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F

from deconas_plugin.genotype import PAPER_GENOTYPE, Genotype
from deconas_plugin.utils.markdown_table import md_table
from deconas_plugin.utils.op_count import train_step_op_counts
from .common import error_text, fmt, random_batch, say
from .timing import TrainStep, interleaved_ms
from .zeromask import strict_fp32

GOAL_RETRAIN_OPS = 800
# at commit 35f78c5: DeCoNASNet's retrain step, the supernet's child step on the paper genotype
OPS_BEFORE = {'forward_backward': 1169, 'step': 1554, 'supernet_forward_backward': 1313, 'supernet_step': 1698}
PRECISIONS = {'fp32': None, 'bf16': torch.bfloat16}
SWITCH_SPEEDUP = 1.05
WEIGHT_RTOL = 1e-3
CHECK_STEPS = 5
COMPILE_ARGS = {'mode': 'reduce-overhead'}  # ``train.compile: true`` on CUDA
# the option (or benchmark step) each opt-in path stands for; ``{}``: the row (network, precision)
OPT_IN_PATHS = {'adam': 'optim_g.fused', 'compile': 'train.compile ({})', 'cuda_graph': 'whole-step CUDA graph ({})'}


def retrain_models(sizes: Optional[dict] = None) -> Dict[str, Callable[[], torch.nn.Module]]:
    """Builders of the retrain networks at x2: the paper's DeCoNASNet (C=64 N=4 M=4), EDSR-baseline (64 x 16) and
    CARN (multi-scale); with ``sizes`` (``{network: its arguments}``, the GPU runner's tiny plan) DeCoNASNet of
    the full genotype and EDSR / CARN at those sizes."""
    from basicsr.utils.registry import ARCH_REGISTRY
    genotype = PAPER_GENOTYPE if sizes is None else Genotype.full(sizes['DeCoNASNet']['num_nodes'])
    sizes = sizes or {'DeCoNASNet': {'num_feat': 64, 'num_blocks': 4, 'num_nodes': 4},
                      'EDSR-baseline': {'num_feat': 64, 'num_block': 16}, 'CARN': {}}
    arch = ARCH_REGISTRY.get
    return {
        'DeCoNASNet': lambda: arch('DeCoNASNet')(genotype, upscale=2, **sizes['DeCoNASNet']),
        'EDSR-baseline': lambda: arch('EDSR')(num_in_ch=3, num_out_ch=3, upscale=2, **sizes['EDSR-baseline']),
        'CARN': lambda: arch('CARN')(upscale=2, multi_scale=True, **sizes['CARN']),
    }


def fresh(build: Callable[[], torch.nn.Module], device: torch.device, seed: int = 0) -> torch.nn.Module:
    """``build()`` with the weights of ``seed``, on ``device``."""
    torch.manual_seed(seed)
    return build().to(device)


def count_cuda_kernels(fn: Callable, device: torch.device) -> Optional[int]:
    """CUDA kernels (and copies/memsets) launched by one call of ``fn`` (torch.profiler), or None off CUDA."""
    if device.type != 'cuda':
        return None
    from torch.profiler import ProfilerActivity, profile
    torch.cuda.synchronize(device)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize(device)
    return sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)


def cuda_graph_step(model, x, y, amp_dtype=None, lr: float = 1e-4) -> Callable:
    """The whole retrain step (forward, L1, backward, Adam with ``capturable=True``) captured once as a CUDA
    graph; the returned callable replays it (inputs are the static ``x``, ``y``)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr, capturable=True)

    def body():
        ctx = (torch.autocast('cuda', dtype=amp_dtype, cache_enabled=False) if amp_dtype is not None
               else contextlib.nullcontext())
        with ctx:
            loss = F.l1_loss(model(x).float(), y)
        loss.backward()
        opt.step()
        return loss

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside the capture (allocations, cuDNN plans, Adam state)
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            body()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        body()
    return graph.replay


def compiled_step(model, x, y, amp_dtype=None, compile_args: Optional[dict] = None) -> Callable:
    """The retrain step of ``torch.compile(model, **compile_args)`` (default: ``mode='reduce-overhead'``)."""
    compile_args = compile_args or COMPILE_ARGS
    step = TrainStep(torch.compile(model, **compile_args), x, y, amp_dtype=amp_dtype, params=model.parameters())
    graphs = compile_args.get('mode') == 'reduce-overhead'

    def run():
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        return step()
    return run


def opt_in_step(path: str, model, x, y, amp_dtype=None, compile_args: Optional[dict] = None) -> Callable:
    """The retrain step of ``model`` through an opt-in path: ``adam`` (Adam ``fused=True``), ``cuda_graph`` (the
    whole step as one CUDA graph, after its 3 eager warm-up steps) or ``compile`` (``compiled_step``)."""
    if path == 'adam':
        step = TrainStep(model, x, y, amp_dtype=amp_dtype)
        step.optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)
        return step
    if path == 'cuda_graph':
        return cuda_graph_step(model, x, y, amp_dtype)
    if path == 'compile':
        return compiled_step(model, x, y, amp_dtype, compile_args)
    raise ValueError(f'unknown opt-in path {path!r}; choose from {", ".join(OPT_IN_PATHS)}')


def step_times(builders: dict, x, y, reps: int, warmup: int, precisions=tuple(PRECISIONS), seed: int = 0) -> dict:
    """ms per eager retrain step (zero_grad, forward, L1, backward, Adam) of each network (``builders``, the
    weights of ``seed``) in each precision (fp32, bf16 autocast), interleaved over all of them; ``params`` per
    network; on CUDA ``kernels`` of one step (torch.profiler; a profiler without CUPTI: its error)."""
    device = x.device
    steps, params = {}, {}
    for name, build in builders.items():
        model = fresh(build, device, seed)
        params[name] = sum(p.numel() for p in model.parameters())
        for prec in precisions:
            steps[f'{name} {prec}'] = TrainStep(copy.deepcopy(model), x, y, amp_dtype=PRECISIONS[prec])
    out = {'step_ms': interleaved_ms(steps, reps, warmup, device), 'params': params, 'kernels': {}}
    if device.type == 'cuda':
        for key, step in steps.items():
            try:
                out['kernels'][key] = count_cuda_kernels(step, device)
            except Exception as e:  # noqa: BLE001  (a profiler without CUPTI: recorded)
                out['kernels'][key] = error_text(e)
    return out


def max_rel_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    """Max over parameters of max|a - b| / max(max|a|, 1e-12): how far two trainings of one start drifted."""
    out = 0.0
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        if pa.is_floating_point():
            out = max(out, float((pa.float() - pb.float()).abs().max() / pa.float().abs().max().clamp_min(1e-12)))
    return out


def _train(step: Callable, steps: int, device: torch.device):
    for _ in range(steps):
        step()
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def versus_eager(path: str, builders: dict, x, y, reps: int, warmup: int, check_steps: int = CHECK_STEPS,
                 precisions=tuple(PRECISIONS), compile_args: Optional[dict] = None) -> dict:
    """An opt-in path's step (``opt_in_step``) against the eager one, per network (DeCoNASNet; every network of
    ``builders`` for the CUDA graph, which needs CUDA) and precision: its first step's seconds, the weights of
    both after ``check_steps`` steps from the same start (fp32 only, strict on CUDA), then both timed side by side
    at the default precision (a recompile for it falls in the warm-up). A path that fails is a result (its
    error). Rows are keyed by precision, or ``<network> <precision>`` with several networks."""
    device = x.device
    compile_args = (compile_args or COMPILE_ARGS) if path == 'compile' else None
    if path == 'cuda_graph' and device.type != 'cuda':
        return {'skipped': 'a CUDA graph needs CUDA'}
    names = list(builders) if path == 'cuda_graph' else ['DeCoNASNet']
    rows = {}
    for name in names:
        for prec in precisions:
            key, dtype = (f'{name} {prec}' if len(names) > 1 else prec), PRECISIONS[prec]
            try:
                model = fresh(builders[name], device)
                with strict_fp32() if dtype is None and device.type == 'cuda' else contextlib.nullcontext():
                    t0 = time.perf_counter()
                    step = opt_in_step(path, model, x, y, dtype, compile_args)
                    _train(step, 1, device)
                    first_s, diff = time.perf_counter() - t0, None
                    eager = TrainStep(fresh(builders[name], device), x, y, amp_dtype=dtype)
                    if dtype is None:  # bf16 rounding differs between any two schedules: timed only
                        _train(step, check_steps - 1, device)
                        _train(eager, check_steps + (3 if path == 'cuda_graph' else 0), device)
                        diff = max_rel_diff(eager.model, model)
                if dtype is None and path == 'cuda_graph':  # timed as captured at the default precision (TF32)
                    step = opt_in_step(path, fresh(builders[name], device), x, y, dtype, compile_args)
                ms = interleaved_ms({'eager': eager, path: step}, reps, warmup, device)
                rows[key] = {'first_step_s': first_s, 'ms': ms, 'speedup': ms['eager'] / ms[path],
                             'max_rel_weight_diff': diff}
            except Exception as e:  # noqa: BLE001  (a capture or compile failure is a result)
                rows[key] = {'error': error_text(e)}
            if path == 'compile':
                torch._dynamo.reset()
    return {'rows': rows, 'check_steps': check_steps, 'compile_args': compile_args}


def verdicts(paths: Dict[str, dict], measured: bool) -> Dict[str, dict]:
    """Per row of each opt-in path's ``versus_eager`` result (``paths``: ``{path: result}``), named by the option
    it stands for (``OPT_IN_PATHS``): the row and its verdict. ``measured``: a GPU measurement at full sizes
    (anything else says so instead of a verdict)."""
    out = {}
    for path, name in OPT_IN_PATHS.items():
        for key, row in ((paths.get(path) or {}).get('rows') or {}).items():
            speedup, diff = row.get('speedup'), row.get('max_rel_weight_diff')
            correct = diff is None or diff <= WEIGHT_RTOL
            out[name.format(key)] = dict(row, verdict=(
                'keep off: ' + row['error'] if 'error' in row else 'not a GPU measurement' if not measured else
                'evidence to switch on' if speedup >= SWITCH_SPEEDUP and correct else
                'keep off: ' + ('weights differ from eager' if not correct else f'not {SWITCH_SPEEDUP}x faster')))
    return out


def bench_retrain(cfg: dict, device: torch.device) -> dict:
    builders = retrain_models()
    # 1. dispatched ops (CPU, a small input: the count does not depend on the input size)
    ops = {}
    for name, build in builders.items():
        torch.manual_seed(cfg['seed'])
        counts = train_step_op_counts(build())
        ops[name] = counts
        say(f'  {name}: {counts["forward_backward"]} ops forward + L1 + backward, {counts["step"]} with Adam')
    from deconas_plugin.archs.deconet_supernet_arch import DeCoNetSupernet
    torch.manual_seed(cfg['seed'])  # the search's child step on the paper genotype (weight slices, no capture)
    out_supernet = train_step_op_counts(DeCoNetSupernet(num_feat=64, num_blocks=4, num_nodes=4, upscale=2),
                                        genotype=PAPER_GENOTYPE)
    out = {'ops': ops, 'supernet_child_ops': out_supernet, 'goal_ops': GOAL_RETRAIN_OPS,
           'ops_before': OPS_BEFORE,
           'meets_goal': ops['DeCoNASNet']['forward_backward'] <= GOAL_RETRAIN_OPS,
           'setup': {k: cfg[k] for k in ('retrain_batch', 'retrain_patch', 'retrain_reps', 'warmup')}}

    # 2. ms per step, fp32 and bf16 autocast, interleaved over the networks
    x, y = random_batch({'batch': cfg['retrain_batch'], 'patch': cfg['retrain_patch']}, device, cfg['seed'])
    times = step_times(builders, x, y, cfg['retrain_reps'], cfg['warmup'], seed=cfg['seed'])
    ms = out['step_ms'] = times['step_ms']
    out['params'] = times['params']
    out['ratio_vs_edsr'] = {prec: ms[f'DeCoNASNet {prec}'] / ms[f'EDSR-baseline {prec}'] for prec in PRECISIONS}
    say('  ' + ', '.join(f'{k} {v:.1f} ms' for k, v in ms.items()))

    # 3. CUDA: kernels per step, each opt-in path against eager (the GPU runner's speed stage, at these sizes)
    if device.type == 'cuda':
        paths = {}
        for path in OPT_IN_PATHS:
            if path != 'compile' or cfg['compile']:  # Adam updates fp32 weights under autocast too: fp32 only
                paths[path] = versus_eager(path, builders, x, y, cfg['retrain_reps'], cfg['warmup'] + 2,
                                           precisions=('fp32',) if path == 'adam' else tuple(PRECISIONS))
                say(f'  {path}: ' + ', '.join(f'{k} {r.get("speedup", r.get("error"))}'
                                              for k, r in paths[path].get('rows', {}).items()))
        out['cuda'] = {'kernels': times['kernels'], 'paths': paths, 'verdicts': verdicts(paths, not cfg['quick'])}
    return out


def md_step_times(s: dict, batch: int, patch: int, reps: int) -> List[str]:
    """The table of ``step_times`` (``s``: ``step_ms``, and ``params`` and ``kernels`` where measured)."""
    kernels, params = s.get('kernels') or {}, s.get('params') or {}
    names = list(dict.fromkeys(k.rsplit(' ', 1)[0] for k in s['step_ms']))
    out = [f'ms per retrain step, batch {batch}, LR patch {patch}, x2 (median of {reps}, interleaved'
           + ('; CUDA kernels per step, torch.profiler' if kernels else '') + '):', '']
    rows = [[name, fmt(params.get(name)), *(fmt(s['step_ms'].get(f'{name} {p}'), 1) for p in PRECISIONS),
             *((kernels.get(f'{name} {p}', '-') for p in PRECISIONS) if kernels else ())] for name in names]
    header = ['network', 'params', 'fp32 ms', 'bf16 autocast ms'] + ([f'kernels {p}' for p in PRECISIONS]
                                                                     if kernels else [])
    return out + md_table(header, 'l' + 'r' * (len(header) - 1), rows)


def md_opt_in_paths(verdict_rows: Dict[str, dict], compiled: Optional[dict] = None) -> List[str]:
    """The verdict table of ``verdicts``, and the compile times of the ``compile`` path's result."""
    out = [f'A path would be switched on when it is at least {SWITCH_SPEEDUP}x faster than eager and its weights '
           f'after the check steps differ from eager by at most {WEIGHT_RTOL:g} (relative; strict fp32).', '']
    out += md_table(['opt-in path', 'speedup vs eager', 'max rel. weight diff', 'verdict'], 'lrrl',
                    [[f'`{name}`', _x(v.get('speedup')), _g(v.get('max_rel_weight_diff')), v['verdict']]
                     for name, v in verdict_rows.items()])
    if compiled:
        out += ['', f'`torch.compile({compiled["compile_args"]})` of DeCoNASNet: ' + '; '.join(
            f'{p}: ' + (row['error'] if 'error' in row else f'first step {row["first_step_s"]:.1f} s, eager '
                        f'{row["ms"]["eager"]:.1f} ms, compiled {row["ms"]["compile"]:.1f} ms')
            for p, row in compiled['rows'].items()) + '.']
    return out


def _x(v) -> str:
    return '-' if v is None else f'{v:.2f}x'


def _g(v) -> str:
    return '-' if v is None else f'{v:.3g}'


def md_retrain(s, cfg, result):
    ops, before = s['ops'], s['ops_before']
    dn = ops['DeCoNASNet']
    out = ['Dispatched aten ops of one retrain step (L1 loss, Adam; `utils.op_count`: a TorchDispatchMode counter, '
           'CPU; on a GPU each op is about one kernel launch). The count is exact and does not depend on the load.', '']
    rows = [[name, f'{c["forward_backward"]:,}', f'{c["optimizer"]:,}', f'{c["step"]:,}'] for name, c in ops.items()]
    sc = s.get('supernet_child_ops')
    if sc:
        was = (f' (was {before["supernet_forward_backward"]:,})' if 'supernet_forward_backward' in before else '')
        rows.append(['DeCoNetSupernet child step, paper genotype (C=64)', f'{sc["forward_backward"]:,}{was}',
                     f'{sc["optimizer"]:,}', f'{sc["step"]:,}'])
    out += md_table(['network', 'forward + L1 + backward', 'Adam (foreach)', 'whole step'], 'lrrr', rows)
    out += ['', f'Goal: DeCoNASNet forward + L1 + backward <= {s["goal_ops"]} ops (was '
            f'{before["forward_backward"]:,}, whole step {before["step"]:,}): **{dn["forward_backward"]}**, '
            f'{"met" if s["meets_goal"] else "NOT met"}. Most frequent: '
            + ', '.join(f'`{k}` {v}' for k, v in dn['top'][:8]) + '.', '']
    st, c = s['setup'], s.get('cuda') or {}
    out += md_step_times(dict(s, kernels=c.get('kernels')), st['retrain_batch'], st['retrain_patch'],
                         st['retrain_reps'])
    r = s['ratio_vs_edsr']
    out += ['', f'DeCoNASNet / EDSR-baseline step time: fp32 **{r["fp32"]:.2f}**, bf16 **{r["bf16"]:.2f}**.']
    if 'verdicts' in c:
        out += [''] + md_opt_in_paths(c['verdicts'], c['paths'].get('compile'))
    return out


def summary_retrain(s) -> list:
    ops, r = s['ops'], s['ratio_vs_edsr']
    dn = ops['DeCoNASNet']
    rows = [f'| 8. retrain step ops, DeCoNASNet (forward + L1 + backward / with Adam) vs EDSR-baseline, CARN | '
            f'{dn["forward_backward"]} / {dn["step"]} (was {s["ops_before"]["forward_backward"]:,} / '
            f'{s["ops_before"]["step"]:,}); EDSR {ops["EDSR-baseline"]["forward_backward"]} / '
            f'{ops["EDSR-baseline"]["step"]}; CARN {ops["CARN"]["forward_backward"]} / {ops["CARN"]["step"]} | '
            f'<= {s["goal_ops"]} | {"**met**" if s["meets_goal"] else "**NOT met**"} |',
            f'| 8. retrain step time, DeCoNASNet / EDSR-baseline | fp32 {r["fp32"]:.2f}, bf16 {r["bf16"]:.2f} | - | |']
    k = (s.get('cuda') or {}).get('kernels')
    if k:
        rows.append('| 8. CUDA kernels per retrain step | ' + ', '.join(f'{n} {v}' for n, v in k.items()) + ' | - | |')
    return rows
