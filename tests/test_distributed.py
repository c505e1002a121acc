"""Distributed search and retrain under torchrun with 2 CPU processes (gloo)."""
import glob
import json
import os
import os.path as osp
import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed

import deconas_plugin  # noqa: F401
from shared_data import ROOT
from tiny_options import TINY_NET, search_options, train_options, write_options

TORCHRUN = osp.join(osp.dirname(sys.executable), 'torchrun')


def _option_file(data, tmp_path, name, search: bool, port=None):
    """The tiny search (8 iterations, 2 controller phases, every rank tracing its genotypes) or a
    tiny retrain of 8 iterations, on gloo."""
    if search:
        opt = search_options(data, name, total_iter=8)
        opt['search']['rank_trace'] = True
    else:
        opt = train_options(data, name, total_iter=8)
        opt['network_g'] = dict(TINY_NET, num_feat=4)
        # BasicSR's epoch count ignores the last batch drop_last drops: with 5 images a rank it would stop early
        opt['datasets']['train']['dataset_enlarge_ratio'] = 10
        opt['logger'].update(save_checkpoint_freq=8, print_freq=4)
    opt['dist_params'] = {'backend': 'gloo', **({'port': port} if port else {})}
    return write_options(tmp_path / f'{name}.yml', opt)


def _torchrun(opt_path, port, *args, restarts=0, env=None, returncode=0):
    """torchrun with 2 processes of train.py (``args`` after ``--launcher pytorch``) and ``restarts`` restarts
    of the group; asserts its exit status."""
    cmd = [TORCHRUN, '--nproc_per_node', '2', '--master_port', str(port), '--max-restarts', str(restarts),
           'deconas_plugin/train.py', '-opt', opt_path, '--launcher', 'pytorch', *args]
    env = dict(env or os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == returncode, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _assert_ranks_identical(name):
    exp = osp.join(ROOT, 'experiments', name)
    traces = []
    for rank in (0, 1):
        with open(osp.join(exp, f'rank{rank}_trace.jsonl')) as f:
            traces.append([json.loads(line) for line in f])
    assert traces[0] == traces[1]  # same child and controller genotypes, same final weight hashes
    assert sum('child' in r for r in traces[0]) == 8 and sum('controller' in r for r in traces[0]) == 6
    assert any('net_g' in r for r in traces[0])
    # only rank 0 writes the history and the checkpoints
    with open(osp.join(exp, 'search_history.jsonl')) as f:
        assert len(f.readlines()) == 6
    assert osp.isfile(osp.join(exp, 'models', 'net_c_8.pth'))


def test_distributed_search_keeps_ranks_identical(embedded_data, tmp_path, experiment_name):
    name = experiment_name('dist_search')
    _torchrun(_option_file(embedded_data, tmp_path, name, search=True), 29611)
    _assert_ranks_identical(name)


def _matched_option_files(data, tmp_path, name, search: bool):
    """(2-rank file, 1-process file) of runs that see the same samples, per the design: BasicSR's
    sampler permutes the same indices for any world size (seeded by the epoch) and deals them out
    rank by rank, so 2 ranks of batch 2 cover the samples of one batch of 4. Crops and flips are
    seeded per rank, so they are turned off (gt_size = the 96-px training images). A search without
    controller phases: the reward patches are split by rank, which no single process reproduces."""
    paths = []
    for world, batch in ((2, 2), (1, 4)):
        opt = search_options(data, f'{name}_{world}', total_iter=8) if search else train_options(
            data, f'{name}_{world}', total_iter=8)
        if search:
            opt['search']['controller_start_iter'] = 1000  # child steps only
        else:
            opt['network_g'] = dict(TINY_NET, num_feat=4)
        opt['datasets']['train'].update(gt_size=96, use_hflip=False, use_rot=False, batch_size_per_gpu=batch,
                                        dataset_enlarge_ratio=10)
        opt['logger'].update(save_checkpoint_freq=8, print_freq=4)
        opt['dist_params'] = {'backend': 'gloo'}
        paths.append(write_options(tmp_path / f'{name}_{world}.yml', opt))
    return paths


def _assert_same_weights(name_a, name_b, label='net_g'):
    a, b = (torch.load(osp.join(ROOT, 'experiments', n, 'models', f'{label}_8.pth'))['params'] for n in (name_a, name_b))
    assert a.keys() == b.keys()
    for k in a:  # gloo sums in another order than one process: equal up to float rounding
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6, msg=k)
    return a, b


@pytest.mark.parametrize('search', [False, True], ids=['retrain', 'search'])
def test_two_ranks_update_as_one_process_with_the_global_batch(embedded_data, tmp_path, experiment_name, search):
    """README: a distributed retrain (DDP) and the search's child steps (manual all-reduce of the used
    gradients) take the step of a single process on the global batch. 8 iterations on 2 ranks of
    batch 2 end with the weights of 8 iterations of one process on batch 4; a few seeded but
    mismatched ops would end far apart (Adam steps of about the learning rate)."""
    name = experiment_name('dist_search' if search else 'dist_retrain')
    two, one = _matched_option_files(embedded_data, tmp_path, name, search)
    _torchrun(two, 29612 if not search else 29613)
    proc = subprocess.run([sys.executable, 'deconas_plugin/train.py', '-opt', one], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_same_weights(f'{name}_2', f'{name}_1')
    if search:
        _assert_same_weights(f'{name}_2', f'{name}_1', 'net_c')  # no controller phase: same initial controller


def free_port(taken=(29611, 29612, 29613)):
    while True:
        with socket.socket() as sock:
            sock.bind(('127.0.0.1', 0))
            port = sock.getsockname()[1]
        if port not in taken:
            return port


def start_ranks(cmd, tmp_path, env, rank_env, world=2, label='rank'):
    """Start ``world`` processes of ``cmd`` (each with ``env`` plus ``rank_env(rank)``), their output in
    ``tmp_path/<label><rank>.log``; returns (processes, log files) for ``finish_ranks``."""
    procs, logs = [], []
    for rank in range(world):
        log = open(tmp_path / f'{label}{rank}.log', 'w+')
        logs.append(log)
        procs.append(subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                      env=dict(env, **rank_env(rank))))
    return procs, logs


