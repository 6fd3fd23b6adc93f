"""Per-epoch metrics and test predictions -> matplotlib figures for the MLflow run."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on training machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def epoch_curves(history: list[dict[str, float]]):
    """Spearman and MSE per epoch for each split that has them (on a pair table: pair accuracy and log-loss)."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = [row["epoch"] for row in history]
    pairs = not any(k.endswith("_spearman") for k in history[0]) and any(k.endswith("_pair_accuracy")
                                                                         for k in history[0])
    rank, error = ("pair_accuracy", "pair_logloss") if pairs else ("spearman", "mse")
    for split in ("train", "val", "test"):
        if f"{split}_{rank}" in history[0]:
            left.plot(epochs, [row[f"{split}_{rank}"] for row in history], marker="o", label=split)
        if f"{split}_{error}" in history[0]:
            right.plot(epochs, [row[f"{split}_{error}"] for row in history], marker="o", label=split)
    if pairs:
        left.set(xlabel="epoch", ylabel="pair accuracy", title="preferred image scored higher (chance 0.5)")
        right.set(xlabel="epoch", ylabel="log-loss", title="pairwise log-loss (ln 2 = 0.693: no information)")
    else:
        left.set(xlabel="epoch", ylabel="Spearman", title="rank correlation")
        right.set(xlabel="epoch", ylabel="MSE (1-10 scale)", title="squared error")
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    return figure


def predicted_vs_true(true: np.ndarray, pred: np.ndarray, title: str):
    figure, axis = plt.subplots(figsize=(5, 5))
    axis.scatter(true, pred, s=4, alpha=0.3)
    low, high = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
    axis.plot([low, high], [low, high], color="grey", linewidth=1)
    axis.set(xlabel="true mean score", ylabel="predicted score", title=title)
    figure.tight_layout()
    return figure


def calibration(true: np.ndarray, pred: np.ndarray, edges: np.ndarray):
    """Mean true score per predicted-score bin, with each bin's count: a calibrated model lies on the diagonal."""
    figure, axis = plt.subplots(figsize=(5, 4))
    which = np.clip(np.digitize(pred, edges) - 1, 0, len(edges) - 2)
    centres, means, counts = [], [], []
    for index in np.unique(which):
        inside = which == index
        centres.append((edges[index] + edges[index + 1]) / 2)
        means.append(float(np.mean(true[inside])))
        counts.append(int(inside.sum()))
    axis.plot(centres, means, marker="o")
    for x, y, n in zip(centres, means, counts, strict=True):
        axis.annotate(str(n), (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)
    axis.plot([edges[0], edges[-1]], [edges[0], edges[-1]], color="grey", linewidth=1)
    axis.set(xlabel="predicted score (bin)", ylabel="mean true score", title="calibration (counts above points)")
    figure.tight_layout()
    return figure


def residuals(true: np.ndarray, pred: np.ndarray):
    figure, axis = plt.subplots(figsize=(5, 4))
    axis.scatter(true, pred - true, s=4, alpha=0.3)
    axis.axhline(0, color="grey", linewidth=1)
    axis.set(xlabel="true mean score", ylabel="predicted - true", title="residuals")
    figure.tight_layout()
    return figure


def histogram(scores: np.ndarray, edges: np.ndarray):
    figure, axis = plt.subplots(figsize=(5, 3.5))
    axis.hist(scores, bins=edges)
    axis.set(xlabel="score", ylabel="images", title=f"{len(scores)} scores")
    figure.tight_layout()
    return figure


def png_bytes(figure) -> bytes:
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    return buffer.getvalue()


def sweep_curves(table, metric: str):
    """One line per grid point: `table` has epochs as rows and run names as columns."""
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name in table.columns:
        axis.plot(table.index, table[name], marker="o", label=name)
    axis.set(xlabel="epoch", ylabel=metric, title=f"{metric} per epoch, every grid point")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small")
    figure.tight_layout()
    return figure


def close(figure) -> None:
    plt.close(figure)
