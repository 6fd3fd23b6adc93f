"""One `score` job: inputs (expanded once), a model (resolved and fetched once), an output (chosen by --out), and
the loop that runs it in this process: reader -> scorer -> writer, the same for every input format.

An engine (engines/) runs `score_here` or its own distribution of the same steps; either way per-file inputs give
one table of rows keyed by `path`, and containers one part each (resumable), which `rows` reads back in input
order."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from clip_aesthetics.scoring import curate
from clip_aesthetics.scoring.outputs import Output
from clip_aesthetics.scoring.samples import Inputs, read_files


@dataclass
class ScoreJob:
    inputs: Inputs
    model_uri: str  # as the user named it (rows and reports say it)
    model_folder: str  # the model, fetched once: every scorer of the job loads this copy
    identity: dict  # what identifies the model and the options that change its rows (a part's metadata)
    output: Output
    image_column: str = ""
    precision: str | None = None
    num_workers: int = -1
    partitions: int = 0  # Spark tasks to split per-file inputs into; 0 = Spark's choice
    counts: dict = field(default_factory=dict)  # what the engine reports: model loads, ...

    @property
    def todo(self) -> list[str]:
        """The containers without a complete part (what a resumed job still scores)."""
        return curate.not_done(list(self.inputs.containers), self.output.parts)


@dataclass
class Scored:
    """What a job gives back: its rows in input order, the model's scale and reference (never hidden in attrs)."""

    rows: pd.DataFrame
    score_range: tuple[float, float]
    reference: object  # scoring.reference.Reference or None


def score_here(job: ScoreJob) -> pd.DataFrame | None:
    """The job in this process: per-file inputs -> their rows (returned); containers -> a part each (None)."""
    from clip_aesthetics.environment import STARTED
    from clip_aesthetics.scoring.uris import load_scorer

    scorer = load_scorer(job.model_folder, job.precision)
    print(f"precision: {scorer.precision_reason}")
    job.counts["model_loads"] = 1
    if not job.inputs.per_file:
        todo = job.todo
        for number, path in enumerate(todo, start=1):
            rows = curate.score_input(scorer, path, job.output.parts, job.image_column, job=job.identity)
            print(f"[{number}/{len(todo)}] {path}: {rows} row(s)", file=sys.stderr, flush=True)
        return None
    samples = list(read_files(job.inputs.files, job.image_column))
    first = curate.score_samples(scorer, samples[:1], num_workers=0)  # the cold start a user waits for, on its own
    print(f"first score {time.perf_counter() - STARTED:.1f} s after the command started (imports, loading the "
          f"model, one image)")
    rest = curate.score_samples(scorer, samples[1:], num_workers=job.num_workers, progress=True) \
        if len(samples) > 1 else first[:0]
    return pd.concat([first, rest], ignore_index=True)


def rows(job: ScoreJob, here: pd.DataFrame | None) -> pd.DataFrame:
    """The job's rows in input order: those scored here, else read back from its parts."""
    if here is not None:
        return here
    if job.inputs.per_file:  # an engine wrote them as parts itself (Spark)
        return pd.read_parquet(job.output.parts)
    return curate.read_parts(job.output.parts, list(job.inputs.containers))


def model_scale(folder: str | Path) -> tuple[tuple[float, float], object]:
    """(score range, reference) of the model saved in `folder`, from its scorer.json."""
    from clip_aesthetics.scoring.reference import of_spec
    from clip_aesthetics.scoring.uris import read_spec, score_range_of

    return score_range_of(folder), of_spec(read_spec(folder))
