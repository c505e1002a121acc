"""Can the controller learn a known preference? REINFORCE reward settings measured on a trained supernet.

Takes the supernet of a search checkpoint (frozen: no child steps, so only the reward settings
differ), plants a preference in the reward (genotypes whose decision ``--planted-bit`` is 1 score
``--delta`` dB less, about the architecture signal of a short search), and runs the search's own
controller phases (``DeCoNASSearchModel.train_controller``) for every setting x seed. Per run it
records the controller's entropy (first phase -> last), the final probability that the planted
decision is 1 (it starts near 0.5; learned: well below), and the mean PSNR-Y of genotypes drawn
from the final policy minus that of uniform random genotypes, on common batches (the real
architecture preference the controller picked up, without the planted part).

Settings are ``name:key=value,key=value`` with keys ``reward_mode``, ``baseline_samples``,
``lr`` (controller Adam), ``entropy_weight``, ``reward_patches``, ``alpha``; the default grid is
the one of the table in docs/search-evaluation.md ("Does the search search?", "2. A reward the
controller can learn from").

Example:
    python tools/controller_study.py -opt demo_out/options/search.yml --seeds 3 --out results/controller_study
"""
import copy
import json
import math
import os
import os.path as osp
import sys
import tempfile
import time

if __package__ in (None, ''):  # run as a script: make the project importable
    sys.path.insert(0, osp.abspath(osp.join(__file__, osp.pardir, osp.pardir)))

import deconas_plugin  # noqa: F401,E402  (registers archs, models, datasets, losses)
import numpy as np  # noqa: E402
import torch  # noqa: E402
from basicsr.models import build_model  # noqa: E402

from deconas_plugin import derive, reward, search_signal  # noqa: E402
from deconas_plugin.models import deconas_search_model  # noqa: E402
from deconas_plugin.options import SEARCH_DEFAULTS  # noqa: E402
from deconas_plugin.reporting.metrics import read_history  # noqa: E402
from deconas_plugin.utils.checkpoint import atomic_write_text  # noqa: E402
from deconas_plugin.utils.cli import add_search_checkpoint, run_tool, tool_parser  # noqa: E402
from deconas_plugin.utils.machine import default_threads, use_threads  # noqa: E402
from deconas_plugin.utils.markdown_table import md_table  # noqa: E402

DEFAULT_SETTINGS = [
    'fresh_ema:reward_mode=fresh,baseline_samples=0,lr=3e-4',
    'common_ema:reward_mode=common,baseline_samples=0,lr=3e-4',
    'common_phase:reward_mode=common,baseline_samples=4,lr=3e-4',
    'common_phase_lr1e-3:reward_mode=common,baseline_samples=4,lr=1e-3',
    'common_phase_lr3e-3:reward_mode=common,baseline_samples=4,lr=3e-3',
    'fresh_ema_lr3e-3:reward_mode=fresh,baseline_samples=0,lr=3e-3',
    'common_phase_lr3e-3_noentropy:reward_mode=common,baseline_samples=4,lr=3e-3,entropy_weight=0',
    'common_phase_lr3e-3_patches20:reward_mode=common,baseline_samples=4,lr=3e-3,reward_patches=20',
]
KEYS = {'reward_mode': str, 'baseline_samples': int, 'lr': float, 'entropy_weight': float, 'reward_patches': int,
        'alpha': float}


def parse_setting(text: str) -> dict:
    name, _, spec = text.partition(':')
    if not name or not spec:
        raise ValueError(f'a setting is name:key=value,...; got {text!r}')
    out = {'name': name}
    for item in spec.split(','):
        key, _, value = item.partition('=')
        if key not in KEYS:
            raise ValueError(f'unknown key {key!r} in setting {text!r}; known: {sorted(KEYS)}')
        out[key] = KEYS[key](value)
    return out


def parse_args(argv=None):
    p = tool_parser(__doc__)
    add_search_checkpoint(p, 'the search option file whose supernet is used',
                          iteration_help='supernet checkpoint iteration')
    p.add_argument('--settings', nargs='+', default=DEFAULT_SETTINGS, help='name:key=value,... (see above)')
    p.add_argument('--seeds', type=int, default=3)
    p.add_argument('--phases', type=int, default=15, help='controller phases per run (15)')
    p.add_argument('--steps', type=int, default=20, help='controller steps per phase (20)')
    p.add_argument('--planted-bit', type=int, default=9, help='decision whose 1 costs --delta dB (9)')
    p.add_argument('--delta', type=float, default=0.02, help='planted reward difference in dB (0.02)')
    p.add_argument('--eval-samples', type=int, default=32, help='policy and uniform genotypes compared at the end')
    p.add_argument('--out', required=True, help='output folder: controller_study.json and .md')
    return p.parse_args(argv)


