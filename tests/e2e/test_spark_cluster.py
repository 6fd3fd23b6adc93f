"""Spark outside local mode: a standalone master and two one-core workers on 127.0.0.1 (experiments/spark_cluster.py),
and the README's own `spark-submit experiments/spark_submit.py ...` commands against it. Executors run in their own
processes and work folders, so the model and the backbone reach them only as Spark ships them (an archive); rows and
scores must equal what one process gives."""

import importlib.util
import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from clip_aesthetics.cli import app as cli
from clip_aesthetics.embedding.cache import EmbeddingCache
from clip_aesthetics.scoring import curate

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _launcher():
    spec = importlib.util.spec_from_file_location("spark_cluster", ROOT / "experiments" / "spark_cluster.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    missing = "pyspark (the spark extra)" if importlib.util.find_spec("pyspark") is None else (
        "" if os.environ.get("JAVA_HOME") or shutil.which("java") else "Java")
    if missing:
        message = f"the Spark cluster tests need {missing}; .ci/run installs it"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    launcher = _launcher()
    folder = tmp_path_factory.mktemp("spark-cluster")
    url = launcher.start(folder, workers=2, cores=1, memory="1536m")
    yield url
    launcher.stop(folder)


def submit(url: str, store: str, cwd: Path, *args: str) -> str:
    """`spark-submit --master URL experiments/spark_submit.py ARGS` as the README writes it; returns its output."""
    spark_submit = Path(sys.executable).parent / "spark-submit"
    env = {**os.environ, "MLFLOW_TRACKING_URI": store, "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable}
    env.pop("PYSPARK_GATEWAY_PORT", None)
    done = subprocess.run([str(spark_submit), "--master", url, "--conf", "spark.ui.enabled=false",
                           "--conf", "spark.executor.memory=1g", str(ROOT / "experiments" / "spark_submit.py"),
                           *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=480)
    output = done.stdout + done.stderr
    assert done.returncode == 0, "\n".join(line for line in output.splitlines() if " INFO " not in line)[-4000:]
    assert "UNSUPPORTED_ADD_FILE" not in output
    return output


def test_score_on_a_cluster_gives_the_rows_of_one_process(cluster, trained, sample_ava, tmp_path):
    photos = trained["root"] / "photos-cluster"  # given relative to the driver's folder, as a user would
    (photos / "nested").mkdir(parents=True)
    files = sorted(f for f in (sample_ava / "image").glob("*.jpg") if int(f.stem) >= 1000)[:10]
    for k, f in enumerate(files):
        shutil.copy(f, photos / ("nested" if k % 2 else "") / f.name)
    (photos / "broken.jpg").write_bytes(b"not an image")
    output = submit(cluster, trained["uri"], trained["root"], "score", "--engine", "spark", photos.name, "--model",
                    trained["model"], "--out", str(tmp_path / "scores.parquet"))
    assert "model loaded 2 time(s)" in output, "once per executor process, each in its own worker"
    distributed = pd.read_parquet(tmp_path / "scores.parquet")
    distributed.index = distributed["path"].str.removeprefix("file:")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(trained["root"])
        patch.setenv("MLFLOW_TRACKING_URI", trained["uri"])
        mlflow.set_tracking_uri(trained["uri"])
        assert cli.main(["score", str(photos), "--model", trained["model"], "--out", str(tmp_path / "one.csv"),
                         "--num-workers", "0"]) == 0
    local = pd.read_csv(tmp_path / "one.csv", keep_default_na=False).set_index("path")
    assert sorted(distributed.index) == sorted(local.index) and len(local) == 11
    distributed = distributed.loc[local.index]
    assert distributed["error"].tolist() == local["error"].tolist()
    ok = local["error"] == ""
    assert ok.sum() == 10
    np.testing.assert_allclose(distributed.loc[ok, "score"].astype(float), local.loc[ok, "score"].astype(float),
                               atol=1e-5)


def _shards(sample_ava: Path, folder: Path) -> list[str]:
    folder.mkdir()
    files = sorted(f for f in (sample_ava / "image").glob("*.jpg") if int(f.stem) >= 1000)[:24]
    paths = []
    for number in range(3):
        path = folder / f"{number:05d}.tar"
        with tarfile.open(path, "w") as tar:
            for f in files[number * 8:(number + 1) * 8]:
                for name, data in ((f"{f.stem}.jpg", f.read_bytes()), (f"{f.stem}.txt", f"caption {f.stem}".encode())):
                    member = tarfile.TarInfo(name)
                    member.size = len(data)
                    tar.addfile(member, io.BytesIO(data))
        paths.append(str(path))
    return paths


def test_shard_curation_on_a_cluster_gives_the_parts_and_shards_of_one_process(cluster, trained, sample_ava, tmp_path):
    shards = _shards(sample_ava, tmp_path / "shards")
    pattern = str(tmp_path / "shards" / "{00000..00002}.tar")
    submit(cluster, trained["uri"], trained["root"], "score", "--engine", "spark", pattern, "--model", trained["model"],
           "--out", str(tmp_path / "cluster"), "--top-fraction", "0.25", "--write-shards", str(tmp_path / "kept"))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(trained["root"])
        patch.setenv("MLFLOW_TRACKING_URI", trained["uri"])
        mlflow.set_tracking_uri(trained["uri"])
        assert cli.main(["score", pattern, "--model", trained["model"], "--out", str(tmp_path / "one")]) == 0
    distributed, local = (curate.read_parts(tmp_path / name, shards) for name in ("cluster", "one"))
    assert len(local) == 24 and distributed["key"].tolist() == local["key"].tolist()
    assert distributed["caption"].tolist() == local["caption"].tolist()
    np.testing.assert_allclose(distributed["score"].to_numpy(), local["score"].to_numpy(), atol=1e-5)
    kept = pd.read_parquet(tmp_path / "cluster" / curate.REPORT / curate.KEPT)
    copied = 0
    for shard in (tmp_path / "kept").glob("*.tar"):
        with tarfile.open(shard) as tar:
            copied += len({name.rsplit(".", 1)[0] for name in tar.getnames()})
    assert len(kept) == copied == 6, "the best quarter of 24, every one copied"


def test_embed_on_a_cluster_fills_the_cache_one_process_fills(cluster, small_ava, tiny_clip, tmp_path, tracking_uri):
    common = ["embed", "--clip", str(tiny_clip), "--ava-dir", str(small_ava), "--precision", "float32",
              "--shard-size", "32"]
    submit(cluster, tracking_uri, tmp_path, *common, "--engine", "spark", "--cache-dir", str(tmp_path / "cluster"))
    assert cli.main([*common, "--cache-dir", str(tmp_path / "one"), "--num-workers", "0"]) == 0
    local, distributed = (EmbeddingCache(next((tmp_path / name).glob("*/images-*/*"))).load()
                          for name in ("one", "cluster"))
    order_l, order_d = np.argsort(local.ids), np.argsort(distributed.ids)
    np.testing.assert_array_equal(local.ids[order_l], distributed.ids[order_d])
    np.testing.assert_allclose(local.embeddings[order_l].astype(float), distributed.embeddings[order_d], atol=1e-4)
    assert sorted(local.failures["reason"]) == sorted(distributed.failures["reason"])
