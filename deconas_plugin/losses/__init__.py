import importlib
from os import path as osp

from basicsr.utils import scandir

# Import every *_loss.py so that its classes register themselves (BasicSR's convention).
_folder = osp.dirname(osp.abspath(__file__))
_names = sorted(osp.splitext(osp.basename(p))[0] for p in scandir(_folder) if p.endswith('_loss.py'))
_modules = [importlib.import_module(f'deconas_plugin.losses.{name}') for name in _names]
