"""Curation inputs -> samples: webdataset shards (`.tar`, `.tar.gz`, `.tgz`) and parquet or arrow tables of image
bytes, each read as a stream of `Sample`s (a key, the image's bytes or the reason there is none, carried columns).

Shards are read with the standard library's `tarfile` in streaming mode (one member at a time, nothing extracted,
nothing written from a member's name; gzip is undone on the fly), tables with pyarrow one record batch at a time:
memory stays bounded by one sample, or one batch, whatever the input's size.
"""

from __future__ import annotations

import glob
import json
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterator

from clip_aesthetics.errors import ScoringInputError

IMAGE_MEMBERS = ("jpg", "jpeg", "png", "webp")  # a sample's image: the first of these its members have
TEXT_MEMBERS = ("json", "txt", "url")  # read for the columns they carry; any other member is skipped unread
SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")
TABLE_SUFFIXES = (".parquet", ".pq", ".arrow")
MAX_MEMBER_BYTES = 64 * 2**20  # a member larger than this is not read into memory (and gets an error)
BATCH_ROWS = 256  # table rows per record batch: bounded memory
RESERVED = ("key", "input", "row", "score", "error")  # output columns: carried ones of these names get a prefix


@dataclass
class Sample:
    key: str
    image: bytes | None = None
    error: str = ""
    carried: dict = field(default_factory=dict)
    members: list = field(default_factory=list)  # (TarInfo, bytes) of a shard's sample, for writing kept shards


def suffix_of(path: str) -> str:
    """`.tar.gz` as one suffix, else the last one, lower case."""
    name = Path(str(path)).name.lower()
    return ".tar.gz" if name.endswith(".tar.gz") else Path(name).suffix


def is_shard(path: str) -> bool:
    return suffix_of(path) in SHARD_SUFFIXES


def is_curation_input(path: str) -> bool:
    return suffix_of(path) in SHARD_SUFFIXES + TABLE_SUFFIXES


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


# ---------------------------------------------------------------- shards

def split_name(name: str) -> tuple[str, str]:
    """webdataset's convention: `dir/00001.seg.png` -> key `dir/00001`, extension `seg.png`."""
    folder, _, base = name.rpartition("/")
    stem, dot, extension = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), (extension.lower() if dot else "")


def _unsafe(name: str) -> bool:
    path = PurePosixPath(name)
    return path.is_absolute() or ".." in path.parts or "\\" in name


def _wanted(member: tarfile.TarInfo, keep_members: bool) -> bool:
    """Whether a member's bytes are read: the image kinds and the text that is carried (or all, to copy them)."""
    if keep_members:
        return True
    last = split_name(member.name)[1].rsplit(".", 1)[-1]
    return last in IMAGE_MEMBERS or last in TEXT_MEMBERS


def read_shard(path: str, keep_members: bool = False, name: str | None = None) -> Iterator[Sample]:
    """The samples of a shard (plain or gzipped tar), in order: each is the consecutive members sharing a key.

    A sample's image is its first member with an image extension (jpg, then jpeg, png, webp); its json's
    top-level scalars and its txt (as `caption`) are carried; other members are skipped without being read
    (unless `keep_members`, to copy them). Symlinks, hardlinks and other non-files are never followed; a
    member named with an absolute path or `..` makes its sample an error (never scored or copied). A shard
    cut off in the middle ends with one row saying so.
    """
    name = name or Path(path).name
    group: list = []
    current = None
    count = 0
    try:
        with tarfile.open(path, mode="r|*") as tar:
            for member in tar:
                if member.isdir():
                    continue
                key, _ = split_name(member.name)
                if current is not None and key != current:
                    yield _sample(name, current, group, keep_members)
                    count += 1
                    group = []
                current = key
                data = None
                if member.isreg() and member.size <= MAX_MEMBER_BYTES and _wanted(member, keep_members):
                    handle = tar.extractfile(member)
                    data = handle.read() if handle is not None else None
                group.append((member, data))
            if current is not None:
                yield _sample(name, current, group, keep_members)
                count += 1
    except (tarfile.TarError, EOFError, OSError) as error:
        if group:  # the sample being read when the shard ended
            yield Sample(f"{name}/{current}", error=f"shard cut off inside this sample ({error})")
            count += 1
        yield Sample(f"{name}#end", error=f"shard cut off or unreadable after {count} sample(s): "
                     f"{type(error).__name__}: {error}")


def _sample(shard: str, key: str, group: list, keep_members: bool) -> Sample:
    sample = Sample(f"{shard}/{key}", members=group if keep_members else [])
    notes = []
    images = {}
    for member, data in group:
        _, extension = split_name(member.name)
        last = extension.rsplit(".", 1)[-1]
        if _unsafe(member.name):
            sample.error = f"unsafe member name {member.name!r} (absolute or with ..): sample not used"
            sample.members = []
            return sample
        if not member.isreg():
            kind = "symlink" if member.issym() else "hardlink" if member.islnk() else "special"
            notes.append(f"{kind} member {member.name!r} ignored")
            continue
        if data is None:
            if member.size > MAX_MEMBER_BYTES:
                notes.append(f"member {member.name!r} over {MAX_MEMBER_BYTES:,} bytes, not read")
            continue
        if last in IMAGE_MEMBERS:
            images.setdefault(last, data)
        elif extension == "json":
            _carry_json(sample, member.name, data, notes)
        elif extension == "txt":
            sample.carried["caption"] = data.decode("utf-8", errors="replace")
        elif extension == "url":
            sample.carried["url"] = data.decode("utf-8", errors="replace").strip()
    chosen = next((images[e] for e in IMAGE_MEMBERS if e in images), None)
    sample.image = chosen
    if chosen is None:
        sample.error = "no image member (jpg, jpeg, png, webp)" + (f"; {'; '.join(notes)}" if notes else "")
    return sample


