"""`score`: inputs + a model URI -> scores, on the engine asked for.

Shards and tables (any input whose suffix an entry of extensions.SCORE_INPUTS reads) go to the curation job
(workflows/curate.py: parquet parts, resumable, a summary, the kept samples); image files and folders are scored
into one table written in `--out`'s format (extensions.SCORE_OUTPUTS), or, on an engine that writes its own output
(Spark), into a parquet folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from clip_aesthetics.engines import engine
from clip_aesthetics.errors import ScoringInputError
from clip_aesthetics.settings import ScoreSettings

FOLDER_OUTPUT = Path("scores.parquet")  # --out left at its default, for jobs that write a folder


def score_step(settings: ScoreSettings, inputs: list[str]) -> None:
    from clip_aesthetics.scoring.files import DEFAULT_STORE
    from clip_aesthetics.scoring.samples import expand, is_curation_input

    if settings.tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = settings.tracking_uri  # before MLflow is imported
    store = os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_STORE)
    if any(is_curation_input(p) for p in inputs):  # shards/{00000..00099}.tar, tables/*.parquet, ...
        return _curate(settings, store, expand(inputs))
    if settings.min_score or settings.min_percentile or settings.top_fraction or settings.write_shards:
        raise ScoringInputError("--min-score, --min-percentile, --top-fraction and --write-shards apply to webdataset shards (.tar) "
                                "and parquet/arrow tables of image bytes, not to image files and folders")
    if engine(settings.engine).score_files is not None:
        return _files_elsewhere(settings, store, inputs)
    _files_here(settings, store, inputs)


def _default_out(settings: ScoreSettings) -> Path:
    return FOLDER_OUTPUT if settings.out == ScoreSettings.model_fields["out"].default else settings.out


def _files_here(settings: ScoreSettings, store: str, inputs: list[str]) -> None:
    from clip_aesthetics.scoring.files import (check_output, check_store, collect_images, refuse_an_input,
                                               score_files, write_gallery)
    from clip_aesthetics.scoring.outputs import write_scores, writer_for

    out = settings.out
    check_output(out)
    paths = collect_images([Path(p) for p in inputs])
    refuse_an_input(out, paths)
    writer_for(out)  # a format no writer has: refused before any work
    check_store(settings.model, store)
    frame = score_files(paths, settings.model, settings.num_workers, settings.precision)
    write_scores(frame, out)
    if settings.gallery:
        write_gallery(frame, Path(settings.gallery))
    failed = int((frame["error"] != "").sum())
    print(f"scored {len(frame) - failed} image(s), {failed} failed; wrote {out}")
    if len(frame) - failed:
        scores = frame["score"].dropna()
        low, high = frame.attrs["score_range"]
        print(f"scores: mean {scores.mean():.4f}, min {scores.min():.4f}, median {scores.median():.4f}, "
              f"max {scores.max():.4f} (on the model's {low:g}-{high:g} scale)")
    print(frame.attrs["reference"])


def _files_elsewhere(settings: ScoreSettings, store: str, inputs: list[str]) -> None:
    from clip_aesthetics.scoring.files import check_spark_output, check_store, write_gallery
    from clip_aesthetics.scoring.uris import describe_model, model_scale

    where = engine(settings.engine)
    out = _default_out(settings)
    check_spark_output(str(out), inputs)
    where.start()  # first: without what the engine needs nothing else matters
    check_store(settings.model, store)
    print(f"model: {describe_model(settings.model)}")
    done = where.score_files(inputs, settings.model, out, settings.spark_partitions, settings.precision)
    if settings.gallery:  # from the parquet the engine wrote; files on this machine's filesystem show as thumbnails
        import pandas as pd

        frame = pd.read_parquet(out)
        frame["path"] = frame["path"].str.removeprefix("file:")
        write_gallery(frame.sort_values("path"), Path(settings.gallery), model_scale(settings.model))
    print(f"scored {done['scored']} image(s), {done['failed']} failed (model loaded {done['model_loads']} "
          f"time(s), once per executor process); wrote {out}")


def _curate(settings: ScoreSettings, store: str, paths: list[str]) -> None:
    """Shards and tables: one parquet part per input (resumable), a summary, the kept samples."""
    from clip_aesthetics.scoring import curate
    from clip_aesthetics.scoring.files import check_store
    from clip_aesthetics.scoring.samples import is_curation_input
    from clip_aesthetics.workflows.curate import curate_inputs

    if settings.write_shards and not (settings.min_score.strip() or settings.min_percentile.strip()
                                      or settings.top_fraction):
        raise ScoringInputError("--write-shards needs --min-score, --min-percentile or --top-fraction to say what to "
                                "keep")
    others = [p for p in paths if not is_curation_input(p)]
    if others:
        from clip_aesthetics.scoring.samples import suffixes

        raise ScoringInputError(f"score either webdataset shards and tables, or image files and folders, not both "
                                f"in one job: {others[0]} is none of {', '.join(suffixes())}")
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise ScoringInputError(f"no such file: {missing[0]}")
    out = _default_out(settings)
    curate.check_targets(paths, out, Path(settings.write_shards) if settings.write_shards else None)
    check_store(settings.model, store)
    curate_inputs(paths, settings.model, out, engine=settings.engine, image_column=settings.image_column,
                  min_score=float(settings.min_score) if settings.min_score.strip() else None,
                  min_percentile=float(settings.min_percentile) if settings.min_percentile.strip() else None,
                  top_fraction=settings.top_fraction or None,
                  write_shards=Path(settings.write_shards) if settings.write_shards else None,
                  gallery=Path(settings.gallery) if settings.gallery else None, fresh=settings.fresh,
                  precision=settings.precision)
