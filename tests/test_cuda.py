"""The GPU paths: run only where CUDA is present (the development machine and CI have none).

They are what a run on a GPU machine does first (``tools/gpu_evidence.py --stage check`` runs them, or
``python -m pytest -q tests/test_cuda.py``): a search and a retrain through the entry points on one GPU
(``train.autocast: fp16`` with its GradScaler, saved and resumed), ``tools/benchmark.py --quick --device
cuda`` with every section, and, with two GPUs, the distributed search on nccl with identical ranks. The
throughput paths, each opt-in: a default retrain is plain eager PyTorch; ``train.compile: true``
(mode reduce-overhead) with ``optim_g.fused: true``, saved and resumed; the DNB's lean ops against the
plain formula in strict fp32 and under bf16/fp16 autocast; the benchmark's kernel counter and whole-step
CUDA graph.
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
    retrain = result['sections']['retrain']['cuda']  # each CUDA path measured against eager, none failed
    assert all(isinstance(v, int) and v > 0 for v in retrain['kernels'].values()), retrain['kernels']
    rows = [row for path in ('adam', 'cuda_graph') for row in retrain['paths'][path]['rows'].values()]
    assert rows and all(isinstance(row.get('speedup'), float) for row in rows), retrain
    assert {v['verdict'] for v in retrain['verdicts'].values()} == {'not a GPU measurement'}  # --quick sizes
    assert result['sections']['zeromask']['strict_fp32'] is True


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason='needs 2 GPUs')
def test_distributed_search_on_nccl(embedded_data, tmp_path, experiment_name):
    from test_distributed import _assert_ranks_identical, _torchrun
    name = experiment_name('cuda_dist_search')
    opt = search_options(embedded_data, name, total_iter=8)
    opt.update(num_gpu='auto', dist_params={'backend': 'nccl', 'port': 29621})
    opt['search']['rank_trace'] = True
    _torchrun(write_options(tmp_path / 'search.yml', opt), 29621)
    _assert_ranks_identical(name)


# ---------------------------------------------------------------------------------------------- throughput paths
def test_retrain_default_is_eager_and_compile_with_fused_adam_is_opt_in(embedded_data, tmp_path, experiment_name):
    """No option: an eager step with torch's default Adam. train.compile: true and optim_g.fused: true: the step
    runs compiled (reduce-overhead) with fused Adam; the checkpoint is the plain network's; a resumed run goes on
    compiled."""
    name = experiment_name('cuda_default_retrain')
    opt = train_options(embedded_data, name, total_iter=2)
    opt['num_gpu'] = 1
    opt['logger']['save_checkpoint_freq'] = 2
    proc = _train(write_options(tmp_path / 'default.yml', opt))
    out = proc.stdout + proc.stderr
    assert 'Model [DeCoNASSRModel] is created' in out  # the log is read (BasicSR logs to stderr)
    assert 'torch.compile' not in out and 'CUDA graph' not in out
    state = torch.load(osp.join(ROOT, 'experiments', name, 'training_states', '2.state'), map_location='cpu',
                       weights_only=False)
    assert not state['optimizers'][0]['param_groups'][0]['fused']

    name = experiment_name('cuda_compiled_retrain')
    opt = train_options(embedded_data, name, total_iter=6)
    opt['num_gpu'] = 1
    opt['train']['compile'] = True
    opt['train']['optim_g']['fused'] = True
    opt['logger'].update(print_freq=2, save_checkpoint_freq=3)
    proc = _train(write_options(tmp_path / 'train.yml', opt))
    out = proc.stdout + proc.stderr
    assert "Training steps run through torch.compile({'mode': 'reduce-overhead'})" in out
    assert 'continues eagerly' not in out
    root = osp.join(ROOT, 'experiments', name)
    state = torch.load(osp.join(root, 'training_states', '6.state'), map_location='cpu', weights_only=False)
    assert state['optimizers'][0]['param_groups'][0]['fused'] is True
    net = torch.load(osp.join(root, 'models', 'net_g_6.pth'), map_location='cpu', weights_only=False)
    assert not any(k.startswith('_orig_mod.') for k in net['params'])
    opt['train']['total_iter'] = 9
    proc = _train(write_options(tmp_path / 'train.yml', opt), '--auto_resume')
    assert 'Resuming training from epoch' in proc.stdout + proc.stderr
    assert osp.isfile(osp.join(root, 'models', 'net_g_9.pth'))


def test_lean_ops_on_cuda():
    """The DNB's lean ops on CUDA: the same numbers as the plain formula in strict fp32, finite gradients
    under bf16 and fp16 autocast."""
    from test_op_count import _assert_same, _plain_run

    from deconas_plugin.archs.deconas_arch import DeCoNASNet
    from benchmarks.zeromask import strict_fp32
    from deconas_plugin.genotype import PAPER_GENOTYPE
    torch.manual_seed(0)
    net = DeCoNASNet(PAPER_GENOTYPE, num_feat=16, num_blocks=2, num_nodes=4).cuda()
    x, y = torch.rand(2, 3, 24, 24, device='cuda'), torch.rand(2, 3, 48, 48, device='cuda')
    with strict_fp32():
        _assert_same(net, net, lambda t: _plain_run(net, t, net.genotype), x, y)
    for dtype in (torch.bfloat16, torch.float16):
        net.zero_grad(set_to_none=True)
        with torch.autocast('cuda', dtype=dtype):
            loss = torch.nn.functional.l1_loss(net(x).float(), y)
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters()), dtype


def test_kernel_count_and_whole_step_cuda_graph():
    from deconas_plugin.archs.deconas_arch import DeCoNASNet
    from benchmarks.retrain import count_cuda_kernels, cuda_graph_step
    from benchmarks.timing import TrainStep
    from deconas_plugin.genotype import PAPER_GENOTYPE
    torch.manual_seed(0)
    net = DeCoNASNet(PAPER_GENOTYPE, num_feat=16, num_blocks=2, num_nodes=4).cuda()
    x, y = torch.rand(2, 3, 24, 24, device='cuda'), torch.rand(2, 3, 48, 48, device='cuda')
    step = TrainStep(net, x, y)
    step()
    kernels = count_cuda_kernels(step, torch.device('cuda'))
    assert isinstance(kernels, int) and kernels > 100
    before = {k: v.detach().clone() for k, v in net.state_dict().items()}
    replay = cuda_graph_step(net, x, y)
    replay()
    torch.cuda.synchronize()
    assert any(not torch.equal(before[k], v) for k, v in net.state_dict().items())  # the replay trains
    assert all(torch.isfinite(v).all() for v in net.state_dict().values())
