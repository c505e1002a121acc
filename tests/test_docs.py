"""The docs cannot drift from the project: links resolve, every tool and option file is documented,
the search keys' defaults are the code's, and the project speaks of itself only."""
import glob
import os.path as osp
import re

import pytest

from deconas_plugin.options import SEARCH_DEFAULTS
from shared_data import ROOT

DOCS = [osp.join(ROOT, 'README.md'), osp.join(ROOT, 'CHANGELOG.md')] + sorted(glob.glob(osp.join(ROOT, 'docs', '*.md')))
LINK = re.compile(r'(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)')
FENCE = re.compile(r'^```.*?^```', re.S | re.M)


def _read(path):
    with open(path, encoding='utf-8') as f:
        return f.read()


def _prose(text):
    """The text without its fenced code blocks (a link or heading inside code is not one)."""
    return FENCE.sub('', text)


def slug(heading):
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r'[`*_]', '', heading.strip().lower())
    text = re.sub(r'[^\w\- ]', '', text)
    return text.replace(' ', '-')


def anchors(path):
    found = set()
    for line in _prose(_read(path)).splitlines():
        m = re.match(r'^(#{1,6})\s+(.*)$', line)
        if m:
            base, n = slug(m.group(2)), 0
            while (base if n == 0 else f'{base}-{n}') in found:
                n += 1
            found.add(base if n == 0 else f'{base}-{n}')
    return found


def test_slug_is_githubs():
    assert slug('Training precision, `train.autocast`') == 'training-precision-trainautocast'
    assert slug('Does the search search?') == 'does-the-search-search'
    assert slug('Baselines: CARN, RDN, Bicubic') == 'baselines-carn-rdn-bicubic'
    assert slug('2. A reward the controller can learn from') == '2-a-reward-the-controller-can-learn-from'


def test_docs_exist():
    names = {osp.basename(p) for p in DOCS}
    assert {'README.md', 'CHANGELOG.md'} <= names and len(names) >= 10


@pytest.mark.parametrize('path', DOCS, ids=lambda p: osp.relpath(p, ROOT))
def test_relative_links_and_anchors_resolve(path):
    broken = []
    for m in LINK.finditer(_prose(_read(path))):
        target = m.group(1) or m.group(2)
        if re.match(r'^[a-z]+:', target):  # http(s), mailto: not checked offline
            continue
        file_part, _, anchor = target.partition('#')
        dest = osp.normpath(osp.join(osp.dirname(path), file_part)) if file_part else path
        if not osp.exists(dest):
            broken.append(f'{target}: no file {osp.relpath(dest, ROOT)}')
        elif anchor and dest.endswith('.md') and anchor not in anchors(dest):
            broken.append(f'{target}: no heading with anchor #{anchor} in {osp.relpath(dest, ROOT)}')
    assert not broken, f'{osp.relpath(path, ROOT)}:\n' + '\n'.join(broken)


def _all_docs_text():
    return '\n'.join(_read(p) for p in DOCS)


def _expand_braces(text):
    """``x_{2,3,4}.yml`` -> ``x_2.yml x_3.yml x_4.yml`` (shell brace expansion, as the docs write file sets)."""
    pattern = re.compile(r'([\w./-]*)\{([^{}]*,[^{}]*)\}([\w./{},-]*)')
    while True:
        m = pattern.search(text)
        if not m:
            return text
        words = ' '.join(m.group(1) + alt + m.group(3) for alt in m.group(2).split(','))
        text = text[:m.start()] + words + text[m.end():]


def test_every_tool_and_option_file_is_documented():
    text = _expand_braces(_all_docs_text())
    missing = []
    for path in sorted(glob.glob(osp.join(ROOT, 'tools', '*.py'))):
        rel = osp.relpath(path, ROOT)
        if rel not in text:
            missing.append(rel)
    for path in sorted(glob.glob(osp.join(ROOT, 'options', '**', '*.yml'), recursive=True)):
        rel = osp.relpath(path, ROOT)
        if rel not in text and osp.basename(path) not in text:
            missing.append(rel)
    assert not missing, 'not named in README.md or docs/: ' + ', '.join(missing)


def _yaml_word(value):
    if value is None:
        return '~'
    if isinstance(value, bool):
        return 'true' if value else 'false'
    return str(value)


def test_search_keys_and_defaults_are_the_codes():
    text = _read(osp.join(ROOT, 'docs', 'search.md'))
    wrong = []
    for key, default in SEARCH_DEFAULTS.items():
        m = re.search(rf'^- `{key}` \(([^)]*)\)', text, re.M)
        if not m:
            wrong.append(f'{key}: no "- `{key}` (default)" entry')
            continue
        written = re.split(r'[;,:]| = ', m.group(1))[0].strip().strip('`')
        if written != _yaml_word(default):
            wrong.append(f'{key}: docs say {written!r}, the code {_yaml_word(default)!r}')
    assert not wrong, 'docs/search.md vs SEARCH_DEFAULTS:\n' + '\n'.join(wrong)


def _project_files():
    for pattern in ('*.md', '*.py', '*.sh', '*.yml', '*.txt', '*.cfg', '*.toml'):
        for path in glob.glob(osp.join(ROOT, '**', pattern), recursive=True):
            rel = osp.relpath(path, ROOT)
            if not rel.startswith(('.venv', '.git', 'build', 'experiments', 'results', 'demo_out', 'datasets')) \
                    and '.egg-info' not in rel:
                yield rel, path


def test_the_project_speaks_of_itself_only():
    """No issue numbers and no words about how the project is developed, in code, tests, docs or results."""
    pattern = re.compile(r'\bissue\s*#?\d+|\bwas lent\b|\bthis session\b|\bno GPU was lent\b', re.I)
    hits = []
    for rel, path in _project_files():
        try:
            text = _read(path)
        except UnicodeDecodeError:
            continue
        hits += [f'{rel}:{n}: {line.strip()[:100]}' for n, line in enumerate(text.splitlines(), 1)
                 if pattern.search(line) and rel != 'tests/test_docs.py']
    assert not hits, '\n'.join(hits)
