"""Stage ``retrain``: the genotype the search stage derived against random genotypes of the same parameter
count (within 10%; ``search_vs_random.draw_random_genotypes``), each retrained from scratch with one short
budget (``deconas_plugin/train.py``) and tested (``deconas_plugin/test.py``: PSNR-Y and SSIM-Y, border =
scale, on Set5, Set14 and B100 as prepared), by the runs of search vs random (``search_vs_random.Runner``:
options written, a finished run skipped, an interrupted one resumed, the test log read back) with each entry
point run in the part's process. One part per (genotype, seed): seed 0 of every genotype
first, seed 1 where the stage's time allows. The answer: per test set, found minus the random genotypes'
mean, and whether that exceeds the seed noise (the pooled std over seeds of the genotypes retrained
twice), nothing more.
"""
import os.path as osp
import time
from typing import List, Optional

from deconas_plugin.derive import read_options
from deconas_plugin.pipelines import search_vs_random as svr
from .entry import run_entry
from .prepare import SCALE, paths
from .runner import ROOT, EvidenceError
from .search import options_path

RANDOM_COUNT = 2
DRAW_SEED = 0
BASE_SEED = 10


def check_inputs(runner, stage):
    paths(runner.data)
    found = ((runner.load('search') or {}).get('summary') or {}).get('found')
    if not found:
        raise EvidenceError(f'the retrain stage needs the genotype of the search stage: no derived genotype in '
                            f'{runner.result_path("search")}; run --stage search first')


def retrain_template(ctx: dict, batch: int, lr_patch: int, num_workers: int) -> dict:
    """A DeCoNASNet retrain on the prepared training sub-images: L1, Adam 1e-3 halved at 1/2 and 3/4 of the
    iterations (``scale_schedule`` sets them), no validation (the test runs after)."""
    d = paths(ctx['data'])
    return {
        'name': 'retrain_template', 'model_type': 'DeCoNASSRModel', 'scale': SCALE, 'manual_seed': BASE_SEED,
        'num_gpu': 1 if ctx['device'].startswith('cuda') else 0,
        'datasets': {'train': {'name': 'train_small', 'type': 'PairedImageDataset', 'dataroot_gt': d['train_hr'],
                               'dataroot_lq': d['train_lr'], 'filename_tmpl': '{}', 'io_backend': {'type': 'disk'},
                               'gt_size': lr_patch * SCALE, 'use_hflip': True, 'use_rot': True,
                               'num_worker_per_gpu': num_workers, 'batch_size_per_gpu': batch,
                               'persistent_workers': num_workers > 0, 'dataset_enlarge_ratio': 1,
                               'prefetch_mode': None}},
        'network_g': {},
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': {'ema_decay': 0, 'optim_g': {'type': 'Adam', 'lr': 1e-3, 'weight_decay': 0, 'betas': [0.9, 0.999]},
                  'scheduler': {'type': 'MultiStepLR', 'milestones': [500, 750], 'gamma': 0.5}, 'total_iter': 1000,
                  'warmup_iter': -1, 'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'}},
        'logger': {'print_freq': 100, 'save_checkpoint_freq': 10**9, 'use_tb_logger': False,
                   'wandb': {'project': None, 'resume_id': None}},
        'dist_params': {'backend': 'nccl', 'port': 29500},
    }


class EntryRunner(svr.Runner):
    """Search vs random's runs, each entry point run in this process (``run_entry``: torch and BasicSR are
    imported once per part) instead of a child process."""

    def run_cmd(self, cmd: List[str], log_name: str, what: str):
        run_entry(osp.relpath(cmd[1], ROOT), cmd[2:])


def genotypes(ctx: dict):
    """(search options, {'found': genotype, 'random1': ..., 'random2': ...}) from the search stage's results."""
    from deconas_plugin.genotype import Genotype
    search = ctx['results'].get('search') or {}
    found = (search.get('summary') or {}).get('found')
    opt = ((search.get('parts') or {}).get('search') or {}).get('result', {}).get('options')
    if opt is None and osp.isfile(options_path(ctx)):  # a search stopped at its limit left no result
        opt = read_options(options_path(ctx))
    if not found or not opt:
        raise EvidenceError('no derived genotype or search options in the search stage\'s results: run --stage search')
    sizes = svr.network_sizes(opt)
    g = Genotype.parse(found, num_nodes=sizes['num_nodes'], num_blocks=sizes['num_blocks'])
    randoms = svr.draw_random_genotypes(g, sizes, RANDOM_COUNT, seed=DRAW_SEED)
    return opt, sizes, {'found': g, **{f'random{i}': r for i, r in enumerate(randoms, 1)}}


