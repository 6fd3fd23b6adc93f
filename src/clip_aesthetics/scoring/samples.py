"""Curation inputs -> samples: each input format is an `InputReader` entry of `extensions.SCORE_INPUTS` (built in:
webdataset shards, scoring/shards.py; parquet or arrow tables of image bytes, scoring/byte_tables.py), chosen by
the input's suffix and read as one stream of `Sample`s (a key, the image's bytes or the reason there is none,
carried columns). Readers keep memory bounded by one sample or one batch, whatever the input's size; a new
format is its own module defining an `InputReader` and one entry in the table.
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from clip_aesthetics.errors import ScoringInputError

RESERVED = ("key", "input", "row", "score", "score_std", "percentile", "error")  # output columns: carried ones of these names get a prefix


@dataclass
class Sample:
    key: str
    image: bytes | None = None
    error: str = ""
    carried: dict = field(default_factory=dict)
    members: list = field(default_factory=list)  # (TarInfo, bytes) of a shard's sample, for writing kept shards


@dataclass(frozen=True)
class InputReader:
    """One input format of `score`.

    `read(path, image_column, keep_members, name)` yields the input's samples in order: never raises on a damaged
    input (its last sample says where it ended), a sample without a usable image carries the reason as its error.
    `write_kept(samples, path, source) -> count`: writes samples read with `keep_members` into a new input of the
    same format at `path` (`--write-shards`), their members copied byte for byte; None when the format cannot."""

    suffixes: tuple[str, ...]
    read: Callable[..., Iterator[Sample]]
    description: str
    write_kept: Callable | None = None


def _readers():
    from clip_aesthetics.extensions import SCORE_INPUTS

    return [reader for _, reader in SCORE_INPUTS.entries()]


def suffixes() -> list[str]:
    return [suffix for reader in _readers() for suffix in reader.suffixes]


def suffix_of(path: str) -> str:
    """The longest suffix an input reader knows (`.tar.gz` as one), else the last one, lower case."""
    name = Path(str(path)).name.lower()
    known = [s for s in suffixes() if name.endswith(s)]
    return max(known, key=len) if known else Path(name).suffix


def reader_for(path: str) -> InputReader | None:
    """The reader of `path`'s format; None for anything else (an image file, a folder)."""
    suffix = suffix_of(path)
    return next((reader for reader in _readers() if suffix in reader.suffixes), None)


def is_curation_input(path: str) -> bool:
    return reader_for(path) is not None


def is_shard(path: str) -> bool:
    """Whether kept samples of `path` can be copied into new inputs of its format (`--write-shards`)."""
    reader = reader_for(path)
    return reader is not None and reader.write_kept is not None


def expand(inputs: list[str]) -> list[str]:
    """Brace patterns (`shards/{00000..00099}.tar`) and globs -> existing paths, in order, each once.

    Patterns are expanded lazily: each path is checked as it is made, and the first that does not exist is
    refused, so `{00000000..99999999}` costs one look-up, not a list of a hundred million names."""
    found: dict[str, None] = {}
    for item in inputs:
        for pattern in _braces(str(item)):
            matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
            if not matches:
                raise ScoringInputError(f"no file matches {pattern}" + (f" (from {item})" if pattern != item else ""))
            if not glob.has_magic(pattern) and not Path(pattern).exists():
                raise ScoringInputError(f"no such file: {pattern}" + (f" (from the pattern {item})"
                                                                      if pattern != item else ""))
            found.update((m, None) for m in matches)
    return list(found)


def _braces(text: str) -> Iterator[str]:
    match = re.search(r"\{([^{}]*)\}", text)
    if not match:
        yield text
        return
    body = match.group(1)
    ranged = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if ranged:
        width, low, high = len(ranged.group(1)), int(ranged.group(1)), int(ranged.group(2))
        options = (str(k).zfill(width) for k in range(low, high + 1))
    else:
        options = iter(body.split(","))
    for option in options:
        yield from _braces(text[:match.start()] + option + text[match.end():])


def read_input(path: str, image_column: str = "", keep_members: bool = False, name: str | None = None
               ) -> Iterator[Sample]:
    reader = reader_for(path)
    if reader is None:
        raise ScoringInputError(f"{path}: no input reader for its suffix; known: {', '.join(suffixes())}")
    return reader.read(path, image_column, keep_members, name)
