"""Kill and resume: a search or a retrain killed with SIGKILL (at a chosen iteration, or halfway through
writing a checkpoint) and resumed ends exactly where an uninterrupted run does."""
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

import deconas_plugin  # noqa: F401
from deconas_plugin.utils.checkpoint import latest_valid_state
from shared_data import ROOT
from tiny_options import search_options, train_options, write_options

TRAIN = [sys.executable, 'deconas_plugin/train.py']


def resume_options(data, name, tmp_path, total_iter=40, freq=8, workers=0, trace=False):
    """A tiny search whose checkpoints fall inside epochs (10 images x enlarge 2 / batch 2 = 10
    iterations per epoch), with 2 REINFORCE steps per phase; ``trace``: rank0_trace.jsonl gets a row
    per iteration (which does not change the search)."""
    opt = search_options(data, name, total_iter)
    opt['datasets']['train']['num_worker_per_gpu'] = workers
    opt['search']['controller_steps'] = 2
    opt['search']['rank_trace'] = trace
    opt['logger'].update(save_checkpoint_freq=freq, print_freq=100)
    opt['val']['val_freq'] = 1000
    return write_options(tmp_path / f'{name}.yml', opt)


def weights(name, label):
    return torch.load(osp.join(ROOT, 'experiments', name, 'models', f'{label}_latest.pth'))['params']


def history(name):
    with open(osp.join(ROOT, 'experiments', name, 'search_history.jsonl')) as f:
        return [json.loads(line) for line in f]


# Loaded by every subprocess through PYTHONPATH: SIGKILL the process at a chosen place, so a test
# kills exactly there (not wherever a poll loop happens to catch it); or make it sleep inside the
# first collective of an iteration (a stalled rank). Under torchrun only the rank DECONAS_TEST_KILL_RANK
# (if set) is hit, and only in the first group (a restarted group runs clean).
KILLER = """
import os, signal
KILL_AT = os.environ.get('DECONAS_TEST_KILL_AT_ITER')  # at the start of this training iteration
KILL_WRITING = os.environ.get('DECONAS_TEST_KILL_WRITING')  # halfway through writing this checkpoint file
STALL_AT = os.environ.get('DECONAS_TEST_KILL_STALL_AT_ITER')  # sleep in this iteration's first all-reduce
KILL_RANK = os.environ.get('DECONAS_TEST_KILL_RANK')
FIRST_GROUP = os.environ.get('TORCHELASTIC_RESTART_COUNT', '0') == '0'
if KILL_RANK is not None and os.environ.get('RANK') != KILL_RANK or not FIRST_GROUP:
    KILL_AT = KILL_WRITING = STALL_AT = None
if KILL_AT or KILL_WRITING or STALL_AT:  # the checkout under test (the processes start in its root), not an
    import sys                           # installed copy: this runs before the script puts its root on sys.path
    sys.path.insert(0, os.getcwd())
if STALL_AT:
    import sys
    import time
    import torch.distributed
    from deconas_plugin.utils import dist as dist_util
    all_reduce = torch.distributed.all_reduce

    def stalled_all_reduce(*args, **kwargs):
        if dist_util._STEP['iter'] == int(STALL_AT):
            print(f'stalling at iteration {STALL_AT}', file=sys.stderr, flush=True)
            time.sleep(float(os.environ['DECONAS_TEST_KILL_STALL_S']))
        return all_reduce(*args, **kwargs)
    torch.distributed.all_reduce = stalled_all_reduce
if KILL_AT or KILL_WRITING:
    import io
    import torch
    import deconas_plugin
    from deconas_plugin.models import base, deconas_search_model, deconas_sr_model
    from deconas_plugin.utils.checkpoint import atomic_open

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    if KILL_AT:
        for cls in (deconas_sr_model.DeCoNASSRModel, deconas_search_model.DeCoNASSearchModel):
            def wrap(step):
                def optimize_parameters(self, current_iter):
                    if current_iter == int(KILL_AT):
                        die()
                    return step(self, current_iter)
                return optimize_parameters
            if 'optimize_parameters' in vars(cls):
                cls.optimize_parameters = wrap(vars(cls)['optimize_parameters'])
    if KILL_WRITING:
        save = base.atomic_save

        def atomic_save(obj, path):
            if os.path.basename(path) != KILL_WRITING:
                return save(obj, path)
            buffer = io.BytesIO()
            torch.save(obj, buffer)
            with atomic_open(path) as f:  # the project's own atomic write, killed halfway
                f.write(buffer.getvalue()[:buffer.tell() // 2])
                f.flush()
                os.fsync(f.fileno())
                die()
        base.atomic_save = atomic_save
"""


