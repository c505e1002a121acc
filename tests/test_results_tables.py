"""Every results table of README.md and docs/ that declares its source agrees with it.

The convention (docs/development.md, "Numbers and their sources"): an HTML comment
``<!-- source: FILE [FILE ...] -->`` on the line before a Markdown table names the files, relative to
the project root (under ``benchmarks/``, or a test that asserts the number), that hold its numbers.
Every number in every cell but the first (which names the row) must be one of the sources' numbers
as shown: rounded to the digits the table gives. Numbers in backticks (genotypes, file names) and
numbers glued to letters (``x2``, ``C64``, ``1e-3``) are not read.
"""
import glob
import json
import os.path as osp
import re

import pytest

from deconas_plugin.utils.markdown_table import md_table
from shared_data import ROOT

MARKER = re.compile(r'^<!--\s*source:\s*(.*?)\s*-->\s*$')
# A number in a table cell: thousands commas or a plain decimal, not glued to a letter, digit or dot.
CELL_NUMBER = re.compile(r'(?<![\w.])(?<![A-Za-z_][-+])([+-]?)(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(?![\w.]|,\d{3})')
# A number in a source file: any, with a sign only where no digit precedes it (23.8-25.7 is a range).
SOURCE_NUMBER = re.compile(r'(?<![\d.])(-?)(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)')
DOCS = [osp.join(ROOT, 'README.md')] + sorted(glob.glob(osp.join(ROOT, 'docs', '*.md')))


def _numbers_in_json(value):
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield float(value)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _numbers_in_json(v)
    elif isinstance(value, list):
        for v in value:
            yield from _numbers_in_json(v)
    elif isinstance(value, str):
        yield from _numbers_in_text(value)


def _numbers_in_text(text):
    for sign, digits in SOURCE_NUMBER.findall(text):
        yield float(sign + digits.replace(',', ''))


def source_numbers(path):
    with open(path, encoding='utf-8') as f:
        text = f.read()
    return sorted(set(_numbers_in_json(json.loads(text)) if path.endswith('.json') else _numbers_in_text(text)))


def cell_numbers(cell):
    """(value, decimals, as written) of every number of a table cell, backticked parts left out."""
    for sign, digits in CELL_NUMBER.findall(re.sub(r'`[^`]*`', '', cell)):
        plain = digits.replace(',', '')
        decimals = len(plain.partition('.')[2])
        yield float(sign + plain) if sign == '-' else float(plain), decimals, sign + digits


def shown_as(value, decimals, numbers):
    """Whether a number of ``numbers``, shown with ``decimals`` digits, reads ``value``."""
    half = 0.5 * 10 ** -decimals + 1e-9
    return any(abs(value - y) <= half for y in numbers)


def declared_tables(path):
    """(line number, [source paths], [rows as cell lists]) of each table after a source marker."""
    with open(path, encoding='utf-8') as f:
        lines = f.read().splitlines()
    for i, line in enumerate(lines):
        m = MARKER.match(line.strip())
        if not m:
            continue
        rows, j = [], i + 1
        while j < len(lines) and lines[j].lstrip().startswith('|'):
            rows.append([c.strip() for c in lines[j].strip().strip('|').split('|')])
            j += 1
        yield i + 1, m.group(1).split(), rows


def table_mismatches(rows, numbers):
    """The cells whose numbers no source holds (the header and its separator row are skipped)."""
    bad = []
    for row in rows[2:]:
        for cell in row[1:]:
            for value, decimals, written in cell_numbers(cell):
                if not shown_as(value, decimals, numbers):
                    bad.append(f'{row[0]!r}: {written} (in {cell!r})')
    return bad


def _all_tables():
    return [(osp.relpath(p, ROOT), line, sources, rows) for p in DOCS for line, sources, rows in declared_tables(p)]


def test_the_check_reads_numbers_as_the_tables_write_them():
    assert list(cell_numbers('28.84 / 0.8856, +1.07 dB, 61,331 params, `0 0 2`, x2, C64, 1e-3, 23.8-25.7')) == [
        (28.84, 2, '28.84'), (0.8856, 4, '0.8856'), (1.07, 2, '+1.07'), (61331.0, 0, '61,331'),
        (23.8, 1, '23.8'), (25.7, 1, '25.7')]
    assert list(cell_numbers('-0.097 dB, 9.5%')) == [(-0.097, 3, '-0.097'), (9.5, 1, '9.5')]
    assert set(_numbers_in_json({'psnr': [28.8421, True], 'm': 'load 6.5, 7.1', 'n': 61331})) == \
        {28.8421, 6.5, 7.1, 61331.0}
    assert sorted(_numbers_in_text('23.8-25.7 ms, -0.097, 1,384 vs 818')) == [-0.097, 23.8, 25.7, 818.0, 1384.0]
    numbers = [28.8421, 0.8856, 61331.0]
    assert shown_as(28.84, 2, numbers) and shown_as(28.842, 3, numbers) and shown_as(61331, 0, numbers)
    assert not shown_as(28.85, 2, numbers) and not shown_as(28.841, 3, numbers) and not shown_as(61332, 0, numbers)
    rows = [['network', 'PSNR'], ['---', '---:'], ['found, C = 16', '28.84 / 0.8856'], ['CARN', '28.49']]
    assert table_mismatches(rows, numbers) == ["'CARN': 28.49 (in '28.49')"]


def test_md_table_aligns_columns_and_writes_cells_as_text():
    lines = md_table(['network', 'params', 'PSNR'], 'lcr', [['CARN', 61331, '28.49'], ['found, C = 16', '-', 28.84]])
    assert lines == ['| network | params | PSNR |', '|---|:---:|---:|', '| CARN | 61331 | 28.49 |',
                     '| found, C = 16 | - | 28.84 |']
    assert md_table(['a'], 'l', []) == ['| a |', '|---|']


def test_tables_declare_existing_sources():
    tables = _all_tables()
    assert len(tables) >= 8, 'fewer declared results tables than the docs have'
    for doc, line, sources, rows in tables:
        assert sources, f'{doc}:{line}: a source marker without a file'
        for source in sources:
            assert osp.isfile(osp.join(ROOT, source)), f'{doc}:{line}: no source file {source}'
        assert len(rows) >= 3 and set(rows[1][0]) <= set('-: '), f'{doc}:{line}: no table under the marker'


@pytest.mark.parametrize('doc,line,sources,rows', _all_tables(), ids=lambda v: str(v) if isinstance(v, (str, int)) else '')
def test_table_numbers_are_their_sources(doc, line, sources, rows):
    numbers = sorted({n for s in sources for n in source_numbers(osp.join(ROOT, s))})
    bad = table_mismatches(rows, numbers)
    assert not bad, f'{doc}:{line}: numbers not in {", ".join(sources)}:\n' + '\n'.join(bad)
