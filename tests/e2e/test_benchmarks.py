"""The benchmark's own pieces stay runnable: the seed-style baseline and the synthetic data (tiny sizes)."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import seed_baseline  # noqa: E402
import synthetic  # noqa: E402

from clip_aesthetics.embedding.features import Dataset, SplitFeatures  # noqa: E402


def test_synthetic_scores_look_like_ava_and_follow_the_embeddings():
    x, y = synthetic.embeddings_and_scores(20_000, seed=0)
    assert x.shape == (20_000, 512) and x.dtype == np.float32
    assert abs(y.mean() - synthetic.MEAN) < 0.05 and abs(y.std() - synthetic.STD) < 0.05
    fit = np.linalg.lstsq(np.c_[x, np.ones(len(x))], y, rcond=None)[0]
    assert np.corrcoef(np.c_[x, np.ones(len(x))] @ fit, y)[0, 1] > 0.75


def test_seed_style_training_resumes_from_its_checkpoint_each_epoch(tmp_path):
    x, y = synthetic.embeddings_and_scores(3_000, seed=1)
    split = lambda a, b: SplitFeatures(np.arange(a, b), x[a:b], y[a:b])  # noqa: E731
    dataset = Dataset(split(0, 2_000), split(2_000, 2_200), split(2_200, 3_000), pd.DataFrame())
    seed_baseline.write_batch_files(dataset, norm=True, folder=tmp_path)
    assert len(list((tmp_path / "train").glob("*.pt"))) == -(-2_200 // 32)  # train + val, batches of 32
    spearmans = seed_baseline.train_like_seed(tmp_path, epochs=2)
    assert len(spearmans) == 2 and np.all(np.isfinite(spearmans))
    state = torch.load(tmp_path / "checkpoint.pt")
    # Epoch 2 went on from epoch 1's checkpoint: Adam counted every batch of both epochs.
    assert state["epoch"] == 1
    assert int(state["optimizer"]["state"][0]["step"]) == 2 * -(-2_200 // 32)


def test_photo_like_jpegs_have_the_asked_sizes_and_both_kinds(tmp_path):
    from PIL import Image

    made = synthetic.photo_like_jpegs(tmp_path, 6, (640, 1024), seed=0)
    sizes = [Image.open(path).size for path, _ in made]
    assert all(640 <= max(size) < 1024 and 1.3 <= max(size) / min(size) <= 1.51 for size in sizes), sizes
    scores = np.array([score for _, score in made])
    assert np.isnan(scores[1::2]).all() and np.isfinite(scores[::2]).all()


def test_the_gpu_script_pieces_run_and_it_refuses_a_machine_without_a_gpu(tmp_path, tiny_clip):
    import subprocess

    import gpu

    from clip_aesthetics.backbones.families import load_backbone, resolve_backbone

    items = gpu.image_files(tmp_path / "images", unique=4, total=8)
    assert len(items) == 8 and all(path.stat().st_size > 0 for _, path in items)
    _, processor = load_backbone(resolve_backbone(str(tiny_clip)), torch.device("cpu"))
    assert gpu.decode_rate(items, processor, workers=0, batch=4, decoding="reduced") > 0
    if importlib.util.find_spec("onnxruntime") is not None:  # the ONNX piece, on whatever provider is here
        rate, provider = gpu.onnx_forward_rate(gpu.export_graph(tiny_clip, tmp_path / "onnx"), 32, 4, 0.2)
        assert rate > 0 and provider.endswith("ExecutionProvider")
    if not torch.cuda.is_available():
        root = Path(__file__).resolve().parents[2]
        done = subprocess.run(["bash", str(root / "benchmarks" / "gpu.sh")], capture_output=True, text=True, cwd=root)
        assert done.returncode == 2 and "no CUDA build of torch, or no GPU" in done.stderr


def test_every_name_the_benchmarks_import_from_the_project_exists():
    """bench.py imports inside its sections; a name moved by a refactor must fail here, not mid-benchmark."""
    import ast
    import importlib

    for script in sorted((Path(__file__).resolve().parents[2] / "benchmarks").glob("*.py")):
        tree = ast.parse(script.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("clip_aesthetics"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    if not hasattr(module, alias.name):  # a submodule (from clip_aesthetics import spark)
                        importlib.import_module(f"{node.module}.{alias.name}")


def test_every_section_of_bench_names_a_function_of_its_folder_taking_work_and_quick():
    """bench.py finds each section's function by name when it runs it: a renamed function must fail here."""
    import ast

    import bench

    folder = Path(__file__).resolve().parents[2] / "benchmarks"
    for section, target in bench.SECTIONS.items():
        module, _, function = target.partition(":")
        tree = ast.parse((folder / f"{module}.py").read_text())
        found = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == function]
        assert found, f"section {section}: no function {function} in benchmarks/{module}.py"
        assert [a.arg for a in found[0].args.args] == ["work", "quick"], section
    assert set(bench.SECTIONS) == set(bench.TARGETS_SECTIONS + bench.EXTRA_SECTIONS + bench.ON_REQUEST)


def test_the_performance_figures_are_those_of_the_committed_run():
    import readme_figures

    readme = (readme_figures.ROOT / "docs" / "performance.md").read_text()
    assert readme_figures.with_block(readme, *readme_figures.committed()) == readme, (
        "run `python benchmarks/readme_figures.py --write`")


def test_the_score_meaning_figures_are_those_of_the_committed_run():
    import json

    import readme_figures

    page = (readme_figures.ROOT / "docs" / "score-meaning.md").read_text()
    assert readme_figures.with_meaning(page, json.loads(readme_figures.MEANING.read_text())) == page, (
        "run `python benchmarks/readme_figures.py --write`")
