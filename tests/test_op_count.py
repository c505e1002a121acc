"""The DNB's lean op implementations (shared ReLU and concats, a node's mean as one division) against the
plain formula, and the dispatched-op ceiling of a retrain step."""
import random

import pytest
import torch
import torch.nn.functional as F

import deconas_plugin  # noqa: F401  (registers the archs)
from deconas_plugin.archs.deconas_arch import DeCoNASNet
from deconas_plugin.archs.deconet_supernet_arch import DeCoNetSupernet
from deconas_plugin.genotype import NUM_OPS, PAPER_GENOTYPE, Genotype
from deconas_plugin.utils.op_count import count_ops, train_step_op_counts

PAPER_STEP_OP_CEILING = 934  # forward + L1 + backward of the paper network (a plain formula dispatches 1,169)


def _plain_block(block, x, g, fixed):
    """A DNB as DESIGN.md writes it: every op ReLU(concat) -> conv, node = stack(ops).mean, CA(ReLU(h))."""
    feats = [x]
    live = g.live_nodes() if hasattr(g, 'live_nodes') else range(1, block.num_nodes + 1)
    for node in range(1, block.num_nodes + 1):
        if node not in live:
            feats.append(None)
            continue
        outs = [block.ops[f'node{node}_op{op}']([feats[j] for j in g.op_inputs(node, op)],
                                                None if fixed else g.op_inputs(node, op))
                for op in range(NUM_OPS) if g.op_inputs(node, op)]
        h = feats[node - 1] if not outs else torch.stack(outs).mean(0)
        feats.append(block.attention[node - 1](F.relu(h)))
    ids = g.local_inputs()
    return block.local_fusion([feats[j] for j in ids], None if fixed else ids) + x


def _plain_run(net, x, g):
    fixed = net.genotype is not None
    x = (x - net.mean) * net.img_range
    f_minus1 = net.sfe1(x)
    feats = [net.sfe2(f_minus1)]
    for d, block in enumerate(net.blocks):
        inp = feats[0] if d == 0 else net.block_inputs[d - 1](torch.cat(feats, 1))
        feats.append(_plain_block(block, inp, g, fixed))
    ids = g.global_inputs(net.num_blocks)
    x = net.global_conv(net.global_fusion([feats[j] for j in ids], None if fixed else ids)) + f_minus1
    return net.conv_last(net.upsample(x)) / net.img_range + net.mean


def _output_and_grads(net, fn, x, y):
    net.zero_grad(set_to_none=True)
    out = fn(x)
    F.l1_loss(out, y).backward()
    return out.detach(), {k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None}


def _assert_same(net, lean, plain, x, y):
    out_a, grads_a = _output_and_grads(net, lean, x, y)
    out_b, grads_b = _output_and_grads(net, plain, x, y)
    assert (out_a - out_b).abs().max() <= 1e-6
    assert grads_a.keys() == grads_b.keys()
    for k in grads_a:
        scale = grads_b[k].abs().max() + 1e-12
        assert (grads_a[k] - grads_b[k]).abs().max() <= 1e-5 * scale, k
    with torch.no_grad():
        assert (lean(x) - out_b).abs().max() <= 1e-6


def test_lean_block_matches_the_plain_formula_fixed_and_supernet():
    gen = torch.Generator().manual_seed(1)
    x, y = torch.rand(2, 3, 10, 10, generator=gen), torch.rand(2, 3, 20, 20, generator=gen)
    torch.manual_seed(0)
    net = DeCoNASNet(PAPER_GENOTYPE, num_feat=8, num_blocks=2, num_nodes=4, img_range=255.)
    _assert_same(net, net, lambda t: _plain_run(net, t, net.genotype), x, y)
    sup = DeCoNetSupernet(num_feat=8, num_blocks=2, num_nodes=4, feature_fusion_search=True)
    rng = random.Random(5)
    for g in [Genotype.random(4, num_blocks=2, fusion=True, rng=rng, density=0.5) for _ in range(3)]:
        _assert_same(sup, lambda t, g=g: sup(t, g), lambda t, g=g: _plain_run(sup, t, g), x, y)


def test_backward_under_bf16_autocast():
    torch.manual_seed(0)
    net = DeCoNASNet(PAPER_GENOTYPE, num_feat=8, num_blocks=1, num_nodes=4)
    x, y = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 16, 16)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        loss = F.l1_loss(net(x).float(), y)
    loss.backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_paper_network_retrain_step_dispatches_at_most_934_ops():
    torch.manual_seed(0)
    counts = train_step_op_counts(DeCoNASNet(PAPER_GENOTYPE, num_feat=64, num_blocks=4, num_nodes=4))
    assert counts['forward_backward'] <= PAPER_STEP_OP_CEILING, counts['top']
    assert counts['optimizer'] > 0 and counts['step'] == counts['forward_backward'] + counts['optimizer']


def test_count_ops_counts_forward_and_backward():
    x = torch.rand(3, requires_grad=True)
    counts = count_ops(lambda: (x * 2).relu().sum().backward())
    assert counts['mul'] >= 2 and counts['relu'] == 1 and counts['threshold_backward'] == 1


@pytest.mark.parametrize('img_range', [1., 255.])
def test_img_range_normalisation_unchanged(img_range):
    torch.manual_seed(0)
    net = DeCoNASNet('7 6 4', num_feat=4, num_blocks=1, num_nodes=2, img_range=img_range)
    x = torch.rand(1, 3, 6, 6)
    with torch.no_grad():
        assert (net(x) - _plain_run(net, x, net.genotype)).abs().max() <= 1e-6
