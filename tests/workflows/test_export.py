"""`export --format onnx`: every family's graph scores as the PyTorch scorer does, the export registers with its
measured fidelity (or is refused with the figure), and scores through every path without torch."""

import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from clip_aesthetics.backbones.families import resolve_backbone
from clip_aesthetics.cli import app as cli
from clip_aesthetics.heads.head import HeadSpec, build_head
from clip_aesthetics.scoring import onnx_export
from clip_aesthetics.scoring.model import AestheticScorer, write_artifacts

if importlib.util.find_spec("onnxruntime") is None:  # make test installs the onnx extra; CI must run these
    message = "the export tests need onnxruntime (the onnx extra): pip install -e '.[onnx]'"
    pytest.fail(message, pytrace=False) if os.environ.get("CI") else pytest.skip(message, allow_module_level=True)


def image_bytes() -> list[bytes]:
    """Odd sizes, grayscale, 16-bit, a 1x5 strip, a broken file: as users' folders hold them."""
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for w, h in ((97, 61), (40, 130),
                                                                                             (300, 200))]
    images.append(Image.fromarray(rng.integers(0, 255, (50, 70), dtype=np.uint8), mode="L"))
    images.append(Image.fromarray(rng.integers(0, 65535, (45, 33), dtype=np.uint16)))
    images.append(Image.fromarray(rng.integers(0, 255, (5, 1, 3), dtype=np.uint8)))
    encoded = []
    for image in images:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    return encoded + [encoded[0][:40]]  # truncated


def scorer_of(folder: Path, tmp_path: Path, embed_norm: str, seed: int = 0) -> AestheticScorer:
    """A PyTorch scorer of the backbone in `folder` with a random linear head, as a model folder would load."""
    source = resolve_backbone(str(folder))
    from clip_aesthetics.backbones.families import load_backbone

    dim = load_backbone(source, torch.device("cpu"))[0].embedding_dim
    spec = HeadSpec("linear", dim, embed_norm, 10.0)
    torch.manual_seed(seed)
    head = build_head(spec)
    torch.nn.init.normal_(head.weight, std=0.1)
    torch.nn.init.constant_(head.bias, 0.5)
    doc = {"head": spec.to_dict(), "clip": {"model_id": source.model_id, "revision": source.revision},
           "precision": "float32", "decoding": "full"}
    return AestheticScorer().load(write_artifacts(tmp_path / "model", head.state_dict(), doc), device="cpu")


@pytest.mark.parametrize("name, embed_norm", [("clip768", "l2"), ("siglip", "none"), ("dinov2", "l2"),
                                              ("dinov2_registers", "none"), ("siglip2_fixres", "none"),
                                              ("siglip_nearest", "l2")])
def test_each_familys_float32_export_scores_as_pytorch(backbones, name, embed_norm, tmp_path):
    from clip_aesthetics.scoring.onnx_model import OnnxScorer

    scorer = onnx_export.torch_float32(scorer_of(backbones[name], tmp_path, embed_norm))
    exported = OnnxScorer().load(onnx_export.write_export(scorer, tmp_path / "onnx"), device="cpu")
    images = image_bytes()
    expected, got = scorer.score_bytes(images), exported.score_bytes(images)
    assert got["error"].tolist() == expected["error"].tolist()
    assert expected["error"].iloc[-1] != "" and (expected["error"].iloc[:-1] == "").all()
    ok = expected["error"] == ""
    difference = np.abs(got.loc[ok, "score"] - expected.loc[ok, "score"]).to_numpy()
    # The embedding is rounded to float16 in both (as training's cache holds it): a float32 difference of 1e-7
    # that crosses a float16 rounding boundary moves one component by one float16 step (which, through this head,
    # moves the score by up to about 1e-2); every other image is equal to 1e-5, and those are most images.
    assert difference.max() < 1e-2, difference
    assert np.mean(difference < 1e-5) >= 0.5, difference
    doc = json.loads((tmp_path / "onnx" / "preprocess.json").read_text())
    assert doc["pixels"]["mode"] in ("short-crop", "fixed") and doc["input"]["dtype"] == "uint8"
    filters = {"siglip2_fixres": "bilinear", "siglip_nearest": "nearest"}
    assert doc["pixels"]["resample"] == filters.get(name, "bicubic"), "the processor's own filter, not bicubic"


