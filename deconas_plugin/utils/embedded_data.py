"""An SR dataset that needs no download: scikit-image's bundled photos, split without overlap.

``prepare_embedded(root)`` writes BasicSR folders under ``root``::

    train/HR, train/GTmod{s}, train/LRbicx{s}     # training images
    reward/HR, reward/GTmod{s}, reward/LRbicx{s}  # the search's reward-validation images
    test/HR, test/GTmod{s}, test/LRbicx{s}        # held-out test images

Every image is a file of the scikit-image wheel itself (``BUNDLED``): none needs ``pooch`` or a
network. LR images are MATLAB-bicubic (``sr_data.prepare_pair``). Gray photos stay single-channel,
so the test split also exercises the gray-image protocol. Existing files are reused.

Why each image is where it is:

* ``train``: the photos the networks learn from (search child steps, retraining). Kept as they were
  when the demo's search and benchmarks were measured; ``colorwheel`` is synthetic, which is harmless
  for training but would not be for testing.
* ``reward``: two textured photos (a cup of coffee, a brick wall) that the search scores genotypes
  on; a flat or synthetic reward image gives near-constant, noisy PSNR rewards.
* ``test``: every other natural photo bundled with scikit-image, minus the near-flat ones and the
  second view of the stereo pair (``UNUSED``): colour (``chelsea``: a cat's fur; ``motorcycle``:
  a street scene, the left view of the stereo pair) and gray (``camera``: a man with a camera;
  ``coins``: Greek coins; ``gravel`` and ``grass``: natural textures; ``page``: a scanned printed
  page). MATLAB-bicubic x2 on them (512-px centre crops) spans 21.7 (page) to 35.3 dB (chelsea)
  PSNR-Y, so no single smooth image decides the mean. Neither training nor rewards see any of them.
"""
import os.path as osp

import cv2
import numpy as np
import skimage.data

from .sr_data import prepare_pair, write_png_atomic

SPLITS = {
    'train': ('astronaut', 'rocket', 'hubble_deep_field', 'immunohistochemistry', 'retina', 'colorwheel'),
    'reward': ('coffee', 'brick'),
    'test': ('chelsea', 'motorcycle', 'camera', 'coins', 'gravel', 'grass', 'page'),
}

# Bundled images left out, and why (bicubic x2 PSNR-Y of a 512-px centre crop, in dB).
UNUSED = {
    'clock': 'motion-blurred and smooth (bicubic 46.8 dB): one such image decides a small mean',
    'moon': 'low-contrast (HR std 13 grey levels, bicubic 42.7 dB)',
    'cell': 'a quantitative phase image, nearly flat (bicubic 54 dB)',
    'microaneurysms': 'a 102-px medical crop, nearly flat (bicubic 43.8 dB)',
    'motorcycle_right': 'the right view of the stereo pair: the same scene as the test image motorcycle',
    'text': 'a corner-detection picture of uncertain origin (may be synthetic)',
    'horse, logo, phantom, chessboard': 'synthetic',
}

# name -> (file in scikit-image's data folder, loader). Files absent from the wheel would be downloaded.
BUNDLED = {
    'astronaut': ('astronaut.png', skimage.data.astronaut),
    'rocket': ('rocket.jpg', skimage.data.rocket),
    'hubble_deep_field': ('hubble_deep_field.jpg', skimage.data.hubble_deep_field),
    'immunohistochemistry': ('ihc.png', skimage.data.immunohistochemistry),
    'retina': ('retina.jpg', skimage.data.retina),
    'colorwheel': ('color.png', skimage.data.colorwheel),
    'coffee': ('coffee.png', skimage.data.coffee),
    'brick': ('brick.png', skimage.data.brick),
    'chelsea': ('chelsea.png', skimage.data.chelsea),
    'motorcycle': ('motorcycle_left.png', lambda: skimage.data.stereo_motorcycle()[0]),
    'camera': ('camera.png', skimage.data.camera),
    'coins': ('coins.png', skimage.data.coins),
    'gravel': ('gravel.png', skimage.data.gravel),
    'grass': ('grass.png', skimage.data.grass),
    'page': ('page.png', skimage.data.page),
}


def bundled_path(name: str) -> str:
    """The file of photo ``name`` in the installed scikit-image; ValueError when it is not bundled."""
    if name not in BUNDLED:
        raise ValueError(f'unknown embedded photo {name!r}; known: {", ".join(sorted(BUNDLED))}')
    path = osp.join(osp.dirname(skimage.data.__file__), BUNDLED[name][0])
    if not osp.isfile(path):
        raise ValueError(f'embedded photo {name!r}: {path} is not in this scikit-image installation '
                         '(it would need a download)')
    return path


def _photo(name: str, max_side: int) -> np.ndarray:
    """The bundled photo ``name`` as uint8 BGR (H, W, 3) or gray (H, W), centre-cropped to at most ``max_side``."""
    bundled_path(name)
    img = BUNDLED[name][1]()
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
