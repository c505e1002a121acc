"""Where a genotype comes from when only a file is given: an option file or a net checkpoint.

``genotype_from_option`` (an option file's ``network_g.genotype``) and ``genotype_from_checkpoint``
(a BasicSR net checkpoint; see there what a checkpoint can and cannot tell), with the checkpoint
loading they share (``load_checkpoint``, ``checkpoint_state_dict``). Used by ``inference.py``,
the report's drawing (``tools/draw_genotype.py``) and ``tools/export_onnx.py``; needs no matplotlib.
"""
import glob
import math
import os.path as osp
import re
from typing import Optional, Tuple

from .genotype import NUM_OPS, OP_NAMES, Genotype, GenotypeError


class GenotypeSourceError(ValueError):
    """A genotype cannot be read from the given file; the message says why and what to do."""


def genotype_from_option(path: str) -> Tuple[Genotype, dict]:
    """(genotype, network_g) of a BasicSR option file whose ``network_g`` is a DeCoNASNet."""
    from .utils.option_file import read_option_file
    net = read_option_file(path, GenotypeSourceError).get('network_g')
    if not isinstance(net, dict):
        raise GenotypeSourceError(f'option file {path} has no network_g mapping')
    if net.get('type') != 'DeCoNASNet' or 'genotype' not in net:
        raise GenotypeSourceError(
            f'network_g of {path} is {net.get("type")!r}' + ('' if 'genotype' in net else ' without a genotype')
            + ': expected a DeCoNASNet with a genotype')
    try:
        return Genotype.parse(net['genotype'], num_nodes=net.get('num_nodes', 4),
                              num_blocks=net.get('num_blocks', 4)), net
    except GenotypeError as e:
        raise GenotypeSourceError(f'network_g.genotype of {path}: {e}') from None


def load_checkpoint(path: str):
    """``torch.load`` on the CPU; tensors-only first, full unpickling only if the file needs it."""
    import pickle

    import torch
    if not osp.isfile(path):
        raise GenotypeSourceError(f'checkpoint not found: {path}')
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError:  # e.g. a Genotype object stored in it: a trusted file of the project
        pass
    except Exception as e:  # noqa: BLE001  (truncated, not a torch file, ...)
        raise GenotypeSourceError(f'cannot load checkpoint {path}: {type(e).__name__}: {e}') from None
    try:
        return torch.load(path, map_location='cpu', weights_only=False)
    except Exception as e:  # noqa: BLE001
        raise GenotypeSourceError(f'cannot load checkpoint {path}: {type(e).__name__}: {e}') from None


def checkpoint_state_dict(ckpt, param_key: Optional[str] = None) -> Tuple[dict, str]:
    """(state dict, key used) of a BasicSR net checkpoint: ``param_key``, else ``params_ema``, else
    ``params``, else the dict itself when it maps names to tensors. A ``module.`` prefix is removed."""
    import torch
    if not isinstance(ckpt, dict):
        raise GenotypeSourceError(f'a net checkpoint is a dict, got {type(ckpt).__name__}')
    keys = [param_key] if param_key else ['params_ema', 'params']
    for key in keys:
        if isinstance(ckpt.get(key), dict):
            sd, used = ckpt[key], key
            break
    else:
        if param_key:
            raise GenotypeSourceError(f'checkpoint has no {param_key!r} entry (it has: {sorted(map(str, ckpt))})')
        if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            sd, used = ckpt, '(top level)'
        else:
            raise GenotypeSourceError(
                f'no network weights in the checkpoint: expected a params or params_ema entry, got keys '
                f'{sorted(map(str, ckpt))[:8]}')
    return {k[7:] if k.startswith('module.') else k: v for k, v in sd.items()}, used


