"""Stage ``speed``: the CUDA rows the docs leave open, and the evidence that would switch each opt-in
CUDA path on (side-by-side ratios, interleaved ABBA medians, plus a correctness check against eager).

Each part is a benchmark section's measurement at the plan's sizes (tiny ones for the CPU dry run):
``retrain_eager`` and the opt-in paths ``adam``, ``cuda_graph`` and ``compile`` are section 8's
``step_times`` and ``versus_eager`` (``benchmarks.retrain``: retrain step of DeCoNASNet, EDSR-baseline and
CARN in fp32 and bf16 with CUDA kernels per step; Adam ``fused=True``, the whole step replayed as one CUDA
graph and ``torch.compile`` against the eager step), ``supernet`` is section 1 (child step supernet / fixed
net) plus the reward step and the paper's N4 M4 search in hours, ``inference`` section 4's ``time_inference``
of the retrain networks. ``summarize`` writes section 8's verdict per opt-in path (``verdicts``:
``SWITCH_SPEEDUP``, ``WEIGHT_RTOL``), the Markdown is the sections' renderers.
"""
from typing import List, Optional

import torch

from ..common import make_supernet, random_batch
from ..inference import md_inference, time_inference
from ..retrain import (OPT_IN_PATHS, PRECISIONS, md_opt_in_paths, md_step_times, retrain_models, step_times,
                       verdicts, versus_eager as path_versus_eager)
from ..supernet import md_supernet
from ..timing import interleaved_ms

# The paper's search as options/search/search_N4_M4.yml runs it: 200 epochs of 1,000 child steps, 100 controller
# steps after each epoch from the 5th on (DESIGN.md: the reference starts the controller after epoch 5)
PAPER_CHILD_STEPS, PAPER_CONTROLLER_STEPS = 200_000, 19_600


def check_inputs(runner, stage):
    """Nothing to prepare: random batches."""


def _device(ctx: dict) -> torch.device:
    device = torch.device(ctx['device'])
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True  # as BasicSR's train pipeline
    return device


def _batch(ctx: dict, batch: int, patch: int):
    """(x (batch, 3, patch, patch), y (batch, 3, 2 patch, 2 patch)) of seed 0, on the context's device."""
    return random_batch({'batch': batch, 'patch': patch}, _device(ctx), 0)


# ------------------------------------------------------------------------------------------------ parts
def retrain_eager(ctx: dict, batch: int, patch: int, reps: int, warmup: int, nets: Optional[dict] = None,
                  precisions=tuple(PRECISIONS)) -> dict:
    """Section 8's ``step_times`` of the retrain networks (the paper's, or ``nets``: the tiny plan's sizes)."""
    x, y = _batch(ctx, batch, patch)
    return dict(step_times(retrain_models(nets), x, y, reps, warmup, precisions), batch=batch, lr_patch=patch,
                reps=reps, precisions=list(precisions))


def versus_eager(ctx: dict, path: str, batch: int, patch: int, reps: int, warmup: int, check_steps: int,
                 nets: Optional[dict] = None, precisions=tuple(PRECISIONS),
                 compile_args: Optional[dict] = None) -> dict:
    """Section 8's ``versus_eager`` of the opt-in ``path`` (``adam``, ``cuda_graph``, ``compile``)."""
    x, y = _batch(ctx, batch, patch)
    return path_versus_eager(path, retrain_models(nets), x, y, reps, warmup, check_steps, precisions, compile_args)


