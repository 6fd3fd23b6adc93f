"""Published heads imported and registered; `evaluate` of any model on any labelled set, side by side."""

import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from clip_aesthetics.backbones.families import save_random_backbone
from clip_aesthetics.cli import app as cli
from clip_aesthetics.data.sample_data import write_sample_ratings
from clip_aesthetics.embedding.embed import embed_sources
from clip_aesthetics.images.decode import load_rgb
from clip_aesthetics.scoring.uris import load_scorer

TRAINING = ["--epochs", "4", "--lr", "0.003", "--batch-size", "16", "--num-workers", "0", "--precision", "float32"]
# The published layouts: (layer key prefixes, widths after the input), from the authors' model definitions.
LAYOUTS = {
    "laion-linear": ([""], [1]),
    "improved-mlp": ([f"layers.{k}" for k in (0, 2, 4, 6, 7)], [1024, 128, 64, 16, 1]),
    "v2.5": ([f"scoring_head.{k}" for k in (0, 2, 4, 6, 8)], [1024, 128, 64, 16, 1]),
}


def published_state(layout: str, in_dim: int, seed: int = 0) -> dict:
    prefixes, widths = LAYOUTS[layout]
    generator = torch.Generator().manual_seed(seed)
    state, width = {}, in_dim
    for prefix, out in zip(prefixes, widths, strict=True):
        dot = f"{prefix}." if prefix else ""
        state[f"{dot}weight"] = torch.randn(out, width, generator=generator) / width ** 0.5
        state[f"{dot}bias"] = torch.randn(out, generator=generator) * 0.1 + (5.0 if out == 1 else 0.0)
        width = out
    return state


def hand_scores(state: dict, layout: str, embeddings: np.ndarray, relu: bool = False) -> np.ndarray:
    x = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    prefixes, _ = LAYOUTS[layout]
    for k, prefix in enumerate(prefixes):
        dot = f"{prefix}." if prefix else ""
        x = x @ state[f"{dot}weight"].numpy().T.astype(np.float64) + state[f"{dot}bias"].numpy()
        if relu and k < len(prefixes) - 1:
            x = np.maximum(x, 0)
    return x[:, 0]


@pytest.fixture(scope="module")
def backbones(tmp_path_factory):
    """Tiny backbones whose embedding sizes are the published heads' (CLIP B/32 512, L/14 768; SigLIP 1152)."""
    root = tmp_path_factory.mktemp("published")
    return {"laion-linear": save_random_backbone(root / "clip512", "clip", 0, projection_dim=512),
            "improved-mlp": save_random_backbone(root / "clip768", "clip", 1, projection_dim=768),
            "v2.5": save_random_backbone(root / "siglip1152", "siglip", 2, hidden_size=1152)}


@pytest.fixture(scope="module")
def ratings(tmp_path_factory) -> Path:
    return write_sample_ratings(tmp_path_factory.mktemp("ratings") / "ratings", 60, seed=5)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_an_imported_published_head_scores_as_its_authors_compute(layout, backbones, ratings, tmp_path,
                                                                  tracking_uri, capsys):
    state = published_state(layout, {"laion-linear": 512, "improved-mlp": 768, "v2.5": 1152}[layout])
    head_file = tmp_path / f"{layout}.pth"
    torch.save(state, head_file)
    name = f"published-{layout.replace('.', '')}"
    assert cli.main(["import-head", str(head_file), "--clip", str(backbones[layout]), "--model-name", name,
                     "--bundle-dtype", "float32"]) == 0
    assert f"alias champion: models:/{name}/1" in capsys.readouterr().out
    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias(name, "champion")
    assert version.tags["head_layout"] == layout and len(version.tags["head_sha256"]) == 64
    assert version.tags["head_licence"] and version.tags["head_sha256"] in version.description
    scorer = load_scorer(f"models:/{name}@champion")
    paths = sorted((ratings / "images").glob("*.jpg"))[:12]
    items = list(enumerate(paths))
    embeddings = np.concatenate([e for _, e, _ in embed_sources(items, load_rgb, scorer.model, scorer.processor,
                                                                scorer.dtype, 32, 0, progress=False)])
    expected = hand_scores(state, layout, embeddings.astype(np.float64))
    scores = scorer.score_paths(paths, num_workers=0)["score"].to_numpy()
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
    assert cli.main(["import-head", str(head_file), "--clip", str(backbones[layout]), "--model-name", name]) == 0
    assert "was already" in capsys.readouterr().out, "the same file on the same backbone: no second version"


