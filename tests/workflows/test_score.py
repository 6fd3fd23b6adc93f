"""`score` of files and folders and the scorer's model: the registered champion, a run's model, offline in a fresh
process, bad inputs."""


import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from helpers import new_store

from clip_aesthetics.cli import app as cli

NAME = "clip-aesthetics"


@pytest.mark.parametrize("native", [True, False], ids=["amx-cpu", "emulated-bf16-cpu"])
def test_the_registered_model_scores_with_the_decoding_and_precision_it_was_trained_with(store, fake_cpu, native):
    """A run trained with reduced decoding in what precision=auto picks (bfloat16 on a CPU that measures it faster,
    float32 where bfloat16 is emulated: faked either way, whatever this machine's CPU) is registered; the registered,
    self-contained model records both and, on the same CPU, scores with them: its scores are the run's test
    predictions."""
    fake_cpu(native=native, speed=2.0)
    client = mlflow.MlflowClient()
    precision = "bfloat16" if native else "float32"
    name = f"reduced-{precision}"
    assert cli.main(["main", "--clip", str(store["clips"][0]), "--ava-dir", str(store["ava"]), "--cache-dir",
                     str(store["root"] / "cache"), "--epochs", "4", "--lr", "0.003", "--batch-size", "16",
                     "--num-workers", "0", "--decoding", "reduced", "--device", "cpu", "--run-name", name]) == 0
    experiment = client.get_experiment_by_name("clip-aesthetics").experiment_id
    run = client.search_runs([experiment], f"attributes.run_name = '{name}'")[0]
    assert run.data.params["compute_precision"] == precision
    assert cli.main(["register", "--run-id", run.info.run_id, "--model-name", name]) == 0
    version = client.get_model_version_by_alias(name, "champion")
    assert version.run_id == run.info.run_id
    scorer = mlflow.pyfunc.load_model(f"models:/{name}@champion").unwrap_python_model()
    assert (scorer.decoding, scorer.precision, scorer.compute_precision) == ("reduced", precision, precision)
    predictions = pd.read_csv(client.download_artifacts(run.info.run_id, "predictions/test.csv", str(store["root"])))
    paths = [store["ava"] / "image" / f"{i}.jpg" for i in predictions["image_id"]]
    scores = scorer.score_paths(paths, num_workers=0)["score"].to_numpy()
    np.testing.assert_allclose(scores, predictions["score_pred"], atol=1e-4 if precision != "float32" else 0.03)
    scorer.decoding = "full"  # a model that forgot how it was trained would score visibly differently
    assert np.abs(scorer.score_paths(paths, num_workers=0)["score"].to_numpy() - scores).max() > 0.01


SCORE_IN_FRESH_PROCESS = """
import json, sys, mlflow, pandas as pd
images = [open(p, "rb").read() for p in sys.argv[1:]]
model = mlflow.pyfunc.load_model("models:/clip-aesthetics@champion")
out = model.predict(pd.DataFrame({"image": images}))
print(json.dumps({"score": [None if s != s else s for s in out["score"]], "error": list(out["error"])}))
"""


def test_champion_scores_offline_in_a_fresh_process_like_training(store, tmp_path):
    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias(NAME, "champion")
    predictions = pd.read_csv(client.download_artifacts(champion.tags["run_id"], "predictions/test.csv",
                                                        str(tmp_path))).head(12)
    paths = [str(store["ava"] / "image" / f"{i}.jpg") for i in predictions["image_id"]]
    paths.append(str(store["ava"] / "image" / "21.jpg"))  # truncated
    hidden = {clip: clip.with_name(clip.name + ".hidden") for clip in store["clips"]}
    for clip, moved in hidden.items():  # the registered model must not need the original folders
        clip.rename(moved)
    try:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "MLFLOW_TRACKING_URI": store["uri"]}
        done = subprocess.run([sys.executable, "-c", SCORE_IN_FRESH_PROCESS, *paths], env=env,
                              capture_output=True, text=True, timeout=180, cwd=store["root"])
    finally:
        for clip, moved in hidden.items():
            moved.rename(clip)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    scores = np.array(result["score"][:-1], dtype=float)
    assert np.all((scores >= 1) & (scores <= 10))
    # A model computed in half precision bundles the very matrix weights it computed with: the same scores.
    # A float32 model bundles float16 weights (half the size): close scores.
    half = mlflow.MlflowClient().get_run(champion.run_id).data.params["compute_precision"] != "float32"
    np.testing.assert_allclose(scores, predictions["score_pred"], atol=1e-4 if half else 0.03)
    assert result["score"][-1] is None and result["error"][-1].startswith("truncated")
    assert result["error"][:-1] == [""] * len(predictions)


