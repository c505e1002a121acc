"""Search vs random: retrain the found genotype and K random ones of the same size, test, compare.

The standard check of a weight-sharing search (Yu et al., ICLR 2020): the genotype tools/derive.py
chose and K uniform random genotypes within 10% of its params are each retrained with the same
budget and S seeds, tested on held-out images (PSNR/SSIM on Y, border = scale), and scored with
the search's supernet; writes DIR/search_vs_random.{json,md,png}: the found network's rank, its
mean and std against the random ones', and the Kendall tau between supernet and retrained PSNR.
A rerun skips finished retrains and tests (each recorded in DIR/runs/) and resumes an interrupted retrain.
Without --search-exp it retrains and tests --genotypes only (a scale check of a setting).
See deconas_plugin/pipelines/search_vs_random.py and docs/search-evaluation.md, "Search vs random".

Examples:
    python tools/search_vs_random.py --search-exp experiments/demo_search_x2 --out results/search_vs_random \\
        --test-sets demo_out/data/embedded/test
    python tools/search_vs_random.py --search-exp search_CB1_FF0 --random 5 --seeds 2 \\
        --train-opt options/train/train_DeCoNASNet_x2.yml --iterations 20000 \\
        --test-sets datasets/Set5 datasets/Set14 --device cuda --out results/svr_CB1_FF0
"""
import os.path as osp
import sys

if __package__ in (None, ''):  # run as a script: make the project importable
    sys.path.insert(0, osp.abspath(osp.join(__file__, osp.pardir, osp.pardir)))

import deconas_plugin  # noqa: F401,E402  (registers archs, models, datasets, losses)

from deconas_plugin.pipelines import search_vs_random as svr  # noqa: E402
from deconas_plugin.utils.cli import run_tool, tool_parser  # noqa: E402


def parse_args(argv=None):
    p = tool_parser(__doc__)
    p.add_argument('--search-exp', help='the search experiment: a folder, or a name under experiments/ (without it: '
                   'retrain and test --genotypes only, with --train-opt)')
    p.add_argument('--out', required=True, help='output folder (search_vs_random.{json,md,png}, options/, logs/)')
    p.add_argument('--random', type=int, default=5, help='K: random genotypes (5)')
    p.add_argument('--seeds', type=int, default=2,
                   help="S: retrains per genotype, manual_seed = the template's + 0..S-1 (2)")
    p.add_argument('--found-seeds', type=int, help='retrains of the found genotype (default: --seeds)')
    p.add_argument('--genotypes', nargs='+', default=(), metavar='GENOTYPE', dest='extra_genotypes',
                   help='extra genotypes retrained and scored beside them, e.g. "0 0 0 0 0 0 0 0 0 0" (the empty '
                   'cell) up to the full one: their ranks widen the Kendall taus; not ranked against the found one')
    p.add_argument('--extra-seeds', type=int, help='retrains of each extra genotype (default: --seeds)')
    p.add_argument('--reuse', nargs='+', default=(), metavar='DIR',
                   help='earlier --out folders whose run records (runs/*.json) of the same measurement are taken '
                   'instead of retraining; a recorded training tested on other data is tested again from its checkpoint')
    p.add_argument('--train-opt', help='retrain template (default: <exp>/derive/train_DeCoNASNet.yml, written by '
                   'tools/derive.py); its genotype, name, seed and pretrained weights are replaced')
    p.add_argument('--data-from-search', action='store_true', help="retrain on the search option file's datasets")
    p.add_argument('--iterations', type=int, help='train.total_iter of every retrain (default: the template\'s); '
                   'MultiStepLR milestones / cosine periods are scaled with it')
    p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE', dest='overrides',
                   help='override a key of every retrain option file, e.g. --set datasets.train.batch_size_per_gpu=16')
    tests = p.add_mutually_exclusive_group()
    tests.add_argument('--test-opt', help='test on the datasets of this BasicSR option file '
                       '(default: the val datasets of the retrain template)')
    tests.add_argument('--test-sets', nargs='+', default=(), metavar='FOLDER',
                       help='test on these folders (GTmod<s>/LRbicx<s>, tools/prepare_benchmark.py), e.g. the '
                       "demo's held-out demo_out/data/embedded/test")
    p.add_argument('-opt', dest='opt_path', help='the search option file (default: the one in the experiment folder)')
    p.add_argument('--iter', dest='iteration', default='latest', help='supernet checkpoint to score with (latest)')
    p.add_argument('--scored-on', choices=['val', 'reward'],
                   help="supernet scoring data (default: chosen.json's, i.e. what tools/derive.py scored on)")
    p.add_argument('--params-tolerance', type=float, default=svr.DEFAULT_TOLERANCE,
                   help='random genotypes have params within this fraction of the found one\'s (0.10)')
    p.add_argument('--draw-seed', type=int, default=0, help='seed of the random genotypes (0)')
    p.add_argument('--prefix', help='experiment name prefix (default: svr_<search name>); runs are '
                   '<prefix>_<found|random<k>>_seed<s>, tests <run>_test')
    p.add_argument('--device', choices=('auto', 'cpu', 'cuda'), default='auto',
                   help="auto: the template's num_gpu, supernet on CUDA if available; cpu: num_gpu 0; cuda: num_gpu 1")
    p.add_argument('--jobs', type=int, default=1,
                   help='retrains (each with its test) run at once (1); on 2 cores, 2 took about half the time of 1')
    p.add_argument('--threads', type=int, help='OMP/MKL threads per process (default: 1 on a machine with at most 2 '
                   "cores or a busy one, else the cores shared out between the jobs; 0: PyTorch's default)")
    p.add_argument('--recorded-only', action='store_true',
                   help='retrain nothing: summarize the runs recorded so far (in <out>/runs/ and the --reuse folders) '
                   'into <out>/search_vs_random_so_far.json, .md, .png (the usual names once every run is recorded)')
    p.add_argument('--quiet', action='store_true', help='retrain/test output only into <out>/logs/, not the console')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from deconas_plugin.utils.machine import default_threads
    threads = args.threads if args.threads is not None else default_threads(args.jobs)
    kwargs = {k: v for k, v in vars(args).items() if k not in ('search_exp', 'out', 'random', 'threads')}
    from deconas_plugin.utils.logged_run import exit_on_sigterm
    with exit_on_sigterm():  # `kill` stops the running retrains with their states, as Ctrl-C does
        svr.run(args.search_exp, args.out, random_count=args.random, threads=threads, **kwargs)
    return 0


if __name__ == '__main__':
    run_tool(main, svr.ProtocolError)
