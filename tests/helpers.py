"""Helpers shared by several test files (fixtures are in conftest.py)."""

from clip_aesthetics.data.labels import read_dataset
from clip_aesthetics.embedding.pipeline import EmbedReport, embed_dataset


def embed_named(data, embed, source, progress: bool = False) -> EmbedReport:
    """Embed the dataset the settings name (AVA's folder, or `labels=`), as `embed` does, without a run."""
    return embed_dataset(read_dataset(data, embed.cache_dir), embed, source, progress)


FAMILIES = {  # `backbones` fixture name -> (kind, options): one tiny random model of each supported family
    "clip768": ("clip", {"projection_dim": 768}),
    "siglip": ("siglip", {}),
    "siglip2_naflex": ("siglip2", {}),
    "dinov2": ("dinov2", {}),
    "dinov2_registers": ("dinov2", {"registers": 4}),
}
