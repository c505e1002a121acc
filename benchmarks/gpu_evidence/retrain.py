"""Stage ``retrain``: search vs random (``deconas_plugin.pipelines.search_vs_random``, the protocol of
``tools/search_vs_random.py``) on the search stage's experiment, one part per run. The genotype the search
stage derived and ``RANDOM_COUNT`` random genotypes of its parameter count (within 10%), each retrained from
scratch on the retrain option file ``tools/derive.py`` wrote (the search's data; ``OVERRIDES``: Adam 1e-3
halved at 1/2 and 3/4 of the iterations, the schedule a short budget needs) and tested (``deconas_plugin/test.py``:
PSNR-Y and SSIM-Y, border = scale, on Set5, Set14 and B100 as prepared), with each entry point run in the
part's process. One part per (genotype, seed): seed 0 of every genotype first, seed 1 where the stage's time
allows. The protocol's folder is ``<out>/search_vs_random/`` (its run records, supernet scores and
``search_vs_random[_so_far].{json,md,png}``); a run recorded there is not retrained. The answer: per test set,
found minus the random genotypes' mean (with its standard error), and whether that exceeds the seed noise (the
pooled std over seeds of the genotypes retrained twice), nothing more.
"""
import os.path as osp
from typing import List

from deconas_plugin.pipelines import search_vs_random as svr
from deconas_plugin.utils.markdown_table import md_table
from .entry import run_entry
from .prepare import paths
from .runner import ROOT, EvidenceError
from .search import experiment_dir, options_path

RANDOM_COUNT, SEEDS = 2, 2  # the protocol the plan's parts run: found, random1, random2 x seeds 0, 1
# on the template tools/derive.py writes (options/train/train_DeCoNASNet_x2.yml: 1,000,000 iterations, Adam 1e-4),
# before the protocol scales the schedule to the run's iterations; no TensorBoard (not on the GPU machine)
OVERRIDES = ('train.optim_g.lr=0.001', 'train.scheduler.milestones=[500000, 750000]', 'logger.use_tb_logger=false')


def check_inputs(runner, stage):
    paths(runner.data)
    found = ((runner.load('search') or {}).get('summary') or {}).get('found')
    if not found:
        raise EvidenceError(f'the retrain stage needs the genotype of the search stage: no derived genotype in '
                            f'{runner.result_path("search")}; run --stage search first')


class EntryRunner(svr.Runner):
    """Search vs random's runs, each entry point run in this process (``run_entry``: torch and BasicSR are
    imported once per part) instead of a child process."""

    def run_cmd(self, cmd: List[str], log_name: str, what: str):
        run_entry(osp.relpath(cmd[1], ROOT), cmd[2:])


def protocol_dir(ctx: dict) -> str:
    return osp.join(ctx['out'], 'search_vs_random')


def retrain_one(ctx: dict, label: str, seed: int, iterations: int) -> dict:
    """Retrain genotype ``label`` (found, random1...) with seed index ``seed`` for ``iterations`` steps, then
    test it on the prepared test sets: its row of the protocol (``svr.ROW_FIELDS``)."""
    out = protocol_dir(ctx)
    prefix = f'{ctx["prefix"]}_retrain'
    result = svr.run(experiment_dir(ctx), out, random_count=RANDOM_COUNT, seeds=SEEDS, opt_path=options_path(ctx),
                     test_sets=list(paths(ctx['data'])['test'].values()), iterations=iterations,
                     prefix=prefix, overrides=OVERRIDES, device='cuda' if ctx['device'].startswith('cuda') else 'cpu',
                     quiet=True, only=[f'{label}_seed{seed}'], runner=EntryRunner(out, quiet=True))
    return next(r for r in result['rows'] if r['experiment'] == f'{prefix}_{label}_seed{seed}')


# ------------------------------------------------------------------------------------------ the answer
def summarize(parts: dict, ctx: dict) -> dict:
    """Per test set: the protocol's summary (``svr.summarize`` of the runs done) and its genotype rows."""
    rows = [p['result'] for p in parts.values() if p.get('status') == 'done']
    supernet = {r['genotype']: r['supernet_psnr'] for r in rows}
    out = {}
    for set_name in dict.fromkeys(s for r in rows for s in r['test']):  # Set5, Set14, B100
        genotypes, s = svr.summarize(rows, supernet, {}, test_set=set_name)
        diff, noise = s['found_minus_random'], s['seed_std']
        out[set_name] = dict({k: v for k, v in s.items() if k != 'settings'}, genotypes=genotypes,
                             exceeds_seed_noise=None if diff is None or noise is None else abs(diff) > noise)
    return out


def markdown(result: dict) -> List[str]:
    summary = result.get('summary') or {}
    done = [p for p in result['parts'].values() if p.get('status') == 'done']
    if not done:
        return ['No retrain finished.']
    lines = [f'Each genotype retrained from scratch for {done[0]["args"]["iterations"]:,} iterations on the search\'s '
             'training data (L1, Adam 1e-3 halved at 1/2 and 3/4), tested PSNR-Y (dB) and SSIM-Y; the whole '
             'protocol: `search_vs_random/`.', '']
    for set_name, s in summary.items():
        lines += [f'{set_name}:', ''] + svr.genotype_table(s['genotypes']) + ['']
    return lines + md_table(
        ['test set', 'found - random (dB)', 'standard error', 'seed noise (dB)', 'exceeds the seed noise'], 'lrrrl',
        [[set_name, svr.fmt(s['found_minus_random'], signed=True), svr.fmt(s['found_minus_random_se']),
          svr.fmt(s['seed_std']), 'not measured (one seed)' if s['exceeds_seed_noise'] is None
          else 'yes' if s['exceeds_seed_noise'] else 'no'] for set_name, s in summary.items()])
