"""What a score means: the reference distribution a model carries, and the `percentile` beside every score.

A trained model's reference is its own predictions on its training data's test split (with that split's true
labels beside them); an imported head's, the scores of a reference folder passed at import; an export copies its
source's. It is stored in scorer.json under "reference", and every scoring path (the PyTorch and ONNX scorers, so
CLI, pyfunc, server, Spark and curation) adds `percentile` through `annotate`, the one place that computes it.

The rule: scores are compared on a grid of `resolution` (1/256 of the model's score range: bfloat16's 8
significant bits, the coarsest precision a model here computes in; 0.035 on AVA's 1-10 scale). A score and a
reference score that round to the same grid point are equal, and an equal one counts half (the mid-rank):

    percentile = 100 x (reference scores below + half of those equal) / reference scores

So the same image gets the same percentile on every path (a file, bytes, a PIL image; CLI, API, server, Spark,
ONNX) whatever batch it was scored in: the last digits a different batch or kernel moves (about 1e-6 of the
range) change the percentile only when they carry the score across a grid boundary, for about one image in
3,000 (and then by one reference step). An image that is itself in the reference (a test image of the training
run) sits on its own reference score, not at a cliff beside it. Monotone in the score; NaN for an image without
a score, and for every image of a model without a reference (never a made-up number). Imports numpy and pandas.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

KEY = "reference"  # its key in scorer.json
MAX_STORED = 20001  # a larger reference is stored as this many evenly spaced order statistics (0.005 points apart)
RESOLUTION_OF_RANGE = 2.0 ** -8  # the grid scores are compared on, as a share of the score range


def resolution_for(score_range) -> float:
    """The grid step of a model on `score_range`: 1/256 of it."""
    low, high = (float(v) for v in score_range)
    return (high - low) * RESOLUTION_OF_RANGE


@dataclass(frozen=True)
class Reference:
    scores: np.ndarray  # sorted ascending, on the model's scale
    what: str  # what the scores are, in a report's words: dataset, split, count
    count: int  # images the reference was made from (more than len(scores) when stored as order statistics)
    labels: np.ndarray | None = None  # sorted true scores of the same images, when known
    resolution: float = 9.0 * RESOLUTION_OF_RANGE  # the grid scores are compared on (AVA's range by default)
    precision: str = ""  # what the reference scores were computed in (float32, bfloat16, ...), when recorded

    def grid(self, values) -> np.ndarray:
        return np.round(np.asarray(values, dtype=np.float64) / self.resolution)

    def percentile(self, scores) -> np.ndarray:
        values = np.asarray(scores, dtype=np.float64)
        finite = np.isfinite(values)
        points = self.grid(np.where(finite, values, 0.0))
        reference = self.grid(self.scores)  # sorted, as the scores are
        below = np.searchsorted(reference, points, side="left")
        at_or_below = np.searchsorted(reference, points, side="right")
        return np.where(finite, (below + at_or_below) / 2.0 / len(reference) * 100.0, np.nan)

    def to_doc(self) -> dict:
        doc = {"what": self.what, "count": self.count, "scores": _stored(self.scores),
               "resolution": self.resolution, "rule": "mid-rank on a grid of `resolution`"}
        if self.precision:
            doc["precision"] = self.precision
        if self.labels is not None:
            doc["labels"] = _stored(self.labels)
        return doc

    def text(self) -> str:
        return self.what


def make(scores, what: str, labels=None, score_range=(1.0, 10.0), precision: str = "") -> Reference | None:
    """A reference from the finite values of `scores` (None when fewer than two: no distribution to compare with)."""
    values = np.sort(np.asarray(scores, dtype=np.float64))
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return None
    true = None
    if labels is not None:
        true = np.sort(np.asarray(labels, dtype=np.float64))
        true = true[np.isfinite(true)]
    return Reference(values, what, len(values), true, resolution_for(score_range), precision or "")


def _stored(values: np.ndarray) -> list[float]:
    if len(values) > MAX_STORED:
        values = np.quantile(values, np.linspace(0.0, 1.0, MAX_STORED), method="inverted_cdf")
    return [round(float(v), 7) for v in values]


def of_spec(spec_doc: dict | None) -> Reference | None:
    """The reference stored in a scorer.json, or None (models saved before percentiles, or without one). A reference
    stored before the grid was recorded takes the grid of the model's score range."""
    doc = (spec_doc or {}).get(KEY)
    if not doc or len(doc.get("scores", ())) < 2:
        return None
    labels = np.asarray(doc["labels"], dtype=np.float64) if doc.get("labels") else None
    score_range = ((spec_doc or {}).get("head") or {}).get("score_range", (1.0, 10.0))
    resolution = float(doc.get("resolution") or resolution_for(score_range))
    return Reference(np.sort(np.asarray(doc["scores"], dtype=np.float64)), str(doc.get("what", "")),
                     int(doc.get("count", len(doc["scores"]))), labels, resolution, str(doc.get("precision") or ""))


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
    computed = f", computed in {reference.precision}" if reference.precision else ""
    return (f"percentiles against {reference.what}{computed} (mid-rank on a grid of {reference.resolution:.3g}, "
            "1/256 of the score range)")
