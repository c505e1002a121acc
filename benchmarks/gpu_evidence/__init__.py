"""The GPU evidence runner (``tools/gpu_evidence.py`` is the CLI): what a few short runs on one GPU measure, in
stages of at most 7 minutes on an H200, each part under its own time limit, results written as they come.

* ``check`` (``check.py``): ``tests/test_cuda.py`` in selections (every CUDA claim of the docs, once).
* ``speed`` (``speed.py``): the CUDA rows of the benchmark, and the evidence for each opt-in CUDA path, with the
  benchmark's steps (``benchmarks.retrain``, ``.timing``).
* ``search`` (``search.py``): the paper's space on real images; does the final policy beat uniform sampling
  (scored as ``tools/derive.py`` scores)?
* ``retrain`` (``retrain.py``): the derived genotype vs random ones of its size, retrained and tested by search
  vs random's protocol (``deconas_plugin.pipelines.search_vs_random``), one run per part.

``plan.py`` holds the parts, sizes, limits and estimates (the full plan for an H200, the tiny plan for a
CPU in seconds); ``runner.py`` runs them (``Runner``), ``worker.py`` is one part's process, ``entry.py``
runs the project's entry points in that process, and ``prepare.py`` makes the data that travels with the
call (``.gpu/data``).
"""
from . import check, retrain, search, speed
from .plan import STAGE_LIMIT_S, STAGES, plan
from .prepare import prepare
from .runner import DEFAULT_DATA, EvidenceError, Runner, run_isolated, stamp

STAGE_MODULES = {'check': check, 'speed': speed, 'search': search, 'retrain': retrain}

__all__ = ['STAGES', 'STAGE_LIMIT_S', 'STAGE_MODULES', 'DEFAULT_DATA', 'EvidenceError', 'Runner', 'plan', 'prepare',
           'run_isolated', 'stamp']
