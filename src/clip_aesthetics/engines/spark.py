"""Apache Spark as the engine: image files + a scorer URI -> scores; AVA images -> the shared embedding cache.

The optional extra `spark` (`pip install -e '.[spark]'`). It uses the session the user's Spark provides
(spark-submit, a managed platform) or `local[*]`. Executors run this package from its installed
environment: a scorer or backbone is loaded once per executor Python process and reused by every partition
that process runs. A task given a GPU by Spark (`spark.task.resource.gpu.amount`) uses that GPU.

Outside local mode the model (or backbone) folder reaches executors as an archive (`addArchive`), unpacked
once per executor by Spark itself: nothing of it needs to be on a shared filesystem. What tasks read and
write on local paths (input files and shards, the output folder, the embedding cache) must be on a
filesystem every executor sees; a short probe job checks that before any work is handed out.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pandas as pd

from clip_aesthetics.engines import Engine
from clip_aesthetics.engines.spark_session import (
    SparkUnavailableError,
    absolute,
    check_shared,
    on_this_filesystem,
    once_per_executor,
    open_shipped,
    session,
    ship,
    task_device,
)
from clip_aesthetics.errors import ScoringInputError

__all__ = ["SPARK", "SparkUnavailableError", "embed_missing", "score_files", "score_job", "session"]
ROWS_PER_BATCH = 256  # images per Arrow batch handed to the scorer: bounds an executor's memory


def score_job(spark, job) -> pd.DataFrame | None:
    """A score job (scoring/job.py) on Spark tasks, each scoring samples with the same function as one process
    (curate.score_samples), the model loaded once per executor process. Per-file inputs are listed and read by Spark
    itself (binaryFile: local paths or any URI it reads), one row per file, written by Spark as the parquet folder
    (or returned, for a one-file table); containers are one task each, writing its part. Returns the rows it
    returns, else None (they are in the output's parts)."""
    paths = list(job.inputs.given if job.inputs.per_file else job.inputs.containers)
    parts = job.output.destination if job.output.parts is not None else ""  # where executors write
    # what executors must be able to write on a shared filesystem: the folder Spark makes its output in, or the
    # parts folder itself (not a URI of another filesystem, which Spark reaches itself)
    written = (str(Path(parts).parent) if job.inputs.per_file else parts) if parts and on_this_filesystem(parts) \
        else ""
    check_shared(spark, paths, [written] if written else [], "inputs and --out")
    shipped = ship(spark, job.model_folder)
    loads = spark.sparkContext.accumulator(0)
    try:
        if job.inputs.per_file:
            return _score_files(spark, job, paths, shipped, loads)
        _score_containers(spark, job, shipped, loads)
        return None
    finally:
        job.counts["model_loads"] = loads.value


def score_files(spark, inputs: list[str], model_uri: str, out: str, image_column: str = "",
                precision: str | None = None, partitions: int = 0) -> dict[str, int]:
    """On a session of one's own (a notebook's `spark` on a managed platform): score every image file under `inputs`
    (paths or URIs Spark reads) with `model_uri` into the parquet folder `out` (a path every executor writes, or a
    URI Spark writes), as `score --engine spark` does. Returns counts: scored, failed, model_loads."""
    from clip_aesthetics.scoring import guards
    from clip_aesthetics.scoring.job import ScoreJob
    from clip_aesthetics.scoring.outputs import output_for
    from clip_aesthetics.scoring.samples import plan
    from clip_aesthetics.scoring.uris import download_model, model_identity, resolve

    found = plan(list(inputs), remote=True)
    guards.check_uri(out, per_file=found.per_file, engine_writes=True)
    output = output_for(out, in_parts=True)
    if not output.uri:
        guards.check_spark_folder(str(output.parts), list(inputs))
    folder = download_model(model_uri)  # once, on the driver
    job = ScoreJob(found, model_uri, folder, model_identity(resolve(model_uri), folder), output, image_column,
                   precision, partitions=partitions)
    score_job(spark, job)
    rows = spark.read.parquet(output.destination)
    failed = rows.filter((rows.error.isNotNull()) & (rows.error != "")).count()
    return {"scored": rows.count() - failed, "failed": failed, "model_loads": job.counts.get("model_loads", 0)}


def _score_files(spark, job, inputs: list[str], shipped: str, loads) -> pd.DataFrame | None:
    from pyspark.errors import AnalysisException

    from clip_aesthetics.scoring.curate import score_samples
    from clip_aesthetics.scoring.requests import output_columns
    from clip_aesthetics.scoring.samples import reader_for, suffixes
    from clip_aesthetics.scoring.uris import read_spec

    pattern = "(?i)(" + "|".join(re.escape(s) for s in sorted(set(suffixes(per_file=True)))) + ")$"
    columns = output_columns(read_spec(job.model_folder))
    schema = ", ".join(["path string", *(f"{c} {'string' if c == 'error' else 'double'}" for c in columns)])
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(ROWS_PER_BATCH))
    try:
        files = spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(inputs)
        listed = sorted(_same_form(p) for p in files.inputFiles() if re.search(pattern, p))
    except AnalysisException as error:  # a path that does not exist, a filesystem Spark is not set up for
        raise ScoringInputError(f"Spark cannot read {', '.join(inputs)}: {str(error).splitlines()[0]}") from None
    if not listed:
        raise ScoringInputError(f"no file of the formats read ({', '.join(sorted(set(suffixes(True))))}) under "
                                f"{', '.join(inputs)}")
    rows = files.select("path", "content").filter(files.path.rlike(pattern))
    rows = rows.repartition(job.partitions) if job.partitions else rows
    present = {row.path for row in rows.select("path").collect()}
    precision = job.precision

    def score_partition(batches):
        scorer = _scorer(shipped, loads, precision)
        for batch in batches:
            samples = [reader_for(path).from_bytes(path, content) for path, content in
                       zip(batch["path"], batch["content"], strict=True)]
            yield score_samples(scorer, samples, num_workers=0).reindex(columns=["path", *columns])
            print(f"clip-aesthetics: scored {len(batch)} file(s) in pid {os.getpid()}", file=sys.stderr, flush=True)

    result = rows.mapInPandas(score_partition, schema)
    empty = [(path, *[None] * (len(columns) - 1), "empty file") for path in listed if path not in present]
    if empty:  # binaryFile skips 0-byte files: each gets its row back
        result = result.unionByName(spark.createDataFrame(empty, schema))
    if job.output.parts is None:  # one table: the rows come back here, in path order
        return result.toPandas().sort_values("path", kind="stable").reset_index(drop=True)
    result.write.mode("overwrite").parquet(job.output.destination)
    return None


