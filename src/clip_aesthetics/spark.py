"""Apache Spark as the engine: image files + a scorer URI -> scores; AVA images -> the shared embedding cache.

The optional extra `spark` (`pip install -e '.[spark]'`). It uses the session the user's Spark provides
(spark-submit, a managed platform) or `local[*]`. Executors run this package from its installed
environment: a scorer or CLIP is loaded once per executor Python process and reused by every partition
that process runs; embedding tasks write shards into the cache folder, which must be on a filesystem
every executor sees. A task given a GPU by Spark (`spark.task.resource.gpu.amount`) uses that GPU.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pandas as pd

from .errors import ScoringInputError, UserError
from .scoring import IMAGE_SUFFIXES

RESULT_SCHEMA = "path string, score double, error string"
IMAGE_PATTERN = "(?i)\\.(" + "|".join(sorted(s.lstrip(".") for s in IMAGE_SUFFIXES)) + ")$"
ROWS_PER_BATCH = 256  # images per Arrow batch handed to the scorer: bounds an executor's memory
_loaded: dict[tuple, object] = {}  # in each executor Python process: (what, where, device) -> loaded model


class SparkUnavailableError(UserError, RuntimeError):
    """pyspark or Java is missing; the message says what to install."""


def session(app_name: str = "clip-aesthetics"):
    """The Spark session the user's setup provides (spark-submit, a platform), else one on this machine's cores."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise SparkUnavailableError("engine=spark needs pyspark: pip install -e '.[spark]'") from None
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        raise SparkUnavailableError("engine=spark needs Java 17 (Spark runs on the JVM): install a JRE, e.g. "
                                    "`apt-get install openjdk-17-jre-headless`, or set JAVA_HOME")
    configured = (SparkSession.getActiveSession() or os.environ.get("PYSPARK_GATEWAY_PORT")
                  or os.environ.get("SPARK_MASTER") or os.environ.get("MASTER"))
    builder = SparkSession.builder.appName(app_name)
    if not configured:  # a plain `clip-aesthetics ... --engine spark`: local mode on this machine
        # Python workers must be this interpreter (its environment has the project), not `python3` on PATH.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = builder.master(os.environ.get("CLIP_AESTHETICS_SPARK_MASTER", "local[*]"))
    return builder.getOrCreate()


def _shipped(spark, local_path: str) -> str:
    """What executors open: the path itself in local mode, else a copy shipped with the job (SparkFiles)."""
    if spark.sparkContext.master.startswith("local"):
        return local_path
    spark.sparkContext.addFile(local_path, recursive=True)
    return "sparkfiles:" + Path(local_path).name


def _open(shipped: str) -> str:
    if shipped.startswith("sparkfiles:"):
        from pyspark import SparkFiles

        return SparkFiles.get(shipped.removeprefix("sparkfiles:"))
    return shipped


def _task_device(default: str = "auto"):
    """The GPU Spark assigned this task, if any; else the default choice."""
    import torch
    from pyspark import TaskContext

    from .embed import pick_device

    context = TaskContext.get()
    gpus = context.resources().get("gpu") if context else None
    if gpus is not None and gpus.addresses:
        return torch.device(f"cuda:{gpus.addresses[0]}")
    torch.set_num_threads(max(1, context.cpus() if context else 1))  # one task per core: no oversubscription
    return pick_device(default)


