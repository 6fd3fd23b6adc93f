"""True and predicted scores -> the numbers we report (Spearman, Pearson, MSE, MAE, accuracy at a threshold: 5 on
AVA's 1-10 scale, the range's midpoint on a table's own), and which of two such numbers is better."""

from __future__ import annotations

import math

import numpy as np

from clip_aesthetics.settings.values import direction

# AVA's convention for "good" vs "bad" photos; about 71% of AVA is above it, so read accuracy against that.
ACCURACY_THRESHOLD = 5.0


def spearman(true: np.ndarray, pred: np.ndarray) -> float:
    if len(true) < 2 or np.ptp(pred) == 0 or np.ptp(true) == 0:
        return float("nan")  # undefined for constants; NaN shows in MLflow rather than a fake 0
    from scipy import stats  # here, not at import: the CLI checks metric names before anything heavy loads

    return float(stats.spearmanr(true, pred).statistic)


def pearson(true: np.ndarray, pred: np.ndarray) -> float:
    if len(true) < 2 or np.ptp(pred) == 0 or np.ptp(true) == 0:
        return float("nan")
    from scipy import stats

    return float(stats.pearsonr(true, pred).statistic)


def mse(true: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean((np.asarray(true, np.float64) - pred) ** 2))


def mae(true: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(true, np.float64) - pred)))


def accuracy(true: np.ndarray, pred: np.ndarray, threshold: float = ACCURACY_THRESHOLD) -> float:
    """Share of images put on the right side of the threshold (the usual AVA binary task)."""
    return float(np.mean((np.asarray(true) > threshold) == (np.asarray(pred) > threshold)))


def evaluate(split: str, true: np.ndarray, pred: np.ndarray, threshold: float = ACCURACY_THRESHOLD
             ) -> dict[str, float]:
    """All metrics of one split, named `{split}_{metric}`, on the data's scale."""
    values = {
        "mse": mse(true, pred),
        "mae": mae(true, pred),
        "spearman": spearman(true, pred),
        "pearson": pearson(true, pred),
        "accuracy": accuracy(true, pred, threshold),
    }
    return {f"{split}_{name}": value for name, value in values.items()}


def is_defined(value) -> bool:
    """A number that can be compared: not None, NaN or infinite (a constant prediction's Spearman is NaN)."""
    return value is not None and math.isfinite(float(value))


def ranking_key(value, metric: str) -> tuple[bool, float]:
    """Sort key, larger is better: every defined value ranks above every undefined one, whatever the metric."""
    return (True, direction(metric) * float(value)) if is_defined(value) else (False, 0.0)
