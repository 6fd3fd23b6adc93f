"""Which backbone and how images become embeddings: revision, cache, device, precision, decoding, engine."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from clip_aesthetics.extensions import ENGINES
from clip_aesthetics.settings.base import Settings, WorkersSettings
from clip_aesthetics.settings.values import check_backbone


class RevisionSettings(Settings):
    clip_revision: str = Field("main", description="hub revision (branch, tag or commit) to pin")


class BackboneSettings(RevisionSettings):
    """Which backbone: resolved once per command (backbones.families.resolve_backbone) into the BackboneSource passed
    down and logged."""

    clip: str = Field(
        "b16",
        description="image backbone (CLIP, SigLIP, SigLIP 2 NaFlex, DINOv2): an alias (b16, b32, l14, l14-336, "
        "siglip-so400m, siglip2-so400m, dinov2-b, dinov2-l), a Hugging Face model id (owner/name) or a local folder "
        "saved with save_pretrained; on the CLI also --backbone",
    )

    @field_validator("clip")
    @classmethod
    def _known_clip(cls, value: str) -> str:
        return check_backbone(value)


class EngineSettings(Settings):
    engine: str = Field(
        "local", description="local: this process and its decoding workers; spark: Apache Spark tasks "
        "(the session spark-submit or your platform provides, else local[*]; needs the spark extra and Java); "
        "or an engine added to extensions.ENGINES",
    )

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, value: str) -> str:
        return ENGINES.check(value, "engine")
    spark_partitions: int = Field(0, ge=0, description="Spark tasks to split the images into; 0 = Spark's choice")
    spark_master: str = Field("", description="engine=spark without a session of its own (not under spark-submit or "
                              "a platform): the master to start, e.g. local[4] or spark://host:7077; empty = local[*]. "
                              "Also CLIP_AESTHETICS_SPARK_MASTER")


class PrecisionSettings(Settings):
    """What the backbone's forward computes in, when embedding for training and when scoring."""

    precision: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="dtype of the backbone's forward; auto = float16 on cuda; on a CPU with native bfloat16 "
        "the faster of float32 and bfloat16 as measured there (once per machine and model size), float32 elsewhere; "
        "a published head scores in float32. The choice and its reason are printed and logged. Also "
        "CLIP_AESTHETICS_PRECISION, which a served model reads"
    )


class CacheSettings(PrecisionSettings):
    """Which embedding cache: what `train` needs to find the one `embed` wrote."""

    cache_dir: Path = Field(
        Path("~/.cache/clip-aesthetics"),
        description="where embeddings are cached: one folder per backbone + revision, image folder, precision "
        "and decoding",
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = Field("auto", description="auto = cuda when available")
    decoding: Literal["full", "reduced"] = Field(
        "full", description="full: every image decoded whole, as CLIP's own preprocessing does; reduced: JPEGs "
        "at least twice CLIP's input size are decoded at 1/2, 1/4 or 1/8 size (DCT scaling), 2-4x less decoding "
        "work on large photos, embeddings slightly different (benchmarks/RESULTS.md); the model records it and "
        "scores with it",
    )

    @field_validator("cache_dir")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()


class EmbedSettings(EngineSettings, CacheSettings, WorkersSettings):
    """How to fill the cache: batches, decoding workers, shards, the engine."""

    embed_batch_size: int = Field(0, ge=0, description="images per CLIP forward; 0 = 256 on cuda, 32 on cpu")
    shard_size: int = Field(4096, gt=0, description="images per cache shard (the unit of resume)")
