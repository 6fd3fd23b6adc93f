"""Nothing lost, nothing wrong: hostile inputs and careless commands each end in a one-line refusal or a recorded
row, never in a traceback, a silently wrong score, or an input written over."""

import io
import json
import os
import shutil
import tarfile
import unicodedata
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from clip_aesthetics.cli import app as cli
from clip_aesthetics.data.labels import LabelsError, read_labels
from clip_aesthetics.data.sample_data import write_sample_ratings
from clip_aesthetics.scoring import curate, samples, shards
from clip_aesthetics.scoring.uris import load_scorer


def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    member = tarfile.TarInfo(name)
    member.size = len(data)
    tar.addfile(member, io.BytesIO(data))


def jpegs(sample_ava: Path, n: int, skip: int = 0) -> list[Path]:
    return sorted(f for f in (sample_ava / "image").glob("*.jpg") if int(f.stem) >= 1000)[skip:skip + n]


def write_shard(path: Path, files: list[Path], mode: str = "w", caption: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, mode) as tar:
        for f in files:
            add(tar, f"{f.stem}.jpg", f.read_bytes())
            if caption:
                add(tar, f"{f.stem}.txt", caption.encode())
                add(tar, f"{f.stem}.json", json.dumps({"note": caption}).encode())
    return path


def score(trained, *args) -> int:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", trained["uri"])
        mlflow.set_tracking_uri(trained["uri"])
        return cli.main(["score", "--model", trained["model"], *map(str, args)])


def one_error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, lines
    return lines[0]


# ---------------------------------------------------------------- never overwrite an input

def test_kept_shards_are_never_written_over_the_input_shards(trained, sample_ava, tmp_path, capsys):
    folder = tmp_path / "shards"
    shard = write_shard(folder / "00000.tar", jpegs(sample_ava, 12))
    before = shard.read_bytes()
    assert score(trained, shard, "--out", tmp_path / "out", "--top-fraction", "0.25", "--write-shards", folder) == 2
    assert "holds the input" in one_error_line(capsys) and shard.read_bytes() == before, "the input is untouched"
    link = tmp_path / "link"
    link.symlink_to(folder)  # the same folder by another name
    assert score(trained, shard, "--out", tmp_path / "out", "--top-fraction", "0.25", "--write-shards", link) == 2
    assert "holds the input" in one_error_line(capsys) and shard.read_bytes() == before
    assert score(trained, shard, "--out", folder) == 2
    assert "holds the input" in one_error_line(capsys)
    assert not (tmp_path / "out").exists(), "refused before any work"


def test_an_output_folder_holding_other_files_is_refused(trained, sample_ava, tmp_path, capsys):
    shard = write_shard(tmp_path / "in" / "00000.tar", jpegs(sample_ava, 4))
    documents = tmp_path / "documents"
    documents.mkdir()
    (documents / "thesis.pdf").write_bytes(b"%PDF precious")
    assert score(trained, shard, "--out", documents) == 2
    assert "'thesis.pdf'" in one_error_line(capsys) and (documents / "thesis.pdf").read_bytes() == b"%PDF precious"
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "mine.tar").write_bytes(b"someone else's shard")
    assert score(trained, shard, "--out", tmp_path / "out", "--min-score", "0", "--write-shards", kept) == 2
    assert "'mine.tar'" in one_error_line(capsys)


def test_same_named_shards_from_two_folders_lose_no_kept_sample(trained, sample_ava, tmp_path, capsys):
    a = write_shard(tmp_path / "a" / "00000.tar", jpegs(sample_ava, 20))
    b = write_shard(tmp_path / "b" / "00000.tar", jpegs(sample_ava, 20, skip=20))
    assert score(trained, a, b, "--out", tmp_path / "out", "--min-score", "-100", "--write-shards",
                 tmp_path / "kept") == 0
    kept = pd.read_parquet(tmp_path / "out" / curate.REPORT / curate.KEPT)
    assert len(kept) == 40
    written = sorted((tmp_path / "kept").glob("*.tar"))
    assert len(written) == 2, [p.name for p in written]
    copied = 0
    for shard in written:
        with tarfile.open(shard) as tar:
            copied += len(tar.getnames())
    assert copied == 40, "every kept sample copied: neither shard overwrote the other"
    manifest = json.loads((tmp_path / "kept" / curate.WRITTEN).read_text())
    assert sorted(v["input"] for v in manifest["shards"].values()) == sorted(map(str, (a.resolve(), b.resolve())))
    assert "another input has the same name" in capsys.readouterr().out