def build_search_model(opt: dict, setting: dict, seed: int, steps: int, workdir: str):
    opt = copy.deepcopy(opt)
    opt.update(is_train=True, dist=False, rank=0, world_size=1, num_gpu=0, manual_seed=seed)
    opt['path'] = dict(opt.get('path') or {}, experiments_root=workdir, models=workdir, training_states=workdir,
                       log=workdir, visualization=workdir, pretrain_network_g=None, pretrain_network_c=None)
    search = opt.setdefault('search', {})
    search.update(controller_steps=steps, signal_probe=0, history_file='history.jsonl',
                  reward_mode=setting.get('reward_mode', 'fresh'), baseline_samples=setting.get('baseline_samples', 0))
    search['alpha'] = setting.get('alpha', 0.0)  # only the planted preference and the PSNR, unless asked
    if 'reward_patches' in setting:
        search['reward_patches'] = setting['reward_patches']
    train = opt['train']
    train['optim_c'] = {'type': 'Adam', 'lr': setting.get('lr', 3e-4)}
    if 'entropy_weight' in setting:
        train['reinforce_opt'] = dict(train.get('reinforce_opt') or {'type': 'REINFORCELoss'},
                                      entropy_weight=setting['entropy_weight'])
    torch.manual_seed(seed)
    return build_model(opt)


def planted_psnr(bit: int, delta: float):
    """``psnr_y`` of the search model, minus ``delta`` for genotypes whose decision ``bit`` is 1."""
    original = reward.psnr_y

    def psnr(supernet, genotype, lq, gt, crop_border):
        return original(supernet, genotype, lq, gt, crop_border) - delta * genotype.bits()[bit]
    return psnr


def run_one(opt, supernet_state, setting, seed, args, eval_batches, uniform_psnr, workdir):
    model = build_search_model(opt, setting, seed, args.steps, workdir)
    model.net_g.load_state_dict(supernet_state)
    for p in model.net_g.parameters():
        p.requires_grad_(False)
    child_steps = model.search_opt['child_steps']
    entropies, planted = [], []
    for phase in range(args.phases):
        model.train_controller((phase + 1) * child_steps)
    rows = read_history(model.history_path)
    for phase in range(args.phases):
        block = rows[phase * args.steps:(phase + 1) * args.steps]
        entropies.append(float(np.mean([r['entropy'] for r in block])))
        planted.append(float(np.mean([r['p'][args.planted_bit] for r in block])))
    net_c = model.net_c.eval()
    with torch.no_grad():
        bits = net_c.decide(args.eval_samples, 'sample')
        p_planted = float(bits[:, args.planted_bit].mean())
        policy = [net_c.bits_to_genotype(b) for b in bits]
    crop = model.reward_crop_border
    policy_psnr = search_signal.score_table(model.net_g, policy, eval_batches, crop).mean()
    return {'setting': setting['name'], 'seed': seed, 'entropy_first_phase': entropies[0],
            'entropy_last_phase': entropies[-1], 'entropy_drop': 1 - entropies[-1] / entropies[0],
            'p_planted_last_phase': planted[-1], 'p_planted_sampled': p_planted,
            'policy_minus_uniform_psnr': float(policy_psnr - uniform_psnr),
            'entropy_per_phase': entropies, 'p_planted_per_phase': planted}


def summarize(runs, settings):
    out = []
    for s in settings:
        rs = [r for r in runs if r['setting'] == s['name']]
        if not rs:
            continue
        row = {'setting': s['name'], **{k: v for k, v in s.items() if k != 'name'}, 'runs': len(rs)}
        for key in ('entropy_drop', 'p_planted_last_phase', 'policy_minus_uniform_psnr'):
            vals = [r[key] for r in rs]
            row[key] = float(np.mean(vals))
            row[key + '_std'] = float(np.std(vals, ddof=1)) if len(vals) > 1 else math.nan
        out.append(row)
    return out


