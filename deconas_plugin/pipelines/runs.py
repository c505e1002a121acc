"""The runs of the pipelines (demo, search vs random): each entry point a child process from the project root,
its output in ``<out>/logs/<log name>.log``; a finished training or test is reused, an interrupted one resumed."""
import os
import os.path as osp
import re
import sys
import threading
import time
from typing import List, Optional, Sequence

from .. import derive as derive_lib
from ..derive import plain
from ..utils.checkpoint import write_text_if_changed
from ..utils.logged_run import BackgroundRun, child_env, log_tail
from ..utils.preemption import EXIT_PREEMPTED
from ..utils.sr_data import prepared_test_set

ROOT = derive_lib.PROJECT_ROOT
PROGRESS_EVERY = 30.0  # seconds between the progress lines of a background training that is waited for


class PipelineError(Exception):
    """A user error of a pipeline (missing experiment, bad template...) or a failed run; the message says
    which, and where its log is."""


def read_options(path: str) -> dict:
    try:
        return derive_lib.read_options(path)
    except derive_lib.DeriveError as e:
        raise PipelineError(str(e)) from None


def write_options(path: str, opt: dict, header: str = '') -> str:
    """``opt`` as the YAML file ``path``, rewritten only when its content changes (keeps mtimes); ``path``."""
    write_text_if_changed(path, header + derive_lib.dump_options(opt))
    return path


def mtime(path: Optional[str]) -> float:
    return os.stat(path).st_mtime if path and osp.exists(path) else -1.0


def shown(path: str) -> str:
    """``path`` relative to the project root when it lies inside it (shorter in messages and tables)."""
    return osp.relpath(path, ROOT) if path and osp.abspath(path).startswith(ROOT + os.sep) else path


def prepared_test_sets(folders: Sequence[str], scale: int, name: Optional[str] = None) -> List[dict]:
    """The test datasets of folders ``tools/prepare_benchmark.py`` wrote (``sr_data.prepared_test_set``:
    GTmod<s>/LRbicx<s>, each named ``name`` or after its folder); a folder without them is a PipelineError."""
    try:
        return [prepared_test_set(folder, scale, name) for folder in folders]
    except ValueError as e:
        raise PipelineError(str(e)) from None


def test_options(train_opt: dict, checkpoint: Optional[str], sets: List[dict], name: str,
                 save_img: bool = False) -> dict:
    """The test option file of a trained network (``train_opt``'s scale, num_gpu and network_g) on ``sets``:
    the test protocol of ``options/demo/demo_test.yml`` (PSNR and SSIM on Y, border = scale) filled in;
    the checkpoint's EMA weights when the training keeps them (``derive.weights_key``); images saved
    (``results/<name>/visualization/``) only with ``save_img``."""
    s = train_opt['scale']
    opt = read_options(osp.join(ROOT, 'options', 'demo', 'demo_test.yml'))
    opt.update(name=name, scale=s, num_gpu=train_opt.get('num_gpu', 'auto'), network_g=plain(train_opt['network_g']),
               datasets={f'test_{i}': dict(d) for i, d in enumerate(sets, 1)})
    opt['path'].update(pretrain_network_g=checkpoint, param_key_g=derive_lib.weights_key(train_opt))
    opt['val']['save_img'] = save_img
    for metric in opt['val']['metrics'].values():
        metric['crop_border'] = s
    return plain(opt)


def training_progress(log_path: str) -> Optional[str]:
    """``'iteration 2,100, eta 0:02:00'`` from the last progress line of a BasicSR training log, or None."""
    found = re.findall(r'iter:\s*([\d,]+), lr:[^\]]*\] \[eta: ([^,]+),', log_tail(log_path, 20000))
    return f'iteration {found[-1][0]}, eta {found[-1][1]}' if found else None


