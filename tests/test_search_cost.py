"""The deployment-aware penalty: exact MACs of a genotype, the latency table, and the search reward with
``search.penalty`` params | macs | latency."""
import deconas_plugin  # noqa: F401  (torchvision shim and registration, before basicsr)

import json
import math
import os.path as osp
import random

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deconas_plugin.archs.deconas_arch import DeCoNASNet
from deconas_plugin.complexity import count_macs, count_params, max_macs, paper_lr_size
from deconas_plugin.genotype import NUM_OPS, PAPER_GENOTYPE, Genotype, num_groups
from deconas_plugin.latency import LatencyTableError, check_table, load_table, measure_table, predict
from deconas_plugin.search_cost import SearchCost
from deconas_plugin.reporting import complexity_table as ct
from deconas_plugin.options import OptionError, check_options
from shared_data import ROOT
from tiny_options import TINY_SUPERNET, parsed_options, search_options

TINY_SPACE = dict(num_feat=4, num_nodes=2, num_blocks=2, upscale=2)


# ------------------------------------------------------------------------------------------- MACs
@st.composite
def small_networks(draw):
    """(genotype, N, C, scale, (h, w)): M in 1..4, N in 1..3, tiny C, odd LR sizes, fusion bits or not
    (with them, nodes that nothing reads)."""
    m, n = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    codes = tuple(draw(st.lists(st.integers(0, 2**NUM_OPS - 1), min_size=num_groups(m), max_size=num_groups(m))))
    g = Genotype(codes)
    if draw(st.booleans()):
        bits = st.integers(0, 1)
        g = Genotype(codes, NUM_OPS, tuple(draw(st.lists(bits, min_size=m, max_size=m))),
                     tuple(draw(st.lists(bits, min_size=n, max_size=n))))
    return g, n, draw(st.sampled_from([4, 8])), draw(st.sampled_from([2, 3, 4])), (draw(st.integers(3, 9)),
                                                                                     draw(st.integers(3, 9)))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_networks())
def test_count_macs_equals_mmengine_on_the_built_network(case):
    g, n, c, s, (h, w) = case
    net = DeCoNASNet(g, num_feat=c, num_blocks=n, num_nodes=g.num_nodes, upscale=s)
    assert count_macs(g, n, c, s, lr_size=(h, w)) == ct.count_macs(net, h, w), (str(g), n, c, s, h, w)


def test_count_macs_of_the_paper_network_and_the_largest():
    # the complexity table's figure for the paper genotype (x2, 1280x720 output, counted by mmengine)
    assert paper_lr_size(2) == (360, 640) and paper_lr_size(3) == (240, 427)
    assert count_macs(PAPER_GENOTYPE, 4) == 382_899_027_968
    full = max_macs(4, 4)
    assert full == count_macs(Genotype.full(4), 4) > count_macs(PAPER_GENOTYPE, 4)
    assert all(count_macs(Genotype.random(4, rng=random.Random(i)), 4) <= full for i in range(20))
    # a dead node (nothing reads node 1) costs nothing: dropping its ops does not change the count
    dead = Genotype.parse('7 7 0 7 0 7 | 1 0 0 | 1 1')
    assert dead.live_nodes() == (2, 3)
    assert count_macs(dead, 2, 8, lr_size=(5, 5)) == count_macs(Genotype.parse('0 7 0 7 0 7 | 1 0 0 | 1 1'), 2, 8,
                                                                lr_size=(5, 5))


# ---------------------------------------------------------------------------------- latency table
def _fake_table(**sizes):
    """A table whose every part costs a distinct power of two (so a sum names the parts it used)."""
    m, n = sizes['num_nodes'], sizes['num_blocks']
    names = [f'op{op}_in{k}' for op in range(NUM_OPS) for k in range(1, m + 1)]
    names += [f'node_ops{a}' for a in range(NUM_OPS + 1)] + [f'lff_in{k}' for k in range(1, m + 2)]
    names += [f'block_in{d}' for d in range(1, n + 1)] + [f'gff_in{k}' for k in range(1, n + 2)] + ['stem', 'tail']
    return {'num_in_ch': 3, 'num_out_ch': 3, **sizes, 'lr_size': [8, 8], 'device': 'cpu', 'precision': 'fp32',
            'entries': {name: float(2**i) for i, name in enumerate(names)}}


