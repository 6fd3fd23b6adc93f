"""The `local` engine: this process (and its decoding workers) does all the work."""

from __future__ import annotations

from clip_aesthetics.engines import Engine


def _score_inputs(todo: list[str], model_folder: str, out, job: dict, image_column: str = "",
                  precision: str | None = None) -> None:
    from clip_aesthetics.scoring.curate import score_here

    score_here(todo, model_folder, out, job, image_column, precision)


LOCAL = Engine("this process and its decoding workers", start=lambda: None, score_inputs=_score_inputs)
