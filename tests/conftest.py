import glob
import os
import shutil
import sys
import uuid
from os import path as osp

import pytest

# One OpenMP/MKL thread per process (this one and every entry point a test starts), unless the
# environment says otherwise: the tests' tensors are tiny, and with threads a tiny search costs
# twice the CPU time (7 s vs 15 s user for the same 8-iteration search, on a busy 2-core machine).
for _key in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS'):
    os.environ.setdefault(_key, '1')

# Make the package importable when pytest runs from anywhere, without installing it.
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from shared_data import ROOT  # noqa: E402


@pytest.fixture(scope='session')
def embedded_data(tmp_path_factory):
    """The embedded scikit-image photos at x2 cut to 96 px, made once per session:
    {'train', 'reward', 'test'} folders of GTmod2 / LRbicx2. Shared: copy before damaging it."""
    import deconas_plugin  # noqa: F401  (torchvision shim before basicsr)
    from deconas_plugin.utils.embedded_data import prepare_embedded
    return prepare_embedded(str(tmp_path_factory.mktemp('data') / 'embedded'), (2, ), max_side=96)


@pytest.fixture
def experiment_name():
    """``experiment_name(prefix)``: a new unique experiment name. The experiments/, tb_logger/ and
    results/ folders of every name given (archived ones too) are removed at teardown."""
    names = []

    def make(prefix='test'):
        names.append(f'{prefix}_{uuid.uuid4().hex[:8]}')
        return names[-1]

    yield make
    for name in names:
        for parent in ('experiments', 'tb_logger', 'results'):
            for path in glob.glob(osp.join(ROOT, parent, glob.escape(name) + '*')):
                shutil.rmtree(path, ignore_errors=True)