def _score_containers(spark, job, shipped: str, loads) -> None:
    """One task per shard or table, each writing that input's part atomically (a shared filesystem on a cluster)."""
    out, image_column, identity, precision = absolute(job.output.parts), job.image_column, job.identity, job.precision
    tasks = [(path, absolute(path)) for path in job.todo]  # (as given, for the rows; absolute, for the executor)

    def score_one(task):
        from clip_aesthetics.scoring.curate import score_input

        given, absolute = task
        score_input(_scorer(shipped, loads, precision), given, Path(out), image_column, source=absolute, job=identity)

    if tasks:
        spark.sparkContext.parallelize(tasks, len(tasks)).foreach(score_one)


def _same_form(uri: str) -> str:
    """inputFiles() writes local files as file:///a, the binaryFile rows as file:/a: compare them alike."""
    return "file:/" + uri[len("file:///"):] if uri.startswith("file:///") else uri


def _scorer(shipped: str, loads, precision: str | None = None):
    """The scorer, loaded once per executor process (and per GPU), in the `precision` the driver was asked."""
    from clip_aesthetics.scoring.uris import load_scorer

    device = task_device()
    return once_per_executor(("scorer", shipped, str(device), precision),
                             lambda: load_scorer(open_shipped(shipped), precision).to(device), loads)


def embed_missing(cache_root: Path, todo: list[tuple[int, Path | bytes]], clip_folder: Path, precision: str,
                  batch_size: int, shard_size: int, partitions: int = 0, decoding: str = "full") -> int:
    """Embed the (id, file or image bytes) pairs on Spark: each task runs the project's embedding into new shards of
    the cache."""
    spark = session()
    files = [str(source) for _, source in todo if not isinstance(source, bytes)]
    check_shared(spark, files[:: max(1, len(files) // 32)], [str(cache_root)], "the images, and the cache folder")
    shipped = ship(spark, str(clip_folder))
    loads = spark.sparkContext.accumulator(0)
    rows = [(int(image_id), source if isinstance(source, bytes) else absolute(source)) for image_id, source in todo]
    slices = partitions or max(1, min(len(rows), spark.sparkContext.defaultParallelism * 2,
                                      -(-len(rows) // max(1, shard_size // 4))))
    root = absolute(cache_root)

    def embed_partition(items):
        items = list(items)
        if items:
            _embed_chunk(items, root, shipped, precision, batch_size, shard_size, loads, decoding)

    spark.sparkContext.parallelize(rows, slices).foreachPartition(embed_partition)
    return loads.value


def _embed_chunk(items, root, shipped, precision, batch_size, shard_size, loads, decoding) -> None:
    import torch

    from clip_aesthetics.backbones.families import BackboneSource, load_backbone
    from clip_aesthetics.embedding.cache import EmbeddingCache
    from clip_aesthetics.embedding.embed import embed_to_cache

    device = task_device()
    folder = Path(open_shipped(shipped))
    model, processor = once_per_executor(("clip", shipped, str(device)),
                                         lambda: load_backbone(BackboneSource(str(folder), "", folder), device), loads)
    embed_to_cache(EmbeddingCache(Path(root)), [(image_id, source if isinstance(source, bytes) else Path(source))
                                                for image_id, source in items], model,
                   processor, getattr(torch, precision), batch_size, 0, shard_size, progress=False,
                   decoding=decoding)


SPARK = Engine(
    "Apache Spark tasks (the session spark-submit or your platform provides, else local[*])",
    start=lambda options: session(getattr(options, "spark_master", "")), score=lambda job: score_job(session(), job),
    embed_missing=embed_missing, writes_parts=True)
