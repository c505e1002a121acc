"""Bad input gives one clear error that names the problem, before anything is written.

Most mistakes are checked in-process with ``check_options`` (the pre-flight check that
``deconas_plugin/train.py`` and ``test.py`` run first); a few go through the entry points to prove
the command-line path (the script run as ``__main__`` in this process, ``script_runner``): exit
status 2, one ``error:`` line, no traceback, no experiment folder.
The data are the embedded scikit-image photos cut to 96 px (``prepare_embedded``).
"""
import deconas_plugin  # noqa: F401  (torchvision shim and registration, before basicsr)

import copy
import glob
import itertools
import json
import math
import os
import os.path as osp
import re
import shutil

import cv2
import numpy as np
import pytest
import torch
import yaml
from basicsr.archs import build_network

from deconas_plugin.archs.deconas_blocks import build_op
from deconas_plugin.options import controller_options
from deconas_plugin.options import OptionError, check_options
from script_runner import run_script
from shared_data import ROOT
from tiny_options import TINY_NET, paired, parsed_options, search_options, train_options

TRAIN = osp.join(ROOT, 'deconas_plugin', 'train.py')
TEST = osp.join(ROOT, 'deconas_plugin', 'test.py')
DERIVE = osp.join(ROOT, 'tools', 'derive.py')


# ------------------------------------------------------------------------------------------ helpers
@pytest.fixture
def data(embedded_data, tmp_path):
    """A private copy of the embedded dataset, free to damage."""
    shutil.copytree(osp.dirname(embedded_data['train']), tmp_path / 'embedded')
    return {split: str(tmp_path / 'embedded' / split) for split in embedded_data}


def expect_error(opt, *fragments):
    """check_options(opt) raises one OptionError, on one line, containing every fragment."""
    with pytest.raises(OptionError) as info:
        check_options(opt)
    message = str(info.value)
    assert '\n' not in message, message
    for fragment in fragments:
        assert fragment in message, f'{fragment!r} not in {message!r}'
    return message


@pytest.fixture
def entry(experiment_name, tmp_path):
    """``entry(opt, script, *fragments)``: run an entry point on a bad option file and check that it fails cleanly."""
    def run(opt, script=TRAIN, *fragments):
        opt = dict(opt, name=experiment_name('bad_input'))
        path = tmp_path / f"{opt['name']}.yml"
        path.write_text(yaml.safe_dump(opt, sort_keys=False))
        proc = run_script(script, '-opt', str(path))
        err = proc.stderr
        assert proc.returncode == 2, f'exit {proc.returncode}\n{proc.stdout[-2000:]}\n{err[-2000:]}'
        assert 'Traceback' not in err, err
        errors = [line for line in err.splitlines() if line.startswith('error:')]
        assert len(errors) == 1, err
        for fragment in fragments:
            assert fragment in errors[0], f'{fragment!r} not in {errors[0]!r}'
        for parent in ('experiments', 'tb_logger', 'results'):
            assert not glob.glob(osp.join(ROOT, parent, glob.escape(opt['name']) + '*')), f'{parent}/{opt["name"]}'
        return errors[0]

    return run


def test_valid_options_pass(data):
    """The baselines of every test below are valid: each error comes from the one mistake it makes."""
    check_options(train_options(data))
    check_options(search_options(data))


# ------------------------------------------------------------------------------------ 1. genotype
@pytest.mark.parametrize('genotype, fragments', [
    ('7 6', ["cannot read '7 6' (2 values)", 'num_nodes M = 2', 'expected 3 decimal codes or 9 bits']),
    ('7 6 x', ["'x' is not an integer", "'7 6 x'"]),
    ('7 5 3 1', ["cannot read '7 5 3 1' (4 values)", 'expected 3 decimal codes']),
    ('7 9 3', ['codes must be in 0..7', '[9]']),
    ('7 5 | 1 1 | 1 1', ['2 local bits mean M = 2', 'needs 3 decimal codes']),
    ('', ['empty genotype']),
])
def test_malformed_genotype(data, genotype, fragments):
    opt = train_options(data)
    opt['network_g']['genotype'] = genotype
    expect_error(opt, 'network_g (DeCoNASNet)', *fragments)


def test_malformed_genotype_entry_point(data, entry):
    opt = train_options(data)
    opt['network_g']['genotype'] = '7 6'
    entry(opt, TRAIN, 'network_g (DeCoNASNet)', "cannot read '7 6'", 'num_nodes M = 2')


