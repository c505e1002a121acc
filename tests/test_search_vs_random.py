"""Search vs random (tools/search_vs_random.py): the protocol on a tiny search, and its parts.

The end-to-end test takes the session's tiny search (``tiny_search`` of conftest.py: C = 4, N = 2,
M = 2, 8 iterations), runs tools/derive.py on it, then the tool with 2 random genotypes, 1 seed and 2-iteration retrains on the embedded photos,
and checks the written fields against independent recomputations; a rerun must skip every run.
The other tests check the parts (Kendall tau-b, the random draw, the summary, the errors) in process.
"""
import deconas_plugin  # noqa: F401  (torchvision shim and registration, before basicsr)

import contextlib
import csv
import importlib.util
import io
import json
import math
import os
import os.path as osp
import random
import sys
import time

import cv2
import numpy as np
import pytest
import torch
from basicsr.archs import build_network
from basicsr.metrics import calculate_psnr
from basicsr.utils import img2tensor, tensor2img

from deconas_plugin import derive as derive_lib
from deconas_plugin.pipelines import search_vs_random as svr
from deconas_plugin.pipelines.runs import read_options
from deconas_plugin.complexity import count_params
from deconas_plugin.genotype import Genotype
from deconas_plugin.search_signal import kendall_tau
from deconas_plugin.utils.y_protocol import is_single_channel, rgb_to_luma
import tiny_options
from script_runner import run_script
from shared_data import ROOT
from tiny_options import write_options

TOOL = osp.join(ROOT, 'tools', 'search_vs_random.py')
SIZES = dict(num_blocks=2, num_nodes=3, num_feat=16, upscale=2, num_in_ch=3, num_out_ch=3)  # the demo's space


