"""``tools/gpu_evidence.py`` on a CPU: the data preparation, every stage at its tiny sizes (the same parts as
on a GPU, other sizes), the per-part time limit, skip and resume, and that everything the runner imports
is on the GPU machine (its own python or the kit of ``../shared/gpu``) or in the project."""
import json
import os
import os.path as osp
import subprocess
import sys
import time

import pytest

import deconas_plugin  # noqa: F401  (torchvision shim before basicsr)
from script_runner import run_script
from shared_data import ROOT, SHARED, need_shared

from benchmarks.gpu_evidence import STAGE_LIMIT_S, STAGES, EvidenceError, Runner, plan, prepare, run_isolated
from benchmarks.gpu_evidence.prepare import SCALE, paths, split_train_small
from benchmarks.gpu_evidence.retrain import RANDOM_COUNT, SEEDS
from benchmarks.gpu_evidence.runner import part_function

# The GPU machine's own python (../shared/gpu/README.md) and what the kit adds (without their dependencies).
GPU_PYTHON = ('torch', 'torchvision', 'opencv-python-headless', 'opencv-python', 'numpy', 'scikit-image',
              'matplotlib', 'pytest', 'hypothesis')
KIT = ('addict', 'lmdb', 'mmengine', 'yapf', 'termcolor', 'platformdirs', 'basicsr')
# basicsr imports these when it is imported, and basicsr ran on that machine (the kit's H200 measurements)
SEEN_THERE = ('pyyaml', 'tqdm')


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    need_shared(osp.join(SHARED, 'train_small'))
    data = str(tmp_path_factory.mktemp('gpu') / 'data')
    return data, prepare(data, tiny=True, say=lambda _: None)


def test_full_plan_fits_seven_minutes_a_stage_and_tiny_runs_the_same_parts():
    full, tiny = plan(), plan(tiny=True)
    assert list(full) == list(tiny) == list(STAGES)
    for stage in STAGES:
        assert sum(p['limit_s'] for p in full[stage]) <= STAGE_LIMIT_S - 15, stage  # the kill grace fits
        assert all(p['estimate_s'] < p['limit_s'] for p in full[stage]), stage
        assert {p['fn'] for p in tiny[stage]} == {p['fn'] for p in full[stage]}, stage
        for p in full[stage]:
            assert callable(part_function(p['fn']))
    assert sum(p['args']['seed'] == 1 for p in full['retrain']) == 3  # two seeds of 3 genotypes where time allows
    labels = ['found'] + [f'random{i}' for i in range(1, RANDOM_COUNT + 1)]  # the runs of the retrain's protocol
    assert sorted((p['args']['label'], p['args']['seed']) for p in full['retrain']) == sorted(
        (label, seed) for label in labels for seed in range(SEEDS))
    assert full['search'][0]['args']['min_child_steps'] >= 4000


def test_train_small_split_holds_out_reward_and_eval_images():
    names = [f'img{i:02d}.png' for i in range(27)]
    split = split_train_small(names, 14)
    assert len(split['reward']) == len(split['eval']) == 3 and len(split['train']) == 14
    assert not set(split['train']) & (set(split['reward']) | set(split['eval']))
    assert not set(split['reward']) & set(split['eval'])


def test_prepare_tiny_data(tiny_data, tmp_path):
    import cv2
    data, info = tiny_data
    d = paths(data)
    hr = sorted(os.listdir(d['train_hr']))
    assert hr and sorted(os.listdir(d['train_lr'])) == hr
    for name in hr[:3]:
        a, b = cv2.imread(osp.join(d['train_hr'], name)), cv2.imread(osp.join(d['train_lr'], name))
        assert a.shape[:2] == (256, 256) and b.shape[:2] == (128, 128)
    for part in ('reward', 'eval'):
        with open(d[f'{part}_meta']) as f:
            assert len(f.read().splitlines()) == 6
    for part in ('train', 'reward', 'eval'):  # each split's sub-images come from its own images only
        stems = {name.rsplit('_s', 1)[0] for name in os.listdir(d[f'{part}_hr'])}
        assert stems == {osp.splitext(n)[0] for n in info['split'][part]}, part
    for name, folder in d['test'].items():
        gt, lq = os.listdir(osp.join(folder, f'GTmod{SCALE}')), os.listdir(osp.join(folder, f'LRbicx{SCALE}'))
        assert gt and gt == lq, name
    measured = sum(osp.getsize(osp.join(p, f)) for p, _, fs in os.walk(data) for f in fs if f != 'prepared.json') / 1e6
    assert info['size_mb'] == pytest.approx(measured, abs=0.02)
    assert prepare(data, tiny=True, say=lambda _: None)['seconds'] == info['seconds']  # kept, not remade
    with pytest.raises(EvidenceError, match='over the 0 MB left.*nothing kept'):
        prepare(str(tmp_path / 'y'), tiny=True, limit_mb=0.001, say=lambda _: None)
    assert not osp.exists(tmp_path / 'y')  # nothing half-written is left


