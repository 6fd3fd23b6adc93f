"""`main` and `train`: one cell of the grid (a backbone's cached embeddings + a head) -> one MLflow run.

The run holds the parameters as asked and as resolved, the dataset, per-epoch metrics (step=epoch) and checkpoints,
the kept epoch's best_* metrics, the test predictions, plots, the test gallery and the scorer model. Training
itself (heads/training.py) returns numbers and logs nothing.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from clip_aesthetics.backbones.families import resolve_backbone
from clip_aesthetics.data.labels import Labelled, read_dataset
from clip_aesthetics.data.splits import settle, split_table
from clip_aesthetics.embedding.features import load_dataset
from clip_aesthetics.embedding.filling import EmbedReport, locate_cache
from clip_aesthetics.heads.head import state_bytes
from clip_aesthetics.heads.training import TrainResult, default_run_name, train_and_evaluate
from clip_aesthetics.reports import gallery as gallery_module
from clip_aesthetics.reports import plots
from clip_aesthetics.scoring.model import MODEL_NAME, log_scorer
from clip_aesthetics.scoring.reference import KEY as REFERENCE_KEY
from clip_aesthetics.scoring.reference import describe as reference_line
from clip_aesthetics.scoring.reference import make as make_reference
from clip_aesthetics.settings import CacheSettings, DataSettings, EmbedSettings, TrainSettings
from clip_aesthetics.tracking import runs as tracking
from clip_aesthetics.tracking.runs import DEGENERATE_TAG, REPORTED_BY_TAG, SELECTED_BY_TAG, SELECTION_TAG
from clip_aesthetics.tracking.stores import use_store
from clip_aesthetics.workflows.embed import clip_params, embed_and_log


def train_step(command, embed_first: bool) -> None:
    """`main` (embed_first) and `train`: one cell of the grid as one run."""
    use_store(command.tracking_uri)  # the one way every command chooses its tracking store
    source = resolve_backbone(command.clip, command.clip_revision)
    data, train = command.part(DataSettings), command.part(TrainSettings)
    embed = command.part(EmbedSettings if embed_first else CacheSettings)
    labelled = checked_dataset(data, embed.cache_dir, (train.head,))  # a bad table or parameter: before a run opens
    report = None if embed_first else locate_cache(labelled, embed, source)
    if report is not None:
        print(f"precision: {report.precision_reason}")
    started = time.perf_counter()
    run_name = command.run_name or default_run_name(command.clip, train)
    with tracking.run(command.experiment, run_name) as active:
        if report is None:
            report = embed_and_log(labelled, embed, command.clip, source)
        result = train_and_log(report, {**data.model_dump(), "clip": command.clip}, train, data.seed,
                               gallery=command.gallery)
    print(outcome(active.info.run_id, run_name, result) + f", {time.perf_counter() - started:.1f}s")
    for warning in run_warnings(result):
        print(f"warning: {warning}")


def checked_dataset(data: DataSettings, cache_dir, heads: tuple[str, ...] = ()) -> Labelled:
    """The dataset, read and checked, with the labels every head kind in `heads` trains on (a distribution head:
    vote counts), and its split settled once, every part of it one that can be trained on or measured."""
    from clip_aesthetics.extensions import HEADS
    from clip_aesthetics.heads.training import refuse_untrainable

    labelled = read_dataset(data, cache_dir)
    for head in dict.fromkeys(heads):
        refuse_untrainable(head, HEADS.get(head), labelled.offers, labelled.name)
    settle(labelled, data)
    if len(labelled.skipped):
        print(f"{len(labelled.skipped)} labelled row(s) set aside before embedding (listed in data/skipped.csv), "
              f"e.g. {labelled.skipped['image'].iat[0]!r}: {labelled.skipped['reason'].iat[0]}")
    return labelled


def outcome(run_id: str, run_name: str, result: TrainResult) -> str:
    best = result.history[result.best_epoch - 1]
    if result.selection == "last_epoch":
        chosen = "last epoch kept (no validation split)"
    elif result.selection == "undefined":
        chosen = f"no epoch had a defined {result.metric}: last epoch kept, not a result"
    else:
        chosen = f"best epoch {result.best_epoch} by {result.metric} {best[result.metric]:.4f}"
    return f"run {run_id} ({run_name}): {chosen}, {result.reported} {_number(best.get(result.reported, float('nan')))}"


def run_warnings(result: TrainResult) -> list[str]:
    """What a user must know before trusting the run's model (also tagged on the run)."""
    found = []
    if result.selection == "undefined":
        found.append(f"{result.metric} was undefined at every epoch (constant predictions on the validation "
                     f"images); the run is tagged {SELECTION_TAG}=undefined and `register` will not promote it. "
                     "Try a larger lr, more epochs, norm=true or head=ridge")
    if result.degenerate:
        found.append(f"the kept model is degenerate ({result.degenerate}); tagged {DEGENERATE_TAG}")
    return found


