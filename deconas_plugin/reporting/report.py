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

PNG sizes (pixels, fixed so that a test can check them): ``FIGURE_SIZES``; the cell drawing is
``draw.figure_pixels(genotype)``.
"""
import datetime
import glob
import json
import os
import os.path as osp
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import derive as derive_lib
from ..genotype import Genotype
from ..utils.checkpoint import atomic_open, atomic_write_text  # noqa: F401 (atomic_write_text: used by demo, tools)

ROOT = derive_lib.PROJECT_ROOT
VERSION = 1
DPI = 100
FIGURE_INCHES = {'scatter': (8.0, 5.5), 'curves': (9.0, 6.5), 'crops': (15.0, 4.2), 'signal': (9.0, 6.5),
                 'policy': (10.0, 5.0)}
FIGURE_SIZES = {k: (int(w * DPI), int(h * DPI)) for k, (w, h) in FIGURE_INCHES.items()}
FIGURE_FILES = {'scatter': 'search_scatter.png', 'curves': 'controller_curves.png', 'cell': 'found_cell.png',
                'crops': 'crops.png', 'signal': 'search_signal.png', 'policy': 'controller_policy.png'}
PAPER_X2 = [  # x2, Y, PSNR/SSIM on Set5, Set14, B100, Urban100: DeCoNAS paper Table II; RDN: Zhang et al. 2018
    ('Bicubic', '-', ('33.66/0.9299', '-', '-', '-')),
    ('CARN', '1,592K', ('37.76/0.9590', '33.52/0.9166', '32.09/0.8978', '31.92/0.9256')),
    ('DeCoNASNet (paper)', '1,713K', ('37.96/0.9594', '33.63/0.9175', '32.15/0.8986', '32.03/0.9265')),
    ('RDN', '~22M', ('38.24/0.9614', '34.01/0.9212', '32.34/0.9017', '32.89/0.9353')),
]
BENCHMARKS = ('Set5', 'Set14', 'B100', 'Urban100')
PENALTY_TEXT = {'params': 'params / params_max', 'macs': 'MACs / MACs_max (search.penalty: macs)',
                'latency': 'latency / latency_max (search.penalty: latency, from search.latency_table)'}


class ReportError(ValueError):
    """A missing or unreadable input of the report; the message says which."""


# ------------------------------------------------------------------------------------ file output
def save_figure(fig, path: str):
    """Save a matplotlib Figure (Agg canvas) as PNG atomically, at its own size (no tight bbox)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    FigureCanvasAgg(fig)
    with atomic_open(path, 'wb', suffix='.png') as f:
        fig.savefig(f, format='png', dpi=DPI, facecolor='white')
    return path


def new_figure_of_size(inches: Tuple[float, float]):
    """A matplotlib Figure (no pyplot state) of ``inches`` at ``DPI``."""
    from matplotlib.figure import Figure
    return Figure(figsize=inches, dpi=DPI, facecolor='white')


def new_figure(kind: str):
    return new_figure_of_size(FIGURE_INCHES[kind])


# ------------------------------------------------------------------------------------ inputs
def read_history(path: str) -> List[dict]:
    """Rows of ``search_history.jsonl`` (a line cut off by a kill is skipped)."""
    rows = []
    if not osp.isfile(path):
        return rows
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def find_search_option(experiment: str) -> str:
    """The search option file BasicSR copied into the experiment folder."""
    found = []
    for path in glob.glob(osp.join(experiment, '*.yml')):
        try:
            opt = derive_lib.read_options(path)
        except Exception:  # noqa: BLE001
            continue
        if isinstance(opt, dict) and opt.get('model_type') == 'DeCoNASSearchModel':
            found.append(path)
    if not found:
        raise ReportError(f'no search option file (model_type DeCoNASSearchModel) in {experiment}; pass --search-opt')
    return max(found, key=os.path.getmtime)


def find_test_log(results_dir: str) -> Optional[str]:
    """The newest ``test_*.log`` of a ``deconas_plugin/test.py`` results folder, or None."""
    logs = glob.glob(osp.join(results_dir, 'test_*.log'))
    return max(logs, key=os.path.getmtime) if logs else None


_VALIDATION = re.compile(r'Validation (.+?)\n((?:\t # .*(?:\n|$))+)')
_METRIC = re.compile(r'\t # (\w+): (-?(?:\d+\.?\d*|nan|inf))')


def parse_test_log(path: str) -> Dict[str, Dict[str, float]]:
    """``{test set: {metric: value}}`` from a BasicSR test log (values as logged, 4 decimals)."""
    with open(path, errors='replace') as f:
        text = f.read()
    out = {}
    for name, block in _VALIDATION.findall(text):
        out[name.strip()] = {m: float(v) for m, v in _METRIC.findall(block)}
    return out


