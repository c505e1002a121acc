"""Stop cleanly on a scheduler's signal: finish the iteration, write a training state, exit 75.

SIGTERM (what slurm, ``scontrol requeue``, Kubernetes and torchrun send before they kill a job)
and SIGUSR1 (slurm's ``--signal=USR1@<seconds>`` warning) only set a flag here. At the end of
every iteration the ranks agree whether any of them got one (``utils.dist.any_rank``); if so,
every rank has finished the same iteration, rank 0 writes a training state (atomically, as every
checkpoint), and all ranks exit with ``EXIT_PREEMPTED``, which a batch script tells from a crash
(1) and from a finished run (0) to requeue the job; ``--auto_resume`` then continues bit-identically.
"""
import signal
from typing import Optional

EXIT_PREEMPTED = 75  # sysexits.h EX_TEMPFAIL: "a temporary failure; the user is invited to retry"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

_RECEIVED = {'signal': None}


def _on_stop_signal(signum, frame):
    # Only record it (a handler may run anywhere in the step); the training loop acts at the iteration's end.
    if _RECEIVED['signal'] is None:
        _RECEIVED['signal'] = signum


def install_stop_handlers():
    """Make SIGTERM and SIGUSR1 request a clean stop (Python handles signals in the main thread only:
    elsewhere, for example a training loop run in a thread, the signals keep their default action)."""
    import threading
    _RECEIVED['signal'] = None
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in STOP_SIGNALS:
        signal.signal(sig, _on_stop_signal)


def ignore_stop_signals(worker_id: Optional[int] = None):
    """In a data-loader worker: ignore the stop signals (torchrun signals the whole process group);
    the main process ends its workers when it exits."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def received_signal() -> Optional[str]:
    """The name of the first stop signal this process got (``'SIGTERM'``), or None."""
    signum = _RECEIVED['signal']
    return None if signum is None else signal.Signals(signum).name
