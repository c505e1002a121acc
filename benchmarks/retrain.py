"""Section 8, ``retrain``: the retrain step of DeCoNASNet (paper genotype) against EDSR-baseline and CARN.

* dispatched aten ops per step (``utils.op_count``, on the CPU: the count does not depend on the machine or
  its load, and on a GPU each op is about one kernel launch), with the goal: forward, L1 loss
  and backward of DeCoNASNet in at most 800 ops;
* ms per retrain step (zero_grad, forward, L1, backward, Adam) of each network in fp32 and with bf16 autocast,
  interleaved, and the DeCoNASNet / EDSR-baseline ratios;
* on CUDA only: CUDA kernels per step (torch.profiler), fused vs foreach Adam, the step through
  ``torch.compile(mode='reduce-overhead')`` (``train.compile``) and the whole step replayed as one CUDA graph.
"""
import contextlib
import copy
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from deconas_plugin.genotype import PAPER_GENOTYPE
from deconas_plugin.utils.op_count import train_step_op_counts
from .common import _f, _log
from .timing import TrainStep, interleaved, median_ms

GOAL_RETRAIN_OPS = 800
# at commit 35f78c5: DeCoNASNet's retrain step, the supernet's child step on the paper genotype
OPS_BEFORE = {'forward_backward': 1169, 'step': 1554, 'supernet_forward_backward': 1313, 'supernet_step': 1698}


def _retrain_models():
    from basicsr.utils.registry import ARCH_REGISTRY
    return {
        'DeCoNASNet': lambda: ARCH_REGISTRY.get('DeCoNASNet')(PAPER_GENOTYPE, num_feat=64, num_blocks=4, num_nodes=4,
                                                             upscale=2),
        'EDSR-baseline': lambda: ARCH_REGISTRY.get('EDSR')(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=16,
                                                           upscale=2),
        'CARN': lambda: ARCH_REGISTRY.get('CARN')(upscale=2, multi_scale=True),
    }


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


def _compiled_step(model, x, y, amp_dtype):
    compiled = torch.compile(model, mode='reduce-overhead')
    step = TrainStep(compiled, x, y, amp_dtype=amp_dtype, params=model.parameters())

    def run():
        torch.compiler.cudagraph_mark_step_begin()
        return step()
    return run


def _error(e: Exception) -> str:
    return f'{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ""}'[:300]


def bench_retrain(cfg: dict, device: torch.device) -> dict:
    builders = _retrain_models()
    # 1. dispatched ops (CPU, a small input: the count does not depend on the input size)
    ops = {}
    for name, build in builders.items():
        torch.manual_seed(cfg['seed'])
        counts = train_step_op_counts(build())
        ops[name] = counts
        _log(f'  {name}: {counts["forward_backward"]} ops forward + L1 + backward, {counts["step"]} with Adam')
    from deconas_plugin.archs.deconet_supernet_arch import DeCoNetSupernet
    torch.manual_seed(cfg['seed'])  # the search's child step on the paper genotype (weight slices, no capture)
    out_supernet = train_step_op_counts(DeCoNetSupernet(num_feat=64, num_blocks=4, num_nodes=4, upscale=2),
                                        genotype=PAPER_GENOTYPE)
    out = {'ops': ops, 'supernet_child_ops': out_supernet, 'goal_ops': GOAL_RETRAIN_OPS,
           'ops_before': OPS_BEFORE,
           'meets_goal': ops['DeCoNASNet']['forward_backward'] <= GOAL_RETRAIN_OPS,
           'setup': {k: cfg[k] for k in ('retrain_batch', 'retrain_patch', 'retrain_reps', 'warmup')}}

    # 2. ms per step, fp32 and bf16 autocast, interleaved over the networks
    gen = torch.Generator().manual_seed(cfg['seed'])
    b, p = cfg['retrain_batch'], cfg['retrain_patch']
    x = torch.rand(b, 3, p, p, generator=gen).to(device)
    y = torch.rand(b, 3, 2 * p, 2 * p, generator=gen).to(device)
    models = {}
    for name, build in builders.items():
        torch.manual_seed(cfg['seed'])
        models[name] = build().to(device)
    precisions = {'fp32': None, 'bf16': torch.bfloat16}
    steps = {f'{name} {prec}': TrainStep(copy.deepcopy(m), x, y, amp_dtype=dt)
             for name, m in models.items() for prec, dt in precisions.items()}
    t = interleaved(steps, cfg['retrain_reps'], cfg['warmup'], device)
    ms = {k: median_ms(v) for k, v in t.items()}
    out['step_ms'] = ms
    out['ratio_vs_edsr'] = {prec: ms[f'DeCoNASNet {prec}'] / ms[f'EDSR-baseline {prec}'] for prec in precisions}
    _log('  ' + ', '.join(f'{k} {v:.1f} ms' for k, v in ms.items()))
    del steps

    if device.type == 'cuda':
        out['cuda'] = _bench_cuda_paths(cfg, device, models, x, y)
    return out


