"""A dataset's images + a backbone -> the embedding cache filled (in this process or on an engine), in the
precision chosen for this device; or an existing cache located for training without embedding."""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from clip_aesthetics.backbones.families import BackboneSource, embedding_dim, family_of, load_backbone, read_config
from clip_aesthetics.data.ava import DatasetError
from clip_aesthetics.data.labels import Labelled
from clip_aesthetics.embedding import precision as precisions
from clip_aesthetics.embedding.cache import EmbeddingCache
from clip_aesthetics.embedding.embed import batch_for, default_workers, embed_to_cache, pick_device
from clip_aesthetics.images.decode import ImageError, load_source
from clip_aesthetics.settings import CacheSettings, EmbedSettings

PRECISIONS = precisions.PRECISIONS
CONTENT_KEYED = "images-by-content"  # the cache of labels tables' images, keyed by content, shared by every table


def cache_for(cache_dir: Path, source: BackboneSource, images: Path | None, precision: str,
              decoding: str = "full") -> EmbeddingCache:
    """One cache per (CLIP id + revision, image folder, compute precision, decoding); the target norm is not
    part of it. `images` None: the content-keyed cache of every labels table's images (one per backbone, so
    an image is embedded once whatever table or layout names it). Full decoding keeps the plain precision
    folder (caches written before `decoding` existed)."""
    model_key = re.sub(r"[^\w.-]+", "_", source.model_id.strip("/"))[-60:] + "@" + source.revision[:16]
    folder_key = CONTENT_KEYED if images is None else \
        "images-" + hashlib.sha256(str(images.resolve()).encode()).hexdigest()[:12]
    leaf = precision if decoding == "full" else f"{precision}-{decoding}"
    return EmbeddingCache(Path(cache_dir) / model_key / folder_key / leaf)


@dataclass
class EmbedReport:
    source: BackboneSource
    cache: EmbeddingCache
    n_images: int
    n_processed: int  # images embedded (or found broken) by this call; 0 when the cache was complete
    seconds: float
    device: str
    labelled: Labelled | None = None  # the dataset as read before embedding, so training need not read it again
    precision_reason: str = ""  # why the embeddings are in this precision (printed and logged)

    @property
    def precision(self) -> str:
        """The dtype the cached embeddings were computed in (part of the cache's key)."""
        return str(self.cache.manifest().get("precision", "float32"))

    @property
    def decoding(self) -> str:
        """How the images were decoded, full or reduced (part of the cache's key)."""
        return str(self.cache.manifest().get("decoding", "full"))


def embed_dataset(labelled: Labelled, embed: EmbedSettings, source: BackboneSource, progress: bool = True,
                  elsewhere: Callable | None = None) -> EmbedReport:
    """Make sure every labelled image has a cached embedding or a recorded failure: in this process, or through
    `elsewhere` (an engine's embed_missing, engines.embedder), whose tasks write shards into the same cache."""
    images = labelled.images
    device = pick_device(embed.device)
    loaded: list = []  # the backbone, loaded once: to measure precision=auto, or to embed

    def backbone():
        if not loaded:
            loaded.extend(load_backbone(source, device))
        return loaded

    precision, reason = auto_precision(embed, source, images, device, backbone)
    dtype = getattr(torch, precision)
    cache = open_cache(embed.cache_dir, source, images, precision, embed.decoding, embedding_dim(source))
    todo = to_embed(cache, list(labelled.sources.items()), images)
    started = time.perf_counter()
    batch = embed.embed_batch_size or batch_for(device)
    if todo and elsewhere is not None:
        elsewhere(cache.root, todo, source.folder, precision, batch, embed.shard_size, embed.spark_partitions,
                  embed.decoding)
    elif todo:  # a complete cache does no backbone work at all, not even loading the model
        model, processor = backbone()
        embed_to_cache(cache, todo, model, processor, dtype, batch,
                       default_workers(embed.num_workers), embed.shard_size, progress, embed.decoding)
    return EmbedReport(source, cache, len(labelled.sources), len(todo), time.perf_counter() - started, str(device),
                       labelled, reason)


def open_cache(cache_dir: Path, source: BackboneSource, images: Path | None, precision: str, decoding: str,
               dim: int) -> EmbeddingCache:
    """The cache of these images for this backbone, created or checked against its manifest."""
    cache = cache_for(cache_dir, source, images, precision, decoding)
    cache.open({"model_id": source.model_id, "revision": source.revision,
                "image_dir": str(images.resolve()) if images is not None else CONTENT_KEYED,
                "embedding_dim": dim, "precision": precision, "decoding": decoding})
    return cache


