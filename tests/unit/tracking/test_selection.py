"""Choosing the best: an undefined number (a constant prediction's Spearman) never wins an epoch, a sweep or the
registry; errors are minimised, correlations maximised; a degenerate model is named as such."""

import mlflow
import numpy as np
import pytest
import torch

from clip_aesthetics.cli import app as cli
from clip_aesthetics.embedding.features import Dataset, SplitFeatures
from clip_aesthetics.heads import training
from clip_aesthetics.heads.metrics import ranking_key
from clip_aesthetics.settings import TrainSettings
from clip_aesthetics.settings.values import direction

# A head that gives every image the same score (clipped to 10): its Spearman is undefined.
CONSTANT = (0.0, 0.0, 100.0)


def scripted_fit(plan):
    """A stand-in for head.fit that sets the linear head to plan[epoch - 1] = (w0, w1, bias) each epoch.

    The generated targets follow feature 0, not feature 1, so each epoch's ranking quality is the test's
    choice: w0 = w1 = 0 gives a constant (undefined) epoch, weight on feature 1 a worse one."""

    def fit(head, features, targets, epochs, lr, batch_size, seed, on_epoch, loss=None):
        for epoch, (w0, w1, bias) in enumerate(plan, start=1):
            with torch.no_grad():
                head.weight.zero_()
                head.weight[0, 0], head.weight[0, 1] = w0, w1
                head.bias.fill_(bias)
            on_epoch(epoch, 0.0)

    return fit


def small_dataset(seed=0, n=(200, 60, 60)) -> Dataset:
    rng = np.random.default_rng(seed)

    def split(size):
        x = rng.normal(size=(size, 4)).astype(np.float32)
        noisy = x[:, 0] + rng.normal(scale=0.8 if size == n[0] else 1.5, size=size)
        return SplitFeatures(np.arange(size), x, 5.5 + 0.6 * noisy)

    return Dataset(split(n[0]), split(n[1]), split(n[2]), skipped=None)


def test_directions_and_undefined_values_rank_last():
    assert direction("val_spearman") == direction("best_test_accuracy") == 1
    assert direction("val_mse") == direction("best_test_mae") == -1
    with pytest.raises(ValueError, match="higher or lower"):
        direction("val_foo")
    assert ranking_key(0.01, "val_mse") > ranking_key(0.02, "val_mse")
    assert ranking_key(-0.9, "val_spearman") > ranking_key(float("nan"), "val_spearman")
    assert ranking_key(99.0, "val_mse") > ranking_key(None, "val_mse")


def test_an_undefined_first_epoch_does_not_lock_the_selection(monkeypatch):
    """Epoch 1 constant (undefined), 3 best, 4 constant again: the run keeps epoch 3."""
    monkeypatch.setattr(training, "fit", scripted_fit([CONSTANT, (0.02, 0.05, 0.55), (0.06, 0.0, 0.55), CONSTANT]))
    result = training.train_and_evaluate(small_dataset(), TrainSettings(epochs=4), 0, lambda *a: None)
    val = [row["val_spearman"] for row in result.history]
    assert np.isnan(val[0]) and np.isnan(val[3]) and val[2] > val[1]
    assert result.best_epoch == 3 and result.selection == "val_spearman" and not result.degenerate
    assert np.ptp(result.test_pred) > 0, "the kept model ranks images"


def test_a_run_with_no_defined_epoch_is_marked_undefined_and_degenerate(monkeypatch):
    monkeypatch.setattr(training, "fit", scripted_fit([CONSTANT, CONSTANT]))
    result = training.train_and_evaluate(small_dataset(), TrainSettings(epochs=2), 0, lambda *a: None)
    assert result.selection == "undefined" and result.best_epoch == 2, "the last epoch is kept, not as a result"
    assert result.degenerate.startswith("constant predictions")


def test_mostly_clipped_scores_are_named_degenerate(monkeypatch):
    monkeypatch.setattr(training, "fit", scripted_fit([(0.05, 0.0, 1.02)]))  # ranks, but most outputs exceed 10
    result = training.train_and_evaluate(small_dataset(), TrainSettings(epochs=1), 0, lambda *a: None)
    assert result.selection == "val_spearman" and "were clipped" in result.degenerate


def main_args(sample_ava, tiny_clip, tmp_path, *extra):
    return ["main", "--clip", str(tiny_clip), "--ava-dir", str(sample_ava), "--cache-dir", str(tmp_path / "cache"),
            "--num-workers", "0", "--batch-size", "16", *extra]


def runs_named(client=None):
    client = client or mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("clip-aesthetics").experiment_id
    return {run.info.run_name: run for run in client.search_runs([experiment])}


