"""Side-by-side speed measurements of the DeCoNAS implementation (``tools/benchmark.py`` is the CLI),
and the effect of the training precision on a retrained network's PSNR (section 7).

Every number is a ratio or a rate measured in one process, A and B interleaved (ABBA order), each
after a warm-up, as the median of several repetitions: on a busy machine absolute times move, the
ratios much less. ``torch.cuda.synchronize`` brackets every timed call on CUDA.

Sections (``--only`` takes these names, or their numbers 1-7):

1. ``supernet`` -- one child train step (zero_grad, forward, L1, backward, Adam step) of
   ``DeCoNetSupernet(x, g)`` vs ``supernet.extract(g)`` (same weights, batch, patch) for random
   genotypes; goal: mean ratio supernet / fixed <= 1.10.
2. ``zeromask`` -- the sliced supernet vs a zero-mask supernet (``ZeroMaskSupernet``: every
   SubsetInput layer reads all of its inputs with its full weight, the unchosen ones multiplied by 0,
   as the reference code does for the dilated conv), checked to give the same output first;
   goal: sliced >= 1.5x faster.
3. ``controller`` -- ms per genotype of sample + log-prob at M = 8, N = 16 (FF off and on), one
   genotype at a time (a controller step) and batched (``sample_many``); and the child steps' draws
   (no log-prob), one unroll per genotype vs one batched unroll per controller phase (what the
   search does); goal <= 2 ms on CPU.
4. ``inference`` -- DeCoNASNet (paper genotype), CARN (multi-scale and single), RDN, EDSR-baseline
   at x2: ms per image, params, MACs (``complexity_table.model_complexity``), GMAC/s.
5. ``data`` -- BasicSR ``PairedImageDataset`` (train mode: crop, flips, rotations) samples/s from
   LMDB vs from folders of the same sub-images (made with ``tools/prepare_train.py``).
6. ``options`` -- the supernet child step with channels_last, autocast (bf16; fp16 on CUDA) and
   ``torch.compile`` (compile time for the first, a fresh and a repeated genotype; steady state),
   speed ratios vs the default and whether the losses match.
7. ``precision`` -- a small DeCoNASNet (paper genotype, N = 4, M = 4, C = 16) retrained from the same
   initial weights on the same batches (embedded train split, batch 8, LR patch 32, Adam 1e-3 halved
   at 1/2 and 3/4; 1500 iterations on CPU, 3000 on CUDA) in fp32 with two batch seeds (the run-to-run
   noise), with bf16 autocast (and fp16 autocast + GradScaler on CUDA); ms per iteration, final loss,
   and fp32 PSNR-Y / SSIM-Y on the embedded test images, differences vs fp32.

JSON (``benchmark.json``) keys: ``machine`` (cpu, cores, torch, device, device_name, ...),
``config``, ``sections`` (one dict per section run, keyed by the names above; a failed section
holds ``error``), ``wall_s``. Per section:

* ``supernet``: ``mean_ratio``, ``goal_ratio_max``, ``meets_goal``, ``per_genotype`` (list of
  ``genotype``, ``params_fixed``, ``supernet_ms``, ``fixed_ms``, ``ratio``), ``max_abs_diff``.
* ``zeromask``: ``max_abs_diff`` (over the genotypes), ``equivalent``, ``mean_speedup``
  (zero-mask / sliced step time), ``goal_speedup_min``, ``meets_goal``, ``per_genotype``.
* ``controller``: ``configs`` (list, one per FF setting: ``ff``, ``single_ms``, ``batched_ms``,
  ``child_draw_single_ms``, ``child_draw_batched_ms``, ``breakdown_ms``, ``profile_top``),
  ``goal_ms``, ``paths_meeting_goal_on_cpu``, ``meets_goal``.
* ``inference``: ``rows`` (``model``, ``lr_hw``, ``ms``, ``params``, ``macs``, ``gmac_per_s``).
* ``data``: ``lmdb_samples_per_s``, ``disk_samples_per_s``, ``ratio_lmdb_over_disk``,
  ``num_subimages``.
* ``options``: ``variants`` (``name``, ``ms``, ``speedup``, ``loss_rel_diff``, ``loss_ok``),
  ``compile`` (``first_compile_s``, ``fresh_compile_s``, ``repeated_first_step_ms``,
  ``steady_ms``, ``eager_ms``, ``steady_speedup`` or ``error``), ``recommended`` (``channels_last``,
  ``autocast`` (always None: fp32 is the default), ``autocast_fastest``, ``autocast_psnr`` (section 7's
  verdict), ``torch_compile_search``, ``torch_compile_retrain``).
* ``precision``: ``variants`` (``name``, ``autocast`` (None, ``bfloat16``, ``float16``), ``batch_seed``
  (A, B), ``ms_per_iter``, ``speedup`` (vs fp32 seed A), ``first_loss``, ``final_loss``,
  ``nonfinite_losses``, ``psnr_y``, ``ssim_y``, ``per_image``, ``psnr_diff``, ``ssim_diff`` (vs fp32 seed
  A), ``within_seed_noise``), ``seed_noise_psnr_db``, ``seed_noise_ssim``, ``batch_seeds``,
  ``train_images``, ``test_images``, ``setup``.
"""
import contextlib
import copy
import json
import os
import os.path as osp
import platform
import random
import shutil
import statistics
import tempfile
import time
import traceback
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .archs.deconas_blocks import DeCoNASBody, DenseNodeBlock
from .genotype import NUM_OPS, PAPER_GENOTYPE, Genotype

SECTIONS = ('supernet', 'zeromask', 'controller', 'inference', 'data', 'options', 'precision')
TITLES = {
    'supernet': '1. Supernet vs fixed network, child train step',
    'zeromask': '2. Sliced vs zero-mask supernet, child train step',
    'controller': '3. Controller: sample + log-prob per genotype (M = 8, N = 16)',
    'inference': '4. Inference at x2',
    'data': '5. Data loading (PairedImageDataset, train mode)',
    'options': '6. Child-step options (supernet)',
    'precision': '7. Training precision: retrain PSNR with autocast vs fp32',
}
GOAL_SUPERNET_RATIO = 1.10
GOAL_ZEROMASK_SPEEDUP = 1.5
GOAL_CONTROLLER_MS = 2.0


# ------------------------------------------------------------------------------------------ config
def make_config(device: torch.device, quick: bool = False, **overrides) -> dict:
    """Sizes of every section for ``device``; ``quick`` shrinks them for a smoke run."""
    cuda = device.type == 'cuda'
    cfg = dict(
        seed=0, num_nodes=4, num_blocks=4, density=0.5,
        num_feat=64 if cuda else 32, patch=64 if cuda else 48, batch=16 if cuda else 4,
        genotypes=20, reps=7 if cuda else 3, warmup=2 if cuda else 1,
        zeromask_genotypes=8,
        controller_reps=50, controller_batch=100,
        inference_size=256, rdn_size=256 if cuda else 64, inference_reps=5 if cuda else 3,
        data_samples=200, data_images=None, data_chunk=25,
        options_genotypes=4 if cuda else 3, options_reps=5 if cuda else 3, loss_steps=3,
        compile=True, compile_fresh=2 if cuda else 1,
        precision_iters=3000 if cuda else 1500, precision_feat=16, precision_blocks=4, precision_batch=8,
        precision_patch=32, precision_lr=1e-3, precision_side=512,
    )
    if quick:
        cfg.update(num_feat=8, patch=16, batch=2, genotypes=2, reps=1, warmup=1, zeromask_genotypes=2,
                   controller_reps=3, controller_batch=20, inference_size=64, rdn_size=32, inference_reps=1,
                   data_samples=20, data_images=1, data_chunk=10, options_genotypes=1, options_reps=1,
                   loss_steps=2, compile=False,  # torch.compile takes minutes even for a tiny net
                   precision_iters=10, precision_feat=8, precision_blocks=2, precision_batch=2, precision_patch=16,
                   precision_side=96)
    for key, value in overrides.items():
        if value is not None:
            if key not in cfg:
                raise KeyError(f'unknown config key {key!r}')
            cfg[key] = value
    cfg['quick'] = quick
    return cfg


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def choose_threads(spec: str, device: torch.device):
    """(torch intra-op threads, reason) for ``--threads`` = a number, ``'all'`` or ``'auto'``.

    ``auto``: on a CPU whose 1-minute load average already fills the usable cores, 1 thread: on an
    oversubscribed machine every multi-threaded op waits at an OpenMP barrier for a descheduled
    thread (measured here: a child step 0.75 s with 1 thread, 4-15 s with 2). Otherwise torch's default.
    """
    default = torch.get_num_threads()
    if spec == 'all':
        return default, 'requested: torch default'
    if spec != 'auto':
        return int(spec), 'requested'
    if device.type == 'cuda':
        return default, 'auto: CUDA run, torch default'
    load, cores = (_loadavg() or [0.0])[0], _usable_cores()
    if cores > 1 and load >= cores - 0.5:
        return 1, f'auto: load average {load:.1f} on {cores} usable cores, a busy machine'
    return default, f'auto: load average {load:.1f} on {cores} usable cores, torch default'


