"""`evaluate`: any scorer model (a training run's, a registered version, an imported published head, an export) x
any labelled dataset -> an MLflow run of its metrics; several models side by side as children of one parent, with a
leaderboard.

The images are scored through the shared embedding cache (scoring/cached.py), so a model evaluated on the data it
was trained on reproduces its run's numbers exactly; the metrics, on ranks only for a model on another scale than
the data's, or pairwise accuracy on a pair table, come from heads/evaluation.py.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd

from clip_aesthetics.data.labels import Labelled, read_dataset
from clip_aesthetics.data.splits import settle
from clip_aesthetics.errors import UserError
from clip_aesthetics.heads import metrics
from clip_aesthetics.heads.evaluation import measure, measure_pairs, same_scale
from clip_aesthetics.reports import gallery as gallery_module
from clip_aesthetics.reports import plots
from clip_aesthetics.scoring.cached import score_images
from clip_aesthetics.scoring.uris import download_model, load_scorer, resolve
from clip_aesthetics.settings import DataSettings
from clip_aesthetics.tracking import runs as tracking
from clip_aesthetics.tracking.stores import use_store

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


def pairs_of(labelled: Labelled, part: str) -> pd.DataFrame | None:
    """A pair table's pairs of the split `part` (or all of them); None for data of scores."""
    if labelled.pairs is None:
        return None
    return labelled.pairs if part == "all" else labelled.split.pairs[part]


def images_of(labelled: Labelled, part: str) -> pd.DataFrame:
    """image_id, score of the split `part` (train, val, test) or of every image (`all`)."""
    if part == "all":
        return labelled.frame[["image_id", "score"]].reset_index(drop=True)
    frame = getattr(labelled.split, part)
    return frame.rename(columns={"mean_score": "score"})[["image_id", "score"]]


def short_name(uri: str) -> str:
    rest = uri.removeprefix("models:/").removeprefix("runs:/")
    return rest.replace("/", "-").replace("@", "-")[:60]


def evaluate_models(uris: list[str], labelled: Labelled, cache_dir, experiment: str, part: str = "test",
                    run_name: str = "", gallery: bool = True, num_workers: int = -1) -> list[Evaluated]:
    """One run per model; with several, children of one parent that holds the leaderboard."""
    images = images_of(labelled, part)
    pairs = pairs_of(labelled, part)  # a pair table's pairs of that part, split once for every model
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
            _evaluate_one(results[0], scorer, labelled, images, pairs, cache_dir, part, gallery,
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
                _evaluate_one(result, scorer, labelled, images, pairs, cache_dir, part, gallery,
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


def _evaluate_one(result: Evaluated, scorer, labelled: Labelled, images: pd.DataFrame,
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
    model_id = resolve(result.uri).model_id
    if model_id:
        tracking.link_metrics_to_model(result.run_id, model_id, values, f"{labelled.name}#evaluation", labelled.digest)
    tracking.log_dataset(labelled, {"evaluation": {"num_rows": int(ok.sum()), "part": part}})
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


def evaluate_step(command) -> None:
    """`evaluate`: models x one labelled dataset -> a run per model (children of one parent for several)."""
    use_store(command.tracking_uri)  # the one way every command chooses its tracking store
    uris = [u.strip() for u in command.models.split(",") if u.strip()]
    data = command.part(DataSettings)
    labelled = read_dataset(data, command.cache_dir)
    if command.pairs and labelled.pairs is None:
        from clip_aesthetics.data.tables import LabelsError

        raise LabelsError(f"--pairs {command.pairs}: not a pair table (it needs the columns image_a and image_b, and "
                          "a preference); a table of scores is --labels")
    if command.eval_split != "all" or labelled.pairs is not None:  # the split, settled once for every model
        settle(labelled, data, check=labelled.pairs is not None)
    results = evaluate_models(uris, labelled, command.cache_dir, command.experiment, command.eval_split,
                              command.run_name, command.gallery, command.num_workers)
    if len(results) > 1:
        from clip_aesthetics.reports.tables import as_text

        print(as_text(leaderboard(results).drop(columns=["note"])))
        missing = unmeasured(results)
        if missing:
            from clip_aesthetics.errors import EvaluationIncomplete

            reasons = "; ".join(f"{r.uri}: {r.note.removeprefix('not measured: ')}" for r in missing)
            raise EvaluationIncomplete(f"{len(missing)} of {len(results)} model(s) not measured (the others are in "
                                       f"the leaderboard): {reasons}")
