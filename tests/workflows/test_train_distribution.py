"""head=distribution: trained on vote counts with the earth mover's distance, it predicts the mean as well as a
linear head and the raters' disagreement (score_std) on top; data without votes is refused before any run."""

import importlib.util
import os

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from helpers import new_store

from clip_aesthetics.cli import app as cli
from clip_aesthetics.data.sample_data import write_sample_ratings, write_sample_votes
from clip_aesthetics.heads.distribution import emd, true_std
from clip_aesthetics.scoring.uris import load_scorer

VOTES = ",".join(f"c{k}" for k in range(1, 11))
STD_SPEARMAN_FLOOR = 0.5  # predicted against voted std on the held-out images (0.79 when written)
MEAN_MARGIN = 0.05  # the distribution head's test Spearman of the mean may trail the linear head's by this much


@pytest.fixture(scope="module")
def votes(tmp_path_factory):
    return write_sample_votes(tmp_path_factory.mktemp("votes") / "votes", 300)


@pytest.fixture(scope="module")
def runs(votes, tiny_clip, tmp_path_factory):
    """One distribution and one linear run on the same table, in one store. In float32: `precision auto` would
    train and score in bfloat16 on a CPU with native bfloat16, and the float32 ONNX export (compared with the
    PyTorch scorer below) would then differ from it by bfloat16's rounding, not by the export's."""
    root = tmp_path_factory.mktemp("store")
    uri = new_store(root / "mlflow.db")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        for head in ("distribution", "linear"):
            assert cli.main(["main", "--clip", str(tiny_clip), "--labels", str(votes / "votes.csv"), "--vote-columns",
                             VOTES, "--head", head, "--lr", "1e-2", "--epochs", "20", "--cache-dir",
                             str(root / "cache"), "--gallery", "false", "--run-name", head,
                             "--precision", "float32"]) == 0
        client = mlflow.MlflowClient()
        found = {r.info.run_name: r for r in client.search_runs([e.experiment_id for e in client.search_experiments()])}
        yield {"uri": uri, "root": root, "runs": found, "client": client}


def test_emd_is_nimas_distance_between_cumulative_distributions():
    p = torch.tensor([[1.0, 0.0, 0.0], [0.2, 0.5, 0.3]])
    q = torch.tensor([[0.0, 0.0, 1.0], [0.2, 0.5, 0.3]])
    np.testing.assert_allclose(emd(p, q).numpy(), [np.sqrt(2 / 3), 0.0], atol=1e-7)
    np.testing.assert_allclose(true_std(np.array([[0.5, 0.0, 0.5], [0.0, 1.0, 0.0]])), [1.0, 0.0])


def test_the_distribution_head_predicts_the_mean_and_ranks_the_raters_disagreement(runs):
    distribution, linear = runs["runs"]["distribution"].data.metrics, runs["runs"]["linear"].data.metrics
    assert distribution["best_test_std_spearman"] > STD_SPEARMAN_FLOOR
    assert np.isfinite(distribution["best_test_std_pearson"]) and np.isfinite(distribution["best_val_emd"])
    assert distribution["best_test_spearman"] >= linear["best_test_spearman"] - MEAN_MARGIN
    history = [m.value for m in runs["client"].get_metric_history(runs["runs"]["distribution"].info.run_id,
                                                                     "test_emd")]
    assert len(history) == 20 and history[-1] < 0.7 * history[0], "EMD falls over the epochs"
    assert "best_test_emd" not in linear, "a head trained on means reports no distribution metrics"


def test_its_model_answers_score_std_on_every_path(runs, votes, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", runs["uri"])
    mlflow.set_tracking_uri(runs["uri"])
    model = mlflow.search_logged_models(output_format="list", filter_string=(
        f"source_run_id = '{runs['runs']['distribution'].info.run_id}'"))[0].model_uri
    images = sorted((votes / "images").glob("*.jpg"))[:8]
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    scorer = load_scorer(model)
    got = scorer.score([*map(str, images), str(tmp_path / "broken.jpg")])
    assert list(got.columns) == ["score", "score_std", "percentile", "error"]
    assert got["score_std"].iloc[:-1].between(0, 4.5).all() and np.isnan(got["score_std"].iat[-1])
    served = mlflow.pyfunc.load_model(model).predict(pd.DataFrame({"image": [p.read_bytes() for p in images]}))
    np.testing.assert_allclose(served["score_std"], got["score_std"].iloc[:-1], atol=1e-5)
    assert cli.main(["score", str(votes / "images"), "--model", model, "--out", str(tmp_path / "s.csv")]) == 0
    table = pd.read_csv(tmp_path / "s.csv")
    assert list(table.columns) == ["path", "score", "score_std", "percentile", "error"] and len(table) == 300
    table = table.set_index("path").loc[[str(p) for p in images]]
    np.testing.assert_allclose(table["score_std"], got["score_std"].iloc[:-1], atol=1e-5)
    if importlib.util.find_spec("onnxruntime") is not None or os.environ.get("CI"):  # the onnx extra
        assert cli.main(["export", "--model", model, "--model-name", "votes-onnx",
                         "--calibration", str(votes / "images")]) == 0
        exported = load_scorer("models:/votes-onnx@float32").score([str(p) for p in images])
        assert list(exported.columns) == ["score", "score_std", "percentile", "error"]
        np.testing.assert_allclose(exported["score_std"], got["score_std"].iloc[:-1], atol=1e-3)


def test_a_table_without_votes_is_refused_before_any_run(tiny_clip, tmp_path, tracking_uri, capsys):
    ratings = write_sample_ratings(tmp_path / "ratings", 40)
    assert cli.main(["main", "--clip", str(tiny_clip), "--labels", str(ratings), "--head", "distribution",
                     "--cache-dir", str(tmp_path / "cache")]) == 2
    error = capsys.readouterr().err
    assert "head=distribution" in error and "vote_columns" in error and error.count("\n") <= 2
    assert mlflow.MlflowClient().search_runs([e.experiment_id for e in mlflow.MlflowClient().search_experiments()]) \
        == []
    assert cli.main(["sweep", "--clips", str(tiny_clip), "--labels", str(ratings), "--heads", "linear,distribution",
                     "--cache-dir", str(tmp_path / "cache")]) == 2
    assert "vote_columns" in capsys.readouterr().err


def test_a_sweep_compares_linear_and_distribution_heads_on_ava(sample_ava, tiny_clip, tmp_path, tracking_uri):
    """AVA carries c1..c10: both heads train on it in one sweep and are compared on the same metrics."""
    assert cli.main(["sweep", "--clips", str(tiny_clip), "--ava-dir", str(sample_ava), "--heads",
                     "linear,distribution", "--norms", "true", "--epochs", "3", "--lr", "1e-2",
                     "--cache-dir", str(tmp_path / "cache"), "--gallery", "false"]) == 0
    client = mlflow.MlflowClient()
    children = [r for r in client.search_runs([e.experiment_id for e in client.search_experiments()])
                if "mlflow.parentRunId" in r.data.tags]
    assert sorted(r.data.params["head"] for r in children) == ["distribution", "linear"]
    for run in children:
        assert np.isfinite(run.data.metrics["best_val_spearman"])
    assert any("best_test_emd" in r.data.metrics for r in children)
