"""Typed settings, one model per concern; the CLI and MLproject parameters are generated from them."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from clip_aesthetics.extensions import ENGINES
from clip_aesthetics.settings.values import (check_backbone, check_head, check_model_name, direction,
                                             is_positive_number, items_of, optional_number, parse_range, parse_votes)

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


class DatasetSettings(Settings):
    """Which dataset: AVA's folder, or a labels table of your own ratings (data/labels.py)."""

    ava_dir: Path = Field(
        Path("data/AVA_dataset"),
        description="folder holding AVA.txt and image/<id>.jpg (the layout AVA is distributed in); used when "
        "labels is empty",
    )
    labels: str = Field("", description="your own ratings instead of AVA: a CSV, TSV, parquet or JSON Lines table, "
                        "or a Hugging Face imagefolder (a folder with metadata.jsonl / metadata.csv beside the images)")
    image_dir: str = Field("", description="folder the table's image paths are relative to (and must stay inside); "
                           "empty = the table's own folder")
    image_column: str = Field("", description="the table's image column (paths, or image bytes in parquet); empty = "
                              "the first of file_name, image, image_name, image_path, path, filename found")
    score_column: str = Field("", description="the table's score column; empty = the first of score, mos, "
                              "mean_score, rating, label found (any case)")
    preference_column: str = Field("", description="a pair table (columns image_a, image_b): its preference column "
                                   "(a, b, tie, or the share preferring image_a, 0-1); empty = the first of "
                                   "preference, winner, choice, label, prob_a, p_a")
    vote_columns: str = Field("", description="vote-count columns instead of a score, lowest rating first (c1..c5 "
                              "or c1,c2,c3,c4,c5): the score is their mean rating, as AVA's")

    @field_validator("vote_columns")
    @classmethod
    def _check_votes(cls, value: str) -> str:
        parse_votes(value)
        return value


class DataSettings(DatasetSettings):
    split: Literal["seed", "official"] = Field(
        "seed",
        description="AVA: seed = the seed notebook's shuffled 229,971/25,559 split, official = test is "
        "aesthetics_image_lists/generic_test.jpgl; a table: its split column when it has one, else a seeded split "
        "(test_fraction, val_fraction)",
    )
    val_fraction: float = Field(
        0.05, ge=0.0, lt=0.5,
        description="share of train held out for epoch/model selection; 0 trains on the seed's exact train set",
    )
    test_fraction: float = Field(0.1, gt=0.0, lt=0.9, description="a table without a split column: share of its "
                                 "images held out as test (AVA's test split is fixed by `split`)")
    seed: int = Field(42, description="seed for the validation split, head initialisation and shuffling")
    score_range: str = Field("", description="a table's rating scale, low,high (e.g. 1,5); empty = 1..number of "
                             "vote columns, else the lowest and highest score in the table. Scores are clipped to it; "
                             "norm=true maps it to 0-1. AVA: 1-10")
    threshold: str = Field("", description="good/bad line of the accuracy metric; empty = 5 on AVA, the middle of "
                           "score_range on a table")

    @field_validator("score_range")
    @classmethod
    def _check_range(cls, value: str) -> str:
        parse_range(value)
        return value

    @field_validator("threshold")
    @classmethod
    def _check_threshold(cls, value: str, info) -> str:
        return optional_number(value, info.field_name)

    @model_validator(mode="after")
    def _split_for_labels(self):
        if self.labels and self.split == "official":
            raise ValueError("split=official is AVA's own test list; a labels table uses its split column or a "
                             "seeded split (test_fraction)")
        return self


class RevisionSettings(Settings):
    clip_revision: str = Field("main", description="hub revision (branch, tag or commit) to pin")