# ------------------------------------------------------------------ 2. checkpoint of another N/M/C
@pytest.fixture
def tiny_checkpoint(tmp_path):
    path = str(tmp_path / 'tiny_DeCoNASNet.pth')
    torch.save({'params': build_network(dict(TINY_NET)).state_dict()}, path)
    return path


@pytest.mark.parametrize('change, fragment', [
    ({'num_blocks': 3}, 'has no weight'),
    ({'num_feat': 12}, 'sfe1.weight is (8, 3, 3, 3) in the checkpoint but (12, 3, 3, 3) in the network'),
    ({'num_nodes': 3, 'genotype': '7 5 3 1 1 1'}, 'has no weight'),
    ({'genotype': '7 5 1'}, 'node2_op1'),  # fewer layers than the checkpoint: unexpected keys
    ({'genotype': '7 7 7'}, 'node2_op0.weight is (8, 8, 3, 3) in the checkpoint but (8, 16, 3, 3)'),  # reads more
])
def test_checkpoint_of_another_network(data, tiny_checkpoint, change, fragment):
    opt = train_options(data)
    opt['path']['pretrain_network_g'] = tiny_checkpoint
    check_options(opt)  # the checkpoint fits its own network
    opt['network_g'].update(change)
    expect_error(opt, 'path.pretrain_network_g', tiny_checkpoint, fragment)


def test_checkpoint_mismatch_entry_point_test_script(data, tiny_checkpoint, entry):
    opt = train_options(data)
    opt['is_train'] = False
    opt['datasets'] = {'test_1': dict(paired(data['test']), name='embedded_test')}
    opt['path']['pretrain_network_g'] = tiny_checkpoint
    opt['network_g']['num_feat'] = 12
    entry(opt, TEST, 'path.pretrain_network_g', tiny_checkpoint, 'sfe1.weight')


def test_unreadable_checkpoint(data, tmp_path):
    bad = tmp_path / 'half.pth'
    bad.write_bytes(b'not a checkpoint')
    opt = train_options(data)
    opt['path']['pretrain_network_g'] = str(bad)
    expect_error(opt, 'path.pretrain_network_g', str(bad), 'cannot read')
    opt['path']['pretrain_network_g'] = str(tmp_path / 'missing.pth')
    expect_error(opt, 'no such checkpoint file', 'missing.pth')



def test_param_key_that_the_checkpoint_lacks(data, tiny_checkpoint, tmp_path, entry):
    """A plain state dict (published weights) with param_key_g: params (or no param_key_g), and a
    BasicSR checkpoint with param_key_g: ~, are one error naming the file, the key and the value that
    loads it (BasicSR's loader would raise a KeyError after creating the run's folder)."""
    plain = str(tmp_path / 'plain.pth')
    torch.save(build_network(dict(TINY_NET)).state_dict(), plain)
    opt = train_options(data)
    opt['path']['pretrain_network_g'] = plain
    expect_error(opt, 'path.param_key_g = params (the default)', plain, "no 'params' entry", 'param_key_g: ~')
    opt['path']['param_key_g'] = 'params'
    expect_error(opt, 'path.param_key_g = params:', plain, "no 'params' entry", 'param_key_g: ~')
    opt['path']['param_key_g'] = None
    check_options(opt)  # ~ loads the plain state dict
    opt['path']['pretrain_network_g'] = tiny_checkpoint
    expect_error(opt, 'path.param_key_g = ~', tiny_checkpoint, "['params']", 'set param_key_g: params')
    opt['path']['param_key_g'] = 'params_ema'
    check_options(opt)  # like BasicSR: params when params_ema is absent

    opt = train_options(data)
    opt['is_train'] = False
    opt['datasets'] = {'test_1': dict(paired(data['test']), name='embedded_test')}
    opt['path'].update(pretrain_network_g=plain, param_key_g='params')
    entry(opt, TEST, 'path.param_key_g = params', plain, 'param_key_g: ~')

# ------------------------------------------------------------------------------------ 3. unknown op
def test_unknown_op(data):
    opt = train_options(data)
    opt['network_g']['genotype'] = '7 8 3'
    expect_error(opt, 'network_g', 'genotype codes must be in 0..7 (K = 3 ops)', '[8]')
    with pytest.raises(ValueError, match=re.escape('unknown op 5: DeCoNAS has ops 0 (conv3x3), 1 (sep_conv3x3), '
                                                   '2 (dil_conv3x3)')):
        build_op(5, 2, 8)


