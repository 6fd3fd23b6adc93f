"""Any scorer model (a training run's, a registered version, an imported published head) x any labelled dataset ->
an MLflow run of its metrics; several models side by side as children of one parent, with a leaderboard.

Each image is embedded once per backbone, precision and decoding, in the same cache training uses: a model
evaluated on the data it was trained on finds its embeddings there and reproduces its run's numbers exactly.
A model on another scale than the data is measured on ranks only (Spearman; Pearson, which a linear map
from its scale to the data's does not change), never compared in absolute terms.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import mlflow
import numpy as np
import pandas as pd

from clip_aesthetics.reports import gallery as gallery_module
from clip_aesthetics.heads import metrics
from clip_aesthetics.reports import plots
from clip_aesthetics.tracking import runs as tracking
from clip_aesthetics.embedding.embed import batch_for, default_workers, embed_to_cache
from clip_aesthetics.errors import UserError
from clip_aesthetics.errors import non_finite_reason
from clip_aesthetics.heads.head import predict_scores, prepare
from clip_aesthetics.data.labels import Labelled
from clip_aesthetics.embedding.pipeline import dataset_split, open_cache, to_embed
from clip_aesthetics.scoring.uris import download_model, load_scorer, registered_version

RANK_METRICS = ("spearman", "pearson")
SCALE_TAG = "scale_mismatch"


class EvaluationError(UserError, ValueError):
    """Nothing to evaluate (no images left in the split) or a model that cannot be evaluated."""


@dataclass
class Evaluated:
    uri: str
    name: str
    run_id: str = ""
    metrics: dict | None = None
    predictions: pd.DataFrame | None = None
    note: str = ""


def pairs_of(labelled: Labelled, data, part: str) -> pd.DataFrame | None:
    """A pair table's pairs of the split `part` (or all of them); None for data of scores."""
    if labelled.pairs is None:
        return None
    return labelled.pairs if part == "all" else dataset_split(labelled, data).pairs[part]


def measure_pairs(pairs: pd.DataFrame, ids: np.ndarray, scores: np.ndarray) -> tuple[dict, str]:
    """Pairwise accuracy of any model's scores on pairs whose two images it scored (ties excluded; a predicted tie
    counts half); no log-loss, which would need the model's scores as logits."""
    from clip_aesthetics.heads.pairwise import pair_metrics

    position = pd.Index(ids)
    a, b = position.get_indexer(pairs["a_id"]), position.get_indexer(pairs["b_id"])
    ok = (a >= 0) & (b >= 0)
    ok[ok] = np.isfinite(scores[a[ok]]) & np.isfinite(scores[b[ok]])
    preference = pairs["preference"].to_numpy(np.float64)[ok]
    values = pair_metrics("eval", scores[a[ok]] - scores[b[ok]], preference, logloss=False)
    values.update({"eval_pairs": float(ok.sum()), "eval_pairs_decided": float(np.sum(preference != 0.5))})
    note = (f"pairwise accuracy on {int(np.sum(preference != 0.5))} pairs with a preference (ties excluded; chance "
            f"is 0.5), {int((~ok).sum())} pair(s) without two scored images left out")
    return values, note


def images_of(labelled: Labelled, data, part: str) -> pd.DataFrame:
    """image_id, score of the split `part` (train, val, test) or of every image (`all`)."""
    if part == "all":
        return labelled.frame[["image_id", "score"]].reset_index(drop=True)
    frame = getattr(dataset_split(labelled, data), part)
    return frame.rename(columns={"mean_score": "score"})[["image_id", "score"]]


def score_images(scorer, labelled: Labelled, ids: np.ndarray, cache_dir, num_workers: int = -1):
    """(scores aligned with ids, NaN where the image failed; reasons by id) through the shared embedding cache, or,
    for a scorer that computes no embedding of its own (an exported model), image by image on its runtime."""
    from clip_aesthetics.backbones.families import BackboneSource

    if not getattr(scorer, "uses_embedding_cache", True):
        frame = scorer.score([labelled.sources[int(i)] for i in ids], num_workers)
        return frame["score"].to_numpy(dtype=float), {int(i): e for i, e in zip(ids, frame["error"]) if e}

    source = BackboneSource(scorer.clip_info["model_id"], scorer.clip_info["revision"], None)
    precision = str(scorer.dtype).removeprefix("torch.")
    cache = open_cache(cache_dir, source, labelled.images, precision, scorer.decoding, scorer.model.embedding_dim)
    todo = to_embed(cache, [(int(i), labelled.sources[int(i)]) for i in ids], labelled.images)
    if todo:
        batch = batch_for(scorer.device)
        embed_to_cache(cache, todo, scorer.model, scorer.processor, scorer.dtype, batch,
                       default_workers(num_workers), 4096, progress=True, decoding=scorer.decoding)
    cached = cache.load()
    rows = pd.Index(cached.ids).get_indexer(ids)
    scores = np.full(len(ids), np.nan)
    ok = rows >= 0
    if ok.any():
        features = prepare(cached.embeddings[rows[ok]].astype(np.float32), scorer.spec.embed_norm)
        scores[ok] = predict_scores(scorer.head, scorer.spec, features)
    reasons = cached.failures.set_index("image_id")["reason"]
    failed = {int(i): str(reasons.get(int(i), "no embedding")) for i in ids[~ok]}
    for i, value in zip(ids[ok], scores[ok], strict=True):
        if not np.isfinite(value):  # never measured as a number: the image's error says why
            failed[int(i)] = non_finite_reason(value)
    scores[~np.isfinite(scores)] = np.nan
    return scores, failed


