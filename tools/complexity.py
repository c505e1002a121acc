"""Parameters and MACs of BasicSR networks, as a Markdown table.

Networks come from option files (``network_g`` first, then any other ``network_*`` entry) and/or
``--arch`` specs ``TYPE:key=value,...`` built through BasicSR's ARCH_REGISTRY (the plugin's archs
are registered). MACs follow the SR papers' convention: one forward pass whose output is a
1280x720 HR image, i.e. an LR input of round(1280/s) x round(720/s) (nearest, halves up):
640x360 for x2, 427x240 for x3, 320x180 for x4. They are counted by mmengine's
get_model_complexity_info, extrapolated exactly from small inputs and verified (see
deconas_plugin/reporting/complexity_table.py; --exact counts at the full size, slow on a CPU).

Examples:
    python tools/complexity.py options/train/train_DeCoNASNet_x2.yml
    python tools/complexity.py --arch DeCoNASNet:upscale=2 \\
        --arch CARN:upscale=2,multi_scale=true --arch RDN:upscale=2 \\
        --arch EDSR:num_in_ch=3,num_out_ch=3,num_feat=64,num_block=16,upscale=2 --json results/complexity.json
    python tools/complexity.py --arch "DeCoNASNet:genotype=7 6 4 3 0 2 2 3 4 1,upscale=4" --hr-size 1920 1080
"""
import argparse
import os
import os.path as osp
import sys

if __package__ in (None, ''):  # run as a script: make the project importable
    sys.path.insert(0, osp.abspath(osp.join(__file__, osp.pardir, osp.pardir)))


def parse_args(argv=None):
    summary, _, details = __doc__.partition('\n')  # -h: what the tool is for, the arguments, the details
    parser = argparse.ArgumentParser(description=summary, epilog=details,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('opt', nargs='*', help='BasicSR option file(s) (YAML)')
    parser.add_argument('--arch', action='append', default=[], metavar='TYPE[:k=v,...]',
                        help='a network from ARCH_REGISTRY, e.g. DeCoNASNet:upscale=2 (repeatable; a DeCoNASNet '
                        'without genotype gets the paper genotype)')
    parser.add_argument('--hr-size', type=int, nargs=2, default=[1280, 720], metavar=('W', 'H'),
                        help='HR output size the MACs refer to (default: 1280 720)')
    parser.add_argument('--scale', type=int, default=None,
                        help='scale for networks whose options give no upscale (default: the option file\'s scale)')
    parser.add_argument('--exact', action='store_true', help='count MACs at the full LR size (no extrapolation)')
    parser.add_argument('--json', metavar='OUT.json', help='also write the rows as JSON (atomically)')
    args = parser.parse_args(argv)
    if not args.opt and not args.arch:
        parser.error('give at least one option file or --arch spec')
    if min(args.hr_size) < 1:
        parser.error(f'--hr-size must be positive, got {args.hr_size}')
    return args


def main(argv=None):
    args = parse_args(argv)
    from deconas_plugin.reporting.complexity_table import (ComplexityError, format_table, network_row,
                                                       parse_arch_spec, read_option_networks, write_json)
    method = 'exact' if args.exact else 'auto'
    hr = tuple(args.hr_size)
    try:
        jobs = []
        for path in args.opt:
            nets, scale, name = read_option_networks(path)
            for key, net_opt in nets:
                # The generator maps LR to HR; other networks (discriminators) see HR-sized inputs.
                jobs.append((f'{name}: {key}', net_opt, (args.scale or scale) if key == 'network_g' else 1))
        for spec in args.arch:
            jobs.append((spec, parse_arch_spec(spec), args.scale))
        rows = [network_row(label, net_opt, scale, hr, method) for label, net_opt, scale in jobs]
    except ComplexityError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    try:
        print(format_table(rows, hr), flush=True)
    except BrokenPipeError:  # e.g. piped into head
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if args.json:
        write_json(rows, args.json, hr)
        print(f'\nwrote {args.json}', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
