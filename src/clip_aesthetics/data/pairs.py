"""A table of pairwise preferences -> a Labelled dataset of kind "pairs": which of two images people preferred.

A pair table is any labels table (CSV, TSV, parquet, JSON Lines, a JSON array) in one of the layouts of
pair_layouts.py: this project's own (`image_a`, `image_b` and a preference: `a`, `b` or `tie`, or the share of
raters who preferred image_a, 0 to 1), or any columns named with `image_a_column=`, `image_b_column=` and
`preference_column=`, Pick-a-Pic's parquet and HPD v2's JSON as published. The image cells (paths or image bytes,
like a labels table's image column) go through the same content-keyed cache as every labels table. A pair naming
a missing or unreadable image, or the same image twice, or one its layout marks as unusable, is set aside with
its reason; a preference this project cannot read is refused naming its line.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd

from clip_aesthetics.data.ava import Split
from clip_aesthetics.data.cells import ContentIds, image_source
from clip_aesthetics.data.pair_layouts import layout_of
from clip_aesthetics.data.tables import LabelsError, locate_table, read_table, split_in

PAIR_SCALE = (1.0, 10.0)  # the declared scale a pairwise head's scores are mapped onto (heads/pairwise.py)
PAIR_TARGET = (1.5, 5.5)  # score = utility * 1.5 + 5.5 while training; the trained head fixes its own map


def is_pair_table(path: Path, image_a_column: str = "", image_b_column: str = "") -> bool:
    """Whether the labels table at `path` is a pair table: a layout of pair_layouts.py, or image columns named."""
    if image_a_column or image_b_column:
        return True
    try:
        rows = read_table(locate_table(Path(path))[0][0])
    except (LabelsError, IndexError):
        return False
    return layout_of(rows.frame.columns) is not None


def read_pairs(path: Path, image_dir: Path | None = None, preference_column: str = "",
               memo: ContentIds | None = None, image_a_column: str = "", image_b_column: str = "") -> dict:
    """Read and check a pair table; nothing is embedded. Returns the fields of its labels.Labelled (kind "pairs")."""
    path = Path(path)
    memo = memo or ContentIds(None)
    names: dict[int, str] = {}
    sources: dict[int, object] = {}
    kept, skipped = [], []
    has_split = False
    for table_path, folder_split in locate_table(path):
        rows = read_table(table_path)
        if len(rows.frame) == 0:
            raise LabelsError(f"{table_path}: the table holds no rows")
        root = Path(os.path.realpath(image_dir if image_dir is not None else rows.folder))
        layout = layout_of(rows.frame.columns, image_a_column, image_b_column)
        if layout is None:
            raise LabelsError(f"{table_path}: not a pair table this project reads (image_a, image_b and a "
                              "preference; Pick-a-Pic's or HPD's layout; or name its columns with image_a_column=, "
                              "image_b_column=, preference_column=)")
        read = layout.reader(rows, table_path, preference_column, image_a_column, image_b_column, root)
        split_column = {str(c).lower(): c for c in rows.frame.columns}.get("split")
        has_split = has_split or bool(folder_split) or split_column is not None
        for index, place in enumerate(rows.where):
            record = rows.frame.iloc[index]
            split = split_in(record, split_column, folder_split, place)
            for pair in read(record, place):
                ids, reason = _keyed(pair, root, place, memo, names, sources)
                if reason is not None:
                    skipped.append((-1, f"{_shown(pair.a)} vs {_shown(pair.b)}"[:200], f"{reason} ({place})"))
                    continue
                kept.append((ids[0], ids[1], pair.preference, split, place))
    memo.save()
    pairs = pd.DataFrame(kept, columns=["a_id", "b_id", "preference", "split", "place"])
    if len(pairs) == 0:
        raise LabelsError(f"{path}: no pair has two usable images ({len(skipped)} set aside, e.g. "
                          f"{skipped[0][2] if skipped else '-'})")
    if has_split and (pairs["split"] == "").any():
        raise LabelsError(f"{pairs['place'][pairs['split'] == ''].iat[0]}: no split, while other rows have one; give "
                          "every row a split or none")
    used = pd.unique(pairs[["a_id", "b_id"]].to_numpy().ravel())
    frame = pd.DataFrame({"image_id": used.astype(np.int64), "image": [names[int(i)] for i in used],
                          "score": np.nan, "split": ""})
    table_name = path.name if path.is_file() else f"{path.name}/{locate_table(path)[0][0].name}"
    from functools import partial

    return dict(kind="pairs", name=table_name, location=path.resolve(), digest=_digest(pairs), frame=frame,
                sources={int(i): sources[int(i)] for i in used}, score_range=PAIR_SCALE,
                threshold=sum(PAIR_SCALE) / 2, skipped=pd.DataFrame(skipped, columns=["image_id", "image", "reason"]),
                splitter=partial(split_pairs_labelled, pairs, has_split, path.resolve()), pairs=pairs,
                norm_target=PAIR_TARGET, norm_fixed=True, truth="no score (preferences only)",
                identity={"labels": str(path.resolve()), "dataset_digest": _digest(pairs)})


def _shown(cell) -> str:
    return f"<{len(cell)} bytes>" if isinstance(cell, (bytes, bytearray)) else str(cell)


def _keyed(pair, root: Path, place: str, memo: ContentIds, names: dict, sources: dict):
    """(content ids of the pair's two images, None), or (None, why the pair is set aside)."""
    if pair.reason:
        return None, pair.reason
    ids = []
    for side, cell in zip("ab", (pair.a, pair.b), strict=True):
        name, source, why = image_source(cell, root, place)
        if why is None:
            image_id, why = memo.key(source)
        if why is not None:
            return None, f"image_{side} {name!r}: {why}"
        ids.append(image_id)
        names.setdefault(image_id, name)
        sources.setdefault(image_id, source)
    if ids[0] == ids[1]:
        return None, f"image_a and image_b are the same image ({names[ids[0]]!r})"
    return ids, None


def _digest(pairs: pd.DataFrame) -> str:
    """Of the pairs' content ids, preferences and splits, in content order."""
    ordered = pairs.sort_values(["a_id", "b_id", "preference", "split"], kind="stable")
    digest = hashlib.sha256(ordered[["a_id", "b_id"]].to_numpy(np.int64).tobytes())
    digest.update(ordered["preference"].to_numpy(np.float64).tobytes())
    digest.update("\n".join(ordered["split"]).encode())
    return digest.hexdigest()[:16]


def pair_key(pairs: pd.DataFrame) -> np.ndarray:
    """The unordered pair of content ids of each row, as one sortable key: (A, B) and (B, A) are the same pair."""
    low = np.minimum(pairs["a_id"].to_numpy(np.int64), pairs["b_id"].to_numpy(np.int64))
    high = np.maximum(pairs["a_id"].to_numpy(np.int64), pairs["b_id"].to_numpy(np.int64))
    return np.array([f"{a:020d}-{b:020d}" for a, b in zip(low, high, strict=True)])


def split_pairs(pairs: pd.DataFrame, given: bool, location, val_fraction: float, test_fraction: float,
                seed: int) -> dict[str, pd.DataFrame]:
    """train/val/test pairs: as the table's split column gives them (`given`), else seeded over the distinct pairs
    in content order, every rating of the same two images in one split (so no test pair is ever trained on)."""
    rng = np.random.RandomState(seed)
    keys = pair_key(pairs)
    if given:
        parts = {name: pairs[pairs["split"] == name] for name in ("train", "val", "test")}
        crossing = set(pair_key(parts["test"])) & (set(pair_key(parts["train"])) | set(pair_key(parts["val"])))
        if crossing:
            raise LabelsError(f"{location}: the same two images are rated in the test split and in train or "
                              f"val ({len(crossing)} pair(s)); a test pair must never be trained on")
        if len(parts["val"]) == 0 and val_fraction > 0:
            train_keys = np.unique(pair_key(parts["train"]))
            chosen = set(train_keys[rng.permutation(len(train_keys))[:round(len(train_keys) * val_fraction)]])
            in_val = np.isin(pair_key(parts["train"]), list(chosen))
            parts["train"], parts["val"] = parts["train"][~in_val], parts["train"][in_val]
        return {name: part.reset_index(drop=True) for name, part in parts.items()}
    distinct = np.unique(keys)
    order = rng.permutation(len(distinct))
    n_test = round(len(distinct) * test_fraction)
    n_val = round((len(distinct) - n_test) * val_fraction)
    chosen = {"test": distinct[order[:n_test]], "val": distinct[order[n_test:n_test + n_val]]}
    parts = {name: pairs[np.isin(keys, list(values))] for name, values in chosen.items()}
    parts["train"] = pairs[~np.isin(keys, list(chosen["test"]) + list(chosen["val"]))]
    return {name: part.reset_index(drop=True) for name, part in parts.items()}


def split_pairs_labelled(pairs: pd.DataFrame, given: bool, location: Path, split: str, val_fraction: float,
                         test_fraction: float, seed: int) -> tuple[Split, dict]:
    """Split by pair; each split's images are those its pairs name."""
    parts = split_pairs(pairs, given, location, val_fraction, test_fraction, seed)
    frames = {name: pd.DataFrame({"image_id": pd.unique(part[["a_id", "b_id"]].to_numpy().ravel()).astype(
        np.int64), "mean_score": np.nan}) for name, part in parts.items()}
    made = Split(**frames, no_votes=np.zeros(0, np.int64), pairs=parts)
    return made, ({"split": "given"} if given else {"split": "seeded", "test_fraction": test_fraction})
