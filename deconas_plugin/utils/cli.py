"""What every command-line tool of the project does with a user error."""
import os.path as osp
import sys
from typing import Callable, Type

TOOLS = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'tools')


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