def _stamped(result):
    st = result['stamp']
    assert {'gpu', 'driver', 'torch', 'cuda', 'cudnn', 'commit', 'date'} <= set(st)
    assert all(p.get('stamp', st)['date'] for p in result['parts'].values())


def test_prepare_without_the_datasets_names_the_flag_to_pass(tmp_path):
    missing = r'^--data-root .*: no train_small/HR folder .*as --data-root \(or \$DECONAS_DATA\)'
    with pytest.raises(EvidenceError, match=missing):
        prepare(str(tmp_path / 'x'), shared=str(tmp_path), tiny=True, say=lambda _: None)
    assert not osp.exists(tmp_path / 'x')
    proc = run_script(osp.join(ROOT, 'tools', 'gpu_evidence.py'), '--prepare', '--tiny', '--data-root', str(tmp_path),
                      '--data', str(tmp_path / 'x'))
    assert proc.returncode == 2 and f'error: --data-root {tmp_path}: no train_small/HR folder' in proc.stderr


def test_tiny_speed_stage(tiny_data, tmp_path):
    out = tmp_path / 'ev'
    result = Runner(str(out), tiny_data[0], 'cpu', tiny=True, isolate=False, say=lambda _: None).run(['speed'])['speed']
    assert result['complete'] and all(p['status'] == 'done' for p in result['parts'].values()), result['parts']
    _stamped(result)
    got = {n: p['result'] for n, p in result['parts'].items()}
    assert got['cuda_graph'] == {'skipped': 'a CUDA graph needs CUDA'}
    assert set(got['retrain_eager']['step_ms']) == {'DeCoNASNet fp32', 'EDSR-baseline fp32', 'CARN fp32'}
    assert got['adam']['rows']['fp32']['max_rel_weight_diff'] < 1e-5  # fused Adam takes the same steps
    assert got['compile']['rows']['fp32']['max_rel_weight_diff'] < 1e-5
    verdicts = result['summary']['verdicts']
    assert {'optim_g.fused', 'train.compile (fp32)'} <= set(verdicts)
    assert {v['verdict'] for v in verdicts.values()} == {'not a GPU measurement'}
    assert got['supernet']['search_hours_paper'] > 0 and all(r['gmac_per_s'] > 0 for r in got['inference']['rows'])
    md = (out / 'speed.md').read_text()
    assert 'tiny sizes, not a measurement' in md and '`optim_g.fused`' in md
    assert json.loads((out / 'speed.json').read_text())['complete']


def test_retrain_stage_needs_the_search_stage(tiny_data, tmp_path):
    with pytest.raises(EvidenceError, match=r'search\.json; run --stage search first'):
        Runner(str(tmp_path), tiny_data[0], 'cpu', tiny=True, isolate=False, say=lambda _: None).run(['retrain'])
    with pytest.raises(EvidenceError, match='no prepared data'):
        Runner(str(tmp_path), str(tmp_path / 'none'), 'cpu', tiny=True, isolate=False,
               say=lambda _: None).run(['search'])


