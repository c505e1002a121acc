"""Timing primitives: synchronized single calls, interleaved (ABBA) repetitions, medians, and the
child train step every training-speed section times."""
import contextlib
import statistics
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from deconas_plugin.genotype import Genotype


def _sync(device: torch.device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def timed(fn: Callable, device: torch.device) -> float:
    """Seconds of one call of ``fn`` (synchronized on CUDA)."""
    _sync(device)
    t = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t


def interleaved(fns: Dict[str, Callable], reps: int, warmup: int, device: torch.device) -> Dict[str, List[float]]:
    """``warmup`` untimed calls of each, then ``reps`` timed calls each, in ABBA order (seconds)."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    _sync(device)
    times = {name: [] for name in names}
    for r in range(reps):
        for name in (names if r % 2 == 0 else names[::-1]):
            times[name].append(timed(fns[name], device))
    return times


def median_ms(values: Sequence[float]) -> float:
    return 1000 * statistics.median(values)


def interleaved_ms(fns: Dict[str, Callable], reps: int, warmup: int, device: torch.device) -> Dict[str, float]:
    """``interleaved``, each function's median in ms."""
    return {name: median_ms(t) for name, t in interleaved(fns, reps, warmup, device).items()}


class TrainStep:
    """One child train step: zero_grad(set_to_none), forward, L1, backward, Adam step (as the search).

    ``genotype`` is passed to the model's forward when given (the supernet). ``amp_dtype`` runs the
    forward and the loss under autocast; fp16 on CUDA uses a GradScaler.
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, genotype: Optional[Genotype] = None,
                 amp_dtype: Optional[torch.dtype] = None, lr: float = 1e-4, params=None):
        self.model, self.x, self.y, self.genotype, self.amp_dtype = model, x, y, genotype, amp_dtype
        self.optimizer = torch.optim.Adam(model.parameters() if params is None else params, lr=lr)
        self.device_type = x.device.type
        # init_scale 2^10 (not 2^16): a first step skipped for inf gradients would break the loss comparison
        self.scaler = (torch.amp.GradScaler('cuda', init_scale=2.**10)
                       if amp_dtype == torch.float16 and self.device_type == 'cuda' else None)

    def __call__(self) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        ctx = (torch.autocast(self.device_type, dtype=self.amp_dtype) if self.amp_dtype is not None
               else contextlib.nullcontext())
        with ctx:
            out = self.model(self.x) if self.genotype is None else self.model(self.x, self.genotype)
            loss = F.l1_loss(out.float(), self.y)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return loss.detach()
