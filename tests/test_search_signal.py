"""The signal diagnostics, the common-patch reward and the per-phase baseline of the search."""
import json
import math
import os.path as osp
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from torch import nn

import deconas_plugin  # noqa: F401
from deconas_plugin import reward, search_signal
from deconas_plugin.complexity import count_params, max_params
from deconas_plugin.genotype import Genotype
from deconas_plugin.losses.reinforce_loss import REINFORCELoss
from script_runner import run_script
from shared_data import ROOT
from test_resume import resume_options
from tiny_options import search_options, write_options

TRAIN = [sys.executable, 'deconas_plugin/train.py']
SIGNAL_TOOL = osp.join(ROOT, 'tools', 'search_signal.py')  # the tools run in this process (script_runner)
STUDY_TOOL = osp.join(ROOT, 'tools', 'controller_study.py')


class PlantedSupernet(nn.Module):
    """A stand-in supernet whose output is the ground truth plus a fixed noise pattern of the patch:
    ``helps`` (op 0 of node 1 reading x_0) scales the noise down by ``gain``; every batch gets its
    own noise level, so batches differ in difficulty as real reward draws do."""

    def __init__(self, truth, gain):
        super().__init__()
        self.truth, self.gain = truth, gain

    def forward(self, lq, genotype):
        gt, level = self.truth[lq.data_ptr()]
        noise = torch.randn(gt.shape, generator=torch.Generator().manual_seed(int(level * 1e4)))
        helped = bool(genotype.op_inputs(1, 0))
        return gt + level * (self.gain if helped else 1.0) * noise


def planted_case(gain):
    torch.manual_seed(0)
    batches, truth = [], {}
    for b in range(6):
        gt = torch.rand(4, 3, 16, 16) * 0.5 + 0.25
        lq = torch.rand(4, 3, 8, 8)
        truth[lq.data_ptr()] = (gt, 0.01 * (1 + b))  # batch b is harder than batch b - 1
        batches.append((lq, gt))
    genotypes = search_signal.probe_genotypes(3, 2, False, 12, seed=0)
    table = search_signal.score_table(PlantedSupernet(truth, gain), genotypes, batches, crop_border=0)
    return search_signal.summarize(table, genotypes, 'common', num_random=12), genotypes


def test_diagnostics_find_a_planted_op_and_no_signal_without_one():
    found, genotypes = planted_case(gain=0.5)
    helped = [bool(g.op_inputs(1, 0)) for g in genotypes[2:]]
    assert 0 < sum(helped) < len(helped)  # both kinds among the random genotypes
    # noise halved -> +6 dB for the genotypes with the op, every batch alike: a clean signal
    assert found['genotype_std'] > 2.5
    assert found['interaction_std'] < 0.05 * found['genotype_std']
    assert found['batch_std'] > 1  # harder batches read lower for every genotype...
    assert found['snr_common'] > 20 * found['snr_fresh']  # ...which only a fresh-patch reward suffers
    assert found['rank_tau_halves'] > 0.5
    empty, full = genotypes[0].to_string(), genotypes[1].to_string()
    assert found['psnr'][full] - found['psnr'][empty] == pytest.approx(20 * math.log10(2), abs=0.05)

    none, _ = planted_case(gain=1.0)
    assert none['genotype_std'] == pytest.approx(0, abs=1e-9)
    assert none['snr_common'] < 1e-6 and none['snr_fresh'] < 1e-6
    assert none['batch_std'] == pytest.approx(found['batch_std'], rel=0.3)


def test_decompose_matches_a_hand_computed_table():
    # rows = genotype effects (0, 1, 2), columns = batch effects (0, 10), plus a residual of +-0.5
    table = np.array([[0, 10], [1, 11], [2, 12]], dtype=float) + np.array([[0.5, -0.5], [-0.5, 0.5], [0, 0]])
    stats = search_signal.decompose(table)
    assert stats['genotype_std'] == pytest.approx(1.0)
    assert stats['batch_std'] == pytest.approx(10 / math.sqrt(2))
    assert stats['interaction_std'] == pytest.approx(math.sqrt(1.0 / 2))  # sum of squares 1, (3-1)(2-1) dof
    with pytest.raises(ValueError, match='2 genotypes x 2 batches'):
        search_signal.decompose(np.zeros((1, 3)))


def test_draw_patches_is_fixed_by_its_seed_and_leaves_the_global_random_state(embedded_data):
    import random

    from basicsr.data import build_dataset
    from tiny_options import paired
    dataset = build_dataset(dict(paired(embedded_data['reward']), name='r', phase='train', scale=2, gt_size=32,
                                 use_hflip=False, use_rot=False))
    random.seed(5)
    before = random.getstate()
    a = reward.draw_patches(dataset, 3, seed=11)
    assert random.getstate() == before
    b = reward.draw_patches(dataset, 3, seed=11)
    c = reward.draw_patches(dataset, 3, seed=12)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_reinforce_reward_history_definition():
    """reward = R + entropy_weight * entropy (what REINFORCE uses); advantage = reward - baseline."""
    loss_fn = REINFORCELoss(baseline_decay=0.9, entropy_weight=0.5)
    log_prob = torch.tensor(-2.0, requires_grad=True)
    loss, adv = loss_fn(log_prob, torch.tensor(3.0), 10.0)
    assert loss_fn.last_reward == 11.5 and adv == 0.0  # the first reward starts the baseline
    loss, adv = loss_fn(log_prob, torch.tensor(1.0), 12.0)
    assert loss_fn.last_reward == 12.5
    assert float(loss_fn.baseline) == pytest.approx(11.5 + 0.1 * (12.5 - 11.5))
    assert adv == pytest.approx(12.5 - float(loss_fn.baseline))
    loss.backward()
    assert log_prob.grad == pytest.approx(-adv)  # d(-log_prob * adv) / d log_prob
    loss_fn.reset_baseline(3.0)
    loss_fn(log_prob, torch.tensor(0.0), 4.0)
    assert float(loss_fn.baseline) == pytest.approx(3.0 + 0.1 * (4.0 - 3.0))


