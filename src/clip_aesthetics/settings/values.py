"""Setting values: what each accepts and how text becomes a value (ranges, vote columns, lists, backbones, head
kinds, model names, metric directions). Every check raises ValueError in the settings' words, before any work."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator
from pydantic_settings import NoDecode

from clip_aesthetics.extensions import HEADS, TRAINABLE_HEADS

HEADS_BUILT_IN = (*TRAINABLE_HEADS, "chain")

# Short names: the seed experiment's two CLIP checkpoints, and the stronger backbones of today's predictors.
BACKBONE_ALIASES = {
    "b16": "openai/clip-vit-base-patch16",
    "b32": "openai/clip-vit-base-patch32",
    "l14": "openai/clip-vit-large-patch14",
    "l14-336": "openai/clip-vit-large-patch14-336",
    "siglip-so400m": "google/siglip-so400m-patch14-384",
    "siglip2-so400m": "google/siglip2-so400m-patch14-384",
    "dinov2-b": "facebook/dinov2-base",
    "dinov2-l": "facebook/dinov2-large",
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def check_backbone(value: str) -> str:
    if value in BACKBONE_ALIASES or Path(value).expanduser().is_dir() or _HUB_ID.match(value):
        return value
    raise ValueError(
        f"clip={value!r} is not one of {', '.join(BACKBONE_ALIASES)}, a Hugging Face model id (owner/name) or an "
        "existing local folder"
    )


def check_head(value: str, setting: str) -> str:
    """A head kind `--head` can train: a built-in one (known without importing torch), or another entry of
    extensions.HEADS whose HeadKind is trainable."""
    if value in TRAINABLE_HEADS:
        return value
    trainable = [*TRAINABLE_HEADS, *(n for n in HEADS.names() if n not in HEADS_BUILT_IN)]
    if value in HEADS.names() and value not in HEADS_BUILT_IN and HEADS.get(value).trainable:
        return value
    why = " (published heads only: import-head)" if value in HEADS.names() else ""
    raise ValueError(f"{setting}: {value!r} is not a head kind that can be trained{why}; expected one of "
                     f"{', '.join(trainable)}")


def items_of(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_range(text: str) -> tuple[float, float] | None:
    """`"1,5"` -> (1.0, 5.0); "" -> None. ValueError says what is wrong."""
    if not text.strip():
        return None
    parts = [p.strip() for p in text.split(",")]
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise ValueError(f"score_range={text!r}: expected two numbers, low,high (e.g. 1,5)") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"score_range={text!r}: expected finite numbers with low < high")
    return low, high


def parse_votes(text: str) -> list[str]:
    """`c1..c5` or `c1,c2,c3,c4,c5` -> the column names, in rating order (the first is a rating of 1)."""
    text = text.strip()
    if not text:
        return []
    ranged = re.fullmatch(r"([A-Za-z_]*)(\d+)\.\.\1?(\d+)", text)
    if ranged:
        prefix, first, last = ranged.group(1), int(ranged.group(2)), int(ranged.group(3))
        if last <= first:
            raise ValueError(f"vote_columns={text!r}: the range must go up (c1..c5)")
        return [f"{prefix}{k}" for k in range(first, last + 1)]
    names = [n.strip() for n in text.split(",") if n.strip()]
    if len(names) < 2 or len(set(names)) != len(names):
        raise ValueError(f"vote_columns={text!r}: expected at least two distinct columns, c1..c5 or c1,c2,c3")
    return names


def is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def is_positive_number(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False


def check_model_name(value: str) -> str:
    """A name the MLflow Model Registry accepts (and a `models:/NAME@alias` URI can carry), checked before any run."""
    if not value.strip():
        raise ValueError("a registered model name cannot be empty")
    bad = next((c for c in ("/", ":", "@", "\\", "\x00") if c in value), None)
    if bad is not None:
        raise ValueError(f"{value!r}: a registered model name cannot contain {bad!r} (it is read as part of a "
                         "models:/NAME@ALIAS URI); use letters, digits, '-', '_' or '.', e.g. laion-improved-l14")
    if value != value.strip() or value in (".", "..") or len(value) > 256:
        raise ValueError(f"{value!r}: a registered model name must be 1-256 characters without leading or trailing "
                         "spaces, and not . or ..")
    return value


# Which way is better, by a metric name's last word (`val_spearman`, `best_test_mse`, ...).
HIGHER_IS_BETTER = ("spearman", "pearson", "accuracy")
LOWER_IS_BETTER = ("mse", "mae", "loss", "emd", "logloss")


def direction(metric: str) -> int:
    """+1 when a higher value of `metric` is better, -1 when a lower one is (a head kind's own metrics: as its
    `metric_directions` say); ValueError when unknown."""
    kind = metric.rsplit("_", 1)[-1]
    if kind in HIGHER_IS_BETTER:
        return 1
    if kind in LOWER_IS_BETTER:
        return -1
    owned = _head_metric_direction(metric)
    if owned:
        return owned
    raise ValueError(f"metric {metric!r}: cannot tell whether higher or lower is better; expected a name ending in "
                     f"{', '.join(f'_{k}' for k in HIGHER_IS_BETTER)} (higher is better) or "
                     f"{', '.join(f'_{k}' for k in LOWER_IS_BETTER)} (lower is better)")


def _head_metric_direction(metric: str) -> int:
    """The direction a head kind declares for one of its metrics (`val_fake_score` -> its `fake_score`), or 0."""
    name = metric.removeprefix("best_").split("_", 1)[-1]
    for kind_name in HEADS.names():
        if kind_name in HEADS_BUILT_IN:
            continue  # their metrics end in the words above
        directions = getattr(HEADS.get(kind_name), "metric_directions", {}) or {}
        if name in directions:
            return int(directions[name])
    return 0


# ---------------------------------------------------------------- typed values, spelled as the CLI and MLproject do
# Each setting below is the value its code uses (a number or None, a range, a list); these validators accept what a
# user types on the command line, what MLproject passes (an empty string for "none") and environment variables
# (comma-separated, not JSON: NoDecode), so no flag changed when they became typed.

def _empty_is_none(value):
    return None if value is None or (isinstance(value, str) and not value.strip()) else value


def _items(value) -> list[str]:
    """"a,b" or ["a", "b"] (or ["a,b"], as the CLI hands a comma-separated value) -> ["a", "b"]; "" -> []."""
    if value is None:
        return []
    parts = value if isinstance(value, (list, tuple)) else [value]
    return [item.strip() for part in parts for item in str(part).split(",") if item.strip()]


def _range(value):
    if isinstance(value, (tuple, list)) and len(value) == 2 and not any(isinstance(v, str) for v in value):
        value = ",".join(map(str, value))
    return parse_range(value) if isinstance(value, str) else value


def _votes(value) -> list[str]:
    return parse_votes(",".join(_items(value)) if isinstance(value, (list, tuple)) else str(value or ""))


def _bools(value) -> list[bool]:
    items = _items(value)
    wrong = [item for item in items if item.lower() not in ("true", "false")]
    if wrong:
        raise ValueError(f"{wrong[0]!r} is not true or false (a comma-separated list of true/false)")
    return [item.lower() == "true" for item in items]


OptionalNumber = Annotated[float | None, BeforeValidator(_empty_is_none)]
ScoreRange = Annotated[tuple[float, float] | None, BeforeValidator(_range)]
VoteColumns = Annotated[list[str], NoDecode, BeforeValidator(_votes)]
Items = Annotated[list[str], NoDecode, BeforeValidator(_items)]
Booleans = Annotated[list[bool], NoDecode, BeforeValidator(_bools)]
Numbers = Annotated[list[float], NoDecode, BeforeValidator(_items)]


def as_text(value) -> str:
    """A setting's value as the CLI and MLproject spell it (lists comma-separated, None empty, booleans lower)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return ",".join(as_text(v) if isinstance(v, bool) else f"{v:g}" if isinstance(v, float) else str(v)
                        for v in value)
    return str(value)
