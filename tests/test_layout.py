"""The package layout (docs/development.md): imports run one way."""
import ast
import glob
import os.path as osp

import deconas_plugin  # noqa: F401  (torchvision shim and registration, before basicsr)
from shared_data import ROOT

PACKAGE = osp.join(ROOT, 'deconas_plugin')


def _module_name(path):
    rel = osp.splitext(osp.relpath(path, ROOT))[0].split(osp.sep)
    return '.'.join(rel[:-1] if rel[-1] == '__init__' else rel)


def _imports(path):
    """Every module a file imports (at the top or inside a function), relative imports resolved."""
    name = _module_name(path)
    package = name.split('.') if path.endswith('__init__.py') else name.split('.')[:-1]
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = '.'.join(base + ([node.module] if node.module else []))
            yield module
            if not node.module:  # from . import x
                yield from (f'{module}.{a.name}' for a in node.names)


def _package_modules():
    for path in sorted(glob.glob(osp.join(PACKAGE, '**', '*.py'), recursive=True)):
        yield _module_name(path), path


def _under(module, *packages):
    return any(module == p or module.startswith(p + '.') for p in packages)


def test_imports_run_one_way():
    wrong = []
    for name, path in _package_modules():
        for target in _imports(path):
            if _under(name, 'deconas_plugin.utils') and _under(target, *(f'deconas_plugin.{p}' for p in (
                    'archs', 'models', 'losses', 'data', 'reporting'))):
                wrong.append(f'{name} -> {target} (utils/ reads no registered component and no reporting)')
            if not _under(name, 'deconas_plugin.reporting') and _under(target, 'deconas_plugin.reporting'):
                wrong.append(f'{name} -> {target} (the method does not import its reporting)')
            if _under(target, 'benchmarks', 'tools'):
                wrong.append(f'{name} -> {target} (the package imports no benchmark or tool)')
    assert not wrong, '\n'.join(wrong)
