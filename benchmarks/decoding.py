"""The `decoding` section: reduced-size JPEG decoding and bfloat16 against full decoding in float32, cost and
fidelity."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import synthetic
import torch
from common import fast_precisions

from clip_aesthetics.backbones.families import load_backbone, resolve_backbone, save_random_clip
from clip_aesthetics.embedding.embed import embed_pixels
from clip_aesthetics.heads.head import HeadSpec, build_head, predict_scores
from clip_aesthetics.heads.kinds import fit_ridge
from clip_aesthetics.images.decode import load_rgb
from clip_aesthetics.images.pixels import ModelPixels

# A faster path becomes a default only if, against full decoding in float32, a trained head's scores keep a
# Spearman >= 0.999 and no image's embedding moves further (cosine) than re-saving the JPEG at quality 95
# moves it: a change nobody looking at the photos would call a change.
DEFAULT_BAR_SPEARMAN = 0.999


def bench_decoding(work: Path, quick: bool) -> dict:
    """Reduced-size JPEG decoding and bfloat16 against full decoding in float32, on the same images.

    Cost: decoding, and decoding + CLIP's resize and crop (what a decoding worker does), per image on one
    core, for photo-sized JPEGs (640-1024 px) and large ones (2000-4000 px). Fidelity, on the photo-sized ones: the
    model input (PSNR,
    pixel units), the embeddings of a real-sized random ViT-B/32 (cosine) and the scores of heads on them
    (Spearman against full decoding in float32): a ridge head trained on the scored pictures' embeddings,
    and 20 random linear heads. Beside them, the same figures for re-saving each JPEG at quality 95, a
    change nobody looking at the photos would notice.
    """
    from scipy.stats import spearmanr

    photos = synthetic.photo_like_jpegs(work / "photos", 96 if quick else 192, (640, 1024), seed=0)
    large = synthetic.photo_like_jpegs(work / "large", 8 if quick else 16, (2000, 4000), seed=1)
    clip = save_random_clip(work / "vit-b32", "b32", seed=0)
    model, processor = load_backbone(resolve_backbone(str(clip)), torch.device("cpu"))
    to_pixels = ModelPixels(processor)
    figures = {"decode_photos": len(photos), "decode_large_photos": len(large)}
    for label, images in (("", photos), ("_large", large)):
        paths = [path for path, _ in images]
        for decoding, min_short in (("full", None), ("reduced", to_pixels.short)):
            decode = _best_ms(lambda: [load_rgb(p, min_short=min_short) for p in paths], len(paths))
            both = _best_ms(lambda: [to_pixels.crop(load_rgb(p, min_short=min_short)) for p in paths], len(paths))
            figures[f"decode_ms_per_image{label}_{decoding}"] = decode
            figures[f"decode_and_resize_ms_per_image{label}_{decoding}"] = both
        figures[f"decode_speedup{label}_reduced"] = (figures[f"decode_and_resize_ms_per_image{label}_full"]
                                                     / figures[f"decode_and_resize_ms_per_image{label}_reduced"])

    paths = [path for path, _ in photos]
    variants = {"full": [to_pixels(load_rgb(p)) for p in paths],
                "reduced": [to_pixels(load_rgb(p, min_short=to_pixels.short)) for p in paths],
                "resave_q95": [to_pixels(_resaved(p, 95)) for p in paths]}
    inputs = {name: torch.from_numpy(np.stack(arrays)) for name, arrays in variants.items()}
    embeddings = {name: _embed_all(model, x, torch.float32) for name, x in inputs.items()}
    if "bfloat16" in fast_precisions():
        inputs["bfloat16"] = inputs["full"]
        embeddings["bfloat16"] = _embed_all(model, inputs["full"], torch.bfloat16)
    reference = embeddings["full"]
    scores = np.array([score for _, score in photos])
    scored = np.flatnonzero(~np.isnan(scores))
    train, val = scored[: len(scored) // 2], scored[len(scored) // 2: 3 * len(scored) // 4]
    spec = HeadSpec("ridge", 512, "none", 10.0)
    head = build_head(spec)
    fit_ridge(head, reference[train], scores[train] / 10, reference[val], scores[val] / 10)
    random_heads = np.random.default_rng(1).normal(size=(20, 512))
    std = torch.tensor(processor.image_std).reshape(1, 3, 1, 1)
    names = {"full": None, "reduced": "decoding_reduced", "resave_q95": "resave_q95", "bfloat16": "precision_bf16"}
    trained = predict_scores(head, spec, reference)
    figures["fidelity_trained_head_spread"] = float(np.std(trained))
    for name, prefix in names.items():
        if prefix is None or name not in embeddings:
            continue
        error = ((inputs[name] - inputs["full"]) * std).square().mean(dim=(1, 2, 3)).numpy()
        psnr = 10 * np.log10(1.0 / np.maximum(error, 1e-12))
        x = embeddings[name]
        cosine = (x * reference).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(reference, axis=1)
        randoms = [spearmanr(x @ h, reference @ h)[0] for h in random_heads]
        ours = predict_scores(head, spec, x)
        figures.update({
            f"{prefix}_input_psnr_db_min": float(psnr.min()), f"{prefix}_input_psnr_db_mean": float(psnr.mean()),
            f"{prefix}_embedding_cosine_min": float(cosine.min()),
            f"{prefix}_embedding_cosine_mean": float(cosine.mean()),
            f"{prefix}_score_spearman_trained_head": float(spearmanr(ours, trained)[0]),
            f"{prefix}_score_max_abs_change_trained_head": float(np.abs(ours - trained).max()),
            f"{prefix}_score_spearman_random_heads_min": float(min(randoms)),
            f"{prefix}_score_spearman_random_heads_mean": float(np.mean(randoms)),
        })
    for prefix in ("decoding_reduced", "precision_bf16"):
        if f"{prefix}_embedding_cosine_min" in figures:
            figures[f"{prefix}_meets_default_bar"] = bool(
                figures[f"{prefix}_score_spearman_trained_head"] >= DEFAULT_BAR_SPEARMAN
                and figures[f"{prefix}_embedding_cosine_min"] >= figures["resave_q95_embedding_cosine_min"])
    return figures


def _best_ms(work, n: int, rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best / n * 1000


def _resaved(path: Path, quality: int):
    import io

    from clip_aesthetics.images.decode import decode_rgb

    buffer = io.BytesIO()
    load_rgb(path).save(buffer, format="JPEG", quality=quality)
    return decode_rgb(buffer.getvalue())


def _embed_all(model, pixels: torch.Tensor, dtype: torch.dtype) -> np.ndarray:
    """Embeddings as the project computes and caches them (float16 storage included on every side)."""
    return np.concatenate([embed_pixels(model, pixels[start:start + 32], dtype)
                           for start in range(0, len(pixels), 32)])
