"""The data the stages read, made here once (``tools/gpu_evidence.py --prepare``) so that it travels to the
GPU machine with the call (``carry: [".gpu"]``) and no GPU minute goes to making LR images.

From ``../shared/datasets`` into ``.gpu/data`` (ignored by git), x2, BasicSR's MATLAB-bicubic protocol
(modcrop, then ``imresize``; ``tools/prepare_train.py`` and ``tools/prepare_benchmark.py``), PNG at
compression 9:

* ``train/``: HR sub-images (``TRAIN_CROP`` px, step ``TRAIN_CROP``) of the training images of
  ``train_small`` and their LR cut from each whole image's LR (the search's child steps and the retrains);
* ``reward/`` and ``eval/``: ``REWARD_CROP`` px HR tiles of held-out ``train_small`` images, the textured
  ones listed in ``meta_info.txt`` (the search's reward patches; the patches no reward used, on which the
  final policy is compared with uniform sampling);
* ``test/Set5``, ``test/Set14``, ``test/B100``: ``GTmod2`` / ``LRbicx2`` (B100: its first ``b100_images``
  images by name, to stay under the carry limit).

``train_small`` (27 images, sorted by name) is split by index: ``i % 9 == 4`` reward, ``i % 9 == 8`` eval,
the rest train (at most ``train_images``). ``prepared.json`` records the settings, the images of each
split and the measured size; a folder prepared with the same settings is kept.
"""
import json
import os
import os.path as osp
import shutil
import time
from typing import Dict, List, Optional

from deconas_plugin.utils.checkpoint import atomic_write_text
from .runner import ROOT, EvidenceError

SHARED = osp.normpath(osp.join(ROOT, '..', 'shared', 'datasets'))
SCALE = 2
TRAIN_CROP, REWARD_CROP = 256, 96  # HR px: GT patches of 128 px come from the first, 48x48 LR rewards from the second
CARRY_LIMIT_MB = 64 * 1.048576  # 64 MiB in MB: everything that travels with a call
DATA_LIMIT_MB = 56.0  # leaves room for .gpu's wheels and basicsr (about 4 MB) and the project's own files
FULL = {'train_images': 16, 'b100_images': 50, 'test_images': None, 'max_tiles': 160}
TINY = {'train_images': 2, 'b100_images': 1, 'test_images': 1, 'max_tiles': 6}


def split_train_small(names: List[str], train_images: Optional[int]) -> Dict[str, List[str]]:
    """``{'train', 'reward', 'eval'}`` names of ``train_small`` (see the module doc)."""
    names = sorted(names)
    out = {'reward': [n for i, n in enumerate(names) if i % 9 == 4],
           'eval': [n for i, n in enumerate(names) if i % 9 == 8]}
    held = set(out['reward']) | set(out['eval'])
    out['train'] = [n for n in names if n not in held][:train_images]
    return out


def folder_mb(path: str) -> float:
    return sum(osp.getsize(osp.join(d, f)) for d, _, files in os.walk(path) for f in files) / 1e6


