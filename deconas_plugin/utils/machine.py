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
