"""A search or a retrain on 2 gloo ranks survives a lost rank, a stop signal and a stalled peer.

Every faulted run is compared with an uninterrupted 2-rank run of the same option file: supernet and
controller bit-identical, the same history (every controller step once) and signal rows (every
phase once). Faults are placed by the test-only ``sitecustomize`` of ``test_resume`` (a SIGKILL at
an iteration, a sleep inside a collective) or by a signal sent at a random moment.
"""
import glob
import json
import os
import os.path as osp
import random
import re
import shutil
import signal
import sys
import time
import uuid

import pytest
import torch

import deconas_plugin  # noqa: F401
from deconas_plugin.utils.checkpoint import latest_valid_state, load_state
from deconas_plugin.utils.preemption import EXIT_PREEMPTED
from shared_data import ROOT
from test_distributed import _torchrun, finish_ranks, free_port, show, start_ranks
from test_resume import KILLER, killed_env
from tiny_options import TINY_NET, search_options, train_options, write_options

TRAIN = [sys.executable, 'deconas_plugin/train.py']


def fault_options(data, tmp_path, name, search=True, timeout=30):
    """12 iterations; checkpoints every 5; a search has controller phases (2 REINFORCE steps and a
    signal probe) at iterations 4, 8 and 12 and traces every rank's steps; a retrain has 12 images a
    rank per epoch (so an epoch is not cut short by drop_last) and checkpoints every 3."""
    if search:
        opt = search_options(data, name, total_iter=12)
        opt['search'].update(controller_steps=2, signal_probe=2, rank_trace=True)
        opt['logger'].update(save_checkpoint_freq=5, print_freq=100)
    else:
        opt = train_options(data, name, total_iter=8)
        opt['network_g'] = dict(TINY_NET, num_feat=4)
        opt['datasets']['train']['dataset_enlarge_ratio'] = 10
        opt['logger'].update(save_checkpoint_freq=3, print_freq=100)
    opt['logger']['use_tb_logger'] = True
    opt['dist_params'] = {'backend': 'gloo', 'timeout': timeout}
    return write_options(tmp_path / f'{name}.yml', opt)


def experiment(name, *parts):
    return osp.join(ROOT, 'experiments', name, *parts)


def rows(name, file):
    with open(experiment(name, file)) as f:
        return [json.loads(line) for line in f]


def remove_experiment(name):
    for parent in ('experiments', 'tb_logger', 'results'):
        for path in glob.glob(osp.join(ROOT, parent, glob.escape(name) + '*')):
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope='module')
def reference(embedded_data, tmp_path_factory):
    """Uninterrupted 2-rank runs, made when first asked for: {'search' | 'retrain': name}."""
    names = {}

    def get(kind):
        if kind not in names:
            names[kind] = f'fault_ref_{kind}_{uuid.uuid4().hex[:8]}'
            folder = tmp_path_factory.mktemp('ref')
            path = fault_options(embedded_data, folder, names[kind], kind == 'search')
            codes, outputs = finish_ranks(*start_ranks(TRAIN + ['-opt', path, '--launcher', 'pytorch'], folder,
                                                       exit_watched(rank_env(free_port()), folder), by_rank))
            assert codes == [0, 0], show(outputs)
            assert_group_ended(outputs)  # a finished search, and a retrain whose DDP model held the group
        return names[kind]

    yield get
    for name in names.values():
        remove_experiment(name)


def assert_same_run(ref, run, search=True):
    """Final weights bit-identical; a search's history and signal rows equal, each step and phase once."""
    for label in ('net_g', 'net_c') if search else ('net_g', ):
        a, b = (torch.load(experiment(n, 'models', f'{label}_latest.pth'))['params'] for n in (ref, run))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f'{label} differs'
    if search:
        history = rows(run, 'search_history.jsonl')
        assert [r['controller_step'] for r in history] == list(range(1, 7))  # 3 phases x 2 steps, none lost or doubled
        assert history == rows(ref, 'search_history.jsonl')
        assert [r['iter'] for r in rows(run, 'search_signal.jsonl')] == [4, 8, 12]  # every phase once
        assert rows(run, 'search_signal.jsonl') == rows(ref, 'search_signal.jsonl')


