"""Measure a latency lookup table of a DeCoNAS search space on this machine's CPU or GPU.

Times every part a network of the space can be made of (op type x number of inputs at C, the node's
mean + channel attention, LFF / dense / GFF convs by number of inputs, SFENet, UPNet; see
``deconas_plugin/latency.py``) on one LR input of --lr-size, in --precision, and writes a JSON table.
``search.penalty: latency`` with ``search.latency_table: <that file>`` makes the search's reward
penalise the latency the table predicts for each genotype (the sum of its parts).

--check K builds K random genotypes of the space (plus the empty and the full one), times each
whole network on the same input and reports how well the table predicts it (Pearson and Spearman
correlation; params and MACs for comparison); the numbers go into the table's "check" entry.

The sizes come from a search option file (-opt: network_g's num_feat, num_nodes, num_blocks and the
scale) or from --num-feat/--num-nodes/--num-blocks/--scale.

Examples:
    python tools/latency_table.py -opt options/search/search_CB1_FF0.yml --device cuda --precision fp16 --out lut.json
    python tools/latency_table.py --num-feat 16 --num-nodes 3 --num-blocks 2 --lr-size 128 128 --device cpu \\
        --threads 1 --check 20 --out results/lut_demo_cpu.json
"""
import argparse
import json
import os.path as osp
import random
import sys

if __package__ in (None, ''):  # run as a script: make the project importable
    sys.path.insert(0, osp.abspath(osp.join(__file__, osp.pardir, osp.pardir)))


