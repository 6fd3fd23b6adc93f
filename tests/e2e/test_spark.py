"""Spark as the engine (local[2], the real pyspark): scoring and embedding give what the single process gives."""

import importlib.util
import os
import shutil
import sys

import mlflow
import numpy as np
import pandas as pd
import pytest

from clip_aesthetics.cli import app as cli
from clip_aesthetics.embedding.cache import EmbeddingCache
from clip_aesthetics.scoring import reference
from clip_aesthetics.scoring.uris import download_model, read_spec


def _available() -> str:
    """Why Spark cannot run here, or '' when it can."""
    import importlib.util

    if importlib.util.find_spec("pyspark") is None:
        return "pyspark (the spark extra)"
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        return "Java"
    return ""


@pytest.fixture(scope="session")
def spark_session():
    """One session for every Spark test: local[2], no UI, bound to 127.0.0.1."""
    missing = _available()
    if missing:
        message = f"Spark tests need {missing}; .ci/run installs it"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    from pyspark.sql import SparkSession

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ["PYSPARK_PYTHON"] = sys.executable
    session = (SparkSession.builder.master("local[2]").appName("clip-aesthetics-tests")
               .config("spark.ui.enabled", "false").config("spark.driver.host", "127.0.0.1")
               .config("spark.driver.bindAddress", "127.0.0.1").getOrCreate())
    yield session
    session.stop()


@pytest.fixture
def photos(sample_ava, tmp_path):
    """Images in nested folders, a truncated one, an empty one (Spark's binaryFile skips 0-byte files)."""
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    ids = sorted(p.stem for p in (sample_ava / "image").glob("*.jpg"))[:14]
    for index, image_id in enumerate(ids):
        target = folder / ("nested" if index % 2 else "") / f"{image_id}.jpg"
        shutil.copy(sample_ava / "image" / f"{image_id}.jpg", target)
    shutil.copy(sample_ava / "image" / "21.jpg", folder / "truncated.jpg")
    (folder / "nested" / "empty.jpg").write_bytes(b"")
    return folder


pytestmark = pytest.mark.slow


@pytest.mark.usefixtures("trained_store")  # its store, in the environment and in MLflow
@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_spark_scores_one_row_per_file_like_the_cli(spark_session, trained, photos, tmp_path, monkeypatch, precision):
    """The same files, in the CLI's batches and in Spark's partitions (three, so in other batches), in either
    precision (forced, whatever this machine's CPU): the same rows, scores and percentiles."""
    monkeypatch.chdir(trained["root"])
    assert cli.main(["score", str(photos), "--model", trained["model"], "--out", str(tmp_path / "cli.csv"),
                     "--num-workers", "0", "--precision", precision]) == 0
    assert cli.main(["score", str(photos), "--model", trained["model"], "--engine", "spark", "--spark-partitions", "3",
                     "--out", str(tmp_path / "spark.parquet"), "--gallery", str(tmp_path / "spark.html"),
                     "--precision", precision]) == 0
    assert "16 input(s): 14 scored, 2 not" in (tmp_path / "spark.html").read_text(), "the gallery counts every row"
    local = pd.read_csv(tmp_path / "cli.csv", keep_default_na=False).set_index("path")
    distributed = pd.read_parquet(tmp_path / "spark.parquet")
    distributed.index = distributed["path"].str.removeprefix("file:")
    assert len(distributed) == len(local) == 16, "one row per file, the empty one included"
    assert sorted(distributed.index) == sorted(local.index)
    distributed = distributed.loc[local.index]
    assert (distributed["error"].to_numpy() == local["error"].to_numpy()).all()
    assert distributed.loc[str(photos / "nested" / "empty.jpg"), "error"] == "empty file"
    assert distributed.loc[str(photos / "truncated.jpg"), "error"].startswith("truncated")
    ok = local["error"] == ""
    np.testing.assert_allclose(distributed.loc[ok, "score"].astype(float), local.loc[ok, "score"].astype(float),
                               atol=1e-5 if precision == "float32" else 1e-4)
    assert list(distributed.columns) == ["path", "score", "percentile", "error"]
    np.testing.assert_allclose(distributed.loc[ok, "percentile"].astype(float),
                               local.loc[ok, "percentile"].astype(float), atol=1e-9)
    assert distributed.loc[~ok, "percentile"].isna().all()


