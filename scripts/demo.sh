#!/usr/bin/env bash
# The project's main job on a fresh machine: set up, then run the whole DeCoNAS pipeline on the
# embedded images (see README). Extra arguments go to tools/demo.py.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
.venv/bin/python tools/demo.py "$@"
