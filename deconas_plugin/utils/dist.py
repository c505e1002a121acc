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
        _collective('broadcast')
        dist.broadcast(tensor, src)
    return tensor


def broadcast_module_(module: torch.nn.Module, src: int = 0):
    """Rank ``src``'s parameters and buffers on every rank (BasicSR seeds each rank differently)."""
    if is_distributed():
        _collective('weight broadcast')
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src)


def all_reduce_mean_(tensors: Iterable[torch.Tensor], what: str = 'all-reduce'):
    """Average ``tensors`` over ranks in place, with one flat all-reduce (``what`` names it in a ``PeerError``)."""
    tensors = [t for t in tensors if t is not None]
    if not is_distributed() or not tensors:
        return
    _collective(what)
    flat = _flatten_dense_tensors(tensors)
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    for t, reduced in zip(tensors, _unflatten_dense_tensors(flat, tensors)):
        t.copy_(reduced)


def average_gradients_(module: torch.nn.Module):
    """Average the gradients of the parameters that have one (those the step used)."""
    all_reduce_mean_((p.grad for p in module.parameters() if p.grad is not None), 'gradient all-reduce')


def mean_over_ranks(value: float, device) -> float:
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    all_reduce_mean_([t], 'metric all-reduce')
    return float(t)


# ------------------------------------------------------------------ process group, stalls, waits
DEFAULT_TIMEOUT_S = 300  # dist_params.timeout: how long any collective may wait for a peer
RANK0_WORK_TIMEOUT_S = 24 * 3600  # how long the other ranks wait for rank 0's validation / checkpoint
STALL_GRACE_S = 5  # after a failed collective: how long to wait for the other ranks to say they are alive

_GROUP = {'store': None, 'timeout_s': DEFAULT_TIMEOUT_S}
_STEP = {'iter': None, 'collective': None}  # where the run is, for the error of a failed collective


class PeerError(RuntimeError):
    """A collective failed because a rank stopped answering (stalled past ``dist_params.timeout``, or died)."""


def init_process_group(backend: str, timeout_s: float = DEFAULT_TIMEOUT_S):
    """``torch.distributed.init_process_group`` from the ``env://`` variables, on a store of this attempt only.

    torchrun (static rendezvous) keeps one store for all the restarts of a group, and torch >= 2.14
    no longer prefixes the keys with the restart count: a restarted rank could read the address an
    earlier group's rank published and wait in gloo's connectFullMesh for a process that no longer
    exists (connection refused until gloo's timeout). The keys here are prefixed with
    ``TORCHELASTIC_RESTART_COUNT``, so every group meets on keys of its own. ``timeout_s`` bounds
    the set-up and every collective (gloo: the operation raises; nccl: its watchdog ends the process).
    """
    import datetime
    import os
    timeout = datetime.timedelta(seconds=float(timeout_s))
    store, rank, world_size = next(dist.rendezvous('env://', timeout=timeout))
    store = dist.PrefixStore(f"deconas/attempt_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/", store)
    dist.init_process_group(backend=backend, store=store, rank=rank, world_size=world_size, timeout=timeout)
    _GROUP.update(store=store, timeout_s=float(timeout_s))


def end_process_group(clean: bool = True):
    """Destroy the process group before the interpreter exits (nothing to do without one).

    gloo's worker thread lets go of a collective only after the caller has returned from it. If the
    interpreter is already finalizing then, releasing the collective's tensors needs the GIL, Python
    ends the thread instead, and the process aborts ("terminate called without an active exception",
    status -6) after a run that succeeded. Destroying the group joins gloo's threads first, once
    nothing else holds the group (a DistributedDataParallel model does: let it go before).

    ``clean``: every rank ends at the same point of the run (finished, or stopped by a signal). The
    other ranks then tell rank 0, which may serve the store, that they no longer need it, and rank 0
    waits for them (at most ``dist_params.timeout``) before it destroys the group. After a failed
    collective (a peer died or stalled) nobody waits: gloo's group is destroyed at once (nothing is
    queued any more: it cannot hang); nccl's teardown may wait for peers, so nccl leaves it to the exit.
    """
    import datetime
    if not (dist.is_available() and dist.is_initialized()):
        return
    store, world_size = _GROUP['store'], dist.get_world_size()
    if clean and store is not None and world_size > 1:
        try:
            if dist.get_rank() == 0:
                store.wait([f'ended/{r}' for r in range(1, world_size)],
                           datetime.timedelta(seconds=_GROUP['timeout_s']))
            else:
                store.set(f'ended/{dist.get_rank()}', '1')
        except Exception:  # noqa: BLE001  (a rank left without ending, or the store's host is gone)
            clean = False
    if clean or dist.get_backend() == 'gloo':
        dist.destroy_process_group()


