"""Property tests of genotype parsing (hypothesis): every serialised form reads back, garbage fails cleanly."""
import deconas_plugin  # noqa: F401

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deconas_plugin.genotype import NUM_OPS, Genotype, GenotypeError, num_groups

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def genotypes(draw):
    """(genotype, M, N): random M in 1..8, N in 1..8, random codes, fusion bits or not."""
    m = draw(st.integers(1, 8))
    n = draw(st.integers(1, 8))
    codes = draw(st.lists(st.integers(0, 2**NUM_OPS - 1), min_size=num_groups(m), max_size=num_groups(m)))
    if draw(st.booleans()):
        bits = st.integers(0, 1)
        local = draw(st.lists(bits, min_size=m, max_size=m))
        glob = draw(st.lists(bits, min_size=n, max_size=n))
        return Genotype(tuple(codes), NUM_OPS, tuple(local), tuple(glob)), m, n
    return Genotype(tuple(codes)), m, n


@SETTINGS
@given(genotypes())
def test_every_form_round_trips(case):
    g, m, n = case
    if not _decimal_reads_as_bits(g):  # see test_decimal_string_of_01_codes_round_trips_without_m
        assert Genotype.parse(g.to_string()) == g
    assert Genotype.parse(g.to_string('bits')) == g
    assert Genotype.parse(g.to_dict()) == g
    assert Genotype.parse(list(g.bits()), num_nodes=m, num_blocks=n) == g
    if not _flat_list_reads_as_bits(g, m, n):  # see test_decimal_list_with_fusion_bits_round_trips
        assert Genotype.parse(g.to_list(), num_nodes=m, num_blocks=n) == g
    # with M (and N) given the decimal string is never ambiguous
    assert Genotype.parse(g.to_string(), num_nodes=m, num_blocks=n) == g
    assert Genotype.parse(g) == g


def _decimal_reads_as_bits(g):
    """An FF-free genotype whose codes are all 0/1: without M its decimal string is also a bit string."""
    return not g.has_fusion_bits and all(c <= 1 for c in g.codes) and g.num_nodes >= 2


@pytest.mark.parametrize('text', ['0 0 0', '1 0 1', '0 0 0 0 0 0', '1 1 1 1 1 1', '0 1 1 0 1 0 1 1 0 1'])
def test_decimal_string_of_01_codes_round_trips_without_m(text):
    g = Genotype(tuple(int(c) for c in text.split()))
    # "0 0 0" is also the bit form of one node: to_string then writes grouped bits ("000 000 000").
    assert Genotype.parse(g.to_string()) == g
    if g.num_nodes >= 3:  # no such clash: the decimal text itself reads back
        assert g.to_string() == text and Genotype.parse(text) == g


def _flat_list_reads_as_bits(g, m, n):
    """With fusion bits and N = M^2, the flat decimal list has the length of the FF-free bit form (3 M(M+1)/2)."""
    return g.has_fusion_bits and n == m * m and all(c <= 1 for c in g.codes)


@pytest.mark.parametrize('codes, local, glob', [((0, ), (0, ), (0, )), ((1, 0, 1), (1, 0), (1, 1, 0, 1))])
def test_flat_01_list_is_read_as_the_bit_form(codes, local, glob):
    """The rule (README, The genotype): a flat list of 0/1 values is the bit form when it can be.

    With fusion bits, codes all 0/1 and N = M^2, the decimal list ``to_list()`` has exactly the
    length of the FF-free bit form, so even with M and N given it reads as that genotype (both
    readings fit a network with N blocks); ``to_list`` says so, and ``to_dict()`` / ``to_string()``,
    what the project stores, read back.
    """
    g = Genotype(codes, local_bits=local, global_bits=glob)
    m, n = g.num_nodes, len(glob)
    flat = g.to_list()
    as_bits = Genotype(tuple(int(''.join(map(str, flat[i:i + NUM_OPS])), 2) for i in range(0, len(flat), NUM_OPS)))
    assert Genotype.parse(flat, num_nodes=m, num_blocks=n) == as_bits != g
    assert Genotype.parse(g.to_dict()) == g
    assert Genotype.parse(g.to_string(), num_nodes=m, num_blocks=n) == Genotype.parse(g.to_string()) == g


@SETTINGS
@given(genotypes())
def test_structure_agrees_with_bits(case):
    g, m, n = case
    bits = g.bits()
    k = g.num_ops
    assert g.num_nodes == m
    assert len(bits) == k * num_groups(m) + ((m + n) if g.has_fusion_bits else 0)
    for node in range(1, m + 1):
        for op in range(k):
            expected = tuple(j for j in range(node) if bits[(num_groups(node - 1) + j) * k + op])
            assert g.op_inputs(node, op) == expected
    if g.has_fusion_bits:
        tail = bits[k * num_groups(m):]
        assert g.local_inputs() == tuple(j for j in range(m) if tail[j]) + (m, )
        assert g.global_inputs(n) == tuple(d for d in range(n) if tail[m + d]) + (n, )
    else:
        assert g.local_inputs() == tuple(range(m + 1))
        assert g.global_inputs(n) == tuple(range(n + 1))


