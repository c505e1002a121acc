"""Section 6, ``options``: the supernet child step with autocast and torch.compile (``train.autocast``,
``train.compile``), and the defaults derived from them (``recommend``)."""
import contextlib
import copy
import shutil
import statistics
import tempfile
from typing import Optional

import torch
from torch import nn

from deconas_plugin.utils.markdown_table import md_table
from .common import error_text, fmt, make_supernet, random_batch, random_genotypes, say
from .precision import precision_verdict
from .timing import TrainStep, interleaved_ms, timed


def _variants(device: torch.device):
    """(name, autocast dtype) of the child-step options measured on ``device``."""
    out = [('default', None), ('autocast bf16', torch.bfloat16)]
    return out + ([('autocast fp16 (+GradScaler)', torch.float16)] if device.type == 'cuda' else [])


def _loss_tolerance(amp_dtype) -> float:
    return 1e-4 if amp_dtype is None else 2e-2


def bench_options(cfg: dict, device: torch.device) -> dict:
    base = make_supernet(cfg, device)
    state = copy.deepcopy(base.state_dict())
    genotypes = random_genotypes(cfg, cfg['options_genotypes'], seed_offset=2)
    variants = _variants(device)
    x, y = random_batch(cfg, device, cfg['seed'] + 2)
    steps = {name: TrainStep(copy.deepcopy(base), x, y, genotypes[0], amp_dtype=amp) for name, amp in variants}

    # Loss sanity: from identical weights and batches, the first loss_steps losses of each variant.
    losses = {}
    for name, _ in variants:
        model = steps[name].model
        model.load_state_dict(state)
        losses[name] = [float(steps[name]()) for _ in range(cfg['loss_steps'])]
    ref = losses['default']
    rows = {name: {'name': name, 'amp_dtype': str(amp).replace('torch.', '') if amp else None,
                   'losses': losses[name],
                   'loss_rel_diff': max(abs(a - b) / abs(b) for a, b in zip(losses[name], ref))}
            for name, amp in variants}
    for name, amp in variants:
        rows[name]['loss_ok'] = rows[name]['loss_rel_diff'] <= _loss_tolerance(amp)

    per_g = {name: [] for name in steps}
    for i, g in enumerate(genotypes):
        for st in steps.values():
            st.genotype = g
        ms = interleaved_ms(steps, cfg['options_reps'], cfg['warmup'], device)
        for name in steps:
            per_g[name].append(ms[name])
        say(f'  [{i + 1}/{len(genotypes)}] {g}: ' + ', '.join(f'{n} {per_g[n][-1]:.1f} ms' for n in steps))
    for name in steps:
        speedups = [d / v for d, v in zip(per_g['default'], per_g[name])]
        rows[name].update(ms=statistics.median(per_g[name]), per_genotype_ms=per_g[name],
                          speedup=sum(speedups) / len(speedups))
    out = {'variants': list(rows.values()), 'loss_steps': cfg['loss_steps'],
           'setup': {k: cfg[k] for k in ('num_feat', 'patch', 'batch', 'options_reps', 'warmup')}}
    del steps
    if cfg['compile']:
        try:
            out['compile'] = _bench_compile(cfg, device, base, state, genotypes)
        except Exception as e:  # noqa: BLE001  (no compiler, unsupported backend: report, go on)
            out['compile'] = {'error': error_text(e)}
            say(f'  torch.compile failed: {out["compile"]["error"]}')
    out['recommended'] = recommend(out)
    return out


@contextlib.contextmanager
def _cold_inductor_cache():
    """A fresh, empty inductor cache for the duration (compile times of a first-time run, not of a
    cache warmed by an earlier benchmark, which would make them seconds instead of minutes)."""
    from torch._inductor.runtime.cache_dir_utils import temporary_cache_dir
    tmp = tempfile.mkdtemp(prefix='deconas_bench_inductor_')
    try:
        with temporary_cache_dir(tmp):
            yield
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _bench_compile(cfg: dict, device: torch.device, base: nn.Module, state: dict, genotypes) -> dict:
    with _cold_inductor_cache():
        res = _bench_compile_cold(cfg, device, base, state, genotypes)
    res['inductor_cache'] = 'cold (fresh temporary directory)'
    return res


