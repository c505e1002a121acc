"""Draw a DeCoNAS genotype's DNB cell (and its GFF choices, with fusion bits) as a PNG.

The genotype comes from exactly one of:
  --genotype "7 6 4 3 0 2 2 3 4 1"   any form Genotype.parse reads (decimal, bits, "codes | local | global")
  --opt options/train/x.yml           the option file's network_g.genotype (a DeCoNASNet)
  --ckpt experiments/x/models/net_g_latest.pth
                                      a BasicSR net checkpoint of a DeCoNASNet: its 'genotype' entry if it
                                      has one, else the layer shapes when they fix the genotype uniquely,
                                      else the option file BasicSR copied into the experiment folder;
                                      otherwise the tool says which ops are ambiguous and stops.

Examples:
    python tools/draw_genotype.py --genotype "7 6 4 3 0 2 2 3 4 1" -o results/paper_cell.png
    python tools/draw_genotype.py --genotype "7 6 4 3 0 2 2 3 4 1 | 1 0 1 1 | 1 1 0 1" -o results/ff_cell.png
"""
import argparse
import os.path as osp
import sys

if __package__ in (None, ''):  # run as a script: make the project importable
    sys.path.insert(0, osp.abspath(osp.join(__file__, osp.pardir, osp.pardir)))


def parse_args(argv=None):
    summary, _, details = __doc__.partition('\n')  # -h: what the tool is for, the arguments, the details
    parser = argparse.ArgumentParser(description=summary, epilog=details,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument('--genotype', help='a genotype string')
    src.add_argument('--opt', help='a BasicSR option file with a DeCoNASNet network_g')
    src.add_argument('--ckpt', help='a BasicSR net checkpoint (.pth) of a DeCoNASNet')
    parser.add_argument('-o', '--output', default='genotype.png', help='output PNG (default: genotype.png)')
    parser.add_argument('--title', help='figure title (default: the genotype in decimal and bit form)')
    parser.add_argument('--dpi', type=int, default=100, help='resolution (default: 100)')
    args = parser.parse_args(argv)
    if not args.output.lower().endswith('.png'):
        parser.error(f'--output must be a .png file, got {args.output!r}')
    if not 20 <= args.dpi <= 600:
        parser.error(f'--dpi must be in 20..600, got {args.dpi}')
    return args


def main(argv=None):
    args = parse_args(argv)
    from deconas_plugin.genotype import Genotype, GenotypeError
    from deconas_plugin.genotype_source import GenotypeSourceError, genotype_from_checkpoint, genotype_from_option
    from deconas_plugin.reporting.draw import draw_genotype, figure_pixels
    try:
        if args.genotype is not None:
            genotype, source = Genotype.parse(args.genotype), 'the command line'
        elif args.opt is not None:
            genotype, source = genotype_from_option(args.opt)[0], args.opt
        else:
            genotype, source = genotype_from_checkpoint(args.ckpt)
    except (GenotypeError, GenotypeSourceError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    try:
        draw_genotype(genotype, args.output, title=args.title, dpi=args.dpi)
    except OSError as e:
        print(f'error: cannot write {args.output}: {e}', file=sys.stderr)
        return 2
    w, h = figure_pixels(genotype, args.dpi)
    print(f'genotype {genotype.to_string()} (M = {genotype.num_nodes}; from {source})')
    print(f'wrote {args.output} ({w}x{h})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