def set_step(current_iter: int):
    """Record the training iteration the next collectives belong to (named in a ``PeerError``)."""
    _STEP.update(iter=current_iter, collective=None)


def _collective(name: str):
    _STEP['collective'] = name


def ranks_not_answering(grace_s: float = STALL_GRACE_S) -> list:
    """After a failed collective: the ranks that do not say they are alive within ``grace_s`` seconds.

    Every rank that sees the failure writes an "alive" key to the group's store (served by torchrun's
    agent or by rank 0's store thread, which answer even while rank 0's Python is stuck); the ranks
    whose key does not appear are the ones that stopped answering. The wait ends early when this
    process gets a stop signal (torchrun stopping the group). None if the store cannot tell.
    """
    import time

    from .preemption import received_signal
    store = _GROUP['store']
    if store is None:
        return None
    try:
        store.set(f'alive/{dist.get_rank()}', '1')
        keys = [f'alive/{r}' for r in range(dist.get_world_size())]
        deadline = time.monotonic() + grace_s
        while not store.check(keys) and time.monotonic() < deadline and received_signal() is None:
            time.sleep(0.05)
        return [r for r, key in enumerate(keys) if not store.check([key])]
    except Exception:  # noqa: BLE001  (the store itself is gone: its host died)
        return None


def peer_error(error: Exception) -> PeerError:
    """A ``PeerError`` for ``error`` (raised by a collective) naming the iteration, the collective, this
    rank and the ranks that did not answer."""
    missing = ranks_not_answering(min(STALL_GRACE_S, _GROUP['timeout_s'] / 2))
    who = (f'rank {missing[0]}' if missing and len(missing) == 1 else
           f'ranks {missing}' if missing else 'a peer')  # [] on the stalled rank itself: the others left
    where = f"iteration {_STEP['iter']}" if _STEP['iter'] is not None else 'set-up'
    if _STEP['collective']:
        where += f" ({_STEP['collective']})"
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
    return PeerError(f"{where}: {who} did not answer rank {dist.get_rank()} (stalled past dist_params.timeout = "
                     f"{_GROUP['timeout_s']:g} s, or died); the run stops here, the last complete training state "
                     f"is intact (resume with --auto_resume). Cause: {first_line}")


def any_rank(flag: bool, device) -> bool:
    """Whether ``flag`` is true on any rank (one 1-element all-reduce; ``flag`` itself in one process)."""
    if not is_distributed():
        return bool(flag)
    _collective('stop-request agreement')
    t = torch.tensor([int(flag)], dtype=torch.int32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def wait_for_rank0(label: str):
    """Every rank returns once rank 0 has called this with the same ``label`` (after writing checkpoints
    or validating, which rank 0 does alone). The others wait on the store, not in a collective, so
    a validation longer than ``dist_params.timeout`` is not taken for a stalled rank."""
    import datetime
    if not is_distributed():
        return
    store = _GROUP['store']
    if store is None:  # a group made elsewhere: a plain barrier
        _collective(f'barrier after {label}')
        dist.barrier()
        return
    key = f'rank0_done/{label}'
    if dist.get_rank() == 0:
        store.set(key, '1')
    else:
        store.wait([key], datetime.timedelta(seconds=RANK0_WORK_TIMEOUT_S))
