"""Tests of the one-command demo (tools/demo.py), the report (tools/report.py) and tools/compare_settings.py.

The demo runs end to end in its ``--fast`` mode (tiny search space and budgets, 192-px embedded
photos) into a temporary folder, with experiment names under a unique prefix; a second run must
reuse everything. The complexity cache of the report is seeded with the params/MACs that
``deconas_plugin.reporting.complexity_table`` gives for the fixed-size reference networks (RDN, EDSR,
paper CARN and DeCoNASNet: counting them takes about a minute on 2 busy cores, and
``test_tools_report.py`` covers the counter); the found network and CARN are counted live.
Every experiment/result/tb_logger folder of the prefix is removed afterwards.
"""
import deconas_plugin  # noqa: F401  (torchvision shim and registries, before basicsr)

import glob
import json
import os
import os.path as osp
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
import uuid

import cv2
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from basicsr.archs import build_network
from basicsr.metrics import calculate_psnr, calculate_ssim
from basicsr.utils.options import ordered_yaml

from deconas_plugin.reporting import figures as report_figures
from deconas_plugin.reporting import metrics as report_metrics
from deconas_plugin.reporting import report as report_lib
from deconas_plugin.complexity import count_params
from deconas_plugin.genotype import Genotype
from deconas_plugin.reporting.draw import figure_pixels
from shared_data import SHARED, need_shared
from tiny_options import search_options, train_options, write_options

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PREFIX = f'tdemo_{uuid.uuid4().hex[:8]}'
STEPS = ['prepare', 'search', 'derive', 'retrain', 'carn', 'test', 'report']
# complexity_table's counts at a 1280x720 HR output, x2 (network, params, MACs)
REFERENCE_X2 = {
    'DeCoNASNet': (1_693_251, 382_899_027_968),
    'CARN': (1_591_939, 222_820_761_600),
    'RDN': (22_123_395, 5_096_182_579_200),
    'EDSR': (1_369_859, 316_248_883_200),
}


def _cleanup(prefix):
    for base in ('experiments', 'results', 'tb_logger'):
        for path in glob.glob(osp.join(ROOT, base, f'{prefix}*')):
            shutil.rmtree(path, ignore_errors=True)


def _run(args, timeout=900):
    """``args`` run by Python from the project root; ``timeout`` only guards against a hang (a demo step takes
    1-2 minutes on 2 idle cores, several times that beside other work)."""
    t = time.time()
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    return proc, time.time() - t


def _check(proc):
    assert proc.returncode == 0, f'exit {proc.returncode}\n--- stdout ---\n{proc.stdout[-4000:]}\n' \
                                 f'--- stderr ---\n{proc.stderr[-4000:]}'


def _seed_cache(path):
    data = {}
    for _, net in report_metrics.reference_networks(2):
        params, macs = REFERENCE_X2[net['type']]
        data[report_metrics.ComplexityCache.key(net, 2)] = {
            'arch': net['type'], 'scale': 2, 'params': params, 'macs': macs, 'lr_w': 640, 'lr_h': 360,
            'macs_method': 'scaled (a*h*w + d, verified at 32x40)'}
    with open(path, 'w') as f:
        json.dump(data, f)


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    base = tmp_path_factory.mktemp('demo')
    out, cache = base / 'out', base / 'complexity_cache.json'
    _seed_cache(cache)
    args = [osp.join(ROOT, 'tools', 'demo.py'), '--fast', '--out', str(out), '--prefix', PREFIX, '--quiet',
            '--complexity-cache', str(cache)]
    try:
        first, first_s = _run(args)
        yield {'out': str(out), 'args': args, 'first': first, 'first_s': first_s, 'cache': str(cache),
               'base': base}
    finally:
        _cleanup(PREFIX)


def _summary(out):
    with open(osp.join(out, 'demo_summary.json')) as f:
        return json.load(f)


def _report(out):
    with open(osp.join(out, 'report', 'report.json')) as f:
        return json.load(f)


# ------------------------------------------------------------------------------------------ demo
def test_demo_fast_end_to_end(demo):
    _check(demo['first'])
    summary = _summary(demo['out'])
    assert [s['step'] for s in summary['steps']] == STEPS
    assert all(s['status'] == 'ran' for s in summary['steps']), summary['steps']
    for step in STEPS:  # one banner per step, with its time
        assert re.search(rf'\[demo \d/7\] {step}\s+ran in [\d.]+ s', demo['first'].stdout), step
    for name in ('search_x2', 'found_x2', 'CARN_x2'):
        assert osp.isfile(osp.join(ROOT, 'experiments', f'{PREFIX}_{name}', 'models', 'net_g_latest.pth'))
    for method in ('bicubic', 'carn', 'found'):
        assert report_metrics.find_test_log(osp.join(ROOT, 'results', f'{PREFIX}_test_{method}_x2'))
        assert osp.isfile(osp.join(demo['out'], 'options', f'test_{method}.yml'))
    # CARN: single-scale, same budget as the found network's retrain
    carn = report_lib.derive_lib.read_options(osp.join(demo['out'], 'options', 'train_CARN.yml'))
    found = report_lib.derive_lib.read_options(
        osp.join(ROOT, 'experiments', f'{PREFIX}_search_x2', 'derive', 'train_DeCoNASNet.yml'))
    assert carn['network_g']['type'] == 'CARN' and carn['network_g']['multi_scale'] is False
    assert carn['network_g']['num_feat'] == found['network_g']['num_feat']
    # written before the search, yet the found network's option file but for its name and network
    assert {k: v for k, v in carn.items() if k not in ('name', 'network_g')} == \
        {k: v for k, v in found.items() if k not in ('name', 'network_g')}
    # CARN trained beside search, derive and retrain: started before the search, waited for after the retrain
    out = demo['first'].stdout
    assert out.index('[demo 5/7] carn     started beside') < out.index('[demo 2/7] search   started') \
        < out.index('[demo 4/7] retrain  ran') < out.index('[demo 5/7] carn     ran')
    assert summary['steps'][4]['beside'] == ['search', 'derive', 'retrain']
    assert 'DeCoNASNet (found)' in demo['first'].stdout  # the results table is printed at the end


