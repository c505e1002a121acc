"""The package layout (README "How the code is organised"): imports run one way, and the module
paths used before the reorganisation (issue 14) still import, or fail with the new place."""
import ast
import glob
import importlib
import os.path as osp

import pytest

import deconas_plugin  # noqa: F401  (torchvision shim and registration, before basicsr)
from shared_data import ROOT

PACKAGE = osp.join(ROOT, 'deconas_plugin')
# modules kept only so that the old import paths work (see MOVED)
ALIASES = {'deconas_plugin.report', 'deconas_plugin.demo', 'deconas_plugin.search_vs_random',
           'deconas_plugin.benchmark', 'deconas_plugin.utils.draw', 'deconas_plugin.utils.complexity_table'}
MOVED = {
    'deconas_plugin.report': 'deconas_plugin.reporting.report',
    'deconas_plugin.demo': 'deconas_plugin.reporting.demo',
    'deconas_plugin.search_vs_random': 'deconas_plugin.reporting.search_vs_random',
    'deconas_plugin.utils.complexity_table': 'deconas_plugin.reporting.complexity_table',
}


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
        if _module_name(path) not in ALIASES:
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
            if _under(target, 'benchmarks', 'tools', *ALIASES):
                wrong.append(f'{name} -> {target} (the package imports no benchmark, tool or old path)')
    assert not wrong, '\n'.join(wrong)


@pytest.mark.parametrize('old', sorted(MOVED))
def test_old_module_paths_are_the_moved_modules(old):
    assert importlib.import_module(old) is importlib.import_module(MOVED[old])


def test_old_names_still_import():
    from deconas_plugin import genotype_source, model_options
    from deconas_plugin.reporting import draw, report
    from deconas_plugin.report import build_report
    from deconas_plugin.utils.draw import draw_genotype, figure_pixels, genotype_from_checkpoint, genotype_from_option
    from deconas_plugin.utils.draw import GenotypeSourceError, checkpoint_state_dict, load_checkpoint
    from deconas_plugin.models.deconas_search_model import SEARCH_DEFAULTS, controller_options
    from deconas_plugin.models.deconas_sr_model import AUTOCAST_VALUES, autocast_dtype, compile_settings
    assert build_report is report.build_report
    assert (draw_genotype, figure_pixels) == (draw.draw_genotype, draw.figure_pixels)
    assert (genotype_from_checkpoint, genotype_from_option, GenotypeSourceError, checkpoint_state_dict,
            load_checkpoint) == (genotype_source.genotype_from_checkpoint, genotype_source.genotype_from_option,
                                 genotype_source.GenotypeSourceError, genotype_source.checkpoint_state_dict,
                                 genotype_source.load_checkpoint)
    assert (SEARCH_DEFAULTS, controller_options) == (model_options.SEARCH_DEFAULTS, model_options.controller_options)
    assert (AUTOCAST_VALUES, autocast_dtype, compile_settings) == (
        model_options.AUTOCAST_VALUES, model_options.autocast_dtype, model_options.compile_settings)


def test_old_benchmark_path_names_the_new_place():
    with pytest.raises(ImportError, match=r'benchmarks/ of the project root'):
        import deconas_plugin.benchmark  # noqa: F401
    with pytest.raises(ImportError, match=r'benchmarks/ of the project root'):
        from deconas_plugin.benchmark.zeromask import strict_fp32  # noqa: F401
    from benchmarks import ZeroMaskSupernet, parse_only  # noqa: F401  (tests put the project root on sys.path)
