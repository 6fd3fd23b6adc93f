"""Models registered by earlier versions keep scoring the same: a model folder committed as that version wrote it."""

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from clip_aesthetics.cli import app as cli

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "registered-2026-12-03"


def expected() -> pd.DataFrame:
    return pd.read_csv(FIXTURE / "expected.csv", keep_default_na=False, na_values=[""])


def check(scores: pd.DataFrame) -> None:
    want = expected()
    assert scores["error"].fillna("").tolist() == want["error"].fillna("").tolist()
    np.testing.assert_allclose(scores["score"].to_numpy(float), want["score"].to_numpy(float), atol=1e-5)


def test_the_2026_12_03_model_scores_as_it_did_in_this_process(monkeypatch):
    monkeypatch.chdir(FIXTURE)
    model = mlflow.pyfunc.load_model(str(FIXTURE / "model"))
    check(model.predict(pd.DataFrame({"path": expected()["path"]})))
    images = [(FIXTURE / p).read_bytes() for p in expected()["path"]]
    check(model.predict(pd.DataFrame({"image": images})))


def test_the_2026_12_03_model_scores_as_it_did_in_a_fresh_process_and_through_the_cli(tmp_path, monkeypatch):
    code = ("import sys, mlflow, pandas as pd\nm = mlflow.pyfunc.load_model(sys.argv[1])\n"
            "m.predict(pd.DataFrame({'path': sys.argv[3:]})).to_csv(sys.argv[2], index=False)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-c", code, str(FIXTURE / "model"), str(tmp_path / "fresh.csv"),
                    *expected()["path"]], cwd=FIXTURE, env=env, check=True, capture_output=True)
    check(pd.read_csv(tmp_path / "fresh.csv", keep_default_na=False, na_values=[""]))
    monkeypatch.chdir(FIXTURE)
    assert cli.main(["score", "images", "--model", str(FIXTURE / "model"), "--out", str(tmp_path / "cli.csv"),
                     "--num-workers", "0"]) == 0
    scored = pd.read_csv(tmp_path / "cli.csv", keep_default_na=False, na_values=[""])
    assert scored["path"].tolist() == expected()["path"].tolist()
    check(scored)
    assert scored["percentile"].isna().all(), "saved before percentiles: no reference, no made-up percentile"
    shard = tmp_path / "one.tar"
    with tarfile.open(shard, "w") as tar:
        tar.add(FIXTURE / expected()["path"].iat[0], arcname="a.jpg")
    assert cli.main(["score", str(shard), "--model", str(FIXTURE / "model"), "--out", str(tmp_path / "parts"),
                     "--min-percentile", "90"]) != 0, "refused: its percentiles are undefined"
    assert not (tmp_path / "parts").exists(), "refused before any scoring"


def test_evaluate_measures_the_2026_12_03_model_with_the_scores_it_gave_then(tmp_path, tracking_uri):
    """Labels equal to the scores the model gave when it was saved: evaluate, with today's code, must find them."""
    good = expected()[expected()["error"].fillna("") == ""]
    assert len(good) >= 4 and good["score"].nunique() == len(good)
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"image": [str(FIXTURE / p) for p in good["path"]], "score": good["score"]}).to_csv(labels,
                                                                                                     index=False)
    assert cli.main(["evaluate", "--model", str(FIXTURE / "model"), "--labels", str(labels), "--image-dir", "/",
                     "--score-range", "1,10", "--eval-split", "all", "--cache-dir", str(tmp_path / "cache"),
                     "--gallery", "false"]) == 0
    client = mlflow.MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("clip-aesthetics").experiment_id],
                                "attributes.run_name LIKE 'evaluate-%'")
    assert abs(run.data.metrics["eval_spearman"] - 1.0) < 1e-9
    assert run.data.metrics["eval_mse"] < 1e-9


LATEST = Path(__file__).resolve().parents[2] / "fixtures" / "registered-2026-12-08"


def test_the_2026_12_08_model_scores_and_ranks_as_it_did_through_every_path(tmp_path, monkeypatch):
    """Registered with percentiles the day before the way through the package was rebuilt: its scores and
    percentiles are the same in this process, through the CLI (a table), and through shards (parts)."""
    want = pd.read_csv(LATEST / "expected.csv", keep_default_na=False, na_values=[""])

    def same(got: pd.DataFrame) -> None:
        assert got["error"].fillna("").tolist() == want["error"].fillna("").tolist()
        np.testing.assert_allclose(got["score"].to_numpy(float), want["score"].to_numpy(float), atol=1e-5)
        np.testing.assert_allclose(got["percentile"].to_numpy(float), want["percentile"].to_numpy(float), atol=1e-9)

    monkeypatch.chdir(LATEST)
    same(mlflow.pyfunc.load_model(str(LATEST / "model")).predict(pd.DataFrame({"path": want["path"]})))
    assert cli.main(["score", "images", "--model", str(LATEST / "model"), "--out", str(tmp_path / "cli.csv"),
                     "--num-workers", "0", "--precision", "float32"]) == 0
    same(pd.read_csv(tmp_path / "cli.csv", keep_default_na=False, na_values=[""]))
    shard = tmp_path / "all.tar"
    with tarfile.open(shard, "w") as tar:
        for k, path in enumerate(want["path"]):
            tar.add(LATEST / path, arcname=f"{k:03d}{Path(path).suffix}")
    assert cli.main(["score", str(shard), "--model", str(LATEST / "model"), "--out", str(tmp_path / "parts"),
                     "--precision", "float32"]) == 0
    parts = pd.read_parquet(tmp_path / "parts").sort_values("key").reset_index(drop=True)
    ok = want["error"].fillna("") == ""
    np.testing.assert_allclose(parts.loc[ok.to_numpy(), "score"], want.loc[ok, "score"], atol=1e-5)
    np.testing.assert_allclose(parts.loc[ok.to_numpy(), "percentile"], want.loc[ok, "percentile"], atol=1e-9)
