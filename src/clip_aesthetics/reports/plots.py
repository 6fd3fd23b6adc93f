"""Per-epoch metrics and test predictions -> matplotlib figures for the MLflow run."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on training machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def epoch_curves(history: list[dict[str, float]], selected: str = "val_spearman", reported: str = "test_spearman"):
    """The metric a head kind is selected by and the one it reports, per epoch for each split that has them (left),
    and its loss (right)."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = [row["epoch"] for row in history]
    shown = dict.fromkeys(m.split("_", 1)[1] for m in (reported, selected))  # spearman; pair_accuracy, pair_logloss
    for name in shown:
        for split in ("train", "val", "test"):
            if f"{split}_{name}" in history[0]:
                left.plot(epochs, [row[f"{split}_{name}"] for row in history], marker="o",
                          label=f"{split} {name}" if len(shown) > 1 else split)
    error = "mse" if "train_mse" in history[0] else "loss"
    for split in ("train", "val", "test"):
        key = f"{split}_{error}"
        if key in history[0]:
            right.plot(epochs, [row[key] for row in history], marker="o", label=split)
    left.set(xlabel="epoch", ylabel=", ".join(shown), title=f"selected by {selected}, reported by {reported}")
    right.set(xlabel="epoch", ylabel="MSE (the data's scale)" if error == "mse" else "training loss",
              title="squared error" if error == "mse" else "the head kind's loss")
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
