"""Old path of the benchmark, which is no longer part of the installed package (issue 14)."""
raise ImportError('deconas_plugin.benchmark moved to the package benchmarks/ of the project root, beside its results '
                  '(benchmarks/cpu-2core/), and pip does not install it: run tools/benchmark.py, or import benchmarks '
                  'with the project root on sys.path (e.g. from benchmarks import run_benchmark)')
