"""A pair table's layout -> its rows as (image a, image b, preference, why it is set aside) with where each came from:
the layouts preference data is published in, read as they are.

- `columns`: `image_a`, `image_b` (or the columns `image_a_column=` and `image_b_column=` name) and a preference
  column (`a`/`b`/`tie`, or the share of raters preferring image a);
- `pick-a-pic`: Pick-a-Pic v1/v2's parquet: the images as bytes (`jpg_0`, `jpg_1`) or as file names
  (`image_0_uid`, `image_1_uid`, found in `image_dir=` with or without a suffix), `label_0` the preference for
  image 0 (1, 0, or 0.5 for a tie); rows with `has_label` false or `are_different` false set aside with the reason;
- `hpd`: HPD v2's JSON: `image_path` a list of two files and `human_preference` a list of two (1 marks the
  preferred one), or a list of N files and their `rank` (1 best), read as every pair of them.

A layout is found from the table's columns (`detect`); flags naming columns choose `columns`.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from clip_aesthetics.data.tables import LabelsError, Rows, find_column

PAIR_COLUMNS = ("image_a", "image_b")
PREFERENCE_COLUMNS = ("preference", "winner", "choice", "label", "prob_a", "p_a")
WORDS = {"a": 1.0, "image_a": 1.0, "b": 0.0, "image_b": 0.0, "tie": 0.5, "draw": 0.5}
SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")  # tried after a bare file name (Pick-a-Pic's uids)


@dataclass(frozen=True)
class Pair:
    """One pair as a row gives it: the two image cells (paths, names or bytes) and the share preferring a, or the
    reason it is set aside (then the preference is NaN)."""

    a: object
    b: object
    preference: float
    reason: str = ""


@dataclass(frozen=True)
class PairLayout:
    """`detect(columns lowered -> their names)`: whether a table has this layout; `reader(rows, table path,
    preference column asked, image a and b columns asked, image folder)`: a function of (record, place) yielding
    its Pairs."""

    name: str
    detect: Callable[[dict], bool]
    reader: Callable[..., Callable[[object, str], Iterator[Pair]]]


def preference_in(value, place: str, column: str) -> float:
    """a / b / tie, or the share of raters preferring image a (0-1); anything else refused naming the line."""
    if isinstance(value, str) and value.strip().lower() in WORDS:
        return WORDS[value.strip().lower()]
    number = None
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip().replace(",", ".") if value.count(",") == 1 else value.strip())
        except ValueError:
            number = None
    if number is None or not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise LabelsError(f"{place}: preference {value!r} in column {column!r} is none of a, b, tie, or a number "
                          "from 0 to 1 (the share of raters preferring image_a)")
    return number


def _flag(value, place: str, column: str) -> bool:
    """A true/false cell (bool, 1/0, true/false, yes/no)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "1.0"):
        return True
    if text in ("false", "0", "no", "0.0"):
        return False
    raise LabelsError(f"{place}: {column} {value!r} is not true or false")


def _columns(rows: Rows, table: Path, preference_column: str, image_a: str, image_b: str, image_dir):
    lowered = {str(c).lower(): c for c in rows.frame.columns}
    named = []
    for asked, default in ((image_a, "image_a"), (image_b, "image_b")):
        column = asked or lowered.get(default)
        if column not in rows.frame.columns:
            raise LabelsError(f"{table}: no column {column or default!r} (image_a_column / image_b_column name a "
                              f"pair table's two image columns); the table's columns are "
                              f"{', '.join(map(str, rows.frame.columns))}")
        named.append(column)
    preference = find_column(rows, preference_column, PREFERENCE_COLUMNS, "preference", "preference_column", table)

    def read(record, place: str) -> Iterator[Pair]:
        yield Pair(record[named[0]], record[named[1]], preference_in(record[preference], place, str(preference)))

    return read


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and not (
        isinstance(value, (bytes, str)) and len(value) == 0)


def _named_file(value, image_dir: Path):
    """Pick-a-Pic's uid as a file name: as it is when that file exists, else with the first suffix that does."""
    if not isinstance(value, str) or Path(value).suffix or (image_dir / value).exists():
        return value
    return next((value + s for s in SUFFIXES if (image_dir / (value + s)).exists()), value)


