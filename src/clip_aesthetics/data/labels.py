"""A dataset as the pipeline sees it: AVA's folder, or a labels table of your own ratings.

A labels table is CSV, TSV, parquet or JSON Lines, or a folder in Hugging Face's `imagefolder` layout
(`metadata.csv` / `metadata.jsonl` / `metadata.parquet` with a `file_name` column beside the images, at the
top or in `train/`, `validation/`, `test/` subfolders). Each row names an image (a path, or in parquet the
image's bytes) and its target (one score column, or vote counts whose mean is computed as AVA's).

Every image of a table is keyed by its content (a 63-bit prefix of its sha256), so the same picture
labelled in two tables, or given as a file in one and as bytes in another, is one cache entry and
embedded once. Everything wrong with the table is refused here, before any embedding, naming the file
and the line (or row) and the value; rows whose image is missing are set aside with their reason.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from clip_aesthetics.data import ava
from clip_aesthetics.data.cells import ContentIds, count_in, image_source, number_in
from clip_aesthetics.data.tables import (
    SCORE_COLUMNS,
    LabelsError,
    find_column,
    find_image_column,
    locate_table,
    read_table,
    split_in,
)

AVA_THRESHOLD = 5.0  # AVA's good/bad convention (metrics.accuracy)


@dataclass
class Labelled:
    """The labelled images of one dataset, before any embedding, with what each kind of dataset answers differently
    filled in by its reader (from_ava, read_labels, read_pairs), so that nothing downstream asks its kind.

    `frame` has one row per usable image: image_id (the cache key: AVA's id, or the image's content id),
    image (as the table wrote it), score (on the data's own scale) and split ("" unless the table gave one).
    `sources` maps each image_id to what is decoded (a file, or encoded bytes). `skipped` holds the rows set
    aside before embedding (image_id, image, reason). `images` is AVA's image folder (its cache is keyed by
    it); None for a table, whose cache is keyed by content. `split` and `split_info` are settled once, by
    data/splits.settle, for every use after it (training, its logging, evaluation).
    """

    kind: str  # "ava" | "table" | "pairs": what it is, for reports (nothing branches on it)
    name: str  # as logged in MLflow's dataset record
    location: Path
    digest: str
    frame: pd.DataFrame
    sources: dict
    score_range: tuple[float, float]
    threshold: float  # accuracy's good/bad line
    images: Path | None = None
    skipped: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["image_id", "image", "reason"]))
    # (split, val_fraction, test_fraction, seed) -> (Split, its record for the logged dataset): AVA's own split (which
    # needs AVA.txt's row order), a table's split column or a seeded split, a pair table's split by pair
    splitter: Callable | None = None
    # Vote counts per rating 1..K (index image_id, one column per rating, lowest first): AVA's c1..c10, a table's
    # vote_columns; None for a table of scores. What a distribution head trains on.
    votes: pd.DataFrame | None = None
    # A pair table's pairs (a_id, b_id, preference: the share preferring image a, split, place); `frame` then
    # lists the images they name, without scores. What a pairwise head trains on (data/pairs.py).
    pairs: pd.DataFrame | None = None
    norm_target: tuple[float, float] = (1.0, 0.0)  # (scale, offset) of norm=true targets: AVA's /10, a range's 0-1
    norm_fixed: bool = False  # the targets are `norm_target` whatever `norm` says (pairs: utilities, until training)
    names_images: bool = True  # its images have names of their own worth writing beside results (AVA's: ids)
    truth: str = "the table's score"  # what its scores are, in a report's words
    identity: dict = field(default_factory=dict)  # what decides its content beyond the settings (a run key's part)
    split: ava.Split | None = None  # settled by data/splits.settle
    split_info: dict = field(default_factory=dict)  # how the split was made, for the logged dataset's profile

    @property
    def offers(self) -> set[str]:
        """What a head can train on here: scores, votes (rating distributions), pairs (preferences)."""
        if self.pairs is not None:
            return {"pairs"}
        return {"scores"} | ({"votes"} if self.votes is not None else set())

    def target(self, norm: bool) -> tuple[float, float]:
        """(scale, offset): score = head output * scale + offset."""
        return self.norm_target if norm or self.norm_fixed else (1.0, 0.0)

    def scale_text(self) -> str:
        low, high = self.score_range
        return f"{low:g}-{high:g}"

    def record(self) -> dict[str, str]:
        """What a model trained on it must say about its data (run params, version tags)."""
        return {"dataset": self.name, "dataset_digest": self.digest, "score_range": f"{self.score_range[0]:g},"
                f"{self.score_range[1]:g}", "accuracy_threshold": f"{self.threshold:g}"}


# ---------------------------------------------------------------- settings -> a dataset

def read_dataset(data, cache_dir: Path | None = None) -> Labelled:
    """AVA (`ava_dir`), the table `labels=`, or a pair table (`labels=` with image_a, image_b columns): read and
    checked, nothing embedded."""
    if not getattr(data, "labels", ""):
        return from_ava(data)
    from clip_aesthetics.data.pairs import is_pair_table, read_pairs

    columns = dict(image_a_column=getattr(data, "image_a_column", ""),
                   image_b_column=getattr(data, "image_b_column", ""))
    if is_pair_table(Path(data.labels).expanduser(), **columns):
        return Labelled(**read_pairs(Path(data.labels).expanduser(), image_dir=Path(data.image_dir).expanduser() if
                                     data.image_dir else None, preference_column=getattr(data, "preference_column", ""),
                                     memo=ContentIds(cache_dir) if cache_dir else None, **columns))
    return read_labels(Path(data.labels).expanduser(), image_dir=Path(data.image_dir).expanduser() if data.image_dir
                       else None, image_column=data.image_column, score_column=data.score_column,
                       vote_columns=list(data.vote_columns), score_range=getattr(data, "score_range", None),
                       threshold=getattr(data, "threshold", None),
                       memo=ContentIds(cache_dir) if cache_dir else None)


def from_ava(data) -> Labelled:
    table = ava.read_ava(Path(data.ava_dir) / "AVA.txt")
    images = ava.image_dir(data.ava_dir)
    voted = table[table["n_votes"] > 0]
    frame = pd.DataFrame({"image_id": voted["image_id"].to_numpy(), "image": voted["image_name"].to_numpy(),
                          "score": voted["mean_score"].to_numpy(), "split": ""})
    sources = {image_id: ava.image_path(images, image_id, name)
               for image_id, name in zip(frame["image_id"].tolist(), frame["image"].tolist(), strict=True)}
    declared = getattr(data, "score_range", None) or ava.SCORE_RANGE
    if tuple(declared) != tuple(ava.SCORE_RANGE):
        raise LabelsError(f"score_range={declared[0]:g},{declared[1]:g}: AVA's scale is {ava.SCORE_RANGE[0]:g}-"
                          f"{ava.SCORE_RANGE[1]:g}; score_range applies to a labels table (labels=)")
    threshold = getattr(data, "threshold", None)
    folder = Path(data.ava_dir).resolve()
    votes = pd.DataFrame(voted[ava.VOTE_COLUMNS].to_numpy(np.int64), index=pd.Index(frame["image_id"], name="image_id"),
                         columns=ava.VOTE_COLUMNS)
    from clip_aesthetics.data.splits import split_ava_labelled

    return Labelled("ava", f"{folder.name}/AVA.txt", folder, ava.table_digest(table), frame, sources, declared,
                    AVA_THRESHOLD if threshold is None else threshold, images=images, votes=votes,
                    splitter=partial(split_ava_labelled, table, folder), norm_target=(ava.target_scale(True), 0.0),
                    names_images=False, truth="the true mean vote")


# ---------------------------------------------------------------- the table -> Labelled

@dataclass
class _TableRows:
    """Every row of a labels table's files, read and checked cell by cell, in file order."""

    image: list = field(default_factory=list)  # the image cell as written: a path, bytes or {bytes, path}
    score: list = field(default_factory=list)
    split: list = field(default_factory=list)
    place: list = field(default_factory=list)  # file:line (or row), for messages
    root: list = field(default_factory=list)  # the folder the row's image paths are relative to
    votes: list = field(default_factory=list)  # vote counts per rating, with vote_columns
    has_split: bool = False


