"""Derivation's choice rules and ranking, on hand-made rows (the search itself is tested elsewhere)."""
import pytest
import yaml

import deconas_plugin  # noqa: F401
from deconas_plugin import derive
from deconas_plugin.genotype import Genotype

ROWS = [
    {'genotype': '7 7 7', 'bits': '111 111 111', 'params': 900, 'psnr': 30.0, 'reward': 28.0, 'rank': 2},
    {'genotype': '1 0 1', 'bits': '001 000 001', 'params': 300, 'psnr': 29.0, 'reward': 28.5, 'rank': 1},
    {'genotype': '3 1 0', 'bits': '011 001 000', 'params': 500, 'psnr': 29.6, 'reward': 27.9, 'rank': 3},
]


def test_choose_best_reward_or_best_psnr_within_budget():
    assert derive.choose(ROWS)['genotype'] == '1 0 1'
    assert derive.choose(ROWS, max_params=600)['genotype'] == '3 1 0'
    assert derive.choose(ROWS, max_params=10_000)['genotype'] == '7 7 7'
    with pytest.raises(derive.DeriveError, match='at most 100 params.*smallest: 300'):
        derive.choose(ROWS, max_params=100)


def test_ranking_tables_and_retrain_options():
    tables = derive.ranking_tables(sorted(ROWS, key=lambda r: r['rank']))
    assert tables['csv'].splitlines()[0] == 'rank,genotype,bits,params,psnr,reward'
    assert '| 1 | `1 0 1` | 300 | 29.000 | 28.500 |' in tables['md']
    search = {'name': 's', 'scale': 2, 'network_g': {'type': 'DeCoNetSupernet', 'num_blocks': 2, 'num_nodes': 2,
                                                     'num_feat': 8}, 'datasets': {'train': {'name': 'x'}}}
    template = {'name': 't', 'train': {'total_iter': 1000}, 'datasets': {'train': {'name': 'div2k'}}}
    g = Genotype.parse('1 0 1', num_nodes=2)
    opt = derive.retrain_options(g, search, template, data_from_search=True,
                                 overrides=['train.total_iter=5', 'val.val_freq=2'])
    assert opt['network_g'] == {'type': 'DeCoNASNet', 'genotype': g.to_string(), 'num_blocks': 2, 'num_nodes': 2,
                                'num_feat': 8, 'upscale': 2, 'num_in_ch': 3, 'num_out_ch': 3}
    assert opt['train']['total_iter'] == 5 and opt['val']['val_freq'] == 2 and opt['datasets']['train']['name'] == 'x'
    assert template['train']['total_iter'] == 1000  # the template is not modified
    written = yaml.safe_load(derive.dump_options(opt))
    assert Genotype.parse(written['network_g']['genotype'], num_nodes=2) == g
    with pytest.raises(derive.DeriveError, match='key=value'):
        derive.retrain_options(g, search, template, overrides=['oops'])


def test_read_chosen_parses_the_genotype_for_the_search_sizes(tmp_path):
    """The one reader of ``chosen.json`` (search vs random, the GPU runner and the report use it): the
    genotype parsed for the search's N and M; a missing file, no genotype or one of another size: DeriveError
    (or the error class the caller names)."""
    sizes = derive.network_sizes({'scale': 2, 'network_g': {'num_blocks': 1, 'num_nodes': 2}})
    assert sizes == {'num_blocks': 1, 'num_nodes': 2, 'num_feat': 64, 'upscale': 2, 'num_in_ch': 3, 'num_out_ch': 3}
    with pytest.raises(derive.DeriveError, match='chosen.json is missing; run python tools/derive.py'):
        derive.read_chosen(str(tmp_path), sizes)
    (tmp_path / 'chosen.json').write_text('{"genotype": "1 0 1", "psnr": 30.5}')
    chosen = derive.read_chosen(str(tmp_path), sizes)
    assert chosen['parsed'] == Genotype.parse('1 0 1', num_nodes=2) and chosen['psnr'] == 30.5
    assert derive.genotype_params(chosen['parsed'], sizes) == derive.genotype_params(
        chosen['parsed'], dict(sizes, num_nodes=99)) > 0  # N, C and scale count; M is the genotype's
    (tmp_path / 'chosen.json').write_text('{"psnr": 30.5}')
    with pytest.raises(derive.DeriveError, match='not a chosen.json written by tools/derive.py'):
        derive.read_chosen(str(tmp_path), sizes)
    (tmp_path / 'chosen.json').write_text('{"genotype": "1 0 1 1"}')
    with pytest.raises(derive.DeriveError, match='does not fit the search network'):
        derive.read_chosen(str(tmp_path), sizes)
    with pytest.raises(LookupError, match='does not fit the search network'):  # the caller's error class
        derive.read_chosen(str(tmp_path), sizes, LookupError)
