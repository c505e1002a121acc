"""Write the DeCoNAS report of a search experiment and its tests (see ``deconas_plugin/reporting/report.py``).

Example (after tools/demo.py):
    python tools/report.py --search-exp experiments/demo_search_x2 --out demo_out/report2 \\
        --test-opt Bicubic=demo_out/options/test_bicubic.yml \\
        --test-opt "CARN=demo_out/options/test_carn.yml" \\
        --test-opt "DeCoNASNet (found)=demo_out/options/test_found.yml"
Outputs: report.md, report.json (fields: the docstring of deconas_plugin/reporting/report.py),
results_table.md, search_scatter.png, controller_curves.png, found_cell.png, crops.png.
"""
import os.path as osp
import sys

if __package__ in (None, ''):  # run as a script: make the project importable
    sys.path.insert(0, osp.abspath(osp.join(__file__, osp.pardir, osp.pardir)))

import deconas_plugin  # noqa: F401,E402  (registers archs, models, datasets, losses)
from deconas_plugin.reporting.report import ReportError, main  # noqa: E402
from deconas_plugin.utils.cli import run_tool  # noqa: E402

if __name__ == '__main__':
    run_tool(main, ReportError)
