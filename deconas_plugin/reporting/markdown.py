"""The Markdown of a report: the results table (the paper's Table II layout) and its caption, the per-image
and complexity tables, the first screen (plain answers with numbers) and ``report.md`` itself."""
from typing import List, Optional

from ..utils.markdown_table import md_table

PAPER_X2 = [  # x2, Y, PSNR/SSIM on Set5, Set14, B100, Urban100: DeCoNAS paper Table II; RDN: Zhang et al. 2018
    ('Bicubic', '-', ('33.66/0.9299', '-', '-', '-')),
    ('CARN', '1,592K', ('37.76/0.9590', '33.52/0.9166', '32.09/0.8978', '31.92/0.9256')),
    ('DeCoNASNet (paper)', '1,713K', ('37.96/0.9594', '33.63/0.9175', '32.15/0.8986', '32.03/0.9265')),
    ('RDN', '~22M', ('38.24/0.9614', '34.01/0.9212', '32.34/0.9017', '32.89/0.9353')),
]
BENCHMARKS = ('Set5', 'Set14', 'B100', 'Urban100')
PENALTY_TEXT = {'params': 'params / params_max', 'macs': 'MACs / MACs_max (search.penalty: macs)',
                'latency': 'latency / latency_max (search.penalty: latency, from search.latency_table)'}


# --------------------------------------------------------------------------------------- tables
def results_table(rows: List[dict], test_sets: List[str], caption: str = '') -> str:
    """The paper's Table II layout: rows = methods, a scale and a params column, cells PSNR/SSIM (test-set
    means), then the mean PSNR-Y gain over bicubic and the 2-seed spread of each row (when known),
    under ``caption`` (a paragraph; none when empty)."""
    lines = []
    for r in rows:
        cells = []
        for ts in test_sets:
            m = r['metrics'].get(ts)
            cells.append('-' if not m else f"{m.get('psnr', float('nan')):.2f}/{m.get('ssim', float('nan')):.4f}")
        params = '-' if not r['params'] else f"{r['params']:,}"
        gains = r.get('gain_over_bicubic') or {}
        gain = ' / '.join(f'{gains[ts]:+.2f}' for ts in test_sets if gains.get(ts) is not None) or '-'
        spread = r.get('seed_spread')
        spread_cell = ('-' if r['arch'] == 'Bicubic' else 'not measured' if not spread else
                       f"{spread['psnr_spread']:.3f} (seeds {', '.join(str(x) for x in spread['seeds'])})")
        lines.append([r['label'], f"x{r['scale']}", params, *cells, gain, spread_cell])
    table = md_table(['Method', 'Scale', 'Params', *test_sets, 'PSNR-Y gain over bicubic (dB)', 'seed spread (dB)'],
                     'lcr' + 'r' * len(test_sets) + 'rr', lines)
    return '\n'.join(([caption, ''] if caption else []) + table) + '\n'


def table_caption(rows: List[dict], test_sets: List[str], training: Optional[str],
                  seed_spread: Optional[dict]) -> str:
    """The results table's caption: what the cells are, the training, whether every trained network
    beats bicubic on each test mean (said here, where the table is read), and where the seed spread comes from."""
    n_images = {ts: max((len(r.get('per_image', {}).get(ts, {})) for r in rows), default=0) for ts in test_sets}
    sizes = ', '.join(f'{ts}: {n} images' for ts, n in n_images.items() if n)
    text = [f"Mean PSNR-Y (dB) / SSIM-Y over each test set{f' ({sizes})' if sizes else ''}."]
    if training:
        text.append(training)
    below = [(r['label'], ts, g) for r in rows for ts, g in (r.get('gain_over_bicubic') or {}).items()
             if g is not None and g <= 0]
    trained = [r for r in rows if r.get('gain_over_bicubic')]
    if below:
        text.append('**Not above bicubic:** ' + '; '.join(f'{label} on {ts} ({g:+.2f} dB)' for label, ts, g in below)
                    + '.')
    elif trained:
        text.append('Every trained network is above bicubic on every test mean.')
    if seed_spread:
        text.append(f"Seed spread: |difference| of the test-mean PSNR-Y between two trainings that differ only in "
                    f"manual_seed ({', '.join(str(x) for x in seed_spread['seeds'])}), measured "
                    f"{seed_spread['date']} on {seed_spread['machine']} (`{seed_spread['file']}`); a difference "
                    'between rows smaller than it is noise.')
        if seed_spread.get('note'):
            text.append(seed_spread['note'])
    elif trained:
        text.append('Seed spread: not measured for this setting, so differences between rows have no noise '
                    'estimate.')
    return ' '.join(text)


