"""`score` on shards and tables: inputs + a model URI -> parts in a folder, a summary, the kept samples, a gallery.

The whole job on one screen: the model is fetched once and identified, the output folder is checked (resumed only
when the same model and options wrote it), every input without a complete part is scored (here, or as one Spark
task per input), then the report is written from the parts.
"""

from __future__ import annotations

from pathlib import Path

from clip_aesthetics import engines
from clip_aesthetics.errors import ScoringInputError
from clip_aesthetics.scoring import curate, curation_report
from clip_aesthetics.scoring.samples import is_shard


def curate_inputs(paths: list[str], model_uri: str, out: Path, engine: str = "local", image_column: str = "",
                  min_score: float | None = None, top_fraction: float | None = None,
                  min_percentile: float | None = None, write_shards: Path | None = None,
                  gallery: Path | None = None, fresh: bool = False, precision: str | None = None) -> dict:
    """Score, summarise and select; prints what it did, returns the summary."""
    from clip_aesthetics.scoring.reference import describe as reference_line, of_spec
    from clip_aesthetics.scoring.uris import describe_model, download_model, model_identity, read_spec, score_range_of

    where = engines.engine(engine)
    where.start()  # first: without what the engine needs (Spark: pyspark, Java) nothing else matters
    print(f"model: {describe_model(model_uri)}")
    folder = download_model(model_uri)  # once: every task loads this copy
    reference = of_spec(read_spec(folder))
    if min_percentile is not None and reference is None:  # refused before any scoring
        raise ScoringInputError(f"--min-percentile {min_percentile:g}: {model_uri} has no reference distribution, "
                                "so its percentiles are undefined; select with --min-score or --top-fraction")
    job = {**model_identity(model_uri, folder), "image_column": image_column}
    curate.check_resumable(out, job, fresh)
    out.mkdir(parents=True, exist_ok=True)
    todo = curate.not_done(paths, out)
    if len(todo) < len(paths):
        print(f"resuming: {len(paths) - len(todo)} of {len(paths)} input(s) already have a complete part in {out}, "
              "scored by the same model with the same options")
    if todo:
        where.score_inputs(todo, folder, out, job, image_column, precision)
    frame = curate.read_parts(out, paths)
    score_range = score_range_of(folder)
    summary = curation_report.write_summary(frame, out, score_range, reference)
    report = out / curate.REPORT
    print(f"wrote {out}: {len(paths)} part(s), one row per sample (a parquet dataset); summary in "
          f"{report / curate.SUMMARY} and {report / curate.HISTOGRAM}")
    for line in curation_report.summary_lines(summary):
        print(line)
    print(reference_line(reference))
    if min_score is not None or top_fraction or min_percentile is not None:
        kept = curation_report.select(frame, min_score, top_fraction, min_percentile)
        kept.to_parquet(report / curate.KEPT, index=False)
        print(f"kept {len(kept)} of {len(frame)} sample(s) ({report / curate.KEPT})")
        if write_shards is not None:
            written = curation_report.write_kept_shards(kept, paths, write_shards, out)
            copied = sum(count for _, count in written.values())
            shards = {path: is_shard(path) for path in kept["input"].unique()}  # once per input, not per row
            expected = int(kept["input"].map(shards).sum())
            print(f"wrote {len(written)} shard(s) holding {copied} kept sample(s) into {write_shards}; which input each "
                  f"came from: {write_shards / curate.WRITTEN}")
            for shard, (source, count) in written.items():
                if Path(shard).name != Path(source).name:
                    print(f"  {Path(shard).name} <- {source} (another input has the same name)")
            if copied != expected:
                raise ScoringInputError(f"{expected} kept sample(s) are in shards but {copied} were copied: an "
                                        "input changed while the job ran; score it again with --fresh")
    if gallery is not None:
        gallery.parent.mkdir(parents=True, exist_ok=True)
        gallery.write_bytes(curation_report.gallery_page(frame, paths, image_column, score_range))
        print(f"gallery: {gallery}")
    return summary
