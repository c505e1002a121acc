"""The DeCoNAS report of a search, its derived network and the tests (``tools/report.py``, the demo's last step).

Inputs: a search experiment (``experiments/<name>``: its option file, ``search_history.jsonl`` and
``derive/chosen.json`` from ``tools/derive.py``) and the test option files of the compared methods
(each gives the network and, by its name, the results folder ``results/<name>`` that
``deconas_plugin/test.py`` wrote: the metrics in its log, the images under ``visualization/``).

Outputs, in ``--out`` (every file written to a temporary name and renamed):

* ``report.md``: everything below, readable on GitHub;
* ``report.json``: the same numbers (fields below);
* ``results_table.md``: the PSNR/SSIM table alone (the paper's Table II layout) under its caption;
* ``search_scatter.png`` (paper Fig. 4): PSNR vs params of every genotype sampled by the
  controller during the search (``search_history.jsonl``), coloured by controller step, the
  chosen genotype highlighted;
* ``controller_curves.png``: reward, its baseline and the policy entropy vs controller step;
* ``search_signal.png``: the architecture signal over the search (``search_signal.jsonl`` of
  ``search.signal_probe``): genotype / batch / interaction std, full minus empty genotype, and the
  signal-to-noise ratio of the search's reward mode (drawn only when the search probed it);
* ``controller_policy.png``: the policy per decision over controller steps: a heatmap of the
  probability of a 1 at each decision (given the decisions before it) of every sampled genotype;
* ``found_cell.png``: the found DNB (``deconas_plugin.reporting.draw.draw_genotype``);
* ``crops.png`` (paper Fig. 6): one test image with a box, and that box from HR, bicubic, the found
  network and CARN side by side, each caption with the whole-image PSNR-Y;
* ``complexity_cache.json`` (unless another path is given): params/MACs already counted.

Params and MACs follow ``deconas_plugin.reporting.complexity_table`` (a forward pass producing a
1280x720 HR image). PSNR/SSIM are those of the test logs: Y channel (BT.601, not rounded to 8
bits), border of ``scale`` pixels cropped, a single-channel image scored on its own values.

JSON fields of ``report.json`` (a test checks that each one is present):

- ``version`` (int): format version, 1.
- ``created`` (str): local time the report was written (ISO 8601).
- ``scale`` (int): the upscaling factor.
- ``search.experiment`` (str): the search experiment folder.
- ``search.option_file`` (str): the search option file used.
- ``search.space`` (dict): ``num_blocks`` (N), ``num_nodes`` (M), ``num_feat`` (C), ``feature_fusion_search``.
- ``search.alpha`` (float): complexity-penalty weight of the reward.
- ``search.penalty`` (str): what the penalty counts: ``params``, ``macs`` or ``latency`` (``search.penalty``).
- ``search.history_rows`` (int): controller steps recorded in ``search_history.jsonl``.
- ``search.distinct_genotypes`` (int): distinct genotypes among them.
- ``search.last_iter`` (int): child iteration of the last controller phase (0 without history).
- ``search.best_sampled`` (dict or null): the history row with the highest PSNR (genotype, params, psnr).
- ``search.reward_mode`` (str): ``fresh`` or ``common`` reward patches (``search.reward_mode``).
- ``search.entropy`` (dict or null): mean policy entropy of the ``first_phase`` and the ``last_phase`` of
  controller steps, and ``drop`` = 1 - last / first.
- ``search.signal`` (dict or null): the last row of ``search_signal.jsonl`` (``genotype_std``, ``batch_std``,
  ``interaction_std``, ``snr``, ``empty_psnr``, ``full_psnr``...), ``phases`` (rows), ``median_snr`` over the
  phases, and ``learned_from_noise`` (true when that median SNR is below 1).
- ``search.phases`` (list): one dict per probed phase (``metrics.phase_table``): ``iter``, ``genotype_std``,
  ``interaction_std``, ``snr``, ``full_minus_empty``, and the phase's policy: ``policy_params`` (mean params
  of its samples) and ``policy_entropy``.
- ``genotype.decimal`` (str): the found genotype, decimal codes (paper notation).
- ``genotype.bits`` (str): the same, K bits per (node, input) group.
- ``genotype.codes`` (list of int): the decimal codes.
- ``genotype.fusion`` (dict or null): ``local`` and ``global`` fusion bits (FF1 genotypes).
- ``genotype.source`` (str): where it comes from (``derive/chosen.json``, a test option file, or the history).
- ``genotype.params`` (int): parameters of its DeCoNASNet (the search's N, C and scale).
- ``genotype.derive`` (dict or null): ``chosen.json`` of the derivation (psnr and reward with the shared
  weights, rank, samples, distinct, scored_on, alpha).
- ``complexity.hr_size`` (list): [W, H] of the HR output, [1280, 720].
- ``complexity.rows`` (list): one dict per network: ``label``, ``arch``, ``scale``, ``params``, ``macs``
  (int or null), ``lr_w``, ``lr_h``, ``macs_method``.
- ``results.test_sets`` (list of str): test set names, in column order.
- ``results.rows`` (list): one dict per method: ``label``, ``arch``, ``scale``, ``params`` (null for Bicubic),
  ``results_dir``, ``metrics`` ({test set: {``psnr``, ``ssim``}}, the means of the test log), ``per_image``
  ({test set: {image: {``psnr``, ``ssim``}}}, recomputed from the saved outputs), ``gain_over_bicubic``
  ({test set: dB}, mean PSNR-Y minus Bicubic's; null for Bicubic or without it), ``seed_spread`` (null, or
  ``seeds``, ``psnr`` and ``ssim`` (test means per seed), ``psnr_spread`` and ``ssim_spread`` (|difference|)).
- ``results.caption`` (str): the table's caption: the training, whether every trained network beats bicubic,
  the seed spread's source.
- ``results.seed_spread`` (dict or null): the seed-spread measurement cited (``file``, ``date``, ``machine``,
  ``command``, ``seeds``, ``networks`` by arch, ``note``), or null when none applies to this setting.
- ``summary`` (list of str): the first screen of ``report.md``: what was searched, what was found, how it
  compares with bicubic and CARN, whether the search did better than chance.
- ``figures`` (dict): file names of ``scatter``, ``curves``, ``policy``, ``signal``, ``cell`` and ``crops`` (null when not drawn).
- ``crops.image`` (str or null): image of the visual comparison.
- ``crops.test_set`` (str or null): its test set.
- ``crops.box`` (list or null): [x, y, w, h] of the box in HR pixels.
- ``crops.psnr`` (dict): whole-image PSNR-Y (dB) per panel label (HR excluded).
- ``timings`` (dict or null): seconds per demo step, in the run that made its outputs (from ``tools/demo.py``).
- ``notes`` (list of str): remarks shown at the end of ``report.md``.

PNG sizes (pixels, fixed so that a test can check them): ``figures.FIGURE_SIZES``; the cell drawing is
``draw.figure_pixels(genotype)``.
"""
import datetime
import json
import os
import os.path as osp
from typing import Dict, Optional, Sequence, Tuple

