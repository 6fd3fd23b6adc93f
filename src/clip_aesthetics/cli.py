"""`clip-aesthetics SUBCOMMAND --flags` -> validated settings -> one step of the workflow.

Subcommands match the MLproject entry points one to one; their flags are generated from the
settings models in config.py, so a bad value is refused here, before any work starts.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import CliApp, CliPositionalArg, CliSubCommand, SettingsConfigDict, SettingsError

from .config import (AvaSettings, ClipSettings, DataSettings, EmbedSettings, RegisterSettings, RevisionSettings,
                     ScoreSettings, Settings, SweepSettings, TrackingSettings, TrainSettings)


class EmbedCommand(TrackingSettings, AvaSettings, EmbedSettings, ClipSettings):
    """Embed every AVA image with CLIP into the cache (resumable; a complete cache does no work)."""

    def cli_cmd(self) -> None:
        from .steps import embed_step

        report = embed_step(self)
        print(f"embeddings for {report.n_images} images in {report.cache.root}")


class TrainCommand(TrackingSettings, TrainSettings, DataSettings, EmbedSettings, ClipSettings):
    """Train and evaluate a head on the cached embeddings of one CLIP model (run `embed` first)."""

    def cli_cmd(self) -> None:
        from .steps import train_step

        train_step(self, embed_first=False)


class MainCommand(TrackingSettings, TrainSettings, DataSettings, EmbedSettings, ClipSettings):
    """Embed (or reuse the cache), then train and evaluate: one cell of the seed grid as one MLflow run."""

    def cli_cmd(self) -> None:
        from .steps import train_step

        train_step(self, embed_first=True)


class SweepCommand(TrackingSettings, SweepSettings, TrainSettings, DataSettings, EmbedSettings, RevisionSettings):
    """Run the grid (default: the seed's b16,b32 x norm true,false) as child runs of one parent run."""

    def cli_cmd(self) -> None:
        from .sweep import run_sweep, summarise

        children = run_sweep(self.part(SweepSettings), self.part(DataSettings), self.part(EmbedSettings),
                             self.part(TrainSettings), self.part(TrackingSettings), self.clip_revision)
        with _pandas_display():
            print(summarise(children).drop(columns=["run_id"]).to_string(index=False))


class RegisterCommand(TrackingSettings, RegisterSettings):
    """Register the best finished run as a self-contained model; alias it champion if it beats the current one."""

    def cli_cmd(self) -> None:
        from .steps import register_step

        register_step(self)


class ScoreCommand(ScoreSettings):
    """Score image files and folders (recursively) with a registered or logged model; write a CSV."""

    inputs: CliPositionalArg[list[str]] = Field(
        description="image files or folders (with engine=spark, any path or URI your Spark reads: hdfs://, s3a://, ...)")

    def cli_cmd(self) -> None:
        from .scoring import check_output, score_files

        if self.engine == "spark":
            return self._on_spark()
        check_output(self.out)
        frame = score_files([Path(p) for p in self.inputs], self.model, self.num_workers)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(self.out, index=False)
        failed = int((frame["error"] != "").sum())
        print(f"scored {len(frame) - failed} image(s), {failed} failed; wrote {self.out}")


    def _on_spark(self) -> None:
        from . import spark

        out = Path("scores.parquet") if self.out == ScoreSettings.model_fields["out"].default else self.out
        done = spark.score_files(spark.session(), self.inputs, self.model, str(out),
                                 self.spark_partitions)
        print(f"scored {done['scored']} image(s), {done['failed']} failed (model loaded {done['model_loads']} "
              f"time(s), once per executor process); wrote {out}")


class SampleDataCommand(Settings):
    """Write a generated AVA-format dataset and a tiny random CLIP, for trying the workflow offline."""

    out: Path = Field(Path("data/sample"), description="folder to create: <out>/ava and <out>/clip-tiny")
    n_images: int = Field(300, gt=10, description="number of generated images")
    seed: int = Field(0, description="generator seed")
    traps: bool = Field(False, description="also write broken and unusual image files, to see them handled")

    def cli_cmd(self) -> None:
        from .clip import save_random_clip
        from .sample_data import write_sample_ava

        write_sample_ava(self.out / "ava", self.n_images, self.seed, self.traps)
        save_random_clip(self.out / "clip-tiny", "tiny", self.seed)
        print(f"wrote {self.out / 'ava'} ({self.n_images} images) and {self.out / 'clip-tiny'}")


class ClipAesthetics(Settings):
    """Train and use CLIP-based aesthetic score predictors on AVA, tracked with MLflow."""

    model_config = SettingsConfigDict(cli_prog_name="clip-aesthetics")

    main: CliSubCommand[MainCommand] = Field(description=MainCommand.__doc__)
    embed: CliSubCommand[EmbedCommand] = Field(description=EmbedCommand.__doc__)
    train: CliSubCommand[TrainCommand] = Field(description=TrainCommand.__doc__)
    sweep: CliSubCommand[SweepCommand] = Field(description=SweepCommand.__doc__)
    register_best: CliSubCommand[RegisterCommand] = Field(alias="register", description=RegisterCommand.__doc__)
    score: CliSubCommand[ScoreCommand] = Field(description=ScoreCommand.__doc__)
    sample_data: CliSubCommand[SampleDataCommand] = Field(description=SampleDataCommand.__doc__)

    def cli_cmd(self) -> None:
        CliApp.run_subcommand(self)


def _pandas_display():
    import pandas as pd

    return pd.option_context("display.width", 200, "display.max_columns", 20, "display.precision", 4)


def main(argv: list[str] | None = None) -> int:
    from .ava import AvaFormatError
    from .cache import CacheError
    from .clip import ClipUnavailableError
    from .pipeline import DatasetError
    from .registry import RegistryError
    from .scoring import ScoringInputError
    from .spark import SparkUnavailableError
    from .sweep import SweepError

    try:
        CliApp.run(ClipAesthetics, cli_args=sys.argv[1:] if argv is None else argv)
    except ValidationError as error:
        for problem in error.errors():
            flag = "--" + str(problem["loc"][-1]).replace("_", "-") if problem["loc"] else "input"
            print(f"error: {flag}={problem.get('input')!r}: {problem['msg']}", file=sys.stderr)
        return 2
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (AvaFormatError, CacheError, DatasetError, ClipUnavailableError, RegistryError, ScoringInputError,
            SparkUnavailableError) as error:
        print(f"error: {error}", file=sys.stderr)  # one line: what is wrong and what to do
        return 2
    except SweepError as error:  # some grid points failed: the work was done, not all of it succeeded
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
