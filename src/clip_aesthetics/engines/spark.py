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

import atexit
import os
import re
import secrets
import shutil
import socket
import sys
import tempfile
import zipfile
from pathlib import Path

import pandas as pd

from clip_aesthetics.engines import Engine
from clip_aesthetics.errors import ScoringInputError, UserError

ROWS_PER_BATCH = 256  # images per Arrow batch handed to the scorer: bounds an executor's memory
_loaded: dict[tuple, object] = {}  # in each executor Python process: (what, where, device) -> loaded model


class SparkUnavailableError(UserError, RuntimeError):
    """pyspark or Java is missing; the message says what to install."""


def session(master: str = "", app_name: str = "clip-aesthetics"):
    """The Spark session the user's setup provides (spark-submit, a platform, one already started), else one at
    `master` (the spark_master setting; empty: this machine's cores, local[*])."""
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
    if not configured:  # a plain `clip-aesthetics ... --engine spark`: the master asked for, else local mode
        # Python workers must be this interpreter (its environment has the project), not `python3` on PATH.
        builder = builder.master(master or "local[*]")
        if not os.environ.get("PYSPARK_PYTHON"):
            builder = builder.config("spark.pyspark.python", sys.executable)
    return builder.getOrCreate()


def _local(spark) -> bool:
    return spark.sparkContext.master.startswith("local")


def _shipped(spark, local_path: str) -> str:
    """What executors open: the folder itself in local mode, else an archive of it that Spark ships and unpacks
    once per executor (`addArchive`: no shared filesystem needed, and Spark refuses to ship a bare folder)."""
    if _local(spark):
        return local_path
    alias = f"clip-aesthetics-{secrets.token_hex(6)}"
    spark.sparkContext.addArchive(f"{_zipped(Path(local_path))}#{alias}")
    return "sparkfiles:" + alias


def _zipped(folder: Path) -> Path:
    """The folder as a zip (stored, not compressed: model weights do not shrink and this is on the critical
    path), in a temporary folder removed when the driver exits."""
    if not folder.is_dir():
        raise ScoringInputError(f"cannot ship {folder} to Spark executors: not a folder on the driver")
    where = Path(tempfile.mkdtemp(prefix="clip-aesthetics-ship-"))
    atexit.register(shutil.rmtree, where, True)
    archive = where / f"{folder.name or 'model'}.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as bundle:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                bundle.write(path, path.relative_to(folder).as_posix())
    return archive


def _open(shipped: str) -> str:
    if shipped.startswith("sparkfiles:"):
        from pyspark import SparkFiles

        return SparkFiles.get(shipped.removeprefix("sparkfiles:"))
    return shipped


def _on_this_filesystem(path: str) -> bool:
    """A plain path or file: URI (what a shared filesystem must carry), not hdfs://, s3a://, ..."""
    return "://" not in path or path.startswith("file:")


def _absolute(path: str) -> str:
    """A local path as executors must see it: absolute (their working folders are not the driver's)."""
    path = str(path)
    path = "/" + path[len("file:"):].lstrip("/") if path.startswith("file:") else path
    return os.path.abspath(path)


def check_shared(spark, read: list[str] = (), write: list[str] = (), what: str = "") -> None:
    """Refuse, before any task works, local paths that the executors cannot see: inputs they must read, folders
    they must write. Nothing to check in local mode (the executors are this machine's processes)."""
    if _local(spark):
        return
    # A sample bounds the probe. Only what the driver sees counts: a file missing here too (a dataset listing an
    # image it lacks) is that image's failure, recorded with its reason by the job, not a sign of unshared storage.
    read = [p for p in (_absolute(p) for p in read if _on_this_filesystem(p)) if os.path.exists(p)][:64]
    write = [_absolute(p) for p in write if _on_this_filesystem(p)]
    if not read and not write:
        return
    slots = max(2, spark.sparkContext.defaultParallelism)

    def probe(_):
        missing = [p for p in read if not os.path.exists(p)]
        unwritable = [p for p in write if not (os.path.isdir(p) and os.access(p, os.W_OK | os.X_OK))]
        yield socket.gethostname(), missing[:3], unwritable[:3]

    for host, missing, unwritable in spark.sparkContext.parallelize(range(slots), slots).mapPartitions(probe).collect():
        if missing or unwritable:
            path = (missing or unwritable)[0]
            problem = "cannot read" if missing else "cannot write into"
            raise ScoringInputError(
                f"an executor on {host} {problem} {path}{f' ({what})' if what else ''}: on a cluster, local paths "
                "must be on a filesystem every executor mounts at the same path (NFS, a cluster filesystem), or "
                "use a URI your Spark reads (hdfs://, s3a://, ...); nothing was scored")