def _consistent(g):
    """A parsed genotype re-serialises to itself through every form."""
    assert isinstance(g, Genotype)
    m, n = g.num_nodes, g.num_blocks
    assert Genotype.parse(g.to_dict()) == g
    assert Genotype.parse(g.to_string(), num_nodes=m, num_blocks=n) == g
    assert Genotype.parse(g.to_string('bits'), num_nodes=m, num_blocks=n) == g
    if not _flat_list_reads_as_bits(g, m, n):
        assert Genotype.parse(g.to_list(), num_nodes=m, num_blocks=n) == g
    assert all(0 <= c < 2**g.num_ops for c in g.codes)


def _parse_or_genotype_error(value, **kw):
    try:
        g = Genotype.parse(value, **kw)
    except GenotypeError:
        return
    _consistent(g)


GARBAGE_CHARS = '0123456789 ,|[]x-.+e\t'


@SETTINGS
@given(st.text(alphabet=GARBAGE_CHARS, max_size=40), st.one_of(st.none(), st.integers(1, 8)))
def test_garbage_strings_parse_or_raise_genotype_error(text, m):
    _parse_or_genotype_error(text, num_nodes=m)


@SETTINGS
@given(st.text(max_size=30))
def test_arbitrary_text_parses_or_raises_genotype_error(text):
    _parse_or_genotype_error(text)


ITEMS = st.one_of(st.integers(-3, 12), st.integers(), st.booleans(), st.none(), st.floats(allow_nan=True),
                  st.text(alphabet='01789 x', max_size=3), st.lists(st.integers(0, 7), max_size=2))


@SETTINGS
@given(st.lists(ITEMS, max_size=40), st.one_of(st.none(), st.integers(1, 8)),
       st.one_of(st.none(), st.integers(1, 8)))
def test_garbage_lists_parse_or_raise_genotype_error(values, m, n):
    _parse_or_genotype_error(values, num_nodes=m, num_blocks=n)


def _expected_reading(values, m):
    """The genotype a flat list of ints in 0..7 must read as by the documented rules, or None where
    they allow an error (only fusion readings, and M not given: several M may fit).

    With M given there is at most one decimal and one bit reading, and the bit reading wins; without M
    an FF-free reading wins over fusion readings, and again bits over decimal.
    """
    def codes_of(bits):
        return tuple(int(''.join(map(str, bits[i:i + NUM_OPS])), 2) for i in range(0, len(bits), NUM_OPS))

    def reads(k, with_fusion):
        g = num_groups(k)
        out = []
        for head, is_bits in ((g, False), (NUM_OPS * g, True)):
            n = len(values) - head - k
            head_ok = not is_bits or all(v <= 1 for v in values[:head])
            if not head_ok or len(values) < head:
                continue
            codes = codes_of(values[:head]) if is_bits else tuple(values[:head])
            if len(values) == head:
                out.append((is_bits, Genotype(codes)))
            elif with_fusion and n >= 1 and all(v <= 1 for v in values[head:]):
                out.append((is_bits, Genotype(codes, local_bits=tuple(values[head:head + k]),
                                              global_bits=tuple(values[head + k:]))))
        return out

    readings = reads(m, True) if m is not None else [r for k in range(1, 10) for r in reads(k, False)]
    if not readings:
        return None
    bits = [g for is_bits, g in readings if is_bits]
    return (bits or [g for _, g in readings])[0]


@SETTINGS
@given(st.lists(st.integers(0, 7), max_size=40), st.one_of(st.none(), st.integers(1, 8)))
def test_plausible_lists_parse_as_the_rules_say(values, m):
    """Lists of codes in range: read exactly as the rules say, or (where they allow) a GenotypeError
    (a parser that rejects everything, or reads the wrong form, fails this)."""
    expected = _expected_reading(values, m)
    if expected is None:
        _parse_or_genotype_error(values, num_nodes=m)
    else:
        assert Genotype.parse(values, num_nodes=m) == expected


@SETTINGS
@given(genotypes(), st.sampled_from([' ', ',', ', ', '\t', ' ,  ']), st.booleans(), st.sampled_from(['decimal', 'bits']))
def test_any_separator_and_brackets_read_back(case, sep, brackets, form):
    """The accepted spellings (commas, tabs, brackets) of a valid genotype read back as it."""
    g, m, n = case
    text = g.to_string(form)
    parts = [sep.join(p.split()) for p in text.split(' | ')]
    text = ' | '.join(parts)
    if brackets:
        text = f'[{text}]'
    assert Genotype.parse(text, num_nodes=m, num_blocks=n) == g


@SETTINGS
@given(st.dictionaries(st.sampled_from(['codes', 'local', 'global', 'other']),
                       st.one_of(ITEMS, st.lists(st.integers(-1, 8), max_size=12), st.text(max_size=8)),
                       max_size=4))
def test_garbage_mappings_parse_or_raise_genotype_error(mapping):
    _parse_or_genotype_error(mapping)
