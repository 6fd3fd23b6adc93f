"""`score`'s output: the table of its rows written in the format `--out`'s suffix names, the same for every input.

Each format is one `OutputWriter` entry of `extensions.SCORE_OUTPUTS`, keyed by suffix: `.csv` is one CSV table;
`.parquet` is one parquet table, written as a folder of parquet parts (what pandas, Spark and DuckDB read as one
table) where the job writes in parts: shards and tables (a part per input, resumable) and Spark. A name without a
suffix is such a folder. A job that writes in parts into a one-file format (a CSV of shards) keeps its parts in
`<out>.parts/` (resumable, with the report) and writes the table from them at the end. Every table is written whole
or not at all (a temporary file renamed into place). A new format is one entry there and its writer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from clip_aesthetics.atomic import atomic_path
from clip_aesthetics.errors import ScoringInputError


@dataclass(frozen=True)
class OutputWriter:
    write: Callable[[pd.DataFrame, Path], None]  # (the rows: path or key, score, percentile, error, ...; the file)
    description: str
    parts: bool = False  # it can be a folder of parquet parts: a job writing in parts writes them there itself


def _csv(frame: pd.DataFrame, out: Path) -> None:
    frame.to_csv(out, index=False)


def _parquet(frame: pd.DataFrame, out: Path) -> None:
    frame.to_parquet(out, index=False)


CSV = OutputWriter(_csv, "one CSV table with a header: path (or key, input), score, percentile, error and the "
                   "carried columns (an empty error for a scored image)")
PARQUET = OutputWriter(_parquet, "one parquet table: one file for image files scored here, a folder of parts for "
                       "shards and tables (a part per input) and on Spark", parts=True)


def writer_for(out: Path) -> OutputWriter:
    """The writer of `out`'s suffix (no suffix: a folder of parquet parts); a suffix no writer has is refused before
    any work, naming those that exist."""
    from clip_aesthetics.extensions import SCORE_OUTPUTS

    suffix = Path(out).suffix.lower()
    if not suffix:
        return SCORE_OUTPUTS.get(".parquet")
    if suffix not in SCORE_OUTPUTS:
        raise ScoringInputError(f"--out {out}: no writer for {suffix!r}; name the file with one of "
                                f"{', '.join(SCORE_OUTPUTS.names())} (or a folder, for parquet parts)")
    return SCORE_OUTPUTS.get(suffix)


@dataclass(frozen=True)
class Output:
    """Where a job's rows go: `path` (what --out names) in `writer`'s format; `parts`, the folder its parts are
    written to when it writes in parts (`path` itself, or `<path>.parts` behind a one-file table), else None."""

    path: Path
    writer: OutputWriter
    parts: Path | None = None
    uri: str = ""  # --out as given when it is a URI of another filesystem (hdfs://, s3a://): Spark writes it

    @property
    def destination(self) -> str:
        """Where an engine writes the parts, as it must be spelled (a Path would fold a URI's //)."""
        return self.uri or str(self.parts)

    @property
    def table(self) -> bool:
        """Whether a table file is written from the rows at the end (else the parts are the output)."""
        return self.parts != self.path

    @property
    def report(self) -> Path | None:
        from clip_aesthetics.scoring.guards import REPORT

        return self.parts / REPORT if self.parts is not None else None


def is_uri(out) -> bool:
    """A URI of a filesystem other than this machine's (hdfs://, s3a://), which only Spark writes."""
    return "://" in str(out) and not str(out).startswith("file:")


def output_for(out: str | Path, in_parts: bool) -> Output:
    """The output of a job writing `in_parts` (containers, or Spark) or not (files here) into `out`."""
    if is_uri(out):  # only a folder of parts that Spark writes, refused otherwise by the guards
        return Output(Path(str(out)), writer_for(Path(str(out))), Path(str(out)), uri=str(out))
    out = Path(out)
    writer = writer_for(out)
    folder = not out.suffix or (out.is_dir() and writer.parts)
    if not in_parts:
        return Output(out, writer, out if folder else None)
    return Output(out, writer, out if writer.parts else out.with_name(out.name + ".parts"))


def write_table(frame: pd.DataFrame, output: Output) -> None:
    """The rows as one table at `output.path` (in a folder output: its one part), whole or not at all."""
    target = output.path / "part-00000.parquet" if output.parts == output.path else output.path
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as temporary:
        output.writer.write(frame, temporary)
