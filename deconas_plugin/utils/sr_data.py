"""Shared helpers of ``tools/prepare_benchmark.py`` and ``tools/prepare_train.py``.

LR images are made as in the MATLAB SR protocol: modcrop the HR image to a multiple of the
scale, then ``imresize(hr, 1/s, 'bicubic')`` (antialiased, MATLAB-compatible,
``basicsr.utils.matlab_functions.imresize``) on the float image, rounded and clipped to uint8.
Never OpenCV's ``INTER_CUBIC``. Single-channel files stay single-channel.
"""
import os
import os.path as osp
from typing import List, Optional

import cv2
import numpy as np
from PIL import Image

from basicsr.data.transforms import mod_crop
from basicsr.utils.matlab_functions import imresize
from deconas_plugin.utils.checkpoint import TMP_PREFIX, atomic_open, atomic_write_text
from deconas_plugin.utils.y_protocol import SINGLE_CHANNEL_MODES

IMG_EXTENSIONS = ('.png', '.bmp', '.jpg', '.jpeg', '.tif', '.tiff', '.ppm', '.webp')
MIN_REWARD_STD = 10.0  # reward patches flatter than this (grey levels) are left out


class DataToolError(Exception):
    """A user-facing error of the data tools (bad input, inconsistent output)."""


def list_images(folder):
    """Sorted full paths of the image files directly in ``folder`` (hidden files skipped)."""
    if not osp.isdir(folder):
        raise DataToolError(f'input folder not found: {folder}')
    names = sorted(n for n in os.listdir(folder)
                   if not n.startswith('.') and n.lower().endswith(IMG_EXTENSIONS)
                   and osp.isfile(osp.join(folder, n)))
    if not names:
        raise DataToolError(f'no images ({", ".join(IMG_EXTENSIONS)}) in input folder: {folder}')
    return [osp.join(folder, n) for n in names]


def read_header(path):
    """(width, height, channels) of an image file from its header only, or None if unreadable."""
    try:
        with Image.open(path) as img:
            n_channels = 1 if img.mode in SINGLE_CHANNEL_MODES else 3  # cv2 reads palette PNGs as BGR
            return img.size[0], img.size[1], n_channels
    except (OSError, ValueError):
        return None


def read_image(path):
    """Read an 8-bit image as stored: BGR (H, W, 3), or gray (H, W) for a single-channel file."""
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DataToolError(f'cannot read image: {path}')
    if img.dtype != np.uint8:
        raise DataToolError(f'only 8-bit images are supported, got {img.dtype}: {path}')
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 3 and img.shape[2] != 3:
        raise DataToolError(f'expected a gray or 3-channel image, got {img.shape[2]} channels: {path}')
    return img


def channels(img):
    return 1 if img.ndim == 2 else img.shape[2]


