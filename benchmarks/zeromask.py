"""Section 2, ``zeromask``: the sliced supernet vs a zero-mask supernet (``ZeroMaskSupernet``: every
SubsetInput layer reads all of its inputs with its full weight, the unchosen ones multiplied by 0, as the
reference code does for the dilated conv), checked to give the same output first (in strict fp32: no TF32
on CUDA; bound 1e-5); goal: sliced >= 1.5x faster."""
import contextlib
import copy
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from deconas_plugin.archs.deconas_blocks import DeCoNASBody, DenseNodeBlock
from deconas_plugin.genotype import NUM_OPS, Genotype
from deconas_plugin.utils.markdown_table import md_table
from .common import random_batch, random_genotypes, say, make_supernet
from .timing import TrainStep, interleaved_ms


GOAL_ZEROMASK_SPEEDUP = 1.5
EQUIVALENCE_BOUND = 1e-5  # max abs output difference, compared in strict fp32 (no TF32 on CUDA)


@contextlib.contextmanager
def strict_fp32():
    """fp32 convolutions and matmuls without TF32 (cuDNN rounds TF32 differently for the two layouts:
    8.1e-05 on an H200) and without cuDNN's benchmark picks; restored afterwards."""
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,
         torch.backends.cudnn.benchmark) = saved


def _masked_call(layer, feats: Sequence[torch.Tensor], ids: Sequence[int]) -> torch.Tensor:
    """``layer`` on ALL of its inputs with its full weight, the unchosen ones multiplied by 0."""
    chosen = set(ids)
    return layer([f if j in chosen else f * 0. for j, f in enumerate(feats[:layer.num_inputs])], None)


def _zero_mask_block(block: DenseNodeBlock, x: torch.Tensor, g: Genotype) -> torch.Tensor:
    feats = [x]
    for node in range(1, block.num_nodes + 1):
        outs = []
        for op in range(NUM_OPS):
            ids = g.op_inputs(node, op)
            if ids:  # an op with no chosen input is skipped, as in the sliced supernet
                outs.append(_masked_call(block.ops[f'node{node}_op{op}'], feats, ids))
        h = feats[node - 1] if not outs else outs[0] if len(outs) == 1 else torch.stack(outs).mean(0)
        feats.append(block.attention[node - 1](F.relu(h)))
    return _masked_call(block.local_fusion, feats, g.local_inputs()) + x


class ZeroMaskSupernet(nn.Module):
    """The supernet computed the reference code's zero-mask way (for comparison only).

    Same parameters as the wrapped ``DeCoNetSupernet``; ``forward(x, g)`` follows
    ``DeCoNASBody.run``, but every op of node i convolves all i inputs (unchosen ones zeroed) with
    its full weight, and the LFF/GFF 1x1 convs read all M + 1 / N + 1 features, masked.
    """

    def __init__(self, supernet: DeCoNASBody):
        super().__init__()
        self.net = supernet

    def forward(self, x: torch.Tensor, g: Genotype) -> torch.Tensor:
        net = self.net
        x = (x - net.mean) * net.img_range
        f_minus1 = net.sfe1(x)
        feats = [net.sfe2(f_minus1)]
        for d, block in enumerate(net.blocks):
            inp = feats[0] if d == 0 else net.block_inputs[d - 1](torch.cat(feats, 1))
            feats.append(_zero_mask_block(block, inp, g))
        x = net.global_conv(_masked_call(net.global_fusion, feats, g.global_inputs(net.num_blocks))) + f_minus1
        x = net.conv_last(net.upsample(x))
        return x / net.img_range + net.mean


