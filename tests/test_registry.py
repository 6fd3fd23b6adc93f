"""Registry, scorer and server, on one registered sweep: best run promoted, aliases, offline scoring, serving."""

import base64
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

import mlflow
import numpy as np
import pandas as pd
import pytest

from clip_aesthetics import cli
from servers import free_port, wait_until_serving

NAME = "clip-aesthetics"


@pytest.fixture(scope="module")
def registered(tmp_path_factory, sample_ava, tiny_clip, tiny_clip_b):
    """A 2-model sweep, then `register`; CLIP folders are copies that tests may take away."""
    root = tmp_path_factory.mktemp("registry")
    clips = [shutil.copytree(clip, root / "clips" / clip.name) for clip in (tiny_clip, tiny_clip_b)]
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        assert cli.main(["sweep", "--clips", ",".join(map(str, clips)), "--norms", "true", "--ava-dir",
                         str(sample_ava), "--cache-dir", str(root / "cache"), "--epochs", "4", "--lr", "0.003",
                         "--batch-size", "16", "--num-workers", "0"]) == 0
        assert cli.main(["register"]) == 0
        yield {"root": root, "uri": uri, "clips": clips, "ava": sample_ava}
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)


@pytest.fixture
def store(registered, monkeypatch):
    monkeypatch.chdir(registered["root"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered["uri"])
    mlflow.set_tracking_uri(registered["uri"])
    return registered


def sweep_children(client):
    experiment = client.get_experiment_by_name("clip-aesthetics").experiment_id
    return [r for r in client.search_runs([experiment]) if "mlflow.parentRunId" in r.data.tags]


def test_register_promotes_the_best_child_by_val_spearman(store):
    client = mlflow.MlflowClient()
    best = max(sweep_children(client), key=lambda r: r.data.metrics["best_val_spearman"])
    champion = client.get_model_version_by_alias(NAME, "champion")
    assert champion.tags["run_id"] == best.info.run_id
    assert float(champion.tags["val_spearman"]) == pytest.approx(best.data.metrics["best_val_spearman"])
    assert champion.tags["clip_model_id"] == best.data.params["clip_model_id"]
    assert champion.tags["clip_revision"] == best.data.params["clip_revision"]
    assert float(champion.tags["test_spearman"]) == pytest.approx(best.data.metrics["best_test_spearman"])


def test_registering_again_creates_no_version(store, capsys):
    assert cli.main(["register"]) == 0
    assert "was already" in capsys.readouterr().out
    assert len(mlflow.MlflowClient().search_model_versions(f"name = '{NAME}'")) == 1


def test_a_worse_run_becomes_challenger_not_champion(store, capsys):
    assert cli.main(["main", "--clip", str(store["clips"][0]), "--ava-dir", str(store["ava"]), "--cache-dir",
                     str(store["root"] / "cache"), "--epochs", "1", "--lr", "1e-6", "--num-workers", "0",
                     "--run-name", "undertrained"]) == 0
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("clip-aesthetics").experiment_id
    worse = client.search_runs([experiment], "attributes.run_name = 'undertrained'")[0]
    champion_before = client.get_model_version_by_alias(NAME, "champion").version
    assert cli.main(["register", "--run-id", worse.info.run_id]) == 0
    assert "alias challenger" in capsys.readouterr().out
    aliases = client.get_registered_model(NAME).aliases
    assert aliases["champion"] == champion_before and aliases["challenger"] != champion_before


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
    np.testing.assert_allclose(scores, predictions["score_pred"], atol=0.02)  # float16 CLIP weights in the bundle
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
    assert list(table.columns) == ["path", "score", "error"] and len(table) == 5
    failed = table[table["error"] != ""]
    assert sorted(failed["path"].map(lambda p: p.rsplit("/", 1)[-1])) == ["21.jpg", "24.jpg"]
    assert table.loc[table["error"] == "", "score"].astype(float).between(1, 10).all()


def post(url: str, payload: dict):
    request = urllib.request.Request(url, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.mark.slow
def test_served_model_answers_base64_images_and_refuses_paths(store, tmp_path):
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MLFLOW_TRACKING_URI": store["uri"]}
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{NAME}@champion",
                               "--env-manager", "local", "--host", "127.0.0.1", "-p", str(port)],
                              env=env, cwd=store["root"], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/ping", server, tmp_path / "serve.log")
        image = base64.b64encode((store["ava"] / "image" / "14.jpg").read_bytes()).decode()
        status, body = post(f"http://127.0.0.1:{port}/invocations",
                            {"dataframe_records": [{"image": image}, {"image": base64.b64encode(b"junk").decode()}]})
        assert status == 200, body
        first, second = body["predictions"]
        assert 1 <= first["score"] <= 10 and first["error"] == ""
        assert second["score"] is None or second["score"] != second["score"]
        assert "not an image" in second["error"]
        status, body = post(f"http://127.0.0.1:{port}/invocations",
                            {"dataframe_records": [{"path": str(store["ava"] / "image" / "14.jpg")}]})
        assert status >= 400 and "not `path`" in str(body)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def test_score_without_a_registered_model_says_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'empty.db'}")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'empty.db'}")
    (tmp_path / "a.png").write_bytes(b"")
    assert cli.main(["score", str(tmp_path / "a.png")]) == 2
    error = capsys.readouterr().err
    assert "models:/clip-aesthetics@champion" in error and "clip-aesthetics register" in error
