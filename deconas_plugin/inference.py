"""Upscale your own images with a trained network (``tools/inference.py``).

* The network: a DeCoNASNet checkpoint written by this project is enough (its ``genotype`` entry, and
  C, N, M, the scale and the image channels read off its layer shapes); any other registered arch
  (CARN, RDN, BasicSR's EDSR, or a DeCoNASNet with non-default ``img_range``/``rgb_mean``) takes the
  option file's ``network_g``. Weights: ``params_ema`` if the checkpoint has it, else ``params``.
* Images as OpenCV reads them unchanged: 8- or 16-bit, gray, BGR or BGRA. A gray image goes through
  an RGB network as (g, g, g) and comes out as the full-range luma of the output (the project's gray
  protocol); the alpha of an RGBA image is upscaled with bicubic interpolation; a 16-bit image stays
  16-bit (PNG; JPEG holds 8 bits only).
* Tiling (``tile`` > 0): the LR image is cut into tiles of ``tile`` px, each run with ``tile_pad`` px
  of its neighbours and cropped back, so memory does not grow with the image. Channel attention
  pools over its whole input, so a tile never sees exactly the statistics of the whole image: tiled
  output is close to, not equal to, the whole-image output (measured: docs/deployment.md, "Upscaling
  your own images").
"""
import os
import os.path as osp
from typing import List, Optional, Tuple

import cv2
import numpy as np
import torch

from .utils.checkpoint import atomic_open

IMAGE_EXTS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm')
PRECISIONS = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}
LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # RGB, full range (as utils/y_protocol.py)


class InferenceError(ValueError):
    """A user error (model, option file, arguments): the message names the file or value."""


class ImageError(Exception):
    """One input image cannot be read or written: the file is named and skipped."""


# ---------------------------------------------------------------------------------------- network
def _deconas_kwargs(sd: dict, genotype) -> dict:
    """DeCoNASNet keyword arguments read off a state dict (and the checkpoint's genotype)."""
    from .genotype_source import checkpoint_structure
    st = checkpoint_structure(sd)
    c = st['C']
    if 'upsample.2.weight' in sd:
        upscale = 4
    else:
        upscale = {4 * c: 2, 9 * c: 3}.get(sd['upsample.0.weight'].shape[0])
    if upscale is None:
        raise InferenceError(f"cannot tell the scale from upsample.0.weight {tuple(sd['upsample.0.weight'].shape)}")
    return dict(genotype=genotype, num_in_ch=sd['sfe1.weight'].shape[1], num_out_ch=sd['conv_last.weight'].shape[0],
                num_feat=c, num_blocks=st['N'], num_nodes=st['M'], upscale=upscale)


def load_network(model_path: str, opt_path: Optional[str] = None, param_key: Optional[str] = None):
    """(network in eval mode on the CPU, description, scale) from a checkpoint and an optional option file."""
    from basicsr.archs import build_network

    from .genotype_source import GenotypeSourceError, checkpoint_state_dict, genotype_from_checkpoint, load_checkpoint
    from .utils.option_file import read_option_file
    try:
        ckpt = load_checkpoint(model_path)
        sd, key = checkpoint_state_dict(ckpt, param_key)
    except GenotypeSourceError as e:
        raise InferenceError(str(e)) from None
    if opt_path:
        opt = read_option_file(opt_path, InferenceError)
        net_opt = dict(opt.get('network_g') or {})
        if 'type' not in net_opt:
            raise InferenceError(f'option file {opt_path} has no network_g.type')
        try:
            net = build_network(net_opt)
        except (KeyError, TypeError, ValueError) as e:
            raise InferenceError(f'cannot build network_g of {opt_path} ({net_opt.get("type")}): {e}') from None
        source = f"{net_opt['type']} from {opt_path}"
    else:
        if 'sfe2.weight' not in sd:
            raise InferenceError(f'{model_path} is not a DeCoNASNet checkpoint of this project: give the network with '
                                 '--opt <option file> (its network_g), as for CARN, RDN or EDSR')
        from .archs.deconas_arch import DeCoNASNet
        try:
            genotype, where = genotype_from_checkpoint(model_path)
            kwargs = _deconas_kwargs(sd, genotype.to_string())
            net = DeCoNASNet(**kwargs)
        except (GenotypeSourceError, ValueError) as e:
            raise InferenceError(f'{e} (or give --opt <option file>)') from None
        source = f"DeCoNASNet {genotype} (C={kwargs['num_feat']}, N={kwargs['num_blocks']}, M={kwargs['num_nodes']}; " \
                 f'genotype from {where})'
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        first = ' '.join(str(e).split())[:400]
        raise InferenceError(
            f'the weights in {model_path} [{key}] do not fit the network ({source}): {first}') from None
    scale = getattr(net, 'upscale', None) or getattr(net, 'scale', None)
    if scale is None:
        with torch.no_grad():
            scale = net(torch.rand(1, _in_channels(net), 8, 8)).shape[-1] // 8
    return net.eval(), f'{source}, weights {model_path} [{key}]', int(scale)


def _in_channels(net) -> int:
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            return m.in_channels
    return 3