def resumed_at(name) -> list:
    """The iterations a run says it resumed from: in its logs and in tensorboard."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    logged = []
    for log in sorted(glob.glob(experiment(name, 'train_*.log'))):
        with open(log) as f:
            logged += [int(line.rsplit('iter: ', 1)[1].rstrip('.\n')) for line in f if 'Resuming training from' in line]
    board = []
    for events in glob.glob(osp.join(ROOT, 'tb_logger', name, 'events.*')):
        acc = EventAccumulator(events)
        acc.Reload()
        if 'resumed_at_iter' in acc.Tags()['scalars']:
            board += [e.step for e in acc.Scalars('resumed_at_iter')]
    assert logged == sorted(board), (logged, board)
    return logged


def rank_env(port):
    env = {k: v for k, v in os.environ.items() if not k.startswith(('SLURM_', 'TORCHELASTIC_'))}
    env.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), WORLD_SIZE='2', OMP_NUM_THREADS='1')
    return env


def by_rank(rank):
    return {'RANK': str(rank), 'LOCAL_RANK': str(rank)}


# After the program's own exit handlers (atexit runs the first registered last): the threads left for
# the interpreter's finalization. A gloo thread that lets go of a collective then aborts the process.
EXIT_WATCH = """
import atexit, glob, sys

def _threads_at_exit():
    names = sorted(open(path).read().strip() for path in glob.glob('/proc/self/task/*/comm'))
    print('threads at exit:', ' '.join(names), file=sys.stderr, flush=True)

atexit.register(_threads_at_exit)
"""


def exit_watched(env, tmp_path):
    """``env`` whose processes list their threads at exit (the test-only killer of ``test_resume`` still
    acts when ``env`` asks for it)."""
    folder = tmp_path / 'exit_watch'
    folder.mkdir(exist_ok=True)
    (folder / 'sitecustomize.py').write_text(KILLER + EXIT_WATCH)
    return dict(env, PYTHONPATH=os.pathsep.join(p for p in (str(folder), env.get('PYTHONPATH')) if p))


def assert_group_ended(outputs, ranks=(0, 1)):
    """The ranks destroyed their process group before the interpreter's finalization: no gloo thread left."""
    for rank in ranks:
        listed = [line for line in outputs[rank].splitlines() if line.startswith('threads at exit:')]
        assert len(listed) == 1 and 'gloo' not in listed[0], f'rank {rank}: {listed}\n{show(outputs)}'


@pytest.mark.parametrize('search', [True, False], ids=['search', 'retrain'])
def test_lost_rank_is_restarted_by_torchrun_and_ends_as_an_unkilled_run(
        embedded_data, tmp_path, experiment_name, reference, search):
    """torchrun --max-restarts 1 ... --auto_resume; rank 1 SIGKILLed at the start of iteration 9 (search:
    between the checkpoints at 5 and 10, after the phase at 8 wrote its history and signal rows, which
    the resume must drop) or 5 (retrain: after the checkpoint at 3). The restarted group resumes from
    that checkpoint and ends bit-identical to the unkilled run."""
    ref = reference('search' if search else 'retrain')
    run = experiment_name('fault_lost')
    path = fault_options(embedded_data, tmp_path, run, search)
    kill_at = 9 if search else 5
    env = killed_env(tmp_path, at_iter=kill_at, rank=1)
    proc = _torchrun(path, free_port(), '--auto_resume', restarts=1, env=env)
    assert 'exitcode: -9' in proc.stderr.replace('  ', ' ') or 'Signal 9' in proc.stderr, proc.stderr[-3000:]
    assert resumed_at(run) == [5 if search else 3]
    assert_same_run(ref, run, search)