def _bench_compile_cold(cfg: dict, device: torch.device, base: nn.Module, state: dict, genotypes) -> dict:
    import torch._dynamo
    torch._dynamo.reset()
    eager = copy.deepcopy(base)
    eager.load_state_dict(state)
    comp_model = copy.deepcopy(base)
    comp_model.load_state_dict(state)
    compiled = torch.compile(comp_model)
    x, y = random_batch(cfg, device, cfg['seed'] + 3)
    g0 = genotypes[0]
    fresh = random_genotypes(cfg, cfg['compile_fresh'], seed_offset=3)
    eager_step = TrainStep(eager, x, y, g0)
    comp_step = TrainStep(compiled, x, y, g0, params=comp_model.parameters())
    first = timed(comp_step, device)  # compile (forward + backward graphs) + one step
    ms = interleaved_ms({'eager': eager_step, 'compiled': comp_step}, max(7, cfg['options_reps']), 1, device)
    steady, eager_ms = ms['compiled'], ms['eager']
    # loss check on identical weights: one more step of each from the same state
    eager.load_state_dict(state)
    comp_model.load_state_dict(state)
    eager_loss, comp_loss = float(eager_step()), float(comp_step())
    fresh_s = []
    for g in fresh:
        comp_step.genotype = g
        fresh_s.append(timed(comp_step, device))
        say(f'  torch.compile: fresh genotype {g}: first step {fresh_s[-1]:.1f} s')
    comp_step.genotype = g0
    repeated_ms = 1000 * timed(comp_step, device)  # back to the first genotype: cached graph?
    limit = torch._dynamo.config.recompile_limit
    res = {'first_compile_s': first - steady / 1000, 'first_step_s': first,
           'fresh_compile_s': [f - steady / 1000 for f in fresh_s],
           'repeated_first_step_ms': repeated_ms, 'steady_ms': steady, 'eager_ms': eager_ms,
           'steady_speedup': eager_ms / steady, 'loss_rel_diff': abs(comp_loss - eager_loss) / abs(eager_loss),
           'recompile_limit': limit,
           'break_even_steps_first': (
               (first - steady / 1000) / ((eager_ms - steady) / 1000) if eager_ms > steady else None),
           'break_even_steps_per_genotype': (
               statistics.median(f - steady / 1000 for f in fresh_s) / ((eager_ms - steady) / 1000)
               if eager_ms > steady and fresh_s else None)}
    say(f'  torch.compile: first compile {res["first_compile_s"]:.1f} s, steady {steady:.1f} ms vs eager '
         f'{eager_ms:.1f} ms ({res["steady_speedup"]:.2f}x), repeated genotype first step {repeated_ms:.1f} ms')
    torch._dynamo.reset()
    return res


def recommend(out: dict, precision: Optional[dict] = None) -> dict:
    """Defaults from the measurements: an option is on if it is >= 5 % faster with matching losses.

    ``autocast`` stays off (fp32) whatever its speed: it changes
    the trained network's numbers; ``autocast_fastest`` is the fastest dtype with matching losses,
    offered as ``train.autocast``, and ``autocast_psnr`` what section 7 (``precision``) measured of its
    effect on the retrained network's PSNR (``within seed noise``, ``beyond seed noise`` or ``not
    measured``). ``torch_compile_search`` is off (a recompile per fresh genotype);
    ``torch_compile_retrain`` is on if the steady step is >= 5 % faster and the first compile is
    repaid within 100k steps (the paper retrains for 1M).
    """
    rows = {r['name']: r for r in out['variants']}
    good = {n: bool(r['speedup'] >= 1.05 and r['loss_ok']) for n, r in rows.items() if n != 'default'}
    amp = [r for n, r in rows.items() if r.get('amp_dtype') and good[n]]
    best_amp = max(amp, key=lambda r: r['speedup']) if amp else None
    rec = {'autocast': None,
           'autocast_fastest': best_amp['amp_dtype'] if best_amp else None,
           'autocast_psnr': precision_verdict(precision, best_amp['amp_dtype']) if best_amp else None}
    comp = out.get('compile', {})
    rec['torch_compile_search'] = False
    rec['torch_compile_retrain'] = bool(comp.get('steady_speedup', 0) >= 1.05
                                        and (comp.get('break_even_steps_first') or 1e18) < 1e5)
    return rec


