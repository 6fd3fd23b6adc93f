"""Sweep settings -> one parent run with a child run per grid point, finished children reused, a comparison.

Each CLIP model is embedded once for the whole sweep (the cache is shared by every child that uses
it). A grid point is reused when a FINISHED run in the experiment has the same key: the parameters
that decide its result, compared as strings, plus the version of this package's code.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from clip_aesthetics.backbones.families import resolve_backbone
from clip_aesthetics.embedding.filling import EmbedReport, embed_dataset
from clip_aesthetics.engines import embedder
from clip_aesthetics.errors import SweepError
from clip_aesthetics.heads.metrics import ranking_key
from clip_aesthetics.heads.training import SELECTION_METRIC, backbone_label, default_run_name
from clip_aesthetics.reports import gallery, plots
from clip_aesthetics.settings import DataSettings, EmbedSettings, SweepSettings, TrackingSettings, TrainSettings
from clip_aesthetics.tracking import runs as tracking
from clip_aesthetics.tracking.runs import CHILDREN_TAG, KEY_TAG, REPORTED_BY_TAG, SELECTED_BY_TAG, SWEEP_TAG
from clip_aesthetics.tracking.stores import use_store
from clip_aesthetics.workflows.embed import clip_params
from clip_aesthetics.workflows.train import checked_dataset, train_and_log


def code_version() -> str:
    """Content hash of this package's source, every sub-package included: a changed training code never reuses an
    old run."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def run_key(report: EmbedReport, data: DataSettings, train: TrainSettings) -> str:
    """Everything that decides a child's result, as strings (params are stored as strings)."""
    values = {**{k: str(v) for k, v in data.model_dump().items()}, **{k: str(v) for k, v in train.model_dump().items()},
              "ava_dir": str(Path(data.ava_dir).resolve()), **clip_params(report.source), "precision": report.precision,
              **(report.labelled.identity if report.labelled is not None else {}),
              "decoding": report.decoding,
              "code_version": code_version()}
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:24]


@dataclass
class Child:
    name: str
    clip: str
    train: TrainSettings
    run_id: str = ""
    status: str = "NOT RUN"  # FINISHED, REUSED or FAILED: reason
    error: str = ""


def child_names(grid: list[tuple[str, TrainSettings]], sweep: SweepSettings) -> list[str]:
    """Readable, distinct names: b16-normed, b32-raw, ... (longer only where short ones would clash)."""
    names = [default_run_name(clip, train) for clip, train in grid]
    if len(set(names)) < len(names):  # two local folders with the same name: use their paths
        names = [default_run_name(clip.strip("/").replace("/", "-"), train) for clip, train in grid]
    if len(sweep.lrs) > 1:
        names = [f"{name}-lr{train.lr:g}" for name, (_, train) in zip(names, grid, strict=True)]
    return names


def sweep_step(command) -> None:
    """`sweep`: the grid as child runs of one parent run; prints the children, best first."""
    use_store(command.tracking_uri)  # the one way every command chooses its tracking store
    from clip_aesthetics.reports.tables import as_text

    children = run_sweep(command.part(SweepSettings), command.part(DataSettings), command.part(EmbedSettings),
                         command.part(TrainSettings), command.part(TrackingSettings), command.clip_revision)
    print(as_text(summarise(children).drop(columns=["run_id"])))


def run_sweep(sweep: SweepSettings, data: DataSettings, embed: EmbedSettings, train: TrainSettings,
              track: TrackingSettings, clip_revision: str = "main") -> list[Child]:
    grid = sweep.grid(train)
    children = [Child(name, clip, t) for name, (clip, t) in zip(child_names(grid, sweep), grid, strict=True)]
    # Every backbone found (and of a supported family) before the parent run opens: a typo costs no run.
    sources = {clip: resolve_backbone(clip, clip_revision) for clip in dict.fromkeys(c.clip for c in children)}
    labelled = checked_dataset(data, embed.cache_dir, tuple(c.train.head for c in children))  # so is a bad table,
    # a split, or a head the data cannot train
    with tracking.run(track.experiment, track.run_name or "sweep", tags={SWEEP_TAG: "true"}) as parent:
        tracking.log_params({**sweep.model_dump(), **data.model_dump(), **train.model_dump(),
                             "code_version": code_version()})
        reports: dict[str, EmbedReport | Exception] = {}
        for child in children:
            if child.clip not in reports:  # once per CLIP model, for all its children
                reports[child.clip] = _embed_once(child.clip, sources[child.clip], labelled, embed)
            _run_child(child, reports[child.clip], parent, data, track.gallery)
        _log_dataset(labelled)
        table = summarise(children)
        _log_comparison(table, children)
        if track.gallery:
            _log_compare_gallery(reports, children)
    failed = [c for c in children if c.status == "FAILED"]
    if failed:
        raise SweepError("; ".join(f"{c.name}: {c.error}" for c in failed))
    return children