def test_a_relu_chain_applies_the_activation_between_layers(backbones, ratings, tmp_path, tracking_uri):
    """... and a reference folder given at import makes each score's percentile the share of its images below."""
    state = published_state("improved-mlp", 768, seed=4)
    torch.save(state, tmp_path / "ava+logos-l14-reluMSE.pth")
    folder = tmp_path / "reference"
    folder.mkdir()
    for path in sorted((ratings / "images").glob("*.jpg"))[20:32]:
        shutil.copy(path, folder / path.name)
    (folder / "broken.jpg").write_bytes(b"not an image")  # left out of the reference, not a crash
    assert cli.main(["import-head", str(tmp_path / "ava+logos-l14-reluMSE.pth"), "--clip",
                     str(backbones["improved-mlp"]),
                     "--model-name", "relu", "--activation", "relu", "--bundle-dtype", "float32",
                     "--reference", str(folder)]) == 0
    scorer = load_scorer("models:/relu@champion")
    paths = sorted((ratings / "images").glob("*.jpg"))[:6]
    embeddings = np.concatenate([e for _, e, _ in embed_sources(list(enumerate(paths)), load_rgb, scorer.model,
                                                                scorer.processor, scorer.dtype, 32, 0, progress=False)])
    scored = scorer.score_paths(paths, num_workers=0)
    np.testing.assert_allclose(scored["score"], hand_scores(state, "improved-mlp", embeddings.astype(np.float64),
                                                            relu=True), rtol=1e-5, atol=1e-5)
    ref = scorer.score_paths(sorted(folder.glob("*.jpg")), num_workers=0)["score"].dropna().to_numpy()
    assert len(ref) == 12 and scorer.reference.count == 12 and str(folder.resolve()) in scorer.reference.what
    step = scorer.reference.resolution
    grid = np.round(ref / step)
    mid_rank = [(np.sum(grid < np.round(s / step)) + np.sum(grid == np.round(s / step)) / 2) / len(grid) * 100
                for s in scored["score"]]
    np.testing.assert_allclose(scored["percentile"], mid_rank, atol=1e-9)
    version = mlflow.MlflowClient().get_model_version_by_alias("relu", "champion")
    assert "12 images in" in version.description and "computed in float32" in version.description
    # registered with its float32 weights, it scores in float32: the float32 computation exactly
    assert "Fidelity to a float32 computation of the same head on the 12 reference images" in version.description
    assert float(version.tags["fidelity_max_abs_diff"]) < 1e-6 and scorer.compute_precision == "float32"


