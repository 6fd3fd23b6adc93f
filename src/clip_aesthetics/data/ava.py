"""AVA.txt -> labelled table (mean score per image id) -> train/val/test split by image id."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from clip_aesthetics.errors import UserError
from clip_aesthetics.images.decode import IMAGE_SUFFIXES

VOTE_COLUMNS = [f"c{k}" for k in range(1, 11)]
SCORE_RANGE = (1.0, 10.0)  # AVA's rating scale: the mean of 1-10 votes
# The seed notebook's train size for the full 255,530-row AVA.txt.
SEED_TRAIN_ROWS, SEED_TOTAL_ROWS = 229_971, 255_530
OFFICIAL_TEST_LIST = Path("aesthetics_image_lists") / "generic_test.jpgl"
LAYOUT_HINT = (
    "expected layout: <ava_dir>/AVA.txt (rows: index image_id c1..c10 tag1 tag2 challenge) "
    "and <ava_dir>/image/<image_id>.jpg"
)


class AvaFormatError(UserError, ValueError):
    """AVA.txt (or a list beside it) is missing or malformed; the message says where."""


# Far above any real count (AVA's images have at most a few hundred votes each), far below int64 overflow.
MAX_VOTES = 1_000_000
MAX_IMAGE_ID = 2**63 - 1  # ids are stored as int64
_BOM = b"\xef\xbb\xbf"


def read_ava(path: Path) -> pd.DataFrame:
    """Parse AVA.txt into image_id, image_name, c1..c10, n_votes, mean_score, keeping the file's row order.

    `image_name` is the id as written (leading zeros kept): images are looked up by it first. Rows
    without votes are kept (mean_score NaN) so that the seed's split, which shuffles the table as
    read, is reproduced; `split_ava` drops them afterwards.
    """
    path = Path(path)
    if not path.is_file():
        raise AvaFormatError(f"no AVA.txt at {path}; {LAYOUT_HINT}")
    ids, names, votes = [], [], []
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            fields = _fields(path, number, raw.removeprefix(_BOM) if number == 1 else raw)
            if fields is None:
                continue
            ids.append(fields[0])
            names.append(fields[1])
            votes.append(fields[2])
    if not ids:
        raise AvaFormatError(f"{path} holds no rows; {LAYOUT_HINT}")
    table = pd.DataFrame(np.asarray(votes, dtype=np.int64), columns=VOTE_COLUMNS)
    table.insert(0, "image_id", np.asarray(ids, dtype=np.int64))
    table.insert(1, "image_name", pd.Series(names, dtype=object))
    duplicated = table["image_id"].duplicated()
    if duplicated.any():
        first = int(np.flatnonzero(duplicated.to_numpy())[0])
        raise AvaFormatError(
            f"{path}: image id {table['image_id'].iat[first]} appears more than once "
            f"(again on data row {first + 1}); {int(duplicated.sum())} duplicate id(s) in all"
        )
    counts = table[VOTE_COLUMNS].to_numpy()
    table["n_votes"] = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        table["mean_score"] = counts @ np.arange(1, 11) / table["n_votes"].to_numpy()
    return table


def _fields(path: Path, number: int, raw: bytes) -> tuple[int, str, list[int]] | None:
    """One line -> (image id, id as written, ten vote counts), or None for a blank line."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise AvaFormatError(f"{path}:{number}: not UTF-8 text (byte {raw[error.start]:#04x} at column "
                             f"{error.start + 1}); AVA.txt is plain ASCII: check the file is not damaged") from None
    fields = line.split()
    if not fields:
        return None
    if len(fields) != 15:
        raise AvaFormatError(
            f"{path}:{number}: expected 15 fields (index image_id c1..c10 tag1 tag2 challenge), found {len(fields)}"
        )
    try:
        numbers = [int(f) for f in fields]
    except ValueError:
        raise AvaFormatError(f"{path}:{number}: fields must be integers, got {line.strip()!r}") from None
    if not 0 <= numbers[1] <= MAX_IMAGE_ID:
        raise AvaFormatError(f"{path}:{number}: image id {fields[1]} is outside 0..{MAX_IMAGE_ID}")
    counts = numbers[2:12]
    if min(counts) < 0:
        raise AvaFormatError(f"{path}:{number}: negative vote count in {line.strip()!r}")
    if max(counts) > MAX_VOTES:
        raise AvaFormatError(f"{path}:{number}: vote count {max(counts)} is above {MAX_VOTES:,}: "
                             "not a real count; check the file is not damaged")
    return numbers[1], fields[1], counts


def image_path(images: Path, image_id: int, name: str) -> Path:
    """<images>/<id as written>.jpg when it exists, else <images>/<integer id>.jpg (AVA's own naming)."""
    written = images / f"{name}.jpg"
    if name != str(image_id) and not written.exists():
        return images / f"{image_id}.jpg"
    return written


@dataclass(frozen=True)
class Split:
    """Each frame has image_id and mean_score; `no_votes` holds the ids dropped after splitting; `pairs`, for a pair
    table, each split's pairs (a_id, b_id, preference), whose images the frames list."""

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    no_votes: np.ndarray
    pairs: dict | None = None


def seed_split(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The seed notebook's split: shuffle with random_state=42, first 229,971/255,530 of rows train."""
    shuffled = table.sample(frac=1, random_state=42).reset_index(drop=True)
    n_train = round(len(shuffled) * SEED_TRAIN_ROWS / SEED_TOTAL_ROWS)
    return shuffled.iloc[:n_train].reset_index(drop=True), shuffled.iloc[n_train:].reset_index(drop=True)


def official_split(table: pd.DataFrame, ava_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Test = the ids in the official generic_test.jpgl list; train = every other row."""
    list_path = Path(ava_dir) / OFFICIAL_TEST_LIST
    if not list_path.is_file():
        raise AvaFormatError(
            f"split=official needs the official test list at {list_path} "
            "(it ships with AVA as aesthetics_image_lists/generic_test.jpgl); use split=seed without it"
        )
    test_ids = set()
    for number, line in enumerate(list_path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                test_ids.add(int(line.split()[0]))
            except ValueError:
                raise AvaFormatError(f"{list_path}:{number}: not an image id: {line.strip()!r}") from None
    in_test = table["image_id"].isin(test_ids)
    return table[~in_test].reset_index(drop=True), table[in_test].reset_index(drop=True)


def split_ava(table: pd.DataFrame, split: str, ava_dir: Path, val_fraction: float, seed: int) -> Split:
    """Split by image id, then drop rows without votes, then hold out a seeded share of train as val."""
    if split == "seed":
        train, test = seed_split(table)
    elif split == "official":
        train, test = official_split(table, ava_dir)
    else:
        raise ValueError(f"split={split!r}: expected 'seed' or 'official'")
    no_votes = np.concatenate([part.loc[part["n_votes"] == 0, "image_id"].to_numpy() for part in (train, test)])
    train, test = (part[part["n_votes"] > 0].reset_index(drop=True) for part in (train, test))
    n_val = round(len(train) * val_fraction)
    in_val = np.zeros(len(train), dtype=bool)
    in_val[np.random.RandomState(seed).permutation(len(train))[:n_val]] = True
    columns = ["image_id", "mean_score"]
    return Split(
        train=train.loc[~in_val, columns].reset_index(drop=True),
        val=train.loc[in_val, columns].reset_index(drop=True),
        test=test[columns].reset_index(drop=True),
        no_votes=no_votes,
    )


def target_scale(norm: bool) -> float:
    """What a prediction is multiplied by to give a 1-10 score: the seed's norm divides targets by 10."""
    return 10.0 if norm else 1.0


def table_digest(table: pd.DataFrame) -> str:
    """A short content hash of the label table (ids and vote counts): two different AVA.txt files differ here."""
    import hashlib

    digest = hashlib.sha256(table["image_id"].to_numpy(np.int64).tobytes())
    digest.update(table[VOTE_COLUMNS].to_numpy(np.int64).tobytes())
    return digest.hexdigest()[:16]


class DatasetError(UserError, ValueError):
    """The data folder cannot be used as given; the message names the path and what to do."""


def image_dir(ava_dir: Path) -> Path:
    """AVA's images live in <ava_dir>/image/<id>.jpg; refuse a folder with none before any work."""
    folder = Path(ava_dir) / "image"
    if not folder.is_dir():
        raise DatasetError(f"no image folder at {folder}; {LAYOUT_HINT}")
    with os.scandir(folder) as entries:
        if not any(Path(entry.name).suffix.lower() in IMAGE_SUFFIXES for entry in entries):
            raise DatasetError(f"image folder {folder} holds no images; {LAYOUT_HINT}")
    return folder
