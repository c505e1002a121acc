"""Starting a distributed training: BasicSR's ``init_dist`` without its CUDA-only steps, for torchrun
(``--launcher pytorch``) and slurm, with the backend and timeout of ``dist_params``."""
import argparse
import os
import subprocess

import torch
import yaml

from . import dist as dist_util


def _option_dist_params() -> dict:
    """``dist_params`` of the option file on the command line (``-opt``), or {}."""
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
