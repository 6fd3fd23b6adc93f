"""Galleries: what a person opens to see what the scores mean, self-contained, bounded and safe."""

import re
import shutil

import mlflow
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from clip_aesthetics.cli import app as cli
from clip_aesthetics.reports import gallery

HOSTILE = "<img src=x onerror=alert(1)>"


def noise(seed: int, size=(400, 300)) -> Image.Image:
    """Random pixels: the worst case for a JPEG thumbnail's size."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def shown(page: str) -> list[tuple[str, float]]:
    return [(key, float(score)) for key, score in re.findall(r'<figure data-key="([^"]*)" data-score="([^"]*)"', page)]


def test_a_page_is_self_contained_escaped_and_shows_failures_with_their_reason():
    rows = [gallery.Row(f"{HOSTILE}{i}.jpg", f"caption {HOSTILE}", 1 + i * 0.8, lambda i=i: noise(i), true=5.0)
            for i in range(12)]
    rows.append(gallery.Row("broken.jpg", "broken.jpg", float("nan"), None, error="truncated image (x)"))
    page = gallery.page("t", rows, (1.0, 10.0), ["summary"]).decode()
    assert "<script" not in page and HOSTILE not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "default-src 'none'" in page and not re.search(r'(src|href)="(?!data:)', page), "nothing from the network"
    assert "Not scored: 1" in page and "truncated image (x)" in page
    lows = [float(x) for x in re.findall(r'class="bucket" data-low="([^"]+)"', page)]
    assert lows == sorted(lows) and len(lows) > 5, "buckets in score order"
    scores = dict(shown(page))
    assert all(abs(scores[r.key.replace("<", "&lt;").replace(">", "&gt;")] - r.score) < 1e-6 for r in rows[:12])


def test_the_page_size_is_bounded_whatever_the_test_set():
    rows = [gallery.Row(str(i), str(i), float(s), lambda i=i: noise(i), true=float(t))
            for i, (s, t) in enumerate(zip(np.random.default_rng(0).uniform(1, 10, 5000),
                                           np.random.default_rng(1).uniform(1, 10, 5000), strict=True))]
    page = gallery.page("t", rows, (1.0, 10.0), [])
    assert len(page) < 6_000_000, len(page)
    assert len(shown(page.decode())) <= 18 * gallery.PER_BUCKET + 3 * gallery.EXTREMES


def test_disagreement_ranks_the_disputed_image_first():
    a = {str(i): float(i) for i in range(10)}
    b = dict(a, **{"9": -1.0})  # b puts a's best image last
    assert gallery.disagreement({"a": a, "b": b})[0][0] == "9"


@pytest.fixture
def train_run(sample_ava, tiny_clip, tmp_path, tracking_uri):
    def run(*extra):
        args = ["main", "--clip", str(tiny_clip), "--ava-dir", str(sample_ava), "--cache-dir", str(tmp_path / "cache"),
                "--num-workers", "0", "--epochs", "2", "--lr", "0.003", "--batch-size", "16", *extra]
        assert cli.main(args) == 0
        client = mlflow.MlflowClient()
        runs = client.search_runs([client.get_experiment_by_name("clip-aesthetics").experiment_id],
                                  order_by=["attributes.start_time DESC"])
        return client, runs[0]
    return run


def test_a_training_run_logs_its_gallery_with_the_runs_own_scores(train_run, tmp_path):
    client, run = train_run()
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "gallery")}
    assert artifacts == {"gallery/test.html"}
    assert {"plots/calibration.png", "plots/residuals.png"} <= {a.path for a in client.list_artifacts(run.info.run_id,
                                                                                                     "plots")}
    page = open(client.download_artifacts(run.info.run_id, "gallery/test.html", str(tmp_path))).read()
    predictions = pd.read_csv(client.download_artifacts(run.info.run_id, "predictions/test.csv", str(tmp_path)))
    expected = dict(zip(predictions["image_id"].astype(str), predictions["score_pred"], strict=True))
    for key, score in shown(page):
        assert score == pytest.approx(expected[key], abs=1e-5)
    assert "Biggest misses" in page and page.count('src="data:image/jpeg') >= 10


def test_gallery_false_copies_no_image_into_the_store(train_run):
    client, run = train_run("--gallery", "false", "--run-name", "private")
    assert not client.list_artifacts(run.info.run_id, "gallery")


def test_a_sweep_parent_shows_every_childs_score_per_image(sample_ava, tiny_clip, tiny_clip_b, tmp_path, tracking_uri):
    assert cli.main(["sweep", "--clips", f"{tiny_clip},{tiny_clip_b}", "--norms", "true", "--ava-dir", str(sample_ava),
                     "--cache-dir", str(tmp_path / "cache"), "--epochs", "2", "--lr", "0.003", "--batch-size", "16",
                     "--num-workers", "0"]) == 0
    client = mlflow.MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("clip-aesthetics").experiment_id])
    parent = next(r for r in runs if r.data.tags.get("clip_aesthetics.sweep") == "true")
    page = open(client.download_artifacts(parent.info.run_id, "gallery/compare.html", str(tmp_path))).read()
    figures = page.count("<figure")
    assert figures > 10
    for child in ("tiny-a-normed", "tiny-b-normed"):
        assert page.count(f'data-child="{child}"') == figures, "one score per child per image"


def test_score_writes_a_gallery_whose_counts_are_the_outputs_rows(sample_ava, tmp_path, monkeypatch, capsys):
    from clip_aesthetics.scoring.curation_report import gallery_page

    folder = tmp_path / "photos"
    folder.mkdir()
    for image_id in (11, 12, 14, 15):
        shutil.copy(sample_ava / "image" / f"{image_id}.jpg", folder / f"{image_id}.jpg")
    (folder / f"{HOSTILE}.jpg").write_bytes((sample_ava / "image" / "16.jpg").read_bytes())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff")
    frame = pd.DataFrame({"path": [str(p) for p in sorted(folder.iterdir())]})
    frame["score"] = [float("nan") if "broken" in p else 5.0 + i * 0.3 for i, p in enumerate(frame["path"])]
    frame["error"] = ["truncated image" if "broken" in p else "" for p in frame["path"]]
    (tmp_path / "g.html").write_bytes(gallery_page(frame, (1.0, 10.0)))
    page = (tmp_path / "g.html").read_text()
    assert "6 input(s): 5 scored, 1 not" in page and HOSTILE not in page and "Not scored: 1" in page
    assert page.count('alt="histogram"') == 1
