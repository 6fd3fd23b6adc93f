"""The `embed` section: the 2-model embedding grid, the project against the seed-style baseline on the same files,
and end-to-end embedding as a fraction of the forward alone, in each precision this CPU runs well."""

from __future__ import annotations

import functools
import itertools
import time
from pathlib import Path
from unittest import mock

import seed_baseline
import torch
from common import forward_all, fraction_of_forward, pixels_of

from clip_aesthetics.backbones.families import load_backbone, resolve_backbone, save_random_clip
from clip_aesthetics.data.sample_data import write_sample_ava
from clip_aesthetics.embedding import embed as embed_module
from clip_aesthetics.embedding import precision
from clip_aesthetics.embedding.cache import EmbeddingCache
from clip_aesthetics.embedding.embed import default_workers, embed_to_cache


def bench_embedding(work: Path, quick: bool) -> dict:
    """Seed-style (4 passes: model x norm) vs the project (2 passes, workers, cache) on the same files.

    The two sides alternate model by model, so that a slow spell of this shared machine hits both.
    """
    n_images = 256 if quick else 640
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
    pixels = pixels_of(processor, paths)
    # what precision=auto picks here for this model, measured as it measures it (a fresh timings file)
    auto = precision.choose("auto", torch.device("cpu"), size=precision.size_of_model(model),
                            load=lambda: (model, processor), timings=work / "precision-timings.json")
    figures = {"embed_images": n_images, "embed_workers": default_workers(-1), "embed_auto_precision": auto.reason,
               "embed_seed_seconds": seconds["seed"], "embed_project_seconds": seconds["float32"]}
    for name in rates:
        dtype = getattr(torch, name)
        suffix = "" if name == "float32" else "_bf16"

        def end_to_end(dtype=dtype, name=name, overlap=None, counter=itertools.count()):
            cache = EmbeddingCache(work / "fraction" / f"{name}-{overlap}-{next(counter)}")
            cache.open({"embedding_dim": 512})
            with mock.patch.object(embed_module, "_batches", functools.partial(embed_module._batches, overlap=overlap)):
                embed_to_cache(cache, items, model, processor, dtype, 32, default_workers(-1), 4096, progress=False)

        # Both CPU decoding policies, whichever this CPU's rule picks (embed.decode_beside_forward): worker
        # processes beside the forward, and threads between forwards.
        forward, through, fraction, beside, between = fraction_of_forward(
            lambda dtype=dtype: forward_all(model, pixels, dtype), end_to_end, len(items),
            beside=functools.partial(end_to_end, overlap=True), between=functools.partial(end_to_end, overlap=False))
        figures.update({
            "embed_cpu_decoding_policy": "beside" if embed_module.decode_beside_forward(torch.device("cpu"))
            else "between", "embed_cpu_avx512": embed_module.avx512_cpu(),
            f"embed_fraction_of_forward_decoding_between_forwards{suffix}": between,
            f"embed_grid_speedup_vs_seed{suffix}": seconds["seed"] / seconds[name],
            f"embed_forward_images_per_second{suffix}": forward,
            f"embed_end_to_end_images_per_second{suffix}": through,
            f"embed_fraction_of_forward{suffix}": fraction,
            f"embed_fraction_of_forward_decoding_beside_forward{suffix}": beside,
        })
    return figures


def _project_pass(cache_root: Path, model_dir: Path, items: list, dtype: torch.dtype):
    """One model through the project's embed: (seconds with loading, end-to-end images/s, model, processor)."""
    started = time.perf_counter()
    model, processor = load_backbone(resolve_backbone(str(model_dir)), torch.device("cpu"))
    cache = EmbeddingCache(cache_root)
    cache.open({"embedding_dim": 512})
    loaded = time.perf_counter()
    embed_to_cache(cache, items, model, processor, dtype, 32, default_workers(-1), 4096, progress=False)
    done = time.perf_counter()
    return done - started, len(items) / (done - loaded), model, processor