# ---------------------------------------------------------------- a resumed job checks what it resumes

def test_resuming_with_another_model_is_refused_and_fresh_rescored(trained, sample_ava, tiny_clip_b, tmp_path,
                                                                    capsys):
    shards = [str(write_shard(tmp_path / "in" / f"{k:05d}.tar", jpegs(sample_ava, 6, skip=6 * k))) for k in range(2)]
    assert score(trained, *shards, "--out", tmp_path / "out") == 0
    parts = sorted((tmp_path / "out").glob("part-*.parquet"))
    job = curate.part_job(parts[0])
    assert job["model_uri"] == trained["model"] and job["run_id"] == trained["run"].info.run_id
    assert len(job["head_sha256"]) == 64, "each part names the model that scored it"
    with pytest.MonkeyPatch.context() as patch:  # model B: another backbone, trained in the same store
        patch.chdir(trained["root"])
        patch.setenv("MLFLOW_TRACKING_URI", trained["uri"])
        mlflow.set_tracking_uri(trained["uri"])
        assert cli.main(["main", "--clip", str(tiny_clip_b), "--ava-dir", str(sample_ava), "--cache-dir",
                         str(trained["root"] / "cache"), "--epochs", "1", "--num-workers", "0", "--precision",
                         "float32", "--run-name", "model-b", "--gallery", "false"]) == 0
        client = mlflow.MlflowClient()
        (run_b,) = client.search_runs([trained["run"].info.experiment_id], "attributes.run_name = 'model-b'")
    model_b = f"runs:/{run_b.info.run_id}/model"
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", trained["uri"])
        assert cli.main(["score", "--model", model_b, *shards, "--out", str(tmp_path / "out")]) == 2
        error = one_error_line(capsys)
        assert "another model" in error and trained["model"] in error and model_b in error and "--fresh" in error
        assert cli.main(["score", "--model", model_b, *shards, "--out", str(tmp_path / "out"), "--fresh"]) == 0
        scorer_b = load_scorer(model_b)
    frame = curate.read_parts(tmp_path / "out", shards)
    files = [f for k in range(2) for f in jpegs(sample_ava, 6, skip=6 * k)]
    np.testing.assert_allclose(frame["score"], scorer_b.score_paths(files, num_workers=0)["score"], atol=1e-5)
    assert {curate.part_job(p)["model_uri"] for p in (tmp_path / "out").glob("part-*.parquet")} == {model_b}


# ---------------------------------------------------------------- never a silent non-finite score

@pytest.mark.parametrize("poison", ["nan weight", "inf bias"])
def test_a_model_giving_a_non_finite_score_makes_it_the_rows_error(trained, sample_ava, poison):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", trained["uri"])
        mlflow.set_tracking_uri(trained["uri"])
        scorer = load_scorer(trained["model"])
    with torch.no_grad():
        for name, tensor in scorer.head.named_parameters():
            if poison == "nan weight" and name.endswith("weight"):
                tensor[0, 0] = float("nan")
            if poison == "inf bias" and name.endswith("bias"):
                tensor[...] = float("inf")
    scored = scorer.score_bytes([f.read_bytes() for f in jpegs(sample_ava, 3)])
    assert scored["score"].isna().all(), "an infinity is not clipped into a plausible 10"
    assert all("non-finite score" in e for e in scored["error"])


# ---------------------------------------------------------------- inputs

def test_gzipped_shards_stream_like_plain_ones(trained, sample_ava, tmp_path):
    files = jpegs(sample_ava, 8)
    plain = write_shard(tmp_path / "plain" / "00000.tar", files)
    gzipped = write_shard(tmp_path / "gz" / "00000.tar.gz", files, "w:gz")
    tgz = write_shard(tmp_path / "tgz" / "00000.tgz", files, "w:gz")
    assert score(trained, plain, gzipped, tgz, "--out", tmp_path / "out", "--min-score", "-100", "--write-shards",
                 tmp_path / "kept") == 0
    frame = curate.read_parts(tmp_path / "out", [str(plain), str(gzipped), str(tgz)])
    assert len(frame) == 24 and (frame["error"] == "").all(), "8 samples each, not one undecodable row"
    by_input = [frame[frame["input"] == str(p)]["score"].to_numpy() for p in (plain, gzipped, tgz)]
    np.testing.assert_allclose(by_input[1], by_input[0]) and np.testing.assert_allclose(by_input[2], by_input[0])
    with tarfile.open(tmp_path / "kept" / "00000.tar.gz", "r:gz") as tar:
        assert len(tar.getnames()) == 8, "kept as a gzipped shard"