def load_tool(name):
    spec = importlib.util.spec_from_file_location(f'svr_test_tool_{name}', osp.join(ROOT, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_psnr_y_of_checkpoint(checkpoint, network_g, folder):
    """Mean PSNR-Y (border 2) of a retrained network on a GTmod2/LRbicx2 folder, computed here
    without BasicSR's model or loader: the network on each LR image (read as 3-channel BGR, as
    BasicSR does), 8-bit output, BasicSR's calculate_psnr; a single-channel file is scored on its
    own values against the output's luma (the project's gray rule, deconas_plugin/utils/y_protocol.py)."""
    net = build_network(dict(network_g))
    net.load_state_dict(torch.load(checkpoint, map_location='cpu')['params'])
    net.eval()
    values = []
    for name in sorted(os.listdir(osp.join(folder, 'GTmod2'))):
        gt_path = osp.join(folder, 'GTmod2', name)
        gt = cv2.imread(gt_path, cv2.IMREAD_COLOR)
        lq = cv2.imread(osp.join(folder, 'LRbicx2', name), cv2.IMREAD_COLOR)
        with torch.no_grad():
            out = net(img2tensor(lq.astype(np.float32) / 255., bgr2rgb=True, float32=True)[None])
        if is_single_channel(gt_path):
            sr, gt = tensor2img([rgb_to_luma(out)]), gt[..., 0]
        else:
            sr = tensor2img([out])  # BGR uint8, like gt
        values.append(calculate_psnr(sr, gt, crop_border=2, test_y_channel=True))
    return float(np.mean(values))


test_psnr_y_of_checkpoint.__test__ = False  # a helper, not a test


# ------------------------------------------------------------------------------------ end to end
def test_search_vs_random_end_to_end(embedded_data, tiny_search, tmp_path, experiment_name):
    search_name, opt, search_yml = tiny_search['name'], tiny_search['opt'], tiny_search['opt_path']
    template = write_options(tmp_path / 'template.yml', tiny_options.train_options(embedded_data, 'unused'))
    derive = load_tool('derive')
    with contextlib.redirect_stdout(io.StringIO()):
        derive.main(['-opt', search_yml, '--num-samples', '4', '--scored-on', 'reward', '--template', template,
                     '--device', 'cpu'])
    exp = osp.join(ROOT, 'experiments', search_name)
    with open(osp.join(exp, 'derive', 'chosen.json')) as f:
        chosen = json.load(f)
    assert chosen['sampler'] == 'controller' and chosen['samples'] == 4

    # --sampler uniform: random search with the same shared weights, scored and chosen the same way
    uniform_dir = tmp_path / 'derive_uniform'
    with contextlib.redirect_stdout(io.StringIO()):
        derive.main(['-opt', search_yml, '--num-samples', '5', '--sampler', 'uniform', '--seed', '3', '--scored-on',
                     'reward', '--template', template, '--device', 'cpu', '--out-dir', str(uniform_dir)])
    with open(uniform_dir / 'chosen.json') as f:
        uniform = json.load(f)
    net = opt['network_g']
    rng = random.Random(3)
    drawn = {Genotype.random(net['num_nodes'], net['num_blocks'], rng=rng).to_string() for _ in range(5)}
    with open(uniform_dir / 'ranking.csv') as f:
        ranked = {row['genotype'] for row in csv.DictReader(f)}
    assert uniform['sampler'] == 'uniform' and uniform['samples'] == 5 and ranked == drawn
    assert uniform['genotype'] in drawn and (uniform_dir / 'train_DeCoNASNet.yml').is_file()

    prefix = experiment_name('test_svr')
    out = tmp_path / 'svr'
    args = ['--search-exp', search_name, '--random', '2', '--seeds', '1', '--iterations', '2', '--prefix', prefix,
            '--out', str(out), '--device', 'cpu', '--threads', '1', '--quiet']
    tool = load_tool('search_vs_random')
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert tool.main(args) == 0
    assert buf.getvalue().count('retrain ran') == 3 and buf.getvalue().count('test ran') == 3, buf.getvalue()
    with open(out / 'search_vs_random.json') as f:
        result = json.load(f)
    assert (out / 'search_vs_random.md').is_file() and (out / 'search_vs_random.png').stat().st_size > 1000
    rows, genotypes, summary = result['rows'], result['genotypes'], result['summary']
    assert all(set(r) == set(svr.ROW_FIELDS) for r in rows)
    assert all(set(g) == set(svr.GENOTYPE_FIELDS) for g in genotypes)
    assert set(summary) == set(svr.SUMMARY_FIELDS)
    settings = summary['settings']
    assert settings['iterations'] == 2 and settings['seeds'] == 1 and settings['random'] == 2
    assert settings['budget']['total_iter'] == 2 and settings['budget']['batch_size_per_gpu'] == 2
    assert settings['test_set'] == 'embedded_test' and settings['supernet']['scored_on'] == 'reward'
    # The tiny search validates on the test split: the tool says it is not held out.
    assert settings['test_seen_by_search'] == ['embedded_test'] and 'not held out' in buf.getvalue()
    assert [r['kind'] for r in rows] == ['found', 'random', 'random']
    assert rows[0]['genotype'] == Genotype.parse(chosen['genotype']).to_string()
    # The found genotype's supernet score is derive's: same weights, same reward images.
    assert rows[0]['supernet_psnr'] == pytest.approx(chosen['psnr'], abs=1e-6)

    # Params: exact counts of the retrained networks, the random ones within 10% of the found one's.
    sizes = derive_lib.network_sizes(opt)
    found_params = rows[0]['params']
    for row in rows:
        g = Genotype.parse(row['genotype'], num_nodes=2)
        assert row['params'] == count_params(g, num_blocks=2, num_feat=4, upscale=2)
        experiment_dir = osp.join(ROOT, 'experiments', row['experiment'])
        state = torch.load(osp.join(experiment_dir, 'models', 'net_g_latest.pth'), map_location='cpu')['params']
        assert sum(v.numel() for v in state.values()) == row['params'] == derive_lib.genotype_params(g, sizes)
        assert abs(row['params'] - found_params) <= 0.1 * found_params
        assert row['experiment'].startswith(prefix) and row['manual_seed'] == 0
    assert len({r['genotype'] for r in rows}) == 3

    # A test PSNR recomputed independently from the checkpoint and the test images.
    row = rows[1]
    network_g = svr.read_options(osp.join(out, 'options', f"{row['experiment']}.yml"))['network_g']
    checkpoint = osp.join(ROOT, 'experiments', row['experiment'], 'models', 'net_g_latest.pth')
    assert row['psnr'] == pytest.approx(test_psnr_y_of_checkpoint(checkpoint, network_g, embedded_data['test']),
                                        abs=1e-4)
    assert row['test']['embedded_test']['psnr'] == row['psnr'] and 0 < row['ssim'] <= 1

    # Summary against the rows.
    by_genotype = {g['genotype']: g for g in genotypes}
    assert [by_genotype[r['genotype']]['psnr_mean'] for r in rows] == [r['psnr'] for r in rows]
    assert summary['found_mean'] == rows[0]['psnr'] and summary['found_std'] is None
    assert summary['random_mean'] == pytest.approx((rows[1]['psnr'] + rows[2]['psnr']) / 2)
    assert summary['found_rank'] == 1 + sum(r['psnr'] > rows[0]['psnr'] for r in rows)
    assert summary['kendall_tau'] == kendall_tau([g['supernet_psnr'] for g in genotypes],
                                                       [g['psnr_mean'] for g in genotypes])

    # Every run is recorded with its measurement, time and code.
    for row in rows:
        with open(osp.join(ROOT, row['record'])) as f:
            record = json.load(f)
        assert record['experiment'] == row['experiment'] and record['test'] == row['test']
        assert record['measurement']['train']['network_g']['genotype'] == row['genotype']
        assert 'name' not in record['measurement']['train'] and record['train_seconds'] > 0
        assert record['commit'] and record['commit'] == summary['settings']['commit']
    assert summary['train_hours'] == pytest.approx(sum(r['train_seconds'] for r in rows) / 3600)
    assert summary['params_tau'] == kendall_tau([g['params'] for g in genotypes], [g['psnr_mean'] for g in genotypes])

    # A rerun takes every run from its record (no retrain, no test), even without the checkpoints, and
    # writes the same rows.
    stamps = [os.stat(osp.join(ROOT, 'experiments', r['experiment'], 'models', 'net_g_latest.pth')).st_mtime_ns
              for r in rows]
    moved = osp.join(ROOT, 'experiments', rows[1]['experiment'] + '_moved')
    os.replace(osp.join(ROOT, 'experiments', rows[1]['experiment']), moved)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        tool.main(args)
    os.replace(moved, osp.join(ROOT, 'experiments', rows[1]['experiment']))
    assert buf.getvalue().count('recorded in') == 3, buf.getvalue()
    assert ' ran ' not in buf.getvalue(), buf.getvalue()
    with open(out / 'search_vs_random.json') as f:
        assert json.load(f)['rows'] == rows
    assert stamps == [os.stat(osp.join(ROOT, 'experiments', r['experiment'], 'models', 'net_g_latest.pth'))
                      .st_mtime_ns for r in rows]

    # A record of another options is not taken: a changed budget retrains.
    with open(osp.join(ROOT, rows[0]['record'])) as f:
        record = json.load(f)
    record['measurement']['train']['train']['total_iter'] = 3
    with open(osp.join(ROOT, rows[0]['record']), 'w') as f:
        json.dump(record, f)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        tool.main(args)
    # (its checkpoint is there with the same options: the retrain and its test are not run again)
    assert buf.getvalue().count('recorded in') == 2 and buf.getvalue().count('retrain skipped') == 1, buf.getvalue()

    # Without a search: a scale check of extra genotypes; its records are reused by a search-vs-random
    # run that asks for the same measurements (other run names), with more seeds for the found genotype.
    full = Genotype.full(2).to_string()
    empty = Genotype.parse(' '.join('0' for _ in full.split()), num_nodes=2).to_string()
    scale_out = tmp_path / 'scale'
    scale_args = ['--train-opt', str(out / 'options' / f"{rows[0]['experiment']}.yml"), '--genotypes', empty, full,
                  '--seeds', '1', '--prefix', experiment_name('test_svr_scale'), '--out', str(scale_out),
                  '--test-opt', str(out / 'options' / f"{rows[0]['experiment']}_test.yml"),
                  '--device', 'cpu', '--threads', '1', '--quiet']
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert tool.main(scale_args) == 0
    assert buf.getvalue().count('retrain ran') == 2, buf.getvalue()
    with open(scale_out / 'search_vs_random.json') as f:
        scale = json.load(f)
    assert [g['kind'] for g in scale['genotypes']] == ['extra', 'extra'] and scale['summary']['found_mean'] is None
    assert {r['genotype'] for r in scale['rows']} == {empty, full} and scale['summary']['kendall_tau'] is None
    assert (scale_out / 'search_vs_random.md').read_text().startswith('# Retrained genotypes')

    # The same trainings tested on another test set (here the same images under another name): each recorded
    # training's checkpoint is tested, nothing is retrained, and the same weights give the same numbers.
    other_test = derive_lib.plain(read_options(out / 'options' / f"{rows[0]['experiment']}_test.yml"))
    (first_set,) = other_test['datasets'].values()
    other_test['datasets'] = {'test_1': dict(first_set, name=first_set['name'] + '_again'), 'test_2': first_set}
    write_options(tmp_path / 'other_test.yml', other_test)
    retest_out = tmp_path / 'retest'
    retest_args = scale_args[:]
    retest_args[retest_args.index('--test-opt') + 1] = str(tmp_path / 'other_test.yml')
    retest_args[retest_args.index(str(scale_out))] = str(retest_out)
    retest_args[retest_args.index('--prefix') + 1] = experiment_name('test_svr_retest')
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert tool.main(retest_args + ['--reuse', str(scale_out)]) == 0
    text = buf.getvalue()
    assert 'retrain ran' not in text and text.count('retrain skipped (trained as in') == 2, text
    assert text.count('test ran') == 2, text
    with open(retest_out / 'search_vs_random.json') as f:
        retest = json.load(f)
    assert [r['psnr'] for r in retest['rows']] == [r['psnr'] for r in scale['rows']]
    assert [r['train_seconds'] for r in retest['rows']] == [r['train_seconds'] for r in scale['rows']]
    by_set = retest['by_test_set']  # one summary per test set; the two are the same images here
    assert list(by_set) == [first_set['name'] + '_again', first_set['name']] and len(set(map(str, by_set.values()))) == 1
    assert by_set[first_set['name']]['params_tau'] == retest['summary']['params_tau']
    assert by_set[first_set['name']]['psnr_means'] == {g['genotype']: g['psnr_mean'] for g in scale['genotypes']}
    retest_md = (retest_out / 'search_vs_random.md').read_text()  # no found genotype: each one's mean per set
    assert f"| genotype | params | {first_set['name']}_again | {first_set['name']} |" in retest_md
    assert f"| `{full}` |" in retest_md and '| test set | found |' not in retest_md
    for row in retest['rows']:
        with open(osp.join(ROOT, row['record'])) as f:
            assert osp.join(ROOT, json.load(f)['trained_as_in']).startswith(str(scale_out / 'runs'))

    # --recorded-only: nothing retrained; what is recorded so far is summarized under a name of its own
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert tool.main(args + ['--found-seeds', '3', '--genotypes', empty, full, '--reuse', str(scale_out),
                                 '--recorded-only']) == 0
    text = buf.getvalue()
    assert 'retrain ran' not in text and text.count('not recorded yet') == 2, text
    with open(out / 'search_vs_random_so_far.json') as f:
        so_far = json.load(f)
    assert so_far['missing'] == ['found seed 1', 'found seed 2'] and len(so_far['rows']) == len(rows) + 2
    assert (out / 'search_vs_random_so_far.md').read_text().startswith('**So far**: 5 of 7 runs recorded')
    with open(out / 'search_vs_random.json') as f:
        assert len(json.load(f)['rows']) == len(rows)  # the protocol's own result is left alone

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert tool.main(args + ['--found-seeds', '2', '--genotypes', empty, full, '--reuse', str(scale_out)]) == 0
    text = buf.getvalue()
    assert text.count('recorded in') == 5 and text.count('retrain ran') == 1, text  # found seed 1 only
    assert not any(out.glob('search_vs_random_so_far.*')), text  # the whole protocol supersedes the partial one
    with open(out / 'search_vs_random.json') as f:
        result = json.load(f)
    extra_rows = [r for r in result['rows'] if r['kind'] == 'extra']
    by_genotype = {r['genotype']: r for r in scale['rows']}
    assert [r['test'] for r in extra_rows] == [by_genotype[r['genotype']]['test'] for r in extra_rows]
    assert all(r['supernet_psnr'] is not None for r in result['rows'])
    s = result['summary']
    assert s['num_genotypes'] == 5 and s['num_ranked'] == 3 and s['found_std'] is not None
    assert s['found_minus_random_se'] == pytest.approx(math.sqrt(
        s['found_std']**2 / 2 + s['random_genotype_means_std']**2 / 2))
    assert s['kendall_tau'] == kendall_tau([g['supernet_psnr'] for g in result['genotypes']],
                                           [g['psnr_mean'] for g in result['genotypes']])

    # --jobs 2: the same retrains two at a time (one thread each), the same numbers.
    prefix2 = experiment_name('test_svr_jobs')
    args2 = [a if a != prefix else prefix2 for a in args]
    args2[args2.index(str(out))] = str(tmp_path / 'svr_jobs')
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert tool.main(args2 + ['--jobs', '2']) == 0
    assert buf.getvalue().count('retrain ran') == 3 and buf.getvalue().count('test ran') == 3, buf.getvalue()
    with open(tmp_path / 'svr_jobs' / 'search_vs_random.json') as f:
        rows2 = json.load(f)['rows']
    same = ('genotype', 'params', 'kind', 'seed', 'manual_seed', 'psnr', 'ssim', 'supernet_psnr', 'test')
    assert [{k: r[k] for k in same} for r in rows2] == [{k: r[k] for k in same} for r in rows]


# ------------------------------------------------------------------------------------ parts
def test_run_all_stops_the_other_runs_at_the_first_failure(tmp_path):
    """--jobs 2: a run that fails stops the one beside it (SIGTERM), and the queued ones never start."""
    runner = svr.Runner(str(tmp_path), threads=1, quiet=True, concurrent=True)
    started = []

    def work(n, seconds):
        started.append(n)
        code = f'import sys, time; time.sleep({seconds}); sys.exit(3)'
        runner.run_cmd([sys.executable, '-c', code], f'run{n}', f'run {n}')
        return n

    t = time.time()
    with pytest.raises(svr.ProtocolError, match=r'run 2 failed \(exit code 3\)'):
        svr.run_all(runner, work, [60, 0.5, 60, 60], jobs=2)
    assert time.time() - t < 30  # run 1 (60 s) was stopped, not waited for
    assert sorted(started) == [1, 2] or sorted(started) == [1, 2, 3]  # 3 may start before the stop, 4 never
    assert 4 not in started and not runner.live
    assert svr.run_all(svr.Runner(str(tmp_path), concurrent=True), lambda n, x: (n, x), 'abc', jobs=2) == \
        [(1, 'a'), (2, 'b'), (3, 'c')]


def test_kendall_tau_hand_computed():
    # 6 pairs, one discordant (2, 3): (5 - 1) / 6.
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    # Ties: x ties one pair, y ties another; 4 concordant, 0 discordant: 4 / sqrt(5 * 5).
    assert kendall_tau([1, 2, 2, 3], [1, 2, 3, 3]) == pytest.approx(0.8)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert kendall_tau([1, 1, 1], [1, 2, 3]) is None and kendall_tau([1], [2]) is None
    scipy_stats = pytest.importorskip('scipy.stats')
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 4, 12).tolist(), rng.integers(0, 5, 12).tolist()
    assert kendall_tau(x, y) == pytest.approx(scipy_stats.kendalltau(x, y).statistic)


def test_random_genotypes_matched_distinct_and_reproducible():
    found = Genotype.parse('7 5 3 0 1 6')
    target = derive_lib.genotype_params(found, SIZES)
    drawn = svr.draw_random_genotypes(found, SIZES, 6, 0.10, seed=3)
    assert drawn == svr.draw_random_genotypes(found, SIZES, 6, 0.10, seed=3)
    assert drawn != svr.draw_random_genotypes(found, SIZES, 6, 0.10, seed=4)
    assert len(set(drawn)) == 6 and found not in drawn
    assert all(abs(derive_lib.genotype_params(g, SIZES) - target) <= 0.1 * target for g in drawn)
    with pytest.raises(svr.ProtocolError, match='within 0% of'):
        svr.draw_random_genotypes(Genotype.full(3), SIZES, 1, 1e-9, max_draws=2000)  # the full one is unique


def test_summary_of_two_seeds():
    def row(kind, index, genotype, psnr, seed):
        return {'genotype': genotype, 'bits': genotype, 'params': 100 + index, 'kind': kind, 'index': index,
                'seed': seed, 'psnr': psnr, 'ssim': 0.9}
    rows = [row('found', 0, 'a', 30.0, 0), row('found', 0, 'a', 30.2, 1),
            row('random', 1, 'b', 30.3, 0), row('random', 1, 'b', 30.5, 1),
            row('random', 2, 'c', 29.0, 0), row('random', 2, 'c', 29.4, 1)]
    genotypes, summary = svr.summarize(rows, {'a': 20.0, 'b': 21.0, 'c': 19.0}, {'k': 1})
    assert [g['genotype'] for g in genotypes] == ['b', 'a', 'c'] and [g['rank'] for g in genotypes] == [1, 2, 3]
    assert summary['found_mean'] == pytest.approx(30.1) and summary['found_std'] == pytest.approx(math.sqrt(0.02))
    assert summary['random_mean'] == pytest.approx(29.8)
    assert summary['random_std'] == pytest.approx(np.std([30.3, 30.5, 29.0, 29.4], ddof=1))
    assert summary['random_genotype_means_std'] == pytest.approx(np.std([30.4, 29.2], ddof=1))
    assert summary['seed_std'] == pytest.approx(math.sqrt((0.02 + 0.02 + 0.08) / 3))
    assert summary['found_rank'] == 2 and summary['random_better_than_found'] == 1
    assert summary['found_minus_random'] == pytest.approx(0.3) and summary['random_best_mean'] == pytest.approx(30.4)
    assert summary['kendall_tau'] == pytest.approx(1.0) and summary['settings'] == {'k': 1}
    assert genotypes[1]['params_ratio'] == 1.0 and genotypes[0]['params_ratio'] == pytest.approx(1.01)
    # another test set of the same runs (``test``): its PSNR ranks them; a run not tested on it is left out
    for r, other in zip(rows, (31.0, 31.0, 30.0, 30.2, 28.0, None)):
        r['test'] = {'Set5': {'psnr': r['psnr'], 'ssim': 0.9}, **({'B100': {'psnr': other}} if other else {})}
    genotypes, summary = svr.summarize(rows, {}, {}, test_set='B100')
    assert [g['genotype'] for g in genotypes] == ['a', 'b', 'c'] and genotypes[2]['psnrs'] == [28.0]
    assert summary['found_minus_random'] == pytest.approx(31.0 - (30.0 + 30.2 + 28.0) / 3)
    assert summary['seed_std'] == pytest.approx(math.sqrt((0 + 0.02) / 2)) and genotypes[0]['ssim_mean'] is None
    assert svr.summarize(rows, {}, {}, test_set='Set5')[1]['found_mean'] == pytest.approx(30.1)


def test_a_recorded_training_is_tested_again_only_while_its_experiment_holds_it(tmp_path, experiment_name):
    """A new test of a recorded training takes the final checkpoint of the experiment that trained it (the
    source of a reused record), only while that experiment's option file is still the training's."""
    trained = experiment_name('test_svr_trained')
    train = {'name': trained, 'scale': 2, 'network_g': {'type': 'DeCoNASNet', 'genotype': '1 0'},
             'train': {'total_iter': 4}}
    wanted = {'train': svr.training_measurement(dict(train, name='other_name'))}
    source, reused = tmp_path / 'first' / 'runs', tmp_path / 'second' / 'runs'
    source.mkdir(parents=True)
    reused.mkdir(parents=True)
    (source / f'{trained}.json').write_text(json.dumps(
        {'experiment': trained, 'measurement': dict(wanted, test_sets=['a']), 'train_seconds': 12.5}))
    (reused / 'copy.json').write_text(json.dumps(  # a record taken from the first folder under another name
        {'experiment': 'copy', 'measurement': dict(wanted, test_sets=['a']), 'train_seconds': 12.5,
         'reused_from': str(source / f'{trained}.json')}))
    out = str(tmp_path / 'new')
    assert svr.recorded_training('run', wanted, out, [str(tmp_path / 'second')]) is None  # no checkpoint yet
    exp = osp.join(ROOT, 'experiments', trained)
    os.makedirs(osp.join(exp, 'models'))
    open(osp.join(exp, 'models', 'net_g_latest.pth'), 'wb').close()
    write_options(osp.join(exp, f'{trained}.yml'), train)
    found = svr.recorded_training('run', wanted, out, [str(tmp_path / 'second')])
    assert found == (str(reused / 'copy.json'), osp.join(exp, 'models', 'net_g_latest.pth'), 12.5)
    other = dict(wanted, train=dict(wanted['train'], train={'total_iter': 8}))
    assert svr.recorded_training('run', other, out, [str(tmp_path / 'second')]) is None  # another training
    write_options(osp.join(exp, f'{trained}.yml'), dict(train, train={'total_iter': 8}))  # rerun under its name
    assert svr.recorded_training('run', wanted, out, [str(tmp_path / 'second')]) is None


def test_a_retrain_with_ema_is_tested_on_its_ema_weights(tmp_path):
    """The test options load ``params_ema`` of a retrain that keeps an EMA (BasicSR saves both entries),
    as derive's do; the tested weights are part of the measurement then, so a record of the raw weights
    is not taken for it, while the records of retrains without EMA stay the same measurement."""
    from deconas_plugin import derive
    from deconas_plugin.pipelines.runs import test_options
    sets = [{'name': 'set', 'type': 'PairedImageDataset', 'dataroot_gt': 'datasets/x/GT', 'dataroot_lq': 'datasets/x/LR',
             'io_backend': {'type': 'disk'}}]
    plain = {'name': 'r', 'scale': 2, 'network_g': {'type': 'DeCoNASNet', 'genotype': '1 0'}, 'train': {'ema_decay': 0}}
    ema = dict(plain, train={'ema_decay': 0.999})
    tests = {key: test_options(train, str(tmp_path / 'net_g_latest.pth'), sets, 'r_test')
             for key, train in (('plain', plain), ('ema', ema))}
    assert tests['plain']['path']['param_key_g'] == 'params' and tests['ema']['path']['param_key_g'] == 'params_ema'
    assert derive.test_options(ema, tests['plain'])['path']['param_key_g'] == 'params_ema'
    assert 'weights' not in svr.measurement(plain, tests['plain'])
    assert svr.measurement(ema, tests['ema'])['weights'] == 'params_ema'
    raw = dict(tests['ema'], path=dict(tests['ema']['path'], param_key_g='params'))
    assert svr.measurement(ema, raw) != svr.measurement(ema, tests['ema'])


def test_a_record_of_another_measurement_under_the_run_name_is_archived_not_lost(tmp_path):
    """A run name can mean another genotype under an earlier protocol (another --genotypes list, same
    --prefix and --out): the record taken for it now does not overwrite the old one."""
    out, other = tmp_path / 'out', tmp_path / 'other'
    for folder in (out, other):
        (folder / 'runs').mkdir(parents=True)
    old = {'experiment': 'p_extra1_seed0', 'measurement': {'train': {'genotype': 'a'}}, 'test': {'t': {'psnr': 30.0}}}
    new = {'experiment': 'q_found_seed0', 'measurement': {'train': {'genotype': 'b'}}, 'test': {'t': {'psnr': 31.0}}}
    (out / 'runs' / 'p_extra1_seed0.json').write_text(json.dumps(old))
    (other / 'runs' / 'q_found_seed0.json').write_text(json.dumps(new))
    got = svr.find_record('p_extra1_seed0', new['measurement'], str(out), [str(other)])
    assert got['test'] == new['test'] and got['reused_from'].endswith('q_found_seed0.json')
    archived = list((out / 'runs').glob('p_extra1_seed0_archived_*.json'))
    assert len(archived) == 1 and json.loads(archived[0].read_text()) == old
    assert json.loads((out / 'runs' / 'p_extra1_seed0.json').read_text())['test'] == new['test']
    # the same measurement again: found in place, nothing archived
    assert svr.find_record('p_extra1_seed0', new['measurement'], str(out), [str(other)])['test'] == new['test']
    assert len(list((out / 'runs').glob('*_archived_*'))) == 1


def test_iterations_scale_the_schedule():
    train = {'total_iter': 1500, 'scheduler': {'type': 'MultiStepLR', 'milestones': [750, 1125], 'gamma': 0.5}}
    svr.scale_schedule(train, 300)
    assert train['total_iter'] == 300 and train['scheduler']['milestones'] == [150, 225]
    cosine = {'total_iter': 1000, 'scheduler': {'type': 'CosineAnnealingRestartLR', 'periods': [250, 750]}}
    svr.scale_schedule(cosine, 333)
    assert sum(cosine['scheduler']['periods']) == 333


# ------------------------------------------------------------------------------------ user errors
def _fake_search(embedded_data, tmp_path, chosen=True):
    """An experiment folder with a search option file (and a chosen.json): enough for the checks
    that run before any checkpoint is read."""
    exp = tmp_path / 'search_exp'
    (exp / 'derive').mkdir(parents=True)
    opt = tiny_options.search_options(embedded_data, 'fake_search')
    write_options(exp / 'search.yml', dict(opt, model_type='DeCoNASSearchModel'))
    if chosen:
        (exp / 'derive' / 'chosen.json').write_text(json.dumps({'genotype': '7 5 3', 'scored_on': 'reward'}))
    return exp


def test_missing_experiment_is_one_error_line(tmp_path):
    proc = run_script(TOOL, '--search-exp', str(tmp_path / 'nowhere'), '--out', str(tmp_path / 'out'))
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith('error: search experiment not found')


def test_no_chosen_genotype_and_bad_template_are_user_errors(embedded_data, tmp_path):
    exp = _fake_search(embedded_data, tmp_path, chosen=False)
    with pytest.raises(svr.ProtocolError, match=r'chosen\.json is missing; run python tools/derive\.py'):
        svr.run(str(exp), str(tmp_path / 'out'))
    exp = _fake_search(embedded_data, tmp_path / 'b')
    with pytest.raises(svr.ProtocolError, match=r'train_DeCoNASNet\.yml \(tools/derive\.py writes it\)'):
        svr.run(str(exp), str(tmp_path / 'out'))
    template = tiny_options.train_options(embedded_data)
    del template['datasets']['train']
    path = write_options(tmp_path / 'no_train.yml', template)
    with pytest.raises(svr.ProtocolError, match='has no datasets.train; pass --data-from-search'):
        svr.run(str(exp), str(tmp_path / 'out'), train_opt=path)
    with pytest.raises(svr.ProtocolError, match='retrain template not found'):
        svr.run(str(exp), str(tmp_path / 'out'), train_opt=str(tmp_path / 'missing.yml'))


def test_retrain_only_mode_needs_a_template_and_genotypes(tmp_path):
    with pytest.raises(svr.ProtocolError, match='without --search-exp, pass --train-opt and --genotypes'):
        svr.run(None, str(tmp_path / 'out'), train_opt=str(tmp_path / 'missing.yml'))
    with pytest.raises(svr.ProtocolError, match='no runs/ folder of run records'):
        svr.run(None, str(tmp_path / 'out'), extra_genotypes=['7 7 7'], train_opt='x.yml', reuse=[str(tmp_path)])


def test_summary_standard_error_and_params_tau():
    def row(genotype, kind, index, seed, psnr, params):
        return {'genotype': genotype, 'bits': genotype, 'params': params, 'kind': kind, 'index': index, 'seed': seed,
                'manual_seed': seed, 'experiment': f'{kind}{index}_{seed}', 'psnr': psnr, 'ssim': None,
                'supernet_psnr': None, 'test': {}, 'train_seconds': 36.0, 'record': ''}
    rows = [row('f', 'found', 0, 0, 30.0, 100), row('f', 'found', 0, 1, 30.2, 100),
            row('a', 'random', 1, 0, 29.9, 101), row('a', 'random', 1, 1, 29.9, 101),
            row('b', 'random', 2, 0, 30.3, 99), row('b', 'random', 2, 1, 30.1, 99),
            row('e', 'extra', 1, 0, 29.0, 10)]
    genotypes, s = svr.summarize(rows, {'f': 1.0, 'a': 0.5, 'b': 2.0, 'e': 0.0}, {})
    assert s['found_minus_random'] == pytest.approx(30.1 - 30.05)
    # found: std 0.1414 over 2 seeds; random genotype means 29.9 and 30.2: std 0.2121 over 2 genotypes
    assert s['found_minus_random_se'] == pytest.approx(math.sqrt(0.02 / 2 + 0.045 / 2))
    assert s['found_rank'] == 2 and s['num_ranked'] == 3 and s['num_genotypes'] == 4  # the extra is not ranked
    assert s['random_better_than_found'] == 1
    assert s['kendall_tau'] == pytest.approx(1.0)  # supernet order f < b, a < f ... matches the means exactly
    assert s['params_tau'] == kendall_tau([100, 101, 99, 10], [30.1, 29.9, 30.2, 29.0])
    assert s['train_hours'] == pytest.approx(7 * 36 / 3600)
    scale_genotypes, scale = svr.summarize([r for r in rows if r['kind'] == 'extra'], {}, {})
    assert scale['found_mean'] is None and scale['found_rank'] is None and scale['kendall_tau'] is None


def test_held_out_compares_images_not_folders(tmp_path):
    """Two meta_info subsets of one folder share no image: the test set is held out; the whole folder is not."""
    folder = tmp_path / 'GT'
    folder.mkdir()
    for name in ('a.png', 'b.png', 'c.png'):
        (folder / name).write_bytes(b'')
    (tmp_path / 'reward.txt').write_text('a.png (4,4,3)\nb.png (4,4,3)\n')
    (tmp_path / 'test.txt').write_text('c.png (4,4,3)\n')
    search = {'datasets': {'val': {'dataroot_gt': str(folder), 'meta_info_file': str(tmp_path / 'reward.txt')}},
              'search': {'reward_dataset': {'dataroot_gt': str(folder), 'meta_info_file': str(tmp_path / 'reward.txt')}}}
    seen = svr.search_data_images(search)
    assert seen == {str(folder / 'a.png'), str(folder / 'b.png')}
    assert not svr.dataset_images({'dataroot_gt': str(folder), 'meta_info_file': str(tmp_path / 'test.txt')}) & seen
    assert svr.dataset_images({'dataroot_gt': str(folder)}) & seen


def test_supernet_scores_are_reused_only_for_the_same_weights(tmp_path):
    import hashlib
    g = Genotype.full(2)
    entries = [('found', 0, g, 1)]
    exp, out = tmp_path / 'exp', tmp_path / 'out'
    (exp / 'models').mkdir(parents=True)
    out.mkdir()
    search_opt = {'name': 'tiny', 'scale': 2, 'network_g': {'num_blocks': 2, 'num_nodes': 2, 'num_feat': 4}}

    def store(sha):
        key = {'search': 'tiny', 'iteration': 'latest', 'scored_on': 'reward', 'checkpoint_sha256': sha}
        (out / svr.SCORES_FILE).write_text(json.dumps({'key': key, 'scores': {g.to_string(): 30.0}}))

    def scores():
        return svr.supernet_scores(str(out), entries, search_opt, str(exp), 'latest', 'reward', 'cpu', 1, True)

    store('0' * 64)
    assert scores() == {g.to_string(): 30.0}  # no checkpoint here: the stored scores stand
    (exp / 'models' / 'net_g_latest.pth').write_bytes(b'not the weights that were scored')
    with pytest.raises(Exception):  # other weights: scored again (and this file is no checkpoint)
        scores()
    store(hashlib.sha256(b'not the weights that were scored').hexdigest())
    assert scores() == {g.to_string(): 30.0}


def test_markdown_of_a_search_tested_on_several_sets_compares_found_and_random_on_each():
    with open(osp.join(ROOT, 'benchmarks', 'cpu-2core', 'std_tests_N4_M4_C32', 'search2', 'search_vs_random.json')) as f:
        result = json.load(f)
    text = svr.markdown(result)
    assert '| test set | found | random | best random | found - random |' in text
    assert '| Urban100 | 29.066 | 28.907 | 28.996 | +0.159 ± 0.059 | 1 of 6 |' in text
