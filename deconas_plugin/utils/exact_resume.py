"""A resumed training continues exactly as the uninterrupted one would have: BasicSR's resume made
CPU-safe, and data augmentation that depends only on a sample's place in the training.

``install()`` (through ``utils.basicsr_patches.patch_basicsr``) puts ``load_resume_state``,
``build_dataloader`` (training sets wrapped in ``SeededAugmentation``), ``create_train_val_dataloader``
and the ``ResumableSampler`` into ``basicsr.train``.
"""
import os.path as osp
import random

import numpy as np
import torch
from basicsr.data.data_sampler import EnlargedSampler
from basicsr.utils.misc import check_resume

from .checkpoint import latest_valid_state, load_state


def load_resume_state(opt):
    """CPU-safe replacement of ``basicsr.train.load_resume_state``.

    BasicSR's version maps every tensor to ``cuda:<current>`` (fails without a GPU) and looks for
    ``experiments/`` relative to the working directory. Ours looks under the experiment root and
    maps tensors to the CPU; the model moves what it needs to its own device.
    """
    path = None
    if opt.get('auto_resume'):
        path = latest_valid_state(osp.join(opt['path']['experiments_root'], 'training_states'))
        if path is not None:
            opt['path']['resume_state'] = path
    elif opt['path'].get('resume_state'):
        path = opt['path']['resume_state']
    if path is None:
        return None
    state = load_state(path)
    check_resume(opt, state['iter'])
    _PENDING_RESUME.update(iter=state['iter'], epoch=state['epoch'])
    return state


_PENDING_RESUME = {}


class SeededAugmentation(torch.utils.data.Dataset):
    """A training dataset whose random augmentation is a function of the sample's place in training.

    The sampler hands it ``(index, seed)``; Python's and NumPy's global RNGs (which BasicSR's crops
    and flips draw from) are seeded with ``seed`` for that one item and restored afterwards. So the
    crops and flips depend on (manual_seed, rank, epoch, position in the epoch) only: not on the
    number of loader workers, nor on whether the run was resumed (BasicSR reseeds every worker
    with the same seed at every epoch, so a resumed epoch would otherwise pair other crops with
    its samples). A plain integer index is passed through unchanged.
    """

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getattr__(self, name):  # the wrapped dataset's attributes (opt, paths, ...)
        if name == 'dataset':
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, index):
        if not isinstance(index, tuple):
            return self.dataset[index]
        index, seed = index
        py_state, np_state = random.getstate(), np.random.get_state()
        random.seed(seed)
        np.random.seed(seed)
        try:
            return self.dataset[index]
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


class ResumableSampler(EnlargedSampler):
    """BasicSR's sampler that also hands out each sample's augmentation seed, and that, right
    after a resume, skips what the interrupted epoch consumed.

    BasicSR restarts the resumed epoch from its first batch, so a resumed run would see the
    samples before the checkpoint twice and its numbers would differ from an uninterrupted run.
    The skip waits for the first ``set_epoch``: BasicSR's prefetcher opens (and throws away)
    one loader iterator before it, which a loader with workers starts filling at once.
    The seeds (see ``SeededAugmentation``) come from (``seed``, rank, epoch, position); the
    loader's own generator (the base seed of its workers) is reseeded from the epoch too.
    """
    seed = 0
    generator = None  # the DataLoader's generator
    pending_skip = skip = 0

    def set_epoch(self, epoch):
        super().set_epoch(epoch)
        self.skip, self.pending_skip = self.pending_skip, 0
        if self.generator is not None:
            self.generator.manual_seed(self._seed_sequence().generate_state(1)[0].item())

    def _seed_sequence(self, *more):
        return np.random.SeedSequence([self.seed, self.rank, self.epoch, *more])

    def __iter__(self):
        indices = list(super().__iter__())
        seeds = self._seed_sequence(1).generate_state(len(indices))
        skip, self.skip = self.skip, 0
        return iter([(i, int(s)) for i, s in zip(indices, seeds)][skip:])


def build_dataloader(dataset, dataset_opt, *args, **kwargs):
    """BasicSR's ``build_dataloader`` for ``basicsr.train``; a training set is wrapped in
    ``SeededAugmentation`` (the train sampler hands it each sample's seed)."""
    if dataset_opt['phase'] == 'train':
        dataset = SeededAugmentation(dataset)
    return _ORIGINAL['build_dataloader'](dataset, dataset_opt, *args, **kwargs)


def create_train_val_dataloader(opt, logger):
    """BasicSR's loaders; after a resume the train sampler skips the batches already trained on."""
    result = _ORIGINAL['create_train_val_dataloader'](opt, logger)
    train_loader, train_sampler = result[0], result[1]
    if train_loader is not None:
        train_sampler.seed = int(opt['manual_seed'])
        # A DataLoader draws a base seed from the global torch RNG at the start of every epoch; a
        # generator of its own, reseeded by the sampler every epoch, keeps that draw from shifting
        # the RNG that checkpoints restore and makes it the same after a resume.
        train_loader.generator = train_sampler.generator = torch.Generator()
    if _PENDING_RESUME and train_loader is not None:
        consumed = _PENDING_RESUME['iter'] - _PENDING_RESUME['epoch'] * len(train_loader)
        train_sampler.pending_skip = max(0, consumed) * opt['datasets']['train']['batch_size_per_gpu']
        _PENDING_RESUME.clear()
    return result


_ORIGINAL = {}


def install():
    """Put the exact-resume pieces into ``basicsr.train`` (idempotent)."""
    import basicsr.train
    if 'create_train_val_dataloader' not in _ORIGINAL:
        _ORIGINAL['create_train_val_dataloader'] = basicsr.train.create_train_val_dataloader
        _ORIGINAL['build_dataloader'] = basicsr.train.build_dataloader
    basicsr.train.load_resume_state = load_resume_state
    basicsr.train.create_train_val_dataloader = create_train_val_dataloader
    basicsr.train.build_dataloader = build_dataloader
    basicsr.train.EnlargedSampler = ResumableSampler
