"""Each extension table takes a new entry from outside the project: registered here, in the test, and used end to
end through the CLI, with no project file edited."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from clip_aesthetics import extensions
from clip_aesthetics.cli import app as cli


def _main_run(*args) -> mlflow.entities.Run:
    assert cli.main(["main", *args]) == 0
    client = mlflow.MlflowClient()
    return client.search_runs([client.get_experiment_by_name("clip-aesthetics").experiment_id],
                              order_by=["attributes.start_time DESC"])[0]


def _train_args(sample_ava: Path, clip: Path, cache: Path) -> list[str]:
    return ["--clip", str(clip), "--ava-dir", str(sample_ava), "--cache-dir", str(cache), "--num-workers", "0",
            "--epochs", "2", "--lr", "0.003", "--precision", "float32", "--gallery", "false"]


def test_a_table_lists_refuses_and_restores_its_entries():
    assert extensions.HEADS.names()[:3] == ["linear", "mlp", "ridge"]
    with pytest.raises(ValueError, match="head='nope' is not a head kind; expected one of linear, mlp"):
        extensions.HEADS.check("nope", "head")
    with extensions.HEADS.registered("linear", "not-a-module:X"):
        assert extensions.HEADS._refs["linear"] == "not-a-module:X"
    assert extensions.HEADS.get("linear").closed_form is None  # the built-in entry is back


# ---------------------------------------------------------------- a head kind

class _Bottleneck(nn.Module):
    """A head no project file knows: embedding -> 4 -> tanh -> 1."""

    def __init__(self, in_dim: int):
        super().__init__()
        self.squeeze, self.out = nn.Linear(in_dim, 4), nn.Linear(4, 1)

    def forward(self, x):
        return self.out(torch.tanh(self.squeeze(x)))


def test_a_new_head_kind_trains_logs_and_scores_through_the_cli(sample_ava, tiny_clip, tmp_path, tracking_uri, capsys):
    from clip_aesthetics.heads.kinds import HeadKind

    kind = HeadKind(lambda spec: _Bottleneck(spec.in_dim), "a 4-unit tanh bottleneck")
    with extensions.HEADS.registered("bottleneck", kind):
        run = _main_run(*_train_args(sample_ava, tiny_clip, tmp_path / "cache"), "--head", "bottleneck")
        assert run.data.params["head"] == "bottleneck"
        assert run.data.tags["mlflow.runName"].endswith("-bottleneck")
        assert int(run.data.metrics["best_epoch"]) in (1, 2)  # trained with Adam, epoch by epoch
        model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
        images = sorted((sample_ava / "image").glob("*.jpg"))[:6]
        scored = model.predict(pd.DataFrame({"image": [p.read_bytes() for p in images]}))
        assert (scored["error"] == "").all() and scored["score"].between(1, 10).all()
        assert scored["score"].nunique() > 1
        out = tmp_path / "scores.csv"
        assert cli.main(["score", str(images[0].parent), "--model", f"runs:/{run.info.run_id}/model", "--out",
                         str(out), "--num-workers", "0"]) == 0
        frame = pd.read_csv(out).set_index("path")
        assert np.allclose(frame.loc[[str(p) for p in images], "score"], scored["score"], atol=1e-5)
    capsys.readouterr()
    assert cli.main(["main", "--head", "bottleneck"]) == 2  # gone with its registration: refused before any work
    assert "'bottleneck' is not a head kind that can be trained" in capsys.readouterr().err


def _close_share(split, head, spec, features, part) -> dict[str, float]:
    """The fake kind's own metric: the share of a split's images predicted within one point of their score."""
    from clip_aesthetics.heads.head import predict_scores

    return {f"{split}_fake_close": float(np.mean(np.abs(predict_scores(head, spec, features) - part.scores) < 1.0))}


def test_a_head_kind_with_its_own_metric_trains_sweeps_registers_and_evaluates_through_the_cli(
        sample_ava, tiny_clip, tmp_path, tracking_uri, capsys):
    """A kind selected by a metric of its own (higher is better, as it declares): its epochs are kept by it, the sweep
    ranks its children by it, register promotes by it, evaluate measures it; no other file names it."""
    from clip_aesthetics.heads.kinds import HeadKind

    kind = HeadKind(lambda spec: nn.Linear(spec.in_dim, 1), "a linear head judged by its near misses",
                    metrics=_close_share, selection_metric="val_fake_close", reported_metric="test_fake_close",
                    metric_directions={"fake_close": 1})
    client = mlflow.MlflowClient()
    with extensions.HEADS.registered("close", kind):
        assert cli.main(["sweep", "--clips", str(tiny_clip), "--heads", "close", "--norms", "true",
                         "--lrs", "0.003,0.0001", *_train_args(sample_ava, tiny_clip, tmp_path / "cache")[2:]]) == 0
        runs = client.search_runs([client.get_experiment_by_name("clip-aesthetics").experiment_id])
        children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
        parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
        assert len(children) == 2 and {c.data.tags["selected_by"] for c in children} == {"val_fake_close"}
        assert all(c.data.tags["selection"] == "val_fake_close" for c in children)
        best = max(children, key=lambda c: c.data.metrics["best_val_fake_close"])
        assert parent.data.tags["best_run"] == best.info.run_id
        assert "best_val_fake_close" in parent.data.metrics and "val_fake_close" in parent.data.tags[
            "mlflow.note.content"]
        capsys.readouterr()
        assert cli.main(["register"]) == 0  # by the candidates' own selection metric
        assert "(val_fake_close " in capsys.readouterr().out
        version = client.get_model_version_by_alias("clip-aesthetics", "champion")
        assert version.tags["run_id"] == best.info.run_id and version.tags["registered_by"] == "val_fake_close"
        assert "val_fake_close" in version.description and "test_fake_close" in version.description
        assert cli.main(["evaluate", "--model", "models:/clip-aesthetics@champion", "--ava-dir", str(sample_ava),
                         "--cache-dir", str(tmp_path / "cache"), "--gallery", "false"]) == 0
        assert cli.main(["register", "--metric", "val_fake_close", "--run-id", best.info.run_id]) == 0
    capsys.readouterr()
    assert cli.main(["register", "--metric", "val_fake_close"]) == 2, "its direction is the kind's: gone with it"


def test_a_published_only_head_kind_is_refused_for_training(capsys):
    assert cli.main(["train", "--head", "chain"]) == 2
    assert "published heads only" in capsys.readouterr().err


# ---------------------------------------------------------------- a backbone family

def test_a_new_backbone_family_embeds_trains_and_scores_through_the_cli(sample_ava, tmp_path, tracking_uri):
    """A plain ViT (no family of the project's) from a tiny config: its CLS token is the embedding."""
    import transformers

    from clip_aesthetics.backbones.families import Family, save_random_backbone

    def random_vit(vision, crop, tiny):
        config = transformers.ViTConfig(**{k: v for k, v in vision.items() if k != "projection_dim"})
        processor = transformers.ViTImageProcessor(size={"height": crop, "width": crop})
        return transformers.ViTModel(config, add_pooling_layer=False), processor

    family = Family("vit", ("vit",), "ViTModel", "vit-cls-token", lambda out, config: out.last_hidden_state[:, 0],
                    ("layernorm",), lambda config: int(config["hidden_size"]), build_random=random_vit)
    with extensions.BACKBONE_FAMILIES.registered("vit", family):
        folder = save_random_backbone(tmp_path / "vit-tiny", "vit", seed=0)
        run = _main_run(*_train_args(sample_ava, folder, tmp_path / "cache"))
        assert run.data.params["backbone_family"] == "vit"
        assert run.data.params["embedding_kind"] == "vit-cls-token"
        assert run.data.params["embedding_dim"] == "32"
        out = tmp_path / "scores.csv"
        assert cli.main(["score", str(sample_ava / "image"), "--model", f"runs:/{run.info.run_id}/model", "--out",
                         str(out), "--num-workers", "0"]) == 0
        frame = pd.read_csv(out, keep_default_na=False)
        scored = frame[frame["error"] == ""]
        assert len(scored) > 200 and scored["score"].astype(float).nunique() > 1


# ---------------------------------------------------------------- a score input format and an output format

def _zip_reader():
    from clip_aesthetics.scoring.samples import InputReader, Sample

    def read(path, image_column="", keep_members=False, name=None):
        name = name or Path(path).name
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.is_dir():
                    yield Sample(f"{name}/{info.filename}", image=archive.read(info) or None,
                                 error="" if info.file_size else "empty member")

    return InputReader((".zip",), read, "zip archives of images, one sample per member")


def test_a_new_score_input_format_is_scored_and_curated_through_the_cli(trained_store, sample_ava, tmp_path):
    images = sorted((sample_ava / "image").glob("*.jpg"))[:8]
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for path in images:
            out.write(path, path.name)
        out.writestr("empty.jpg", b"")
    with extensions.SCORE_INPUTS.registered("zip", _zip_reader()):
        assert cli.main(["score", str(archive), "--model", trained_store["model"], "--out", str(tmp_path / "out"),
                         "--top-fraction", "0.5"]) == 0
    frame = pd.read_parquet(tmp_path / "out").set_index("key")
    assert len(frame) == 9 and frame.loc["photos.zip/empty.jpg", "error"] == "empty member"
    model = mlflow.pyfunc.load_model(trained_store["model"])
    direct = model.predict(pd.DataFrame({"image": [p.read_bytes() for p in images]}))
    assert np.allclose(frame.loc[[f"photos.zip/{p.name}" for p in images], "score"], direct["score"], atol=1e-5)
    assert len(pd.read_parquet(tmp_path / "out" / "_report" / "kept.parquet")) == 4  # half of 9, rounded down


def _npy_reader():
    """A per-file format: `.npy` arrays of 8-bit pixels, one image per file, read as PNG bytes."""
    import io as _io

    from PIL import Image

    from clip_aesthetics.scoring.samples import InputReader, Sample

    def sample(key, data):
        try:
            pixels = np.load(_io.BytesIO(data), allow_pickle=False)
            buffer = _io.BytesIO()
            Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="PNG")
            return Sample(key, image=buffer.getvalue())
        except (ValueError, TypeError, OSError) as error:
            return Sample(key, error=f"not an array of pixels ({error})")

    def read(path, image_column="", keep_members=False, name=None):
        yield sample(str(path), Path(path).read_bytes())

    return InputReader((".npy",), read, "arrays of 8-bit pixels", per_file=True, from_bytes=sample)


