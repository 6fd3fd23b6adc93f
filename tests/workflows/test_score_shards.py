"""Curation: webdataset shards and parquet tables of image bytes scored row for row, summarised, selected, resumed."""

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clip_aesthetics.cli import app as cli
from clip_aesthetics.data.sample_data import _write_huge_png
from clip_aesthetics.scoring import curate, curation_report, reference, samples
from clip_aesthetics.scoring.uris import download_model, load_scorer, read_spec

ROOT = Path(__file__).resolve().parents[2]


def add(tar: tarfile.TarFile, name: str, data: bytes, **info) -> None:
    member = tarfile.TarInfo(name)
    member.size = len(data)
    for k, v in info.items():
        setattr(member, k, v)
    tar.addfile(member, io.BytesIO(data))


@pytest.fixture(scope="module")
def shards(sample_ava, tmp_path_factory) -> dict:
    """Three shards of 12 samples (jpg + json + txt each) made of the sample AVA's images."""
    folder = tmp_path_factory.mktemp("shards")
    files = sorted(f for f in (sample_ava / "image").glob("*.jpg") if int(f.stem) >= 1000)[:36]
    samples = {}
    for number in range(3):
        with tarfile.open(folder / f"{number:05d}.tar", "w") as tar:
            for k, path in enumerate(files[number * 12:(number + 1) * 12]):
                key = f"s{number}{k:03d}"
                add(tar, f"{key}.jpg", path.read_bytes())
                add(tar, f"{key}.json", json.dumps({"url": f"https://example.org/{path.name}", "width": 96,
                                                    "key": "clash"}).encode())
                add(tar, f"{key}.txt", f"caption of {path.name}".encode())
                samples[f"{number:05d}.tar/{key}"] = path
    return {"folder": folder, "samples": samples}


def score(trained, *args):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", trained["uri"])
        mlflow.set_tracking_uri(trained["uri"])
        return cli.main(["score", "--model", trained["model"], *map(str, args)])


