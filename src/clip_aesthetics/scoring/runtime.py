"""A runtime a scorer can be exported to: one entry of extensions.RUNTIMES (`export --format NAME`).

Each runtime's module builds one `Runtime`; the `export` workflow (workflows/export.py) asks it, never its name.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Runtime:
    """`check(quantize)`: refuse what it cannot do, before any work; `reference(scorer)`: the source scorer as the
    export is compared with (float32, CPU); `write(scorer, folder, quantize, spec_doc) -> artifacts`; `scorer(
    artifacts)`: the export, loaded; `fidelity(expected, got, score_range) -> figures`; `log`: `"module:function"`
    of `log(artifacts) -> model URI`, which logs the export as a pyfunc in the active run (kept as text, so that
    loading the export's own model never imports the exporter)."""

    name: str
    check: Callable
    reference: Callable
    write: Callable
    scorer: Callable
    fidelity: Callable
    log: str

    def log_model(self, artifacts: dict[str, str]) -> str:
        module, _, function = self.log.partition(":")
        return getattr(importlib.import_module(module), function)(artifacts)
