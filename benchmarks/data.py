"""Section 5, ``data``: ``PairedImageDataset`` (train mode: crop, flips, rotations) samples/s from LMDB vs
from folders of the same sub-images (made with ``tools/prepare_train.py``), and from LMDBs of PNG level 1
vs 0; and ms per reward patch from whole DIV2K-sized images vs from their 480-px sub-images in an LMDB."""
import os
import os.path as osp
import random
import shutil
import statistics
import tempfile
import time
from typing import Optional

import torch

from deconas_plugin.utils.cli import load_tool

from .common import fmt, quiet, say
from .timing import timed


def make_subimage_sets(root: str, images: Optional[int] = None, crop: int = 192, step: int = 96) -> dict:
    """HR/LR x2 sub-image folders and LMDBs of the embedded train split, under ``root``."""
    from deconas_plugin.utils.embedded_data import SPLITS, prepare_embedded
    tool = load_tool('prepare_train')
    layout, prepare_train = tool.layout, tool.prepare_train
    names = SPLITS['train'] if images is None else SPLITS['train'][:images]
    prepare_embedded(osp.join(root, 'embedded'), scales=(), splits={'train': names})  # HR only
    out = osp.join(root, 'sub')
    summary = prepare_train(osp.join(root, 'embedded', 'train', 'HR'), out, [2], name='bench', crop=crop, step=step,
                            n_thread=1, lmdb=True)
    return {'dirs': layout(out, 'bench', [2]), 'num_subimages': len(summary['keys']), 'crop': crop, 'step': step,
            'images': list(names)}


def same_sample(a, i: int, b, j: int) -> bool:
    """Whether item ``i`` of dataset ``a`` and item ``j`` of ``b`` are the same sample (crop and flips drawn with
    the same seed)."""
    state = random.getstate()
    items = []
    for ds, k in ((a, i), (b, j)):
        random.seed(1)
        items.append(ds[k])
    random.setstate(state)
    return all(torch.equal(items[0][key], items[1][key]) for key in ('gt', 'lq'))


def seconds_per_sample(datasets: dict, order: dict, chunk: int) -> dict:
    """Median seconds per sample of each dataset, reading its indices ``order[key]`` in chunks of ``chunk``,
    the datasets interleaved (ABBA)."""
    keys = list(datasets)
    times = {k: [] for k in keys}
    for i, start in enumerate(range(0, len(order[keys[0]]), chunk)):
        for key in (keys if i % 2 == 0 else keys[::-1]):
            ds, idx = datasets[key], order[key][start:start + chunk]
            times[key].append(timed(lambda: [ds[j] for j in idx], torch.device('cpu')) / len(idx))
    return {k: statistics.median(v) for k, v in times.items()}


