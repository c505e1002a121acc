"""``benchmark.md`` from a result: the header, the summary table, and one section per ``md_<name>``
renderer (each lives in its section's module)."""
from typing import List

from .common import fmt, faster_text
from .config import SECTIONS, TITLES
from .controller import md_controller
from .data import md_data
from .inference import md_inference
from .machine import recorded_machine, section_machine
from .options import defaults_text, md_options
from .precision import md_precision
from .retrain import md_retrain, summary_retrain
from .supernet import md_supernet
from .zeromask import md_zeromask

RENDERERS = {'supernet': md_supernet, 'zeromask': md_zeromask, 'controller': md_controller,
             'inference': md_inference, 'data': md_data, 'options': md_options, 'precision': md_precision,
             'retrain': md_retrain}


def render_markdown(result: dict) -> str:
    m, cfg = result['machine'], result['config']
    lines = [
        f'# DeCoNAS benchmark: {m["device_name"]}',
        '',
        f'- CPU: {m["cpu"]}, {m["cores"]} cores ({m["usable_cores"]} usable; '
        f'{"flags: " + " ".join(m["cpu_flags"]) if m.get("cpu_flags") else "CPU flags not recorded"}), '
        f'torch threads {m["torch_threads"]} '
        f'({cfg.get("threads_reason", "")})',
        f'- torch {m["torch"]}, Python {m["python"]}, device `{m["device"]}`'
        + (f' (CUDA {m.get("cuda")}, cuDNN {m.get("cudnn")})' if m['device'].startswith('cuda') else ''),
        f'- load average at start {m.get("load_avg_start")}, at end {m.get("load_avg_end")}; started '
        f'{result["started"]}, wall {result.get("wall_s", 0):.0f} s' + (' (--quick)' if cfg.get('quick') else ''),
        f'- command: `{" ".join(result.get("command") or [])}`' + (
            ' (other sections kept from earlier runs: see each section)' if '--merge' in (result.get('command') or [])
            else ''),
    ] + md_machines(result) + md_probe(m) + [
        '',
        'Ratios are measured side by side in one process (A/B interleaved ABBA, each after a warm-up, '
        'medians); absolute times on a shared machine are noisy, the ratios much less.',
        '',
    ] + md_summary(result)
    several = len(md_machines(result)) > 0
    for name, sec in result['sections'].items():
        lines += [f'## {TITLES[name]}', '']
        if 'error' in sec and name != 'zeromask':
            lines += [f'**failed**: `{sec["error"]}`', '']
            continue
        lines += RENDERERS[name](sec, cfg, result)
        on = f' on {machine_label(recorded_machine(sec, result))}' if several else ''
        stamp = (f'measured {sec["measured"]}{on} by `{" ".join(sec.get("command") or [])}`; '
                 if sec.get('measured') else '')
        lines += ['', f'_{stamp}section wall time {sec.get("wall_s", 0):.0f} s_', '']
    return '\n'.join(lines).rstrip() + '\n'


def machine_label(m) -> str:
    """A machine as a section records it (``section_machine``), in words; None: not recorded."""
    if m is None:
        return 'a machine not recorded'
    name = m['device_name'] if m['device'] == 'cpu' else f'{m["device_name"]} (CPU {m["cpu"]})'
    return f'{name}, {m["cores"]} cores, torch {m["torch"]}, {m["torch_threads"]} thread(s)'


def md_machines(result) -> List[str]:
    """The header line that says which machine measured which section, when they are not all the
    machine of the latest run (the header's CPU and torch lines); none otherwise."""
    latest = machine_label(section_machine(result['machine']))
    by_label = {}
    for name, sec in result['sections'].items():
        by_label.setdefault(machine_label(recorded_machine(sec, result)), []).append(str(SECTIONS.index(name) + 1))
    if set(by_label) <= {latest}:
        return []
    return ['- sections by the machine that measured them (the lines above describe the latest run\'s): '
            + '; '.join(f'{", ".join(nums)}: {label}' for label, nums in by_label.items())]