def score_files(spark, inputs: list[str], model_uri: str, out: str, partitions: int = 0) -> dict[str, int]:
    """Score every image file under `inputs` (paths or URIs Spark reads) with `model_uri`; write parquet at `out`.

    One row per file, empty files included (Spark's binaryFile skips 0-byte files; they are added back
    with the error "empty file"). Returns counts: scored, failed, model_loads.
    """
    from .scorer import download_model

    local_model = download_model(model_uri)  # once, on the driver
    shipped = _shipped(spark, local_model)
    loads = spark.sparkContext.accumulator(0)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(ROWS_PER_BATCH))
    from pyspark.errors import AnalysisException

    try:
        files = spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(list(inputs))
        listed = sorted(_same_form(p) for p in files.inputFiles() if re.search(IMAGE_PATTERN, p))
    except AnalysisException as error:  # a path that does not exist, a filesystem Spark is not set up for
        raise ScoringInputError(f"Spark cannot read {', '.join(inputs)}: {str(error).splitlines()[0]}") from None
    if not listed:
        raise ScoringInputError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) under {', '.join(inputs)}")
    images = files.select("path", "content").filter(files.path.rlike(IMAGE_PATTERN))
    if partitions:
        images = images.repartition(partitions)
    present = {row.path for row in images.select("path").collect()}

    def score_partition(batches):
        scorer = _scorer(shipped, loads)
        for batch in batches:
            scored = scorer.predict(None, pd.DataFrame({"image": batch["content"].tolist()}))
            yield pd.DataFrame({"path": batch["path"].to_numpy(), "score": scored["score"].to_numpy(),
                                "error": scored["error"].to_numpy()})
            print(f"clip-aesthetics: scored {len(batch)} image(s) in pid {os.getpid()}", file=sys.stderr, flush=True)

    result = images.mapInPandas(score_partition, RESULT_SCHEMA)
    empty = [(path, None, "empty file") for path in listed if path not in present]
    if empty:
        result = result.unionByName(spark.createDataFrame(empty, RESULT_SCHEMA))
    result.write.mode("overwrite").parquet(out)
    written = spark.read.parquet(out)
    failed = written.filter(written.error != "").count()
    return {"scored": written.count() - failed, "failed": failed, "model_loads": loads.value}


def score_inputs(spark, paths: list[str], model_uri: str, out: str, image_column: str = "") -> int:
    """Score webdataset shards or tables of image bytes (curate.py): one task per input, each writing that input's
    part of `out` atomically, the model loaded once per executor process. Returns the model loads. `out` must be a
    folder every executor can write (a shared filesystem on a cluster)."""
    from .scorer import download_model

    shipped = _shipped(spark, download_model(model_uri))
    loads = spark.sparkContext.accumulator(0)

    def score_one(path):
        from .curate import score_input

        score_input(_scorer(shipped, loads), path, Path(out), image_column)

    spark.sparkContext.parallelize(list(paths), len(paths)).foreach(score_one)
    return loads.value


def _same_form(uri: str) -> str:
    """inputFiles() writes local files as file:///a, the binaryFile rows as file:/a: compare them alike."""
    return "file:/" + uri[len("file:///"):] if uri.startswith("file:///") else uri


def _scorer(shipped: str, loads):
    """The scorer, loaded once per executor Python process (and per GPU)."""
    device = _task_device()
    key = ("scorer", shipped, str(device))
    if key not in _loaded:
        from .scorer import load_scorer

        scorer = load_scorer(_open(shipped))
        _loaded[key] = scorer.to(device)
        loads.add(1)
    return _loaded[key]


def embed_missing(cache_root: Path, todo: list[tuple[int, Path | bytes]], clip_folder: Path, precision: str,
                  batch_size: int, shard_size: int, partitions: int = 0, decoding: str = "full") -> int:
    """Embed the (id, file or image bytes) pairs on Spark: each task runs the project's embedding into new shards of
    the cache."""
    spark = session()
    shipped = _shipped(spark, str(clip_folder))
    loads = spark.sparkContext.accumulator(0)
    rows = [(int(image_id), source if isinstance(source, bytes) else str(source)) for image_id, source in todo]
    slices = partitions or max(1, min(len(rows), spark.sparkContext.defaultParallelism * 2,
                                      -(-len(rows) // max(1, shard_size // 4))))
    root = str(cache_root)

    def embed_partition(items):
        items = list(items)
        if items:
            _embed_chunk(items, root, shipped, precision, batch_size, shard_size, loads, decoding)

    spark.sparkContext.parallelize(rows, slices).foreachPartition(embed_partition)
    return loads.value


def _embed_chunk(items, root, shipped, precision, batch_size, shard_size, loads, decoding) -> None:
    import torch

    from .cache import EmbeddingCache
    from .clip import ClipSource, load_clip
    from .embed import embed_to_cache

    device = _task_device()
    key = ("clip", shipped, str(device))
    if key not in _loaded:
        folder = Path(_open(shipped))
        _loaded[key] = load_clip(ClipSource(str(folder), "", folder), device)
        loads.add(1)
    model, processor = _loaded[key]
    embed_to_cache(EmbeddingCache(Path(root)), [(image_id, source if isinstance(source, bytes) else Path(source))
                                                for image_id, source in items], model,
                   processor, getattr(torch, precision), batch_size, 0, shard_size, progress=False,
                   decoding=decoding)