def keep_evenly(meta_info: str, count: int, folders: List[str]) -> int:
    """Keep ``count`` evenly spaced lines of a ``meta_info.txt`` (every image keeps its share of the tiles: the
    derivation scores every listed tile once per genotype) and delete the tiles it no longer lists from
    ``folders`` (they need not travel); returns how many are kept."""
    with open(meta_info) as f:
        lines = f.readlines()
    if len(lines) > count:
        lines = [lines[i * len(lines) // count] for i in range(count)]
        atomic_write_text(meta_info, ''.join(lines))
    listed = {line.split(' ')[0] for line in lines}
    for folder in folders:
        for name in os.listdir(folder):
            if name not in listed:
                os.remove(osp.join(folder, name))
    return len(lines)


def prepare(out: str, shared: str = SHARED, tiny: bool = False, force: bool = False,
            limit_mb: float = DATA_LIMIT_MB, say=print) -> dict:
    """Write the data (see the module doc); returns ``prepared.json``'s content. EvidenceError names a
    missing input folder or a result over ``limit_mb``."""
    from deconas_plugin.utils.cli import load_tool
    from deconas_plugin.utils.sr_data import list_images, prepare_pairs, write_textured_meta_info
    sizes = TINY if tiny else FULL
    sources = {k: osp.join(shared, k, 'HR') for k in ('train_small', 'Set5', 'Set14', 'B100')}
    for key, path in sources.items():
        if not osp.isdir(path):
            raise EvidenceError(f'--data-root {shared}: no {key}/HR folder ({path}); pass as --data-root (or '
                                '$DECONAS_DATA) the datasets folder that holds train_small, Set5, Set14 and B100')
    want = {'scale': SCALE, 'train_crop': TRAIN_CROP, 'reward_crop': REWARD_CROP, 'tiny': tiny, **sizes}
    marker = osp.join(out, 'prepared.json')
    if osp.isfile(marker) and not force:
        with open(marker) as f:
            done = json.load(f)
        if all(done.get(k) == v for k, v in want.items()):
            say(f'{out}: prepared already ({done["size_mb"]:.1f} MB); --force remakes it')
            return done
    if osp.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    t0 = time.perf_counter()
    prepare_train = load_tool('prepare_train')
    names = [osp.basename(p) for p in list_images(sources['train_small'])]
    split = split_train_small(names, sizes['train_images'])
    if tiny:
        split = {k: v[:1] if k != 'train' else v for k, v in split.items()}
    for part, crop in (('train', TRAIN_CROP), ('reward', REWARD_CROP), ('eval', REWARD_CROP)):
        summary = prepare_train.prepare_train(sources['train_small'], osp.join(out, part), [SCALE], name=part,
                                              crop=crop, step=crop, n_thread=1, lmdb=False, compression=9,
                                              images=split[part])
        dirs = prepare_train.layout(osp.join(out, part), part, [SCALE])
        shutil.rmtree(dirs[f'lr{SCALE}'])  # the whole-image LR: its sub-images are cut, it need not travel
        if part != 'train':
            meta = osp.join(out, part, 'meta_info.txt')
            textured = write_textured_meta_info(dirs['hr_sub'], summary['keys'], meta)
            kept = keep_evenly(meta, sizes['max_tiles'], [dirs['hr_sub'], dirs[f'lr{SCALE}_sub']])
            say(f'  {part}: {kept} of {textured} textured tiles of {crop} px kept (of {len(summary["keys"])})')
        else:
            say(f'  train: {len(summary["keys"])} sub-images of {crop} px from {len(split["train"])} images')
        _check_size(out, limit_mb)
    for name in ('Set5', 'Set14', 'B100'):  # tools/prepare_benchmark.py's pairs, of the first images by name
        count = sizes['b100_images'] if name == 'B100' else sizes['test_images']
        prepare_pairs(list_images(sources[name])[:count], osp.join(out, 'test', name), [SCALE], compression=9,
                      name=name)
        _check_size(out, limit_mb)
    parts = {k: round(folder_mb(osp.join(out, k)), 2) for k in ('train', 'reward', 'eval', 'test')}
    result = dict(want, split=split, b100=sorted(os.listdir(osp.join(out, 'test', 'B100', f'GTmod{SCALE}'))),
                  size_mb=round(sum(parts.values()), 2), parts_mb=parts, seconds=round(time.perf_counter() - t0, 1),
                  shared=shared)
    atomic_write_text(marker, json.dumps(result, indent=2) + '\n')
    say(f'{out}: {result["size_mb"]:.1f} MB ({", ".join(f"{k} {v:.1f}" for k, v in parts.items())}) in '
        f'{result["seconds"]:.0f} s')
    return result


def _check_size(out: str, limit_mb: float):
    """EvidenceError (and the folder removed) as soon as the data written so far exceeds ``limit_mb``."""
    size = folder_mb(out)
    if size > limit_mb:
        shutil.rmtree(out)
        raise EvidenceError(f'prepared data is {size:.1f} MB, over the {limit_mb:.0f} MB left for it under the '
                            f'{CARRY_LIMIT_MB:.0f} MB carry limit; nothing kept (prepare fewer images)')


def paths(data: str) -> dict:
    """The folders the stages read, under ``data``; EvidenceError if ``data`` was not prepared."""
    if not osp.isfile(osp.join(data, 'prepared.json')):
        raise EvidenceError(f'no prepared data in {data}: run python tools/gpu_evidence.py --prepare first (on the '
                            'development machine), and carry .gpu with the call')
    from deconas_plugin.utils.cli import load_tool
    layout, out = load_tool('prepare_train').layout, {}
    for part in ('train', 'reward', 'eval'):  # where prepare() had tools/prepare_train.py write them
        dirs = layout(osp.join(data, part), part, [SCALE])
        out.update({f'{part}_hr': dirs['hr_sub'], f'{part}_lr': dirs[f'lr{SCALE}_sub'],
                    f'{part}_meta': osp.join(data, part, 'meta_info.txt')})
    out['test'] = {name: osp.join(data, 'test', name) for name in ('Set5', 'Set14', 'B100')}
    return out
