"""The numbers of a report, from the files a run leaves: the search history and signal rows, the test logs
(``deconas_plugin/test.py``), per-image PSNR-Y / SSIM-Y of the saved outputs (the test's protocol: Y of
BT.601, border of ``scale`` pixels, a single-channel image on its own values), params and MACs of the
compared networks, and the gains over bicubic."""
import glob
import json
import os
import os.path as osp
import re
from typing import Dict, List, Optional, Tuple

import numpy as np

from .. import derive as derive_lib
from ..complexity import PAPER_HR_SIZE
from ..utils.checkpoint import atomic_write_text


class ReportError(ValueError):
    """A missing or unreadable input of the report; the message says which."""


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


def read_test_option(path: str, label: Optional[str] = None) -> dict:
    """A compared method from its test option file: ``label`` (default: the arch), ``arch``, ``network_g``,
    ``name``, ``results_dir`` (``results/<name>``, where ``deconas_plugin/test.py`` wrote), ``scale``,
    ``test_sets`` (the datasets, named, their folders absolute) and ``option_file``."""
    opt = derive_lib.read_options(path)
    net = dict(opt.get('network_g') or {})
    if 'type' not in net:
        raise ReportError(f'{path} has no network_g')
    sets = [dict(v, name=v.get('name', k)) for k, v in sorted((opt.get('datasets') or {}).items())]
    for d in sets:
        for key in ('dataroot_gt', 'dataroot_lq'):
            if d.get(key) and not osp.isabs(d[key]):
                d[key] = osp.join(derive_lib.PROJECT_ROOT, d[key])
    return {'label': label or net['type'], 'arch': net['type'], 'network_g': derive_lib.plain(net),
            'name': opt['name'], 'results_dir': osp.join(derive_lib.PROJECT_ROOT, 'results', opt['name']),
            'scale': opt.get('scale'), 'test_sets': sets, 'option_file': path}


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
        return json.dumps({'net': net_opt, 'scale': scale, 'hr': list(PAPER_HR_SIZE)}, sort_keys=True)

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

def entropy_summary(history: List[dict]) -> Optional[dict]:
    """Mean entropy of the first and the last controller phase, and the relative drop."""
    if not history:
        return None
    first_iter, last_iter = history[0]['iter'], history[-1]['iter']
    first = float(np.mean([r['entropy'] for r in history if r['iter'] == first_iter]))
    last = float(np.mean([r['entropy'] for r in history if r['iter'] == last_iter]))
    return {'first_phase': first, 'last_phase': last, 'drop': 1 - last / first if first else None}


def phase_table(history: List[dict], signal_rows: List[dict]) -> List[dict]:
    """One row per probed controller phase: the child step, the probe's genotype and interaction std,
    SNR and full minus empty PSNR-Y, and the policy the controller sampled in that phase (mean params
    and entropy of its samples; None before the first controller phase)."""
    table = []
    for r in signal_rows:
        steps = [h for h in history if h['iter'] == r['iter']]
        table.append({
            'iter': r['iter'], 'genotype_std': r['genotype_std'], 'interaction_std': r['interaction_std'],
            'snr': r['snr'], 'full_minus_empty': r['full_psnr'] - r['empty_psnr'],
            'policy_params': float(np.mean([h['params'] for h in steps])) if steps else None,
            'policy_entropy': float(np.mean([h['entropy'] for h in steps])) if steps else None})
    return table


def signal_summary(rows: List[dict]) -> Optional[dict]:
    """The last probe row, the number of phases probed, the median SNR and whether it stayed below 1."""
    if not rows:
        return None
    median = float(np.median([r['snr'] for r in rows]))
    return {**rows[-1], 'phases': len(rows), 'median_snr': median, 'learned_from_noise': median < 1}

# --------------------------------------------------------------------------------- visual crops
def read_png(path: str) -> np.ndarray:
    import cv2
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ReportError(f'cannot read image {path}')
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    return img


def luma(img: np.ndarray) -> np.ndarray:
    """Full-range BT.601 luma of a BGR uint8 image, rounded (a gray image is returned as is)."""
    if img.ndim == 2:
        return img
    b, g, r = (img[..., i].astype(np.float64) for i in range(3))
    return np.clip(np.round(0.299 * r + 0.587 * g + 0.114 * b), 0, 255).astype(np.uint8)


def _y_pair(sr: np.ndarray, gt: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``sr`` and ``gt`` made comparable as the test metric does: a gray side makes the other its luma;
    ``sr`` cut to the size of ``gt``. Shapes (H, W) or (H, W, 3), uint8."""
    if gt.ndim == 2 and sr.ndim == 3:
        sr = luma(sr)
    if sr.ndim == 2 and gt.ndim == 3:
        gt = luma(gt)
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
    (``read_test_option``) saved for ``test_set`` (``results/<name>/visualization/<set>/<image>_<name>.png``),
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
        sr, gt = read_png(osp.join(folder, name)), read_png(gt_path)
        out[stem] = {'psnr': image_psnr_y(sr, gt, scale), 'ssim': image_ssim_y(sr, gt, scale)}
    return out

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
