"""Where the work runs: this process (`local`) or Apache Spark tasks (`spark`), one `Engine` entry each in
`extensions.ENGINES`, chosen by the `engine` setting. A new engine is one module defining an `Engine` and one
entry there; the workflows ask the entry, never the engine's name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Engine:
    """What an engine does for the workflows.

    - `start()`: refuse early, before any work, what the engine needs and lacks (Spark: pyspark, Java);
    - `embed_missing(cache_root, todo, folder, precision, batch_size, shard_size, decoding) -> model loads`, or None
      when this process embeds (embedding/filling.py);
    - `score_inputs(todo, model_folder, out, job, image_column, precision)`: one part per shard or table
      (scoring/curate.py);
    - `score_files(inputs, model_uri, out, partitions, precision) -> {scored, failed, model_loads}`, writing a
      parquet folder
      itself, or None when this process scores files into a table that an output writer (extensions.SCORE_OUTPUTS)
      writes.
    """

    description: str
    start: Callable[[], None]
    score_inputs: Callable
    embed_missing: Callable | None = None
    score_files: Callable | None = None


def engine(name: str) -> Engine:
    from clip_aesthetics.extensions import ENGINES

    return ENGINES.get(name)


def embedder(name: str) -> Callable | None:
    """What embeds a dataset's missing images on engine `name` (into the same cache); None: this process does."""
    return engine(name).embed_missing
