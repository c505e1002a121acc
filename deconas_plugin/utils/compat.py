"""Shims that make basicsr 1.4.2 work with current torchvision and on CPU.

Imported first by ``deconas_plugin/__init__.py``, before anything imports basicsr.
"""
import sys
import types

import torch


def _alias_functional_tensor():
    # basicsr 1.4.2 imports torchvision.transforms.functional_tensor, removed in torchvision 0.17;
    # BasicSR fixed this upstream after 1.4.2. rgb_to_grayscale is the only name it uses.
    name = 'torchvision.transforms.functional_tensor'
    if name in sys.modules:
        return
    try:
        import torchvision.transforms.functional_tensor  # noqa: F401
    except ImportError:
        from torchvision.transforms import functional
        module = types.ModuleType(name)
        module.rgb_to_grayscale = functional.rgb_to_grayscale
        sys.modules[name] = module


_alias_functional_tensor()


def load_resume_state(opt):
    """CPU-safe replacement of ``basicsr.train.load_resume_state``.

    BasicSR's version maps every tensor to ``cuda:<current>`` (fails without a GPU) and looks for
    ``experiments/`` relative to the working directory. Ours looks under the experiment root and
    maps tensors to the CPU; the model moves what it needs to its own device.
    """
    import os.path as osp

    from basicsr.utils.misc import check_resume

    from .checkpoint import latest_valid_state, load_state

    path = None
    if opt.get('auto_resume'):
        path = latest_valid_state(osp.join(opt['path']['experiments_root'], 'training_states'))
        if path is not None:
            opt['path']['resume_state'] = path
    elif opt['path'].get('resume_state'):
        path = opt['path']['resume_state']
    if path is None:
        return None
    state = load_state(path)
    check_resume(opt, state['iter'])
    return state


def patch_basicsr():
    """Install the CPU-safe resume into basicsr's train pipeline (idempotent)."""
    import basicsr.train
    basicsr.train.load_resume_state = load_resume_state
