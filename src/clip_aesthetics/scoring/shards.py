"""The `shard` input format: webdataset shards (`.tar`, `.tar.gz`, `.tgz`), read with the standard library's
`tarfile` in streaming mode (one member at a time, nothing extracted, nothing written from a member's name; gzip
is undone on the fly)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path, PurePosixPath
from typing import Iterator

from clip_aesthetics.scoring.samples import RESERVED, InputReader, Sample

IMAGE_MEMBERS = ("jpg", "jpeg", "png", "webp")  # a sample's image: the first of these its members have
TEXT_MEMBERS = ("json", "txt", "url")  # read for the columns they carry; any other member is skipped unread
SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")
MAX_MEMBER_BYTES = 64 * 2**20  # a member larger than this is not read into memory (and gets an error)


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


def write_kept(samples: Iterator[Sample], path: Path, source: str) -> int:
    """Samples read with their members -> a new shard at `path`, gzipped where `source` was; returns the count."""
    mode = "w:gz" if str(source).lower().endswith((".tar.gz", ".tgz")) else "w"
    count = 0
    with tarfile.open(path, mode, format=tarfile.PAX_FORMAT) as tar:
        for sample in samples:
            for member, data in sample.members:
                if data is not None and member.isreg():
                    tar.addfile(member, io.BytesIO(data))
            count += 1
    return count


SHARDS = InputReader(SHARD_SUFFIXES, lambda path, image_column="", keep_members=False, name=None:
                     read_shard(path, keep_members, name),
                     "webdataset shards: a sample is the consecutive members sharing a key; its image the first jpg, "
                     "jpeg, png or webp member; its json's scalars, txt and url carried", write_kept=write_kept)