def test_shards_give_one_row_per_sample_with_the_scores_of_the_same_files(trained, shards, tmp_path, capsys):
    out, kept_dir = tmp_path / "out", tmp_path / "kept"
    pattern = str(shards["folder"] / "{00000..00002}.tar")
    assert score(trained, pattern, "--out", out, "--top-fraction", "0.25", "--write-shards", kept_dir) == 0
    printed = capsys.readouterr().out
    frame = pd.concat([pd.read_parquet(p) for p in sorted(out.glob("part-*.parquet"))], ignore_index=True)
    assert sorted(frame["key"]) == sorted(shards["samples"]), "one row per sample, keyed by shard and sample key"
    assert (frame["error"] == "").all()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", trained["uri"])
        mlflow.set_tracking_uri(trained["uri"])
        scorer = load_scorer(trained["model"])
    paths = [shards["samples"][k] for k in frame["key"]]
    np.testing.assert_allclose(frame["score"], scorer.score_paths(paths, num_workers=0)["score"], atol=1e-5)
    first = frame.iloc[0]
    assert first["url"] == f"https://example.org/{shards['samples'][first['key']].name}" and first["width"] == "96"
    assert first["caption"] == f"caption of {shards['samples'][first['key']].name}" and first["json_key"] == "clash"
    summary = json.loads((out / "_report" / "summary.json").read_text())
    expected = np.percentile(frame["score"].to_numpy(), curation_report.PERCENTILES)
    stored = [summary["percentiles"][f"p{q}"] for q in curation_report.PERCENTILES]
    assert stored == pytest.approx(expected.tolist(), abs=1e-12)
    assert summary["count"] == 36 and summary["mean"] == pytest.approx(frame["score"].mean())
    assert (out / "_report" / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "p50" in printed
    kept = pd.read_parquet(out / "_report" / "kept.parquet")
    assert len(kept) == 9, "the best 25% of 36"
    assert set(kept["key"]) == set(frame.nlargest(9, "score")["key"])
    copied = {}
    for shard in sorted(kept_dir.glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar:
                copied[f"{shard.name}/{member.name}"] = tar.extractfile(member).read()
    assert {k.rsplit(".", 1)[0] for k in copied} == set(kept["key"]), "exactly the kept samples"
    for name, data in copied.items():
        with tarfile.open(shards["folder"] / name.split("/")[0]) as original:
            assert original.extractfile(name.split("/", 1)[1]).read() == data, "members copied byte for byte"


def test_min_percentile_keeps_the_samples_at_or_above_the_models_reference(trained, shards, tmp_path, capsys):
    out = tmp_path / "out"
    assert score(trained, shards["folder"] / "00000.tar", shards["folder"] / "00001.tar", "--out", out,
                 "--min-percentile", "60") == 0
    printed = capsys.readouterr().out
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", trained["uri"])
        mlflow.set_tracking_uri(trained["uri"])
        ref = reference.of_spec(read_spec(download_model(trained["model"])))
    assert ref is not None and "test images" in ref.what and ref.count >= 2
    frame = pd.concat([pd.read_parquet(p) for p in sorted(out.glob("part-*.parquet"))], ignore_index=True)
    assert list(frame.columns[:5]) == ["key", "input", "score", "percentile", "error"]
    by_score = frame.sort_values("score")
    assert (np.diff(by_score["percentile"].to_numpy()) >= 0).all() and frame["percentile"].between(0, 100).all()
    want = {key for key, s in zip(frame["key"], frame["score"]) if np.mean(ref.scores < s) * 100 >= 60}
    kept = pd.read_parquet(out / "_report" / "kept.parquet")
    assert set(kept["key"]) == want and 0 < len(want) < len(frame)
    summary = json.loads((out / "_report" / "summary.json").read_text())
    assert summary["reference"] == ref.what and f"percentiles against {ref.what}" in printed
    assert summary["mean_percentile"] == pytest.approx(frame["percentile"].mean())


def test_a_parquet_of_image_bytes_keeps_every_row_and_its_columns(trained, sample_ava, tmp_path):
    files = sorted(f for f in (sample_ava / "image").glob("*.jpg") if int(f.stem) >= 1000)[:10]
    cells = [{"bytes": f.read_bytes(), "path": f.name} for f in files]
    cells[3] = None  # a null cell
    cells[4] = {"bytes": files[4].read_bytes()[:200], "path": "cut.jpg"}  # truncated bytes
    table = tmp_path / "images.parquet"
    pq.write_table(pa.table({"image": pa.array(cells, pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                             "url": [f"u{k}" for k in range(10)], "score": list(range(10))}), table,
                   row_group_size=4)
    assert score(trained, table, "--out", tmp_path / "out", "--min-score", "1") == 0
    frame = curate.read_parts(tmp_path / "out", [str(table)])
    assert frame["key"].tolist() == [f"images.parquet#{k}" for k in range(1, 11)]
    assert frame["url"].tolist() == [f"u{k}" for k in range(10)] and frame["table_score"].tolist()[:2] == ["0", "1"]
    assert frame.loc[3, "error"].startswith("no image") and "truncated" in frame.loc[4, "error"]
    assert frame["score"].notna().sum() == 8


def hostile_shard(path: Path, good: bytes) -> list[str]:
    """Every kind of trouble in one shard; returns the sample keys a reader must report."""
    huge = path.parent / "huge.png"
    _write_huge_png(huge, 9000, 9000)
    with tarfile.open(path, "w") as tar:
        add(tar, "ok.jpg", good)
        add(tar, "../escape.jpg", good)
        add(tar, "/abs/olute.jpg", good)
        add(tar, "link.jpg", b"", type=tarfile.SYMTYPE, linkname="/etc/passwd")
        add(tar, "hard.jpg", b"", type=tarfile.LNKTYPE, linkname="ok.jpg")
        add(tar, "two.jpg", good)
        add(tar, "two.png", b"png bytes that are not used")
        add(tar, "zero.jpg", b"")
        add(tar, "text.jpg", b"this is text, not a JPEG")
        add(tar, "bomb.png", huge.read_bytes())
        add(tar, "nothing.json", b"{}")
    return ["ok", "..", "", "link", "hard", "two", "zero", "text", "bomb", "nothing"]


def test_hostile_shards_lose_no_row_and_write_nothing_outside(trained, sample_ava, tmp_path, monkeypatch):
    good = next(f for f in sorted((sample_ava / "image").glob("*.jpg")) if int(f.stem) >= 1000).read_bytes()
    shard = tmp_path / "in" / "hostile.tar"
    shard.parent.mkdir()
    hostile_shard(shard, good)
    cut = tmp_path / "in" / "cut.tar"
    cut.write_bytes(shard.read_bytes()[:1536 + 700])  # ends inside the second member
    monkeypatch.chdir(tmp_path / "in")
    assert score(trained, shard, cut, "--out", tmp_path / "out", "--min-score", "-100", "--write-shards",
                 tmp_path / "kept") == 0
    frame = curate.read_parts(tmp_path / "out", [str(shard), str(cut)])
    rows = dict(zip(frame["key"], frame["error"], strict=True))
    assert rows["hostile.tar/ok"] == "" and rows["hostile.tar/two"] == "", "two images: the jpg is used"
    assert "unsafe member name" in rows["hostile.tar/../escape"] and "unsafe" in rows["hostile.tar//abs/olute"]
    assert "symlink member" in rows["hostile.tar/link"] and "hardlink member" in rows["hostile.tar/hard"]
    assert rows["hostile.tar/zero"] == "empty image data" and "not an image" in rows["hostile.tar/text"]
    assert "too large" in rows["hostile.tar/bomb"] and rows["hostile.tar/nothing"].startswith("no image member")
    assert any(k.startswith("cut.tar") and "cut off" in e for k, e in rows.items()), "the cut shard says so"
    assert not (tmp_path / "escape.jpg").exists() and not Path("/abs/olute.jpg").exists()
    with tarfile.open(tmp_path / "kept" / "hostile.tar") as tar:
        names = tar.getnames()
    assert "ok.jpg" in names and not any(n.startswith(("..", "/")) for n in names) and "link.jpg" not in names


def test_a_damaged_parquet_footer_is_one_row_and_the_other_inputs_are_scored(trained, shards, tmp_path):
    table = tmp_path / "damaged.parquet"
    pq.write_table(pa.table({"jpg": pa.array([b"x" * 10], pa.binary())}), table)
    table.write_bytes(table.read_bytes()[:-12])
    assert score(trained, table, shards["folder"] / "00000.tar", "--out", tmp_path / "out") == 0
    frame = curate.read_parts(tmp_path / "out", [str(table), str(shards["folder"] / "00000.tar")])
    assert frame.loc[0, "key"] == "damaged.parquet" and "unreadable or damaged" in frame.loc[0, "error"]
    assert frame["score"].notna().sum() == 12


def test_a_killed_job_restarted_ends_with_the_output_of_an_uninterrupted_one(trained, shards, tmp_path):
    inputs = [str(shards["folder"] / f"{k:05d}.tar") for k in range(3)]
    assert score(trained, *inputs, "--out", tmp_path / "whole") == 0
    # The child scores slowly (a pause after each part, in this test's own wrapper) so it can be killed mid-job.
    code = ("import sys, time\nfrom clip_aesthetics.cli import app as cli\n"
            "from clip_aesthetics.scoring import curate\nreal = curate.score_input\n"
            "def slow(*a, **k):\n    n = real(*a, **k)\n    time.sleep(3)\n    return n\n"
            "curate.score_input = slow\nsys.exit(cli.main(sys.argv[1:]))\n")
    env = {**os.environ, "MLFLOW_TRACKING_URI": trained["uri"]}
    args = [sys.executable, "-c", code, "score", "--model", trained["model"], *inputs, "--out", str(tmp_path / "cut")]
    child = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=trained["root"])
    deadline = time.time() + 240
    while not list((tmp_path / "cut").glob("part-*.parquet")) and time.time() < deadline and child.poll() is None:
        time.sleep(0.1)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert len(list((tmp_path / "cut").glob("part-*.parquet"))) == 1, "killed after its first part"
    assert score(trained, *inputs, "--out", tmp_path / "cut") == 0
    whole, resumed = (curate.read_parts(tmp_path / name, inputs) for name in ("whole", "cut"))
    pd.testing.assert_frame_equal(whole, resumed)
    assert not list((tmp_path / "cut").glob(".*.tmp")), "no half-written part"


def test_top_fraction_counts_failures_and_min_score_combines(tmp_path):
    frame = pd.DataFrame({"key": [f"k{i}" for i in range(20)], "input": "a.tar",
                          "score": [float(i) for i in range(18)] + [np.nan, np.nan], "error": [""] * 18 + ["x", "y"]})
    assert curation_report.select(frame, top_fraction=0.1)["key"].tolist() == ["k17", "k16"]
    assert curation_report.select(frame, min_score=16.5)["key"].tolist() == ["k17"]
    assert curation_report.select(frame, min_score=16.5, top_fraction=0.5)["key"].tolist() == ["k17"]


def test_brace_patterns_and_globs_expand_in_order(tmp_path):
    for k in range(3):
        (tmp_path / f"{k:05d}.tar").write_bytes(b"")
    assert samples.expand([str(tmp_path / "{00000..00002}.tar")]) == [str(tmp_path / f"{k:05d}.tar") for k in range(3)]
    assert samples.expand([str(tmp_path / "*.tar")]) == [str(tmp_path / f"{k:05d}.tar") for k in range(3)]
    with pytest.raises(Exception, match="no file matches"):
        samples.expand([str(tmp_path / "x*.tar")])
