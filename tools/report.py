"""Write the DeCoNAS report (report.md, report.json, PNGs) of a search experiment and its tests.

What the report holds: ``deconas_plugin/reporting/report.py``. Example (after tools/demo.py):
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

from deconas_plugin.reporting.report import ReportError, build_report  # noqa: E402
from deconas_plugin.utils.cli import run_tool, tool_parser  # noqa: E402


def parse_args(argv=None):
    p = tool_parser(__doc__)
    p.add_argument('--search-exp', required=True, help='search experiment folder (experiments/<name>)')
    p.add_argument('--out', required=True, help='report folder')
    p.add_argument('--search-opt', help='search option file (default: the one copied into the experiment)')
    p.add_argument('--derive-dir', help='tools/derive.py output (default: <search-exp>/derive)')
    p.add_argument('--test-opt', action='append', default=[], metavar='[LABEL=]YML',
                   help='test option file of one method (repeatable, in table order), optionally with a label: '
                   '"DeCoNASNet (found)=demo_out/options/test_found.yml"')
    p.add_argument('--crop-image', help='test image of the visual comparison (default: the first colour image)')
    p.add_argument('--complexity-cache', help='JSON cache of params/MACs (default: <out>/complexity_cache.json)')
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    test_opts = []
    for item in args.test_opt:
        label, sep, path = item.partition('=')
        test_opts.append((label, path) if sep else (None, item))
    report = build_report(args.search_exp, args.out, test_opts, search_opt=args.search_opt,
                          derive_dir=args.derive_dir, complexity_cache=args.complexity_cache,
                          crop_image=args.crop_image)
    with open(osp.join(args.out, 'results_table.md')) as f:
        print(f.read())
    print(f"report: {osp.join(args.out, 'report.md')} (genotype {report['genotype']['decimal']})")
    return report


if __name__ == '__main__':
    run_tool(main, ReportError)
