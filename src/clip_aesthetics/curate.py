"""Curation-scale inputs: webdataset shards (`.tar`) and parquet or arrow tables of image bytes -> one output row per
input sample, streamed, resumable; a summary to choose a threshold from; the kept samples as keys and as shards.

Shards are read with the standard library's `tarfile` in streaming mode (one member at a time, nothing extracted,
nothing written from a member's name), tables with pyarrow one record batch at a time: memory stays bounded by
one sample, or one batch, whatever the input's size. Each input is scored into its own part of the output
folder, written atomically, so a job killed and started again scores only the inputs without a complete part.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import math
import os
import re
import secrets
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterator

import numpy as np
import pandas as pd

from .errors import ScoringInputError

IMAGE_MEMBERS = ("jpg", "jpeg", "png", "webp")  # a sample's image: the first of these its members have
SHARD_SUFFIXES = (".tar",)
TABLE_SUFFIXES = (".parquet", ".pq", ".arrow")
MAX_MEMBER_BYTES = 64 * 2**20  # a member larger than this is not read into memory (and gets an error)
CHUNK = 256  # samples per scoring call: bounded memory, full batches for the model
PERCENTILES = (1, 5, 10, 25, 50, 75, 90, 95, 99)
RESERVED = ("key", "input", "score", "error")
SUMMARY, HISTOGRAM, KEPT = "summary.json", "summary.png", "kept.parquet"


@dataclass
class Sample:
    key: str
    image: bytes | None = None
    error: str = ""
    carried: dict = field(default_factory=dict)
    members: list = field(default_factory=list)  # (TarInfo, bytes) of a shard's sample, for writing kept shards


def expand(inputs: list[str]) -> list[str]:
    """Brace patterns (`shards/{00000..00099}.tar`) and globs -> paths, in order, each once."""
    found: dict[str, None] = {}
    for item in inputs:
        for pattern in _braces(str(item)):
            matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
            if not matches:
                raise ScoringInputError(f"no file matches {pattern}")
            found.update((m, None) for m in matches)
    return list(found)


def _braces(text: str) -> list[str]:
    match = re.search(r"\{([^{}]*)\}", text)
    if not match:
        return [text]
    body = match.group(1)
    ranged = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    options = ([str(k).zfill(len(ranged.group(1))) for k in range(int(ranged.group(1)), int(ranged.group(2)) + 1)]
               if ranged else body.split(","))
    return [expanded for option in options
            for expanded in _braces(text[:match.start()] + option + text[match.end():])]


def is_curation_input(path: str) -> bool:
    return Path(path).suffix.lower() in SHARD_SUFFIXES + TABLE_SUFFIXES


# ---------------------------------------------------------------- reading shards

def _split_name(name: str) -> tuple[str, str]:
    """webdataset's convention: `dir/00001.seg.png` -> key `dir/00001`, extension `seg.png`."""
    folder, _, base = name.rpartition("/")
    stem, dot, extension = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), (extension.lower() if dot else "")


def _unsafe(name: str) -> bool:
    path = PurePosixPath(name)
    return path.is_absolute() or ".." in path.parts or "\\" in name


def read_shard(path: str, keep_members: bool = False) -> Iterator[Sample]:
    """The samples of a shard, in order: each is the consecutive members that share a key.

    A sample's image is its first member with an image extension (jpg, then jpeg, png, webp); its json's
    top-level scalars and its txt (as `caption`) are carried. Symlinks, hardlinks and other non-files are never
    followed; a member named with an absolute path or `..` makes its sample an error (never scored or copied).
    A shard cut off in the middle ends with one row saying so.
    """
    name = Path(path).name
    group: list = []
    current = None
    count = 0
    try:
        with tarfile.open(path, mode="r|*") as tar:
            for member in tar:
                if member.isdir():
                    continue
                key, _ = _split_name(member.name)
                if current is not None and key != current:
                    yield _sample(name, current, group, keep_members)
                    count += 1
                    group = []
                current = key
                data = None
                if member.isreg() and member.size <= MAX_MEMBER_BYTES:
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
        _, extension = _split_name(member.name)
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
            notes.append(f"member {member.name!r} over {MAX_MEMBER_BYTES:,} bytes, not read")
            continue
        if last in IMAGE_MEMBERS:
            images.setdefault(last, data)
        elif extension == "json":
            try:
                parsed = json.loads(data)
            except ValueError:
                notes.append(f"{member.name!r} is not valid JSON")
                parsed = {}
            if isinstance(parsed, dict):
                for k, v in parsed.items():
                    if v is None or isinstance(v, (str, int, float, bool)):
                        sample.carried[f"json_{k}" if k in RESERVED else str(k)] = None if v is None else str(v)
        elif extension == "txt":
            sample.carried["caption"] = data.decode("utf-8", errors="replace")
        elif extension == "url":
            sample.carried["url"] = data.decode("utf-8", errors="replace").strip()
    chosen = next((images[e] for e in IMAGE_MEMBERS if e in images), None)
    sample.image = chosen
    if chosen is None:
        sample.error = "no image member (jpg, jpeg, png, webp)" + (f"; {'; '.join(notes)}" if notes else "")
    return sample