def killed_env(tmp_path, **kill):
    folder = tmp_path / 'killer'
    folder.mkdir(exist_ok=True)
    (folder / 'sitecustomize.py').write_text(KILLER)
    env = {k: v for k, v in os.environ.items() if not k.startswith('DECONAS_TEST_KILL')}
    env['PYTHONPATH'] = os.pathsep.join(p for p in (str(folder), os.environ.get('PYTHONPATH')) if p)
    env.update({f'DECONAS_TEST_KILL_{k.upper()}': str(v) for k, v in kill.items()})
    return env


def run_killed(cmd, tmp_path, **kill):
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=killed_env(tmp_path, **kill))
    assert proc.returncode == -signal.SIGKILL, f'not killed (exit {proc.returncode}): {proc.stderr[-3000:]}'


def resume(cmd):
    resumed = subprocess.run(cmd + ['--auto_resume'], cwd=ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return resumed.stdout + resumed.stderr


@pytest.fixture(scope='module')
def reference_search(embedded_data, tmp_path_factory):
    """An uninterrupted tiny search (no loader workers), shared by the resume tests of this module."""
    import glob
    import shutil
    import uuid
    name = f'resume_ref_{uuid.uuid4().hex[:8]}'
    opt = resume_options(embedded_data, name, tmp_path_factory.mktemp('ref'), freq=6)
    subprocess.run(TRAIN + ['-opt', opt], cwd=ROOT, check=True, capture_output=True)
    yield name
    for parent in ('experiments', 'tb_logger', 'results'):
        for path in glob.glob(osp.join(ROOT, parent, name + '*')):
            shutil.rmtree(path, ignore_errors=True)


def assert_same_search(ref, run):
    for label in ('net_g', 'net_c'):
        a, b = weights(ref, label), weights(run, label)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), f'{label} differs after resume'
    rows_ref, rows_run = history(ref), history(run)
    assert [r['controller_step'] for r in rows_run] == list(range(1, len(rows_run) + 1))  # none lost or doubled
    assert [(r['genotype'], r['reward']) for r in rows_ref] == [(r['genotype'], r['reward']) for r in rows_run]


@pytest.mark.parametrize('workers', [0, 2])
def test_search_killed_inside_a_phase_and_resumed_matches_uninterrupted_run(
        embedded_data, tmp_path, experiment_name, reference_search, workers):
    """Checkpoints every 6 iterations, controller phases every 4: killed at the start of iteration
    22, the run resumes from 18.state, between phases, with 2 child draws of the phase at 16 still
    pending, and the history rows that the phase at iteration 20 wrote after that checkpoint must go.
    The reference ran without loader workers: each sample's crop and flips are seeded by its place
    in training, whatever the number of workers."""
    run = experiment_name('resume')
    cmd = TRAIN + ['-opt', resume_options(embedded_data, run, tmp_path, freq=6, workers=workers)]
    run_killed(cmd, tmp_path, at_iter=22)
    root = osp.join(ROOT, 'experiments', run)
    assert latest_valid_state(osp.join(root, 'training_states')).endswith(osp.sep + '18.state')
    state = torch.load(osp.join(root, 'training_states', '18.state'), weights_only=False)
    assert len(state['search']['pending_child_bits']) == 2  # iterations 19 and 20
    assert max(r['iter'] for r in history(run)) == 20  # rows written after the checkpoint
    assert 'Resuming training from epoch' in resume(cmd)
    assert_same_search(reference_search, run)


def test_search_killed_while_writing_a_checkpoint(embedded_data, tmp_path, experiment_name, reference_search):
    """SIGKILL halfway through writing 24.state: the half-written temporary file never takes the
    final name, the resume starts from 18.state and ends where the uninterrupted run does."""
    run = experiment_name('resume')
    cmd = TRAIN + ['-opt', resume_options(embedded_data, run, tmp_path, freq=6)]
    run_killed(cmd, tmp_path, writing='24.state')
    states = osp.join(ROOT, 'experiments', run, 'training_states')
    assert not osp.exists(osp.join(states, '24.state'))
    assert [n for n in os.listdir(states) if n.startswith('.tmp_')], 'the write was not cut off'
    assert latest_valid_state(states) == osp.join(states, '18.state')
    assert max(r['iter'] for r in history(run)) == 24
    resume(cmd)
    assert_same_search(reference_search, run)


