"""Speed benchmark of the DeCoNAS implementation (ratios measured side by side) and training precision's cost.

Ratios are measured side by side in one process; section 7 measures the effect of training precision
(autocast) on a retrained network's PSNR.

Sections (select with --only, by name or number; all by default):
  1 supernet    child train step of DeCoNetSupernet(x, g) vs supernet.extract(g)   (goal: ratio <= 1.10)
  2 zeromask    sliced supernet vs the reference's zero-mask way, equal outputs (strict fp32) checked first
                                                                                  (goal: sliced >= 1.5x faster)
  3 controller  sample + log-prob per genotype at M=8, N=16, FF off/on, single vs batched; child-step
                draws one by one vs batched per controller phase                  (goal: <= 2 ms on CPU)
  4 inference   DeCoNASNet (paper), CARN, RDN, EDSR-baseline at x2: ms, params, MACs, GMAC/s
  5 data        PairedImageDataset samples/s from LMDB vs disk folders of the same sub-images
  6 options     child step with autocast, torch.compile: speedups, loss sanity, defaults
  7 precision   a small DeCoNASNet retrained in fp32 (two batch seeds: the noise), bf16 autocast (and fp16
                + GradScaler on CUDA) from the same weights and batches: ms/iter, final loss, fp32 test
                PSNR-Y / SSIM-Y and their differences (1500 iterations on CPU, ~10 min; 1000 on CUDA, ~3 min)
  8 retrain     retrain step of DeCoNASNet vs EDSR-baseline and CARN: dispatched ops (goal: DeCoNASNet forward +
                L1 + backward <= 800), ms per step fp32 / bf16 and ratios; on CUDA kernels per step, and fused
                Adam, torch.compile and whole-step CUDA graphs against eager: speedup, weight drift, verdict

Writes <out>/benchmark.json and <out>/benchmark.md (rewritten after every section); the Markdown starts
with the machine (CPU model, cores, torch version, device name). Sizes: CPU C=32, LR patch 48, batch 4;
CUDA C=64, patch 64, batch 16; --quick shrinks everything for a smoke run. Timings on a shared machine
are noisy: A and B are interleaved (ABBA), warmed up, and medians are reported.

Examples:
    python tools/benchmark.py --out benchmarks/cpu-2core
    python tools/benchmark.py --out benchmarks/h100 --device cuda
    python tools/benchmark.py --quick --only zeromask,controller --out /tmp/bench
"""
import argparse
import os.path as osp
import sys
import time

if __package__ in (None, ''):  # run as a script: make the project importable
    sys.path.insert(0, osp.abspath(osp.join(__file__, osp.pardir, osp.pardir)))


def parse_args(argv=None):
    summary, _, details = __doc__.partition('\n')  # -h: what the tool is for, the arguments, the details
    parser = argparse.ArgumentParser(description=summary, epilog=details,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', required=True, metavar='DIR',
                        help='output folder, e.g. benchmarks/<machine-tag> (benchmark.json, benchmark.md)')
    parser.add_argument('--device', default=None, help='cpu, cuda, cuda:1 ... (default: cuda if available)')
    parser.add_argument('--only', default=None,
                        help='comma-separated sections: supernet,zeromask,controller,inference,data,options,precision,'
                        'retrain (or 1-8)')
    parser.add_argument('--quick', action='store_true', help='tiny sizes: a smoke run, not a measurement')
    parser.add_argument('--seed', type=int, default=None)
    parser.add_argument('--genotypes', type=int, default=None, help='random genotypes of section 1 (default 20)')
    parser.add_argument('--reps', type=int, default=None, help='timed steps per variant and genotype (sections 1, 2)')
    parser.add_argument('--inference-size', type=int, default=None, help='LR side of section 4 (default 256)')
    parser.add_argument('--rdn-size', type=int, default=None,
                        help='LR side for RDN in section 4 (default: 64 on CPU, 256 on CUDA)')
    parser.add_argument('--render-only', action='store_true',
                        help='only rewrite <out>/benchmark.md from <out>/benchmark.json (no measurement)')
    parser.add_argument('--merge', action='store_true',
                        help='keep the sections of an existing <out>/benchmark.json that this run does not measure')
    parser.add_argument('--no-compile', action='store_true', help='skip torch.compile in section 6')
    parser.add_argument('--threads', default='auto',
                        help="torch intra-op threads on CPU: a number, 'all' (torch's default) or 'auto' (default): "
                        "the project's rule, OMP_NUM_THREADS when set, else 1 on at most 2 usable cores or when the "
                        "1-minute load average is above half of them (every parallel op would wait at an OpenMP "
                        "barrier for a descheduled thread), else torch's default; on CUDA torch's default")
    args = parser.parse_args(argv)
    if args.threads not in ('auto', 'all') and not (args.threads.isdigit() and int(args.threads) >= 1):
        parser.error(f"--threads must be a positive integer, 'all' or 'auto', got {args.threads!r}")
    for key in ('genotypes', 'reps', 'inference_size', 'rdn_size'):
        value = getattr(args, key)
        if value is not None and value < 1:
            parser.error(f'--{key.replace("_", "-")} must be positive, got {value}')
    return parser, args


def main(argv=None):
    parser, args = parse_args(argv)
    import torch

    from benchmarks.config import make_config
    from benchmarks.machine import choose_threads
    from benchmarks.run import parse_only, rerender, run_benchmark
    if args.render_only:
        try:
            path = rerender(args.out)
        except (OSError, ValueError) as e:
            parser.error(f'--render-only: {e}')
        print(f'wrote {path}')
        return 0
    try:
        sections = parse_only(args.only)
    except ValueError as e:
        parser.error(str(e))
    device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    if device.type == 'cuda' and not torch.cuda.is_available():
        parser.error(f'--device {args.device}: CUDA is not available')
    threads, reason = choose_threads(args.threads, device)
    torch.set_num_threads(threads)
    print(f'torch threads: {threads} ({reason})')
    cfg = make_config(device, args.quick, seed=args.seed, genotypes=args.genotypes, reps=args.reps,
                      inference_size=args.inference_size, rdn_size=args.rdn_size,
                      compile=False if args.no_compile else None)
    cfg['threads_reason'] = reason
    t0 = time.perf_counter()
    try:
        result = run_benchmark(args.out, device, sections, cfg, argv=['tools/benchmark.py'] + list(
            sys.argv[1:] if argv is None else argv), merge=args.merge)
    except ValueError as e:
        parser.error(str(e))
    failed = [name for name, sec in result['sections'].items() if 'error' in sec]
    print(f'wrote {osp.join(args.out, "benchmark.json")} and benchmark.md in {time.perf_counter() - t0:.0f} s'
          + (f'; FAILED sections: {", ".join(failed)}' if failed else ''))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
