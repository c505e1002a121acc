"""What every command-line tool of the project does with a user error."""
import sys
from typing import Callable, Type


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
