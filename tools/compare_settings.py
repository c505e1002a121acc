"""Compare DeCoNAS search settings (the paper's Table I and Fig. 4) by sampling each trained controller.

For every search experiment given by its option file (e.g. the paper's four settings
CB0/CB1 x FF0/FF1, ``options/search/search_CB*_FF*.yml``): load the supernet and the controller
(``deconas_plugin.derive.load_search``), sample ``--num-samples`` genotypes (100) from the
controller, score each distinct one with the shared weights on the setting's validation images
(``validation_batches`` + ``score``: PSNR-Y, exact params, reward with the setting's alpha; torch threads
by the project's rule, ``utils.machine.default_threads``, which ``OMP_NUM_THREADS`` overrides), and
summarise per setting: the best PSNR (its genotype and params) and the mean PSNR and params over
the samples (duplicates counted, i.e. the mean of the controller's distribution).

Outputs in ``--out`` (written to temporary names and renamed):
    table.md     the Table I layout: setting | alpha | FF | best PSNR | params (best) | mean PSNR | mean params
    table.json   {"num_samples", "seed", "scored_on", "settings": [{"label", "option_file", "experiment",
                 "alpha", "feature_fusion_search", "samples", "distinct", "best": {genotype, params, psnr,
                 reward}, "mean_psnr", "mean_params", "rows": [...score() rows...]}]}
    scatter.png  PSNR vs params of every sampled genotype, one colour per setting, each best starred

Example:
    python tools/compare_settings.py -opt options/search/search_CB0_FF0.yml options/search/search_CB0_FF1.yml \\
        options/search/search_CB1_FF0.yml options/search/search_CB1_FF1.yml --out results/compare_settings
"""
import json
import os.path as osp
import sys

if __package__ in (None, ''):  # run as a script: make the project importable
    sys.path.insert(0, osp.abspath(osp.join(__file__, osp.pardir, osp.pardir)))

import deconas_plugin  # noqa: F401,E402  (registers archs, models, datasets, losses)
import numpy as np  # noqa: E402
import torch  # noqa: E402

from deconas_plugin import derive  # noqa: E402
from deconas_plugin.reporting.figures import new_figure_of_size, save_figure  # noqa: E402
from deconas_plugin.utils.checkpoint import atomic_write_text  # noqa: E402
from deconas_plugin.utils.cli import default_device, run_tool, tool_parser  # noqa: E402
from deconas_plugin.utils.machine import default_threads, use_threads  # noqa: E402
from deconas_plugin.utils.markdown_table import md_table  # noqa: E402

COLORS = ('#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf')
SCATTER_INCHES = (8.0, 5.5)


def parse_args(argv=None):
    p = tool_parser(__doc__)
    p.add_argument('-opt', nargs='+', required=True, help='search option files, one per setting')
    p.add_argument('--experiments', nargs='+', help='experiment folders, in the order of -opt '
                   '(default: experiments/<name> of each option file)')
    p.add_argument('--labels', nargs='+', help='setting labels (default: each option file\'s name)')
    p.add_argument('--num-samples', type=int, default=100, help='genotypes sampled per controller (100)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--iter', default='latest', help='checkpoint iteration of every experiment (latest)')
    p.add_argument('--scored-on', choices=['val', 'reward'], default='val',
                   help='whole images of datasets.val (default) or the reward-validation images')
    p.add_argument('--out', default=osp.join(derive.PROJECT_ROOT, 'results', 'compare_settings'))
    p.add_argument('--device', default=default_device())
    p.add_argument('--quiet', action='store_true', help='no progress bars')
    return p.parse_args(argv)


