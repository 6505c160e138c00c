#!/usr/bin/env bash
# Creates .venv (if missing) and installs rdsweep into it, editable, with the test tools.
# Usage: bash scripts/setup.sh [EXTRAS]   e.g. EXTRAS=test,download to add TensorFlow for tfds downloads
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-test}"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[${extras}]"
