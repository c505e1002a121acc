"""Smoke tests of tools/benchmark.py and tools/benchmark_ddp.py (no speed goal is asserted: timings are not tested)."""
import deconas_plugin  # noqa: F401  (torchvision shim and arch registration, before basicsr)

import json
import math
import os
import os.path as osp
import random
import re
import subprocess
import sys

import pytest
import torch

from deconas_plugin.archs.deconet_supernet_arch import DeCoNetSupernet
from benchmarks.machine import recorded_machine, section_machine
from benchmarks.markdown import md_machines
from benchmarks.run import parse_only, stamp_kept_section
from benchmarks.zeromask import ZeroMaskSupernet
from deconas_plugin.genotype import Genotype
from deconas_plugin.utils.embedded_data import SPLITS
from script_runner import run_script

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


NON_POSITIVE_OK = ('max_abs_diff', 'loss_rel_diff', 'seed', 'num_workers')


def _positive_numbers(obj, path='', skip=NON_POSITIVE_OK):
    """Every int/float in ``obj`` (recursively) except error-like keys is > 0."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k not in skip and not k.startswith('load_avg') and k not in ('losses', ):
                yield from _positive_numbers(v, f'{path}.{k}', skip)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _positive_numbers(v, f'{path}[{i}]', skip)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield path, obj


def quick_benchmark(out, *args):
    """``tools/benchmark.py --quick`` on the CPU with one thread, writing to ``out`` (run in this process)."""
    proc = run_script(osp.join(ROOT, 'tools', 'benchmark.py'), '--quick', '--device', 'cpu', '--threads', '1', *args,
                      '--out', str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_quick_benchmark_cli(tmp_path):
    out = tmp_path / 'bench'
    quick_benchmark(out, '--only', 'supernet,zeromask,controller,data')
    result = json.loads((out / 'benchmark.json').read_text())
    md = (out / 'benchmark.md').read_text()
    assert md.startswith('# DeCoNAS benchmark: ')
    assert 'torch ' + torch.__version__ in md and 'CPU:' in md
    for key in ('cpu', 'cores', 'torch', 'device', 'device_name'):
        assert key in result['machine']
    assert result['machine']['torch'] == torch.__version__
    secs = result['sections']
    assert list(secs) == ['supernet', 'zeromask', 'controller', 'data']
    assert all('error' not in s for s in secs.values()), {k: s.get('error') for k, s in secs.items()}

    sup = secs['supernet']
    for key in ('mean_ratio', 'goal_ratio_max', 'meets_goal', 'per_genotype', 'max_abs_diff'):
        assert key in sup
    assert len(sup['per_genotype']) == result['config']['genotypes']
    assert {'genotype', 'params_fixed', 'supernet_ms', 'fixed_ms', 'ratio'} <= set(sup['per_genotype'][0])
    assert sup['max_abs_diff'] < 1e-5

    zm = secs['zeromask']
    for key in ('max_abs_diff', 'equivalent', 'mean_speedup', 'goal_speedup_min', 'meets_goal', 'per_genotype'):
        assert key in zm
    assert zm['equivalent'] is True and zm['max_abs_diff'] < 1e-5 and zm['strict_fp32'] is True

    ctrl = secs['controller']
    assert {'configs', 'goal_ms', 'meets_goal', 'paths_meeting_goal_on_cpu'} <= set(ctrl)
    assert [c['ff'] for c in ctrl['configs']] == [False, True]
    for c in ctrl['configs']:
        for key in ('single_ms', 'batched_ms', 'child_draw_single_ms', 'child_draw_batched_ms'):
            assert c[key] > 0

    data = secs['data']
    for key in ('lmdb_samples_per_s', 'disk_samples_per_s', 'ratio_lmdb_over_disk', 'num_subimages'):
        assert data[key] > 0
    assert data['same_samples'] is True

    bad = [(p, v) for p, v in _positive_numbers(secs) if not v > 0]
    assert not bad, bad
    for title in ('1. Supernet vs fixed', '2. Sliced vs zero-mask', '3. Controller', '5. Data loading'):
        assert title in md

    # --merge re-measures one section and keeps the others, each stamped with when it was measured
    quick_benchmark(out, '--only', 'controller', '--merge')
    merged = json.loads((out / 'benchmark.json').read_text())['sections']
    assert list(merged) == ['supernet', 'zeromask', 'controller', 'data']
    assert merged['supernet']['per_genotype'] == secs['supernet']['per_genotype']
    assert '--merge' in merged['controller']['command'] and '--merge' not in merged['supernet']['command']
    assert merged['supernet']['machine'] == merged['controller']['machine'] == section_machine(result['machine'])
    md = (out / 'benchmark.md').read_text()
    assert '1. Supernet vs fixed' in md and 'sections by the machine' not in md  # one machine: the header's


def test_merge_records_the_machine_of_each_section():
    """A merged file names the machine of each section; one written before sections recorded theirs credits
    its latest run's machine only with the sections that run measured."""
    amd = {'cpu': 'AMD EPYC', 'cores': 2, 'usable_cores': 2, 'torch_threads': 1, 'torch': '2.14.1',
           'device': 'cpu', 'device_name': 'CPU (AMD EPYC)', 'python': '3.11', 'load_avg_start': [9.0]}
    intel = dict(amd, cpu='Intel Xeon', device_name='CPU (Intel Xeon)')
    first, merge = ['tools/benchmark.py', '--out', 'b'], ['tools/benchmark.py', '--only', 'data', '--merge']
    legacy = {'machine': intel, 'started': '2026-12-04 16:40:15', 'command': merge, 'sections': {
        'supernet': {'measured': '2026-11-25 18:12:37', 'command': first},
        'data': {'measured': '2026-12-04 16:42:33', 'command': merge}}}
    assert recorded_machine(legacy['sections']['supernet'], legacy) is None
    assert recorded_machine(legacy['sections']['data'], legacy)['cpu'] == 'Intel Xeon'
    unmerged = {'machine': amd, 'started': '2026-11-25 18:00:00', 'command': first, 'sections': {'supernet': {}}}
    kept = {}
    stamp_kept_section(kept, unmerged)
    assert kept == {'measured': '2026-11-25 18:00:00', 'command': first, 'machine': section_machine(amd)}

    result = {'machine': intel, 'started': '2026-12-04 16:40:15', 'command': merge, 'config': {},
              'sections': {'zeromask': {'machine': section_machine(amd)}, 'inference': {'machine': None},
                           'data': {'machine': section_machine(intel)}}}
    header = md_machines(result)
    assert header == ['- sections by the machine that measured them (the lines above describe the latest '
                      "run's): 2: CPU (AMD EPYC), 2 cores, torch 2.14.1, 1 thread(s); 4: a machine not recorded; "
                      '5: CPU (Intel Xeon), 2 cores, torch 2.14.1, 1 thread(s)']
    result['sections'] = {'data': result['sections']['data']}
    assert md_machines(result) == []


