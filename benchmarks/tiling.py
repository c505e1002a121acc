"""How far tiled inference (``tools/inference.py --tile N --tile-pad P``) lands from the whole-image
output: PSNR of the tiled against the whole 8-bit output, and the largest grey-level difference, per
tile size and context, over a folder of LR images.

    python -m benchmarks.tiling --model net_g_latest.pth --images <LR folder> [--out FILE.md]
"""
import argparse
import os.path as osp
import sys
from typing import Dict, List, Sequence

import numpy as np
import torch

if __package__ in (None, ''):
    sys.path.insert(0, osp.abspath(osp.join(__file__, osp.pardir, osp.pardir)))


def psnr_8bit(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float('inf') if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def measure(net, scale: int, images: Dict[str, np.ndarray], tiles: Sequence[int], pads: Sequence[int]) -> List[dict]:
    """One row per (tile, pad): per-image PSNR of the tiled output against the whole one, max |diff|."""
    from deconas_plugin.inference import upscale_image
    whole = {name: upscale_image(net, img, scale) for name, img in images.items()}
    rows = []
    for tile in tiles:
        for pad in pads:
            psnr, diff = {}, 0
            for name, img in images.items():
                tiled = upscale_image(net, img, scale, tile=tile, tile_pad=pad)
                psnr[name] = psnr_8bit(tiled, whole[name])
                diff = max(diff, int(np.abs(tiled.astype(np.int64) - whole[name].astype(np.int64)).max()))
            rows.append({'tile': tile, 'pad': pad, 'psnr': psnr, 'max_diff': diff})
    return rows


def markdown(rows: List[dict]) -> str:
    from deconas_plugin.utils.markdown_table import md_table
    return '\n'.join(md_table(['tile (LR px)', 'context (px)', 'PSNR tiled vs whole, min-max over the images (dB)',
                               'largest grey-level difference'], 'rrrr',
                              [[r['tile'], r['pad'], f"{min(r['psnr'].values()):.1f}-{max(r['psnr'].values()):.1f}",
                                r['max_diff']] for r in rows])) + '\n'


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.partition('\n')[0])
    p.add_argument('--model', required=True, help='a checkpoint tools/inference.py reads')
    p.add_argument('--images', required=True, help='folder of LR images')
    p.add_argument('--tiles', type=int, nargs='+', default=[32, 64])
    p.add_argument('--pads', type=int, nargs='+', default=[0, 4, 8, 16])
    p.add_argument('--out', help='write the Markdown table (with the command and date) to this file')
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from deconas_plugin.inference import list_inputs, load_network, read_image
    net, _, scale = load_network(args.model)
    images = {osp.splitext(osp.basename(f))[0]: read_image(f) for f in list_inputs(args.images)}
    table = markdown(measure(net, scale, images, args.tiles, args.pads))
    print(table)
    if args.out:
        from benchmarks.common import write_measurement
        sizes = ', '.join(f'{n} {i.shape[1]}x{i.shape[0]}' for n, i in images.items())
        write_measurement(args.out, 'Tiled against whole-image inference', 'tiling', argv,
                          f'fp32; LR images (w x h): {sizes}.\n\n' + table)


if __name__ == '__main__':
    main()
