"""Where the tests find the project, its tools and ``../shared/datasets``."""
import os.path as osp
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SHARED = osp.normpath(osp.join(ROOT, '..', 'shared', 'datasets'))
sys.path.insert(0, osp.join(ROOT, 'tools'))  # the tools are scripts; tests call their functions
if ROOT not in sys.path:
    sys.path.append(ROOT)  # benchmarks/ (not installed: a package of the project root)


def need_shared(path):
    """``path`` (under ``SHARED``), or skip the test when the shared datasets are not beside the project."""
    if not osp.isdir(path):
        pytest.skip(f'shared datasets not available: {path}')
    return path
