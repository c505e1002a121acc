"""A short real training of a tiny DeCoNASNet through ``deconas_plugin/train.py`` on the CPU, and its resume."""
import deconas_plugin  # noqa: F401  (torchvision shim and registration, before basicsr)

import glob
import os.path as osp
import re
import subprocess
import sys

import pytest
import yaml

import tiny_options
from shared_data import ROOT

TRAIN = osp.join(ROOT, 'deconas_plugin', 'train.py')


@pytest.fixture
def name(experiment_name):
    return experiment_name('test_train_entry')


def train_options(data, name, total_iter):
    """The tiny retrain with 5 iterations an epoch (batch 4), logs every 5 and checkpoints every 15 iterations."""
    opt = tiny_options.train_options(data, name, total_iter)
    opt['datasets']['train'].update(batch_size_per_gpu=4, dataset_enlarge_ratio=10)
    opt['logger'].update(print_freq=5, save_checkpoint_freq=15)
    return opt


def train(opt_path, *args):
    proc = subprocess.run([sys.executable, TRAIN, '-opt', str(opt_path), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, f'exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}'


def read_logs(root, name):
    return ''.join(open(p).read() for p in sorted(glob.glob(osp.join(root, f'train_{name}_*.log'))))


def test_train_loss_decreases_and_resumes_on_cpu(embedded_data, tmp_path, name):
    data = embedded_data
    opt_path = tmp_path / 'train.yml'
    opt_path.write_text(yaml.safe_dump(train_options(data, name, total_iter=30), sort_keys=False))
    train(opt_path)
    root = osp.join(ROOT, 'experiments', name)
    log = read_logs(root, name)
    losses = [float(v) for v in re.findall(r'l_pix: ([0-9.e+-]+)', log)]
    assert len(losses) == 30 // 5, log[-2000:]
    first, last = sum(losses[:2]) / 2, sum(losses[-2:]) / 2
    assert last < 0.8 * first, losses
    for it in (15, 30):
        assert osp.isfile(osp.join(root, 'models', f'net_g_{it}.pth'))
        assert osp.isfile(osp.join(root, 'training_states', f'{it}.state'))

    # Resume on the CPU (BasicSR's own resume maps tensors to CUDA): continues from 30, not from 0.
    opt_path.write_text(yaml.safe_dump(train_options(data, name, total_iter=45), sort_keys=False))
    train(opt_path, '--auto_resume')
    log = read_logs(root, name)
    assert re.search(r'Resuming training from epoch: \d+, iter: 30\b', log), log[-2000:]
    iters = [int(v) for v in re.findall(r'iter:\s+(\d+), lr:', log)]
    assert iters == [5, 10, 15, 20, 25, 30, 35, 40, 45], iters
    assert osp.isfile(osp.join(root, 'models', 'net_g_45.pth'))
    assert osp.isfile(osp.join(root, 'training_states', '45.state'))


def test_train_bf16_autocast_on_cpu(embedded_data, tmp_path, name):
    """``train.autocast: bf16`` trains through the entry point on the CPU: finite losses, fp32 checkpoints."""
    import math

    import torch
    opt = train_options(embedded_data, name, total_iter=10)
    opt['train']['autocast'] = 'bf16'
    opt['logger'].update(print_freq=2, save_checkpoint_freq=10)
    opt_path = tmp_path / 'train.yml'
    opt_path.write_text(yaml.safe_dump(opt, sort_keys=False))
    train(opt_path)
    root = osp.join(ROOT, 'experiments', name)
    log = read_logs(root, name)
    assert "torch.autocast('cpu', bfloat16)" in log, log[-2000:]
    losses = [float(v) for v in re.findall(r'l_pix: ([0-9.e+-]+|nan|inf)', log)]
    assert len(losses) == 5 and all(math.isfinite(v) and v > 0 for v in losses), losses
    net = torch.load(osp.join(root, 'models', 'net_g_10.pth'), map_location='cpu', weights_only=False)
    assert net['genotype'] == '7 5 3'
    assert all(v.dtype == torch.float32 for v in net['params'].values())  # weights stay fp32
    state = torch.load(osp.join(root, 'training_states', '10.state'), map_location='cpu', weights_only=False)
    assert state['iter'] == 10 and 'grad_scaler' not in state  # a GradScaler only with fp16
