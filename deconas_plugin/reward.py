"""The search's reward, in one place: a child's PSNR-Y on reward patches, minus its cost penalty.

``R = PSNR-Y - alpha * cost / cost_max`` (paper Eq. 11-12; the paper's cost is the parameter count,
``search.penalty`` makes it MACs or latency: ``search_cost.py``). The reward patches are random
``gt_size`` crops of the reward dataset (``search.reward_dataset``), drawn by seed so that a resumed
search, ``derive.py`` and the signal tools (``search_signal.py``) score the same ones.
"""
import os.path as osp
import random
from contextlib import contextmanager
from typing import Optional, Tuple

import torch
from basicsr.data import build_dataset
from basicsr.metrics.psnr_ssim import calculate_psnr_pt


@torch.no_grad()
def psnr_y(supernet, genotype, lq: torch.Tensor, gt: torch.Tensor, crop_border: int) -> float:
    """Mean PSNR-Y (dB) over a batch of patches of the sub-network ``genotype`` of ``supernet``.

    The output is clamped to [0, 1] like a saved image; Y is BT.601 (16..235), not rounded.
    """
    out = supernet(lq, genotype).clamp_(0, 1)
    return float(calculate_psnr_pt(out, gt, crop_border, test_y_channel=True).mean())


def penalized_reward(psnr: float, cost: float, alpha: float, cost_max: float) -> float:
    """``PSNR - alpha * cost / cost_max``: ``cost`` in any unit (params, MACs, ms), ``cost_max`` the
    cost of the largest genotype of the space in the same unit; ``alpha`` 0 (the paper's CB0) or 2 (CB1)."""
    return float(psnr) - alpha * cost / cost_max


def reward_dataset(opt: dict, phase: str = 'train', root: Optional[str] = None, error=ValueError):
    """The dataset of ``search.reward_dataset`` of a search option file, as the search reads it: train
    mode (random ``gt_size`` crops), flips and rotations off unless the option file sets them; ``phase
    'val'`` gives whole images. Relative paths start at ``root`` (None: the working directory); a missing
    section or path raises ``error``."""
    reward = (opt.get('search') or {}).get('reward_dataset')
    if not reward:
        raise error('search.reward_dataset is required: BasicSR dataset options of the reward-validation '
                    'images (for example a PairedImageDataset of held-out images with gt_size)')
    dataset_opt = dict(reward, phase=phase, scale=opt['scale'])
    dataset_opt.setdefault('use_hflip', False)
    dataset_opt.setdefault('use_rot', False)
    for key in ('dataroot_gt', 'dataroot_lq', 'meta_info_file'):
        path = dataset_opt.get(key)
        if path and root is not None and not osp.isabs(path):
            dataset_opt[key] = path = osp.join(root, path)
        if path and not osp.exists(path):
            raise error(f'search.reward_dataset.{key} does not exist: {path}')
    return build_dataset(dataset_opt)


@contextmanager
def seeded_python_random(seed: int):
    """Run a block with Python's ``random`` seeded (BasicSR's crops and flips draw from it), then
    restore the global state, so that a seeded draw does not move the training's random stream."""
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


def draw_patches(dataset, size: int, seed: int, device='cpu') -> Tuple[torch.Tensor, torch.Tensor]:
    """``size`` reward patches (lq, gt) of a BasicSR paired dataset in train mode, fixed by ``seed``:
    which images (a torch generator) and where they are cropped (Python's ``random``)."""
    index = torch.randint(len(dataset), (size, ), generator=torch.Generator().manual_seed(seed))
    with seeded_python_random(seed):
        items = [dataset[int(i)] for i in index]
    lq = torch.stack([item['lq'] for item in items]).to(device)
    gt = torch.stack([item['gt'] for item in items]).to(device)
    return lq, gt


def patch_seed(manual_seed: Optional[int], rank: int, *keys: int) -> int:
    """The seed of one draw of reward patches: a function of the option file's seed, ``keys`` (what the
    draw is for: a controller step, a phase, a probe batch) and the rank, so that every rank draws its
    own share and a resumed search draws the same patches."""
    seed = manual_seed or 0
    for key in keys:
        seed = seed * 1_000_003 + key
    return seed * 64 + rank


def rank_share(patches: int, world_size: int) -> int:
    """Reward patches each rank scores of ``patches`` in all (the PSNR is averaged over the ranks)."""
    return -(-patches // world_size)