def per_image_md(rows: List[dict], test_sets: List[str]) -> str:
    """One table per test set: PSNR-Y / SSIM-Y of each image (rows) and method (columns)."""
    out = []
    for ts in test_sets:
        images = sorted({k for r in rows for k in r.get('per_image', {}).get(ts, {})})
        if not images:
            continue
        cells = []
        for k in images:
            values = [r.get('per_image', {}).get(ts, {}).get(k) for r in rows]
            cells.append([k] + ['-' if not m else f"{m['psnr']:.2f}/{m['ssim']:.4f}" for m in values])
        out += [f'Per image, {ts} (PSNR-Y dB / SSIM-Y, from the saved outputs):', '',
                *md_table(['Image'] + [r['label'] for r in rows], 'l' + 'r' * len(rows), cells), '']
    return '\n'.join(out)


def complexity_md(rows: List[dict]) -> str:
    cells = [[r['label'], r['arch'], f"x{r['scale']}", f"{r['params']:,}", f"{r['lr_w']}x{r['lr_h']}",
              '-' if r['macs'] is None else f"{r['macs'] / 1e9:.1f}", r['macs_method']] for r in rows]
    return '\n'.join(md_table(['Network', 'Arch', 'Scale', 'Params', 'LR input (w x h)', 'MACs (G)', 'MACs counted'],
                              'llcrlrl', cells)) + '\n'


# ----------------------------------------------------------------------------------- first screen
def _vs(row: dict, other: dict, ts: str) -> str:
    """``row`` minus ``other`` on ``ts`` in words, against the seed spreads of both (when measured)."""
    diff = row['metrics'][ts]['psnr'] - other['metrics'][ts]['psnr']
    spreads = [r['seed_spread']['psnr_spread'] for r in (row, other) if r.get('seed_spread')]
    if len(spreads) < 2:
        return f'{diff:+.2f} dB (no seed spread measured for this setting)'
    verdict = 'larger than' if abs(diff) > max(spreads) else 'within'
    return f'{diff:+.2f} dB, {verdict} the seed spreads ({spreads[0]:.3f} and {spreads[1]:.3f} dB)'


def first_screen(r: dict) -> List[str]:
    """Plain answers, with numbers, to: what was searched, what was found, how it compares with bicubic
    and CARN at what size, and whether the search did better than chance (from the signal probe)."""
    s, g, sp = r['search'], r['genotype'], r['search']['space']
    n_bits = sum(c in '01' for c in g['bits'])
    lines = [f"**Searched:** DeCoNAS cells of N = {sp['num_blocks']} blocks x M = {sp['num_nodes']} nodes, "
             f"C = {sp['num_feat']} features (2^{n_bits} = {2 ** n_bits:,} genotypes), x{r['scale']}; the "
             f"controller sampled {s['history_rows']} genotypes ({s['distinct_genotypes']} distinct) over "
             f"{s['last_iter']:,} child iterations, reward = PSNR-Y on the reward images - {s['alpha']} x "
             f"{PENALTY_TEXT[s.get('penalty', 'params')]}."]
    d = g.get('derive') or {}
    lines.append(f"**Found:** `{g['decimal']}`, a DeCoNASNet of {g['params']:,} parameters"
                 + (f" (best reward of {d['samples']} genotypes drawn from the trained controller)."
                    if d.get('samples') else '.'))
    rows = r['results']['rows']
    by_arch = {row['arch']: row for row in rows}
    found, carn, bicubic = by_arch.get('DeCoNASNet'), by_arch.get('CARN'), by_arch.get('Bicubic')
    for ts in r['results']['test_sets']:
        scored = [row for row in (found, carn, bicubic) if row and ts in row['metrics']]
        if not scored:
            continue
        parts = []
        for row in scored:
            text = f"{row['label']} {row['metrics'][ts]['psnr']:.2f} dB"
            extra = [f"{row['params']:,} params"] if row.get('params') else []
            gain = (row.get('gain_over_bicubic') or {}).get(ts)
            if gain is not None:
                extra.append(f'{gain:+.2f} dB over bicubic')
            if row.get('seed_spread'):
                extra.append(f"seed spread {row['seed_spread']['psnr_spread']:.3f} dB")
            parts.append(text + (f" ({', '.join(extra)})" if extra else ''))
        n = max(len(row.get('per_image', {}).get(ts, {})) for row in scored)
        line = f"**Test ({ts}{f', {n} images' if n else ''}, mean PSNR-Y):** " + '; '.join(parts) + '.'
        if found and carn and ts in found['metrics'] and ts in carn['metrics']:
            size = (f" with {found['params'] / carn['params']:.2f}x its parameters"
                    if found['params'] and carn['params'] else '')
            line += f" Found minus CARN{size}: {_vs(found, carn, ts)}."
        lines.append(line)
    sig = s.get('signal')
    if not sig:
        lines.append('**Better than chance?** Not measured: the search did not probe the architecture signal '
                     '(`search.signal_probe: 0`).')
    else:
        gap = abs(sig['full_psnr'] - sig['empty_psnr'])
        numbers = (f"median SNR of one reward {sig['median_snr']:.2f} over {sig['phases']} phases, full minus empty "
                   f"cell {gap:.3f} dB")
        if sig['learned_from_noise']:
            verdict = ('No: the architecture moved the reward less than the reward noise did '
                       f'({numbers}), so the controller learned from noise and the found cell is not expected to '
                       'beat random cells of its size.')
        elif gap < 0.1:
            verdict = (f'Not shown: the cells barely differed on the shared weights ({numbers}; below about 0.1 dB '
                       'the retrained cells differ by their seed noise), so the found cell is not expected to beat '
                       'random cells of its size.')
        else:
            verdict = (f'Possibly: the architecture moved the reward above its noise ({numbers}); '
                       '`tools/search_vs_random.py` measures whether the found network beats random ones.')
            if sig['median_snr'] < 3:
                verdict += (' One reward ranks two cells unreliably below SNR 3, but the controller averages many: '
                            'a search at a median SNR of 1.4 and 0.9 dB found a cell above random '
                            '(docs/search-evaluation.md).')
        e = s.get('entropy')
        if e and e.get('drop') is not None:
            verdict += (f" (The policy entropy fell {100 * e['drop']:.0f}% over the search: the controller "
                        'converged, on whatever signal it had.)')
        lines.append(f'**Better than chance?** {verdict}')
    return lines

