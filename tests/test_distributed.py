"""Distributed search and retrain under torchrun with 2 CPU processes (gloo)."""
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


def _torchrun(opt_path, port):
    cmd = [TORCHRUN, '--nproc_per_node', '2', '--master_port', str(port), 'deconas_plugin/train.py', '-opt', opt_path,
           '--launcher', 'pytorch']
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
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


def test_distributed_retrain_on_cpu(embedded_data, tmp_path, experiment_name):
    name = experiment_name('dist_retrain')
    _torchrun(_option_file(embedded_data, tmp_path, name, search=False), 29612)
    assert osp.isfile(osp.join(ROOT, 'experiments', name, 'models', 'net_g_8.pth'))


def _free_port(taken=(29611, 29612)):
    while True:
        with socket.socket() as sock:
            sock.bind(('127.0.0.1', 0))
            port = sock.getsockname()[1]
        if port not in taken:
            return port


def test_slurm_launcher_on_cpu(embedded_data, tmp_path, experiment_name):
    """``--launcher slurm`` with 2 CPU processes (gloo), with a fake ``scontrol`` instead of slurm."""
    name = experiment_name('dist_slurm')
    port = _free_port()  # in dist_params: BasicSR passes them to init_dist under slurm
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
    procs, logs = [], []
    try:
        for rank in (0, 1):
            log = open(tmp_path / f'slurm_rank{rank}.log', 'w+')
            logs.append(log)
            procs.append(subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                          env=dict(env, SLURM_PROCID=str(rank), SLURM_LOCALID=str(rank))))
        codes = [proc.wait(timeout=300) for proc in procs]
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
    assert codes == [0, 0], '\n'.join(f'--- rank {r} ---\n{out[-3000:]}' for r, out in enumerate(outputs))
    _assert_ranks_identical(name)


def test_slurm_launcher_names_missing_variable(monkeypatch):
    from deconas_plugin.utils import compat

    for var in ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST', 'SLURM_LOCALID'):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv('SLURM_NTASKS', '2')
    monkeypatch.setenv('SLURM_NODELIST', 'node[1]')

    def no_init(*args, **kwargs):
        raise AssertionError('init_process_group must not be reached')

    monkeypatch.setattr(torch.distributed, 'init_process_group', no_init)
    with pytest.raises(RuntimeError, match='SLURM_PROCID') as info:
        compat.init_dist('slurm', backend='gloo')
    assert 'SLURM_NTASKS' not in str(info.value) and 'SLURM_NODELIST' not in str(info.value)
