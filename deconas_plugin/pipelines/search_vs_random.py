"""Search vs random (``tools/search_vs_random.py``): is the found network better than chance?

The standard check of a weight-sharing search (Yu et al., ICLR 2020, "Evaluating the search phase
of neural architecture search"): retrain the genotype the search found and K random genotypes of
about the same size with the same budget and several seeds, test them all on held-out images,
and see where the found one ranks. Also: does the supernet's shared-weight PSNR order the
genotypes as their retrained PSNR does (Kendall tau)?

1. The search experiment: its option file (the copy BasicSR keeps in the experiment folder, or
   ``-opt``) and the genotype ``tools/derive.py`` chose (``<exp>/derive/chosen.json``).
2. K random genotypes, every bit 1 with probability 1/2 (``Genotype.random``, seeded by
   ``draw_seed``), kept only when their exact parameter count (``complexity.count_params`` with the
   search's N, C and scale) is within ``params_tolerance`` (10%) of the found one's; distinct, and
   never the found genotype itself.
3. Every genotype is scored with the search's supernet (shared weights, ``derive.score``) on the
   data ``tools/derive.py`` scored on (``scored_on`` of chosen.json: the reward patches or
   ``datasets.val``), so the found genotype's supernet PSNR is the one in chosen.json.
4. Every (genotype, seed) pair is retrained from scratch: the retrain template (default: the
   option file derive wrote, ``<exp>/derive/train_DeCoNASNet.yml``) with the genotype, the
   network sizes of the search, ``manual_seed`` = the template's + seed index, no pretrained
   weights, as its own BasicSR experiment ``<prefix>_<found|randomK>_seed<s>``, by
   ``python deconas_plugin/train.py -opt ... --auto_resume``. A run whose ``net_g_latest.pth``
   exists and whose stored option file equals the one it would run is skipped; an interrupted one
   resumes; one made with other options is archived (``<name>_archived_<time>``) and rerun.
5. Every retrained network is tested by ``python deconas_plugin/test.py`` (PSNR and SSIM on Y,
   border = scale; BasicSR's metrics on 8-bit images) on the held-out test sets: the val sets of
   the retrain template by default, or the datasets of ``--test-opt``, or ``--test-sets`` folders.
   A test whose log is newer than its checkpoint and option file is skipped.
6. ``<out>/search_vs_random.json`` (the fields are listed in ``ROW_FIELDS``, ``GENOTYPE_FIELDS`` and
   ``SUMMARY_FIELDS``), ``.md`` and ``.png``.

Extra genotypes (``extra_genotypes``, e.g. from the empty to the full cell) are retrained and scored
beside them, so that the Kendall tau of the supernet's ranking, and the tau of the parameter count
alone (the baseline any ranking must beat), span more sizes than the random genotypes do; the found
genotype's rank counts the found and random genotypes only. Without a search experiment, only the
extra genotypes are retrained and tested (a scale check: does the cell matter in this setting?).

Every finished retrain and test is recorded in ``<out>/runs/<run>.json``: its training options (but
its name), its test data and metrics, its time and the commit of the code. A run whose record exists
is neither retrained nor tested, so a rerun needs no checkpoint of a finished run (records can be
kept in git and the protocol finished on another machine); with ``reuse`` folders, a record of the
same measurement there (same options, test data and metrics, any run name) is taken too. A recorded run
of the same training with another test is tested again from its experiment's final checkpoint, not
retrained (``recorded_training``). Supernet
scores are kept in ``<out>/supernet_scores.json`` for the same reason.

Subprocess output goes to ``<out>/logs/<run>.log`` (and to the console unless ``quiet`` or
``jobs`` > 1); option files to ``<out>/options/``. ``jobs`` retrains (each followed by its test) run
at once, each a process of ``threads`` threads; with one thread each their results are those of
``jobs = 1``. The first failure stops the other runs (SIGTERM: a retrain writes its state) and
starts no new one.
"""
import concurrent.futures
import copy
import hashlib
import json
import math
import os
import os.path as osp
import random
import time
from typing import Callable, Dict, List, Optional, Sequence

from .. import derive as derive_lib
from ..derive import genotype_params, network_sizes, plain
from ..genotype import Genotype, GenotypeError
from ..search_signal import kendall_tau
from ..utils.checkpoint import atomic_write_text
from ..utils.machine import source_commit
from ..utils.markdown_table import md_table
from .runs import PipelineError, Runner, prepared_test_sets, read_options, shown, test_options

ROOT = derive_lib.PROJECT_ROOT
RESULT_FILE = 'search_vs_random'
DEFAULT_TOLERANCE = 0.10
MAX_DRAWS = 200_000  # rejection sampling gives up after this many draws

# What search_vs_random.json holds (checked by the tests, listed in docs/search-evaluation.md, "Search vs random").
ROW_FIELDS = ('genotype', 'bits', 'params', 'kind', 'index', 'seed', 'manual_seed', 'experiment', 'psnr', 'ssim',
              'supernet_psnr', 'test', 'train_seconds', 'record')
GENOTYPE_FIELDS = ('genotype', 'bits', 'params', 'params_ratio', 'kind', 'index', 'supernet_psnr', 'psnr_mean',
                   'psnr_std', 'ssim_mean', 'psnrs', 'rank')
SUMMARY_FIELDS = ('found_genotype', 'found_params', 'found_mean', 'found_std', 'random_mean', 'random_std',
                  'random_genotype_means_std', 'random_best_mean', 'found_minus_random', 'found_minus_random_se',
                  'seed_std', 'found_rank', 'num_ranked', 'num_genotypes', 'random_better_than_found', 'kendall_tau',
                  'params_tau', 'train_hours', 'settings')
# The summary of each test set (``by_test_set``), when there are several: the first one's is ``summary``; with
# ``psnr_means``, each genotype's mean PSNR-Y on that set.
BY_SET_FIELDS = ('found_mean', 'random_mean', 'random_best_mean', 'found_minus_random', 'found_minus_random_se',
                 'seed_std', 'found_rank', 'num_ranked', 'kendall_tau', 'params_tau')
