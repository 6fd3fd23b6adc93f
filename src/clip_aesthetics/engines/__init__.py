"""Where the work runs: this process (`local`) or Apache Spark tasks (`spark`), one `Engine` entry each in
`extensions.ENGINES`, chosen by the `engine` setting. A new engine is one module defining an `Engine` and one
entry there; the workflows ask the entry, never the engine's name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Engine:
    """What an engine does for the workflows.

    - `start(options)`: refuse early, before any work, what the engine needs and lacks (Spark: pyspark, Java), and
      start it as the engine settings (`options`) say (Spark: spark_master);
    - `score(job) -> rows or None`: run a score job (scoring/job.py): per-file inputs' rows returned, or written as
      the output's parts; containers' parts written (resumable);
    - `embed_missing(cache_root, todo, folder, precision, batch_size, shard_size, decoding) -> model loads`, or None
      when this process embeds (embedding/filling.py);
    - `writes_parts`: it writes per-file rows as a folder of parts itself (Spark) where the output format can be one.
    """

    description: str
    start: Callable
    score: Callable
    embed_missing: Callable | None = None
    writes_parts: bool = False


def engine(name: str) -> Engine:
    from clip_aesthetics.extensions import ENGINES

    return ENGINES.get(name)


def embedder(options) -> Callable | None:
    """What embeds a dataset's missing images on the engine `options` (the engine settings) name, started (into the
    same cache); None: this process does."""
    chosen = engine(options.engine)
    if chosen.embed_missing is not None:
        chosen.start(options)
    return chosen.embed_missing