def supernet(ctx: dict, batch: int, patch: int, reps: int, warmup: int, genotypes: int, reward_patches: int,
             reward_patch: int, controller_steps: int, nets: Optional[dict] = None) -> dict:
    """Child step of the supernet vs its extracted fixed net (the benchmark's section 1), the reward step
    (shared-weight PSNR-Y of ``reward_patches`` LR patches + one REINFORCE controller step), and the paper's
    search (200,000 child steps, 19,600 controller steps) in hours from these."""
    from deconas_plugin.archs.deconas_controller_arch import DeCoNASController
    from deconas_plugin.reward import psnr_y

    from ..config import make_config
    from ..supernet import bench_supernet
    device = _device(ctx)
    sizes = nets['DeCoNASNet'] if nets else {'num_feat': 64, 'num_blocks': 4, 'num_nodes': 4}
    cfg = make_config(device, quick=bool(nets), genotypes=genotypes, reps=reps, warmup=warmup, patch=patch,
                      batch=batch, **sizes)
    child = bench_supernet(cfg, device)
    net = make_supernet(cfg, device).eval()
    controller = DeCoNASController(num_nodes=sizes['num_nodes'], num_blocks=sizes['num_blocks']).to(device)
    opt = torch.optim.Adam(controller.parameters(), lr=3e-4)
    lq, gt = random_batch({'batch': reward_patches, 'patch': reward_patch}, device, 1)

    def reward_step():
        bits = controller.decide(1, 'sample')
        log_prob, entropy = controller.score_logits(controller.logits(bits), bits)
        with torch.no_grad():
            reward = psnr_y(net, controller.bits_to_genotype(bits[0]), lq, gt, 2)
        loss = -(reward - 30.0) * log_prob.sum() - 1e-4 * entropy.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    reward_ms = interleaved_ms({'reward': reward_step}, controller_steps, warmup, device)['reward']
    child_ms = sum(r['supernet_ms'] for r in child['per_genotype']) / len(child['per_genotype'])
    hours = (PAPER_CHILD_STEPS * child_ms + PAPER_CONTROLLER_STEPS * reward_ms) / 3.6e6
    return {'child': child, 'child_ms': child_ms, 'reward_step_ms': reward_ms, 'reward_patches': reward_patches,
            'reward_lr_patch': reward_patch, 'search_hours_paper': hours, 'sizes': sizes}


def inference(ctx: dict, size: int, reps: int, nets: Optional[dict] = None) -> dict:
    """Section 4's ``time_inference`` of the retrain networks at ``size`` x ``size`` LR."""
    models = [(name, size, build) for name, build in retrain_models(nets).items()]
    return time_inference(models, reps, _device(ctx))


# ------------------------------------------------------------------------------------------ the answer
def summarize(parts: dict, ctx: dict) -> dict:
    """Per opt-in CUDA path: the measured speedup, whether it matched eager, and the verdict."""
    got = {n: p['result'] for n, p in parts.items() if p.get('status') == 'done'}
    measured = ctx['device'].startswith('cuda') and not ctx['tiny']
    s = got.get('supernet')
    return {'verdicts': verdicts({path: got[path] for path in OPT_IN_PATHS if path in got}, measured),
            'search_hours_paper': s['search_hours_paper'] if s else None}


def markdown(result: dict) -> List[str]:
    got = {n: p['result'] for n, p in result['parts'].items() if p.get('status') == 'done'}
    lines = md_opt_in_paths((result.get('summary') or {}).get('verdicts') or {}, got.get('compile'))
    r = got.get('retrain_eager')
    if r:
        lines += [''] + md_step_times(r, r['batch'], r['lr_patch'], r.get('reps', '-'))
    s = got.get('supernet')
    if s:
        lines += ['', f'Supernet child step (N{s["sizes"]["num_blocks"]} M{s["sizes"]["num_nodes"]} '
                  f'C{s["sizes"]["num_feat"]}): {s["child_ms"]:.1f} ms mean; reward step ({s["reward_patches"]} LR '
                  f'{s["reward_lr_patch"]}x{s["reward_lr_patch"]} patches + a controller step) '
                  f'{s["reward_step_ms"]:.1f} ms. The paper\'s search ({PAPER_CHILD_STEPS:,} child steps, '
                  f'{PAPER_CONTROLLER_STEPS:,} controller steps) would take **{s["search_hours_paper"]:.2f} h** '
                  '(data loading and validation not included).', ''] + md_supernet(s['child'], None, None)
    i = got.get('inference')
    if i:
        lines += ['', 'Inference at x2:', ''] + md_inference(i, None, None)
    return lines