def threads_probe(device: torch.device, reps: int = 5) -> Optional[dict]:
    """ms of a small conv forward+backward with 1 thread vs all usable cores (CPU only; interleaved)."""
    cores = _usable_cores()
    if device.type != 'cpu' or cores < 2:
        return None
    keep = torch.get_num_threads()
    conv = nn.Conv2d(32, 32, 3, padding=1)
    x = torch.rand(4, 32, 48, 48)

    def run(n):
        def f():
            torch.set_num_threads(n)
            conv(x).sum().backward()
        return f
    try:
        t = interleaved({'1': run(1), str(cores): run(cores)}, reps, 1, device)
    finally:
        torch.set_num_threads(keep)
    return {'threads_1_ms': median_ms(t['1']), f'threads_{cores}_ms': median_ms(t[str(cores)]),
            'max_ms': {k: 1000 * max(v) for k, v in t.items()}}


def machine_info(device: torch.device) -> dict:
    cpu = None
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.lower().startswith('model name'):
                    cpu = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    cpu = cpu or platform.processor() or platform.machine()
    flags = []
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('flags'):
                    have = set(line.split(':', 1)[1].split())
                    flags = [x for x in ('avx2', 'avx512f', 'avx512_bf16', 'avx512_fp16', 'amx_bf16', 'amx_tile')
                             if x in have]
                    break
    except OSError:
        pass
    usable = _usable_cores()
    info = {
        'cpu': cpu, 'cpu_flags': flags, 'cores': os.cpu_count(), 'usable_cores': usable,
        'torch_threads': torch.get_num_threads(),
        'torch': torch.__version__, 'python': platform.python_version(), 'platform': platform.platform(),
        'device': str(device),
        'device_name': torch.cuda.get_device_name(device) if device.type == 'cuda' else f'CPU ({cpu})',
        'load_avg_start': _loadavg(), 'threads_probe': threads_probe(device),
    }
    if device.type == 'cuda':
        info['cuda'] = torch.version.cuda
        info['cudnn'] = torch.backends.cudnn.version()
    return info


def _loadavg() -> Optional[List[float]]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


# ------------------------------------------------------------------------------------------ timing
def _sync(device: torch.device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def timed(fn: Callable, device: torch.device) -> float:
    """Seconds of one call of ``fn`` (synchronized on CUDA)."""
    _sync(device)
    t = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t


def interleaved(fns: Dict[str, Callable], reps: int, warmup: int, device: torch.device) -> Dict[str, List[float]]:
    """``warmup`` untimed calls of each, then ``reps`` timed calls each, in ABBA order (seconds)."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    _sync(device)
    times = {name: [] for name in names}
    for r in range(reps):
        for name in (names if r % 2 == 0 else names[::-1]):
            times[name].append(timed(fns[name], device))
    return times


def median_ms(values: Sequence[float]) -> float:
    return 1000 * statistics.median(values)


class TrainStep:
    """One child train step: zero_grad(set_to_none), forward, L1, backward, Adam step (as the search).

    ``genotype`` is passed to the model's forward when given (the supernet). ``amp_dtype`` runs the
    forward and the loss under autocast; fp16 on CUDA uses a GradScaler.
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, genotype: Optional[Genotype] = None,
                 amp_dtype: Optional[torch.dtype] = None, lr: float = 1e-4, params=None):
        self.model, self.x, self.y, self.genotype, self.amp_dtype = model, x, y, genotype, amp_dtype
        self.optimizer = torch.optim.Adam(model.parameters() if params is None else params, lr=lr)
        self.device_type = x.device.type
        # init_scale 2^10 (not 2^16): a first step skipped for inf gradients would break the loss comparison
        self.scaler = (torch.amp.GradScaler('cuda', init_scale=2.**10)
                       if amp_dtype == torch.float16 and self.device_type == 'cuda' else None)

    def __call__(self) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        ctx = (torch.autocast(self.device_type, dtype=self.amp_dtype) if self.amp_dtype is not None
               else contextlib.nullcontext())
        with ctx:
            out = self.model(self.x) if self.genotype is None else self.model(self.x, self.genotype)
            loss = F.l1_loss(out.float(), self.y)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return loss.detach()


def _batch(cfg: dict, device: torch.device, seed: int, channels_last: bool = False):
    gen = torch.Generator().manual_seed(seed)
    p, b = cfg['patch'], cfg['batch']
    x = torch.rand(b, 3, p, p, generator=gen).to(device)
    y = torch.rand(b, 3, 2 * p, 2 * p, generator=gen).to(device)
    if channels_last:
        x, y = x.contiguous(memory_format=torch.channels_last), y.contiguous(memory_format=torch.channels_last)
    return x, y


def _genotypes(cfg: dict, n: int, seed_offset: int = 0, fusion: bool = False) -> List[Genotype]:
    rng = random.Random(cfg['seed'] * 1000 + seed_offset)
    return [Genotype.random(cfg['num_nodes'], num_blocks=cfg['num_blocks'], fusion=fusion, rng=rng,
                            density=cfg['density']) for _ in range(n)]


def _supernet(cfg: dict, device: torch.device, fusion: bool = False):
    from .archs.deconet_supernet_arch import DeCoNetSupernet
    torch.manual_seed(cfg['seed'])
    return DeCoNetSupernet(num_feat=cfg['num_feat'], num_blocks=cfg['num_blocks'], num_nodes=cfg['num_nodes'],
                           upscale=2, feature_fusion_search=fusion).to(device)


def _log(msg: str):
    print(msg, flush=True)


# ------------------------------------------------------------------------------ 1. supernet vs fixed
def bench_supernet(cfg: dict, device: torch.device) -> dict:
    net = _supernet(cfg, device)
    x, y = _batch(cfg, device, cfg['seed'])
    sn_step = None
    rows = []
    max_diff = 0.0
    for i, g in enumerate(_genotypes(cfg, cfg['genotypes'])):
        fixed = net.extract(g)
        if i == 0:  # the extracted network computes the same function (checked once, before any step)
            with torch.no_grad():
                max_diff = float((net(x, g) - fixed(x)).abs().max())
        if sn_step is None:
            sn_step = TrainStep(net, x, y, g)
        sn_step.genotype = g
        fx_step = TrainStep(fixed, x, y)
        t = interleaved({'supernet': sn_step, 'fixed': fx_step}, cfg['reps'], cfg['warmup'], device)
        row = {'genotype': g.to_string(), 'params_fixed': sum(p.numel() for p in fixed.parameters()),
               'supernet_ms': median_ms(t['supernet']), 'fixed_ms': median_ms(t['fixed'])}
        row['ratio'] = row['supernet_ms'] / row['fixed_ms']
        rows.append(row)
        _log(f'  [{i + 1}/{cfg["genotypes"]}] {g}: supernet {row["supernet_ms"]:.1f} ms, fixed '
             f'{row["fixed_ms"]:.1f} ms, ratio {row["ratio"]:.3f}')
    ratios = [r['ratio'] for r in rows]
    mean = sum(ratios) / len(ratios)
    return {'mean_ratio': mean, 'median_ratio': statistics.median(ratios), 'min_ratio': min(ratios),
            'max_ratio': max(ratios), 'goal_ratio_max': GOAL_SUPERNET_RATIO, 'meets_goal': mean <= GOAL_SUPERNET_RATIO,
            'max_abs_diff': max_diff, 'per_genotype': rows,
            'setup': {k: cfg[k] for k in ('num_feat', 'num_nodes', 'num_blocks', 'patch', 'batch', 'density',
                                          'reps', 'warmup')}}


