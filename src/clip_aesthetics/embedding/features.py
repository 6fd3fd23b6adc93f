"""A dataset (labels.Labelled) + its filled embedding cache -> labelled feature arrays per split, joined by image
id, never by position; the images left out, each with its reason."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from clip_aesthetics.data import ava
from clip_aesthetics.data.ava import DatasetError
from clip_aesthetics.data.labels import Labelled
from clip_aesthetics.embedding.cache import EmbeddingCache


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


def load_dataset(cache: EmbeddingCache, labelled: Labelled) -> Dataset:
    """Join each split of the dataset (settled once: data/splits.settle) to cached embeddings by image id, never by
    position."""
    split = labelled.split
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
