"""The Python API: `clip_aesthetics.load(uri).score(images)` gives what `clip-aesthetics score` gives, for paths,
bytes and PIL images, with each broken image's reason."""


import numpy as np
import pandas as pd
import pytest
from PIL import Image

import clip_aesthetics
from clip_aesthetics.cli import app as cli
from clip_aesthetics.errors import ScoringInputError


@pytest.fixture
def cli_scores(trained_store, sample_ava, tmp_path) -> pd.DataFrame:
    out = tmp_path / "cli.csv"
    assert cli.main(["score", str(sample_ava / "image"), "--model", trained_store["model"], "--out", str(out),
                     "--num-workers", "0"]) == 0
    frame = pd.read_csv(out, keep_default_na=False)
    for column in ("score", "percentile"):  # an unscored image's empty cell: NaN
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame.set_index("path")


def test_paths_bytes_and_pil_images_score_as_the_cli_does(trained_store, sample_ava, cli_scores):
    scorer = clip_aesthetics.load(trained_store["model"], tracking_uri=trained_store["uri"])
    good = [p for p in sorted((sample_ava / "image").glob("*.jpg")) if cli_scores.loc[str(p), "error"] == ""][:6]
    want = cli_scores.loc[[str(p) for p in good], "score"].to_numpy(float)
    as_paths = scorer.score([str(p) for p in good])
    as_bytes = scorer.score([p.read_bytes() for p in good])
    pictures = []
    for path in good:
        with Image.open(path) as image:
            pictures.append(image.copy())
    as_pil = scorer.score(pictures)
    for got in (as_paths, as_bytes, as_pil):
        assert list(got.columns) == ["score", "percentile", "error"] and (got["error"] == "").all()
        np.testing.assert_allclose(got["score"].to_numpy(float), want, atol=1e-6)
        np.testing.assert_allclose(got["percentile"].to_numpy(float),
                                   cli_scores.loc[[str(p) for p in good], "percentile"].to_numpy(float), atol=1e-9)
    mixed = scorer.score([good[0], good[1].read_bytes(), pictures[2]])
    np.testing.assert_allclose(mixed["score"].to_numpy(float), want[:3], atol=1e-6)
    low, high = scorer.score_range
    assert low <= want.min() and want.max() <= high


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
