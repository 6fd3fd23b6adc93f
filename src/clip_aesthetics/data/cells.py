"""A labels table's cells -> checked values: scores, vote counts, image cells (a path inside the image folder, or
bytes) and content ids. Each refusal names the place (file:line, or file: row N), the column and the value."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import unicodedata
from pathlib import Path

import numpy as np

from clip_aesthetics.data.tables import LabelsError

DECIMAL_COMMA = re.compile(r"[+-]?\d*,\d+(?:[eE][+-]?\d+)?")


def number_in(value, place: str, column: str, decimal: str = ".") -> float:
    """A finite number; with `decimal` "," (a `;`-separated table, as European spreadsheets export them) 5,5 is
    5.5."""
    if isinstance(value, bool) or value is None:
        raise LabelsError(f"{place}: column {column!r} holds {value!r}, not a number")
    if isinstance(value, (int, float, np.integer, np.floating)):
        number = float(value)
    else:
        text = str(value).strip()
        if decimal == "," and DECIMAL_COMMA.fullmatch(text):
            text = text.replace(",", ".")
        try:
            number = float(text)
        except (ValueError, OverflowError):
            raise LabelsError(f"{place}: column {column!r} holds {text!r}, not a number") from None
    if not math.isfinite(number):
        raise LabelsError(f"{place}: column {column!r} holds {value!r}: scores must be finite numbers")
    return number


EXACT = 2**53  # beyond this a float is not an exact whole number
MOST_VOTES = 2**63 - 1  # what a vote count is stored in (int64)


def count_in(value, place: str, column: str, decimal: str = ".") -> int:
    """A vote count, exactly: integers (as text or as integers) up to 2^63 - 1, floats only while exact."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        number = int(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*\+?\d+\s*", value):
        number = int(value)
    else:
        real = number_in(value, place, column, decimal)
        if real != int(real) or abs(real) > EXACT:
            raise LabelsError(f"{place}: vote count {column!r} is {value!r}; counts are whole numbers >= 0, and past "
                              "2^53 must be written as integers (a float that large is not exact)")
        number = int(real)
    if number < 0:
        raise LabelsError(f"{place}: vote count {column!r} is {value!r}; counts are whole numbers >= 0")
    if number > MOST_VOTES:
        raise LabelsError(f"{place}: vote count {column!r} is {value!r}, more than 2^63 - 1 votes: no real rating "
                          "holds that many; the cell is damaged or holds another number")
    return number


def content_id(data: bytes) -> int:
    """The cache key of an image: the first 63 bits of its sha256 (int64, like AVA's ids)."""
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big") & (2**63 - 1)


class ContentIds:
    """Content ids of files, remembered by (size, mtime) under the cache folder so a file is read once, not on
    every run; a changed file is read again."""

    def __init__(self, cache_dir: Path | None):
        self.path = Path(cache_dir) / "content-ids.json" if cache_dir else None
        self.known: dict[str, list[int]] = {}
        self.changed = False
        if self.path and self.path.is_file():
            try:
                self.known = json.loads(self.path.read_text())
            except (ValueError, OSError):
                self.known = {}

    def of(self, path: Path) -> int:
        info = os.stat(path)
        key = str(path)
        remembered = self.known.get(key)
        if remembered and remembered[0] == info.st_size and remembered[1] == info.st_mtime_ns:
            return int(remembered[2])
        value = content_id(path.read_bytes())
        self.known[key] = [info.st_size, info.st_mtime_ns, value]
        self.changed = True
        return value

    def key(self, source: Path | bytes) -> tuple[int | None, str | None]:
        """(the content id of an image source, None), or (None, why its file cannot be read)."""
        try:
            return (content_id(source) if isinstance(source, bytes) else self.of(source)), None
        except OSError as error:
            return None, f"unreadable file: {error.strerror or error}"

    def save(self) -> None:
        if not (self.path and self.changed):
            return
        from clip_aesthetics.atomic import write_atomically

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(self.path, json.dumps(self.known).encode())
        except OSError:  # only a speed-up: a read-only cache folder costs reading the files again
            pass


def inside(root: Path, value: str, place: str) -> Path:
    """The file a path cell names, refused when it leaves the image folder (.., absolute, symlinks)."""
    given = Path(value)
    candidate = given if given.is_absolute() else root / given
    real = Path(os.path.realpath(candidate))
    if real != root and root not in real.parents:
        raise LabelsError(f"{place}: image path {value!r} leads outside the image folder {root} (to {real}); "
                          "every image must lie inside it (set image_dir= to the folder that holds them)")
    return real


def image_source(value, root: Path, place: str):
    """(name as written, file or bytes, reason it cannot be used or None) of one image cell."""
    if isinstance(value, dict):  # Hugging Face datasets' Image feature: {bytes, path}
        data, written = value.get("bytes"), value.get("path")
        if data:
            return str(written or f"{place.rsplit(': ', 1)[-1]}"), bytes(data), None
        if written:
            value = written
        else:
            return f"{place.rsplit(': ', 1)[-1]}", None, "no image in this row (null bytes and path)"
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        name = place.rsplit(": ", 1)[-1]
        return (name, data, None) if data else (name, None, "empty image bytes")
    if value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip():
        return "", None, "no image in this row"
    text = str(value).strip()
    if "\x00" in text:
        raise LabelsError(f"{place}: image path {text[:80]!r} holds a NUL byte, which no file name can: the table is "
                          "damaged or was written as binary")
    if URL.match(text):
        return text, None, ("a URL: images are read from local files or bytes, never fetched; download them first "
                            "(img2dataset, say) and label the files")
    real = inside(root, text, place)
    try:
        if not real.exists():
            match = normalised(real, root)
            if match is None:
                return text, None, "missing file"
            real = match
        if not real.is_file():
            return text, None, "not a file"
        if real.stat().st_size == 0:
            return text, None, "empty file"
    except OSError as error:  # a name too long for the filesystem, a folder without permission, ...
        return text, None, f"cannot open: {error.strerror or error}"
    return text, real, None


URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def normalised(path: Path, root: Path) -> Path | None:
    """The file that `path` names when the table and the disk write its accented letters in different Unicode
    forms (a macOS export: NFD on disk, NFC in the table, or the reverse); None when there is none."""
    found = root
    for part in path.relative_to(root).parts:
        if (found / part).exists():
            found = found / part
            continue
        wanted = unicodedata.normalize("NFC", part)
        try:
            match = next((entry for entry in os.listdir(found) if unicodedata.normalize("NFC", entry) == wanted), None)
        except OSError:
            return None
        if match is None:
            return None
        found = found / match
    return found
