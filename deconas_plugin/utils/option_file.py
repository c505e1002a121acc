"""One reader of BasicSR option files for every tool, with one way of saying what is wrong."""
import os.path as osp
from typing import Type

import yaml


def read_option_file(path: str, error: Type[Exception] = ValueError) -> dict:
    """The option file at ``path`` as a mapping, read with BasicSR's ordered YAML loader.

    Raises ``error`` (the caller's own error class, so each tool reports it its usual way) with a
    message naming the file when it is missing, is not YAML, or is not a mapping of options.
    """
    from basicsr.utils.options import ordered_yaml
    if not osp.isfile(path):
        raise error(f'option file not found: {path}')
    try:
        with open(path, encoding='utf-8') as f:
            opt = yaml.load(f, Loader=ordered_yaml()[0])
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise error(f'cannot read option file {path}: not valid YAML ({" ".join(str(e).split())})') from None
    if not isinstance(opt, dict):
        raise error(f'option file {path} is not a YAML mapping of options')
    return opt