def _read_rows(tables: list, image_dir: Path | None, image_column: str, score_column: str,
               vote_columns: list[str]) -> _TableRows:
    rows_of = _TableRows()
    for table_path, folder_split in tables:
        rows = read_table(table_path)
        if len(rows.frame) == 0:
            raise LabelsError(f"{table_path}: the table holds no rows")
        root = Path(os.path.realpath(image_dir if image_dir is not None else rows.folder))
        column = find_image_column(rows, image_column, table_path)
        if vote_columns:
            missing = [c for c in vote_columns if c not in rows.frame.columns]
            if missing:
                raise LabelsError(f"{table_path}: no vote column(s) {', '.join(missing)} (vote_columns=); the "
                                  f"table's columns are {', '.join(map(str, rows.frame.columns))}")
        else:
            target = find_column(rows, score_column, SCORE_COLUMNS, "score", "score_column", table_path)
        split_column = next((c for c in rows.frame.columns if str(c).lower() == "split"), None)
        rows_of.has_split = rows_of.has_split or bool(folder_split) or split_column is not None
        for index, place in enumerate(rows.where):
            record = rows.frame.iloc[index]
            if vote_columns:
                counts = [count_in(record[c], place, c, rows.decimal) for c in vote_columns]
                total = sum(counts)  # Python integers: exact however many votes, then one rounding
                score = sum(k * c for k, c in enumerate(counts, start=1)) / total if total else float("nan")
                rows_of.votes.append(counts)
            else:
                score = number_in(record[target], place, target, rows.decimal)
            rows_of.image.append(record[column])
            rows_of.score.append(score)
            rows_of.split.append(split_in(record, split_column, folder_split, place))
            rows_of.place.append(place)
            rows_of.root.append(root)
    if rows_of.has_split and any(s == "" for s in rows_of.split):
        first = rows_of.place[rows_of.split.index("")]
        raise LabelsError(f"{first}: no split, while other rows have one; give every row a split or none")
    return rows_of


