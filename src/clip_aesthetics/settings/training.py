"""How a head is trained, tracked, swept over a grid and registered."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from clip_aesthetics.settings.base import Settings, StoreSettings
from clip_aesthetics.settings.values import (
    Booleans,
    Items,
    Numbers,
    check_backbone,
    check_head,
    check_model_name,
    direction,
)


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


class TrackingSettings(StoreSettings):
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

    clips: Items = Field(["b16", "b32"], description="backbones to compare, as --clip takes them (each embedded once "
                         "for the whole sweep)")
    norms: Booleans = Field([True, False], description="target normalisations to compare; empty = --norm")
    heads: Items = Field([], description="heads to compare (linear, mlp, ridge, distribution, pairwise); empty = "
                         "--head")
    lrs: Numbers = Field([], description="learning rates to compare; empty = --lr")
    embed_norms: Items = Field([], description="embedding normalisations to compare (none, l2); empty = --embed-norm")

    @field_validator("clips")
    @classmethod
    def _check_clips(cls, value: list[str]) -> list[str]:
        for clip in value or ["(empty)"]:
            check_backbone(clip)
        return value

    @field_validator("heads")
    @classmethod
    def _check_heads(cls, value: list[str]) -> list[str]:
        for item in value:
            check_head(item, "heads")
        return value

    @field_validator("embed_norms")
    @classmethod
    def _check_embed_norms(cls, value: list[str]) -> list[str]:
        wrong = [item for item in value if item not in ("none", "l2")]
        if wrong:
            raise ValueError(f"embed_norms: {wrong[0]!r} is not one of none, l2")
        return value

    @field_validator("lrs")
    @classmethod
    def _check_lrs(cls, value: list[float]) -> list[float]:
        wrong = [item for item in value if not item > 0]
        if wrong:
            raise ValueError(f"lrs: {wrong[0]:g} is not a positive number")
        return value

    def grid(self, train: TrainSettings) -> list[tuple[str, TrainSettings]]:
        """(clip, training settings) for every grid point, in a stable order."""
        import itertools

        axes = itertools.product(self.clips, self.norms or [train.norm], self.heads or [train.head],
                                 self.lrs or [train.lr], self.embed_norms or [train.embed_norm])
        return [(clip, train.model_copy(update=dict(norm=norm, head=head, lr=lr, embed_norm=embed_norm)))
                for clip, norm, head, lr, embed_norm in axes]


class BundleSettings(Settings):
    bundle_dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field(
        "auto", description="precision of the backbone's vision weights copied into the registered model; auto: a "
        "model computed in bfloat16 or float16 keeps its transformer's matrix weights in that dtype (the very numbers "
        "it computed with) and the rest in float32; a float32 model is copied in float16 (half the size); an "
        "imported published head keeps them as the checkpoint publishes them (float32 for the published CLIP and "
        "SigLIP checkpoints), so that it scores as its authors computed it",
    )


class RegisterSettings(BundleSettings):
    run_id: str = Field("", description="register this run; empty = the best child of the latest sweep")
    experiment_name: str = Field(
        "", description="choose among all finished runs of this experiment instead of the latest sweep"
    )
    metric: str = Field("", description="what 'best' means: the run's value at its best epoch; higher is better for "
                        "*_spearman, *_pearson, *_accuracy, lower for *_mse, *_mae, *_logloss (a head kind may declare "
                        "its own); empty = the metric the candidates' head kind is selected by (val_spearman; "
                        "val_pair_logloss for pairwise heads)")
    model_name: str = Field("clip-aesthetics", description="registered model name")

    @field_validator("model_name")
    @classmethod
    def _check_model_name(cls, value: str) -> str:
        return check_model_name(value)

    @field_validator("metric")
    @classmethod
    def _known_direction(cls, value: str) -> str:
        if value:
            direction(value)  # refuses a name whose better direction is unknown
        return value
