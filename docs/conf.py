"""Sphinx configuration of the clip-aesthetics manual: MyST Markdown pages, the Furo theme, the Python API's
reference from its docstrings. Built strictly (`make docs`: warnings are errors)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

project = "clip-aesthetics"
author = "the clip-aesthetics authors"
copyright = "2026, the clip-aesthetics authors"

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "site"]
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]
nitpicky = False
suppress_warnings = ["myst.header"]  # pages keep the README's heading levels

html_theme = "furo"
html_title = "clip-aesthetics"
html_static_path = []

autodoc_mock_imports = []  # the API's modules import lazily; nothing heavy at import time
autodoc_typehints = "description"
