"""Shims that make basicsr 1.4.2 work with current torchvision and on CPU.

Imported first by ``deconas_plugin/__init__.py``, before anything imports basicsr.
"""
import random
import sys
import types

import torch


def _alias_functional_tensor():
    # basicsr 1.4.2 imports torchvision.transforms.functional_tensor, removed in torchvision 0.17;
    # BasicSR fixed this upstream after 1.4.2. rgb_to_grayscale is the only name it uses.
    name = 'torchvision.transforms.functional_tensor'
    if name in sys.modules:
        return
    try:
        import torchvision.transforms.functional_tensor  # noqa: F401
    except ImportError:
        from torchvision.transforms import functional
        module = types.ModuleType(name)
        module.rgb_to_grayscale = functional.rgb_to_grayscale
        sys.modules[name] = module


_alias_functional_tensor()


def load_resume_state(opt):
    """CPU-safe replacement of ``basicsr.train.load_resume_state``.

    BasicSR's version maps every tensor to ``cuda:<current>`` (fails without a GPU) and looks for
    ``experiments/`` relative to the working directory. Ours looks under the experiment root and
    maps tensors to the CPU; the model moves what it needs to its own device.
    """
    import os.path as osp

    from basicsr.utils.misc import check_resume

    from .checkpoint import latest_valid_state, load_state

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
        import numpy as np
        py_state, np_state = random.getstate(), np.random.get_state()
        random.seed(seed)
        np.random.seed(seed)
        try:
            return self.dataset[index]
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def _resumable_sampler_class():
    from basicsr.data.data_sampler import EnlargedSampler

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
            import numpy as np
            return np.random.SeedSequence([self.seed, self.rank, self.epoch, *more])

        def __iter__(self):
            indices = list(super().__iter__())
            seeds = self._seed_sequence(1).generate_state(len(indices))
            skip, self.skip = self.skip, 0
            return iter([(i, int(s)) for i, s in zip(indices, seeds)][skip:])

    return ResumableSampler


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


def _option_dist_params() -> dict:
    """``dist_params`` of the option file on the command line (``-opt``), or {}."""
    import argparse

    import yaml
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('-opt')
    args, _ = parser.parse_known_args()
    if not args.opt:
        return {}
    with open(args.opt) as f:
        opt = yaml.safe_load(f) or {}
    return opt.get('dist_params') or {}