@pytest.mark.usefixtures("trained_store")  # its store, in the environment and in MLflow
def test_spark_scores_with_an_onnx_export_like_one_process(spark_session, trained, photos, tmp_path, monkeypatch):
    """An exported model's URI on Spark: executors load the ONNX scorer, rows and scores as in one process."""
    if importlib.util.find_spec("onnxruntime") is None and not os.environ.get("CI"):
        pytest.skip("the onnx extra is not installed")
    monkeypatch.chdir(trained["root"])
    assert cli.main(["export", "--model", trained["model"], "--model-name", "spark-onnx"]) == 0
    model = "models:/spark-onnx@float32"
    assert cli.main(["score", str(photos), "--model", model, "--out", str(tmp_path / "one.csv")]) == 0
    assert cli.main(["score", str(photos), "--model", trained["model"], "--out", str(tmp_path / "source.csv")]) == 0
    assert cli.main(["score", str(photos), "--model", model, "--engine", "spark", "--out",
                     str(tmp_path / "spark.parquet")]) == 0
    local = pd.read_csv(tmp_path / "one.csv", keep_default_na=False).set_index("path")
    distributed = pd.read_parquet(tmp_path / "spark.parquet")
    distributed.index = distributed["path"].str.removeprefix("file:")
    distributed = distributed.loc[local.index]
    assert distributed["error"].tolist() == local["error"].tolist()
    ok = local["error"] == ""
    assert ok.sum() == 14
    np.testing.assert_allclose(distributed.loc[ok, "score"].astype(float), local.loc[ok, "score"].astype(float),
                               atol=1e-6)
    # the export carries its source's reference: the percentiles of its own scores against it, within one reference
    # image of the source's (a score 1e-5 away may sit on the other side of a reference score)
    ref = reference.of_spec(read_spec(download_model(model)))
    np.testing.assert_allclose(distributed.loc[ok, "percentile"].astype(float),
                               ref.percentile(distributed.loc[ok, "score"].astype(float)), atol=1e-9)
    source = pd.read_csv(tmp_path / "source.csv", keep_default_na=False).set_index("path").loc[local.index]
    np.testing.assert_allclose(distributed.loc[ok, "percentile"].astype(float),
                               source.loc[ok, "percentile"].astype(float), atol=100 / ref.count + 1e-9)


@pytest.mark.usefixtures("trained_store")  # its store, in the environment and in MLflow
def test_the_model_is_loaded_once_per_executor_process_not_per_partition(spark_session, trained, photos, tmp_path,
                                                                          monkeypatch, capsys):
    monkeypatch.chdir(trained["root"])
    assert cli.main(["score", str(photos), "--model", trained["model"], "--engine", "spark", "--spark-partitions", "8",
                     "--out", str(tmp_path / "s.parquet")]) == 0
    printed = capsys.readouterr().out
    loads = int(printed.split("model loaded ")[1].split(" ")[0])
    assert "scored 14 image(s), 2 failed" in printed
    assert 1 <= loads <= 2, f"{loads} loads for 8 partitions on 2 executor processes"


