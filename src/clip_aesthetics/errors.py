"""The errors a user can fix: each message says what was wrong, where, and what to do.

Imports nothing, so that the CLI can name them (and answer `--help` or a bad flag) before torch or
MLflow is imported. Each module's own error class derives from `UserError`.
"""


class UserError(Exception):
    """Bad input, a missing file or model, an unusable store: reported in one line, exit code 2."""


class PartlyDone(RuntimeError):
    """Some items failed; the others finished and are reported (exit code 1: work was done)."""


class SweepError(PartlyDone):
    """Some grid points failed; the others finished and are in the comparison."""


class EvaluationIncomplete(PartlyDone):
    """Some models could not be measured; the others were, and the leaderboard names both."""


class ScoringInputError(UserError, ValueError):
    """An input path that does not exist, inputs that hold no image, or a model that cannot score."""


NON_FINITE = "the model gave a non-finite score ({value}): its weights or this image's embedding hold NaN or infinity"


def non_finite_reason(value: float) -> str:
    """The error of an image whose score is NaN or infinite (never turned into a plausible score by clipping)."""
    return NON_FINITE.format(value=value)


class ModelFolderError(ScoringInputError):
    """A model's folder is damaged: a file missing, cut off or inconsistent; the message names the file."""
