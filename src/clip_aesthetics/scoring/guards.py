"""Where a `score` job may write, checked before any work: nothing is ever written over an input, into a folder
holding what another job or person put there, or where the output cannot be written. Every output check of
`score` is here (one table file, a folder of parts, the parts behind a table, Spark's folder, kept shards)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Callable

from clip_aesthetics.errors import ScoringInputError

REPORT = "_report"  # under a parts folder: dataset readers skip names starting with _ or .
OLD_REPORT = ("summary.json", "summary.png", "kept.parquet")  # where versions before 2026-12-03 wrote the report
WRITTEN = "_kept-shards.json"  # in a --write-shards folder: which input each shard came from, and for which job
# What a Spark parquet output folder holds: what `write.mode("overwrite")` may delete without losing anything else.
SPARK_WRITES = re.compile(r"^(part-.*|_SUCCESS|_committed_.*|_started_.*|\..*\.crc)$")


def local(path: str) -> Path | None:
    """A plain path or file: URI, resolved; None for a URI of another filesystem (hdfs://, s3a://)."""
    return Path(str(path).removeprefix("file:")).resolve() if "://" not in str(path) or str(path).startswith(
        "file:") else None


def within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def refuse_holding_inputs(flag: str, out, real: Path, inputs, why: str) -> None:
    """Refuse an output (`real`, resolved) that is or holds one of the local inputs, symlinks followed."""
    for item in inputs:
        given = local(str(item))
        if given is not None and within(given, real):
            raise ScoringInputError(f"{flag} {out} {'is' if given == real else 'holds'} the input {item}: {why}")


def refuse_foreign(flag: str, out, real: Path, ours: Callable[[str], bool], why: str) -> None:
    """Refuse an existing output folder holding anything `ours` does not recognise as written by such a job."""
    foreign = sorted(e.name for e in real.iterdir() if not ours(e.name))
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise ScoringInputError(f"{flag} {out} already holds {foreign[0]!r}{more}, {why}")


def ours(name: str) -> bool:
    """What a score job writes in its parts folder: parts, half-written parts, the report."""
    return ((name.startswith("part-") and name.endswith(".parquet")) or (name.startswith(".") and name.endswith(".tmp"))
            or name in (REPORT, *OLD_REPORT))


def check_table(out: Path, inputs) -> None:
    """One table file (`--out scores.csv`): not a folder, under a folder that can be written, not an input."""
    out = Path(out)
    if out.is_dir():
        raise ScoringInputError(f"--out {out} is a folder; give a file name, e.g. {out / 'scores.csv'}")
    folder = next((p for p in [out.parent, *out.parent.parents] if p.exists()), Path("."))
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise ScoringInputError(f"--out {out}: cannot create files under {folder}")
    refuse_holding_inputs("--out", out, out.resolve(), inputs, "it would be written over; give the scores a file of "
                          "their own, e.g. scores.csv")


def check_parts(out: Path, inputs, flag: str = "--out") -> None:
    """A folder of parts: not a file, not an input or a folder holding one, holding only what a score job wrote."""
    real = Path(out).resolve()
    if real.exists() and not real.is_dir():
        raise ScoringInputError(f"{flag} {out}: this job writes a folder of parquet parts there, and {out} is a file; "
                                "give a new folder name, or a .csv file name for one table")
    refuse_holding_inputs(flag, out, real, inputs, "give the scores a folder of their own")
    if real.is_dir():
        refuse_foreign(flag, out, real, ours, "which a score job did not write: give a new or empty folder, the "
                       "folder of an earlier score job to resume it, or a file name for one table, e.g. "
                       f"{Path(out) / 'scores.csv'}")


def check_kept_shards(write_shards: Path, out: Path, inputs) -> None:
    """--write-shards: a folder of its own, neither inside --out nor holding it, new, empty or this job's."""
    shards_real, out_real = Path(write_shards).resolve(), Path(out).resolve()
    refuse_holding_inputs("--write-shards", write_shards, shards_real, inputs, "the kept shards would replace it; "
                          "give them a folder of their own")
    if within(shards_real, out_real) or within(out_real, shards_real):
        raise ScoringInputError(f"--write-shards {write_shards} and --out {out} must be separate folders, neither "
                                "inside the other")
    if shards_real.is_dir() and any(shards_real.iterdir()):
        manifest = shards_real / WRITTEN
        owner = json.loads(manifest.read_text()).get("out") if manifest.is_file() else None
        if owner != str(out_real):
            first = sorted(e.name for e in shards_real.iterdir())[0]
            raise ScoringInputError(f"--write-shards {write_shards} already holds {first!r}, not written by this job "
                                    f"(--out {out}): give a new or empty folder")


def check_uri(out, per_file: bool, engine_writes: bool) -> None:
    """An --out that is a URI of another filesystem (hdfs://, s3a://) is a folder of parquet parts Spark writes from
    image files: anything else would be written by this process, which reads and writes local files only."""
    if "://" not in str(out) or str(out).startswith("file:"):
        return
    if not engine_writes:
        raise ScoringInputError(f"--out {out}: only --engine spark writes to a URI; give a local path here, e.g. "
                                "scores.csv")
    if not per_file:
        raise ScoringInputError(f"--out {out}: shards and tables are written part by part on a filesystem every "
                                "executor mounts; give a path there (a URI is written by Spark for image files)")
    if Path(str(out)).suffix.lower() not in ("", ".parquet"):
        raise ScoringInputError(f"--out {out}: Spark writes a URI as a folder of parquet parts; name it .parquet "
                                "or without a suffix")


def check_spark_folder(out: str, inputs) -> None:
    """A folder Spark writes (its overwrite deletes the folder first): never an input, a file, or a folder holding
    files an earlier Spark output did not write."""
    real = local(out)
    if real is None or not real.exists():
        return
    refuse_holding_inputs("--out", out, real, inputs, "Spark replaces the output folder whole, so it would be "
                          "deleted; give the scores a folder of their own")
    if not real.is_dir():
        raise ScoringInputError(f"--out {out} is an existing file: Spark writes a folder of parquet parts there and "
                                "would delete it; give a new folder name, e.g. scores.parquet")
    refuse_foreign("--out", out, real, SPARK_WRITES.match, "which an earlier Spark output did not write: Spark "
                   "replaces the folder whole; give a new or empty folder")
