"""`score` of files and folders: the table of path, score, percentile, error -> a file, in the format `--out`'s suffix names.

Each format is one `OutputWriter` entry of `extensions.SCORE_OUTPUTS`, keyed by suffix (`.csv`, `.parquet`); a new
format is one entry there and its writer. Every writer writes the whole table or nothing (a temporary file renamed
into place), so an interrupted job never leaves half a table under the name asked for.
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
    write: Callable[[pd.DataFrame, Path], None]  # (frame with path, score, percentile, error; the file to write)
    description: str


def _csv(frame: pd.DataFrame, out: Path) -> None:
    frame.to_csv(out, index=False)


def _parquet(frame: pd.DataFrame, out: Path) -> None:
    frame.to_parquet(out, index=False)


CSV = OutputWriter(_csv, "CSV with a header: path,score,percentile,error (an empty error for a scored image)")
PARQUET = OutputWriter(_parquet, "one parquet file: path (string), score and percentile (double, null when not "
                       "scored), error")


def writer_for(out: Path) -> OutputWriter:
    """The writer of `out`'s suffix; a suffix no writer has is refused before any work, naming those that exist."""
    from clip_aesthetics.extensions import SCORE_OUTPUTS

    suffix = Path(out).suffix.lower()
    if suffix not in SCORE_OUTPUTS:
        raise ScoringInputError(f"--out {out}: no writer for {suffix or 'a name without a suffix'!r}; name the file "
                                f"with one of {', '.join(SCORE_OUTPUTS.names())}")
    return SCORE_OUTPUTS.get(suffix)


def write_scores(frame: pd.DataFrame, out: Path) -> None:
    writer = writer_for(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as temporary:
        writer.write(frame, temporary)