def _number(value: float) -> str:
    return f"{value:.4f}" if np.isfinite(value) else "undefined"


def train_and_log(report: EmbedReport, params: dict, train: TrainSettings, seed: int, gallery: bool = True
                  ) -> TrainResult:
    """Inside an active run: train on the report's dataset (its split settled), and log `params` (the settings as
    given) beside what was resolved, the datasets, per-epoch metrics, artifacts and the scorer model."""
    labelled = report.labelled
    dataset = load_dataset(report.cache, labelled)
    tracking.log_params({
        **params, **train.model_dump(), **clip_params(report.source), **labelled.record(),
        "embedding_dim": dataset.train.embeddings.shape[1], "n_train": len(dataset.train.ids),
        "n_val": len(dataset.val.ids), "n_test": len(dataset.test.ids), "n_skipped": len(dataset.skipped),
        "device": report.device, "train_device": "cpu", "compute_precision": report.precision,
        "precision_reason": report.precision_reason,
        "decoding": report.decoding, **tracking.library_versions(),
    })
    tracking.log_dataset(labelled, {context: {"num_rows": len(getattr(dataset, part).ids)}
                                    for context, part in (("train", "train"), ("validation", "val"), ("test", "test"))})
    tracking.log_csv(dataset.skipped, "data/skipped.csv")
    if labelled.names_images:  # which image went where (a seeded split is reproduced from these)
        tracking.log_csv(split_table(dataset.split, labelled), "data/split.csv")
    tracking.log_csv(test_sources(labelled, dataset.test.ids), TEST_SOURCES)  # what export calibrates on
    result = train_and_evaluate(dataset, train, seed, log_epoch)
    best = result.history[result.best_epoch - 1]
    if result.ridge_lambda is not None:
        tracking.log_metrics({"ridge_lambda": result.ridge_lambda})
    tracking.log_metrics({"train_seconds": result.seconds})
    tracking.set_tags({SELECTION_TAG: result.selection, SELECTED_BY_TAG: result.metric,
                       REPORTED_BY_TAG: result.reported, "kept_epoch": result.best_epoch,
                       **({DEGENERATE_TAG: result.degenerate} if result.degenerate else {})})
    if result.selection != "undefined":  # an epoch chosen on nothing is no result: no best_* to compare
        tracking.log_metrics({"best_epoch": result.best_epoch, **best_metrics(best)})
    warnings = run_warnings(result)
    if warnings:  # shown on the run's page and in the runs table
        tracking.set_description("\n\n".join(f"**Warning**: {w}." for w in warnings))
    predictions = pd.DataFrame({"image_id": dataset.test.ids, "score_true": dataset.test.scores,
                                "score_pred": result.test_pred})
    if labelled.names_images:  # each prediction beside its image as the table names it, joined by key
        predictions.insert(1, "image", labelled.frame.set_index("image_id")["image"].reindex(dataset.test.ids)
                           .to_numpy())
    tracking.log_csv(predictions, "predictions/test.csv")
    figures = {"plots/epoch_metrics.png": plots.epoch_curves(result.history, result.metric, result.reported)}
    if "scores" in dataset.offers:  # against true scores (a pair table has none)
        figures.update({
            "plots/test_scatter.png": plots.predicted_vs_true(dataset.test.scores, result.test_pred,
                                                              f"test, epoch {result.best_epoch}"),
            "plots/calibration.png": plots.calibration(dataset.test.scores, result.test_pred,
                                                       gallery_module.bucket_edges(*dataset.score_range)),
            "plots/residuals.png": plots.residuals(dataset.test.scores, result.test_pred)})
    for name, figure in figures.items():
        tracking.log_figure(figure, name)
    if gallery:
        log_test_gallery(labelled, predictions, {k: plots.png_bytes(figures[k]) for k in
                                                 ("plots/calibration.png", "plots/residuals.png") if k in figures})
    for figure in figures.values():
        plots.close(figure)
    reference = make_reference(result.test_pred, f"this model's predictions on the {len(dataset.test.ids)} test "
                               f"images of {labelled.name}", dataset.test.scores, result.spec.score_range,
                               report.precision)
    tracking.log_params({"percentile_reference": reference_line(reference)})
    log_scorer(MODEL_NAME, result.best_state, {**scorer_spec(result, report),
                                               **({REFERENCE_KEY: reference.to_doc()} if reference else {})})
    return result


