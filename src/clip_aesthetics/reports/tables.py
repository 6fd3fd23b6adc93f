"""A table (a sweep's children, evaluate's leaderboard) -> the text a command prints: every column, 4 decimals."""

from __future__ import annotations

import pandas as pd


def as_text(frame: pd.DataFrame) -> str:
    # 200 columns of text and up to 20 columns: a sweep summary or a leaderboard fits unwrapped on a wide terminal
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.precision", 4):
        return frame.to_string(index=False)
