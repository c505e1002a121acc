"""Derive the final network of a DeCoNAS search.

From a search checkpoint: sample N genotypes from the trained controller, score each with the
shared supernet weights on the search's validation set, write the ranking (CSV + Markdown), choose
one (best reward, or best PSNR within --max-params), and write a ready-to-run DeCoNASNet retrain
option file with that genotype (train_DeCoNASNet.yml) and the option file that tests what the retrain
writes (test_DeCoNASNet.yml: its checkpoint, genotype, N, M, C and scale). With --sampler uniform the
samples are uniform random genotypes scored the same way: random search with the search's own shared
weights, what the controller has to beat (docs/search-evaluation.md).

Example:
    python tools/derive.py -opt options/search/search_CB1_FF0.yml
    python deconas_plugin/train.py -opt experiments/search_CB1_FF0/derive/train_DeCoNASNet.yml
    python deconas_plugin/test.py -opt experiments/search_CB1_FF0/derive/test_DeCoNASNet.yml
"""
import json
import os.path as osp
import random
import sys

if __package__ in (None, ''):  # run as a script: make the project importable
    sys.path.insert(0, osp.abspath(osp.join(__file__, osp.pardir, osp.pardir)))

import deconas_plugin  # noqa: F401,E402  (registers archs, models, datasets, losses)
import torch  # noqa: E402

from deconas_plugin import derive  # noqa: E402
from deconas_plugin.genotype import Genotype  # noqa: E402
from deconas_plugin.search_cost import search_cost  # noqa: E402
from deconas_plugin.utils.checkpoint import atomic_save, atomic_write_text  # noqa: E402
from deconas_plugin.utils.cli import add_search_checkpoint, default_device, run_tool, tool_parser  # noqa: E402
from deconas_plugin.utils.machine import default_threads, use_threads  # noqa: E402


def parse_args(argv=None):
    p = tool_parser(__doc__)
    add_search_checkpoint(p)
    p.add_argument('--num-samples', type=int, default=100, help='genotypes sampled (100)')
    p.add_argument('--sampler', choices=['controller', 'uniform'], default='controller',
                   help='draw the samples from the trained controller, or uniformly (every bit 1 with '
                   'probability 1/2): random search with the same shared weights, the baseline of the controller')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--scored-on', choices=['val', 'reward'], default='val',
                   help='score on the whole images of datasets.val, or on the reward-validation images')
    p.add_argument('--alpha', type=float, help='complexity penalty of the ranking reward (default: the search alpha)')
    p.add_argument('--max-params', type=int, help='choose the best PSNR among genotypes with at most this many params')
    p.add_argument('--genotype', help='skip sampling: score and write this genotype')
    p.add_argument('--template', help='retrain option file to fill in (default: options/train/train_DeCoNASNet_x<s>.yml)')
    p.add_argument('--test-template',
                   help='test option file to fill in (default: options/test/test_DeCoNASNet_x<s>.yml)')
    p.add_argument('--data-from-search', action='store_true', help='retrain on the datasets of the search option file')
    p.add_argument('--inherit-weights', action='store_true',
                   help='start the retrain from the supernet weights of the chosen genotype')
    p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                   help='override a key of the written option file, e.g. --set train.total_iter=1000 (repeatable)')
    p.add_argument('--out-dir', help='output folder (default: <experiment>/derive)')
    p.add_argument('--device', default=default_device())
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    use_threads(default_threads())  # scoring on a busy machine: one thread, not spinning ones
    opt = derive.read_options(args.opt)
    experiment = args.experiment or osp.join(derive.PROJECT_ROOT, 'experiments', opt['name'])
    out_dir = args.out_dir or osp.join(experiment, 'derive')
    supernet, controller = derive.load_search(opt, experiment, args.iter, args.device)
    if args.genotype:
        genotypes = [supernet.parse_genotype(args.genotype)]
    elif args.sampler == 'uniform':
        rng = random.Random(args.seed)
        genotypes = [Genotype.random(supernet.num_nodes, supernet.num_blocks, fusion=supernet.feature_fusion_search,
                                     rng=rng) for _ in range(args.num_samples)]
    else:
        torch.manual_seed(args.seed)
        with torch.no_grad():
            genotypes, _, _ = controller.sample_many(args.num_samples)
    batches = derive.validation_batches(opt, args.scored_on, args.device)
    alpha = derive.search_alpha(opt) if args.alpha is None else args.alpha
    crop = (opt.get('search') or {}).get('reward_crop_border')
    crop = supernet.upscale if crop is None else crop
    cost = search_cost(opt.get('search') or {}, supernet)  # search.penalty: params, MACs or latency
    rows = derive.score(supernet, genotypes, batches, crop, alpha, cost=cost)
    chosen = derive.choose(rows, args.max_params)
    genotype = Genotype.parse(chosen['genotype'], num_nodes=supernet.num_nodes, num_blocks=supernet.num_blocks)

    tables = derive.ranking_tables(rows)
    atomic_write_text(osp.join(out_dir, 'ranking.csv'), tables['csv'])
    atomic_write_text(osp.join(out_dir, 'ranking.md'), tables['md'])
    atomic_write_text(osp.join(out_dir, 'chosen.json'), json.dumps(
        dict(chosen, genotype_dict=genotype.to_dict(), alpha=alpha, scored_on=args.scored_on,
             samples=len(genotypes), distinct=len(rows), sampler='genotype' if args.genotype else args.sampler),
        indent=2) + '\n')
    pretrain = None
    if args.inherit_weights:
        pretrain = osp.join(out_dir, 'DeCoNASNet_inherited.pth')
        atomic_save({'params': supernet.extract(genotype).state_dict()}, pretrain)
    template_path = args.template or osp.join(derive.PROJECT_ROOT, 'options', 'train',
                                              f"train_DeCoNASNet_x{opt['scale']}.yml")
    retrain = derive.retrain_options(genotype, opt, derive.read_options(template_path), args.data_from_search,
                                     pretrain, args.set)
    option_path = osp.join(out_dir, 'train_DeCoNASNet.yml')
    atomic_write_text(option_path, f'# Written by tools/derive.py from {args.opt}: genotype {genotype}\n'
                             + derive.dump_options(retrain))
    test_template = args.test_template or osp.join(derive.PROJECT_ROOT, 'options', 'test',
                                                   f"test_DeCoNASNet_x{opt['scale']}.yml")
    test_path = osp.join(out_dir, 'test_DeCoNASNet.yml')
    atomic_write_text(test_path, f'# Written by tools/derive.py: tests what {option_path} trains\n'
                      + derive.dump_options(derive.test_options(retrain, derive.read_options(test_template))))
    print(tables['md'] if len(rows) <= 20 else ''.join(tables['md'].splitlines(True)[:22]) + '...\n')
    shown = '' if cost.penalty == 'params' else f', {cost.format(chosen["cost"])}'
    print(f"chosen: {genotype}  ({chosen['params']:,} params{shown}, PSNR-Y {chosen['psnr']:.3f} dB, "
          f"reward {chosen['reward']:.3f})")
    print(f'ranking: {out_dir}/ranking.md, .csv\nretrain: python deconas_plugin/train.py -opt {option_path}'
          f'\ntest:    python deconas_plugin/test.py -opt {test_path}')
    return option_path


if __name__ == '__main__':
    run_tool(main, derive.DeriveError, ValueError)