def bench_data(cfg: dict, device: torch.device, workdir: Optional[str] = None) -> dict:
    from basicsr.data.paired_image_dataset import PairedImageDataset
    tmp = tempfile.mkdtemp(prefix='deconas_bench_data_', dir=workdir)
    try:
        t0 = time.perf_counter()
        with quiet():
            sets = make_subimage_sets(tmp, cfg['data_images'])  # quiet: tqdm bars and LMDB logs
        prep_s = time.perf_counter() - t0
        dirs = sets['dirs']
        common = {'name': 'bench', 'type': 'PairedImageDataset', 'phase': 'train', 'scale': 2, 'gt_size': 96,
                  'use_hflip': True, 'use_rot': True, 'filename_tmpl': '{}'}
        datasets = {
            'lmdb': PairedImageDataset({**common, 'dataroot_gt': dirs['hr_lmdb'], 'dataroot_lq': dirs['lr2_lmdb'],
                                        'io_backend': {'type': 'lmdb'}}),
            'disk': PairedImageDataset({**common, 'dataroot_gt': dirs['hr_sub'], 'dataroot_lq': dirs['lr2_sub'],
                                        'io_backend': {'type': 'disk'}}),
        }
        assert len(datasets['lmdb']) == len(datasets['disk']) == sets['num_subimages']
        # The same sub-images from both (the folder listing is in directory order, the LMDB's in key order).
        disk_index = {osp.basename(p['gt_path']): i for i, p in enumerate(datasets['disk'].paths)}
        lmdb_keys = [p['gt_path'] for p in datasets['lmdb'].paths]
        n, chunk = cfg['data_samples'], cfg['data_chunk']
        rng = random.Random(cfg['seed'])
        picks = [rng.randrange(sets['num_subimages']) for _ in range(n)]
        order = {'lmdb': picks, 'disk': [disk_index[f'{lmdb_keys[i]}.png'] for i in picks]}
        same = same_sample(datasets['lmdb'], picks[0], datasets['disk'], order['disk'][0])
        rate = {k: 1 / v for k, v in seconds_per_sample(datasets, order, chunk).items()}
        say(f'  {sets["num_subimages"]} sub-images ({sets["crop"]}px, step {sets["step"]}): LMDB '
             f'{rate["lmdb"]:.0f} samples/s, disk {rate["disk"]:.0f} samples/s')
        out = {'lmdb_samples_per_s': rate['lmdb'], 'disk_samples_per_s': rate['disk'],
               'ratio_lmdb_over_disk': rate['lmdb'] / rate['disk'], 'num_subimages': sets['num_subimages'],
               'samples': n, 'gt_size': 96, 'subimage_crop': sets['crop'], 'subimage_step': sets['step'],
               'images': sets['images'], 'same_samples': same, 'prepare_s': prep_s, 'num_workers': 0}
        out['lmdb_level'] = _bench_lmdb_level(sets, common, cfg)
        out['reward'] = _bench_reward_patches(osp.join(tmp, 'reward'), cfg)
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _bench_lmdb_level(sets: dict, common: dict, cfg: dict) -> dict:
    """Training samples/s from LMDBs of the same sub-images stored as PNG level 1 (BasicSR's) and level 0
    (``tools/prepare_train.py --lmdb-compression 0``): the pixels, so every sample, are the same."""
    from basicsr.data.paired_image_dataset import PairedImageDataset
    tool = load_tool('prepare_train')
    dirs, keys = sets['dirs'], [osp.splitext(f)[0] for f in sorted(os.listdir(sets['dirs']['hr_sub']))]
    root = osp.dirname(dirs['hr_lmdb'])
    paths = {}
    with quiet():
        for level in (1, 0):
            paths[level] = (osp.join(root, f'level{level}_HR.lmdb'), osp.join(root, f'level{level}_LR.lmdb'))
            tool.build_lmdb(dirs['hr_sub'], paths[level][0], keys, 1, level)
            tool.build_lmdb(dirs['lr2_sub'], paths[level][1], keys, 1, level)
    datasets = {level: PairedImageDataset({**common, 'dataroot_gt': gt, 'dataroot_lq': lq,
                                           'io_backend': {'type': 'lmdb'}}) for level, (gt, lq) in paths.items()}
    rng = random.Random(cfg['seed'])
    picks = [rng.randrange(len(datasets[1])) for _ in range(cfg['data_samples'])]
    rate = {level: 1 / v for level, v in seconds_per_sample(datasets, {1: picks, 0: picks}, cfg['data_chunk']).items()}
    size = {level: sum(os.path.getsize(osp.join(p, 'data.mdb')) for p in paths[level]) for level in paths}
    say(f'  LMDB PNG level 1 {rate[1]:.0f} samples/s, level 0 {rate[0]:.0f} samples/s')
    return {'level1_samples_per_s': rate[1], 'level0_samples_per_s': rate[0], 'ratio_level0_over_level1':
            rate[0] / rate[1], 'level1_bytes': size[1], 'level0_bytes': size[0],
            'same_samples': same_sample(datasets[1], 0, datasets[0], 0)}