def md_summary(result) -> List[str]:
    secs = {k: v for k, v in result['sections'].items() if 'error' not in v or k == 'zeromask'}
    if not secs:
        return []
    yes = lambda ok: '**met**' if ok else '**NOT met**'  # noqa: E731
    out = ['## Summary', '', '| measurement | result | goal | |', '|---|---|---|---|']
    s = secs.get('supernet')
    if s:
        out.append(f'| 1. child step, supernet / fixed net (mean of {len(s["per_genotype"])} genotypes) | '
                   f'{s["mean_ratio"]:.3f} (min {s["min_ratio"]:.3f}, max {s["max_ratio"]:.3f}) | '
                   f'<= {s["goal_ratio_max"]:.2f} | {yes(s["meets_goal"])} |')
    s = secs.get('zeromask')
    if s:
        if 'error' in s:
            out.append(f'| 2. sliced vs zero-mask supernet | failed: {s["error"]} | >= 1.5x | **NOT met** |')
        else:
            out.append(f'| 2. child step, zero-mask / sliced (mean density {s["mean_density"]:.2f}) | '
                       f'{s["mean_speedup"]:.2f}x (min {s["min_speedup"]:.2f}, max {s["max_speedup"]:.2f}); outputs '
                       f'equal (max diff {s["max_abs_diff"]:.0e}) | >= {s["goal_speedup_min"]:.1f}x | '
                       f'{yes(s["meets_goal"])} |')
    s = secs.get('controller')
    if s:
        for r in (r for r in s['configs'] if r['device'] == 'cpu'):
            out.append(f'| 3. controller, CPU, FF{int(r["ff"])}: ms per genotype, sample + log-prob | single '
                       f'{r["single_ms"]:.1f}, batched {r["batched_ms"]:.2f}; child draws: single '
                       f'{r["child_draw_single_ms"]:.1f}, batched {r["child_draw_batched_ms"]:.2f} | '
                       f'<= {s["goal_ms"]:.0f} ms | batched {yes(r["batched_ms"] <= s["goal_ms"])}, single '
                       f'{yes(r["single_ms"] <= s["goal_ms"])} |')
    s = secs.get('inference')
    if s:
        rows = {r['model']: r for r in s['rows']}
        dn = next((r for n, r in rows.items() if n.startswith('DeCoNASNet')), None)
        carn = next((r for n, r in rows.items() if n.startswith('CARN (multi')), None)
        if dn and carn and dn['lr_hw'] == carn['lr_hw']:
            out.append(f'| 4. inference x2 {dn["lr_hw"][1]}x{dn["lr_hw"][0]}, DeCoNASNet / CARN time | '
                       f'{dn["ms"] / carn["ms"]:.2f} (MACs {dn["macs"] / carn["macs"]:.2f}; '
                       f'{fmt(dn["gmac_per_s"], 1)} vs {fmt(carn["gmac_per_s"], 1)} GMAC/s) | - | |')
    s = secs.get('data')
    if s:
        out.append(f'| 5. PairedImageDataset samples/s, LMDB / disk | {s["ratio_lmdb_over_disk"]:.2f} '
                   f'({s["lmdb_samples_per_s"]:.0f} vs {s["disk_samples_per_s"]:.0f}) | - | |')
        r = s.get('reward')
        if r:
            out.append(f'| 5. reward patch, whole 2040x1356 image / 480-px sub-image LMDB | {r["speedup"]:.1f}x '
                       f'({r["whole_ms_per_patch"]:.1f} vs {r["sub_lmdb_ms_per_patch"]:.1f} ms) | - | |')
    s = secs.get('options')
    if s:
        out.append(f'| 6. child-step defaults | {defaults_text(s, secs.get("precision"))} | - | |')
    s = secs.get('precision')
    if s:
        for r in (r for r in s['variants'] if r['autocast']):
            out.append(f'| 7. retrain PSNR-Y, {r["name"]} - fp32 ({s["setup"]["iters"]} iterations; fp32 seed noise) | '
                       f'{r["psnr_diff"]:+.3f} dB (seed noise {s["seed_noise_psnr_db"]:.3f} dB): '
                       f'{"within" if r["within_seed_noise"] else "beyond"} seed noise; {faster_text(r["speedup"])} | '
                       f'- | |')
    s = secs.get('retrain')
    if s:
        out += summary_retrain(s)
    return out + ['']


def md_probe(m) -> List[str]:
    p = m.get('threads_probe')
    if not p:
        return []
    parts = ', '.join(f'{k.split("_")[1]} thread(s) {v:.1f} ms' for k, v in p.items() if k.startswith('threads_'))
    worst = ', '.join(f'{k}: {v:.0f} ms' for k, v in p['max_ms'].items())
    return [f'- intra-op threads probe (conv3x3 32->32 on 4x48x48, forward + backward, median): {parts} '
            f'(worst: {worst})']