def test_demo_second_run_reuses_everything(demo):
    _check(demo['first'])
    second, second_s = _run(demo['args'])
    _check(second)
    summary = _summary(demo['out'])
    assert [s['status'] for s in summary['steps']] == ['skipped'] * len(STEPS), summary['steps']
    assert all(s['made_in_seconds'] > 0 for s in summary['steps'][1:])  # the first run's times are kept
    assert second.stdout.count('skipped in') == len(STEPS)
    assert second_s < 0.5 * demo['first_s'], (second_s, demo['first_s'])


# ---------------------------------------------------------------------------------------- report
def _documented_fields():
    doc = report_lib.__doc__
    section = doc[doc.index('JSON fields of ``report.json``'):]
    return re.findall(r'^- ``([\w.]+)``', section, flags=re.M)


def _lookup(obj, dotted):
    for key in dotted.split('.'):
        assert isinstance(obj, dict) and key in obj, f'{dotted}: missing {key!r}'
        obj = obj[key]
    return obj


def test_report_json_has_documented_fields(demo):
    _check(demo['first'])
    rep = _report(demo['out'])
    fields = _documented_fields()
    assert len(fields) >= 25 and 'genotype.decimal' in fields and 'results.rows' in fields
    for field in fields:
        _lookup(rep, field)
    # ... and nothing undocumented at the top two levels
    documented = set(fields) | {f.split('.')[0] for f in fields}
    for key, value in rep.items():
        assert key in documented, key
        if isinstance(value, dict) and key not in fields:
            for sub in value:
                assert f'{key}.{sub}' in documented, f'{key}.{sub}'


def test_report_json_values_are_sane(demo):
    _check(demo['first'])
    rep = _report(demo['out'])
    assert rep['version'] == 1 and rep['scale'] == 2
    space = rep['search']['space']
    assert space == {'num_blocks': 2, 'num_nodes': 3, 'num_feat': 8, 'feature_fusion_search': False}
    assert rep['search']['history_rows'] == 15  # controller phases at iterations 10, 20, 30; 5 steps each
    assert 1 <= rep['search']['distinct_genotypes'] <= 15 and rep['search']['last_iter'] == 30
    # One row per probed phase: the probe's numbers and the policy of that phase's controller steps.
    exp = rep['search']['experiment']
    with open(osp.join(exp, 'search_signal.jsonl')) as f:
        probes = [json.loads(line) for line in f if line.strip()]
    with open(osp.join(exp, 'search_history.jsonl')) as f:
        steps = [json.loads(line) for line in f if line.strip()]
    phases = rep['search']['phases']
    assert [p['iter'] for p in phases] == [p['iter'] for p in probes] and phases
    for phase, probe in zip(phases, probes):
        assert phase['full_minus_empty'] == pytest.approx(probe['full_psnr'] - probe['empty_psnr'])
        assert phase['genotype_std'] == probe['genotype_std'] and phase['snr'] == probe['snr']
        mine = [r for r in steps if r['iter'] == probe['iter']]
        assert phase['policy_params'] == (pytest.approx(np.mean([r['params'] for r in mine])) if mine else None)
    with open(osp.join(demo['out'], 'report', 'report.md')) as f:
        assert '| child steps | genotype std (dB) | interaction std (dB) |' in f.read()
    g = rep['genotype']
    genotype = Genotype.parse(g['decimal'])
    assert list(genotype.codes) == g['codes'] and len(g['codes']) == 6
    assert Genotype.parse(g['bits']) == genotype and g['fusion'] is None
    assert g['params'] == count_params(genotype, num_blocks=2, num_feat=8, upscale=2)
    assert g['derive']['samples'] == 8 and g['derive']['scored_on'] == 'reward'
    assert rep['complexity']['hr_size'] == [1280, 720]
    rows = {r['label']: r for r in rep['complexity']['rows']}
    assert rows['DeCoNASNet (found)']['params'] == g['params']
    assert rows['RDN']['params'] == 22_123_395
    assert any(label.startswith('EDSR') for label in rows) and any(label.startswith('CARN') for label in rows)
    for r in rows.values():
        assert r['params'] > 0 and r['macs'] > 0 and (r['lr_w'], r['lr_h']) == (640, 360)
    assert rep['results']['test_sets'] == ['embedded_test']
    results = {r['arch']: r for r in rep['results']['rows']}
    assert list(results) == ['Bicubic', 'CARN', 'DeCoNASNet']
    assert results['Bicubic']['params'] is None and results['DeCoNASNet']['params'] == g['params']
    for r in results.values():
        m = r['metrics']['embedded_test']
        assert 5 < m['psnr'] < 60 and 0 < m['ssim'] <= 1
    assert results['Bicubic']['metrics']['embedded_test']['psnr'] > 25  # smooth 192-px photos
    crops = rep['crops']
    assert crops['test_set'] == 'embedded_test' and crops['image'] == 'chelsea'  # first colour image
    assert set(crops['psnr']) == {r['label'] for r in rep['results']['rows']}
    # the crop captions use the same metric as the test log (4 decimals there)
    for r in rep['results']['rows']:
        assert crops['psnr'][r['label']] > 0
    with open(osp.join(demo['out'], 'report', 'report.md')) as f:
        md = f.read()
    with open(osp.join(demo['out'], 'report', 'results_table.md')) as f:
        table = f.read()
    assert table in md and '| Method | Scale | Params | embedded_test |' in table
    assert re.search(r'\| Bicubic \| x2 \| - \| \d+\.\d\d/0\.\d{4} \|', table)


