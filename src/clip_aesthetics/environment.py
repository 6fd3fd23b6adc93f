"""The running interpreter -> is it the project's environment? And an env for subprocesses that keeps it.

Imports nothing beyond the standard library, so it can speak before a missing dependency would.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path

# When the package was first imported (its __init__ imports this module): a command's start, for cold-start figures.
STARTED = time.perf_counter()

# Import names of the runtime dependencies in pyproject.toml.
REQUIRED_MODULES = ["mlflow", "torch", "transformers", "pandas", "numpy", "scipy", "PIL", "pydantic_settings",
                    "tqdm", "matplotlib"]
# What a PyTorch scorer runs on: pinned in every logged model's requirements and recorded (as *_version params) on
# every training run.
RUNTIME_PACKAGES = ["mlflow", "torch", "transformers", "pillow", "pandas", "numpy", "scipy", "pydantic-settings"]
HOW_TO_FIX = ("run `make install` in the repository and `source .venv/bin/activate` (or `pip install -e .` into "
              "this interpreter's environment), or let MLflow build one with `mlflow run . --env-manager conda`")


def missing_modules() -> list[str]:
    return [name for name in REQUIRED_MODULES if importlib.util.find_spec(name) is None]


def require_dependencies() -> None:
    """Exit with one line naming the interpreter and the fix when it lacks the project's dependencies."""
    missing = missing_modules() if sys.version_info >= (3, 11) else ["Python >= 3.11"]
    if missing:
        print(f"error: {sys.executable} (Python {sys.version.split()[0]}) is not the project's environment: "
              f"it lacks {', '.join(missing)}; {HOW_TO_FIX}", file=sys.stderr)
        sys.exit(2)


def interpreter_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's) with this interpreter's bin folder first on PATH.

    Whatever a subprocess starts through PATH (`python3` in an MLproject command, `uvicorn` under
    `mlflow models serve`, `mlflow`) then comes from the same environment as this process.
    """
    env = dict(os.environ if env is None else env)
    bin_dir = str(Path(sys.executable).parent)  # not resolved: a venv's python links out of the venv
    rest = [part for part in env.get("PATH", "").split(os.pathsep) if part and part != bin_dir]
    env["PATH"] = os.pathsep.join([bin_dir, *rest])
    return env
