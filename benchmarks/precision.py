"""Section 7, ``precision``: a small DeCoNASNet (paper genotype, N = 4, M = 4, C = 16) retrained from the same
initial weights on the same batches (embedded train split, batch 8, LR patch 32, Adam 1e-3 halved at 1/2
and 3/4; 1500 iterations on CPU, 1000 on CUDA) in fp32 with two batch seeds (the run-to-run noise), with
bf16 autocast (and fp16 autocast + GradScaler on CUDA): ms per iteration, final loss, and fp32 PSNR-Y /
SSIM-Y on the embedded test images, differences vs fp32."""
import copy
import os
import os.path as osp
import shutil
import statistics
import tempfile
import time
from typing import List, Optional, Sequence

import torch
from torch import nn

from deconas_plugin.genotype import PAPER_GENOTYPE
from deconas_plugin.utils.markdown_table import md_table
from .common import faster_text, quiet, say
from .timing import TrainStep, median_ms, timed


PRECISION_SEEDS = ('A', 'B')


def _precision_variants(device: torch.device):
    """(name, autocast dtype, batch seed) of the retrainings of section 7."""
    out = [('fp32', None, 'A'), ('fp32, batch seed B', None, 'B'), ('bf16 autocast', torch.bfloat16, 'A')]
    if device.type == 'cuda':
        out.append(('fp16 autocast + GradScaler', torch.float16, 'A'))
    return out


def _read_tensor(path: str) -> torch.Tensor:
    """An image file as BasicSR's loaders read it: float32 RGB (3, H, W) in [0, 1], gray replicated."""
    import cv2
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise OSError(f'cannot read {path}')
    return torch.from_numpy(cv2.cvtColor(img, cv2.COLOR_BGR2RGB).transpose(2, 0, 1).copy()).float() / 255.


def _split_pairs(folder: str, scale: int) -> List[tuple]:
    """(name, LR tensor, HR tensor, HR file is single-channel) of a prepared split (``GTmod{s}``/``LRbicx{s}``)."""
    from deconas_plugin.utils.y_protocol import is_single_channel
    out = []
    for file in sorted(os.listdir(osp.join(folder, f'GTmod{scale}'))):
        hr = osp.join(folder, f'GTmod{scale}', file)
        out.append((osp.splitext(file)[0], _read_tensor(osp.join(folder, f'LRbicx{scale}', file)), _read_tensor(hr),
                    is_single_channel(hr)))
    return out


class PatchSampler:
    """Training batches cut from whole images: random LR patch + its HR patch, flips and a transpose
    (BasicSR's paired crop and augment). The same seed gives the same sequence of batches."""

    def __init__(self, pairs: Sequence[tuple], scale: int, patch: int, batch: int, seed: int):
        import numpy as np
        self.pairs, self.scale, self.patch, self.batch = pairs, scale, patch, batch
        self.rng = np.random.RandomState(seed)

    def __call__(self):
        s, p, lqs, gts = self.scale, self.patch, [], []
        for _ in range(self.batch):
            _, lq, gt, _ = self.pairs[self.rng.randint(len(self.pairs))]
            h, w = lq.shape[1:]
            y, x = self.rng.randint(h - p + 1), self.rng.randint(w - p + 1)
            a, b = lq[:, y:y + p, x:x + p], gt[:, s * y:s * (y + p), s * x:s * (x + p)]
            hflip, vflip, rot = self.rng.rand(3) < 0.5
            if hflip:
                a, b = a.flip(2), b.flip(2)
            if vflip:
                a, b = a.flip(1), b.flip(1)
            if rot:
                a, b = a.transpose(1, 2), b.transpose(1, 2)
            lqs.append(a)
            gts.append(b)
        return torch.stack(lqs).contiguous(), torch.stack(gts).contiguous()


def evaluate_sr(net: nn.Module, pairs: Sequence[tuple], scale: int, device: torch.device) -> dict:
    """fp32 PSNR-Y / SSIM-Y of ``net`` on whole images, as the test pipeline scores them.

    BasicSR's ``calculate_psnr`` / ``calculate_ssim`` (``test_y_channel``, ``crop_border`` = scale) on
    ``tensor2img`` of output and HR; a single-channel HR file follows the project's gray-image rule.
    """
    from basicsr.metrics import calculate_psnr, calculate_ssim
    from basicsr.utils import tensor2img

    from deconas_plugin.utils.y_protocol import gray_visuals
    was_training = net.training
    net.eval()
    rows = []
    with torch.no_grad():
        for name, lq, gt, gray in pairs:
            visuals = {'result': net(lq[None].to(device)).float().cpu(), 'gt': gt[None]}
            if gray:
                visuals = gray_visuals(visuals)
            sr, hr = tensor2img([visuals['result']]), tensor2img([visuals['gt']])
            rows.append({'image': name, 'psnr_y': float(calculate_psnr(sr, hr, scale, test_y_channel=True)),
                         'ssim_y': float(calculate_ssim(sr, hr, scale, test_y_channel=True))})
    net.train(was_training)
    return {'psnr_y': statistics.mean(r['psnr_y'] for r in rows), 'ssim_y': statistics.mean(r['ssim_y'] for r in rows),
            'per_image': rows}