def _recomputed_metrics(demo_out, key):
    """{test set: (mean PSNR, mean SSIM)} of the demo's method ``key`` (bicubic, carn, found),
    computed here from its option file, weights and image files, apart from the test pipeline, the
    model class, its log and the report: BasicSR's metric on Y, border = scale; a single-channel
    ground truth is compared with the full-range luma of the output (the gray-image rule)."""
    with open(osp.join(demo_out, 'options', f'test_{key}.yml')) as f:
        opt = yaml.load(f, Loader=ordered_yaml()[0])
    s = opt['scale']
    net = build_network(dict(opt['network_g'])).eval()
    if opt['path'].get('pretrain_network_g'):
        net.load_state_dict(torch.load(opt['path']['pretrain_network_g'], map_location='cpu')['params'])
    out = {}
    for ds in opt['datasets'].values():
        psnrs, ssims = [], []
        for gt_path in sorted(glob.glob(osp.join(ds['dataroot_gt'], '*.png'))):
            gt = cv2.imread(gt_path, cv2.IMREAD_UNCHANGED)
            lq = cv2.imread(osp.join(ds['dataroot_lq'], osp.basename(gt_path)), cv2.IMREAD_COLOR)
            x = torch.from_numpy(lq[:, :, ::-1].astype(np.float32) / 255.).permute(2, 0, 1)[None]
            with torch.no_grad():
                y = net(x)[0].double().numpy()  # RGB, (3, H, W)
            if gt.ndim == 2:  # gray file: its values are its Y; the output's full-range luma
                sr = np.tensordot(np.array([0.299, 0.587, 0.114]), y, axes=1)
            else:
                sr = y[::-1].transpose(1, 2, 0)  # BGR, as BasicSR's tensor2img
            sr = (np.clip(sr, 0, 1) * 255.).round().astype(np.uint8)
            psnrs.append(calculate_psnr(sr, gt, s, test_y_channel=True))
            ssims.append(calculate_ssim(sr, gt, s, test_y_channel=True))
        out[ds['name']] = (float(np.mean(psnrs)), float(np.mean(ssims)))
    return out


def test_report_metrics_equal_an_independent_computation(demo):
    """The report's PSNR/SSIM of every method equal the metric recomputed from the weights and images
    (the test log, which the report reads, has 4 decimals)."""
    _check(demo['first'])
    rep = _report(demo['out'])
    keys = {'Bicubic': 'bicubic', 'CARN': 'carn', 'DeCoNASNet': 'found'}
    with open(osp.join(demo['out'], 'options', 'test_found.yml')) as f:
        gt_dir = yaml.load(f, Loader=ordered_yaml()[0])['datasets']['test_1']['dataroot_gt']
    gray = [p for p in sorted(glob.glob(osp.join(gt_dir, '*.png'))) if Image.open(p).mode == 'L']
    assert [osp.basename(p) for p in gray] == ['camera.png', 'coins.png', 'grass.png', 'gravel.png',
                                               'page.png']  # the gray-image rule is exercised
    for row in rep['results']['rows']:
        ours = _recomputed_metrics(demo['out'], keys[row['arch']])
        psnr, ssim = ours['embedded_test']
        m = row['metrics']['embedded_test']
        assert m['psnr'] == pytest.approx(psnr, abs=2e-3), row['arch']
        assert m['ssim'] == pytest.approx(ssim, abs=2e-4), row['arch']


def _png(path):
    with Image.open(path) as img:
        assert img.format == 'PNG'
        return img.size, np.asarray(img.convert('RGB'), dtype=np.float64)


def test_report_pngs_are_real_and_not_blank(demo):
    _check(demo['first'])
    rep = _report(demo['out'])
    folder = osp.join(demo['out'], 'report')
    expected = dict(report_figures.FIGURE_SIZES, cell=figure_pixels(Genotype.parse(rep['genotype']['decimal'])))
    assert set(rep['figures']) == set(expected)
    for kind, name in rep['figures'].items():
        size, pixels = _png(osp.join(folder, name))
        assert size == expected[kind], (kind, size)
        assert pixels.std() > 10, (kind, pixels.std())
    assert not glob.glob(osp.join(folder, '.tmp_*'))  # atomic writes leave no temporary file
    mask = os.umask(0)
    os.umask(mask)
    for name in os.listdir(folder):  # normal permissions, not mkstemp's 0600
        assert stat.S_IMODE(os.stat(osp.join(folder, name)).st_mode) == 0o666 & ~mask, name


