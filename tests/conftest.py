import glob
import os
import shutil
import subprocess
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


def new_experiment_name(prefix='test') -> str:
    """A new unique experiment name: ``<prefix>_<8 hex digits>``."""
    return f'{prefix}_{uuid.uuid4().hex[:8]}'


def remove_experiment(name: str):
    """Remove the experiments/, tb_logger/ and results/ folders of ``name`` (archived ones too)."""
    for parent in ('experiments', 'tb_logger', 'results'):
        for path in glob.glob(osp.join(ROOT, parent, glob.escape(name) + '*')):
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def experiment_name():
    """``experiment_name(prefix)``: a new unique experiment name. The experiments/, tb_logger/ and
    results/ folders of every name given (archived ones too) are removed at teardown."""
    names = []

    def make(prefix='test'):
        names.append(new_experiment_name(prefix))
        return names[-1]

    yield make
    for name in names:
        remove_experiment(name)


@pytest.fixture(scope='session')
def tiny_search(embedded_data, tmp_path_factory):
    """One tiny search run once per session through ``deconas_plugin/train.py``: ``tiny_options.search_options``
    (8 iterations, controller phases at 4 and 8) with a controller of hidden size 16. A dict:
    ``name``, ``opt`` (the options), ``opt_path`` (their YAML file), ``experiment`` (its folder).
    Shared: read it, or write only into a new subfolder (``tools/derive.py`` writes ``derive/``)."""
    from tiny_options import search_options, write_options
    name = new_experiment_name('test_tiny_search')
    opt = search_options(embedded_data, name, total_iter=8)
    opt['network_c']['hidden_size'] = 16
    opt_path = write_options(tmp_path_factory.mktemp('tiny_search') / 'search.yml', opt)
    proc = subprocess.run([sys.executable, osp.join(ROOT, 'deconas_plugin', 'train.py'), '-opt', opt_path],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    try:
        assert proc.returncode == 0, f'the tiny search failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}'
        yield {'name': name, 'opt': opt, 'opt_path': opt_path, 'experiment': osp.join(ROOT, 'experiments', name)}
    finally:
        remove_experiment(name)
