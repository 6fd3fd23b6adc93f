"""The project against a seed-style baseline, measured side by side in one run.

    python benchmarks/bench.py --quick --json out.json

Embedding: the 2-model grid on generated AVA-like JPEGs with real-sized, randomly initialised
ViT-B/32 models (openai's sizes, from CLIPConfig). Training: the 4 x 5 grid on 229,971 + 25,559
synthetic 512-d embeddings. Plus the closed-form probe, and the peak memory of `clip-aesthetics train`
on a 255,530-image cache. The baseline is written here, reproducing the seed notebook's costs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import seed_baseline  # noqa: E402
import synthetic  # noqa: E402

from clip_aesthetics.ava import target_scale  # noqa: E402
from clip_aesthetics.cache import EmbeddingCache  # noqa: E402
from clip_aesthetics.config import TrainSettings  # noqa: E402
from clip_aesthetics.clip import load_clip, resolve_clip, save_random_clip  # noqa: E402
from clip_aesthetics.embed import default_workers, embed_pixels, embed_to_cache  # noqa: E402
from clip_aesthetics.head import HeadSpec, build_head, fit, fit_ridge, predict_scores  # noqa: E402
from clip_aesthetics.images import load_rgb  # noqa: E402
from clip_aesthetics.metrics import spearman  # noqa: E402
from clip_aesthetics.sample_data import write_sample_ava  # noqa: E402

TARGETS = {  # figure: (comparison, bound)
    "embed_grid_speedup_vs_seed": (">=", 1.9),
    "embed_fraction_of_forward": (">=", 0.85),
    "train_grid_speedup_vs_seed": (">=", 20.0),
    "closed_form_seconds": ("<=", 5.0),
    "peak_rss_mb": ("<=", 2000.0),
}


TARGETS_SECTIONS = ["embed", "train", "closed_form", "memory"]


def bench_embedding(work: Path, n_images: int) -> dict:
    """Seed-style (4 passes: model x norm) vs the project (2 passes, workers, cache) on the same files.

    The two sides alternate model by model, so that a slow spell of this shared machine hits both.
    """
    ava = write_sample_ava(work / "ava", n_images, seed=0, size=(500, 400))
    models = [save_random_clip(work / f"vit-b32-{seed}", "b32", seed=seed) for seed in (0, 1)]
    paths = sorted((ava / "image").glob("*.jpg"))
    items = [(int(p.stem), p) for p in paths]
    bf16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()  # CPUs with native bf16: precision=bfloat16
    seconds = {"seed": 0.0, "float32": 0.0, "bfloat16": 0.0}
    rates = {}
    for model_dir in models:
        started = time.perf_counter()
        seed_baseline.embed_like_seed(model_dir, paths, work / "seed-embeddings" / model_dir.name)
        seconds["seed"] += time.perf_counter() - started
        for dtype in [torch.float32] + ([torch.bfloat16] if bf16 else []):
            name = str(dtype).removeprefix("torch.")
            total, rates[name], model, processor = _project_pass(work / name / model_dir.name, model_dir, items, dtype)
            seconds[name] += total
    # The model forward alone, on pre-decoded tensors: the ceiling that end-to-end embedding can approach.
    pixels = torch.from_numpy(np.stack([processor(images=load_rgb(p), return_tensors="np")["pixel_values"][0]
                                        for p in paths]))
    figures = {"embed_images": n_images, "embed_workers": default_workers(-1),
               "embed_seed_seconds": seconds["seed"], "embed_project_seconds": seconds["float32"]}
    for name in rates:
        forward = _forward_rate(model, pixels, getattr(torch, name))
        suffix = "" if name == "float32" else "_bf16"
        figures.update({
            f"embed_grid_speedup_vs_seed{suffix}": seconds["seed"] / seconds[name],
            f"embed_forward_images_per_second{suffix}": forward,
            f"embed_end_to_end_images_per_second{suffix}": rates[name],
            f"embed_fraction_of_forward{suffix}": rates[name] / forward,
        })
    return figures


def _project_pass(cache_root: Path, model_dir: Path, items: list, dtype: torch.dtype):
    """One model through the project's embed: (seconds with loading, end-to-end images/s, model, processor)."""
    started = time.perf_counter()
    model, processor = load_clip(resolve_clip(str(model_dir)), torch.device("cpu"))
    cache = EmbeddingCache(cache_root)
    cache.open({"embedding_dim": 512})
    loaded = time.perf_counter()
    embed_to_cache(cache, items, model, processor, dtype, 32, default_workers(-1), 4096, progress=False)
    done = time.perf_counter()
    return done - started, len(items) / (done - loaded), model, processor


