"""Typed settings, one model per concern; the CLI and MLproject parameters are generated from them.

base.py: what every model shares; data.py: the dataset and its split; embedding.py: the backbone, the cache and the
engine; training.py: the head, tracking, sweeps and registration; scoring.py: `score`; values.py: what each value
accepts. Allowed names (head kinds, engines) come from the tables in extensions.py.
"""

from clip_aesthetics.settings.base import Settings, StoreSettings, WorkersSettings
from clip_aesthetics.settings.data import DatasetSettings, DataSettings
from clip_aesthetics.settings.embedding import (
                                                BackboneSettings,
                                                CacheSettings,
                                                EmbedSettings,
                                                EngineSettings,
                                                RevisionSettings,
)
from clip_aesthetics.settings.scoring import ScoreSettings
from clip_aesthetics.settings.training import (
                                                BundleSettings,
                                                RegisterSettings,
                                                SweepSettings,
                                                TrackingSettings,
                                                TrainSettings,
)

__all__ = ["BackboneSettings", "BundleSettings", "StoreSettings", "WorkersSettings", "CacheSettings", "DataSettings",
           "DatasetSettings", "EmbedSettings", "EngineSettings",
           "RegisterSettings", "RevisionSettings", "ScoreSettings", "Settings", "SweepSettings", "TrackingSettings",
           "TrainSettings"]
