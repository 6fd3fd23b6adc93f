"""`register`: the best run of a sweep promoted to the Model Registry, aliases, versions made once, the bundle."""


import json

import mlflow
import pandas as pd
import pytest
import torch

from clip_aesthetics.cli import app as cli

NAME = "clip-aesthetics"


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


def test_the_bundle_holds_the_weights_the_model_computed_with(tiny_clip, tmp_path):
    from clip_aesthetics.backbones.families import load_backbone, resolve_backbone, save_random_backbone
    from clip_aesthetics.scoring.bundle import bundled_weights as _bundled_weights

    def dtypes(model):
        return {name.removeprefix("tower."): parameter.dtype for name, parameter in model.named_parameters()}

    def tower(folder):
        return load_backbone(resolve_backbone(str(folder)), torch.device("cpu"))[0]

    model, label = _bundled_weights(tower(tiny_clip), "auto", "bfloat16")
    kinds = dtypes(model)
    assert kinds["vision_model.encoder.layers.0.mlp.fc1.weight"] == torch.bfloat16
    assert kinds["vision_model.embeddings.patch_embedding.weight"] == torch.bfloat16
    assert kinds["vision_model.post_layernorm.weight"] == torch.float32
    assert kinds["visual_projection.weight"] == torch.float32 and label.startswith("bfloat16 matrices")
    model, label = _bundled_weights(tower(tiny_clip), "auto", "float32")
    assert set(dtypes(model).values()) == {torch.float16} and label == "float16"
    siglip = save_random_backbone(tmp_path / "siglip", "siglip")  # its attention-pool head runs in float32
    kinds = dtypes(_bundled_weights(tower(siglip), "auto", "bfloat16")[0])
    assert kinds["encoder.layers.0.mlp.fc1.weight"] == torch.bfloat16
    assert {kinds[k] for k in kinds if k.startswith(("head.", "post_layernorm."))} == {torch.float32}