def test_quick_precision_section(tmp_path):
    """Section 7 in --quick: every variant trained from the same weights and scored in fp32."""
    out = tmp_path / 'bench'
    quick_benchmark(out, '--only', 'precision')
    result = json.loads((out / 'benchmark.json').read_text())
    sec = result['sections']['precision']
    assert 'error' not in sec, sec.get('error')
    rows = sec['variants']
    assert [(r['name'], r['autocast'], r['batch_seed']) for r in rows] == [
        ('fp32', None, 'A'), ('fp32, batch seed B', None, 'B'), ('bf16 autocast', 'bfloat16', 'A')]
    assert sec['setup']['iters'] == 10 and sec['test_images'] == sorted(SPLITS['test'])
    for r in rows:
        assert r['ms_per_iter'] > 0 and r['speedup'] > 0 and r['nonfinite_losses'] == 0
        assert math.isfinite(r['final_loss']) and r['final_loss'] > 0
        assert 5 < r['psnr_y'] < 60 and 0 < r['ssim_y'] <= 1 and len(r['per_image']) == len(SPLITS['test'])
        assert r['psnr_diff'] == pytest.approx(r['psnr_y'] - rows[0]['psnr_y'])
    assert rows[0]['psnr_diff'] == 0 and rows[0]['speedup'] == 1
    # Same weights and batches: bf16 follows fp32 closely; another batch seed gives another network.
    assert abs(rows[2]['first_loss'] - rows[0]['first_loss']) / rows[0]['first_loss'] < 5e-2
    assert rows[1]['first_loss'] != rows[0]['first_loss']
    assert sec['seed_noise_psnr_db'] == pytest.approx(abs(rows[1]['psnr_diff']))
    assert rows[2]['within_seed_noise'] == (abs(rows[2]['psnr_diff']) <= sec['seed_noise_psnr_db'])
    md = (out / 'benchmark.md').read_text()
    assert '## 7. Training precision' in md and '| 7. retrain PSNR-Y, bf16 autocast - fp32' in md


@pytest.mark.parametrize('fusion', [False, True])
def test_zero_mask_supernet_equals_sliced(fusion):
    torch.manual_seed(0)
    net = DeCoNetSupernet(num_feat=8, num_blocks=2, num_nodes=3, feature_fusion_search=fusion).eval()
    masked = ZeroMaskSupernet(net)
    x = torch.rand(1, 3, 12, 12)
    rng = random.Random(0)
    genotypes = [Genotype.random(3, num_blocks=2, fusion=fusion, rng=rng, density=d) for d in (0.2, 0.5, 0.9)]
    with torch.no_grad():
        for g in genotypes:
            assert (net(x, g) - masked(x, g)).abs().max() < 1e-5


