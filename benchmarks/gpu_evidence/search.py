"""Stage ``search``: the paper's space on real images, and whether the controller learned something.

Parts:

1. ``search``: ``deconas_plugin/train.py`` on a search option file made from the project's search defaults
   (``SEARCH_DEFAULTS``; alpha 0) and the paper's N4 M4 C64 x2 space, batch 16, LR patch 64, child Adam
   1e-3 (the setting in which an H200 showed an architecture signal after 3,000 child steps), reward
   patches from held-out images (``reward/``), the signal probe every phase. As many child steps as
   ``child_budget_s`` allows at ``child_step_s`` (measured by the speed stage when it ran, else the
   planned figure), at least ``min_child_steps``; controller phases of ``controller_steps`` from
   ``controller_start_iter`` on, every ``child_steps``. Checkpoints at every phase: a search stopped at
   its time limit is evaluated on its last one (and ``--auto_resume`` continues it).
2. ``derive``: ``tools/derive.py`` (controller samples scored with the shared weights on the reward data,
   best reward kept): the genotype the retrain stage retrains, and its retrain option file (the search's
   data).
3. ``evaluate``: on patches no reward used (``eval/``, fixed batches), ``samples`` genotypes of the final
   policy against ``samples`` uniform ones (every bit 1 with probability 1/2), scored with the shared
   weights as ``tools/derive.py`` scores them (``derive.score``): the mean difference with a 95% interval
   (normal approximation, Welch); the entropy of the first and the last controller phase; the decisions
   the last phase settled (mean probability of a 1 at least ``settled`` or at most 1 - ``settled``); the
   empty vs full genotype gap on the same patches and the signal probe's last row.
"""
import copy
import math
import os.path as osp
import random
from typing import List

from deconas_plugin import derive as derive_lib
from deconas_plugin.derive import read_options
from deconas_plugin.pipelines import search_vs_random as svr
from deconas_plugin.pipelines.runs import write_options
from deconas_plugin.reporting.metrics import entropy_summary, read_history
from deconas_plugin.utils.cli import load_tool
from .entry import run_entry
from .prepare import SCALE, paths
from .runner import ROOT, EvidenceError

SEARCH_TEMPLATE = osp.join(ROOT, 'options', 'search', 'search_N4_M4.yml')


def check_inputs(runner, stage):
    paths(runner.data)


def child_step_estimate_s(ctx: dict, planned: float) -> float:
    """Seconds per child step: the speed stage's measured mean when it ran on this device, else ``planned``."""
    sup = (((ctx['results'].get('speed') or {}).get('parts') or {}).get('supernet') or {})
    ms = (sup.get('result') or {}).get('child_ms') if sup.get('status') == 'done' else None
    return ms / 1000 if ms and not ctx['tiny'] else planned