def common_options(data, name, tmp_path, **search):
    path = resume_options(data, name, tmp_path)
    import yaml
    with open(path) as f:
        opt = yaml.safe_load(f)
    opt['search'].update(reward_mode='common', baseline_samples=2, signal_probe=2, **search)
    return write_options(tmp_path / f'{name}.yml', opt)


def rows(name, file):
    with open(osp.join(ROOT, 'experiments', name, file)) as f:
        return [json.loads(line) for line in f]


def test_common_patch_search_resumes_exactly(embedded_data, tmp_path, experiment_name):
    """reward_mode common, per-phase baseline and the signal probe: a search killed after a checkpoint
    and resumed writes the same history and signal rows as an uninterrupted one."""
    ref = experiment_name('common')
    subprocess.run(TRAIN + ['-opt', common_options(embedded_data, ref, tmp_path)], cwd=ROOT, check=True,
                   capture_output=True)
    run = experiment_name('common')
    run_opt = common_options(embedded_data, run, tmp_path)
    proc = subprocess.Popen(TRAIN + ['-opt', run_opt], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    states = osp.join(ROOT, 'experiments', run, 'training_states')
    deadline = time.time() + 120
    while not osp.exists(osp.join(states, '16.state')) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = subprocess.run(TRAIN + ['-opt', run_opt, '--auto_resume'], cwd=ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'Resuming training from epoch' in resumed.stdout + resumed.stderr

    hist_ref, hist_run = rows(ref, 'search_history.jsonl'), rows(run, 'search_history.jsonl')
    assert [r['controller_step'] for r in hist_run] == list(range(1, len(hist_run) + 1))
    keys = ('genotype', 'psnr', 'reward', 'baseline', 'advantage', 'p')
    assert [[r[k] for k in keys] for r in hist_ref] == [[r[k] for k in keys] for r in hist_run]
    sig_ref, sig_run = rows(ref, 'search_signal.jsonl'), rows(run, 'search_signal.jsonl')
    assert sig_ref == sig_run and [r['iter'] for r in sig_run] == sorted({r['iter'] for r in hist_run})

    # common patches: every step of a phase scores on the same patches, so a genotype drawn twice in
    # a phase gets the same PSNR; the history's reward is PSNR - penalty + entropy bonus
    opt_search = search_options(embedded_data)['search']
    size = dict(num_feat=4, num_blocks=2, upscale=2)
    pmax = max_params(num_nodes=2, **size)
    for r in hist_run:
        g = Genotype.parse(r['genotype'], num_nodes=2)
        assert r['params'] == count_params(g, **size)
        expected = r['psnr'] - opt_search['alpha'] * r['params'] / pmax + 1e-4 * r['entropy']
        assert r['reward'] == pytest.approx(expected, abs=1e-9)
        assert r['advantage'] == pytest.approx(r['reward'] - r['baseline'], abs=1e-9)
        assert len(r['p']) == 9 and all(0 < p < 1 for p in r['p'])
    by_phase = {}
    for r in hist_run:
        by_phase.setdefault((r['iter'], r['genotype']), set()).add(r['psnr'])
    assert all(len(v) == 1 for v in by_phase.values())


def test_search_signal_tool_writes_the_documented_fields(tiny_search, tmp_path):
    opt_path = tiny_search['opt_path']
    out = tmp_path / 'signal.json'
    res = run_script(SIGNAL_TOOL, '-opt', opt_path, '--genotypes', '4', '--batches', '4', '--json', str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    result = json.loads(out.read_text())
    for key in ('genotype_std', 'batch_std', 'interaction_std', 'snr_fresh', 'snr_common', 'snr',
                'rank_tau_halves', 'empty', 'full', 'greedy', 'table'):
        assert key in result
    assert len(result['table']) == 4 + 3 and all(len(r) == 4 for r in result['table'])
    table = np.array(result['table'])
    assert result['empty']['psnr'] == pytest.approx(table[0].mean(), abs=1e-3)
    assert result['genotype_std'] == pytest.approx(table[2:6].mean(1).std(ddof=1), abs=1e-3)
    assert 'genotype std' in res.stdout and 'SNR' in res.stdout
    bad = run_script(SIGNAL_TOOL, '-opt', opt_path, '--batches', '1')
    assert bad.returncode == 2 and 'batches' in bad.stderr

    # the controller study on the same supernet: a planted preference, two settings, one seed
    res = run_script(STUDY_TOOL, '-opt', opt_path, '--seeds', '1', '--phases', '2', '--steps', '3', '--eval-samples',
                     '4', '--planted-bit', '4', '--out', str(tmp_path), '--settings', 'fresh:reward_mode=fresh,lr=1e-3',
                     'common:reward_mode=common,baseline_samples=2,lr=1e-3')
    assert res.returncode == 0, res.stderr[-3000:]
    study = json.loads((tmp_path / 'controller_study.json').read_text())
    assert [r['setting'] for r in study['summary']] == ['fresh', 'common']
    assert len(study['runs']) == 2 and study['meta']['planted_bit'] == 4
    for run in study['runs']:
        assert len(run['entropy_per_phase']) == 2 and len(run['p_planted_per_phase']) == 2
        assert run['entropy_drop'] == pytest.approx(1 - run['entropy_last_phase'] / run['entropy_first_phase'])
        assert 0 <= run['p_planted_sampled'] <= 1
    assert '| fresh |' in (tmp_path / 'controller_study.md').read_text()