def bench_zeromask(cfg: dict, device: torch.device) -> dict:
    net = make_supernet(cfg, device, fusion=True)
    masked = ZeroMaskSupernet(copy.deepcopy(net))
    x, y = random_batch(cfg, device, cfg['seed'] + 1)
    genotypes = random_genotypes(cfg, cfg['zeromask_genotypes'], seed_offset=1, fusion=True)
    diffs = []
    with torch.no_grad(), strict_fp32():  # same weights, before any step
        for g in genotypes:
            diffs.append(float((net(x, g) - masked(x, g)).abs().max()))
    max_diff = max(diffs)
    out = {'max_abs_diff': max_diff, 'equivalent': max_diff < EQUIVALENCE_BOUND, 'feature_fusion_search': True,
           'goal_speedup_min': GOAL_ZEROMASK_SPEEDUP, 'equivalence_bound': EQUIVALENCE_BOUND, 'strict_fp32': True}
    say(f'  zero-mask vs sliced output: max abs diff {max_diff:.2e} over {len(genotypes)} genotypes')
    if not out['equivalent']:
        out['error'] = f'zero-mask supernet differs from the sliced one (max abs diff {max_diff:.3g})'
        return out
    sliced_step, masked_step = TrainStep(net, x, y), TrainStep(masked, x, y)
    rows = []
    for i, g in enumerate(genotypes):
        sliced_step.genotype = masked_step.genotype = g
        ms = interleaved_ms({'sliced': sliced_step, 'zeromask': masked_step}, cfg['reps'], cfg['warmup'], device)
        row = {'genotype': g.to_string(), 'density': sum(g.bits()) / len(g.bits()),
               'sliced_ms': ms['sliced'], 'zeromask_ms': ms['zeromask'], 'max_abs_diff': diffs[i]}
        row['speedup'] = row['zeromask_ms'] / row['sliced_ms']
        rows.append(row)
        say(f'  [{i + 1}/{len(genotypes)}] {g}: sliced {row["sliced_ms"]:.1f} ms, zero-mask '
             f'{row["zeromask_ms"]:.1f} ms, sliced {row["speedup"]:.2f}x faster')
    speedups = [r['speedup'] for r in rows]
    mean = sum(speedups) / len(speedups)
    out.update(mean_speedup=mean, min_speedup=min(speedups), max_speedup=max(speedups),
               mean_density=sum(r['density'] for r in rows) / len(rows), meets_goal=mean >= GOAL_ZEROMASK_SPEEDUP,
               per_genotype=rows)
    return out


def md_zeromask(s, cfg, result):
    out = [f'Zero-mask supernet (every op of node i reads all i inputs with its full weight, unchosen inputs '
           f'x 0; LFF/GFF masked too; ops with no chosen input skipped in both) vs the sliced supernet, on '
           f'feature-fusion (FF1) genotypes so that the LFF/GFF masks matter. Same output before timing: '
           f'max abs diff **{s["max_abs_diff"]:.1e}** ({"equivalent" if s["equivalent"] else "NOT equivalent"}, '
           f'bound {s.get("equivalence_bound", 1e-5):.0e}'
           + (', compared in strict fp32: no TF32' if s.get('strict_fp32') else '')
           + '; timed in the default precision).',
           '']
    if 'error' in s:
        return out + [f'**failed**: `{s["error"]}`']
    out += ['| metric | value | goal |', '|---|---:|---|',
            f'| mean speedup of sliced (zero-mask ms / sliced ms) | **{s["mean_speedup"]:.2f}x** | >= '
            f'{s["goal_speedup_min"]:.1f}x ({"met" if s["meets_goal"] else "NOT met"}) |',
            f'| min / max speedup | {s["min_speedup"]:.2f} / {s["max_speedup"]:.2f} | |',
            f'| mean genotype density | {s["mean_density"]:.2f} | 0.5 |',
            '']
    return out + md_table(['genotype', 'density', 'sliced ms', 'zero-mask ms', 'speedup'], 'lrrrr',
                          [[f'`{r["genotype"]}`', f'{r["density"]:.2f}', f'{r["sliced_ms"]:.1f}',
                            f'{r["zeromask_ms"]:.1f}', f'{r["speedup"]:.2f}'] for r in s['per_genotype']])
