"""The entry that models registered before the package was split into sub-packages (2026-12-03) import when MLflow
loads them (their scorer_entry.py names `clip_aesthetics.scorer.set_model`): kept so that they load with this code."""

from clip_aesthetics.scoring.model import set_model

__all__ = ["set_model"]
