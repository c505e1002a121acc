"""Counting the aten ops a training step dispatches: the CPU-side measure of how many kernels it launches.

On a GPU every dispatched aten op is (about) one kernel launch, so the count of a step is what the
CPU has to issue per step; unlike a time it does not depend on the machine's load, so the benchmark
reports it and a test may assert a ceiling. ``count_ops`` counts with a ``TorchDispatchMode``, which
sees every op below autograd: the forward, the backward ops autograd runs, and the optimizer's.
Views and metadata ops (``aten.view``, ``aten.t``, ``detach``) dispatch too and are counted: they are
cheap but each costs a dispatch on the CPU.
"""
import collections
from typing import Callable, Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode


class _OpCounter(TorchDispatchMode):

    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[str(func.overloadpacket).replace('aten.', '')] += 1
        return func(*args, **(kwargs or {}))


def count_ops(fn: Callable[[], object]) -> Dict[str, int]:
    """Aten ops dispatched by one call of ``fn``: ``{op name: calls}`` (e.g. ``{'convolution': 80, ...}``)."""
    counter = _OpCounter()
    with counter:
        fn()
    return dict(counter.counts)


def train_step_op_counts(model: nn.Module, lr_size: int = 8, batch: int = 1, scale: int = 2,
                         optimizer: Optional[str] = 'adam', seed: int = 0, genotype=None) -> dict:
    """Dispatched aten ops of one retrain step of ``model`` (L1 loss, ``torch.optim.Adam``) on the CPU
    (``genotype``: passed to the forward, a supernet's child step).

    Returns ``forward_backward`` (forward, L1 loss, backward), ``optimizer`` (zero_grad + Adam step,
    the foreach implementation, PyTorch's default on CUDA) and ``step`` (their sum), measured on the second step (the
    first one creates Adam's state), plus ``top``: the 12 most frequent ops of forward + backward. The
    counts do not depend on ``lr_size`` or ``batch``: a small input keeps the measurement quick.
    """
    gen = torch.Generator().manual_seed(seed)
    in_ch = getattr(model, 'num_in_ch', 3)
    out_ch = getattr(model, 'num_out_ch', 3)
    x = torch.rand(batch, in_ch, lr_size, lr_size, generator=gen)
    y = torch.rand(batch, out_ch, scale * lr_size, scale * lr_size, generator=gen)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, foreach=True) if optimizer == 'adam' else None

    def forward_backward():
        F.l1_loss(model(x) if genotype is None else model(x, genotype), y).backward()

    def optimizer_step():
        opt.step()
        opt.zero_grad(set_to_none=True)

    forward_backward()
    if opt is not None:
        optimizer_step()  # Adam's state exists from here on
    fb = count_ops(forward_backward)
    opt_counts = count_ops(optimizer_step) if opt is not None else {}
    n_fb, n_opt = sum(fb.values()), sum(opt_counts.values())
    return {'forward_backward': n_fb, 'optimizer': n_opt, 'step': n_fb + n_opt,
            'top': sorted(fb.items(), key=lambda kv: -kv[1])[:12]}