@pytest.mark.parametrize("bundle", ["auto", "float16"])
def test_a_published_head_scores_in_float32_where_bfloat16_is_faster_and_says_its_fidelity(
        backbones, ratings, tmp_path, tracking_uri, fake_cpu, bundle):
    """On a CPU that measures bfloat16 faster (faked, whatever this machine's CPU), a published head still scores
    as its authors computed it: float32, with the backbone's weights as published (float32 here); the version's
    description says how far it is from a float32 computation on the reference images: nothing for auto, the
    rounding of float16 weights when they are asked for."""
    fake_cpu(native=True, speed=3.0)
    state = published_state("improved-mlp", 768, seed=6)
    torch.save(state, tmp_path / "sac+logos+ava1-l14-linearMSE.pth")
    folder = tmp_path / "reference"
    folder.mkdir()
    for path in sorted((ratings / "images").glob("*.jpg"))[:16]:
        shutil.copy(path, folder / path.name)
    name = f"improved-{bundle}"
    assert cli.main(["import-head", str(tmp_path / "sac+logos+ava1-l14-linearMSE.pth"), "--clip",
                     str(backbones["improved-mlp"]), "--model-name", name, "--bundle-dtype", bundle,
                     "--reference", str(folder)]) == 0
    version = mlflow.MlflowClient().get_model_version_by_alias(name, "champion")
    assert version.tags["clip_dtype"] == ("float32" if bundle == "auto" else "float16")
    scorer = load_scorer(f"models:/{name}@champion")
    assert scorer.compute_precision == "float32" and "published head" in scorer.precision_reason
    assert "Fidelity to a float32 computation" in version.description and "scoring in float32" in version.description
    difference = float(version.tags["fidelity_max_abs_diff"])
    assert difference < 1e-6 if bundle == "auto" else 0 < difference < 0.05
    asked = load_scorer(f"models:/{name}@champion", "bfloat16")  # a user may still ask for bfloat16
    assert asked.compute_precision == "bfloat16"


def test_a_head_for_another_embedding_size_is_refused_with_both_shapes(backbones, tmp_path, tracking_uri, capsys):
    torch.save(published_state("v2.5", 1152), tmp_path / "aesthetic_predictor_v2_5.pth")
    assert cli.main(["import-head", str(tmp_path / "aesthetic_predictor_v2_5.pth"), "--clip",
                     str(backbones["improved-mlp"]), "--model-name", "wrong"]) == 2
    error = capsys.readouterr().err
    assert "[1024, 1152]" in error and "768-d" in error and "1152-d" in error
    assert mlflow.MlflowClient().search_registered_models() == []


def test_a_file_that_is_not_a_chain_of_linear_layers_is_refused(backbones, tmp_path, tracking_uri, capsys):
    state = published_state("improved-mlp", 768)
    state["layers.1.running_mean"] = torch.zeros(1024)
    torch.save(state, tmp_path / "odd.pth")
    assert cli.main(["import-head", str(tmp_path / "odd.pth"), "--clip", str(backbones["improved-mlp"]),
                     "--model-name", "odd"]) == 2
    assert "layers.1.running_mean" in capsys.readouterr().err
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    assert cli.main(["import-head", str(tmp_path / "junk.pth"), "--clip", str(backbones["improved-mlp"]),
                     "--model-name", "junk"]) == 2
    assert "not a PyTorch state dict" in capsys.readouterr().err


def _train(sample_ava, clip, cache, name):
    assert cli.main(["main", "--clip", str(clip), "--ava-dir", str(sample_ava), "--cache-dir", str(cache),
                     "--run-name", name, *TRAINING]) == 0
    client = mlflow.MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("clip-aesthetics").experiment_id],
                              f"attributes.run_name = '{name}'")
    return runs[0]