def _forward_rate(model, pixels: torch.Tensor, dtype: torch.dtype) -> float:
    embed_pixels(model, pixels[:32], dtype)  # warm-up
    started = time.perf_counter()
    for start in range(0, len(pixels), 32):
        embed_pixels(model, pixels[start:start + 32], dtype)
    return len(pixels) / (time.perf_counter() - started)


def bench_scorer(work: Path, n_images: int) -> dict:
    """The registered-model path: encoded image bytes (threads) and file paths (workers) -> scores."""
    import pandas as pd

    from clip_aesthetics.scorer import AestheticScorer, write_artifacts

    ava = write_sample_ava(work / "ava", n_images, seed=1, size=(500, 400))
    clip = save_random_clip(work / "vit-b32", "b32", seed=3)
    source = resolve_clip(str(clip))
    head = build_head(HeadSpec("linear", 512, "none", 10.0))
    spec_doc = {"head": HeadSpec("linear", 512, "none", 10.0).to_dict(),
                "clip": {"model_id": source.model_id, "revision": source.revision}}
    scorer = AestheticScorer().load(write_artifacts(work / "scorer", head.state_dict(), spec_doc, None), "cpu")
    paths = sorted((ava / "image").glob("*.jpg"))
    images = pd.DataFrame({"image": [p.read_bytes() for p in paths]})
    scorer.predict(None, images.head(8))  # warm-up
    started = time.perf_counter()
    scorer.predict(None, images)
    bytes_rate = len(paths) / (time.perf_counter() - started)
    started = time.perf_counter()
    scorer.score_paths(paths)
    return {"scorer_images_per_second_bytes": bytes_rate,
            "scorer_images_per_second_paths": len(paths) / (time.perf_counter() - started)}


def bench_spark(work: Path, n_images: int) -> dict:
    """Spark local[2] against the single process on the same images: scoring files, embedding, and start-up."""
    from clip_aesthetics import spark
    from clip_aesthetics.cache import EmbeddingCache
    from clip_aesthetics.embed import pick_dtype
    from clip_aesthetics.scorer import AestheticScorer, save_scorer

    ava = write_sample_ava(work / "ava", n_images, seed=2, size=(500, 400))
    clip = save_random_clip(work / "vit-b32", "b32", seed=3)
    source = resolve_clip(str(clip))
    spec = HeadSpec("linear", 512, "none", 10.0)
    spec_doc = {"head": spec.to_dict(), "clip": {"model_id": source.model_id, "revision": source.revision}}
    model_dir = save_scorer(work / "model", build_head(spec).state_dict(), spec_doc)
    paths = sorted((ava / "image").glob("*.jpg"))
    items = [(int(p.stem), p) for p in paths]

    started = time.perf_counter()
    scorer = AestheticScorer().load({"head": str(model_dir / "artifacts" / "head.pt"),
                                     "scorer_spec": str(model_dir / "artifacts" / "scorer.json")}, "cpu")
    scorer.score_paths(paths)
    local_score = len(paths) / (time.perf_counter() - started)  # model load included, as Spark's figure has it
    model, processor = load_clip(source, torch.device("cpu"))
    cache = EmbeddingCache(work / "cache-local")
    cache.open({"embedding_dim": 512})
    started = time.perf_counter()
    embed_to_cache(cache, items, model, processor, pick_dtype("float32", torch.device("cpu")), 32,
                   default_workers(-1), 4096, progress=False)
    local_embed = len(items) / (time.perf_counter() - started)

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ["CLIP_AESTHETICS_SPARK_MASTER"] = "local[2]"
    started = time.perf_counter()
    session = spark.session()
    session.sparkContext.setLogLevel("ERROR")
    session.range(1).count()
    startup = time.perf_counter() - started
    started = time.perf_counter()
    done = spark.score_files(session, [str(ava / "image")], str(model_dir), str(work / "scores.parquet"))
    spark_score = (done["scored"] + done["failed"]) / (time.perf_counter() - started)
    cache = EmbeddingCache(work / "cache-spark")
    cache.open({"embedding_dim": 512})
    started = time.perf_counter()
    spark.embed_missing(cache.root, items, clip, "float32", 32, 4096)
    spark_embed = len(items) / (time.perf_counter() - started)
    session.stop()
    return {"spark_startup_seconds": startup,
            "spark_score_images_per_second": spark_score, "local_score_images_per_second": local_score,
            "spark_score_fraction_of_local": spark_score / local_score,
            "spark_embed_images_per_second": spark_embed, "local_embed_images_per_second": local_embed,
            "spark_embed_fraction_of_local": spark_embed / local_embed, "spark_model_loads": done["model_loads"]}


