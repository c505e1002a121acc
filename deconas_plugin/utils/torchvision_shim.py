"""basicsr 1.4.2 imports ``torchvision.transforms.functional_tensor``, removed in torchvision 0.17: an alias.

Imported first by ``deconas_plugin/__init__.py``, before anything imports basicsr. BasicSR fixed
this upstream after 1.4.2.
"""
import sys
import types


def _alias_functional_tensor():
    # rgb_to_grayscale is the only name basicsr uses.
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