def test_parse_only():
    assert parse_only(None) == ['supernet', 'zeromask', 'controller', 'inference', 'data', 'options', 'precision',
                                'retrain']
    assert parse_only('7') == ['precision']
    assert parse_only('8') == ['retrain']
    assert parse_only('controller,1,zeromask') == ['supernet', 'zeromask', 'controller']
    with pytest.raises(ValueError, match='unknown section'):
        parse_only('bogus')


def test_quick_retrain_section(tmp_path):
    """Section 8 in --quick: exact op counts of the real networks (the goal row in the summary), step times."""
    out = tmp_path / 'bench'
    quick_benchmark(out, '--only', 'retrain')
    sec = json.loads((out / 'benchmark.json').read_text())['sections']['retrain']
    assert 'error' not in sec, sec.get('error')
    ops = sec['ops']
    assert list(ops) == ['DeCoNASNet', 'EDSR-baseline', 'CARN']
    assert sec['meets_goal'] is (ops['DeCoNASNet']['forward_backward'] <= 800)
    for c in [*ops.values(), sec['supernet_child_ops']]:
        assert c['step'] == c['forward_backward'] + c['optimizer'] and c['optimizer'] > 0
    assert ops['EDSR-baseline']['step'] == 446  # the figure the benchmark measured: the counter counts what it did
    assert set(sec['step_ms']) == {f'{n} {p}' for n in ops for p in ('fp32', 'bf16')}
    assert 'cuda' not in sec
    assert sec['ratio_vs_edsr']['fp32'] == pytest.approx(sec['step_ms']['DeCoNASNet fp32']
                                                         / sec['step_ms']['EDSR-baseline fp32'])
    md = (out / 'benchmark.md').read_text()
    assert '## 8. Retrain step' in md and '| 8. retrain step ops, DeCoNASNet' in md
    assert '| 8. retrain step time, DeCoNASNet / EDSR-baseline | fp32 ' in md


def test_opt_in_path_verdicts():
    """Section 8's verdict per opt-in CUDA path (the GPU runner's speed stage gives the same): on only when at
    least SWITCH_SPEEDUP faster and its weights within WEIGHT_RTOL of eager's; a failure keeps it off."""
    from benchmarks.retrain import SWITCH_SPEEDUP, WEIGHT_RTOL, md_opt_in_paths, verdicts
    paths = {'adam': {'rows': {'fp32': {'speedup': 1.0, 'max_rel_weight_diff': 0.0}}},
             'compile': {'rows': {'fp32': {'speedup': SWITCH_SPEEDUP, 'max_rel_weight_diff': WEIGHT_RTOL},
                                  'bf16': {'speedup': 2.0, 'max_rel_weight_diff': None}}},
             'cuda_graph': {'rows': {'CARN fp32': {'speedup': 3.0, 'max_rel_weight_diff': 2 * WEIGHT_RTOL},
                                     'CARN bf16': {'error': 'RuntimeError: capture failed'}}}}
    got = verdicts(paths, measured=True)
    assert {name: v['verdict'] for name, v in got.items()} == {
        'optim_g.fused': f'keep off: not {SWITCH_SPEEDUP}x faster', 'train.compile (fp32)': 'evidence to switch on',
        'train.compile (bf16)': 'evidence to switch on',
        'whole-step CUDA graph (CARN fp32)': 'keep off: weights differ from eager',
        'whole-step CUDA graph (CARN bf16)': 'keep off: RuntimeError: capture failed'}
    assert got['train.compile (bf16)']['speedup'] == 2.0  # the row goes with its verdict
    assert {v['verdict'] for v in verdicts(paths, measured=False).values()} == {
        'not a GPU measurement', 'keep off: RuntimeError: capture failed'}
    md = '\n'.join(md_opt_in_paths(got))
    assert '| `whole-step CUDA graph (CARN fp32)` | 3.00x | 0.002 | keep off: weights differ from eager |' in md


def test_ddp_benchmark_records_date_machine_and_command(tmp_path):
    """tools/benchmark_ddp.py at tiny sizes (2 gloo ranks, in processes of their own: the tool spawns them)
    writes a results file that names its date, machine and command."""
    out = tmp_path / 'ddp'
    args = ['--steps', '2', '--feat', '4', '--batch', '1', '--patch', '8', '--device', 'cpu', '--out', str(out)]
    proc = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'benchmark_ddp.py'), *args], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, 'OMP_NUM_THREADS': '1'}, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((out / 'ddp.json').read_text())
    assert result['command'] == ' '.join(['python tools/benchmark_ddp.py'] + args)
    assert re.fullmatch(r'\d{4}-\d\d-\d\d \d\d:\d\d:\d\d', result['date'])
    assert result['machine']['device'] == 'cpu' and result['machine']['torch'] == torch.__version__
    assert result['machine']['cpu'] and result['threads_per_rank'] == 1
    assert result['ddp_find_unused'] > 0 and result['manual_allreduce'] > 0 and result['steps'] == 2