RUNS_DIR = 'runs'  # <out>/runs/<run>.json: one record per finished retrain and test
SCORES_FILE = 'supernet_scores.json'
ProtocolError = PipelineError  # the name the callers of search vs random catch


# ------------------------------------------------------------------------------------- inputs
def find_experiment(value: str) -> str:
    """``value`` as a folder, or as the name of a folder under ``experiments/``."""
    for path in (value, osp.join(ROOT, 'experiments', value)):
        if osp.isdir(path):
            return osp.abspath(path)
    raise ProtocolError(f'search experiment not found: {value} (neither a folder nor experiments/{value})')


def find_search_options(experiment: str, opt_path: Optional[str] = None):
    """(path, options) of the search: ``opt_path``, or the option file BasicSR copied into the
    experiment folder when the search started (the newest ``*.yml`` there of a DeCoNASSearchModel)."""
    from ..reporting.metrics import ReportError, find_search_option
    try:
        path = opt_path or find_search_option(experiment)
    except ReportError:
        raise ProtocolError(f'no search option file (model_type DeCoNASSearchModel) in {experiment} (BasicSR copies '
                            f'it there when the search starts); pass the search option file with -opt') from None
    opt = read_options(path)
    if opt.get('model_type') != 'DeCoNASSearchModel':
        raise ProtocolError(f'-opt {path} is not a search option file (model_type {opt.get("model_type")!r}, '
                            f'expected DeCoNASSearchModel)')
    return path, opt


# ---------------------------------------------------------------------------- random genotypes
def draw_random_genotypes(found: Genotype, sizes: dict, count: int, tolerance: float = DEFAULT_TOLERANCE,
                          seed: int = 0, max_draws: int = MAX_DRAWS) -> List[Genotype]:
    """``count`` distinct uniform random genotypes (each bit 1 with probability 1/2, fusion bits
    too when ``found`` has them) whose exact params are within ``tolerance`` of ``found``'s; never
    ``found`` itself. The same arguments give the same genotypes (``random.Random(seed)``)."""
    target = genotype_params(found, sizes)
    rng = random.Random(seed)
    fusion = found.has_fusion_bits
    kept: List[Genotype] = []
    for _ in range(max_draws):
        if len(kept) == count:
            break
        g = Genotype.random(found.num_nodes, sizes['num_blocks'], fusion=fusion, rng=rng, num_ops=found.num_ops)
        if g != found and g not in kept and abs(genotype_params(g, sizes) - target) <= tolerance * target:
            kept.append(g)
    if len(kept) < count:
        raise ProtocolError(
            f'only {len(kept)} of {count} random genotypes within {tolerance:.0%} of the found genotype\'s '
            f'{target:,} params after {max_draws:,} uniform draws; ask for fewer (--random) or widen '
            f'--params-tolerance')
    return kept


# ------------------------------------------------------------------------------------- statistics
def mean(values: Sequence[float]) -> Optional[float]:
    return sum(values) / len(values) if values else None


def std(values: Sequence[float]) -> Optional[float]:
    """Sample standard deviation (n - 1); None for fewer than two values."""
    if len(values) < 2:
        return None
    m = mean(values)
    return math.sqrt(sum((v - m)**2 for v in values) / (len(values) - 1))


def summarize(rows: List[dict], supernet_psnr: Dict[str, float], settings: dict, test_set: Optional[str] = None):
    """(genotype rows, summary) from the per-run rows (fields ``ROW_FIELDS``); their PSNR and SSIM are the
    first test set's, or with ``test_set`` that set's (``test`` of each row; rows without it are left out).

    found/random mean and std are over runs (the found genotype's seeds; the K x S random runs);
    ``random_genotype_means_std`` is the spread of the K random genotypes' seed means;
    ``found_minus_random_se`` the standard error of found - random (the found mean's over its seeds,
    the random mean's over the K genotype means, added in quadrature; the pooled seed std stands in
    for the found one's with a single seed); ``seed_std`` the pooled within-genotype std over seeds
    (the noise of one retrain); ``found_rank`` is 1 + the number of random genotypes whose mean PSNR
    is higher than the found one's (extra genotypes are not ranked); ``kendall_tau`` (tau-b) pairs
    each genotype's supernet PSNR with its mean retrained PSNR, ``params_tau`` its parameter count,
    over every genotype (extra ones too). Without a found genotype (a scale check) the found and
    random fields are None.
    """
    if test_set is not None:
        rows = [dict(r, psnr=r['test'][test_set].get('psnr'), ssim=r['test'][test_set].get('ssim'))
                for r in rows if test_set in r['test']]
    genotypes: Dict[str, dict] = {}
    for row in rows:
        g = genotypes.setdefault(row['genotype'], {
            'genotype': row['genotype'], 'bits': row['bits'], 'params': row['params'], 'kind': row['kind'],
            'index': row['index'], 'supernet_psnr': supernet_psnr.get(row['genotype']), 'psnrs': [], 'ssims': []})
        g['psnrs'].append(row['psnr'])
        g['ssims'].append(row['ssim'])
    found = next((g for g in genotypes.values() if g['kind'] == 'found'), None)
    for g in genotypes.values():
        g['params_ratio'] = g['params'] / found['params'] if found else None
        g['psnr_mean'], g['psnr_std'] = mean(g['psnrs']), std(g['psnrs'])
        ssims = [s for s in g.pop('ssims') if s is not None]
        g['ssim_mean'] = mean(ssims)
    kind_order = {'found': 0, 'random': 1, 'extra': 2}
    ordered = sorted(genotypes.values(), key=lambda g: (-g['psnr_mean'], kind_order[g['kind']], g['index']))
    for g in ordered:
        g['rank'] = 1 + sum(o['psnr_mean'] > g['psnr_mean'] for o in ordered)
    random_runs = [r['psnr'] for r in rows if r['kind'] == 'random']
    random_means = [g['psnr_mean'] for g in ordered if g['kind'] == 'random']
    within = [g['psnr_std']**2 for g in ordered if g['psnr_std'] is not None]
    seed_std = math.sqrt(mean(within)) if within else None
    scored = [g for g in ordered if g['supernet_psnr'] is not None]
    diff = se = None
    if found and random_runs:
        diff = found['psnr_mean'] - mean(random_runs)
        found_spread = found['psnr_std'] if found['psnr_std'] is not None else seed_std
        random_spread = std(random_means)
        if found_spread is not None and random_spread is not None:
            se = math.sqrt(found_spread**2 / len(found['psnrs']) + random_spread**2 / len(random_means))
    seconds = [r['train_seconds'] for r in rows if r.get('train_seconds') is not None]
    summary = {
        'found_genotype': found and found['genotype'], 'found_params': found and found['params'],
        'found_mean': found and found['psnr_mean'], 'found_std': found and found['psnr_std'],
        'random_mean': mean(random_runs), 'random_std': std(random_runs),
        'random_genotype_means_std': std(random_means),
        'random_best_mean': max(random_means) if random_means else None,
        'found_minus_random': diff, 'found_minus_random_se': se, 'seed_std': seed_std,
        'found_rank': found and 1 + sum(m > found['psnr_mean'] for m in random_means),
        'num_ranked': (1 + len(random_means)) if found else None, 'num_genotypes': len(ordered),
        'random_better_than_found': found and sum(m > found['psnr_mean'] for m in random_means),
        'kendall_tau': kendall_tau([g['supernet_psnr'] for g in scored], [g['psnr_mean'] for g in scored])
        if len(scored) > 1 else None,
        'params_tau': kendall_tau([g['params'] for g in ordered], [g['psnr_mean'] for g in ordered]),
        'train_hours': sum(seconds) / 3600 if len(seconds) == len(rows) else None,
        'settings': settings,
    }
    return [{k: g[k] for k in GENOTYPE_FIELDS} for g in ordered], summary


