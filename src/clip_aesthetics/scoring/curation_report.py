"""A score job's report, from its rows: the summary of shards and tables (counts, failures by reason, percentiles)
and its histogram under `_report/`, the kept samples (a score threshold and/or the best share of all inputs) and
those copied into new inputs of their format (`--write-shards`), and the one gallery page of every job."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from clip_aesthetics.atomic import atomic_path
from clip_aesthetics.scoring.curate import HISTOGRAM, KEPT, REPORT, SUMMARY, WRITTEN, path_digest
from clip_aesthetics.scoring.samples import is_shard, read_input, reader_for, suffix_of

PERCENTILES = (1, 5, 10, 25, 50, 75, 90, 95, 99)


def summarise(frame: pd.DataFrame, score_range: tuple[float, float], reference=None) -> dict:
    scores = frame["score"].dropna().to_numpy(dtype=np.float64)
    failed = frame.loc[frame["score"].isna(), "error"].fillna("").map(lambda e: e.split(" (")[0] or "unknown")
    summary = {"count": int(len(frame)), "scored": int(len(scores)), "failed": int(len(frame) - len(scores)),
               "failures_by_reason": {k: int(v) for k, v in failed.value_counts().items()},
               "mean": float(scores.mean()) if len(scores) else None,
               "percentiles": ({f"p{q}": float(v) for q, v in zip(PERCENTILES, np.percentile(scores, PERCENTILES),
                                                                   strict=True)} if len(scores) else {}),
               "score_range": list(score_range),
               # what each sample's `percentile` compares with, and where the job's samples fall against it
               "reference": reference.what if reference is not None else None,
               "mean_percentile": (float(frame["percentile"].mean()) if reference is not None and len(scores)
                                   else None),
               "share_at_or_above_reference": ({f"p{q}": float(np.mean(frame["percentile"].dropna() >= q))
                                                for q in (50, 90, 99)} if reference is not None and len(scores)
                                               else {})}
    return summary


def summary_lines(summary: dict) -> list[str]:
    lines = [f"{summary['count']} sample(s): {summary['scored']} scored, {summary['failed']} failed"]
    lines += [f"  failed: {n} x {reason}" for reason, n in summary["failures_by_reason"].items()]
    if summary["mean"] is not None:
        low, high = summary["score_range"]
        lines.append(f"  mean {summary['mean']:.4f} (the model's {low:g}-{high:g} scale)")
        lines.append("  " + ", ".join(f"{k} {v:.4f}" for k, v in summary["percentiles"].items()))
    if summary.get("mean_percentile") is not None:
        lines.append(f"  mean percentile {summary['mean_percentile']:.1f}; at or above the reference's " + ", ".join(
            f"{k}: {v:.1%}" for k, v in summary["share_at_or_above_reference"].items()))
    return lines


def report_folder(out: Path) -> Path:
    folder = Path(out) / REPORT
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_summary(frame: pd.DataFrame, out: Path, score_range: tuple[float, float], reference=None) -> dict:
    from clip_aesthetics.reports import gallery, plots

    summary = summarise(frame, score_range, reference)
    report = report_folder(out)
    (report / SUMMARY).write_text(json.dumps(summary, indent=2))
    figure = plots.histogram(frame["score"].dropna().to_numpy(), gallery.bucket_edges(*score_range))
    (report / HISTOGRAM).write_bytes(plots.png_bytes(figure))
    plots.close(figure)
    return summary


def select(frame: pd.DataFrame, min_score: float | None = None, top_fraction: float | None = None,
           min_percentile: float | None = None) -> pd.DataFrame:
    """The kept rows: score >= min_score, percentile >= min_percentile and/or among the best `top_fraction` of all
    inputs (failures count as inputs, never kept); ties at the cut are broken by input and key order. Best first."""
    scored = frame[frame["score"].notna()].sort_values(["score", "input", "key"], ascending=[False, True, True],
                                                       kind="stable")
    if min_score is not None:
        scored = scored[scored["score"] >= min_score]
    if min_percentile is not None:
        scored = scored[scored["percentile"] >= min_percentile]
    if top_fraction is not None:
        scored = scored.head(math.floor(top_fraction * len(frame) + 1e-9))
    # (parts written before percentiles existed have none: an empty column)
    return scored.reindex(columns=["key", "input", "score", "percentile"]).reset_index(drop=True)


def kept_shard_names(paths: list[str]) -> dict[str, str]:
    """Input shard -> the name of its kept shard: its own name, or, where two inputs share a name (a/00000.tar,
    b/00000.tar), the name with a digest of its full path, so that neither overwrites the other."""
    shards = [p for p in paths if is_shard(p)]
    counts = Counter(Path(p).name for p in shards)
    named = {}
    for path in shards:
        name = Path(path).name
        if counts[name] > 1:
            suffix = suffix_of(name)
            name = f"{name[: len(name) - len(suffix)]}-{path_digest(path)}{suffix}"
        named[path] = name
    return named


def write_kept_shards(kept: pd.DataFrame, paths: list[str], folder: Path, out: Path) -> dict[str, tuple[str, int]]:
    """New shards in `folder` (one per input shard with kept samples) holding only the kept samples, every member
    copied byte for byte, gzipped where the input was; written atomically. Returns {shard: (input, samples)}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    wanted = kept.groupby("input")["key"].apply(set).to_dict()
    names = kept_shard_names(paths)
    written = {}
    for path in paths:
        keys = wanted.get(str(path))
        if not keys or not is_shard(path):
            continue
        target = folder / names[path]
        chosen = (sample for sample in read_input(path, keep_members=True) if sample.key in keys)
        with atomic_path(target) as tmp:
            count = reader_for(path).write_kept(chosen, tmp, path)
        written[str(target)] = (str(path), count)
    manifest = {"out": str(Path(out).resolve()),
                "shards": {Path(k).name: {"input": str(Path(v[0]).resolve()), "samples": v[1]}
                           for k, v in written.items()}}
    (folder / WRITTEN).write_text(json.dumps(manifest, indent=2))
    return written