# ---------------------------------------------------------------------------------------- 4. scale
def test_scale_not_2_3_4(data):
    opt = train_options(data)
    opt['scale'] = 5
    expect_error(opt, 'scale must be 2, 3 or 4, got 5')
    opt = train_options(data)
    opt['network_g']['upscale'] = 5
    expect_error(opt, 'network_g.upscale must be 2, 3 or 4, got 5')
    opt['scale'] = opt['network_g']['upscale'] = 5
    expect_error(opt, 'scale must be 2, 3 or 4, got 5')
    opt = train_options(data)
    opt['network_g']['upscale'] = 3
    expect_error(opt, 'network_g.upscale = 3 differs from scale = 2')


# ------------------------------------------------------------------------------ 5. missing folder
def test_missing_dataset_folder(data, tmp_path):
    opt = train_options(data)
    missing = str(tmp_path / 'no_such' / 'GTmod2')
    opt['datasets']['train']['dataroot_gt'] = missing
    expect_error(opt, 'datasets.train.dataroot_gt', missing, 'no such folder')


def test_missing_dataset_folder_entry_point(data, tmp_path, entry):
    opt = train_options(data)
    missing = str(tmp_path / 'no_such' / 'LRbicx2')
    opt['datasets']['val']['dataroot_lq'] = missing
    entry(opt, TRAIN, 'datasets.val.dataroot_lq', missing)


# --------------------------------------------------------------------------- 6. LR/HR size mismatch
def test_lr_hr_size_mismatch(data):
    lr = osp.join(data['train'], 'LRbicx2', 'rocket.png')
    assert cv2.imwrite(lr, np.zeros((40, 40, 3), np.uint8))
    expect_error(train_options(data), 'datasets.train', 'rocket', 'HR is 96x96 but LR is 40x40',
                 'at scale 2 HR must be 80x80')


def test_lr_without_hr_partner(data):
    os.remove(osp.join(data['train'], 'GTmod2', 'rocket.png'))
    expect_error(train_options(data), 'datasets.train', "LR image 'rocket' has no HR partner")


