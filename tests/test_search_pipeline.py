"""End-to-end tests of the DeCoNAS search workflow: search -> derive -> retrain, through the entry points.

Every search and retrain is a subprocess of ``deconas_plugin/train.py`` (``tools/derive.py`` runs as
``__main__`` in this process, ``script_runner``) on the embedded scikit-image data (96 px crops), on
the CPU, with a tiny supernet (C = 4, N = 2, M = 2). The paper's search option files are only built
(supernet + controller), never run.
"""
import deconas_plugin  # noqa: F401  (torchvision shim and registration, before basicsr)

import csv
import glob
import json
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch
import yaml
from basicsr.archs import build_network
from basicsr.utils.options import ordered_yaml

from deconas_plugin.complexity import count_params
from deconas_plugin.genotype import Genotype
from deconas_plugin.options import SEARCH_DEFAULTS, controller_options
from deconas_plugin.models.deconas_search_model import DeCoNASSearchModel
import tiny_options
from script_runner import run_script
from shared_data import ROOT
from tiny_options import write_options

TRAIN = osp.join(ROOT, 'deconas_plugin', 'train.py')
DERIVE = osp.join(ROOT, 'tools', 'derive.py')
TINY = tiny_options.TINY_SUPERNET
HISTORY_FIELDS = {'iter', 'controller_step', 'genotype', 'bits', 'psnr', 'params', 'reward', 'baseline', 'advantage',
                  'entropy', 'log_prob', 'p', 'cost', 'cost_unit'}
# The paper's settings (DESIGN.md "The search"): name -> (N, M, alpha, feature-fusion search).
PAPER_SEARCHES = {
    'search_CB0_FF0': (16, 8, 0.0, False),
    'search_CB0_FF1': (16, 8, 0.0, True),
    'search_CB1_FF0': (16, 8, 2.0, False),
    'search_CB1_FF1': (16, 8, 2.0, True),
    'search_N4_M4': (4, 4, 2.0, False),
}


# ------------------------------------------------------------------------------------------ helpers
@pytest.fixture
def data(embedded_data):
    """The embedded dataset (x2, 96 px crops): {'train': folder, 'reward': folder, 'test': folder}."""
    return embedded_data


def search_options(data, name, total_iter=8, fusion=False):
    """The tiny search, alpha 2, a checkpoint every controller phase (every 4 iterations)."""
    opt = tiny_options.search_options(data, name, total_iter)
    opt['network_g']['feature_fusion_search'] = fusion
    opt['network_c']['hidden_size'] = 16
    opt['search']['alpha'] = 2.0
    opt['logger'].update(save_checkpoint_freq=4, use_tb_logger=True)
    return opt