def test_naflex_is_refused_in_one_line(backbones, tmp_path):
    scorer = scorer_of(backbones["siglip2_naflex"], tmp_path, "none")
    with pytest.raises(onnx_export.ExportRefused, match="NaFlex.*variable number of patches"):
        onnx_export.write_export(scorer, tmp_path / "onnx")


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    """The `trained` model exported twice through the CLI: float32 (registered) and int8 (accepted at 0.5)."""
    out = tmp_path_factory.mktemp("onnx-files")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(trained["root"])
        patch.setenv("MLFLOW_TRACKING_URI", trained["uri"])
        mlflow.set_tracking_uri(trained["uri"])
        assert cli.main(["export", "--model", trained["model"], "--model-name", "exported", "--out", str(out)]) == 0
        assert cli.main(["export", "--model", trained["model"], "--model-name", "exported", "--quantize", "int8",
                         "--accept-fidelity", "0.5"]) == 0
    return {**trained, "files": out}


def test_the_export_registers_with_its_measured_fidelity(exported, capsys):
    client = mlflow.MlflowClient(exported["uri"])
    float32 = client.get_model_version_by_alias("exported", "float32")
    int8 = client.get_model_version_by_alias("exported", "int8")
    assert float32.tags["runtime"] == "onnx" and float32.tags["source_run_id"] == exported["run"].info.run_id
    assert int8.tags["weights"] == "int8" and "Spearman" in int8.description and "test image(s)" in float32.description
    run = client.get_run(float32.run_id)
    assert run.data.metrics["fidelity_max_abs_diff_of_range"] <= 1e-4
    assert run.data.params["execution_provider"] == "CPUExecutionProvider"
    assert 0.5 <= client.get_run(int8.run_id).data.metrics["fidelity_spearman"] <= 1


