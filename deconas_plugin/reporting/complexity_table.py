"""Parameters and MACs of BasicSR networks, at the SR papers' convention, as a table.

Convention (the one of CARN, FALSR and DeCoNAS tables): MACs of one forward pass whose **output is
a 1280x720 HR image**, i.e. on an LR input of ``round(1280 / s) x round(720 / s)`` (nearest integer,
halves up): 640x360 for x2, 427x240 for x3 (1280 / 3 = 426.67 is rounded up, so the output is
1281x720), 320x180 for x4. Other HR sizes with ``hr_size``.

MACs are counted by ``mmengine.analysis.get_model_complexity_info`` (its ``flops`` entry: fvcore's
jit-trace counter, where one multiply-accumulate counts 1; a conv counts
``prod(weight.shape) * H_out * W_out`` (no bias), adaptive average pooling counts one per input
element, element-wise ops (ReLU, sigmoid, add, mul, mean of ops) and pixel shuffle count 0).

Counting a whole 640x360 input on a small CPU takes about a minute for a 1.7M-parameter net (and
much longer for RDN), so by default (``method='auto'``) the count is **extrapolated from small
inputs and verified**:

* For a stride-1, "same"-padded fully convolutional net every conv counts
  ``a_conv * h * w``; a channel attention adds ``C * h * w`` for its average pool and a constant
  for its two 1x1 convs on the pooled 1x1 map. So ``MACs(h, w) = a*h*w + d`` exactly, and two
  sizes fix ``a`` and ``d``; nets with unpadded convs follow ``a*h*w + b*h + c*w + d`` (four
  sizes fix it).
* The fit is accepted only if it reproduces, to the MAC, a count at a third size whose
  residues modulo 16 equal the target's (so padding-to-a-multiple effects would show). Otherwise
  (strided or windowed nets, input-dependent shapes) the target size is counted directly.

For the paper DeCoNASNet at x2 the extrapolated count equals the direct 640x360 count exactly
(382,899,027,968; checked once, it takes a minute). ``method='exact'`` always counts at the target
size; ``method='scaled'`` raises if the verification fails.

Parameters are ``sum(p.numel())`` over all (unique) parameters, trainable or not; for CARN with
``multi_scale: true`` that includes the two upsamplers ``forward`` does not use (the paper's
1,592K). MACs count only what ``forward`` runs.
"""
import contextlib
import copy
import json
import logging
import math
import os.path as osp
import re
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import yaml
from torch import nn

from ..complexity import PAPER_HR_SIZE  # (W, H) of the HR output
from ..utils.checkpoint import atomic_write_text
from ..utils.markdown_table import md_table
from ..utils.option_file import read_option_file

FIT_SIZES = ((16, 16), (24, 24))  # (h, w) of the a*h*w + d fit
BILINEAR_SIZES = ((16, 16), (16, 24), (24, 16), (24, 24))  # (h, w) of the a*h*w + b*h + c*w + d fit
DIRECT_BELOW = 48 * 48  # targets this small are counted directly


class ComplexityError(ValueError):
    """A user error: unknown arch, bad spec, unreadable option file, a network that does not build."""


# ------------------------------------------------------------------------------------------ sizes
def lr_size(scale: int, hr_size: Sequence[int] = PAPER_HR_SIZE) -> Tuple[int, int]:
    """(h, w) of the LR input whose x``scale`` output is ``hr_size`` = (W, H), rounded to nearest
    (halves up): x2 -> (360, 640), x3 -> (240, 427), x4 -> (180, 320)."""
    if not isinstance(scale, int) or scale < 1:
        raise ComplexityError(f'scale must be a positive integer, got {scale!r}')
    w, h = hr_size
    return int(math.floor(h / scale + 0.5)), int(math.floor(w / scale + 0.5))