# ------------------------------------------------------------------------------------- options
def scale_schedule(train: dict, iterations: int):
    """Set ``total_iter`` to ``iterations`` and scale the scheduler's milestones (MultiStepLR) or
    periods (CosineAnnealingRestartLR, last one adjusted so they sum to ``iterations``) with it."""
    old = int(train.get('total_iter') or iterations)
    train['total_iter'] = iterations
    scheduler = train.get('scheduler') or {}
    if old <= 0 or old == iterations:
        return
    if 'milestones' in scheduler:
        scheduler['milestones'] = [max(1, round(m * iterations / old)) for m in scheduler['milestones']]
    if 'periods' in scheduler and scheduler['periods']:
        periods = [max(1, round(p * iterations / old)) for p in scheduler['periods']]
        periods[-1] = max(1, iterations - sum(periods[:-1]))
        scheduler['periods'] = periods


def check_template(template: dict, path: str):
    train_set = (template.get('datasets') or {}).get('train')
    if not isinstance(train_set, dict) or not train_set:
        raise ProtocolError(f'retrain template {path} has no datasets.train; pass --data-from-search to train on '
                            f"the search's datasets")
    if not isinstance(template.get('train'), dict) or not template['train'].get('total_iter'):
        raise ProtocolError(f'retrain template {path} has no train.total_iter (not a training option file?)')


def retrain_options(genotype: Genotype, search_opt: dict, template: dict, name: str, manual_seed: int,
                    iterations: Optional[int] = None, num_gpu=None, data_from_search: bool = False,
                    overrides: Sequence[str] = ()) -> dict:
    """The template with ``genotype`` (sizes of the search), from scratch, as experiment ``name``."""
    try:
        opt = derive_lib.retrain_options(genotype, search_opt, template, data_from_search, None, overrides)
    except derive_lib.DeriveError as e:
        raise ProtocolError(str(e)) from None
    opt['name'] = name
    opt['manual_seed'] = manual_seed
    opt['path']['resume_state'] = None
    if iterations is not None:
        scale_schedule(opt['train'], iterations)
    if num_gpu is not None:
        opt['num_gpu'] = num_gpu
    return opt


def test_sets_of(template: dict, test_opt: Optional[dict] = None, folders: Sequence[str] = (),
                 scale: int = 2) -> List[dict]:
    """The held-out test datasets: ``folders`` (GTmod<s>/LRbicx<s>, as tools/prepare_benchmark.py
    writes them), else every dataset of ``test_opt``, else the val datasets of the template."""
    if folders:
        return prepared_test_sets(folders, scale)
    if test_opt is not None:
        sets = [dict(plain(d)) for d in (test_opt.get('datasets') or {}).values() if isinstance(d, dict)]
        if not sets:
            raise ProtocolError('the --test-opt file has no datasets')
    else:
        sets = [dict(plain(d)) for k, d in (template.get('datasets') or {}).items()
                if k.startswith('val') and isinstance(d, dict)]
        if not sets:
            raise ProtocolError('the retrain template has no val dataset to test on; pass --test-opt or --test-sets')
    for i, d in enumerate(sets, 1):
        d.setdefault('name', f'test_{i}')
        for key in ('dataroot_gt', 'dataroot_lq'):  # tests run from the project root
            if d.get(key) and not osp.isabs(d[key]):
                d[key] = osp.join(ROOT, d[key])
    return sets


def dataset_images(d: dict) -> set:
    """The HR images a dataset option reads, absolute: the names of its ``meta_info_file`` under its
    ``dataroot_gt``, else the files of that folder (an LMDB or a missing folder: the path itself)."""
    root = osp.abspath(osp.join(ROOT, d['dataroot_gt']))
    if d.get('meta_info_file'):
        with open(osp.join(ROOT, d['meta_info_file'])) as f:
            return {osp.join(root, line.split()[0]) for line in f if line.strip()}
    if osp.isdir(root) and not root.endswith('.lmdb'):
        return {osp.join(root, name) for name in os.listdir(root)}
    return {root}


def search_data_images(search_opt: dict) -> set:
    """HR images the search scored genotypes on (datasets.val, search.reward_dataset), absolute."""
    datasets = [d for k, d in (search_opt.get('datasets') or {}).items() if k.startswith('val')]
    datasets.append((search_opt.get('search') or {}).get('reward_dataset') or {})
    return set().union(*(dataset_images(d) for d in datasets if isinstance(d, dict) and d.get('dataroot_gt')))