def test_report_cli_standalone(demo, tmp_path):
    _check(demo['first'])
    opts = osp.join(demo['out'], 'options')
    out = tmp_path / 'report'
    proc, _ = _run([osp.join(ROOT, 'tools', 'report.py'), '--search-exp',
                    osp.join(ROOT, 'experiments', f'{PREFIX}_search_x2'), '--out', str(out),
                    '--test-opt', f'Bicubic={opts}/test_bicubic.yml', '--test-opt', f'{opts}/test_found.yml',
                    '--complexity-cache', demo['cache']])
    _check(proc)
    rep = json.loads((out / 'report.json').read_text())
    assert [r['label'] for r in rep['results']['rows']] == ['Bicubic', 'DeCoNASNet']  # label defaults to the arch
    assert rep['timings'] is None and rep['genotype']['decimal'] == _report(demo['out'])['genotype']['decimal']
    for name in rep['figures'].values():
        assert (out / name).is_file()


def test_report_markdown_of_a_search_without_signal_probe(demo):
    """A search run with ``search.signal_probe: 0`` has no signal rows: the report says so instead."""
    from deconas_plugin.reporting.markdown import render_markdown
    r = _report(demo['out'])
    assert r['search'].get('signal')  # the demo probes; drop it as a search without the probe would have
    r['search']['signal'] = None
    text = render_markdown(r, '| table |')
    assert 'did not probe the architecture signal (`search.signal_probe: 0`)' in text
    assert '![search signal]' not in text


def test_parse_test_log(tmp_path):
    log = tmp_path / 'test_x.log'
    log.write_text('2026-01-01 00:00:00,000 INFO: Testing Set5...\n'
                   '2026-01-01 00:00:01,000 INFO: Validation Set5\n\t # psnr: 33.6600\tBest: 33.6600 @ x iter\n'
                   '\t # ssim: 0.9299\tBest: 0.9299 @ x iter\n\n'
                   '2026-01-01 00:00:02,000 INFO: Validation Set 14\n\t # psnr: 30.2400\n')
    assert report_metrics.parse_test_log(str(log)) == {'Set5': {'psnr': 33.66, 'ssim': 0.9299},
                                                   'Set 14': {'psnr': 30.24}}


# ------------------------------------------------------------------------------------ compare
def test_compare_settings_two_tiny_searches(demo, tmp_path):
    _check(demo['first'])
    opt_a = osp.join(demo['out'], 'options', 'search.yml')
    opt = report_lib.derive_lib.read_options(opt_a)
    opt['name'] = f'{PREFIX}_search_b'
    opt['search']['alpha'] = 2.0
    opt['train']['total_iter'] = 20
    opt_b = str(tmp_path / 'search_b.yml')
    with open(opt_b, 'w') as f:
        f.write(report_lib.derive_lib.dump_options(opt))
    proc, _ = _run([osp.join(ROOT, 'deconas_plugin', 'train.py'), '-opt', opt_b])
    _check(proc)
    out = tmp_path / 'compare'
    proc, _ = _run([osp.join(ROOT, 'tools', 'compare_settings.py'), '-opt', opt_a, opt_b, '--labels', 'CB1', 'CB2',
                    '--num-samples', '6', '--out', str(out), '--quiet'])
    _check(proc)
    table = (out / 'table.md').read_text()
    assert table.startswith('| Setting | alpha | FF search | best PSNR (dB) | params (best) | mean PSNR (dB) |')
    assert '| CB1 | 1 | no |' in table and '| CB2 | 2 | no |' in table
    data = json.loads((out / 'table.json').read_text())
    assert data['num_samples'] == 6 and [s['label'] for s in data['settings']] == ['CB1', 'CB2']
    for s in data['settings']:
        assert s['samples'] == 6 and 1 <= s['distinct'] <= 6 and len(s['sampled']) == 6
        psnrs = [r['psnr'] for r in s['sampled']]
        assert s['best']['psnr'] == pytest.approx(max(psnrs))
        assert s['mean_psnr'] == pytest.approx(float(np.mean(psnrs)))
        assert s['mean_params'] > 0 and s['best']['params'] > 0
    size, pixels = _png(out / 'scatter.png')
    assert size == (800, 550) and pixels.std() > 10


def test_compare_settings_scores_with_the_threads_of_the_project_rule(monkeypatch, tmp_path):
    """compare_settings scores with the shared weights, so it takes its torch threads from default_threads (here
    from OMP_NUM_THREADS, which the rule lets win) before it scores."""
    from deconas_plugin.utils.cli import load_tool
    tool = load_tool('compare_settings')
    seen = []

    class Scored(Exception):
        """Raised where the tool would score: nothing past that point is needed."""

    def compare(*args, **kwargs):
        seen.append(torch.get_num_threads())
        raise Scored

    monkeypatch.setattr(tool, 'compare', compare)
    keep = torch.get_num_threads()
    for omp in ('1', '2'):
        monkeypatch.setenv('OMP_NUM_THREADS', omp)
        torch.set_num_threads(3)
        try:
            with pytest.raises(Scored):
                tool.main(['-opt', 'search.yml', '--out', str(tmp_path / 'out')])
        finally:
            torch.set_num_threads(keep)
    assert seen == [1, 2] and not (tmp_path / 'out').exists()