def _embed_once(clip: str, source, labelled, embed: EmbedSettings):
    try:
        report = embed_dataset(labelled, embed, source, elsewhere=embedder(embed))
    except Exception as error:  # recorded on each of this model's children; the other models go on
        return error
    tracking.log_params({f"clip_revision.{backbone_label(clip)}": report.source.revision})
    print(f"{backbone_label(clip)}: precision {report.precision_reason}")
    return report


def _run_child(child: Child, report, parent, data: DataSettings, gallery: bool = True) -> None:
    if isinstance(report, Exception):
        child.status, child.error = "FAILED", f"embedding failed: {report}"
        return
    key = run_key(report, data, child.train)
    reused = tracking.find_finished_run(parent.info.experiment_id, KEY_TAG, key)
    if reused:
        child.run_id, child.status = reused, "REUSED"
        return
    try:
        with tracking.run("", child.name, tags={KEY_TAG: key}, parent_run_id=parent.info.run_id) as run:
            child.run_id = run.info.run_id
            train_and_log(report, {**data.model_dump(), "clip": child.clip}, child.train, data.seed, gallery=gallery)
        child.status = "FINISHED"
    except Exception as error:  # the child run is marked FAILED by MLflow; the sweep goes on
        child.status, child.error = "FAILED", f"{type(error).__name__}: {error}"


def summarise(children: list[Child]) -> pd.DataFrame:
    """One row per child, best first: ranked by the metric its head kind is selected by (its `selected_by` tag),
    with what it reports; a child that is not comparable, or whose value is undefined, after every defined one."""
    rows = []
    for child in children:
        row = {"run_name": child.name, "run_id": child.run_id, "status": child.status, "clip": child.clip,
               "norm": child.train.norm, "head": child.train.head, "lr": child.train.lr,
               "embed_norm": child.train.embed_norm}
        if child.run_id and child.status != "FAILED":
            data = tracking.run_data(child.run_id)
            selected = data.tags.get(SELECTED_BY_TAG, SELECTION_METRIC)
            reported = data.tags.get(REPORTED_BY_TAG, "test_spearman")
            row.update({"selected_by": selected, "reported_by": reported, "best_epoch": data.metrics.get("best_epoch"),
                        **{f"best_{m}": data.metrics.get(f"best_{m}") for m in dict.fromkeys(
                            (selected, reported, "val_spearman", "test_spearman"))},
                        **{m: data.metrics.get(m) for m in ("test_spearman", "test_mse", "test_accuracy")}})
            row["not_comparable"] = tracking.not_comparable(data.tags)
        rows.append(row)
    table = pd.DataFrame(rows)
    chosen_by, _ = measures(table)
    if f"best_{chosen_by}" not in table:
        return table
    keys = [_ranking(row, chosen_by) for row in table.to_dict("records")]
    order = sorted(range(len(table)), key=lambda i: keys[i], reverse=True)
    return table.iloc[order].reset_index(drop=True)


def measures(table: pd.DataFrame) -> tuple[str, str]:
    """(what the children are compared by, what they report): their head kinds' metrics when they share them (a
    sweep of pairwise heads: val_pair_logloss, test_pair_accuracy), else Spearman, which every head on scores has."""
    selected = set(table["selected_by"].dropna()) if "selected_by" in table else set()
    reported = set(table["reported_by"].dropna()) if "reported_by" in table else set()
    return (selected.pop() if len(selected) == 1 else SELECTION_METRIC,
            reported.pop() if len(reported) == 1 else "test_spearman")