def test_an_undefined_run_is_tagged_and_never_registered(sample_ava, tiny_clip, tmp_path, tracking_uri, monkeypatch,
                                                         capsys):
    real_fit = training.fit
    monkeypatch.setattr(training, "fit", scripted_fit([CONSTANT, CONSTANT]))
    assert cli.main(main_args(sample_ava, tiny_clip, tmp_path, "--epochs", "2", "--run-name", "constant")) == 0
    out = capsys.readouterr().out
    assert "no epoch had a defined val_spearman" in out and "warning: the kept model is degenerate" in out
    run = runs_named()["constant"]
    assert run.data.tags["selection"] == "undefined" and run.data.tags["degenerate"].startswith("constant")
    assert not [k for k in run.data.metrics if k.startswith("best_")], "no best_* logged as if it were a result"
    assert "Warning" in run.data.tags["mlflow.note.content"]

    # Alone, it is refused in one line naming it; beside a good run, the good one is registered.
    assert cli.main(["register", "--experiment-name", "clip-aesthetics"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and run.info.run_id in error and "selection=undefined" in error
    assert not mlflow.MlflowClient().search_registered_models()
    monkeypatch.setattr(training, "fit", real_fit)
    assert cli.main(main_args(sample_ava, tiny_clip, tmp_path, "--epochs", "3", "--lr", "0.003",
                              "--run-name", "good")) == 0
    assert cli.main(["register", "--experiment-name", "clip-aesthetics"]) == 0
    out = capsys.readouterr().out
    assert f"not a candidate: run {run.info.run_id} (constant)" in out
    champion = mlflow.MlflowClient().get_model_version_by_alias("clip-aesthetics", "champion")
    assert champion.run_id == runs_named()["good"].info.run_id


def test_register_by_an_error_metric_promotes_the_lowest(sample_ava, tiny_clip, tmp_path, tracking_uri, capsys):
    for name, lr in (("fast", "0.003"), ("slow", "0.0003")):
        assert cli.main(main_args(sample_ava, tiny_clip, tmp_path, "--epochs", "3", "--lr", lr,
                                  "--run-name", name)) == 0
    runs = runs_named()
    errors = {name: run.data.metrics["best_val_mse"] for name, run in runs.items()}
    correlations = {name: run.data.metrics["best_val_spearman"] for name, run in runs.items()}
    assert errors["fast"] != errors["slow"]
    for metric, values, pick in (("val_mse", errors, min), ("val_spearman", correlations, max)):
        name = f"by-{metric}"
        assert cli.main(["register", "--experiment-name", "clip-aesthetics", "--metric", metric,
                         "--model-name", name]) == 0
        champion = mlflow.MlflowClient().get_model_version_by_alias(name, "champion")
        assert champion.run_id == runs[pick(values, key=values.get)].info.run_id, metric


def test_register_names_the_metrics_it_has_and_the_way_for_val_fraction_0(sample_ava, tiny_clip, tmp_path,
                                                                            tracking_uri, capsys):
    assert cli.main(main_args(sample_ava, tiny_clip, tmp_path, "--epochs", "2", "--lr", "0.003",
                              "--val-fraction", "0")) == 0
    assert cli.main(["register", "--experiment-name", "clip-aesthetics"]) == 2
    error = capsys.readouterr().err
    assert "no defined val_spearman" in error
    assert "metric=test_spearman" in error and "test_spearman" in error.split("Metrics the candidates have:")[1]
    assert cli.main(["register", "--experiment-name", "clip-aesthetics", "--metric", "test_spearman"]) == 0


def test_an_unknown_metric_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["register", "--metric", "val_quality"]) == 2
    assert "higher or lower is better" in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists()


def test_a_sweep_with_an_undefined_child_elects_a_defined_one(sample_ava, tiny_clip, tmp_path, tracking_uri,
                                                              monkeypatch):
    """The raw-target child gives constant scores (as the seed's raw targets with a small lr can); the best_run is
    the normed one, and the comparison table lists the undefined child last."""
    real_fit = training.fit

    def constant_when_raw(head, features, targets, *args):
        if targets.mean() > 1:  # raw 1-10 targets
            return scripted_fit([CONSTANT] * args[0])(head, features, targets, *args)
        return real_fit(head, features, targets, *args)

    monkeypatch.setattr(training, "fit", constant_when_raw)
    assert cli.main(["sweep", "--clips", str(tiny_clip), "--norms", "false,true", "--ava-dir", str(sample_ava),
                     "--cache-dir", str(tmp_path / "cache"), "--epochs", "3", "--lr", "0.003", "--batch-size", "16",
                     "--num-workers", "0"]) == 0
    runs = runs_named()
    parent = runs["sweep"]
    assert runs["tiny-a-raw"].data.tags["selection"] == "undefined"
    assert parent.data.tags["best_run"] == runs["tiny-a-normed"].info.run_id
    assert "Not comparable: **tiny-a-raw**" in parent.data.tags["mlflow.note.content"]
    table = mlflow.load_table("comparison/children.json", run_ids=[parent.info.run_id])
    assert list(table["run_name"]) == ["tiny-a-normed", "tiny-a-raw"]