def render_markdown(r: dict, table: str) -> str:
    g, s = r['genotype'], r['search']
    sp = s['space']
    out = [f"# DeCoNAS report: x{r['scale']}", '', f"Written {r['created']}.", '', '## In short', '']
    out += [f'- {line}' for line in r['summary']] + ['']
    out += ['## Found network', '',
            f"Genotype (decimal codes, op 0 = conv3x3 is the most significant bit): `{g['decimal']}`  ",
            f"Bits (K = 3 per (node, input) group): `{g['bits']}`  ",
            f"Search space: N = {sp['num_blocks']} blocks, M = {sp['num_nodes']} nodes, C = {sp['num_feat']}, "
            f"feature-fusion search {'on' if sp['feature_fusion_search'] else 'off'}; parameters of the found "
            f"DeCoNASNet: **{g['params']:,}**.  ",
            f"Source: {g['source']}."]
    if g['derive']:
        d = g['derive']
        out.append(f"Derivation: best of {d.get('samples')} sampled genotypes ({d.get('distinct')} distinct), "
                   f"scored with the shared weights on the `{d.get('scored_on')}` images: PSNR-Y "
                   f"{d.get('psnr', float('nan')):.3f} dB, reward {d.get('reward', float('nan')):.3f} "
                   f"(alpha {d.get('alpha')}).")
    out += ['', f"![found cell]({r['figures']['cell']})", '']
    out += ['## Results', '', 'PSNR/SSIM on the Y channel (BT.601, not rounded to 8 bits), border of '
            f"{r['scale']} pixels cropped; a single-channel image is scored on its own values.", '', table,
            per_image_md(r['results']['rows'], r['results']['test_sets'])]
    if r['scale'] == 2 and any(t in BENCHMARKS for t in r['results']['test_sets']):
        out += ['Published x2 numbers, for reference (Bicubic, CARN and DeCoNASNet: the DeCoNAS paper, Table II, '
                'retrained 1M iterations on DIV2K; RDN: Zhang et al., CVPR 2018):', '',
                *md_table(['Method', 'Params', *BENCHMARKS], 'lrrrrr',
                          [[name, p, *cells] for name, p, cells in PAPER_X2]), '']
    out += ['## Complexity', '', 'Parameters and MACs of one forward pass producing a 1280x720 HR image '
            '(`deconas_plugin.reporting.complexity_table`).', '', complexity_md(r['complexity']['rows'])]
    out += ['## Search', '',
            f"{s['history_rows']} controller steps ({s['distinct_genotypes']} distinct genotypes), last controller "
            f"phase after child iteration {s['last_iter']}; reward = PSNR-Y - {s['alpha']} x "
            f"{PENALTY_TEXT[s.get('penalty', 'params')]}.",
            '']
    if s['best_sampled']:
        b = s['best_sampled']
        out += [f"Highest PSNR among the sampled genotypes: `{b['genotype']}` ({b['params']:,} params, "
                f"{b['psnr']:.3f} dB).", '']
    e = s.get('entropy')
    if e:
        out += [f"Policy entropy: {e['first_phase']:.2f} nats in the first controller phase, {e['last_phase']:.2f} in "
                f"the last ({100 * (e['drop'] or 0):.0f}% lower). Reward patches: `{s['reward_mode']}`.", '']
    sig = s.get('signal')
    if sig:
        out += [f"Architecture signal on the shared weights at the last phase (`search_signal.jsonl`, "
                f"{sig['genotypes']} random genotypes on 2 fixed batches): genotype std {sig['genotype_std']:.4f} dB, "
                f"batch std {sig['batch_std']:.4f} dB, interaction std {sig['interaction_std']:.4f} dB; full minus "
                f"empty genotype {sig['full_psnr'] - sig['empty_psnr']:+.3f} dB; SNR of one reward "
                f"({sig['reward_mode']} patches) {sig['snr']:.2f}, median over {sig['phases']} phases "
                f"{sig['median_snr']:.2f}.", '']
        gap = abs(sig['full_psnr'] - sig['empty_psnr'])
        if gap < 0.1:
            out += [f"The architecture mattered little in this search: the empty and the full cell differed by "
                    f"{gap:.3f} dB on the shared weights (0.1 dB or more lets a search find something), so the found "
                    "network is not expected to beat random ones of its size (`tools/search_vs_random.py` "
                    "measures it).", '']
        elif sig['median_snr'] < 3:
            out += [f"One reward ranked two cells unreliably in this search (median SNR {sig['median_snr']:.2f}; "
                    "3 or more ranks them from one reward), but the controller learns from the mean of many "
                    "rewards: at N = 4, M = 4, C = 32 a search at a median SNR of 1.4 found a cell above random "
                    "(docs/search-evaluation.md). `tools/search_vs_random.py` measures it for this one.", '']
        if sig['learned_from_noise']:
            out += ['**Warning: the controller learned from noise.** Over the search the architecture moved the '
                    'reward less than the reward noise did (median SNR below 1): whatever the controller '
                    'converged to says little about which architecture is better.', '']
        out += phase_md(s.get('phases') or []) + [f"![search signal]({r['figures']['signal']})", '']
    elif s['history_rows']:
        out += ['The search did not probe the architecture signal (`search.signal_probe: 0`); '
                '`tools/search_signal.py` measures it on a checkpoint.', '']
    out += [f"![search scatter]({r['figures']['scatter']})", '', f"![controller curves]({r['figures']['curves']})", '',
            f"![controller policy]({r['figures']['policy']})", '']
    c = r['crops']
    if r['figures'].get('crops'):
        out += ['## Visual comparison', '', f"`{c['image']}` of {c['test_set']}, box {c['box']} (x, y, w, h; HR "
                'pixels); captions: PSNR-Y of the whole image.', '', f"![crops]({r['figures']['crops']})", '']
    if r['timings']:
        out += ['## Timing', '', 'Wall time of each demo step, in the run that made its outputs.', '',
                *md_table(['step', 'seconds'], 'lr', [[k, f'{v:.1f}'] for k, v in r['timings'].items()]), '']
    if r['notes']:
        out += ['## Notes', ''] + [f'- {n}' for n in r['notes']] + ['']
    return '\n'.join(out)