from .. import derive as derive_lib
from ..complexity import PAPER_HR_SIZE
from ..genotype import Genotype
from ..utils.checkpoint import atomic_write_text
from .figures import FIGURE_FILES, draw_curves, draw_policy, draw_scatter, draw_signal, visual_comparison
from .markdown import below_bicubic_notes, first_screen, render_markdown, results_table, table_caption
from .metrics import (ComplexityCache, ReportError, count_network_params, entropy_summary, find_search_option,
                      find_test_log, gains_over_bicubic, parse_test_log, per_image_metrics, read_history,
                      read_test_option, reference_networks, signal_summary, phase_table)

ROOT = derive_lib.PROJECT_ROOT
VERSION = 1


# --------------------------------------------------------------------------------------- report
def build_report(search_exp: str, out: str, test_opts: Sequence[Tuple[Optional[str], str]] = (),
                 search_opt: Optional[str] = None, derive_dir: Optional[str] = None,
                 timings: Optional[Dict[str, float]] = None, notes: Sequence[str] = (),
                 complexity_cache: Optional[str] = None, crop_image: Optional[str] = None,
                 training: Optional[str] = None, seed_spread: Optional[dict] = None,
                 below_bicubic: Optional[dict] = None) -> dict:
    """Write the report folder ``out``; returns the ``report.json`` dict.

    ``training``: one sentence on how the trained networks were trained (the table's caption quotes it).
    ``seed_spread``: the seed-spread measurement that applies to this setting (``results.seed_spread``;
    its ``networks`` keyed by arch give each row's ``seed_spread``), or None.
    ``below_bicubic``: the keyword arguments of ``markdown.below_bicubic_notes`` (``iterations``,
    ``demo_budget``) to add its notes after ``notes``; None: none.

    ``test_opts``: (label or None, test option file) per method, in table order.
    """
    search_exp = osp.abspath(search_exp)
    if not osp.isdir(search_exp):
        raise ReportError(f'search experiment not found: {search_exp}')
    search_opt = search_opt or find_search_option(search_exp)
    sopt = derive_lib.read_options(search_opt)
    net_g, sizes = sopt['network_g'], derive_lib.network_sizes(sopt)
    scale = int(sopt['scale'])
    space = {k: sizes[k] for k in ('num_blocks', 'num_nodes', 'num_feat')}
    space['feature_fusion_search'] = bool(net_g.get('feature_fusion_search'))
    history_file = (sopt.get('search') or {}).get('history_file', 'search_history.jsonl')
    history = read_history(osp.join(search_exp, history_file))
    signal_rows = read_history(osp.join(search_exp, (sopt.get('search') or {}).get('signal_file',
                                                                                  'search_signal.jsonl')))
    derive_dir = derive_dir or osp.join(search_exp, 'derive')
    methods = [read_test_option(path, label) for label, path in test_opts]
    os.makedirs(out, exist_ok=True)

    # the found genotype
    chosen_path = osp.join(derive_dir, 'chosen.json')
    derive_info = None
    if osp.isfile(chosen_path):
        derive_info = derive_lib.read_chosen(derive_dir, sizes, ReportError)
        genotype = derive_info.pop('parsed')
        source = osp.relpath(chosen_path, ROOT) if chosen_path.startswith(ROOT) else chosen_path
    elif any(m['arch'] == 'DeCoNASNet' for m in methods):
        m = next(m for m in methods if m['arch'] == 'DeCoNASNet')
        genotype, source = Genotype.parse(m['network_g']['genotype']), m['option_file']
    elif history:
        genotype, source = Genotype.parse(max(history, key=lambda r: r['reward'])['genotype']), 'history (best reward)'
    else:
        raise ReportError(f'no genotype: {chosen_path} is missing (run tools/derive.py), no DeCoNASNet test option '
                          'and no search history')
    found_net = {'type': 'DeCoNASNet', 'genotype': genotype.to_string(), **sizes, 'upscale': scale}
    found_params = derive_lib.genotype_params(genotype, dict(sizes, upscale=scale))

    # complexity at 1280x720
    cache = ComplexityCache(complexity_cache if complexity_cache is not None
                            else osp.join(out, 'complexity_cache.json'))
    nets = [('DeCoNASNet (found)', found_net)]
    for m in methods:
        if m['arch'] == 'CARN':
            nets.append((m['label'], m['network_g']))
    nets += reference_networks(scale)
    complexity_rows = [cache.row(label, net, scale) for label, net in nets]

    # results
    test_sets = []  # every test set of the methods, in column order
    for m in methods:
        test_sets += [ts for ts in m['test_sets'] if ts['name'] not in [t['name'] for t in test_sets]]
    result_rows = []
    for m in methods:
        log = find_test_log(m['results_dir'])
        result_rows.append({'label': m['label'], 'arch': m['arch'], 'scale': m['scale'] or scale,
                            'params': count_network_params(m['network_g']), 'results_dir': m['results_dir'],
                            'metrics': parse_test_log(log) if log else {},
                            'per_image': {ts['name']: values for ts in m['test_sets']
                                          for values in [per_image_metrics(m, ts, m['scale'] or scale)] if values},
                            'seed_spread': ((seed_spread or {}).get('networks') or {}).get(m['arch'])})
    set_names = [ts['name'] for ts in test_sets]
    gains_over_bicubic(result_rows, set_names)
    caption = table_caption(result_rows, set_names, training, seed_spread)
    notes = list(notes) + (below_bicubic_notes(result_rows, **below_bicubic) if below_bicubic else [])

    # figures
    def path_of(kind: str) -> str:
        return osp.join(out, FIGURE_FILES[kind])

    label = (f"{osp.basename(search_exp)}: N={space['num_blocks']}, M={space['num_nodes']}, C={space['num_feat']}, "
             f'x{scale}')
    draw_scatter(history, genotype, found_params, path_of('scatter'), f'Sampled genotypes during the search ({label})')
    draw_curves(history, path_of('curves'), f'Controller training ({label})')
    draw_policy(history, path_of('policy'), f'Policy per decision ({label})')
    if signal_rows:
        draw_signal(signal_rows, path_of('signal'), f'Architecture signal on the shared weights ({label})')
    from .draw import draw_genotype
    draw_genotype(genotype, path_of('cell'))
    crops = visual_comparison(methods, test_sets, scale, path_of('crops'), crop_image)
    drawn = {'scatter': True, 'curves': True, 'policy': True, 'signal': bool(signal_rows), 'cell': True,
             'crops': crops['image'] is not None}
    figures = {kind: FIGURE_FILES[kind] if done else None for kind, done in drawn.items()}

    best = max(history, key=lambda r: r['psnr']) if history else None
    report = {
        'version': VERSION,
        'created': datetime.datetime.now().isoformat(timespec='seconds'),
        'scale': scale,
        'summary': [],  # first_screen(report), below
        'search': {
            'experiment': search_exp, 'option_file': osp.abspath(search_opt), 'space': space,
            'alpha': derive_lib.search_alpha(sopt), 'history_rows': len(history),
            'penalty': (sopt.get('search') or {}).get('penalty') or 'params',
            'distinct_genotypes': len({r['genotype'] for r in history}),
            'last_iter': max((r['iter'] for r in history), default=0),
            'best_sampled': None if best is None else {k: best[k] for k in ('genotype', 'params', 'psnr')},
            'reward_mode': (sopt.get('search') or {}).get('reward_mode', 'fresh'),
            'entropy': entropy_summary(history),
            'signal': signal_summary(signal_rows),
            'phases': phase_table(history, signal_rows),
        },
        'genotype': {
            'decimal': genotype.to_string(), 'bits': genotype.to_string('bits'), 'codes': list(genotype.codes),
            'fusion': ({'local': list(genotype.local_bits), 'global': list(genotype.global_bits)}
                       if genotype.has_fusion_bits else None),
            'source': source, 'params': found_params,
            'derive': None if derive_info is None else {
                k: derive_info.get(k) for k in ('psnr', 'reward', 'rank', 'samples', 'distinct', 'scored_on', 'alpha')},
        },
        'complexity': {'hr_size': list(PAPER_HR_SIZE), 'rows': complexity_rows},
        'results': {'test_sets': set_names, 'rows': result_rows, 'caption': caption,
                    'seed_spread': seed_spread},
        'figures': figures,
        'crops': crops,
        'timings': dict(timings) if timings else None,
        'notes': notes,
    }
    report['summary'] = first_screen(report)
    table = results_table(result_rows, set_names, caption)
    atomic_write_text(osp.join(out, 'results_table.md'), table)
    atomic_write_text(osp.join(out, 'report.json'), json.dumps(report, indent=2) + '\n')
    atomic_write_text(osp.join(out, 'report.md'), render_markdown(report, table))
    return report
