"""What the benchmark's sections share: the real-sized ViT-B/32 setup every scoring section measures with, the model's
forward alone (the ceiling the end-to-end paths approach), the alternating measurement of end-to-end against it, and
Spark local[2] started and warmed."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch

from clip_aesthetics.backbones.families import resolve_backbone, save_random_clip
from clip_aesthetics.data.sample_data import write_sample_ava
from clip_aesthetics.embedding.embed import embed_pixels
from clip_aesthetics.heads.head import HeadSpec, build_head
from clip_aesthetics.images.decode import load_rgb
from clip_aesthetics.images.pixels import ModelPixels


def pixels_of(processor, paths: list[Path]) -> torch.Tensor:
    return torch.from_numpy(np.stack([ModelPixels(processor)(load_rgb(p)) for p in paths]))


def forward_all(model, pixels: torch.Tensor, dtype: torch.dtype) -> None:
    for start in range(0, len(pixels), 32):
        embed_pixels(model, pixels[start:start + 32], dtype)


def best_rates(runs: dict, n: int, rounds: int = 3, warm=None) -> dict[str, float]:
    """Each run's best rate (n / seconds) over `rounds` passes, the runs alternating so that a slow spell of this
    shared machine does not fall on one side only; the runs named in `warm` (default: all) first run once unmeasured
    (a first pass pays for kernels and thread pools)."""
    for name in runs if warm is None else warm:
        runs[name]()
    best = dict.fromkeys(runs, 0.0)
    for _ in range(rounds):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            best[name] = max(best[name], n / (time.perf_counter() - started))
    return best


def fraction_of_forward(forward, end_to_end, n: int, rounds: int = 3, **others) -> tuple[float, ...]:
    """(forward images/s, end-to-end images/s, their ratio, then each of `others`' ratio), by `best_rates`; only
    the forward is warmed (the first pass of a precision pays for its kernels)."""
    best = best_rates({"forward": forward, "through": end_to_end, **others}, n, rounds, warm=["forward"])
    return (best["forward"], best["through"], best["through"] / best["forward"],
            *(best[name] / best["forward"] for name in others))


def b32_setup(work: Path, n_images: int, seed: int):
    """What every scoring section measures with: n generated 500x400 JPEGs, a random-weight ViT-B/32 and a linear
    head. Returns (image paths, the backbone's folder, its BackboneSource, the head's spec, the head)."""
    ava = write_sample_ava(work / "ava", n_images, seed=seed, size=(500, 400))
    clip = save_random_clip(work / "vit-b32", "b32", seed=3)
    spec = HeadSpec("linear", 512, "none", 10.0)
    return sorted((ava / "image").glob("*.jpg")), clip, resolve_backbone(str(clip)), spec, build_head(spec)


def saved_scorer(model_dir: Path):
    """The scorer of a model folder save_scorer wrote, loaded as the pyfunc loads it, on the CPU."""
    from clip_aesthetics.scoring.model import AestheticScorer

    return AestheticScorer().load({"head": str(model_dir / "artifacts" / "head.pt"),
                                   "scorer_spec": str(model_dir / "artifacts" / "scorer.json")}, "cpu")


def local_spark():
    """A Spark local[2] session, started and warmed (its start-up is not part of the figures it measures)."""
    from clip_aesthetics.engines import spark

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    session = spark.session("local[2]")
    session.sparkContext.setLogLevel("ERROR")
    session.range(1).count()
    return session


def fast_precisions() -> list[str]:
    """float32, and bfloat16 where the CPU computes it natively (AVX512-BF16 or AMX)."""
    return ["float32"] + (["bfloat16"] if torch.ops.mkldnn._is_mkldnn_bf16_supported() else [])


def spark_job(inputs: list[str], model_dir: Path, out: Path):
    """A score job of `inputs` with the model saved in `model_dir`, written in parts into `out` (what Spark runs)."""
    from clip_aesthetics.scoring.job import ScoreJob
    from clip_aesthetics.scoring.outputs import output_for
    from clip_aesthetics.scoring.samples import plan

    return ScoreJob(plan(inputs, remote=True), str(model_dir), str(model_dir), {}, output_for(out, in_parts=True),
                    precision="float32")
