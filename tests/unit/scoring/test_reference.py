"""The percentile beside every score: its definition, its storage in scorer.json, and selection by it."""

import json

import numpy as np
import pandas as pd
import pytest

from clip_aesthetics.scoring import reference
from clip_aesthetics.scoring.curation_report import select, summarise


def test_percentile_is_the_mid_rank_among_the_reference_scores():
    ref = reference.make([5.0, 3.0, 4.0, 4.0, 6.0], "five images")
    got = ref.percentile([2.0, 3.0, 3.5, 4.0, 4.5, 6.0, 7.0, np.nan])
    # below + half of the equal ones, out of five
    np.testing.assert_allclose(got[:-1], [0, 10, 20, 40, 60, 90, 100])
    assert np.isnan(got[-1])  # an image without a score has no percentile


def test_scores_that_differ_in_their_last_digits_get_the_same_percentile():
    """The same image scored in another batch, by another kernel, or on another path moves by about 1e-6 of the
    range: its percentile must not move, also (above all) when it is one of the reference's own images."""
    rng = np.random.default_rng(7)
    values = rng.normal(5.4, 0.5, 24)
    ref = reference.make(values, "24 test images", score_range=(1.0, 10.0))
    step = ref.resolution
    assert step == pytest.approx(9 / 256)
    # away from a grid boundary by more than the noise (one image in a few thousand is closer: see the docstring)
    own = values[np.abs(values / step - np.round(values / step)) < 0.45]
    assert len(own) >= 15
    for noise in (1e-6, -1e-6, 3e-5, -3e-5):
        np.testing.assert_array_equal(ref.percentile(own + noise), ref.percentile(own))
    # the old rule (strictly below) jumped by a whole reference step, 100/24 points, on such noise
    strictly_below = np.searchsorted(np.sort(values), own + 1e-6) - np.searchsorted(np.sort(values), own - 1e-6)
    assert (strictly_below > 0).all()


def test_the_grid_follows_the_models_scale():
    five = reference.make([1.0, 2.0, 3.0], "a 1-5 model", score_range=(1.0, 5.0))
    assert five.resolution == pytest.approx(4 / 256)
    stored = reference.of_spec({"head": {"score_range": [1.0, 5.0]}, reference.KEY: {"scores": [1.0, 2.0, 3.0]}})
    assert stored.resolution == pytest.approx(4 / 256), "an old reference takes its model's scale"
    again = reference.of_spec({"head": {}, reference.KEY: five.to_doc()})
    assert again.resolution == five.resolution


def test_percentile_is_monotone_and_within_0_100():
    rng = np.random.default_rng(0)
    ref = reference.make(rng.normal(5, 1, 999), "draws")
    scores = np.sort(rng.normal(5, 2, 5000))
    got = ref.percentile(scores)
    assert (np.diff(got) >= 0).all() and got.min() >= 0 and got.max() <= 100
    assert got[0] == 0 and got[-1] == 100  # beyond either end of the reference


def test_a_reference_round_trips_through_scorer_json_and_a_large_one_keeps_its_percentiles():
    rng = np.random.default_rng(1)
    values = rng.normal(5, 1, 60_000)
    ref = reference.make(values, "60000 test images of AVA.txt", labels=values + 0.1)
    doc = json.loads(json.dumps({"head": {}, reference.KEY: ref.to_doc()}))
    back = reference.of_spec(doc)
    assert back.count == 60_000 and back.what == ref.what and len(back.scores) == reference.MAX_STORED
    probe = rng.normal(5, 1.5, 2000)
    # stored as order statistics 1/20000 apart: every percentile within 0.01 points of the exact one
    assert np.abs(back.percentile(probe) - ref.percentile(probe)).max() < 0.01
    assert back.labels is not None and len(back.labels) == reference.MAX_STORED


def test_a_model_without_a_reference_gets_empty_percentiles_never_made_up_ones():
    assert reference.of_spec({"head": {}}) is None
    assert reference.make([3.0, np.nan], "one finite score") is None
    frame = reference.annotate(pd.DataFrame({"score": [4.0, np.nan], "error": ["", "truncated"]}), None)
    assert list(frame.columns) == ["score", "percentile", "error"] and frame["percentile"].isna().all()
    assert "no reference" in reference.describe(None)


def test_percentile_comes_after_every_score_column():
    ref = reference.make([1.0, 2.0], "two")
    frame = reference.annotate(pd.DataFrame({"score": [1.5], "score_std": [0.3], "error": [""]}), ref)
    assert list(frame.columns) == ["score", "score_std", "percentile", "error"]
    assert frame["percentile"].iat[0] == 50


@pytest.mark.parametrize("cut", [50, 90, 99])
def test_min_percentile_keeps_exactly_the_samples_at_or_above_the_references_percentile(cut):
    rng = np.random.default_rng(cut)
    ref_scores = rng.normal(5, 1, 400)
    ref = reference.make(ref_scores, "400")
    scores = np.concatenate([rng.normal(5, 1.2, 300), ref_scores[:50]])  # ties with reference values included
    frame = reference.annotate(pd.DataFrame({"key": [f"k{i:04d}" for i in range(len(scores))], "input": "a.tar",
                                             "score": scores, "error": ""}), ref)
    frame.loc[3, ["score", "percentile"]] = np.nan  # a failure is never kept
    frame.loc[3, "error"] = "truncated"
    kept = select(frame, min_percentile=cut)
    grid = np.round(ref_scores / ref.resolution)

    def mid_rank(score: float) -> float:  # the rule written out: below, and half of the equal ones
        point = np.round(score / ref.resolution)
        return (np.sum(grid < point) + np.sum(grid == point) / 2) / len(grid) * 100

    expected = {f"k{i:04d}" for i, s in enumerate(scores) if i != 3 and mid_rank(s) >= cut}
    assert set(kept["key"]) == expected and len(expected) > 0
    assert list(kept.columns) == ["key", "input", "score", "percentile"]
    assert (np.diff(kept["score"].to_numpy()) <= 0).all()  # best first
    summary = summarise(frame, (1.0, 10.0), ref)
    assert summary["reference"] == "400" and summary["share_at_or_above_reference"]["p90"] == pytest.approx(
        np.mean(frame["percentile"].dropna() >= 90))