def test_a_huge_brace_pattern_is_expanded_lazily_and_refused_at_its_first_missing_name(tmp_path, monkeypatch):
    (tmp_path / "00000000.tar").write_bytes(b"")
    made = []
    braces = samples._braces
    monkeypatch.setattr(samples, "_braces", lambda text: (made.append(name) or name for name in braces(text)))
    with pytest.raises(Exception, match=r"no such file or folder: .*00000001\.tar \(from the pattern"):
        samples.expand([str(tmp_path / "{00000000..99999999}.tar")])
    assert sorted(set(made)) == [str(tmp_path / f"0000000{k}.tar") for k in (0, 1)], \
        "names made one at a time, up to the first missing one: not a hundred million first"


def test_members_a_sample_does_not_use_are_never_read(tmp_path, sample_ava, monkeypatch):
    shard = tmp_path / "s.tar"
    with tarfile.open(shard, "w") as tar:
        add(tar, "a.jpg", jpegs(sample_ava, 1)[0].read_bytes())
        add(tar, "a.npy", b"\0" * (8 << 20))  # 8 MB this project never uses
        add(tar, "b.mp4", b"\0" * (8 << 20))  # an image-less sample's video
        add(tar, "b.txt", b"caption")
    read = []
    original = tarfile.TarFile.extractfile
    monkeypatch.setattr(tarfile.TarFile, "extractfile", lambda self, m: read.append(m.name) or original(self, m))
    rows = list(shards.read_shard(str(shard)))
    assert [r.key for r in rows] == ["s.tar/a", "s.tar/b"] and rows[1].error.startswith("no image member")
    assert read == ["a.jpg", "b.txt"], "the npy and the mp4 are skipped unread"


def test_the_gallery_of_shards_and_tables_is_written_and_escaped(trained, sample_ava, tmp_path):
    hostile = '<script>alert("x")</script>'
    shard = write_shard(tmp_path / "in" / "00000.tar", jpegs(sample_ava, 10), caption=hostile)
    page = tmp_path / "page.html"
    assert score(trained, shard, "--out", tmp_path / "out", "--gallery", page) == 0
    text = page.read_text()
    assert text.count("<img") >= 10 and "10 sample(s): 10 scored" in text
    assert "<script>" not in text and "&lt;script&gt;" in text


def test_a_tables_own_key_column_stays_the_key_and_the_folder_reads_as_one_dataset(trained, sample_ava, tmp_path):
    files = jpegs(sample_ava, 5)
    table = tmp_path / "img2dataset.parquet"
    pq.write_table(pa.table({"key": [f"{k:09d}" for k in range(5)], "jpg": pa.array([f.read_bytes() for f in files]),
                             "caption": [f"c{k}" for k in range(5)]}), table)
    assert score(trained, table, "--out", tmp_path / "out", "--top-fraction", "0.4") == 0
    frame = pd.read_parquet(tmp_path / "out")  # the folder as a dataset: parts only, the report skipped
    assert frame["key"].tolist() == [f"{k:09d}" for k in range(5)] and frame["row"].tolist() == [1, 2, 3, 4, 5]
    assert set(frame["input"]) == {str(table)} and "table_key" not in frame.columns
    assert sorted(p.name for p in (tmp_path / "out" / curate.REPORT).iterdir()) == ["kept.parquet", "summary.json",
                                                                                 "summary.png"]
    import pyarrow.dataset as ds

    assert ds.dataset(tmp_path / "out", format="parquet").count_rows() == 5


