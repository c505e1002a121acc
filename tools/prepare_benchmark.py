"""Make SR benchmark pairs in BasicSR's folder convention.

For every HR image and scale s: modcrop to a multiple of s, then MATLAB-compatible bicubic
downsampling (``basicsr.utils.matlab_functions.imresize``, antialiased; never OpenCV cubic).

    <output>/GTmod{s}/<name>.png   HR cropped to a multiple of s
    <output>/LRbicx{s}/<name>.png  its bicubic LR (size HR/s)

Single-channel files stay single-channel. Files already there with the right size are skipped;
each file is written to a temporary name and renamed.

With --all, --data-root (or the environment variable DECONAS_DATA) is a folder holding Set5/HR,
Set14/HR, B100/HR and Urban100/HR (where to download them: docs/data.md).

Examples:
    python tools/prepare_benchmark.py --input <Set5 HR folder> --output datasets/Set5 --scales 2 3 4
    python tools/prepare_benchmark.py --all --data-root <folder with Set5/HR ...> --output datasets
"""
import os
import os.path as osp
import sys

if __package__ in (None, ''):  # run as a script: make the project importable
    sys.path.insert(0, osp.abspath(osp.join(__file__, osp.pardir, osp.pardir)))

from deconas_plugin.utils.cli import run_tool, tool_parser  # noqa: E402  (the package first: its torchvision shim before basicsr)
from deconas_plugin.utils.sr_data import DataToolError, list_images, prepare_pairs  # noqa: E402

BENCHMARK_SETS = ('Set5', 'Set14', 'B100', 'Urban100')


def prepare_set(input_dir, output_dir, scales, compression=3, name=None):
    """Prepare one set for all ``scales``. Returns {'written': n, 'skipped': m}."""
    return prepare_pairs(list_images(input_dir), output_dir, scales, compression,
                         name or osp.basename(osp.normpath(output_dir)))


def check_scales(scales):
    bad = [s for s in scales if s < 2]
    if bad:
        raise DataToolError(f'scales must be integers >= 2, got {bad}')
    return sorted(set(scales))


def parse_args(argv=None):
    parser = tool_parser(__doc__)
    parser.add_argument('--input', help='folder of HR images (e.g. the HR images of Set5)')
    parser.add_argument('--output', help='output folder of one set (e.g. datasets/Set5); '
                        'with --all, the root that receives one folder per set (default: datasets)')
    parser.add_argument('--scales', type=int, nargs='+', default=[2, 3, 4])
    parser.add_argument('--all', action='store_true', help=f'prepare {", ".join(BENCHMARK_SETS)} from --data-root')
    parser.add_argument('--data-root', default=os.environ.get('DECONAS_DATA'),
                        help='folder holding <Set>/HR folders, used with --all (default: $DECONAS_DATA)')
    parser.add_argument('--compression', type=int, default=3, help='PNG compression level 0-9 (default 3)')
    args = parser.parse_args(argv)
    if args.all:
        if args.input:
            parser.error('--input cannot be combined with --all (use --data-root)')
        if not args.data_root:
            parser.error('--all needs --data-root <folder holding Set5/HR, Set14/HR, B100/HR, Urban100/HR> '
                         '(or the environment variable DECONAS_DATA)')
        args.output = args.output or 'datasets'
    elif not (args.input and args.output):
        parser.error('give --input and --output, or --all')
    return args


def main(argv=None):
    args = parse_args(argv)
    scales = check_scales(args.scales)
    if args.all:
        if not osp.isdir(args.data_root):
            raise DataToolError(f'--data-root folder not found: {args.data_root}')
        missing = [osp.join(args.data_root, s, 'HR') for s in BENCHMARK_SETS
                   if not osp.isdir(osp.join(args.data_root, s, 'HR'))]
        if missing:
            raise DataToolError(f'input folder not found: {", ".join(missing)}')
        jobs = [(osp.join(args.data_root, s, 'HR'), osp.join(args.output, s), s) for s in BENCHMARK_SETS]
    else:
        jobs = [(args.input, args.output, None)]
    for input_dir, output_dir, name in jobs:
        counts = prepare_set(input_dir, output_dir, scales, args.compression, name)
        print(f'{output_dir}: {counts["written"]} pairs written, {counts["skipped"]} already there '
              f'(scales {" ".join(map(str, scales))})')


if __name__ == '__main__':
    run_tool(main, DataToolError)