def _keyed_by_content(rows: _TableRows, scores: np.ndarray, memo: ContentIds) -> tuple[list, dict, list, list]:
    """(kept rows, image_id -> source, skipped rows, kept rows' votes): each image keyed by its content, once; a
    row without a usable image set aside with its reason; the same image labelled twice alike kept once, labelled
    differently refused."""
    first_of: dict[int, int] = {}  # content id -> the row that keeps it
    names: dict[int, str] = {}
    kept, sources, skipped, kept_votes = [], {}, [], []
    for k, (value, root, place) in enumerate(zip(rows.image, rows.root, rows.place, strict=True)):
        name, source, reason = image_source(value, root, place)
        if reason is None and not np.isfinite(scores[k]):
            reason = "no votes"
        image_id = None
        if reason is None:
            image_id, reason = memo.key(source)
        if reason is not None:
            skipped.append((-1 if image_id is None else image_id, name, f"{reason} ({place})"))
            continue
        first = first_of.get(image_id)
        if first is not None:
            if scores[first] != scores[k] or rows.split[first] != rows.split[k]:
                raise LabelsError(f"{place}: image {name!r} is the same image as {names[image_id]!r} at "
                                  f"{rows.place[first]}, labelled differently (score {scores[first]:g} "
                                  f"{rows.split[first]} there, {scores[k]:g} {rows.split[k]} here)")
            skipped.append((image_id, name, f"the same image as {names[image_id]!r} at {rows.place[first]} "
                            f"({place})"))
            continue
        first_of[image_id], names[image_id], sources[image_id] = k, name, source
        kept.append((image_id, name, scores[k], rows.split[k]))
        if rows.votes:
            kept_votes.append(rows.votes[k])
    memo.save()
    return kept, sources, skipped, kept_votes


