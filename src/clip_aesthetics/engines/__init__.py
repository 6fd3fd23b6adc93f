"""Where the work runs besides this process: Apache Spark tasks (the `engine` setting)."""

from typing import Callable


def embedder(engine: str) -> Callable | None:
    """What embeds a dataset's missing images on `engine` (into the same cache); None: this process does."""
    if engine == "local":
        return None
    from clip_aesthetics.engines.spark import embed_missing

    return embed_missing