def _init_dist_slurm(backend, port=None, timeout=None):
    """BasicSR's slurm set-up (``_init_dist_slurm``) without its CUDA-only steps.

    Rank, world size and master address come from ``SLURM_PROCID``, ``SLURM_NTASKS`` and the first
    host of ``scontrol show hostname $SLURM_NODELIST``; the master port from ``port``, else
    ``MASTER_PORT``, else 29500. ``LOCAL_RANK`` is ``SLURM_LOCALID`` when set, else the rank modulo
    the GPU count (at least 1); the CUDA device is chosen only when CUDA is available.
    """
    import os
    import subprocess

    from . import dist as dist_util

    missing = [name for name in ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST') if name not in os.environ]
    if missing:
        raise RuntimeError(f'--launcher slurm: {" and ".join(missing)} not set in the environment; '
                           'start the processes with srun (or use torchrun with --launcher pytorch)')
    proc_id = int(os.environ['SLURM_PROCID'])
    ntasks = int(os.environ['SLURM_NTASKS'])
    node_list = os.environ['SLURM_NODELIST']
    num_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    local_rank = int(os.environ.get('SLURM_LOCALID', proc_id % max(num_gpus, 1)))
    try:
        result = subprocess.run(['scontrol', 'show', 'hostname', node_list], capture_output=True, text=True)
    except FileNotFoundError as e:
        raise RuntimeError('--launcher slurm: scontrol is not on PATH; it gives the master address') from e
    hosts = result.stdout.split()
    if result.returncode != 0 or not hosts:
        raise RuntimeError(f'--launcher slurm: `scontrol show hostname {node_list}` gave no host '
                           f'(exit {result.returncode}) {result.stderr.strip()}'.rstrip())
    if port is not None:
        os.environ['MASTER_PORT'] = str(port)
    else:
        os.environ.setdefault('MASTER_PORT', '29500')  # torch.distributed's default port
    os.environ['MASTER_ADDR'] = hosts[0]
    os.environ['WORLD_SIZE'] = str(ntasks)
    os.environ['LOCAL_RANK'] = str(local_rank)
    os.environ['RANK'] = str(proc_id)
    if num_gpus:
        torch.cuda.set_device(local_rank % num_gpus)
    dist_util.init_process_group(backend, timeout or dist_util.DEFAULT_TIMEOUT_S)


def init_dist(launcher, backend=None, **kwargs):
    """Replacement of ``basicsr.utils.dist_util.init_dist`` that also works without CUDA.

    BasicSR hard-codes nccl for ``--launcher pytorch`` and divides by the GPU count under both
    launchers. The backend here is, in order: the ``backend`` argument (BasicSR passes
    ``dist_params`` as keyword arguments under slurm, ``port`` included), ``dist_params.backend``
    of the option file, the ``DECONAS_DIST_BACKEND`` environment variable, else nccl with CUDA and
    gloo without. ``--launcher slurm`` uses ``_init_dist_slurm``, which also runs on CPU. The group is
    made by ``utils.dist.init_process_group`` with ``dist_params.timeout`` (seconds, default
    ``utils.dist.DEFAULT_TIMEOUT_S``).
    """
    import os

    from . import dist as dist_util

    dist_params = _option_dist_params()
    backend = (backend or dist_params.get('backend') or os.environ.get('DECONAS_DIST_BACKEND')
               or ('nccl' if torch.cuda.is_available() else 'gloo'))
    if backend == 'nccl' and not torch.cuda.is_available():
        raise RuntimeError('dist_params.backend is nccl but CUDA is not available: use backend: gloo on CPU')
    if launcher == 'slurm':
        _init_dist_slurm(backend, **{**kwargs, 'timeout': kwargs.get('timeout', dist_params.get('timeout'))})
        return
    if launcher != 'pytorch':
        raise ValueError(f'invalid launcher {launcher!r}: use pytorch (torchrun) or slurm')
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get('LOCAL_RANK', os.environ['RANK'])) % torch.cuda.device_count())
    dist_util.init_process_group(backend, dist_params.get('timeout') or dist_util.DEFAULT_TIMEOUT_S)


def _name_unreadable_pairs():
    """Make PairedImageDataset name the files of a pair it cannot load (corrupt or truncated)."""
    from basicsr.data.paired_image_dataset import PairedImageDataset
    if getattr(PairedImageDataset.__getitem__, 'names_pairs', False):
        return
    original = PairedImageDataset.__getitem__

    def __getitem__(self, index):
        if isinstance(index, int) and index >= len(self.paths):
            raise IndexError(index)  # the end of iteration (``for item in dataset``), not a bad file
        try:
            return original(self, index)
        except Exception as e:  # noqa: BLE001  (re-raised with the file names)
            pair = self.paths[index % len(self.paths)]
            raise RuntimeError(f"cannot load the pair {pair['gt_path']} / {pair['lq_path']}: {e!r}; "
                               'a corrupt or truncated image? Replace it or remake the data') from e

    __getitem__.names_pairs = True
    PairedImageDataset.__getitem__ = __getitem__


def patch_basicsr():
    """Install the CPU-safe resume and distributed set-up into basicsr's pipelines (idempotent)."""
    import basicsr.train
    import basicsr.utils.options
    if 'create_train_val_dataloader' not in _ORIGINAL:
        _ORIGINAL['create_train_val_dataloader'] = basicsr.train.create_train_val_dataloader
        _ORIGINAL['build_dataloader'] = basicsr.train.build_dataloader
    basicsr.train.load_resume_state = load_resume_state
    basicsr.train.create_train_val_dataloader = create_train_val_dataloader
    basicsr.train.build_dataloader = build_dataloader
    basicsr.train.EnlargedSampler = _resumable_sampler_class()
    basicsr.utils.options.init_dist = init_dist
    _name_unreadable_pairs()