def test_stop_signal_on_one_rank_stops_both_after_a_state_and_resume_is_exact(
        embedded_data, tmp_path, experiment_name, reference):
    """SIGTERM to one rank (chosen at random) at a random moment of a 2-rank search: both ranks finish the
    same iteration, rank 0 writes its training state, both exit 75; the resumed run ends as the reference."""
    ref = reference('search')
    run = experiment_name('fault_stop')
    path = fault_options(embedded_data, tmp_path, run)
    seed = int.from_bytes(os.urandom(4), 'little')
    rng = random.Random(seed)
    target, victim, delay = rng.randint(1, 8), rng.randrange(2), rng.uniform(0, 0.3)
    where = f'seed {seed}: SIGTERM to rank {victim} {delay:.2f} s after iteration {target}'
    env = exit_watched(rank_env(free_port()), tmp_path)
    procs, logs = start_ranks(TRAIN + ['-opt', path, '--launcher', 'pytorch'], tmp_path, env, by_rank)
    trace = experiment(run, f'rank{victim}_trace.jsonl')
    deadline = time.time() + 240
    while time.time() < deadline and procs[victim].poll() is None:
        if osp.isfile(trace) and sum('"child"' in line for line in open(trace)) >= target:
            break
        time.sleep(0.05)
    time.sleep(delay)
    procs[victim].send_signal(signal.SIGTERM)
    codes, outputs = finish_ranks(procs, logs)
    assert_group_ended(outputs)  # stopped (75) or finished
    if codes == [0, 0]:  # a fast machine ran the last iterations before the signal came: the run just finished
        for rank in (0, 1):
            with open(experiment(run, f'rank{rank}_trace.jsonl')) as f:
                assert sum('"child"' in line for line in f) == 12, f'{where}: rank {rank}'
        assert_same_run(ref, run)
        return
    assert codes == [EXIT_PREEMPTED] * 2, f'{where}\n{show(outputs)}'
    state = latest_valid_state(experiment(run, 'training_states'))
    stopped = load_state(state)['iter']
    assert target <= stopped <= 12, where
    for rank in (0, 1):  # every rank finished the same iteration, and none went further
        with open(experiment(run, f'rank{rank}_trace.jsonl')) as f:
            assert sum('"child"' in line for line in f) == stopped, f'{where}: rank {rank}'
    why = 'SIGTERM' if victim == 0 else "another rank's stop signal"
    assert f'Stopped by {why} after iteration {stopped}' in outputs[0], where  # rank 0 logs

    codes, outputs = finish_ranks(*start_ranks(TRAIN + ['-opt', path, '--launcher', 'pytorch', '--auto_resume'],
                                               tmp_path, rank_env(free_port()), by_rank, label='resumed'))
    assert codes == [0, 0], f'{where}\n{show(outputs)}'
    assert resumed_at(run) == [stopped], where
    assert_same_run(ref, run)


def test_stalled_rank_ends_the_run_with_an_error_naming_it(embedded_data, tmp_path, experiment_name):
    """Rank 1 sleeps inside the first all-reduce of iteration 7: rank 0 reports one error naming the
    iteration and rank 1 within dist_params.timeout (5 s) plus the wait for the ranks' answers, and exits 1
    (its exit itself takes seconds more on a busy machine); the checkpoint at 5 is intact and the history
    and signal files hold the phase at 4 once."""
    run = experiment_name('fault_stall')
    path = fault_options(embedded_data, tmp_path, run, timeout=5)
    env = exit_watched(dict(killed_env(tmp_path, stall_at_iter=7, stall_s=120, rank=1), **rank_env(free_port())),
                       tmp_path)
    procs, logs = start_ranks(TRAIN + ['-opt', path, '--launcher', 'pytorch'], tmp_path, env, by_rank)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and 'stalling' not in open(logs[1].name).read():
            time.sleep(0.05)
        stalled = time.time()
        while time.time() < stalled + 60 and procs[0].poll() is None and not re.search(
                r'^error:', open(logs[0].name).read(), re.M):
            time.sleep(0.05)
        took = time.time() - stalled
        code = procs[0].wait(timeout=60)
    finally:
        procs[1].kill()
    codes, outputs = finish_ranks(procs, logs)
    assert code == 1, show(outputs)
    errors = [line for line in outputs[0].splitlines() if line.startswith('error:')]
    assert len(errors) == 1 and errors[0].startswith('error: iteration 7 (') and 'rank 1 did not answer' in errors[0], \
        show(outputs)
    assert took < 5 + 2.5 + 5, f'{took:.1f} s after the stall'  # timeout + the wait for answers + slack
    assert_group_ended(outputs, ranks=(0,))  # destroyed after the failed collective, without waiting for rank 1
    states = experiment(run, 'training_states')
    assert latest_valid_state(states) == osp.join(states, '5.state')
    assert [r['controller_step'] for r in rows(run, 'search_history.jsonl')] == [1, 2]
    assert [r['iter'] for r in rows(run, 'search_signal.jsonl')] == [4]