def test_tiny_search_and_retrain_stages_skip_and_resume(tiny_data, tmp_path, experiment_name):
    import signal

    from deconas_plugin.genotype import Genotype
    from deconas_plugin.pipelines import search_vs_random as svr
    from benchmarks.gpu_evidence.retrain import retrain_one
    stop_handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1)}
    out, said = tmp_path / 'ev', []
    runner = Runner(str(out), tiny_data[0], 'cpu', tiny=True, isolate=False, prefix=experiment_name('gpu_evidence'),
                    say=said.append)
    search = runner.run(['search'])['search']
    assert all(p['status'] == 'done' for p in search['parts'].values()), search['parts']
    e = search['parts']['evaluate']['result']
    low, high = e['ci95_db']
    assert low <= e['policy_minus_uniform_db'] <= high and e['phases'] == 2 and e['decisions'] == 9
    assert search['summary']['answer'] and Genotype.parse(search['summary']['found'], num_nodes=2, num_blocks=2)

    retrain = runner.run(['retrain'])['retrain']
    assert [n for n, p in retrain['parts'].items() if p['status'] == 'done'] == ['found_seed0', 'random1_seed0']
    rows = [p['result'] for p in retrain['parts'].values()]
    assert abs(rows[1]['params'] - rows[0]['params']) <= 0.1 * rows[0]['params']
    assert all(set(r['test']) == {'Set5', 'Set14', 'B100'} and r['test']['Set5']['psnr'] > 0 for r in rows)
    assert retrain['summary']['Set5']['exceeds_seed_noise'] is None  # one seed: no noise estimate, no claim
    assert [g['kind'] for g in retrain['summary']['B100']['genotypes']] in (['found', 'random'], ['random', 'found'])
    assert (out / 'search_vs_random' / 'runs' / f'{runner.prefix}_retrain_random1_seed0.json').is_file()
    with pytest.raises(svr.ProtocolError, match='no run random3_seed0 in this protocol; its runs are found_seed0, '):
        retrain_one(runner.context('retrain'), 'random3', 0, 2)
    _stamped(retrain)
    # train.py installed its stop-cleanly handlers; in-process runs leave SIGTERM as it was (the time limit)
    assert {s: signal.getsignal(s) for s in stop_handlers} == stop_handlers

    said.clear()  # complete: skipped without --force
    assert runner.run(['search', 'retrain'])['search']['parts']['derive'] == search['parts']['derive']
    assert 'search: skipped' in said[0] and 'retrain: skipped' in said[0]
    stopped = json.loads((out / 'search.json').read_text())  # a search stopped at its limit leaves no result,
    stopped['parts']['search'] = {'status': 'timed out', 'limit_s': 1, 'error': 'stopped'}  # only its options file
    (out / 'search.json').write_text(json.dumps(stopped))
    cut = json.loads((out / 'retrain.json').read_text())  # a stage cut short: its finished parts are kept
    cut['complete'] = False
    cut['parts']['random1_seed0'] = {'status': 'timed out', 'limit_s': 1, 'error': 'stopped'}
    (out / 'retrain.json').write_text(json.dumps(cut))
    again = runner.run(['retrain'])['retrain']
    assert again['parts']['found_seed0'] == retrain['parts']['found_seed0']
    assert again['parts']['random1_seed0']['status'] == 'done' and again['complete']


def test_a_part_over_its_limit_is_stopped(tmp_path):
    t = time.perf_counter()
    run = run_isolated([sys.executable, '-c', 'import subprocess, time; subprocess.Popen(["sleep", "60"]); '
                        'time.sleep(60)'], 1, str(tmp_path / 'slow.log'))
    assert run['timed_out'] and time.perf_counter() - t < 15
    assert run_isolated([sys.executable, '-c', 'pass'], 30, str(tmp_path / 'ok.log')) == {
        'returncode': 0, 'timed_out': False, 'wall_s': pytest.approx(0, abs=30)}


def test_check_stage_runs_each_part_in_its_own_process(tiny_data, tmp_path):
    """The GPU path: every part through the worker process under its limit; on a CPU every CUDA test skips."""
    result = Runner(str(tmp_path / 'ev'), tiny_data[0], 'cpu', tiny=True, say=lambda _: None).run(['check'])['check']
    parts = result['parts']
    assert all(p['status'] == 'done' for p in parts.values()), parts
    assert parts['environment']['result']['cuda_available'] is False
    tests = parts['cuda_tests']['result']['tests']
    assert tests and all(t['outcome'] == 'skipped' for t in tests)
    assert result['summary']['failed'] == [] and result['summary']['passed'] == 0


