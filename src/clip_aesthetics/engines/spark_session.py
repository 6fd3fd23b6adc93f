"""The Spark edge both of the engine's jobs stand on: the session (the user's, else one started at the spark_master
setting, its Python workers this interpreter), folders shipped to executors, the probe that local paths are shared,
the device a task was given, and what an executor process loads once."""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import socket
import sys
import tempfile
import zipfile
from pathlib import Path

from clip_aesthetics.errors import ScoringInputError, UserError

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
        builder = builder.master(master or "local[*]")
        # Python workers must be this interpreter (its environment has the project), not `python3` on PATH; pyspark
        # starts them with $PYSPARK_PYTHON and reads no setting for it (spark.pyspark.python is not used for a
        # session started here), so the engine says it in its own process's environment, for the JVM it starts.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return builder.getOrCreate()


def is_local(spark) -> bool:
    return spark.sparkContext.master.startswith("local")


def ship(spark, local_path: str) -> str:
    """What executors open: the folder itself in local mode, else an archive of it that Spark ships and unpacks
    once per executor (`addArchive`: no shared filesystem needed, and Spark refuses to ship a bare folder)."""
    if is_local(spark):
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


def open_shipped(shipped: str) -> str:
    if shipped.startswith("sparkfiles:"):
        from pyspark import SparkFiles

        return SparkFiles.get(shipped.removeprefix("sparkfiles:"))
    return shipped


def on_this_filesystem(path: str) -> bool:
    """A plain path or file: URI (what a shared filesystem must carry), not hdfs://, s3a://, ..."""
    return "://" not in path or path.startswith("file:")


def absolute(path: str) -> str:
    """A local path as executors must see it: absolute (their working folders are not the driver's)."""
    path = str(path)
    path = "/" + path[len("file:"):].lstrip("/") if path.startswith("file:") else path
    return os.path.abspath(path)


def check_shared(spark, read: list[str] = (), write: list[str] = (), what: str = "") -> None:
    """Refuse, before any task works, local paths that the executors cannot see: inputs they must read, folders
    they must write. Nothing to check in local mode (the executors are this machine's processes)."""
    if is_local(spark):
        return
    # A sample bounds the probe. Only what the driver sees counts: a file missing here too (a dataset listing an
    # image it lacks) is that image's failure, recorded with its reason by the job, not a sign of unshared storage.
    read = [p for p in (absolute(p) for p in read if on_this_filesystem(p)) if os.path.exists(p)][:64]
    write = [absolute(p) for p in write if on_this_filesystem(p)]
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


def task_device(default: str = "auto"):
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


def once_per_executor(key: tuple, load, loads):
    """What `load()` gives, loaded once per executor Python process for `key` (what, where, device) and reused by
    every partition that process runs; `loads` (an accumulator) counts the loads."""
    if key not in _loaded:
        _loaded[key] = load()
        loads.add(1)
    return _loaded[key]
