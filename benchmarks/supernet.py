"""Section 1, ``supernet``: one child train step (zero_grad, forward, L1, backward, Adam step) of
``DeCoNetSupernet(x, g)`` vs ``supernet.extract(g)`` (same weights, batch, patch) for random genotypes;
goal: mean ratio supernet / fixed <= 1.10."""
import statistics

import torch

from deconas_plugin.utils.markdown_table import md_table
from .common import random_batch, random_genotypes, say, make_supernet
from .timing import TrainStep, interleaved_ms


GOAL_SUPERNET_RATIO = 1.10


def bench_supernet(cfg: dict, device: torch.device) -> dict:
    net = make_supernet(cfg, device)
    x, y = random_batch(cfg, device, cfg['seed'])
    sn_step = None
    rows = []
    max_diff = 0.0
    for i, g in enumerate(random_genotypes(cfg, cfg['genotypes'])):
        fixed = net.extract(g)
        if i == 0:  # the extracted network computes the same function (checked once, before any step)
            with torch.no_grad():
                max_diff = float((net(x, g) - fixed(x)).abs().max())
        if sn_step is None:
            sn_step = TrainStep(net, x, y, g)
        sn_step.genotype = g
        fx_step = TrainStep(fixed, x, y)
        ms = interleaved_ms({'supernet': sn_step, 'fixed': fx_step}, cfg['reps'], cfg['warmup'], device)
        row = {'genotype': g.to_string(), 'params_fixed': sum(p.numel() for p in fixed.parameters()),
               'supernet_ms': ms['supernet'], 'fixed_ms': ms['fixed']}
        row['ratio'] = row['supernet_ms'] / row['fixed_ms']
        rows.append(row)
        say(f'  [{i + 1}/{cfg["genotypes"]}] {g}: supernet {row["supernet_ms"]:.1f} ms, fixed '
             f'{row["fixed_ms"]:.1f} ms, ratio {row["ratio"]:.3f}')
    ratios = [r['ratio'] for r in rows]
    mean = sum(ratios) / len(ratios)
    return {'mean_ratio': mean, 'median_ratio': statistics.median(ratios), 'min_ratio': min(ratios),
            'max_ratio': max(ratios), 'goal_ratio_max': GOAL_SUPERNET_RATIO, 'meets_goal': mean <= GOAL_SUPERNET_RATIO,
            'max_abs_diff': max_diff, 'per_genotype': rows,
            'setup': {k: cfg[k] for k in ('num_feat', 'num_nodes', 'num_blocks', 'patch', 'batch', 'density',
                                          'reps', 'warmup')}}


def md_supernet(s, cfg, result):
    st = s['setup']
    out = [f'Random genotypes: {len(s["per_genotype"])}, density {st["density"]}, M={st["num_nodes"]}, '
           f'N={st["num_blocks"]}, C={st["num_feat"]}, LR patch {st["patch"]}, batch {st["batch"]}; Adam; '
           f'{st["warmup"]} warm-up + {st["reps"]} timed steps each. Extracted net output = supernet output '
           f'(max abs diff {s["max_abs_diff"]:.1e}).', '',
           '| metric | value | goal |', '|---|---:|---|',
           f'| mean ratio supernet / fixed | **{s["mean_ratio"]:.3f}** | <= {s["goal_ratio_max"]:.2f} '
           f'({"met" if s["meets_goal"] else "NOT met"}) |',
           f'| median / min / max ratio | {s["median_ratio"]:.3f} / {s["min_ratio"]:.3f} / {s["max_ratio"]:.3f} | |',
           '']
    return out + md_table(['genotype', 'params (fixed)', 'supernet ms', 'fixed ms', 'ratio'], 'lrrrr',
                          [[f'`{r["genotype"]}`', f'{r["params_fixed"]:,}', f'{r["supernet_ms"]:.1f}',
                            f'{r["fixed_ms"]:.1f}', f'{r["ratio"]:.3f}'] for r in s['per_genotype']])
