"""Measure on one GPU in short runs: staged CUDA checks, speed, search and retrain evidence, saved as it comes.

Stages (each at most 7 minutes on one H200; every part under its own time limit):
  check    tests/test_cuda.py in selections: every CUDA path of the docs run once
  speed    retrain step DeCoNASNet / EDSR-baseline / CARN (fp32, bf16; kernels per step), default vs fused
           Adam, eager vs whole-step CUDA graph vs torch.compile, supernet
           child step and reward step (the paper's search in hours), inference TMAC/s; the verdict on
           every opt-in CUDA path (faster and as correct as eager?)
  search   the paper's N4 M4 C64 space on the prepared training images, alpha 0, at least 4,000 child
           steps then controller phases; derive; does the final policy beat uniform sampling on patches
           no reward used (mean, 95% interval), entropy, settled decisions, the empty/full gap
  retrain  the derived genotype vs 2 random genotypes of its size (within 10%), retrained from scratch
           (seed 0, then seed 1 as time allows) and tested on Set5 / Set14 / B100: found - random vs the
           seed noise

Writes <out>/<stage>.json and <out>/<stage>.md after every part (GPU, driver, torch, CUDA, cuDNN, commit,
date in each); logs in <out>/logs/. A stage whose results are complete is skipped unless --force; a
stage cut short keeps its finished parts and runs the rest. The plan and its time estimate print first.

Data: --prepare (once) writes what the stages read into .gpu/data (MATLAB-bicubic x2 from --data-root or
$DECONAS_DATA: a folder holding train_small/HR, Set5/HR, Set14/HR and B100/HR; docs/gpu.md). --tiny runs
every stage at tiny sizes on a CPU in seconds (a dry run of the same code; not a measurement).

Examples:
    python tools/gpu_evidence.py --prepare --data-root <folder with train_small/HR, Set5/HR, ...>
    python tools/gpu_evidence.py --stage check --out benchmarks/<gpu>
    python tools/gpu_evidence.py --stage all --out benchmarks/<gpu>
    python tools/gpu_evidence.py --tiny --prepare --data /tmp/tiny_data
    python tools/gpu_evidence.py --tiny --stage all --data /tmp/tiny_data --device cpu --out /tmp/tiny_evidence
"""
import argparse
import os
import os.path as osp
import sys

if __package__ in (None, ''):  # run as a script: make the project importable
    sys.path.insert(0, osp.abspath(osp.join(__file__, osp.pardir, osp.pardir)))

STAGE_CHOICES = ('check', 'speed', 'search', 'retrain', 'all')


def parse_args(argv=None):
    summary, _, details = __doc__.partition('\n')  # -h: what the tool is for, the arguments, the details
    parser = argparse.ArgumentParser(description=summary, epilog=details,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--stage', choices=STAGE_CHOICES, help='the stage to run; all: every stage not done, in order')
    parser.add_argument('--out', metavar='DIR', help='results folder, e.g. benchmarks/h200 (<stage>.json, <stage>.md)')
    parser.add_argument('--prepare', action='store_true', help='make the data the stages read (on this machine)')
    parser.add_argument('--data', default=None, help='prepared data folder (default .gpu/data)')
    parser.add_argument('--data-root', default=os.environ.get('DECONAS_DATA'),
                        help='folder holding train_small/HR, Set5/HR, Set14/HR, B100/HR to prepare from '
                        '(default: $DECONAS_DATA)')
    parser.add_argument('--device', default=None, help='cuda (default when available) or cpu')
    parser.add_argument('--force', action='store_true', help='rerun a stage (or remake the data) that is done')
    parser.add_argument('--tiny', action='store_true', help='tiny sizes on a CPU: a dry run, not a measurement')
    parser.add_argument('--plan', action='store_true', help='print the plan and its time estimate, run nothing')
    parser.add_argument('--commit', help='the commit of this tree, recorded when it has no .git (a copied tree)')
    parser.add_argument('--in-process', action='store_true',
                        help='run parts in this process (no per-part time limit); the default is one process per part')
    args = parser.parse_args(argv)
    if not (args.prepare or args.stage):
        parser.error('nothing to do: give --stage and/or --prepare')
    if args.prepare and not args.data_root:
        parser.error('--prepare needs --data-root <folder holding train_small/HR, Set5/HR, Set14/HR, B100/HR> '
                     '(or the environment variable DECONAS_DATA)')
    if args.stage and not args.out:
        parser.error('--stage needs --out DIR (e.g. benchmarks/h200)')
    return parser, args


def main(argv=None):
    parser, args = parse_args(argv)
    import torch

    import deconas_plugin  # noqa: F401  (torchvision shim before basicsr; registers the archs)
    from benchmarks.gpu_evidence import DEFAULT_DATA, STAGES, EvidenceError, Runner, prepare
    data = args.data or DEFAULT_DATA
    try:
        if args.prepare:
            prepare(data, args.data_root, tiny=args.tiny, force=args.force)
        if not args.stage:
            return 0
        device = args.device or ('cuda' if torch.cuda.is_available() or not args.tiny else 'cpu')
        runner = Runner(args.out, data, device, tiny=args.tiny, isolate=not args.in_process, commit=args.commit)
        stages = list(STAGES) if args.stage == 'all' else [args.stage]
        if args.plan:
            print(runner.plan_text(stages, args.force))
            return 0
        if device.startswith('cuda') and not torch.cuda.is_available():
            parser.error(f'--device {device}: CUDA is not available')
        if not args.tiny and not device.startswith('cuda'):
            parser.error(f'--device {device}: the full stages are sized for a GPU; use --tiny for a dry run on a CPU')
        results = runner.run(stages, args.force)
    except EvidenceError as e:
        parser.error(str(e))
    bad = [f'{s}.{n}' for s, r in results.items() for n, p in r['parts'].items() if p['status'] != 'done']
    print(f'results in {args.out}' + (f'; parts not done: {", ".join(bad)}' if bad else ''))
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