def _ranking(row: dict, metric: str) -> tuple:
    """Comparable first, then by `metric` at the child's best epoch (an undefined value after every defined one)."""
    return (not row.get("not_comparable"), ranking_key(row.get(f"best_{metric}"), metric))


def best_child(table: pd.DataFrame) -> dict | None:
    """The child to name as best: the first of the ranked table, if its selection metric is defined."""
    chosen_by, _ = measures(table)
    if table.empty or f"best_{chosen_by}" not in table:
        return None
    first = table.iloc[0].to_dict()
    usable, (defined, _) = _ranking(first, chosen_by)
    return first if usable and defined else None


def epoch_table(children: list[Child], metric: str = "test_spearman") -> pd.DataFrame:
    """The seed's table: one row per epoch, one column per grid point."""
    columns = {c.name: dict(tracking.metric_history(c.run_id, metric)) for c in children
               if c.run_id and c.status != "FAILED"}
    return pd.DataFrame(columns).rename_axis("epoch")


def _log_dataset(labelled) -> None:
    """The parent's input: the label table its children were trained and tested on, logged once."""
    tracking.log_dataset(labelled, {"all splits": {"num_rows": len(labelled.frame)}})


def _log_comparison(table: pd.DataFrame, children: list[Child]) -> None:
    tracking.log_table(table, "comparison/children.json")
    tracking.log_csv(table, "comparison/children.csv")
    chosen_by, reported = measures(table)
    epochs = epoch_table(children, reported)
    tracking.log_text(epochs.round(4).to_string(), "comparison/epoch_table.txt")
    tags = {CHILDREN_TAG: ",".join(c.run_id for c in children if c.run_id)}
    best = best_child(table)
    if best is not None:
        tags.update(best_run=best["run_id"], best_run_name=best["run_name"])
        tracking.log_metrics({f"best_{chosen_by}": best[f"best_{chosen_by}"],
                              f"best_{reported}": best[f"best_{reported}"]})
    tracking.set_tags(tags)
    tracking.set_description(_description(table, epochs))
    if not epochs.empty:
        figure = plots.sweep_curves(epochs, reported)
        tracking.log_figure(figure, f"comparison/{reported}_by_epoch.png")
        plots.close(figure)


def _log_compare_gallery(reports: dict, children: list[Child]) -> None:
    """gallery/compare.html: the test images the children rank most differently, with each child's score."""
    report = next((r for r in reports.values() if isinstance(r, EmbedReport) and r.labelled is not None), None)
    done = [c for c in children if c.run_id and c.status != "FAILED"]
    if report is None or len(done) < 2:
        return
    predictions = {child.name: tracking.load_csv(child.run_id, "predictions/test.csv") for child in done}
    page = gallery.disagreement_page("Where the children disagree", report.labelled, predictions)
    tracking.log_text(page.decode(), "gallery/compare.html")


def _description(table: pd.DataFrame, epochs: pd.DataFrame) -> str:
    """The parent's description in the UI: what was compared, the winner, and the seed's epoch table."""
    chosen_by, reported = measures(table)
    lines = [f"Sweep of {len(table)} grid points (backbone x target normalisation x head x lr x embedding "
             f"normalisation); each child is one training run, the best is chosen by `{chosen_by}` at its best epoch."]
    best = best_child(table)
    if best is not None:
        lines.append(f"Best: **{best['run_name']}** ({chosen_by} {best[f'best_{chosen_by}']:.4f}, "
                     f"{reported} {best[f'best_{reported}']:.4f}).")
    else:
        lines.append(f"No best child: none has a defined `{chosen_by}` (trained with val_fraction=0, or every "
                     f"epoch undefined) and a usable model; compare {reported} in the table below.")
    for row in table.to_dict("records"):
        if row.get("not_comparable"):
            lines.append(f"Not comparable: **{row['run_name']}** ({row['not_comparable']}).")
    if not epochs.empty:
        header = "| epoch | " + " | ".join(epochs.columns) + " |"
        rows = ["| " + " | ".join([str(epoch), *(f"{v:.4f}" for v in values)]) + " |"
                for epoch, values in zip(epochs.index, epochs.to_numpy(), strict=True)]
        lines += ["", f"{reported} per epoch:", "", header, "|---" * (len(epochs.columns) + 1) + "|", *rows]
    return "\n".join(lines)
