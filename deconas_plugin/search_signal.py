"""How much the architecture moves the reward, next to how much the reward patches move it.

A controller learns only what its reward tells apart. Score G genotypes on the same B batches of
reward patches with the shared weights (PSNR-Y, dB) and read the G x B table as a two-way layout:

* ``genotype_std``: the spread of the genotypes' mean PSNR over the B batches: the architecture
  signal a controller can learn from;
* ``batch_std``: the spread of the batches' mean PSNR over the genotypes: how much harder one draw of
  patches is than another. A reward drawn on fresh patches for every controller step (the paper's
  way) carries it as noise; genotypes scored on common patches all share it, so it cancels;
* ``interaction_std``: the residual ``x_gb - mean_g - mean_b + mean``: the noise that remains when
  every genotype is scored on the same patches.

The signal-to-noise ratio a controller sees is ``genotype_std / sqrt(batch_std^2 +
interaction_std^2)`` with fresh patches and ``genotype_std / interaction_std`` with common patches
(``search.reward_mode``). ``genotype_std`` is measured on means over B batches, so it still holds
``interaction_std / sqrt(B)`` of noise: a table without any architecture signal reads about that.

Used by ``tools/search_signal.py`` (a trained search, offline) and by the search's per-phase
probe (``search.signal_probe``).
"""
import math
import random
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from .genotype import NUM_OPS, Genotype, num_groups
from .reward import psnr_y


RESOLUTION_DB = 1e-6  # PSNR differences below this are float round-off, not signal


def empty_genotype(num_nodes: int, num_blocks: Optional[int] = None, fusion: bool = False,
                   num_ops: int = NUM_OPS) -> Genotype:
    """The smallest genotype: no op reads anything (every node passes on its predecessor through its
    channel attention) and, with fusion bits, only the always-present features are fused."""
    codes = (0, ) * num_groups(num_nodes)
    if not fusion:
        return Genotype(codes, num_ops)
    return Genotype(codes, num_ops, (0, ) * num_nodes, (0, ) * num_blocks)


def probe_genotypes(num_nodes: int, num_blocks: int, fusion: bool, count: int, seed: int) -> List[Genotype]:
    """The empty and the full genotype, then ``count`` uniform random ones (distinct, fixed by ``seed``)."""
    rng = random.Random(seed)
    out = [empty_genotype(num_nodes, num_blocks, fusion), Genotype.full(num_nodes, num_blocks, fusion)]
    space = 2**(NUM_OPS * num_groups(num_nodes) + (num_nodes + num_blocks if fusion else 0))
    while len(out) < 2 + min(count, space - 2):
        g = Genotype.random(num_nodes, num_blocks, fusion, rng=rng)
        if g not in out:
            out.append(g)
    return out


@torch.no_grad()
def score_table(supernet, genotypes: Sequence[Genotype], batches, crop_border: int, progress=None) -> np.ndarray:
    """PSNR-Y (dB) of every genotype (rows) on every batch (columns), with the shared weights."""
    table = np.zeros((len(genotypes), len(batches)))
    for i, g in enumerate(genotypes):
        for j, (lq, gt) in enumerate(batches):
            table[i, j] = psnr_y(supernet, g, lq, gt, crop_border)
        if progress is not None:
            progress(i + 1, len(genotypes))
    return table


def decompose(table: np.ndarray) -> Dict[str, float]:
    """genotype, batch and interaction std (dB) of a G x B table (module docstring); G, B >= 2."""
    table = np.asarray(table, dtype=float)
    if table.ndim != 2 or min(table.shape) < 2:
        raise ValueError(f'need at least 2 genotypes x 2 batches, got a table of shape {table.shape}')
    row, col, grand = table.mean(1), table.mean(0), table.mean()
    residual = table - row[:, None] - col[None, :] + grand
    g, b = table.shape
    return {'genotype_std': float(row.std(ddof=1)), 'batch_std': float(col.std(ddof=1)),
            'interaction_std': float(math.sqrt((residual**2).sum() / ((g - 1) * (b - 1))))}


def snr(stats: Dict[str, float], reward_mode: str) -> float:
    """Signal-to-noise ratio of one reward, for ``reward_mode`` 'fresh' or 'common' (module docstring)."""
    if reward_mode == 'fresh':
        noise = math.hypot(stats['batch_std'], stats['interaction_std'])
    elif reward_mode == 'common':
        noise = stats['interaction_std']
    else:
        raise ValueError(f"reward_mode must be 'fresh' or 'common', got {reward_mode!r}")
    if stats['genotype_std'] < RESOLUTION_DB:  # float round-off of identical outputs is no signal
        return 0.0
    return stats['genotype_std'] / noise if noise > 0 else math.inf


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> Optional[float]:
    """Kendall's tau-b of two equally long sequences (ties counted as in scipy.stats.kendalltau);
    None with fewer than two pairs or when either sequence is constant."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f'kendall_tau needs two 1-D sequences of the same length, got {x.shape} and {y.shape}')
    i, j = np.triu_indices(len(x), 1)
    dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    n_x, n_y = np.count_nonzero(dx), np.count_nonzero(dy)
    if n_x == 0 or n_y == 0:
        return None
    return float((dx * dy).sum() / math.sqrt(n_x * n_y))


def summarize(table: np.ndarray, genotypes: Sequence[Genotype], reward_mode: str,
              num_random: Optional[int] = None) -> Dict:
    """Everything ``tools/search_signal.py`` reports about a table whose rows are ``genotypes``: the
    decomposition and SNRs over the random genotypes (``num_random`` rows after the first two, the
    empty and the full genotype, as ``probe_genotypes`` orders them; all rows when None), the empty
    and full PSNR, and the rank stability of the random genotypes between the first and the second
    half of the batches (Kendall tau)."""
    rows = slice(2, 2 + num_random) if num_random is not None else slice(None)
    sub = table[rows]
    stats = decompose(sub)
    half = table.shape[1] // 2
    out = dict(stats)
    out['snr_fresh'] = snr(stats, 'fresh')
    out['snr_common'] = snr(stats, 'common')
    out['snr'] = out[f'snr_{reward_mode}']
    out['reward_mode'] = reward_mode
    out['rank_tau_halves'] = (kendall_tau(sub[:, :half].mean(1), sub[:, half:].mean(1))
                              if half >= 1 and table.shape[1] - half >= 1 and len(sub) >= 2 else None)
    out['genotypes'] = len(sub)
    out['batches'] = table.shape[1]
    out['psnr'] = {g.to_string(): float(v) for g, v in zip(genotypes, table.mean(1))}
    return out
