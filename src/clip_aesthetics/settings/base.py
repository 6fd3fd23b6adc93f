"""The base of every settings model (environment prefix, unknown keys refused, kebab-case flags), and the settings
every kind of command shares: which tracking store, how many decoding workers."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Common behaviour: env prefix, unknown keys refused, kebab-case flags."""

    model_config = SettingsConfigDict(
        env_prefix="CLIP_AESTHETICS_",
        extra="forbid",
        cli_kebab_case=True,
        cli_implicit_flags=False,  # `--norm false`, as MLproject passes it
        validate_default=True,
    )

    def part(self, concern: type[Settings]) -> Settings:
        """The fields of one concern, as that concern's own model (for passing down)."""
        return concern.model_construct(**{k: getattr(self, k) for k in concern.model_fields})


class StoreSettings(Settings):
    tracking_uri: str = Field("", description="the MLflow tracking store holding the model (and where a command "
                              "logs), e.g. sqlite:////abs/path/mlflow.db; empty = $MLFLOW_TRACKING_URI, else "
                              "./mlflow.db")


class WorkersSettings(Settings):
    num_workers: int = Field(-1, ge=-1, description="image decoding workers (threads or processes, see Decoding on "
                             "the page on reproducing AVA); -1 = one per core")