def same_scale(model_range, data_range) -> bool:
    return tuple(map(float, model_range)) == tuple(map(float, data_range))


def measure(true: np.ndarray, pred: np.ndarray, model_range, data_range, threshold: float) -> tuple[dict, str]:
    """The metrics of one model on one set, and how they were computed (for the run's description)."""
    values = metrics.evaluate("eval", true, pred, threshold)
    if same_scale(model_range, data_range):
        return values, f"on the data's {data_range[0]:g}-{data_range[1]:g} scale, accuracy at {threshold:g}"
    kept = {k: v for k, v in values.items() if k.rsplit("_", 1)[-1] in RANK_METRICS}
    note = (f"the model scores on a {model_range[0]:g}-{model_range[1]:g} scale and the data on "
            f"{data_range[0]:g}-{data_range[1]:g}: evaluated on ranks only. eval_spearman as is; eval_pearson after a "
            "linear least-squares map of the model's scores onto the data's scale (Pearson is unchanged by it); "
            "no MSE, MAE or accuracy, which would compare numbers on different scales")
    return kept, note


def model_id_of(uri: str) -> str | None:
    """The logged model behind a model URI, for linking metrics to it."""
    rest = uri.removeprefix("models:/")
    if rest.startswith("m-"):
        return rest.split("/")[0]
    found = registered_version(uri)
    if found is not None:
        return found[1].model_id
    if not uri.startswith("runs:/"):
        return None
    run_id, name = uri.removeprefix("runs:/").split("/", 1)
    try:
        run = mlflow.MlflowClient().get_run(run_id)
        logged = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list",
                                             filter_string=f"source_run_id = '{run_id}' and name = '{name}'")
    except mlflow.exceptions.MlflowException:  # a URI MLflow resolves differently: the metrics stay on the run
        return None
    return logged[0].model_id if logged else None


def short_name(uri: str) -> str:
    rest = uri.removeprefix("models:/").removeprefix("runs:/")
    return rest.replace("/", "-").replace("@", "-")[:60]


def evaluate_models(uris: list[str], labelled: Labelled, data, cache_dir, experiment: str, part: str = "test",
                    run_name: str = "", gallery: bool = True, num_workers: int = -1) -> list[Evaluated]:
    """One run per model; with several, children of one parent that holds the leaderboard."""
    images = images_of(labelled, data, part)
    pairs = pairs_of(labelled, data, part)  # a pair table's pairs of that part, split once for every model
    if len(images) < 2:
        raise EvaluationError(f"the {part} split of {labelled.location} holds {len(images)} image(s); need two")
    results = [Evaluated(uri, short_name(uri)) for uri in dict.fromkeys(uris)]
    for result in results:  # every URI resolved before any run opens: a typo costs no run and no other model
        try:
            download_model(result.uri)
        except UserError as error:
            result.note = f"not measured: {error}"
    if all(r.note for r in results):
        raise EvaluationError("; ".join(r.note.removeprefix("not measured: ") for r in results))
    if len(results) == 1:
        scorer = _loaded(results[0])
        if scorer is None:
            raise EvaluationError(results[0].note.removeprefix("not measured: "))
        with tracking.run(experiment, run_name or f"evaluate-{results[0].name}"):
            _evaluate_one(results[0], scorer, labelled, data, images, pairs, cache_dir, part, gallery,
                          num_workers)
        return results
    with tracking.run(experiment, run_name or "evaluate", tags={"clip_aesthetics.evaluation": "parent"}) as parent:
        tracking.log_params({"models": ",".join(r.uri for r in results), "eval_split": part, **labelled.record()})
        for result in results:
            scorer = None if result.note else _loaded(result)
            if scorer is None:  # reported, and the others are still measured
                print(f"{result.uri}: {result.note}", file=sys.stderr)
                continue
            with tracking.run("", result.name, parent_run_id=parent.info.run_id):
                _evaluate_one(result, scorer, labelled, data, images, pairs, cache_dir, part, gallery,
                              num_workers)
            del scorer  # one model in memory at a time
        board = leaderboard(results)
        tracking.log_csv(board, "comparison/leaderboard.csv")
        tracking.log_table(board, "comparison/leaderboard.json")
        tracking.set_description(_board_text(board, labelled, part))
        if gallery:
            _log_disagreement(results, labelled)
    return results