def bicubic_downscale(img, scale):
    """MATLAB ``imresize(img, 1/scale, 'bicubic')`` of a uint8 image (HxW or HxWx3), uint8 out.

    ``img`` must already be modcropped to a multiple of ``scale``.
    """
    h, w = img.shape[:2]
    if h % scale or w % scale:
        raise ValueError(f'image size {w}x{h} is not a multiple of the scale {scale}; modcrop first')
    out = imresize(img.astype(np.float32) / 255., 1 / scale)
    out = np.clip((out * 255.).round(), 0, 255).astype(np.uint8)
    if out.shape[:2] != (h // scale, w // scale):  # guards against float rounding of the size
        raise RuntimeError(f'imresize returned {out.shape[:2]}, expected {(h // scale, w // scale)}')
    return out


def has_image(path, width, height, n_channels=None):
    """True if ``path`` is a readable image of the given size (and channel count)."""
    if not osp.isfile(path):
        return False
    header = read_header(path)
    if header is None:
        return False
    if (header[0], header[1]) != (width, height):
        return False
    return n_channels is None or header[2] == n_channels


def write_png_atomic(img, path, compression=3):
    """Write a PNG to a hidden temporary file in the same folder, then rename it into place."""
    ok, buf = cv2.imencode('.png', img, [cv2.IMWRITE_PNG_COMPRESSION, compression])
    if not ok:
        raise DataToolError(f'cannot encode PNG for {path}')
    with atomic_open(path) as f:
        f.write(buf.tobytes())


def remove_stale_tmp(folder):
    """Delete temporary files left in ``folder`` by an interrupted run."""
    if not osp.isdir(folder):
        return
    for name in os.listdir(folder):
        if name.startswith(TMP_PREFIX) and name.endswith('.part'):
            os.remove(osp.join(folder, name))


def png_name(path):
    """Output file name of an input image: same stem, always PNG (lossless)."""
    return osp.splitext(osp.basename(path))[0] + '.png'


def prepare_pair(hr_path, gt_dir, lr_dir, scale, compression=3):
    """Write ``gt_dir/<name>.png`` (HR modcropped to ``scale``) and ``lr_dir/<name>.png`` (its
    MATLAB-bicubic LR). Files already there with the right size are kept.

    Returns:
        str: 'skipped' or 'written'.
    """
    header = read_header(hr_path)
    if header is None:
        raise DataToolError(f'cannot read image: {hr_path}')
    w, h, c = header
    name = png_name(hr_path)
    gt_path, lr_path = osp.join(gt_dir, name), osp.join(lr_dir, name)
    wm, hm = w - w % scale, h - h % scale
    if has_image(gt_path, wm, hm, c) and has_image(lr_path, wm // scale, hm // scale, c):
        return 'skipped'
    hr = mod_crop(read_image(hr_path), scale)
    lr = bicubic_downscale(hr, scale)
    write_png_atomic(hr, gt_path, compression)
    write_png_atomic(lr, lr_path, compression)
    return 'written'


def prepare_pairs(paths: List[str], output_dir: str, scales, compression: int = 3, name: str = '') -> dict:
    """``prepare_pair`` of every HR image of ``paths`` at every scale into ``output_dir/GTmod<s>`` and
    ``output_dir/LRbicx<s>`` (temporary files of an interrupted run removed first); returns
    ``{'written': n, 'skipped': m}``."""
    from tqdm import tqdm
    counts = {'written': 0, 'skipped': 0}
    for scale in scales:
        gt_dir, lr_dir = osp.join(output_dir, f'GTmod{scale}'), osp.join(output_dir, f'LRbicx{scale}')
        remove_stale_tmp(gt_dir)
        remove_stale_tmp(lr_dir)
        for path in tqdm(paths, desc=f'{name} x{scale}', unit='img', disable=not paths):
            counts[prepare_pair(path, gt_dir, lr_dir, scale, compression)] += 1
    return counts


def prepared_test_set(folder: str, scale: int, name: Optional[str] = None) -> dict:
    """BasicSR dataset options (a disk PairedImageDataset) of a test set that
    ``tools/prepare_benchmark.py`` wrote to ``folder`` (``GTmod<s>`` / ``LRbicx<s>``), named after the
    folder unless ``name`` is given; ``ValueError`` naming the folder and the command that makes it."""
    folder = osp.abspath(folder)
    gt, lq = osp.join(folder, f'GTmod{scale}'), osp.join(folder, f'LRbicx{scale}')
    if not (osp.isdir(gt) and osp.isdir(lq)):
        raise ValueError(f'test set {folder} has no GTmod{scale}/LRbicx{scale} folders: prepare it with '
                         f'python tools/prepare_benchmark.py --input <HR folder> --output {folder} --scales {scale}')
    return {'name': name or osp.basename(osp.normpath(folder)), 'type': 'PairedImageDataset', 'dataroot_gt': gt,
            'dataroot_lq': lq, 'io_backend': {'type': 'disk'}}


def write_textured_meta_info(hr_folder: str, keys: List[str], path: str, min_std: float = MIN_REWARD_STD) -> int:
    """List the sub-images of ``hr_folder`` whose pixel std is at least ``min_std`` (BasicSR's
    ``meta_info_file`` of a PairedImageDataset); returns how many were kept.

    Near-constant patches (sky, background) have a very high PSNR whose batch-to-batch spread
    (several dB) would drown the differences between genotypes.
    """
    kept = []
    for key in keys:
        img = cv2.imread(osp.join(hr_folder, f'{key}.png'), cv2.IMREAD_UNCHANGED)
        if img is not None and float(img.std()) >= min_std:
            kept.append(f'{key}.png ({img.shape[0]},{img.shape[1]},{1 if img.ndim == 2 else img.shape[2]})\n')
    if not kept:
        raise DataToolError(f'no textured reward patch in {hr_folder}')
    atomic_write_text(path, ''.join(kept))
    return len(kept)
