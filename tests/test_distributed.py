"""Distributed search and retrain under torchrun with 2 CPU processes (gloo)."""
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import uuid

import pytest
import yaml

import deconas_plugin  # noqa: F401
from deconas_plugin.utils.embedded_data import prepare_embedded

ROOT = osp.abspath(osp.join(osp.dirname(__file__), osp.pardir))
TORCHRUN = osp.join(osp.dirname(sys.executable), 'torchrun')


@pytest.fixture
def workdir(tmp_path):
    names = []
    yield tmp_path, names
    for name in names:
        for folder in ('experiments', 'tb_logger', 'results'):
            shutil.rmtree(osp.join(ROOT, folder, name), ignore_errors=True)


def _option_file(tmp_path, names, search: bool):
    data = prepare_embedded(str(tmp_path / 'embedded'), (2, ), max_side=96)
    name = f'dist_{"search" if search else "retrain"}_{uuid.uuid4().hex[:8]}'
    names.append(name)
    with open(osp.join(ROOT, 'options', 'search', 'search_tiny_cpu.yml')) as f:
        opt = yaml.safe_load(f)
    opt['name'] = name
    opt['num_gpu'] = 0
    opt['dist_params'] = {'backend': 'gloo'}
    for phase, split in (('train', 'train'), ('val', 'test')):
        opt['datasets'][phase].update(dataroot_gt=f"{data[split]}/GTmod2", dataroot_lq=f"{data[split]}/LRbicx2")
    opt['datasets']['train'].update(gt_size=32, batch_size_per_gpu=2)
    opt['search'].update(child_steps=4, controller_steps=3, controller_start_iter=4, rank_trace=True)
    opt['search']['reward_dataset'].update(dataroot_gt=f"{data['reward']}/GTmod2",
                                           dataroot_lq=f"{data['reward']}/LRbicx2", gt_size=32)
    opt['network_g'].update(num_feat=4, num_blocks=2, num_nodes=2)
    opt['train']['total_iter'] = 8
    opt['logger'].update(save_checkpoint_freq=8, print_freq=4, use_tb_logger=False)
    opt['val']['val_freq'] = 8
    if not search:
        for key in ('search', 'network_c'):
            opt.pop(key)
        opt['train'].pop('optim_c')
        opt['train'].pop('reinforce_opt')
        opt['model_type'] = 'DeCoNASSRModel'
        opt['network_g'] = {'type': 'DeCoNASNet', 'genotype': '7 5 3', 'num_blocks': 2, 'num_nodes': 2,
                            'num_feat': 4, 'upscale': 2}
    path = tmp_path / f'{name}.yml'
    path.write_text(yaml.safe_dump(opt))
    return name, str(path)


def _torchrun(opt_path, port):
    cmd = [TORCHRUN, '--nproc_per_node', '2', '--master_port', str(port), 'deconas_plugin/train.py', '-opt', opt_path,
           '--launcher', 'pytorch']
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_distributed_search_keeps_ranks_identical(workdir):
    tmp_path, names = workdir
    name, opt_path = _option_file(tmp_path, names, search=True)
    _torchrun(opt_path, 29611)
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


def test_distributed_retrain_on_cpu(workdir):
    tmp_path, names = workdir
    name, opt_path = _option_file(tmp_path, names, search=False)
    _torchrun(opt_path, 29612)
    assert osp.isfile(osp.join(ROOT, 'experiments', name, 'models', 'net_g_8.pth'))
