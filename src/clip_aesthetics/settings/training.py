"""How a head is trained, tracked, swept over a grid and registered."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from clip_aesthetics.settings.base import Settings
from clip_aesthetics.settings.values import (check_backbone, check_head, check_model_name, direction, is_positive_number,
                                             items_of)


class TrainSettings(Settings):
    norm: bool = Field(True, description="true: targets scaled to about 0-1 (AVA: mean_score/10, as in the seed; a "
                       "table: its score_range mapped to 0-1); false: raw scores")
    head: str = Field(
        "linear",
        description="the head kind: linear: the seed's nn.Linear(512, 1) trained with Adam; mlp: one hidden layer; "
        "ridge: the linear probe solved in closed form (penalty chosen on val; epochs, lr, batch_size unused); "
        "distribution: the rating distribution (NIMA, earth mover's distance), mean as score and its std as "
        "score_std, on data with vote counts (AVA, vote_columns); pairwise: a score learned from a pair table's "
        "preferences (Bradley-Terry); or a kind added to extensions.HEADS",
    )

    @field_validator("head")
    @classmethod
    def _known_head(cls, value: str) -> str:
        return check_head(value, "head")
    embed_norm: Literal["none", "l2"] = Field(
        "none", description="none: raw CLIP embeddings, as in the seed; l2: unit-length embeddings"
    )
    epochs: int = Field(5, gt=0, description="passes over the training set")
    lr: float = Field(1e-4, gt=0, description="Adam learning rate")
    batch_size: int = Field(32, gt=0, description="training mini-batch size")


class TrackingSettings(Settings):
    experiment: str = Field(
        "clip-aesthetics",
        description="MLflow experiment when not launched by `mlflow run` (which chooses it itself)",
    )
    run_name: str = Field("", description="MLflow run name; empty = derived from the parameters")
    gallery: bool = Field(True, description="log gallery/test.html (training runs) and gallery/compare.html "
                          "(sweep parents): thumbnails of your images in the tracking store; false where they must "
                          "not be copied there")


class SweepSettings(Settings):
    """Comma-separated lists; the grid is their product. An empty list means the single-run value."""

    clips: str = Field("b16,b32", description="backbones to compare, as --clip takes them (each embedded once for "
                       "the whole sweep)")
    norms: str = Field("true,false", description="target normalisations to compare; empty = --norm")
    heads: str = Field("", description="heads to compare (linear, mlp, ridge, distribution, pairwise); empty = --head")
    lrs: str = Field("", description="learning rates to compare; empty = --lr")
    embed_norms: str = Field("", description="embedding normalisations to compare (none, l2); empty = --embed-norm")

    @field_validator("clips")
    @classmethod
    def _check_clips(cls, value: str) -> str:
        for clip in items_of(value) or ["(empty)"]:
            check_backbone(clip)
        return value

    @field_validator("norms")
    @classmethod
    def _check_norms(cls, value: str) -> str:
        if [v for v in items_of(value) if v.lower() not in ("true", "false")]:
            raise ValueError(f"norms={value!r}: expected a comma-separated list of true/false")
        return value

    @field_validator("heads")
    @classmethod
    def _check_heads(cls, value: str) -> str:
        for item in items_of(value):
            check_head(item, "heads")
        return value

    @field_validator("embed_norms", "lrs")
    @classmethod
    def _check_choices(cls, value: str, info) -> str:
        allowed = {"embed_norms": ("none", "l2")}.get(info.field_name)
        for item in items_of(value):
            if allowed and item not in allowed:
                raise ValueError(f"{info.field_name}={value!r}: {item!r} is not one of {', '.join(allowed)}")
            if not allowed and not is_positive_number(item):
                raise ValueError(f"lrs={value!r}: {item!r} is not a positive number")
        return value

    def grid(self, train: TrainSettings) -> list[tuple[str, TrainSettings]]:
        """(clip, training settings) for every grid point, in a stable order."""
        import itertools

        axes = itertools.product(
            items_of(self.clips), [v.lower() == "true" for v in items_of(self.norms)] or [train.norm],
            items_of(self.heads) or [train.head], [float(v) for v in items_of(self.lrs)] or [train.lr],
            items_of(self.embed_norms) or [train.embed_norm],
        )
        return [(clip, train.model_copy(update=dict(norm=norm, head=head, lr=lr, embed_norm=embed_norm)))
                for clip, norm, head, lr, embed_norm in axes]


class RegisterSettings(Settings):
    run_id: str = Field("", description="register this run; empty = the best child of the latest sweep")
    experiment_name: str = Field(
        "", description="choose among all finished runs of this experiment instead of the latest sweep"
    )
    metric: str = Field("val_spearman", description="what 'best' means: the run's value at its best epoch; "
                        "higher is better for *_spearman, *_pearson, *_accuracy, lower for *_mse, *_mae")
    model_name: str = Field("clip-aesthetics", description="registered model name")

    @field_validator("model_name")
    @classmethod
    def _check_model_name(cls, value: str) -> str:
        return check_model_name(value)

    bundle_dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field(
        "auto", description="precision of the CLIP vision weights copied into the registered model; auto: "
        "a model computed in bfloat16 or float16 keeps its transformer's matrix weights in that dtype (the very "
        "numbers it computed with) and the rest in float32; a float32 model is copied in float16 (half the size)",
    )

    @field_validator("metric")
    @classmethod
    def _known_direction(cls, value: str) -> str:
        direction(value)  # refuses a name whose better direction is unknown
        return value