# ---------------------------------------------------------------------------- 2. zero-mask supernet
def _masked_call(layer, feats: Sequence[torch.Tensor], ids: Sequence[int]) -> torch.Tensor:
    """``layer`` on ALL of its inputs with its full weight, the unchosen ones multiplied by 0."""
    chosen = set(ids)
    return layer([f if j in chosen else f * 0. for j, f in enumerate(feats[:layer.num_inputs])], None)


def _zero_mask_block(block: DenseNodeBlock, x: torch.Tensor, g: Genotype) -> torch.Tensor:
    feats = [x]
    for node in range(1, block.num_nodes + 1):
        outs = []
        for op in range(NUM_OPS):
            ids = g.op_inputs(node, op)
            if ids:  # an op with no chosen input is skipped, as in the sliced supernet
                outs.append(_masked_call(block.ops[f'node{node}_op{op}'], feats, ids))
        h = feats[node - 1] if not outs else outs[0] if len(outs) == 1 else torch.stack(outs).mean(0)
        feats.append(block.attention[node - 1](F.relu(h)))
    return _masked_call(block.local_fusion, feats, g.local_inputs()) + x


class ZeroMaskSupernet(nn.Module):
    """The supernet computed the reference code's zero-mask way (for comparison only).

    Same parameters as the wrapped ``DeCoNetSupernet``; ``forward(x, g)`` follows
    ``DeCoNASBody.run``, but every op of node i convolves all i inputs (unchosen ones zeroed) with
    its full weight, and the LFF/GFF 1x1 convs read all M + 1 / N + 1 features, masked.
    """

    def __init__(self, supernet: DeCoNASBody):
        super().__init__()
        self.net = supernet

    def forward(self, x: torch.Tensor, g: Genotype) -> torch.Tensor:
        net = self.net
        x = (x - net.mean) * net.img_range
        f_minus1 = net.sfe1(x)
        feats = [net.sfe2(f_minus1)]
        for d, block in enumerate(net.blocks):
            inp = feats[0] if d == 0 else net.block_inputs[d - 1](torch.cat(feats, 1))
            feats.append(_zero_mask_block(block, inp, g))
        x = net.global_conv(_masked_call(net.global_fusion, feats, g.global_inputs(net.num_blocks))) + f_minus1
        x = net.conv_last(net.upsample(x))
        return x / net.img_range + net.mean


def bench_zeromask(cfg: dict, device: torch.device) -> dict:
    net = _supernet(cfg, device, fusion=True)
    masked = ZeroMaskSupernet(copy.deepcopy(net))
    x, y = _batch(cfg, device, cfg['seed'] + 1)
    genotypes = _genotypes(cfg, cfg['zeromask_genotypes'], seed_offset=1, fusion=True)
    diffs = []
    with torch.no_grad():  # same weights, before any step
        for g in genotypes:
            diffs.append(float((net(x, g) - masked(x, g)).abs().max()))
    max_diff = max(diffs)
    out = {'max_abs_diff': max_diff, 'equivalent': max_diff < 1e-5, 'feature_fusion_search': True,
           'goal_speedup_min': GOAL_ZEROMASK_SPEEDUP}
    _log(f'  zero-mask vs sliced output: max abs diff {max_diff:.2e} over {len(genotypes)} genotypes')
    if not out['equivalent']:
        out['error'] = f'zero-mask supernet differs from the sliced one (max abs diff {max_diff:.3g})'
        return out
    sliced_step, masked_step = TrainStep(net, x, y), TrainStep(masked, x, y)
    rows = []
    for i, g in enumerate(genotypes):
        sliced_step.genotype = masked_step.genotype = g
        t = interleaved({'sliced': sliced_step, 'zeromask': masked_step}, cfg['reps'], cfg['warmup'], device)
        row = {'genotype': g.to_string(), 'density': sum(g.bits()) / len(g.bits()),
               'sliced_ms': median_ms(t['sliced']), 'zeromask_ms': median_ms(t['zeromask']), 'max_abs_diff': diffs[i]}
        row['speedup'] = row['zeromask_ms'] / row['sliced_ms']
        rows.append(row)
        _log(f'  [{i + 1}/{len(genotypes)}] {g}: sliced {row["sliced_ms"]:.1f} ms, zero-mask '
             f'{row["zeromask_ms"]:.1f} ms, sliced {row["speedup"]:.2f}x faster')
    speedups = [r['speedup'] for r in rows]
    mean = sum(speedups) / len(speedups)
    out.update(mean_speedup=mean, min_speedup=min(speedups), max_speedup=max(speedups),
               mean_density=sum(r['density'] for r in rows) / len(rows), meets_goal=mean >= GOAL_ZEROMASK_SPEEDUP,
               per_genotype=rows)
    return out


# -------------------------------------------------------------------------------------- 3. controller
def _profile_top(fn: Callable, top: int = 8) -> List[dict]:
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return [{'op': e.key, 'calls': e.count, 'self_cpu_ms': e.self_cpu_time_total / 1000} for e in rows]


