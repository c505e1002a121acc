"""What every command-line tool of the project shares: its ``-h``, the arguments of a search checkpoint, and what
it does with a user error."""
import argparse
import os.path as osp
import sys
from typing import Callable, Type

TOOLS = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'tools')


def tool_parser(doc: str) -> argparse.ArgumentParser:
    """The parser of a tool whose module docstring is ``doc``: ``-h`` says what the tool is for (the first line),
    then the arguments, then the rest of the docstring (details, examples) as written. Importing this module
    imports the package (torch, BasicSR), so the tools whose ``-h`` imports neither build the same parser with
    argparse themselves."""
    summary, _, details = doc.partition('\n')
    return argparse.ArgumentParser(description=summary, epilog=details,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_search_checkpoint(p: argparse.ArgumentParser, opt_help: str = 'the search option file',
                          iteration_flags=('--iter', ), iteration_help: str = 'checkpoint iteration'):
    """``-opt``, ``--experiment`` and the iteration (``--iter``): which search checkpoint a tool loads."""
    p.add_argument('-opt', required=True, help=opt_help)
    p.add_argument('--experiment', help='the search experiment folder (default: experiments/<name>)')
    p.add_argument(*iteration_flags, default='latest', help=f'{iteration_help} (default: latest)')


def default_device() -> str:
    """``--device``'s default: cuda where a GPU is visible, else cpu."""
    import torch
    return 'cuda' if torch.cuda.is_available() else 'cpu'


def run_tool(main: Callable, *user_errors: Type[Exception]):
    """Run a tool's ``main()`` and exit with its status; a user error (one of ``user_errors``, whose
    message names the key, file or value) prints one ``error: ...`` line and exits 2, as
    ``deconas_plugin/train.py`` and argparse do. Anything else is a bug and keeps its traceback."""
    try:
        status = main()
    except user_errors as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)
    sys.exit(status if isinstance(status, int) else 0)


def load_tool(name: str):
    """``tools/<name>.py`` of this checkout as a module (``tools`` is not a package), for the pipelines and
    benchmarks that run a tool's ``main`` in their own process."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(f'deconas_tool_{name}', osp.join(TOOLS, f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