def child_step_count(budget_s: float, step_s: float, minimum: int, maximum: int, phase: int) -> int:
    """Child steps that fit ``budget_s`` at ``step_s`` each, within [minimum, maximum], a multiple of ``phase``."""
    steps = int(budget_s / step_s) if step_s > 0 else maximum
    steps = max(minimum, min(maximum, steps))
    return -(-steps // phase) * phase


def search_options(ctx: dict, num_feat: int, num_blocks: int, num_nodes: int, batch: int, lr_patch: int,
                   total_iter: int, controller_start_iter: int, child_steps: int, controller_steps: int,
                   reward_patches: int, reward_lr_patch: int, signal_probe: int, num_workers: int,
                   lr: float = 1e-3) -> dict:
    """The search option file of this stage (see the module doc)."""
    from deconas_plugin.options import SEARCH_DEFAULTS
    d = paths(ctx['data'])
    opt = read_options(SEARCH_TEMPLATE)
    opt.update(name=f'{ctx["prefix"]}_search', scale=SCALE, num_gpu=1 if ctx['device'].startswith('cuda') else 0,
               manual_seed=10)
    opt['network_g'].update(num_feat=num_feat, num_blocks=num_blocks, num_nodes=num_nodes, upscale=SCALE)
    train = opt['datasets']['train']
    train.update(name='train_small', dataroot_gt=d['train_hr'], dataroot_lq=d['train_lr'], io_backend={'type': 'disk'},
                 gt_size=lr_patch * SCALE, batch_size_per_gpu=batch, num_worker_per_gpu=num_workers,
                 persistent_workers=num_workers > 0)
    # the evaluation tiles: the test sets stay unseen by the search (the retrain stage's protocol checks it)
    opt['datasets']['val'] = {'name': 'eval', 'type': 'PairedImageDataset', 'io_backend': {'type': 'disk'},
                              'dataroot_gt': d['eval_hr'], 'dataroot_lq': d['eval_lr'],
                              'meta_info_file': d['eval_meta'], 'filename_tmpl': '{}'}
    search = dict(SEARCH_DEFAULTS)
    search.update(alpha=0.0, child_steps=child_steps, controller_steps=controller_steps,
                  controller_start_iter=controller_start_iter, reward_patches=reward_patches,
                  signal_probe=signal_probe,
                  reward_dataset={'name': 'reward', 'type': 'PairedImageDataset', 'dataroot_gt': d['reward_hr'],
                                  'dataroot_lq': d['reward_lr'], 'meta_info_file': d['reward_meta'],
                                  'filename_tmpl': '{}', 'io_backend': {'type': 'disk'},
                                  'gt_size': reward_lr_patch * SCALE})
    opt['search'] = search
    opt['train']['optim_g']['lr'] = lr
    opt['train']['total_iter'] = total_iter
    opt['train']['scheduler']['milestones'] = [10 * total_iter]  # constant over so short a search
    opt['val'].update(val_freq=10 * total_iter)  # validation once, at the end (the greedy genotype)
    opt['logger'].update(print_freq=max(1, child_steps // 5), save_checkpoint_freq=child_steps, use_tb_logger=False)
    return opt


def experiment_dir(ctx: dict) -> str:
    return osp.join(ROOT, 'experiments', f'{ctx["prefix"]}_search')


def options_path(ctx: dict) -> str:
    """The search's option file."""
    return osp.join(ctx['out'], 'options', 'search.yml')


# ------------------------------------------------------------------------------------------------ parts
def search(ctx: dict, child_budget_s: float, child_step_s: float, min_child_steps: int, max_child_steps: int,
           **sizes) -> dict:
    step_s = child_step_estimate_s(ctx, child_step_s)
    total = child_step_count(child_budget_s, step_s, min_child_steps, max_child_steps, sizes['child_steps'])
    opt = search_options(ctx, total_iter=total, **sizes)
    path = write_options(options_path(ctx), opt, f'# Written by tools/gpu_evidence.py (search stage): {total} child '
                         f'steps at an estimated {step_s * 1000:.0f} ms each\n')
    run_entry('deconas_plugin/train.py', ['-opt', path, '--auto_resume'])
    exp = experiment_dir(ctx)
    phases = {r['iter'] for r in read_history(osp.join(exp, 'search_history.jsonl'))}
    return {'options': opt, 'options_file': path, 'child_steps': total, 'child_step_estimate_s': step_s,
            'controller_phases': len(phases), 'experiment': exp}


def derive(ctx: dict, samples: int) -> dict:
    exp = experiment_dir(ctx)
    path = options_path(ctx)
    if not osp.isdir(osp.join(exp, 'models')):
        raise EvidenceError(f'no search checkpoints in {exp}: the search part did not run')
    load_tool('derive').main(['-opt', path, '--experiment', exp, '--num-samples', str(samples), '--seed', '0',
                               '--scored-on', 'reward', '--data-from-search', '--device', ctx['device']])
    chosen = derive_lib.read_chosen(osp.join(exp, 'derive'), derive_lib.network_sizes(read_options(path)))
    return {'genotype': chosen['genotype'], 'params': chosen['params'], 'supernet_psnr': chosen['psnr'],
            'samples': chosen['samples'], 'distinct': chosen['distinct']}


def evaluate(ctx: dict, samples: int, batches: int, patches: int, settled: float) -> dict:
    import numpy as np
    import torch

    from deconas_plugin.genotype import Genotype
    from deconas_plugin.reward import draw_patches, reward_dataset
    from deconas_plugin.search_signal import empty_genotype
    exp, path = experiment_dir(ctx), options_path(ctx)
    opt = read_options(path)
    device = torch.device(ctx['device'])
    torch.manual_seed(0)
    supernet, controller = derive_lib.load_search(opt, exp, 'latest', device)
    d = paths(ctx['data'])
    eval_opt = copy.deepcopy(opt)
    eval_opt['search']['reward_dataset'].update(name='eval', dataroot_gt=d['eval_hr'], dataroot_lq=d['eval_lr'],
                                                meta_info_file=d['eval_meta'])
    dataset = reward_dataset(eval_opt, root=derive_lib.PROJECT_ROOT)
    data = [draw_patches(dataset, patches, 1000 + b, device) for b in range(batches)]
    with torch.no_grad():
        policy, _, entropy = controller.sample_many(samples)
    rng = random.Random(0)
    n, m = supernet.num_nodes, supernet.num_blocks
    fusion = supernet.feature_fusion_search
    uniform = [Genotype.random(n, m, fusion, rng=rng) for _ in range(samples)]
    reference = [empty_genotype(n, m, fusion), Genotype.full(n, m, fusion)]
    crop = opt['search'].get('reward_crop_border') or opt['scale']
    genotypes = list(policy) + uniform + reference
    scores = derive_lib.score(supernet, genotypes, data, crop, derive_lib.search_alpha(opt), progress=False)
    psnr = {r['genotype']: r['psnr'] for r in scores}  # of each distinct genotype, as tools/derive.py scores
    per_genotype = np.array([psnr[g.to_string()] for g in genotypes])
    pol, uni = per_genotype[:samples], per_genotype[samples:2 * samples]
    diff = float(pol.mean() - uni.mean())
    se = math.sqrt(pol.var(ddof=1) / samples + uni.var(ddof=1) / samples) if samples > 1 else float('nan')
    history = read_history(osp.join(exp, 'search_history.jsonl'))
    signal = read_history(osp.join(exp, 'search_signal.jsonl'))
    entropies = entropy_summary(history) or {}  # history rows come in the order of the controller phases
    last = [r for r in history if r['iter'] == history[-1]['iter']]
    p_last = np.mean([r['p'] for r in last], axis=0) if last else np.array([])
    return {
        'policy_minus_uniform_db': diff, 'ci95_db': [diff - 1.96 * se, diff + 1.96 * se],
        'policy_mean_db': float(pol.mean()), 'uniform_mean_db': float(uni.mean()),
        'policy_std_db': float(pol.std(ddof=1)) if samples > 1 else None,
        'uniform_std_db': float(uni.std(ddof=1)) if samples > 1 else None,
        'full_minus_empty_db': float(per_genotype[-1] - per_genotype[-2]),
        'policy_distinct': len(set(policy)), 'samples': samples, 'eval_batches': batches, 'eval_patches': patches,
        'entropy_now': float(entropy.mean()),
        'entropy_first_phase': entropies.get('first_phase'), 'entropy_last_phase': entropies.get('last_phase'),
        'phases': len({r['iter'] for r in history}), 'decisions': len(p_last),
        'settled': {int(i): round(float(v), 3) for i, v in enumerate(p_last) if v >= settled or v <= 1 - settled},
        'settled_threshold': settled, 'last_signal': signal[-1] if signal else None,
        'greedy': str(controller.greedy()),
    }


# ------------------------------------------------------------------------------------------ the answer
def summarize(parts: dict, ctx: dict) -> dict:
    got = {n: p['result'] for n, p in parts.items() if p.get('status') == 'done'}
    out = {'found': (got.get('derive') or {}).get('genotype'), 'found_params': (got.get('derive') or {}).get('params')}
    e = got.get('evaluate')
    if e:
        low, high = e['ci95_db']
        out.update(policy_minus_uniform_db=e['policy_minus_uniform_db'], ci95_db=e['ci95_db'],
                   full_minus_empty_db=e['full_minus_empty_db'],
                   answer=('the policy scores higher than uniform sampling' if low > 0 else
                           'the policy scores lower than uniform sampling' if high < 0 else
                           'no difference between the policy and uniform sampling at 95%'))
    return out


def markdown(result: dict) -> List[str]:
    got = {n: p['result'] for n, p in result['parts'].items() if p.get('status') == 'done'}
    lines = []
    s = got.get('search')
    if s:
        o = s['options']
        train, net = o['datasets']['train'], o['network_g']
        lines.append(f'Search: N{o["network_g"]["num_blocks"]} M{o["network_g"]["num_nodes"]} '
                     f'C{net["num_feat"]} x{o["scale"]}, batch {train["batch_size_per_gpu"]}, '
                     f'LR patch {o["datasets"]["train"]["gt_size"] // o["scale"]}, child Adam '
                     f'{o["train"]["optim_g"]["lr"]:g}, alpha {o["search"]["alpha"]:g}, {s["child_steps"]:,} child '
                     f'steps (estimated {s["child_step_estimate_s"] * 1000:.0f} ms each), {s["controller_phases"]} '
                     'controller '
                     f'phases of {o["search"]["controller_steps"]} steps from iteration '
                     f'{o["search"]["controller_start_iter"]:,}.')
    d = got.get('derive')
    if d:
        lines += ['', f'Derived genotype: `{d["genotype"]}` ({d["params"]:,} params; shared-weight PSNR-Y '
                  f'{d["supernet_psnr"]:.3f} dB on the reward patches, best of {d["distinct"]} distinct of '
                  f'{d["samples"]} samples).']
    e = got.get('evaluate')
    if e:
        sig = e.get('last_signal') or {}
        settled = ', '.join(f'{k}: {v}' for k, v in e['settled'].items())
        lines += ['', f'On {e["eval_batches"]} batches of {e["eval_patches"]} held-out patches no reward used, '
                  f'{e["samples"]} samples each:', '', '| measurement | value |', '|---|---|',
                  f'| policy - uniform, mean PSNR-Y | **{e["policy_minus_uniform_db"]:+.3f} dB** (95%: '
                  f'{e["ci95_db"][0]:+.3f} to {e["ci95_db"][1]:+.3f}) |',
                  f'| policy / uniform mean | {e["policy_mean_db"]:.3f} / {e["uniform_mean_db"]:.3f} dB |',
                  f'| full - empty genotype, same patches | {e["full_minus_empty_db"]:+.3f} dB |',
                  f'| entropy, first / last phase / now | {svr.fmt(e["entropy_first_phase"], 2)} / '
                  f'{svr.fmt(e["entropy_last_phase"], 2)} / {e["entropy_now"]:.2f} nats |',
                  f'| decisions settled (p >= {e["settled_threshold"]} or <= {1 - e["settled_threshold"]:.2g}) | '
                  f'{len(e["settled"])} of {e["decisions"]}: {settled or "none"} |',
                  f'| distinct policy samples | {e["policy_distinct"]} of {e["samples"]} |',
                  f'| signal probe, last phase | genotype std {svr.fmt(sig.get("genotype_std"))} dB, full - empty '
                  f'{svr.fmt((sig.get("full_psnr") or 0) - (sig.get("empty_psnr") or 0) if sig else None)} dB |',
                  f'| greedy genotype | `{e["greedy"]}` |']
        a = (result.get('summary') or {}).get('answer')
        if a:
            lines += ['', f'Answer: {a}.']
    return lines