def budget_of(opt: dict) -> dict:
    """What one retrain gets: iterations, batch, patch, learning rate and schedule."""
    train_set = (opt.get('datasets') or {}).get('train') or {}
    gt_size = train_set.get('gt_size')
    return {'total_iter': opt['train']['total_iter'], 'batch_size_per_gpu': train_set.get('batch_size_per_gpu'),
            'gt_size': gt_size, 'lr_patch': gt_size // opt['scale'] if gt_size else None,
            'lr': (opt['train'].get('optim_g') or {}).get('lr'), 'scheduler': plain(opt['train'].get('scheduler')),
            'train_set': train_set.get('name'), 'autocast': opt['train'].get('autocast')}


# ------------------------------------------------------------------------------------- runs
def measurement(train: dict, test: dict) -> dict:
    """What makes two runs the same measurement: the training options but the run's name, the test
    data and metrics (paths relative to the project root), and the weights tested when they are not
    the plain ``params`` (an EMA), as plain JSON values."""
    train = training_measurement(train)
    sets = [{k: shown(v) if k.startswith('dataroot') else v for k, v in plain(d).items()}
            for d in test['datasets'].values()]
    wanted = {'train': train, 'test_sets': sets, 'metrics': plain(test['val']['metrics'])}
    weights = (test.get('path') or {}).get('param_key_g', 'params')
    if weights != 'params':
        wanted['weights'] = weights
    return json.loads(json.dumps(wanted))


def training_measurement(train: dict) -> dict:
    """The training part of a measurement: the options but the run's name, as plain JSON values."""
    train = plain(copy.deepcopy(train))
    train.pop('name', None)
    return json.loads(json.dumps(train))


def write_record(out: str, name: str, record: dict) -> None:
    """``<out>/runs/<name>.json`` := ``record``; a record of another measurement there (say the run name meant
    another genotype under an earlier protocol) is kept as ``<name>_archived_<time>.json``, as trainings are."""
    path = osp.join(out, RUNS_DIR, f'{name}.json')
    if osp.isfile(path):
        with open(path) as f:
            old = json.load(f)
        if old.get('measurement') != record.get('measurement'):
            os.replace(path, osp.join(out, RUNS_DIR, f"{name}_archived_{time.strftime('%Y%m%d_%H%M%S')}.json"))
    atomic_write_text(path, json.dumps(record, indent=2) + '\n')


def recorded_runs(name: str, out: str, reuse: Sequence[str] = ()):
    """``(path, record)`` of ``<out>/runs/<name>.json`` (when there is one), then of every record in
    ``<reuse>/runs/``."""
    own = osp.join(out, RUNS_DIR, f'{name}.json')
    candidates = [own] + [osp.join(d, RUNS_DIR, f) for d in reuse if osp.isdir(osp.join(d, RUNS_DIR))
                          for f in sorted(os.listdir(osp.join(d, RUNS_DIR))) if f.endswith('.json')]
    for path in candidates:
        if osp.isfile(path):
            with open(path) as f:
                yield path, json.load(f)


def find_record(name: str, wanted: dict, out: str, reuse: Sequence[str] = ()) -> Optional[dict]:
    """The record of this measurement: ``<out>/runs/<name>.json``, else any record of the same
    measurement in ``<reuse>/runs/`` (copied into ``<out>/runs/<name>.json``, see ``write_record``); None
    when there is none."""
    own = osp.join(out, RUNS_DIR, f'{name}.json')
    for path, record in recorded_runs(name, out, reuse):
        if record.get('measurement') == wanted:
            if path != own:
                record = dict(record, experiment=name, reused_from=shown(path))
                write_record(out, name, record)
            return record
    return None


def recorded_training(name: str, wanted: dict, out: str, reuse: Sequence[str] = ()) -> Optional[tuple]:
    """``(record path, checkpoint, train seconds)`` of a recorded run with the same training as ``wanted`` but
    another test (another test set, say), whose final checkpoint is still in ``experiments/``: a new test of it needs no
    retrain. The checkpoint is that of the experiment that trained it (a reused record names its source in
    ``reused_from``), taken only while that experiment's option file is still this training's (not a later run
    of other options under its name); None when there is none."""
    for path, record in recorded_runs(name, out, reuse):
        if (record.get('measurement') or {}).get('train') != wanted['train']:
            continue
        source = record
        while source.get('reused_from') and osp.isfile(osp.join(ROOT, source['reused_from'])):
            with open(osp.join(ROOT, source['reused_from'])) as f:
                source = json.load(f)
        exp = osp.join(ROOT, 'experiments', source['experiment'])
        checkpoint, stored = osp.join(exp, 'models', 'net_g_latest.pth'), osp.join(exp, f"{source['experiment']}.yml")
        if osp.isfile(checkpoint) and osp.isfile(stored) \
                and training_measurement(read_options(stored)) == wanted['train']:
            return shown(path), checkpoint, record.get('train_seconds')
    return None


def run_all(runner: Runner, work: Callable[[int, tuple], dict], items: Sequence[tuple], jobs: int) -> List[dict]:
    """``[work(1, items[0]), work(2, items[1]), ...]``, ``jobs`` at a time (threads whose runs go through
    ``runner``). The first failure stops the running ones (``Runner.stop_all``), starts no other, and is raised."""
    if jobs == 1:
        return [work(n, item) for n, item in enumerate(items, 1)]
    pool = concurrent.futures.ThreadPoolExecutor(jobs)
    futures = [pool.submit(work, n, item) for n, item in enumerate(items, 1)]
    try:
        concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_EXCEPTION)
        failed = [f for f in futures if f.done() and not f.cancelled() and f.exception() is not None]
        if failed:
            raise failed[0].exception()
        return [f.result() for f in futures]
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        runner.stop_all()
        raise
    finally:
        pool.shutdown(wait=True)


# ------------------------------------------------------------------------------------- outputs
def fmt(value, digits=3, signed=False):
    if value is None:
        return 'n/a'
    return f'{value:+.{digits}f}' if signed else f'{value:.{digits}f}'


