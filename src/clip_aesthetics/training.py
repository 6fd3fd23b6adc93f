"""Cached embeddings + labels -> a trained head, evaluated every epoch, logged as one MLflow run."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from . import ava, metrics, plots, tracking
from .config import DataSettings, TrainSettings
from .head import (SCORE_RANGE, HeadSpec, build_head, fit, fit_ridge, head_outputs, n_outside_range, predict_scores,
                   prepare)
from .pipeline import Dataset, EmbedReport, load_dataset


@dataclass
class TrainResult:
    spec: HeadSpec
    history: list[dict[str, float]] = field(default_factory=list)  # one row of metrics per epoch
    best_epoch: int = 0
    best_state: dict | None = None
    test_pred: np.ndarray | None = None  # 1-10 scores of the best epoch, aligned with dataset.test.ids
    seconds: float = 0.0  # fitting time, evaluation included
    ridge_lambda: float | None = None  # the penalty chosen on val, for head=ridge


def train_and_evaluate(
    dataset: Dataset, train: TrainSettings, seed: int, on_epoch: Callable[[int, dict, dict], None]
) -> TrainResult:
    """Fit the head; after every epoch evaluate all splits on the 1-10 scale and keep the best by val."""
    spec = HeadSpec(train.head, dataset.train.embeddings.shape[1], train.embed_norm, ava.target_scale(train.norm))
    features = {name: prepare(getattr(dataset, name).embeddings, spec.embed_norm) for name in ("train", "val", "test")}
    torch.manual_seed(seed)
    head = build_head(spec)
    result = TrainResult(spec)
    has_val = len(dataset.val.ids) > 1

    def after_epoch(epoch: int, train_loss: float) -> None:
        row = {"epoch": epoch, "train_loss": train_loss,
               "train_mse": metrics.mse(dataset.train.scores, predict_scores(head, spec, features["train"]))}
        test_outputs = head_outputs(head, spec, features["test"])
        test_pred = np.clip(test_outputs, *SCORE_RANGE)
        row["test_clipped_predictions"] = n_outside_range(test_outputs)  # a broken model shows here
        if has_val:
            row.update(metrics.evaluate("val", dataset.val.scores, predict_scores(head, spec, features["val"])))
        row.update(metrics.evaluate("test", dataset.test.scores, test_pred))
        result.history.append(row)
        # Select on val (never on test); without a val split the last epoch is kept.
        previous_best = result.history[result.best_epoch - 1] if result.best_epoch else None
        if previous_best is None or not has_val or row["val_spearman"] > previous_best["val_spearman"]:
            result.best_epoch, result.best_state, result.test_pred = epoch, copy.deepcopy(head.state_dict()), test_pred
        on_epoch(epoch, row, head.state_dict())

    started = time.perf_counter()
    targets = dataset.train.scores / spec.target_scale
    if spec.kind == "ridge":  # closed form: one "epoch", metrics logged at step 1
        val_targets = dataset.val.scores / spec.target_scale if has_val else None
        result.ridge_lambda = fit_ridge(head, features["train"], targets, features["val"] if has_val else None,
                                        val_targets)
        result.seconds = time.perf_counter() - started
        residual = head_outputs(head, spec, features["train"]) / spec.target_scale - targets
        after_epoch(1, float(np.mean(residual ** 2)))
        return result
    fit(head, features["train"], targets, train.epochs, train.lr, train.batch_size, seed, after_epoch)
    result.seconds = time.perf_counter() - started
    return result


def clip_label(clip: str) -> str:
    """b16, a hub model's name, or a local folder's name: short enough for a run name."""
    return Path(clip).name if Path(clip).expanduser().is_dir() else clip.split("/")[-1]


def default_run_name(clip: str, train: TrainSettings) -> str:
    name = clip_label(clip)
    head = "" if train.head == "linear" else f"-{train.head}"
    embed_norm = "" if train.embed_norm == "none" else f"-{train.embed_norm}"
    return f"{name}-{'normed' if train.norm else 'raw'}{head}{embed_norm}"


def log_epoch(epoch: int, row: dict, state: dict) -> None:
    """Per-epoch logging into the active run: metrics at step=epoch and a checkpoint."""
    tracking.log_metrics({k: v for k, v in row.items() if k != "epoch" and np.isfinite(v)}, step=epoch)
    tracking.log_state(state, f"checkpoints/epoch_{epoch:03d}.pt")


def tracked_training(report: EmbedReport, data: DataSettings, clip: str, train: TrainSettings) -> TrainResult:
    """Inside an active MLflow run: train, and log params, per-epoch metrics, artifacts and the scorer model."""
    dataset = load_dataset(data, report.cache, report.table)
    tracking.log_params({
        **data.model_dump(), **train.model_dump(), "clip": clip, "clip_model_id": report.source.model_id,
        "clip_revision": report.source.revision, "embedding_dim": dataset.train.embeddings.shape[1],
        "n_train": len(dataset.train.ids), "n_val": len(dataset.val.ids), "n_test": len(dataset.test.ids),
        "n_skipped": len(dataset.skipped), "device": report.device, "train_device": "cpu",
        **tracking.library_versions(),
    })
    tracking.log_csv(dataset.skipped, "data/skipped.csv")
    result = train_and_evaluate(dataset, train, data.seed, log_epoch)
    best = result.history[result.best_epoch - 1]
    if result.ridge_lambda is not None:
        tracking.log_metrics({"ridge_lambda": result.ridge_lambda})
    tracking.log_metrics({"best_epoch": result.best_epoch, "train_seconds": result.seconds,
                          **{f"best_{k}": v for k, v in best.items() if k.startswith(("val_", "test_")) and np.isfinite(v)}})
    predictions = pd.DataFrame({"image_id": dataset.test.ids, "score_true": dataset.test.scores,
                                "score_pred": result.test_pred})
    tracking.log_csv(predictions, "predictions/test.csv")
    for figure, name in ((plots.epoch_curves(result.history), "plots/epoch_metrics.png"),
                         (plots.predicted_vs_true(dataset.test.scores, result.test_pred,
                                                  f"test, epoch {result.best_epoch}"), "plots/test_scatter.png")):
        tracking.log_figure(figure, name)
        plots.close(figure)
    log_scorer_model(result, report)
    return result


def log_scorer_model(result: TrainResult, report: EmbedReport, bundle_clip: Path | None = None) -> str:
    """The best epoch's head plus what rebuilds the image path (CLIP id + revision, processor, norms)."""
    import tempfile

    spec_doc = {"head": result.spec.to_dict(), "best_epoch": result.best_epoch,
                "clip": {"model_id": report.source.model_id, "revision": report.source.revision}}
    with tempfile.TemporaryDirectory() as tmp:
        artifacts = tracking.scorer_artifacts(Path(tmp), result.best_state, spec_doc, bundle_clip)
        return tracking.log_scorer("model", artifacts)
