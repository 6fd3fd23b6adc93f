"""Synthetic stand-ins at AVA's size: 512-d cached embeddings with AVA-like scores, and a full-size cache."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from clip_aesthetics.embedding.features import Dataset


AVA_ROWS, SEED_TRAIN = 255_530, 229_971
MEAN, STD = 5.38, 0.73  # AVA's mean and spread of mean scores


def embeddings_and_scores(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """CLIP-like embeddings (offset, correlated) whose linear signal explains most of the score."""
    rng = np.random.default_rng(seed)
    offset = rng.normal(0, 0.2, 512).astype(np.float32)
    mixing = rng.normal(0, 0.4 / np.sqrt(64), (64, 512)).astype(np.float32)  # per-dim spread ~0.4, as CLIP
    x = rng.standard_normal((n, 64), dtype=np.float32) @ mixing
    x += rng.normal(0, 0.08, (n, 512)).astype(np.float32) + offset
    signal = x @ rng.normal(0, 1, 512).astype(np.float32)
    signal = (signal - signal.mean()) / signal.std()
    scores = MEAN + STD * (0.85 * signal + 0.53 * rng.standard_normal(n))
    return x.astype(np.float16).astype(np.float32), np.clip(scores, 1.5, 9.5)


def dataset(seed: int, val_fraction: float = 0.05) -> Dataset:
    """The seed split's sizes: 229,971 train (of which val_fraction is val) and 25,559 test."""
    from clip_aesthetics.embedding.features import Dataset, SplitFeatures  # here: the GPU script needs none of it

    x, y = embeddings_and_scores(AVA_ROWS, seed)
    n_val = round(SEED_TRAIN * val_fraction)
    n_train = SEED_TRAIN - n_val
    ids = np.arange(AVA_ROWS)
    cut = [(0, n_train), (n_train, SEED_TRAIN), (SEED_TRAIN, AVA_ROWS)]
    parts = [SplitFeatures(ids[a:b], x[a:b], y[a:b]) for a, b in cut]
    import pandas as pd

    return Dataset(*parts, skipped=pd.DataFrame({"image_id": [], "reason": []}))


def full_size_cache(folder: Path) -> tuple[Path, Path, Path]:
    """An AVA folder with 255,530 labelled rows and a complete float16 cache of 512-d embeddings."""
    from clip_aesthetics.backbones.families import resolve_backbone, save_random_clip
    from clip_aesthetics.embedding.filling import cache_for

    ava, cache_dir = folder / "ava", folder / "cache"
    (ava / "image").mkdir(parents=True, exist_ok=True)
    from PIL import Image

    Image.new("RGB", (8, 8)).save(ava / "image" / "1.jpg")
    x, y = embeddings_and_scores(AVA_ROWS, 2)
    k = np.arange(1, 11)
    weights = np.exp(-((k[None, :] - y[:, None]) ** 2) / (2 * 1.3 ** 2))
    votes = np.rint(200 * weights / weights.sum(axis=1, keepdims=True)).astype(int)
    votes[votes.sum(axis=1) == 0, 4] = 1
    ids = np.arange(1, AVA_ROWS + 1)
    table = np.column_stack([ids, ids, votes, np.zeros((AVA_ROWS, 3), int)])
    np.savetxt(ava / "AVA.txt", table, fmt="%d")
    clip = save_random_clip(folder / "clip-tiny", "tiny", projection_dim=512)
    cache = cache_for(cache_dir, resolve_backbone(str(clip)), ava / "image", "float32")
    cache.open({"model_id": str(clip), "revision": "synthetic", "image_dir": str(ava / "image"), "embedding_dim": 512})
    for start in range(0, AVA_ROWS, 4096):
        stop = min(start + 4096, AVA_ROWS)
        cache.add_shard(ids[start:stop], x[start:stop], np.full((stop - start, 2), -1), [], np.zeros((0, 2)), [])
    return ava, clip, cache_dir


def texture(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A colour image with natural images' spectrum (amplitude ~ 1/frequency): detail at every scale,
    the content where decoding and resampling differences show most."""
    fy, fx = np.fft.fftfreq(height)[:, None], np.fft.rfftfreq(width)[None, :]
    frequency = np.sqrt(fx ** 2 + fy ** 2)
    frequency[0, 0] = 1.0
    channels = []
    for _ in range(3):
        spectrum = (rng.normal(size=frequency.shape) + 1j * rng.normal(size=frequency.shape)) / frequency
        channel = np.fft.irfft2(spectrum, s=(height, width))
        channels.append(((channel - channel.mean()) / channel.std()).astype(np.float32))
    mixing = rng.normal(size=(3, 3)) * 0.3 + np.eye(3)
    pixels = np.tensordot(np.stack(channels, -1), mixing, axes=([2], [1])) * 0.18 + rng.uniform(0.3, 0.7, 3)
    return (np.clip(pixels, 0, 1) * 255).astype(np.uint8)


def photo_like_jpegs(folder: Path, n: int, long_side: tuple[int, int], seed: int) -> list[tuple[Path, float]]:
    """`n` JPEGs (quality 90) with a long side in the given range, 4:3 to 3:2, landscape and portrait:
    even ones are the sample data's scored pictures (smooth), odd ones textures (score NaN)."""
    from PIL import Image

    from clip_aesthetics.data.sample_data import _picture

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for index in range(n):
        long = int(rng.uniform(*long_side))
        short = int(long / rng.uniform(4 / 3, 3 / 2))
        width, height = (long, short) if rng.random() < 0.7 else (short, long)
        if index % 2 == 0:
            pixels, score = _picture(rng, width, height)
        else:
            pixels, score = texture(rng, width, height), float("nan")
        path = folder / f"{index:05d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        made.append((path, score))
    return made
