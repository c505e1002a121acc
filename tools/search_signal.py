"""Does the architecture move the reward? Signal diagnostics of a DeCoNAS search checkpoint.

Loads the supernet (and controller) of a search, scores K uniform random genotypes, the empty and
the full genotype and the controller's greedy one on B fixed batches of the search's reward
patches (``search.reward_patches`` each, drawn from ``search.reward_dataset`` with fixed seeds), and
reports:

  genotype std     spread of the K genotypes' mean PSNR-Y: the signal a controller can learn from
  batch std        spread between batches: noise of a reward on fresh patches (reward_mode fresh)
  interaction std  what remains when all genotypes share the patches (reward_mode common)
  SNR              genotype std / the noise of the search's reward mode (both modes printed)
  rank tau         Kendall tau of the K genotypes' ranks between two disjoint halves of the batches
  empty / full     PSNR-Y of the empty and the full genotype

Example:
    python tools/search_signal.py -opt options/search/search_N4_M4.yml --genotypes 12 --batches 6
"""
import json
import os.path as osp
import sys

if __package__ in (None, ''):  # run as a script: make the project importable
    sys.path.insert(0, osp.abspath(osp.join(__file__, osp.pardir, osp.pardir)))

import deconas_plugin  # noqa: F401,E402  (registers archs, models, datasets, losses)
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from deconas_plugin import derive, reward, search_signal  # noqa: E402
from deconas_plugin.options import SEARCH_DEFAULTS  # noqa: E402
from deconas_plugin.utils.checkpoint import atomic_write_text  # noqa: E402
from deconas_plugin.utils.cli import add_search_checkpoint, default_device, run_tool, tool_parser  # noqa: E402
from deconas_plugin.utils.machine import default_threads, use_threads  # noqa: E402


def parse_args(argv=None):
    p = tool_parser(__doc__)
    add_search_checkpoint(p, iteration_flags=('--iteration', '--iter'))
    p.add_argument('--genotypes', type=int, default=12, help='uniform random genotypes scored (12)')
    p.add_argument('--batches', type=int, default=6, help='fixed reward batches (6)')
    p.add_argument('--patches', type=int, help='patches per batch (default: search.reward_patches)')
    p.add_argument('--seed', type=int, default=0, help='seed of the genotypes and the batches (0)')
    p.add_argument('--reward-mode', choices=('fresh', 'common'),
                   help="the reward mode whose SNR is headlined (default: the search's)")
    p.add_argument('--json', help='write the result here as JSON')
    p.add_argument('--device', default=default_device())
    return p.parse_args(argv)


def measure(opt: dict, experiment=None, iteration='latest', genotypes=12, batches=6, patches=None, seed=0,
            reward_mode=None, device='cpu', progress=True) -> dict:
    """The diagnostics of one search checkpoint as a dict (see the module docstring)."""
    if genotypes < 2 or batches < 2:
        raise ValueError(f'need --genotypes >= 2 and --batches >= 2, got {genotypes} and {batches}')
    search = {**SEARCH_DEFAULTS, **(opt.get('search') or {})}
    reward_mode = reward_mode or search['reward_mode']
    supernet, controller = derive.load_search(opt, experiment, iteration, device)
    crop = search['reward_crop_border']
    crop = supernet.upscale if crop is None else crop
    dataset = reward.reward_dataset(opt, root=derive.PROJECT_ROOT)
    size = patches or search['reward_patches']
    batch_list = [reward.draw_patches(dataset, size, seed * 1000 + b, device) for b in range(batches)]
    probe = search_signal.probe_genotypes(supernet.num_nodes, supernet.num_blocks, supernet.feature_fusion_search,
                                          genotypes, seed)
    with torch.no_grad():
        greedy = controller.greedy()
    rows = probe + [greedy]

    with tqdm(total=len(rows), desc='scoring genotypes', unit='genotype', disable=not progress) as bar:
        table = search_signal.score_table(supernet, rows, batch_list, crop, lambda i, n: bar.update(1))
    out = search_signal.summarize(table, rows, reward_mode, num_random=len(probe) - 2)
    out.update({'empty': {'genotype': rows[0].to_string(), 'psnr': float(table[0].mean())},
                'full': {'genotype': rows[1].to_string(), 'psnr': float(table[1].mean())},
                'greedy': {'genotype': greedy.to_string(), 'psnr': float(table[-1].mean())},
                'patches': size, 'seed': seed, 'iteration': iteration,
                'table': [[round(float(v), 4) for v in r] for r in table],
                'table_genotypes': [g.to_string() for g in rows]})
    return out


def _fmt(value) -> str:
    return 'undefined' if value is None else f'{value:.2f}'


def render(r: dict) -> str:
    lines = [f"genotype std     {r['genotype_std']:.4f} dB   ({r['genotypes']} random genotypes, "
             f"{r['batches']} batches of {r['patches']} patches)",
             f"batch std        {r['batch_std']:.4f} dB",
             f"interaction std  {r['interaction_std']:.4f} dB",
             f"SNR              fresh patches {r['snr_fresh']:.2f}, common patches {r['snr_common']:.2f} "
             f"(search reward mode: {r['reward_mode']})",
             f"rank tau         {_fmt(r['rank_tau_halves'])} (random genotypes, first vs second half of the batches)",
             f"empty / full     {r['empty']['psnr']:.3f} / {r['full']['psnr']:.3f} dB "
             f"(difference {r['full']['psnr'] - r['empty']['psnr']:+.3f})",
             f"greedy           {r['greedy']['psnr']:.3f} dB  {r['greedy']['genotype']}"]
    if r['snr'] < 1:
        lines.append('warning: the architecture moves the reward less than the reward noise does '
                     f"(SNR {r['snr']:.2f} < 1): a controller trained on it learns mostly noise")
    return '\n'.join(lines) + '\n'


def main(argv=None):
    args = parse_args(argv)
    use_threads(default_threads())  # scoring on a busy machine: one thread, not spinning ones
    opt = derive.read_options(args.opt)
    result = measure(opt, args.experiment, args.iteration, args.genotypes, args.batches, args.patches, args.seed,
                     args.reward_mode, args.device)
    print(render(result), end='')
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2) + '\n')
        print(f'written: {args.json}')
    return result


if __name__ == '__main__':
    run_tool(main, derive.DeriveError, ValueError)