def _pick_a_pic(rows: Rows, table: Path, preference_column: str, image_a: str, image_b: str, image_dir):
    lowered = {str(c).lower(): c for c in rows.frame.columns}
    folder = Path(image_dir) if image_dir else table.parent
    preference = lowered.get(preference_column.lower()) if preference_column else lowered["label_0"]
    if preference is None:
        raise LabelsError(f"{table}: no column {preference_column!r} (preference_column=)")
    second = lowered.get("label_1")

    def image(record, side: int):
        data = record[lowered[f"jpg_{side}"]] if f"jpg_{side}" in lowered else None
        if _present(data):
            return data
        uid = record[lowered[f"image_{side}_uid"]] if f"image_{side}_uid" in lowered else None
        return _named_file(str(uid), folder) if _present(uid) else None

    def read(record, place: str) -> Iterator[Pair]:
        a, b = image(record, 0), image(record, 1)
        if "has_label" in lowered and not _flag(record[lowered["has_label"]], place, "has_label"):
            yield Pair(a, b, math.nan, "has_label is false: no preference was recorded for this pair")
            return
        if "are_different" in lowered and not _flag(record[lowered["are_different"]], place, "are_different"):
            yield Pair(a, b, math.nan, "are_different is false: the two images are the same picture")
            return
        value = preference_in(record[preference], place, str(preference))
        if second is not None and not preference_column:
            other = preference_in(record[second], place, str(second))
            if abs(value + other - 1.0) > 1e-6:
                raise LabelsError(f"{place}: label_0 {value:g} and label_1 {other:g} do not add up to 1 (1 and 0: "
                                  "image 0 preferred, 0 and 1: image 1, 0.5 and 0.5: a tie)")
        yield Pair(a, b, value)

    return read


def _listed(value, place: str, column: str) -> list:
    if isinstance(value, str):
        import json

        try:
            value = json.loads(value)
        except ValueError:
            raise LabelsError(f"{place}: {column} {value[:80]!r} is not a list") from None
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise LabelsError(f"{place}: {column} holds {type(value).__name__}, not a list")
    return list(value)


def _hpd(rows: Rows, table: Path, preference_column: str, image_a: str, image_b: str, image_dir):
    lowered = {str(c).lower(): c for c in rows.frame.columns}
    paths_column = lowered["image_path"]
    judged = lowered.get("human_preference") or lowered.get("rank")

    def read(record, place: str) -> Iterator[Pair]:
        paths = _listed(record[paths_column], place, "image_path")
        marks = [float(v) for v in _listed(record[judged], place, str(judged))]
        if len(marks) != len(paths) or len(paths) < 2:
            raise LabelsError(f"{place}: image_path lists {len(paths)} image(s) and {judged} {len(marks)} value(s); "
                              "expected as many of each, at least two")
        if str(judged).lower() == "human_preference":
            if len(paths) != 2 or sum(marks) <= 0 or min(marks) < 0:
                raise LabelsError(f"{place}: human_preference {marks} is not two non-negative values with a positive "
                                  "sum (1 marks the preferred image)")
            yield Pair(paths[0], paths[1], marks[0] / sum(marks))
            return
        for i, j in itertools.combinations(range(len(paths)), 2):  # rank: 1 is best, equal ranks a tie
            yield Pair(paths[i], paths[j], 1.0 if marks[i] < marks[j] else 0.0 if marks[i] > marks[j] else 0.5)

    return read


LAYOUTS = (
    PairLayout("pick-a-pic", lambda c: "label_0" in c and ({"jpg_0", "jpg_1"} <= set(c) or
                                                          {"image_0_uid", "image_1_uid"} <= set(c)), _pick_a_pic),
    PairLayout("hpd", lambda c: "image_path" in c and ("human_preference" in c or "rank" in c), _hpd),
    PairLayout("columns", lambda c: all(name in c for name in PAIR_COLUMNS), _columns),
)


def layout_of(columns, image_a: str = "", image_b: str = "") -> PairLayout | None:
    """The layout of a table with these columns (None: not a pair table); naming the image columns chooses
    `columns`."""
    if image_a or image_b:
        return LAYOUTS[-1]
    lowered = {str(c).lower(): c for c in columns}
    return next((layout for layout in LAYOUTS if layout.detect(lowered)), None)
