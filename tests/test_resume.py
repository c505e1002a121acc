"""Kill and resume: a search killed with SIGKILL and resumed ends exactly where an uninterrupted run does."""
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
from tiny_options import search_options, write_options

TRAIN = [sys.executable, 'deconas_plugin/train.py']


def resume_options(data, name, tmp_path, total_iter=40, freq=8, workers=0):
    """A tiny search whose checkpoints fall inside epochs (10 images x enlarge 2 / batch 2 = 10
    iterations per epoch), with 2 REINFORCE steps per phase."""
    opt = search_options(data, name, total_iter)
    opt['datasets']['train']['num_worker_per_gpu'] = workers
    opt['search']['controller_steps'] = 2
    opt['logger'].update(save_checkpoint_freq=freq, print_freq=100)
    opt['val']['val_freq'] = 1000
    return write_options(tmp_path / f'{name}.yml', opt)


def weights(name, label):
    return torch.load(osp.join(ROOT, 'experiments', name, 'models', f'{label}_latest.pth'))['params']


def history(name):
    with open(osp.join(ROOT, 'experiments', name, 'search_history.jsonl')) as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize('workers', [0, 2])
def test_search_killed_and_resumed_matches_uninterrupted_run(embedded_data, tmp_path, experiment_name, workers):
    """Also with loader workers: each sample's crop and flips are seeded by its place in training."""
    ref = experiment_name('resume')
    subprocess.run(TRAIN + ['-opt', resume_options(embedded_data, ref, tmp_path, workers=workers)], cwd=ROOT,
                   check=True, capture_output=True)

    run = experiment_name('resume')
    run_opt = resume_options(embedded_data, run, tmp_path, workers=workers)
    proc = subprocess.Popen(TRAIN + ['-opt', run_opt], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    states = osp.join(ROOT, 'experiments', run, 'training_states')
    deadline = time.time() + 120
    while not osp.exists(osp.join(states, '16.state')) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # somewhere after iteration 16, before the end
    proc.wait()
    assert not osp.exists(osp.join(ROOT, 'experiments', run, 'models', 'net_g_latest.pth')), 'not interrupted'
    resumed = subprocess.run(TRAIN + ['-opt', run_opt, '--auto_resume'], cwd=ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'Resuming training from epoch' in resumed.stdout + resumed.stderr

    for label in ('net_g', 'net_c'):
        a, b = weights(ref, label), weights(run, label)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), f'{label} differs after resume'
    rows_ref, rows_run = history(ref), history(run)
    assert [r['controller_step'] for r in rows_run] == list(range(1, len(rows_run) + 1))  # none lost or doubled
    assert [(r['genotype'], r['reward']) for r in rows_ref] == [(r['genotype'], r['reward']) for r in rows_run]


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
