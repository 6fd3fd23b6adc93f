"""`score`: inputs + a model URI -> one row per sample, in the output `--out` names, on the engine asked for.

One pipeline for every input: the inputs are expanded once into readers' inputs (image files and folders; shards
and tables of image bytes; any format added to extensions.SCORE_INPUTS), the output is chosen by `--out`'s suffix
(extensions.SCORE_OUTPUTS) and checked with everything else before any work, the model is resolved and fetched
once, the engine scores (reader -> scorer -> writer), then the report: counts and scores for files; for shards
and tables a summary, the kept samples and new shards of them; a gallery for either.
"""

from __future__ import annotations

from pathlib import Path

from clip_aesthetics.engines import engine
from clip_aesthetics.errors import ScoringInputError
from clip_aesthetics.settings import ScoreSettings


def score_step(settings: ScoreSettings, inputs: list[str]) -> None:
    from clip_aesthetics.scoring import guards
    from clip_aesthetics.scoring.job import Scored, ScoreJob, model_scale, rows
    from clip_aesthetics.scoring.outputs import is_uri, output_for, write_table, writer_for
    from clip_aesthetics.scoring.samples import plan
    from clip_aesthetics.scoring.uris import download_model, model_identity, resolve
    from clip_aesthetics.tracking.stores import check_store, use_store

    store = use_store(settings.tracking_uri)
    where = engine(settings.engine)
    where.start(settings)  # without what the engine needs (Spark: pyspark, Java) nothing else matters
    found = plan(inputs, remote=where.writes_parts)
    out = settings.out or ("scores.csv" if found.per_file and not where.writes_parts else "scores.parquet")
    given = [*found.files, *found.containers, *found.given]
    guards.check_uri(out, per_file=found.per_file, engine_writes=where.writes_parts)
    if not is_uri(out):
        out = Path(out)
        guards.refuse_holding_inputs("--out", out, out.resolve(), given, "it would be written over; give the scores "
                                     "a file or folder of their own, e.g. scores.csv")
    output = output_for(out, in_parts=not found.per_file or (where.writes_parts and writer_for(Path(out)).parts))
    selecting = settings.min_score is not None or settings.min_percentile is not None or settings.top_fraction
    if found.per_file and (selecting or settings.write_shards):
        raise ScoringInputError("--min-score, --min-percentile, --top-fraction and --write-shards apply to webdataset "
                                "shards (.tar) and parquet/arrow tables of image bytes, not to image files and folders")
    if settings.write_shards and not selecting:
        raise ScoringInputError("--write-shards needs --min-score, --min-percentile or --top-fraction to say what to "
                                "keep")
    if output.table:
        guards.check_table(output.path, given)
    if output.parts is not None and not output.uri:
        (guards.check_spark_folder if found.per_file and where.writes_parts else guards.check_parts)(
            str(output.parts), given)
    if settings.write_shards:
        guards.check_kept_shards(Path(settings.write_shards), output.parts, given)
    check_store(settings.model, store)
    ref = resolve(settings.model)
    print(f"model: {ref.describe()}")
    folder = download_model(settings.model)  # once: every scorer of the job loads this copy
    score_range, reference = model_scale(folder)
    if settings.min_percentile is not None and reference is None:  # refused before any scoring
        raise ScoringInputError(f"--min-percentile {settings.min_percentile:g}: {settings.model} has no reference "
                                "distribution, so its percentiles are undefined; select with --min-score or "
                                "--top-fraction")
    identity = {**model_identity(ref, folder), "image_column": settings.image_column}
    job = ScoreJob(found, settings.model, folder, identity, output, settings.image_column, settings.precision,
                   settings.num_workers, settings.spark_partitions)
    if not found.per_file:
        _prepare_parts(job, settings.fresh)
    scored = Scored(rows(job, where.score(job)), score_range, reference)
    if output.table:
        write_table(scored.rows, output)
    _report(job, scored, settings, where.writes_parts)


def _prepare_parts(job, fresh: bool) -> None:
    """The parts folder of containers: resumed only when the same model and options wrote it (or emptied, fresh)."""
    from clip_aesthetics.scoring import curate

    curate.check_resumable(job.output.parts, job.identity, fresh)
    job.output.parts.mkdir(parents=True, exist_ok=True)
    total = len(job.inputs.containers)
    if len(job.todo) < total:
        print(f"resuming: {total - len(job.todo)} of {total} input(s) already have a complete part in "
              f"{job.output.parts}, scored by the same model with the same options")


def _report(job, scored, settings: ScoreSettings, distributed: bool) -> None:
    from clip_aesthetics.scoring import curation_report
    from clip_aesthetics.scoring.reference import describe

    frame, (low, high) = scored.rows, scored.score_range
    failed = int((frame["error"].fillna("") != "").sum())
    loads = f" (model loaded {job.counts.get('model_loads', 0)} time(s), once per executor process)" \
        if distributed else ""
    if job.inputs.per_file:
        print(f"scored {len(frame) - failed} image(s), {failed} failed{loads}; wrote {job.output.path}")
        if len(frame) - failed:
            s = frame["score"].dropna()
            print(f"scores: mean {s.mean():.4f}, min {s.min():.4f}, median {s.median():.4f}, max {s.max():.4f} (on the "
                  f"model's {low:g}-{high:g} scale)")
    else:
        summary = curation_report.write_summary(frame, job.output.parts, scored.score_range, scored.reference)
        where = "" if not job.output.table else f" and {job.output.path} (one table)"
        print(f"wrote {job.output.parts}: {len(job.inputs.containers)} part(s), one row per sample (a parquet "
              f"dataset){where}; summary in {job.output.report}")
        for line in curation_report.summary_lines(summary):
            print(line)
    print(describe(scored.reference))
    if settings.min_score is not None or settings.top_fraction or settings.min_percentile is not None:
        curation_report.keep(frame, job, settings.min_score, settings.top_fraction or None, settings.min_percentile,
                             Path(settings.write_shards) if settings.write_shards else None)
    if settings.gallery:
        gallery = Path(settings.gallery)
        gallery.parent.mkdir(parents=True, exist_ok=True)
        gallery.write_bytes(curation_report.gallery_page(frame, scored.score_range, job.inputs.containers,
                                                         job.image_column))
        print(f"gallery: {gallery}")
