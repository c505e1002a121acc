"""Old path (before issue 14): the drawing is now ``deconas_plugin.reporting.draw``, the genotype sources
(option file, checkpoint) ``deconas_plugin.genotype_source``; this module re-exports both."""
from ..genotype_source import *  # noqa: F401,F403
from ..genotype_source import _structure  # noqa: F401
from ..reporting.draw import *  # noqa: F401,F403
