"""What `score` reads -> samples: each input format is an `InputReader` entry of `extensions.SCORE_INPUTS`, chosen by
a file's suffix, and everything is read as one stream of `Sample`s (a key, the image's bytes or file, or the reason
there is none, carried columns).

Two kinds of format: a *per-file* one (image files, scoring/image_files.py) is one sample per file, and the files of
a job (given one by one, or found in folders) are scored into one table keyed by `path`; a *container* (webdataset
shards, scoring/shards.py; parquet or arrow tables of image bytes, scoring/byte_tables.py) holds many samples, keyed
by `key` and `input`, and each one is scored into a part of its own (resumable). `expand` turns what the user typed
(files, folders, brace patterns, globs) into the job's inputs once. Readers keep memory bounded by one sample or one
batch, whatever the input's size; a new format is its own module defining an `InputReader` and one entry in the
table.
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from clip_aesthetics.errors import ScoringInputError

RESERVED = ("key", "input", "row", "score", "score_std", "percentile", "error")  # output columns: carried ones of these
# names get a prefix


@dataclass
class Sample:
    key: str
    image: bytes | Path | None = None  # a file's path (read by the scorer, as it decodes) or encoded bytes
    error: str = ""
    carried: dict = field(default_factory=dict)
    members: list = field(default_factory=list)  # (TarInfo, bytes) of a shard's sample, for writing kept shards


@dataclass(frozen=True)
class InputReader:
    """One input format of `score`.

    `read(path, image_column, keep_members, name)` yields the input's samples in order: never raises on a damaged
    input (its last sample says where it ended), a sample without a usable image carries the reason as its error.
    A per-file format's `read` yields the one sample of its file, and `from_bytes(key, data)` makes it from the
    file's contents (what an engine that lists files itself hands over). `write_kept(samples, path, source) ->
    count`: writes samples read with `keep_members` into a new input of the same format at `path`
    (`--write-shards`); None when the format cannot."""

    suffixes: tuple[str, ...]
    read: Callable[..., Iterator[Sample]]
    description: str
    write_kept: Callable | None = None
    per_file: bool = False
    from_bytes: Callable[[str, bytes], Sample] | None = None


def _readers():
    from clip_aesthetics.extensions import SCORE_INPUTS

    return [reader for _, reader in SCORE_INPUTS.entries()]


def suffixes(per_file: bool | None = None) -> list[str]:
    """The suffixes the readers know (of per-file formats only, or of containers only)."""
    return [s for r in _readers() if per_file is None or r.per_file == per_file for s in r.suffixes]


def suffix_of(path: str) -> str:
    """The longest suffix an input reader knows (`.tar.gz` as one), else the last one, lower case."""
    name = Path(str(path)).name.lower()
    known = [s for s in suffixes() if name.endswith(s)]
    return max(known, key=len) if known else Path(name).suffix


def reader_for(path: str) -> InputReader | None:
    """The reader of `path`'s format; None for anything else (a folder, a file of no known format)."""
    suffix = suffix_of(path)
    return next((reader for reader in _readers() if suffix in reader.suffixes), None)


def is_container(path: str) -> bool:
    reader = reader_for(path)
    return reader is not None and not reader.per_file


def is_shard(path: str) -> bool:
    """Whether kept samples of `path` can be copied into new inputs of its format (`--write-shards`)."""
    reader = reader_for(path)
    return reader is not None and reader.write_kept is not None


@dataclass(frozen=True)
class Inputs:
    """A job's inputs, expanded once: per-file inputs (one sample each, in order) or containers (a part each)."""

    files: tuple[str, ...] = ()
    containers: tuple[str, ...] = ()
    given: tuple[str, ...] = ()  # as the user typed them (what an engine that lists files itself reads)

    @property
    def per_file(self) -> bool:
        return bool(self.files) or not self.containers


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
                raise ScoringInputError(f"no such file or folder: {pattern}" + (f" (from the pattern {item})"
                                                                                if pattern != item else ""))
            found.update((m, None) for m in matches)
    return list(found)


def plan(inputs: list[str], remote: bool = False) -> Inputs:
    """What the user typed -> the job's inputs: every file a reader knows, in folders too (recursively, sorted), each
    once; a file given by name is read whatever its suffix (an image with an odd name). Per-file inputs and
    containers are not mixed in one job (their rows differ). `remote`: an engine that reads paths and URIs itself
    (Spark): what it cannot see here (hdfs://, s3a://) is passed on as given."""
    local = [i for i in inputs if not (remote and _is_uri(i))]
    files: dict[str, None] = {}
    containers: dict[str, None] = {}
    for path in expand(local):
        if Path(path).is_dir():
            for found in sorted(p for p in Path(path).rglob("*") if p.is_file()):
                reader = reader_for(str(found))
                if reader is not None:
                    (files if reader.per_file else containers)[str(found)] = None
        else:
            (containers if is_container(path) else files)[path] = None
    if files and containers:
        raise ScoringInputError(f"score either image files and folders, or webdataset shards and tables, not both in "
                                f"one job: {next(iter(files))} and {next(iter(containers))}")
    if not files and not containers and len(local) == len(inputs):
        raise ScoringInputError(f"nothing to score under {', '.join(map(str, inputs))}: no file of the formats read "
                                f"({', '.join(sorted(set(suffixes())))})")
    return Inputs(tuple(files), tuple(containers), tuple(map(str, inputs)))


def _is_uri(path: str) -> bool:
    return "://" in str(path) and not str(path).startswith("file:")


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
    if reader is None:  # a file given by name: read as an image, whatever its suffix
        from clip_aesthetics.extensions import SCORE_INPUTS

        reader = SCORE_INPUTS.get("files")
    return reader.read(path, image_column, keep_members, name)


def read_files(paths, image_column: str = "") -> Iterator[Sample]:
    """The samples of per-file inputs, one per file, in order."""
    for path in paths:
        yield from read_input(path, image_column)
