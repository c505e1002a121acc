"""Gray-image rule of the SR evaluation protocol.

A single-channel test image (Set14's ``bridge.png``) is evaluated on its own values: they are its
Y. Only a colour image goes through BasicSR's RGB -> Y (BT.601, 16..235) conversion. BasicSR
reads every file as 3-channel BGR, so a gray file would otherwise be replicated and its range
compressed by the Y conversion (about +1.3 dB PSNR on ``bridge.png``).

The fix needs no new metric: ``basicsr.utils.tensor2img`` turns a 1-channel tensor into a 2-D
uint8 image, and ``calculate_psnr``/``calculate_ssim`` with ``test_y_channel: true`` use a 2-D
image's values unchanged (``metric_util.to_y_channel`` only converts 3-channel images). So the
model hands 1-channel visuals to the metrics for such images (see ``DeCoNASSRModel``).

A gray image stored as RGB (Set14 ``man.png``, seven Urban100 images) is a colour file and is
converted like any colour image.
"""
import os.path as osp
from functools import lru_cache

import torch
from PIL import Image

SINGLE_CHANNEL_MODES = ('L', 'I;16', 'I;16B', 'I;16L', 'I', '1')

# Full-range luma (BT.601 weights, no offset): maps a gray value g replicated as (g, g, g) to g.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


@lru_cache(maxsize=4096)
def is_single_channel(path):
    """True if ``path`` is an image file stored with one channel (PNG mode L / I;16 / 1).

    Reads only the header. Anything that is not a readable file on disk (for example an LMDB
    key) is treated as a colour image.
    """
    if not isinstance(path, str) or not osp.isfile(path):
        return False
    try:
        with Image.open(path) as img:
            return img.mode in SINGLE_CHANNEL_MODES
    except OSError:
        return False


def rgb_to_luma(tensor):
    """(B, 3, H, W) RGB in [0, 1] -> (B, 1, H, W) full-range luma 0.299R + 0.587G + 0.114B.

    A 1-channel tensor is returned unchanged. Computed in float64, so a replicated gray image
    (R = G = B) maps back to its own values.
    """
    if tensor.dim() != 4:
        raise ValueError(f'Expected a (B, C, H, W) tensor, got shape {tuple(tensor.shape)}')
    if tensor.size(1) == 1:
        return tensor
    if tensor.size(1) != 3:
        raise ValueError(f'Expected 1 or 3 channels, got {tensor.size(1)}')
    weights = torch.tensor(LUMA_WEIGHTS, dtype=torch.float64, device=tensor.device).view(1, 3, 1, 1)
    luma = (tensor.to(torch.float64) * weights).sum(dim=1, keepdim=True)
    return luma.to(tensor.dtype)


def gray_visuals(visuals):
    """Visuals of a single-channel test image -> 1-channel tensors for the metrics.

    ``gt``: the image's own gray values (first channel of BasicSR's replicated 3-channel load).
    ``result``: full-range luma of the network output. ``lq`` and other entries stay unchanged.
    """
    out = visuals.copy()
    if 'gt' in out:
        out['gt'] = out['gt'][:, :1]
    if 'result' in out:
        out['result'] = rgb_to_luma(out['result'])
    return out