def test_evaluate_reproduces_a_runs_test_spearman_and_two_models_share_a_leaderboard(
        sample_ava, tiny_clip, tiny_clip_b, tmp_path, tracking_uri, capsys):
    cache = tmp_path / "cache"
    first, second = _train(sample_ava, tiny_clip, cache, "a"), _train(sample_ava, tiny_clip_b, cache, "b")
    uri = f"runs:/{first.info.run_id}/model"
    assert cli.main(["evaluate", "--model", uri, "--ava-dir", str(sample_ava), "--cache-dir", str(cache),
                     "--precision", "float32"]) == 0
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("clip-aesthetics").experiment_id
    (single,) = client.search_runs([experiment], "attributes.run_name LIKE 'evaluate-%'")
    assert single.data.metrics["eval_spearman"] == first.data.metrics["best_test_spearman"], "exactly the run's"
    assert single.data.metrics["eval_mse"] == first.data.metrics["best_test_mse"]
    predictions = pd.read_csv(client.download_artifacts(single.info.run_id, "predictions/eval.csv", str(tmp_path)))
    trained = pd.read_csv(client.download_artifacts(first.info.run_id, "predictions/test.csv", str(tmp_path / "t")))
    joined = predictions.merge(trained, on="image_id", suffixes=("", "_trained"))
    assert len(joined) == len(trained) and (joined["score_pred"] == joined["score_pred_trained"]).all()
    assert single.inputs.dataset_inputs[0].dataset.digest == first.inputs.dataset_inputs[0].dataset.digest
    linked = client.get_logged_model(client.get_run(first.info.run_id).outputs.model_outputs[0].model_id).metrics
    measured = [m for m in linked if m.key == "eval_spearman" and m.run_id == single.info.run_id]
    assert measured and measured[0].dataset_digest == first.inputs.dataset_inputs[0].dataset.digest, \
        "the evaluation's metrics are linked to the model and to the dataset they were measured on"

    uris = [uri, f"runs:/{second.info.run_id}/model"]
    capsys.readouterr()
    assert cli.main(["evaluate", "--model", uris[0], "--model", uris[1], "--ava-dir", str(sample_ava),
                     "--cache-dir", str(cache), "--run-name", "side-by-side"]) == 0
    (parent,) = client.search_runs([experiment], "attributes.run_name = 'side-by-side'")
    children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(children) == 2
    board = pd.read_csv(client.download_artifacts(parent.info.run_id, "comparison/leaderboard.csv",
                                                  str(tmp_path / "p")))
    by_model = {row["model"]: row for row in board.to_dict("records")}
    for child in children:
        row = by_model[child.data.params["model_uri"]]
        for key, value in child.data.metrics.items():
            assert row[key] == pytest.approx(value, rel=1e-12), key
    assert board["eval_spearman"].is_monotonic_decreasing
    assert [r.info.run_id for r in children if r.data.params["model_uri"] == uris[0]][0] in board["run_id"].tolist()
    assert "gallery/compare.html" in [a.path for a in client.list_artifacts(parent.info.run_id, "gallery")]


def test_a_model_on_another_scale_is_evaluated_on_ranks_and_says_how(sample_ava, ratings, tiny_clip, tmp_path,
                                                                     tracking_uri):
    run = _train(sample_ava, tiny_clip, tmp_path / "cache", "ava-model")
    assert cli.main(["evaluate", "--models", f"runs:/{run.info.run_id}/model", "--labels", str(ratings),
                     "--score-range", "1,5", "--eval-split", "all", "--cache-dir", str(tmp_path / "cache")]) == 0
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("clip-aesthetics").experiment_id
    (evaluation,) = client.search_runs([experiment], "attributes.run_name LIKE 'evaluate-%'")
    assert set(evaluation.data.metrics) == {"eval_spearman", "eval_pearson"}, "ranks only, nothing absolute"
    assert evaluation.data.tags["scale_mismatch"] == "true"
    description = evaluation.data.tags["mlflow.note.content"]
    assert "1-10 scale" in description and "1-5" in description and "linear least-squares map" in description
    assert evaluation.data.params["n_images"] == "60"
    predictions = pd.read_csv(client.download_artifacts(evaluation.info.run_id, "predictions/eval.csv", str(tmp_path)))
    table = {json.loads(line)["file_name"]: json.loads(line)["rating"]
             for line in (ratings / "metadata.jsonl").read_text().splitlines()}
    assert predictions["score_true"].tolist() == [table[name] for name in predictions["image"]]


def test_evaluating_a_run_without_a_model_says_so(sample_ava, tmp_path, tracking_uri, capsys):
    experiment = mlflow.set_experiment("clip-aesthetics").experiment_id  # this store's, whatever ran before
    with mlflow.start_run(run_name="no-model", experiment_id=experiment) as run:
        mlflow.log_param("note", "an embed run, say")
    assert cli.main(["evaluate", "--model", f"runs:/{run.info.run_id}/model", "--ava-dir", str(sample_ava),
                     "--cache-dir", str(tmp_path / "cache")]) == 2
    error = capsys.readouterr().err
    assert f"run {run.info.run_id} (no-model) has no model named 'model': it logged no model" in error, error
    assert "Failed to download artifacts" not in error