def keep(frame: pd.DataFrame, job, min_score: float | None, top_fraction: float | None, min_percentile: float | None,
         write_shards: Path | None) -> pd.DataFrame:
    """The kept samples of a job on containers, in `_report/kept.parquet`, and copied into new shards when asked."""
    from clip_aesthetics.errors import ScoringInputError

    paths, report = list(job.inputs.containers), job.output.report
    kept = select(frame, min_score, top_fraction, min_percentile)
    report.mkdir(parents=True, exist_ok=True)
    kept.to_parquet(report / KEPT, index=False)
    print(f"kept {len(kept)} of {len(frame)} sample(s) ({report / KEPT})")
    if write_shards is not None:
        written = write_kept_shards(kept, paths, write_shards, job.output.parts)
        copied = sum(count for _, count in written.values())
        shards = {path: is_shard(path) for path in kept["input"].unique()}  # once per input, not per row
        expected = int(kept["input"].map(shards).sum())
        print(f"wrote {len(written)} shard(s) holding {copied} kept sample(s) into {write_shards}; which input each "
              f"came from: {write_shards / WRITTEN}")
        for shard, (source, count) in written.items():
            if Path(shard).name != Path(source).name:
                print(f"  {Path(shard).name} <- {source} (another input has the same name)")
        if copied != expected:
            raise ScoringInputError(f"{expected} kept sample(s) are in shards but {copied} were copied: an input "
                                    "changed while the job ran; score it again with --fresh")
    return kept


def gallery_page(frame: pd.DataFrame, score_range: tuple[float, float], containers=(), image_column: str = ""
                 ) -> bytes:
    """The gallery of any score job's rows: the page picks which rows it shows, then only those images are read again
    (a few hundred at most, whatever the collection's size): files by their `path`, samples of the `containers`
    (shards and tables) by their key."""
    from clip_aesthetics.images.decode import ImageError, load_source
    from clip_aesthetics.reports import gallery, plots

    per_file = not containers
    keys = frame["path"].astype(str) if per_file else frame["key"].astype(str)
    sources = keys.map(lambda p: p.removeprefix("file:")) if per_file else frame["input"].astype(str)
    shown: set = set()

    def noting(where):
        def load():
            shown.add(where)
            raise LookupError("not read yet")
        return load

    def rows(load_of) -> list:
        captions = frame["caption"] if "caption" in frame.columns else pd.Series("", index=frame.index)
        percentiles = frame["percentile"] if "percentile" in frame.columns else pd.Series(np.nan, index=frame.index)
        return [gallery.Row(key, f"{key}" + (f" | {str(text)[:120]}" if isinstance(text, str) and text else ""),
                            float(score), load_of((source, key)), error=str(error or ""), percentile=float(percentile))
                for key, source, score, error, text, percentile in zip(keys, sources, frame["score"], frame["error"],
                                                                        captions, percentiles, strict=True)]

    scores = frame["score"].dropna().to_numpy()
    noun = "input(s)" if per_file else "sample(s)"
    summary = [f"{len(frame)} {noun}: {len(scores)} scored, {len(frame) - len(scores)} not (reasons below); "
               f"scores on the model's {score_range[0]:g}-{score_range[1]:g} scale"]
    figure = plots.histogram(scores, gallery.bucket_edges(*score_range))
    histogram = {"histogram": plots.png_bytes(figure)}
    plots.close(figure)
    title = "Scored images" if per_file else "Scored samples"
    gallery.page(title, rows(noting), score_range, summary, histogram)  # which rows are shown
    found: dict = {}
    if per_file:
        found = {(source, key): Path(source) for source, key in shown}
    for path in containers:
        wanted = {key for source, key in shown if source == str(path)}
        if wanted:
            for sample in read_input(path, image_column, name=Path(path).name):
                if sample.key in wanted and sample.image is not None:
                    found[(str(path), sample.key)] = sample.image
    def image(source):
        if source is None:
            raise ImageError("its image was not read again")
        return load_source(source)

    return gallery.page(title, rows(lambda where: (lambda source=found.get(where): image(source))), score_range,
                        summary, histogram)
