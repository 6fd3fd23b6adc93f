"""The Python API: `clip_aesthetics.load(uri).score(images)` gives what `clip-aesthetics score` gives, for paths,
bytes and PIL images, with each broken image's reason."""


import mlflow
import numpy as np
import pandas as pd
import pytest
from PIL import Image

import clip_aesthetics
from clip_aesthetics.cli import app as cli
from clip_aesthetics.errors import ScoringInputError

# The largest score difference between two paths (batches of other sizes, another decoding of the same bytes) that
# each precision allows: float32 differs in its last bits; bfloat16's matrix products (8 significant bits) may be
# computed by other kernels for other batch sizes where the CPU has them natively (emulated, they are the same).
TOLERANCE = {"float32": 1e-6, "bfloat16": 1e-4}


def score_with_cli(model: str, folder, out, precision: str = "") -> pd.DataFrame:
    asked = ["--precision", precision] if precision else []
    assert cli.main(["score", str(folder), "--model", model, "--out", str(out), "--num-workers", "0", *asked]) == 0
    frame = pd.read_csv(out, keep_default_na=False)
    for column in ("score", "percentile"):  # an unscored image's empty cell: NaN
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame.set_index("path")


@pytest.fixture
def cli_scores(trained_store, sample_ava, tmp_path) -> pd.DataFrame:
    return score_with_cli(trained_store["model"], sample_ava / "image", tmp_path / "cli.csv")


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_paths_bytes_and_pil_images_score_as_the_cli_does(trained_store, sample_ava, tmp_path, precision, capsys):
    """The same images in other batches (the CLI's first image alone then batches of 32; here 6, 3 and 1, in
    another order), as paths, bytes and PIL images: the same percentiles to 1e-9 in either precision (forced, so
    the machine's CPU cannot hide one), the same scores within the precision's tolerance."""
    cli_scores = score_with_cli(trained_store["model"], sample_ava / "image", tmp_path / "cli.csv", precision)
    assert f"precision: {precision} (as asked" in capsys.readouterr().out
    scorer = clip_aesthetics.load(trained_store["model"], tracking_uri=trained_store["uri"], precision=precision)
    assert scorer.compute_precision == precision
    assert f"scores in {precision} (as asked" in capsys.readouterr().err
    good = [p for p in sorted((sample_ava / "image").glob("*.jpg")) if cli_scores.loc[str(p), "error"] == ""][:6]
    want = cli_scores.loc[[str(p) for p in good], "score"].to_numpy(float)
    want_percentile = cli_scores.loc[[str(p) for p in good], "percentile"].to_numpy(float)
    as_paths = scorer.score([str(p) for p in good])
    as_bytes = scorer.score([p.read_bytes() for p in good])
    pictures = []
    for path in good:
        with Image.open(path) as image:
            pictures.append(image.copy())
    as_pil = scorer.score(pictures)
    one_by_one = pd.concat([scorer.score([p]) for p in reversed(good)], ignore_index=True).iloc[::-1]
    in_threes = pd.concat([scorer.score([str(p) for p in good[3:]]), scorer.score([str(p) for p in good[:3]])])
    in_threes = pd.concat([in_threes.iloc[3:], in_threes.iloc[:3]])
    for got in (as_paths, as_bytes, as_pil, one_by_one, in_threes):
        assert list(got.columns) == ["score", "percentile", "error"] and (got["error"] == "").all()
        np.testing.assert_allclose(got["score"].to_numpy(float), want, atol=TOLERANCE[precision])
        np.testing.assert_allclose(got["percentile"].to_numpy(float), want_percentile, atol=1e-9, rtol=0)
    mixed = scorer.score([good[0], good[1].read_bytes(), pictures[2]])
    np.testing.assert_allclose(mixed["score"].to_numpy(float), want[:3], atol=TOLERANCE[precision])
    low, high = scorer.score_range
    assert low <= want.min() and want.max() <= high


def test_the_test_images_get_the_percentiles_of_their_own_reference_scores(trained_store, sample_ava, tmp_path):
    """A training run's test images are its reference: each one's score sits on its own reference value, so its
    percentile is its mid-rank there (the old rule, strictly below, flipped on the score's last digit)."""
    import io

    client = mlflow.MlflowClient()
    run_id = trained_store["run"].info.run_id
    predictions = pd.read_csv(io.StringIO(mlflow.artifacts.load_text(f"runs:/{run_id}/predictions/test.csv")))
    scorer = clip_aesthetics.load(trained_store["model"], precision="float32")
    paths = [sample_ava / "image" / f"{i}.jpg" for i in predictions["image_id"]]
    got = scorer.score(paths)
    reference = scorer.reference
    assert reference.count == len(predictions) and client is not None
    grid = np.round(np.sort(predictions["score_pred"].to_numpy()) / reference.resolution)
    own = np.round(predictions["score_pred"].to_numpy() / reference.resolution)
    mid_rank = [(np.sum(grid < g) + np.sum(grid == g) / 2) / len(grid) * 100 for g in own]
    np.testing.assert_allclose(got["percentile"], mid_rank, atol=1e-9)


def test_a_broken_image_gets_its_reason_beside_the_good_ones(trained_store, sample_ava, cli_scores, tmp_path):
    scorer = clip_aesthetics.load(trained_store["model"], tracking_uri=trained_store["uri"])
    good = next(p for p in sorted((sample_ava / "image").glob("*.jpg")) if cli_scores.loc[str(p), "error"] == "")
    truncated = good.read_bytes()[:200]
    result = scorer.score([good, truncated, b"", tmp_path / "missing.jpg", Image.new("RGB", (40, 30), "gray")])
    assert np.isfinite(result.loc[0, "score"]) and result.loc[0, "error"] == ""
    for row in (1, 2, 3):
        assert np.isnan(result.loc[row, "score"]) and result.loc[row, "error"], result
    assert "empty" in result.loc[2, "error"]
    assert np.isfinite(result.loc[4, "score"])
    assert abs(result.loc[0, "score"] - cli_scores.loc[str(good), "score"]) < 1e-6


def test_an_unknown_model_is_one_clear_error(trained_store):
    with pytest.raises(ScoringInputError, match="cannot load model 'models:/no-such-model@champion'"):
        clip_aesthetics.load("models:/no-such-model@champion", tracking_uri=trained_store["uri"])


def test_importing_the_package_loads_nothing_heavy():
    import subprocess
    import sys

    code = "import sys, clip_aesthetics; print(sorted(m for m in ('torch', 'mlflow') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"


def test_one_image_alone_is_one_row_and_an_odd_item_is_its_rows_error(trained_store, sample_ava, cli_scores):
    scorer = clip_aesthetics.load(trained_store["model"], tracking_uri=trained_store["uri"])
    path = next(p for p in sorted((sample_ava / "image").glob("*.jpg")) if cli_scores.loc[str(p), "error"] == "")
    want = cli_scores.loc[str(path), "score"]
    for alone in (str(path), path, path.read_bytes(), Image.open(path)):
        got = scorer.score(alone)
        assert len(got) == 1 and abs(got["score"].iat[0] - want) < 1e-6, type(alone)
    mixed = scorer.score([str(path), None, 7, path])
    assert len(mixed) == 4 and mixed["score"].notna().tolist() == [True, False, False, True]
    assert "an item of type NoneType" in mixed["error"].iat[1] and "an item of type int" in mixed["error"].iat[2]
    assert "a path (str or pathlib.Path), encoded image bytes or a PIL image" in mixed["error"].iat[1]
    with pytest.raises(TypeError, match="score\\(\\) takes a path"):
        scorer.score(7)