def test_a_text_image_column_is_refused_naming_the_file(trained, tmp_path, capsys):
    table = tmp_path / "urls.parquet"
    pq.write_table(pa.table({"url": ["https://example.org/a.jpg"], "score": [1.0]}), table)
    assert score(trained, table, "--out", tmp_path / "out", "--image-column", "url") == 2
    error = one_error_line(capsys)
    assert str(table) in error and "'url'" in error and "not image bytes" in error
    assert score(trained, table, "--out", tmp_path / "out2") == 2
    error = one_error_line(capsys)
    assert str(table) in error and "url" in error and "fetch the images first" in error


# ---------------------------------------------------------------- labels tables

@pytest.fixture(scope="module")
def ratings(tmp_path_factory) -> Path:
    return write_sample_ratings(tmp_path_factory.mktemp("ratings") / "ratings", 24, seed=7)


def rows_csv(n: int = 12) -> str:
    return "".join(f"images/photo_{k:04d}.jpg,{1 + k % 5}\n" for k in range(n))


def test_a_nul_byte_in_a_path_is_refused_in_one_line(ratings, tmp_path):
    table = ratings / "nul.csv"
    table.write_text("file_name,score\n" + rows_csv(4) + "images/pho\x00to.jpg,3\n")
    try:
        with pytest.raises(LabelsError, match=r"nul.csv:6: .*NUL byte"):
            read_labels(table)
    finally:
        table.unlink()


def test_over_long_names_and_urls_are_set_aside_with_their_reason(ratings):
    table = ratings / "odd.csv"
    table.write_text("file_name,score\n" + rows_csv(6) + f"images/{'x' * 300}.jpg,3\n"
                     "https://example.org/photo.jpg,4\n")
    try:
        labelled = read_labels(table)
    finally:
        table.unlink()
    reasons = dict(zip(labelled.skipped["image"], labelled.skipped["reason"], strict=True))
    assert len(labelled.frame) == 6 and len(reasons) == 2
    assert "too long" in reasons[f"images/{'x' * 300}.jpg"] and "odd.csv:8" in reasons[f"images/{'x' * 300}.jpg"]
    assert "never fetched" in reasons["https://example.org/photo.jpg"]


def test_huge_vote_counts_are_summed_exactly_or_refused(ratings):
    table = ratings / "votes.csv"
    big = 10**18
    table.write_text("file_name,c1,c2,c3,c4,c5\n" + "".join(f"images/photo_{k:04d}.jpg,0,0,{big},{big},{k}\n"
                                                            for k in range(6)))
    try:
        labelled = read_labels(table, vote_columns=["c1", "c2", "c3", "c4", "c5"])
        assert labelled.frame["score"].tolist() == pytest.approx([(3 * big + 4 * big + 5 * k) / (2 * big + k)
                                                                  for k in range(6)], rel=1e-15)
        assert labelled.frame["score"].between(3, 4).all(), "a mean of 3s and 4s stays between them"
        table.write_text("file_name,c1,c2,c3,c4,c5\n" + "images/photo_0001.jpg,0,0,1e18,2,0\n")
        with pytest.raises(LabelsError, match=r"votes.csv:2: vote count 'c3' is '1e18'.*2\^53"):
            read_labels(table, vote_columns=["c1", "c2", "c3", "c4", "c5"])
    finally:
        table.unlink()


def test_a_semicolon_separated_csv_is_read_with_its_separator(ratings):
    table = ratings / "excel.csv"
    table.write_text("file_name;score\n" + rows_csv(8).replace(",", ";"))
    try:
        labelled = read_labels(table)
    finally:
        table.unlink()
    assert len(labelled.frame) == 8 and labelled.frame["score"].tolist()[:3] == [1.0, 2.0, 3.0]


def test_names_in_another_unicode_form_find_their_file(ratings, tmp_path):
    folder = tmp_path / "set"
    (folder / "images").mkdir(parents=True)
    decomposed = unicodedata.normalize("NFD", "café_{k}.jpg")
    for k in range(6):  # on disk as a macOS export writes them (NFD), named in the table in NFC
        shutil.copy(ratings / "images" / f"photo_{k:04d}.jpg", folder / "images" / decomposed.format(k=k))
    table = folder / "t.csv"
    table.write_text("file_name,score\n" + "".join(f"images/{unicodedata.normalize('NFC', 'café')}_{k}.jpg,{1 + k}\n"
                                                   for k in range(6)))
    labelled = read_labels(table)
    assert len(labelled.frame) == 6 and labelled.skipped.empty