def bench_training(work: Path, quick: bool) -> dict:
    """The 4 x 5 grid: the project's train (evaluation and MLflow logging included) vs the seed's loop."""
    import mlflow

    from clip_aesthetics.training import log_epoch, train_and_evaluate

    grids = [synthetic.dataset(seed) for seed in (0, 1)]  # stand-ins for the B/16 and B/32 caches
    mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
    mlflow.set_experiment("bench")
    started = time.perf_counter()
    config_epochs = 0
    for dataset in grids:
        for norm in (True, False):
            with mlflow.start_run():
                train_and_evaluate(dataset, TrainSettings(norm=norm), 42, log_epoch)
            config_epochs += 5
    project = (time.perf_counter() - started) / config_epochs

    baseline_configs = [(0, True)] if quick else [(g, n) for g in (0, 1) for n in (True, False)]
    baseline_epochs = 1 if quick else 5
    seed_total, seed_epochs = 0.0, 0
    for grid, norm in baseline_configs:
        folder = work / f"seed-train-{grid}-{norm}"
        seed_baseline.write_batch_files(grids[grid], norm, folder)  # the seed's embedding output, not timed
        started = time.perf_counter()
        seed_baseline.train_like_seed(folder, epochs=baseline_epochs)
        seed_total += time.perf_counter() - started
        seed_epochs += baseline_epochs
        shutil.rmtree(folder)
    seed = seed_total / seed_epochs
    return {
        "train_seconds_per_config_epoch": project,
        "train_seed_seconds_per_config_epoch": seed,
        "train_seed_config_epochs_measured": seed_epochs,
        "train_grid_seconds": project * 20,
        "train_seed_grid_seconds": seed * 20,
        "train_grid_speedup_vs_seed": seed / project,
    }


def bench_closed_form() -> dict:
    """Ridge in closed form on 230k x 512 vs the seed's 5-epoch Adam probe, normed and raw."""
    dataset = synthetic.dataset(0)
    x, y = dataset.train.embeddings, dataset.train.scores
    results = {}
    for norm in (True, False):
        scale = target_scale(norm)
        head = build_head(HeadSpec("ridge", 512, "none", scale))
        started = time.perf_counter()
        fit_ridge(head, x, y / scale, dataset.val.embeddings, dataset.val.scores / scale)
        seconds = time.perf_counter() - started
        spec = HeadSpec("ridge", 512, "none", scale)
        results[norm] = (seconds, spearman(dataset.test.scores, predict_scores(head, spec, dataset.test.embeddings)))
    adam = {}
    for norm in (True, False):
        spec = HeadSpec("linear", 512, "none", target_scale(norm))
        torch.manual_seed(42)
        head = build_head(spec)
        fit(head, x, y / spec.target_scale, 5, 1e-4, 32, 42, lambda *_: None)
        adam[norm] = spearman(dataset.test.scores, predict_scores(head, spec, dataset.test.embeddings))
    return {
        "closed_form_seconds": max(results[True][0], results[False][0]),
        "closed_form_test_spearman_normed": results[True][1],
        "closed_form_test_spearman_raw": results[False][1],
        "adam5_test_spearman_normed": adam[True],
        "adam5_test_spearman_raw": adam[False],
        "closed_form_gain_over_adam5_normed": results[True][1] - adam[True],
    }


