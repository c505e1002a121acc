"""Test with a BasicSR option file: ``python deconas_plugin/test.py -opt <yml>``."""
import os.path as osp
import sys

if __package__ in (None, ''):  # run as a script: make the project importable
    sys.path.insert(0, osp.abspath(osp.join(__file__, osp.pardir, osp.pardir)))

import deconas_plugin  # noqa: F401,E402  (registers archs, models, datasets, losses)
from deconas_plugin.utils.basicsr_patches import patch_basicsr  # noqa: E402
from deconas_plugin.options import preflight  # noqa: E402

patch_basicsr()
from basicsr.test import test_pipeline  # noqa: E402

if __name__ == '__main__':
    preflight()  # one clear error for a bad option file, before anything is written
    root_path = osp.abspath(osp.join(__file__, osp.pardir, osp.pardir))
    test_pipeline(root_path)
