"""Pair tables as people have them: Pick-a-Pic's parquet (images as bytes or as file names), HPD v2's JSON, and any
table whose columns are named by flags, each read to the same pairs, trained on and measured by."""

import json

import mlflow
import numpy as np
import pandas as pd
import pytest

from clip_aesthetics.cli import app as cli
from clip_aesthetics.data.labels import read_dataset
from clip_aesthetics.data.sample_data import write_sample_pairs
from clip_aesthetics.data.tables import LabelsError
from clip_aesthetics.settings import DataSettings

N_PAIRS = 240
SHARE = {"a": 1.0, "b": 0.0, "tie": 0.5}


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    """The first N_PAIRS pairs of a generated pair table, written in each layout (flags each needs beside)."""
    folder = write_sample_pairs(tmp_path_factory.mktemp("layouts") / "pairs", n_images=60, n_pairs=N_PAIRS)
    pairs = pd.read_csv(folder / "pairs.csv")
    share = pairs["preference"].map(SHARE)
    images = folder / "images"
    read = {name: (folder / name).read_bytes() for name in set(pairs["image_a"]) | set(pairs["image_b"])}
    pick = pd.DataFrame({"are_different": True, "best_image_uid": "", "caption": "a generated picture",
                         "has_label": True, "image_0_uid": pairs["image_a"].str.removeprefix("images/").str[:-4],
                         "image_1_uid": pairs["image_b"].str.removeprefix("images/").str[:-4],
                         "jpg_0": pairs["image_a"].map(read), "jpg_1": pairs["image_b"].map(read),
                         "label_0": share, "label_1": 1 - share, "model_0": "sd", "model_1": "sd"})
    unusable = pick.iloc[:2].copy()
    unusable["has_label"] = [False, True]
    unusable["are_different"] = [True, False]
    pd.concat([pick, unusable], ignore_index=True).to_parquet(folder / "pickapic-bytes.parquet")
    pick.drop(columns=["jpg_0", "jpg_1"]).to_parquet(folder / "pickapic-uids.parquet")
    marks = {"a": [1, 0], "b": [0, 1], "tie": [1, 1]}
    hpd = [{"prompt": "a generated picture", "image_path": [a.removeprefix("images/"), b.removeprefix("images/")],
            "human_preference": marks[p]} for a, b, p in zip(pairs["image_a"], pairs["image_b"], pairs["preference"])]
    (folder / "hpd.json").write_text(json.dumps(hpd))
    pairs.rename(columns={"image_a": "left", "image_b": "right", "preference": "verdict"}).to_csv(
        folder / "renamed.csv", index=False)
    pairs.to_csv(folder / "ours.csv", index=False)
    return {"folder": folder, "tables": {
        "ours": ["--labels", str(folder / "ours.csv")],
        "pickapic-bytes": ["--labels", str(folder / "pickapic-bytes.parquet")],
        "pickapic-uids": ["--labels", str(folder / "pickapic-uids.parquet"), "--image-dir", str(images)],
        "hpd": ["--labels", str(folder / "hpd.json"), "--image-dir", str(images)],
        "renamed": ["--labels", str(folder / "renamed.csv"), "--image-a-column", "left", "--image-b-column", "right",
                    "--preference-column", "verdict"]}}


def settings_of(flags: list[str]) -> DataSettings:
    names = {"--labels": "labels", "--image-dir": "image_dir", "--image-a-column": "image_a_column",
             "--image-b-column": "image_b_column", "--preference-column": "preference_column"}
    return DataSettings(**{names[flag]: value for flag, value in zip(flags[::2], flags[1::2], strict=True)})


def test_every_layout_reads_to_the_same_pairs(layouts):
    read = {name: read_dataset(settings_of(flags)) for name, flags in layouts["tables"].items()}
    assert {labelled.kind for labelled in read.values()} == {"pairs"}
    digests = {name: labelled.digest for name, labelled in read.items()}
    assert len(set(digests.values())) == 1, digests  # the same images (by content) and preferences, in any layout
    assert all(len(labelled.pairs) == N_PAIRS for labelled in read.values())
    skipped = read["pickapic-bytes"].skipped["reason"].tolist()
    assert len(skipped) == 2 and "has_label is false" in skipped[0] and "are_different is false" in skipped[1]
    assert sorted(read["hpd"].pairs["preference"].unique()) == [0.0, 0.5, 1.0]


def test_hpd_rankings_of_several_images_are_read_as_every_pair(layouts, tmp_path):
    images = sorted((layouts["folder"] / "images").glob("*.jpg"))[:4]
    table = tmp_path / "ranked.json"
    table.write_text(json.dumps([{"image_path": [str(p) for p in images], "rank": [2, 1, 3, 2]}]))
    labelled = read_dataset(DataSettings(labels=str(table), image_dir="/"))
    assert len(labelled.pairs) == 6 and labelled.pairs["preference"].tolist() == [0.0, 1.0, 0.5, 1.0, 1.0, 0.0]


@pytest.mark.parametrize("change, words", [
    ({"label_1": 0.25}, "do not add up to 1"), ({"label_0": 2.0}, "none of a, b, tie"),
    ({"has_label": "maybe"}, "has_label 'maybe' is not true or false")])
def test_a_pick_a_pic_row_that_cannot_be_read_is_refused_naming_its_row(layouts, tmp_path, change, words):
    table = pd.read_parquet(layouts["folder"] / "pickapic-bytes.parquet").iloc[:4]
    for column, value in change.items():
        table[column] = table[column].astype(type(value))  # has_label as text, as a CSV export holds it
        table.loc[2, column] = value
    table.to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(LabelsError, match=rf"bad.parquet: row 3: .*{words}"):
        read_dataset(DataSettings(labels=str(tmp_path / "bad.parquet")))


def test_one_image_column_named_alone_is_refused_before_any_work():
    with pytest.raises(ValueError, match="give both"):
        DataSettings(labels="x.csv", image_a_column="left")


@pytest.mark.slow
def test_each_layout_trains_head_pairwise_and_feeds_evaluate_pairs(layouts, tiny_clip, tmp_path, tracking_uri):
    cache = ["--cache-dir", str(tmp_path / "cache"), "--gallery", "false"]
    client = mlflow.MlflowClient()
    for name, flags in layouts["tables"].items():
        assert cli.main(["main", "--clip", str(tiny_clip), *flags, "--head", "pairwise", "--lr", "1e-2",
                         "--epochs", "2", "--run-name", name, *cache]) == 0, name
    runs = {r.info.run_name: r for r in client.search_runs([e.experiment_id for e in client.search_experiments()])}
    accuracy = {name: runs[name].data.metrics["best_test_pair_accuracy"] for name in layouts["tables"]}
    assert len({round(v, 12) for v in accuracy.values()}) == 1, accuracy  # the same pairs, the same split: the same run
    model = f"runs:/{runs['ours'].info.run_id}/model"
    for name, flags in layouts["tables"].items():
        pair_flags = ["--pairs" if flag == "--labels" else flag for flag in flags]
        assert cli.main(["evaluate", "--model", model, *pair_flags, "--run-name", f"eval-{name}", *cache]) == 0, name
    evaluations = [r for r in client.search_runs([e.experiment_id for e in client.search_experiments()])
                   if r.info.run_name.startswith("eval-")]
    measured = {r.info.run_name: r.data.metrics["eval_pair_accuracy"] for r in evaluations}
    assert len(measured) == 5 and len({round(v, 12) for v in measured.values()}) == 1, measured
    assert np.isclose(measured["eval-ours"], accuracy["ours"])
