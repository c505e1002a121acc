"""Time a distributed child step: the search's all-reduce of used gradients vs DDP with unused parameters.

DistributedDataParallel needs ``find_unused_parameters=True`` for a supernet whose every step leaves
most weights unused (it traverses the autograd graph each step and all-reduces every bucket,
unused parameters included). The search instead averages, in one flat all-reduce, the gradients
of exactly the parameters the step used (``deconas_plugin/utils/dist.py``). This script times both
side by side on the same genotypes, in 2 processes (gloo on CPU, nccl on CUDA), and writes the
ratio as JSON (``<out>/ddp.json``, with its date, machine, command and commit).

    python tools/benchmark_ddp.py --out benchmarks/cpu-2core [--steps 10] [--feat 32]
"""
import json
import os
import os.path as osp
import random
import statistics
import sys
import time

if __package__ in (None, ''):  # run as a script: make the project importable
    sys.path.insert(0, osp.abspath(osp.join(__file__, osp.pardir, osp.pardir)))

from deconas_plugin.utils.cli import tool_parser  # noqa: E402

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402


def _step_times(rank, world, args, use_ddp, genotypes, device):
    from benchmarks.timing import timed
    from deconas_plugin.archs.deconet_supernet_arch import DeCoNetSupernet
    from deconas_plugin.utils import dist as dist_util
    torch.manual_seed(0)
    net = DeCoNetSupernet(num_feat=args.feat, num_blocks=4, num_nodes=4).to(device)
    model = torch.nn.parallel.DistributedDataParallel(
        net, device_ids=[rank] if device.type == 'cuda' else None, find_unused_parameters=True) if use_ddp else net
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    x = torch.rand(args.batch, 3, args.patch, args.patch, device=device)
    y = torch.rand(args.batch, 3, 2 * args.patch, 2 * args.patch, device=device)

    def step(g):
        opt.zero_grad(set_to_none=True)
        (model(x, g) - y).abs().mean().backward()
        if not use_ddp:
            dist_util.average_gradients_(net)
        opt.step()
    times = [timed(lambda: step(g), device) for g in genotypes]
    return statistics.median(times[1:])  # the first step warms up


def _worker(rank, world, args, port, queue):
    from deconas_plugin.genotype import Genotype
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    cuda = torch.cuda.is_available() and args.device != 'cpu'
    device = torch.device('cuda', rank) if cuda else torch.device('cpu')
    if cuda:
        torch.cuda.set_device(rank)
    torch.set_num_threads(1)
    dist.init_process_group('nccl' if cuda else 'gloo', rank=rank, world_size=world)
    rng = random.Random(1)
    genotypes = [Genotype.random(4, rng=rng) for _ in range(args.steps + 1)]
    result = {}
    for _ in range(2):  # ABAB: each design twice, the second round kept
        for name, use_ddp in (('ddp_find_unused', True), ('manual_allreduce', False)):
            result[name] = _step_times(rank, world, args, use_ddp, genotypes, device)
    if rank == 0:
        queue.put(result)
    dist.destroy_process_group()


def main(argv=None):
    p = tool_parser(__doc__)
    p.add_argument('--out', default='benchmarks/cpu-2core')
    p.add_argument('--steps', type=int, default=10)
    p.add_argument('--feat', type=int, default=32)
    p.add_argument('--batch', type=int, default=4)
    p.add_argument('--patch', type=int, default=32)
    p.add_argument('--device', default='auto', choices=['auto', 'cpu'])
    args = p.parse_args(argv)
    started = time.strftime('%Y-%m-%d %H:%M:%S')
    queue = mp.get_context('spawn').SimpleQueue()
    mp.spawn(_worker, args=(2, args, 29000 + os.getpid() % 1000, queue), nprocs=2, join=True)
    result = queue.get()
    result['ratio_ddp_over_manual'] = result['ddp_find_unused'] / result['manual_allreduce']
    device = 'cuda' if torch.cuda.is_available() and args.device != 'cpu' else 'cpu'
    result.update(steps=args.steps, num_feat=args.feat, batch=args.batch, lr_patch=args.patch, world_size=2,
                  device=device, threads_per_rank=1)
    from deconas_plugin.utils.machine import describe_machine, source_commit
    root = osp.dirname(osp.dirname(osp.abspath(__file__)))
    result.update(date=started, machine=describe_machine(torch.device(device)), commit=source_commit(root),
                  command=' '.join(['python tools/benchmark_ddp.py'] + list(sys.argv[1:] if argv is None else argv)))
    os.makedirs(args.out, exist_ok=True)
    from deconas_plugin.utils.checkpoint import atomic_write_text
    atomic_write_text(osp.join(args.out, 'ddp.json'), json.dumps(result, indent=2) + '\n')
    print(f"median child step, 2 ranks: DDP(find_unused_parameters=True) {result['ddp_find_unused'] * 1e3:.1f} ms, "
          f"manual all-reduce of used gradients {result['manual_allreduce'] * 1e3:.1f} ms "
          f"(ratio {result['ratio_ddp_over_manual']:.2f})")


if __name__ == '__main__':
    main()