def bench_memory(work: Path) -> dict:
    """Peak RSS of `clip-aesthetics train` (a child process) on a 255,530-image float16 cache.

    The child reports its own VmHWM at exit: ru_maxrss would count the forked benchmark's pages too.
    """
    import subprocess

    ava, clip, cache_dir = synthetic.full_size_cache(work / "memory")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'memory' / 'mlflow.db'}", "HF_HUB_OFFLINE": "1"}
    env.pop("MLFLOW_RUN_ID", None)
    started = time.perf_counter()
    args = ["train", "--clip", str(clip), "--ava-dir", str(ava), "--cache-dir", str(cache_dir), "--epochs", "5"]
    done = subprocess.run([sys.executable, "-c", REPORT_PEAK, *args], env=env, check=True, cwd=work / "memory",
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    peak_kb = int(done.stdout.strip().splitlines()[-1])
    shards = list(Path(cache_dir).rglob("shard-*.npz"))
    return {
        "peak_rss_mb": peak_kb / 1024,
        "train_command_seconds_255k": seconds,
        "cache_bytes_per_image": sum(p.stat().st_size for p in shards) / synthetic.AVA_ROWS,
    }


REPORT_PEAK = """
import atexit, sys
from clip_aesthetics.cli import main
def peak():
    status = open("/proc/self/status").read()
    print(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")), flush=True)
atexit.register(peak)
sys.exit(main(sys.argv[1:]))
"""


def report(figures: dict, args) -> str:
    rows = [
        ("embedding, 2-model grid (s)", "embed_project_seconds", "embed_seed_seconds", "embed_grid_speedup_vs_seed"),
        ("training, one config-epoch (s)", "train_seconds_per_config_epoch", "train_seed_seconds_per_config_epoch",
         "train_grid_speedup_vs_seed"),
    ]
    lines = ["| figure | project | seed-style | ratio | target |", "|---|---|---|---|---|"]
    for label, ours, theirs, ratio in rows:
        comparison, bound = TARGETS[ratio]
        lines.append(f"| {label} | {figures[ours]:.3f} | {figures[theirs]:.3f} | {figures[ratio]:.2f}x | "
                     f"{comparison} {bound} {'met' if _met(figures[ratio], ratio) else 'NOT MET'} |")
    for name in ("embed_fraction_of_forward", "closed_form_seconds", "peak_rss_mb"):
        lines.append(f"| {name} | {figures[name]:.3f} | | | {TARGETS[name][0]} {TARGETS[name][1]} "
                     f"{'met' if _met(figures[name], name) else 'NOT MET'} |")
    extra = [k for k in figures if k not in TARGETS and not k.startswith(("embed_project", "embed_seed", "train_seed_sec"))]
    lines += ["", "| other figure | value |", "|---|---|"] + [f"| {k} | {_fmt(figures[k])} |" for k in extra]
    return "\n".join(lines)


def _met(value: float, name: str) -> bool:
    comparison, bound = TARGETS[name]
    return value >= bound if comparison == ">=" else value <= bound


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer images and a sampled baseline: under 5 minutes")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--only", choices=TARGETS_SECTIONS + ["scorer", "spark"], action="append")
    args = parser.parse_args()
    sections = args.only or TARGETS_SECTIONS + ["scorer", "spark"]
    figures = {"date": date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
               f"torch {torch.__version__}, {torch.get_num_threads()} threads", "quick": args.quick}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "embed" in sections:
            figures.update(bench_embedding(work / "embed", 256 if args.quick else 640))
        if "train" in sections:
            figures.update(bench_training(work / "train", args.quick))
        if "closed_form" in sections:
            figures.update(bench_closed_form())
        if "memory" in sections:
            figures.update(bench_memory(work))
        if "scorer" in sections:
            figures.update(bench_scorer(work / "scorer", 96 if args.quick else 256))
        if "spark" in sections:
            figures.update(bench_spark(work / "spark", 96 if args.quick else 256))
    if set(TARGETS_SECTIONS) <= set(sections):
        print(report(figures, args))
    else:
        print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
