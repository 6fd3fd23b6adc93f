"""A labels table's file(s) -> rows as read, each with where it came from (file:line, or file: row N): CSV (or `;`,
tab, `|` separated), TSV, JSON Lines, a JSON array, parquet, arrow, or a Hugging Face imagefolder's metadata; and the
image and score columns found in them. Nothing is checked here beyond the file's own format: labels.py does that."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from clip_aesthetics.errors import UserError

IMAGE_COLUMNS = ("file_name", "image", "image_name", "image_path", "path", "filename", "file", "img", "jpg")
SCORE_COLUMNS = ("score", "mos", "mean_score", "rating", "label")
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "dev": "val", "test": "test",
               "validation_unique": "val", "test_unique": "test"}  # the last two: Pick-a-Pic's split names
METADATA_FILES = ("metadata.jsonl", "metadata.csv", "metadata.parquet")


class LabelsError(UserError, ValueError):
    """The labels table cannot be used as given; the message names the file, the line or column, and the value."""


@dataclass(frozen=True)
class TableReader:
    """One labels-table format (an entry of extensions.LABELS_READERS): the file suffixes it reads, and
    `read(path) -> Rows`, raising LabelsError with the file, the line and what is wrong."""

    suffixes: tuple[str, ...]
    read: Callable[[Path], "Rows"]
    description: str


def _readers() -> list[TableReader]:
    from clip_aesthetics.extensions import LABELS_READERS

    return [reader for _, reader in LABELS_READERS.entries()]


def table_suffixes() -> list[str]:
    return [suffix for reader in _readers() for suffix in reader.suffixes]


@dataclass
class Rows:
    """A table as read: its columns, a locator for each row (file:line or file: row N), its folder, and the decimal
    mark of its numbers written as text ("," in a `;`-separated table: Excel's European export)."""

    frame: pd.DataFrame
    where: list[str]
    folder: Path
    decimal: str = "."


def locate_table(path: Path) -> list[tuple[Path, str]]:
    """The table file(s) at `path`: itself, or an imagefolder's metadata (with the split its subfolder names)."""
    if path.is_file():
        if path.suffix.lower() not in table_suffixes():
            raise LabelsError(f"labels={path}: not a table this project reads ({', '.join(table_suffixes())}), or a "
                              "folder holding metadata.jsonl / metadata.csv / metadata.parquet")
        return [(path, "")]
    if path.exists() and not path.is_dir():
        raise LabelsError(f"labels={path}: a pipe or device (as `<(command)` gives), not a file: a labels table is "
                          "read more than once and its images are found relative to its folder; write it to a file "
                          "first (command > labels.csv) and pass that")
    if not path.is_dir():
        raise LabelsError(f"labels={path}: no such file or folder")
    for name in METADATA_FILES:
        if (path / name).is_file():
            return [(path / name, "")]
    found = [(sub / name, SPLIT_NAMES[sub.name.lower()]) for sub in sorted(path.iterdir())
             if sub.is_dir() and sub.name.lower() in SPLIT_NAMES
             for name in METADATA_FILES if (sub / name).is_file()]
    if not found:
        raise LabelsError(f"labels={path}: a folder, but with no {' / '.join(METADATA_FILES)} in it or in train/, "
                          "validation/, test/ subfolders (Hugging Face's imagefolder layout)")
    seen, kept = set(), []
    for table, split in found:  # one metadata file per split folder, the first of METADATA_FILES
        if table.parent not in seen:
            seen.add(table.parent)
            kept.append((table, split))
    return kept


def read_table(path: Path) -> Rows:
    suffix = path.suffix.lower()
    reader = next((r for r in _readers() if suffix in r.suffixes), None)
    if reader is None:
        raise LabelsError(f"{path}: not a table this project reads ({', '.join(table_suffixes())})")
    return reader.read(path)


SEPARATORS = (";", "\t", "|")  # what a CSV may use instead of its comma (a European spreadsheet writes ;)
SEPARATOR_NAMES = {",": "commas", ";": "semicolons", "\t": "tabs", "|": "| bars"}


def _read_csv(path: Path, sep: str) -> Rows:
    rows = _read_delimited(path, sep)
    header = str(rows.frame.columns[0]) if len(rows.frame.columns) == 1 else ""
    other = next((s for s in SEPARATORS if s != sep and s in header), None)
    if other is not None:  # one column whose name holds another separator: the table uses that one
        return _read_delimited(path, other)
    return rows


def _read_delimited(path: Path, sep: str) -> Rows:
    try:
        frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[], encoding="utf-8")
    except pd.errors.EmptyDataError:
        raise LabelsError(f"{path}: the table is empty (no header, no rows)") from None
    except pd.errors.ParserError as error:
        raise LabelsError(f"{path}: not a readable table with {SEPARATOR_NAMES.get(sep, repr(sep))} between columns: "
                          f"{error}") from None
    except UnicodeDecodeError as error:
        raise LabelsError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    # Line numbers as an editor shows them; a quoted field spanning lines shifts the ones after it.
    return Rows(frame, [f"{path}:{i + 2}" for i in range(len(frame))], path.parent, "," if sep == ";" else ".")