def to_embed(cache: EmbeddingCache, items: list, images: Path | None) -> list:
    """The (id, source) pairs without a current answer in the cache. By content an entry never goes stale: only
    a file folder's entries are checked against file stamps."""
    answers = cache.answers()
    return still_failing_left_out(cache.missing(items, answers, stamps=images is not None), answers)


def precision_for(embed: CacheSettings, source: BackboneSource, device, load=None) -> precisions.Choice:
    """The precision this device embeds `source`'s images in, as asked or as precision=auto decides it."""
    size = precisions.size_of(read_config(source.folder), family_of(source.folder).name)
    return precisions.choose(embed.precision, device, size=size, load=load)


def auto_precision(embed: CacheSettings, source: BackboneSource, images: Path | None, device,
                   load=None) -> tuple[str, str]:
    """The precision to embed in: as asked; for `auto`, a cache of these images already on disk in a precision this
    device computes natively (float32 anywhere, bfloat16 where the CPU has it: one embedded on another machine, or
    before a measurement) is completed instead of starting over, without measuring anything; else this device's
    choice (measured with `load()`'s backbone where it must be). Returns (precision, why)."""
    if embed.precision != "auto":
        choice = precision_for(embed, source, device)
        return choice.name, choice.reason
    known = precision_for(embed, source, device)  # from an earlier measurement, if any: never measures
    native = set(PRECISIONS) if device.type == "cuda" else {"float32"} | (
        {"bfloat16"} if device.type == "cpu" and precisions.native_bfloat16() else set())
    found = next((p for p, _ in existing_caches(embed, source, images, known.name) if p in native), None)
    if found is not None:
        return found, known.reason if found == known.name else (
            f"{found} (precision=auto: completing the {found} cache of these images already on disk, which this "
            f"{device.type} computes natively)")
    choice = precision_for(embed, source, device, load)
    return choice.name, choice.reason


def existing_caches(embed: CacheSettings, source: BackboneSource, images: Path | None, first: str):
    """(precision, cache) of the caches of these images already on disk for `embed.decoding`, `first` first."""
    for precision in dict.fromkeys((first, *PRECISIONS)):
        cache = cache_for(embed.cache_dir, source, images, precision, embed.decoding)
        if cache.manifest_path.exists():
            yield precision, cache


def still_failing_left_out(todo: list[tuple[int, Path | bytes]], answers: dict) -> list[tuple[int, Path | bytes]]:
    """Images that failed before are decoded again (cheap, no CLIP): those failing for the same reason stay as
    recorded, so a cache whose only gaps are broken files does no CLIP work; repaired ones are embedded."""
    kept = []
    for image_id, path in todo:
        answer = answers.get(image_id)
        if answer is not None and answer.reason is not None:
            try:
                load_source(path)
            except ImageError as error:
                if str(error) == answer.reason:
                    continue
        kept.append((image_id, path))
    return kept


def locate_cache(labelled: Labelled, embed: CacheSettings, source: BackboneSource) -> EmbedReport:
    """The cache an earlier `embed` wrote for this CLIP model and dataset's images, without embedding.

    Prefers the precision this machine would embed in; else any precision found (embedded on a GPU,
    trained on a CPU, say). The decoding is as asked: full and reduced embeddings are never mixed up.
    """
    images = labelled.images
    wanted = precision_for(embed, source, pick_device(embed.device)).name  # without measuring: no model loaded
    _, cache = next(existing_caches(embed, source, images, wanted), (None, None))
    if cache is None:
        what = images if images is not None else f"the images of {labelled.location}"
        raise DatasetError(
            f"no embeddings of {what} for {source.model_id} (revision {source.revision}) under {embed.cache_dir}; "
            "run `clip-aesthetics embed` (or the main entry point) with the same clip, dataset and cache_dir first"
        )
    found = str(cache.manifest().get("precision", "float32"))
    why = f"{found} (the cache `embed` wrote{'' if found == wanted else f'; {wanted} is what this machine would pick'})"
    return EmbedReport(source, cache, 0, 0, 0.0, "none (cached)", labelled, precision_reason=why)