def markdown(result: dict) -> str:
    s, settings = result['summary'], result['summary']['settings']
    seeds = f"manual_seed {settings['manual_seeds'][0]} + seed index"
    budget = (f"{settings['budget']['total_iter']:,} iterations each, tested on "
              f"{', '.join(t['name'] for t in settings['test_sets'])} (PSNR-Y / SSIM-Y, border {settings['scale']})")
    extras = settings['extra_genotypes']
    if settings['search_experiment'] is None:
        lines = ['# Retrained genotypes', '',
                 f"{len(extras)} genotype(s), {settings['extra_seeds']} seed(s) each ({seeds}), {budget}; "
                 f"template `{shown(settings['template'])}`, code {settings['commit']}.", '']
    else:
        lines = [
            '# Search vs random', '',
            f"Search `{shown(settings['search_experiment'])}`: the found genotype ({settings['found_seeds']} seed(s)) "
            f"and {settings['random']} random genotypes within {settings['params_tolerance']:.0%} of its params "
            f"({settings['seeds']} seed(s) each)" + (f", and {len(extras)} extra genotype(s) ({settings['extra_seeds']} "
                                                     f"seed(s) each)" if extras else '') +
            f" ({seeds}), {budget}; supernet PSNR-Y: shared weights of iteration {settings['supernet']['iteration']} "
            f"on the {settings['supernet']['scored_on']} data; code {settings['commit']}.", '']
    if settings['test_seen_by_search']:
        lines += [f"**Not held out: the test set {', '.join(settings['test_seen_by_search'])} is the search's "
                  'validation or reward data** (its datasets.val or search.reward_dataset); pass --test-sets or '
                  '--test-opt for a held-out test.', '']
    lines += genotype_table(result['genotypes']) + ['']
    if s['found_mean'] is not None:
        lines += [
            f"- found: {fmt(s['found_mean'])} ± {fmt(s['found_std'])} dB; random: {fmt(s['random_mean'])} ± "
            f"{fmt(s['random_std'])} dB over {settings['random'] * settings['seeds']} runs (spread of the random "
            f"genotypes' means {fmt(s['random_genotype_means_std'])} dB, best {fmt(s['random_best_mean'])} dB); "
            f"found - random {fmt(s['found_minus_random'], signed=True)} ± {fmt(s['found_minus_random_se'])} dB "
            f"(standard error).",
            f"- the found network ranks {s['found_rank']} of {s['num_ranked']} (found and random); "
            f"{s['random_better_than_found']} random genotype(s) have a higher mean."]
    lines.append(f"- seed noise (pooled std of one genotype over seeds): {fmt(s['seed_std'])} dB.")
    if s['kendall_tau'] is not None or settings['search_experiment'] is not None:
        lines.append(f"- Kendall tau-b of the mean retrained PSNR-Y with the supernet PSNR-Y: {fmt(s['kendall_tau'])}; "
                     f"with the parameter count alone: {fmt(s['params_tau'])} (over the {s['num_genotypes']} "
                     'genotypes).')
    else:
        lines.append(f"- Kendall tau-b of the mean retrained PSNR-Y with the parameter count: {fmt(s['params_tau'])} "
                     f"(over the {s['num_genotypes']} genotypes).")
    if s['train_hours'] is not None:
        lines.append(f"- training time of the runs: {s['train_hours']:.2f} core-hours (one thread each).")
    by_set = result.get('by_test_set')
    if by_set and s['found_mean'] is None:  # no found genotype to compare: each genotype's mean on each set
        lines += ['', 'Mean PSNR-Y per test set (dB; the lines above are of the first):', '']
        lines += md_table(['genotype', 'params'] + list(by_set), 'lr' + 'r' * len(by_set),
                          [[f"`{g['genotype']}`", f"{g['params']:,}"]
                           + [fmt(b.get('psnr_means', {}).get(g['genotype'])) for b in by_set.values()]
                           for g in result['genotypes']]) + ['']
    elif by_set:
        lines += ['', 'Per test set (PSNR-Y, dB; the lines above are of the first):', '']
        lines += md_table(
            ['test set', 'found', 'random', 'best random', 'found - random', 'rank', 'seed noise', 'tau supernet',
             'tau params'], 'lrrrrrrrr',
            [[name, fmt(b['found_mean']), fmt(b['random_mean']), fmt(b['random_best_mean']),
              f"{fmt(b['found_minus_random'], signed=True)} ± {fmt(b['found_minus_random_se'])}",
              f"{b['found_rank']} of {b['num_ranked']}" if b['found_rank'] else '-', fmt(b['seed_std']),
              fmt(b['kendall_tau']), fmt(b['params_tau'])] for name, b in by_set.items()]) + ['']
    if settings['search_experiment'] is not None:
        lines += [
            '', 'How to read it: the found network beats chance only if its mean is above the random ones by more '
            'than twice the standard error (and ranks first); a supernet tau no higher than the parameter count\'s '
            'means the shared weights order the genotypes no better than their size does.']
    return '\n'.join(lines + [''])


def genotype_table(genotypes: List[dict]) -> List[str]:
    """The Markdown table of ``summarize``'s genotype rows, best first."""
    return md_table(
        ['rank', 'kind', 'genotype', 'params', 'supernet PSNR-Y', 'test PSNR-Y per seed', 'mean ± std', 'SSIM-Y'],
        'rllrrlrr',
        [[g['rank'], '**found**' if g['kind'] == 'found' else f"{g['kind']} {g['index']}", f"`{g['genotype']}`",
          f"{g['params']:,}", fmt(g['supernet_psnr']), ', '.join(fmt(p) for p in g['psnrs']),
          f"{fmt(g['psnr_mean'])} ± {fmt(g['psnr_std'])}", fmt(g['ssim_mean'], 4)] for g in genotypes])