def retrain_one(ctx: dict, label: str, seed: int, iterations: int, batch: int, lr_patch: int,
                num_workers: int) -> dict:
    """Retrain genotype ``label`` with seed ``seed`` (manual_seed ``BASE_SEED + seed``) for ``iterations``
    steps, then test it on the prepared test sets."""
    from deconas_plugin.utils.sr_data import prepared_test_set
    opt, sizes, chosen = genotypes(ctx)
    genotype = chosen[label]
    name = f'{ctx["prefix"]}_retrain_{label}_seed{seed}'
    train = svr.retrain_options(genotype, opt, retrain_template(ctx, batch, lr_patch, num_workers), name,
                                BASE_SEED + seed, iterations, num_gpu=1 if ctx['device'].startswith('cuda') else 0)
    train['logger']['save_checkpoint_freq'] = iterations
    runner = EntryRunner(ctx['out'], quiet=True)
    t0 = time.perf_counter()
    try:
        runner.train(train, f'# Written by tools/gpu_evidence.py (retrain stage): {label}, seed {seed}\n')
        train_s = time.perf_counter() - t0
        sets = [prepared_test_set(folder, SCALE, name=set_name)
                for set_name, folder in paths(ctx['data'])['test'].items()]
        checkpoint = osp.join(ROOT, 'experiments', name, 'models', 'net_g_latest.pth')
        if not osp.isfile(checkpoint):
            raise EvidenceError(f'the retrain {name} left no {checkpoint}')
        test = svr.test_options(train, checkpoint, sets, f'{name}_test')
        t0 = time.perf_counter()
        _, metrics = runner.test(test, f'# Written by tools/gpu_evidence.py (retrain stage): test of {name}\n')
    except svr.ProtocolError as e:
        raise EvidenceError(str(e)) from None
    return {'label': label, 'seed': seed, 'genotype': str(genotype), 'params': svr.genotype_params(genotype, sizes),
            'iterations': iterations, 'batch': batch, 'lr_patch': lr_patch, 'train_s': train_s,
            'test_s': time.perf_counter() - t0, 'test': metrics}


# ------------------------------------------------------------------------------------------ the answer
def summarize(parts: dict, ctx: dict) -> dict:
    mean, std = svr.mean, svr.std
    rows = [p['result'] for p in parts.values() if p.get('status') == 'done']
    if not rows:
        return {}
    out = {}
    for set_name in sorted({s for r in rows for s in r['test']}):
        by = {}
        for r in rows:
            if set_name in r['test']:
                by.setdefault(r['label'], []).append(r['test'][set_name]['psnr'])
        within = [std(v)**2 for v in by.values() if len(v) >= 2]
        noise = (sum(within) / len(within))**0.5 if within else None
        found = mean(by.get('found', []))
        randoms = [v for k, vs in by.items() if k != 'found' for v in vs]
        diff = found - mean(randoms) if found is not None and randoms else None
        out[set_name] = {
            'found_mean': found, 'random_mean': mean(randoms), 'found_minus_random': diff, 'seed_noise': noise,
            'runs': {k: v for k, v in by.items()},
            'exceeds_seed_noise': None if diff is None or noise is None else abs(diff) > noise}
    return out


def markdown(result: dict) -> List[str]:
    rows = [p['result'] for p in result['parts'].values() if p.get('status') == 'done']
    if not rows:
        return ['No retrain finished.']
    sets = sorted({s for r in rows for s in r['test']})
    r0 = rows[0]
    lines = [f'Each genotype retrained from scratch for {r0["iterations"]:,} iterations (batch {r0["batch"]}, LR patch '
             f'{r0["lr_patch"]}, L1, Adam 1e-3 halved at 1/2 and 3/4), tested PSNR-Y (dB, border {SCALE}).', '',
             '| genotype | seed | params | ' + ' | '.join(sets) + ' | train s |', '|---|---:|---:|'
             + '---:|' * len(sets) + '---:|']
    for r in rows:
        lines.append(f'| {r["label"]} `{r["genotype"]}` | {r["seed"]} | {r["params"]:,} | '
                     + ' | '.join(f'{r["test"][s]["psnr"]:.3f}' if s in r['test'] else '-' for s in sets)
                     + f' | {r["train_s"]:.0f} |')
    lines += ['', '| test set | found - random (dB) | seed noise (dB) | exceeds the seed noise |',
              '|---|---:|---:|---|']
    for s, v in (result.get('summary') or {}).items():
        lines.append(f'| {s} | {_signed(v["found_minus_random"])} | {_plain(v["seed_noise"])} | '
                     f'{_exceeds(v["exceeds_seed_noise"])} |')
    return lines


def _exceeds(v: Optional[bool]) -> str:
    return 'not measured (one seed)' if v is None else 'yes' if v else 'no'


def _signed(v: Optional[float]) -> str:
    return '-' if v is None else f'{v:+.3f}'


def _plain(v: Optional[float]) -> str:
    return '-' if v is None else f'{v:.3f}'