# ---------------------------------------------------------------- reading tables

def image_column_of(schema, asked: str = "") -> str:
    import pyarrow as pa

    if asked:
        if asked not in schema.names:
            raise ScoringInputError(f"no column {asked!r} (image_column=); the table's columns are "
                                    f"{', '.join(schema.names)}")
        return asked
    for column in schema:
        if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
            return column.name
        if pa.types.is_struct(column.type) and column.type.get_field_index("bytes") >= 0:
            return column.name
    raise ScoringInputError(f"no column of image bytes (binary, or a {{bytes, path}} struct) among "
                            f"{', '.join(schema.names)}; name it with image_column=")


def read_table(path: str, image_column: str = "") -> Iterator[Sample]:
    """The rows of a parquet (or arrow) table, one record batch at a time; `image_column`'s bytes are the image."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    name = Path(path).name
    try:
        if Path(path).suffix.lower() == ".arrow":
            reader = pa.ipc.open_file(pa.memory_map(path))
            schema, batches = reader.schema, (reader.get_batch(i) for i in range(reader.num_record_batches))
        else:
            parquet = pq.ParquetFile(path)
            schema, batches = parquet.schema_arrow, parquet.iter_batches(batch_size=CHUNK)
    except (pa.ArrowException, OSError) as error:
        yield Sample(name, error=f"unreadable or damaged table ({type(error).__name__}: {error})")
        return
    column = image_column_of(schema, image_column)
    carried = [f.name for f in schema if f.name != column and not pa.types.is_binary(f.type)
               and not pa.types.is_large_binary(f.type) and not pa.types.is_nested(f.type)]
    row = 0
    try:
        for batch in batches:
            images = batch.column(column).to_pylist()
            others = {c: batch.column(c).to_pylist() for c in carried}
            for k, value in enumerate(images):
                row += 1
                sample = Sample(f"{name}#{row}", carried={(f"table_{c}" if c in RESERVED else c):
                                                          (None if others[c][k] is None else str(others[c][k]))
                                                          for c in carried})
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


def read_input(path: str, image_column: str = "", keep_members: bool = False) -> Iterator[Sample]:
    if Path(path).suffix.lower() in SHARD_SUFFIXES:
        return read_shard(path, keep_members)
    return read_table(path, image_column)


# ---------------------------------------------------------------- scoring into parts

def part_path(out: Path, path: str) -> Path:
    """One output part per input, named after it (and its full path, so two inputs never share a part)."""
    digest = hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:10]
    stem = re.sub(r"[^\w.-]+", "_", Path(path).name)[-80:]
    return Path(out) / f"part-{stem}-{digest}.parquet"


def score_input(scorer, path: str, out: Path, image_column: str = "") -> int:
    """Score every sample of one input into its part (written atomically); returns the number of rows."""
    frames = []
    chunk: list[Sample] = []
    for sample in read_input(path, image_column):
        chunk.append(sample)
        if len(chunk) >= CHUNK:
            frames.append(_score_chunk(scorer, chunk, path))
            chunk = []
    if chunk or not frames:
        frames.append(_score_chunk(scorer, chunk, path))
    frame = pd.concat(frames, ignore_index=True)
    target = part_path(out, path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(3)}.tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, target)
    return len(frame)


def _score_chunk(scorer, chunk: list[Sample], path: str) -> pd.DataFrame:
    from .scorer import _decode_value

    scores = np.full(len(chunk), np.nan)
    errors = [s.error for s in chunk]
    todo = [k for k, s in enumerate(chunk) if s.image is not None and not s.error]
    if todo:
        scored = scorer._score([chunk[k].image for k in todo], _decode_value, threads=True)
        scores[todo] = scored["score"].to_numpy()
        for k, error in zip(todo, scored["error"], strict=True):
            errors[k] = error
    frame = pd.DataFrame({"key": [s.key for s in chunk], "input": str(path), "score": scores, "error": errors})
    carried = pd.DataFrame([s.carried for s in chunk], index=frame.index)
    return pd.concat([frame, carried.astype(object)], axis=1) if len(carried.columns) else frame


def score_inputs(paths: list[str], model_uri: str, out: Path, engine: str = "local", image_column: str = "",
                 partitions: int = 0) -> dict:
    """Score every input not yet done into `out`; returns counts (inputs done before, scored now)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    todo = [p for p in paths if not part_path(out, p).exists()]
    done_before = len(paths) - len(todo)
    if done_before:
        print(f"resuming: {done_before} of {len(paths)} input(s) already have a complete part in {out}")
    if todo and engine == "spark":
        from . import spark

        spark.score_inputs(spark.session(), todo, model_uri, str(out), image_column)
    elif todo:
        from .scorer import load_scorer

        scorer = load_scorer(model_uri)
        for number, path in enumerate(todo, start=1):
            rows = score_input(scorer, path, out, image_column)
            print(f"[{number}/{len(todo)}] {path}: {rows} row(s)", file=sys.stderr, flush=True)
    return {"inputs": len(paths), "resumed": done_before, "scored_now": len(todo)}


