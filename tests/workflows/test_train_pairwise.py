"""head=pairwise on a table of preferences, and `evaluate --pairs`: a score learned from "A is better than B",
measured by how often the preferred image scores higher, for any model."""

import mlflow
import numpy as np
import pandas as pd
import pytest
from helpers import new_store
from scipy import stats

from clip_aesthetics.cli import app as cli
from clip_aesthetics.data.labels import read_dataset
from clip_aesthetics.data.pairs import pair_key, read_pairs
from clip_aesthetics.data.sample_data import write_sample_pairs
from clip_aesthetics.data.tables import LabelsError
from clip_aesthetics.scoring.uris import load_scorer
from clip_aesthetics.settings import DataSettings

PAIR_ACCURACY_FLOOR = 0.75  # held-out pairs, 10% of labels flipped (so at most about 0.9); 0.84 when written
RANK_FLOOR = 0.8  # Spearman of its scores against the scores the preferences were generated from; 0.92 then


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    folder = write_sample_pairs(tmp_path_factory.mktemp("pairs") / "pairs")
    with (folder / "pairs.csv").open("a") as table:  # a pair naming a missing image: set aside, not a crash
        table.write("images/0000.jpg,images/missing.jpg,a\n")
    return folder


@pytest.fixture(scope="module")
def trained_pairs(pairs, tiny_clip, tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    uri = new_store(root / "mlflow.db")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        assert cli.main(["main", "--clip", str(tiny_clip), "--labels", str(pairs / "pairs.csv"), "--head", "pairwise",
                         "--lr", "1e-2", "--epochs", "10", "--cache-dir", str(root / "cache"), "--run-name",
                         "pairwise"]) == 0
        client = mlflow.MlflowClient()
        run = client.search_runs([e.experiment_id for e in client.search_experiments()])[0]
        model = mlflow.search_logged_models(output_format="list", filter_string=(
            f"source_run_id = '{run.info.run_id}'"))[0].model_uri
        yield {"uri": uri, "root": root, "run": run, "model": model, "client": client}


def test_held_out_pairs_are_predicted_and_its_scores_rank_the_known_ones(trained_pairs, pairs, monkeypatch):
    metrics = trained_pairs["run"].data.metrics
    assert metrics["best_test_pair_accuracy"] > PAIR_ACCURACY_FLOOR
    assert metrics["best_test_pair_logloss"] < np.log(2), "better than a model that always says 50%"
    assert trained_pairs["run"].data.tags["selection"] == "val_pair_logloss"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_pairs["uri"])
    mlflow.set_tracking_uri(trained_pairs["uri"])
    known = pd.read_csv(pairs / "scores.csv")
    scored = load_scorer(trained_pairs["model"]).score([str(pairs / p) for p in known["image"]])
    assert list(scored.columns) == ["score", "percentile", "error"] and (scored["error"] == "").all()
    assert stats.spearmanr(scored["score"], known["score"]).statistic > RANK_FLOOR
    # the declared scale: the training images average 5.5, one standard deviation of them is 1.5 points
    assert scored["score"].between(1, 10).all() and abs(scored["score"].mean() - 5.5) < 0.5
    assert scored["percentile"].between(0, 100).all()


def test_no_test_pair_is_trained_on_and_a_pair_with_a_missing_image_is_set_aside(trained_pairs, pairs):
    client = trained_pairs["client"]
    run_id = trained_pairs["run"].info.run_id
    split = pd.read_csv(client.download_artifacts(run_id, "data/split.csv"))
    keys = {name: set(pair_key(pd.DataFrame({"a_id": part["image_a"].map(hash), "b_id": part["image_b"].map(hash)})))
            for name, part in split.groupby("split")}
    assert keys["test"] and not keys["test"] & (keys["train"] | keys.get("val", set()))
    assert len(split) == 1200, "every pair with two images in exactly one split"
    skipped = pd.read_csv(client.download_artifacts(run_id, "data/skipped.csv"))
    assert skipped["reason"].str.contains("image_b 'images/missing.jpg': missing file").sum() == 1


def test_pair_tables_in_every_accepted_form(tmp_path, pairs):
    images = sorted((pairs / "images").glob("*.jpg"))[:4]
    rows = [(images[0], images[1], "A"), (images[1], images[2], "b"), (images[2], images[3], "tie"),
            (images[0], images[3], "1"), (images[1], images[3], 0), (images[0], images[2], 0.7)]
    table = tmp_path / "pairs.csv"
    pd.DataFrame(rows, columns=["image_a", "image_b", "winner"]).to_csv(table, index=False)
    labelled = read_dataset(DataSettings(labels=str(table), image_dir=str(pairs)))
    assert labelled.kind == "pairs" and labelled.pairs["preference"].tolist() == [1.0, 0.0, 0.5, 1.0, 0.0, 0.7]
    assert len(labelled.frame) == 4 and labelled.frame["score"].isna().all()
    parquet = tmp_path / "pairs.parquet"
    pd.DataFrame({"image_a": [images[0].read_bytes()], "image_b": [images[1].read_bytes()],
                  "preference": ["a"]}).to_parquet(parquet)
    as_bytes = read_dataset(DataSettings(labels=str(parquet), image_dir=str(pairs)))
    assert as_bytes.pairs["a_id"].iat[0] == labelled.pairs["a_id"].iat[0], "keyed by content, whatever the form"
    for bad in ("maybe", "1.5", ""):
        pd.DataFrame([(images[0], images[1], "a"), (images[1], images[2], bad)],
                     columns=["image_a", "image_b", "preference"]).to_csv(table, index=False)
        with pytest.raises(LabelsError, match=r"pairs\.csv:3: preference .* none of a, b, tie"):
            read_pairs(table, image_dir=pairs)


