#!/usr/bin/env bash
# GPU figures for a lent machine, in one command under 5 minutes: writes $OUT/gpu.json (or ./gpu.json).
#
# The device image has torch and transformers but not pydantic-settings: download its wheels here
# first and carry them (`pip download -d build/wheels pydantic-settings`, run with carry=["build/wheels"]).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c "import pydantic_settings" 2>/dev/null; then
    python3 -m pip install --quiet --no-index --find-links build/wheels pydantic-settings
fi
PYTHONPATH=src timeout 290 python3 benchmarks/gpu.py --out "${OUT:-.}/gpu.json"