def read_labels(path: Path, image_dir: Path | None = None, image_column: str = "", score_column: str = "",
                vote_columns: list[str] | None = None, score_range: tuple[float, float] | None = None,
                threshold: float | None = None, memo: ContentIds | None = None) -> Labelled:
    """Read and check a labels table; nothing is embedded. Refuses bad input naming file, line and value."""
    path = Path(path)
    tables = locate_table(path)
    vote_columns = vote_columns or []
    rows = _read_rows(tables, image_dir, image_column, score_column, vote_columns)
    declared = score_range
    scores = np.asarray(rows.score, dtype=np.float64)
    if declared is not None:
        outside = np.flatnonzero((scores < declared[0]) | (scores > declared[1]))
        if len(outside):
            k = int(outside[0])
            raise LabelsError(f"{rows.place[k]}: score {scores[k]:g} lies outside score_range={declared[0]:g},"
                              f"{declared[1]:g} ({len(outside)} row(s) outside in all)")
    kept, sources, skipped, kept_votes = _keyed_by_content(rows, scores, memo or ContentIds(None))
    frame = pd.DataFrame(kept, columns=["image_id", "image", "score", "split"])
    frame["image_id"] = frame["image_id"].astype(np.int64)
    frame["score"] = frame["score"].astype(np.float64)
    if len(frame) == 0:
        raise LabelsError(f"{path}: no row has a usable image and score ({len(skipped)} set aside, e.g. "
                          f"{skipped[0][2] if skipped else '-'})")
    observed = (float(frame["score"].min()), float(frame["score"].max()))
    if declared is None:
        declared = (1.0, float(len(vote_columns))) if vote_columns else observed
        if declared[0] >= declared[1]:
            raise LabelsError(f"{path}: every score is {observed[0]:g}: nothing to learn; check score_column")
    threshold = (declared[0] + declared[1]) / 2 if threshold is None else threshold
    table_name = path.name if path.is_file() else f"{path.name}/{tables[0][0].name}"
    votes = pd.DataFrame(np.asarray(kept_votes, dtype=np.int64).reshape(len(frame), len(vote_columns)),
                         index=pd.Index(frame["image_id"], name="image_id"), columns=vote_columns) \
        if vote_columns else None
    from clip_aesthetics.data.splits import split_table_labelled

    return Labelled("table", table_name, path.resolve(), _digest(frame, votes), frame, sources, declared, threshold,
                    skipped=pd.DataFrame(skipped, columns=["image_id", "image", "reason"]), votes=votes,
                    splitter=partial(split_table_labelled, frame, rows.has_split, path.resolve()),
                    norm_target=(declared[1] - declared[0], declared[0]),
                    identity={"labels": str(path.resolve()), "dataset_digest": _digest(frame, votes)})


def _digest(frame: pd.DataFrame, votes: pd.DataFrame | None = None) -> str:
    """Of the images' content and labels (and vote counts, when there are), in content order: the same ratings in
    another layout digest alike."""
    ordered = frame.sort_values("image_id")
    digest = hashlib.sha256(ordered["image_id"].to_numpy(np.int64).tobytes())
    digest.update(ordered["score"].to_numpy(np.float64).tobytes())
    digest.update("\n".join(ordered["split"]).encode())
    if votes is not None:
        digest.update(votes.loc[ordered["image_id"]].to_numpy(np.int64).tobytes())
    return digest.hexdigest()[:16]
