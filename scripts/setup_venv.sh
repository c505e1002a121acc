#!/usr/bin/env bash
# Create .venv (if missing) and install everything the project needs. Idempotent.
# basicsr 1.4.2 is sdist-only: --no-build-isolation keeps pip from pulling a second multi-GB torch
# into its build environment.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv --upgrade-deps .venv
fi
.venv/bin/pip install --quiet --no-build-isolation -r requirements.txt -r requirements-onnx.txt
.venv/bin/pip install --quiet --no-build-isolation --no-deps -e .
.venv/bin/python -c "import deconas_plugin; print('deconas_plugin', deconas_plugin.__version__, 'ready')"