def test_a_pair_table_trains_only_head_pairwise_and_a_score_table_never_does(pairs, tiny_clip, tmp_path,
                                                                              tracking_uri, capsys):
    assert cli.main(["main", "--clip", str(tiny_clip), "--labels", str(pairs / "pairs.csv"), "--head", "linear",
                     "--cache-dir", str(tmp_path / "cache")]) == 2
    assert "evaluate --pairs" in capsys.readouterr().err
    assert cli.main(["main", "--clip", str(tiny_clip), "--labels", str(pairs / "scores.csv"), "--head", "pairwise",
                     "--cache-dir", str(tmp_path / "cache")]) == 2
    assert "image_a, image_b" in capsys.readouterr().err
    assert mlflow.MlflowClient().search_runs([e.experiment_id for e in mlflow.MlflowClient().search_experiments()]) \
        == []


def test_evaluate_pairs_measures_models_trained_on_scores_and_on_pairs_side_by_side(trained_pairs, pairs, tiny_clip,
                                                                                    monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_pairs["uri"])
    mlflow.set_tracking_uri(trained_pairs["uri"])
    cache = str(trained_pairs["root"] / "cache")
    assert cli.main(["main", "--clip", str(tiny_clip), "--labels", str(pairs / "scores.csv"), "--lr", "1e-2",
                     "--epochs", "10", "--cache-dir", cache, "--gallery", "false", "--run-name", "on-scores"]) == 0
    client = trained_pairs["client"]
    on_scores = next(r for r in client.search_runs([e.experiment_id for e in client.search_experiments()])
                     if r.info.run_name == "on-scores")
    score_model = mlflow.search_logged_models(output_format="list", filter_string=(
        f"source_run_id = '{on_scores.info.run_id}'"))[0].model_uri
    capsys.readouterr()
    assert cli.main(["evaluate", "--model", trained_pairs["model"], "--model", score_model, "--pairs",
                     str(pairs / "pairs.csv"), "--cache-dir", cache, "--gallery", "false"]) == 0
    printed = capsys.readouterr().out
    assert "eval_pair_accuracy" in printed
    evaluations = [r for r in client.search_runs([e.experiment_id for e in client.search_experiments()])
                   if r.data.params.get("model_uri") in (trained_pairs["model"], score_model)]
    assert len(evaluations) == 2
    accuracy = {r.data.params["model_uri"]: r.data.metrics["eval_pair_accuracy"] for r in evaluations}
    # the pairwise model on its own test pairs: the figure its training run reported
    assert accuracy[trained_pairs["model"]] == pytest.approx(
        trained_pairs["run"].data.metrics["best_test_pair_accuracy"], abs=1e-9)
    assert accuracy[score_model] > PAIR_ACCURACY_FLOOR, "a model trained on the true scores orders the pairs too"
    assert all(r.data.metrics["eval_pairs"] > 100 for r in evaluations)
    assert cli.main(["evaluate", "--model", score_model, "--pairs", str(pairs / "scores.csv"), "--cache-dir",
                     cache]) == 2
    assert "not a pair table" in capsys.readouterr().err


def test_a_pairwise_run_registers_by_its_own_metric_and_says_what_its_scores_are(trained_pairs, monkeypatch,
                                                                                 capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_pairs["uri"])
    mlflow.set_tracking_uri(trained_pairs["uri"])
    run_id = trained_pairs["run"].info.run_id
    assert cli.main(["register", "--run-id", run_id, "--metric", "val_pair_accuracy", "--model-name", "pairs"]) == 0
    version = trained_pairs["client"].get_model_version_by_alias("pairs", "champion")
    assert "val_pair_accuracy 0." in version.description and "Bradley-Terry" in version.description
    assert "percentiles against this model's predictions on the" in version.description


def test_a_sweep_on_a_pair_table_names_its_best_child_by_val_pair_logloss(pairs, tiny_clip, tmp_path, tracking_uri):
    assert cli.main(["sweep", "--clips", str(tiny_clip), "--labels", str(pairs / "pairs.csv"), "--heads", "pairwise",
                     "--norms", "true", "--lrs", "1e-2,1e-4", "--epochs", "3", "--cache-dir", str(tmp_path / "cache"),
                     "--gallery", "false"]) == 0
    client = mlflow.MlflowClient()
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    children = {r.info.run_id: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert len(children) == 2 and parent.data.tags["best_run"] in children
    best = children[parent.data.tags["best_run"]].data.metrics["best_val_pair_logloss"]
    assert best == min(r.data.metrics["best_val_pair_logloss"] for r in children.values())


def test_a_pair_table_of_ties_only_is_refused_before_any_run(pairs, tiny_clip, tmp_path, tracking_uri, capsys):
    """Nothing to learn: every rater said "can't say". Trained anyway, its scores would be noise stretched onto 1-10."""
    table = pd.read_csv(pairs / "pairs.csv").assign(preference="tie")
    table.to_csv(pairs / "ties.csv", index=False)
    assert cli.main(["main", "--clip", str(tiny_clip), "--labels", str(pairs / "ties.csv"), "--head", "pairwise",
                     "--cache-dir", str(tmp_path / "cache")]) == 2
    error = capsys.readouterr().err
    assert "every one of the" in error and "training pairs is a tie: there is nothing to learn" in error
    assert mlflow.MlflowClient().search_runs([e.experiment_id for e in mlflow.MlflowClient().search_experiments()]) \
        == []
