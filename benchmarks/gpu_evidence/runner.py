"""Running the stages: the plan printed first, every part under its own time limit, the stage's JSON and
Markdown rewritten as soon as a part finishes, a stage whose results are complete skipped unless forced.

``<out>/<stage>.json`` holds ``stage``, ``tiny``, ``complete`` (every part ran to an end: done, failed
or out of time), ``parts`` (per part: ``status`` done | failed | timed out | not run, ``wall_s``,
``limit_s``, ``stamp`` and ``result`` or ``error``), ``summary`` (the stage's answer, from its parts) and
``stamp`` (GPU, driver, torch, CUDA, cuDNN, commit, date of the last part run). A stage run again
without ``--force`` keeps its parts that are done and runs the others (a run cut short resumes).
Subprocess and part logs go to ``<out>/logs/``.
"""
import datetime
import importlib
import json
import os
import os.path as osp
import subprocess
import sys
import time
import traceback
from typing import Callable, Dict, List, Optional, Sequence

from deconas_plugin.utils.checkpoint import atomic_write_text
from deconas_plugin.utils.logged_run import BackgroundRun, child_env, log_tail
from deconas_plugin.utils.machine import default_threads, describe_machine, source_commit, use_threads
from deconas_plugin.utils.markdown_table import md_table
from .plan import STAGE_LIMIT_S, STAGES, plan as make_plan

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEFAULT_DATA = osp.join(ROOT, '.gpu', 'data')
KILL_GRACE_S = 10  # after SIGTERM at the time limit, then SIGKILL


class EvidenceError(Exception):
    """A user error of the runner (missing data, an unknown stage, a stage that needs another first)."""


def stamp(device: str, commit: Optional[str] = None) -> dict:
    """What every result names: the machine (``describe_machine``: CPU, torch, Python...), GPU, driver, CUDA and
    cuDNN versions, commit, date (UTC). ``commit``: what the caller says the tree is, for a copy without ``.git``
    (git's answer, ``<sha>+dirty`` with uncommitted changes, wins where there is one)."""
    import torch
    head = source_commit(ROOT)
    gpu = device.startswith('cuda') and torch.cuda.is_available()
    return dict(describe_machine(torch.device(device if gpu else 'cpu')),
                date=datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC'),
                commit=head or commit, commit_from='git' if head else '--commit' if commit else None,
                cuda=torch.version.cuda, device=device,
                cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
                gpu=torch.cuda.get_device_name(0) if gpu else None, gpus=torch.cuda.device_count() if gpu else 0,
                driver=_driver() if gpu else None)


def _driver() -> Optional[str]:
    """The NVIDIA driver version: nvidia-smi's, else the kernel module's (``/proc/driver/nvidia/version``)."""
    try:
        out = subprocess.run(['nvidia-smi', '--query-gpu=driver_version', '--format=csv,noheader'],
                             capture_output=True, text=True, timeout=20)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired):
        pass
    try:
        with open('/proc/driver/nvidia/version') as f:
            return f.readline().strip() or None
    except OSError:
        return None


def part_function(spec: str) -> Callable:
    """``'speed:adam'`` -> ``benchmarks.gpu_evidence.speed.adam``."""
    module, name = spec.split(':')
    return getattr(importlib.import_module(f'{__package__}.{module}'), name)


def call_part(fn: str, ctx: dict, args: dict) -> dict:
    """``{'status': 'done', 'result': ...}`` of the part function ``fn`` called with ``ctx`` and ``args``, or
    ``{'status': 'failed', 'error': ...}``."""
    try:
        return {'status': 'done', 'result': part_function(fn)(ctx, **args)}
    except Exception as e:  # noqa: BLE001  (recorded; the stage goes on with its next part)
        traceback.print_exc()
        return {'status': 'failed', 'error': f'{type(e).__name__}: {e}'[:1000]}


def run_isolated(cmd: List[str], limit_s: float, log_path: str, env: Optional[dict] = None) -> dict:
    """Run ``cmd`` in its own process group, output appended to ``log_path``; at ``limit_s`` (or on an
    interrupt of the runner) the whole group gets SIGTERM, then SIGKILL after ``KILL_GRACE_S``.
    ``{'returncode', 'timed_out', 'wall_s'}``."""
    t0 = time.perf_counter()
    run = BackgroundRun(cmd, log_path, ROOT, env, own_group=True, grace=KILL_GRACE_S)
    returncode = run.wait(limit_s)
    timed_out = returncode is None
    if timed_out:
        returncode = run.stop()
    return {'returncode': returncode, 'timed_out': timed_out, 'wall_s': time.perf_counter() - t0}