def checkpoint_structure(sd: dict) -> dict:
    """Sizes read off a DeCoNASNet state dict: C, N, M, inputs per (node, op), LFF/GFF inputs."""
    if 'sfe2.weight' not in sd or 'blocks.0.local_fusion.weight' not in sd or 'global_fusion.weight' not in sd:
        raise GenotypeSourceError('the weights are not a DeCoNASNet\'s (no sfe2 / blocks.0.local_fusion / '
                                  'global_fusion parameters)')
    c = sd['sfe2.weight'].shape[0]
    n = 1 + max(int(m.group(1)) for k in sd for m in [re.match(r'blocks\.(\d+)\.', k)] if m)
    m_nodes = 1 + max(int(m.group(1)) for k in sd for m in [re.match(r'blocks\.0\.attention\.(\d+)\.', k)] if m)
    n_in = {}
    for node in range(1, m_nodes + 1):
        for op in range(NUM_OPS):
            w = sd.get(f'blocks.0.ops.node{node}_op{op}.' + ('pointwise_weight' if op == 1 else 'weight'))
            n_in[node, op] = 0 if w is None else w.shape[1] // c
    return {'C': c, 'N': n, 'M': m_nodes, 'n_in': n_in,
            'local': sd['blocks.0.local_fusion.weight'].shape[1] // c,
            'global': sd['global_fusion.weight'].shape[1] // c}


def _matches(g: Genotype, st: dict) -> bool:
    return (g.num_nodes == st['M'] and (g.num_blocks in (None, st['N']))
            and all(len(g.op_inputs(node, op)) * (node in g.live_nodes()) == k for (node, op), k in st['n_in'].items())
            and len(g.local_inputs()) == st['local'] and len(g.global_inputs(st['N'])) == st['global'])


def _sidecar_options(path: str):
    """BasicSR copies the option file into the experiment folder: ``<exp>/<name>.yml`` beside ``<exp>/models``."""
    folder = osp.dirname(osp.abspath(path))
    roots = [osp.dirname(folder)] if osp.basename(folder) == 'models' else []
    return sorted(p for r in roots for p in glob.glob(osp.join(r, '*.yml')))


def genotype_from_checkpoint(path: str) -> Tuple[Genotype, str]:
    """(genotype, where it came from) of a BasicSR net checkpoint of a DeCoNASNet.

    1. A ``genotype`` entry of the checkpoint dict, if any (string, list, mapping or Genotype).
    2. The layer shapes: they fix M, N and how many inputs each op (and each fusion conv) reads,
       but not which ones. The genotype is read off them when that is unique (every op of node i
       reads none or all of ``x_0..x_{i-1}``, every fusion conv reads all, or only the last, feature).
    3. Otherwise the option file BasicSR copied into the experiment folder (``<exp>/*.yml`` beside
       ``<exp>/models/``), if its genotype fits the shapes.
    Anything else raises a GenotypeSourceError that says which ops are ambiguous.
    """
    ckpt = load_checkpoint(path)
    if isinstance(ckpt, dict) and ckpt.get('genotype') is not None:
        try:
            return Genotype.parse(ckpt['genotype']), "the checkpoint's 'genotype' entry"
        except GenotypeError as e:
            raise GenotypeSourceError(f"the checkpoint's 'genotype' entry is not a genotype: {e}") from None
    sd, key = checkpoint_state_dict(ckpt)
    st = checkpoint_structure(sd)
    m, n = st['M'], st['N']
    ambiguous = []
    for node in range(1, m + 1):
        for op in range(NUM_OPS):
            k = st['n_in'][node, op]
            if k not in (0, node):
                ambiguous.append(f'node {node} {OP_NAMES[op]} reads {k} of x_0..x_{node - 1} '
                                 f'({math.comb(node, k)} possibilities)')
    fusion = st['local'] < m + 1 or st['global'] < n + 1
    for name, k, total in (('LFF', st['local'], m), ('GFF', st['global'], n)):
        if k - 1 not in (0, total):
            ambiguous.append(f'{name} reads {k} of {total + 1} features ({math.comb(total, k - 1)} possibilities)')
    if not ambiguous:
        codes = []
        for node in range(1, m + 1):
            for j in range(node):
                codes.append(sum(1 << (NUM_OPS - 1 - op) for op in range(NUM_OPS) if st['n_in'][node, op] == node))
        g = Genotype(tuple(codes), NUM_OPS, *(
            ((1 if st['local'] == m + 1 else 0, ) * m, (1 if st['global'] == n + 1 else 0, ) * n) if fusion else
            (None, None)))
        return g, f'the layer shapes of {key} (unique)'
    for opt_path in _sidecar_options(path):
        try:
            g, _ = genotype_from_option(opt_path)
        except GenotypeSourceError:
            continue
        if _matches(g, st):
            return g, f'the experiment option file {opt_path} (fits the layer shapes)'
    raise GenotypeSourceError(
        f'cannot tell the genotype of {path}: it has no genotype entry, and its layer shapes only fix how many '
        f'inputs each op reads, not which: ' + '; '.join(ambiguous) + '. Give the genotype (--genotype or an '
        'option file with --opt), or save it in the checkpoint under a "genotype" key.')
