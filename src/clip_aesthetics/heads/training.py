"""A dataset of embeddings + labels -> a trained head, evaluated on every split after every epoch (no logging here)."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from clip_aesthetics.embedding.features import Dataset
from clip_aesthetics.extensions import HEADS
from clip_aesthetics.heads import metrics
from clip_aesthetics.heads.head import HeadSpec, build_head, fit, head_outputs, n_outside_range, predict_scores, prepare
from clip_aesthetics.settings import TrainSettings

SELECTION_METRIC = "val_spearman"  # select on val, report test (a head kind may name its own: kinds.HeadKind)


@dataclass
class TrainResult:
    spec: HeadSpec
    history: list[dict[str, float]] = field(default_factory=list)  # one row of metrics per epoch
    best_epoch: int = 0
    best_state: dict | None = None
    test_pred: np.ndarray | None = None  # scores of the best epoch (the data's scale), aligned with dataset.test.ids
    seconds: float = 0.0  # fitting time, evaluation included
    ridge_lambda: float | None = None  # the penalty chosen on val, for head=ridge
    # How best_epoch was chosen: SELECTION_METRIC; "last_epoch" without a val split; "undefined" when no
    # epoch had a defined SELECTION_METRIC (the last epoch is kept, but it is no result to compare or register).
    selection: str = ""
    degenerate: str = ""  # why the kept model cannot rank images (constant or mostly clipped scores), or ""
    metric: str = SELECTION_METRIC  # what the epoch was kept by: the head kind's selection metric
    reported: str = "test_spearman"  # what the run reports: the head kind's



def train_and_evaluate(
    dataset: Dataset, train: TrainSettings, seed: int, on_epoch: Callable[[int, dict, dict], None]
) -> TrainResult:
    """Fit the head; after every epoch evaluate all splits on the data's scale and keep the best by val."""
    scale, offset = dataset.target(train.norm)
    kind = HEADS.get(train.head)
    refuse_untrainable(train.head, kind, dataset.offers, "the dataset")
    spec = HeadSpec(train.head, dataset.train.embeddings.shape[1], train.embed_norm, scale, offset,
                    dataset.score_range, bins=dataset.bins if kind.trains_on == "votes" else 0)
    threshold = dataset.threshold
    features = {name: prepare(getattr(dataset, name).embeddings, spec.embed_norm) for name in ("train", "val", "test")}
    torch.manual_seed(seed)
    head = build_head(spec)
    result = TrainResult(spec, metric=kind.selection_metric, reported=kind.reported_metric)
    has_val = len(dataset.val.ids) > 1
    has_scores = "scores" in dataset.offers  # a pair table's images have none: its metrics are its kind's

    def after_epoch(epoch: int, train_loss: float) -> None:
        row = {"epoch": epoch, "train_loss": train_loss}
        test_outputs = head_outputs(head, spec, features["test"])
        test_pred = np.clip(test_outputs, *spec.score_range)
        row["test_clipped_predictions"] = n_outside_range(test_outputs, spec.score_range)  # a broken model shows here
        if has_scores:
            row["train_mse"] = metrics.mse(dataset.train.scores, predict_scores(head, spec, features["train"]))
            if has_val:
                row.update(metrics.evaluate("val", dataset.val.scores, predict_scores(head, spec, features["val"]),
                                            threshold))
            row.update(metrics.evaluate("test", dataset.test.scores, test_pred, threshold))
        if kind.metrics is not None:
            for name in ("val", "test") if has_val else ("test",):
                row.update(kind.metrics(name, head, spec, features[name], getattr(dataset, name)))
        result.history.append(row)
        if not has_val or keeps(row, result.history[result.best_epoch - 1] if result.best_epoch else None,
                                result.metric):
            result.best_epoch, result.best_state, result.test_pred = epoch, copy.deepcopy(head.state_dict()), test_pred
        on_epoch(epoch, row, head.state_dict())

    started = time.perf_counter()
    x, targets = kind.fit_inputs(dataset.train, features["train"], spec) if kind.fit_inputs is not None else \
        (features["train"], spec.targets(dataset.train.scores))
    closed_form = kind.closed_form
    if closed_form is not None:  # one step: one "epoch", metrics logged at step 1
        val_targets = spec.targets(dataset.val.scores) if has_val else None
        result.ridge_lambda = closed_form(head, x, targets, features["val"] if has_val else None, val_targets)
        result.seconds = time.perf_counter() - started
        residual = spec.targets(head_outputs(head, spec, features["train"])) - targets
        after_epoch(1, float(np.mean(residual ** 2)))
    else:
        fit(head, x, targets, train.epochs, train.lr, train.batch_size, seed, after_epoch, kind.loss)
        result.seconds = time.perf_counter() - started
    best = result.history[result.best_epoch - 1]
    if kind.finish is not None:  # the spec the kept epoch is saved with (a pairwise head's scale), and its scores
        head.load_state_dict(result.best_state)
        result.spec = spec = kind.finish(head, spec, features["train"])
        outputs = head_outputs(head, spec, features["test"])
        result.test_pred = np.clip(outputs, *spec.score_range)
        best["test_clipped_predictions"] = n_outside_range(outputs, spec.score_range)
    result.selection = (result.metric if metrics.is_defined(best.get(result.metric)) else "undefined") \
        if has_val else "last_epoch"
    result.degenerate = degeneracy(result.test_pred, best["test_clipped_predictions"], spec.score_range)
    return result


