"""True and predicted 1-10 scores -> the numbers we report (Spearman, Pearson, MSE, MAE, accuracy at 5)."""

from __future__ import annotations

import numpy as np
from scipy import stats

# AVA's convention for "good" vs "bad" photos; about 71% of AVA is above it, so read accuracy against that.
ACCURACY_THRESHOLD = 5.0


def spearman(true: np.ndarray, pred: np.ndarray) -> float:
    if len(true) < 2 or np.ptp(pred) == 0 or np.ptp(true) == 0:
        return float("nan")  # undefined for constants; NaN shows in MLflow rather than a fake 0
    return float(stats.spearmanr(true, pred).statistic)


def pearson(true: np.ndarray, pred: np.ndarray) -> float:
    if len(true) < 2 or np.ptp(pred) == 0 or np.ptp(true) == 0:
        return float("nan")
    return float(stats.pearsonr(true, pred).statistic)


def mse(true: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean((np.asarray(true, np.float64) - pred) ** 2))


def mae(true: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(true, np.float64) - pred)))


def accuracy(true: np.ndarray, pred: np.ndarray, threshold: float = ACCURACY_THRESHOLD) -> float:
    """Share of images put on the right side of the threshold (the usual AVA binary task)."""
    return float(np.mean((np.asarray(true) > threshold) == (np.asarray(pred) > threshold)))


def evaluate(split: str, true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """All metrics of one split, named `{split}_{metric}`, on the 1-10 scale."""
    values = {
        "mse": mse(true, pred),
        "mae": mae(true, pred),
        "spearman": spearman(true, pred),
        "pearson": pearson(true, pred),
        "accuracy": accuracy(true, pred),
    }
    return {f"{split}_{name}": value for name, value in values.items()}
