"""Old path of ``deconas_plugin.reporting.search_vs_random`` (moved with the reporting, issue 14).

This name is that module.
"""
import importlib
import sys

sys.modules[__name__] = importlib.import_module('deconas_plugin.reporting.search_vs_random')
