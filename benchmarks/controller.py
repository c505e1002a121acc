"""Section 3, ``controller``: ms per genotype of sample + log-prob at M = 8, N = 16 (FF off and on), one
genotype at a time (a controller step) and batched (``sample_many``); and the child steps' draws (no
log-prob), one unroll per genotype vs one batched unroll per controller phase (what the search does);
goal <= 2 ms on CPU."""
from typing import Callable, List

import torch

from deconas_plugin.utils.markdown_table import md_table
from .common import say
from .timing import interleaved_ms


GOAL_CONTROLLER_MS = 2.0


def _profile_top(fn: Callable, top: int = 8) -> List[dict]:
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return [{'op': e.key, 'calls': e.count, 'self_cpu_ms': e.self_cpu_time_total / 1000} for e in rows]


def _bench_controller_on(ctrl, device: torch.device, cfg: dict) -> dict:
    torch.manual_seed(cfg['seed'])
    batch, reps = cfg['controller_batch'], cfg['controller_reps']
    one = interleaved_ms({
        'single': ctrl.sample,  # one genotype with its log-prob and entropy: a controller step's draw
        'child_draw_single': lambda: ctrl.decide(1, 'sample'),  # a child step's draw, one unroll each
    }, reps, 2, device)
    many = interleaved_ms({
        'batched': lambda: ctrl.sample_many(batch),
        'child_draw_batched': lambda: ctrl.decide(batch, 'sample'),  # what the search does per phase
    }, max(3, reps // 10), 1, device)
    bits1 = ctrl.decide(1, 'sample')
    g1 = ctrl.bits_to_genotype(bits1[0])
    parts = interleaved_ms({
        'decide(1) (sequential unroll)': lambda: ctrl.decide(1, 'sample'),
        'score(1 genotype) (log-prob, entropy)': lambda: ctrl.score(bits1),
        'score + backward': lambda: ctrl.score(bits1)[0].sum().backward(),
        'bits_to_genotype': lambda: ctrl.bits_to_genotype(bits1[0]),
        'genotype_to_bits': lambda: ctrl.genotype_to_bits(g1),
        'one torch.lstm_cell call': lambda: _no_grad(torch.lstm_cell, ctrl.start[0], (ctrl.start[0], ctrl.start[0]),
                                                      ctrl.lstm.weight_ih_l0, ctrl.lstm.weight_hh_l0,
                                                      ctrl.lstm.bias_ih_l0, ctrl.lstm.bias_hh_l0),
    }, reps, 2, device)
    return {
        'device': str(device), 'num_decisions': ctrl.num_decisions,
        'single_ms': one['single'],
        'batched_ms': many['batched'] / batch,
        'child_draw_single_ms': one['child_draw_single'],
        'child_draw_batched_ms': many['child_draw_batched'] / batch,
        'breakdown_ms': parts,
        'profile_top': _profile_top(ctrl.sample),
    }


def _no_grad(fn, *args):
    with torch.no_grad():
        return fn(*args)


def bench_controller(cfg: dict, device: torch.device) -> dict:
    from deconas_plugin.archs.deconas_controller_arch import DeCoNASController
    devices = [torch.device('cpu')] + ([device] if device.type == 'cuda' else [])
    configs = []
    for dev in devices:
        for ff in (False, True):
            torch.manual_seed(cfg['seed'])
            ctrl = DeCoNASController(num_nodes=8, num_blocks=16, feature_fusion_search=ff).to(dev)
            row = {'ff': ff, **_bench_controller_on(ctrl, dev, cfg)}
            configs.append(row)
            say(f'  {dev} FF{int(ff)}: sample + log-prob single {row["single_ms"]:.2f} ms, batched '
                 f'{row["batched_ms"]:.3f} ms/genotype; child draws single {row["child_draw_single_ms"]:.2f} ms, '
                 f'batched {row["child_draw_batched_ms"]:.3f} ms/genotype')
    cpu_rows = [r for r in configs if r['device'] == 'cpu']
    paths = {name: all(r[f'{name}_ms'] <= GOAL_CONTROLLER_MS for r in cpu_rows)
             for name in ('single', 'batched', 'child_draw_single', 'child_draw_batched')}
    return {'configs': configs, 'goal_ms': GOAL_CONTROLLER_MS, 'paths_meeting_goal_on_cpu': paths,
            'meets_goal': paths['single'] or paths['batched']}


def md_controller(s, cfg, result):
    out = ['ms per genotype. single = `sample()`: one sequential unroll (`decide`) + one teacher-forced '
           '`score` (log-prob and entropy), what each controller (REINFORCE) step does; batched = '
           f'`sample_many(B)` (B = {cfg["controller_batch"]}), per genotype. Child draws = `decide` without '
           'the log-prob, what a child step needs: one unroll per genotype, or one batched unroll of B for '
           'all the child steps up to the next controller phase (what the search does).', '']
    out += md_table(['device', 'FF', 'decisions', 'single', 'batched', 'child draw single', 'child draw batched'],
                    'llrrrrr', [[r['device'], int(r['ff']), r['num_decisions'], f'{r["single_ms"]:.2f}',
                                 f'{r["batched_ms"]:.3f}', f'{r["child_draw_single_ms"]:.2f}',
                                 f'{r["child_draw_batched_ms"]:.3f}'] for r in s['configs']])
    paths = s['paths_meeting_goal_on_cpu']
    ok = [k for k, v in paths.items() if v]
    out += ['', f'Goal <= {s["goal_ms"]:.0f} ms per genotype on CPU: met by '
            f'{", ".join(ok) if ok else "no path"}; not met by '
            f'{", ".join(k for k, v in paths.items() if not v) or "-"}.',
            '', 'Breakdown (CPU, FF0; ms per call):', '']
    first = next(r for r in s['configs'] if r['device'] == 'cpu' and not r['ff'])
    out += md_table(['part', 'ms'], 'lr', [[k, f'{v:.3f}'] for k, v in first['breakdown_ms'].items()])
    out += ['', 'Profile of one single-path call (CPU, FF0), top ops by self CPU time:', '']
    return out + md_table(['op', 'calls', 'self CPU ms'], 'lrr',
                          [[f'`{p["op"]}`', p['calls'], f'{p["self_cpu_ms"]:.2f}'] for p in first['profile_top']])
