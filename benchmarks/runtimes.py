"""The scorer on each runtime, side by side in one run: `bench.py --only runtimes`.

ViT-B/32 and ViT-B/16 at openai's sizes (random weights) with a linear head, on generated 500x400 JPEGs. For torch
eager float32 (the baseline), torch bfloat16 where the CPU computes it natively, and ONNX Runtime float32 and int8
(dynamic quantisation, as `clip-aesthetics export --quantize int8` makes it):
- forward images/s (the model on ready pixels) and its ratio to torch eager float32's forward;
- end to end images/s (files -> scores: decode, resize, forward) and its ratio to torch float32 end to end, and
  as a fraction of its own forward;
- fidelity to torch float32 on the same images (max |score difference|, Spearman);
- the cold start of `clip-aesthetics score ONE_IMAGE --model FOLDER` in a fresh process (importing, loading the
  model, scoring one image: what a user waits for) and that process's peak memory.
Each rate is the best of 3 alternating passes, so that a slow spell of a shared machine does not fall on one side.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from common import best_rates

from clip_aesthetics.backbones.families import resolve_backbone, save_random_clip
from clip_aesthetics.data.sample_data import write_sample_ava
from clip_aesthetics.embedding import precision
from clip_aesthetics.heads.head import HeadSpec, build_head
from clip_aesthetics.heads.metrics import spearman
from clip_aesthetics.images.decode import crop_long_side, load_rgb

PEAK_AND_TIME = """
import sys, time
started = time.perf_counter()
from clip_aesthetics.cli.app import main
code = main(sys.argv[1:])
seconds = time.perf_counter() - started
status = open("/proc/self/status").read()
print("BENCH", seconds, next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")), code)
"""


def _cold_start(model: Path, image: Path, work: Path) -> tuple[float, float]:
    """(seconds from a fresh interpreter to the first score written, peak MiB) of `clip-aesthetics score`."""
    done = subprocess.run([sys.executable, "-c", PEAK_AND_TIME, "score", str(image), "--model", str(model),
                           "--out", str(work / "cold.csv"), "--num-workers", "0"],
                          capture_output=True, text=True, timeout=600, cwd=work)
    line = next(line for line in done.stdout.splitlines() if line.startswith("BENCH"))
    _, seconds, peak_kib, code = line.split()
    assert code == "0", done.stderr[-2000:]
    return float(seconds), int(peak_kib) / 1024


def bench_runtimes(work: Path, quick: bool) -> dict:
    from clip_aesthetics.scoring import onnx_export
    from clip_aesthetics.scoring.model import AestheticScorer, save_scorer, write_artifacts
    from clip_aesthetics.scoring.onnx_model import OnnxScorer, save_model

    n = 32 if quick else 96
    ava = write_sample_ava(work / "ava", n, seed=5, size=(500, 400))
    paths = sorted((ava / "image").glob("*.jpg"))[:n]
    figures = {"runtime_images": len(paths), "runtime_native_bf16": precision.native_bfloat16()}
    for size in ("b32", "b16"):
        clip = save_random_clip(work / f"vit-{size}", size, seed=3)
        source = resolve_backbone(str(clip))
        spec = HeadSpec("linear", 512, "l2", 10.0)
        torch.manual_seed(0)
        head = build_head(spec)
        doc = {"head": spec.to_dict(), "precision": "float32", "decoding": "full",
               "clip": {"model_id": source.model_id, "revision": source.revision}}
        reference = AestheticScorer().load(write_artifacts(work / f"{size}-torch", head.state_dict(), doc), "cpu")
        crops = np.stack([reference_crop(reference, p) for p in paths])
        pixels_torch = torch.from_numpy(crops)
        _spread(head, reference, pixels_torch)  # scores spread over the scale, so that fidelity can be measured
        reference = AestheticScorer().load(write_artifacts(work / f"{size}-torch", head.state_dict(), doc), "cpu")
        torch_model = save_scorer(work / f"{size}-torch-model", head.state_dict(), doc, clip)
        runtimes = {"torch_float32": (reference, torch.float32)}
        if precision.native_bfloat16():
            bf16 = AestheticScorer().load(write_artifacts(work / f"{size}-bf16", head.state_dict(),
                                                          {**doc, "precision": "bfloat16"}), "cpu")
            runtimes["torch_bfloat16"] = (bf16, torch.bfloat16)
        forwards, ends, models = {}, {}, {"torch_float32": torch_model}
        for name, (scorer, dtype) in runtimes.items():
            forwards[name] = lambda s=scorer, d=dtype: _torch_forward(s, pixels_torch, d)
            ends[name] = lambda s=scorer: s.score_paths(paths, progress=False)
        exported = {}
        for weights in ("float32", "int8"):
            started = time.perf_counter()
            artifacts = onnx_export.write_export(reference, work / f"{size}-onnx-{weights}",
                                                 "none" if weights == "float32" else "int8", doc)
            figures[f"runtime_{size}_export_seconds_onnx_{weights}"] = time.perf_counter() - started
            scorer = OnnxScorer().load(artifacts, device="cpu")
            exported[weights] = scorer
            name = f"onnx_{weights}"
            forwards[name] = lambda s=scorer: _onnx_forward(s, crops)
            ends[name] = lambda s=scorer: s.score_paths(paths)
            models[name] = save_model(work / f"{size}-onnx-{weights}-model", artifacts)
            figures[f"runtime_{size}_{name}_standalone_cold_start_seconds"] = _standalone(Path(artifacts["graph"])
                                                                                          .parent, paths[0])
        rates = best_rates({**{f"forward_{k}": v for k, v in forwards.items()},
                             **{f"end_{k}": v for k, v in ends.items()}}, len(paths))
        expected = reference.score_paths(paths)["score"].to_numpy()
        for name in forwards:
            forward, end = rates[f"forward_{name}"], rates[f"end_{name}"]
            figures.update({
                f"runtime_{size}_{name}_forward_images_per_second": forward,
                f"runtime_{size}_{name}_images_per_second": end,
                f"runtime_{size}_{name}_forward_vs_torch_float32": forward / rates["forward_torch_float32"],
                f"runtime_{size}_{name}_vs_torch_float32": end / rates["end_torch_float32"],
                f"runtime_{size}_{name}_fraction_of_forward": end / forward,
            })
            scorer = runtimes[name][0] if name in runtimes else exported[name.removeprefix("onnx_")]
            got = scorer.score_paths(paths)["score"].to_numpy()
            figures[f"runtime_{size}_{name}_max_abs_diff"] = float(np.max(np.abs(got - expected)))
            figures[f"runtime_{size}_{name}_spearman_vs_float32"] = float(spearman(expected, got))
        for name, model in models.items():
            seconds, peak = _cold_start(model, paths[0], work)
            figures[f"runtime_{size}_{name}_cold_start_seconds"] = seconds
            figures[f"runtime_{size}_{name}_cold_start_peak_mib"] = peak
    return figures


def _spread(head, scorer, pixels: torch.Tensor) -> None:
    """Set the head to map the images' embeddings along their first principal direction onto scores of mean 5.5
    and standard deviation 1.5 (a random head on random-weight embeddings gives nearly one score for all)."""
    from clip_aesthetics.embedding.embed import embed_pixels
    from clip_aesthetics.heads.head import prepare
    from clip_aesthetics.images.pixels import ModelPixels

    finish = ModelPixels(scorer.processor, scorer.model.family.pixels).finish
    features = prepare(np.concatenate([embed_pixels(scorer.model, finish(pixels[i:i + 32]), torch.float32)
                                       for i in range(0, len(pixels), 32)]), scorer.spec.embed_norm)
    centred = features - features.mean(0)
    direction = np.linalg.svd(centred, full_matrices=False)[2][0]
    along = centred @ direction
    weight = direction * (0.15 / along.std())
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(weight[None].astype(np.float32)))
        head.bias.fill_(float(0.55 - features.mean(0) @ weight))


def _standalone(folder: Path, image: Path) -> float:
    """Seconds from a fresh interpreter to the score of docs/onnx_standalone.py (onnxruntime, numpy, Pillow only)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, str(Path(__file__).resolve().parents[1] / "docs" / "onnx_standalone.py"),
                    str(folder), str(image)], check=True, capture_output=True, timeout=300)
    return time.perf_counter() - started


def reference_crop(scorer, path: Path) -> np.ndarray:
    """The 8-bit model input the scorer's own path makes of a file (decoded, cut to 8:1, resized, cropped)."""
    from clip_aesthetics.images.pixels import ModelPixels

    return ModelPixels(scorer.processor, scorer.model.family.pixels).crop(crop_long_side(load_rgb(path)))


def _torch_forward(scorer, crops: torch.Tensor, dtype: torch.dtype) -> None:
    from clip_aesthetics.embedding.embed import embed_pixels
    from clip_aesthetics.images.pixels import ModelPixels

    pixels = ModelPixels(scorer.processor, scorer.model.family.pixels)
    for start in range(0, len(crops), 32):
        embed_pixels(scorer.model, pixels.finish(crops[start:start + 32]), dtype)


def _onnx_forward(scorer, crops: np.ndarray) -> None:
    for start in range(0, len(crops), 32):
        scorer.session.run(["score"], {"pixels": crops[start:start + 32]})