def test_a_labels_table_given_as_a_pipe_is_refused_saying_so(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(LabelsError, match="a pipe or device .* write it to a file first"):
        read_labels(fifo)


def test_empty_and_imageless_tables_are_refused_in_one_line(ratings, tmp_path):
    empty = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"file_name": pa.array([], pa.string()), "score": pa.array([], pa.float64())}), empty)
    with pytest.raises(LabelsError, match="empty.parquet: the table holds no rows"):
        read_labels(empty, image_dir=ratings)
    nulls = tmp_path / "nulls.parquet"
    pq.write_table(pa.table({"file_name": pa.array([None] * 4, pa.string()), "score": [1.0, 2, 3, 4]}), nulls)
    with pytest.raises(LabelsError, match=r"no row has a usable image .*no image in this row"):
        read_labels(nulls, image_dir=ratings)


# ---------------------------------------------------------------- head files and names

@pytest.fixture(scope="module")
def clip512(tmp_path_factory):
    from clip_aesthetics.backbones.families import save_random_backbone

    return save_random_backbone(tmp_path_factory.mktemp("b512") / "clip512", "clip", 0, projection_dim=512)


def laion_state() -> dict:
    generator = torch.Generator().manual_seed(0)
    return {"weight": torch.randn(1, 512, generator=generator) / 20, "bias": torch.tensor([5.0])}


def import_head(path, clip, name="h"):
    return cli.main(["import-head", str(path), "--clip", str(clip), "--model-name", name])


@pytest.mark.parametrize("case", ["nan weight", "inf bias", "meta tensors", "python objects"])
def test_a_head_file_that_cannot_score_is_refused_naming_why(case, clip512, tmp_path, tracking_uri, capsys):
    state = laion_state()
    path = tmp_path / "head.pth"
    if case == "nan weight":
        state["weight"][0, 7] = float("nan")
    elif case == "inf bias":
        state["bias"][0] = float("inf")
    elif case == "meta tensors":
        state = {k: torch.empty(v.shape, device="meta") for k, v in state.items()}
    else:
        state = {"weight": state["weight"], "bias": state["bias"], "config": Path("/tmp")}  # a Python object
    torch.save(state, path)
    assert import_head(path, clip512) == 2
    error = one_error_line(capsys)
    expected = {"nan weight": "'weight' holds 1 NaN or infinite", "inf bias": "'bias' holds 1 NaN or infinite",
                "meta tensors": "meta tensor", "python objects": "never loads"}[case]
    assert expected in error and str(path) in error
    assert "weights_only" not in error and "will likely succeed" not in error, "no advice to load it unsafely"
    assert mlflow.MlflowClient().search_runs([e.experiment_id for e in mlflow.search_experiments()]) == []


def test_a_state_dict_nested_under_model_is_unwrapped(clip512, tmp_path, tracking_uri, capsys):
    torch.save({"model": laion_state(), "epoch": 3, "optimizer": {"lr": 0.1}}, tmp_path / "checkpoint.pth")
    assert import_head(tmp_path / "checkpoint.pth", clip512, "nested") == 0
    assert "laion-linear" in capsys.readouterr().out


def test_a_model_name_the_registry_refuses_is_refused_before_any_run(clip512, tmp_path, tracking_uri, capsys):
    torch.save(laion_state(), tmp_path / "head.pth")
    assert import_head(tmp_path / "head.pth", clip512, "bad/name") == 2
    assert "cannot contain '/'" in one_error_line(capsys)
    assert mlflow.search_experiments() == [] or mlflow.MlflowClient().search_runs(
        [e.experiment_id for e in mlflow.search_experiments()]) == []
    assert cli.main(["register", "--model-name", "a:b"]) == 2
    assert "cannot contain ':'" in one_error_line(capsys)


# ---------------------------------------------------------------- evaluate: one bad model does not stop the others

