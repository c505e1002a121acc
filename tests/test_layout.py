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


def _reached(name, graph):
    """Every package module ``name`` imports, directly or through other package modules (an import names a
    module, or a package whose ``__init__`` then counts; the parents' ``__init__`` are not followed)."""
    seen, todo = set(), [name]
    while todo:
        for target in graph.get(todo.pop(), ()):
            while target not in graph and '.' in target:  # ``from package.module import name``
                target = target.rsplit('.', 1)[0]
            if target in graph and target not in seen:
                seen.add(target)
                todo.append(target)
    seen.discard(name)
    return seen


METHOD = tuple(f'deconas_plugin.{p}' for p in ('models', 'archs', 'losses', 'data', 'reporting', 'latency',
                                                  'search_cost', 'complexity', 'genotype', 'options', 'reward',
                                                  'derive', 'search_signal', 'genotype_source', 'inference',
                                                  'pipelines'))


def test_imports_run_one_way():
    graph = {name: set(_imports(path)) for name, path in _package_modules()}
    wrong = []
    for name, path in _package_modules():
        for target in graph[name]:
            if not _under(name, 'deconas_plugin.reporting', 'deconas_plugin.pipelines') and \
                    _under(target, 'deconas_plugin.reporting'):
                wrong.append(f'{name} -> {target} (the method does not import its reporting)')
            if not _under(name, 'deconas_plugin.pipelines') and _under(target, 'deconas_plugin.pipelines'):
                wrong.append(f'{name} -> {target} (the method and the reporting import no pipeline)')
            if _under(target, 'benchmarks', 'tools'):
                wrong.append(f'{name} -> {target} (the package imports no benchmark or tool)')
        if _under(name, 'deconas_plugin.utils'):
            wrong += [f'{name} reaches {target} (utils/ imports nothing of the method, not even through another '
                      f'module)' for target in sorted(_reached(name, graph)) if _under(target, *METHOD)]
    assert not wrong, '\n'.join(wrong)


def test_the_import_graph_is_followed_transitively():
    """The check sees an import through a chain of modules, not only a direct one."""
    graph = {'deconas_plugin.utils.a': {'deconas_plugin.utils.b.name'}, 'deconas_plugin.utils.b': {'deconas_plugin'},
             'deconas_plugin': {'deconas_plugin.options'}, 'deconas_plugin.options': {'torch'}}
    assert _reached('deconas_plugin.utils.a', graph) == {'deconas_plugin.utils.b', 'deconas_plugin',
                                                          'deconas_plugin.options'}


# Folders whose modules import no private (`_`) name of another module.
PUBLIC_ONLY = ('benchmarks', 'tools', 'deconas_plugin')


def test_no_module_imports_a_private_name_of_another():
    wrong = []
    for folder in PUBLIC_ONLY:
        for path in sorted(glob.glob(osp.join(ROOT, folder, '**', '*.py'), recursive=True)):
            with open(path) as f:
                tree = ast.parse(f.read(), path)
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and not (node.module or '').startswith(('torch', '__future__')):
                    wrong += [f'{osp.relpath(path, ROOT)}: from {"." * node.level}{node.module or ""} import {a.name}'
                              for a in node.names if a.name.startswith('_')]
    assert not wrong, '\n'.join(wrong)