def _results_dir(name: str) -> str:
    return osp.join(ROOT, 'results', name)


# ------------------------------------------------------------------------------------ complexity
class ComplexityCache:
    """Params/MACs rows by network option, kept in a JSON file (counting RDN takes ~20 s)."""

    def __init__(self, path: Optional[str]):
        self.path = path
        self.data = {}
        if path and osp.isfile(path):
            try:
                with open(path) as f:
                    self.data = json.load(f)
            except (OSError, json.JSONDecodeError):
                self.data = {}

    @staticmethod
    def key(net_opt: dict, scale: int) -> str:
        return json.dumps({'net': net_opt, 'scale': scale, 'hr': [1280, 720]}, sort_keys=True)

    def row(self, label: str, net_opt: dict, scale: int) -> dict:
        from . import complexity_table as ct
        key = self.key(net_opt, scale)
        if key not in self.data:
            r = ct.network_row(label, net_opt, scale)
            self.data[key] = {k: r.get(k) for k in ('arch', 'scale', 'params', 'macs', 'lr_w', 'lr_h', 'macs_method')}
            if self.path:
                atomic_write_text(self.path, json.dumps(self.data, indent=1) + '\n')
        return dict(self.data[key], label=label)


def count_network_params(net_opt: dict) -> Optional[int]:
    from . import complexity_table as ct
    n = ct.count_params(ct.build_network(dict(net_opt)))
    return n or None


def reference_networks(scale: int) -> List[Tuple[str, dict]]:
    """(label, network option) of the fixed-size networks of the complexity table."""
    return [
        ('DeCoNASNet (paper genotype, C=64)', {'type': 'DeCoNASNet', 'upscale': scale}),
        ('CARN (paper: multi-scale, C=64)', {'type': 'CARN', 'upscale': scale, 'multi_scale': True}),
        ('RDN', {'type': 'RDN', 'upscale': scale}),
        ('EDSR (baseline: C=64, 16 blocks)', {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 64,
                                              'num_block': 16, 'upscale': scale}),
    ]


# ------------------------------------------------------------------------------------ figures
def draw_scatter(history: List[dict], chosen: Genotype, chosen_params: int, path: str, title: str):
    """Paper Fig. 4: PSNR vs params of every sampled genotype, the chosen one highlighted."""
    fig = new_figure('scatter')
    ax = fig.add_axes([0.1, 0.11, 0.74, 0.8])
    cax = fig.add_axes([0.87, 0.11, 0.025, 0.8])
    chosen_str = chosen.to_string()
    if history:
        params = np.array([r['params'] for r in history], dtype=float) / 1e3
        psnr = np.array([r['psnr'] for r in history], dtype=float)
        steps = np.array([r['controller_step'] for r in history], dtype=float)
        sc = ax.scatter(params, psnr, c=steps, cmap='viridis', s=16, alpha=0.75, edgecolors='none',
                        label='sampled genotype (colour: controller step)')
        fig.colorbar(sc, cax=cax, label='controller step')
        hits = [i for i, r in enumerate(history) if r['genotype'] == chosen_str]
        if hits:
            ax.scatter(params[hits], psnr[hits], marker='*', s=260, c='red', edgecolors='black', linewidths=0.8,
                       zorder=5, label=f'chosen {chosen_str} (sampled {len(hits)}x)')
        else:
            ax.axvline(chosen_params / 1e3, color='red', ls='--', lw=1.5,
                       label=f'chosen {chosen_str} ({chosen_params / 1e3:.1f}K; not sampled during the search)')
        lo, hi = np.percentile(psnr, 2), psnr.max()
        ax.set_ylim(lo - 0.1 * (hi - lo + 1e-6), hi + 0.1 * (hi - lo + 1e-6))
    else:
        cax.set_visible(False)
        ax.axvline(chosen_params / 1e3, color='red', ls='--', lw=1.5, label=f'chosen {chosen_str}')
        ax.text(0.5, 0.5, 'no controller step recorded', transform=ax.transAxes, ha='center')
    ax.set_xlabel('parameters (K)')
    ax.set_ylabel('PSNR-Y on the reward patches (dB, shared weights)')
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc='lower right', fontsize=8)
    return save_figure(fig, path)


def _moving_average(x: np.ndarray, n: int) -> np.ndarray:
    if len(x) == 0:
        return x
    n = max(1, min(n, len(x)))
    c = np.cumsum(np.insert(x, 0, 0.0))
    out = np.empty_like(x)
    for i in range(len(x)):
        lo = max(0, i - n + 1)
        out[i] = (c[i + 1] - c[lo]) / (i + 1 - lo)
    return out


