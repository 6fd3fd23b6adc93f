"""Backbone families (CLIP, SigLIP, DINOv2 with and without registers) through the same embedding path,
cache, training, sweep, registry and scorer; anything else refused in one line before any work."""

import io
import json
import subprocess
import sys

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from helpers import FAMILIES
from PIL import Image

from clip_aesthetics.backbones.families import load_backbone, resolve_backbone
from clip_aesthetics.cli import app as cli
from clip_aesthetics.embedding.embed import embed_sources
from clip_aesthetics.images.decode import crop_long_side, decode_rgb
from clip_aesthetics.images.pixels import ModelPixels


def varied_images() -> list[Image.Image]:
    """Odd sizes, grayscale, a 16-bit PNG, a 1x5 strip: decoded as the project decodes them."""
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for w, h in ((97, 61), (40, 130))]
    images.append(Image.fromarray(rng.integers(0, 255, (50, 70), dtype=np.uint8), mode="L"))
    images.append(Image.fromarray(rng.integers(0, 65535, (45, 33), dtype=np.uint16)))
    images.append(Image.fromarray(rng.integers(0, 255, (5, 1, 3), dtype=np.uint8)))
    decoded = []
    for image in images:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        decoded.append(crop_long_side(decode_rgb(buffer.getvalue())))
    return decoded


def independent_embedding(folder, image) -> np.ndarray:
    """Straight from transformers: the full model (text tower and all) and its processor."""
    import transformers

    config = json.loads((folder / "config.json").read_text())
    processor = transformers.AutoImageProcessor.from_pretrained(folder)
    pixels = processor(images=image, return_tensors="pt")["pixel_values"]
    model = transformers.AutoModel.from_pretrained(folder).eval()
    with torch.inference_mode():
        if config["model_type"] in ("clip", "siglip"):
            return model.get_image_features(pixel_values=pixels).pooler_output[0].numpy()
        if config["model_type"] == "siglip2":
            inputs = processor(images=image, return_tensors="pt")
            return model.get_image_features(**inputs).pooler_output[0].numpy()
        out = model(pixel_values=pixels)
        skip = 1 + config.get("num_register_tokens", 0)
        return torch.cat([out.last_hidden_state[0, 0], out.last_hidden_state[0, skip:].mean(0)]).numpy()


@pytest.mark.parametrize("name", FAMILIES)
def test_the_embedding_of_each_family_equals_transformers_own(backbones, name):
    folder = backbones[name]
    model, processor = load_backbone(resolve_backbone(str(folder)), torch.device("cpu"))
    pixels = ModelPixels(processor)
    naflex = name == "siglip2_naflex"  # variable resolution: its processor is called as it is
    assert pixels.fast is not naflex, "the direct pixel path covers this family's processor"
    expected_dim = {"clip768": 768, "siglip": 32, "siglip2_fixres": 32, "siglip_nearest": 32, "siglip2_naflex": 32,
                    "dinov2": 64, "dinov2_registers": 64}[name]
    assert model.embedding_dim == expected_dim
    for image in varied_images():
        if not naflex:
            reference = processor(images=image, return_tensors="np")["pixel_values"][0]
            np.testing.assert_allclose(pixels(image), reference, atol=1e-5)
        with torch.inference_mode():
            ours = model(torch.from_numpy(pixels(image))[None])[0].numpy()
        assert ours.shape == (expected_dim,)
        np.testing.assert_allclose(ours, independent_embedding(folder, image), atol=1e-5)