def compare(opt_paths, experiments=None, labels=None, num_samples=100, seed=0, iteration='latest',
            scored_on='val', device='cpu', progress=True):
    """One summary dict per setting (see the module doc)."""
    if experiments and len(experiments) != len(opt_paths):
        raise derive.DeriveError(f'--experiments: {len(experiments)} folders for {len(opt_paths)} option files')
    if labels and len(labels) != len(opt_paths):
        raise derive.DeriveError(f'--labels: {len(labels)} labels for {len(opt_paths)} option files')
    settings = []
    for i, path in enumerate(opt_paths):
        opt = derive.read_options(path)
        experiment = experiments[i] if experiments else osp.join(derive.PROJECT_ROOT, 'experiments', opt['name'])
        supernet, controller = derive.load_search(opt, experiment, iteration, device)
        torch.manual_seed(seed)
        with torch.no_grad():
            genotypes, _, _ = controller.sample_many(num_samples)
        batches = derive.validation_batches(opt, scored_on, device)
        alpha = derive.search_alpha(opt)
        crop = (opt.get('search') or {}).get('reward_crop_border') or supernet.upscale
        rows = derive.score(supernet, genotypes, batches, crop, alpha, progress=progress)
        by_genotype = {r['genotype']: r for r in rows}
        sampled = [by_genotype[g.to_string()] for g in genotypes]
        best = max(rows, key=lambda r: r['psnr'])
        settings.append({
            'label': labels[i] if labels else opt['name'], 'option_file': osp.abspath(path),
            'experiment': osp.abspath(experiment), 'alpha': alpha,
            'feature_fusion_search': bool(opt['network_g'].get('feature_fusion_search', False)),
            'samples': len(genotypes), 'distinct': len(rows),
            'best': {k: best[k] for k in ('genotype', 'params', 'psnr', 'reward')},
            'mean_psnr': float(np.mean([r['psnr'] for r in sampled])),
            'mean_params': float(np.mean([r['params'] for r in sampled])),
            'sampled': [{'genotype': r['genotype'], 'params': r['params'], 'psnr': r['psnr']} for r in sampled],
            'rows': rows,
        })
    return settings


def table_md(settings, num_samples, scored_on) -> str:
    lines = md_table(['Setting', 'alpha', 'FF search', 'best PSNR (dB)', 'params (best)', 'mean PSNR (dB)',
                      'mean params', 'distinct / samples', 'best genotype'], 'lrcrrrrrl',
                     [[s['label'], f"{s['alpha']:g}", 'yes' if s['feature_fusion_search'] else 'no',
                       f"{s['best']['psnr']:.3f}", f"{s['best']['params']:,}", f"{s['mean_psnr']:.3f}",
                       f"{s['mean_params']:,.0f}", f"{s['distinct']} / {s['samples']}", f"`{s['best']['genotype']}`"]
                      for s in settings])
    lines += ['', f'{num_samples} genotypes sampled from each trained controller, scored with the shared weights '
              f'(PSNR-Y on the `{scored_on}` images, border = scale); mean over the samples, duplicates counted.']
    return '\n'.join(lines) + '\n'


def draw(settings, path: str):
    fig = new_figure_of_size(SCATTER_INCHES)
    ax = fig.add_axes([0.1, 0.11, 0.86, 0.8])
    for i, s in enumerate(settings):
        color = COLORS[i % len(COLORS)]
        params = np.array([r['params'] for r in s['sampled']], dtype=float) / 1e3
        psnr = np.array([r['psnr'] for r in s['sampled']], dtype=float)
        ax.scatter(params, psnr, s=14, alpha=0.6, color=color, edgecolors='none',
                   label=f"{s['label']} (mean {s['mean_psnr']:.2f} dB)")
        ax.scatter([s['best']['params'] / 1e3], [s['best']['psnr']], marker='*', s=220, color=color,
                   edgecolors='black', linewidths=0.8, zorder=5)
    ax.set_xlabel('parameters (K)')
    ax.set_ylabel('PSNR-Y (dB, shared weights)')
    ax.set_title('Genotypes sampled from each trained controller (star: best PSNR)', fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc='lower right', fontsize=8)
    return save_figure(fig, path)


def main(argv=None):
    args = parse_args(argv)
    use_threads(default_threads())  # scoring on a busy machine: one thread, not spinning ones
    settings = compare(args.opt, args.experiments, args.labels, args.num_samples, args.seed, args.iter,
                       args.scored_on, args.device, progress=not args.quiet)
    md = table_md(settings, args.num_samples, args.scored_on)
    atomic_write_text(osp.join(args.out, 'table.md'), md)
    atomic_write_text(osp.join(args.out, 'table.json'), json.dumps(
        {'num_samples': args.num_samples, 'seed': args.seed, 'scored_on': args.scored_on, 'settings': settings},
        indent=2) + '\n')
    draw(settings, osp.join(args.out, 'scatter.png'))
    print(md)
    print(f"written: {osp.join(args.out, 'table.md')}, table.json, scatter.png")
    return settings


if __name__ == '__main__':
    run_tool(main, derive.DeriveError, ValueError)
