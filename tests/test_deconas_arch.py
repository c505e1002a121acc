import os.path as osp
import random

import pytest
import torch

import deconas_plugin  # noqa: F401
from basicsr.utils.registry import ARCH_REGISTRY
from deconas_plugin.archs.deconas_arch import DeCoNASNet
from deconas_plugin.archs.deconet_supernet_arch import DeCoNetSupernet
from deconas_plugin.complexity import count_params, max_params
from deconas_plugin.genotype import PAPER_GENOTYPE, Genotype


def n_params(net):
    return sum(p.numel() for p in net.parameters())


def test_paper_network_has_exactly_1693251_params():
    net = ARCH_REGISTRY.get('DeCoNASNet')(genotype='7 6 4 3 0 2 2 3 4 1', num_blocks=4, num_nodes=4, num_feat=64,
                                          upscale=2)
    assert n_params(net) == 1_693_251
    # The reference code's dead inter-block conv after the last block (20,544 params) is not built.
    assert len(net.block_inputs) == 3
    assert count_params(PAPER_GENOTYPE, num_blocks=4) == 1_693_251


def test_every_parameter_is_used_by_the_forward_pass():
    net = DeCoNASNet(PAPER_GENOTYPE, num_feat=8, num_blocks=2)
    net(torch.rand(1, 3, 9, 11)).mean().backward()
    unused = [name for name, p in net.named_parameters() if p.grad is None]  # not in the autograd graph
    assert unused == []


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_forward_shapes_on_odd_sizes(scale):
    net = DeCoNASNet(PAPER_GENOTYPE, num_feat=8, num_blocks=2, upscale=scale)
    assert net(torch.rand(2, 3, 7, 9)).shape == (2, 3, 7 * scale, 9 * scale)
    sup = DeCoNetSupernet(num_feat=8, num_blocks=2, num_nodes=4, upscale=scale)
    assert sup(torch.rand(1, 3, 5, 11), PAPER_GENOTYPE).shape == (1, 3, 5 * scale, 11 * scale)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match='upscale must be 2, 3 or 4, got 5'):
        DeCoNASNet(PAPER_GENOTYPE, upscale=5)
    with pytest.raises(ValueError, match='num_nodes = 3'):
        DeCoNASNet(PAPER_GENOTYPE, num_nodes=3)
    with pytest.raises(ValueError, match='multiple of 4'):
        DeCoNASNet(PAPER_GENOTYPE, num_feat=10)


def test_node_without_ops_passes_its_predecessor():
    # node 2 has no active op: x_2 = CA(ReLU(x_1)); the network still builds and runs.
    g = Genotype.parse('7 0 0 5 1 2')
    net = DeCoNASNet(g, num_feat=8, num_blocks=1, num_nodes=3)
    assert 'node2_op0' not in net.blocks[0].ops and net(torch.rand(1, 3, 6, 6)).shape == (1, 3, 12, 12)


@pytest.mark.parametrize('fusion', [False, True])
def test_exact_complexity_equals_built_network(fusion):
    rng = random.Random(7)
    for _ in range(25):
        m, n = rng.randint(1, 5), rng.randint(1, 4)
        c, s = rng.choice([4, 8, 12]), rng.choice([2, 3, 4])
        g = Genotype.random(m, n, fusion=fusion, rng=rng, density=rng.random())
        net = DeCoNASNet(g, num_feat=c, num_blocks=n, num_nodes=m, upscale=s)
        assert count_params(g, n, c, s) == n_params(net), str(g)
    assert max_params(4, 4) == n_params(DeCoNASNet(Genotype.full(4), num_blocks=4, num_nodes=4))


@pytest.mark.parametrize('fusion', [False, True])
def test_supernet_extract_is_equivalent(fusion):
    torch.manual_seed(0)
    rng = random.Random(1)
    sup = DeCoNetSupernet(num_feat=8, num_blocks=3, num_nodes=4, feature_fusion_search=fusion)
    x = torch.rand(2, 3, 10, 13)
    for _ in range(6):
        g = Genotype.random(4, 3, fusion=fusion, rng=rng, density=rng.uniform(0.2, 0.9))
        net = sup.extract(g)
        assert isinstance(net, DeCoNASNet) and n_params(net) == count_params(g, 3, 8)
        assert (net(x) - sup(x, g)).abs().max().item() <= 1e-5


def test_unchosen_slices_get_zero_gradient():
    torch.manual_seed(0)
    sup = DeCoNetSupernet(num_feat=4, num_blocks=2, num_nodes=3, feature_fusion_search=True)
    g = Genotype.parse('4 2 0 1 4 0 | 0 1 1 | 1 0')  # node 3's op0 reads only x_1; LFF skips x_0; GFF skips F_1
    sup(torch.rand(1, 3, 8, 8), g).abs().mean().backward()
    c = 4
    op = sup.blocks[0].ops['node3_op0']  # conv over inputs x_0, x_1, x_2 -> only x_1's slice is chosen
    grad = op.weight.grad
    assert grad[:, c:2 * c].abs().sum() > 0
    assert grad[:, :c].abs().sum() == 0 and grad[:, 2 * c:].abs().sum() == 0
    assert sup.blocks[0].ops['node1_op1'].depthwise_weight.grad is None  # op 1 of node 1 not chosen at all
    lff = sup.blocks[1].local_fusion.weight.grad
    assert lff[:, :c].abs().sum() == 0 and lff[:, c:].abs().sum() > 0
    gff = sup.global_fusion.weight.grad
    assert gff[:, c:2 * c].abs().sum() == 0 and gff[:, :c].abs().sum() > 0