def _loaded(result: Evaluated):
    """The model's scorer, loaded before its run opens; None (and the reason in the result's note) if it cannot be."""
    try:
        return load_scorer(result.uri)
    except UserError as error:
        result.note = f"not measured: {error}"
        return None


def unmeasured(results: list[Evaluated]) -> list[Evaluated]:
    return [r for r in results if r.metrics is None]


def _evaluate_one(result: Evaluated, scorer, labelled: Labelled, data, images: pd.DataFrame,
                  pairs: pd.DataFrame | None, cache_dir, part: str,
                  gallery: bool, num_workers: int) -> None:
    result.run_id = tracking.active_run_id()
    ids = images["image_id"].to_numpy()
    scores, failed = score_images(scorer, labelled, ids, cache_dir, num_workers)
    ok = np.isfinite(scores)
    if ok.sum() < 2:
        raise EvaluationError(f"{result.uri}: fewer than two images of the {part} split could be scored")
    true = images["score"].to_numpy()
    if pairs is not None:  # preferences, not scores: measured by pairwise accuracy, on any model's scale
        values, note = measure_pairs(pairs, ids, scores)
    else:
        values, note = measure(true[ok], scores[ok], scorer.score_range, labelled.score_range, labelled.threshold)
    result.metrics, result.note = values, note
    tracking.log_params({"model_uri": result.uri, "eval_split": part, "n_images": int(ok.sum()),
                         "n_failed": int((~ok).sum()), "model_score_range": ",".join(
                             f"{v:g}" for v in scorer.score_range), "clip_model_id": scorer.clip_info["model_id"],
                         **labelled.record()})
    tracking.set_tags({SCALE_TAG: str(pairs is None and not same_scale(scorer.score_range,
                                                                        labelled.score_range)).lower()})
    tracking.log_metrics(values)
    model_id = model_id_of(result.uri)
    if model_id:
        tracking.link_metrics_to_model(result.run_id, model_id, values, f"{labelled.name}#evaluation", labelled.digest)
    tracking.log_dataset(data, labelled, {"evaluation": {"num_rows": int(ok.sum()), "part": part}})
    names = labelled.frame.set_index("image_id")["image"].reindex(ids).to_numpy()
    result.predictions = pd.DataFrame({"image_id": ids, "image": names, "score_true": true, "score_pred": scores,
                                       "error": [failed.get(int(i), "") for i in ids]})
    tracking.log_csv(result.predictions, "predictions/eval.csv")
    if pairs is None:
        figure = plots.calibration(true[ok], scores[ok], gallery_module.bucket_edges(*labelled.score_range))
        tracking.log_figure(figure, "plots/calibration.png")
        plots.close(figure)
    tracking.set_description(f"{result.uri} on the {part} images of `{labelled.name}` (digest {labelled.digest}): "
                             f"{note}.")
    shown = ", ".join(f"{k} {v:.4f}" for k, v in values.items() if np.isfinite(v))
    print(f"{result.uri}: {shown} ({int(ok.sum())} images, {int((~ok).sum())} failed)")


def board_metric(results: list[Evaluated]) -> str:
    """What the leaderboard ranks by: eval_spearman, or eval_pair_accuracy on a pair table."""
    return "eval_pair_accuracy" if any("eval_pair_accuracy" in (r.metrics or {}) for r in results) \
        else "eval_spearman"


def leaderboard(results: list[Evaluated]) -> pd.DataFrame:
    """One row per model, best eval_spearman (on pairs: eval_pair_accuracy) first (an undefined one last), with the
    child's own values."""
    rows = [{"model": r.uri, "run_id": r.run_id, **(r.metrics or {}), "note": r.note} for r in results]
    board = pd.DataFrame(rows)
    ranked = board_metric(results)
    keys = [metrics.ranking_key(row.get(ranked), ranked) for row in rows]
    order = sorted(range(len(rows)), key=lambda i: keys[i], reverse=True)
    return board.iloc[order].reset_index(drop=True)


def _board_text(board: pd.DataFrame, labelled: Labelled, part: str) -> str:
    shown = ["eval_pair_accuracy", "eval_pairs"] if "eval_pair_accuracy" in board else ["eval_spearman", "eval_pearson"]
    lines = [f"{len(board)} models on the same {part} images of `{labelled.name}` (digest {labelled.digest}), best "
             f"{shown[0]} first.", "", f"| model | {' | '.join(shown)} |", "|---|---|---|"]
    for row in board.to_dict("records"):
        if str(row.get("note", "")).startswith("not measured"):
            lines.append(f"| {row['model']} | {row['note']} | |")
            continue
        lines.append(f"| {row['model']} | " + " | ".join(f"{row.get(k, float('nan')):.4f}" for k in shown) + " |")
    return "\n".join(lines)


def _log_disagreement(results: list[Evaluated], labelled: Labelled) -> None:
    page = gallery_module.disagreement_page("Where the models disagree", labelled, {
        r.name: r.predictions for r in results if r.predictions is not None})  # the unmeasured have none
    if page is not None:
        tracking.log_text(page.decode(), "gallery/compare.html")
