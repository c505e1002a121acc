"""Kill and resume: a search killed with SIGKILL and resumed ends exactly where an uninterrupted run does."""
import json
import os
import os.path as osp
import shutil
import signal
import subprocess
import sys
import time
import uuid

import pytest
import torch
import yaml

import deconas_plugin  # noqa: F401
from deconas_plugin.utils.checkpoint import latest_valid_state
from deconas_plugin.utils.embedded_data import prepare_embedded

ROOT = osp.abspath(osp.join(osp.dirname(__file__), osp.pardir))
TRAIN = [sys.executable, 'deconas_plugin/train.py']


@pytest.fixture
def names():
    made = []
    yield made
    for name in made:
        for folder in ('experiments', 'tb_logger', 'results'):
            shutil.rmtree(osp.join(ROOT, folder, name), ignore_errors=True)


def search_options(tmp_path, names, total_iter=40, freq=8):
    data = prepare_embedded(str(tmp_path / 'embedded'), (2, ), max_side=96)
    name = f'resume_{uuid.uuid4().hex[:8]}'
    names.append(name)
    with open(osp.join(ROOT, 'options', 'search', 'search_tiny_cpu.yml')) as f:
        opt = yaml.safe_load(f)
    opt.update(name=name, num_gpu=0)
    for phase, split in (('train', 'train'), ('val', 'test')):
        opt['datasets'][phase].update(dataroot_gt=f"{data[split]}/GTmod2", dataroot_lq=f"{data[split]}/LRbicx2")
    # 10 images x enlarge 2 / batch 2 = 10 iterations per epoch: checkpoints fall inside epochs
    opt['datasets']['train'].update(gt_size=32, batch_size_per_gpu=2, dataset_enlarge_ratio=2)
    opt['search'].update(child_steps=4, controller_steps=2, controller_start_iter=4)
    opt['search']['reward_dataset'].update(dataroot_gt=f"{data['reward']}/GTmod2",
                                           dataroot_lq=f"{data['reward']}/LRbicx2", gt_size=32)
    opt['network_g'].update(num_feat=4, num_blocks=2, num_nodes=2)
    opt['train']['total_iter'] = total_iter
    opt['logger'].update(save_checkpoint_freq=freq, print_freq=100, use_tb_logger=False)
    opt['val']['val_freq'] = 1000
    path = tmp_path / f'{name}.yml'
    path.write_text(yaml.safe_dump(opt))
    return name, str(path)


def weights(name, label):
    return torch.load(osp.join(ROOT, 'experiments', name, 'models', f'{label}_latest.pth'))['params']


def history(name):
    with open(osp.join(ROOT, 'experiments', name, 'search_history.jsonl')) as f:
        return [json.loads(line) for line in f]


def test_search_killed_and_resumed_matches_uninterrupted_run(tmp_path, names):
    ref, ref_opt = search_options(tmp_path, names)
    subprocess.run(TRAIN + ['-opt', ref_opt], cwd=ROOT, check=True, capture_output=True)

    run, run_opt = search_options(tmp_path, names)
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


def test_truncated_checkpoint_is_never_resumed(tmp_path, names):
    name, opt_path = search_options(tmp_path, names, total_iter=16, freq=8)
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
