"""The figures of a report (PNG of a fixed size in pixels, ``FIGURE_SIZES``, written atomically): the
search scatter (paper Fig. 4), the controller's curves and policy, the architecture signal, the visual
comparison of crops (paper Fig. 6). Every figure is a matplotlib ``Figure`` without pyplot state."""
import os
import os.path as osp
from typing import List, Optional, Tuple

import numpy as np

from ..genotype import Genotype
from ..utils.checkpoint import atomic_open
from .metrics import ReportError, image_psnr_y, luma, read_png

DPI = 100
FIGURE_INCHES = {'scatter': (8.0, 5.5), 'curves': (9.0, 6.5), 'crops': (15.0, 4.2), 'signal': (9.0, 6.5),
                 'policy': (10.0, 5.0)}
FIGURE_SIZES = {k: (int(w * DPI), int(h * DPI)) for k, (w, h) in FIGURE_INCHES.items()}
FIGURE_FILES = {'scatter': 'search_scatter.png', 'curves': 'controller_curves.png', 'cell': 'found_cell.png',
                'crops': 'crops.png', 'signal': 'search_signal.png', 'policy': 'controller_policy.png'}

# ------------------------------------------------------------------------------------ file output
def save_figure(fig, path: str, dpi: int = DPI):
    """Save a matplotlib Figure (Agg canvas) as PNG atomically, at its own size (no tight bbox); ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    FigureCanvasAgg(fig)
    with atomic_open(path, 'wb', suffix='.png') as f:
        fig.savefig(f, format='png', dpi=dpi, facecolor='white')
    return path


def new_figure_of_size(inches: Tuple[float, float], dpi: int = DPI):
    """A matplotlib Figure (no pyplot state) of ``inches`` at ``dpi``."""
    from matplotlib.figure import Figure
    return Figure(figsize=inches, dpi=dpi, facecolor='white')


def new_figure(kind: str):
    return new_figure_of_size(FIGURE_INCHES[kind])


def stacked_axes(kind: str):
    """(figure, top axes, bottom axes) of a ``kind`` figure of two panels over one x axis."""
    fig = new_figure(kind)
    top = fig.add_axes([0.09, 0.55, 0.86, 0.38])
    return fig, top, fig.add_axes([0.09, 0.08, 0.86, 0.36], sharex=top)

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
    fig, ax1, ax2 = stacked_axes('curves')
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
    fig, ax1, ax2 = stacked_axes('signal')
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

def choose_box(hr: np.ndarray, size: int) -> Tuple[int, int, int, int]:
    """[x, y, w, h] of the ``size`` box with the most texture (gradient energy) of the HR image."""
    gray = luma(hr).astype(np.float64)
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
    hr = read_png(hr_path)
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
    gt = read_png(gt_path)
    panels = [('HR', gt, None)]

    def result(method):
        p = osp.join(method['results_dir'], 'visualization', ts['name'], f"{image}_{method['name']}.png")
        return read_png(p) if osp.isfile(p) else None

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