# ------------------------------------------------------------------------------------------ counts
def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@contextlib.contextmanager
def _quiet():
    """Silence mmengine's 'unsupported operator' log lines and the jit tracer's warnings."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            yield
    finally:
        logger.setLevel(level)


def count_macs(model: nn.Module, h: int, w: int, in_ch: int = 3) -> int:
    """MACs of ``model`` on one (1, in_ch, h, w) input, by mmengine's analysis.

    ``FlopAnalyzer`` is what ``get_model_complexity_info`` reports as ``flops`` (mmengine counts one
    multiply-add as one flop), without its second trace for activations: same number, half the time.
    The input is built here so that parameter-free models work.
    """
    from mmengine.analysis import FlopAnalyzer
    from mmengine.analysis.jit_handles import elementwise_flop_counter
    params = next(model.parameters(), None)
    device = params.device if params is not None else torch.device('cpu')
    was_training = model.training
    model.eval()
    try:
        with _quiet(), torch.no_grad():
            analyzer = FlopAnalyzer(model, (torch.rand(1, in_ch, h, w, device=device), ))
            # A global average pool written as a mean (channel attention may be) counts like
            # adaptive_avg_pool2d, one per input value, so the count does not depend on how it is written.
            analyzer.set_op_handle('aten::mean', elementwise_flop_counter(1, 0))
            macs = analyzer.total()
    finally:
        model.train(was_training)
    return int(macs)


def _solve(points: Dict[Tuple[int, int], int], bilinear: bool):
    """Integer-exact fit of MACs(h, w) = a*h*w + d, or a*h*w + b*h + c*w + d; None if not integral."""
    from fractions import Fraction
    if not bilinear:
        (p1, m1), (p2, m2) = points.items()
        a = Fraction(m2 - m1, p2[0] * p2[1] - p1[0] * p1[1])
        coef = (a, Fraction(0), Fraction(0), m1 - a * p1[0] * p1[1])
    else:
        (h1, w1), (h2, w2) = BILINEAR_SIZES[0], BILINEAR_SIZES[3]
        f11, f12, f21, f22 = (points[p] for p in BILINEAR_SIZES)
        a = Fraction(f22 - f21 - f12 + f11, (h2 - h1) * (w2 - w1))
        b = Fraction(f21 - f11, h2 - h1) - a * w1
        c = Fraction(f12 - f11, w2 - w1) - a * h1
        coef = (a, b, c, f11 - a * h1 * w1 - b * h1 - c * w1)
    return coef


def _evaluate(coef, h: int, w: int):
    a, b, c, d = coef
    return a * h * w + b * h + c * w + d


def model_complexity(model: nn.Module, lr_hw: Sequence[int], method: str = 'auto', in_ch: int = 3) -> dict:
    """Params and MACs of ``model`` on an LR input of ``lr_hw`` = (h, w).

    Returns ``dict(params, macs, lr_hw, macs_method)``; ``macs_method`` is ``'direct'`` (counted at
    ``lr_hw``) or ``'scaled (a*h*w + d, verified at WxH)'`` (see the module doc). ``macs`` is None
    (with ``macs_error``) for a model without parameters (e.g. the numpy-based Bicubic, which the
    tracer would count as 0) or one the jit tracer cannot follow.
    ``method``: ``'auto'`` (extrapolate if verified, else direct), ``'exact'`` (always direct),
    ``'scaled'`` (extrapolate; raise ComplexityError if the verification fails).
    """
    if method not in ('auto', 'exact', 'scaled'):
        raise ValueError(f"method must be 'auto', 'exact' or 'scaled', got {method!r}")
    h, w = (int(v) for v in lr_hw)
    out = {'params': count_params(model), 'lr_hw': (h, w), 'macs': None, 'macs_method': None}
    if out['params'] == 0:  # e.g. Bicubic: interpolation in numpy, nothing for the counter to see
        out['macs_error'] = 'no learnable layers, interpolation not counted'
        return out
    try:
        if method == 'exact' or (method == 'auto' and h * w <= DIRECT_BELOW):
            out['macs'], out['macs_method'] = count_macs(model, h, w, in_ch), 'direct'
            return out
        verify = (32 + h % 16, 32 + w % 16)
        counts = {p: count_macs(model, *p, in_ch) for p in FIT_SIZES}
        m_verify = count_macs(model, *verify, in_ch)
        for bilinear in (False, True):
            if bilinear:
                counts.update({p: count_macs(model, *p, in_ch) for p in BILINEAR_SIZES if p not in counts})
            coef = _solve({p: counts[p] for p in (BILINEAR_SIZES if bilinear else FIT_SIZES)}, bilinear)
            pred = _evaluate(coef, h, w)
            if _evaluate(coef, *verify) == m_verify and pred.denominator == 1 and pred >= 0:
                form = 'a*h*w + b*h + c*w + d' if bilinear else 'a*h*w + d'
                out['macs'] = int(pred)
                out['macs_method'] = f'scaled ({form}, verified at {verify[1]}x{verify[0]})'
                return out
        if method == 'scaled':
            raise ComplexityError(
                f'MACs of {type(model).__name__} are not a verified polynomial in h, w (strided or windowed layers?); '
                "count them at the target size with method='exact'")
        out['macs'], out['macs_method'] = count_macs(model, h, w, in_ch), 'direct'
    except ComplexityError:
        raise
    except Exception as e:  # noqa: BLE001  (a model the jit tracer cannot follow: report, do not crash)
        out['macs_error'] = f'{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}'[:200]
    return out


# ------------------------------------------------------------------------------------ networks
def build_network(net_opt: dict) -> nn.Module:
    """A network from a BasicSR ``network_*`` option dict (``type`` + kwargs), via ARCH_REGISTRY.

    A ``DeCoNASNet`` without ``genotype`` gets the paper genotype.
    """
    if not isinstance(net_opt, dict) or 'type' not in net_opt:
        raise ComplexityError(f'a network option is a mapping with a "type" key, got {net_opt!r}')
    from basicsr.utils.registry import ARCH_REGISTRY as registry
    opt = copy.deepcopy(net_opt)
    arch = opt.pop('type')
    if arch not in registry:
        known = ', '.join(sorted(name for name, _ in registry))
        raise ComplexityError(f'unknown arch {arch!r}; registered archs: {known}')
    if arch in ('DeCoNASNet', ) and 'genotype' not in opt:
        from deconas_plugin.genotype import PAPER_GENOTYPE
        opt['genotype'] = PAPER_GENOTYPE.to_string()
    try:
        return registry.get(arch)(**opt)
    except (TypeError, ValueError) as e:  # bad kwargs, bad genotype, bad sizes
        raise ComplexityError(f'cannot build {arch} with {opt}: {e}') from None


_SPEC_SPLIT = re.compile(r',(?=\s*[A-Za-z_]\w*\s*=)')


def parse_arch_spec(spec: str) -> dict:
    """``'EDSR:num_feat=64,num_block=16,upscale=2'`` -> ``{'type': 'EDSR', 'num_feat': 64, ...}``.

    Values are read as YAML scalars/lists (``rgb_mean=[0.4,0.4,0.4]``, ``multi_scale=true``); a comma
    splits arguments only when a ``name=`` follows, so ``genotype=7,6,4,3,0,2,2,3,4,1`` stays whole.
    """
    arch, _, rest = spec.partition(':')
    arch = arch.strip()
    if not re.fullmatch(r'[A-Za-z_]\w*', arch):
        raise ComplexityError(f'bad arch spec {spec!r}: expected TYPE or TYPE:key=value,key=value')
    opt = {'type': arch}
    for item in (_SPEC_SPLIT.split(rest) if rest.strip() else []):
        key, eq, value = item.partition('=')
        key = key.strip()
        if not eq or not re.fullmatch(r'[A-Za-z_]\w*', key):
            raise ComplexityError(f'bad argument {item!r} in arch spec {spec!r}: expected key=value')
        try:
            opt[key] = yaml.safe_load(value) if value.strip() else ''
        except yaml.YAMLError:
            opt[key] = value.strip()
        if key == 'genotype' and not isinstance(opt[key], str):  # "7,6,4" reads as a string anyway
            opt[key] = value.strip()
    return opt


def read_option_networks(path: str) -> Tuple[List[Tuple[str, dict]], Optional[int], str]:
    """The ``network_*`` entries of a BasicSR option file: ([(key, net_opt)], scale, name)."""
    opt = read_option_file(path, ComplexityError)
    nets = [(k, v) for k, v in opt.items() if k.startswith('network_') and isinstance(v, dict)]
    if not nets:
        raise ComplexityError(f'option file {path} has no network_* entry (network_g, ...)')
    nets.sort(key=lambda kv: (kv[0] != 'network_g', kv[0]))
    return nets, opt.get('scale'), str(opt.get('name') or osp.splitext(osp.basename(path))[0])


def network_row(label: str, net_opt: dict, scale: Optional[int] = None, hr_size=PAPER_HR_SIZE,
                method: str = 'auto') -> dict:
    """One table row: build ``net_opt``, count params and MACs at the LR size of ``hr_size``.

    The scale is the network's ``upscale`` (else ``scale``; ``tools/complexity.py`` passes the
    option file's scale for ``network_g`` only); without either (e.g. a discriminator) the network
    is counted at the HR size itself (scale 1).
    """
    model = build_network(net_opt)
    s = net_opt.get('upscale', scale)
    s = 1 if s is None else s
    if not isinstance(s, int) or s < 1:
        raise ComplexityError(f'{label}: upscale/scale must be a positive integer, got {s!r}')
    in_ch = int(net_opt.get('num_in_ch', 3))
    info = model_complexity(model, lr_size(s, hr_size), method=method, in_ch=in_ch)
    row = {'network': label, 'arch': net_opt['type'], 'scale': s, 'params': info['params'],
           'lr_h': info['lr_hw'][0], 'lr_w': info['lr_hw'][1], 'macs': info['macs'],
           'macs_method': info['macs_method'] or 'n/a'}
    if 'macs_error' in info:
        row['macs_error'] = info['macs_error']
    return row


# ------------------------------------------------------------------------------------------ output
def _fmt_int(n: Optional[int]) -> str:
    return '-' if n is None else f'{n:,}'


def format_table(rows: Sequence[dict], hr_size=PAPER_HR_SIZE) -> str:
    """Markdown table of ``network_row`` dicts (params, LR input, MACs in G and exact)."""
    cells = [[r['network'], r['arch'], f"x{r['scale']}", _fmt_int(r['params']), f"{r['lr_w']}x{r['lr_h']}",
              '-' if r['macs'] is None else f"{r['macs'] / 1e9:.1f}", _fmt_int(r['macs']),
              r['macs_method'] if r['macs'] is not None else f"not counted: {r.get('macs_error', '?')}"] for r in rows]
    w, h = hr_size
    return '\n'.join(md_table(['network', 'arch', 'scale', 'params', 'input (w x h)', 'MACs (G)', 'MACs',
                               'MACs counted'], 'llrrlrrl', cells) + [
        '', f'MACs: mmengine.analysis (FlopAnalyzer, the flops of get_model_complexity_info), one forward pass '
        f'producing a {w}x{h} HR image (LR size rounded to the nearest integer); params: all parameters, including '
        'unused ones.'])


def write_json(rows: Sequence[dict], path: str, hr_size=PAPER_HR_SIZE):
    atomic_write_text(path, json.dumps({'hr_size': list(hr_size), 'rows': list(rows)}, indent=2) + '\n')