def test_search_stopped_by_sigusr1_writes_a_state_and_resumes_exactly(
        embedded_data, tmp_path, experiment_name, reference_search):
    """SIGUSR1 (slurm's --signal warning) at a random moment of a single-process search: the iteration
    finishes, a training state of it is written, the process exits 75; --auto_resume ends as the
    uninterrupted run (history: every controller step once)."""
    import random

    from deconas_plugin.utils.preemption import EXIT_PREEMPTED
    run = experiment_name('resume_stop')
    cmd = TRAIN + ['-opt', resume_options(embedded_data, run, tmp_path, freq=6, trace=True)]
    seed = int.from_bytes(os.urandom(4), 'little')
    rng = random.Random(seed)
    target, delay = rng.randint(1, 38), rng.uniform(0, 0.2)
    where = f'seed {seed}: SIGUSR1 {delay:.2f} s after iteration {target}'
    trace = osp.join(ROOT, 'experiments', run, 'rank0_trace.jsonl')
    with open(tmp_path / 'stopped.log', 'w+') as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if osp.isfile(trace) and sum('"child"' in line for line in open(trace)) >= target:
                break
            time.sleep(0.05)
        time.sleep(delay)
        proc.send_signal(signal.SIGUSR1)
        code = proc.wait(timeout=240)
        log.seek(0)
        output = log.read()
    assert code == EXIT_PREEMPTED, f'{where}: exit {code}\n{output[-3000:]}'
    stopped = torch.load(latest_valid_state(osp.join(ROOT, 'experiments', run, 'training_states')),
                         weights_only=False)['iter']
    assert target <= stopped <= 40 and f'Stopped by SIGUSR1 after iteration {stopped}' in output, where
    assert f'iter: {stopped}.' in resume(cmd), where
    assert_same_search(reference_search, run)


def test_truncated_checkpoint_is_never_resumed(embedded_data, tmp_path, experiment_name):
    name = experiment_name('resume')
    opt_path = resume_options(embedded_data, name, tmp_path, total_iter=16, freq=8)
    subprocess.run(TRAIN + ['-opt', opt_path], cwd=ROOT, check=True, capture_output=True)
    states = osp.join(ROOT, 'experiments', name, 'training_states')
    newest = osp.join(states, '16.state')
    with open(newest, 'r+b') as f:  # cut it off mid-write
        f.truncate(os.path.getsize(newest) // 2)
    assert latest_valid_state(states) == osp.join(states, '8.state')
    opt = yaml.safe_load(open(opt_path))
    opt['train']['total_iter'] = 20
    with open(opt_path, 'w') as f:
        yaml.safe_dump(opt, f)
    resumed = subprocess.run(TRAIN + ['-opt', opt_path, '--auto_resume'], cwd=ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'iter: 8' in resumed.stdout + resumed.stderr


def test_retrain_killed_and_resumed_matches_uninterrupted_run(embedded_data, tmp_path, experiment_name):
    """A DeCoNASNet retrain (DeCoNASSRModel) killed at the start of iteration 8 resumes from 5.state,
    inside an epoch (6 images, batch 2; flips and rotations on), and ends with bit-identical weights."""
    def options(name):
        opt = train_options(embedded_data, name, total_iter=12)
        opt['logger'].update(save_checkpoint_freq=5, print_freq=100)
        return write_options(tmp_path / f'{name}.yml', opt)

    ref = experiment_name('retrain_ref')
    subprocess.run(TRAIN + ['-opt', options(ref)], cwd=ROOT, check=True, capture_output=True)
    run = experiment_name('retrain')
    cmd = TRAIN + ['-opt', options(run)]
    run_killed(cmd, tmp_path, at_iter=8)
    states = osp.join(ROOT, 'experiments', run, 'training_states')
    assert latest_valid_state(states) == osp.join(states, '5.state')
    assert 'Resuming training from epoch' in resume(cmd)
    a, b = weights(ref, 'net_g'), weights(run, 'net_g')
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), 'net_g differs after resume'


def test_grad_scaler_state_is_saved_and_restored(embedded_data, tmp_path):
    """The fp16 GradScaler's state (scale, growth tracker) goes into the training state and comes back
    on resume. fp16 training needs CUDA (tests/test_cuda.py runs it with a resume); here a CPU
    GradScaler stands in for it in the model, which saves and restores whatever scaler it has."""
    from basicsr.models import build_model
    from tiny_options import parsed_options

    def model():
        opt = parsed_options(train_options(embedded_data, 'scaler_unit'), str(tmp_path / 'exp'))
        m = build_model(opt)
        m.grad_scaler = torch.amp.GradScaler('cpu', init_scale=2.**16, growth_interval=2000)
        return m

    saved = model()
    trained = {'scale': 384.0, 'growth_factor': 2.0, 'backoff_factor': 0.5, 'growth_interval': 2000,
               '_growth_tracker': 17}  # e.g. after overflows and 17 clean steps
    saved.grad_scaler.load_state_dict(trained)
    saved.save_training_state(epoch=1, current_iter=7)
    state = torch.load(tmp_path / 'exp' / 'training_states' / '7.state', weights_only=False)
    assert state['grad_scaler'] == trained
    resumed = model()
    assert resumed.grad_scaler.state_dict()['scale'] == 2.**16
    resumed.resume_training(state)
    assert resumed.grad_scaler.state_dict() == trained