def _bench_reward_patches(root: str, cfg: dict) -> dict:
    """ms per reward patch (96 px HR, a random crop, as the search loads them every controller step)
    from whole DIV2K-sized images vs from their 480-px sub-images in an LMDB (``tools/prepare_train.py``).

    The whole images are the embedded photos resized to DIV2K-valid's 2040x1356 (a stand-in: the
    benchmark needs no download); a patch of a whole image decodes the whole PNG.
    """
    import cv2
    from basicsr.data.paired_image_dataset import PairedImageDataset

    from deconas_plugin.utils.embedded_data import SPLITS, prepare_embedded
    from deconas_plugin.utils.sr_data import write_png_atomic
    images = SPLITS['train'][:cfg['reward_images']]
    with quiet():
        photos = prepare_embedded(osp.join(root, 'embedded'), scales=(), splits={'train': images})['train']
        whole_hr = osp.join(root, 'whole', 'HR')
        os.makedirs(whole_hr)
        for name in images:
            img = cv2.imread(osp.join(photos, 'HR', f'{name}.png'), cv2.IMREAD_COLOR)
            write_png_atomic(cv2.resize(img, (2040, 1356), interpolation=cv2.INTER_CUBIC),
                             osp.join(whole_hr, f'{name}.png'))
        tool = load_tool('prepare_train')
        tool.prepare_train(whole_hr, osp.join(root, 'sub'), [2], name='reward', crop=480, step=240, n_thread=1,
                           lmdb=True)
        dirs = tool.layout(osp.join(root, 'sub'), 'reward', [2])
    common = {'name': 'reward', 'type': 'PairedImageDataset', 'phase': 'train', 'scale': 2, 'gt_size': 96,
              'use_hflip': False, 'use_rot': False, 'filename_tmpl': '{}'}
    lr_whole = osp.join(root, 'sub', 'reward_train_LR_bicubic', 'X2')  # the whole-image LR prepare_train made
    datasets = {
        'whole': PairedImageDataset({**common, 'dataroot_gt': whole_hr, 'dataroot_lq': lr_whole,
                                     'filename_tmpl': '{}x2', 'io_backend': {'type': 'disk'}}),
        'sub_lmdb': PairedImageDataset({**common, 'dataroot_gt': dirs['hr_lmdb'], 'dataroot_lq': dirs['lr2_lmdb'],
                                        'io_backend': {'type': 'lmdb'}}),
    }
    rng = random.Random(cfg['seed'])
    order = {k: [rng.randrange(len(ds)) for _ in range(cfg['reward_reps'] * cfg['reward_patches'])]
             for k, ds in datasets.items()}
    # one controller step's patches from each in turn
    ms = {k: v * 1e3 for k, v in seconds_per_sample(datasets, order, cfg['reward_patches']).items()}
    say(f'  reward patches: whole {ms["whole"]:.1f} ms, 480-px sub-images (LMDB) {ms["sub_lmdb"]:.1f} ms per patch')
    return {'whole_ms_per_patch': ms['whole'], 'sub_lmdb_ms_per_patch': ms['sub_lmdb'],
            'speedup': ms['whole'] / ms['sub_lmdb'], 'image_size': [2040, 1356], 'images': len(images),
            'num_subimages': len(datasets['sub_lmdb']), 'patches_per_step': cfg['reward_patches']}


def md_data(s, cfg, result):
    return [f'{s["num_subimages"]} sub-images ({s["subimage_crop"]} px HR, step {s["subimage_step"]}) of the embedded '
            f'train split ({", ".join(s["images"])}), x2, made with `tools/prepare_train.py`; random crop '
            f'gt_size {s["gt_size"]}, flips + rotations, num_workers 0, {s["samples"]} samples per backend '
            f'(interleaved chunks, median). Same sample from both backends: {fmt(s["same_samples"])}.', '',
            '| backend | samples/s |', '|---|---:|',
            f'| LMDB | {s["lmdb_samples_per_s"]:.0f} |', f'| disk folders | {s["disk_samples_per_s"]:.0f} |',
            f'| ratio LMDB / disk | {s["ratio_lmdb_over_disk"]:.2f} |'] + md_level(s.get('lmdb_level')) + \
        md_reward(s.get('reward'))


def md_level(r):
    if not r:
        return []
    return ['', 'The same sub-images in LMDBs of PNG level 1 (BasicSR\'s `make_lmdb_from_imgs` default) and level 0 '
            f'(`tools/prepare_train.py --lmdb-compression 0`), same samples: {fmt(r["same_samples"])}.', '',
            '| LMDB images | samples/s | size (HR + LR) |', '|---|---:|---:|',
            f'| PNG level 1 | {r["level1_samples_per_s"]:.0f} | {r["level1_bytes"] / 2**20:.1f} MiB |',
            f'| PNG level 0 | {r["level0_samples_per_s"]:.0f} | {r["level0_bytes"] / 2**20:.1f} MiB |',
            f'| ratio level 0 / level 1 | {r["ratio_level0_over_level1"]:.2f} | |']


def md_reward(r):
    if not r:
        return []
    return ['', f'Reward patches ({r["patches_per_step"]} per controller step, 96 px HR random crops, x2) from '
            f'{r["images"]} DIV2K-sized ({r["image_size"][0]}x{r["image_size"][1]}) stand-in images: whole PNGs vs '
            f'their {r["num_subimages"]} 480-px sub-images in an LMDB (`tools/prepare_train.py`).', '',
            '| source | ms per patch |', '|---|---:|',
            f'| whole images (disk) | {r["whole_ms_per_patch"]:.1f} |',
            f'| 480-px sub-images (LMDB) | {r["sub_lmdb_ms_per_patch"]:.1f} |',
            f'| speedup | {r["speedup"]:.1f}x |']
