import json
import re

import pytest
import yaml

import deconas_plugin  # noqa: F401
from deconas_plugin.genotype import PAPER_GENOTYPE, Genotype, GenotypeError

PAPER_BITS = '1 1 1 1 1 0 1 0 0 0 1 1 0 0 0 0 1 0 0 1 0 0 1 1 1 0 0 0 0 1'


def test_paper_decimal_form_is_op0_most_significant():
    g = Genotype.parse('7 6 4 3 0 2 2 3 4 1')
    assert g == PAPER_GENOTYPE
    assert g.num_nodes == 4 and g.num_ops == 3 and not g.has_fusion_bits
    assert g.to_string('bits') == '111 110 100 011 000 010 010 011 100 001'
    # node 4 reads: op0 (conv) x2; op1 (sep) x0, x1; op2 (dilated) x1, x3
    assert [g.op_inputs(4, k) for k in range(3)] == [(2, ), (0, 1), (1, 3)]
    assert [g.op_inputs(3, k) for k in range(3)] == [(), (0, 2), (0, )]


def test_reference_bit_form():
    assert Genotype.parse(PAPER_BITS) == PAPER_GENOTYPE
    assert Genotype.parse(PAPER_BITS.split()) == PAPER_GENOTYPE
    assert ' '.join(map(str, PAPER_GENOTYPE.bits())) == PAPER_BITS


def test_fusion_bits_forms_round_trip():
    g = Genotype.parse('7 6 4 3 0 2 2 3 4 1 | 1 0 1 1 | 1 1 0')
    assert g.has_fusion_bits and g.num_blocks == 3
    assert g.local_inputs() == (0, 2, 3, 4) and g.global_inputs(3) == (0, 1, 3)
    assert Genotype.parse(list(g.bits()), num_nodes=4) == g  # flat bit form with M + N tail
    assert Genotype.parse(g.to_list(), num_nodes=4, num_blocks=3) == g
    assert Genotype.parse(g.to_string('bits')) == g
    assert Genotype.parse(yaml.safe_load(yaml.safe_dump(g.to_dict()))) == g
    assert Genotype.parse(json.loads(json.dumps(g.to_dict()))) == g
    assert Genotype.parse(str(g)) == g


def test_yaml_string_list_and_mapping():
    doc = yaml.safe_load('a: "7 6 4 3 0 2 2 3 4 1"\nb: [7, 6, 4, 3, 0, 2, 2, 3, 4, 1]\nc: {codes: [7, 6, 4, 3, 0, 2, 2, 3, 4, 1]}')
    assert {Genotype.parse(v) for v in doc.values()} == {PAPER_GENOTYPE}


@pytest.mark.parametrize('value, message', [
    ('7 6', 'M(M+1)/2 decimal codes'),
    ('7 6 4 3 0 2 2 3 4 9', '0..7'),
    ('7 6 x', "'x' is not an integer"),
    ('', 'empty'),
    ('7 6 4 | 1 1 | 2', 'global_bits must be 0/1'),
    ('7 6 4 | 1 1 1 | 1', 'M = 3'),
    ({'codes': [7], 'extra': 1}, 'keys codes'),
    (3.5, 'string, a list of ints or a mapping'),
])
def test_bad_genotypes_name_the_problem(value, message):
    with pytest.raises(GenotypeError, match=re.escape(message)):
        Genotype.parse(value)


def test_network_size_mismatch_is_explained():
    with pytest.raises(GenotypeError, match='num_nodes = 8'):
        Genotype.parse(PAPER_GENOTYPE, num_nodes=8)
    g = Genotype.parse('7 6 4 | 1 1 | 1 1 0')
    with pytest.raises(GenotypeError, match='num_blocks = 4'):
        g.check(num_blocks=4)


def test_full_and_random():
    full = Genotype.full(4)
    assert all(full.op_inputs(i, k) == tuple(range(i)) for i in range(1, 5) for k in range(3))
    import random
    g = Genotype.random(5, 3, fusion=True, rng=random.Random(0))
    assert g.num_nodes == 5 and g.num_blocks == 3 and Genotype.parse(str(g)) == g
