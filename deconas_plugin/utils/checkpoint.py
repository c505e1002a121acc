"""Atomic checkpoint writing and resume-state discovery."""
import os
import os.path as osp
import tempfile

import torch


def atomic_save(obj, path):
    """``torch.save`` to a temporary file in the same folder, then rename: never a half file."""
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.tmp_', suffix='.pth', dir=folder)
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


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
