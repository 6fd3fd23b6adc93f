"""Per-epoch metrics and test predictions -> matplotlib figures for the MLflow run."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on training machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def epoch_curves(history: list[dict[str, float]]):
    """Spearman and MSE per epoch for each split that has them."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = [row["epoch"] for row in history]
    for split in ("train", "val", "test"):
        if f"{split}_spearman" in history[0]:
            left.plot(epochs, [row[f"{split}_spearman"] for row in history], marker="o", label=split)
        if f"{split}_mse" in history[0]:
            right.plot(epochs, [row[f"{split}_mse"] for row in history], marker="o", label=split)
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