class Runner:
    """Runs stages into ``out``. ``isolate``: every part in its own process under its time limit (the
    default); without, parts run in this process (the tests' tiny runs) and the limits are not enforced.
    ``threads``: torch threads of a part (default ``default_threads()``, the rule of every tool; 0: PyTorch's)."""

    def __init__(self, out: str, data: str = DEFAULT_DATA, device: str = 'cuda', tiny: bool = False,
                 isolate: bool = True, prefix: Optional[str] = None, say: Callable[[str], None] = print,
                 commit: Optional[str] = None, threads: Optional[int] = None):
        self.out, self.data, self.device, self.tiny, self.isolate = osp.abspath(out), osp.abspath(data), device, tiny, \
            isolate
        self.plan = make_plan(tiny)
        self.prefix = prefix or f'gpu_evidence_{osp.basename(osp.normpath(self.out))}'
        self.say, self.commit = say, commit
        self.threads = default_threads() if threads is None else threads

    # ------------------------------------------------------------------------------------------ state
    def result_path(self, stage: str, ext: str = 'json') -> str:
        return osp.join(self.out, f'{stage}.{ext}')

    def load(self, stage: str) -> Optional[dict]:
        path = self.result_path(stage)
        if not osp.isfile(path):
            return None
        with open(path, encoding='utf-8') as f:
            return json.load(f)

    def context(self, stage: str) -> dict:
        """What a part gets besides its arguments (JSON: it crosses into the part's process)."""
        return {'out': self.out, 'data': self.data, 'device': self.device, 'tiny': self.tiny, 'stage': stage,
                'prefix': self.prefix, 'logs': osp.join(self.out, 'logs'), 'commit': self.commit,
                'results': {s: self.load(s) for s in STAGES if s != stage and osp.isfile(self.result_path(s))}}

    # ------------------------------------------------------------------------------------------- plan
    def plan_text(self, stages: Sequence[str], force: bool = False) -> str:
        sizes = 'tiny, CPU sizes' if self.tiny else 'one H200; estimates from earlier H200 step times'
        lines = [f'GPU evidence plan ({sizes}), '
                 f'device {self.device}, '
                 f'results in {self.out}:']
        total = 0
        for stage in stages:
            parts, done = self.plan[stage], self.load(stage)
            if done and done.get('complete') and not force:
                lines.append(f'  {stage}: skipped (complete in {self.result_path(stage)}; --force reruns it)')
                continue
            kept = {n for n, p in ((done or {}).get('parts') or {}).items() if p['status'] == 'done'} if not force \
                else set()
            todo = [p for p in parts if p['name'] not in kept]
            est, limit = sum(p['estimate_s'] for p in todo), sum(p['limit_s'] for p in todo)
            total += est
            lines.append(f'  {stage}: about {_mmss(est)} (limit {_mmss(limit)})'
                         + (f', {len(kept)} part(s) kept from an earlier run' if kept else ''))
            for p in todo:
                lines.append(f'    - {p["name"]}: about {p["estimate_s"]} s, limit {p["limit_s"]} s')
        lines.append(f'  total: about {_mmss(total)}')
        return '\n'.join(lines)

    # -------------------------------------------------------------------------------------------- run
    def run(self, stages: Sequence[str], force: bool = False) -> Dict[str, dict]:
        unknown = [s for s in stages if s not in STAGES]
        if unknown:
            raise EvidenceError(f'unknown stage(s) {unknown}; choose from {", ".join(STAGES)} or all')
        self.say(self.plan_text(stages, force))
        out = {}
        for stage in stages:
            done = self.load(stage)
            if done and done.get('complete') and not force:
                out[stage] = done
                continue
            out[stage] = self.run_stage(stage, None if force else done)
        return out

    def run_stage(self, stage: str, earlier: Optional[dict] = None) -> dict:
        from . import STAGE_MODULES
        module = STAGE_MODULES[stage]
        module.check_inputs(self, stage)  # a clear error before any part runs
        # the stage's 7 minutes (the parts' limits add up to less: a part stopped at its limit overruns it by the
        # kill grace, and the later parts still fit)
        limit_s = max(sum(p['limit_s'] for p in self.plan[stage]), STAGE_LIMIT_S)
        result = {'stage': stage, 'tiny': self.tiny, 'complete': False, 'parts': {}, 'summary': None,
                  'stamp': stamp(self.device, self.commit), 'limit_s': limit_s}
        kept = {n: p for n, p in ((earlier or {}).get('parts') or {}).items() if p['status'] == 'done'}
        deadline = time.monotonic() + limit_s
        self.say(f'== {stage}')
        for part in self.plan[stage]:
            name = part['name']
            if name in kept:
                result['parts'][name] = kept[name]
                self.say(f'  {name}: kept from {kept[name]["stamp"]["date"]}')
                continue
            if self.isolate and time.monotonic() + part['limit_s'] > deadline + 1:
                rec = {'status': 'not run', 'error': "the stage's time was spent", 'limit_s': part['limit_s']}
            else:
                rec = self.run_part(stage, part)
            result['parts'][name] = rec
            self.say(f'  {name}: {rec["status"]}' + (f' in {rec["wall_s"]:.1f} s' if 'wall_s' in rec else '')
                     + (f' ({rec["error"][:200]})' if rec.get('error') else ''))
            result['summary'] = module.summarize(result['parts'], self.context(stage))
            self.write(stage, result)
        result['complete'] = True
        result['summary'] = module.summarize(result['parts'], self.context(stage))
        self.write(stage, result)
        return result

    def run_part(self, stage: str, part: dict) -> dict:
        ctx = self.context(stage)
        rec = {'limit_s': part['limit_s'], 'args': part['args'], 'stamp': stamp(self.device, self.commit)}
        t0 = time.perf_counter()
        if not self.isolate:
            threads = use_threads(self.threads)
            try:
                rec.update(call_part(part['fn'], ctx, part['args']))
            finally:
                use_threads(threads)
            return dict(rec, wall_s=time.perf_counter() - t0)
        work = osp.join(self.out, 'logs', f'{stage}.{part["name"]}')
        log = f'(log: {osp.relpath(work + ".log", self.out)})'
        os.makedirs(osp.dirname(work), exist_ok=True)
        atomic_write_text(work + '.in.json', json.dumps({'fn': part['fn'], 'args': part['args'], 'context': ctx}))
        if osp.exists(work + '.out.json'):
            os.remove(work + '.out.json')
        env = dict(child_env(self.threads), PYTHONPATH=os.pathsep.join(
            [ROOT] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]))
        run = run_isolated([sys.executable, '-m', f'{__package__}.worker', work], part['limit_s'], work + '.log', env)
        rec['wall_s'] = run['wall_s']
        if run['timed_out']:
            return dict(rec, status='timed out', error=f'stopped at its limit of {part["limit_s"]} s {log}')
        try:
            with open(work + '.out.json', encoding='utf-8') as f:
                return dict(rec, **json.load(f))
        except (OSError, ValueError):
            tail = ' '.join(log_tail(work + '.log', 600).split()) if osp.isfile(work + '.log') else ''
            return dict(rec, status='failed', error=f'exit code {run["returncode"]} without a result {log}: {tail}')

    def write(self, stage: str, result: dict):
        from . import STAGE_MODULES
        os.makedirs(self.out, exist_ok=True)
        atomic_write_text(self.result_path(stage), json.dumps(result, indent=2, default=str) + '\n')
        atomic_write_text(self.result_path(stage, 'md'), render_stage(result, STAGE_MODULES[stage].markdown))


