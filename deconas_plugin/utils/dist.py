"""The few collective operations of a distributed search (no-ops in a single process).

The search keeps every rank on the same sub-network without DistributedDataParallel: rank 0's
sampled genotype is broadcast, and after backward the gradients of exactly the parameters that
genotype used (the same set on every rank) are averaged in one flat all-reduce. DDP would need
``find_unused_parameters=True`` (a graph traversal every step) because each child step leaves
most of the supernet unused.
"""
from typing import Iterable

import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def broadcast_(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Rank ``src``'s values into ``tensor`` on every rank (in place)."""
    if is_distributed():
        dist.broadcast(tensor, src)
    return tensor


def broadcast_module_(module: torch.nn.Module, src: int = 0):
    """Rank ``src``'s parameters and buffers on every rank (BasicSR seeds each rank differently)."""
    if is_distributed():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src)


def all_reduce_mean_(tensors: Iterable[torch.Tensor]):
    """Average ``tensors`` over ranks in place, with one flat all-reduce."""
    tensors = [t for t in tensors if t is not None]
    if not is_distributed() or not tensors:
        return
    flat = _flatten_dense_tensors(tensors)
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    for t, reduced in zip(tensors, _unflatten_dense_tensors(flat, tensors)):
        t.copy_(reduced)


def average_gradients_(module: torch.nn.Module):
    """Average the gradients of the parameters that have one (those the step used)."""
    all_reduce_mean_(p.grad for p in module.parameters() if p.grad is not None)


def mean_over_ranks(value: float, device) -> float:
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    all_reduce_mean_([t])
    return float(t)
