"""Activation memory of one training step, counted on any device: the bytes autograd keeps for the
backward pass (``saved_tensors_hooks``, each storage counted once) in one forward of a network at a
given batch and LR patch size (extrapolated from small sizes, see ``measure``), next to its weights,
gradients and Adam state.

A GPU needs these plus the output, the loss, cuDNN's workspace, the allocator's slack and the CUDA
context: the figures are a lower bound of a step's peak on a GPU, not a GPU measurement.

    python -m benchmarks.activation_memory [--batch 16] [--patch 64] [--out FILE.md]
"""
import argparse
import os.path as osp
import random
import sys
from typing import Callable, List, Tuple

import torch

if __package__ in (None, ''):
    sys.path.insert(0, osp.abspath(osp.join(__file__, osp.pardir, osp.pardir)))


def saved_bytes(forward: Callable[[], torch.Tensor]) -> int:
    """Bytes of the distinct storages autograd saves for backward while ``forward()`` runs."""
    storages = {}

    def pack(t):
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        forward()
    return sum(storages.values())


def networks() -> List[Tuple[str, Callable[[], torch.nn.Module], Callable]]:
    """(label, build, forward(model, x)) of the networks a paper-scale run trains (x2; the retrain networks are
    the benchmark's, ``benchmarks.retrain.retrain_models``)."""
    from deconas_plugin.genotype import Genotype  # the package first: it registers the archs
    from basicsr.utils.registry import ARCH_REGISTRY
    from benchmarks.retrain import retrain_models

    def supernet(n, m, genotype):
        return (lambda: ARCH_REGISTRY.get('DeCoNetSupernet')(num_feat=64, num_blocks=n, num_nodes=m, upscale=2),
                lambda model, x: model(x, genotype))

    half = Genotype.random(8, rng=random.Random(0))  # every bit 1 with probability 1/2: a typical child
    retrain = retrain_models()
    return [
        ('DeCoNASNet, the paper genotype (N4 M4 C64): a retrain step', retrain['DeCoNASNet'],
         lambda model, x: model(x)),
        ('supernet N4 M4 C64, the full genotype: the largest child step of search_N4_M4.yml',
         *supernet(4, 4, Genotype.full(4))),
        ('supernet N16 M8 C64, a random genotype (density 1/2): a typical child step of Table I',
         *supernet(16, 8, half)),
        ('supernet N16 M8 C64, the full genotype: the largest child step of Table I', *supernet(16, 8, Genotype.full(8))),
        ('CARN multi-scale (C64): a retrain step', retrain['CARN'], lambda model, x: model(x)),
    ]


SIZES = ((2, 16), (2, 32), (4, 32))  # (batch, LR patch): the fit's two points, then its check


def measure(batch: int, patch: int, which=None) -> List[dict]:
    """Per network: the saved bytes at ``SIZES``, fitted as ``a * batch * patch^2 + b`` (``b``: the weights
    autograd saves too) from the first two, checked on the third (within 1%), and extrapolated to
    ``batch`` x ``patch``; a large step need not fit in this machine's memory."""
    rows = []
    for label, build, forward in networks():
        if which is not None and not which(label):
            continue
        torch.manual_seed(0)
        model = build()
        counted = []
        for b, s in SIZES:
            x = torch.rand(b, 3, s, s)
            counted.append((b * s * s, saved_bytes(lambda: forward(model, x))))
        (n0, y0), (n1, y1), (n2, y2) = counted
        slope = (y1 - y0) / (n1 - n0)
        predicted = y0 + slope * (n2 - n0)
        if abs(predicted - y2) > 0.01 * y2:
            raise RuntimeError(f'{label}: saved bytes are not affine in batch x pixels ({counted})')
        params = sum(p.numel() * p.element_size() for p in model.parameters())
        rows.append({'network': label, 'activations': y0 + slope * (batch * patch * patch - n0),
                     'counted': counted, 'weights': params, 'weights_grads_adam': 4 * params})
    return rows


def markdown(rows: List[dict], batch: int, patch: int) -> str:
    from deconas_plugin.utils.markdown_table import md_table
    gib = 2**30
    return '\n'.join(md_table(['network', f'saved for backward at batch {batch}, LR {patch} (GiB)',
                               'weights + grads + Adam state (GiB)'], 'lrr',
                              [[r['network'], f"{r['activations'] / gib:.2f}", f"{r['weights_grads_adam'] / gib:.3f}"]
                               for r in rows])) + '\n'


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.partition('\n')[0])
    p.add_argument('--batch', type=int, default=16)
    p.add_argument('--patch', type=int, default=64, help='LR patch size (default 64: GT 128 at x2)')
    p.add_argument('--out', help='write the Markdown table (with the command and date) to this file')
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = measure(args.batch, args.patch)
    table = markdown(rows, args.batch, args.patch)
    print(table)
    if args.out:
        from benchmarks.common import write_measurement
        title = f'Activation memory of one training step (batch {args.batch}, LR patch {args.patch}, fp32, x2)'
        write_measurement(args.out, title, 'activation_memory', argv,
                          'What autograd keeps for the backward pass of one forward (each storage once), counted on '
                          f'the CPU at (batch, LR patch) = {", ".join(map(str, SIZES))}, fitted as '
                          'a * batch * pixels + b from the first two sizes, checked on the third (within 1%) and '
                          'extrapolated: the same tensors a GPU keeps, so a lower bound of the peak of a GPU step '
                          "(which adds the output, the loss, cuDNN's workspace, the allocator's slack and the CUDA "
                          'context).\n\n' + table)


if __name__ == '__main__':
    main()
