"""The project's entry points run in this process: ``deconas_plugin/train.py``, ``deconas_plugin/test.py`` and
``tools/derive.py`` exactly as from a shell (``runpy`` with their command line), so that a part pays the
torch and BasicSR import once instead of once per entry point."""
import logging
import os.path as osp
import runpy
import sys
from typing import List

from .runner import ROOT


def fresh_basicsr_logger():
    """Let the next ``get_root_logger(log_file=...)`` open its own log file: BasicSR keeps the first one of
    a process otherwise (and the test metrics are read back from the test's log)."""
    from basicsr.utils import logger as basicsr_logger
    log = logging.getLogger('basicsr')
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    basicsr_logger.initialized_logger.pop('basicsr', None)


def run_entry(script: str, args: List[str]):
    """``python <script> <args>`` from the project root, in this process; RuntimeError on a non-zero exit.

    What the script changes that a new interpreter would have dropped is restored afterwards: ``sys.argv``,
    torch's thread count and the handlers of the stop signals (the training loop's stop-cleanly handlers,
    ``utils.preemption``: after the script, SIGTERM ends this process again).
    """
    import signal
    import threading

    import torch

    from deconas_plugin.utils.preemption import STOP_SIGNALS
    main = threading.current_thread() is threading.main_thread()
    saved = sys.argv, torch.get_num_threads(), {s: signal.getsignal(s) for s in STOP_SIGNALS} if main else {}
    sys.argv = [script] + [str(a) for a in args]
    fresh_basicsr_logger()
    try:
        runpy.run_path(osp.join(ROOT, script), run_name='__main__')
    except SystemExit as e:
        if e.code not in (0, None):
            raise RuntimeError(f'{script} {" ".join(map(str, args))} exited with {e.code}') from None
    finally:
        sys.argv = saved[0]
        torch.set_num_threads(saved[1])
        for sig, handler in saved[2].items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