def draw_curves(history: List[dict], path: str, title: str):
    """Controller reward (raw and moving average), EMA baseline, and entropy vs controller step."""
    fig = new_figure('curves')
    ax1 = fig.add_axes([0.09, 0.55, 0.86, 0.38])
    ax2 = fig.add_axes([0.09, 0.08, 0.86, 0.36], sharex=ax1)
    if history:
        step = np.array([r['controller_step'] for r in history], dtype=float)
        reward = np.array([r['reward'] for r in history], dtype=float)
        base = np.array([r['baseline'] for r in history], dtype=float)
        ent = np.array([r['entropy'] for r in history], dtype=float)
        ax1.plot(step, reward, '.', ms=3, color='#999999', label='reward R')
        ax1.plot(step, _moving_average(reward, 20), color='#1f77b4', lw=1.8, label='reward, moving average (20)')
        ax1.plot(step, base, color='#d62728', lw=1.5, label='baseline b (EMA)')
        lo, hi = np.percentile(np.concatenate([reward, base]), [2, 100])
        ax1.set_ylim(lo - 0.1 * (hi - lo + 1e-6), hi + 0.1 * (hi - lo + 1e-6))
        ax2.plot(step, ent, color='#2ca02c', lw=1.5, label='entropy of the sampled genotype')
    else:
        for ax in (ax1, ax2):
            ax.text(0.5, 0.5, 'no controller step recorded', transform=ax.transAxes, ha='center')
    ax1.set_ylabel('reward (dB)')
    ax1.set_title(title, fontsize=10)
    ax2.set_ylabel('entropy (nats)')
    ax2.ticklabel_format(axis='y', useOffset=False)
    ax2.set_xlabel('controller step')
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        if history:
            ax.legend(loc='best', fontsize=8)
    return save_figure(fig, path)


def draw_signal(rows: List[dict], path: str, title: str):
    """The per-phase signal probe: std components and full - empty (dB, log scale), and the SNR."""
    fig = new_figure('signal')
    ax1 = fig.add_axes([0.09, 0.55, 0.86, 0.38])
    ax2 = fig.add_axes([0.09, 0.08, 0.86, 0.36], sharex=ax1)
    it = np.array([r['iter'] for r in rows], dtype=float)
    for key, colour, text in (('genotype_std', '#1f77b4', 'genotype std (signal)'),
                              ('batch_std', '#7f7f7f', 'batch std (noise of fresh patches)'),
                              ('interaction_std', '#d62728', 'interaction std (noise of common patches)')):
        ax1.semilogy(it, np.maximum([r[key] for r in rows], 1e-5), 'o-', ms=3, color=colour, label=text)
    ax1.semilogy(it, np.maximum(np.abs([r['full_psnr'] - r['empty_psnr'] for r in rows]), 1e-5), 's--', ms=3,
                 color='#2ca02c', label='|full - empty genotype|')
    ax1.set_ylabel('dB')
    ax1.set_title(title, fontsize=10)
    mode = rows[-1]['reward_mode'] if rows else 'fresh'
    ax2.semilogy(it, np.clip([r['snr'] for r in rows], 1e-3, 1e3), 'o-', ms=3, color='#9467bd',
                 label=f'SNR of one reward ({mode} patches)')
    ax2.axhline(1, color='#d62728', lw=1, ls='--', label='SNR 1: as much noise as signal')
    ax2.axhline(3, color='#2ca02c', lw=1, ls=':', label='SNR 3')
    ax2.set_ylabel('genotype std / reward noise')
    ax2.set_xlabel('child iteration (controller phase)')
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(loc='best', fontsize=8)
    return save_figure(fig, path)


def draw_policy(history: List[dict], path: str, title: str):
    """Heatmap of the policy: probability of a 1 at each decision (rows) over controller steps (columns)."""
    fig = new_figure('policy')
    ax = fig.add_axes([0.08, 0.12, 0.80, 0.78])
    rows = [r for r in history if r.get('p')]
    if rows:
        probs = np.array([r['p'] for r in rows], dtype=float).T
        steps = [r['controller_step'] for r in rows]
        im = ax.imshow(probs, aspect='auto', cmap='RdBu_r', vmin=0, vmax=1, interpolation='nearest',
                       extent=(steps[0] - 0.5, steps[-1] + 0.5, probs.shape[0] - 0.5, -0.5))
        cax = fig.add_axes([0.90, 0.12, 0.02, 0.78])
        fig.colorbar(im, cax=cax, label='P(decision = 1)')
        ax.set_ylabel('decision (K = 3 bits per (node, input) group, op 0 first)')
    else:
        ax.text(0.5, 0.5, 'no per-decision probabilities in the history', transform=ax.transAxes, ha='center')
    ax.set_xlabel('controller step')
    ax.set_title(title, fontsize=10)
    return save_figure(fig, path)