def read_parts(out: Path, paths: list[str]) -> pd.DataFrame:
    """The output rows of these inputs, in input order."""
    frames = [pd.read_parquet(part_path(out, p)) for p in paths]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(RESERVED))


# ---------------------------------------------------------------- summary and selection

def summarise(frame: pd.DataFrame, score_range: tuple[float, float]) -> dict:
    scores = frame["score"].dropna().to_numpy(dtype=np.float64)
    failed = frame.loc[frame["score"].isna(), "error"].fillna("").map(lambda e: e.split(" (")[0] or "unknown")
    summary = {"count": int(len(frame)), "scored": int(len(scores)), "failed": int(len(frame) - len(scores)),
               "failures_by_reason": {k: int(v) for k, v in failed.value_counts().items()},
               "mean": float(scores.mean()) if len(scores) else None,
               "percentiles": ({f"p{q}": float(v) for q, v in zip(PERCENTILES, np.percentile(scores, PERCENTILES),
                                                                   strict=True)} if len(scores) else {}),
               "score_range": list(score_range)}
    return summary


def summary_lines(summary: dict) -> list[str]:
    lines = [f"{summary['count']} sample(s): {summary['scored']} scored, {summary['failed']} failed"]
    lines += [f"  failed: {n} x {reason}" for reason, n in summary["failures_by_reason"].items()]
    if summary["mean"] is not None:
        low, high = summary["score_range"]
        lines.append(f"  mean {summary['mean']:.4f} (the model's {low:g}-{high:g} scale)")
        lines.append("  " + ", ".join(f"{k} {v:.4f}" for k, v in summary["percentiles"].items()))
    return lines


def write_summary(frame: pd.DataFrame, out: Path, score_range: tuple[float, float]) -> dict:
    from . import gallery, plots

    summary = summarise(frame, score_range)
    (Path(out) / SUMMARY).write_text(json.dumps(summary, indent=2))
    figure = plots.histogram(frame["score"].dropna().to_numpy(), gallery.bucket_edges(*score_range))
    (Path(out) / HISTOGRAM).write_bytes(plots.png_bytes(figure))
    plots.close(figure)
    return summary


def select(frame: pd.DataFrame, min_score: float | None = None, top_fraction: float | None = None) -> pd.DataFrame:
    """The kept rows: score >= min_score and/or among the best `top_fraction` of all inputs (failures count as
    inputs, never kept); ties at the cut are broken by key order. Best first."""
    scored = frame[frame["score"].notna()].sort_values(["score", "key"], ascending=[False, True], kind="stable")
    if min_score is not None:
        scored = scored[scored["score"] >= min_score]
    if top_fraction is not None:
        scored = scored.head(math.floor(top_fraction * len(frame) + 1e-9))
    return scored[["key", "input", "score"]].reset_index(drop=True)


def write_kept_shards(kept: pd.DataFrame, paths: list[str], folder: Path) -> dict[str, int]:
    """New shards in `folder` (one per input shard with kept samples, same name) holding only the kept samples,
    every member copied byte for byte; written atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    wanted = kept.groupby("input")["key"].apply(set).to_dict()
    written = {}
    for path in paths:
        keys = wanted.get(str(path))
        if not keys or Path(path).suffix.lower() not in SHARD_SUFFIXES:
            continue
        target = folder / Path(path).name
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        count = 0
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for sample in read_shard(path, keep_members=True):
                if sample.key in keys:
                    for member, data in sample.members:
                        if data is not None and member.isreg():
                            tar.addfile(member, io.BytesIO(data))
                    count += 1
        os.replace(tmp, target)
        written[str(target)] = count
    return written