def test_latency_prediction_adds_the_parts_of_the_network():
    t = _fake_table(num_feat=4, num_nodes=3, num_blocks=2, upscale=2)
    e = t['entries']
    g = Genotype.parse('4 2 1 0 0 5')  # node 1: conv(x0); node 2: sep(x0), dil(x1); node 3: conv, dil (x2)
    block = (e['op0_in1'] + e['node_ops1'] + e['op1_in1'] + e['op2_in1'] + e['node_ops2'] + e['op0_in1']
             + e['op2_in1'] + e['node_ops2'] + e['lff_in4'])
    fixed = e['stem'] + e['tail'] + e['block_in1'] + e['block_in2'] + e['gff_in3']
    assert predict(t, g) == pytest.approx(2 * block + fixed)
    # fusion bits: fewer LFF / GFF inputs. Node 3 reads x_2, node 2 has no op (passes on x_1), node 1 runs
    # all three ops on x_0; the LFF reads x_3 only, the GFF F_1 and F_2
    f = Genotype.parse('7 0 0 0 0 4 | 0 0 0 | 0 1')
    assert f.live_nodes() == (1, 2, 3)
    block = (e['op0_in1'] + e['op1_in1'] + e['op2_in1'] + e['node_ops3'] + e['node_ops0'] + e['op0_in1']
             + e['node_ops1'] + e['lff_in1'])
    assert predict(t, f) == pytest.approx(2 * block + e['stem'] + e['tail'] + e['block_in1'] + e['block_in2']
                                          + e['gff_in2'])
    # a node that nothing reads is not built: it costs nothing
    dead = Genotype.parse('7 7 0 7 0 7 | 1 0 0 | 1 1')
    assert dead.live_nodes() == (2, 3)
    assert predict(t, dead) == predict(t, Genotype.parse('0 7 0 7 0 7 | 1 0 0 | 1 1'))


def test_latency_table_on_the_cpu_tiny_space(tmp_path):
    """tools/latency_table.py on a tiny space (C = 4, M = 2): every part timed, sizes recorded, the check
    over whole networks written, and the search reads the table back."""
    import latency_table as tool
    out = tmp_path / 'lut.json'
    assert tool.main(['--num-feat', '4', '--num-nodes', '2', '--num-blocks', '2', '--lr-size', '12', '10',
                      '--repeats', '2', '--warmup', '1', '--statistic', 'min', '--check', '3', '--threads', '1',
                      '--out', str(out)]) == 0
    table = json.loads(out.read_text())
    assert {k: table[k] for k in ('num_feat', 'num_nodes', 'num_blocks', 'upscale', 'lr_size', 'precision')} == \
        {'num_feat': 4, 'num_nodes': 2, 'num_blocks': 2, 'upscale': 2, 'lr_size': [12, 10], 'precision': 'fp32'}
    assert table['statistic'] == 'min' and table['repeats'] == 2
    expected = set(_fake_table(num_feat=4, num_nodes=2, num_blocks=2, upscale=2)['entries'])
    assert set(table['entries']) == expected
    assert all(v > 0 and math.isfinite(v) for v in table['entries'].values())
    check = table['check']
    assert check['genotypes'] == 5 and len(check['rows']) == 5  # 3 random + empty + full
    assert all(r['measured_ms'] > 0 and r['predicted_ms'] == pytest.approx(predict(table, Genotype.parse(
        r['genotype'], num_nodes=2))) for r in check['rows'])
    assert -1 <= check['pearson_predicted_ms'] <= 1
    cost = SearchCost('latency', **TINY_SPACE, latency_table=str(out))
    assert cost.unit == 'ms' and cost.cost_max == pytest.approx(predict(table, Genotype.full(2)))


def test_latency_table_of_another_space_is_refused(tmp_path):
    path = tmp_path / 'lut.json'
    path.write_text(json.dumps(_fake_table(num_feat=8, num_nodes=2, num_blocks=2, upscale=2)))
    with pytest.raises(LatencyTableError, match='num_feat = 8.*num_feat = 4'):
        load_table(str(path), **TINY_SPACE)
    with pytest.raises(LatencyTableError, match='not found'):
        load_table(str(tmp_path / 'none.json'), **TINY_SPACE)
    path.write_text('{"entries": 3}')
    with pytest.raises(LatencyTableError, match='not a latency table'):
        load_table(str(path), **TINY_SPACE)
    with pytest.raises(LatencyTableError, match='lacks entries'):
        check_table({'num_nodes': 2, 'entries': {'stem': 1.0}}, 'x.json')


# --------------------------------------------------------------------------------------- the reward
def test_search_cost_of_each_penalty(tmp_path):
    path = tmp_path / 'lut.json'
    path.write_text(json.dumps(_fake_table(**TINY_SPACE)))
    g = Genotype.parse('4 2 1')
    size = dict(num_blocks=2, num_feat=4, upscale=2)
    params = SearchCost('params', **TINY_SPACE)
    assert (params(g), params.cost_max, params.unit) == (count_params(g, **size),
                                                         count_params(Genotype.full(2), **size), 'params')
    macs = SearchCost('macs', **TINY_SPACE, macs_lr_size=[24, 24])
    assert (macs(g), macs.cost_max, macs.unit) == (count_macs(g, **size, lr_size=(24, 24)),
                                                   count_macs(Genotype.full(2), **size, lr_size=(24, 24)), 'MACs')
    lat = SearchCost('latency', **TINY_SPACE, latency_table=str(path))
    assert lat(g) == predict(json.loads(path.read_text()), g) < lat.cost_max
    for bad, words in ((dict(penalty='flops'), 'search.penalty must be one of'),
                       (dict(penalty='latency'), 'needs search.latency_table'),
                       (dict(penalty='macs', macs_lr_size=[0, 5]), 'macs_lr_size')):
        with pytest.raises(ValueError, match=words):
            SearchCost(bad.pop('penalty'), **TINY_SPACE, **bad)