@pytest.mark.parametrize("name", ["siglip", "dinov2", "siglip2_naflex"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_keeps_each_familys_embedding_close(backbones, name, dtype):
    from clip_aesthetics.embedding.embed import embed_pixels

    model, processor = load_backbone(resolve_backbone(str(backbones[name])), torch.device("cpu"))
    pixels = torch.from_numpy(np.stack([ModelPixels(processor)(image) for image in varied_images()[:2]] * 4))
    exact, half = embed_pixels(model, pixels, torch.float32), embed_pixels(model, pixels, dtype)
    cosine = (half * exact).sum(1) / np.linalg.norm(half, axis=1) / np.linalg.norm(exact, axis=1)
    assert cosine.min() > 0.99
    as_bf16 = torch.from_numpy(half).to(torch.bfloat16).float().numpy()
    assert np.mean(as_bf16 != half) > 0.5, "the final modules ran in float32: not rounded to bfloat16 on the way out"


def test_an_extreme_strip_reaches_an_untouched_processor_cropped(backbones, monkeypatch):
    """A processor the direct path does not reproduce is called as it is, on an image already cut to 8:1."""
    import transformers

    processor = transformers.SiglipImageProcessor(size={"height": 32, "width": 32}, do_normalize=False)
    model, _ = load_backbone(resolve_backbone(str(backbones["siglip"])), torch.device("cpu"))
    assert not ModelPixels(processor).fast
    seen = []
    real_call = type(processor).__call__
    monkeypatch.setattr(type(processor), "__call__", lambda self, images, **k: seen.append(images.size) or
                        real_call(self, images=images, **k))
    strip = io.BytesIO()
    Image.new("RGB", (6000, 1), (200, 30, 30)).save(strip, format="PNG")
    ((ok, embeddings, failed),) = embed_sources([(0, strip.getvalue())], lambda data, min_short=None: decode_rgb(data),
                                                model, processor, torch.float32, 4, 0, threads=True, progress=False)
    assert len(ok) == 1 and not failed and embeddings.shape == (1, 32)
    assert seen == [(8, 1)], "cut to its centre, 8 pixels wide, before the processor saw it"


def main_args(sample_ava, folder, tmp_path, *extra):
    return ["main", "--clip", str(folder), "--ava-dir", str(sample_ava), "--cache-dir", str(tmp_path / "cache"),
            "--num-workers", "0", "--epochs", "3", "--lr", "0.003", "--batch-size", "16", *extra]


ROUND_TRIPS = {"siglip": "siglip", "siglip2_naflex": "siglip2-naflex", "dinov2_registers": "dinov2"}  # -> family


def test_main_register_and_a_fresh_process_score_like_training(backbones, sample_ava, tmp_path, tracking_uri):
    """Each family trained, logged and registered in one store; then one fresh process (one start-up for all of
    them) loads every registered model by its alias and scores its test images as training predicted them."""
    client = mlflow.MlflowClient()
    expected = {}
    for name, family in ROUND_TRIPS.items():
        assert cli.main(main_args(sample_ava, backbones[name], tmp_path, "--run-name", name)) == 0
        (run,) = client.search_runs([client.get_experiment_by_name("clip-aesthetics").experiment_id],
                                    f"attributes.run_name = '{name}'")
        params = run.data.params
        assert params["backbone_family"] == family, name
        assert params["embedding_dim"] == ("64" if family == "dinov2" else "32"), name
        assert params["embedding_kind"].startswith(family), name
        assert params["input_size"] == ("16 patches of 8px" if family == "siglip2-naflex" else "32"), name
        assert params["activation"] and len(params["processor_digest"]) == 16, name
        # float32 weights: the fresh process then computes exactly as training did, whatever this CPU chose
        assert cli.main(["register", "--run-id", run.info.run_id, "--model-name", name, "--bundle-dtype",
                         "float32"]) == 0
        version = client.get_model_version_by_alias(name, "champion")
        assert version.tags["backbone_family"] == family, name
        assert version.tags["embedding_kind"] == params["embedding_kind"], name
        predictions = pd.read_csv(client.download_artifacts(run.info.run_id, "predictions/test.csv",
                                                            str(tmp_path / name)))
        expected[name] = ([str(sample_ava / "image" / f"{i}.jpg") for i in predictions["image_id"]],
                          predictions["score_pred"].to_numpy())
    code = ("import json, sys, mlflow, pandas as pd\n"
            "paths = json.loads(sys.argv[1])\n"
            "print(json.dumps({name: mlflow.pyfunc.load_model(f'models:/{name}@champion').predict(\n"
            "    pd.DataFrame({'path': files}))['score'].tolist() for name, files in paths.items()}))")
    done = subprocess.run([sys.executable, "-c", code, json.dumps({n: paths for n, (paths, _) in expected.items()})],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    scores = json.loads(done.stdout.strip().splitlines()[-1])
    assert sorted(scores) == sorted(ROUND_TRIPS)
    for name, (_, trained_scores) in expected.items():
        np.testing.assert_allclose(np.array(scores[name]), trained_scores, atol=1e-4, err_msg=name)


def test_a_sweep_compares_two_families_in_one_parent(backbones, tiny_clip, sample_ava, tmp_path, tracking_uri):
    assert cli.main(["sweep", "--clips", f"{tiny_clip},{backbones['siglip']}", "--norms", "true", "--ava-dir",
                     str(sample_ava), "--cache-dir", str(tmp_path / "cache"), "--epochs", "3", "--lr", "0.003",
                     "--batch-size", "16", "--num-workers", "0"]) == 0
    client = mlflow.MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("clip-aesthetics").experiment_id])
    parent = next(r for r in runs if r.data.tags.get("clip_aesthetics.sweep") == "true")
    table = mlflow.load_table("comparison/children.json", run_ids=[parent.info.run_id])
    assert sorted(table["run_name"]) == ["siglip-normed", "tiny-a-normed"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert {r.data.params["backbone_family"] for r in children} == {"clip", "siglip"}
    assert len({p.parent.parent.name for p in (tmp_path / "cache").glob("*/images-*/*")}) == 2, "a cache per backbone"


@pytest.mark.parametrize("config, words", [
    ({"model_type": "bert", "hidden_size": 32}, "model_type 'bert'"),
    ({"model_type": "resnet"}, "model_type 'resnet'"),
    ({"model_type": "vit"}, "model_type 'vit'"),
])
def test_an_unsupported_model_folder_is_refused_in_one_line(config, words, sample_ava, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    sweep = ["sweep", "--clips", str(folder), "--ava-dir", str(sample_ava)]
    for args in (main_args(sample_ava, folder, tmp_path), sweep):
        assert cli.main(args) == 2
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and words in error and "supported families: clip" in error
    assert not (tmp_path / "mlflow.db").exists(), "refused before any run"


def test_an_unknown_alias_lists_the_known_ones(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["main", "--clip", "siglip-xl"]) == 2
    error = capsys.readouterr().err
    assert "dinov2-l" in error and "siglip-so400m" in error and "l14-336" in error
    assert not (tmp_path / "mlflow.db").exists()
