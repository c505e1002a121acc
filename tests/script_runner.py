"""Run a project script (``tools/*.py``, ``deconas_plugin/train.py`` ...) inside the test process.

``run_script(path, *args)`` executes the file as ``python path args`` would (``__name__ ==
'__main__'``, ``sys.argv``), so its whole command-line path runs: argument parsing, the
``run_tool`` wrapper and its exit status. It saves the 5-10 s of CPU a new interpreter spends
importing torch and BasicSR; a test keeps a real subprocess only where the process boundary itself
is what it checks. An exception the script lets escape (a bug: ``python`` would print its
traceback) propagates to the test and fails it. What a script changes in the process that a new
interpreter would have dropped (``sys.argv``, ``sys.path``, the global random generators, torch's
thread count) is restored, so that the tests after it run as they would have.
"""
import contextlib
import io
import os
import random
import runpy
import sys
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class ScriptResult:
    """What ``python <script>`` would have left: its exit status and its output."""
    returncode: int
    stdout: str
    stderr: str


def run_script(path: str, *args: str, columns: int = 1000) -> ScriptResult:
    """Run ``path`` as ``__main__`` with ``sys.argv = [path, *args]`` and captured stdout/stderr;
    the process state listed in the module docstring is restored afterwards.
    ``columns`` is the terminal width argparse wraps its help and errors at (wide: no wrapping)."""
    saved_argv, saved_path, saved_columns = sys.argv, list(sys.path), os.environ.get('COLUMNS')
    saved_state = random.getstate(), np.random.get_state(), torch.random.get_rng_state(), torch.get_num_threads()
    out, err = io.StringIO(), io.StringIO()
    returncode = 0
    try:
        sys.argv = [str(path), *map(str, args)]
        os.environ['COLUMNS'] = str(columns)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                runpy.run_path(str(path), run_name='__main__')
            except SystemExit as e:
                # As the interpreter does: None is 0, an int is the status, anything else is printed, status 1.
                if e.code is None or isinstance(e.code, int):
                    returncode = e.code or 0
                else:
                    print(e.code, file=sys.stderr)
                    returncode = 1
    finally:
        sys.argv = saved_argv
        random.setstate(saved_state[0])
        np.random.set_state(saved_state[1])
        torch.random.set_rng_state(saved_state[2])
        torch.set_num_threads(saved_state[3])
        sys.path[:] = saved_path
        if saved_columns is None:
            os.environ.pop('COLUMNS', None)
        else:
            os.environ['COLUMNS'] = saved_columns
    return ScriptResult(returncode, out.getvalue(), err.getvalue())
