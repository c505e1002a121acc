"""Atomic file writes (checkpoints, tables, images) and resume-state discovery.

Every file the project writes goes through ``atomic_open``: a temporary file beside the target,
renamed into place when complete, so a killed run never leaves a half-written file under the
final name.
"""
import contextlib
import os
import os.path as osp
import tempfile

import torch

TMP_PREFIX = '.tmp_'


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path, mode='wb', suffix='.part'):
    """Open a temporary file beside ``path``; it replaces ``path`` on success and is removed on error."""
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=suffix, dir=folder)
    try:
        with os.fdopen(fd, mode, **({} if 'b' in mode else {'encoding': 'utf-8'})) as f:
            yield f
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~_umask())  # mkstemp makes 0600; a written file is not private
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def atomic_save(obj, path):
    """``torch.save`` through ``atomic_open``."""
    with atomic_open(path) as f:
        torch.save(obj, f)


def atomic_write_text(path, text):
    with atomic_open(path, 'w') as f:
        f.write(text)


def write_text_if_changed(path, text) -> bool:
    """Write ``text`` atomically unless the file already holds it (keeps mtimes meaningful for the
    tools that skip finished work); returns whether it wrote."""
    if os.path.isfile(path):
        with open(path) as f:
            if f.read() == text:
                return False
    atomic_write_text(path, text)
    return True


def load_state(path):
    """Load a training state onto the CPU (works with and without CUDA)."""
    return torch.load(path, map_location='cpu', weights_only=False)


def latest_valid_state(folder):
    """Path of the newest ``<iter>.state`` in ``folder`` that loads, or None.

    A checkpoint cut off mid-write (for example a copy truncated by a full disk) is skipped.
    """
    if not osp.isdir(folder):
        return None
    names = [n for n in os.listdir(folder) if n.endswith('.state') and n[:-6].isdigit()]
    for name in sorted(names, key=lambda n: int(n[:-6]), reverse=True):
        path = osp.join(folder, name)
        try:
            load_state(path)
        except Exception:  # noqa: BLE001  (any unreadable file is simply not a resume candidate)
            continue
        return path
    return None