@pytest.fixture
def data(embedded_data):
    return embedded_data


@pytest.mark.parametrize('penalty', ['params', 'macs', 'latency'])
def test_search_reward_with_each_penalty(data, tmp_path, monkeypatch, penalty):
    """One controller phase of the tiny search with a fixed PSNR: each history row carries params, the cost in
    the penalty's unit, and the reward PSNR - alpha * cost / cost_max."""
    import deconas_plugin.models.deconas_search_model as search_module
    from basicsr.models import build_model

    opt = search_options(data)
    opt['search'].update(child_steps=1, controller_steps=4, controller_start_iter=1, reward_patches=2, alpha=2.0,
                         penalty=penalty)
    opt['train']['reinforce_opt'] = {'type': 'REINFORCELoss', 'entropy_weight': 0.0}
    if penalty == 'latency':
        table = measure_table(**TINY_SUPERNET, upscale=2, lr_size=(8, 8), repeats=1, warmup=0)
        opt['search']['latency_table'] = str(tmp_path / 'lut.json')
        (tmp_path / 'lut.json').write_text(json.dumps(table))
    check_options(opt)
    torch.manual_seed(0)
    model = build_model(parsed_options(opt, str(tmp_path / 'experiment')))
    monkeypatch.setattr(search_module, 'psnr_y', lambda *args, **kwargs: 30.0)
    model.train_controller(1)
    with open(model.history_path) as f:
        rows = [json.loads(line) for line in f]
    assert len(rows) == 4
    size = {'num_blocks': TINY_SUPERNET['num_blocks'], 'num_feat': TINY_SUPERNET['num_feat'], 'upscale': 2}
    full = Genotype.full(TINY_SUPERNET['num_nodes'])
    for row in rows:
        g = Genotype.parse(row['genotype'], num_nodes=TINY_SUPERNET['num_nodes'])
        expected = {'params': lambda g: count_params(g, **size),
                    'macs': lambda g: count_macs(g, **size),
                    'latency': lambda g: predict(table, g)}[penalty]
        assert row['params'] == count_params(g, **size)
        assert row['cost'] == pytest.approx(expected(g)) and row['cost_unit'] == {'params': 'params', 'macs': 'MACs',
                                                                                 'latency': 'ms'}[penalty]
        assert row['reward'] == pytest.approx(30.0 - 2.0 * expected(g) / expected(full))
    assert model.cost_max == pytest.approx(expected(full))


def test_bad_penalty_options_are_named_before_the_run(data, tmp_path):
    opt = search_options(data)
    opt['search']['penalty'] = 'latency'
    with pytest.raises(OptionError, match='needs search.latency_table'):
        check_options(opt)
    opt['search']['latency_table'] = str(tmp_path / 'nope.json')
    with pytest.raises(OptionError, match='search.latency_table: latency table not found'):
        check_options(opt)
    path = tmp_path / 'lut.json'
    path.write_text(json.dumps(_fake_table(num_feat=8, num_nodes=2, num_blocks=2, upscale=2)))
    opt['search']['latency_table'] = str(path)
    with pytest.raises(OptionError, match='num_feat'):
        check_options(opt)
    assert osp.isdir(ROOT)


def test_derivation_ranking_shows_the_cost_in_the_chosen_unit(tmp_path):
    from deconas_plugin.archs.deconet_supernet_arch import DeCoNetSupernet
    from deconas_plugin.derive import ranking_tables, score
    torch.manual_seed(0)
    sup = DeCoNetSupernet(**TINY_SUPERNET).eval()
    batches = [(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 16, 16))]
    genotypes = [Genotype.parse('4 2 1'), Genotype.full(2)]
    path = tmp_path / 'lut.json'
    path.write_text(json.dumps(_fake_table(**TINY_SPACE)))
    for penalty, header in (('params', None), ('macs', 'GMACs'), ('latency', 'latency (ms)')):
        cost = SearchCost(penalty, **TINY_SPACE, latency_table=str(path))
        rows = score(sup, genotypes, batches, 2, alpha=1.0, progress=False, cost=cost)
        assert [r['cost'] for r in rows] == [cost(Genotype.parse(r['genotype'], num_nodes=2)) for r in rows]
        assert all(r['reward'] == pytest.approx(r['psnr'] - r['cost'] / cost.cost_max) for r in rows)
        tables = ranking_tables(rows)
        first = tables['md'].splitlines()[0]
        assert (header in first) if header else first == '| rank | genotype | params | PSNR-Y (dB) | reward |'
        assert tables['csv'].splitlines()[0].endswith('cost,cost_unit') == (header is not None)