def render_stage(result: dict, body: Callable[[dict], List[str]]) -> str:
    st = result['stamp']
    where = (f'{st["gpu"]} (driver {st["driver"]}, {st["gpus"]} GPU(s))' if st.get('gpu') else
             f'CPU ({st.get("cpu")})')
    lines = [f'# GPU evidence: {result["stage"]}' + (' (tiny sizes, not a measurement)' if result['tiny'] else ''),
             '', f'- {where}; torch {st["torch"]}, CUDA {st["cuda"]}, cuDNN {st["cudnn"]}, Python {st["python"]}',
             f'- commit {st["commit"]}'
             + (' (as given by --commit: the tree had no .git)' if st.get('commit_from') == '--commit' else '')
             + f', {st["date"]}; ' + ('complete' if result['complete'] else 'in progress or cut short'),
             '']
    lines += md_table(['part', 'status', 'wall s', 'limit s', 'measured'], 'llrrl',
                      [[name, p['status'] + (': ' + p['error'][:120].replace('|', '/') if p.get('error') else ''),
                        f'{p.get("wall_s", 0):.0f}', p['limit_s'], (p.get('stamp') or {}).get('date', '-')]
                       for name, p in result['parts'].items()])
    lines += [''] + body(result)
    return '\n'.join(lines).rstrip() + '\n'


def _mmss(seconds: float) -> str:
    return f'{int(seconds) // 60}:{int(seconds) % 60:02d}'