def plot(result: dict, path: str):
    """Test PSNR-Y per genotype (seeds as points, mean as a bar) against params and against the
    supernet's PSNR-Y; the found genotype in red."""
    from ..reporting.figures import new_figure_of_size, save_figure
    fig = new_figure_of_size((10.0, 4.0))
    axes = fig.subplots(1, 2)
    for ax, key, label in ((axes[0], 'params', 'params'), (axes[1], 'supernet_psnr', 'supernet PSNR-Y (dB)')):
        for g in result['genotypes']:
            x = g[key]
            if x is None:
                continue
            found = g['kind'] == 'found'
            colour = {'found': 'tab:red', 'random': 'tab:blue', 'extra': 'tab:gray'}[g['kind']]
            ax.scatter([x] * len(g['psnrs']), g['psnrs'], s=14, color=colour, alpha=0.5, zorder=2)
            ax.scatter([x], [g['psnr_mean']], s=120 if found else 220, marker='*' if found else '_', color=colour,
                       linewidths=2, zorder=3, label='found (mean)' if found else None)
        ax.set_xlabel(label)
        ax.tick_params(axis='x', labelsize=8)
        ax.set_ylabel('test PSNR-Y (dB)')
        ax.grid(alpha=0.3)
    axes[0].scatter([], [], s=220, marker='_', linewidths=2, color='tab:blue', label='random (mean)')
    if any(g['kind'] == 'extra' for g in result['genotypes']):
        axes[0].scatter([], [], s=220, marker='_', linewidths=2, color='tab:gray', label='extra (mean)')
    axes[0].scatter([], [], s=14, color='tab:blue', alpha=0.5, label='seeds')
    axes[0].legend(loc='best', fontsize=8)
    s = result['summary']
    axes[1].set_title(f"Kendall tau-b {fmt(s['kendall_tau'], 2)} (params alone {fmt(s['params_tau'], 2)})", fontsize=9)
    if s['found_rank'] is not None:
        axes[0].set_title(f"found ranks {s['found_rank']} of {s['num_ranked']}", fontsize=9)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.14, top=0.9, wspace=0.25)
    save_figure(fig, path)


# ------------------------------------------------------------------------------------- protocol
def supernet_scores(out: str, entries: list, search_opt: dict, experiment: str, iteration: str, scored_on: str,
                    torch_device: str, threads: Optional[int], quiet: bool) -> Dict[str, float]:
    """Supernet PSNR-Y of every genotype of ``entries``: from ``<out>/supernet_scores.json`` when it holds
    them for this search, checkpoint and data, else scored (``derive.score``) and added to it."""
    import torch
    path = osp.join(out, SCORES_FILE)
    key = {'search': search_opt['name'], 'iteration': iteration, 'scored_on': scored_on}
    try:  # the supernet's weights: scores of a search trained further are not reused
        with open(derive_lib.checkpoint_path(osp.join(experiment, 'models'), 'net_g', iteration), 'rb') as f:
            key['checkpoint_sha256'] = hashlib.sha256(f.read()).hexdigest()
    except derive_lib.DeriveError:  # no checkpoint here (e.g. records kept without it): the stored scores
        key['checkpoint_sha256'] = None
    cached = {}
    if osp.isfile(path):
        with open(path) as f:
            stored = json.load(f)
        old = dict(stored.get('key') or {})
        if key['checkpoint_sha256'] is None:
            old['checkpoint_sha256'] = None
        if old == key:
            cached = stored['scores']
            key = stored['key']
    missing = [g for _, _, g, _ in entries if g.to_string() not in cached]
    if missing:
        old_threads = torch.get_num_threads()
        try:
            if threads:
                torch.set_num_threads(threads)
            supernet, _ = derive_lib.load_search(search_opt, experiment, iteration, torch_device)
            batches = derive_lib.validation_batches(search_opt, scored_on, torch_device)
            crop = (search_opt.get('search') or {}).get('reward_crop_border')
            crop = supernet.upscale if crop is None else crop
            scores = derive_lib.score(supernet, missing, batches, crop, derive_lib.search_alpha(search_opt),
                                      progress=not quiet)
        except derive_lib.DeriveError as e:
            raise ProtocolError(str(e)) from None
        finally:
            torch.set_num_threads(old_threads)
        cached.update({r['genotype']: r['psnr'] for r in scores})
        atomic_write_text(path, json.dumps({'key': key, 'crop_border': crop, 'scores': cached}, indent=2) + '\n')
    return cached