@pytest.mark.parametrize('value', [0, -5, 'ten', True, float('inf')])
def test_bad_dist_timeout_is_one_clear_error(embedded_data, value):
    """dist_params.timeout must be a finite number of seconds > 0, else one error naming it (the pre-flight check)."""
    from deconas_plugin.options import OptionError, check_options
    opt = search_options(embedded_data)
    check_options(dict(opt, dist_params={'backend': 'gloo', 'timeout': 0.5}))
    with pytest.raises(OptionError, match=r'^dist_params\.timeout must be a finite number of seconds > 0'):
        check_options(dict(opt, dist_params={'backend': 'gloo', 'timeout': value}))



RESTARTED_WORKER = """
import importlib.util, os, sys, torch, torch.distributed as dist
spec = importlib.util.spec_from_file_location('dist_util', sys.argv[1])  # without the package's imports
dist_util = importlib.util.module_from_spec(spec)
spec.loader.exec_module(dist_util)
dist_util.init_process_group('gloo', 60)  # rank 1 may take that long to start on a busy machine
t = torch.ones(1)
dist.all_reduce(t)
assert t.item() == 2
dist_util.end_process_group()  # as every run does: no gloo thread is left for the interpreter's exit
assert not dist.is_initialized()
threads = [open(f'/proc/self/task/{task}/comm').read().strip() for task in os.listdir('/proc/self/task')]
assert not [name for name in threads if 'gloo' in name], threads
"""


def test_a_restarted_group_never_meets_on_the_old_groups_addresses(tmp_path):
    """torchrun keeps one store for all restarts of a group (the agent's, TORCHELASTIC_USE_AGENT_STORE).
    A group of 2 gloo ranks meets on it and ends; then a restarted group (TORCHELASTIC_RESTART_COUNT=1)
    whose rank 1 starts 3 s late: rank 0 must wait for rank 1's new address, not connect to the
    address the old rank 1 left in the store (connection refused until gloo's timeout). With torch's own
    ``init_process_group`` in the worker, the restarted group fails this way (checked once)."""
    import subprocess
    from torch.distributed import TCPStore
    port = free_port()
    # the agent's store: one server for both groups, as torchrun keeps it across restarts
    agent_store = TCPStore('127.0.0.1', port, None, True, wait_for_workers=False, multi_tenant=True)  # noqa: F841
    script = tmp_path / 'worker.py'
    script.write_text(RESTARTED_WORKER)
    module = osp.join(ROOT, 'deconas_plugin', 'utils', 'dist.py')
    env = dict(rank_env(port), TORCHELASTIC_USE_AGENT_STORE='True')
    for attempt, late in ((0, 0), (1, 3)):
        procs = []
        for rank in (0, 1):
            time.sleep(late * rank)
            procs.append(subprocess.Popen([sys.executable, str(script), module], stderr=subprocess.PIPE, text=True,
                                          env=dict(env, TORCHELASTIC_RESTART_COUNT=str(attempt), **by_rank(rank))))
        errors = [p.communicate(timeout=180)[1] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], f'attempt {attempt}:\n' + '\n'.join(e[-1500:] for e in errors)


def test_stop_signal_to_the_whole_process_group_spares_the_loader_workers(embedded_data, tmp_path, experiment_name):
    """torchrun and slurm signal every process of a job, data-loader workers included: the workers ignore
    SIGTERM, so the training finishes its iteration, writes its state and exits 75 (a worker killed by it
    would end the run with a DataLoader error instead)."""
    import subprocess
    run = experiment_name('fault_workers')
    opt = train_options(embedded_data, run, total_iter=100_000)
    opt['datasets']['train'].update(num_worker_per_gpu=2, dataset_enlarge_ratio=50)
    path = write_options(tmp_path / f'{run}.yml', opt)
    log = tmp_path / 'train.log'
    with open(log, 'w') as out:
        proc = subprocess.Popen(TRAIN + ['-opt', path], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                env=dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1'),
                                start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None and not re.search(r'iter:\s+5,', log.read_text()):
            time.sleep(0.1)
        assert proc.poll() is None, log.read_text()[-3000:]
        os.killpg(proc.pid, signal.SIGTERM)  # the main process and its loader workers
        assert proc.wait(120) == EXIT_PREEMPTED, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    stopped = load_state(latest_valid_state(experiment(run, 'training_states')))['iter']
    assert stopped >= 5 and 'Stopped by SIGTERM after iteration' in log.read_text()
