"""A latency lookup table of a DeCoNAS search space, measured on the target device (FBNet / ProxylessNAS style).

``measure_table`` times every part a DeCoNASNet of the space can be made of, each on its own, on
one LR input of ``lr_size`` in the chosen precision:

* ``op{k}_in{n}``: mix-node op k (0 conv3x3, 1 sep_conv3x3, 2 dil_conv3x3) reading n = 1..M inputs
  (their concat, the ReLU and the conv, as the network runs it);
* ``node_ops{a}``: what a node does with its a = 0..K op outputs: their mean, the ReLU and the
  channel attention (a = 0: a node without ops, which passes on its predecessor);
* ``lff_in{n}``: the local feature fusion 1x1 conv over n = 1..M+1 features, plus the local residual;
* ``block_in{d}``: the dense 1x1 conv in front of block d = 2..N over d features (and the ReLU of x_0
  the ops share);
* ``gff_in{n}``: the global fusion 1x1 conv over n = 1..N+1 features, the 3x3 conv and the residual;
* ``stem`` (normalisation, SFENet), ``tail`` (UPNet, last conv, de-normalisation).

``predict(table, genotype)`` adds up the parts of a genotype's network (nodes that nothing reads
are not built, ``Genotype.live_nodes``). The table is a JSON file (``tools/latency_table.py``);
``search.latency_table`` makes the search's reward use it (``search.penalty: latency``).
"""
import json
import os.path as osp
import platform
import statistics
import time
from typing import Callable, Dict, Sequence

import torch
import torch.nn.functional as F

from .genotype import NUM_OPS, Genotype

PRECISIONS = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}
SIZE_KEYS = ('num_feat', 'num_nodes', 'num_blocks', 'upscale', 'num_in_ch', 'num_out_ch')
TABLE_VERSION = 1


class LatencyTableError(ValueError):
    """A latency table that cannot be read or does not fit the search space; the message says which."""