def run(search_exp: Optional[str], out: str, random_count: int = 5, seeds: int = 2, train_opt: Optional[str] = None,
        test_opt: Optional[str] = None, test_sets: Sequence[str] = (), iterations: Optional[int] = None,
        opt_path: Optional[str] = None, iteration: str = 'latest', scored_on: Optional[str] = None,
        params_tolerance: float = DEFAULT_TOLERANCE, draw_seed: int = 0, prefix: Optional[str] = None,
        data_from_search: bool = False, overrides: Sequence[str] = (), device: str = 'auto',
        threads: Optional[int] = None, quiet: bool = False, jobs: int = 1, found_seeds: Optional[int] = None,
        extra_genotypes: Sequence[str] = (), extra_seeds: Optional[int] = None, reuse: Sequence[str] = (),
        recorded_only: bool = False, only: Optional[Sequence[str]] = None, runner: Optional[Runner] = None) -> dict:
    """The whole protocol (see the module doc); returns what it writes to search_vs_random.json. ``jobs``
    retrains (each with its test) run at once. Without ``search_exp``, only ``extra_genotypes`` are
    retrained (``train_opt`` gives their network sizes). ``only``: the runs (``<label>_seed<s>``, e.g.
    ``found_seed0``) retrained and tested if not recorded; the others are summarized only when recorded (as
    with ``recorded_only``). ``runner``: what runs the entry points (default: a child process each,
    ``Runner(out, threads, quiet)``)."""
    import torch
    found_seeds = seeds if found_seeds is None else found_seeds
    extra_seeds = seeds if extra_seeds is None else extra_seeds
    if min(random_count, seeds, found_seeds, extra_seeds) < 1:
        raise ProtocolError(f'--random, --seeds, --found-seeds and --extra-seeds must be at least 1, got '
                            f'{random_count}, {seeds}, {found_seeds} and {extra_seeds}')
    if jobs < 1:
        raise ProtocolError(f'--jobs must be at least 1, got {jobs}')
    if iterations is not None and iterations < 1:
        raise ProtocolError(f'--iterations must be at least 1, got {iterations}')
    if not 0 < params_tolerance < 1:
        raise ProtocolError(f'--params-tolerance must be in (0, 1), got {params_tolerance}')
    for folder in reuse:
        if not osp.isdir(osp.join(folder, RUNS_DIR)):
            raise ProtocolError(f'--reuse {folder}: no {RUNS_DIR}/ folder of run records there')
    out = osp.abspath(out)
    if search_exp is None:
        if not train_opt or not extra_genotypes:
            raise ProtocolError('without --search-exp, pass --train-opt and --genotypes (the genotypes to retrain)')
        experiment = search_opt_path = chosen = None
    else:
        experiment = find_experiment(search_exp)
        search_opt_path, search_opt = find_search_options(experiment, opt_path)
        chosen = derive_lib.read_chosen(osp.join(experiment, 'derive'), network_sizes(search_opt), ProtocolError)
    template_path = osp.abspath(train_opt or osp.join(experiment, 'derive', 'train_DeCoNASNet.yml'))
    if not osp.isfile(template_path):
        raise ProtocolError(f'retrain template not found: {template_path}' + (
            '' if train_opt else ' (tools/derive.py writes it); pass --train-opt'))
    template = read_options(template_path)
    if experiment is None:  # the template gives the network sizes a search would
        search_opt = {'name': template.get('name', 'retrain'), 'scale': template['scale'],
                      'network_g': dict(template.get('network_g') or {}), 'datasets': template.get('datasets')}
    sizes = network_sizes(search_opt)
    if data_from_search:
        template['datasets'] = copy.deepcopy(search_opt['datasets'])
    check_template(template, template_path)
    sets = test_sets_of(template, read_options(test_opt) if test_opt else None, test_sets, search_opt['scale'])
    num_gpu = {'auto': None, 'cpu': 0, 'cuda': 1}[device]
    torch_device = 'cuda' if (device == 'cuda' or (device == 'auto' and torch.cuda.is_available())) else 'cpu'
    seen = search_data_images(search_opt) if experiment else set()
    test_seen_by_search = [d['name'] for d in sets if d.get('dataroot_gt') and dataset_images(d) & seen]
    prefix = prefix or f"svr_{search_opt['name']}"
    base_seed = int(template.get('manual_seed') or 0)
    runner = runner or Runner(out, threads, quiet, concurrent=jobs > 1)
    say = runner.say

    extras = []
    for text in extra_genotypes:
        try:
            extras.append(Genotype.parse(text, num_nodes=sizes['num_nodes'], num_blocks=sizes['num_blocks']))
        except GenotypeError as e:
            raise ProtocolError(f'--genotypes {text!r}: {e}') from None
    entries = []  # (kind, index, genotype, seeds)
    if chosen is not None:
        found = chosen['parsed']
        randoms = draw_random_genotypes(found, sizes, random_count, params_tolerance, draw_seed)
        entries = [('found', 0, found, found_seeds)] + [('random', i, g, seeds) for i, g in enumerate(randoms, 1)]
    taken = {g.to_string() for _, _, g, _ in entries}
    for i, g in enumerate(extras, 1):
        if g.to_string() in taken:
            say(f'note: extra genotype {i} ({g}) is already the found or a random genotype: retrained once, there')
            continue
        taken.add(g.to_string())
        entries.append(('extra', i, g, extra_seeds))
    if test_seen_by_search:
        say(f"note: not held out: the test set(s) {', '.join(test_seen_by_search)} are the search's validation or "
            'reward data (its datasets.val or search.reward_dataset); pass --test-sets or --test-opt')
    if chosen is not None:
        say(f'search vs random: {experiment}, found {found} ({genotype_params(found, sizes):,} params, '
            f'{found_seeds} seed(s)) and {random_count} random genotype(s) within {params_tolerance:.0%}, {seeds} '
            f'seed(s) each' + (f', {len(extras)} extra genotype(s), {extra_seeds} seed(s) each' if extras else ''))
    else:
        say(f'retrain and test {len(entries)} genotype(s), {extra_seeds} seed(s) each, from {template_path}')

    # Supernet scores first: cheap, and a broken search experiment fails before hours of retraining.
    supernet_psnr: Dict[str, float] = {}
    scored_on = iteration_shown = None
    if experiment is not None:
        scored_on = scored_on_arg = scored_on or chosen.get('scored_on') or 'reward'
        supernet_psnr = supernet_scores(out, entries, search_opt, experiment, iteration, scored_on_arg,
                                        torch_device, threads, quiet)
        iteration_shown = iteration
        say(f"supernet PSNR-Y ({scored_on} data, iteration {iteration}): " + ', '.join(
            f'{label_of(kind, i)} {supernet_psnr[g.to_string()]:.3f}' for kind, i, g, _ in entries))

    # Every option file is built (and the first checked) before anything runs.
    from ..options import OptionError, check_options
    planned = []
    for kind, index, genotype, n_seeds in entries:
        label = label_of(kind, index)
        for s in range(n_seeds):
            manual_seed = base_seed + s
            name = f'{prefix}_{label}_seed{s}'
            train = retrain_options(genotype, search_opt, template, name, manual_seed, iterations, num_gpu,
                                    False, overrides)
            checkpoint = osp.join(ROOT, 'experiments', name, 'models', 'net_g_latest.pth')
            test = test_options(train, checkpoint, sets, f'{name}_test')
            planned.append((kind, index, genotype, s, manual_seed, label, train, test))
    unknown = sorted(set(only or ()) - {f'{job[5]}_seed{job[3]}' for job in planned})
    if unknown:
        raise ProtocolError(f'no run {", ".join(unknown)} in this protocol; its runs are '
                            + ', '.join(f'{job[5]}_seed{job[3]}' for job in planned))
    cwd = os.getcwd()
    try:
        os.chdir(ROOT)  # relative dataset paths are relative to the project root, where the runs start
        check_options(copy.deepcopy(planned[0][6]))
        check_options(dict(copy.deepcopy(planned[0][7]), path={}))
    except OptionError as e:
        raise ProtocolError(f'retrain/test options from {template_path}: {e}') from None
    finally:
        os.chdir(cwd)

    commit = source_commit(ROOT)

    def retrain_and_test(n: int, job: tuple) -> dict:
        kind, index, genotype, s, manual_seed, label, train, test = job
        params = genotype_params(genotype, sizes)
        head = f'[{n}/{len(planned)}] {label} seed {s}'
        wanted = measurement(train, test)
        record = find_record(train['name'], wanted, out, reuse)
        if record is None and (recorded_only or (only is not None and f'{label}_seed{s}' not in only)):
            say(f'{head}: not recorded yet')
            return None
        if record is None:
            say(f'{head} (manual_seed {manual_seed}) {genotype} ({params:,} params)' + (': started' if jobs > 1
                                                                                         else ''))
            t = time.time()
            earlier = recorded_training(train['name'], wanted, out, reuse)
            if earlier:  # trained and recorded before, tested on other data: test its checkpoint
                test = dict(test, path=dict(test['path'], pretrain_network_g=earlier[1]))
                trained = f'skipped (trained as in {earlier[0]})'
            else:
                trained = runner.train(train, f'# Written by tools/search_vs_random.py: {label}, seed {s}, from '
                                              f'{template_path}\n')
            t_train = time.time() - t
            t = time.time()
            tested, metrics = runner.test(test, f'# Written by tools/search_vs_random.py: test of {train["name"]}\n')
            t_test = time.time() - t
            record = {'experiment': train['name'], 'genotype': genotype.to_string(), 'manual_seed': manual_seed,
                      'measurement': wanted, 'test': {d['name']: metrics[d['name']] for d in sets},
                      'train_seconds': earlier[2] if earlier else round(t_train, 1) if trained == 'ran' else None,
                      **({'trained_as_in': earlier[0]} if earlier else {}),
                      'test_seconds': round(t_test, 1), 'finished': time.strftime('%Y-%m-%d %H:%M:%S'),
                      'commit': commit}
            write_record(out, train['name'], record)
            what = f'retrain {trained} ({t_train:.1f} s), test {tested} ({t_test:.1f} s)'
        else:
            what = 'recorded in ' + shown(record.get('reused_from') or osp.join(out, RUNS_DIR, train['name'] + '.json'))
        primary = record['test'][sets[0]['name']]
        say(f"{head} {what}: PSNR-Y {primary.get('psnr', float('nan')):.4f} dB, SSIM-Y "
            f"{primary.get('ssim', float('nan')):.4f}")
        return {'genotype': genotype.to_string(), 'bits': genotype.to_string('bits'), 'params': params,
                'kind': kind, 'index': index, 'seed': s, 'manual_seed': manual_seed,
                'experiment': train['name'], 'psnr': primary.get('psnr'), 'ssim': primary.get('ssim'),
                'supernet_psnr': supernet_psnr.get(genotype.to_string()), 'test': record['test'],
                'train_seconds': record.get('train_seconds'),
                'record': shown(osp.join(out, RUNS_DIR, train['name'] + '.json'))}

    rows = run_all(runner, retrain_and_test, planned, jobs)
    missing = [f'{job[5]} seed {job[3]}' for job, row in zip(planned, rows) if row is None]
    rows = [row for row in rows if row is not None]
    if not rows:
        raise ProtocolError(f'--recorded-only: none of the {len(planned)} runs is recorded in {out} or --reuse')
    settings = {
        'search_experiment': experiment, 'search_options': search_opt_path and osp.abspath(search_opt_path),
        'template': template_path, 'data_from_search': data_from_search, 'overrides': list(overrides),
        'iterations': planned[0][6]['train']['total_iter'], 'seeds': seeds, 'found_seeds': found_seeds,
        'extra_seeds': extra_seeds, 'manual_seeds': [base_seed + s for s in range(max(seeds, found_seeds))],
        'random': random_count if chosen is not None else 0, 'params_tolerance': params_tolerance,
        'draw_seed': draw_seed, 'extra_genotypes': [g.to_string() for g in extras],
        'budget': budget_of(planned[0][6]), 'scale': search_opt['scale'], 'network': sizes,
        'test_sets': [{'name': d['name'], 'dataroot_gt': d.get('dataroot_gt'), 'dataroot_lq': d.get('dataroot_lq'),
                       'meta_info_file': d.get('meta_info_file')} for d in sets],
        'test_set': sets[0]['name'], 'test_seen_by_search': test_seen_by_search,
        'supernet': None if experiment is None else {
            'iteration': iteration_shown, 'scored_on': scored_on, 'chosen_psnr': chosen.get('psnr')},
        'prefix': prefix, 'device': torch_device, 'commit': commit, 'reuse': [shown(osp.abspath(d)) for d in reuse],
    }
    genotypes, summary = summarize(rows, supernet_psnr, settings)
    result = {'rows': rows, 'genotypes': genotypes, 'summary': summary, 'missing': missing}
    if len(sets) > 1:
        per_set = {d['name']: summarize(rows, supernet_psnr, settings, d['name']) for d in sets}
        result['by_test_set'] = {name: dict({k: summ[k] for k in BY_SET_FIELDS},
                                            psnr_means={g['genotype']: g['psnr_mean'] for g in gens})
                                 for name, (gens, summ) in per_set.items()}
    # a summary of part of the runs gets a name of its own: it never passes for the protocol's result
    name = f'{RESULT_FILE}_so_far' if missing else RESULT_FILE
    os.makedirs(out, exist_ok=True)
    atomic_write_text(osp.join(out, f'{name}.json'), json.dumps(result, indent=2) + '\n')
    text = markdown(result)
    if missing:
        text = (f'**So far**: {len(rows)} of {len(planned)} runs recorded; not yet: {", ".join(missing)}.\n\n'
                + text)
    atomic_write_text(osp.join(out, f'{name}.md'), text)
    plot(result, osp.join(out, f'{name}.png'))
    say('\n' + text)
    say(f'written: {out}/{name}.json, .md, .png')
    if not missing:  # the whole protocol is recorded: a partial summary beside it would only be stale
        for ext in ('json', 'md', 'png'):
            stale = osp.join(out, f'{RESULT_FILE}_so_far.{ext}')
            if osp.isfile(stale):
                os.remove(stale)
                say(f'removed: {shown(stale)} (superseded)')
    return result


def label_of(kind: str, index: int) -> str:
    """The run label of a genotype: found, random<k> or extra<k>."""
    return 'found' if kind == 'found' else f'{kind}{index}'
