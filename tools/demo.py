"""One-command DeCoNAS demo: embedded data -> search -> derive -> retrain -> CARN -> test -> report.

Needs no dataset (the scikit-image photos bundled with scikit-image) and 7-8 minutes on 2 idle
CPU cores (docs/demo.md). A second run reuses what the first made. See ``deconas_plugin/reporting/demo.py``.

Examples:
    python tools/demo.py                        # -> demo_out/report/report.md
    python tools/demo.py --fast --out /tmp/d    # about a minute, tiny budget
    python tools/demo.py --search-opt options/search/search_N4_M4.yml \\
        --train-opt options/train/train_DeCoNASNet_x2.yml \\
        --test-sets datasets/Set5 datasets/Set14 datasets/B100 datasets/Urban100 --device cuda
"""
import os.path as osp
import sys

if __package__ in (None, ''):  # run as a script: make the project importable
    sys.path.insert(0, osp.abspath(osp.join(__file__, osp.pardir, osp.pardir)))

import deconas_plugin  # noqa: F401,E402  (registers archs, models, datasets, losses)
from deconas_plugin.reporting.demo import main  # noqa: E402

if __name__ == '__main__':
    main()