class BackboneSettings(RevisionSettings):
    """Which CLIP: resolved once per command (clip.resolve_backbone) into the BackboneSource passed down and logged."""

    clip: str = Field(
        "b16",
        description="image backbone (CLIP, SigLIP, SigLIP 2 NaFlex, DINOv2): an alias (b16, b32, l14, l14-336, siglip-so400m, "
        "siglip2-so400m, dinov2-b, dinov2-l), a Hugging Face model id (owner/name) or a local folder saved with "
        "save_pretrained; on the CLI also --backbone",
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


class CacheSettings(Settings):
    """Which embedding cache: what `train` needs to find the one `embed` wrote."""

    cache_dir: Path = Field(
        Path("~/.cache/clip-aesthetics"),
        description="where embeddings are cached: one folder per backbone + revision, image folder, precision "
        "and decoding",
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = Field("auto", description="auto = cuda when available")
    precision: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="dtype of the CLIP forward; auto = float16 on cuda, bfloat16 on CPUs that compute it "
        "natively (AVX512-BF16, AMX), float32 elsewhere (the choice and its reason are printed and logged)"
    )
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


class EmbedSettings(EngineSettings, CacheSettings):
    """How to fill the cache: batches, decoding workers, shards, the engine."""

    embed_batch_size: int = Field(0, ge=0, description="images per CLIP forward; 0 = 256 on cuda, 32 on cpu")
    num_workers: int = Field(-1, ge=-1, description="image decoding workers (threads or processes, see "
                             "Decoding on the page on reproducing AVA); -1 = one per core")
    shard_size: int = Field(4096, gt=0, description="images per cache shard (the unit of resume)")


class TrainSettings(Settings):
    norm: bool = Field(True, description="true: targets scaled to about 0-1 (AVA: mean_score/10, as in the seed; a "
                       "table: its score_range mapped to 0-1); false: raw scores")
    head: str = Field(
        "linear",
        description="the head kind: linear: the seed's nn.Linear(512, 1) trained with Adam; mlp: one hidden layer; "
        "ridge: the linear probe solved in closed form (penalty chosen on val; epochs, lr, batch_size unused); "
        "distribution: the rating distribution (NIMA, earth mover's distance), mean as score and its std as "
        "score_std, on data with vote counts (AVA, vote_columns); or a kind added to extensions.HEADS",
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
    heads: str = Field("", description="heads to compare (linear, mlp, ridge, distribution); empty = --head")
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


class ScoreSettings(EngineSettings):
    model: str = Field("models:/clip-aesthetics@champion", description="any MLflow model URI of a scorer")
    gallery: str = Field("", description="also write an HTML page of the scored images by score bucket, with the "
                         "histogram, top, bottom and failures (self-contained); empty = none")
    tracking_uri: str = Field("", description="the MLflow tracking store holding the model, e.g. "
                              "sqlite:////abs/path/mlflow.db; empty = $MLFLOW_TRACKING_URI, else ./mlflow.db")
    out: Path = Field(Path("scores.csv"), description="image files and folders: path,score,percentile,error per "
                      "image (and score_std from a distribution head), in the "
                      "format its suffix names (.csv, .parquet); with engine=spark, or for shards and tables, a "
                      "parquet folder (default scores.parquet)")
    image_column: str = Field("", description="parquet/arrow inputs: the column of image bytes; empty = the first "
                              "binary or {bytes, path} column")
    min_score: str = Field("", description="shards and tables: keep the samples scoring at least this "
                           "(_report/kept.parquet in the output folder); empty = no minimum")
    min_percentile: str = Field("", description="shards and tables: keep the samples whose percentile (against the "
                                "model's reference scores) is at least this, 0-100; empty = no minimum")
    top_fraction: float = Field(0.0, ge=0.0, le=1.0, description="shards and tables: keep the best this share of "
                                "all input samples (exact); 0 = no such cut")
    write_shards: str = Field("", description="shards: also write new webdataset shards of the kept samples into "
                              "this folder (a new or empty one, never one holding an input), members copied byte "
                              "for byte")
    fresh: bool = Field(False, description="shards and tables: score every input again into --out, replacing the "
                        "parts an earlier job wrote there (without it, a folder scored by another model or with other "
                        "options is refused, and one scored by the same model is resumed)")

    @field_validator("min_score")
    @classmethod
    def _check_min_score(cls, value: str, info) -> str:
        return optional_number(value, info.field_name)

    @field_validator("min_percentile")
    @classmethod
    def _check_min_percentile(cls, value: str, info) -> str:
        value = optional_number(value, info.field_name)
        if value.strip() and not 0 <= float(value) <= 100:
            raise ValueError(f"min_percentile={value}: a percentile lies in 0-100")
        return value
    num_workers: int = Field(-1, ge=-1, description="image decoding workers (threads or processes, see "
                             "Decoding on the page on reproducing AVA); -1 = one per core")