def _demo_in_process(out, prefix, capsys):
    """Run tools/demo.py --fast in this process (so that a test can patch ``Demo``) to a failed step: exit
    status 1 and one ``error:`` line; (that line, stdout)."""
    from deconas_plugin.pipelines import demo as demo_lib
    with pytest.raises(SystemExit) as exc:
        demo_lib.main(['--fast', '--out', str(out), '--prefix', prefix, '--quiet'])
    captured = capsys.readouterr()
    assert exc.value.code == 1 and 'error: ' in captured.err, captured.err[-3000:]
    return captured.err[captured.err.index('error: '):], captured.out


def test_demo_reports_a_failed_background_training(tmp_path, monkeypatch, capsys):
    """CARN trains in the background: when it fails, the demo stops with its step, exit code and log tail."""
    from deconas_plugin.pipelines import demo as demo_lib
    carn_options = demo_lib.Demo.carn_options

    def broken_carn(self):
        opt = carn_options(self)
        opt['network_g']['type'] = 'NoSuchArch'
        return opt

    monkeypatch.setattr(demo_lib.Demo, 'carn_options', broken_carn)
    try:
        error, out = _demo_in_process(tmp_path / 'out', f'{PREFIX}_bgfail', capsys)
    finally:
        _cleanup(f'{PREFIX}_bgfail')
    log = tmp_path / 'out' / 'logs' / 'carn.log'
    assert re.search(r'carn \(in the background\) failed \(exit code [1-9]\d*\)', error)
    assert f'full log: {log}' in error
    assert 'NoSuchArch' in error  # the log's last lines
    assert re.search(r'\[demo 5/7\] carn\s+FAILED after [\d.]+ s', out)
    assert _summary(tmp_path / 'out')['failed'] == 'carn'


def test_demo_failure_stops_the_background_training(tmp_path, monkeypatch, capsys):
    """A failing step stops CARN's background training with SIGTERM: it writes its state (exit 75)."""
    from deconas_plugin.pipelines import demo as demo_lib
    carn_options = demo_lib.Demo.carn_options
    out_dir, prefix = tmp_path / 'out', f'{PREFIX}_bgstop'

    def long_carn(self):
        opt = carn_options(self)
        opt['train']['total_iter'] = 100_000
        return opt

    def failing_search(self):
        log, t = out_dir / 'logs' / 'carn.log', time.time()
        while 'Start training' not in (log.read_text() if log.exists() else '') and time.time() - t < 120:
            time.sleep(0.2)
        raise demo_lib.PipelineError('the search broke')

    monkeypatch.setattr(demo_lib.Demo, 'carn_options', long_carn)
    monkeypatch.setattr(demo_lib.Demo, 'step_search', failing_search)
    try:
        error, out = _demo_in_process(out_dir, prefix, capsys)
        assert error == 'error: the search broke\n'
        assert 'carn stopped (exit code 75; its training state is saved, the next run resumes it)' in out
        assert glob.glob(osp.join(ROOT, 'experiments', f'{prefix}_CARN_x2', 'training_states', '*.state'))
        assert _summary(out_dir)['failed'] == 'search'
    finally:
        _cleanup(prefix)