def parse_args(argv=None):
    summary, _, details = __doc__.partition('\n')  # -h: what the tool is for, the arguments, the details
    p = argparse.ArgumentParser(description=summary, epilog=details,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('-opt', '--opt', help='search option file (network_g sizes and scale)')
    p.add_argument('--num-feat', type=int, help='C (default 64, or the option file\'s)')
    p.add_argument('--num-nodes', type=int, help='M (default 4)')
    p.add_argument('--num-blocks', type=int, help='N (default 4)')
    p.add_argument('--scale', type=int, choices=(2, 3, 4), help='upscale (default 2)')
    p.add_argument('--lr-size', type=int, nargs=2, metavar=('H', 'W'),
                   help='LR input size (default: the LR of a 1280x720 output, 360x640 at x2)')
    p.add_argument('--device', choices=('cpu', 'cuda'), default='cpu')
    p.add_argument('--precision', choices=('fp32', 'bf16', 'fp16'), default='fp32',
                   help='weights and activations in this dtype (default fp32)')
    p.add_argument('--repeats', type=int, default=10, help='timed calls per part (default 10)')
    p.add_argument('--statistic', choices=('median', 'min'), default='median',
                   help='kept of the timed calls (default median; min on a machine shared with other jobs)')
    p.add_argument('--warmup', type=int, default=2, help='untimed calls first (default 2)')
    p.add_argument('--threads', type=int, help='torch threads on the CPU (default: PyTorch\'s)')
    p.add_argument('--check', type=int, default=0, metavar='K',
                   help='also time K random whole networks and report the correlation with the table')
    p.add_argument('--seed', type=int, default=0, help='of the --check genotypes (default 0)')
    p.add_argument('--out', required=True, help='output JSON table')
    args = p.parse_args(argv)
    for key in ('num_feat', 'num_nodes', 'num_blocks', 'threads'):
        if getattr(args, key) is not None and getattr(args, key) < 1:
            p.error(f"--{key.replace('_', '-')} must be >= 1, got {getattr(args, key)}")
    if args.repeats < 1 or args.warmup < 0 or args.check < 0:
        p.error('--repeats must be >= 1, --warmup and --check >= 0')
    if args.lr_size and min(args.lr_size) < 1:
        p.error(f'--lr-size must be positive, got {args.lr_size}')
    return args


def space_sizes(args) -> dict:
    """num_feat, num_nodes, num_blocks, upscale, num_in_ch, num_out_ch from -opt and the flags (flags win)."""
    from deconas_plugin.utils.option_file import read_option_file
    net, scale = {}, None
    if args.opt:
        opt = read_option_file(args.opt, ValueError)
        net, scale = dict(opt.get('network_g') or {}), opt.get('scale')
    sizes = {'num_feat': net.get('num_feat', 64), 'num_nodes': net.get('num_nodes', 4),
             'num_blocks': net.get('num_blocks', 4), 'upscale': net.get('upscale', scale or 2),
             'num_in_ch': net.get('num_in_ch', 3), 'num_out_ch': net.get('num_out_ch', 3)}
    for key in ('num_feat', 'num_nodes', 'num_blocks'):
        if getattr(args, key) is not None:
            sizes[key] = getattr(args, key)
    if args.scale is not None:
        sizes['upscale'] = args.scale
    if sizes['num_feat'] % 4:
        raise ValueError(f"num_feat must be a multiple of 4 (channel attention), got {sizes['num_feat']}")
    return sizes


def correlation(xs, ys) -> float:
    import numpy as np
    x, y = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    if x.std() == 0 or y.std() == 0:
        return float('nan')
    return float(np.corrcoef(x, y)[0, 1])


def spearman(xs, ys) -> float:
    import numpy as np
    return correlation(np.argsort(np.argsort(xs)), np.argsort(np.argsort(ys)))


def check_table(table: dict, count: int, seed: int, repeats: int, warmup: int, statistic: str = 'median') -> dict:
    """Time ``count`` random genotypes (and the empty and full one) as whole DeCoNASNets; compare with the table."""
    import torch

    from deconas_plugin.archs.deconas_arch import DeCoNASNet
    from deconas_plugin.complexity import count_macs, count_params
    from deconas_plugin.genotype import Genotype
    from deconas_plugin.latency import PRECISIONS, predict, time_interleaved
    m, n = table['num_nodes'], table['num_blocks']
    size = {k: table[k] for k in ('num_feat', 'num_blocks', 'upscale', 'num_in_ch', 'num_out_ch')}
    rng = random.Random(seed)
    genotypes = [Genotype.random(m, n, rng=rng, density=rng.uniform(0.1, 0.9)) for _ in range(count)]
    genotypes += [Genotype((0, ) * len(Genotype.full(m).codes)), Genotype.full(m)]
    device, dtype = torch.device(table['device']), PRECISIONS[table['precision']]
    x = torch.rand(1, table['num_in_ch'], *table['lr_size'], device=device, dtype=dtype)
    nets = {str(i): DeCoNASNet(g, num_nodes=m, **size).to(device=device, dtype=dtype).eval()
            for i, g in enumerate(genotypes)}
    measured = time_interleaved({i: (lambda net=net: net(x)) for i, net in nets.items()}, device, repeats, warmup,
                                statistic)
    rows = [{'genotype': g.to_string(), 'predicted_ms': predict(table, g), 'measured_ms': measured[str(i)],
             'params': count_params(g, **size), 'macs': count_macs(g, **size, lr_size=table['lr_size'])}
            for i, g in enumerate(genotypes)]
    measured = [r['measured_ms'] for r in rows]
    out = {'genotypes': len(rows), 'seed': seed, 'rows': rows}
    for key in ('predicted_ms', 'params', 'macs'):
        values = [r[key] for r in rows]
        out[f'pearson_{key}'] = correlation(values, measured)
        out[f'spearman_{key}'] = spearman(values, measured)
    out['mean_abs_error_pct'] = 100 * sum(abs(r['predicted_ms'] - r['measured_ms']) / r['measured_ms']
                                          for r in rows) / len(rows)
    return out


def main(argv=None):
    args = parse_args(argv)
    import torch

    from deconas_plugin.complexity import paper_lr_size
    from deconas_plugin.latency import measure_table
    from deconas_plugin.utils.checkpoint import atomic_write_text
    sizes = space_sizes(args)
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise ValueError('--device cuda: no CUDA device is visible here (use --device cpu)')
    if args.threads:
        torch.set_num_threads(args.threads)
    lr_size = tuple(args.lr_size) if args.lr_size else paper_lr_size(sizes['upscale'])
    print(f"latency table: C={sizes['num_feat']} M={sizes['num_nodes']} N={sizes['num_blocks']} "
          f"x{sizes['upscale']}, LR {lr_size[0]}x{lr_size[1]}, {args.device} {args.precision}, "
          f'{torch.get_num_threads()} thread(s), {args.statistic} of {args.repeats}')
    table = measure_table(**sizes, lr_size=lr_size, device=args.device, precision=args.precision,
                          repeats=args.repeats, warmup=args.warmup, statistic=args.statistic)
    if args.check:
        table['check'] = check_table(table, args.check, args.seed, args.repeats, args.warmup, args.statistic)
    atomic_write_text(args.out, json.dumps(table, indent=1) + '\n')
    e = table['entries']
    print('  ' + ', '.join(f'{k} {v:.3f}' for k, v in e.items() if k.startswith(('op', 'stem', 'tail'))) + ' (ms)')
    if args.check:
        c = table['check']
        print(f"check over {c['genotypes']} whole networks (random + empty + full): predicted vs measured latency "
              f"Pearson {c['pearson_predicted_ms']:.3f}, Spearman {c['spearman_predicted_ms']:.3f}, mean |error| "
              f"{c['mean_abs_error_pct']:.1f}%; params {c['pearson_params']:.3f} / {c['spearman_params']:.3f}, "
              f"MACs {c['pearson_macs']:.3f} / {c['spearman_macs']:.3f}")
    print(f"wrote {args.out} ({len(e)} parts); use it with search.penalty: latency, search.latency_table: {args.out}")
    return 0


if __name__ == '__main__':
    from deconas_plugin.utils.cli import run_tool
    run_tool(main, ValueError, OSError)
