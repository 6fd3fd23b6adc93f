"""GPU figures for real-sized, randomly initialised ViT-B/16 and ViT-B/32 (openai's sizes), and forward-only
figures for the larger backbones (CLIP ViT-L/14, SigLIP so400m at 384, DINOv2-L).

    bash benchmarks/gpu.sh            (under 5 minutes; writes gpu.json, or $OUT/gpu.json)

Per model: forward-only images/s (pixel tensors already on the GPU, float16 and bfloat16, batch 1024);
ONNX Runtime's forward of the model exported as `clip-aesthetics export` makes it (float32; on the CUDA execution
provider when onnxruntime-gpu is installed and sees the GPU, the provider recorded beside the figure; skipped with
the reason when onnxruntime is not installed); end-to-end images/s through the project's embed (files -> decoding
workers -> GPU -> cache, float16, batch 256) with full and with reduced decoding; and decoding alone with the same
workers (the same loader, no model), at this machine's core count. End-to-end near decoding alone means decoding is the
bound; near the forward, the GPU is. Images: photo-like JPEGs, 640-1024 px (smooth pictures and
textures), `--unique` generated and copied to `--images` files so that each file is decoded for real.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import synthetic  # noqa: E402

from clip_aesthetics.backbones.families import (  # noqa: E402
    REAL_SIZES,
    load_backbone,
    resolve_backbone,
    save_random_backbone,
    save_random_clip,
)
from clip_aesthetics.embedding.cache import EmbeddingCache  # noqa: E402
from clip_aesthetics.embedding.embed import _batches, _ImageSources, default_workers, embed_to_cache  # noqa: E402
from clip_aesthetics.images.decode import load_rgb  # noqa: E402

TARGET_FORWARD_B16 = 8000.0  # images/s, float16/bfloat16, one H100/H200-class GPU
TARGET_END_TO_END_OF_DECODING = 0.8


def forward_rate(model, dtype: torch.dtype, batch: int, seconds: float, side: int = 224) -> float:
    pixels = torch.randn(batch, 3, side, side, device="cuda")
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
    made = [path for path, _ in synthetic.photo_like_jpegs(folder / "unique", unique, (640, 1024), seed=0)]
    items = []
    for index in range(total):
        path = folder / f"{index:06d}.jpg"
        shutil.copyfile(made[index % len(made)], path)
        items.append((index, path))
    return items


def decode_rate(items, processor, workers: int, batch: int, decoding: str) -> float:
    dataset = _ImageSources(items, load_rgb, processor, stamp=True, decoding=decoding)
    started = time.perf_counter()
    for _ in _batches(dataset, batch, workers, threads=False, device=torch.device("cuda")):
        pass
    return len(items) / (time.perf_counter() - started)


def export_graph(clip: Path, work: Path) -> Path:
    """`clip` with a random linear head, exported to ONNX (float32) as `clip-aesthetics export` does: the graph."""
    from clip_aesthetics.heads.head import HeadSpec, build_head
    from clip_aesthetics.scoring import onnx_export
    from clip_aesthetics.scoring.model import AestheticScorer, write_artifacts

    source = resolve_backbone(str(clip))
    dim = load_backbone(source, torch.device("cpu"))[0].embedding_dim
    spec = HeadSpec("linear", dim, "l2", 10.0)
    doc = {"head": spec.to_dict(), "precision": "float32", "decoding": "full",
           "clip": {"model_id": source.model_id, "revision": source.revision}}
    scorer = AestheticScorer().load(write_artifacts(work / "torch", build_head(spec).state_dict(), doc), "cpu")
    return Path(onnx_export.write_export(onnx_export.torch_float32(scorer), work / "onnx")["graph"])


def onnx_forward_rate(graph: Path, side: int, batch: int, seconds: float) -> tuple[float, str]:
    """(images/s, execution provider) of an exported graph on ready 8-bit pixels, on the provider ONNX Runtime
    offers here for a GPU (CUDA when onnxruntime-gpu sees one, else the CPU)."""
    import numpy as np
    import onnxruntime

    from clip_aesthetics.scoring.onnx_model import providers_for

    session = onnxruntime.InferenceSession(str(graph), providers=providers_for("cuda"))
    pixels = np.random.default_rng(0).integers(0, 255, (batch, side, side, 3), dtype=np.uint8)
    session.run(["score"], {"pixels": pixels})  # warm-up
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        session.run(["score"], {"pixels": pixels})
        done += batch
    return done / (time.perf_counter() - started), session.get_providers()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("gpu.json"))
    parser.add_argument("--images", type=int, default=8192)
    parser.add_argument("--unique", type=int, default=512)
    parser.add_argument("--forward-seconds", type=float, default=6.0)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("error: no CUDA GPU visible to torch (torch.cuda.is_available() is False); this script measures a GPU")
    workers = default_workers(-1)
    figures = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "cpu_cores": os.cpu_count(),
               "decoding_workers": workers, "images": args.images}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        items = image_files(work / "images", args.unique, args.images)
        figures["generate_seconds"] = time.perf_counter() - started
        for size in ("b16", "b32"):
            clip = save_random_clip(work / f"vit-{size}", size)
            model, processor = load_backbone(resolve_backbone(str(clip)), torch.device("cuda"))
            for name, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
                figures[f"{size}_forward_images_per_second_{name}"] = forward_rate(model, dtype, 1024,
                                                                                   args.forward_seconds)
            try:
                rate, provider = onnx_forward_rate(export_graph(clip, work / f"onnx-{size}"), 224, 256,
                                                   args.forward_seconds / 2)
                figures.update({f"{size}_onnx_float32_forward_images_per_second": rate, "onnx_provider": provider})
            except ImportError as error:
                figures["onnx_provider"] = f"skipped: {error} (pip install onnxruntime-gpu onnx)"
            for decoding in ("full", "reduced"):
                decode = decode_rate(items, processor, workers, 256, decoding)
                cache = EmbeddingCache(work / f"cache-{size}-{decoding}")
                cache.open({"embedding_dim": 512})
                started = time.perf_counter()
                embed_to_cache(cache, items, model, processor, torch.float16, 256, workers, 4096, progress=False,
                               decoding=decoding)
                through = len(items) / (time.perf_counter() - started)
                figures.update({f"{size}_decode_only_images_per_second_{decoding}": decode,
                                f"{size}_end_to_end_images_per_second_fp16_{decoding}": through,
                                f"{size}_end_to_end_fraction_of_decoding_{decoding}": through / decode})
            del model
            torch.cuda.empty_cache()
        for kind in ("l14", "siglip-so400m", "dinov2-l"):  # forward only: the decoding side is the B models'
            folder = save_random_backbone(work / kind, kind)
            model, _ = load_backbone(resolve_backbone(str(folder)), torch.device("cuda"))
            for name, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
                figures[f"{kind}_forward_images_per_second_{name}"] = forward_rate(
                    model, dtype, 256, args.forward_seconds / 2, side=REAL_SIZES[kind][2])
            del model
            torch.cuda.empty_cache()
    best_forward = max(figures["b16_forward_images_per_second_fp16"], figures["b16_forward_images_per_second_bf16"])
    figures["target_b16_forward_met"] = best_forward >= TARGET_FORWARD_B16
    figures["target_end_to_end_met"] = all(figures[f"{size}_end_to_end_fraction_of_decoding_{decoding}"]
                                           >= TARGET_END_TO_END_OF_DECODING
                                           for size in ("b16", "b32") for decoding in ("full", "reduced"))
    text = json.dumps(figures, indent=2)
    print(text)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