def entropy_summary(history: List[dict]) -> Optional[dict]:
    """Mean entropy of the first and the last controller phase, and the relative drop."""
    if not history:
        return None
    first_iter, last_iter = history[0]['iter'], history[-1]['iter']
    first = float(np.mean([r['entropy'] for r in history if r['iter'] == first_iter]))
    last = float(np.mean([r['entropy'] for r in history if r['iter'] == last_iter]))
    return {'first_phase': first, 'last_phase': last, 'drop': 1 - last / first if first else None}


def signal_summary(rows: List[dict]) -> Optional[dict]:
    """The last probe row, the number of phases probed, the median SNR and whether it stayed below 1."""
    if not rows:
        return None
    median = float(np.median([r['snr'] for r in rows]))
    return {**rows[-1], 'phases': len(rows), 'median_snr': median, 'learned_from_noise': median < 1}


# --------------------------------------------------------------------------------- visual crops
def _read(path: str) -> np.ndarray:
    import cv2
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ReportError(f'cannot read image {path}')
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    return img


def _luma(img: np.ndarray) -> np.ndarray:
    """Full-range BT.601 luma of a BGR uint8 image, rounded (a gray image is returned as is)."""
    if img.ndim == 2:
        return img
    b, g, r = (img[..., i].astype(np.float64) for i in range(3))
    return np.clip(np.round(0.299 * r + 0.587 * g + 0.114 * b), 0, 255).astype(np.uint8)