IMPORTS = """
import ast, builtins, glob, importlib, runpy, sys
importer, builtin_import = {}, builtins.__import__


def recording_import(name, globals=None, *args, **kwargs):  # who imported each top-level module first
    top = name.split('.')[0]
    if top not in sys.modules and top not in importer and globals is not None and not kwargs.get('level', 0) \\
            and not (args[2:3] and args[2]):
        importer[top] = globals.get('__file__') or ''
    return builtin_import(name, globals, *args, **kwargs)


builtins.__import__ = recording_import
sys.argv = ['gpu_evidence', '--plan', '--tiny', '--stage', 'all', '--out', '/nonexistent', '--device', 'cpu']
try:
    runpy.run_path('tools/gpu_evidence.py', run_name='__main__')
except SystemExit:
    pass
for path in glob.glob('benchmarks/gpu_evidence/*.py') + ['tools/derive.py', 'deconas_plugin/train.py',
                                                        'deconas_plugin/test.py']:
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            importlib.import_module(node.module)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                importlib.import_module(alias.name)
import basicsr.train, basicsr.test
for name, module in sorted(sys.modules.items()):
    if '.' not in name:
        print(name, getattr(module, '__file__', None) or '', importer.get(name, 'runner'), sep=chr(9))
"""


def test_the_runner_imports_only_what_the_gpu_machine_has():
    """Every top-level module that the project or a kit package (installed there without its dependencies)
    imports, in a fresh process that ran the CLI (its plan) and imported every module named by an import
    statement of the runner's package and of the entry points it runs, belongs to the standard library,
    the project, the GPU machine's python or its dependencies, or the kit. (What the GPU machine's own
    packages import, optional imports included, is theirs.)"""
    from importlib import metadata

    from packaging.requirements import Requirement
    proc = subprocess.run([sys.executable, '-c', IMPORTS], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    modules = [line.split('\t') for line in proc.stdout.splitlines() if line.count('\t') == 2]
    assert len(modules) > 50 and any(m[0] == 'basicsr' for m in modules)
    allowed = {_norm(n) for n in KIT + SEEN_THERE}
    todo = [_norm(n) for n in GPU_PYTHON]
    while todo:  # the GPU machine's packages came with their dependencies
        name = todo.pop()
        if name in allowed:
            continue
        allowed.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for r in map(Requirement, requires):
            if r.marker is None or r.marker.evaluate({'extra': ''}):
                todo.append(_norm(r.name))
    owners = metadata.packages_distributions()
    kit_dirs = tuple(f'{os.sep}{n}{os.sep}' for n in ('basicsr', 'mmengine', 'addict', 'lmdb', 'yapf', 'termcolor',
                                                       'platformdirs'))

    def ours(path):  # the project's files or a kit package's
        return path == 'runner' or (path.startswith(ROOT + os.sep) and '.venv' not in path) or any(
            d in path for d in kit_dirs)
    bad = []
    for module, path, by in modules:
        if module in sys.stdlib_module_names or module.startswith('_') or not ours(by) or ours(path):
            continue
        if not path and module not in owners:  # no file, no package: made by an extension (cython_runtime)
            continue
        dists = {_norm(d) for d in owners.get(module, [])}
        if not dists & allowed:
            bad.append(f'{module} ({", ".join(sorted(dists)) or path}; imported by {by})')
    assert not bad, 'imported but not on the GPU machine: ' + ', '.join(bad)


def _norm(name: str) -> str:
    return name.lower().replace('_', '-').replace('.', '-')


def test_full_sized_option_files_pass_the_option_check(tiny_data, tmp_path):
    """The GPU plan's search and retrain option files (full sizes, on any prepared data) are valid, and the
    search gets at least 4,000 child steps: about 200 s of them at the planned or measured step time."""
    from deconas_plugin import derive as derive_lib
    from deconas_plugin.genotype import Genotype
    from deconas_plugin.options import check_options
    from deconas_plugin.pipelines import search_vs_random as svr
    from benchmarks.gpu_evidence.retrain import OVERRIDES
    from benchmarks.gpu_evidence.search import child_step_count, child_step_estimate_s, search_options
    full = {p['name']: p['args'] for stage in ('search', 'retrain') for p in plan()[stage]}
    args = {k: v for k, v in full['search'].items() if k not in ('child_budget_s', 'child_step_s', 'min_child_steps',
                                                                   'max_child_steps')}
    ctx = {'data': tiny_data[0], 'prefix': 'p', 'device': 'cuda', 'out': str(tmp_path), 'tiny': False, 'results': {}}
    opt = search_options(ctx, total_iter=7000, **args)
    assert opt['network_g']['num_feat'] == 64 and opt['search']['alpha'] == 0 and opt['num_gpu'] == 1
    check_options(opt)
    # a retrain: the template tools/derive.py writes (--data-from-search), as the protocol fills it in
    g = Genotype.parse('7 6 4 3 0 2 2 3 4 1', num_nodes=4, num_blocks=4)
    template = derive_lib.retrain_options(g, opt, derive_lib.read_options(
        osp.join(ROOT, 'options', 'train', 'train_DeCoNASNet_x2.yml')), data_from_search=True)
    train = svr.retrain_options(g, opt, template, 'p_retrain_found_seed0', 10, full['found_seed0']['iterations'], 1,
                                overrides=OVERRIDES)
    check_options(train)
    assert train['train']['optim_g']['lr'] == 1e-3 and train['train']['scheduler']['milestones'] == [600, 900]
    assert train['datasets']['train']['batch_size_per_gpu'] == 16 and train['logger']['use_tb_logger'] is False
    assert child_step_count(200, 0.030, 4000, 12000, 500) == 7000
    assert child_step_count(200, 0.080, 4000, 12000, 500) == 4000
    speed = {'speed': {'parts': {'supernet': {'status': 'done', 'result': {'child_ms': 20.0}}}}}
    assert child_step_estimate_s(dict(ctx, results=speed), 0.030) == pytest.approx(0.020)


def test_check_stage_selections_run_every_cuda_test_once():
    """The check stage's ``-k`` selections (pytest: each word a substring of the test name) partition
    ``tests/test_cuda.py``: a new CUDA test cannot fall between them or run twice."""
    import ast
    import re
    with open(osp.join(ROOT, 'tests', 'test_cuda.py')) as f:
        names = [n.name for n in ast.parse(f.read()).body if isinstance(n, ast.FunctionDef)
                 and n.name.startswith('test_')]
    selects = [p['args']['select'] for p in plan()['check'] if p['fn'] == 'check:cuda_tests']

    def selected(select, name):
        expr = re.sub(r'\b(?!and\b|or\b|not\b)(\w+)\b', lambda m: repr(m.group(1).lower() in name.lower()), select)
        return eval(expr)  # noqa: S307  (a boolean expression of True/False literals)
    assert len(names) >= 7
    assert {n: sum(selected(s, n) for s in selects) for n in names} == {n: 1 for n in names}


def test_a_failing_part_is_recorded_and_the_stage_goes_on(tiny_data, tmp_path):
    runner = Runner(str(tmp_path / 'ev'), tiny_data[0], 'cpu', tiny=True, isolate=False, say=lambda _: None)
    inference = next(p for p in runner.plan['speed'] if p['name'] == 'inference')
    runner.plan['speed'] = [dict(inference, name='broken', args={'size': 16, 'reps': 1, 'no_such_argument': 1}),
                            inference]
    result = runner.run(['speed'])['speed']
    broken = result['parts']['broken']
    assert broken['status'] == 'failed' and 'no_such_argument' in broken['error']
    assert result['parts']['inference']['status'] == 'done' and result['complete']
    assert '| broken | failed: TypeError' in (tmp_path / 'ev' / 'speed.md').read_text()


def test_an_entry_point_that_fails_raises_with_its_exit_status(tmp_path):
    from benchmarks.gpu_evidence.entry import run_entry
    with pytest.raises(RuntimeError, match='exited with 2'):  # a bad option file: one error, exit 2
        run_entry('deconas_plugin/train.py', ['-opt', str(tmp_path / 'missing.yml')])
    assert sys.argv[0] != 'deconas_plugin/train.py'


def test_paper_search_cost_counts_the_steps_of_search_n4_m4():
    """The speed stage's estimate of the paper's search counts the child and controller steps that
    options/search/search_N4_M4.yml runs: a phase of controller_steps at every child_steps-th iteration
    from controller_start_iter to total_iter (DeCoNASSearchModel.optimize_parameters)."""
    from benchmarks.gpu_evidence.speed import PAPER_CHILD_STEPS, PAPER_CONTROLLER_STEPS
    from deconas_plugin.options import search_options
    from deconas_plugin.utils.option_file import read_option_file

    opt = read_option_file(osp.join(ROOT, 'options', 'search', 'search_N4_M4.yml'))
    search, total = search_options(opt), opt['train']['total_iter']
    phases = sum(1 for it in range(1, total + 1) if it >= search['controller_start_iter'] and
                 it % search['child_steps'] == 0)
    counted = (total, phases * search['controller_steps'])
    assert (PAPER_CHILD_STEPS, PAPER_CONTROLLER_STEPS) == counted == (200_000, 19_600)
