"""Files and folders + an MLflow model URI -> a table of path, score (on the model's scale) and error per image."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from clip_aesthetics.errors import ScoringInputError
from clip_aesthetics.images.decode import IMAGE_SUFFIXES



def collect_images(inputs: list[Path]) -> list[Path]:
    """Files as given, and every image file under each folder (recursively), sorted; duplicates once."""
    found: dict[Path, None] = {}
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            found.update((p, None) for p in sorted(item.rglob("*")) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif item.is_file():
            found[item] = None
        else:
            raise ScoringInputError(f"no such file or folder: {item}")
    if not found:
        raise ScoringInputError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) under {', '.join(map(str, inputs))}")
    return list(found)


def check_output(out: Path) -> None:
    """Refuse, before any work, an output path that cannot be written as a file."""
    out = Path(out)
    if out.is_dir():
        raise ScoringInputError(f"--out {out} is a folder; give a file name, e.g. {out / 'scores.csv'}")
    folder = next((p for p in [out.parent, *out.parent.parents] if p.exists()), Path("."))
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise ScoringInputError(f"--out {out}: cannot create files under {folder}")


def write_gallery(frame: pd.DataFrame, out: Path, score_range: tuple[float, float] | None = None) -> None:
    """An HTML page of the scored files by score bucket (over the model's scale), with the histogram, top, bottom
    and failures."""
    from clip_aesthetics.reports import gallery
    from clip_aesthetics.reports import plots
    from clip_aesthetics.data.ava import SCORE_RANGE
    from clip_aesthetics.images.decode import load_rgb

    score_range = score_range or frame.attrs.get("score_range") or SCORE_RANGE

    percentiles = frame["percentile"] if "percentile" in frame.columns else pd.Series(np.nan, index=frame.index)
    rows = [gallery.Row(path, path, float(score), lambda p=path: load_rgb(Path(p)), error=error,
                        percentile=float(percentile))
            for path, score, error, percentile in zip(frame["path"], frame["score"], frame["error"], percentiles,
                                                      strict=True)]
    scores = frame["score"].dropna().to_numpy()
    figure = plots.histogram(scores, gallery.bucket_edges(*score_range))
    summary = [f"{len(frame)} input(s): {len(scores)} scored, {len(frame) - len(scores)} not (reasons below); "
               f"scores on the model's {score_range[0]:g}-{score_range[1]:g} scale"]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(gallery.page("Scored images", rows, score_range, summary, {"histogram": plots.png_bytes(figure)}))
    plots.close(figure)


# What a Spark parquet output folder holds: what `write.mode("overwrite")` may delete without losing anything else.
SPARK_WRITES = re.compile(r"^(part-.*|_SUCCESS|_committed_.*|_started_.*|\..*\.crc)$")


def _local(path: str) -> Path | None:
    return Path(path.removeprefix("file:")).resolve() if "://" not in path or path.startswith("file:") else None


def within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def refuse_holding_inputs(flag: str, out, real: Path, inputs: list[str], why: str) -> None:
    """Refuse an output folder (`real`, resolved) that is or holds one of the local inputs, symlinks followed."""
    for item in inputs:
        given = _local(str(item))
        if given is not None and within(given, real):
            raise ScoringInputError(f"{flag} {out} holds the input {item}: {why}")


def refuse_foreign(flag: str, out, real: Path, ours: Callable[[str], bool], why: str) -> None:
    """Refuse an existing output folder holding anything `ours` does not recognise as written by such a job."""
    foreign = sorted(e.name for e in real.iterdir() if not ours(e.name))
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise ScoringInputError(f"{flag} {out} already holds {foreign[0]!r}{more}, {why}")


def check_spark_output(out: str, inputs: list[str]) -> None:
    """Refuse, before any work, an --out that Spark's overwrite would delete with something precious in it: an input
    (or a folder holding one), a file, or a folder holding files an earlier Spark output did not."""
    real = _local(out)
    if real is None or not real.exists():
        return
    refuse_holding_inputs("--out", out, real, inputs, "Spark replaces the output folder whole, so it would be "
                          "deleted; give the scores a folder of their own")
    if not real.is_dir():
        raise ScoringInputError(f"--out {out} is an existing file: Spark writes a folder of parquet parts there and "
                                "would delete it; give a new folder name, e.g. scores.parquet")
    refuse_foreign("--out", out, real, SPARK_WRITES.match, "which an earlier Spark output did not write: Spark "
                   "replaces the folder whole; give a new or empty folder")


DEFAULT_STORE = "sqlite:///mlflow.db"  # MLflow's own default: a file in the current folder


def check_store(model_uri: str, tracking_uri: str) -> None:
    """Refuse, before any work, a registry or run URI when the store it needs is a SQLite file that does not
    exist (MLflow would create an empty one here and then find no model)."""
    if not model_uri.startswith(("models:/", "runs:/")) or not tracking_uri.startswith("sqlite:///"):
        return
    database = Path(tracking_uri.removeprefix("sqlite:///"))
    if not database.is_file():
        here = " (the default: ./mlflow.db in the folder you run from)" if tracking_uri == DEFAULT_STORE else ""
        raise ScoringInputError(
            f"no tracking store at {database.resolve()}{here} to find {model_uri} in: run from the folder that holds "
            "mlflow.db, or pass --tracking-uri sqlite:////ABSOLUTE/PATH/mlflow.db (or set MLFLOW_TRACKING_URI)")


def refuse_an_input(out: Path, paths: list[Path]) -> None:
    if Path(out).resolve() in {p.resolve() for p in paths}:
        raise ScoringInputError(f"--out {out} is one of the images to score: it would be written over; give the "
                                "scores a file of their own, e.g. scores.csv")


def score_files(paths: list[Path], model_uri: str, num_workers: int = -1, precision: str | None = None) -> pd.DataFrame:
    """Image files (as collect_images lists them, checked by the caller) -> path, score, percentile, error per file (and
    what the model's head kind adds, e.g. score_std)."""
    from clip_aesthetics.scoring.uris import describe_model, load_scorer

    from clip_aesthetics.environment import STARTED

    print(f"model: {describe_model(model_uri)}")
    scorer = load_scorer(model_uri, precision)
    print(f"precision: {scorer.precision_reason}")
    first = scorer.score_paths(paths[:1], num_workers=0)  # the cold start a user waits for, measured on its own
    print(f"first score {time.perf_counter() - STARTED:.1f} s after the command started (imports, loading the "
          f"model, one image)")
    rest = scorer.score_paths(paths[1:], num_workers=num_workers, progress=True) if len(paths) > 1 else first[:0]
    scores = pd.concat([first, rest], ignore_index=True)
    frame = pd.concat([pd.DataFrame({"path": [str(p) for p in paths]}), scores], axis=1)
    frame.attrs["score_range"] = scorer.score_range
    from clip_aesthetics.scoring.reference import describe

    frame.attrs["reference"] = describe(getattr(scorer, "reference", None))  # what its percentiles compare with
    return frame