TEST_SOURCES = "data/test_images.csv"  # image_id, file: where each test image was read (empty: bytes in a table)


def test_sources(labelled: Labelled, ids) -> pd.DataFrame:
    """The test images' files, by id, as they were read (what `export` calibrates on without reading the data again)."""
    files = [labelled.sources.get(int(i)) for i in ids]
    return pd.DataFrame({"image_id": ids, "file": [str(f) if isinstance(f, Path) else "" for f in files]})


def log_test_gallery(labelled: Labelled, predictions: pd.DataFrame, plot_pngs: dict) -> None:
    """gallery/test.html: the test images by predicted score, top, bottom, biggest misses, calibration."""
    rows = gallery_module.rows_of(labelled, predictions["image_id"], predictions["score_pred"],
                                  predictions["score_true"])
    truth = labelled.truth
    summary = [f"{len(rows)} test images of {labelled.name}, scores on its {labelled.scale_text()} scale (predicted, "
               f"and {truth} where shown)", f"buckets {gallery_module.bucket_width(*labelled.score_range):g} wide; at "
               f"most {gallery_module.PER_BUCKET} images shown per bucket, evenly spread over its scores"]
    page = gallery_module.page("Test images by predicted score", rows, labelled.score_range, summary, plot_pngs)
    tracking.log_text(page.decode(), "gallery/test.html")


def best_metrics(row: dict) -> dict[str, float]:
    return {f"best_{k}": v for k, v in row.items() if k.startswith(("val_", "test_")) and np.isfinite(v)}


def log_epoch(epoch: int, row: dict, state: dict) -> None:
    """Per-epoch logging into the active run: metrics at step=epoch and a checkpoint."""
    tracking.log_metrics({k: v for k, v in row.items() if k != "epoch" and np.isfinite(v)}, step=epoch)
    tracking.log_bytes(state_bytes(state), f"checkpoints/epoch_{epoch:03d}.pt")


def scorer_spec(result: TrainResult, report: EmbedReport) -> dict:
    """What rebuilds the image path at scoring time: the head, the exact CLIP (id + revision), the precision
    its embeddings were computed in and how images were decoded (the scorer does the same)."""
    from clip_aesthetics.extensions import HEADS

    return {"head": result.spec.to_dict(), "best_epoch": result.best_epoch, "precision": report.precision,
            "extra_outputs": list(HEADS.get(result.spec.kind).extra_outputs),
            "decoding": report.decoding,
            "clip": {"model_id": report.source.model_id, "revision": report.source.revision}}
