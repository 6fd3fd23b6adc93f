"""The base of every settings model: environment prefix, unknown keys refused, kebab-case flags."""

from __future__ import annotations

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