def _bench_cuda_paths(cfg: dict, device: torch.device, models: dict, x, y) -> dict:
    res = {'kernels': {}, 'adam': {}, 'compile': {}, 'cuda_graph': {}}
    for name, m in models.items():
        step = TrainStep(copy.deepcopy(m), x, y)
        step()
        try:
            res['kernels'][name] = count_cuda_kernels(step, device)
        except Exception as e:  # noqa: BLE001  (a profiler without CUPTI: report and go on)
            res['kernels'][name] = _error(e)
    fused = {}
    for kind, kwargs in (('foreach', {'foreach': True}), ('fused', {'fused': True})):
        st = TrainStep(copy.deepcopy(models['DeCoNASNet']), x, y)
        st.optimizer = torch.optim.Adam(st.model.parameters(), lr=1e-4, **kwargs)
        fused[kind] = st
    t = interleaved(fused, cfg['retrain_reps'], cfg['warmup'], device)
    res['adam'] = {k: median_ms(v) for k, v in t.items()}
    for kind, build in (('compile', _compiled_step), ('cuda_graph', None)):
        for name in ('DeCoNASNet', 'EDSR-baseline'):
            for prec, dt in (('fp32', None), ('bf16', torch.bfloat16)):
                key = f'{name} {prec}'
                if kind == 'compile' and not cfg['compile']:
                    continue
                try:
                    model = copy.deepcopy(models[name])
                    fn = build(model, x, y, dt) if build else cuda_graph_step(model, x, y, dt)
                    t = interleaved({key: fn}, cfg['retrain_reps'], cfg['warmup'] + 2, device)
                    res[kind][key] = median_ms(t[key])
                except Exception as e:  # noqa: BLE001
                    res[kind][key] = _error(e)
                _log(f'  {kind} {key}: {res[kind][key]}')
    return res


def _ms(v) -> str:
    return f'{v:.1f}' if isinstance(v, (int, float)) else f'failed: `{v}`'


def _md_retrain(s, cfg, result):
    ops, before = s['ops'], s['ops_before']
    dn = ops['DeCoNASNet']
    out = ['Dispatched aten ops of one retrain step (L1 loss, Adam; `utils.op_count`: a TorchDispatchMode counter, '
           'CPU; on a GPU each op is about one kernel launch). The count is exact and does not depend on the load.', '',
           '| network | forward + L1 + backward | Adam (foreach) | whole step |', '|---|---:|---:|---:|']
    for name, c in ops.items():
        out.append(f'| {name} | {c["forward_backward"]:,} | {c["optimizer"]:,} | {c["step"]:,} |')
    sc = s.get('supernet_child_ops')
    if sc:
        was = (f' (was {before["supernet_forward_backward"]:,})' if 'supernet_forward_backward' in before else '')
        out.append(f'| DeCoNetSupernet child step, paper genotype (C=64) | {sc["forward_backward"]:,}{was} | '
                   f'{sc["optimizer"]:,} | {sc["step"]:,} |')
    out += ['', f'Goal: DeCoNASNet forward + L1 + backward <= {s["goal_ops"]} ops (was '
            f'{before["forward_backward"]:,}, whole step {before["step"]:,}): **{dn["forward_backward"]}**, '
            f'{"met" if s["meets_goal"] else "NOT met"}. Most frequent: '
            + ', '.join(f'`{k}` {v}' for k, v in dn['top'][:8]) + '.', '']
    st = s['setup']
    out += [f'ms per retrain step, batch {st["retrain_batch"]}, LR patch {st["retrain_patch"]}, x2 (median of '
            f'{st["retrain_reps"]}, interleaved):', '', '| network | fp32 | bf16 autocast |', '|---|---:|---:|']
    for name in ops:
        out.append(f'| {name} | {s["step_ms"][f"{name} fp32"]:.1f} | {s["step_ms"][f"{name} bf16"]:.1f} |')
    r = s['ratio_vs_edsr']
    out += ['', f'DeCoNASNet / EDSR-baseline step time: fp32 **{r["fp32"]:.2f}**, bf16 **{r["bf16"]:.2f}**.']
    c = s.get('cuda')
    if c:
        out += ['', '| CUDA | DeCoNASNet | EDSR-baseline | CARN |', '|---|---:|---:|---:|',
                '| kernels per step (fp32) | ' + ' | '.join(_f(c['kernels'].get(n)) if isinstance(
                    c['kernels'].get(n), int) else str(c['kernels'].get(n)) for n in ops) + ' |', '']
        out += [f'Adam on DeCoNASNet: foreach {_ms(c["adam"].get("foreach"))} ms, fused '
                f'{_ms(c["adam"].get("fused"))} ms per step.', '', '| step | fp32 ms | bf16 ms |', '|---|---:|---:|']
        for kind in ('compile', 'cuda_graph'):
            for name in ('DeCoNASNet', 'EDSR-baseline'):
                if f'{name} fp32' in c[kind]:
                    out.append(f'| {name}, {kind.replace("_", " ")} | {_ms(c[kind][f"{name} fp32"])} | '
                               f'{_ms(c[kind][f"{name} bf16"])} |')
    return out


def _summary_retrain(s) -> list:
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
