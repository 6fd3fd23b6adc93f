"""Scoring containers (shards and tables, scoring/samples.py) into parts: a folder of parquet parts, one row per
input sample, resumable; and the one function every engine scores samples with (`score_samples`).

The output folder holds parquet parts only (`part-*.parquet`, what pandas, Spark and DuckDB read as one dataset);
the summary, its histogram and the kept keys go under `_report/`, a name dataset readers skip. Each part is
written atomically and records, in its parquet metadata, the model that scored it (URI, version, run, the
digests of its head and spec) and the options that change its rows: a job resumed with another model or other
options is refused, never mixed. Nothing is ever written over an input: an output folder or a shards folder
that holds one, or that holds what another job wrote, is refused before any work.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from clip_aesthetics.atomic import atomic_path
from clip_aesthetics.errors import ScoringInputError
from clip_aesthetics.scoring.guards import OLD_REPORT, REPORT, WRITTEN  # noqa: F401  (WRITTEN: for the report)
from clip_aesthetics.scoring.samples import RESERVED, Sample, read_input

CHUNK = 256  # samples per scoring call: bounded memory, full batches for the model
SUMMARY, HISTOGRAM, KEPT = OLD_REPORT  # under the parts folder's _report/ (beside the parts before 2026-12-03)
METADATA_KEY = b"clip_aesthetics"  # a part's parquet metadata: the job that wrote it
SAME_JOB = ("head_sha256", "spec_sha256", "image_column")  # what must match for a part to be resumed


# ---------------------------------------------------------------- the job's identity and resuming

def describe_job(job: dict) -> str:
    where = f"version {job['version']} of {job['registered_model']}" if job.get("version") else ""
    run = f"run {job['run_id']}" if job.get("run_id") else ""
    origin = ", ".join(x for x in (where, run) if x)
    column = f", image_column={job['image_column']}" if job.get("image_column") else ""
    origin = f" ({origin})" if origin else ""
    return f"{job.get('model_uri', '?')}{origin}, head sha256 {str(job.get('head_sha256'))[:12]}{column}"


def part_job(part: Path) -> dict | None:
    import pyarrow.parquet as pq

    metadata = pq.read_schema(part).metadata or {}
    return json.loads(metadata[METADATA_KEY]) if METADATA_KEY in metadata else None


def check_resumable(out: Path, job: dict, fresh: bool) -> None:
    """Refuse to add to parts another model or other options wrote (or, with `fresh`, remove them first)."""
    parts = sorted(Path(out).glob("part-*.parquet")) if Path(out).is_dir() else []
    for part in parts:
        theirs = part_job(part)
        if theirs is not None and all(theirs.get(k) == job.get(k) for k in SAME_JOB):
            continue
        if fresh:
            for old in parts:
                old.unlink()
            shutil.rmtree(Path(out) / REPORT, ignore_errors=True)
            for name in OLD_REPORT:
                (Path(out) / name).unlink(missing_ok=True)
            print(f"--fresh: removed {len(parts)} part(s) of an earlier job from {out}")
            return
        what = describe_job(theirs) if theirs else "a model an earlier version of clip-aesthetics did not record"
        raise ScoringInputError(f"--out {out} holds scores of another model or other options ({part.name}: {what}; "
                                f"this job: {describe_job(job)}): pass --fresh to score every input again into it, "
                                "or choose another --out")


# ---------------------------------------------------------------- scoring into parts

def part_path(out: Path, path: str) -> Path:
    """One output part per input, named after it (and its full path, so two inputs never share a part)."""
    stem = re.sub(r"[^\w.-]+", "_", Path(path).name)[-80:]
    return Path(out) / f"part-{stem}-{path_digest(path)}.parquet"


def path_digest(path: str) -> str:
    return hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:10]


def score_input(scorer, path: str, out: Path, image_column: str = "", source: str | None = None,
                job: dict | None = None) -> int:
    """Score every sample of one container into its part (written atomically); returns the number of rows. `source`
    is where to read it when that differs from `path` as the user gave it (an executor's absolute path)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    frames = []
    chunk: list[Sample] = []
    for sample in read_input(source or path, image_column, name=Path(path).name):
        chunk.append(sample)
        if len(chunk) >= CHUNK:
            frames.append(score_samples(scorer, chunk, path))
            chunk = []
    if chunk or not frames:
        frames.append(score_samples(scorer, chunk, path))
    frame = pd.concat(frames, ignore_index=True)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                           METADATA_KEY: json.dumps(job or {}).encode()})
    with atomic_path(part_path(out, source or path)) as tmp:
        pq.write_table(table, tmp)
    return len(frame)


def score_samples(scorer, chunk: list[Sample], container: str | None = None, num_workers: int = -1,
                  progress: bool = False) -> pd.DataFrame:
    """Samples -> one row each, in order: the scorer's answer (score, what its head adds, percentile), error; keyed
    by `path` (per-file samples), or by key and input with the carried columns (a `container`'s samples). The one
    function every engine scores samples with."""
    errors = [s.error for s in chunk]
    todo = [k for k, s in enumerate(chunk) if s.image is not None and not s.error]
    scored = scorer.score_sources([chunk[k].image for k in todo], num_workers=num_workers, progress=progress) \
        if todo else None
    answer = {"score": np.full(len(chunk), np.nan), "percentile": np.full(len(chunk), np.nan)} if container \
        else {}
    columns = list(scored.columns.drop("error")) if scored is not None else \
        ["score", *getattr(scorer, "extra_outputs", []), "percentile"]
    for column in columns:
        answer.setdefault(column, np.full(len(chunk), np.nan))
        if scored is not None:
            answer[column][todo] = scored[column].to_numpy(dtype=np.float64)
    for k, error in zip(todo, scored["error"] if scored is not None else [], strict=True):
        errors[k] = error
    if container is None:
        return pd.DataFrame({"path": [s.key for s in chunk], **answer, "error": errors})
    frame = pd.DataFrame({"key": [s.key for s in chunk], "input": str(container), **answer, "error": errors})
    carried = pd.DataFrame([s.carried for s in chunk], index=frame.index)
    return pd.concat([frame, carried.astype(object)], axis=1) if len(carried.columns) else frame


def not_done(paths: list[str], out: Path) -> list[str]:
    """The inputs without a complete part in `out` (what a resumed job still scores)."""
    return [p for p in paths if not part_path(out, p).exists()]


def score_here(todo: list[str], model_folder: str, out: Path, job: dict, image_column: str = "",
               precision: str | None = None) -> None:
    """Score the containers one after the other in this process, with the model saved in `model_folder`."""
    from clip_aesthetics.scoring.uris import load_scorer

    scorer = load_scorer(model_folder, precision)
    print(f"precision: {scorer.precision_reason}")
    for number, path in enumerate(todo, start=1):
        rows = score_input(scorer, path, out, image_column, job=job)
        print(f"[{number}/{len(todo)}] {path}: {rows} row(s)", file=sys.stderr, flush=True)


def read_parts(out: Path, paths: list[str]) -> pd.DataFrame:
    """The output rows of these inputs, in input order."""
    frames = [pd.read_parquet(part_path(out, p)) for p in paths]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(RESERVED))
