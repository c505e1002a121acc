"""Where the tests find the project, its tools and the benchmark images: ``$DECONAS_DATA`` (the
variable ``tools/prepare_benchmark.py`` and ``tools/gpu_evidence.py`` read), else ``../shared/datasets``
beside the project folder (a clean clone in CI)."""
import os
import os.path as osp
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SHARED = osp.normpath(os.environ.get('DECONAS_DATA') or osp.join(ROOT, '..', 'shared', 'datasets'))
sys.path.insert(0, osp.join(ROOT, 'tools'))  # the tools are scripts; tests call their functions
if ROOT not in sys.path:
    sys.path.append(ROOT)  # benchmarks/ (not installed: a package of the project root)


def need_shared(path):
    """``path`` (under ``SHARED``), or skip the test when the datasets are not there."""
    if not osp.isdir(path):
        pytest.skip(f'shared datasets not available: {path}')
    return path
