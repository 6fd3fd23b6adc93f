"""The manual builds as a site strictly (as `make docs` builds it), and the strict build fails on what a reader
would trip over: a broken link, a page missing from the navigation."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def build(source: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-q", str(source),
                           str(out)], capture_output=True, text=True, cwd=ROOT)


@pytest.fixture(scope="module")
def sphinx():
    try:
        import furo  # noqa: F401
        import myst_parser  # noqa: F401
        import sphinx  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("the docs extra is not installed (pip install -e '.[docs]'; make test installs it)")


@pytest.mark.slow
def test_the_manual_builds_strictly_with_every_page(sphinx, tmp_path):
    result = build(ROOT / "docs", tmp_path / "site")
    assert result.returncode == 0, result.stderr[-3000:]
    pages = {p.stem for p in (ROOT / "docs").glob("*.md")}
    assert pages <= {p.stem for p in (tmp_path / "site").glob("*.html")}
    api = (tmp_path / "site" / "python-api.html").read_text()
    assert "clip_aesthetics.load" in api and "The same embedding and head as every other path" in api, \
        "the API reference is generated from the docstrings"


@pytest.mark.slow
def test_a_broken_link_or_an_unlisted_page_fails_the_build(sphinx, tmp_path):
    """The manual's own configuration on a two-page copy (a full build is the test above)."""
    copy = tmp_path / "docs"
    copy.mkdir()
    shutil.copy(ROOT / "docs" / "conf.py", copy / "conf.py")
    (copy / "index.md").write_text("# Index\n\n```{toctree}\nbackbones\n```\n")
    (copy / "backbones.md").write_text((ROOT / "docs" / "backbones.md").read_text()
                                       + "\nSee [a page that does not exist](no-such-page.md).\n")
    (copy / "orphan.md").write_text("# Not in the navigation\n")
    result = build(copy, tmp_path / "site")
    assert result.returncode != 0
    assert "no-such-page" in result.stderr and "orphan" in result.stderr, result.stderr[-3000:]
