"""Run a project entry point as a child process, its output teed into a log file (demo, search vs random)."""
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from typing import List, Optional


def child_env(threads: Optional[int]) -> dict:
    """The environment of a child run: ``threads`` OpenMP/MKL threads when given, unbuffered output."""
    env = dict(os.environ)
    if threads:
        for key in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS'):
            env[key] = str(threads)
    env['PYTHONUNBUFFERED'] = '1'
    return env


@contextlib.contextmanager
def exit_on_sigterm():
    """Within it, SIGTERM (``kill``, a batch system) raises SystemExit(143) in the main thread, so that the
    ``except``/``finally`` blocks that stop child runs (``BackgroundRun.wait``) run as on an
    interrupt, instead of the process dying and leaving its children running."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _exit(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop_process(proc: subprocess.Popen, grace: float = 120.0, group: bool = False) -> int:
    """SIGTERM, then SIGKILL after ``grace`` seconds, to ``proc`` (with ``group``: to its whole process
    group, which it leads); the exit code. A training given SIGTERM finishes its iteration, writes its
    state and exits 75 (``utils.preemption``)."""
    def send(sig):
        try:
            os.killpg(proc.pid, sig) if group else proc.send_signal(sig)
        except ProcessLookupError:
            pass

    if proc.poll() is None or group:  # a group may outlive its leader
        send(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            send(signal.SIGKILL)
    return proc.wait()


class BackgroundRun:
    """``cmd`` started in ``cwd``, the command and its output (stdout and stderr) appended to ``log_path``,
    while the caller goes on: ``poll()`` / ``wait()`` give the exit code, ``stop()`` asks it to stop and waits."""

    def __init__(self, cmd: List[str], log_path: str, cwd: str, env: Optional[dict] = None,
                 own_group: bool = False, grace: float = 120.0, echo: bool = False):
        """``own_group``: the run leads a process group of its own, and ``stop()`` signals the whole group
        (its children too); ``grace``: seconds ``stop()`` gives SIGTERM before SIGKILL; ``echo``: the output
        is copied to this process's stdout too, as it comes."""
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        self.cmd, self.log_path, self.own_group, self.grace = cmd, log_path, own_group, grace
        self.started = time.time()
        self.ended: Optional[float] = None
        with open(log_path, 'ab') as log:
            log.write(f'\n$ {" ".join(cmd)}\n'.encode())
            log.flush()
            self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE if echo else log,
                                         stderr=subprocess.STDOUT, start_new_session=own_group)
        self.tee = threading.Thread(target=self._tee, daemon=True) if echo else None
        if self.tee:
            self.tee.start()

    def _tee(self):
        with open(self.log_path, 'ab') as log:
            for chunk in iter(lambda: os.read(self.proc.stdout.fileno(), 65536), b''):
                log.write(chunk)
                log.flush()
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()

    def _ended(self, rc: Optional[int]) -> Optional[int]:
        if rc is not None and self.ended is None:
            if self.tee:
                self.tee.join()  # the whole output is in the log
            self.ended = time.time()
        return rc

    def poll(self) -> Optional[int]:
        """The exit code, or None while it runs."""
        return self._ended(self.proc.poll())

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        """The exit code once it has ended; None when ``timeout`` seconds pass first. An interrupt stops it."""
        try:
            return self._ended(self.proc.wait(timeout))
        except subprocess.TimeoutExpired:
            return None
        except BaseException:
            self.stop()
            raise

    @property
    def seconds(self) -> float:
        """Wall time from the start to the end (or to now, while it runs)."""
        return (self.ended or time.time()) - self.started

    def stop(self) -> int:
        """SIGTERM (a training writes its state and exits 75: ``utils.preemption``), then SIGKILL after
        ``grace`` seconds; returns the exit code."""
        return self._ended(stop_process(self.proc, self.grace, self.own_group))


def log_tail(log_path: str, size: int) -> str:
    """The last ``size`` bytes of a log, as text."""
    with open(log_path, 'rb') as f:
        f.seek(max(0, os.path.getsize(log_path) - size))
        return f.read().decode(errors='replace')