class Runner:
    """Runs the entry points as subprocesses from the project root, logging to ``<out>/logs``: one at a
    time (``run_cmd``: output on the console too unless ``quiet``), and others in the background
    (``start``/``wait``: output only in the log). With ``concurrent``, from several threads at once, every
    run a background one. ``stop_all`` stops the running ones and starts no new one."""

    def __init__(self, out: str, threads: Optional[int] = None, quiet: bool = False, concurrent: bool = False):
        self.out, self.threads, self.quiet, self.concurrent = out, threads, quiet, concurrent
        self.options = osp.join(out, 'options')
        self.logs = osp.join(out, 'logs')
        self.live = set()  # the running BackgroundRuns
        self.lock = threading.Lock()
        self.stopping = False
        self.console = sys.stdout  # messages go here even while a step redirects sys.stdout into its log

    def say(self, text: str):
        print(text, file=self.console, flush=True)

    def run_cmd(self, cmd: List[str], log_name: str, what: str):
        """Run ``cmd`` to its end; PipelineError, with its log's last error line, when it fails."""
        self.wait(self.start(cmd, log_name, what, background=self.concurrent), what)

    def start(self, cmd: List[str], log_name: str, what: str, background: bool = True) -> BackgroundRun:
        """Start ``cmd`` (``wait`` for it); without ``background``, its output goes to the console too (unless
        ``quiet``). PipelineError once ``stop_all`` was called."""
        log_path = osp.join(self.logs, f'{log_name}.log')
        if not self.concurrent:
            self.say(f'    $ {" ".join(shown(c) if osp.isabs(c) else c for c in cmd)}'
                     + (f' &   (in the background; output: {log_path})' if background else ''))
        with self.lock:
            if self.stopping:
                raise PipelineError(f'{what}: not started, another run failed')
            run = BackgroundRun(cmd, log_path, ROOT, child_env(self.threads), echo=not (background or self.quiet))
            self.live.add(run)
        return run

    def wait(self, run: BackgroundRun, what: str, progress: bool = False):
        """Wait for a ``start``ed run (with ``progress``: printing the training's iteration and eta every
        ``PROGRESS_EVERY`` seconds); PipelineError, with its log's last error line, when it failed."""
        try:
            rc = run.wait(PROGRESS_EVERY if progress else None)
            while rc is None:
                self.say(f'    {what}: {training_progress(run.log_path) or "starting"} ({run.seconds:.0f} s so far)')
                rc = run.wait(PROGRESS_EVERY)
        finally:
            with self.lock:
                self.live.discard(run)
        self.check(rc, what, run.log_path)

    @staticmethod
    def check(rc: int, what: str, log_path: str):
        if rc != 0:
            lines = log_tail(log_path, 20000).splitlines()
            errors = [line for line in lines if line.startswith('error:')]
            last = errors[-1] if errors else next((line for line in reversed(lines) if line.strip()), '')
            raise PipelineError(f'{what} failed (exit code {rc}): {last.strip()} (full log: {log_path})')

    def stop_all(self):
        """Stop the background runs (SIGTERM: a training writes its state; a rerun resumes it), start no other."""
        with self.lock:
            self.stopping = True
            runs = [run for run in self.live if run.poll() is None]
        for run in runs:
            name = osp.splitext(osp.basename(run.log_path))[0]
            self.say(f'    stopping {name} (in the background) ...')
            rc = run.stop()
            saved = '; its training state is saved, the next run resumes it' if rc == EXIT_PREEMPTED else ''
            self.say(f'    {name} stopped (exit code {rc}{saved})')

    def training_command(self, opt_path: str, user_given: bool = False) -> Optional[List[str]]:
        """The ``train.py`` command of a training, or None when its experiment is finished: it has
        ``net_g_latest.pth`` and a stored option file equal to ``opt_path`` (``user_given``: any). A run
        made with other options is archived first (``<name>_archived_<time>``, as BasicSR does;
        ``user_given``: reused as it is); an interrupted one resumes (``--auto_resume``)."""
        opt = read_options(opt_path)
        exp = osp.join(ROOT, 'experiments', opt['name'])
        stored = osp.join(exp, osp.basename(opt_path))
        same = osp.isfile(stored) and plain(read_options(stored)) == plain(opt)
        if osp.isfile(osp.join(exp, 'models', 'net_g_latest.pth')) and (same or user_given):
            if not same:
                self.say(f'    note: {exp} was made with another option file than {opt_path}; reused as is')
            return None
        if osp.isdir(exp) and not same and not user_given:
            archived = f"{exp}_archived_{time.strftime('%Y%m%d_%H%M%S')}"
            os.replace(exp, archived)
            self.say(f'    {exp} held a run with other options: moved to {osp.basename(archived)}')
        return [sys.executable, osp.join(ROOT, 'deconas_plugin', 'train.py'), '-opt', opt_path, '--auto_resume']

    def train_file(self, opt_path: str, log_name: str, what: str, user_given: bool = False) -> str:
        """Train (or skip a finished run, or resume an interrupted one: ``training_command``); 'ran' or 'skipped'."""
        cmd = self.training_command(opt_path, user_given)
        if cmd is None:
            return 'skipped'
        self.run_cmd(cmd, log_name, what)
        return 'ran'

    def train(self, opt: dict, header: str) -> str:
        """Retrain ``opt`` from ``<out>/options/<name>.yml`` (``train_file``); 'ran' or 'skipped'."""
        path = write_options(osp.join(self.options, f"{opt['name']}.yml"), opt, header)
        return self.train_file(path, opt['name'], f"retrain {opt['name']}")

    def test_file(self, opt_path: str, log_name: str, what: str) -> tuple:
        """Test (or reuse a test log newer than the option file and the checkpoint that holds every test
        set); ('ran' or 'skipped', {set: {metric: value}})."""
        from ..reporting.metrics import find_test_log, parse_test_log
        opt = read_options(opt_path)
        results = osp.join(ROOT, 'results', opt['name'])
        names = {d['name'] for d in opt['datasets'].values()}
        log = find_test_log(results)
        newest_input = max(mtime(opt_path), mtime(opt['path'].get('pretrain_network_g')))
        if log and mtime(log) > newest_input and set(parse_test_log(log)) >= names:
            return 'skipped', parse_test_log(log)
        self.run_cmd([sys.executable, osp.join(ROOT, 'deconas_plugin', 'test.py'), '-opt', opt_path], log_name, what)
        log = find_test_log(results)
        metrics = parse_test_log(log) if log else {}
        if not set(metrics) >= names:
            raise PipelineError(f"{what}: no metrics of {sorted(names - set(metrics))} in {log}")
        return 'ran', metrics

    def test(self, opt: dict, header: str) -> tuple:
        """Test ``opt`` from ``<out>/options/<name>.yml`` (``test_file``); ('ran' or 'skipped', metrics)."""
        path = write_options(osp.join(self.options, f"{opt['name']}.yml"), opt, header)
        return self.test_file(path, opt['name'], f"test {opt['name']}")
