"""The `local` engine: this process (and its decoding workers) does all the work."""

from __future__ import annotations

from clip_aesthetics.engines import Engine


def _score(job):
    from clip_aesthetics.scoring.job import score_here

    return score_here(job)


LOCAL = Engine("this process and its decoding workers", start=lambda options: None, score=_score)
