"""The DNB's hand-written channel-attention backward (``_AttendedReLU``) against autograd's, side by side.

``python -m benchmarks.attention_backward --out benchmarks/cpu-2core`` times the retrain step (zero_grad,
forward, L1, backward, Adam) of the paper's DeCoNASNet (C = 64, N = 4, M = 4, x2) in one process, the two
variants interleaved (ABBA) with the same weights and batch: ``hand-written`` (the DNB as it is) and
``autograd`` (the same formula, ``_attended_relu``, differentiated by autograd), at a dispatch-bound size
(batch 1, LR 8x8) and at the benchmark's retrain size (batch 4, LR 48x48); one torch thread.
"""
import argparse
import copy
import datetime
import json

import os.path as osp
import subprocess

import torch

from deconas_plugin.archs import deconas_blocks
from deconas_plugin.archs.deconas_arch import DeCoNASNet
from deconas_plugin.genotype import PAPER_GENOTYPE
from deconas_plugin.utils.machine import describe_machine, load_average

from .timing import TrainStep, interleaved, median_ms

SIZES = {'dispatch-bound': (1, 8, 101), 'retrain': (4, 48, 15)}  # batch, LR patch, timed steps per variant


def _autograd_attended_relu(total, attention, num_terms=1):
    conv1, conv2 = attention.attention[1], attention.attention[3]
    return deconas_blocks._attended_relu(total, num_terms, conv1.weight, conv1.bias, conv2.weight, conv2.bias)[0]


class _Variant:
    """A TrainStep with ``deconas_blocks.attended_relu`` replaced by ``fn`` for its duration."""

    def __init__(self, step, fn):
        self.step, self.fn = step, fn

    def __call__(self):
        original = deconas_blocks.attended_relu
        deconas_blocks.attended_relu = self.fn
        try:
            return self.step()
        finally:
            deconas_blocks.attended_relu = original


def measure() -> dict:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = DeCoNASNet(PAPER_GENOTYPE)
    out = {}
    for name, (batch, patch, reps) in SIZES.items():
        x, y = torch.rand(batch, 3, patch, patch), torch.rand(batch, 3, 2 * patch, 2 * patch)
        steps = {'hand-written': _Variant(TrainStep(copy.deepcopy(net), x, y), deconas_blocks.attended_relu),
                 'autograd': _Variant(TrainStep(copy.deepcopy(net), x, y), _autograd_attended_relu)}
        losses = {k: float(step()) for k, step in steps.items()}  # the same first step: the same loss
        t = interleaved(steps, reps, 3, torch.device('cpu'))
        ms = {k: median_ms(v) for k, v in t.items()}
        out[name] = {'batch': batch, 'lr_patch': patch, 'reps': reps, 'ms': ms,
                     'speedup': ms['autograd'] / ms['hand-written'], 'first_loss': losses}
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.partition('\n')[0])
    p.add_argument('--out', required=True, help='folder of attention_backward.json')
    p.add_argument('--runs', type=int, default=2, help='measurements, one after the other (2)')
    args = p.parse_args(argv)
    commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True).stdout.strip()
    result = {'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
              'commit': commit, 'machine': describe_machine(torch.device('cpu')), 'threads': 1,
              'load_average': load_average(),
              'command': f'python -m benchmarks.attention_backward --out {args.out} --runs {args.runs}',
              'runs': [measure() for _ in range(args.runs)]}
    with open(osp.join(args.out, 'attention_backward.json'), 'w') as f:
        json.dump(result, f, indent=2)
    for name, r in ((n, r) for run in result['runs'] for n, r in run.items()):
        print(f"{name}: hand-written {r['ms']['hand-written']:.1f} ms, autograd {r['ms']['autograd']:.1f} ms, "
              f"autograd / hand-written {r['speedup']:.3f}")


if __name__ == '__main__':
    main()