def test_an_int8_export_below_the_floor_is_refused_with_its_figure(exported, capsys, monkeypatch):
    monkeypatch.chdir(exported["root"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", exported["uri"])
    mlflow.set_tracking_uri(exported["uri"])
    client = mlflow.MlflowClient()
    before = len(client.search_model_versions("name = 'exported'"))
    capsys.readouterr()
    assert cli.main(["export", "--model", exported["model"], "--model-name", "exported", "--quantize", "int8",
                     "--accept-fidelity", "0.999999"]) == 2
    error = capsys.readouterr().err
    assert "Spearman against the source is 0." in error and "below 0.999999" in error and "not registered" in error
    assert len(client.search_model_versions("name = 'exported'")) == before


def test_score_evaluate_and_pyfunc_take_the_exports_uri(exported, sample_ava, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(exported["root"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", exported["uri"])
    mlflow.set_tracking_uri(exported["uri"])
    photos = tmp_path / "photos"
    photos.mkdir()
    for f in sorted((sample_ava / "image").glob("*.jpg"))[:12]:
        photos.joinpath(f.name).write_bytes(f.read_bytes())
    photos.joinpath("broken.jpg").write_bytes(b"not an image")
    for model, out in ((exported["model"], "torch.csv"), ("models:/exported@float32", "onnx.csv")):
        assert cli.main(["score", str(photos), "--model", model, "--out", str(tmp_path / out)]) == 0
    assert capsys.readouterr().out.count("s after the command started (imports, loading the model, one image)") == 2
    torch_scores, onnx_scores = (pd.read_csv(tmp_path / n, keep_default_na=False) for n in ("torch.csv", "onnx.csv"))
    assert onnx_scores["error"].tolist() == torch_scores["error"].tolist()
    ok = torch_scores["error"] == ""
    assert ok.sum() == 12
    np.testing.assert_allclose(onnx_scores.loc[ok, "score"].astype(float), torch_scores.loc[ok, "score"].astype(float),
                               atol=1e-3)
    assert cli.main(["evaluate", "--model", "models:/exported@float32", "--model", exported["model"], "--ava-dir",
                     str(sample_ava), "--cache-dir", str(exported["root"] / "cache"), "--gallery", "false"]) == 0
    runs = mlflow.search_runs(search_all_experiments=True,
                              filter_string="params.model_uri = 'models:/exported@float32'")
    assert len(runs) == 1 and np.isfinite(runs["metrics.eval_spearman"].iloc[0])
    assert cli.main(["export", "--model", "models:/exported@float32"]) == 2, "an export is not exported again"


def test_the_export_scores_in_a_fresh_process_without_torch(exported, sample_ava):
    """Through MLflow (the registered model), then as the docs show it: onnxruntime, numpy and Pillow alone."""
    image = str(sample_ava / "image" / "14.jpg")
    code = ("import json, sys, mlflow, pandas as pd\n"
            "m = mlflow.pyfunc.load_model('models:/exported@float32')\n"
            f"score = m.predict(pd.DataFrame({{'path': [{image!r}]}}))['score'].iloc[0]\n"
            "heavy = sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'transformers'))\n"
            "print(json.dumps([score, heavy]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=exported["root"], env={**os.environ, "MLFLOW_TRACKING_URI": exported["uri"]})
    assert done.returncode == 0, done.stderr[-2000:]
    score, heavy = json.loads(done.stdout.strip().splitlines()[-1])
    assert heavy == [], "the ONNX scorer imports neither torch nor transformers"
    standalone = Path(__file__).resolve().parents[2] / "docs" / "onnx_standalone.py"
    done = subprocess.run([sys.executable, "-I", str(standalone), str(exported["files"]), image],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert abs(float(done.stdout.split()[-1]) - score) < 1e-4


def test_a_bilinear_siglip2_fixres_model_exports_registers_and_scores_as_pytorch(backbones, sample_ava, tmp_path,
                                                                                tracking_uri):
    """SigLIP 2 FixRes checkpoints resize bilinearly: trained, exported and registered through the CLI, the export
    scores the files as the PyTorch model does."""
    assert cli.main(["main", "--clip", str(backbones["siglip2_fixres"]), "--ava-dir", str(sample_ava), "--cache-dir",
                     str(tmp_path / "cache"), "--epochs", "2", "--lr", "0.003", "--num-workers", "0",
                     "--gallery", "false"]) == 0
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    model = f"runs:/{run.info.run_id}/model"
    assert cli.main(["export", "--model", model, "--model-name", "fixres"]) == 0
    version = mlflow.MlflowClient().get_model_version_by_alias("fixres", "float32")
    assert version.tags["runtime"] == "onnx"
    photos = sorted((sample_ava / "image").glob("*.jpg"))[:10]
    for uri, out in ((model, "torch.csv"), ("models:/fixres@float32", "onnx.csv")):
        assert cli.main(["score", *map(str, photos), "--model", uri, "--out", str(tmp_path / out)]) == 0
    torch_scores, onnx_scores = (pd.read_csv(tmp_path / n, keep_default_na=False) for n in ("torch.csv", "onnx.csv"))
    ok = torch_scores["error"] == ""
    assert ok.sum() >= 8 and onnx_scores["error"].tolist() == torch_scores["error"].tolist()
    np.testing.assert_allclose(onnx_scores.loc[ok, "score"].astype(float), torch_scores.loc[ok, "score"].astype(float),
                               atol=1e-3)


def test_an_export_never_replaces_a_good_one_in_out_unless_asked_and_accepted(exported, tmp_path, monkeypatch,
                                                                              capsys):
    monkeypatch.chdir(exported["root"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", exported["uri"])
    mlflow.set_tracking_uri(exported["uri"])
    files = tmp_path / "export"
    files.mkdir()
    for path in exported["files"].iterdir():  # the float32 export the fixture wrote with --out
        (files / path.name).write_bytes(path.read_bytes())
    before = {p.name: p.read_bytes() for p in files.iterdir()}
    runs = len(mlflow.search_runs(search_all_experiments=True))
    args = ["export", "--model", exported["model"], "--model-name", "out-test", "--out", str(files)]
    assert cli.main(args) == 2
    assert "already holds an export" in capsys.readouterr().err and "--replace" in capsys.readouterr().err + "--replace"
    # asked to replace it, an int8 export refused for its fidelity still leaves the float32 one untouched
    assert cli.main([*args, "--replace", "--quantize", "int8", "--accept-fidelity", "0.999999"]) == 2
    assert "not registered" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in files.iterdir()} == before
    (tmp_path / "a-file").write_text("mine")
    assert cli.main([*args[:-1], str(tmp_path / "a-file")]) == 2
    assert "is an existing file" in capsys.readouterr().err and (tmp_path / "a-file").read_text() == "mine"
    assert len(mlflow.search_runs(search_all_experiments=True)) == runs + 1, "refused before any work: no run"
    assert cli.main(["export", "--model", "runs:/0123456789abcdef0123456789abcdef/model"]) == 2
    assert "no run '0123456789abcdef0123456789abcdef'" in capsys.readouterr().err


def test_an_int8_export_whose_spearman_is_undefined_says_why_and_what_works(exported, sample_ava, tmp_path,
                                                                           monkeypatch, capsys):
    monkeypatch.chdir(exported["root"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", exported["uri"])
    mlflow.set_tracking_uri(exported["uri"])
    same = tmp_path / "same"
    same.mkdir()
    for k in range(5):  # one picture five times: every model scores them alike
        (same / f"{k}.jpg").write_bytes((sample_ava / "image" / "14.jpg").read_bytes())
    assert cli.main(["export", "--model", exported["model"], "--model-name", "undefined", "--quantize", "int8",
                     "--calibration", str(same)]) == 2
    error = capsys.readouterr().err
    assert "undefined" in error and "scores all 5 calibration images alike" in error and "--calibration" in error
    assert "nan" not in error.lower().replace("nanosecond", "")


@pytest.mark.parametrize("rho, words", [(-0.3, "no better than chance"), (0.0, "no better than chance"),
                                        (0.93417, "--accept-fidelity 0.9341 ")])
def test_an_int8_verdict_suggests_only_what_the_flag_takes(rho, words):
    from clip_aesthetics.workflows.export import _verdict

    verdict = _verdict({"spearman": rho, "max_abs_diff_of_range": 0.0, "n_images": 10}, "int8", 0.995)
    assert words in verdict + " "
    assert rho > 0 or "--accept-fidelity" not in verdict, "never a value the flag refuses (it takes 0-1)"


def damage(name: str):
    """What a user's exported model folder can suffer, by name: each a function of its artifacts folder."""

    def cut(folder):
        graph = folder / "model.onnx"
        graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])

    def edit(change):
        def apply(folder):
            doc = json.loads((folder / "preprocess.json").read_text())
            change(doc)
            (folder / "preprocess.json").write_text(json.dumps(doc))
        return apply

    return {"cut graph": cut, "no graph": lambda f: (f / "model.onnx").unlink(),
            "not json": lambda f: (f / "preprocess.json").write_text("{'pixels': "),
            "other size": edit(lambda d: (d["input"].update(height=48, width=48), d["pixels"].update(
                {k: 48 for k in ("crop_size", "height", "width") if k in d["pixels"]}))),
            "self-contradicting": edit(lambda d: d["input"].update(height=48)),
            "reversed clip": edit(lambda d: d["output"].update(clip_to=list(reversed(d["output"]["clip_to"])))),
            "no spec": lambda f: (f / "scorer.json").write_text("[1, 2]"),
            }[name]


@pytest.mark.parametrize("name, words", [
    ("cut graph", "model.onnx: not an ONNX graph ONNX Runtime can load"), ("no graph", "model.onnx: missing"),
    ("not json", "preprocess.json: not valid JSON"), ("other size", "the graph takes input"),
    ("self-contradicting", "disagrees with itself"), ("reversed clip", "clip_to [10.0, 1.0] is not a range (reversed"),
    ("no spec", "scorer.json: holds a JSON list")])
def test_a_damaged_export_folder_is_refused_in_one_line_naming_its_file(exported, sample_ava, tmp_path, monkeypatch,
                                                                        capsys, name, words):
    import shutil

    monkeypatch.setenv("MLFLOW_TRACKING_URI", exported["uri"])
    mlflow.set_tracking_uri(exported["uri"])
    folder = Path(shutil.copytree(mlflow.artifacts.download_artifacts("models:/exported@float32"), tmp_path / "m"))
    damage(name)(folder / "artifacts")
    assert cli.main(["score", str(sample_ava / "image" / "14.jpg"), "--model", str(folder), "--out",
                     str(tmp_path / "s.csv")]) == 2
    error = capsys.readouterr().err
    assert words in error and len(error.strip().splitlines()) == 1, error
    assert not (tmp_path / "s.csv").exists()


def test_the_onnx_scorer_takes_one_image_alone_and_gives_an_odd_item_its_error(exported, sample_ava, monkeypatch):
    from clip_aesthetics.scoring.uris import load_scorer

    monkeypatch.setenv("MLFLOW_TRACKING_URI", exported["uri"])
    mlflow.set_tracking_uri(exported["uri"])
    scorer = load_scorer("models:/exported@float32")
    path = sample_ava / "image" / "14.jpg"
    assert len(scorer.score(str(path))) == 1 and len(scorer.score(path.read_bytes())) == 1
    mixed = scorer.score([path, None, 3.5])
    assert mixed["score"].notna().tolist() == [True, False, False]
    assert "an item of type NoneType" in mixed["error"].iat[1] and "an item of type float" in mixed["error"].iat[2]


@pytest.mark.parametrize("name", ["m-clip", "0123456789abcdef0123456789abcdef"])
def test_a_registered_model_named_like_a_model_or_run_id_keeps_its_version_everywhere(trained, sample_ava, tmp_path,
                                                                                       monkeypatch, capsys, name):
    """MLflow's own grammar decides what a URI names: `models:/m-clip/1` is version 1 of the model m-clip (not a
    logged model's id), so export finds its training run's test images, and score and evaluate name the version."""
    monkeypatch.chdir(trained["root"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained["uri"])
    mlflow.set_tracking_uri(trained["uri"])
    run_id = trained["run"].info.run_id
    assert cli.main(["register", "--run-id", run_id, "--model-name", name]) == 0
    capsys.readouterr()
    assert cli.main(["export", "--model", f"models:/{name}/1", "--model-name", f"{name}-export"]) == 0
    printed = capsys.readouterr().out
    assert f"test image(s) of run {run_id}" in printed, "calibrated on its training run's recorded test images"
    version = mlflow.MlflowClient().get_model_version_by_alias(f"{name}-export", "float32")
    assert version.tags["source_model"] == name and version.tags["source_version"] == "1"
    assert version.tags["source_run_id"] == run_id
    image = sample_ava / "image" / "14.jpg"
    assert cli.main(["score", str(image), "--model", f"models:/{name}@champion", "--out", str(tmp_path / "s.csv")]) == 0
    assert f"models:/{name}@champion -> version 1 of {name}, logged by run {run_id}" in capsys.readouterr().out
    assert cli.main(["evaluate", "--model", f"models:/{name}/1", "--ava-dir", str(sample_ava), "--cache-dir",
                     str(trained["root"] / "cache"), "--gallery", "false", "--run-name", f"eval-{name}"]) == 0
    (run,) = mlflow.search_runs(search_all_experiments=True, filter_string=f"attributes.run_name = 'eval-{name}'",
                                output_format="list")
    bundled = mlflow.MlflowClient().get_model_version(name, "1").source.removeprefix("models:/")
    logged = mlflow.MlflowClient().get_logged_model(bundled)
    assert {m.key for m in logged.metrics or []} >= {"eval_spearman"}, "linked to the version's model"
    assert np.isfinite(run.data.metrics["eval_spearman"])


def test_an_export_of_a_run_whose_test_images_moved_names_calibration(trained, tmp_path, monkeypatch, capsys):
    """The export calibrates on the files the training run recorded, never by reading its dataset again."""
    from clip_aesthetics.workflows.export import calibration_sources

    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained["uri"])
    mlflow.set_tracking_uri(trained["uri"])
    run = mlflow.MlflowClient().get_run(trained["run"].info.run_id)
    settings = type("S", (), {"calibration": "", "model": trained["model"]})()
    sources, what = calibration_sources(settings, run)
    assert len(sources) == int(run.data.params["n_test"]) and all(p.is_file() for p in sources)
    monkeypatch.setattr("pathlib.Path.is_file", lambda self: False)  # as if the dataset had been moved away
    with pytest.raises(Exception, match="is where it was .*--calibration DIR"):
        calibration_sources(settings, run)
