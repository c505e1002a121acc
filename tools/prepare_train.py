"""DIV2K-style training data: MATLAB-bicubic LR, sub-images, LMDBs (BasicSR's layout).

Follows BasicSR's DIV2K pipeline: the LR of each *whole* HR image is made first (MATLAB
``imresize``, antialiased bicubic, like DIV2K's official ``DIV2K_train_LR_bicubic``), then HR and
LR are cut into overlapping sub-images at matching positions (HR crop/step, LR crop/s and step/s,
as ``scripts/data_preparation/extract_subimages.py``). Cutting the LR of the whole image, rather
than downscaling each HR sub-image, keeps every LR pixel identical to the LR the network sees at
test time: downscaling a crop would replace the real neighbours at the crop border by the
kernel's symmetric padding (a few pixels per side, 4*s/2 at x s).

HR images are modcropped to the least common multiple of the scales so that one HR sub-image set
serves every scale. Layout, for ``--name DIV2K``:

    <output>/DIV2K_train_HR_sub/<img>_s001.png ...
    <output>/DIV2K_train_LR_bicubic/X{s}/<img>x{s}.png         (whole-image LR)
    <output>/DIV2K_train_LR_bicubic/X{s}_sub/<img>_s001.png ...
    <output>/DIV2K_train_HR_sub.lmdb, <output>/DIV2K_train_LR_bicubic_X{s}_sub.lmdb
    <output>/DIV2K_val/GTmod{s}/, <output>/DIV2K_val/LRbicx{s}/  (with --val-count K)

``--val-count K`` holds out the last K images (sorted by name) as a folder-form validation set
(modcropped HR + LR, the benchmark layout); they never enter the training sub-images.

Idempotent: files already there with the right size are kept; an LMDB whose meta_info.txt lists
exactly the expected keys is kept. Files are written under temporary names and renamed; an LMDB
is built in a temporary folder and renamed when complete.

Example (DIV2K's 800 training images; where to download them: docs/data.md):
    python tools/prepare_train.py --input <DIV2K_train_HR> --output datasets/DIV2K --scales 2 3 4
"""
import math
import os
import os.path as osp
import shutil
import sys
from functools import partial, reduce
from multiprocessing import Pool

import numpy as np
from tqdm import tqdm

if __package__ in (None, ''):  # run as a script: make the project importable
    sys.path.insert(0, osp.abspath(osp.join(__file__, osp.pardir, osp.pardir)))

from deconas_plugin.utils.cli import run_tool, tool_parser  # noqa: E402  (the package first: its torchvision shim before basicsr)
from deconas_plugin.utils.sr_data import (DataToolError, bicubic_downscale, has_image, list_images,  # noqa: E402
                                          prepare_pairs, read_header, read_image, remove_stale_tmp,
                                          write_png_atomic)

TMP_LMDB_PREFIX = '.tmp_'


def crop_positions(length, crop, step, thresh=0):
    """Top-left positions of the sliding window, as BasicSR's extract_subimages.py."""
    if length < crop:
        return []
    pos = list(range(0, length - crop + 1, step))
    if length - (pos[-1] + crop) > thresh:
        pos.append(length - crop)
    return pos


def layout(output, name, scales):
    d = {'hr_sub': osp.join(output, f'{name}_train_HR_sub'),
         'hr_lmdb': osp.join(output, f'{name}_train_HR_sub.lmdb'),
         'val': osp.join(output, f'{name}_val')}
    for s in scales:
        d[f'lr{s}'] = osp.join(output, f'{name}_train_LR_bicubic', f'X{s}')
        d[f'lr{s}_sub'] = osp.join(output, f'{name}_train_LR_bicubic', f'X{s}_sub')
        d[f'lr{s}_lmdb'] = osp.join(output, f'{name}_train_LR_bicubic_X{s}_sub.lmdb')
    return d


def plan_image(path, mod, crop, step, thresh):
    """(stem, (h, w) after modcrop, channels, [(index, y, x), ...]) from the header only."""
    header = read_header(path)
    if header is None:
        raise DataToolError(f'cannot read image: {path}')
    w, h, c = header
    h, w = h - h % mod, w - w % mod
    stem = osp.splitext(osp.basename(path))[0]
    ys, xs = crop_positions(h, crop, step, thresh), crop_positions(w, crop, step, thresh)
    boxes = [(i + 1, y, x) for i, (y, x) in enumerate((y, x) for y in ys for x in xs)]
    return stem, (h, w), c, boxes