def run(script, *args, timeout=120):
    proc = subprocess.run([sys.executable, script, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    return proc


def check_ok(proc):
    assert proc.returncode == 0, f'exit {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n' \
                                 f'--- stderr\n{proc.stderr[-3000:]}'


def experiment(name):
    return osp.join(ROOT, 'experiments', name)


def read_history(name):
    with open(osp.join(experiment(name), SEARCH_DEFAULTS['history_file'])) as f:
        return [json.loads(line) for line in f if line.strip()]


def read_logs(name):
    return ''.join(open(p).read() for p in sorted(glob.glob(osp.join(experiment(name), f'train_{name}_*.log'))))


def check_history_rows(rows, fusion):
    for row in rows:
        assert set(row) == HISTORY_FIELDS, row
        # With M and N: a decimal genotype whose codes are all 0/1 ("0 1 1") also reads as bits (M = 1).
        g = Genotype.parse(row['genotype'], num_nodes=TINY['num_nodes'], num_blocks=TINY['num_blocks'])
        assert g.num_nodes == TINY['num_nodes'] and g.has_fusion_bits == fusion, row['genotype']
        assert ('|' in row['genotype']) == fusion
        assert row['params'] == count_params(g, num_blocks=TINY['num_blocks'], num_feat=TINY['num_feat'], upscale=2)
        assert all(isinstance(row[k], float) for k in ('psnr', 'reward', 'baseline', 'advantage', 'entropy',
                                                       'log_prob'))
        assert row['log_prob'] <= 0 and row['entropy'] >= 0


# -------------------------------------------------------------------------------- paper option files
@pytest.mark.parametrize('name', sorted(PAPER_SEARCHES))
def test_paper_search_options_build(name):
    """The paper's search option files parse with BasicSR's loader and build the supernet and controller."""
    blocks, nodes, alpha, fusion = PAPER_SEARCHES[name]
    with open(osp.join(ROOT, 'options', 'search', f'{name}.yml')) as f:
        opt = yaml.load(f, Loader=ordered_yaml()[0])
    assert opt['name'] == name and opt['model_type'] == 'DeCoNASSearchModel' and opt['scale'] == 2
    assert opt['num_gpu'] == 'auto' and dict(opt['dist_params']) == {'timeout': 300}  # backend, port: defaults
    assert set(opt['search']) <= set(SEARCH_DEFAULTS)
    search = opt['search']
    assert (search['child_steps'], search['controller_steps'], search['controller_start_iter']) == (1000, 100, 5000)
    assert search['alpha'] == alpha and search['reward_patches'] == 10 and search['reward_dataset']['gt_size'] == 96
    train = opt['train']
    assert train['total_iter'] == 200000 and train['optim_g']['lr'] == 1e-4 and train['optim_c']['lr'] == 3e-4
    assert list(train['scheduler']['milestones']) == [50000, 100000, 150000] and train['scheduler']['gamma'] == 0.5
    assert train['reinforce_opt']['baseline_decay'] == 0.99 and train['reinforce_opt']['entropy_weight'] == 1e-4
    t = opt['datasets']['train']
    assert (t['gt_size'], t['batch_size_per_gpu'], t['use_hflip'], t['use_rot']) == (128, 16, True, True)
    assert opt['val']['val_freq'] == 5000 and opt['logger']['save_checkpoint_freq'] == 5000

    supernet = build_network(dict(opt['network_g']))
    assert (supernet.num_blocks, supernet.num_nodes, supernet.sfe1.out_channels) == (blocks, nodes, 64)
    assert supernet.feature_fusion_search == fusion
    controller = build_network(controller_options(opt))
    assert controller.num_decisions == 3 * nodes * (nodes + 1) // 2 + (nodes + blocks if fusion else 0)
    with torch.no_grad():
        genotype, _, _ = controller.sample()
    assert supernet.parse_genotype(genotype).has_fusion_bits == fusion


def test_child_genotypes_are_drawn_per_controller_phase():
    """Child steps draw the genotypes up to the next controller phase in one batched unroll."""
    model = DeCoNASSearchModel.__new__(DeCoNASSearchModel)  # only the drawing state, no networks to train
    model.search_opt = dict(SEARCH_DEFAULTS, child_steps=4, controller_start_iter=8)
    model.opt = {'train': {'total_iter': 14}}
    model.net_c = build_network({'type': 'DeCoNASController', 'num_nodes': 2, 'num_blocks': 2})
    model.pending_child_bits = torch.zeros(0, model.net_c.num_decisions)
    assert [model._next_phase_iter(i) for i in (1, 7, 8, 9, 12, 13)] == [8, 8, 8, 12, 12, 16]
    draws = []
    for it in range(1, 15):
        if len(model.pending_child_bits) == 0:
            draws.append(it)
        genotype = model._child_genotype(it)
        assert genotype.num_nodes == 2
        if it % 4 == 0 and it >= 8:
            assert len(model.pending_child_bits) == 0  # nothing left over from the old policy at a phase
    assert draws == [1, 9, 13]  # 8 genotypes (iterations 1-8), 4 (9-12), 2 (13-14: total_iter)


# ------------------------------------------------------------------------------------- tiny searches
def test_search_history_checkpoints_and_resume(data, tmp_path, experiment_name):
    name = experiment_name('test_search')
    check_ok(run(TRAIN, '-opt', write_options(tmp_path / 'search.yml', search_options(data, name, total_iter=8))))
    root = experiment(name)
    # Controller phases at iterations 4 and 8, 3 REINFORCE steps each.
    rows = read_history(name)
    assert len(rows) == (8 // 4) * 3
    assert [r['controller_step'] for r in rows] == list(range(1, 7))
    assert [r['iter'] for r in rows] == [4] * 3 + [8] * 3
    check_history_rows(rows, fusion=False)
    for path in ('models/net_g_8.pth', 'models/net_c_8.pth', 'training_states/8.state'):
        assert osp.isfile(osp.join(root, path)), path

    # Resume to 12 iterations: one more controller phase, no duplicated controller step.
    opt_path = write_options(tmp_path / 'search_resume.yml', search_options(data, name, total_iter=12))
    check_ok(run(TRAIN, '-opt', opt_path, '--auto_resume'))
    assert re.search(r'Resuming training from epoch: \d+, iter: 8\b', read_logs(name))
    rows = read_history(name)
    steps = [r['controller_step'] for r in rows]
    assert len(rows) == 9 and len(set(steps)) == 9 and steps == list(range(1, 10))
    assert [r['iter'] for r in rows][-3:] == [12] * 3
    check_history_rows(rows, fusion=False)
    assert osp.isfile(osp.join(root, 'models', 'net_c_12.pth'))
    assert osp.isfile(osp.join(root, 'training_states', '12.state'))


def test_fusion_search_derive_and_retrain(data, tmp_path, experiment_name):
    name = experiment_name('test_search_ff')
    search_yml = write_options(tmp_path / 'search_ff.yml', search_options(data, name, total_iter=8, fusion=True))
    check_ok(run(TRAIN, '-opt', search_yml))
    rows = read_history(name)
    assert len(rows) == 6
    check_history_rows(rows, fusion=True)

    retrain_name = experiment_name('test_retrain')
    proc = run_script(DERIVE, '-opt', search_yml, '--num-samples', '5', '--data-from-search', '--inherit-weights',
               '--set', 'train.total_iter=4', '--set', 'num_gpu=0', '--set', 'logger.save_checkpoint_freq=4',
               '--set', 'val.val_freq=4', '--set', 'datasets.train.batch_size_per_gpu=2',
               '--set', f'name={retrain_name}')
    check_ok(proc)
    out = osp.join(experiment(name), 'derive')
    for file in ('ranking.csv', 'ranking.md', 'chosen.json', 'train_DeCoNASNet.yml', 'DeCoNASNet_inherited.pth'):
        assert osp.isfile(osp.join(out, file)), file
    with open(osp.join(out, 'ranking.csv')) as f:
        ranking = list(csv.DictReader(f))
    assert 1 <= len(ranking) <= 5
    with open(osp.join(out, 'chosen.json')) as f:
        chosen = json.load(f)
    assert chosen['genotype'] == ranking[0]['genotype'] and '|' in chosen['genotype']
    with open(osp.join(out, 'train_DeCoNASNet.yml')) as f:
        retrain = yaml.load(f, Loader=ordered_yaml()[0])
    assert retrain['name'] == retrain_name and retrain['num_gpu'] == 0
    assert retrain['network_g']['type'] == 'DeCoNASNet'
    assert Genotype.parse(retrain['network_g']['genotype']) == Genotype.parse(chosen['genotype'])
    assert retrain['path']['pretrain_network_g'] == osp.join(out, 'DeCoNASNet_inherited.pth')
    assert retrain['datasets']['train']['dataroot_gt'] == osp.join(data['train'], 'GTmod2')
    # ... and the test option file of that retrain: its network and the checkpoint it writes last
    with open(osp.join(out, 'test_DeCoNASNet.yml')) as f:
        test_opt = yaml.load(f, Loader=ordered_yaml()[0])
    assert dict(test_opt['network_g']) == dict(retrain['network_g']) and test_opt['scale'] == retrain['scale']
    assert test_opt['path']['pretrain_network_g'] == osp.join(ROOT, 'experiments', retrain_name, 'models',
                                                              'net_g_latest.pth')
    assert test_opt['name'] == f'test_{retrain_name}' and test_opt['datasets']['test_1']['name'] == 'Set5'

    # --inherit-weights: the retrain starts from the supernet's sub-network of the chosen genotype,
    # whose output equals the supernet's for that genotype (the search's last weights, as derive loads).
    with open(search_yml) as f:
        search_opt = yaml.load(f, Loader=ordered_yaml()[0])
    supernet = build_network(dict(search_opt['network_g'])).eval()
    supernet.load_state_dict(torch.load(osp.join(experiment(name), 'models', 'net_g_latest.pth'))['params'])
    inherited_state = torch.load(osp.join(out, 'DeCoNASNet_inherited.pth'))['params']
    inherited = build_network(dict(retrain['network_g'])).eval()
    inherited.load_state_dict(inherited_state)
    genotype = Genotype.parse(chosen['genotype'], num_nodes=TINY['num_nodes'], num_blocks=TINY['num_blocks'])
    x = torch.rand(2, 3, 12, 10, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (inherited(x) - supernet(x, genotype)).abs().max().item() <= 1e-5

    check_ok(run(TRAIN, '-opt', osp.join(out, 'train_DeCoNASNet.yml')))
    retrained = torch.load(osp.join(experiment(retrain_name), 'models', 'net_g_4.pth'))['params']
    # 4 Adam steps from the inherited weights: every weight within 4 steps of about lr, and some moved.
    lr = float(retrain['train']['optim_g']['lr'])
    assert retrained.keys() == inherited_state.keys()
    moved = max((retrained[k] - inherited_state[k]).abs().max().item() for k in retrained)
    assert 0 < moved <= 4 * lr * 1.5, (moved, lr)


def test_derive_on_missing_experiment_fails_cleanly(data, tmp_path, experiment_name):
    """A search that was never run: a one-line ``error:`` message and a non-zero exit, no traceback."""
    opt_path = write_options(tmp_path / 'search.yml', search_options(data, experiment_name('test_never_run')))
    proc = run_script(DERIVE, '-opt', opt_path)
    assert proc.returncode != 0
    assert 'Traceback' not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith('error:') and 'checkpoint' in lines[0], proc.stderr


# ------------------------------------------------------------------------------------ train.autocast
def _model_options(data, root, **train):
    """The tiny search, C = 16, child steps only, as build_model receives it."""
    opt = search_options(data, 'autocast_unit')
    opt['network_g'].update(num_feat=16)
    opt['search'].update(controller_start_iter=10**9)  # child steps only
    opt['train'].update(train)
    return tiny_options.parsed_options(opt, root)


def test_child_step_bf16_autocast_matches_fp32(data, tmp_path):
    """Under ``train.autocast: bf16`` the child step's loss is close to fp32's, and gradients stay fp32."""
    import torch.nn.functional as F
    from basicsr.models import build_model

    torch.manual_seed(0)
    model = build_model(_model_options(data, str(tmp_path / 'experiment'), autocast='bf16'))
    assert model.amp_dtype == torch.bfloat16 and model.grad_scaler is None
    assert 'grad_scaler' not in model.extra_training_state() and 'search' in model.extra_training_state()
    gt = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    model.feed_data({'lq': F.avg_pool2d(gt, 2), 'gt': gt})
    bits = model.net_c.decide(1, 'sample')
    weights = {k: v.clone() for k, v in model.net_g.state_dict().items()}
    loss, grads = {}, {}
    for dtype in (None, torch.bfloat16):  # the same weights, batch and genotype
        model.net_g.load_state_dict(weights)
        model.amp_dtype = dtype
        model.pending_child_bits = bits.clone()
        model.optimize_parameters(1)
        assert model.output.dtype == torch.float32
        loss[dtype] = model.log_dict['l_pix']
        grads[dtype] = {n: p.grad.clone() for n, p in model.net_g.named_parameters() if p.grad is not None}
    assert model.skipped['child_nonfinite'] == 0
    assert abs(loss[torch.bfloat16] - loss[None]) / loss[None] < 5e-2, loss
    assert loss[torch.bfloat16] != loss[None]  # autocast did run in bf16
    assert grads[None] and set(grads[torch.bfloat16]) == set(grads[None])  # the same sub-network trained
    assert all(g.dtype == torch.float32 for g in grads[torch.bfloat16].values())
    flat = {k: torch.cat([g.flatten() for g in v.values()]) for k, v in grads.items()}
    assert F.cosine_similarity(flat[None], flat[torch.bfloat16], dim=0) > 0.9
    assert all(p.dtype == torch.float32 for p in model.net_g.parameters())

    # The fp16 path's GradScaler (fp16 itself needs CUDA; a CPU GradScaler runs the same code): a scaled
    # child step gives the same update as an unscaled one (power-of-2 scaling is exact), and its state
    # goes into the training state next to the search's.
    model.amp_dtype = None
    after = {}
    for scaler in (None, torch.amp.GradScaler('cpu', init_scale=2.**7)):
        model.net_g.load_state_dict(weights)
        model.optimizer_g.state.clear()
        model.grad_scaler = scaler
        model.pending_child_bits = bits.clone()
        model.optimize_parameters(1)
        after[scaler is None] = {k: v.clone() for k, v in model.net_g.state_dict().items()}
    assert all(torch.equal(after[True][k], after[False][k]) for k in weights)
    assert not all(torch.equal(after[True][k], weights[k]) for k in weights)
    state = model.extra_training_state()
    assert {'grad_scaler', 'reinforce', 'search'} <= set(state) and state['grad_scaler']['scale'] == 2.**7
    model.grad_scaler = torch.amp.GradScaler('cpu', init_scale=1.)
    model.load_extra_training_state({**state, 'iter': 1})
    assert model.grad_scaler.get_scale() == 2.**7 and model.controller_step == state['search']['controller_step']