def _carry_json(sample: Sample, name: str, data: bytes, notes: list) -> None:
    try:
        parsed = json.loads(data)
    except ValueError:
        notes.append(f"{name!r} is not valid JSON")
        return
    if isinstance(parsed, dict):
        for k, v in parsed.items():
            if v is None or isinstance(v, (str, int, float, bool)):
                sample.carried[f"json_{k}" if k in RESERVED else str(k)] = None if v is None else str(v)


# ---------------------------------------------------------------- tables

def image_column_of(schema, path: str, asked: str = "") -> str:
    """The column of image bytes: the one named, else the first binary or {bytes, path} struct column."""
    import pyarrow as pa

    def is_bytes(kind) -> bool:
        return (pa.types.is_binary(kind) or pa.types.is_large_binary(kind)
                or (pa.types.is_struct(kind) and kind.get_field_index("bytes") >= 0))

    if asked:
        if asked not in schema.names:
            raise ScoringInputError(f"{path}: no column {asked!r} (--image-column); the table's columns are "
                                    f"{', '.join(schema.names)}")
        kind = schema.field(asked).type
        if not is_bytes(kind):
            raise ScoringInputError(f"{path}: column {asked!r} holds {kind}, not image bytes; a table scored here must "
                                    "carry the images' bytes (binary, or a {bytes, path} struct). For file names or "
                                    "URLs, fetch the images first and score the files or folders")
        return asked
    for column in schema:
        if is_bytes(column.type):
            return column.name
    text = [c.name for c in schema if pa.types.is_string(c.type) or pa.types.is_large_string(c.type)]
    hint = (f"; its text columns ({', '.join(text[:5])}) cannot be scored as images: for file names or URLs, fetch the "
            "images first and score the files or folders") if text else ""
    raise ScoringInputError(f"{path}: no column of image bytes (binary, or a {{bytes, path}} struct) among "
                            f"{', '.join(schema.names)}{hint}")


def open_table(path: str, image_column: str = ""):
    """(schema, batches, image column) of a parquet or arrow file; ArrowException/OSError when it is damaged."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if suffix_of(path) == ".arrow":
        reader = pa.ipc.open_file(pa.memory_map(path))
        schema, batches = reader.schema, (reader.get_batch(i) for i in range(reader.num_record_batches))
    else:
        parquet = pq.ParquetFile(path)
        schema, batches = parquet.schema_arrow, parquet.iter_batches(batch_size=BATCH_ROWS)
    return schema, batches, image_column_of(schema, path, image_column)


def read_table(path: str, image_column: str = "", name: str | None = None) -> Iterator[Sample]:
    """The rows of a parquet (or arrow) table, one record batch at a time; `image_column`'s bytes are the image.

    A `key` column (img2dataset writes one) is the sample's key; otherwise `<file>#<row>`. Every row carries its
    1-based `row` number."""
    import pyarrow as pa

    name = name or Path(path).name
    try:
        schema, batches, column = open_table(path, image_column)
    except (pa.ArrowException, OSError) as error:
        yield Sample(name, error=f"unreadable or damaged table ({type(error).__name__}: {error})")
        return
    carried = [f.name for f in schema if f.name != column and not pa.types.is_binary(f.type)
               and not pa.types.is_large_binary(f.type) and not pa.types.is_nested(f.type)]
    has_key = "key" in carried
    row = 0
    try:
        for batch in batches:
            images = batch.column(column).to_pylist()
            others = {c: batch.column(c).to_pylist() for c in carried}
            for k, value in enumerate(images):
                row += 1
                own_key = others["key"][k] if has_key else None
                sample = Sample(f"{name}#{row}" if own_key is None else str(own_key),
                                carried={"row": row, **{(f"table_{c}" if c in RESERVED else c):
                                                        (None if others[c][k] is None else str(others[c][k]))
                                                        for c in carried if c != "key"}})
                if isinstance(value, dict):
                    value = value.get("bytes")
                if value is None:
                    sample.error = "no image in this row (null)"
                elif not value:
                    sample.error = "empty image data"
                else:
                    sample.image = bytes(value)
                yield sample
    except (pa.ArrowException, OSError) as error:
        yield Sample(f"{name}#end", error=f"table cut off or damaged after {row} row(s) "
                     f"({type(error).__name__}: {error})")


def read_input(path: str, image_column: str = "", keep_members: bool = False, name: str | None = None
               ) -> Iterator[Sample]:
    if is_shard(path):
        return read_shard(path, keep_members, name)
    return read_table(path, image_column, name)
