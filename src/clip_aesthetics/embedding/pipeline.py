"""A dataset (AVA or a labels table, labels.Labelled) + a backbone -> embedding cache -> labelled feature arrays per
split."""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from typing import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from clip_aesthetics.data import ava
from clip_aesthetics.data.ava import DatasetError
from clip_aesthetics.embedding.cache import EmbeddingCache
from clip_aesthetics.backbones.families import BackboneSource, embedding_dim, load_backbone
from clip_aesthetics.settings import CacheSettings, DataSettings, EmbedSettings
from clip_aesthetics.embedding.embed import batch_for, default_workers, embed_to_cache, pick_device, pick_dtype, precision_choice, scoring_dtype
from clip_aesthetics.images.decode import ImageError, load_source
from clip_aesthetics.data.labels import Labelled, read_dataset
from clip_aesthetics.data.splits import split_labelled


PRECISIONS = ("float32", "float16", "bfloat16")


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
    precision, reason = auto_precision(embed, source, images, device)
    dtype = getattr(torch, precision)
    cache = open_cache(embed.cache_dir, source, images, precision, embed.decoding, embedding_dim(source))
    todo = to_embed(cache, list(labelled.sources.items()), images)
    started = time.perf_counter()
    batch = embed.embed_batch_size or batch_for(device)
    if todo and elsewhere is not None:
        elsewhere(cache.root, todo, source.folder, precision, batch, embed.shard_size, embed.spark_partitions,
                      embed.decoding)
    elif todo:  # a complete cache does no CLIP work at all, not even loading the model
        model, processor = load_backbone(source, device)
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


def auto_precision(embed: CacheSettings, source: BackboneSource, images: Path | None, device) -> tuple[str, str]:
    """The precision to embed in: as asked; for `auto`, this device's choice unless a cache of these images
    already exists in another precision the device runs well (a float32 cache from before bfloat16 became
    the CPU default, one embedded on another machine): that one is completed instead of starting over.
    Returns (precision, why)."""
    dtype, reason = precision_choice(embed.precision, device)
    chosen = str(dtype).removeprefix("torch.")
    if embed.precision != "auto":
        return chosen, reason
    runs_well = (p for p, _ in existing_caches(embed, source, images, chosen)
                 if str(scoring_dtype(p, device)).removeprefix("torch.") == p)
    found = next(runs_well, chosen)
    return found, reason if found == chosen else (f"{found} (precision=auto: completing the {found} cache of these "
                                                  f"images already on disk, which this {device.type} runs well)")


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
    wanted = str(pick_dtype(embed.precision, pick_device(embed.device))).removeprefix("torch.")
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


@dataclass
class SplitFeatures:
    """One split joined to the cache by image id: row i of `embeddings` is the image `ids[i]`."""

    ids: np.ndarray
    embeddings: np.ndarray
    scores: np.ndarray  # on the data's scale (AVA: mean_score, 1-10)
    votes: np.ndarray | None = None  # each image's rating distribution over 1..K (rows sum to 1), when voted
    pairs: "PairRows | None" = None  # a pair table's pairs of this split, as rows of `embeddings`


@dataclass
class PairRows:
    """Pairs as row numbers into one split's embeddings: a[i] against b[i], preference[i] the share preferring a."""

    a: np.ndarray
    b: np.ndarray
    preference: np.ndarray


@dataclass
class Dataset:
    train: SplitFeatures
    val: SplitFeatures
    test: SplitFeatures
    skipped: pd.DataFrame  # image_id, reason (and image, for a table): every labelled image left out, and why
    score_range: tuple[float, float] = ava.SCORE_RANGE
    threshold: float = 5.0  # accuracy's good/bad line
    norm_target: tuple[float, float] = (10.0, 0.0)  # (scale, offset) of norm=true targets: AVA's /10
    split: ava.Split | None = None  # the split the parts were made from (by image id, before joining)
    vote_source: str = ""  # where the rating distributions come from (AVA's c1..c10, vote_columns), or ""

    @property
    def offers(self) -> set[str]:
        """What a head can train on: scores, votes, pairs (as labels.Labelled.offers)."""
        if self.train.pairs is not None:
            return {"pairs"}
        return {"scores"} | ({"votes"} if self.bins >= 2 else set())

    @property
    def bins(self) -> int:
        """The number of ratings the votes are over (0 without votes)."""
        return 0 if self.train.votes is None else int(self.train.votes.shape[1])

    def target(self, norm: bool) -> tuple[float, float]:
        """(scale, offset) of the head's targets: score = output * scale + offset."""
        return self.norm_target if norm else (1.0, 0.0)