def _bench_controller_on(ctrl, device: torch.device, cfg: dict) -> dict:
    torch.manual_seed(cfg['seed'])
    batch, reps = cfg['controller_batch'], cfg['controller_reps']
    one = interleaved({
        'single': ctrl.sample,  # one genotype with its log-prob and entropy: a controller step's draw
        'child_draw_single': lambda: ctrl.decide(1, 'sample'),  # a child step's draw, one unroll each
    }, reps, 2, device)
    many = interleaved({
        'batched': lambda: ctrl.sample_many(batch),
        'child_draw_batched': lambda: ctrl.decide(batch, 'sample'),  # what the search does per phase
    }, max(3, reps // 10), 1, device)
    bits1 = ctrl.decide(1, 'sample')
    g1 = ctrl.bits_to_genotype(bits1[0])
    parts = interleaved({
        'decide(1) (sequential unroll)': lambda: ctrl.decide(1, 'sample'),
        'score(1 genotype) (log-prob, entropy)': lambda: ctrl.score(bits1),
        'score + backward': lambda: ctrl.score(bits1)[0].sum().backward(),
        'bits_to_genotype': lambda: ctrl.bits_to_genotype(bits1[0]),
        'genotype_to_bits': lambda: ctrl.genotype_to_bits(g1),
        'one torch.lstm_cell call': lambda: _no_grad(torch.lstm_cell, ctrl.start[0], (ctrl.start[0], ctrl.start[0]),
                                                      ctrl.lstm.weight_ih_l0, ctrl.lstm.weight_hh_l0,
                                                      ctrl.lstm.bias_ih_l0, ctrl.lstm.bias_hh_l0),
    }, reps, 2, device)
    return {
        'device': str(device), 'num_decisions': ctrl.num_decisions,
        'single_ms': median_ms(one['single']),
        'batched_ms': median_ms(many['batched']) / batch,
        'child_draw_single_ms': median_ms(one['child_draw_single']),
        'child_draw_batched_ms': median_ms(many['child_draw_batched']) / batch,
        'breakdown_ms': {k: median_ms(v) for k, v in parts.items()},
        'profile_top': _profile_top(ctrl.sample),
    }


def _no_grad(fn, *args):
    with torch.no_grad():
        return fn(*args)


def bench_controller(cfg: dict, device: torch.device) -> dict:
    from .archs.deconas_controller_arch import DeCoNASController
    devices = [torch.device('cpu')] + ([device] if device.type == 'cuda' else [])
    configs = []
    for dev in devices:
        for ff in (False, True):
            torch.manual_seed(cfg['seed'])
            ctrl = DeCoNASController(num_nodes=8, num_blocks=16, feature_fusion_search=ff).to(dev)
            row = {'ff': ff, **_bench_controller_on(ctrl, dev, cfg)}
            configs.append(row)
            _log(f'  {dev} FF{int(ff)}: sample + log-prob single {row["single_ms"]:.2f} ms, batched '
                 f'{row["batched_ms"]:.3f} ms/genotype; child draws single {row["child_draw_single_ms"]:.2f} ms, '
                 f'batched {row["child_draw_batched_ms"]:.3f} ms/genotype')
    cpu_rows = [r for r in configs if r['device'] == 'cpu']
    paths = {name: all(r[f'{name}_ms'] <= GOAL_CONTROLLER_MS for r in cpu_rows)
             for name in ('single', 'batched', 'child_draw_single', 'child_draw_batched')}
    return {'configs': configs, 'goal_ms': GOAL_CONTROLLER_MS, 'paths_meeting_goal_on_cpu': paths,
            'meets_goal': paths['single'] or paths['batched']}


# --------------------------------------------------------------------------------------- 4. inference
def _inference_models(cfg: dict):
    import deconas_plugin  # noqa: F401  (registers the archs)
    from basicsr.utils.registry import ARCH_REGISTRY
    size, rdn = cfg['inference_size'], cfg['rdn_size']
    return [
        ('DeCoNASNet (paper, C=64 N=4 M=4)', size,
         lambda: ARCH_REGISTRY.get('DeCoNASNet')(PAPER_GENOTYPE, num_feat=64, num_blocks=4, num_nodes=4, upscale=2)),
        ('CARN (multi_scale)', size, lambda: ARCH_REGISTRY.get('CARN')(upscale=2, multi_scale=True)),
        ('CARN (single scale)', size, lambda: ARCH_REGISTRY.get('CARN')(upscale=2, multi_scale=False)),
        ('RDN (D=16 C=8 G=64)', rdn,
         lambda: ARCH_REGISTRY.get('RDN')(num_blocks=16, num_layers=8, growth_rate=64, upscale=2)),
        ('EDSR-baseline (64 x 16)', size,
         lambda: ARCH_REGISTRY.get('EDSR')(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=16, upscale=2)),
    ]


def bench_inference(cfg: dict, device: torch.device) -> dict:
    from .utils.complexity_table import model_complexity
    torch.manual_seed(cfg['seed'])
    models, fns, rows = {}, {}, []
    for name, size, build in _inference_models(cfg):
        model = build().eval()
        info = model_complexity(model, (size, size))  # on the CPU, before moving
        model = model.to(device)
        x = torch.rand(1, 3, size, size, device=device)

        def run(model=model, x=x):
            with torch.no_grad():
                return model(x)
        models[name] = (model, info, size)
        fns[name] = run
    times = interleaved(fns, cfg['inference_reps'], 1, device)  # round robin over the models
    for name, (model, info, size) in models.items():
        ms = median_ms(times[name])
        rows.append({'model': name, 'lr_hw': [size, size], 'ms': ms, 'params': info['params'], 'macs': info['macs'],
                     'gmac_per_s': (info['macs'] / ms / 1e6) if info['macs'] else None,
                     'macs_method': info['macs_method']})
        _log(f'  {name} @ {size}x{size}: {ms:.1f} ms, {info["params"]:,} params, '
             f'{(info["macs"] or 0) / 1e9:.2f} GMAC, {rows[-1]["gmac_per_s"] or 0:.1f} GMAC/s')
    return {'rows': rows, 'reps': cfg['inference_reps'], 'scale': 2}


# -------------------------------------------------------------------------------------------- 5. data
def make_subimage_sets(root: str, images: Optional[int] = None, crop: int = 192, step: int = 96) -> dict:
    """HR/LR x2 sub-image folders and LMDBs of the embedded train split, under ``root``."""
    from .utils.embedded_data import SPLITS, prepare_embedded
    tool = _load_tool('prepare_train')
    layout, prepare_train = tool.layout, tool.prepare_train
    names = SPLITS['train'] if images is None else SPLITS['train'][:images]
    prepare_embedded(osp.join(root, 'embedded'), scales=(), splits={'train': names})  # HR only
    out = osp.join(root, 'sub')
    summary = prepare_train(osp.join(root, 'embedded', 'train', 'HR'), out, [2], name='bench', crop=crop, step=step,
                            n_thread=1, lmdb=True)
    return {'dirs': layout(out, 'bench', [2]), 'num_subimages': len(summary['keys']), 'crop': crop, 'step': step,
            'images': list(names)}


def _load_tool(name: str):
    """``tools/<name>.py`` of this checkout as a module (``tools`` is not a package)."""
    import importlib.util
    path = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'tools', f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'_deconas_tools_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bench_data(cfg: dict, device: torch.device, workdir: Optional[str] = None) -> dict:
    from basicsr.data.paired_image_dataset import PairedImageDataset
    tmp = tempfile.mkdtemp(prefix='deconas_bench_data_', dir=workdir)
    try:
        t0 = time.perf_counter()
        with open(os.devnull, 'w') as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
            sets = make_subimage_sets(tmp, cfg['data_images'])  # quiet: tqdm bars and LMDB logs
        prep_s = time.perf_counter() - t0
        dirs = sets['dirs']
        common = {'name': 'bench', 'type': 'PairedImageDataset', 'phase': 'train', 'scale': 2, 'gt_size': 96,
                  'use_hflip': True, 'use_rot': True, 'filename_tmpl': '{}'}
        datasets = {
            'lmdb': PairedImageDataset({**common, 'dataroot_gt': dirs['hr_lmdb'], 'dataroot_lq': dirs['lr2_lmdb'],
                                        'io_backend': {'type': 'lmdb'}}),
            'disk': PairedImageDataset({**common, 'dataroot_gt': dirs['hr_sub'], 'dataroot_lq': dirs['lr2_sub'],
                                        'io_backend': {'type': 'disk'}}),
        }
        assert len(datasets['lmdb']) == len(datasets['disk']) == sets['num_subimages']
        # The same sub-images from both (the folder listing is in directory order, the LMDB's in key order).
        disk_index = {osp.basename(p['gt_path']): i for i, p in enumerate(datasets['disk'].paths)}
        lmdb_keys = [p['gt_path'] for p in datasets['lmdb'].paths]
        n, chunk = cfg['data_samples'], cfg['data_chunk']
        rng = random.Random(cfg['seed'])
        picks = [rng.randrange(sets['num_subimages']) for _ in range(n)]
        order = {'lmdb': picks, 'disk': [disk_index[f'{lmdb_keys[i]}.png'] for i in picks]}
        state = random.getstate()
        random.seed(1)
        a = datasets['lmdb'][picks[0]]
        random.seed(1)
        b = datasets['disk'][order['disk'][0]]
        random.setstate(state)
        same = bool(torch.equal(a['gt'], b['gt']) and torch.equal(a['lq'], b['lq']))
        times = {k: [] for k in datasets}
        for i, start in enumerate(range(0, n, chunk)):  # interleaved chunks, ABBA
            for key in (('lmdb', 'disk') if i % 2 == 0 else ('disk', 'lmdb')):
                ds, idx = datasets[key], order[key][start:start + chunk]
                times[key].append(timed(lambda: [ds[j] for j in idx], torch.device('cpu')) / len(idx))
        rate = {k: 1 / statistics.median(v) for k, v in times.items()}
        _log(f'  {sets["num_subimages"]} sub-images ({sets["crop"]}px, step {sets["step"]}): LMDB '
             f'{rate["lmdb"]:.0f} samples/s, disk {rate["disk"]:.0f} samples/s')
        return {'lmdb_samples_per_s': rate['lmdb'], 'disk_samples_per_s': rate['disk'],
                'ratio_lmdb_over_disk': rate['lmdb'] / rate['disk'], 'num_subimages': sets['num_subimages'],
                'samples': n, 'gt_size': 96, 'subimage_crop': sets['crop'], 'subimage_step': sets['step'],
                'images': sets['images'], 'same_samples': same, 'prepare_s': prep_s, 'num_workers': 0}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------------------- 6. options
def _variants(device: torch.device):
    """(name, channels_last, autocast dtype) of the child-step options measured on ``device``."""
    out = [('default', False, None), ('channels_last', True, None), ('autocast bf16', False, torch.bfloat16)]
    if device.type == 'cuda':
        out += [('autocast fp16 (+GradScaler)', False, torch.float16), ('channels_last + bf16', True, torch.bfloat16)]
    else:
        out += [('channels_last + bf16', True, torch.bfloat16)]
    return out


def _loss_tolerance(amp_dtype) -> float:
    return 1e-4 if amp_dtype is None else 2e-2


def bench_options(cfg: dict, device: torch.device) -> dict:
    base = _supernet(cfg, device)
    state = copy.deepcopy(base.state_dict())
    genotypes = _genotypes(cfg, cfg['options_genotypes'], seed_offset=2)
    variants = _variants(device)
    steps, models = {}, {}
    for name, cl, amp in variants:
        model = copy.deepcopy(base)
        if cl:
            model = model.to(memory_format=torch.channels_last)
        x, y = _batch(cfg, device, cfg['seed'] + 2, channels_last=cl)
        steps[name] = TrainStep(model, x, y, genotypes[0], amp_dtype=amp)
        models[name] = model

    # Loss sanity: from identical weights and batches, the first loss_steps losses of each variant.
    losses = {}
    for name, _, _ in variants:
        model = steps[name].model
        model.load_state_dict(state)
        losses[name] = [float(steps[name]()) for _ in range(cfg['loss_steps'])]
    ref = losses['default']
    rows = {name: {'name': name, 'channels_last': cl, 'amp_dtype': str(amp).replace('torch.', '') if amp else None,
                   'losses': losses[name],
                   'loss_rel_diff': max(abs(a - b) / abs(b) for a, b in zip(losses[name], ref))}
            for name, cl, amp in variants}
    for name, _, amp in variants:
        rows[name]['loss_ok'] = rows[name]['loss_rel_diff'] <= _loss_tolerance(amp)

    per_g = {name: [] for name in steps}
    for i, g in enumerate(genotypes):
        for st in steps.values():
            st.genotype = g
        t = interleaved(steps, cfg['options_reps'], cfg['warmup'], device)
        for name in steps:
            per_g[name].append(median_ms(t[name]))
        _log(f'  [{i + 1}/{len(genotypes)}] {g}: ' + ', '.join(f'{n} {per_g[n][-1]:.1f} ms' for n in steps))
    for name in steps:
        speedups = [d / v for d, v in zip(per_g['default'], per_g[name])]
        rows[name].update(ms=statistics.median(per_g[name]), per_genotype_ms=per_g[name],
                          speedup=sum(speedups) / len(speedups))
    out = {'variants': list(rows.values()), 'loss_steps': cfg['loss_steps'],
           'setup': {k: cfg[k] for k in ('num_feat', 'patch', 'batch', 'options_reps', 'warmup')}}
    del steps, models
    if cfg['compile']:
        try:
            out['compile'] = _bench_compile(cfg, device, base, state, genotypes)
        except Exception as e:  # noqa: BLE001  (no compiler, unsupported backend: report, go on)
            out['compile'] = {'error': f'{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e) else ""}'[:300]}
            _log(f'  torch.compile failed: {out["compile"]["error"]}')
    out['recommended'] = _recommend(out)
    return out


@contextlib.contextmanager
def _cold_inductor_cache():
    """A fresh, empty inductor cache for the duration (compile times of a first-time run, not of a
    cache warmed by an earlier benchmark, which would make them seconds instead of minutes)."""
    tmp = tempfile.mkdtemp(prefix='deconas_bench_inductor_')
    try:
        try:
            from torch._inductor.runtime.cache_dir_utils import temporary_cache_dir
        except ImportError:
            temporary_cache_dir = None
        if temporary_cache_dir is not None:
            with temporary_cache_dir(tmp):
                yield
        else:
            old = os.environ.get('TORCHINDUCTOR_CACHE_DIR')
            os.environ['TORCHINDUCTOR_CACHE_DIR'] = tmp
            try:
                yield
            finally:
                if old is None:
                    os.environ.pop('TORCHINDUCTOR_CACHE_DIR', None)
                else:
                    os.environ['TORCHINDUCTOR_CACHE_DIR'] = old
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _bench_compile(cfg: dict, device: torch.device, base: nn.Module, state: dict, genotypes) -> dict:
    with _cold_inductor_cache():
        res = _bench_compile_cold(cfg, device, base, state, genotypes)
    res['inductor_cache'] = 'cold (fresh temporary directory)'
    return res


def _bench_compile_cold(cfg: dict, device: torch.device, base: nn.Module, state: dict, genotypes) -> dict:
    import torch._dynamo
    torch._dynamo.reset()
    eager = copy.deepcopy(base)
    eager.load_state_dict(state)
    comp_model = copy.deepcopy(base)
    comp_model.load_state_dict(state)
    compiled = torch.compile(comp_model)
    x, y = _batch(cfg, device, cfg['seed'] + 3)
    g0 = genotypes[0]
    fresh = _genotypes(cfg, cfg['compile_fresh'], seed_offset=3)
    eager_step = TrainStep(eager, x, y, g0)
    comp_step = TrainStep(compiled, x, y, g0, params=comp_model.parameters())
    first = timed(comp_step, device)  # compile (forward + backward graphs) + one step
    t = interleaved({'eager': eager_step, 'compiled': comp_step}, max(7, cfg['options_reps']), 1, device)
    steady, eager_ms = median_ms(t['compiled']), median_ms(t['eager'])
    # loss check on identical weights: one more step of each from the same state
    eager.load_state_dict(state)
    comp_model.load_state_dict(state)
    eager_loss, comp_loss = float(eager_step()), float(comp_step())
    fresh_s = []
    for g in fresh:
        comp_step.genotype = g
        fresh_s.append(timed(comp_step, device))
        _log(f'  torch.compile: fresh genotype {g}: first step {fresh_s[-1]:.1f} s')
    comp_step.genotype = g0
    repeated_ms = 1000 * timed(comp_step, device)  # back to the first genotype: cached graph?
    try:
        limit = torch._dynamo.config.recompile_limit
    except AttributeError:
        limit = torch._dynamo.config.cache_size_limit
    res = {'first_compile_s': first - steady / 1000, 'first_step_s': first,
           'fresh_compile_s': [f - steady / 1000 for f in fresh_s],
           'repeated_first_step_ms': repeated_ms, 'steady_ms': steady, 'eager_ms': eager_ms,
           'steady_speedup': eager_ms / steady, 'loss_rel_diff': abs(comp_loss - eager_loss) / abs(eager_loss),
           'recompile_limit': limit,
           'break_even_steps_first': (
               (first - steady / 1000) / ((eager_ms - steady) / 1000) if eager_ms > steady else None),
           'break_even_steps_per_genotype': (
               statistics.median(f - steady / 1000 for f in fresh_s) / ((eager_ms - steady) / 1000)
               if eager_ms > steady and fresh_s else None)}
    _log(f'  torch.compile: first compile {res["first_compile_s"]:.1f} s, steady {steady:.1f} ms vs eager '
         f'{eager_ms:.1f} ms ({res["steady_speedup"]:.2f}x), repeated genotype first step {repeated_ms:.1f} ms')
    torch._dynamo.reset()
    return res


def _recommend(out: dict, precision: Optional[dict] = None) -> dict:
    """Defaults from the measurements: an option is on if it is >= 5 % faster with matching losses.

    ``channels_last`` is judged alone. ``autocast`` stays off (fp32) whatever its speed: it changes
    the trained network's numbers; ``autocast_fastest`` is the fastest dtype with matching losses,
    offered as ``train.autocast``, and ``autocast_psnr`` what section 7 (``precision``) measured of its
    effect on the retrained network's PSNR (``within seed noise``, ``beyond seed noise`` or ``not
    measured``). ``torch_compile_search`` is off (a recompile per fresh genotype);
    ``torch_compile_retrain`` is on if the steady step is >= 5 % faster and the first compile is
    repaid within 100k steps (the paper retrains for 1M).
    """
    rows = {r['name']: r for r in out['variants']}
    good = {n: bool(r['speedup'] >= 1.05 and r['loss_ok']) for n, r in rows.items() if n != 'default'}
    amp = [r for n, r in rows.items() if r.get('amp_dtype') and not r.get('channels_last') and good[n]]
    best_amp = max(amp, key=lambda r: r['speedup']) if amp else None
    rec = {'channels_last': good.get('channels_last', False), 'autocast': None,
           'autocast_fastest': best_amp['amp_dtype'] if best_amp else None,
           'autocast_psnr': _precision_verdict(precision, best_amp['amp_dtype']) if best_amp else None}
    comp = out.get('compile', {})
    rec['torch_compile_search'] = False
    rec['torch_compile_retrain'] = bool(comp.get('steady_speedup', 0) >= 1.05
                                        and (comp.get('break_even_steps_first') or 1e18) < 1e5)
    return rec


# ---------------------------------------------------------------------------------------- 7. precision
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
    from .utils.y_protocol import is_single_channel
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

    from .utils.y_protocol import gray_visuals
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

    from .utils.embedded_data import SPLITS, prepare_embedded
    scale, iters = 2, cfg['precision_iters']
    tmp = tempfile.mkdtemp(prefix='deconas_bench_precision_')
    try:
        with open(os.devnull, 'w') as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
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
            _log(f'  iter {it + 1}/{iters} ({time.perf_counter() - t0:.0f} s): ' + ', '.join(
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
        _log(f'  {run["name"]}: {rows[-1]["ms_per_iter"]:.1f} ms/iter, final loss {rows[-1]["final_loss"]:.4f}, '
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


def _precision_verdict(precision: Optional[dict], dtype: Optional[str]) -> Optional[str]:
    """'within seed noise' / 'beyond seed noise' for ``dtype``'s PSNR in section 7, or 'not measured'."""
    if not dtype:
        return None
    if not precision or 'error' in precision:
        return 'not measured'
    row = next((r for r in precision['variants'] if r['autocast'] == dtype), None)
    if row is None:
        return 'not measured'
    return 'within seed noise' if row['within_seed_noise'] else 'beyond seed noise'


# -------------------------------------------------------------------------------------------- driver
RUNNERS = {'supernet': bench_supernet, 'zeromask': bench_zeromask, 'controller': bench_controller,
           'inference': bench_inference, 'data': bench_data, 'options': bench_options, 'precision': bench_precision}


def parse_only(only: Optional[str]) -> List[str]:
    if not only:
        return list(SECTIONS)
    out = []
    for item in only.split(','):
        item = item.strip()
        if not item:
            continue
        if item.isdigit() and 1 <= int(item) <= len(SECTIONS):
            item = SECTIONS[int(item) - 1]
        if item not in SECTIONS:
            raise ValueError(f'unknown section {item!r}; choose from {", ".join(SECTIONS)} (or 1-{len(SECTIONS)})')
        if item not in out:
            out.append(item)
    return sorted(out, key=SECTIONS.index)


def run_benchmark(out_dir: str, device: torch.device, sections: Sequence[str], cfg: dict,
                  argv: Optional[Sequence[str]] = None, merge: bool = False) -> dict:
    """Run ``sections``; after each, write ``benchmark.json`` and ``benchmark.md`` under ``out_dir``.

    ``merge``: keep the other sections of an existing ``benchmark.json`` (measured on the same
    device type); each section records when and by which command it was measured.
    """
    os.makedirs(out_dir, exist_ok=True)
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True  # as BasicSR's train_pipeline
    result = {'machine': machine_info(device), 'config': dict(cfg), 'command': list(argv or []),
              'sections': {}, 'started': time.strftime('%Y-%m-%d %H:%M:%S')}
    path = osp.join(out_dir, 'benchmark.json')
    if merge and osp.isfile(path):
        with open(path, encoding='utf-8') as f:
            old = json.load(f)
        if old['machine']['device'].split(':')[0] != device.type:
            raise ValueError(f'--merge: {path} was measured on {old["machine"]["device"]}, not {device.type}')
        result['sections'] = {k: v for k, v in old['sections'].items() if k not in sections}
        for sec in result['sections'].values():
            sec.setdefault('measured', old['started'])
            sec.setdefault('command', old.get('command'))
    t0 = time.perf_counter()
    for name in sections:
        _log(f'== {TITLES[name]}')
        ts = time.perf_counter()
        try:
            res = RUNNERS[name](cfg, device)
        except Exception as e:  # noqa: BLE001  (record and go on with the other sections)
            traceback.print_exc()
            res = {'error': f'{type(e).__name__}: {e}'[:500]}
        res['wall_s'] = time.perf_counter() - ts
        res['measured'], res['command'] = time.strftime('%Y-%m-%d %H:%M:%S'), list(argv or [])
        result['sections'][name] = res
        result['sections'] = {k: result['sections'][k] for k in SECTIONS if k in result['sections']}
        result['wall_s'] = time.perf_counter() - t0
        result['machine']['load_avg_end'] = _loadavg()
        write_results(result, out_dir)
    return result


def write_results(result: dict, out_dir: str):
    from .utils.checkpoint import atomic_write_text
    opts = result.get('sections', {}).get('options')
    if opts and 'error' not in opts:  # its autocast entry depends on section 7
        opts['recommended'] = _recommend(opts, result['sections'].get('precision'))
    atomic_write_text(osp.join(out_dir, 'benchmark.json'), json.dumps(result, indent=2, default=str) + '\n')
    atomic_write_text(osp.join(out_dir, 'benchmark.md'), render_markdown(result))


def rerender(out_dir: str) -> str:
    """Rewrite ``benchmark.md`` (and the derived ``recommended`` entry) from ``benchmark.json``."""
    with open(osp.join(out_dir, 'benchmark.json'), encoding='utf-8') as f:
        result = json.load(f)
    write_results(result, out_dir)  # also refreshes the derived ``recommended`` entry
    return osp.join(out_dir, 'benchmark.md')


# ------------------------------------------------------------------------------------------ markdown
def _f(v, nd=2):
    if v is None:
        return '-'
    if isinstance(v, bool):
        return 'yes' if v else 'no'
    if isinstance(v, int):
        return f'{v:,}'
    return f'{v:.{nd}f}'


def render_markdown(result: dict) -> str:
    m, cfg = result['machine'], result['config']
    lines = [
        f'# DeCoNAS benchmark: {m["device_name"]}',
        '',
        f'- CPU: {m["cpu"]}, {m["cores"]} cores ({m["usable_cores"]} usable; '
        f'{"flags: " + " ".join(m["cpu_flags"]) if m.get("cpu_flags") else "CPU flags not recorded"}), '
        f'torch threads {m["torch_threads"]} '
        f'({cfg.get("threads_reason", "")})',
        f'- torch {m["torch"]}, Python {m["python"]}, device `{m["device"]}`'
        + (f' (CUDA {m.get("cuda")}, cuDNN {m.get("cudnn")})' if m['device'].startswith('cuda') else ''),
        f'- load average at start {m.get("load_avg_start")}, at end {m.get("load_avg_end")}; started '
        f'{result["started"]}, wall {result.get("wall_s", 0):.0f} s' + (' (--quick)' if cfg.get('quick') else ''),
        f'- command: `{" ".join(result.get("command") or [])}`' + (
            ' (other sections kept from earlier runs: see each section)' if '--merge' in (result.get('command') or [])
            else ''),
    ] + _md_probe(m) + [
        '',
        'Ratios are measured side by side in one process (A/B interleaved ABBA, each after a warm-up, '
        'medians); absolute times on a shared machine are noisy, the ratios much less.',
        '',
    ] + _md_summary(result)
    for name, sec in result['sections'].items():
        lines += [f'## {TITLES[name]}', '']
        if 'error' in sec and name != 'zeromask':
            lines += [f'**failed**: `{sec["error"]}`', '']
            continue
        lines += globals()[f'_md_{name}'](sec, cfg, result)
        stamp = (f'measured {sec["measured"]} by `{" ".join(sec.get("command") or [])}`; '
                 if sec.get('measured') else '')
        lines += ['', f'_{stamp}section wall time {sec.get("wall_s", 0):.0f} s_', '']
    return '\n'.join(lines).rstrip() + '\n'


def _md_summary(result) -> List[str]:
    secs = {k: v for k, v in result['sections'].items() if 'error' not in v or k == 'zeromask'}
    if not secs:
        return []
    yes = lambda ok: '**met**' if ok else '**NOT met**'  # noqa: E731
    out = ['## Summary', '', '| measurement | result | goal | |', '|---|---|---|---|']
    s = secs.get('supernet')
    if s:
        out.append(f'| 1. child step, supernet / fixed net (mean of {len(s["per_genotype"])} genotypes) | '
                   f'{s["mean_ratio"]:.3f} (min {s["min_ratio"]:.3f}, max {s["max_ratio"]:.3f}) | '
                   f'<= {s["goal_ratio_max"]:.2f} | {yes(s["meets_goal"])} |')
    s = secs.get('zeromask')
    if s:
        if 'error' in s:
            out.append(f'| 2. sliced vs zero-mask supernet | failed: {s["error"]} | >= 1.5x | **NOT met** |')
        else:
            out.append(f'| 2. child step, zero-mask / sliced (mean density {s["mean_density"]:.2f}) | '
                       f'{s["mean_speedup"]:.2f}x (min {s["min_speedup"]:.2f}, max {s["max_speedup"]:.2f}); outputs '
                       f'equal (max diff {s["max_abs_diff"]:.0e}) | >= {s["goal_speedup_min"]:.1f}x | '
                       f'{yes(s["meets_goal"])} |')
    s = secs.get('controller')
    if s:
        for r in (r for r in s['configs'] if r['device'] == 'cpu'):
            out.append(f'| 3. controller, CPU, FF{int(r["ff"])}: ms per genotype, sample + log-prob | single '
                       f'{r["single_ms"]:.1f}, batched {r["batched_ms"]:.2f}; child draws: single '
                       f'{r["child_draw_single_ms"]:.1f}, batched {r["child_draw_batched_ms"]:.2f} | '
                       f'<= {s["goal_ms"]:.0f} ms | batched {yes(r["batched_ms"] <= s["goal_ms"])}, single '
                       f'{yes(r["single_ms"] <= s["goal_ms"])} |')
    s = secs.get('inference')
    if s:
        rows = {r['model']: r for r in s['rows']}
        dn = next((r for n, r in rows.items() if n.startswith('DeCoNASNet')), None)
        carn = next((r for n, r in rows.items() if n.startswith('CARN (multi')), None)
        if dn and carn and dn['lr_hw'] == carn['lr_hw']:
            out.append(f'| 4. inference x2 {dn["lr_hw"][1]}x{dn["lr_hw"][0]}, DeCoNASNet / CARN time | '
                       f'{dn["ms"] / carn["ms"]:.2f} (MACs {dn["macs"] / carn["macs"]:.2f}; '
                       f'{_f(dn["gmac_per_s"], 1)} vs {_f(carn["gmac_per_s"], 1)} GMAC/s) | - | |')
    s = secs.get('data')
    if s:
        out.append(f'| 5. PairedImageDataset samples/s, LMDB / disk | {s["ratio_lmdb_over_disk"]:.2f} '
                   f'({s["lmdb_samples_per_s"]:.0f} vs {s["disk_samples_per_s"]:.0f}) | - | |')
    s = secs.get('options')
    if s:
        out.append(f'| 6. child-step defaults | {_defaults_text(s, secs.get("precision"))} | - | |')
    s = secs.get('precision')
    if s:
        for r in (r for r in s['variants'] if r['autocast']):
            out.append(f'| 7. retrain PSNR-Y, {r["name"]} - fp32 ({s["setup"]["iters"]} iterations; fp32 seed noise) | '
                       f'{r["psnr_diff"]:+.3f} dB (seed noise {s["seed_noise_psnr_db"]:.3f} dB): '
                       f'{"within" if r["within_seed_noise"] else "beyond"} seed noise; {_faster(r["speedup"])} | '
                       f'- | |')
    return out + ['']


def _md_probe(m) -> List[str]:
    p = m.get('threads_probe')
    if not p:
        return []
    parts = ', '.join(f'{k.split("_")[1]} thread(s) {v:.1f} ms' for k, v in p.items() if k.startswith('threads_'))
    worst = ', '.join(f'{k}: {v:.0f} ms' for k, v in p['max_ms'].items())
    return [f'- intra-op threads probe (conv3x3 32->32 on 4x48x48, forward + backward, median): {parts} '
            f'(worst: {worst})']


def _md_supernet(s, cfg, result):
    st = s['setup']
    out = [f'Random genotypes: {len(s["per_genotype"])}, density {st["density"]}, M={st["num_nodes"]}, '
           f'N={st["num_blocks"]}, C={st["num_feat"]}, LR patch {st["patch"]}, batch {st["batch"]}; Adam; '
           f'{st["warmup"]} warm-up + {st["reps"]} timed steps each. Extracted net output = supernet output '
           f'(max abs diff {s["max_abs_diff"]:.1e}).', '',
           '| metric | value | goal |', '|---|---:|---|',
           f'| mean ratio supernet / fixed | **{s["mean_ratio"]:.3f}** | <= {s["goal_ratio_max"]:.2f} '
           f'({"met" if s["meets_goal"] else "NOT met"}) |',
           f'| median / min / max ratio | {s["median_ratio"]:.3f} / {s["min_ratio"]:.3f} / {s["max_ratio"]:.3f} | |',
           '', '| genotype | params (fixed) | supernet ms | fixed ms | ratio |', '|---|---:|---:|---:|---:|']
    for r in s['per_genotype']:
        out.append(f'| `{r["genotype"]}` | {r["params_fixed"]:,} | {r["supernet_ms"]:.1f} | {r["fixed_ms"]:.1f} | '
                   f'{r["ratio"]:.3f} |')
    return out


def _md_zeromask(s, cfg, result):
    out = [f'Zero-mask supernet (every op of node i reads all i inputs with its full weight, unchosen inputs '
           f'x 0; LFF/GFF masked too; ops with no chosen input skipped in both) vs the sliced supernet, on '
           f'feature-fusion (FF1) genotypes so that the LFF/GFF masks matter. Same output before timing: '
           f'max abs diff **{s["max_abs_diff"]:.1e}** ({"equivalent" if s["equivalent"] else "NOT equivalent"}, '
           f'bound 1e-5).', '']
    if 'error' in s:
        return out + [f'**failed**: `{s["error"]}`']
    out += ['| metric | value | goal |', '|---|---:|---|',
            f'| mean speedup of sliced (zero-mask ms / sliced ms) | **{s["mean_speedup"]:.2f}x** | >= '
            f'{s["goal_speedup_min"]:.1f}x ({"met" if s["meets_goal"] else "NOT met"}) |',
            f'| min / max speedup | {s["min_speedup"]:.2f} / {s["max_speedup"]:.2f} | |',
            f'| mean genotype density | {s["mean_density"]:.2f} | 0.5 |',
            '', '| genotype | density | sliced ms | zero-mask ms | speedup |', '|---|---:|---:|---:|---:|']
    for r in s['per_genotype']:
        out.append(f'| `{r["genotype"]}` | {r["density"]:.2f} | {r["sliced_ms"]:.1f} | {r["zeromask_ms"]:.1f} | '
                   f'{r["speedup"]:.2f} |')
    return out


def _md_controller(s, cfg, result):
    out = ['ms per genotype. single = `sample()`: one sequential unroll (`decide`) + one teacher-forced '
           '`score` (log-prob and entropy), what each controller (REINFORCE) step does; batched = '
           f'`sample_many(B)` (B = {cfg["controller_batch"]}), per genotype. Child draws = `decide` without '
           'the log-prob, what a child step needs: one unroll per genotype, or one batched unroll of B for '
           'all the child steps up to the next controller phase (what the search does).', '',
           '| device | FF | decisions | single | batched | child draw single | child draw batched |',
           '|---|---|---:|---:|---:|---:|---:|']
    for r in s['configs']:
        out.append(f'| {r["device"]} | {int(r["ff"])} | {r["num_decisions"]} | {r["single_ms"]:.2f} | '
                   f'{r["batched_ms"]:.3f} | {r["child_draw_single_ms"]:.2f} | {r["child_draw_batched_ms"]:.3f} |')
    paths = s['paths_meeting_goal_on_cpu']
    ok = [k for k, v in paths.items() if v]
    out += ['', f'Goal <= {s["goal_ms"]:.0f} ms per genotype on CPU: met by '
            f'{", ".join(ok) if ok else "no path"}; not met by '
            f'{", ".join(k for k, v in paths.items() if not v) or "-"}.',
            '', 'Breakdown (CPU, FF0; ms per call):', '', '| part | ms |', '|---|---:|']
    first = next(r for r in s['configs'] if r['device'] == 'cpu' and not r['ff'])
    for k, v in first['breakdown_ms'].items():
        out.append(f'| {k} | {v:.3f} |')
    out += ['', 'Profile of one single-path call (CPU, FF0), top ops by self CPU time:', '',
            '| op | calls | self CPU ms |', '|---|---:|---:|']
    for p in first['profile_top']:
        out.append(f'| `{p["op"]}` | {p["calls"]} | {p["self_cpu_ms"]:.2f} |')
    return out


def _md_inference(s, cfg, result):
    out = ['One LR image, `torch.no_grad()`, eval mode; median of '
           f'{s["reps"]} runs after a warm-up, models run round robin. MACs by `complexity_table.model_complexity` '
           'at the same input size.', '',
           '| model | LR input | ms | params | GMACs | GMAC/s |', '|---|---|---:|---:|---:|---:|']
    for r in s['rows']:
        h, w = r['lr_hw']
        out.append(f'| {r["model"]} | {w}x{h} | {r["ms"]:.1f} | {r["params"]:,} | '
                   f'{(r["macs"] or 0) / 1e9:.2f} | {_f(r["gmac_per_s"], 1)} |')
    sizes = {tuple(r['lr_hw']) for r in s['rows']}
    if len(sizes) > 1:
        out += ['', 'RDN runs at a smaller input (see LR input) to keep the run short on a CPU; compare GMAC/s.']
    return out


def _md_data(s, cfg, result):
    return [f'{s["num_subimages"]} sub-images ({s["subimage_crop"]} px HR, step {s["subimage_step"]}) of the embedded '
            f'train split ({", ".join(s["images"])}), x2, made with `tools/prepare_train.py`; random crop '
            f'gt_size {s["gt_size"]}, flips + rotations, num_workers 0, {s["samples"]} samples per backend '
            f'(interleaved chunks, median). Same sample from both backends: {_f(s["same_samples"])}.', '',
            '| backend | samples/s |', '|---|---:|',
            f'| LMDB | {s["lmdb_samples_per_s"]:.0f} |', f'| disk folders | {s["disk_samples_per_s"]:.0f} |',
            f'| ratio LMDB / disk | {s["ratio_lmdb_over_disk"]:.2f} |']


def _md_options(s, cfg, result):
    st = s['setup']
    out = [f'Supernet child step, C={st["num_feat"]}, batch {st["batch"]}, LR patch {st["patch"]}; speedup = '
           f'default ms / variant ms (mean over genotypes); losses of the first {s["loss_steps"]} steps from '
           'identical weights and batches compared with the default (max relative difference).', '',
           '| variant | ms | speedup | loss rel. diff | loss matches |', '|---|---:|---:|---:|---|']
    for r in s['variants']:
        out.append(f'| {r["name"]} | {r["ms"]:.1f} | {r["speedup"]:.2f}x | {r["loss_rel_diff"]:.1e} | '
                   f'{_f(r["loss_ok"])} |')
    c = s.get('compile')
    if c:
        out += ['']
        if 'error' in c:
            out.append(f'torch.compile: failed (`{c["error"]}`).')
        else:
            fresh = ', '.join(f'{v:.1f}' for v in c['fresh_compile_s'])
            be, be0 = c['break_even_steps_per_genotype'], c['break_even_steps_first']
            out += ['| torch.compile | value |', '|---|---:|',
                    f'| compile, first genotype (s; inductor cache {c.get("inductor_cache", "as found")}) | '
                    f'{c["first_compile_s"]:.1f} |',
                    f'| recompile, fresh genotype (s) | {fresh} |',
                    f'| first step on a repeated (cached) genotype (ms) | {c["repeated_first_step_ms"]:.1f} |',
                    f'| steady step compiled / eager (ms) | {c["steady_ms"]:.1f} / {c["eager_ms"]:.1f} |',
                    f'| steady speedup | {c["steady_speedup"]:.2f}x |',
                    f'| loss rel. diff vs eager | {c["loss_rel_diff"]:.1e} |',
                    f'| steps to repay the first compile (one fixed genotype, e.g. retraining) | '
                    f'{_f(be0, 0) if be0 else "never"} |',
                    f'| steps per fresh genotype to repay its recompile (search) | {_f(be, 0) if be else "never"} |',
                    f'| dynamo recompile limit | {c["recompile_limit"]} |']
    out += ['', '**Conclusion.** ' + _options_conclusion(s, result)]
    return out


def _faster(speedup: float) -> str:
    return f'{speedup:.2f}x faster' if speedup >= 1 else f'{1 / speedup:.2f}x slower'


def _md_precision(s, cfg, result):
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
           'measure the run-to-run noise the autocast differences are compared with.', '',
           '| variant | batch seed | ms/iter | speedup | final loss | PSNR-Y (dB) | SSIM-Y | PSNR - fp32 (dB) | '
           'SSIM - fp32 |', '|---|---|---:|---:|---:|---:|---:|---:|---:|']
    for r in s['variants']:
        out.append(f'| {r["name"]} | {r["batch_seed"]} | {r["ms_per_iter"]:.1f} | {r["speedup"]:.2f}x | '
                   f'{r["final_loss"]:.4f} | {r["psnr_y"]:.3f} | {r["ssim_y"]:.4f} | {r["psnr_diff"]:+.3f} | '
                   f'{r["ssim_diff"]:+.4f} |')
    images = [row['image'] for row in s['variants'][0]['per_image']]
    out += ['', '| variant | ' + ' | '.join(f'{i} PSNR-Y' for i in images) + ' |',
            '|---|' + '---:|' * len(images)]
    for r in s['variants']:
        out.append(f'| {r["name"]} | ' + ' | '.join(f'{row["psnr_y"]:.3f}' for row in r['per_image']) + ' |')
    ref, other = s['variants'][0]['per_image'], s['variants'][1]['per_image']
    parts = []
    for r in (r for r in s['variants'] if r['autocast']):
        diffs = [(a['psnr_y'] - b['psnr_y'], a['image'], abs(c['psnr_y'] - b['psnr_y']))
                 for a, b, c in zip(r['per_image'], ref, other)]
        worst = max(diffs, key=lambda d: abs(d[0]))
        parts.append(f'{r["name"]} is {_faster(r["speedup"])} per iteration and changes the test PSNR-Y by '
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


def _options_conclusion(s, result) -> str:
    parts = []
    for r in s['variants']:
        if r['name'] == 'default':
            continue
        verdict = ('helps' if r['speedup'] >= 1.05 else 'does not help' if r['speedup'] > 0.95 else 'slows down')
        loss = 'losses match' if r['loss_ok'] else 'losses DIFFER beyond tolerance'
        parts.append(f'{r["name"]} {verdict} ({r["speedup"]:.2f}x, {loss})')
    text = '; '.join(parts) + '.'
    c = s.get('compile', {})
    if c and 'error' not in c:
        fresh = ', '.join(f'{v:.0f}' for v in c['fresh_compile_s'])
        repaid = _f(c['break_even_steps_first'], 0) if c['break_even_steps_first'] else 'never'
        text += (f' torch.compile recompiles for every new genotype ({fresh} s '
                 f'each here, vs a {c["eager_ms"]:.0f} ms eager step) and falls back to eager after '
                 f'{c["recompile_limit"]} graphs; the search draws a fresh genotype nearly every step, so compile is '
                 f'off for the search. With one genotype (as in retraining a fixed DeCoNASNet) the steady step is '
                 f'{c["steady_speedup"]:.2f}x faster (measured on the supernet at a repeated genotype) and the first '
                 f'compile is repaid after {repaid} '
                 'steps.')
    text += (' **Defaults from these numbers** (' + result['machine']['device'] + '): '
             + _defaults_text(s, result['sections'].get('precision')) + '.')
    return text


def _defaults_text(s, precision: Optional[dict] = None) -> str:
    rec = _recommend(s, precision)
    rows = {r['name']: r for r in s['variants']}
    amp = rec['autocast_fastest']
    amp_row = next((r for r in s['variants'] if r.get('amp_dtype') == amp and not r.get('channels_last')), None)
    if amp and amp_row:
        short = {'bfloat16': 'bf16', 'float16': 'fp16'}.get(amp, amp)
        verdict = rec['autocast_psnr']
        if verdict == 'within seed noise':
            autocast = (f'fp32 by default; `train.autocast: {short}` is {amp_row["speedup"]:.2f}x faster and its '
                        'retrain PSNR is within seed noise (section 7): an opt-in')
        elif verdict == 'beyond seed noise':
            autocast = (f'fp32 (autocast {short} is {amp_row["speedup"]:.2f}x faster but moves the retrain PSNR beyond '
                        'seed noise, section 7)')
        else:
            autocast = (f'fp32 (autocast {short} is {amp_row["speedup"]:.2f}x faster; its effect on the retrain PSNR '
                        'is not measured: section 7)')
    else:
        autocast = 'fp32 (no autocast)'
    parts = [autocast,
             f'channels_last {"on" if rec["channels_last"] else "off"} ({rows["channels_last"]["speedup"]:.2f}x)',
             'torch.compile off for the search']
    c = s.get('compile', {})
    if c and 'error' not in c:
        worth = 'worth it' if rec['torch_compile_retrain'] else 'not worth it'
        parts.append(f'torch.compile for retraining a fixed genotype: {worth} '
                     f'(steady {c["steady_speedup"]:.2f}x, measured on the supernet at a repeated genotype)')
    return '; '.join(parts)