def _sync(device: torch.device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


@torch.no_grad()
def time_interleaved(fns: Dict[str, Callable[[], object]], device: torch.device, repeats: int = 10, warmup: int = 2,
                     statistic: str = 'median') -> Dict[str, float]:
    """Wall time in milliseconds of each function of ``fns`` (synchronised on CUDA) after ``warmup`` calls:
    the median of ``repeats`` calls, or their minimum (``statistic='min'``). Interleaved: every round
    calls each function once, so a burst of load from other jobs falls on all of them alike instead of
    on the few measured at that moment."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    _sync(device)
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            _sync(device)
            times[name].append((time.perf_counter() - t) * 1e3)
    return {name: min(ts) if statistic == 'min' else statistics.median(ts) for name, ts in times.items()}


def _parts(num_feat: int, num_nodes: int, num_blocks: int, upscale: int, num_in_ch: int, num_out_ch: int,
           lr_size: Sequence[int], device: torch.device, dtype: torch.dtype) -> Dict[str, Callable[[], object]]:
    """Every timed part as a closure over its own layers and inputs (random values: the time does not
    depend on them)."""
    from basicsr.archs.arch_util import Upsample
    from basicsr.archs.rcan_arch import ChannelAttention

    from .archs.deconas_blocks import CA_REDUCTION, ConvOp, build_op

    c, (h, w) = num_feat, lr_size

    def feat(n=1, ch=c):
        return [torch.rand(1, ch, h, w, device=device, dtype=dtype) for _ in range(n)]

    def mod(m):
        return m.to(device=device, dtype=dtype).eval()

    parts = {}
    for op in range(NUM_OPS):
        for n in range(1, num_nodes + 1):
            layer, xs = mod(build_op(op, n, c)), feat(n)
            parts[f'op{op}_in{n}'] = lambda layer=layer, xs=xs: layer(xs)
    attention = mod(ChannelAttention(c, CA_REDUCTION))
    outs = feat(NUM_OPS)
    for a in range(NUM_OPS + 1):
        def node(a=a):
            h_ = outs[0] if a <= 1 else sum(outs[1:a], outs[0]) / a
            return attention(F.relu(h_))
        parts[f'node_ops{a}'] = node
    for n in range(1, num_nodes + 2):
        layer, xs = mod(ConvOp(n, c, c, 1, pre_relu=False)), feat(n)
        parts[f'lff_in{n}'] = lambda layer=layer, xs=xs: layer(xs) + xs[0]
    for d in range(2, num_blocks + 1):
        layer, xs = mod(torch.nn.Conv2d(d * c, c, 1)), feat(d)
        parts[f'block_in{d}'] = lambda layer=layer, xs=xs: (F.relu(layer(torch.cat(xs, 1))), )
    x0 = feat()[0]
    parts['block_in1'] = lambda: F.relu(x0)  # the first block reads F_0 itself: only the shared ReLU
    global_conv = mod(torch.nn.Conv2d(c, c, 3, 1, 1))
    for n in range(1, num_blocks + 2):
        layer, xs = mod(ConvOp(n, c, c, 1, pre_relu=False)), feat(n)
        parts[f'gff_in{n}'] = lambda layer=layer, xs=xs: global_conv(layer(xs)) + xs[0]
    sfe1, sfe2 = mod(torch.nn.Conv2d(num_in_ch, c, 3, 1, 1)), mod(torch.nn.Conv2d(c, c, 3, 1, 1))
    img = feat(1, num_in_ch)[0]
    mean = torch.zeros(1, num_in_ch, 1, 1, device=device, dtype=dtype)
    parts['stem'] = lambda: sfe2(sfe1(img - mean))
    up, last = mod(Upsample(upscale, c)), mod(torch.nn.Conv2d(c, num_out_ch, 3, 1, 1))
    mean_out = torch.zeros(1, num_out_ch, 1, 1, device=device, dtype=dtype)
    parts['tail'] = lambda: last(up(x0)) + mean_out
    return parts


def measure_table(num_feat: int, num_nodes: int, num_blocks: int, upscale: int = 2, lr_size: Sequence[int] = (64, 64),
                  device='cpu', precision: str = 'fp32', repeats: int = 10, warmup: int = 2, num_in_ch: int = 3,
                  num_out_ch: int = 3, statistic: str = 'median') -> dict:
    """Time every part of the space (see the module doc); returns the table as a JSON-ready dict."""
    if precision not in PRECISIONS:
        raise LatencyTableError(f'precision must be one of {sorted(PRECISIONS)}, got {precision!r}')
    device = torch.device(device)
    parts = _parts(num_feat, num_nodes, num_blocks, upscale, num_in_ch, num_out_ch, tuple(lr_size), device,
                   PRECISIONS[precision])
    entries = time_interleaved(parts, device, repeats, warmup, statistic)
    return {
        'version': TABLE_VERSION, 'unit': 'ms', 'num_feat': num_feat, 'num_nodes': num_nodes,
        'num_blocks': num_blocks, 'upscale': upscale, 'num_in_ch': num_in_ch, 'num_out_ch': num_out_ch,
        'lr_size': list(lr_size), 'device': str(device), 'device_name': device_name(device),
        'precision': precision, 'threads': torch.get_num_threads(), 'torch': torch.__version__,
        'repeats': repeats, 'warmup': warmup, 'statistic': statistic, 'entries': entries}


def device_name(device: torch.device) -> str:
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def predict(table: dict, genotype: Genotype) -> float:
    """Latency (ms) of the DeCoNASNet of ``genotype`` predicted from ``table``: the sum of its parts."""
    e, n = table['entries'], table['num_blocks']
    block = 0.0
    for node in genotype.live_nodes():
        active = [op for op in range(NUM_OPS) if genotype.op_inputs(node, op)]
        block += sum(e[f'op{op}_in{len(genotype.op_inputs(node, op))}'] for op in active)
        block += e[f'node_ops{len(active)}']
    block += e[f'lff_in{len(genotype.local_inputs())}']
    total = e['stem'] + e['tail'] + e[f'gff_in{len(genotype.global_inputs(n))}']
    # block_in1 is the ReLU of F_0 the first block's ops share; block_in{d} the dense 1x1 conv of block d
    total += n * block + sum(e[f'block_in{d}'] for d in range(1, n + 1))
    return total


def check_table(table: dict, source: str, **sizes) -> dict:
    """``table`` if it was measured for a network of ``sizes`` (num_feat, num_nodes, ...), else a
    LatencyTableError naming ``source``, the key and both values."""
    if not isinstance(table, dict) or not isinstance(table.get('entries'), dict):
        raise LatencyTableError(f'{source} is not a latency table (no "entries" mapping): make one with '
                                'python tools/latency_table.py')
    for key, value in sizes.items():
        if key in SIZE_KEYS and table.get(key) != value:
            raise LatencyTableError(f'latency table {source} was measured for {key} = {table.get(key)}, but the '
                                    f'search space has {key} = {value}: measure one for this space with '
                                    'tools/latency_table.py')
    need = ['stem', 'tail'] + [f'op{op}_in{k}' for op in range(NUM_OPS) for k in range(1, table['num_nodes'] + 1)]
    missing = [k for k in need if k not in table['entries']]
    if missing:
        raise LatencyTableError(f'latency table {source} lacks entries {missing[:4]}: measure it again with '
                                'tools/latency_table.py')
    return table


def load_table(path: str, **sizes) -> dict:
    """Read and check a latency table written by ``tools/latency_table.py``."""
    if not osp.isfile(path):
        raise LatencyTableError(f'latency table not found: {path} (make one with python tools/latency_table.py '
                                '--device cpu|cuda --out lut.json)')
    try:
        with open(path) as f:
            table = json.load(f)
    except (OSError, ValueError) as e:
        raise LatencyTableError(f'cannot read latency table {path}: {e}') from None
    return check_table(table, path, **sizes)
