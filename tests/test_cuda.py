"""The GPU paths: run only where CUDA is present (the development machine and CI have none).

They are what a session with a GPU runs first (``.venv/bin/python -m pytest -q tests/test_cuda.py``):
a search and a retrain through the entry points on one GPU (``train.autocast: fp16`` with its
GradScaler, saved and resumed), ``tools/benchmark.py --quick --device cuda`` with every section,
and, with two GPUs, the distributed search on nccl with identical ranks.
"""
import json
import os.path as osp
import subprocess
import sys

import pytest
import torch

import deconas_plugin  # noqa: F401
from shared_data import ROOT
from tiny_options import search_options, train_options, write_options

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device')
TRAIN = osp.join(ROOT, 'deconas_plugin', 'train.py')


def _train(opt_path, *args):
    proc = subprocess.run([sys.executable, TRAIN, '-opt', str(opt_path), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f'exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}'
    return proc


def test_retrain_on_one_gpu_with_fp16_autocast_and_resume(embedded_data, tmp_path, experiment_name):
    name = experiment_name('cuda_retrain')
    opt = train_options(embedded_data, name, total_iter=10)
    opt['num_gpu'] = 1
    opt['train']['autocast'] = 'fp16'
    opt['logger'].update(print_freq=5, save_checkpoint_freq=10)
    path = write_options(tmp_path / 'train.yml', opt)
    _train(path)
    root = osp.join(ROOT, 'experiments', name)
    state = torch.load(osp.join(root, 'training_states', '10.state'), map_location='cpu', weights_only=False)
    assert 'grad_scaler' in state and state['grad_scaler']['scale'] > 0
    net = torch.load(osp.join(root, 'models', 'net_g_10.pth'), map_location='cpu', weights_only=False)
    assert all(v.dtype == torch.float32 for v in net['params'].values())
    opt['train']['total_iter'] = 15
    opt['logger']['save_checkpoint_freq'] = 15
    proc = _train(write_options(tmp_path / 'train.yml', opt), '--auto_resume')
    assert 'Resuming training from epoch' in proc.stdout + proc.stderr
    assert osp.isfile(osp.join(root, 'models', 'net_g_15.pth'))


def test_search_on_one_gpu(embedded_data, tmp_path, experiment_name):
    name = experiment_name('cuda_search')
    opt = search_options(embedded_data, name, total_iter=8)
    opt['num_gpu'] = 1
    _train(write_options(tmp_path / 'search.yml', opt))
    with open(osp.join(ROOT, 'experiments', name, 'search_history.jsonl')) as f:
        rows = [json.loads(line) for line in f]
    assert len(rows) == 6 and all(row['psnr'] > 0 for row in rows)


def test_quick_benchmark_on_cuda(tmp_path):
    out = tmp_path / 'bench'
    proc = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'benchmark.py'), '--quick', '--device', 'cuda',
                           '--out', str(out)], capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((out / 'benchmark.json').read_text())
    assert result['machine']['device'].startswith('cuda')
    errors = {k: s['error'] for k, s in result['sections'].items() if 'error' in s}
    assert not errors, errors
    assert any(c['device'].startswith('cuda') for c in result['sections']['controller']['configs'])
    names = [r['name'] for r in result['sections']['precision']['variants']]
    assert any('fp16' in n for n in names), names


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason='needs 2 GPUs')
def test_distributed_search_on_nccl(embedded_data, tmp_path, experiment_name):
    from test_distributed import _assert_ranks_identical, _torchrun
    name = experiment_name('cuda_dist_search')
    opt = search_options(embedded_data, name, total_iter=8)
    opt.update(num_gpu='auto', dist_params={'backend': 'nccl', 'port': 29621})
    opt['search']['rank_trace'] = True
    _torchrun(write_options(tmp_path / 'search.yml', opt), 29621)
    _assert_ranks_identical(name)