# ---------------------------------------------------------------------------------------- forward
@torch.no_grad()
def run_network(net, x: torch.Tensor, scale: int, tile: int = 0, tile_pad: int = 10) -> torch.Tensor:
    """``net(x)`` for one (1, C, h, w) float tensor, whole (``tile`` = 0) or tile by tile.

    Each tile of ``tile`` x ``tile`` LR pixels is run with ``tile_pad`` pixels of context on every side
    (less at the image border) and only its own part of the output is kept.
    """
    if tile <= 0:
        return net(x)
    _, _, h, w = x.shape
    out = None
    for top in range(0, h, tile):
        for left in range(0, w, tile):
            bottom, right = min(top + tile, h), min(left + tile, w)
            t0, l0 = max(top - tile_pad, 0), max(left - tile_pad, 0)
            b0, r0 = min(bottom + tile_pad, h), min(right + tile_pad, w)
            y = net(x[:, :, t0:b0, l0:r0])
            if out is None:
                out = y.new_zeros(1, y.shape[1], h * scale, w * scale)
            out[:, :, top * scale:bottom * scale, left * scale:right * scale] = \
                y[:, :, (top - t0) * scale:(bottom - t0) * scale, (left - l0) * scale:(right - l0) * scale]
    return out


def upscale_image(net, img: np.ndarray, scale: int, device=torch.device('cpu'), dtype=torch.float32, tile: int = 0,
                  tile_pad: int = 10) -> np.ndarray:
    """Upscale an image as OpenCV reads it (H, W) / (H, W, 1|3|4), uint8 or uint16; same layout and dtype out."""
    from basicsr.utils import img2tensor, tensor2img
    if img.dtype not in (np.uint8, np.uint16):
        raise ImageError(f'unsupported pixel type {img.dtype} (8- or 16-bit images only)')
    peak = 65535.0 if img.dtype == np.uint16 else 255.0
    data = img.astype(np.float32) / peak
    if data.ndim == 2:
        data = data[:, :, None]
    alpha = None
    if data.shape[2] == 4:
        data, alpha = data[:, :, :3], data[:, :, 3]
    elif data.shape[2] not in (1, 3):
        raise ImageError(f'unsupported number of channels {data.shape[2]} (1, 3 or 4)')
    gray, in_ch = data.shape[2] == 1, _in_channels(net)
    if gray and in_ch == 3:
        data = np.repeat(data, 3, axis=2)
    elif not gray and in_ch == 1:  # a gray network gets the luma of a colour image
        data = (data[:, :, ::-1] * np.asarray(LUMA_WEIGHTS, np.float32)).sum(2, keepdims=True)
        gray = True
    x = img2tensor(np.ascontiguousarray(data), bgr2rgb=True, float32=True)[None].to(device=device, dtype=dtype)
    out = run_network(net, x, scale, tile, tile_pad).float().clamp_(0, 1)
    if gray and out.shape[1] == 3:  # full-range luma of the output (a gray image's own values are its Y)
        out = (out * torch.tensor(LUMA_WEIGHTS, device=out.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
    res = tensor2img(out[0].cpu(), rgb2bgr=True, out_type=np.float32, min_max=(0, 1))
    if res.ndim == 2 and img.ndim == 3:
        res = res[:, :, None]
    if alpha is not None:
        h, w = res.shape[:2]
        big = np.clip(cv2.resize(alpha, (w, h), interpolation=cv2.INTER_CUBIC), 0, 1)
        res = np.concatenate([res if res.ndim == 3 else res[:, :, None], big[:, :, None]], axis=2)
    return np.round(res * peak).astype(img.dtype)


# -------------------------------------------------------------------------------------------- files
def list_inputs(path: str) -> List[str]:
    """The image files of a folder (sorted; by extension), or ``[path]`` for a file."""
    if osp.isdir(path):
        files = sorted(osp.join(path, f) for f in os.listdir(path)
                       if osp.isfile(osp.join(path, f)) and f.lower().endswith(IMAGE_EXTS))
        if not files:
            raise InferenceError(f'no images ({", ".join(IMAGE_EXTS)}) in {path}')
        return files
    if not osp.exists(path):
        raise InferenceError(f'input not found: {path}')
    return [path]


def read_image(path: str) -> np.ndarray:
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageError('OpenCV cannot decode it (not an image, or a damaged file)')
    return img


def output_path(path: str, out_dir: str, img: np.ndarray, suffix: str = '', ext: str = 'auto') -> Tuple[str, str]:
    """(output file, note): ``<out_dir>/<name>[_suffix].<ext>``. ``auto`` keeps the input's extension,
    except that an image with alpha or 16 bits goes to PNG when the input's format cannot hold it."""
    stem, in_ext = osp.splitext(osp.basename(path))
    note = ''
    if ext == 'auto':
        ext = in_ext.lower().lstrip('.') or 'png'
        if ext in ('jpg', 'jpeg') and (img.dtype == np.uint16 or (img.ndim == 3 and img.shape[2] == 4)):
            ext = 'png'
    elif ext == 'jpg' and (img.dtype == np.uint16 or (img.ndim == 3 and img.shape[2] == 4)):
        note = 'JPEG keeps 8 bits and no alpha: written as 8-bit ' + ('BGR' if img.ndim == 3 else 'gray')
    return osp.join(out_dir, f"{stem}{'_' + suffix if suffix else ''}.{ext}"), note


def write_image(img: np.ndarray, path: str):
    """Encode by the extension (JPEG: 8 bits, no alpha) and write atomically."""
    ext = osp.splitext(path)[1].lower()
    if ext in ('.jpg', '.jpeg'):
        if img.dtype == np.uint16:
            img = np.round(img / 257.0).astype(np.uint8)
        if img.ndim == 3 and img.shape[2] == 4:
            img = img[:, :, :3]
    ok, buf = cv2.imencode(ext, img)
    if not ok:
        raise ImageError(f'OpenCV cannot encode {path}')
    with atomic_open(path) as f:
        f.write(buf.tobytes())