def test_a_new_per_file_input_format_is_scored_through_the_cli_with_a_folder(trained_store, sample_ava, tmp_path):
    """A folder mixing its files with images: one row each, in path order, each scored as its pixels."""
    from PIL import Image

    images = sorted((sample_ava / "image").glob("*.jpg"))[:4]
    folder = tmp_path / "mixed"
    folder.mkdir()
    for k, path in enumerate(images):
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
        if k % 2:
            np.save(folder / f"{k}.npy", pixels)
        else:
            Image.fromarray(pixels).save(folder / f"{k}.png")
    (folder / "9.npy").write_bytes(b"not an array")
    (folder / "notes.txt").write_text("not read: no reader has .txt")
    with extensions.SCORE_INPUTS.registered("npy", _npy_reader()):
        assert cli.main(["score", str(folder), "--model", trained_store["model"], "--out", str(tmp_path / "s.csv"),
                         "--num-workers", "0"]) == 0
    frame = pd.read_csv(tmp_path / "s.csv", keep_default_na=False)
    assert [Path(p).name for p in frame["path"]] == ["0.png", "1.npy", "2.png", "3.npy", "9.npy"]
    assert frame["error"].iat[4].startswith("not an array of pixels")
    direct = clip_aesthetics_scores(trained_store, [folder / "0.png", folder / "2.png"])
    np.testing.assert_allclose(frame["score"].iloc[[0, 2]].astype(float), direct, atol=1e-5)
    assert frame["score"].iloc[[1, 3]].astype(float).notna().all()