def bench_precision(cfg: dict, device: torch.device) -> dict:
    """Retrain one small DeCoNASNet per variant (fp32 at two batch seeds, bf16 [, fp16 on CUDA]) from the
    same initial weights on the same batches; report speed, final loss and fp32 test PSNR-Y / SSIM-Y.

    The variants are stepped round robin (order reversed every iteration), so a change of machine load
    affects all of them alike; ms per iteration is the median over all iterations.
    """
    from basicsr.utils.registry import ARCH_REGISTRY

    from deconas_plugin.utils.embedded_data import SPLITS, prepare_embedded
    scale, iters = 2, cfg['precision_iters']
    tmp = tempfile.mkdtemp(prefix='deconas_bench_precision_')
    try:
        with quiet():
            dirs = prepare_embedded(osp.join(tmp, 'embedded'), (scale, ), max_side=cfg['precision_side'],
                                    splits={k: SPLITS[k] for k in ('train', 'test')})
        train_pairs, test_pairs = _split_pairs(dirs['train'], scale), _split_pairs(dirs['test'], scale)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    torch.manual_seed(cfg['seed'])
    base = ARCH_REGISTRY.get('DeCoNASNet')(PAPER_GENOTYPE, num_feat=cfg['precision_feat'],
                                           num_blocks=cfg['precision_blocks'], num_nodes=4, upscale=scale).to(device)
    state = copy.deepcopy(base.state_dict())
    seeds = {k: cfg['seed'] * 1000 + 100 + i for i, k in enumerate(PRECISION_SEEDS)}
    samplers = {k: PatchSampler(train_pairs, scale, cfg['precision_patch'], cfg['precision_batch'], seed)
                for k, seed in seeds.items()}
    milestones = [iters // 2, iters * 3 // 4]
    runs = []
    for name, dtype, seed_key in _precision_variants(device):
        net = copy.deepcopy(base)
        net.load_state_dict(state)
        empty = torch.empty(0, device=device)  # the batches are set every iteration
        step = TrainStep(net, empty, empty, amp_dtype=dtype, lr=cfg['precision_lr'])
        if dtype == torch.float16 and device.type == 'cuda':
            step.scaler = torch.amp.GradScaler('cuda')  # as train.autocast: fp16 (default init scale)
        sched = torch.optim.lr_scheduler.MultiStepLR(step.optimizer, milestones, gamma=0.5)
        runs.append({'name': name, 'dtype': dtype, 'seed': seed_key, 'step': step, 'sched': sched, 'times': [],
                     'losses': []})
    t0 = time.perf_counter()
    for it in range(iters):
        batches = {k: tuple(t.to(device) for t in sampler()) for k, sampler in samplers.items()}
        for run in (runs if it % 2 == 0 else runs[::-1]):
            step = run['step']
            step.x, step.y = batches[run['seed']]
            loss = []
            run['times'].append(timed(lambda: loss.append(float(step())), device))
            run['losses'].append(loss[0])
            run['sched'].step()
        if (it + 1) % max(1, iters // 10) == 0 or it + 1 == iters:
            say(f'  iter {it + 1}/{iters} ({time.perf_counter() - t0:.0f} s): ' + ', '.join(
                f'{r["name"]} loss {statistics.mean(r["losses"][-max(1, iters // 10):]):.4f}' for r in runs))
    tail = max(1, iters // 10)
    rows = []
    for run in runs:
        ev = evaluate_sr(run['step'].model, test_pairs, scale, device)
        nonfinite = sum(1 for v in run['losses'] if v != v or v in (float('inf'), -float('inf')))
        rows.append({'name': run['name'], 'autocast': str(run['dtype']).replace('torch.', '') if run['dtype'] else None,
                     'batch_seed': run['seed'], 'ms_per_iter': median_ms(run['times']),
                     'final_loss': statistics.mean(run['losses'][-tail:]), 'first_loss': run['losses'][0],
                     'nonfinite_losses': nonfinite, **ev})
        say(f'  {run["name"]}: {rows[-1]["ms_per_iter"]:.1f} ms/iter, final loss {rows[-1]["final_loss"]:.4f}, '
             f'PSNR-Y {ev["psnr_y"]:.3f} dB, SSIM-Y {ev["ssim_y"]:.4f}')
    ref = rows[0]
    for r in rows:
        r['speedup'] = ref['ms_per_iter'] / r['ms_per_iter']
        r['psnr_diff'] = r['psnr_y'] - ref['psnr_y']
        r['ssim_diff'] = r['ssim_y'] - ref['ssim_y']
    noise = abs(rows[1]['psnr_y'] - ref['psnr_y'])
    for r in rows:
        r['within_seed_noise'] = bool(abs(r['psnr_diff']) <= noise) if r['autocast'] else None
    return {'variants': rows, 'seed_noise_psnr_db': noise,
            'seed_noise_ssim': abs(rows[1]['ssim_y'] - ref['ssim_y']),
            'test_images': [p[0] for p in test_pairs], 'train_images': [p[0] for p in train_pairs],
            'batch_seeds': seeds,
            'setup': {'genotype': PAPER_GENOTYPE.to_string(), 'num_feat': cfg['precision_feat'],
                      'num_blocks': cfg['precision_blocks'], 'num_nodes': 4, 'scale': scale, 'iters': iters,
                      'batch': cfg['precision_batch'], 'patch': cfg['precision_patch'], 'lr': cfg['precision_lr'],
                      'milestones': milestones, 'image_side': cfg['precision_side'],
                      'params': sum(p.numel() for p in base.parameters()), 'loss_tail': tail}}


def precision_verdict(precision: Optional[dict], dtype: Optional[str]) -> Optional[str]:
    """'within seed noise' / 'beyond seed noise' for ``dtype``'s PSNR in section 7, or 'not measured'."""
    if not dtype:
        return None
    if not precision or 'error' in precision:
        return 'not measured'
    row = next((r for r in precision['variants'] if r['autocast'] == dtype), None)
    if row is None:
        return 'not measured'
    return 'within seed noise' if row['within_seed_noise'] else 'beyond seed noise'


def md_precision(s, cfg, result):
    st = s['setup']
    out = [f'DeCoNASNet `{st["genotype"]}` (paper genotype; N={st["num_blocks"]}, M={st["num_nodes"]}, '
           f'C={st["num_feat"]}, {st["params"]:,} params), x{st["scale"]}, trained {st["iters"]} iterations per '
           f'variant from the same initial weights: batch {st["batch"]}, LR patch {st["patch"]} cut with flips and '
           'transposes '
           f'from the embedded train split ({", ".join(s["train_images"])}; centre {st["image_side"]} px, '
           f'MATLAB-bicubic LR), the same batches for the same batch seed; L1, Adam {st["lr"]:g} halved at '
           f'{st["milestones"][0]} and {st["milestones"][1]} (the demo retrain). The variants are stepped round '
           f'robin; ms/iter is the median step time, final loss the mean of the last {st["loss_tail"]}. '
           'PSNR-Y / SSIM-Y '
           f'(BasicSR, crop border {st["scale"]}) in fp32 on the whole embedded test images '
           f'({", ".join(s["test_images"])}), mean over images. Two fp32 runs that differ only in the batch seed '
           'measure the run-to-run noise the autocast differences are compared with.', '']
    out += md_table(['variant', 'batch seed', 'ms/iter', 'speedup', 'final loss', 'PSNR-Y (dB)', 'SSIM-Y',
                     'PSNR - fp32 (dB)', 'SSIM - fp32'], 'll' + 'r' * 7,
                    [[r['name'], r['batch_seed'], f'{r["ms_per_iter"]:.1f}', f'{r["speedup"]:.2f}x',
                      f'{r["final_loss"]:.4f}', f'{r["psnr_y"]:.3f}', f'{r["ssim_y"]:.4f}', f'{r["psnr_diff"]:+.3f}',
                      f'{r["ssim_diff"]:+.4f}'] for r in s['variants']])
    images = [row['image'] for row in s['variants'][0]['per_image']]
    out += [''] + md_table(['variant', *(f'{i} PSNR-Y' for i in images)], 'l' + 'r' * len(images),
                           [[r['name'], *(f'{row["psnr_y"]:.3f}' for row in r['per_image'])] for r in s['variants']])
    ref, other = s['variants'][0]['per_image'], s['variants'][1]['per_image']
    parts = []
    for r in (r for r in s['variants'] if r['autocast']):
        diffs = [(a['psnr_y'] - b['psnr_y'], a['image'], abs(c['psnr_y'] - b['psnr_y']))
                 for a, b, c in zip(r['per_image'], ref, other)]
        worst = max(diffs, key=lambda d: abs(d[0]))
        parts.append(f'{r["name"]} is {faster_text(r["speedup"])} per iteration and changes the test PSNR-Y by '
                     f'{r["psnr_diff"]:+.3f} dB (SSIM-Y {r["ssim_diff"]:+.4f}), '
                     f'{"within" if r["within_seed_noise"] else "beyond"} the {s["seed_noise_psnr_db"]:.3f} dB between '
                     f'two fp32 runs with different batch seeds (largest change: {worst[1]} {worst[0]:+.3f} dB, seed '
                     f'noise there {worst[2]:.3f} dB)'
                     + (f'; {r["nonfinite_losses"]} non-finite losses' if r.get('nonfinite_losses') else ''))
    within = all(r['within_seed_noise'] for r in s['variants'] if r['autocast'])
    out += ['', '**Conclusion.** ' + '; '.join(parts) + '. Two seeds give a coarse noise estimate. The default stays '
            'fp32 (`train.autocast: ~`) ' + (
                'and autocast is an opt-in: its PSNR change is within that noise.' if within else
                'and autocast is an opt-in for speed at that cost, not a default.')]
    return out
