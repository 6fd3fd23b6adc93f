"""The project's environment: subprocesses find it, and an interpreter without it gets one clear line."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import new_store

from clip_aesthetics.environment import interpreter_env

ROOT = Path(__file__).resolve().parents[2]


def test_subprocesses_find_this_interpreters_tools():
    path = interpreter_env({"PATH": "/usr/bin:/bin"})["PATH"]
    bin_dir = Path(sys.executable).parent
    assert Path(shutil.which("python3", path=path)).parent == bin_dir
    assert Path(shutil.which("mlflow", path=path)).parent == bin_dir, "mlflow models serve needs uvicorn from here"
    assert Path(shutil.which("uvicorn", path=path)).parent == bin_dir


@pytest.mark.slow
def test_mlflow_run_with_an_interpreter_lacking_the_dependencies_says_how_to_fix_it(sample_ava, tiny_clip, tmp_path):
    """A user who runs `mlflow run .` outside the project's environment: one line, not a traceback."""
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=120)
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env.update(PATH=f"{bare / 'bin'}:/usr/bin:/bin", MLFLOW_TRACKING_URI=new_store(tmp_path / "mlflow.db"))
    done = subprocess.run([sys.executable, "-m", "mlflow", "run", str(ROOT), "--env-manager", "local",
                           "-P", f"clip={tiny_clip}", "-P", f"ava_dir={sample_ava}"],
                          env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, done.stderr[-3000:]
    assert str(bare / "bin" / "python3") in lines[0] and "lacks mlflow, torch" in lines[0]
    assert "make install" in lines[0] and "source .venv/bin/activate" in lines[0] and "--env-manager conda" in lines[0]
    assert "Traceback" not in done.stderr and "No module named" not in done.stderr
