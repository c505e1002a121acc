"""The machine a measurement ran on (CPU, cores, torch, the device), for the files that record one."""
import os
import platform
from typing import List, Optional

import torch

CPU_FLAGS = ('avx2', 'avx512f', 'avx512_bf16', 'avx512_fp16', 'amx_bf16', 'amx_tile')  # those that change speed


def usable_cores() -> int:
    """Cores this process may run on (its affinity), else the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def load_average() -> Optional[List[float]]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def default_threads(processes: int = 1) -> Optional[int]:
    """OpenMP threads of each of ``processes`` trainings or scorings that run at once, the one rule of every
    tool (``--threads`` overrides it): 1 on a machine with at most 2 usable cores or an already busy one
    (1-minute load average above half the cores), else the cores shared out (None, PyTorch's default of
    one thread per core, for a single process). An ``OMP_NUM_THREADS`` of the environment wins.

    PyTorch's OpenMP threads spin at every barrier: when another process takes one of the two
    cores, a 2-thread training step waits for it and becomes 5-10 times slower (measured on 2
    shared cores: 1.0-1.25 s per search step with 2 threads, 0.19 s with 1), while one thread on
    an idle 2-core machine costs at most a factor of ~1.7.
    """
    explicit = os.environ.get('OMP_NUM_THREADS', '')
    if explicit.isdigit() and int(explicit) > 0:
        return int(explicit)
    cores = usable_cores()
    load = (load_average() or [0.0])[0]
    if cores <= 2 or load > 0.5 * cores:
        return 1
    return max(1, cores // processes) if processes > 1 else None


def use_threads(threads: Optional[int]) -> Optional[int]:
    """Set this process's torch intra-op threads to ``threads`` (None: keep them); returns the number before."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    return before


def _cpuinfo(prefix: str) -> Optional[str]:
    """The value of the first ``/proc/cpuinfo`` line starting with ``prefix`` (case-insensitive), or None."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.lower().startswith(prefix):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return None


def describe_machine(device: torch.device) -> dict:
    """CPU model and speed-relevant flags, cores, torch and Python versions, the device (with CUDA and cuDNN
    versions on a GPU) and the load average now."""
    cpu = _cpuinfo('model name') or platform.processor() or platform.machine()
    have = set((_cpuinfo('flags') or '').split())
    info = {
        'cpu': cpu, 'cpu_flags': [x for x in CPU_FLAGS if x in have], 'cores': os.cpu_count(),
        'usable_cores': usable_cores(), 'torch_threads': torch.get_num_threads(),
        'torch': torch.__version__, 'python': platform.python_version(), 'platform': platform.platform(),
        'device': str(device),
        'device_name': torch.cuda.get_device_name(device) if device.type == 'cuda' else f'CPU ({cpu})',
        'load_avg_start': load_average(),
    }
    if device.type == 'cuda':
        info['cuda'] = torch.version.cuda
        info['cudnn'] = torch.backends.cudnn.version()
    return info


def source_commit(root: str) -> Optional[str]:
    """The git commit of the checkout at ``root`` (``<sha>+dirty`` with uncommitted changes to tracked
    files), or None outside a git checkout: which code produced a measurement."""
    import subprocess
    try:
        sha = subprocess.run(['git', '-C', root, 'rev-parse', 'HEAD'], capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(['git', '-C', root, 'status', '--porcelain', '--untracked-files=no'],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha + ('+dirty' if dirty else '')
