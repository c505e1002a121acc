"""Old path of ``deconas_plugin.reporting.complexity_table`` (moved with the reporting, issue 14).

This name is that module.
"""
import importlib
import sys

sys.modules[__name__] = importlib.import_module('deconas_plugin.reporting.complexity_table')