def _read_json(path: Path) -> Rows:
    records, where = [], []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise LabelsError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    if text.lstrip().startswith("["):  # a JSON array of objects
        try:
            items = json.loads(text)
        except json.JSONDecodeError as error:
            raise LabelsError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
        lines = [(f"{path}: item {k + 1}", item) for k, item in enumerate(items)]
    else:
        lines = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                lines.append((f"{path}:{number}", json.loads(line)))
            except json.JSONDecodeError as error:
                raise LabelsError(f"{path}:{number}: not a JSON object ({error.msg}): {line.strip()[:80]!r}") from None
    for place, item in lines:
        if not isinstance(item, dict):
            raise LabelsError(f"{place}: expected a JSON object per row, got {type(item).__name__}")
        records.append(item)
        where.append(place)
    return Rows(pd.DataFrame.from_records(records) if records else pd.DataFrame(), where, path.parent)


def _read_arrow(path: Path) -> Rows:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if path.suffix.lower() == ".arrow":
            with pa.memory_map(str(path)) as source:
                try:
                    table = pa.ipc.open_file(source).read_all()
                except pa.ArrowInvalid:
                    source.seek(0)
                    table = pa.ipc.open_stream(source).read_all()
        else:
            table = pq.read_table(path)
    except (pa.ArrowException, OSError) as error:
        raise LabelsError(f"{path}: unreadable or truncated {path.suffix.lstrip('.')} file ({error}); "
                          "check it was written completely") from None
    frame = pd.DataFrame({name: table.column(name).to_pylist() for name in table.column_names})
    return Rows(frame, [f"{path}: row {i + 1}" for i in range(len(frame))], path.parent)


def find_column(rows: Rows, asked: str, candidates, what: str, flag: str, place: Path) -> str:
    columns = [str(c) for c in rows.frame.columns]
    if asked:
        if asked in columns:
            return asked
        raise LabelsError(f"{place}: no column {asked!r} ({flag}={asked}); the table's columns are "
                          f"{', '.join(columns) or '(none)'}")
    lowered = {c.lower(): c for c in columns}
    for name in candidates:
        if name in lowered:
            return lowered[name]
    votes = sorted(int(c[1:]) for c in columns if re.fullmatch(r"c\d+", c))
    hint = f", or pass vote_columns=c{votes[0]}..c{votes[-1]} if those are vote counts" \
        if what == "score" and len(votes) > 1 else ""
    raise LabelsError(f"{place}: no {what} column: none of {', '.join(candidates)} (any case); the table's columns "
                      f"are {', '.join(columns) or '(none)'}; name it with {flag}={hint}")


def split_in(record, split_column, folder_split: str, place: str) -> str:
    """A row's split: its `split` cell (train, val/validation/valid/dev, test), else its imagefolder's subfolder."""
    if split_column is None:
        return folder_split
    raw = record[split_column]
    name = "" if raw is None else str(raw).strip().lower()
    if name not in SPLIT_NAMES:
        raise LabelsError(f"{place}: split {raw!r} is not one of train, val (validation), test")
    return SPLIT_NAMES[name]


def find_image_column(rows: Rows, asked: str, place: Path) -> str:
    if not asked:  # in parquet, a column of image bytes wins over a column of names
        for column in rows.frame.columns:
            values = rows.frame[column].dropna()
            if len(values) and isinstance(values.iloc[0], (bytes, dict)) and _is_image_cell(values.iloc[0]):
                return str(column)
    return find_column(rows, asked, IMAGE_COLUMNS, "image", "image_column", place)


def _is_image_cell(value) -> bool:
    return isinstance(value, bytes) or (isinstance(value, dict) and ("bytes" in value or "path" in value))


CSV = TableReader((".csv",), lambda path: _read_csv(path, ","), "comma-separated (or ;, tab, | when the header "
                  "says so), UTF-8, a header row")
TSV = TableReader((".tsv",), lambda path: _read_csv(path, "\t"), "tab-separated, UTF-8, a header row")
JSONL = TableReader((".jsonl", ".json"), _read_json, "JSON Lines (one object per line) or a JSON array of objects")
PARQUET = TableReader((".parquet", ".pq", ".arrow"), _read_arrow, "parquet or arrow (Feather v2)")