def render(summary, meta) -> str:
    lines = [f"Controller study: {meta['phases']} phases x {meta['steps']} controller steps, planted: decision "
             f"{meta['planted_bit']} = 1 costs {meta['delta']} dB, supernet {meta['supernet']}, "
             f"{meta['seeds']} seeds (mean +- std over seeds). Signal of this supernet: genotype std "
             f"{meta['signal']['genotype_std']:.4f} dB, batch std {meta['signal']['batch_std']:.3f} dB, interaction "
             f"std {meta['signal']['interaction_std']:.4f} dB.", '']
    lines += md_table(['setting', 'reward mode', 'baseline samples', 'lr', 'entropy w', 'patches', 'entropy drop',
                       'P(planted = 1), last phase', 'policy - uniform PSNR (dB)'], 'll' + 'r' * 7,
                      [[r['setting'], r.get('reward_mode', 'fresh'), r.get('baseline_samples', 0),
                        f"{r.get('lr', 3e-4):g}", f"{r.get('entropy_weight', meta['entropy_weight']):g}",
                        r.get('reward_patches', meta['reward_patches']),
                        f"{100 * r['entropy_drop']:.1f}% +- {100 * r['entropy_drop_std']:.1f}",
                        f"{r['p_planted_last_phase']:.2f} +- {r['p_planted_last_phase_std']:.2f}",
                        f"{r['policy_minus_uniform_psnr']:+.4f} +- {r['policy_minus_uniform_psnr_std']:.4f}"]
                       for r in summary])
    return '\n'.join(lines) + '\n'


def main(argv=None):
    args = parse_args(argv)
    use_threads(default_threads())  # scoring on a busy machine: one thread, not spinning ones
    opt = derive.read_options(args.opt)
    settings = [parse_setting(s) for s in args.settings]
    supernet, _ = derive.load_search(opt, args.experiment, args.iter, 'cpu')
    state = {k: v.clone() for k, v in supernet.state_dict().items()}
    os.makedirs(args.out, exist_ok=True)
    dataset = reward.reward_dataset(opt, root=derive.PROJECT_ROOT)
    search = {**SEARCH_DEFAULTS, **opt['search']}
    crop = search['reward_crop_border'] or supernet.upscale
    eval_batches = [reward.draw_patches(dataset, search['reward_patches'], 10_000 + b) for b in range(4)]
    probe = search_signal.probe_genotypes(supernet.num_nodes, supernet.num_blocks, supernet.feature_fusion_search,
                                          args.eval_samples, 1)
    table = search_signal.score_table(supernet, probe, eval_batches, crop)
    signal = search_signal.summarize(table, probe, 'common', num_random=len(probe) - 2)
    uniform_psnr = float(table[2:].mean())
    deconas_search_model.psnr_y = planted_psnr(args.planted_bit, args.delta)
    runs = []
    t0 = time.time()
    try:
        for setting in settings:
            for seed in range(args.seeds):
                with tempfile.TemporaryDirectory() as workdir:
                    run = run_one(opt, state, setting, seed, args, eval_batches, uniform_psnr, workdir)
                runs.append(run)
                print(f"[{time.time() - t0:6.0f} s] {setting['name']} seed {seed}: entropy drop "
                      f"{100 * run['entropy_drop']:.1f}%, P(planted) {run['p_planted_last_phase']:.2f}, "
                      f"policy - uniform {run['policy_minus_uniform_psnr']:+.4f} dB", flush=True)
    finally:
        deconas_search_model.psnr_y = reward.psnr_y
    meta = {'phases': args.phases, 'steps': args.steps, 'planted_bit': args.planted_bit, 'delta': args.delta,
            'seeds': args.seeds, 'supernet': f"{opt['name']} @ {args.iter}",
            'signal': {k: signal[k] for k in ('genotype_std', 'batch_std', 'interaction_std')},
            'entropy_weight': (opt['train'].get('reinforce_opt') or {}).get('entropy_weight', 1e-4),
            'reward_patches': search['reward_patches'], 'alpha': search['alpha']}
    summary = summarize(runs, settings)
    atomic_write_text(osp.join(args.out, 'controller_study.json'),
                      json.dumps({'meta': meta, 'summary': summary, 'runs': runs}, indent=2) + '\n')
    atomic_write_text(osp.join(args.out, 'controller_study.md'), render(summary, meta))
    print(render(summary, meta))


if __name__ == '__main__':
    run_tool(main, derive.DeriveError, ValueError)