def test_evaluate_measures_the_models_it_can_and_leaves_no_failed_run(trained, sample_ava, tmp_path, capsys):
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(trained["root"])
        patch.setenv("MLFLOW_TRACKING_URI", trained["uri"])
        mlflow.set_tracking_uri(trained["uri"])
        client = mlflow.MlflowClient()
        experiment = trained["run"].info.experiment_id
        before = {r.info.run_id for r in client.search_runs([experiment])}
        missing = "runs:/0123456789abcdef0123456789abcdef/model"
        assert cli.main(["evaluate", "--model", missing, "--ava-dir", str(sample_ava), "--cache-dir",
                         str(trained["root"] / "cache")]) == 2
        assert missing in one_error_line(capsys)
        assert {r.info.run_id for r in client.search_runs([experiment])} == before, "refused before any run opened"
        (logged,) = mlflow.search_logged_models(experiment_ids=[experiment], output_format="list",
                                                filter_string=f"source_run_id = '{trained['run'].info.run_id}' "
                                                "and name = 'model'")  # not a copy another test registered
        same_by_id = f"models:/{logged.model_id}"  # the same model under its other URI: a second measured model
        assert cli.main(["evaluate", "--model", missing, "--model", trained["model"], "--model", same_by_id,
                         "--ava-dir", str(sample_ava), "--cache-dir", str(trained["root"] / "cache"),
                         "--run-name", "one-bad"]) == 1
        printed = capsys.readouterr()
        assert "1 of 3 model(s) not measured" in printed.err and missing in printed.err
        (parent,) = client.search_runs([experiment], "attributes.run_name = 'one-bad'")
        board = pd.read_csv(client.download_artifacts(parent.info.run_id, "comparison/leaderboard.csv", str(tmp_path)))
        assert board["model"].tolist()[-1] == missing, "the measured ones first, the missing one named last"
        assert np.isfinite(board["eval_spearman"][:2]).all() and board.loc[2, "note"].startswith("not measured")
        assert "gallery/compare.html" in [a.path for a in client.list_artifacts(parent.info.run_id, "gallery")]
        runs = client.search_runs([experiment])
        assert not [r for r in runs if r.info.status == "FAILED"], "no FAILED run where nothing was done"


# ---------------------------------------------------------------- files and folders: the output never replaces an input

def test_a_csv_named_like_an_input_image_is_refused(trained, sample_ava, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for f in jpegs(sample_ava, 3):
        shutil.copy(f, photos / f.name)
    victim = photos / jpegs(sample_ava, 1)[0].name
    before = victim.read_bytes()
    assert score(trained, photos, "--out", victim, "--num-workers", "0") == 2
    assert "would be written over" in one_error_line(capsys) and victim.read_bytes() == before


@pytest.mark.parametrize("where", ["the input folder", "a folder holding it", "a file", "a folder of other files"])
def test_spark_never_replaces_an_input_or_a_foreign_folder(where, trained, sample_ava, tmp_path, capsys):
    """Spark writes its output in overwrite mode, deleting the folder first: refused before Spark even starts."""
    photos = tmp_path / "data" / "photos"
    photos.mkdir(parents=True)
    for f in jpegs(sample_ava, 2):
        shutil.copy(f, photos / f.name)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    out = {"the input folder": photos, "a folder holding it": tmp_path / "data",
           "a file": photos / jpegs(sample_ava, 1)[0].name, "a folder of other files": tmp_path / "notes"}[where]
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    inputs = [photos / jpegs(sample_ava, 1)[0].name] if where == "a file" else [photos]
    assert score(trained, *inputs, "--engine", "spark", "--out", out) == 2
    assert one_error_line(capsys)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before, "nothing deleted or changed"


def test_a_folder_scored_by_an_earlier_version_is_refused_until_fresh(trained, sample_ava, tmp_path, capsys):
    shard = write_shard(tmp_path / "in" / "00000.tar", jpegs(sample_ava, 4))
    out = tmp_path / "out"
    out.mkdir()  # as versions before 2026-12-03 left it: a part that names no model, the report beside it
    pd.DataFrame({"key": ["00000.tar/x"], "input": [str(shard)], "score": [9.9], "error": [""]}).to_parquet(
        curate.part_path(out, str(shard)))
    (out / "summary.json").write_text("{}")
    assert score(trained, shard, "--out", out) == 2
    error = one_error_line(capsys)
    assert "did not record" in error and "--fresh" in error
    assert score(trained, shard, "--out", out, "--fresh") == 0
    frame = curate.read_parts(out, [str(shard)])
    assert len(frame) == 4 and 9.9 not in frame["score"].tolist() and not (out / "summary.json").exists()