def clip_aesthetics_scores(store, paths) -> np.ndarray:
    import clip_aesthetics

    return clip_aesthetics.load(store["model"], tracking_uri=store["uri"]).score(paths)["score"].to_numpy()


def test_a_new_output_format_is_written_through_the_cli(trained_store, sample_ava, tmp_path):
    from clip_aesthetics.scoring.outputs import OutputWriter

    def jsonl(frame, out):
        frame.to_json(out, orient="records", lines=True)

    out = tmp_path / "scores.jsonl"
    with extensions.SCORE_OUTPUTS.registered(".jsonl", OutputWriter(jsonl, "JSON Lines")):
        assert cli.main(["score", str(sample_ava / "image"), "--model", trained_store["model"], "--out", str(out),
                         "--num-workers", "0"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == len(list((sample_ava / "image").iterdir())) and {"path", "score", "error"} <= set(rows[0])
    assert sum(1 for row in rows if row["error"]) >= 1  # the sample's traps keep their reasons


def test_an_output_suffix_without_a_writer_is_refused_before_any_work(trained_store, sample_ava, tmp_path,
                                                                      capsys):
    assert cli.main(["score", str(sample_ava / "image"), "--model", trained_store["model"], "--out",
                     str(tmp_path / "scores.xlsx")]) == 2
    assert "no writer for '.xlsx'; name the file with one of .csv, .parquet" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_scores_written_as_parquet_are_the_csvs_numbers(trained_store, sample_ava, tmp_path):
    for name in ("scores.csv", "scores.parquet"):
        assert cli.main(["score", str(sample_ava / "image"), "--model", trained_store["model"], "--out",
                         str(tmp_path / name), "--num-workers", "0"]) == 0
    csv = pd.read_csv(tmp_path / "scores.csv", keep_default_na=False)
    parquet = pd.read_parquet(tmp_path / "scores.parquet")
    assert list(parquet["path"]) == list(csv["path"]) and list(parquet["error"]) == list(csv["error"])
    assert np.allclose(parquet["score"], pd.to_numeric(csv["score"]), equal_nan=True)


# ---------------------------------------------------------------- a labels-table format

def test_a_new_labels_table_format_trains_through_the_cli(sample_ava, tiny_clip, tmp_path, tracking_uri):
    """A `.ratings` file of `name<TAB>score` lines without a header, read by a reader registered here."""
    from clip_aesthetics.data.tables import Rows, TableReader

    def read(path: Path) -> Rows:
        lines = [line.split("\t") for line in path.read_text().splitlines() if line.strip()]
        return Rows(pd.DataFrame(lines, columns=["image", "score"]), [f"{path}:{i + 1}" for i in range(len(lines))],
                    path.parent)

    ava = pd.read_csv(sample_ava / "AVA.txt", sep=" ", header=None)
    votes = ava.iloc[:, 2:12].to_numpy()
    means = (votes * np.arange(1, 11)).sum(1) / np.maximum(votes.sum(1), 1)
    table = sample_ava / "image"
    ratings = tmp_path / "mine.ratings"
    ratings.write_text("".join(f"{table / f'{i}.jpg'}\t{m:.3f}\n" for i, m in zip(ava.iloc[:, 1], means)
                               if (table / f"{i}.jpg").is_file() and 1 <= m <= 10))
    with extensions.LABELS_READERS.registered("ratings", TableReader((".ratings",), read, "name<TAB>score")):
        run = _main_run(*_train_args(sample_ava, tiny_clip, tmp_path / "cache"), "--labels", str(ratings),
                        "--image-dir", "/", "--score-range", "1,10")
    assert run.data.params["dataset"] == "mine.ratings"
    assert int(run.data.params["n_train"]) > 100 and run.data.params["score_range"] == "1,10"


# ---------------------------------------------------------------- an engine

def test_a_new_engine_scores_shards_and_files_through_the_cli(trained_store, sample_ava, tmp_path):
    """An engine that scores each input in a thread of its own: chosen with --engine, given the job (its inputs,
    its model's folder, its output), used for tables and for files alike."""
    from concurrent.futures import ThreadPoolExecutor

    from clip_aesthetics.engines import Engine
    from clip_aesthetics.scoring.curate import score_input, score_samples
    from clip_aesthetics.scoring.samples import read_files
    from clip_aesthetics.scoring.uris import load_scorer

    used = []

    def score(job):
        scorer = load_scorer(job.model_folder, job.precision)
        if job.inputs.per_file:  # the rows, returned
            used.append(len(job.inputs.files))
            return score_samples(scorer, list(read_files(job.inputs.files)), num_workers=0)
        with ThreadPoolExecutor(2) as pool:  # a part per input, written
            list(pool.map(lambda path: used.append(score_input(scorer, path, job.output.parts, job=job.identity)),
                          job.todo))
        return None

    images = sorted((sample_ava / "image").glob("*.jpg"))[:6]
    tables = []
    for k in range(2):
        tables.append(tmp_path / f"part{k}.parquet")
        pd.DataFrame({"image": [p.read_bytes() for p in images[k * 3:(k + 1) * 3]]}).to_parquet(tables[-1])
    with extensions.ENGINES.registered("threads", Engine("a thread per input", lambda options: None, score)):
        assert cli.main(["score", *map(str, tables), "--model", trained_store["model"], "--engine", "threads", "--out",
                         str(tmp_path / "out")]) == 0
        assert cli.main(["score", *map(str, images), "--model", trained_store["model"], "--engine", "threads", "--out",
                         str(tmp_path / "files.csv")]) == 0
    assert sorted(used) == [3, 3, 6]
    frame = pd.read_parquet(tmp_path / "out")
    model = mlflow.pyfunc.load_model(trained_store["model"])
    direct = model.predict(pd.DataFrame({"image": [p.read_bytes() for p in images]}))
    assert np.allclose(frame["score"], direct["score"], atol=1e-5)
    files = pd.read_csv(tmp_path / "files.csv")
    assert files["path"].tolist() == list(map(str, images)) and np.allclose(files["score"], direct["score"], atol=1e-5)


def test_an_unknown_engine_is_refused_before_any_work(capsys):
    assert cli.main(["score", "x.jpg", "--engine", "dask"]) == 2
    assert "engine='dask' is not an engine; expected one of local, spark" in capsys.readouterr().err


# ---------------------------------------------------------------- an export runtime

def _copy_runtime(written: list):
    """A runtime that re-saves the PyTorch scorer computing in float32 (a stand-in for, say, TorchScript)."""
    from clip_aesthetics.errors import UserError
    from clip_aesthetics.scoring.model import AestheticScorer, log_model, write_artifacts
    from clip_aesthetics.scoring.onnx_export import torch_float32
    from clip_aesthetics.scoring.runtime import Runtime

    def check(quantize):
        if quantize != "none":
            raise UserError(f"--quantize {quantize}: the copy format has float32 weights only")

    def write(scorer, folder, quantize, spec_doc):
        written.append(folder)
        return write_artifacts(folder, scorer.head.state_dict(), {**spec_doc, "precision": "float32"})

    return Runtime("copy", check=check, reference=torch_float32, write=write, log=log_model, packages=("torch",),
                   scorer=lambda artifacts: AestheticScorer().load(artifacts, device="cpu"))


def test_a_new_export_runtime_exports_measures_registers_and_scores_through_the_cli(trained_store, sample_ava, tmp_path,
                                                                                   monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    written = []
    with extensions.RUNTIMES.registered("copy", _copy_runtime(written)):
        assert cli.main(["export", "--model", trained_store["model"], "--format", "copy", "--quantize", "int8"]) == 2
        assert "the copy format has float32 weights only" in capsys.readouterr().err and written == []
        assert cli.main(["export", "--model", trained_store["model"], "--format", "copy", "--model-name",
                         "extension-copy"]) == 0
    assert "registered extension-copy version 1 (alias float32)" in capsys.readouterr().out and len(written) == 1
    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias("extension-copy", "float32")
    run = client.get_run(version.run_id)
    assert version.tags["runtime"] == "copy" and run.data.params["torch"] == torch.__version__
    assert run.data.metrics["fidelity_n_images"] >= 3 and run.data.metrics["fidelity_max_abs_diff"] < 1e-5
    out = tmp_path / "scores.csv"
    assert cli.main(["score", str(sample_ava / "image"), "--model", "models:/extension-copy@float32", "--out",
                     str(out), "--num-workers", "0"]) == 0
    scores = pd.read_csv(out, keep_default_na=False)
    ok = scores["error"] == ""
    images = [Path(p).read_bytes() for p in scores.loc[ok, "path"]]
    direct = mlflow.pyfunc.load_model(trained_store["model"]).predict(pd.DataFrame({"image": images}))
    assert ok.sum() >= 10 and np.allclose(pd.to_numeric(scores.loc[ok, "score"]), direct["score"], atol=1e-5)


def test_an_unknown_export_format_is_refused_before_any_work(capsys):
    assert cli.main(["export", "--model", "models:/clip-aesthetics@champion", "--format", "tflite"]) == 2
    assert "format='tflite' is not an export format; expected one of onnx" in capsys.readouterr().err
