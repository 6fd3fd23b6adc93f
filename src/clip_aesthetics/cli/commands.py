"""The `clip-aesthetics` subcommands: each a settings model (its flags, validated before any work) whose `cli_cmd`
is one call into `workflows`. The MLproject entry points are generated from the same models (cli/mlproject.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import CliApp, CliPositionalArg, CliSubCommand, SettingsConfigDict

from clip_aesthetics.settings import (
    BackboneSettings,
    BundleSettings,
    CacheSettings,
    DatasetSettings,
    DataSettings,
    EmbedSettings,
    RegisterSettings,
    RevisionSettings,
    ScoreSettings,
    Settings,
    StoreSettings,
    SweepSettings,
    TrackingSettings,
    TrainSettings,
    WorkersSettings,
)
from clip_aesthetics.settings.values import check_backbone, check_model_name


class EmbedCommand(TrackingSettings, DatasetSettings, EmbedSettings, BackboneSettings):
    """Embed every AVA image with the backbone into the cache (resumable; a complete cache does no work)."""

    def cli_cmd(self) -> None:
        from clip_aesthetics.workflows.embed import embed_step

        report = embed_step(self)
        print(f"embeddings for {report.n_images} images in {report.cache.root}")


class TrainCommand(TrackingSettings, TrainSettings, DataSettings, CacheSettings, BackboneSettings):
    """Train and evaluate a head on the cached embeddings of one backbone (run `embed` first)."""

    def cli_cmd(self) -> None:
        from clip_aesthetics.workflows.train import train_step

        train_step(self, embed_first=False)


class MainCommand(TrackingSettings, TrainSettings, DataSettings, EmbedSettings, BackboneSettings):
    """Embed (or reuse the cache), then train and evaluate: one cell of the seed grid as one MLflow run."""

    def cli_cmd(self) -> None:
        from clip_aesthetics.workflows.train import train_step

        train_step(self, embed_first=True)


class SweepCommand(TrackingSettings, SweepSettings, TrainSettings, DataSettings, EmbedSettings, RevisionSettings):
    """Run the grid (default: the seed's b16,b32 x norm true,false) as child runs of one parent run."""

    def cli_cmd(self) -> None:
        from clip_aesthetics.workflows.sweep import sweep_step

        sweep_step(self)


class RegisterCommand(TrackingSettings, RegisterSettings):
    """Register the best finished run as a self-contained model; alias it champion if it beats the current one."""

    def cli_cmd(self) -> None:
        from clip_aesthetics.workflows.register import register_step

        register_step(self)


class ScoreCommand(ScoreSettings):
    """Score image files and folders (recursively) with a registered or logged model; write a CSV."""

    inputs: CliPositionalArg[list[str]] = Field(
        description="image files or folders (with engine=spark, any path or URI your Spark reads: hdfs://, s3a://, "
        "...), or webdataset shards (.tar; brace patterns shards/{00000..00099}.tar and globs) and parquet/arrow "
        "tables of image bytes")

    def cli_cmd(self) -> None:
        from clip_aesthetics.workflows.score import score_step

        score_step(self, self.inputs)


class ImportHeadCommand(TrackingSettings, RevisionSettings, BundleSettings):
    """Import a published aesthetic head (LAION's linear heads, the improved MLP, v2.5) and register it."""

    path: CliPositionalArg[str] = Field(description="the head's weight file as its authors publish it (.pth)")
    clip: str = Field(description="the backbone it was trained on: l14 (improved predictor, LAION L/14), b32 or b16 "
                      "(LAION's linear heads), siglip-so400m (v2.5), or a folder")
    model_name: str = Field(description="registered model name, e.g. laion-improved-l14")
    activation: Literal["none", "relu", "gelu"] = Field("none", description="between the head's layers: none for "
                                                         "every published file except the improved predictor's reluMSE "
                                                         "ones (relu)")
    reference: str = Field("", description="a folder of images (say, a sample of what you will score) whose scores "
                           "become the model's reference: each score's percentile is where it falls among "
                           "theirs (mid-rank); empty = none (percentiles stay empty)")

    @field_validator("reference")
    @classmethod
    def _reference_folder(cls, value: str) -> str:
        if value and not Path(value).expanduser().is_dir():
            raise ValueError(f"reference={value}: not a folder of images")
        return value

    @field_validator("clip")
    @classmethod
    def _known_clip(cls, value: str) -> str:
        return check_backbone(value)

    @field_validator("model_name")
    @classmethod
    def _check_model_name(cls, value: str) -> str:
        return check_model_name(value)

    def cli_cmd(self) -> None:
        from clip_aesthetics.workflows.import_head import import_head_step

        import_head_step(self)


class EvaluateCommand(TrackingSettings, DataSettings, CacheSettings, WorkersSettings):
    """Measure models (any MLflow model URI: trained, registered, imported) on a labelled dataset, side by side."""

    models: str = Field(description="comma-separated model URIs (models:/NAME@champion, runs:/ID/model, ...); on the "
                        "CLI also --model URI, repeated")
    eval_split: Literal["test", "val", "train", "all"] = Field(
        "test", description="which images: a split (as split, val_fraction, test_fraction, seed make it), or all")
    pairs: str = Field("", description="a pair table (image_a, image_b, preference) to measure the models on by "
                       "pairwise accuracy instead of labels= or AVA: any model, trained on scores or on pairs")

    @model_validator(mode="after")
    def _pairs_are_the_labels(self):
        if self.pairs:
            if self.labels and self.labels != self.pairs:
                raise ValueError("pass either --pairs TABLE or --labels TABLE, not both")
            self.labels = self.pairs
        return self

    def cli_cmd(self) -> None:
        from clip_aesthetics.workflows.evaluate import evaluate_step

        evaluate_step(self)


class ExportCommand(StoreSettings):
    """Export a model (backbone and head) to ONNX, float32 or int8; measure it against the source; register it."""

    model: str = Field("models:/clip-aesthetics@champion", description="the model to export: any MLflow model URI "
                       "of a scorer (trained, registered or imported)")
    format: str = Field("onnx", description="the runtime to export to (onnx: ONNX Runtime, no torch needed to score)")
    quantize: Literal["none", "int8"] = Field("none", description="none: float32 weights, the source's scores to "
                                               "1e-4 of the range; int8: dynamic int8 matrix products, faster on "
                                               "CPUs, registered only if its Spearman against the source holds")
    out: str = Field("", description="also copy the exported files (model.onnx, preprocess.json, scorer.json) into "
                     "this folder, to score without MLflow or this project; written only once the export is "
                     "accepted, into a new or empty folder")
    replace: bool = Field(False, description="--out holds an earlier export: replace it (once the new one is "
                          "accepted)")
    model_name: str = Field("", description="registered model name; empty = the source's name (or clip-aesthetics) "
                            "+ -onnx. The version gets the alias float32 or int8")
    calibration: str = Field("", description="a folder of images to measure the export on; empty = the source run's "
                             "test images (up to 200)")
    accept_fidelity: float = Field(0.0, ge=0.0, le=1.0, description="an int8 export is registered when its Spearman "
                                   "against the source is at least this; 0 = 0.995")

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        from clip_aesthetics.extensions import RUNTIMES

        return RUNTIMES.check(value, "format")

    @field_validator("model_name")
    @classmethod
    def _check_model_name(cls, value: str) -> str:
        return check_model_name(value) if value else value

    def cli_cmd(self) -> None:
        from clip_aesthetics.workflows.export import export_step

        export_step(self)


class SampleDataCommand(Settings):
    """Write a generated AVA-format dataset, a small set of 1-5 ratings (imagefolder) and a tiny random CLIP, for
    trying the workflow offline."""

    out: Path = Field(Path("data/sample"), description="folder to create: <out>/ava, <out>/ratings and "
                      "<out>/clip-tiny")
    n_images: int = Field(300, gt=10, description="number of generated images")
    seed: int = Field(0, description="generator seed")
    traps: bool = Field(False, description="also write broken and unusual image files, to see them handled")

    def cli_cmd(self) -> None:
        from clip_aesthetics.backbones.families import save_random_clip
        from clip_aesthetics.data.sample_data import write_sample_ava, write_sample_ratings

        write_sample_ava(self.out / "ava", self.n_images, self.seed, self.traps)
        write_sample_ratings(self.out / "ratings", max(20, self.n_images // 2), self.seed + 1)
        save_random_clip(self.out / "clip-tiny", "tiny", self.seed)
        print(f"wrote {self.out / 'ava'} ({self.n_images} images), {self.out / 'ratings'} (1-5 ratings in the "
              f"imagefolder layout) and {self.out / 'clip-tiny'}")


class ClipAesthetics(Settings):
    """Train and use aesthetic score predictors on frozen image backbones (CLIP, SigLIP, DINOv2), tracked in MLflow."""

    model_config = SettingsConfigDict(cli_prog_name="clip-aesthetics")

    main: CliSubCommand[MainCommand] = Field(description=MainCommand.__doc__)
    embed: CliSubCommand[EmbedCommand] = Field(description=EmbedCommand.__doc__)
    train: CliSubCommand[TrainCommand] = Field(description=TrainCommand.__doc__)
    sweep: CliSubCommand[SweepCommand] = Field(description=SweepCommand.__doc__)
    register_best: CliSubCommand[RegisterCommand] = Field(alias="register", description=RegisterCommand.__doc__)
    score: CliSubCommand[ScoreCommand] = Field(description=ScoreCommand.__doc__)
    import_head: CliSubCommand[ImportHeadCommand] = Field(description=ImportHeadCommand.__doc__)
    evaluate: CliSubCommand[EvaluateCommand] = Field(description=EvaluateCommand.__doc__)
    export: CliSubCommand[ExportCommand] = Field(description=ExportCommand.__doc__)
    sample_data: CliSubCommand[SampleDataCommand] = Field(description=SampleDataCommand.__doc__)

    def cli_cmd(self) -> None:
        CliApp.run_subcommand(self)
