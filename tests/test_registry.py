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
import torch

from clip_aesthetics.cli import app as cli
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
    assert champion.tags["clip_revision"] == best.data.params["clip_resolved_revision"]
    assert float(champion.tags["test_spearman"]) == pytest.approx(best.data.metrics["best_test_spearman"])


def test_the_champions_source_run_is_the_training_run_with_its_datasets(store):
    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias(NAME, "champion")
    assert champion.run_id == champion.tags["run_id"], "the UI's lineage leads to the training run"
    training = client.get_run(champion.run_id)
    assert "mlflow.parentRunId" in training.data.tags and "best_val_spearman" in training.data.metrics
    inputs = training.inputs.dataset_inputs
    contexts = {tag.value for i in inputs for tag in i.tags if tag.key == "mlflow.data.context"}
    assert contexts == {"train", "validation", "test"}
    assert len({i.dataset.digest for i in inputs}) == 1 and champion.tags["dataset_digest"] == inputs[0].dataset.digest
    sizes = {i.tags[0].value: json.loads(i.dataset.profile)["num_rows"] for i in inputs}
    assert sizes == {"train": int(training.data.params["n_train"]), "validation": int(training.data.params["n_val"]),
                     "test": int(training.data.params["n_test"])}
    bundled = mlflow.search_logged_models(experiment_ids=[training.info.experiment_id], output_format="list",
                                          filter_string=f"source_run_id = '{champion.run_id}' and name = 'scorer'")
    assert len(bundled) == 1, "the self-contained copy is a model of the training run"
    model = client.get_logged_model(bundled[0].model_id)
    linked = {m.key: m.value for m in model.metrics or []}
    assert linked["best_val_spearman"] == pytest.approx(training.data.metrics["best_val_spearman"])
    assert "AVA: 1-10" in client.get_registered_model(NAME).description
    assert champion.tags["clip_model_id"] in champion.description and "val_spearman" in champion.description
    assert champion.tags["score_range"] == "1,10" and "Scores on a 1-10 scale" in champion.description
    assert champion.tags["dataset"].endswith("/AVA.txt")
    experiment = client.get_experiment(training.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


@pytest.mark.parametrize("native", [True, False], ids=["native-bf16-cpu", "emulated-bf16-cpu"])
def test_the_registered_model_scores_with_the_decoding_and_precision_it_was_trained_with(store, monkeypatch, native):
    """A run trained with reduced decoding in what precision=auto picks (bfloat16 on a CPU that computes it
    natively, float32 elsewhere: the detection is forced either way, whatever this machine's CPU) is registered;
    the registered, self-contained model records both and scores with them: its scores are the run's test
    predictions."""
    from clip_aesthetics.embedding import embed

    monkeypatch.setattr(embed, "native_bfloat16", lambda: native)
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
    assert (scorer.decoding, scorer.precision, scorer.dtype) == ("reduced", precision, getattr(torch, precision))
    predictions = pd.read_csv(client.download_artifacts(run.info.run_id, "predictions/test.csv", str(store["root"])))
    paths = [store["ava"] / "image" / f"{i}.jpg" for i in predictions["image_id"]]
    scores = scorer.score_paths(paths, num_workers=0)["score"].to_numpy()
    np.testing.assert_allclose(scores, predictions["score_pred"], atol=1e-4 if precision != "float32" else 0.03)
    scorer.decoding = "full"  # a model that forgot how it was trained would score visibly differently
    assert np.abs(scorer.score_paths(paths, num_workers=0)["score"].to_numpy() - scores).max() > 0.01


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
    assert list(table.columns) == ["path", "score", "error"] and len(table) == 5
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
    version = mlflow.MlflowClient().get_model_version_by_alias(NAME, "champion")
    assert f"models:/{NAME}@champion -> version {version.version} of {NAME}" in done.stdout
    assert store["uri"] in done.stdout and "scores: mean" in done.stdout
    assert "Downloading artifacts" not in done.stderr, "MLflow's per-file progress bars are off"
    score = pd.read_csv(elsewhere / "scores.csv")["score"][0]
    assert f"max {score:.4f}" in done.stdout, "scores are printed to 4 decimals"
    assert not (elsewhere / "mlflow.db").exists()


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
        status, body = post(f"http://127.0.0.1:{port}/invocations", {"dataframe_records": [
            {"image": image}, {"image": base64.b64encode(b"junk").decode()}, {"image": None}, {"image": 7}]})
        assert status == 200, body
        first, *bad = body["predictions"]
        assert 1 <= first["score"] <= 10 and first["error"] == ""
        assert all(row["score"] is None or row["score"] != row["score"] for row in bad)
        assert "not an image" in bad[0]["error"] and "no image in this row" in bad[1]["error"]
        assert "got int" in bad[2]["error"]
        for records, words in (([{"path": str(store["ava"] / "image" / "14.jpg")}], "not `path`"),
                               ([], "no rows"), ([{"picture": image}], "no rows with an `image` column")):
            status, body = post(f"http://127.0.0.1:{port}/invocations", {"dataframe_records": records})
            assert status == 400 and words in json.loads(body)["message"], body[:500]
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
    mlflow.MlflowClient().search_experiments()  # the store exists, but holds no registered model
    (tmp_path / "a.png").write_bytes(b"")
    assert cli.main(["score", str(tmp_path / "a.png")]) == 2
    error = capsys.readouterr().err
    assert "models:/clip-aesthetics@champion" in error and "clip-aesthetics register" in error


@pytest.fixture
def one_run(sample_ava, tiny_clip, tmp_path, tracking_uri):
    """A fresh store holding one finished training run (its own, so versions can be counted)."""
    assert cli.main(["main", "--clip", str(tiny_clip), "--ava-dir", str(sample_ava), "--cache-dir",
                     str(tmp_path / "cache"), "--epochs", "2", "--lr", "0.003", "--batch-size", "16",
                     "--num-workers", "0"]) == 0
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("clip-aesthetics").experiment_id
    return client, client.search_runs([experiment])[0]


def aliases(client, name=NAME) -> dict[str, str]:
    return {alias: str(version) for alias, version in client.get_registered_model(name).aliases.items()}


def test_concurrent_registration_of_one_run_converges_on_one_version(one_run, monkeypatch, capsys):
    """Another process registers the same run between our check and our registration: one version remains."""
    from clip_aesthetics.tracking import registry

    client, run = one_run
    real_register = registry.mlflow.register_model

    def another_writer_first(model_uri, name, tags=None):
        real_register(model_uri, name, tags=tags)  # what the concurrent `register` did a moment before
        return real_register(model_uri, name, tags=tags)

    monkeypatch.setattr(registry.mlflow, "register_model", another_writer_first)
    assert cli.main(["register", "--run-id", run.info.run_id]) == 0
    versions = client.search_model_versions(f"name = '{NAME}'")
    assert [str(v.version) for v in versions] == ["1"], "the later writer removed its own version"
    assert aliases(client) == {"champion": "1"}
    assert "was already" in capsys.readouterr().out


def test_champion_is_recomputed_from_all_versions(one_run, monkeypatch):
    """Two writers each saw no champion and set their own: the alias ends on the better version."""
    from clip_aesthetics.tracking import registry

    client, run = one_run
    assert cli.main(["register", "--run-id", run.info.run_id]) == 0
    version = client.get_model_version(NAME, "1")
    better = client.create_model_version(NAME, version.source, tags={**version.tags, "run_id": "other",
                                                                       "val_spearman": "0.99"})
    client.set_registered_model_alias(NAME, "champion", "1")  # the stale decision of the first writer
    assert registry.elect_champion(client, NAME, "val_spearman") == str(better.version)
    assert aliases(client)["champion"] == str(better.version)


def test_model_names_with_quotes_are_searched_safely(one_run, capsys):
    client, run = one_run
    assert cli.main(["register", "--run-id", run.info.run_id, "--model-name", "it's mine"]) == 0
    assert aliases(client, "it's mine") == {"champion": "1"}
    assert cli.main(["register", "--run-id", run.info.run_id, "--model-name", "it's mine"]) == 0
    assert "was already" in capsys.readouterr().out
    assert cli.main(["register", "--run-id", run.info.run_id, "--model-name", "both ' and \""]) == 2
    assert "both quote characters" in capsys.readouterr().err


def test_register_of_an_unknown_run_is_one_line(one_run, capsys):
    assert cli.main(["register", "--run-id", "0123456789abcdef0123456789abcdef"]) == 2
    error = one_error_line(capsys.readouterr().err)
    assert error.startswith("error: no run '0123456789abcdef0123456789abcdef'")


def one_error_line(stderr: str) -> str:
    """The CLI's message: exactly one `error:` line and no traceback (MLflow's progress bars may surround it)."""
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-2000:]
    return lines[0]