def _task_device(default: str = "auto"):
    """The GPU Spark assigned this task, if any; else the default choice."""
    import torch
    from pyspark import TaskContext

    from clip_aesthetics.embedding.embed import pick_device

    context = TaskContext.get()
    gpus = context.resources().get("gpu") if context else None
    if gpus is not None and gpus.addresses:
        return torch.device(f"cuda:{gpus.addresses[0]}")
    torch.set_num_threads(max(1, context.cpus() if context else 1))  # one task per core: no oversubscription
    return pick_device(default)


def score_job(spark, job) -> pd.DataFrame | None:
    """A score job (scoring/job.py) on Spark tasks, each scoring samples with the same function as one process
    (curate.score_samples), the model loaded once per executor process. Per-file inputs are listed and read by Spark
    itself (binaryFile: local paths or any URI it reads), one row per file, written by Spark as the parquet folder
    (or returned, for a one-file table); containers are one task each, writing its part. Returns the rows it
    returns, else None (they are in the output's parts)."""
    paths = list(job.inputs.given if job.inputs.per_file else job.inputs.containers)
    parts = str(job.output.parts or "")  # the folder executors write into (its parent: Spark makes it)
    written = str(Path(parts).parent) if job.inputs.per_file and parts else parts
    check_shared(spark, paths, [written] if written and _on_this_filesystem(written) else [], "inputs and --out")
    shipped = _shipped(spark, job.model_folder)
    loads = spark.sparkContext.accumulator(0)
    try:
        if job.inputs.per_file:
            return _score_files(spark, job, paths, shipped, loads)
        _score_containers(spark, job, shipped, loads)
        return None
    finally:
        job.counts["model_loads"] = loads.value


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
    result.write.mode("overwrite").parquet(str(job.output.parts))
    return None


def _score_containers(spark, job, shipped: str, loads) -> None:
    """One task per shard or table, each writing that input's part atomically (a shared filesystem on a cluster)."""
    out, image_column, identity, precision = _absolute(job.output.parts), job.image_column, job.identity, job.precision
    tasks = [(path, _absolute(path)) for path in job.todo]  # (as given, for the rows; absolute, for the executor)

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
    device = _task_device()
    key = ("scorer", shipped, str(device), precision)
    if key not in _loaded:
        from clip_aesthetics.scoring.uris import load_scorer

        scorer = load_scorer(_open(shipped), precision)
        _loaded[key] = scorer.to(device)
        loads.add(1)
    return _loaded[key]


def embed_missing(cache_root: Path, todo: list[tuple[int, Path | bytes]], clip_folder: Path, precision: str,
                  batch_size: int, shard_size: int, partitions: int = 0, decoding: str = "full") -> int:
    """Embed the (id, file or image bytes) pairs on Spark: each task runs the project's embedding into new shards of
    the cache."""
    spark = session()
    files = [str(source) for _, source in todo if not isinstance(source, bytes)]
    check_shared(spark, files[:: max(1, len(files) // 32)], [str(cache_root)], "the images, and the cache folder")
    shipped = _shipped(spark, str(clip_folder))
    loads = spark.sparkContext.accumulator(0)
    rows = [(int(image_id), source if isinstance(source, bytes) else _absolute(source)) for image_id, source in todo]
    slices = partitions or max(1, min(len(rows), spark.sparkContext.defaultParallelism * 2,
                                      -(-len(rows) // max(1, shard_size // 4))))
    root = _absolute(cache_root)

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

    device = _task_device()
    key = ("clip", shipped, str(device))
    if key not in _loaded:
        folder = Path(_open(shipped))
        _loaded[key] = load_backbone(BackboneSource(str(folder), "", folder), device)
        loads.add(1)
    model, processor = _loaded[key]
    embed_to_cache(EmbeddingCache(Path(root)), [(image_id, source if isinstance(source, bytes) else Path(source))
                                                for image_id, source in items], model,
                   processor, getattr(torch, precision), batch_size, 0, shard_size, progress=False,
                   decoding=decoding)


SPARK = Engine(
    "Apache Spark tasks (the session spark-submit or your platform provides, else local[*])",
    start=lambda options: session(getattr(options, "spark_master", "")), score=lambda job: score_job(session(), job),
    embed_missing=embed_missing, writes_parts=True)
