"""An SR dataset that needs no download: scikit-image's bundled photos, split without overlap.

``prepare_embedded(root)`` writes BasicSR folders under ``root``::

    train/HR, train/GTmod{s}, train/LRbicx{s}     # training images
    reward/HR, reward/GTmod{s}, reward/LRbicx{s}  # the search's reward-validation images
    test/HR, test/GTmod{s}, test/LRbicx{s}        # held-out test images

LR images are MATLAB-bicubic (``sr_data.prepare_pair``). ``camera`` is kept single-channel, so the
test split also exercises the gray-image protocol. Existing files are reused.
"""
import os.path as osp

import cv2
import numpy as np
import skimage.data

from .sr_data import prepare_pair, write_png_atomic

SPLITS = {
    'train': ('astronaut', 'rocket', 'hubble_deep_field', 'immunohistochemistry', 'retina', 'colorwheel'),
    # Textured photos: a flat or synthetic reward image gives near-constant, noisy PSNR rewards.
    'reward': ('coffee', 'brick'),
    'test': ('chelsea', 'camera', 'clock'),
}


def _photo(name: str, max_side: int) -> np.ndarray:
    """The bundled photo ``name`` as uint8 BGR (or gray), centre-cropped to at most ``max_side``."""
    img = getattr(skimage.data, name)()
    if img.ndim == 3:
        img = cv2.cvtColor(img[..., :3], cv2.COLOR_RGB2BGR)
    h, w = img.shape[:2]
    top, left = max(0, (h - max_side) // 2), max(0, (w - max_side) // 2)
    return np.ascontiguousarray(img[top:top + max_side, left:left + max_side])


def prepare_embedded(root: str, scales=(2, ), max_side: int = 512, splits=None) -> dict:
    """Write the embedded dataset under ``root``; returns ``{split: folder}``."""
    splits = SPLITS if splits is None else splits
    out = {}
    for split, names in splits.items():
        folder = osp.join(root, split)
        for name in names:
            hr_path = osp.join(folder, 'HR', f'{name}.png')
            if not osp.exists(hr_path):
                write_png_atomic(_photo(name, max_side), hr_path)
            for s in scales:
                prepare_pair(hr_path, osp.join(folder, f'GTmod{s}'), osp.join(folder, f'LRbicx{s}'), s)
        out[split] = folder
    return out
