"""What a score means: the reference distribution a model carries, and the `percentile` beside every score.

A trained model's reference is its own predictions on its training data's test split (with that split's true
labels beside them); an imported head's, the scores of a reference folder passed at import; an export copies its
source's. It is stored in scorer.json under "reference", and every scoring path (the PyTorch and ONNX scorers, so
CLI, pyfunc, server, Spark and curation) adds `percentile` through `annotate`, the one place that computes it.

percentile = 100 x (the share of reference scores strictly below the score): 0 for a score at or below the lowest
reference score, 100 above the highest; monotone in the score; NaN for an image without a score, and for every
image of a model without a reference (never a made-up number). Imports numpy and pandas only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

KEY = "reference"  # its key in scorer.json
MAX_STORED = 20001  # a larger reference is stored as this many evenly spaced order statistics (0.005 points apart)


@dataclass(frozen=True)
class Reference:
    scores: np.ndarray  # sorted ascending, on the model's scale
    what: str  # what the scores are, in a report's words: dataset, split, count
    count: int  # images the reference was made from (more than len(scores) when stored as order statistics)
    labels: np.ndarray | None = None  # sorted true scores of the same images, when known

    def percentile(self, scores) -> np.ndarray:
        values = np.asarray(scores, dtype=np.float64)
        below = np.searchsorted(self.scores, values, side="left") / len(self.scores) * 100.0
        return np.where(np.isfinite(values), below, np.nan)

    def to_doc(self) -> dict:
        doc = {"what": self.what, "count": self.count, "scores": _stored(self.scores)}
        if self.labels is not None:
            doc["labels"] = _stored(self.labels)
        return doc

    def text(self) -> str:
        return self.what


def make(scores, what: str, labels=None) -> Reference | None:
    """A reference from the finite values of `scores` (None when fewer than two: no distribution to compare with)."""
    values = np.sort(np.asarray(scores, dtype=np.float64))
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return None
    true = None
    if labels is not None:
        true = np.sort(np.asarray(labels, dtype=np.float64))
        true = true[np.isfinite(true)]
    return Reference(values, what, len(values), true)


def _stored(values: np.ndarray) -> list[float]:
    if len(values) > MAX_STORED:
        values = np.quantile(values, np.linspace(0.0, 1.0, MAX_STORED), method="inverted_cdf")
    return [round(float(v), 7) for v in values]


def of_spec(spec_doc: dict | None) -> Reference | None:
    """The reference stored in a scorer.json, or None (models saved before percentiles, or without one)."""
    doc = (spec_doc or {}).get(KEY)
    if not doc or len(doc.get("scores", ())) < 2:
        return None
    labels = np.asarray(doc["labels"], dtype=np.float64) if doc.get("labels") else None
    return Reference(np.asarray(doc["scores"], dtype=np.float64), str(doc.get("what", "")),
                     int(doc.get("count", len(doc["scores"]))), labels)


def annotate(frame: pd.DataFrame, reference: Reference | None) -> pd.DataFrame:
    """A scorer's frame (score, [other outputs], error) with `percentile` after its score columns."""
    values = reference.percentile(frame["score"]) if reference is not None else np.full(len(frame), np.nan)
    frame = frame.drop(columns=["percentile"], errors="ignore")
    frame.insert(list(frame.columns).index("error"), "percentile", values)
    return frame


def describe(reference: Reference | None) -> str:
    """One line for reports and model descriptions."""
    if reference is None:
        return "no reference distribution: percentiles are empty (NaN)"
    return f"percentiles against {reference.what}"
