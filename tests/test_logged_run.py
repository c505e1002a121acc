"""Child runs of the tools (``utils.logged_run``): a SIGTERM to the tool stops its child cleanly."""
import os.path as osp
import signal
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

CHILD = ('import signal, sys, time\n'
         'def stop(*_):\n'
         '    open(sys.argv[1], "w").write("state written")\n'
         '    sys.exit(75)\n'
         'signal.signal(signal.SIGTERM, stop)\n'
         'open(sys.argv[1] + ".ready", "w").close()\n'
         'time.sleep(60)\n')


def test_sigterm_to_a_tool_stops_its_child_with_sigterm(tmp_path):
    """Under ``exit_on_sigterm``, ``kill <tool>`` gives the running child SIGTERM (a training writes its state
    and exits 75), waits for it, and ends the tool with 143; without it the child would outlive the tool."""
    marker, log = tmp_path / 'marker', tmp_path / 'child.log'
    module = osp.join(ROOT, 'deconas_plugin', 'utils', 'logged_run.py')  # stdlib only: no torch to import
    tool = ('import importlib.util, os, sys\n'
            f'spec = importlib.util.spec_from_file_location("logged_run", {module!r})\n'
            'lr = importlib.util.module_from_spec(spec)\nspec.loader.exec_module(lr)\n'
            'with lr.exit_on_sigterm():\n'
            f'    lr.BackgroundRun([sys.executable, "-c", {CHILD!r}, {str(marker)!r}], {str(log)!r}, ".",\n'
            '                     dict(os.environ), echo=True).wait()\n')
    proc = subprocess.Popen([sys.executable, '-c', tool], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not osp.exists(f'{marker}.ready'):
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 143, proc.stderr.read()
        assert marker.read_text() == 'state written'
    finally:
        if proc.poll() is None:
            proc.kill()
