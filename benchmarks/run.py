"""Running sections (``run_benchmark``, ``--merge``), writing ``benchmark.json`` / ``benchmark.md``, and
re-rendering the Markdown from the JSON (``rerender``)."""
import json
import os
import os.path as osp
import time
import traceback
from typing import List, Optional, Sequence

import torch

from .common import say
from .config import SECTIONS, TITLES
from .controller import bench_controller
from .data import bench_data
from .inference import bench_inference
from deconas_plugin.utils.machine import load_average

from .machine import machine_info, recorded_machine, section_machine
from .markdown import render_markdown
from .options import bench_options, recommend
from .precision import bench_precision
from .retrain import bench_retrain
from .supernet import bench_supernet
from .zeromask import bench_zeromask


RUNNERS = {'supernet': bench_supernet, 'zeromask': bench_zeromask, 'controller': bench_controller,
           'inference': bench_inference, 'data': bench_data, 'options': bench_options, 'precision': bench_precision,
           'retrain': bench_retrain}


def parse_only(only: Optional[str]) -> List[str]:
    if not only:
        return list(SECTIONS)
    out = []
    for item in only.split(','):
        item = item.strip()
        if not item:
            continue
        if item.isdigit() and 1 <= int(item) <= len(SECTIONS):
            item = SECTIONS[int(item) - 1]
        if item not in SECTIONS:
            raise ValueError(f'unknown section {item!r}; choose from {", ".join(SECTIONS)} (or 1-{len(SECTIONS)})')
        if item not in out:
            out.append(item)
    return sorted(out, key=SECTIONS.index)


def run_benchmark(out_dir: str, device: torch.device, sections: Sequence[str], cfg: dict,
                  argv: Optional[Sequence[str]] = None, merge: bool = False) -> dict:
    """Run ``sections``; after each, write ``benchmark.json`` and ``benchmark.md`` under ``out_dir``.

    ``merge``: keep the other sections of an existing ``benchmark.json`` (measured on the same
    device type); each section records when, on which machine and by which command it was measured.
    """
    os.makedirs(out_dir, exist_ok=True)
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True  # as BasicSR's train_pipeline
    result = {'machine': machine_info(device), 'config': dict(cfg), 'command': list(argv or []),
              'sections': {}, 'started': time.strftime('%Y-%m-%d %H:%M:%S')}
    path = osp.join(out_dir, 'benchmark.json')
    if merge and osp.isfile(path):
        with open(path, encoding='utf-8') as f:
            old = json.load(f)
        if old['machine']['device'].split(':')[0] != device.type:
            raise ValueError(f'--merge: {path} was measured on {old["machine"]["device"]}, not {device.type}')
        result['sections'] = {k: v for k, v in old['sections'].items() if k not in sections}
        for sec in result['sections'].values():
            stamp_kept_section(sec, old)
    t0 = time.perf_counter()
    for name in sections:
        say(f'== {TITLES[name]}')
        ts = time.perf_counter()
        try:
            res = RUNNERS[name](cfg, device)
        except Exception as e:  # noqa: BLE001  (record and go on with the other sections)
            traceback.print_exc()
            res = {'error': f'{type(e).__name__}: {e}'[:500]}
        res['wall_s'] = time.perf_counter() - ts
        res['measured'], res['command'] = time.strftime('%Y-%m-%d %H:%M:%S'), list(argv or [])
        res['machine'] = section_machine(result['machine'])
        result['sections'][name] = res
        result['sections'] = {k: result['sections'][k] for k in SECTIONS if k in result['sections']}
        result['wall_s'] = time.perf_counter() - t0
        result['machine']['load_avg_end'] = load_average()
        write_results(result, out_dir)
    return result


def stamp_kept_section(sec: dict, old: dict):
    """Give a section that ``--merge`` keeps from ``old`` (a ``benchmark.json``) its date, command and
    machine (``recorded_machine``) where it lacks them."""
    sec.setdefault('measured', old['started'])
    sec.setdefault('command', old.get('command'))
    sec['machine'] = recorded_machine(sec, old)


def write_results(result: dict, out_dir: str):
    from deconas_plugin.utils.checkpoint import atomic_write_text
    opts = result.get('sections', {}).get('options')
    if opts and 'error' not in opts:  # its autocast entry depends on section 7
        opts['recommended'] = recommend(opts, result['sections'].get('precision'))
    atomic_write_text(osp.join(out_dir, 'benchmark.json'), json.dumps(result, indent=2, default=str) + '\n')
    atomic_write_text(osp.join(out_dir, 'benchmark.md'), render_markdown(result))


def rerender(out_dir: str) -> str:
    """Rewrite ``benchmark.md`` (and the derived ``recommended`` entry) from ``benchmark.json``."""
    with open(osp.join(out_dir, 'benchmark.json'), encoding='utf-8') as f:
        result = json.load(f)
    write_results(result, out_dir)  # also refreshes the derived ``recommended`` entry
    return osp.join(out_dir, 'benchmark.md')