def logged_model_uri(run_id: str) -> str:
    return mlflow.search_logged_models(filter_string=f"source_run_id = '{run_id}'", output_format="list")[0].model_uri


def test_scores_are_clipped_to_1_10_in_every_path(one_run, sample_ava, tmp_path):
    _, run = one_run
    scorer = mlflow.pyfunc.load_model(logged_model_uri(run.info.run_id))
    head = scorer.unwrap_python_model().head
    image = (sample_ava / "image" / "14.jpg").read_bytes()
    for bias, expected in ((-100.0, 1.0), (100.0, 10.0)):  # a broken head
        with torch.no_grad():
            head.bias.fill_(bias)
        assert scorer.predict(pd.DataFrame({"image": [image, image]}))["score"].tolist() == [expected, expected]
        paths = scorer.unwrap_python_model().score_paths([sample_ava / "image" / "14.jpg"], num_workers=0)
        assert paths["score"].tolist() == [expected]


def test_training_counts_the_test_predictions_it_had_to_clip(sample_ava, tiny_clip, tmp_path, tracking_uri):
    """Raw targets with a barely trained head: outputs near 0, every one below 1."""
    assert cli.main(["main", "--clip", str(tiny_clip), "--ava-dir", str(sample_ava), "--cache-dir",
                     str(tmp_path / "cache"), "--norm", "false", "--epochs", "1", "--lr", "1e-7",
                     "--num-workers", "0"]) == 0
    client = mlflow.MlflowClient()
    run = client.search_runs([client.get_experiment_by_name("clip-aesthetics").experiment_id])[0]
    predictions = pd.read_csv(client.download_artifacts(run.info.run_id, "predictions/test.csv", str(tmp_path)))
    assert run.data.metrics["test_clipped_predictions"] == len(predictions) == int(run.data.params["n_test"])
    assert (predictions["score_pred"] == 1.0).all()


