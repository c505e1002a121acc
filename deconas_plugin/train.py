"""Train (or search) with a BasicSR option file: ``python deconas_plugin/train.py -opt <yml>``.

Exit status: 0 finished; 2 a mistake in the option file (one ``error:`` line, nothing written);
75 stopped by SIGTERM or SIGUSR1 after writing a training state (requeue and resume with
``--auto_resume``); 1 anything else, among which a rank that stopped answering (one ``error:`` line
naming the iteration and the rank; the last complete training state is intact).
"""
import os.path as osp
import sys

if __package__ in (None, ''):  # run as a script: make the project importable
    sys.path.insert(0, osp.abspath(osp.join(__file__, osp.pardir, osp.pardir)))

import deconas_plugin  # noqa: F401,E402  (registers archs, models, datasets, losses)
from deconas_plugin.utils.basicsr_patches import patch_basicsr  # noqa: E402
from deconas_plugin.options import preflight  # noqa: E402

patch_basicsr()
from deconas_plugin.utils.dist import PeerError  # noqa: E402
from deconas_plugin.utils.training_loop import train_pipeline  # noqa: E402

if __name__ == '__main__':
    preflight()  # one clear error for a bad option file, before anything is written
    root_path = osp.abspath(osp.join(__file__, osp.pardir, osp.pardir))
    try:
        train_pipeline(root_path)
    except PeerError as e:
        print(f'error: {e}', file=sys.stderr, flush=True)
        sys.exit(1)