def _y_pair(sr: np.ndarray, gt: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``sr`` and ``gt`` made comparable as the test metric does: a gray side makes the other its luma;
    ``sr`` cut to the size of ``gt``. Shapes (H, W) or (H, W, 3), uint8."""
    if gt.ndim == 2 and sr.ndim == 3:
        sr = _luma(sr)
    if sr.ndim == 2 and gt.ndim == 3:
        gt = _luma(gt)
    h, w = gt.shape[:2]
    return sr[:h, :w], gt


def image_psnr_y(sr: np.ndarray, gt: np.ndarray, crop: int) -> float:
    """PSNR-Y as the test metric computes it: BT.601 Y of colour images, own values of a gray GT."""
    from basicsr.metrics import calculate_psnr
    sr, gt = _y_pair(sr, gt)
    return float(calculate_psnr(sr, gt, crop_border=crop, test_y_channel=True))


def image_ssim_y(sr: np.ndarray, gt: np.ndarray, crop: int) -> float:
    """SSIM-Y with the protocol of ``image_psnr_y``."""
    from basicsr.metrics import calculate_ssim
    sr, gt = _y_pair(sr, gt)
    return float(calculate_ssim(sr, gt, crop_border=crop, test_y_channel=True))


def per_image_metrics(method: dict, test_set: dict, scale: int) -> Dict[str, Dict[str, float]]:
    """``{image: {'psnr', 'ssim'}}`` (PSNR-Y in dB, SSIM-Y) of the images the test run of ``method``
    (``_test_option``) saved for ``test_set`` (``results/<name>/visualization/<set>/<image>_<name>.png``),
    scored against the set's ground truth with ``image_psnr_y`` / ``image_ssim_y``; images it did not
    save are left out. The mean equals the logged one up to the rounding of a gray image's luma."""
    folder = osp.join(method['results_dir'], 'visualization', test_set['name'])
    suffix = f"_{method['name']}.png"
    out = {}
    if not osp.isdir(folder):
        return out
    for name in sorted(os.listdir(folder)):
        if not name.endswith(suffix):
            continue
        stem = name[:-len(suffix)]
        gt_path = osp.join(test_set['dataroot_gt'], f'{stem}.png')
        if not osp.isfile(gt_path):
            continue
        sr, gt = _read(osp.join(folder, name)), _read(gt_path)
        out[stem] = {'psnr': image_psnr_y(sr, gt, scale), 'ssim': image_ssim_y(sr, gt, scale)}
    return out


def choose_box(hr: np.ndarray, size: int) -> Tuple[int, int, int, int]:
    """[x, y, w, h] of the ``size`` box with the most texture (gradient energy) of the HR image."""
    gray = _luma(hr).astype(np.float64)
    h, w = gray.shape
    size = max(8, min(size, h, w))
    energy = np.zeros_like(gray)
    energy[:, 1:] += np.abs(np.diff(gray, axis=1))
    energy[1:, :] += np.abs(np.diff(gray, axis=0))
    integral = np.pad(energy, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    stride = max(1, size // 4)
    best, box = -1.0, (0, 0)
    for y in range(0, h - size + 1, stride):
        for x in range(0, w - size + 1, stride):
            e = integral[y + size, x + size] - integral[y, x + size] - integral[y + size, x] + integral[y, x]
            if e > best:
                best, box = e, (x, y)
    return box[0], box[1], size, size


def _to_rgb(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return np.stack([img] * 3, axis=-1)
    return img[..., ::-1]


def draw_crops(hr_path: str, panels: List[Tuple[str, np.ndarray, Optional[float]]], box, path: str, title: str):
    """Paper Fig. 6: the HR image with the box, then the box of each panel (HR first)."""
    from matplotlib.patches import Rectangle
    fig = new_figure('crops')
    hr = _read(hr_path)
    x, y, w, h = box
    n = 1 + len(panels)
    width = 0.96 / n
    ax = fig.add_axes([0.02, 0.06, width - 0.01, 0.78])
    ax.imshow(_to_rgb(hr), interpolation='nearest')
    ax.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, edgecolor='red', linewidth=2))
    ax.set_title(f'{osp.splitext(osp.basename(hr_path))[0]} (box)', fontsize=9)
    ax.axis('off')
    for i, (label, img, psnr) in enumerate(panels, 1):
        ax = fig.add_axes([0.02 + i * width, 0.06, width - 0.01, 0.78])
        ax.imshow(_to_rgb(img[y:y + h, x:x + w]), interpolation='nearest')
        ax.set_title(label if psnr is None else f'{label}\n{psnr:.2f} dB', fontsize=9)
        ax.axis('off')
    fig.text(0.5, 0.95, title, ha='center', va='center', fontsize=11, weight='bold')
    return save_figure(fig, path)


def visual_comparison(methods: List[dict], test_sets: List[dict], scale: int, out_path: str,
                      image: Optional[str] = None) -> dict:
    """Pick one test image (``image`` or the first colour image of the first set) and draw the crops."""
    from ..utils.y_protocol import is_single_channel
    info = {'image': None, 'test_set': None, 'box': None, 'psnr': {}}
    if not test_sets:
        return info
    ts = test_sets[0]
    names = sorted(osp.splitext(n)[0] for n in os.listdir(ts['dataroot_gt']) if n.lower().endswith('.png'))
    if not names:
        return info
    if image is None:
        colour = [n for n in names if not is_single_channel(osp.join(ts['dataroot_gt'], f'{n}.png'))]
        image = (colour or names)[0]
    elif image not in names:
        raise ReportError(f'--crop-image {image!r} is not in test set {ts["name"]} ({", ".join(names)})')
    gt_path = osp.join(ts['dataroot_gt'], f'{image}.png')
    gt = _read(gt_path)
    panels = [('HR', gt, None)]

    def result(method):
        p = osp.join(method['results_dir'], 'visualization', ts['name'], f"{image}_{method['name']}.png")
        return _read(p) if osp.isfile(p) else None

    order = sorted(methods, key=lambda m: {'Bicubic': 0, 'CARN': 1}.get(m['arch'], 2))
    if not any(m['arch'] == 'Bicubic' for m in methods):  # bicubic of the LR file, made here
        from ..utils.sr_data import read_image
        from basicsr.utils.matlab_functions import imresize
        lr = read_image(osp.join(ts['dataroot_lq'], f'{image}.png'))
        up = np.clip(np.round(imresize(lr.astype(np.float32) / 255., scale) * 255.), 0, 255).astype(np.uint8)
        panels.append(('Bicubic', up, image_psnr_y(up, gt, scale)))
    for m in order:
        img = result(m)
        if img is not None:
            panels.append((m['label'], img, image_psnr_y(img, gt, scale)))
    box = choose_box(gt, 32 * scale if min(gt.shape[:2]) >= 96 * scale else min(gt.shape[:2]) // 3)
    draw_crops(gt_path, panels, box, out_path, f'{ts["name"]}: {image}, x{scale} (PSNR-Y of the whole image)')
    info.update(image=image, test_set=ts['name'], box=[int(v) for v in box],
                psnr={label: round(p, 4) for label, _, p in panels if p is not None})
    return info


# --------------------------------------------------------------------------------------- tables
def results_table(rows: List[dict], test_sets: List[str], caption: str = '') -> str:
    """The paper's Table II layout: rows = methods, a scale and a params column, cells PSNR/SSIM (test-set
    means), then the mean PSNR-Y gain over bicubic and the 2-seed spread of each row (when known),
    under ``caption`` (a paragraph; none when empty)."""
    head = ('| Method | Scale | Params | ' + ' | '.join(test_sets)
            + ' | PSNR-Y gain over bicubic (dB) | seed spread (dB) |')
    sep = '|---|:---:|---:|' + '---:|' * len(test_sets) + '---:|---:|'
    lines = ([caption, ''] if caption else []) + [head, sep]
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
        lines.append(f"| {r['label']} | x{r['scale']} | {params} | " + ' | '.join(cells)
                     + f' | {gain} | {spread_cell} |')
    return '\n'.join(lines) + '\n'


def gains_over_bicubic(rows: List[dict], test_sets: List[str]) -> None:
    """Set ``gain_over_bicubic`` ({test set: dB}) of every row: its mean PSNR-Y minus the Bicubic row's
    (None without a Bicubic row or a metric)."""
    bicubic = next((r for r in rows if r['arch'] == 'Bicubic'), None)
    for r in rows:
        if bicubic is None or r is bicubic:
            r['gain_over_bicubic'] = None
            continue
        gains = {}
        for ts in test_sets:
            mine, ref = r['metrics'].get(ts, {}).get('psnr'), bicubic['metrics'].get(ts, {}).get('psnr')
            gains[ts] = None if mine is None or ref is None else round(mine - ref, 4)
        r['gain_over_bicubic'] = gains


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
        out += [f'Per image, {ts} (PSNR-Y dB / SSIM-Y, from the saved outputs):', '',
                '| Image | ' + ' | '.join(r['label'] for r in rows) + ' |', '|---|' + '---:|' * len(rows)]
        for k in images:
            cells = []
            for r in rows:
                m = r.get('per_image', {}).get(ts, {}).get(k)
                cells.append('-' if not m else f"{m['psnr']:.2f}/{m['ssim']:.4f}")
            out.append(f'| {k} | ' + ' | '.join(cells) + ' |')
        out.append('')
    return '\n'.join(out)


def complexity_md(rows: List[dict]) -> str:
    lines = ['| Network | Arch | Scale | Params | LR input (w x h) | MACs (G) | MACs counted |',
             '|---|---|:---:|---:|---|---:|---|']
    for r in rows:
        macs = '-' if r['macs'] is None else f"{r['macs'] / 1e9:.1f}"
        lines.append(f"| {r['label']} | {r['arch']} | x{r['scale']} | {r['params']:,} | {r['lr_w']}x{r['lr_h']} | "
                     f"{macs} | {r['macs_method']} |")
    return '\n'.join(lines) + '\n'


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
        elif sig['median_snr'] < 3 or gap < 0.1:
            verdict = (f'Not shown: the architecture signal was weak ({numbers}; a search needs about SNR 3 and '
                       '0.1 dB), so the found cell is not expected to beat random cells of its size.')
        else:
            verdict = (f'Possibly: the architecture moved the reward well above its noise ({numbers}); '
                       '`tools/search_vs_random.py` measures whether the found network beats random ones.')
        e = s.get('entropy')
        if e and e.get('drop') is not None:
            verdict += (f" (The policy entropy fell {100 * e['drop']:.0f}% over the search: the controller "
                        'converged, on whatever signal it had.)')
        lines.append(f'**Better than chance?** {verdict}')
    return lines


# --------------------------------------------------------------------------------------- report
def _test_option(label: Optional[str], path: str) -> dict:
    opt = derive_lib.read_options(path)
    net = dict(opt.get('network_g') or {})
    if 'type' not in net:
        raise ReportError(f'{path} has no network_g')
    sets = [dict(v, name=v.get('name', k)) for k, v in sorted((opt.get('datasets') or {}).items())]
    for d in sets:
        for key in ('dataroot_gt', 'dataroot_lq'):
            if d.get(key) and not osp.isabs(d[key]):
                d[key] = osp.join(ROOT, d[key])
    return {'label': label or net['type'], 'arch': net['type'], 'network_g': derive_lib.plain(net),
            'name': opt['name'], 'results_dir': _results_dir(opt['name']), 'scale': opt.get('scale'),
            'test_sets': sets, 'option_file': path}


def build_report(search_exp: str, out: str, test_opts: Sequence[Tuple[Optional[str], str]] = (),
                 search_opt: Optional[str] = None, derive_dir: Optional[str] = None,
                 timings: Optional[Dict[str, float]] = None, notes: Sequence[str] = (),
                 complexity_cache: Optional[str] = None, crop_image: Optional[str] = None,
                 training: Optional[str] = None, seed_spread: Optional[dict] = None) -> dict:
    """Write the report folder ``out``; returns the ``report.json`` dict.

    ``training``: one sentence on how the trained networks were trained (the table's caption quotes it).
    ``seed_spread``: the seed-spread measurement that applies to this setting (``results.seed_spread``;
    its ``networks`` keyed by arch give each row's ``seed_spread``), or None.

    ``test_opts``: (label or None, test option file) per method, in table order.
    """
    search_exp = osp.abspath(search_exp)
    if not osp.isdir(search_exp):
        raise ReportError(f'search experiment not found: {search_exp}')
    search_opt = search_opt or find_search_option(search_exp)
    sopt = derive_lib.read_options(search_opt)
    net_g = sopt['network_g']
    scale = int(sopt['scale'])
    space = {'num_blocks': net_g.get('num_blocks', 4), 'num_nodes': net_g.get('num_nodes', 4),
             'num_feat': net_g.get('num_feat', 64), 'feature_fusion_search': bool(net_g.get('feature_fusion_search'))}
    history_file = (sopt.get('search') or {}).get('history_file', 'search_history.jsonl')
    history = read_history(osp.join(search_exp, history_file))
    signal_rows = read_history(osp.join(search_exp, (sopt.get('search') or {}).get('signal_file',
                                                                                  'search_signal.jsonl')))
    derive_dir = derive_dir or osp.join(search_exp, 'derive')
    methods = [_test_option(label, path) for label, path in test_opts]
    os.makedirs(out, exist_ok=True)

    # the found genotype
    chosen_path = osp.join(derive_dir, 'chosen.json')
    derive_info = None
    if osp.isfile(chosen_path):
        with open(chosen_path) as f:
            derive_info = json.load(f)
        genotype = Genotype.parse(derive_info.get('genotype_dict') or derive_info['genotype'])
        source = osp.relpath(chosen_path, ROOT) if chosen_path.startswith(ROOT) else chosen_path
    elif any(m['arch'] == 'DeCoNASNet' for m in methods):
        m = next(m for m in methods if m['arch'] == 'DeCoNASNet')
        genotype, source = Genotype.parse(m['network_g']['genotype']), m['option_file']
    elif history:
        genotype, source = Genotype.parse(max(history, key=lambda r: r['reward'])['genotype']), 'history (best reward)'
    else:
        raise ReportError(f'no genotype: {chosen_path} is missing (run tools/derive.py), no DeCoNASNet test option '
                          'and no search history')
    found_net = {'type': 'DeCoNASNet', 'genotype': genotype.to_string(), 'num_blocks': space['num_blocks'],
                 'num_nodes': space['num_nodes'], 'num_feat': space['num_feat'], 'upscale': scale,
                 'num_in_ch': net_g.get('num_in_ch', 3), 'num_out_ch': net_g.get('num_out_ch', 3)}
    from ..complexity import count_params
    found_params = count_params(genotype, num_blocks=space['num_blocks'], num_feat=space['num_feat'], upscale=scale,
                                num_in_ch=found_net['num_in_ch'], num_out_ch=found_net['num_out_ch'])

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
    test_sets: List[str] = []
    result_rows = []
    for m in methods:
        log = find_test_log(m['results_dir'])
        metrics = parse_test_log(log) if log else {}
        for ts in m['test_sets']:
            if ts['name'] not in test_sets:
                test_sets.append(ts['name'])
        result_rows.append({'label': m['label'], 'arch': m['arch'], 'scale': m['scale'] or scale,
                            'params': count_network_params(m['network_g']), 'results_dir': m['results_dir'],
                            'metrics': metrics,
                            'per_image': {ts['name']: values for ts in m['test_sets']
                                          for values in [per_image_metrics(m, ts, m['scale'] or scale)] if values},
                            'seed_spread': ((seed_spread or {}).get('networks') or {}).get(m['arch'])})
    gains_over_bicubic(result_rows, test_sets)
    caption = table_caption(result_rows, test_sets, training, seed_spread)

    # figures
    figures = {}
    label = (f"{osp.basename(search_exp)}: N={space['num_blocks']}, M={space['num_nodes']}, C={space['num_feat']}, "
             f'x{scale}')
    figures['scatter'] = osp.basename(draw_scatter(history, genotype, found_params,
                                                   osp.join(out, FIGURE_FILES['scatter']),
                                                   f'Sampled genotypes during the search ({label})'))
    figures['curves'] = osp.basename(draw_curves(history, osp.join(out, FIGURE_FILES['curves']),
                                                 f'Controller training ({label})'))
    figures['policy'] = osp.basename(draw_policy(history, osp.join(out, FIGURE_FILES['policy']),
                                                 f'Policy per decision ({label})'))
    figures['signal'] = (osp.basename(draw_signal(signal_rows, osp.join(out, FIGURE_FILES['signal']),
                                                  f'Architecture signal on the shared weights ({label})'))
                         if signal_rows else None)
    from .draw import draw_genotype
    figures['cell'] = osp.basename(draw_genotype(genotype, osp.join(out, FIGURE_FILES['cell'])))
    all_sets = []
    for m in methods:
        for ts in m['test_sets']:
            if ts['name'] not in [s['name'] for s in all_sets]:
                all_sets.append(ts)
    crops = {'image': None, 'test_set': None, 'box': None, 'psnr': {}}
    figures['crops'] = None
    if methods and all_sets:
        crops = visual_comparison(methods, all_sets, scale, osp.join(out, FIGURE_FILES['crops']), crop_image)
        if crops['image'] is not None:
            figures['crops'] = FIGURE_FILES['crops']

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
        },
        'genotype': {
            'decimal': genotype.to_string(), 'bits': genotype.to_string('bits'), 'codes': list(genotype.codes),
            'fusion': ({'local': list(genotype.local_bits), 'global': list(genotype.global_bits)}
                       if genotype.has_fusion_bits else None),
            'source': source, 'params': found_params,
            'derive': None if derive_info is None else {
                k: derive_info.get(k) for k in ('psnr', 'reward', 'rank', 'samples', 'distinct', 'scored_on', 'alpha')},
        },
        'complexity': {'hr_size': [1280, 720], 'rows': complexity_rows},
        'results': {'test_sets': test_sets, 'rows': result_rows, 'caption': caption,
                    'seed_spread': seed_spread},
        'figures': figures,
        'crops': crops,
        'timings': dict(timings) if timings else None,
        'notes': list(notes),
    }
    report['summary'] = first_screen(report)
    table = results_table(result_rows, test_sets, caption)
    atomic_write_text(osp.join(out, 'results_table.md'), table)
    atomic_write_text(osp.join(out, 'report.json'), json.dumps(report, indent=2) + '\n')
    atomic_write_text(osp.join(out, 'report.md'), render_markdown(report, table))
    return report


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
                '| Method | Params | ' + ' | '.join(BENCHMARKS) + ' |', '|---|---:|' + '---:|' * 4]
        out += [f"| {name} | {p} | " + ' | '.join(cells) + ' |' for name, p, cells in PAPER_X2]
        out.append('')
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
        if sig['median_snr'] < 3 or gap < 0.1:
            out += [f"The architecture mattered little in this search: a search can only find better networks when "
                    f"the architecture moves the reward well above its noise (here median SNR {sig['median_snr']:.2f}; "
                    f"3 or more is a useful bar) and the empty and the full cell differ clearly (here "
                    f"{gap:.3f} dB; 0.1 dB or more). Below that, the found network is not expected to beat "
                    "random ones of its size (`tools/search_vs_random.py` measures it).", '']
        if sig['learned_from_noise']:
            out += ['**Warning: the controller learned from noise.** Over the search the architecture moved the '
                    'reward less than the reward noise did (median SNR below 1): whatever the controller '
                    'converged to says little about which architecture is better.', '']
        out += [f"![search signal]({r['figures']['signal']})", '']
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
                '| step | seconds |', '|---|---:|']
        out += [f'| {k} | {v:.1f} |' for k, v in r['timings'].items()]
        out.append('')
    if r['notes']:
        out += ['## Notes', ''] + [f'- {n}' for n in r['notes']] + ['']
    return '\n'.join(out)