def finish_ranks(procs, logs, timeout=300):
    """Wait for ``start_ranks``' processes (killing what is left after ``timeout`` s or on an error);
    returns (exit statuses, outputs)."""
    try:
        codes = [proc.wait(timeout=timeout) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        outputs = []
        for log in logs:
            log.seek(0)
            outputs.append(log.read())
            log.close()
    return codes, outputs


def show(outputs):
    return '\n'.join(f'--- rank {r} ---\n{out[-3000:]}' for r, out in enumerate(outputs))


def test_slurm_launcher_on_cpu(embedded_data, tmp_path, experiment_name):
    """``--launcher slurm`` with 2 CPU processes (gloo), with a fake ``scontrol`` instead of slurm."""
    name = experiment_name('dist_slurm')
    port = free_port()  # in dist_params: BasicSR passes them to init_dist under slurm
    opt_path = _option_file(embedded_data, tmp_path, name, search=True, port=port)
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    scontrol = bin_dir / 'scontrol'
    scontrol.write_text('#!/bin/sh\necho 127.0.0.1\n')
    scontrol.chmod(0o755)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith('SLURM_') and k not in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'MASTER_ADDR')}
    env.update(PATH=f'{bin_dir}{os.pathsep}{os.environ.get("PATH", "")}', SLURM_NTASKS='2',
               SLURM_NODELIST='node[1]', MASTER_PORT=str(port), OMP_NUM_THREADS='1')
    cmd = [sys.executable, 'deconas_plugin/train.py', '-opt', opt_path, '--launcher', 'slurm']
    codes, outputs = finish_ranks(*start_ranks(cmd, tmp_path, env, lambda r: {'SLURM_PROCID': str(r),
                                                                               'SLURM_LOCALID': str(r)},
                                               label='slurm_rank'))
    assert codes == [0, 0], show(outputs)
    _assert_ranks_identical(name)


def test_slurm_launcher_names_missing_variable(monkeypatch):
    from deconas_plugin.utils import dist_launch

    for var in ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST', 'SLURM_LOCALID'):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv('SLURM_NTASKS', '2')
    monkeypatch.setenv('SLURM_NODELIST', 'node[1]')

    def no_init(*args, **kwargs):
        raise AssertionError('init_process_group must not be reached')

    monkeypatch.setattr(torch.distributed, 'init_process_group', no_init)
    with pytest.raises(RuntimeError, match='SLURM_PROCID') as info:
        dist_launch.init_dist('slurm', backend='gloo')
    assert 'SLURM_NTASKS' not in str(info.value) and 'SLURM_NODELIST' not in str(info.value)


SHIPPED_OPTIONS = sorted(glob.glob(osp.join(ROOT, 'options', '*', '*.yml')))


@pytest.mark.parametrize('path', [p for p in SHIPPED_OPTIONS if osp.basename(osp.dirname(p)) != 'evidence'],
                         ids=lambda p: osp.relpath(p, osp.join(ROOT, 'options')))
@pytest.mark.parametrize('launcher', ['pytorch', 'slurm'])
def test_shipped_option_files_leave_backend_and_port_to_the_defaults(path, launcher, tmp_path, monkeypatch):
    """docs/distributed.md: the option files pin neither backend nor port, so a CPU run gets gloo, and
    under slurm the per-job MASTER_PORT of scripts/slurm_search.sh is used. ``init_dist`` is called as
    BasicSR calls it (under slurm with the file's ``dist_params`` as keyword arguments)."""
    from deconas_plugin.utils import dist as dist_util
    from deconas_plugin.utils import dist_launch
    from deconas_plugin.utils.option_file import read_option_file

    opt = read_option_file(path)
    made = []
    monkeypatch.setattr(dist_util, 'init_process_group', lambda backend, timeout: made.append((backend, timeout)))
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(sys, 'argv', ['train.py', '-opt', path, '--launcher', launcher])
    monkeypatch.delenv('DECONAS_DIST_BACKEND', raising=False)
    monkeypatch.setenv('MASTER_PORT', '23456')
    monkeypatch.setenv('RANK', '0')
    for var in ('MASTER_ADDR', 'WORLD_SIZE', 'LOCAL_RANK'):  # init_dist sets them under slurm
        monkeypatch.setenv(var, os.environ.get(var, ''))
    if launcher == 'slurm':
        bin_dir = tmp_path / 'bin'
        bin_dir.mkdir()
        scontrol = bin_dir / 'scontrol'
        scontrol.write_text('#!/bin/sh\necho 127.0.0.1\n')
        scontrol.chmod(0o755)
        monkeypatch.setenv('PATH', f'{bin_dir}{os.pathsep}{os.environ.get("PATH", "")}')
        for var, value in (('SLURM_PROCID', '0'), ('SLURM_NTASKS', '1'), ('SLURM_NODELIST', 'node1'),
                           ('SLURM_LOCALID', '0')):
            monkeypatch.setenv(var, value)
        dist_launch.init_dist(launcher, **opt.get('dist_params', {}))  # BasicSR's call under slurm
    else:
        dist_launch.init_dist(launcher)
    assert made == [('gloo', (opt.get('dist_params') or {}).get('timeout', dist_util.DEFAULT_TIMEOUT_S))]
    assert os.environ['MASTER_PORT'] == '23456'