@pytest.mark.usefixtures("trained_store")  # its store, in the environment and in MLflow
def test_spark_input_that_does_not_exist_is_one_line(spark_session, trained, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(trained["root"])
    assert cli.main(["score", str(tmp_path / "nowhere"), "--model", trained["model"], "--engine", "spark",
                     "--out", str(tmp_path / "s.parquet")]) == 2
    error = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "no such file or folder" in error[0] and "nowhere" in error[0]


def test_distributed_embed_gives_the_single_process_cache_and_the_same_training(
        spark_session, small_ava, tiny_clip, tmp_path, tracking_uri):
    common = ["--clip", str(tiny_clip), "--ava-dir", str(small_ava)]
    assert cli.main(["embed", *common, "--shard-size", "32", "--cache-dir", str(tmp_path / "local"),
                     "--num-workers", "0"]) == 0
    assert cli.main(["embed", *common, "--shard-size", "32", "--cache-dir", str(tmp_path / "spark"), "--engine",
                     "spark",
                     "--spark-partitions", "4"]) == 0
    caches = [EmbeddingCache(next((tmp_path / name).glob("*/images-*/*"))) for name in ("local", "spark")]
    local, distributed = (cache.load() for cache in caches)
    assert len(caches[1].shards()) >= 4, "one writer per task"
    assert not list(caches[1].root.glob(".*.tmp")), "no half shard"
    order_l, order_d = np.argsort(local.ids), np.argsort(distributed.ids)
    np.testing.assert_array_equal(local.ids[order_l], distributed.ids[order_d])
    np.testing.assert_allclose(local.embeddings[order_l].astype(float), distributed.embeddings[order_d], atol=1e-3)
    assert sorted(zip(local.failures["image_id"], local.failures["reason"])) == sorted(
        zip(distributed.failures["image_id"], distributed.failures["reason"]))
    train = ["--epochs", "2", "--lr", "0.003"]
    for name in ("local", "spark"):
        assert cli.main(["train", *common, "--cache-dir", str(tmp_path / name), *train, "--run-name", name]) == 0
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("clip-aesthetics").experiment_id
    runs = {r.info.run_name: r for r in client.search_runs([experiment])}
    assert runs["spark"].data.metrics["test_spearman"] == pytest.approx(runs["local"].data.metrics["test_spearman"],
                                                                         abs=1e-6)


def test_distributed_embed_of_a_parquet_of_image_bytes_fills_the_same_content_cache(
        spark_session, sample_ava, tiny_clip, tmp_path, tracking_uri):
    """A labels table whose images are bytes: Spark tasks decode the bytes and write the content-keyed cache the
    single process writes (same ids, same embeddings); `train` then finds it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted(f for f in (sample_ava / "image").glob("*.jpg") if int(f.stem) >= 1000)[:40]  # no trap files
    table = tmp_path / "bytes.parquet"
    pq.write_table(pa.table({"jpg": pa.array([f.read_bytes() for f in files], pa.binary()),
                             "score": [1.0 + k % 9 for k in range(len(files))]}), table)
    common = ["--clip", str(tiny_clip), "--labels", str(table), "--precision", "float32"]
    assert cli.main(["embed", *common, "--cache-dir", str(tmp_path / "local"), "--num-workers", "0"]) == 0
    assert cli.main(["embed", *common, "--cache-dir", str(tmp_path / "spark"), "--engine", "spark",
                     "--spark-partitions", "3", "--shard-size", "8"]) == 0
    local, distributed = (EmbeddingCache(next((tmp_path / name).glob("*/images-by-content/*"))).load()
                          for name in ("local", "spark"))
    order_l, order_d = np.argsort(local.ids), np.argsort(distributed.ids)
    assert len(local.ids) == 40 and local.failures.empty
    np.testing.assert_array_equal(local.ids[order_l], distributed.ids[order_d])
    np.testing.assert_allclose(local.embeddings[order_l].astype(float), distributed.embeddings[order_d], atol=1e-3)
    assert cli.main(["train", *common, "--cache-dir", str(tmp_path / "spark"), "--epochs", "2"]) == 0


@pytest.mark.usefixtures("trained_store")  # its store, in the environment and in MLflow
def test_spark_scores_shards_into_the_rows_one_process_writes(spark_session, trained, sample_ava, tmp_path,
                                                              monkeypatch):
    """Webdataset shards with --engine spark: one task per shard, the same rows and scores as one process."""
    import io
    import tarfile

    from clip_aesthetics.scoring import curate

    files = sorted(f for f in (sample_ava / "image").glob("*.jpg") if int(f.stem) >= 1000)[:24]
    shards = []
    for number in range(3):
        shard = tmp_path / f"{number:05d}.tar"
        with tarfile.open(shard, "w") as tar:
            for path in files[number * 8:(number + 1) * 8] + ([] if number else [tmp_path / "missing"]):
                data = path.read_bytes() if path.exists() else b"broken"
                member = tarfile.TarInfo(f"{path.stem}.jpg")
                member.size = len(data)
                tar.addfile(member, io.BytesIO(data))
        shards.append(str(shard))
    monkeypatch.chdir(trained["root"])
    for engine in ("local", "spark"):
        assert cli.main(["score", *shards, "--model", trained["model"], "--engine", engine, "--out",
                         str(tmp_path / engine)]) == 0
    local, distributed = (curate.read_parts(tmp_path / engine, shards) for engine in ("local", "spark"))
    assert len(local) == 25 and local["key"].tolist() == distributed["key"].tolist()
    assert local["error"].tolist() == distributed["error"].tolist() and (local["error"] != "").sum() == 1
    np.testing.assert_allclose(local["score"].to_numpy(), distributed["score"].to_numpy(), atol=1e-5)
    np.testing.assert_allclose(local["percentile"].to_numpy(), distributed["percentile"].to_numpy(), atol=1e-9)
    assert local["percentile"].notna().sum() == 24



@pytest.mark.usefixtures("trained_store")
def test_a_platforms_session_scores_files_with_one_call_like_the_cli(spark_session, trained, photos, tmp_path):
    """The documented call for a notebook's own session: one row per file, the failures counted, the model loaded
    once per executor process."""
    from clip_aesthetics.engines import spark

    done = spark.score_files(spark_session, [str(photos)], trained["model"], str(tmp_path / "platform.parquet"))
    rows = pd.read_parquet(tmp_path / "platform.parquet")
    assert done["scored"] == 14 and done["failed"] == 2 and len(rows) == 16 and 1 <= done["model_loads"] <= 2
    assert rows.loc[rows["error"] == "", "score"].between(1, 10).all()


@pytest.mark.usefixtures("trained_store")
@pytest.mark.parametrize("out, says", [("hdfs:///scores.csv", "Spark writes a URI as a folder of parquet parts"),
                                       ("hdfs:///curated", "shards and tables are written part by part")])
def test_an_out_uri_spark_would_not_write_as_named_is_refused_before_any_work(spark_session, trained, sample_ava,
                                                                             tmp_path, monkeypatch, capsys, out, says):
    import tarfile

    monkeypatch.chdir(tmp_path)
    given = sample_ava / "image" / "14.jpg"
    if out.endswith("curated"):
        given = tmp_path / "00000.tar"
        with tarfile.open(given, "w") as tar:
            tar.add(sample_ava / "image" / "14.jpg", arcname="14.jpg")
    assert cli.main(["score", str(given), "--model", trained["model"], "--out", out, "--engine", "spark"]) == 2
    assert says in capsys.readouterr().err
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("hdfs:")]

WORKER_PROBE = """
from clip_aesthetics.engines import spark
session = spark.session("local[1]")
session.sparkContext.setLogLevel("ERROR")

def where(_):
    import sys

    import clip_aesthetics  # what every task imports first
    return sys.executable

print("WORKER", session.sparkContext.parallelize([0], 1).map(where).collect()[0])
session.stop()
"""


def test_a_session_the_engine_starts_runs_its_tasks_in_the_projects_interpreter(tmp_path):
    """`--engine spark` without spark-submit: the tasks' Python is the interpreter the command runs in (its
    environment has the project), not a `python3` found on PATH, with nothing set by the user (no PYSPARK_PYTHON)."""
    import subprocess

    if _available():
        pytest.skip(f"needs {_available()}")
    java = shutil.which("java")
    path = os.pathsep.join(dict.fromkeys([*(os.path.dirname(java),) * bool(java), "/usr/sbin", "/usr/bin", "/bin"]))
    env = {"HOME": os.environ.get("HOME", str(tmp_path)), "PATH": path, "SPARK_LOCAL_IP": "127.0.0.1",
           **{k: os.environ[k] for k in ("JAVA_HOME", "JDK_JAVA_OPTIONS") if k in os.environ}}
    done = subprocess.run([sys.executable, "-c", WORKER_PROBE], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    worker = [line.split(" ", 1)[1] for line in done.stdout.splitlines() if line.startswith("WORKER ")]
    assert done.returncode == 0 and worker == [sys.executable], done.stderr[-3000:]