NEEDS = {
    "scores": "scores, and {what} is a table of pairwise preferences without any: train head=pairwise on it, or "
              "measure other models on it with `evaluate --pairs`",
    "votes": "rating distributions, and {what} has none: use AVA (its c1..c10) or a labels table with vote counts "
             "named by vote_columns= (e.g. c1,c2,c3,c4,c5)",
    "pairs": "pairwise preferences, and {what} has none: give labels= a pair table with the columns image_a, image_b "
             "and a preference (a, b, tie, or the share preferring image_a)",
}


def refuse_untrainable(head: str, kind, offers: set[str], what: str) -> None:
    """A head kind whose labels the data does not have (rating distributions, preferences): refused in one line."""
    if kind.trains_on not in offers:
        from clip_aesthetics.data.tables import LabelsError

        raise LabelsError(f"head={head} trains on " + NEEDS.get(kind.trains_on, kind.trains_on + " ({what})").format(
            what=what))


def keeps(row: dict, best: dict | None, metric: str = SELECTION_METRIC) -> bool:
    """Whether epoch `row` replaces the best so far: by val (never test); an undefined value never beats a
    defined one, and while none is defined the latest epoch is kept."""
    if best is None:
        return True
    new, old = (metrics.ranking_key(r.get(metric), metric) for r in (row, best))
    return new > old or not old[0]


def degeneracy(test_pred: np.ndarray, n_clipped: int, score_range: tuple[float, float] = (1.0, 10.0)) -> str:
    """Why a model's test scores cannot rank images, or "" when they can."""
    if len(test_pred) > 1 and np.ptp(test_pred) == 0:
        return f"constant predictions: all {len(test_pred)} test images scored {test_pred[0]:.4f}"
    if n_clipped > len(test_pred) / 2:
        return (f"{n_clipped} of {len(test_pred)} test predictions fell outside {score_range[0]:g}-"
                f"{score_range[1]:g} and were clipped to its ends")
    return ""


def backbone_label(clip: str) -> str:
    """b16, a hub model's name, or a local folder's name: short enough for a run name."""
    return Path(clip).name if Path(clip).expanduser().is_dir() else clip.split("/")[-1]


def default_run_name(clip: str, train: TrainSettings) -> str:
    name = backbone_label(clip)
    head = "" if train.head == "linear" else f"-{train.head}"
    embed_norm = "" if train.embed_norm == "none" else f"-{train.embed_norm}"
    return f"{name}-{'normed' if train.norm else 'raw'}{head}{embed_norm}"