def test_supernet_checks_fusion_flag():
    sup = DeCoNetSupernet(num_feat=4, num_blocks=2, num_nodes=3)
    with pytest.raises(ValueError, match='without fusion bits'):
        sup.extract('4 2 0 1 4 0 | 0 1 1 | 1 0')


def test_live_nodes_rule():
    # Node 1 of this genotype is read by nothing: not node 2 or 3 (both read x_0 / x_2), not the LFF
    # (local bits keep x_0 only; x_3 always enters). The issue-13 example: 2,708 of 15,255 parameters
    # (C = 8, N = 2, x2) were node 1's ops and channel attention, and never got a gradient.
    g = Genotype.parse('7 7 0 7 0 7 | 1 0 0 | 1 1')
    assert g.live_nodes() == (2, 3)
    net = DeCoNASNet(g, num_feat=8, num_blocks=2, num_nodes=3)
    assert n_params(net) == count_params(g, 2, 8) == 15_255 - 2_708
    assert not any(k.startswith('node1_') for k in net.blocks[0].ops)
    # A live node without ops reads its predecessor, which makes that one live.
    assert Genotype.parse('7 0 0 0 0 0 | 0 0 0 | 1').live_nodes() == (1, 2, 3)
    assert Genotype.parse('7 0 0 4 0 0 | 0 0 0 | 1').live_nodes() == (3, )
    assert Genotype.parse('7 0 0 4 0 0 | 0 1 0 | 1').live_nodes() == (1, 3)
    # Without fusion bits every node enters the LFF.
    assert Genotype.parse('0 0 0 4 0 0').live_nodes() == (1, 2, 3)


def test_random_fusion_genotypes_build_only_what_the_forward_pass_uses():
    """Fixed net, ``extract`` and ``count_params`` agree on random fusion genotypes, dead nodes included.

    Every parameter of the fixed network gets a gradient (no dead layer), its output equals the
    supernet's, and the supernet's step touches exactly the parameters the fixed network has
    (same names): the supernet runs, and the fixed network builds, the same layers.
    """
    torch.manual_seed(0)
    rng = random.Random(13)
    m, n, c = 5, 2, 4
    sup = DeCoNetSupernet(num_feat=c, num_blocks=n, num_nodes=m, feature_fusion_search=True)
    x = torch.rand(1, 3, 6, 7)
    with_dead = 0
    for _ in range(24):
        g = Genotype.random(m, n, fusion=True, rng=rng, density=rng.uniform(0.15, 0.7))
        if rng.random() < 0.5:  # LFF reads x_M only: a node lives only if a live node reads it
            g = Genotype(g.codes, local_bits=(0, ) * m, global_bits=g.global_bits)
        with_dead += len(g.live_nodes()) < m
        net = sup.extract(g)
        assert n_params(net) == count_params(g, n, c) == n_params(DeCoNASNet(g, num_feat=c, num_blocks=n,
                                                                              num_nodes=m)), str(g)
        sup.zero_grad(set_to_none=True)
        out = sup(x, g)
        assert (net(x) - out).abs().max().item() <= 1e-5, str(g)
        out.mean().backward()
        net(x).mean().backward()
        assert [k for k, p in net.named_parameters() if p.grad is None] == [], str(g)
        assert {k for k, p in sup.named_parameters() if p.grad is not None} == dict(net.named_parameters()).keys()
    assert with_dead >= 6  # the sample exercises dead nodes


def test_checkpoint_of_a_network_with_a_dead_node_finds_its_genotype(tmp_path):
    """tools/draw_genotype.py --ckpt: the layer shapes of a network with a dead node (no ops, no
    channel attention) fit its genotype, so the experiment's option file is recognised."""
    import yaml
    from deconas_plugin.genotype_source import genotype_from_checkpoint
    from deconas_plugin.reporting.draw import draw_genotype
    g = Genotype.parse('7 7 0 7 0 7 | 1 0 0 | 1 1')
    net = DeCoNASNet(g, num_feat=8, num_blocks=2, num_nodes=3)
    (tmp_path / 'exp' / 'models').mkdir(parents=True)
    torch.save({'params': net.state_dict()}, tmp_path / 'exp' / 'models' / 'net_g_1.pth')
    with open(tmp_path / 'exp' / 'train.yml', 'w') as f:
        yaml.safe_dump({'network_g': {'type': 'DeCoNASNet', 'genotype': str(g), 'num_feat': 8, 'num_blocks': 2,
                                      'num_nodes': 3}}, f)
    found, source = genotype_from_checkpoint(str(tmp_path / 'exp' / 'models' / 'net_g_1.pth'))
    assert found == g and 'option file' in source
    assert osp.getsize(draw_genotype(g, str(tmp_path / 'cell.png'))) > 1000
