"""Helpers shared by the sections: the supernet, batches and random genotypes they time, the progress
log, and the number formatting of the Markdown report."""
import contextlib
import os
import random
from typing import List

import torch

from deconas_plugin.genotype import Genotype


def random_batch(cfg: dict, device: torch.device, seed: int, channels_last: bool = False):
    gen = torch.Generator().manual_seed(seed)
    p, b = cfg['patch'], cfg['batch']
    x = torch.rand(b, 3, p, p, generator=gen).to(device)
    y = torch.rand(b, 3, 2 * p, 2 * p, generator=gen).to(device)
    if channels_last:
        x, y = x.contiguous(memory_format=torch.channels_last), y.contiguous(memory_format=torch.channels_last)
    return x, y


def random_genotypes(cfg: dict, n: int, seed_offset: int = 0, fusion: bool = False) -> List[Genotype]:
    rng = random.Random(cfg['seed'] * 1000 + seed_offset)
    return [Genotype.random(cfg['num_nodes'], num_blocks=cfg['num_blocks'], fusion=fusion, rng=rng,
                            density=cfg['density']) for _ in range(n)]


def make_supernet(cfg: dict, device: torch.device, fusion: bool = False):
    from deconas_plugin.archs.deconet_supernet_arch import DeCoNetSupernet
    torch.manual_seed(cfg['seed'])
    return DeCoNetSupernet(num_feat=cfg['num_feat'], num_blocks=cfg['num_blocks'], num_nodes=cfg['num_nodes'],
                           upscale=2, feature_fusion_search=fusion).to(device)


def say(msg: str):
    print(msg, flush=True)


@contextlib.contextmanager
def quiet():
    """No stdout or stderr (tqdm bars, LMDB logs) from the data a section prepares before it measures."""
    with open(os.devnull, 'w') as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
        yield


def write_measurement(path: str, title: str, module: str, argv, text: str):
    """A measurement page at ``path``: ``title``, the date, the CPU, the torch version and the command
    (``python -m benchmarks.<module> <argv>``; None: this process's), then ``text``."""
    import sys
    import time

    from deconas_plugin.utils.machine import describe_machine
    argv_text = ' '.join(sys.argv[1:] if argv is None else argv)
    with open(path, 'w') as f:
        f.write(f'# {title}\n\nMeasured {time.strftime("%Y-%m-%d")} on {describe_machine(torch.device("cpu"))["cpu"]}, '
                f'torch {torch.__version__}.\nCommand: `python -m benchmarks.{module} {argv_text}`\n\n{text}')


def fmt(v, nd=2):
    if v is None:
        return '-'
    if isinstance(v, bool):
        return 'yes' if v else 'no'
    if isinstance(v, int):
        return f'{v:,}'
    return f'{v:.{nd}f}'


def error_text(e: Exception) -> str:
    """An exception in one line of at most 300 characters: its type and the first line of its message."""
    return f'{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ""}'[:300]


def faster_text(speedup: float) -> str:
    return f'{speedup:.2f}x faster' if speedup >= 1 else f'{1 / speedup:.2f}x slower'