# ------------------------------------------------------------------------------------------ CLI
def parse_args(argv=None):
    import argparse
    p = argparse.ArgumentParser(description='Write the DeCoNAS report (report.md, report.json, PNGs) of a search '
                                'experiment and its tests.')
    p.add_argument('--search-exp', required=True, help='search experiment folder (experiments/<name>)')
    p.add_argument('--out', required=True, help='report folder')
    p.add_argument('--search-opt', help='search option file (default: the one copied into the experiment)')
    p.add_argument('--derive-dir', help='tools/derive.py output (default: <search-exp>/derive)')
    p.add_argument('--test-opt', action='append', default=[], metavar='[LABEL=]YML',
                   help='test option file of one method (repeatable, in table order), optionally with a label: '
                   '"DeCoNASNet (found)=demo_out/options/test_found.yml"')
    p.add_argument('--crop-image', help='test image of the visual comparison (default: the first colour image)')
    p.add_argument('--complexity-cache', help='JSON cache of params/MACs (default: <out>/complexity_cache.json)')
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    test_opts = []
    for item in args.test_opt:
        label, sep, path = item.partition('=')
        test_opts.append((label, path) if sep else (None, item))
    report = build_report(args.search_exp, args.out, test_opts, search_opt=args.search_opt,
                          derive_dir=args.derive_dir, complexity_cache=args.complexity_cache,
                          crop_image=args.crop_image)
    with open(osp.join(args.out, 'results_table.md')) as f:
        print(f.read())
    print(f"report: {osp.join(args.out, 'report.md')} (genotype {report['genotype']['decimal']})")
    return report
