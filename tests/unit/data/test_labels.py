"""Your own ratings: a labels table (CSV, TSV, JSON Lines imagefolder, parquet with image bytes) as the dataset."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clip_aesthetics.cli import app as cli
from clip_aesthetics.data.cells import content_id
from clip_aesthetics.data.labels import LabelsError, read_labels
from clip_aesthetics.data.sample_data import write_sample_ratings
from clip_aesthetics.data.splits import settle
from clip_aesthetics.settings import DataSettings
from clip_aesthetics.tracking.runs import SWEEP_TAG

TRAINING = ["--epochs", "4", "--lr", "0.003", "--batch-size", "16", "--num-workers", "0", "--precision", "float32"]
N = 90


@pytest.fixture(scope="module")
def ratings(tmp_path_factory) -> Path:
    """Read-only: an imagefolder of 1-5 ratings (metadata.jsonl beside images/)."""
    return write_sample_ratings(tmp_path_factory.mktemp("ratings") / "ratings", N, seed=3)


@pytest.fixture(scope="module")
def layouts(ratings, tmp_path_factory) -> dict[str, Path]:
    """The same images and ratings in three layouts: the imagefolder, a CSV of paths, a parquet of image bytes."""
    rows = [json.loads(line) for line in (ratings / "metadata.jsonl").read_text().splitlines()]
    folder = tmp_path_factory.mktemp("layouts")
    csv = folder / "ratings.csv"  # other column names, found automatically; paths relative to image_dir
    frame = pd.DataFrame({"image_name": [r["file_name"] for r in rows], "MOS": [r["rating"] for r in rows]})
    frame.to_csv(csv, index=False)
    shuffled = [rows[i] for i in np.random.default_rng(0).permutation(len(rows))]  # row order must not matter
    images = pa.array([{"bytes": (ratings / r["file_name"]).read_bytes(), "path": Path(r["file_name"]).name}
                       for r in shuffled], pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    parquet = folder / "ratings.parquet"
    pq.write_table(pa.table({"image": images, "label": [r["rating"] for r in shuffled]}), parquet)
    return {"imagefolder": ratings, "csv": csv, "parquet": parquet}


def runs(experiment="clip-aesthetics"):
    client = mlflow.MlflowClient()
    found = client.get_experiment_by_name(experiment)
    return client, (client.search_runs([found.experiment_id], order_by=["attributes.start_time ASC"]) if found else [])


def artifact_frame(client, run_id, path, tmp_path) -> pd.DataFrame:
    return pd.read_csv(client.download_artifacts(run_id, path, str(tmp_path)))


def main_args(labels, clip, cache, *extra):
    return ["main", "--labels", str(labels), "--clip", str(clip), "--cache-dir", str(cache), *TRAINING, *extra]


def test_three_layouts_of_the_same_ratings_share_cache_split_and_result(layouts, ratings, tiny_clip, tmp_path,
                                                                        tracking_uri, capsys):
    cache = tmp_path / "cache"
    image_dir = ["--image-dir", str(ratings)]
    assert cli.main(main_args(layouts["imagefolder"], tiny_clip, cache, "--run-name", "imagefolder")) == 0
    assert cli.main(main_args(layouts["csv"], tiny_clip, cache, "--run-name", "csv", *image_dir)) == 0
    assert cli.main(main_args(layouts["parquet"], tiny_clip, cache, "--run-name", "parquet")) == 0
    client, found = runs()
    assert [r.info.run_name for r in found] == ["imagefolder", "csv", "parquet"]
    embedded = [r.data.metrics["embed_images_processed"] for r in found]
    assert embedded == [N, 0, 0], "the same images are embedded once, whatever table or layout names them"
    splits = [artifact_frame(client, r.info.run_id, "data/split.csv", tmp_path / r.info.run_name) for r in found]
    for split in splits[1:]:
        assert split.sort_values("image_id")[["image_id", "split"]].to_numpy().tolist() == \
            splits[0].sort_values("image_id")[["image_id", "split"]].to_numpy().tolist()
    assert sorted(splits[0]["split"].value_counts().to_dict().items()) == [("test", 9), ("train", 77), ("val", 4)]
    results = {r.info.run_name: r.data.metrics["test_spearman"] for r in found}
    assert results["csv"] == results["imagefolder"] == results["parquet"], results
    assert results["imagefolder"] > 0.3, "the generated ratings follow what the images show"
    digests = {r.inputs.dataset_inputs[0].dataset.digest for r in found}
    assert len(digests) == 1, "the same ratings digest alike in any layout"
    observed = [json.loads(line)["rating"] for line in (ratings / "metadata.jsonl").read_text().splitlines()]
    assert {r.data.params["score_range"] for r in found} == {f"{min(observed):g},{max(observed):g}"}
    assert found[0].data.params["dataset"] == "ratings/metadata.jsonl"
    assert found[2].data.params["dataset"] == "ratings.parquet"


def test_a_one_to_five_model_stays_on_its_scale_and_a_fresh_process_scores_like_training(
        ratings, tiny_clip, tmp_path, tracking_uri):
    """Declared 1-5: metrics, predictions and the registered model's scores lie in 1-5; the registered model,
    loaded in a new process, scores the run's test images as predictions/test.csv has them."""
    args = main_args(ratings, tiny_clip, tmp_path / "cache", "--score-range", "1,5", "--norm", "false",
                     "--lr", "0.05", "--epochs", "3")
    assert cli.main(args) == 0
    client, (run,) = runs()
    assert run.data.params["score_range"] == "1,5" and run.data.params["accuracy_threshold"] == "3"
    predictions = artifact_frame(client, run.info.run_id, "predictions/test.csv", tmp_path)
    assert list(predictions.columns) == ["image_id", "image", "score_true", "score_pred"]
    assert predictions["score_pred"].between(1, 5).all() and predictions["score_true"].between(1, 5).all()
    table = {json.loads(line)["file_name"]: json.loads(line)["rating"]
             for line in (ratings / "metadata.jsonl").read_text().splitlines()}
    assert predictions["score_true"].tolist() == [table[name] for name in predictions["image"]], \
        "each prediction is joined to its own label by the image's key"
    assert run.data.metrics["test_mse"] < 16, "MSE on the 1-5 scale"
    assert cli.main(["register", "--run-id", run.info.run_id, "--model-name", "ratings-1-5", "--bundle-dtype",
                     "float32"]) == 0
    version = client.get_model_version_by_alias("ratings-1-5", "champion")
    assert version.tags["score_range"] == "1,5" and version.tags["dataset"] == "ratings/metadata.jsonl"
    assert "1-5 scale" in version.description and "ratings/metadata.jsonl" in version.description
    paths = [str(ratings / name) for name in predictions["image"]]
    code = ("import json, sys, mlflow, pandas as pd\n"
            "m = mlflow.pyfunc.load_model('models:/ratings-1-5@champion')\n"
            "print(json.dumps(m.predict(pd.DataFrame({'path': json.loads(sys.argv[1])}))['score'].tolist()))")
    done = subprocess.run([sys.executable, "-c", code, json.dumps(paths)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    scores = np.array(json.loads(done.stdout.strip().splitlines()[-1]))
    assert ((scores >= 1) & (scores <= 5)).all()
    np.testing.assert_allclose(scores, predictions["score_pred"], atol=1e-4)


def test_a_sweep_on_a_table_registers_a_version_that_names_its_dataset_and_scale(ratings, tiny_clip, tiny_clip_b,
                                                                                 tmp_path, tracking_uri):
    assert cli.main(["sweep", "--labels", str(ratings), "--clips", f"{tiny_clip},{tiny_clip_b}", "--norms", "true",
                     "--cache-dir", str(tmp_path / "cache"), *TRAINING]) == 0
    client, found = runs()
    parent = next(r for r in found if r.data.tags.get(SWEEP_TAG) == "true")
    children = [r for r in found if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2 and all(c.data.params["dataset"] == "ratings/metadata.jsonl" for c in children)
    assert parent.inputs.dataset_inputs[0].dataset.name.startswith("ratings/metadata.jsonl")
    assert cli.main(["register", "--model-name", "my-ratings"]) == 0
    version = client.get_model_version_by_alias("my-ratings", "champion")
    low, high = (float(v) for v in version.tags["score_range"].split(","))
    observed = [json.loads(line)["rating"] for line in (ratings / "metadata.jsonl").read_text().splitlines()]
    assert (low, high) == (min(observed), max(observed)), "by default the scale is the table's observed range"
    assert version.tags["dataset"] == "ratings/metadata.jsonl" and f"{low:g}-{high:g} scale" in version.description


def test_vote_counts_give_the_mean_rating_as_avas_and_a_split_column_is_used_as_given(ratings, tiny_clip,
                                                                                     tmp_path, tracking_uri):
    rows = [json.loads(line) for line in (ratings / "metadata.jsonl").read_text().splitlines()]
    rng = np.random.default_rng(1)
    votes = rng.integers(0, 9, size=(len(rows), 5))
    votes[:, 2] += 1  # every image has a vote
    splits = ["test" if k % 6 == 0 else ("validation" if k % 6 == 1 else "train") for k in range(len(rows))]
    table = pd.DataFrame({"path": [r["file_name"] for r in rows], **{f"c{k + 1}": votes[:, k] for k in range(5)},
                          "split": splits})
    tsv = ratings.parent / "votes.tsv"
    table.to_csv(tsv, sep="\t", index=False)
    try:
        assert cli.main(main_args(tsv, tiny_clip, tmp_path / "cache", "--vote-columns", "c1..c5",
                                  "--image-dir", str(ratings))) == 0
    finally:
        tsv.unlink()
    client, (run,) = runs()
    assert run.data.params["score_range"] == "1,5", "five vote columns: ratings 1 to 5"
    split = artifact_frame(client, run.info.run_id, "data/split.csv", tmp_path)
    expected = dict(zip(table["path"], [{"validation": "val"}.get(s, s) for s in splits], strict=True))
    assert all(expected[name] == part for name, part in zip(split["image"], split["split"], strict=True))
    predictions = artifact_frame(client, run.info.run_id, "predictions/test.csv", tmp_path)
    means = dict(zip(table["path"], votes @ np.arange(1, 6) / votes.sum(axis=1), strict=True))
    np.testing.assert_allclose(predictions["score_true"], [means[name] for name in predictions["image"]])


def test_missing_and_undecodable_images_are_skipped_with_their_reason(ratings, tiny_clip, tmp_path, tracking_uri):
    folder = tmp_path / "set"
    shutil.copytree(ratings, folder)
    lines = (folder / "metadata.jsonl").read_text().splitlines()
    (folder / "images" / "photo_0003.jpg").unlink()  # missing
    (folder / "images" / "photo_0004.jpg").write_bytes(b"not a jpeg")  # undecodable
    (folder / "images" / "photo_0005.jpg").write_bytes(b"")  # empty
    assert cli.main(main_args(folder, tiny_clip, tmp_path / "cache")) == 0
    client, (run,) = runs()
    skipped = artifact_frame(client, run.info.run_id, "data/skipped.csv", tmp_path)
    reasons = dict(zip(skipped["image"], skipped["reason"], strict=True))
    assert reasons["images/photo_0003.jpg"].startswith("missing file") and "metadata.jsonl:4" in reasons[
        "images/photo_0003.jpg"]
    assert "not an image" in reasons["images/photo_0004.jpg"]
    assert reasons["images/photo_0005.jpg"].startswith("empty file")
    params = run.data.params
    assert int(params["n_train"]) + int(params["n_val"]) + int(params["n_test"]) + len(skipped) == len(lines)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def bad_set(ratings, tmp_path) -> Path:
    """A writable copy of the images, for tables that go wrong."""
    folder = tmp_path / "bad"
    shutil.copytree(ratings / "images", folder / "images")
    return folder


def _rows(n=12, start=0):
    return "".join(f"images/photo_{k:04d}.jpg,{1 + k % 5}\n" for k in range(start, start + n))


BAD_TABLES = {  # name -> (file name, content, words the message must hold[, extra arguments])
    "no image column": ("t.csv", "picture,score\n" + _rows(), ["t.csv", "no image column", "picture, score"]),
    "no score column": ("t.csv", "file_name,stars\n" + _rows(), ["t.csv", "no score column", "file_name, stars"]),
    "text score": ("t.csv", "file_name,score\n" + _rows(3) + "images/photo_0009.jpg,great\n" + _rows(6, 10),
                   ["t.csv:5", "'great'", "not a number"]),
    "nan score": ("t.csv", "file_name,score\n" + _rows(4) + "images/photo_0009.jpg,nan\n" + _rows(6, 10),
                  ["t.csv:6", "finite"]),
    "infinite score": ("t.jsonl", "".join(json.dumps({"file_name": f"images/photo_{k:04d}.jpg", "score": 2}) + "\n"
                                          for k in range(8))
                       + '{"file_name": "images/photo_0009.jpg", "score": 1e999}\n',
                       ["t.jsonl:9", "finite"]),
    "negative votes": ("t.csv", "file_name,c1,c2,c3\n" + "".join(f"images/photo_{k:04d}.jpg,1,2,3\n" for k in range(6))
                       + "images/photo_0007.jpg,1,-2,3\n", ["t.csv:8", "'c2'", "-2"], ["--vote-columns", "c1..c3"]),
    "fractional votes": ("t.csv", "file_name,c1,c2,c3\n" + "".join(f"images/photo_{k:04d}.jpg,1,2,3\n" for k in
                                                                   range(6)) + "images/photo_0007.jpg,1,2.5,3\n",
                         ["t.csv:8", "2.5", "whole numbers"], ["--vote-columns", "c1,c2,c3"]),
    "same image, other label": ("t.csv", "file_name,score\n" + _rows(6) + "images/photo_0002.jpg,4.5\n",
                                ["t.csv:8", "t.csv:4", "photo_0002.jpg", "labelled differently"]),
    "dot-dot path": ("t.csv", "file_name,score\n" + _rows(6) + "../outside.jpg,3\n",
                     ["t.csv:8", "'../outside.jpg'", "outside the image folder"]),
    "absolute path outside": ("t.csv", "file_name,score\n" + _rows(6) + "/etc/hostname,3\n",
                              ["t.csv:8", "'/etc/hostname'", "outside the image folder"]),
    "empty table": ("t.csv", "file_name,score\n", ["t.csv", "no rows"]),
    "tiny split": ("t.csv", "file_name,score,split\n" + "".join(
        f"images/photo_{k:04d}.jpg,{1 + k % 5},{'test' if k == 0 else 'train'}\n" for k in range(10)),
        ["t.csv", "test split holds 1 image"]),
    "votes beyond int64": ("t.csv", "file_name,c1,c2,c3\n"
                           + "".join(f"images/photo_{k:04d}.jpg,1,2,3\n" for k in range(6))
                           + f"images/photo_0007.jpg,1,{10**19},3\n",
                           ["t.csv:8", "'c2'", "more than 2^63 - 1 votes"], ["--vote-columns", "c1..c3"]),
    "unknown split": ("t.csv", "file_name,score,split\n" + "".join(
        f"images/photo_{k:04d}.jpg,{1 + k % 5},{'holdout' if k == 3 else 'train'}\n" for k in range(10)),
        ["t.csv:5", "'holdout'", "train, val (validation), test"]),
}


@pytest.mark.parametrize("case", list(BAD_TABLES), ids=[c.replace(" ", "-").replace(",", "") for c in BAD_TABLES])
def test_a_bad_table_is_refused_before_any_work_naming_file_line_and_value(case, bad_set, tiny_clip, tmp_path,
                                                                          tracking_uri, capsys):
    name, content, words, *extra = BAD_TABLES[case]
    table = _write(bad_set / name, content)
    assert cli.main(main_args(table, tiny_clip, tmp_path / "cache", *(extra[0] if extra else []))) == 2
    error = capsys.readouterr().err
    for word in words:
        assert word in error, (word, error)
    assert len(error.strip().splitlines()) == 1, "one line"
    _, found = runs()
    assert found == [], "refused before a run opens: none left RUNNING, none at all"
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("shard-*")), "nothing embedded"


def test_a_symlink_pointing_out_of_the_image_folder_is_refused(bad_set, tmp_path, tracking_uri, tiny_clip, capsys):
    outside = tmp_path / "secret.jpg"
    shutil.copy(bad_set / "images" / "photo_0001.jpg", outside)
    os.symlink(outside, bad_set / "images" / "link.jpg")
    table = _write(bad_set / "t.csv", "file_name,score\n" + _rows(6) + "images/link.jpg,3\n")
    assert cli.main(main_args(table, tiny_clip, tmp_path / "cache")) == 2
    error = capsys.readouterr().err
    assert "t.csv:8" in error and "'images/link.jpg'" in error and str(outside) in error
    assert runs()[1] == []


def test_a_truncated_parquet_is_refused_naming_the_file(bad_set, tmp_path, tracking_uri, tiny_clip, capsys):
    table = bad_set / "t.parquet"
    pq.write_table(pa.table({"file_name": [f"images/photo_{k:04d}.jpg" for k in range(8)], "score": [1.0] * 8}), table)
    table.write_bytes(table.read_bytes()[:-20])  # the footer cut off
    assert cli.main(main_args(table, tiny_clip, tmp_path / "cache")) == 2
    error = capsys.readouterr().err
    assert str(table) in error and "truncated" in error
    assert runs()[1] == []


def test_vote_count_columns_without_vote_columns_get_a_hint(bad_set):
    table = _write(bad_set / "t.csv", "file_name,c1,c2,c3\n" + "images/photo_0001.jpg,1,2,3\n" * 3)
    with pytest.raises(LabelsError, match="vote_columns=c1..c3"):
        read_labels(table)


def test_bad_parameters_are_refused_by_the_settings(capsys):
    for args, words in ((["--score-range", "5,1"], "low < high"), (["--vote-columns", "c5..c1"], "must go up"),
                        (["--threshold", "high"], "valid number"),
                        (["--labels", "x.csv", "--split", "official"], "split=official")):
        assert cli.main(["main", *args]) == 2
        assert words in capsys.readouterr().err, args


def test_a_declared_range_must_hold_every_score(ratings, tmp_path):
    with pytest.raises(LabelsError, match=r"metadata.jsonl:\d+: score .* lies outside score_range=2,4"):
        read_labels(ratings, score_range=(2.0, 4.0))


def test_a_parquet_of_raw_image_bytes_keys_each_image_by_its_content(ratings, tmp_path):
    data = [(ratings / "images" / f"photo_{k:04d}.jpg").read_bytes() for k in range(6)]
    table = tmp_path / "raw.parquet"
    pq.write_table(pa.table({"jpg": pa.array(data, pa.binary()), "rating": [1.0, 2, 3, 4, 5, 2]}), table)
    labelled = read_labels(table)
    assert labelled.frame["image_id"].tolist() == [content_id(d) for d in data]
    assert labelled.frame["image"].tolist() == [f"row {k + 1}" for k in range(6)]
    assert all(labelled.sources[content_id(d)] == d for d in data)
    assert labelled.score_range == (1.0, 5.0) and labelled.threshold == 3.0


def test_an_imagefolder_with_split_subfolders_and_a_json_array_table(ratings, tmp_path):
    """train/ and test/ subfolders, each with its metadata.csv: their rows take the folder's split."""
    rows = [json.loads(line) for line in (ratings / "metadata.jsonl").read_text().splitlines()]
    for part, chunk in (("train", rows[:20]), ("test", rows[20:26])):
        folder = tmp_path / "set" / part
        (folder / "images").mkdir(parents=True)
        for row in chunk:
            shutil.copy(ratings / row["file_name"], folder / row["file_name"])
        pd.DataFrame(chunk).to_csv(folder / "metadata.csv", index=False)
    labelled = read_labels(tmp_path / "set")
    assert labelled.frame["split"].value_counts().to_dict() == {"train": 20, "test": 6}
    settled = settle(labelled, DataSettings(labels=str(tmp_path / "set"), val_fraction=0.1))
    assert settled.split_info["split"] == "given" and len(settled.split.test) == 6 and len(settled.split.val) == 2
    array = tmp_path / "ratings.json"
    array.write_text(json.dumps(rows[:8]))
    as_array = read_labels(array, image_dir=ratings)
    assert as_array.frame["image"].tolist() == [r["file_name"] for r in rows[:8]]
    assert as_array.frame["score"].tolist() == [r["rating"] for r in rows[:8]]


def test_a_semicolon_table_with_decimal_commas_is_read_as_excel_exports_it(ratings, tmp_path):
    """Excel's European export: `;` between columns, `,` as the decimal mark; the same ratings as the plain CSV."""
    plain = pd.read_json(ratings / "metadata.jsonl", lines=True).rename(columns={"rating": "score"})
    plain["score"] = plain["score"].round(2)  # as written: two decimals
    plain.to_csv(tmp_path / "plain.csv", index=False)
    european = plain.assign(score=plain["score"].map(lambda v: f"{v:.2f}".replace(".", ",")))
    european.to_csv(tmp_path / "excel.csv", sep=";", index=False)
    a = read_labels(tmp_path / "plain.csv", image_dir=ratings)
    b = read_labels(tmp_path / "excel.csv", image_dir=ratings)
    np.testing.assert_allclose(b.frame["score"], a.frame["score"], atol=1e-9)
    assert b.digest == a.digest
    # in a comma-separated table a quoted "5,5" stays ambiguous (5.5, or 55 with a thousands separator): refused
    rows = [f"{p},{s}" for p, s in zip(plain["file_name"], plain["score"])]
    rows[0] = f'{plain["file_name"].iat[0]},"{plain["score"].iat[0]:.1f}"'.replace('.', ',')
    rows[0] = rows[0].replace(",jpg", ".jpg")  # the decimal comma in the score only
    (tmp_path / "comma.csv").write_text("file_name,score\n" + "\n".join(rows) + "\n")
    with pytest.raises(LabelsError, match=r"comma.csv:2: column 'score' holds '\d,\d', not a number"):
        read_labels(tmp_path / "comma.csv", image_dir=ratings)
