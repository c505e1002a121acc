"""Run a project script (``tools/*.py``, ``deconas_plugin/train.py`` ...) inside the test process.

``run_script(path, *args)`` executes the file as ``python path args`` would (``__name__ ==
'__main__'``, ``sys.argv``), so its whole command-line path runs: argument parsing, the
``run_tool`` wrapper and its exit status. It saves the 5-10 s of CPU a new interpreter spends
importing torch and BasicSR; a test keeps a real subprocess only where the process boundary itself
is what it checks. An exception the script lets escape (a bug: ``python`` would print its
traceback) propagates to the test and fails it.
"""
import contextlib
import io
import os
import runpy
import sys
from dataclasses import dataclass


@dataclass
class ScriptResult:
    """What ``python <script>`` would have left: its exit status and its output."""
    returncode: int
    stdout: str
    stderr: str


def run_script(path: str, *args: str, columns: int = 1000) -> ScriptResult:
    """Run ``path`` as ``__main__`` with ``sys.argv = [path, *args]`` and captured stdout/stderr;
    ``sys.argv``, ``sys.path`` and the environment's ``COLUMNS`` are restored afterwards.
    ``columns`` is the terminal width argparse wraps its help and errors at (wide: no wrapping)."""
    saved_argv, saved_path, saved_columns = sys.argv, list(sys.path), os.environ.get('COLUMNS')
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
        sys.path[:] = saved_path
        if saved_columns is None:
            os.environ.pop('COLUMNS', None)
        else:
            os.environ['COLUMNS'] = saved_columns
    return ScriptResult(returncode, out.getvalue(), err.getvalue())
