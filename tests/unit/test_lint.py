"""The code reads as one codebase: `ruff check` (pyflakes, pycodestyle, isort at the project's width, configured in
pyproject.toml) is clean on every folder of Python the project holds."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ["src", "tests", "benchmarks", "experiments", "docs"]


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff comes with the test extra")
def test_ruff_finds_nothing_in_the_projects_python():
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise",
                           *FOLDERS], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, f"`ruff check {' '.join(FOLDERS)}` (ruff check --fix sorts imports):\n{done.stdout}"


def test_the_linter_covers_what_the_project_agreed_on():
    """The rules are the project's decision: a narrower configuration must be a visible change of this test."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]
    assert config["line-length"] == 120
    assert set(config["lint"]["select"]) >= {"F", "E", "W", "I"}
