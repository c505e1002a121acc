"""Section 4, ``inference``: ms per image, params, MACs of DeCoNASNet and the baselines at x2."""
import torch

from deconas_plugin.utils.markdown_table import md_table
from .common import fmt, say
from .retrain import retrain_models
from .timing import interleaved_ms


def _inference_models(cfg: dict):
    from basicsr.utils.registry import ARCH_REGISTRY
    size, paper = cfg['inference_size'], retrain_models()
    return [
        ('DeCoNASNet (paper, C=64 N=4 M=4)', size, paper['DeCoNASNet']), ('CARN (multi_scale)', size, paper['CARN']),
        ('CARN (single scale)', size, lambda: ARCH_REGISTRY.get('CARN')(upscale=2, multi_scale=False)),
        ('RDN (D=16 C=8 G=64)', cfg['rdn_size'],
         lambda: ARCH_REGISTRY.get('RDN')(num_blocks=16, num_layers=8, growth_rate=64, upscale=2)),
        ('EDSR-baseline (64 x 16)', size, paper['EDSR-baseline']),
    ]


def bench_inference(cfg: dict, device: torch.device) -> dict:
    return time_inference(_inference_models(cfg), cfg['inference_reps'], device, cfg['seed'])


def time_inference(models, reps: int, device: torch.device, seed: int = 0) -> dict:
    """ms per x2 image (no_grad, eval, the models round robin), params, MACs
    (``complexity_table.model_complexity``) and GMAC/s of each ``(name, LR side, build)`` of ``models``."""
    from deconas_plugin.reporting.complexity_table import model_complexity
    torch.manual_seed(seed)
    measured, fns, rows = {}, {}, []
    for name, size, build in models:
        model = build().eval()
        info = model_complexity(model, (size, size))  # on the CPU, before moving
        model = model.to(device)
        x = torch.rand(1, 3, size, size, device=device)

        def run(model=model, x=x):
            with torch.no_grad():
                return model(x)
        measured[name] = (info, size)
        fns[name] = run
    times = interleaved_ms(fns, reps, 1, device)  # round robin over the models
    for name, (info, size) in measured.items():
        ms = times[name]
        rows.append({'model': name, 'lr_hw': [size, size], 'ms': ms, 'params': info['params'], 'macs': info['macs'],
                     'gmac_per_s': (info['macs'] / ms / 1e6) if info['macs'] else None,
                     'macs_method': info['macs_method']})
        say(f'  {name} @ {size}x{size}: {ms:.1f} ms, {info["params"]:,} params, '
             f'{(info["macs"] or 0) / 1e9:.2f} GMAC, {rows[-1]["gmac_per_s"] or 0:.1f} GMAC/s')
    return {'rows': rows, 'reps': reps, 'scale': 2}


def md_inference(s, cfg, result):
    out = ['One LR image, `torch.no_grad()`, eval mode; median of '
           f'{s["reps"]} runs after a warm-up, models run round robin. MACs by `complexity_table.model_complexity` '
           'at the same input size.', '']
    out += md_table(['model', 'LR input', 'ms', 'params', 'GMACs', 'GMAC/s'], 'llrrrr',
                    [[r['model'], f'{r["lr_hw"][1]}x{r["lr_hw"][0]}', f'{r["ms"]:.1f}', f'{r["params"]:,}',
                      f'{(r["macs"] or 0) / 1e9:.2f}', fmt(r['gmac_per_s'], 1)] for r in s['rows']])
    sizes = {tuple(r['lr_hw']) for r in s['rows']}
    if len(sizes) > 1:
        out += ['', 'RDN runs at a smaller input (see LR input) to keep the run short on a CPU; compare GMAC/s.']
    return out