# ------------------------------------------------------------------------------------ demo notes
def below_bicubic_notes(rows: List[dict], iterations: int, demo_budget: bool = True) -> List[str]:
    """A plain note for every trained method (a row of ``results.rows``) whose mean PSNR-Y over the images of
    a test set is below bicubic's: the per-image differences, and which image the mean follows; with
    ``demo_budget`` also why (the README's demo section measured it for CARN)."""
    bicubic = next((r for r in rows if r['arch'] == 'Bicubic'), None)
    if bicubic is None:
        return []
    notes = []
    for row in rows:
        label = row['label']
        for name, images in row.get('per_image', {}).items():
            values = {k: v['psnr'] for k, v in images.items()}
            bic = {k: v['psnr'] for k, v in bicubic.get('per_image', {}).get(name, {}).items()}
            common = [k for k in values if k in bic]
            if row is bicubic or not common:
                continue
            mean, mean_bic = (sum(v[k] for k in common) / len(common) for v in (values, bic))
            if mean >= mean_bic:
                continue
            worst = min(common, key=lambda k: values[k] - bic[k])
            diffs = ', '.join(f'{k} {values[k] - bic[k]:+.2f}' for k in common)
            note = (f'{label} scores below bicubic on {name} ({mean:.2f} vs {mean_bic:.2f} dB). Per image, {label} '
                    f'minus bicubic: {diffs} dB; the mean of {len(common)} images follows {worst}, where bicubic '
                    f'reaches {bic[worst]:.1f} dB.')
            if demo_budget:
                note += (f' On a smooth image every stray grey level costs a lot of PSNR, and a small network trained '
                         f'{iterations:,} iterations from scratch has not yet learned to leave flat areas alone: this '
                         'is the demo budget, not a broken network (the paper\'s CARN is 4.1 dB above bicubic on '
                         'Set5; docs/demo.md retrains this CARN at other learning rates and budgets).')
            notes.append(note)
    return notes