def test_score_command_writes_a_csv_for_folders(store, tmp_path):
    folder = tmp_path / "photos" / "nested"
    folder.mkdir(parents=True)
    for image_id in (11, 12, 14, 21, 24):
        shutil.copy(store["ava"] / "image" / f"{image_id}.jpg", folder / f"{image_id}.jpg")
    out = tmp_path / "scores.csv"
    assert cli.main(["score", str(tmp_path / "photos"), "--out", str(out), "--num-workers", "0"]) == 0
    table = pd.read_csv(out, keep_default_na=False)
    assert list(table.columns) == ["path", "score", "percentile", "error"] and len(table) == 5
    failed = table[table["error"] != ""]
    assert sorted(failed["path"].map(lambda p: p.rsplit("/", 1)[-1])) == ["21.jpg", "24.jpg"]
    assert table.loc[table["error"] == "", "score"].astype(float).between(1, 10).all()


def test_score_from_another_folder_names_the_store_and_version_it_used(store, tmp_path, monkeypatch, capsys):
    """Outside the store's folder, the default store is refused before any work (MLflow would create an empty
    one there); with --tracking-uri it scores and says which version of which store it used, in a few lines."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(store["ava"] / "image" / "14.jpg", elsewhere / "14.jpg")
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert cli.main(["score", "14.jpg"]) == 2
    error = capsys.readouterr().err
    assert f"no tracking store at {elsewhere / 'mlflow.db'}" in error and "--tracking-uri" in error
    assert not (elsewhere / "mlflow.db").exists()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    done = subprocess.run([sys.executable, "-m", "clip_aesthetics", "score", "14.jpg", "--tracking-uri", store["uri"],
                           "--num-workers", "0"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    version = mlflow.MlflowClient(store["uri"]).get_model_version_by_alias(NAME, "champion")
    assert f"models:/{NAME}@champion -> version {version.version} of {NAME}" in done.stdout
    assert store["uri"] in done.stdout and "scores: mean" in done.stdout
    assert "Downloading artifacts" not in done.stderr, "MLflow's per-file progress bars are off"
    score = pd.read_csv(elsewhere / "scores.csv")["score"][0]
    assert f"max {score:.4f}" in done.stdout, "scores are printed to 4 decimals"
    assert not (elsewhere / "mlflow.db").exists()


def test_score_without_a_registered_model_says_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    uri = new_store(tmp_path / "empty.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.MlflowClient().search_experiments()  # the store exists, but holds no registered model
    (tmp_path / "a.png").write_bytes(b"")
    assert cli.main(["score", str(tmp_path / "a.png")]) == 2
    error = capsys.readouterr().err
    assert "models:/clip-aesthetics@champion" in error and "clip-aesthetics register" in error


def one_error_line(stderr: str) -> str:
    """The CLI's message: exactly one `error:` line and no traceback (MLflow's progress bars may surround it)."""
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-2000:]
    return lines[0]


def logged_model_uri(run_id: str) -> str:
    return mlflow.search_logged_models(filter_string=f"source_run_id = '{run_id}'", output_format="list")[0].model_uri


def test_scores_are_clipped_to_1_10_in_every_path(trained_store, sample_ava, tmp_path):
    run = trained_store["run"]
    scorer = mlflow.pyfunc.load_model(logged_model_uri(run.info.run_id))
    head = scorer.unwrap_python_model().head
    image = (sample_ava / "image" / "14.jpg").read_bytes()
    for bias, expected in ((-100.0, 1.0), (100.0, 10.0)):  # a broken head
        with torch.no_grad():
            head.bias.fill_(bias)
        assert scorer.predict(pd.DataFrame({"image": [image, image]}))["score"].tolist() == [expected, expected]
        paths = scorer.unwrap_python_model().score_paths([sample_ava / "image" / "14.jpg"], num_workers=0)
        assert paths["score"].tolist() == [expected]


def test_score_refuses_a_folder_holding_other_files_as_output_before_any_work(trained_store, sample_ava, tmp_path,
                                                                              capsys):
    """A folder names a parquet dataset (one part per input, or the whole table); one holding what no score job
    wrote is refused, saying how to write one table instead."""
    (tmp_path / "notes.txt").write_text("mine")
    assert cli.main(["score", str(sample_ava / "image" / "14.jpg"), "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert f"--out {tmp_path} already holds 'notes.txt'" in error and f"{tmp_path / 'scores.csv'}" in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_an_out_uri_is_refused_without_spark_before_any_work(trained_store, sample_ava, capsys):
    """A URI of another filesystem (s3a://, hdfs://) is written by Spark; this process would write it as a local
    path (s3a:/... in the working folder): refused, saying what works (tests/e2e/test_spark.py: the Spark side)."""
    assert cli.main(["score", str(sample_ava / "image" / "14.jpg"), "--out", "s3a://bucket/scores.csv"]) == 2
    assert "only --engine spark writes to a URI" in capsys.readouterr().err
    assert not [p for p in Path.cwd().iterdir() if p.name.startswith("s3a:")]


def test_score_with_a_run_model_whose_clip_folder_moved_is_one_line(trained_store, tiny_clip, sample_ava, tmp_path,
                                                                   capsys):
    run = trained_store["run"]
    moved = tiny_clip.with_name(tiny_clip.name + ".moved")
    tiny_clip.rename(moved)
    try:
        code = cli.main(["score", "--model", f"runs:/{run.info.run_id}/model", str(sample_ava / "image" / "14.jpg"),
                         "--out", str(tmp_path / "s.csv")])
    finally:
        moved.rename(tiny_clip)
    error = one_error_line(capsys.readouterr().err)
    assert code == 2
    assert f"the local model folder {tiny_clip} does not exist" in error and "register" in error


@pytest.mark.parametrize("frame, words", [
    (pd.DataFrame({"image": []}), "no rows"),
    (pd.DataFrame({"picture": ["x"]}), "expected an `image` column"),
])
def test_requests_that_cannot_be_scored_say_why(trained_store, frame, words):
    from mlflow.exceptions import MlflowException

    run = trained_store["run"]
    model = mlflow.pyfunc.load_model(logged_model_uri(run.info.run_id)).unwrap_python_model()
    with pytest.raises(MlflowException, match=words):
        model.predict(None, frame)


def test_bad_rows_get_nan_and_a_reason_beside_good_ones(trained_store, sample_ava):
    run = trained_store["run"]
    scorer = mlflow.pyfunc.load_model(logged_model_uri(run.info.run_id))
    good = base64.b64encode((sample_ava / "image" / "14.jpg").read_bytes()).decode()
    out = scorer.predict(pd.DataFrame({"image": [good, None, 5, "not base64!"]}))
    assert 1 <= out["score"].iat[0] <= 10 and out["error"].iat[0] == ""
    assert out["score"].iloc[1:].isna().all()
    assert list(out["error"].iloc[1:]) == ["no image in this row (null or absent)",
                                           "image must be bytes or a base64 string, got int",
                                           "image is a string but not valid base64"]
