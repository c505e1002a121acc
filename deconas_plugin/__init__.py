"""DeCoNAS for BasicSR: importing this package registers every component in BasicSR's registries."""
from .utils import torchvision_shim  # noqa: F401  (must run before basicsr is imported)
from .archs import *  # noqa: F401,F403
from .data import *  # noqa: F401,F403
from .losses import *  # noqa: F401,F403
from .models import *  # noqa: F401,F403

__version__ = '0.1.0'
