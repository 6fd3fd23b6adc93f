#!/usr/bin/env bash
# GPU figures in one command, under 5 minutes: writes gpu.json (or $OUT/gpu.json). See benchmarks/gpu.py.
#
# Uses the project's .venv when there is one, else python3 with the machine's CUDA build of torch. What
# else the script needs and that Python lacks (transformers, pillow, numpy, pydantic-settings, tqdm) is
# installed into build/gpu-site, never into the system: from build/wheels when that folder exists (for a
# machine without internet, `pip download -d build/wheels <names>` beforehand), else from the index.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=python3
[ -x .venv/bin/python3 ] && PY=.venv/bin/python3
export PYTHONPATH="src:build/gpu-site${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PY" -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
    echo "error: $PY has no CUDA build of torch, or no GPU is visible: install torch for this machine's CUDA" >&2
    exit 2
fi
missing=$("$PY" - <<'PYEOF'
import importlib.util
wanted = {"transformers": "transformers", "PIL": "pillow", "numpy": "numpy",
          "pydantic_settings": "pydantic-settings", "tqdm": "tqdm"}
print(" ".join(pip for module, pip in wanted.items() if importlib.util.find_spec(module) is None))
PYEOF
)
if [ -n "$missing" ]; then
    source_args=()
    [ -d build/wheels ] && source_args=(--no-index --find-links build/wheels)
    echo "installing into build/gpu-site: $missing" >&2
    # shellcheck disable=SC2086
    "$PY" -m pip install --quiet --target build/gpu-site "${source_args[@]}" $missing
fi
timeout 290 "$PY" benchmarks/gpu.py --out "${OUT:-.}/gpu.json" "$@"
