"""A runtime a scorer can be exported to: one entry of extensions.RUNTIMES (`export --format NAME`).

Each runtime's module builds one `Runtime`; the `export` workflow (workflows/export.py) asks it, never its name.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from clip_aesthetics.errors import UserError


def measure_fidelity(reference: np.ndarray, exported: np.ndarray, score_range: tuple[float, float]) -> dict[str, float]:
    """How closely an export's scores follow its source's on the same images (NaN where either failed)."""
    from scipy.stats import spearmanr

    ok = np.isfinite(reference) & np.isfinite(exported)
    if ok.sum() < 3:
        raise UserError(f"only {int(ok.sum())} calibration image(s) scored by both models: at least 3 are needed "
                        "to measure the export's fidelity (pass --calibration DIR with more images)")
    difference = np.abs(reference[ok] - exported[ok])
    constant = np.ptp(reference[ok]) == 0 or np.ptp(exported[ok]) == 0  # no ranking to compare: undefined
    rho = float("nan") if constant else float(spearmanr(reference[ok], exported[ok]).statistic)
    return {"max_abs_diff": float(difference.max()), "mean_abs_diff": float(difference.mean()),
            "max_abs_diff_of_range": float(difference.max() / (score_range[1] - score_range[0])),
            "spearman": rho, "n_images": int(ok.sum())}


@dataclass(frozen=True)
class Runtime:
    """`check(quantize)`: refuse what it cannot do, before any work; `reference(scorer)`: the source scorer as the
    export is compared with (float32, CPU); `write(scorer, folder, quantize, spec_doc) -> artifacts`; `scorer(
    artifacts)`: the export, loaded (its `device` says where it computes); `log`: `log(artifacts) -> model URI`,
    which logs the export as a pyfunc in the active run, or that function as `"module:function"` text (so that
    loading the export's own model never imports the exporter); `packages`: what the export runs on, whose versions
    the export run records; `fidelity(expected, got, score_range) -> figures`: `measure_fidelity` unless the
    runtime measures otherwise."""

    name: str
    check: Callable
    reference: Callable
    write: Callable
    scorer: Callable
    log: str | Callable
    packages: tuple[str, ...] = ()
    fidelity: Callable = measure_fidelity

    def log_model(self, artifacts: dict[str, str]) -> str:
        if callable(self.log):
            return self.log(artifacts)
        module, _, function = self.log.partition(":")
        return getattr(importlib.import_module(module), function)(artifacts)
