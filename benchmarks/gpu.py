"""GPU figures on a real-sized, randomly initialised ViT-B/16: forward-only and end-to-end images/s.

    PYTHONPATH=src python3 benchmarks/gpu.py --out gpu.json      (run by benchmarks/gpu.sh)

Forward-only: pre-made pixel tensors on the GPU, bf16 and fp16 autocast, a large batch. End-to-end:
generated AVA-like JPEGs (about 500 x 400) on disk -> the project's embed -> cache, at two worker
counts, beside decoding alone (the same DataLoader without the model), which says whether decoding
is the bound.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from clip_aesthetics.cache import EmbeddingCache
from clip_aesthetics.clip import load_clip, resolve_clip, save_random_clip
from clip_aesthetics.embed import _ImageSources, _batches, embed_to_cache
from clip_aesthetics.images import load_rgb
from clip_aesthetics.sample_data import write_sample_ava


def forward_rate(model, dtype: torch.dtype, batch: int, seconds: float = 10.0) -> float:
    pixels = torch.randn(batch, 3, 224, 224, device="cuda")
    with torch.inference_mode(), torch.autocast("cuda", dtype=dtype):
        for _ in range(3):
            model(pixel_values=pixels)
        torch.cuda.synchronize()
        started, done = time.perf_counter(), 0
        while time.perf_counter() - started < seconds:
            model(pixel_values=pixels)
            done += batch
        torch.cuda.synchronize()
    return done / (time.perf_counter() - started)


def image_files(folder: Path, unique: int, total: int) -> list[tuple[int, Path]]:
    """`total` JPEG files, `unique` of them generated and the rest copies (decoding costs per file)."""
    write_sample_ava(folder, unique, seed=0, size=(500, 400))
    sources = sorted((folder / "image").glob("*.jpg"))
    items = []
    for index in range(total):
        path = folder / "image" / f"copy-{index}.jpg"
        shutil.copyfile(sources[index % len(sources)], path)
        items.append((index, path))
    return items


def decode_rate(items, processor, workers: int, batch: int) -> float:
    dataset = _ImageSources(items, load_rgb, processor, stamp=True)
    started = time.perf_counter()
    for _ in _batches(dataset, batch, workers, threads=False, pin=True):
        pass
    return len(items) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("gpu.json"))
    parser.add_argument("--images", type=int, default=8192)
    args = parser.parse_args()
    figures = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "cpu_cores": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clip = save_random_clip(work / "vit-b16", "b16")
        model, processor = load_clip(resolve_clip(str(clip)), torch.device("cuda"))
        for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
            figures[f"forward_only_images_per_second_{name}_batch1024"] = forward_rate(model, dtype, 1024)
        items = image_files(work / "ava", 512, args.images)
        for workers in (8, min(16, os.cpu_count() or 8) - 1):
            figures[f"decode_only_images_per_second_{workers}_workers"] = decode_rate(items, processor, workers, 256)
            cache = EmbeddingCache(work / f"cache-{workers}")
            cache.open({"embedding_dim": 512})
            started = time.perf_counter()
            embed_to_cache(cache, items, model, processor, torch.float16, 256, workers, 4096, progress=False)
            figures[f"end_to_end_images_per_second_fp16_{workers}_workers"] = len(items) / (time.perf_counter() - started)
    print(json.dumps(figures, indent=2))
    args.out.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