def load_dataset(data: DataSettings, cache: EmbeddingCache, labelled: Labelled | None = None) -> Dataset:
    """Split the dataset by image id, then join each split to cached embeddings by id, never by position."""
    labelled = labelled if labelled is not None else read_dataset(data)
    split = dataset_split(labelled, data)
    cached = cache.load()
    position = pd.Index(cached.ids)
    failures = cached.failures.set_index("image_id")["reason"]
    names = labelled.frame.set_index("image_id")["image"]
    skipped = [pd.DataFrame({"image_id": split.no_votes, "reason": "no votes in AVA.txt"}), labelled.skipped]
    parts = {}
    for name in ("train", "val", "test"):
        frame = getattr(split, name)
        rows = position.get_indexer(frame["image_id"])
        missing = frame["image_id"].to_numpy()[rows < 0]
        unexplained = missing[~np.isin(missing, failures.index)]
        if len(unexplained):
            raise DatasetError(
                f"{len(unexplained)} {name} image(s) have no embedding in {cache.root} (e.g. id {unexplained[0]}); "
                "the embed step did not finish: run `clip-aesthetics embed` again with the same clip and dataset"
            )
        skipped.append(pd.DataFrame({"image_id": missing, "image": names.reindex(missing).to_numpy(),
                                     "reason": failures.reindex(missing).to_numpy()}))
        kept = rows >= 0
        ids = frame["image_id"].to_numpy()[kept]
        pairs = None
        if split.pairs is not None:  # a pair whose image could not be embedded is set aside, saying which
            pairs, lost = pair_rows(split.pairs[name], ids, failures, names)
            skipped.append(lost)
        parts[name] = SplitFeatures(ids, cached.embeddings[rows[kept]].astype(np.float32),
                                    frame["mean_score"].to_numpy()[kept], distributions(labelled, ids), pairs)
    for name in ("train", "test"):
        if len(parts[name].ids) < 2:
            raise DatasetError(f"{len(parts[name].ids)} usable {name} image(s) in {labelled.location} once the images "
                               "that could not be decoded are left out (see data/skipped.csv); a split needs two")
    skipped = pd.concat([frame for frame in skipped if len(frame)], ignore_index=True) if any(
        len(frame) for frame in skipped) else pd.DataFrame(columns=["image_id", "reason"])
    if not labelled.names_images:
        skipped = skipped.drop(columns=["image"], errors="ignore")
    return Dataset(**parts, skipped=skipped, score_range=labelled.score_range, threshold=labelled.threshold,
                   norm_target=labelled.target(True), split=split,
                   vote_source=", ".join(labelled.votes.columns) if labelled.votes is not None else "")


def pair_rows(pairs: pd.DataFrame, ids: np.ndarray, failures: pd.Series, names: pd.Series
              ) -> tuple[PairRows, pd.DataFrame]:
    """(the pairs whose two images have embeddings, as rows of `ids`; the others as skipped rows with the reason)."""
    position = pd.Index(ids)
    a, b = position.get_indexer(pairs["a_id"]), position.get_indexer(pairs["b_id"])
    ok = (a >= 0) & (b >= 0)
    lost = pairs[~ok]
    reasons = [f"pair set aside: image_{side} {names.get(image_id, image_id)!r} failed: "
               f"{failures.get(image_id, 'no embedding')} ({place})"
               for side, image_id, place in ((("a" if ra < 0 else "b"), (ia if ra < 0 else ib), place)
                                             for ra, ia, ib, place in zip(a[~ok], lost["a_id"], lost["b_id"],
                                                                          lost["place"], strict=True))]
    skipped = pd.DataFrame({"image_id": np.where(a[~ok] < 0, lost["a_id"], lost["b_id"]),
                            "image": [f"{names.get(x, x)} vs {names.get(y, y)}" for x, y in
                                      zip(lost["a_id"], lost["b_id"], strict=True)], "reason": reasons})
    return PairRows(a[ok], b[ok], pairs["preference"].to_numpy(np.float64)[ok]), skipped


def distributions(labelled: Labelled, ids: np.ndarray) -> np.ndarray | None:
    """The rating distribution of each image (its vote counts over their total), in the order of `ids`."""
    if labelled.votes is None:
        return None
    counts = labelled.votes.loc[ids].to_numpy(np.float64)
    return counts / counts.sum(axis=1, keepdims=True)


def dataset_split(labelled: Labelled, data: DataSettings) -> ava.Split:
    return split_labelled(labelled, data.split, data.val_fraction, getattr(data, "test_fraction", 0.1), data.seed,
                          Path(data.ava_dir))
