"""Evaluation of a genotype with the shared weights: PSNR on the Y channel (the search's reward)."""
from typing import Iterable, Tuple

import torch
from basicsr.metrics.psnr_ssim import calculate_psnr_pt


@torch.no_grad()
def psnr_y(supernet, genotype, lq: torch.Tensor, gt: torch.Tensor, crop_border: int) -> float:
    """Mean PSNR-Y (dB) over a batch of patches of the sub-network ``genotype`` of ``supernet``.

    The output is clamped to [0, 1] like a saved image; Y is BT.601 (16..235), not rounded.
    """
    out = supernet(lq, genotype).clamp_(0, 1)
    return float(calculate_psnr_pt(out, gt, crop_border, test_y_channel=True).mean())


def mean_psnr_y(supernet, genotype, batches: Iterable[Tuple[torch.Tensor, torch.Tensor]], crop_border: int) -> float:
    """Mean over ``batches`` (pairs of lq, gt already on the supernet's device) of ``psnr_y``."""
    values = [psnr_y(supernet, genotype, lq, gt, crop_border) for lq, gt in batches]
    return sum(values) / len(values)