def process_image(path, dirs, scales, mod, crop, step, thresh, compression):
    """Write whole-image LR and the HR/LR sub-images of one training image.

    Returns (stem, keys, n_written) where keys are the sub-image names without extension.
    """
    stem, (h, w), c, boxes = plan_image(path, mod, crop, step, thresh)
    keys = [f'{stem}_s{i:03d}' for i, _, _ in boxes]
    if not boxes:
        return stem, keys, 0
    todo_hr = [b for b in boxes if not has_image(osp.join(dirs['hr_sub'], f'{stem}_s{b[0]:03d}.png'), crop, crop, c)]
    todo_lr = {}
    for s in scales:
        todo_lr[s] = [b for b in boxes
                      if not has_image(osp.join(dirs[f'lr{s}_sub'], f'{stem}_s{b[0]:03d}.png'), crop // s, crop // s, c)]
    whole_lr_ok = {s: has_image(osp.join(dirs[f'lr{s}'], f'{stem}x{s}.png'), w // s, h // s, c) for s in scales}
    if not todo_hr and not any(todo_lr.values()) and all(whole_lr_ok.values()):
        return stem, keys, 0

    hr = read_image(path)[:h, :w, ...]
    n = 0
    for i, y, x in todo_hr:
        write_png_atomic(np.ascontiguousarray(hr[y:y + crop, x:x + crop, ...]),
                         osp.join(dirs['hr_sub'], f'{stem}_s{i:03d}.png'), compression)
        n += 1
    for s in scales:
        whole_path = osp.join(dirs[f'lr{s}'], f'{stem}x{s}.png')
        if whole_lr_ok[s] and todo_lr[s]:
            lr = read_image(whole_path)
        elif not whole_lr_ok[s]:
            lr = bicubic_downscale(hr, s)
            write_png_atomic(lr, whole_path, compression)
            n += 1
        cs = crop // s
        for i, y, x in todo_lr[s]:
            write_png_atomic(np.ascontiguousarray(lr[y // s:y // s + cs, x // s:x // s + cs, ...]),
                             osp.join(dirs[f'lr{s}_sub'], f'{stem}_s{i:03d}.png'), compression)
            n += 1
    return stem, keys, n


def _worker(path, kwargs):
    import torch
    torch.set_num_threads(1)
    return process_image(path, **kwargs)


def lmdb_is_complete(lmdb_path, keys, compression=1):
    """True when meta_info.txt lists exactly ``keys``, each stored at PNG level ``compression``."""
    meta = osp.join(lmdb_path, 'meta_info.txt')
    if not (osp.isfile(meta) and osp.isfile(osp.join(lmdb_path, 'data.mdb'))):
        return False
    with open(meta) as f:
        listed = [line.split() for line in f if line.strip()]
    return ([fields[0] for fields in listed] == [f'{k}.png' for k in keys]
            and all(fields[-1] == str(compression) for fields in listed))


def build_lmdb(folder, lmdb_path, keys, n_thread, compression=1):
    """LMDB of ``folder/<key>.png`` for ``keys`` (BasicSR's make_lmdb_from_imgs, images stored as PNG
    of level ``compression``), built in a temporary folder and renamed into place. Kept as is if
    already complete."""
    from basicsr.utils.lmdb_util import make_lmdb_from_imgs

    if lmdb_is_complete(lmdb_path, keys, compression):
        print(f'{lmdb_path}: complete ({len(keys)} keys), kept')
        return False
    parent, base = osp.split(osp.abspath(lmdb_path))
    tmp = osp.join(parent, TMP_LMDB_PREFIX + base)  # ends with .lmdb, as make_lmdb_from_imgs requires
    if osp.exists(tmp):
        shutil.rmtree(tmp)
    names = [f'{k}.png' for k in keys]
    raw = 0
    for name in names:
        w, h, c = read_header(osp.join(folder, name))
        raw += w * h * c
    map_size = int(raw * 1.5) + (64 << 20)  # PNG never exceeds raw size by much; sparse on Linux
    make_lmdb_from_imgs(folder, tmp, names, keys, map_size=map_size,
                        multiprocessing_read=False, n_thread=n_thread, compress_level=compression)
    if osp.exists(lmdb_path):
        print(f'{lmdb_path}: outdated (keys or compression differ), replaced')
        shutil.rmtree(lmdb_path)
    os.replace(tmp, lmdb_path)
    return True


def prepare_train(input_dir, output, scales, name='DIV2K', crop=480, step=240, thresh=0, n_thread=1,
                  lmdb=True, val_count=0, limit=None, compression=3, lmdb_compression=1, images=None):
    """Run the whole preparation; returns a summary dict (also used by the tests). ``images``: the names of
    the images of ``input_dir`` to prepare (default: every one)."""
    scales = sorted(set(scales))
    if any(s < 2 for s in scales):
        raise DataToolError(f'scales must be integers >= 2, got {scales}')
    if step <= 0 or crop <= 0:
        raise DataToolError('--crop-size and --step must be positive')
    for s in scales:
        if crop % s or step % s:
            raise DataToolError(f'--crop-size {crop} and --step {step} must be multiples of every scale ({s})')
    for key, level in (('--compression', compression), ('--lmdb-compression', lmdb_compression)):
        if not 0 <= level <= 9:
            raise DataToolError(f'{key} must be a PNG compression level 0-9, got {level}')
    if limit is not None and limit < 1:
        raise DataToolError(f'--limit must be positive, got {limit}')
    paths = list_images(input_dir)
    if images is not None:
        paths = [p for p in paths if osp.basename(p) in set(images)]
    if limit is not None:
        paths = paths[:limit]
    if val_count < 0 or val_count >= len(paths):
        raise DataToolError(f'--val-count must be in [0, {len(paths) - 1}] for {len(paths)} images, got {val_count}')
    train_paths = paths[:len(paths) - val_count]
    val_paths = paths[len(paths) - val_count:]
    mod = reduce(lambda a, b: a * b // math.gcd(a, b), scales)
    dirs = layout(output, name, scales)
    for key in ['hr_sub'] + [f'lr{s}' for s in scales] + [f'lr{s}_sub' for s in scales]:
        os.makedirs(dirs[key], exist_ok=True)
        remove_stale_tmp(dirs[key])

    kwargs = dict(dirs=dirs, scales=scales, mod=mod, crop=crop, step=step, thresh=thresh, compression=compression)
    results = []
    with tqdm(total=len(train_paths), desc='sub-images', unit='img') as pbar:
        if n_thread > 1:
            with Pool(n_thread) as pool:
                for r in pool.imap_unordered(partial(_worker, kwargs=kwargs), train_paths):
                    results.append(r)
                    pbar.update(1)
        else:
            for p in train_paths:
                results.append(process_image(p, **kwargs))
                pbar.update(1)
    results.sort()
    too_small = [stem for stem, keys, _ in results if not keys]
    if too_small:
        print(f'warning: {len(too_small)} image(s) smaller than the crop size {crop}, no sub-images: '
              f'{", ".join(too_small)}')
    keys = [k for _, ks, _ in results for k in ks]
    if not keys:
        raise DataToolError(f'no sub-images: every training image is smaller than --crop-size {crop}')
    summary = {'train_images': [stem for stem, _, _ in results], 'keys': keys,
               'written': sum(n for _, _, n in results), 'val_images': [], 'lmdb_built': []}

    prepare_pairs(val_paths, dirs['val'], scales, compression, 'val')
    summary['val_images'] = [osp.splitext(osp.basename(p))[0] for p in val_paths]

    if lmdb:
        jobs = [(dirs['hr_sub'], dirs['hr_lmdb'])] + [(dirs[f'lr{s}_sub'], dirs[f'lr{s}_lmdb']) for s in scales]
        for folder, lmdb_path in jobs:
            if build_lmdb(folder, lmdb_path, keys, n_thread, lmdb_compression):
                summary['lmdb_built'].append(lmdb_path)
    return summary


def parse_args(argv=None):
    parser = tool_parser(__doc__)
    parser.add_argument('--input', required=True, help='folder of HR training images')
    parser.add_argument('--output', default='datasets/DIV2K', help='output folder (default: datasets/DIV2K)')
    parser.add_argument('--name', default='DIV2K', help='prefix of the output names (default: DIV2K)')
    parser.add_argument('--scales', type=int, nargs='+', default=[2, 3, 4])
    parser.add_argument('--crop-size', type=int, default=480, help='HR sub-image size (default 480)')
    parser.add_argument('--step', type=int, default=240, help='HR sliding-window step (default 240)')
    parser.add_argument('--thresh-size', type=int, default=0,
                        help='add a last window flush with the border if more than this many pixels remain (default 0)')
    parser.add_argument('--n-thread', type=int, default=min(4, os.cpu_count() or 1), help='worker processes')
    parser.add_argument('--no-lmdb', action='store_true', help='only write the sub-image folders')
    parser.add_argument('--val-count', type=int, default=0,
                        help='hold out the last K images (sorted) as a folder-form validation set')
    parser.add_argument('--limit', type=int, default=None, help='use only the first N images (sorted)')
    parser.add_argument('--compression', type=int, default=3, help='PNG compression level 0-9 (default 3)')
    parser.add_argument('--lmdb-compression', type=int, default=1,
                        help="PNG level of the images in the LMDBs (default 1, BasicSR's); 0 decodes faster for "
                        'more disk (both measured: docs/data.md)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    summary = prepare_train(args.input, args.output, args.scales, name=args.name, crop=args.crop_size,
                            step=args.step, thresh=args.thresh_size, n_thread=max(1, args.n_thread),
                            lmdb=not args.no_lmdb, val_count=args.val_count, limit=args.limit,
                            compression=args.compression, lmdb_compression=args.lmdb_compression)
    print(f'{args.output}: {len(summary["train_images"])} training images -> {len(summary["keys"])} sub-images '
          f'({summary["written"]} files written); {len(summary["val_images"])} validation images; '
          f'LMDBs built: {len(summary["lmdb_built"])}')


if __name__ == '__main__':
    run_tool(main, DataToolError)
