"""The `train`, `closed_form` and `memory` sections: the 4 x 5 training grid against the seed's loop, the closed-form
probe at AVA's size, and the peak memory of `clip-aesthetics train` on a 255,530-image cache."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import seed_baseline
import synthetic
import torch

from clip_aesthetics.data.ava import target_scale
from clip_aesthetics.heads.head import HeadSpec, build_head, fit, predict_scores
from clip_aesthetics.heads.kinds import fit_ridge
from clip_aesthetics.heads.metrics import spearman
from clip_aesthetics.settings import TrainSettings


def bench_training(work: Path, quick: bool) -> dict:
    """The 4 x 5 grid: the project's train (evaluation and MLflow logging included) vs the seed's loop."""
    import mlflow

    from clip_aesthetics.heads.training import train_and_evaluate
    from clip_aesthetics.workflows.train import log_epoch

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


def bench_closed_form(work: Path, quick: bool) -> dict:
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


def bench_memory(work: Path, quick: bool) -> dict:
    """Peak RSS of `clip-aesthetics train` (a child process) on a 255,530-image float16 cache.

    The child reports its own VmHWM at exit: ru_maxrss would count the forked benchmark's pages too.
    """

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
from clip_aesthetics.cli.app import main
def peak():
    status = open("/proc/self/status").read()
    print(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")), flush=True)
atexit.register(peak)
sys.exit(main(sys.argv[1:]))
"""
