"""Stage ``check``: the GPU paths run once. ``tests/test_cuda.py`` in selections (one part each), which
exercises every CUDA claim of the docs: a search and an fp16-autocast retrain saved and resumed on one
GPU, the default retrain being plain eager PyTorch, ``train.compile: true`` with fused Adam saved and
resumed, the benchmark's whole-step CUDA graph, the DNB's lean ops against the plain formula, the quick
benchmark on CUDA, and nccl where 2 GPUs exist."""
import os
import os.path as osp
import xml.etree.ElementTree as ET
from typing import List

from deconas_plugin.utils.markdown_table import md_table


def check_inputs(runner, stage):
    """Nothing to prepare: the tests make their own data."""


def environment(ctx: dict) -> dict:
    """The machine as torch sees it: devices, memory, capability and the TF32 settings (the versions of torch,
    CUDA and cuDNN are in every part's stamp)."""
    import torch
    out = {'cuda_available': torch.cuda.is_available(), 'device_count': torch.cuda.device_count(),
           'tf32_matmul': torch.backends.cuda.matmul.allow_tf32, 'tf32_cudnn': torch.backends.cudnn.allow_tf32,
           'devices': []}
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        out['devices'].append({'name': p.name, 'memory_gib': round(p.total_memory / 2**30, 1),
                               'capability': f'{p.major}.{p.minor}', 'multiprocessors': p.multi_processor_count})
    if ctx['device'].startswith('cuda') and not out['cuda_available']:
        raise RuntimeError('device cuda asked for, but torch.cuda.is_available() is False')
    return out


def cuda_tests(ctx: dict, path: str, select: str) -> dict:
    """``pytest -k <select> <path>`` in this process (the part's own: its time limit applies); per test:
    outcome, seconds and the failure message."""
    import time

    import pytest
    name = select.replace(' ', '_')[:60]
    xml = osp.join(ctx['logs'], f'pytest_{name}.xml')
    os.makedirs(ctx['logs'], exist_ok=True)
    t0 = time.perf_counter()
    code = pytest.main(['-q', '-p', 'no:cacheprovider', '-k', select, f'--junitxml={xml}', path])
    tests = _junit(xml) if osp.isfile(xml) else []
    counts = {k: sum(t['outcome'] == k for t in tests) for k in ('passed', 'failed', 'skipped')}
    return {'select': select, 'path': path, 'returncode': int(code), 'wall_s': time.perf_counter() - t0,
            'counts': counts, 'tests': tests, 'ok': int(code) in (0, 5) and counts['failed'] == 0}


def _junit(path: str) -> List[dict]:
    out = []
    for case in ET.parse(path).getroot().iter('testcase'):
        outcome, message = 'passed', None
        for kind in ('failure', 'error', 'skipped'):
            node = case.find(kind)
            if node is not None:
                outcome = 'skipped' if kind == 'skipped' else 'failed'
                message = (node.get('message') or node.text or '')[:500]
        out.append({'test': case.get('name'), 'outcome': outcome, 'seconds': float(case.get('time') or 0),
                    'message': message})
    return out


def summarize(parts: dict, ctx: dict) -> dict:
    tests = [t for p in parts.values() if p.get('status') == 'done' and 'tests' in (p.get('result') or {})
             for t in p['result']['tests']]
    return {'passed': sum(t['outcome'] == 'passed' for t in tests), 'failed': [t['test'] for t in tests
                                                                               if t['outcome'] == 'failed'],
            'skipped': [t['test'] for t in tests if t['outcome'] == 'skipped'],
            'parts_not_done': [n for n, p in parts.items() if p['status'] != 'done']}


def markdown(result: dict) -> List[str]:
    s = result.get('summary') or {}
    lines = [f'Tests: {s.get("passed", 0)} passed, {len(s.get("failed", []))} failed, {len(s.get("skipped", []))} '
             f'skipped' + (f'; parts not done: {", ".join(s["parts_not_done"])}' if s.get('parts_not_done') else '')
             + '.', '']
    tests = [t for p in result['parts'].values() for t in (p.get('result') or {}).get('tests', [])]
    lines += md_table(['test', 'outcome', 's', 'message'], 'llrl',
                      [[t['test'], t['outcome'], f'{t["seconds"]:.1f}',
                        t['message'].splitlines()[0][:150].replace('|', '/') if t['message'] else ''] for t in tests])
    env = (result['parts'].get('environment') or {}).get('result')
    if env:
        devices = ', '.join(f'{d["name"]} {d["memory_gib"]} GiB, sm {d["capability"]}' for d in env['devices'])
        lines += ['', f'Devices: {devices or "none"}; '
                  f'TF32 matmul {env["tf32_matmul"]}, TF32 cuDNN {env["tf32_cudnn"]}.']
    return lines

