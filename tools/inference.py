"""Upscale your own images with a trained network (the step after retraining).

A DeCoNASNet checkpoint written by this project needs nothing else: it carries its genotype, and its
layer shapes give C, N, M and the scale. Other registered archs (CARN, RDN, BasicSR's EDSR) take the
option file they were trained or tested with (--opt: its network_g).

Gray images stay gray, RGBA keeps its alpha (upscaled with bicubic interpolation), 16-bit PNGs come
out 16-bit. A file that cannot be read is named in one line and skipped; the others are still
written, and the exit status is 1 if any file failed (2 for a bad model, option file or argument).

--tile N runs the LR image in tiles of N x N pixels with --tile-pad pixels of context (for images
too large for the memory); the channel attention pools over each tile rather than the whole image,
so the tiled result is close to, not identical with, the whole-image one (measured: docs/deployment.md,
"Upscaling your own images").

Examples:
    python tools/inference.py -i photos/ -o results/upscaled --model experiments/<name>/models/net_g_latest.pth
    python tools/inference.py -i big.png -o out --model net_g.pth --tile 256 --tile-pad 32 --device cuda \\
        --precision fp16
    python tools/inference.py -i photo.jpg -o out --model CARN_x2.pth --opt options/test/test_CARN_x2.yml
"""
import argparse
import os
import os.path as osp
import sys

if __package__ in (None, ''):  # run as a script: make the project importable
    sys.path.insert(0, osp.abspath(osp.join(__file__, osp.pardir, osp.pardir)))


def parse_args(argv=None):
    summary, _, details = __doc__.partition('\n')  # -h: what the tool is for, the arguments, the details
    p = argparse.ArgumentParser(description=summary, epilog=details,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('-i', '--input', required=True, help='an image or a folder of images')
    p.add_argument('-o', '--output', required=True, help='output folder')
    p.add_argument('--model', required=True, help='network checkpoint (.pth, BasicSR format)')
    p.add_argument('--opt', help='option file whose network_g builds the network (needed for all but DeCoNASNet)')
    p.add_argument('--param-key', help='checkpoint entry with the weights (default: params_ema, else params)')
    p.add_argument('--tile', type=int, default=0, help='tile size in LR pixels; 0: the whole image at once (default)')
    p.add_argument('--tile-pad', type=int, default=16, help='context pixels around each tile (default 16)')
    p.add_argument('--precision', choices=('fp32', 'bf16', 'fp16'), default='fp32',
                   help='weights and activations in this dtype (default fp32; fp16 is for GPUs)')
    p.add_argument('--device', choices=('auto', 'cpu', 'cuda'), default='auto',
                   help='auto: the GPU if one is visible, else the CPU')
    p.add_argument('--suffix', default='', help='appended to output names as _SUFFIX (default: none)')
    p.add_argument('--ext', choices=('auto', 'png', 'jpg'), default='auto',
                   help="output format; auto: the input's (PNG for alpha or 16 bits read from a JPEG name)")
    p.add_argument('--threads', type=int, help="torch threads on the CPU (default: PyTorch's)")
    args = p.parse_args(argv)
    if args.tile < 0 or args.tile_pad < 0:
        p.error(f'--tile and --tile-pad must be >= 0, got {args.tile} and {args.tile_pad}')
    if args.tile and args.tile < 4:
        p.error(f'--tile must be 0 or at least 4 pixels, got {args.tile}')
    return args


def main(argv=None):
    args = parse_args(argv)
    import torch
    from tqdm import tqdm

    from deconas_plugin.inference import (PRECISIONS, ImageError, InferenceError, list_inputs, load_network,
                                          output_path, read_image, upscale_image, write_image)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise InferenceError('--device cuda: no CUDA device is visible (use --device cpu or auto)')
    device = torch.device('cuda' if args.device == 'cuda' or (args.device == 'auto' and torch.cuda.is_available())
                          else 'cpu')
    files = list_inputs(args.input)
    net, description, scale = load_network(args.model, args.opt, args.param_key)
    dtype = PRECISIONS[args.precision]
    net = net.to(device=device, dtype=dtype)
    os.makedirs(args.output, exist_ok=True)
    inputs = {osp.realpath(f) for f in files}
    print(f'{description}; x{scale}, {device} {args.precision}, '
          + (f'tiles {args.tile} px + {args.tile_pad} px context' if args.tile else 'whole images'))
    failed = []
    for path in tqdm(files, desc='upscaling', unit='image', disable=len(files) < 2):
        try:
            img = read_image(path)
            out_path, note = output_path(path, args.output, img, args.suffix, args.ext)
            if osp.realpath(out_path) in inputs:
                raise ImageError(f'the output {out_path} would overwrite an input (give another -o or a --suffix)')
            out = upscale_image(net, img, scale, device, dtype, args.tile, args.tile_pad)
            write_image(out, out_path)
            if note:
                tqdm.write(f'{path}: {note}')
        except (ImageError, OSError) as e:
            failed.append(path)
            tqdm.write(f'error: {path}: {e}; skipped', file=sys.stderr)
    done = len(files) - len(failed)
    print(f'wrote {done} of {len(files)} image(s) to {args.output}' + (f'; {len(failed)} failed' if failed else ''))
    return 1 if failed else 0


if __name__ == '__main__':
    from deconas_plugin.inference import InferenceError
    from deconas_plugin.utils.cli import run_tool
    run_tool(main, InferenceError)