def test_score_refuses_a_folder_as_output_before_any_work(one_run, sample_ava, tmp_path, capsys):
    assert cli.main(["score", str(sample_ava / "image" / "14.jpg"), "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert f"--out {tmp_path} is a folder" in error and "scores.csv" in error


def test_score_with_a_run_model_whose_clip_folder_moved_is_one_line(one_run, tiny_clip, sample_ava, tmp_path, capsys):
    _, run = one_run
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
def test_requests_that_cannot_be_scored_say_why(one_run, frame, words):
    from mlflow.exceptions import MlflowException

    _, run = one_run
    model = mlflow.pyfunc.load_model(logged_model_uri(run.info.run_id)).unwrap_python_model()
    with pytest.raises(MlflowException, match=words):
        model.predict(None, frame)


def test_bad_rows_get_nan_and_a_reason_beside_good_ones(one_run, sample_ava):
    _, run = one_run
    scorer = mlflow.pyfunc.load_model(logged_model_uri(run.info.run_id))
    good = base64.b64encode((sample_ava / "image" / "14.jpg").read_bytes()).decode()
    out = scorer.predict(pd.DataFrame({"image": [good, None, 5, "not base64!"]}))
    assert 1 <= out["score"].iat[0] <= 10 and out["error"].iat[0] == ""
    assert out["score"].iloc[1:].isna().all()
    assert list(out["error"].iloc[1:]) == ["no image in this row (null or absent)",
                                           "image must be bytes or a base64 string, got int",
                                           "image is a string but not valid base64"]


def test_the_bundle_holds_the_weights_the_model_computed_with(tiny_clip, tmp_path):
    from clip_aesthetics.backbones.families import load_backbone, resolve_backbone, save_random_backbone
    from clip_aesthetics.tracking.registry import _bundled_weights

    def dtypes(model):
        return {name.removeprefix("tower."): parameter.dtype for name, parameter in model.named_parameters()}

    model, label = _bundled_weights(load_backbone(resolve_backbone(str(tiny_clip)), torch.device("cpu"))[0], "auto", "bfloat16")
    kinds = dtypes(model)
    assert kinds["vision_model.encoder.layers.0.mlp.fc1.weight"] == torch.bfloat16
    assert kinds["vision_model.embeddings.patch_embedding.weight"] == torch.bfloat16
    assert kinds["vision_model.post_layernorm.weight"] == torch.float32
    assert kinds["visual_projection.weight"] == torch.float32 and label.startswith("bfloat16 matrices")
    model, label = _bundled_weights(load_backbone(resolve_backbone(str(tiny_clip)), torch.device("cpu"))[0], "auto", "float32")
    assert set(dtypes(model).values()) == {torch.float16} and label == "float16"
    siglip = save_random_backbone(tmp_path / "siglip", "siglip")  # its attention-pool head runs in float32
    kinds = dtypes(_bundled_weights(load_backbone(resolve_backbone(str(siglip)), torch.device("cpu"))[0], "auto", "bfloat16")[0])
    assert kinds["encoder.layers.0.mlp.fc1.weight"] == torch.bfloat16
    assert {kinds[k] for k in kinds if k.startswith(("head.", "post_layernorm."))} == {torch.float32}