def md_options(s, cfg, result):
    st = s['setup']
    out = [f'Supernet child step, C={st["num_feat"]}, batch {st["batch"]}, LR patch {st["patch"]}; speedup = '
           f'default ms / variant ms (mean over genotypes); losses of the first {s["loss_steps"]} steps from '
           'identical weights and batches compared with the default (max relative difference).', '']
    out += md_table(['variant', 'ms', 'speedup', 'loss rel. diff', 'loss matches'], 'lrrrl',
                    [[r['name'], f'{r["ms"]:.1f}', f'{r["speedup"]:.2f}x', f'{r["loss_rel_diff"]:.1e}',
                      fmt(r['loss_ok'])] for r in s['variants']])
    c = s.get('compile')
    if c:
        out += ['']
        if 'error' in c:
            out.append(f'torch.compile: failed (`{c["error"]}`).')
        else:
            fresh = ', '.join(f'{v:.1f}' for v in c['fresh_compile_s'])
            be, be0 = c['break_even_steps_per_genotype'], c['break_even_steps_first']
            out += ['| torch.compile | value |', '|---|---:|',
                    f'| compile, first genotype (s; inductor cache {c.get("inductor_cache", "as found")}) | '
                    f'{c["first_compile_s"]:.1f} |',
                    f'| recompile, fresh genotype (s) | {fresh} |',
                    f'| first step on a repeated (cached) genotype (ms) | {c["repeated_first_step_ms"]:.1f} |',
                    f'| steady step compiled / eager (ms) | {c["steady_ms"]:.1f} / {c["eager_ms"]:.1f} |',
                    f'| steady speedup | {c["steady_speedup"]:.2f}x |',
                    f'| loss rel. diff vs eager | {c["loss_rel_diff"]:.1e} |',
                    f'| steps to repay the first compile (one fixed genotype, e.g. retraining) | '
                    f'{fmt(be0, 0) if be0 else "never"} |',
                    f'| steps per fresh genotype to repay its recompile (search) | {fmt(be, 0) if be else "never"} |',
                    f'| dynamo recompile limit | {c["recompile_limit"]} |']
    out += ['', '**Conclusion.** ' + _options_conclusion(s, result)]
    return out


def _options_conclusion(s, result) -> str:
    parts = []
    for r in s['variants']:
        if r['name'] == 'default':
            continue
        verdict = ('helps' if r['speedup'] >= 1.05 else 'does not help' if r['speedup'] > 0.95 else 'slows down')
        loss = 'losses match' if r['loss_ok'] else 'losses DIFFER beyond tolerance'
        parts.append(f'{r["name"]} {verdict} ({r["speedup"]:.2f}x, {loss})')
    text = '; '.join(parts) + '.'
    c = s.get('compile', {})
    if c and 'error' not in c:
        fresh = ', '.join(f'{v:.0f}' for v in c['fresh_compile_s'])
        repaid = fmt(c['break_even_steps_first'], 0) if c['break_even_steps_first'] else 'never'
        text += (f' torch.compile recompiles for every new genotype ({fresh} s '
                 f'each here, vs a {c["eager_ms"]:.0f} ms eager step) and falls back to eager after '
                 f'{c["recompile_limit"]} graphs; the search draws a fresh genotype nearly every step, so compile is '
                 f'off for the search. With one genotype (as in retraining a fixed DeCoNASNet) the steady step is '
                 f'{c["steady_speedup"]:.2f}x faster (measured on the supernet at a repeated genotype) and the first '
                 f'compile is repaid after {repaid} '
                 'steps.')
    text += (' **Defaults from these numbers** (' + result['machine']['device'] + '): '
             + defaults_text(s, result['sections'].get('precision')) + '.')
    return text


def defaults_text(s, precision: Optional[dict] = None) -> str:
    rec = recommend(s, precision)
    amp = rec['autocast_fastest']
    amp_row = next((r for r in s['variants'] if r.get('amp_dtype') == amp), None)
    if amp and amp_row:
        short = {'bfloat16': 'bf16', 'float16': 'fp16'}.get(amp, amp)
        verdict = rec['autocast_psnr']
        if verdict == 'within seed noise':
            autocast = (f'fp32 by default; `train.autocast: {short}` is {amp_row["speedup"]:.2f}x faster and its '
                        'retrain PSNR is within seed noise (section 7): an opt-in')
        elif verdict == 'beyond seed noise':
            autocast = (f'fp32 (autocast {short} is {amp_row["speedup"]:.2f}x faster but moves the retrain PSNR beyond '
                        'seed noise, section 7)')
        else:
            autocast = (f'fp32 (autocast {short} is {amp_row["speedup"]:.2f}x faster; its effect on the retrain PSNR '
                        'is not measured: section 7)')
    else:
        autocast = 'fp32 (no autocast)'
    parts = [autocast, 'torch.compile off for the search']
    c = s.get('compile', {})
    if c and 'error' not in c:
        worth = 'worth it' if rec['torch_compile_retrain'] else 'not worth it'
        parts.append(f'torch.compile for retraining a fixed genotype: {worth} '
                     f'(steady {c["steady_speedup"]:.2f}x, measured on the supernet at a repeated genotype)')
    return '; '.join(parts)