# -------------------------------------------------------------------------------- 7. corrupt PNG
def test_truncated_png(data):
    path = osp.join(data['train'], 'GTmod2', 'rocket.png')
    raw = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write(raw[:len(raw) // 2])
    expect_error(train_options(data), path, 'corrupt or truncated image')


def test_garbage_png_named_by_the_dataset(data):
    """The loader-level backstop (folders too big to verify up front): the dataset names the bad pair."""
    from basicsr.data.paired_image_dataset import PairedImageDataset

    from deconas_plugin.utils.basicsr_patches import patch_basicsr
    patch_basicsr()
    bad = osp.join(data['train'], 'LRbicx2', 'rocket.png')
    with open(bad, 'wb') as f:
        f.write(b'\x89PNG garbage, not an image' * 4)
    expect_error(train_options(data), bad, 'corrupt or truncated image')  # the pre-flight names it too
    dataset = PairedImageDataset(dict(paired(data['train']), phase='val', scale=2))
    index = next(i for i, p in enumerate(dataset.paths) if p['lq_path'] == bad)
    with pytest.raises(RuntimeError, match=re.escape(bad)):
        dataset[index]
    dataset[(index + 1) % len(dataset)]  # the other pairs still load


# --------------------------------------------------------------------------------------- 8. LMDB
@pytest.fixture
def lmdbs(data, tmp_path):
    """Real LMDBs (BasicSR's make_lmdb_from_imgs) of two training pairs: (gt_lmdb, lq_lmdb)."""
    from basicsr.utils.lmdb_util import make_lmdb_from_imgs
    out = []
    for sub in ('GTmod2', 'LRbicx2'):
        names = ['astronaut.png', 'rocket.png']
        path = str(tmp_path / f'{sub}.lmdb')
        make_lmdb_from_imgs(osp.join(data['train'], sub), path, names, [osp.splitext(n)[0] for n in names])
        out.append(path)
    return out


def lmdb_options(data, gt, lq):
    opt = train_options(data)
    opt['datasets']['train'].update(dataroot_gt=gt, dataroot_lq=lq, io_backend={'type': 'lmdb'})
    return opt


def test_empty_lmdb(data, lmdbs):
    gt, lq = lmdbs
    check_options(lmdb_options(data, gt, lq))
    open(osp.join(lq, 'meta_info.txt'), 'w').close()
    expect_error(lmdb_options(data, gt, lq), osp.join(lq, 'meta_info.txt'), 'lists no image', 'the LMDB is empty')


def test_lmdb_without_meta_info(data, lmdbs):
    gt, lq = lmdbs
    os.remove(osp.join(gt, 'meta_info.txt'))
    expect_error(lmdb_options(data, gt, lq), osp.join(gt, 'meta_info.txt'), 'is missing')


def test_folder_given_as_lmdb(data):
    gt = osp.join(data['train'], 'GTmod2')
    expect_error(lmdb_options(data, gt, osp.join(data['train'], 'LRbicx2')), gt, 'is not an LMDB (no data.mdb)')


# ---------------------------------------------------------------------- 9. unknown / missing keys
def test_unknown_network_key(data):
    opt = train_options(data)
    opt['network_g']['foo'] = 1
    expect_error(opt, 'network_g', "unknown option(s) ['foo'] for DeCoNASNet", 'accepted:', 'genotype')


def test_removed_depthwise_key_is_an_unknown_option(data):
    opt = train_options(data)
    opt['network_g']['depthwise'] = 'dense'  # one separable-conv implementation is left: no option
    expect_error(opt, "network_g: unknown option(s) ['depthwise'] for DeCoNASNet")


def test_missing_genotype(data):
    opt = train_options(data)
    del opt['network_g']['genotype']
    expect_error(opt, 'network_g', "DeCoNASNet needs ['genotype']")


def test_unknown_network_type(data):
    opt = train_options(data)
    opt['network_g']['type'] = 'DeCoNASNett'
    expect_error(opt, 'network_g.type', "unknown network 'DeCoNASNett'", 'DeCoNASNet')


def test_unknown_search_key(data):
    opt = search_options(data)
    opt['search']['child_step'] = 3
    expect_error(opt, "search: unknown option(s) ['child_step']", 'child_steps')


@pytest.mark.parametrize('change, fragment', [
    ({'reward_mode': 'shared'}, "search.reward_mode must be 'fresh' or 'common', got 'shared'"),
    ({'reward_mode': 'fresh', 'baseline_samples': 4}, 'search.baseline_samples needs search.reward_mode: common'),
    ({'reward_mode': 'common', 'baseline_samples': -1}, 'search.baseline_samples must be an integer >= 0'),
    ({'signal_probe': 2.5}, 'search.signal_probe must be an integer >= 0, got 2.5'),
    ({'alpha': -1}, 'search.alpha must be a number >= 0 (the weight of the cost penalty), got -1'),
])
def test_bad_reward_settings(data, change, fragment):
    opt = search_options(data)
    opt['search'].update(change)
    expect_error(opt, fragment)


def test_missing_reward_dataset(data):
    opt = search_options(data)
    del opt['search']['reward_dataset']
    expect_error(opt, 'search.reward_dataset is required')


def test_unknown_controller_key(data):
    opt = search_options(data)
    opt['network_c']['hiden_size'] = 32
    expect_error(opt, 'network_c', "unknown option(s) ['hiden_size'] for DeCoNASController", 'hidden_size')


def test_unknown_supernet_key(data):
    opt = search_options(data)
    opt['network_g']['genotype'] = '7 5 3'  # a supernet has no fixed genotype
    expect_error(opt, 'network_g', "unknown option(s) ['genotype'] for DeCoNetSupernet")


def test_controller_nodes_differ_from_supernet(data):
    opt = search_options(data)
    opt['network_c']['num_nodes'] = 4
    expect_error(opt, 'network_c.num_nodes = 4 differs from network_g.num_nodes = 2')


def test_search_needs_a_supernet(data):
    opt = search_options(data)
    opt['network_g'] = dict(TINY_NET)
    expect_error(opt, 'DeCoNetSupernet', "'DeCoNASNet'")


@pytest.mark.parametrize('value', [True, {'backend': 'aot_eager'}])
def test_search_rejects_train_compile(data, value):
    """A search never compiles its step (a new genotype every child step): train.compile asking for it is
    an error naming the key, not ignored; the eager values and a retrain's compile are accepted."""
    opt = search_options(data)
    opt['train']['compile'] = value
    expect_error(opt, f'train.compile = {value!r}', 'a search never compiles', 'train.compile is for a retrain')
    for eager in (None, False, 'auto'):
        opt['train']['compile'] = eager
        check_options(opt)
    retrain = train_options(data)
    retrain['train']['compile'] = value
    check_options(retrain)


# ---------------------------------------------------------------------------- 10. image < patch
def test_image_smaller_than_patch(data):
    opt = train_options(data)
    opt['datasets']['train']['gt_size'] = 128
    expect_error(opt, 'datasets.train', '(96x96) is smaller than the training patch gt_size = 128')
    opt = search_options(data)
    opt['search']['reward_dataset']['gt_size'] = 128
    expect_error(opt, 'search.reward_dataset', 'smaller than the training patch gt_size = 128')


# ------------------------------------------------------------------------ 11. one LMDB, two sets
def test_same_lmdb_in_two_datasets(data, lmdbs):
    gt, lq = lmdbs
    opt = lmdb_options(data, gt, lq)
    opt['datasets']['val'] = dict(opt['datasets']['train'], name='val_on_train')
    del opt['datasets']['val']['gt_size']
    expect_error(opt, 'datasets.val.dataroot_gt and datasets.train.dataroot_gt are the same LMDB', gt)


# ----------------------------------------------------------------------------- 12. train.autocast
@pytest.mark.parametrize('value', ['bf17', 'float16', True, 1, 'BF16'])
def test_bad_autocast_value(data, value):
    for opt in (train_options(data), search_options(data)):
        opt['train']['autocast'] = value
        expect_error(opt, 'train.autocast must be ~ (or false: fp32, the default), bf16 or fp16', repr(value))


def test_autocast_values_accepted(data):
    for value in (None, False, 'bf16'):
        opt = train_options(data)
        opt['train']['autocast'] = value
        check_options(opt)


@pytest.mark.parametrize('num_gpu', [0, 'auto'])
def test_fp16_autocast_without_cuda(data, monkeypatch, num_gpu):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    for opt in (train_options(data), search_options(data)):
        opt['num_gpu'] = num_gpu
        opt['train']['autocast'] = 'fp16'
        expect_error(opt, 'train.autocast: fp16 needs CUDA', f'num_gpu: {num_gpu}', 'use autocast: bf16 on a CPU')


def test_fp16_autocast_entry_point(data, entry):
    opt = train_options(data)
    opt['train']['autocast'] = 'fp16'  # num_gpu: 0
    entry(opt, TRAIN, 'train.autocast: fp16 needs CUDA', 'use autocast: bf16 on a CPU')


# ------------------------------------------------------------------------- 13. NaN / inf handling
@pytest.mark.parametrize('bad', [float('nan'), float('inf'), -float('inf')])
def test_reinforce_loss_rejects_nonfinite_reward(bad):
    from basicsr.utils.registry import LOSS_REGISTRY
    loss_fn = LOSS_REGISTRY.get('REINFORCELoss')(baseline_decay=0.9, entropy_weight=1e-4)
    lp, ent = torch.tensor(-1.0, requires_grad=True), torch.tensor(0.5)
    with pytest.raises(FloatingPointError, match='non-finite reward'):
        loss_fn(lp, ent, bad)  # before the first finite reward: the baseline must not start at NaN
    assert not bool(loss_fn.started) and float(loss_fn.baseline) == 0.0
    loss_fn(lp, ent, 30.0)
    baseline = float(loss_fn.baseline)
    with pytest.raises(FloatingPointError):
        loss_fn(lp, ent, bad)
    assert float(loss_fn.baseline) == baseline and bool(loss_fn.started)
    loss, adv = loss_fn(lp, ent, 31.0)
    assert math.isfinite(loss.item()) and math.isfinite(adv)


def _model_options(data, root):
    """The tiny search with a controller phase after every child step, as build_model receives it."""
    opt = search_options(data)
    opt['search'].update(child_steps=1, controller_steps=3, controller_start_iter=1, reward_patches=2)
    return parsed_options(opt, root)


def _snapshot(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _same(net, snapshot):
    return all(torch.equal(v, snapshot[k]) for k, v in net.state_dict().items())


def _history(model):
    if not osp.exists(model.history_path):
        return []
    with open(model.history_path) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_search_skips_nonfinite_child_loss_and_reward(data, tmp_path, monkeypatch):
    import deconas_plugin.models.deconas_search_model as search_module
    from basicsr.models import build_model

    torch.manual_seed(0)
    model = build_model(_model_options(data, str(tmp_path / 'experiment')))
    assert model.skipped == {'child_nonfinite': 0, 'reward_nonfinite': 0}

    # A NaN in the input: the child step is skipped, the shared weights stay as they were.
    lq, gt = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 16, 16)
    lq[0, 1, 2, 3] = float('nan')
    model.search_opt['controller_start_iter'] = 10**9  # child step only
    supernet = _snapshot(model.net_g)
    model.feed_data({'lq': lq, 'gt': gt})
    model.optimize_parameters(1)
    assert model.skipped['child_nonfinite'] == 1
    assert _same(model.net_g, supernet)
    # a finite batch does train
    model.feed_data({'lq': torch.rand(2, 3, 8, 8), 'gt': gt})
    model.optimize_parameters(2)
    assert model.skipped['child_nonfinite'] == 1 and not _same(model.net_g, supernet)

    # A finite controller phase (fake PSNR, to stay fast) starts the baseline and writes history rows...
    monkeypatch.setattr(search_module, 'psnr_y', lambda *args, **kwargs: 30.0)
    model.train_controller(3)
    rows = _history(model)
    assert len(rows) == 3 and all(math.isfinite(r['reward']) for r in rows)
    baseline, started = float(model.cri_reinforce.baseline), bool(model.cri_reinforce.started)
    assert started and math.isfinite(baseline)
    controller = _snapshot(model.net_c)

    # ...a phase whose PSNRs are NaN/inf (the baseline samples' too) takes no controller step, leaves
    # the baseline, writes no row.
    assert model.search_opt['baseline_samples'] > 0
    bad = itertools.cycle([float('nan'), float('inf'), float('nan')])
    monkeypatch.setattr(search_module, 'psnr_y', lambda *args, **kwargs: next(bad))
    model.train_controller(4)
    assert model.skipped == {'child_nonfinite': 1, 'reward_nonfinite': 3}
    assert float(model.cri_reinforce.baseline) == baseline
    assert _same(model.net_c, controller)
    assert _history(model) == rows
    assert model.extra_training_state()['search']['skipped'] == model.skipped  # saved with the training state


# ---------------------------------------------------------------------- 14. derive on a bad fit
def _search_checkpoints(opt, experiment, **supernet_change):
    """A search experiment folder whose supernet was built with other sizes than ``opt`` says."""
    models = osp.join(experiment, 'models')
    os.makedirs(models)
    supernet = build_network(dict(copy.deepcopy(opt['network_g']), **supernet_change))
    torch.save({'params': supernet.state_dict()}, osp.join(models, 'net_g_latest.pth'))
    torch.save({'params': build_network(controller_options(opt)).state_dict()}, osp.join(models, 'net_c_latest.pth'))


@pytest.mark.parametrize('change', [{'num_blocks': 3}, {'num_nodes': 3}])
def test_derive_load_search_names_the_misfit(data, tmp_path, change):
    from deconas_plugin import derive
    opt = search_options(data)
    experiment = str(tmp_path / 'search_experiment')
    _search_checkpoints(opt, experiment, **change)
    with pytest.raises(derive.DeriveError, match='does not fit network_g of the option file'):
        derive.load_search(opt, experiment)


def test_derive_entry_point_on_misfit_checkpoint(data, tmp_path):
    opt = search_options(data)
    experiment = str(tmp_path / 'search_experiment')
    _search_checkpoints(opt, experiment, num_feat=8)  # the option file says num_feat 4
    opt_path = tmp_path / 'search.yml'
    opt_path.write_text(yaml.safe_dump(opt, sort_keys=False))
    out_dir = tmp_path / 'derive_out'
    proc = run_script(DERIVE, '-opt', str(opt_path), '--experiment', experiment, '--out-dir', str(out_dir),
                      '--num-samples', '2', '--device', 'cpu')
    assert proc.returncode != 0
    assert 'Traceback' not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith('error:')]
    assert len(errors) == 1, proc.stderr
    assert osp.join(experiment, 'models', 'net_g_latest.pth') in errors[0]
    assert 'does not fit network_g of the option file (different N, M, C' in errors[0]
    assert not out_dir.exists()