def test_sigterm_to_the_demo_stops_its_trainings_with_their_states(tmp_path):
    """``kill <demo>`` (or a batch system's SIGTERM): the demo stops the running step and the background
    CARN training with SIGTERM, each writes its state, no process is left, and the demo exits 143."""
    out_dir, prefix = tmp_path / 'out', f'{PREFIX}_sigterm'
    code = (f'import sys\nsys.path.insert(0, {ROOT!r})\nfrom deconas_plugin.pipelines import demo as d\n'
            'carn_options = d.Demo.carn_options\n'
            'def long_carn(self):\n    opt = carn_options(self)\n    opt["train"]["total_iter"] = 100_000\n'
            '    return opt\n'
            'd.Demo.carn_options = long_carn\n'
            f'd.main(["--fast", "--out", {str(out_dir)!r}, "--prefix", {prefix!r}, "--quiet"])\n')
    proc = subprocess.Popen([sys.executable, '-c', code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        log, t = out_dir / 'logs' / 'carn.log', time.time()
        while 'Start training' not in (log.read_text() if log.exists() else '') and time.time() - t < 120:
            time.sleep(0.2)
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=180)[0]
        assert proc.returncode == 143, output
        assert 'carn stopped (exit code 75; its training state is saved, the next run resumes it)' in output
        assert 'Stopped by SIGTERM after iteration' in log.read_text()
        assert glob.glob(osp.join(ROOT, 'experiments', f'{prefix}_CARN_x2', 'training_states', '*.state'))
        left = []
        for cmdline in glob.glob('/proc/[0-9]*/cmdline'):
            try:
                with open(cmdline, 'rb') as f:
                    if str(out_dir).encode() in f.read():
                        left.append(cmdline)
            except OSError:
                pass
        assert not left, left  # neither the foreground step nor CARN outlives the demo
    finally:
        if proc.poll() is None:
            proc.kill()
        _cleanup(prefix)


def test_waiting_for_a_background_training_shows_its_progress(tmp_path, monkeypatch, capsys):
    """While the demo waits for a background training it prints the training's last iteration and eta."""
    from deconas_plugin.pipelines import demo as demo_lib, runs
    from deconas_plugin.utils.logged_run import BackgroundRun
    monkeypatch.setattr(runs, 'PROGRESS_EVERY', 0.2)
    demo = demo_lib.Demo(demo_lib.parse_args(['--out', str(tmp_path / 'out'), '--device', 'cpu']))
    lines = ["2026-11-30 04:32:21,154 INFO: [dpar_..][epoch:  2, iter:     {:,}, lr:(1.980e-03,)] [eta: 0:0{}:00, "
             "time (data): 0.141 (0.024)] l_pix: 2.2479e-02".format(i, 9 - i // 1000) for i in (900, 2100)]
    script = 'import time\n' + ''.join(f'print({line!r}, flush=True); time.sleep(0.6)\n' for line in lines)
    run = BackgroundRun([sys.executable, '-c', script], str(tmp_path / 'fake.log'), str(tmp_path), os.environ.copy())
    assert demo.finish_training(run, 'fake') == 'ran'
    out = capsys.readouterr().out
    assert 'fake (in the background): iteration 900, eta 0:09:00' in out
    assert 'fake (in the background): iteration 2,100, eta 0:07:00' in out
    assert runs.training_progress(str(tmp_path / 'fake.log')) == 'iteration 2,100, eta 0:07:00'


def test_demo_stops_on_a_missing_test_set_before_any_work(tmp_path):
    out = tmp_path / 'out'
    proc, _ = _run([osp.join(ROOT, 'tools', 'demo.py'), '--fast', '--out', str(out), '--test-sets',
                    str(tmp_path / 'nowhere')])
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.startswith(f"error: test set {tmp_path / 'nowhere'} has no GTmod2/LRbicx2 folders")
    assert 'tools/prepare_benchmark.py' in proc.stderr and 'Traceback' not in proc.stderr
    assert not out.exists()  # nothing prepared, searched or trained


def _bad_search_opt(tmp_path):
    """options/search/search_tiny_cpu.yml with every dataset folder missing."""
    with open(osp.join(ROOT, 'options', 'search', 'search_tiny_cpu.yml')) as f:
        opt = yaml.load(f, Loader=ordered_yaml()[0])
    for dataset in (*opt['datasets'].values(), opt['search']['reward_dataset']):
        dataset.update(dataroot_gt=str(tmp_path / 'nowhere_gt'), dataroot_lq=str(tmp_path / 'nowhere_lq'))
    path = tmp_path / 'search_no_data.yml'
    path.write_text(yaml.dump(json.loads(json.dumps(opt))))
    return str(path)


@pytest.mark.parametrize('args, fragments', [
    (['--search-opt', '{tmp}/missing.yml'], ['option file not found: {tmp}/missing.yml']),
    (['--search-opt', '{root}/options/train/train_CARN_x2.yml'], ['is not a search option file', 'DeCoNASSRModel']),
    (['--search-opt', '{root}/options/search/search_tiny_cpu.yml', '--scale', '3'],
     ['search_tiny_cpu.yml has scale 2 but --scale is 3']),
    (['--search-opt', 'BAD_SEARCH'], ['--search-opt {tmp}/search_no_data.yml: ', 'no such folder']),
    (['--train-opt', '{tmp}/missing.yml'], ['option file not found: {tmp}/missing.yml']),
    (['--train-opt', '{root}/options/test/test_CARN_x2.yml'], ['test_CARN_x2.yml has no datasets.train']),
    (['--num-samples', '0'], ['--num-samples must be >= 1, got 0']),
    (['--threads', '-1'], ['--threads must be >= 0, got -1']),
    (['--prefix', 'a/b'], ["--prefix 'a/b' must be a plain name"]),
    (['--seed-spread', '10'], ["--seed-spread 10 is the demo's own manual_seed"]),
    (['--seed-spread', '11', '--train-opt', '{root}/options/train/train_CARN_x2.yml'],
     ["--seed-spread measures the demo's own setting"]),
    (['--seed-spread-file', '{tmp}/spread.json'], ['--seed-spread-file {tmp}/spread.json is unreadable']),
    (['--out', '{tmp}/a_file'], ['--out {tmp}/a_file is a file']),
], ids=lambda v: ' '.join(v) if isinstance(v, list) and v and v[0].startswith('--') else None)
def test_demo_checks_every_argument_before_writing_anything(tmp_path, capsys, args, fragments):
    """A bad argument is one ``error:`` line naming it, exit status 2, and nothing under --out (no data
    prepared, no option file written): the demo itself does not run."""
    from deconas_plugin.pipelines import demo as demo_lib
    (tmp_path / 'spread.json').write_text('{"date": ')  # cut off
    (tmp_path / 'a_file').write_text('not a folder')
    fill = {'{tmp}': str(tmp_path), '{root}': ROOT, 'BAD_SEARCH': _bad_search_opt(tmp_path)}

    def filled(text):
        for key, value in fill.items():
            text = text.replace(key, value)
        return text

    out = tmp_path / 'out'
    argv = ['--fast', '--out', str(out), *(filled(a) for a in args)]
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(SystemExit) as exc:
        demo_lib.main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert err.startswith('error: ') and err.count('\n') == 1, err
    for fragment in fragments:
        assert filled(fragment) in err, err
    assert sorted(os.listdir(tmp_path)) == before  # --out is neither made nor written
    assert not glob.glob(osp.join(ROOT, 'experiments', 'demo_fast_*_x3'))


def test_demo_argument_check_passes_valid_arguments_and_needs_cuda_for_device_cuda(tmp_path, monkeypatch):
    """The defaults pass the check (writing nothing); --device cuda or --num-gpu 1 without a GPU do not."""
    from deconas_plugin.pipelines import demo as demo_lib
    out = tmp_path / 'out'
    demo_lib.Demo(demo_lib.parse_args(['--fast', '--out', str(out)])).check_inputs()
    demo_lib.Demo(demo_lib.parse_args(['--out', str(out), '--seed-spread', '11', '--threads', '0'])).check_inputs()
    assert not out.exists()
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    for args, flag in ((['--device', 'cuda'], '--device cuda'), (['--num-gpu', '1'], '--num-gpu 1')):
        with pytest.raises(demo_lib.InputError, match=f'^{flag}: no CUDA GPU is visible'):
            demo_lib.Demo(demo_lib.parse_args(['--out', str(out), *args])).check_inputs()


def test_report_per_image_gains_and_first_screen(demo):
    """Per-image PSNR-Y/SSIM-Y of every method and image, whose mean is the logged one; gains over bicubic;
    a caption that names every trained network not above bicubic; the first screen before everything else."""
    _check(demo['first'])
    rep = _report(demo['out'])
    rows = {r['arch']: r for r in rep['results']['rows']}
    test_images = sorted(osp.splitext(n)[0] for n in os.listdir(
        osp.join(demo['out'], 'data_fast', 'embedded', 'test', 'GTmod2')))
    assert len(test_images) >= 6
    for row in rows.values():
        per_image = row['per_image']['embedded_test']
        assert sorted(per_image) == test_images
        # the gray images' luma is rounded once more from the saved file: a few hundredths of a dB at most
        assert np.mean([v['psnr'] for v in per_image.values()]) == pytest.approx(
            row['metrics']['embedded_test']['psnr'], abs=0.03)
        assert np.mean([v['ssim'] for v in per_image.values()]) == pytest.approx(
            row['metrics']['embedded_test']['ssim'], abs=1e-3)
        if row['arch'] == 'Bicubic':
            assert row['gain_over_bicubic'] is None and row['seed_spread'] is None
        else:
            gain = row['gain_over_bicubic']['embedded_test']
            assert gain == pytest.approx(row['metrics']['embedded_test']['psnr']
                                         - rows['Bicubic']['metrics']['embedded_test']['psnr'], abs=1e-4)
            assert (f"{row['label']} on embedded_test ({gain:+.2f} dB)" in rep['results']['caption']) == (gain <= 0)
            assert row['seed_spread'] is None  # the stored measurement is not for --fast
    caption = rep['results']['caption']
    assert 'embedded_test: 7 images' in caption and 'one schedule: 20 iterations, batch 4, LR patch 24' in caption
    assert 'Seed spread: not measured for this setting' in caption and rep['results']['seed_spread'] is None
    with open(osp.join(demo['out'], 'report', 'results_table.md')) as f:
        assert f.read().startswith(caption)
    md = open(osp.join(demo['out'], 'report', 'report.md')).read()
    assert md.index('## In short') < md.index('## Found network')
    assert len(rep['summary']) == 4 and all(line in md for line in rep['summary'])
    assert f"`{rep['genotype']['decimal']}`, a DeCoNASNet of {rep['genotype']['params']:,} parameters" in md
    for row in rows.values():
        assert f"{row['label']} {row['metrics']['embedded_test']['psnr']:.2f} dB" in rep['summary'][2]
    assert rep['summary'][3].startswith('**Better than chance?**')
    for image in test_images:  # the per-image table
        assert re.search(rf'^\| {image} \|( \d+\.\d\d/0\.\d{{4}} \|){{3}}$', md, flags=re.M), image


def test_seed_spread_is_measured_and_cited(demo, tmp_path):
    """``--seed-spread 11``: the found network and CARN retrained with manual_seed 11 and tested; the file
    holds both seeds' test means (seed 10: the demo's own tests) and their distance; the report cites it."""
    _check(demo['first'])
    spread_file = tmp_path / 'spread.json'
    proc, _ = _run(demo['args'] + ['--seed-spread', '11', '--seed-spread-file', str(spread_file)])
    _check(proc)
    spread = json.loads(spread_file.read_text())
    assert spread['seeds'] == [10, 11] and set(spread['networks']) == {'CARN', 'DeCoNASNet'}
    assert spread['setting']['fast'] is True and spread['setting']['train']['total_iter'] == 20
    assert spread['command'].startswith('python tools/demo.py --fast') and spread['machine'] and spread['date']
    rep = _report(demo['out'])
    keys = {'CARN': 'carn', 'DeCoNASNet': 'found'}
    for row in rep['results']['rows']:
        if row['arch'] == 'Bicubic':
            continue
        net = spread['networks'][row['arch']]
        seed11 = report_metrics.parse_test_log(report_metrics.find_test_log(
            osp.join(ROOT, 'results', f"{PREFIX}_test_{keys[row['arch']]}_seed11_x2")))['embedded_test']
        assert net['psnr'] == [row['metrics']['embedded_test']['psnr'], seed11['psnr']]
        assert net['psnr_spread'] == pytest.approx(abs(net['psnr'][0] - net['psnr'][1]), abs=1e-4)
        assert row['seed_spread'] == net
        ckpts = [osp.join(ROOT, 'experiments', f"{PREFIX}_{n}", 'models', 'net_g_latest.pth')
                 for n in ({'CARN': 'CARN_x2', 'DeCoNASNet': 'found_x2'}[row['arch']],
                           {'CARN': 'CARN_x2_seed11', 'DeCoNASNet': 'found_x2_seed11'}[row['arch']])]
        first, second = (torch.load(p, map_location='cpu')['params'] for p in ckpts)
        assert any(not torch.equal(first[k], second[k]) for k in first)  # another seed, another network
    assert f"measured {spread['date']} on {spread['machine']} (`{spread_file}`)" in rep['results']['caption']
    assert 'seed spread' in (tmp_path / 'spread.md').read_text().lower()


# ------------------------------------------------------------------------------ real test sets (last)
def test_demo_on_prepared_set5(demo, tmp_path):
    """``--test-sets``: the trained networks are reused, tested on Set5 (from ../shared) and reported;
    the bicubic row is the published one. Last in this file: it rewrites the demo's report."""
    _check(demo['first'])
    hr = need_shared(osp.join(SHARED, 'Set5', 'HR'))
    set5 = tmp_path / 'Set5'
    proc, _ = _run([osp.join(ROOT, 'tools', 'prepare_benchmark.py'), '--input', hr, '--output', str(set5),
                    '--scales', '2'])
    _check(proc)
    proc, _ = _run(demo['args'] + ['--test-sets', str(set5)])
    _check(proc)
    status = {s['step']: s['status'] for s in _summary(demo['out'])['steps']}
    assert status == {'prepare': 'skipped', 'search': 'skipped', 'derive': 'skipped', 'retrain': 'skipped',
                      'carn': 'skipped', 'test': 'ran', 'report': 'ran'}, status
    rep = _report(demo['out'])
    assert rep['results']['test_sets'] == ['Set5']
    results = {r['arch']: r['metrics']['Set5'] for r in rep['results']['rows']}
    assert list(results) == ['Bicubic', 'CARN', 'DeCoNASNet']
    assert results['Bicubic']['psnr'] == pytest.approx(33.66, abs=0.03)  # published Set5 x2 bicubic
    assert results['Bicubic']['ssim'] == pytest.approx(0.9299, abs=0.001)
    keys = {'Bicubic': 'bicubic', 'CARN': 'carn', 'DeCoNASNet': 'found'}
    for arch, m in results.items():  # --fast trains for a few iterations only: scored, not good
        psnr, ssim = _recomputed_metrics(demo['out'], keys[arch])['Set5']
        assert m['psnr'] == pytest.approx(psnr, abs=2e-3) and m['ssim'] == pytest.approx(ssim, abs=2e-4), arch
    assert rep['crops']['test_set'] == 'Set5'
    table = (osp.join(demo['out'], 'report', 'results_table.md'))
    assert '| Method | Scale | Params | Set5 |' in open(table).read()


def test_demo_with_user_option_files(embedded_data, tmp_path, experiment_name):
    """``--search-opt`` / ``--train-opt`` / ``--test-sets``: the demo runs the user's own search and
    retrain option files on their data (no embedded preparation) and reports on their test set."""
    prefix, search_name = experiment_name('tdemo_user'), experiment_name('tdemo_user_search')
    search_opt = write_options(tmp_path / 'my_search.yml', search_options(embedded_data, search_name, total_iter=8))
    train_opt = write_options(tmp_path / 'my_train.yml', train_options(embedded_data, 'overwritten', total_iter=3))
    out, cache = tmp_path / 'out', tmp_path / 'complexity_cache.json'
    _seed_cache(cache)  # the fixed-size reference networks, as in the demo fixture
    proc, _ = _run([osp.join(ROOT, 'tools', 'demo.py'), '--out', str(out), '--prefix', prefix, '--quiet',
                    '--search-opt', search_opt, '--train-opt', train_opt, '--test-sets', embedded_data['test'],
                    '--num-samples', '4', '--complexity-cache', str(cache), '--sequential'])
    _check(proc)
    steps = _summary(str(out))['steps']
    status = {s['step']: s['status'] for s in steps}
    assert status['prepare'] == 'skipped' and all(v == 'ran' for k, v in status.items() if k != 'prepare'), status
    # --sequential: CARN after the retrain, in the foreground
    assert not any('beside' in s for s in steps) and 'in the background' not in proc.stdout
    assert proc.stdout.index('[demo 4/7] retrain  ran') < proc.stdout.index('[demo 5/7] carn     started')
    carn = report_lib.derive_lib.read_options(str(out / 'options' / 'train_CARN.yml'))
    assert carn['train']['total_iter'] == 3 and carn['datasets'] == train_options(embedded_data, 'x')['datasets']
    assert not osp.exists(out / 'data' / 'embedded')  # nothing prepared: the user's data are used
    assert osp.isfile(osp.join(ROOT, 'experiments', search_name, 'search_history.jsonl'))
    assert osp.isfile(out / 'options' / 'my_search.yml')  # stored under the user's file name
    found = report_lib.derive_lib.read_options(
        osp.join(ROOT, 'experiments', search_name, 'derive', 'train_DeCoNASNet.yml'))
    assert found['name'] == f'{prefix}_found_x2' and found['train']['total_iter'] == 3  # the user's template
    assert found['datasets']['train']['dataroot_gt'] == osp.join(embedded_data['train'], 'GTmod2')
    rep = _report(str(out))
    assert rep['results']['test_sets'] == ['test']  # named after the folder
    assert [r['arch'] for r in rep['results']['rows']] == ['Bicubic', 'CARN', 'DeCoNASNet']
