"""The machine a run is measured on (``machine_info``) and the one each section was measured on
(``section_machine``, ``recorded_machine``), the intra-op threads probe, and the ``--threads`` choice
(``choose_threads``)."""
from typing import Optional

import torch
from torch import nn

from deconas_plugin.utils.machine import default_threads, describe_machine, load_average, usable_cores

from .timing import interleaved, median_ms

SECTION_MACHINE_KEYS = ('cpu', 'cores', 'usable_cores', 'torch_threads', 'torch', 'device', 'device_name')


def choose_threads(spec: str, device: torch.device):
    """(torch intra-op threads, reason) for ``--threads`` = a number, ``'all'`` or ``'auto'``.

    ``auto``: on a CPU, the project's rule for one process (``utils.machine.default_threads``: 1 thread on
    at most 2 cores or a busy machine, where every multi-threaded op waits at an OpenMP barrier for a
    descheduled thread; measured here: a child step 0.75 s with 1 thread, 4-15 s with 2). Otherwise torch's
    default.
    """
    default = torch.get_num_threads()
    if spec == 'all':
        return default, 'requested: torch default'
    if spec != 'auto':
        return int(spec), 'requested'
    if device.type == 'cuda':
        return default, 'auto: CUDA run, torch default'
    load, cores = (load_average() or [0.0])[0], usable_cores()
    threads = default_threads()
    if threads:
        return threads, f'auto: load average {load:.1f} on {cores} usable cores, {threads} thread(s)'
    return default, f'auto: load average {load:.1f} on {cores} usable cores, torch default'


def threads_probe(device: torch.device, reps: int = 5) -> Optional[dict]:
    """ms of a small conv forward+backward with 1 thread vs all usable cores (CPU only; interleaved)."""
    cores = usable_cores()
    if device.type != 'cpu' or cores < 2:
        return None
    keep = torch.get_num_threads()
    conv = nn.Conv2d(32, 32, 3, padding=1)
    x = torch.rand(4, 32, 48, 48)

    def run(n):
        def f():
            torch.set_num_threads(n)
            conv(x).sum().backward()
        return f
    try:
        t = interleaved({'1': run(1), str(cores): run(cores)}, reps, 1, device)
    finally:
        torch.set_num_threads(keep)
    return {'threads_1_ms': median_ms(t['1']), f'threads_{cores}_ms': median_ms(t[str(cores)]),
            'max_ms': {k: 1000 * max(v) for k, v in t.items()}}


def machine_info(device: torch.device) -> dict:
    """``describe_machine`` and the intra-op threads probe."""
    return {**describe_machine(device), 'threads_probe': threads_probe(device)}


def section_machine(machine: dict) -> dict:
    """What a section records of the machine that measured it (the part of ``machine_info`` that names
    the machine and its software, not the load of the moment)."""
    return {k: machine.get(k) for k in SECTION_MACHINE_KEYS}


def recorded_machine(sec: dict, result: dict) -> Optional[dict]:
    """The machine that measured section ``sec`` of ``result`` (a ``benchmark.json``): the one it records,
    else (a file written before sections recorded theirs, which names only the machine of its latest run)
    that machine for the sections stamped with that run's command (all of them when that run was no
    ``--merge``), and None, not recorded, for a section kept from an earlier run."""
    if 'machine' in sec:
        return sec['machine']
    by_latest = (sec.get('command', result.get('command')) == result.get('command')
                 and sec.get('measured', result['started']) >= result['started'])
    return section_machine(result['machine']) if by_latest else None
