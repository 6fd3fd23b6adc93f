"""The manual's commands cannot rot: every `clip-aesthetics …` and `mlflow run … -P …` line in a fenced shell block of
README.md or docs/ is parsed (never run) and must name a subcommand or entry point that exists, with flags and
parameters it accepts. And the README stays a README."""

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from clip_aesthetics.cli import app
from clip_aesthetics.cli.commands import ClipAesthetics

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL = ("bash", "sh", "shell", "console", "")
README_BUDGET = 250
# Value problems a reader's own machine decides (a folder that exists there, not here); a flag no command
# accepts, a missing required one or a value outside a fixed list is always wrong.
ALWAYS_WRONG = {"extra_forbidden", "missing", "literal_error", "bool_parsing", "int_parsing", "float_parsing"}


def shell_lines(page: Path):
    """(line number, command) of every command in the page's fenced shell blocks, continuations joined."""
    fence, pending, start = None, "", 0
    for number, line in enumerate(page.read_text().splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = None if fence is not None else stripped[3:].strip().lower()
            continue
        if fence is None or fence not in SHELL:
            continue
        text = stripped.removeprefix("$ ")
        if not pending:
            start = number
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        yield start, pending + text
        pending = ""


def cli_args(command: str) -> list[str] | None:
    """The arguments after the program for a clip-aesthetics command (also inside spark-submit), else None."""
    try:
        words = shlex.split(command, comments=True)
    except ValueError:
        return None
    for k, word in enumerate(words):
        if Path(word).name == "clip-aesthetics" or word.endswith("spark_submit.py"):
            return words[k + 1:]
        if word == "-m" and k + 1 < len(words) and words[k + 1] == "clip_aesthetics":
            return words[k + 2:]
    return None


def mlflow_run(command: str) -> tuple[str, list[str]] | None:
    """(entry point, parameter names) of an `mlflow run . …` command, else None."""
    try:
        words = shlex.split(command, comments=True)
    except ValueError:
        return None
    if words[:2] != ["mlflow", "run"]:
        return None
    entry = words[words.index("-e") + 1] if "-e" in words else "main"
    params = [words[k + 1].split("=", 1)[0] for k, word in enumerate(words) if word == "-P"]
    return entry, params


def cli_problem(args: list[str]) -> str:
    """Why these arguments do not parse as a clip-aesthetics command, or ""."""
    args = app.as_parsed(args)
    if not args or args[0] in ("-h", "--help"):
        return ""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            ClipAesthetics(_cli_parse_args=args)
    except SystemExit as exit_:
        return "" if exit_.code == 0 else stderr.getvalue().strip().splitlines()[-1]
    except ValidationError as error:
        wrong = [f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in error.errors() if p["type"] in ALWAYS_WRONG]
        return "; ".join(wrong)
    return ""


def commands():
    for page in PAGES:
        for number, command in shell_lines(page):
            if cli_args(command) is not None or mlflow_run(command) is not None:
                yield pytest.param(page, number, command, id=f"{page.name}:{number}")


@pytest.mark.parametrize("page, number, command", list(commands()))
def test_every_documented_command_parses(page, number, command):
    where = f"{page.relative_to(ROOT)}:{number}: {command}"
    args = cli_args(command)
    if args is not None:
        problem = cli_problem(args)
        assert not problem, f"{where}\n  -> {problem}"
        return
    entry, params = mlflow_run(command)
    entry_points = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"]
    assert entry in entry_points, f"{where}\n  -> no entry point {entry!r} in MLproject"
    unknown = [p for p in params if p not in entry_points[entry].get("parameters", {})]
    assert not unknown, f"{where}\n  -> entry point {entry!r} has no parameter {', '.join(unknown)}"


def test_the_manual_documents_many_commands():
    found = list(commands())
    assert len(found) >= 30, "the page reader found few commands: is it still reading the fenced blocks?"
    assert any("README.md" in str(p.values[0]) for p in found)


def test_the_checker_catches_a_command_that_no_longer_parses():
    assert "unrecognized arguments: --no-such-flag" in cli_problem(["main", "--no-such-flag", "1"])
    assert "invalid choice" in cli_problem(["no-such-command"])
    assert cli_problem(["score", "photos/", "--out", "scores.csv"]) == ""
    assert mlflow_run("mlflow run . -e sweep -P clips=b16 --env-manager local") == ("sweep", ["clips"])


def test_the_readme_stays_within_its_budget():
    lines = len((ROOT / "README.md").read_text().splitlines())
    assert lines <= README_BUDGET, f"README.md has {lines} lines; move detail to a page in docs/"


def test_every_docs_page_is_in_the_sites_navigation():
    index = (ROOT / "docs" / "index.md").read_text()
    listed = set(re.findall(r"^([a-z0-9-]+)$", index, flags=re.M))
    pages = {p.stem for p in (ROOT / "docs").glob("*.md")} - {"index"}
    assert pages <= listed, f"pages missing from docs/index.md's toctree: {sorted(pages - listed)}"


def test_every_picture_the_pages_show_is_one_the_pictures_script_makes_and_is_committed():
    shown = {name for page in PAGES for name in re.findall(r"\]\(pictures/([\w.-]+\.png)\)", page.read_text())}
    made = set(re.findall(r'"([\w-]+\.png)"', (ROOT / "experiments" / "docs_pictures.py").read_text()))
    assert shown and shown <= made, f"shown but not made by experiments/docs_pictures.py: {sorted(shown - made)}"
    missing = [name for name in shown if not (ROOT / "docs" / "pictures" / name).is_file()]
    assert not missing, f"run `make docs-pictures` and commit docs/pictures/: {missing}"