def _inline(options: dict) -> str:
    """``{'type': 'Adam', 'lr': 0.002}`` as ``Adam (lr 0.002)``: an option block in one line of prose."""
    rest = ', '.join(f'{k} {v}' for k, v in options.items() if k != 'type')
    return f"{options.get('type', '')} ({rest})" if rest else str(options.get('type', ''))


def seed_spread_md(result: dict) -> str:
    """The Markdown page of a seed-spread measurement (``pipelines.demo.Demo.measure_seed_spread``)."""
    set_, networks = result['setting'], list(result['networks'].values())
    means = [[row['label'], *(f'{p:.2f}/{q:.4f}' for p, q in zip(row['psnr'], row['ssim'])),
              f"{row['psnr_spread']:.3f}", f"{row['ssim_spread']:.4f}"] for row in networks]
    runs = [(row, s) for row in networks for s in row['seeds']]
    per_image = []
    for image in set_['test_images']:
        values = [row['per_image'].get(str(s), {}).get(image, {}).get('psnr') for row, s in runs]
        per_image.append([image] + ['-' if v is None else f'{v:.2f}' for v in values])
    lines = ['# Seed spread of the demo\'s trainings', '',
             f"Measured {result['date']} on {result['machine']}.  ",
             f"Command: `{result['command']}`  ",
             f"Setting: x{set_['scale']}, {'--fast' if set_['fast'] else 'default'} budget, "
             f"{set_['train']['total_iter']:,} iterations, batch {set_['batch_size_per_gpu']}, "
             f"LR patch {set_['gt_size'] // set_['scale']}, {_inline(set_['train']['optim_g'])}, "
             f"{_inline(set_['train']['scheduler'])}, warmup_iter {set_['train'].get('warmup_iter')}; found genotype "
             f"`{result['genotype']}` (N, M, C = {set_['found_space']['num_blocks']}, "
             f"{set_['found_space']['num_nodes']}, {set_['found_space']['num_feat']}), {_inline(set_['carn'])}.  ",
             f"Test set: {result['test_set']} ({', '.join(set_['test_images'])}).", '',
             'Each network trained twice from scratch, the runs differing only in `manual_seed` (initial weights '
             'and the order of the training patches); test-set mean PSNR-Y (dB) / SSIM-Y of each, and how far '
             'apart they land:', '',
             *md_table(['Network', *(f'seed {s}' for s in result['seeds']), 'PSNR-Y spread (dB)', 'SSIM-Y spread'],
                       'l' + 'r' * (len(result['seeds']) + 2), means),
             '', 'Per image, PSNR-Y (dB):', '',
             *md_table(['Image', *(f"{row['label']}, seed {s}" for row, s in runs)], 'l' + 'r' * len(runs), per_image),
             '', 'Two seeds give one sample of the spread, not its distribution: read it as the size of a '
             'difference that means nothing, not as a confidence interval.', '']
    return '\n'.join(lines)


def phase_md(phases: List[dict]) -> List[str]:
    """The signal probe and the policy, phase by phase (``search.phases`` of report.json)."""
    if not phases:
        return []
    cells = [[f"{p['iter']:,}", f"{p['genotype_std']:.3f}", f"{p['interaction_std']:.3f}", f"{p['snr']:.2f}",
              f"{p['full_minus_empty']:+.3f}", 'n/a' if p['policy_params'] is None else f"{p['policy_params']:,.0f}",
              'n/a' if p['policy_entropy'] is None else f"{p['policy_entropy']:.2f}"] for p in phases]
    return md_table(['child steps', 'genotype std (dB)', 'interaction std (dB)', 'SNR', 'full - empty (dB)',
                     'policy: mean params', 'policy entropy (nats)'], 'r' * 7, cells) + ['']
