"""``python tools/<name>.py -h`` of every tool: one line on what it is for, then the arguments; and the
README's tool list (section ``## Tools``) says the same one-line descriptions.

Every ``tools/*.py`` present is covered, whatever it is. The help is produced in this process
(``script_runner.run_script``: the script runs as ``__main__``); one subprocess checks that a tool
started as a script from another folder prints the same help.

``tools_table()`` renders the README's table from the tools themselves:
    .venv/bin/python -c "from tests.test_tools_help import tools_table; print(tools_table())"
"""
import glob
import os
import os.path as osp
import re
import subprocess
import sys

import pytest

if __package__:  # imported as tests.test_tools_help (tools_table() from the project root)
    sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from script_runner import run_script  # noqa: E402
from shared_data import ROOT  # noqa: E402

TOOLS = sorted(osp.splitext(osp.basename(p))[0] for p in glob.glob(osp.join(ROOT, 'tools', '*.py')))
README = osp.join(ROOT, 'README.md')
TABLE_HEADER = '| tool | what it is for |'
ARGUMENT_SECTIONS = ('positional arguments:', 'options:', 'optional arguments:')  # 'options:' from Python 3.10


def tool_path(name: str) -> str:
    return osp.join(ROOT, 'tools', f'{name}.py')


def help_description(help_text: str, name: str = 'tool') -> str:
    """The description line of an argparse ``-h`` text: the paragraph after the usage, which must be
    a single line directly followed by the arguments (``ValueError`` naming the tool otherwise)."""
    paragraphs = [p for p in help_text.strip('\n').split('\n\n') if p.strip()]
    if len(paragraphs) < 3 or not paragraphs[0].startswith('usage: '):
        raise ValueError(f'{name} -h: expected usage, a description, then the arguments, got:\n{help_text}')
    description, arguments = paragraphs[1], paragraphs[2]
    if '\n' in description or not arguments.startswith(ARGUMENT_SECTIONS):
        raise ValueError(f'{name} -h: the description must be one line directly followed by the arguments, '
                         f'got:\n{description}\n\n{arguments.splitlines()[0]}')
    return description.strip()


def tool_description(name: str) -> str:
    """What ``python tools/<name>.py -h`` says the tool is for (run in this process)."""
    res = run_script(tool_path(name), '-h')
    if res.returncode != 0:
        raise ValueError(f'tools/{name}.py -h exited {res.returncode}: {res.stderr[-2000:]}')
    return help_description(res.stdout, f'tools/{name}.py')


def tools_table() -> str:
    """The README's ``## Tools`` table: one row per ``tools/*.py``, with its ``-h`` description."""
    rows = [TABLE_HEADER, '| --- | --- |']
    for name in TOOLS:
        description = tool_description(name).replace('|', r'\|')  # a bare | would split the cell
        rows.append(f'| `tools/{name}.py` | {description} |')
    return '\n'.join(rows)


def readme_tools(text: str) -> dict:
    """``{tool name: description}`` from the ``## Tools`` section's table of a README text."""
    section = re.search(r'^## Tools[ \t]*\n(.*?)(?=^## |\Z)', text, re.M | re.S)
    if section is None:
        raise ValueError('README.md has no "## Tools" section')
    lines = [line.strip() for line in section.group(1).splitlines() if line.strip().startswith('|')]
    if not lines or lines[0] != TABLE_HEADER:
        raise ValueError(f'README.md "## Tools": the table must start with {TABLE_HEADER!r}')
    tools = {}
    for line in lines[2:]:
        row = re.fullmatch(r'\| `tools/(\w+)\.py` \| (.*) \|', line)
        if row is None:
            raise ValueError(f'README.md "## Tools": a row must read | `tools/<name>.py` | <description> |, '
                             f'got {line!r}')
        tools[row.group(1)] = row.group(2).replace(r'\|', '|')
    return tools


@pytest.fixture(scope='module')
def descriptions():
    """``{tool name: its -h description}``, each tool run once for the module."""
    return {name: tool_description(name) for name in TOOLS}


@pytest.mark.parametrize('name', TOOLS)
def test_help_is_one_line_then_the_arguments(name):
    res = run_script(tool_path(name), '-h')
    assert res.returncode == 0 and res.stderr == '', (res.returncode, res.stderr[-2000:])
    assert res.stdout.startswith('usage: ')
    description = help_description(res.stdout, name)
    assert len(description.split()) >= 4 and description.endswith(('.', '?', ')')), description
    assert '-h, --help' in res.stdout


def test_readme_lists_every_tool_with_its_description(descriptions):
    with open(README, encoding='utf-8') as f:
        listed = readme_tools(f.read())
    assert sorted(listed) == TOOLS, 'README.md "## Tools" must list exactly tools/*.py; regenerate it with ' \
                                    'tests/test_tools_help.py:tools_table()'
    for name in TOOLS:
        assert listed[name] == descriptions[name], (name, listed[name], descriptions[name])


def test_table_round_trips_through_the_readme_reader(monkeypatch):
    fake = {'alpha': 'Draw a cell as a PNG.', 'beta': 'Compare A | B (a bar in the text).'}
    monkeypatch.setattr(sys.modules[__name__], 'TOOLS', sorted(fake))
    monkeypatch.setattr(sys.modules[__name__], 'tool_description', fake.__getitem__)
    table = tools_table()
    assert '| `tools/beta.py` | Compare A \\| B (a bar in the text). |' in table.splitlines()
    readme = f'# x\n\n## Tools\n\n{table}\n\n## Next\n| a | b |\n'
    assert readme_tools(readme) == fake
    with pytest.raises(ValueError, match='no "## Tools" section'):
        readme_tools('# x\n')
    with pytest.raises(ValueError, match='a row must read'):
        readme_tools(f'## Tools\n{TABLE_HEADER}\n| --- | --- |\n| tools/x.py | y |\n')


def test_help_description_rejects_more_than_one_line():
    good = 'usage: t [-h]\n\nWhat it is for.\n\noptions:\n  -h, --help  show this help message and exit\n'
    assert help_description(good) == 'What it is for.'
    with pytest.raises(ValueError, match='one line directly followed by the arguments'):
        help_description(good.replace('What it is for.', 'What it is for,\nover two lines.'))
    with pytest.raises(ValueError, match='one line directly followed by the arguments'):
        help_description(good.replace('\n\noptions:', '\n\nA second paragraph.\n\noptions:'))


def test_a_tool_started_as_a_script_prints_the_same_help(tmp_path):
    """The process boundary: ``python tools/complexity.py -h`` from another folder (its -h imports no
    torch, so the process costs a fraction of a second)."""
    proc = subprocess.run([sys.executable, tool_path('complexity'), '-h'], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={**os.environ, 'COLUMNS': '1000'})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == run_script(tool_path('complexity'), '-h').stdout
