"""The option files of the search-vs-random evidence at N = 4, M = 4, C = 32 (options/evidence/):
their splits share no image, the numbers behind alpha hold, and a tiny version of each file runs
through the entry points (the experiment itself runs for hours, outside the suite)."""
import os
import os.path as osp
import subprocess
import sys

import pytest
import yaml

import deconas_plugin  # noqa: F401  (torchvision shim and registration, before basicsr)
from deconas_plugin.complexity import count_params
from deconas_plugin.genotype import Genotype
from shared_data import ROOT, SHARED
from tiny_options import TINY_SUPERNET, paired, write_options

EVIDENCE = osp.join(ROOT, 'options', 'evidence')


def read(name):
    with open(osp.join(EVIDENCE, name)) as f:
        return yaml.safe_load(f)


def names(meta):
    with open(osp.join(ROOT, meta)) as f:
        return [line.split()[0] for line in f if line.strip()]


def test_train_reward_and_test_images_are_disjoint():
    search, train, test = (read(f'{k}_N4_M4_C32_{s}.yml') for k, s in
                           (('search', 'cpu'), ('train', 'cpu'), ('test', 'B100')))
    reward_meta = search['search']['reward_dataset']['meta_info_file']
    assert search['datasets']['val']['meta_info_file'] == reward_meta
    test_meta = test['datasets']['test_1']['meta_info_file']
    reward, held_out = names(reward_meta), names(test_meta)
    assert len(held_out) == 25 and len(reward) == 75 and not set(reward) & set(held_out)
    assert held_out + reward == sorted(held_out + reward)  # B100 1-25 and 26-100, sorted by name
    b100 = osp.join(SHARED, 'B100', 'HR')
    if osp.isdir(b100):
        assert sorted(held_out + reward) == sorted(os.listdir(b100))
    # The search trains its child weights on the retrains' training images, never on B100.
    assert search['datasets']['train']['dataroot_gt'] == train['datasets']['train']['dataroot_gt']
    assert 'B100' not in train['datasets']['train']['dataroot_gt']
    for key in ('num_blocks', 'num_nodes', 'num_feat', 'upscale'):
        assert search['network_g'][key] == train['network_g'][key] == test['network_g'][key]


def test_alpha_rule_numbers():
    """The header's rule: alpha * (full - empty) / full params = the retrained gap of 0.28 dB."""
    sizes = dict(num_blocks=4, num_feat=32, upscale=2)
    empty = count_params(Genotype.parse('0 0 0 0 0 0 0 0 0 0', num_nodes=4), **sizes)
    full = count_params(Genotype.full(4), **sizes)
    assert (empty, full) == (101_155, 892_451)
    assert read('search_N4_M4_C32_cpu.yml')['search']['alpha'] == pytest.approx(0.28 * full / (full - empty), abs=0.02)


@pytest.mark.parametrize('seed', [1, 2])
def test_the_later_searches_differ_only_by_their_seed_and_name(seed):
    first, later = read('search_N4_M4_C32_cpu.yml'), read(f'search_N4_M4_C32_cpu_seed{seed}.yml')
    assert (first['manual_seed'], later['manual_seed']) == (0, seed) and later['name'] == f"{first['name']}_seed{seed}"
    assert dict(later, name=first['name'], manual_seed=0) == first


def test_the_uniform_search_never_trains_its_controller_and_differs_in_nothing_else():
    first, uniform = read('search_N4_M4_C32_cpu.yml'), read('search_N4_M4_C32_cpu_uniform.yml')
    assert uniform['search']['controller_start_iter'] > uniform['train']['total_iter']
    assert uniform['name'] == first['name'] + '_uniform'
    assert dict(uniform, name=first['name'], search=dict(uniform['search'], controller_start_iter=3000)) == first


def test_the_standard_test_sets_are_held_out_and_match_the_network():
    test, std, train = read('test_N4_M4_C32_B100.yml'), read('test_N4_M4_C32_std.yml'), read('train_N4_M4_C32_cpu.yml')
    sets = list(std['datasets'].values())
    assert [d['name'] for d in sets] == ['Urban100', 'Set5', 'Set14']
    for d in sets:  # the prepare tool's folders of the whole set (no subset), none of the training images
        assert d['dataroot_gt'] == f"datasets/{d['name']}/GTmod2" and 'meta_info_file' not in d
        assert d['dataroot_lq'] == f"datasets/{d['name']}/LRbicx2"
    assert dict(std, name=test['name'], datasets=test['datasets']) == test
    assert std['network_g']['num_feat'] == train['network_g']['num_feat']


@pytest.mark.parametrize('kind', ['search', 'train'])
def test_a_tiny_version_runs(kind, embedded_data, experiment_name, tmp_path):
    opt = read(f'{kind}_N4_M4_C32_cpu.yml')
    opt.update(name=experiment_name(f'test_evidence_{kind}'), num_gpu=0)
    opt['datasets']['train'].update(paired(embedded_data['train']), gt_size=32, dataset_enlarge_ratio=1,
                                    batch_size_per_gpu=2)
    opt['train']['total_iter'] = 4
    opt['train']['scheduler']['milestones'] = [2, 3]
    opt['logger'].update(print_freq=2, save_checkpoint_freq=4)
    if kind == 'search':
        opt['network_g'].update(TINY_SUPERNET)
        opt['datasets']['val'] = paired(embedded_data['test'], name='embedded_test')
        opt['search'].update(child_steps=2, controller_steps=2, controller_start_iter=2, reward_patches=2)
        opt['search']['reward_dataset'].update(paired(embedded_data['reward']), gt_size=32, meta_info_file=None)
        opt['val']['val_freq'] = 4
    else:
        opt['network_g'].update(num_feat=8, genotype='7 6 4 3 0 2 2 3 4 1')
    path = write_options(tmp_path / f'{kind}.yml', opt)
    proc = subprocess.run([sys.executable, osp.join(ROOT, 'deconas_plugin', 'train.py'), '-opt', path], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert osp.isfile(osp.join(ROOT, 'experiments', opt['name'], 'models', 'net_g_4.pth'))


def test_the_file_of_every_test_set_is_the_protocols_test_then_the_standard_sets():
    test, std, every = read('test_N4_M4_C32_B100.yml'), read('test_N4_M4_C32_std.yml'), read('test_N4_M4_C32_all.yml')
    assert list(every['datasets'].values()) == list(test['datasets'].values()) + list(std['datasets'].values())
    assert dict(every, name=test['name'], datasets=test['datasets']) == test
