"""`clip-aesthetics SUBCOMMAND --flags` -> validated settings -> one step of the workflow.

Subcommands match the MLproject entry points one to one; their flags are generated from the
settings models in config.py, so a bad value is refused here, before any work starts.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import CliApp, CliSubCommand, SettingsConfigDict, SettingsError

from .config import DataSettings, EmbedSettings, Settings, TrackingSettings, TrainSettings


class EmbedCommand(TrackingSettings, DataSettings, EmbedSettings):
    """Embed every AVA image with CLIP into the cache (resumable; a complete cache does no work)."""

    def cli_cmd(self) -> None:
        from . import tracking
        from .training import clip_label

        with tracking.run(self.experiment, self.run_name or f"embed-{clip_label(self.clip)}"):
            report = _embed_and_log(self)
        print(f"embeddings for {report.n_images} images in {report.cache.root}")


class TrainCommand(TrackingSettings, TrainSettings, DataSettings, EmbedSettings):
    """Train and evaluate a head on the cached embeddings of one CLIP model (run `embed` first)."""

    def cli_cmd(self) -> None:
        from .pipeline import locate_cache

        _train(self, locate_cache(self.part(DataSettings), self.part(EmbedSettings)))


class MainCommand(TrackingSettings, TrainSettings, DataSettings, EmbedSettings):
    """Embed (or reuse the cache), then train and evaluate: one cell of the seed grid as one MLflow run."""

    def cli_cmd(self) -> None:
        _train(self, None)


class SampleDataCommand(Settings):
    """Write a generated AVA-format dataset and a tiny random CLIP, for trying the workflow offline."""

    out: Path = Field(Path("data/sample"), description="folder to create: <out>/ava and <out>/clip-tiny")
    n_images: int = Field(300, gt=10, description="number of generated images")
    seed: int = Field(0, description="generator seed")
    traps: bool = Field(False, description="also write broken and unusual image files, to see them handled")

    def cli_cmd(self) -> None:
        from .embed import save_random_clip
        from .sample_data import write_sample_ava

        write_sample_ava(self.out / "ava", self.n_images, self.seed, self.traps)
        save_random_clip(self.out / "clip-tiny", "tiny", self.seed)
        print(f"wrote {self.out / 'ava'} ({self.n_images} images) and {self.out / 'clip-tiny'}")


def _embed_and_log(command):
    from . import tracking
    from .pipeline import embed_ava

    report = embed_ava(command.part(DataSettings), command.part(EmbedSettings))
    tracking.log_params({"clip": command.clip, "clip_model_id": report.source.model_id,
                         "clip_revision": report.source.revision, "device": report.device})
    rate = report.n_processed / report.seconds if report.n_processed and report.seconds > 0 else 0.0
    tracking.log_metrics({"embed_images_processed": report.n_processed, "embed_seconds": report.seconds,
                          "embed_images_per_second": rate})
    return report


def _train(command, report) -> None:
    from . import tracking
    from .training import default_run_name, tracked_training

    started = time.perf_counter()
    run_name = command.run_name or default_run_name(command.clip, command.part(TrainSettings))
    with tracking.run(command.experiment, run_name) as active:
        if report is None:
            report = _embed_and_log(command)
        result = tracked_training(report, command.part(DataSettings), command.part(EmbedSettings),
                                  command.part(TrainSettings))
    best = result.history[result.best_epoch - 1]
    print(f"run {active.info.run_id} ({run_name}): best epoch {result.best_epoch}, "
          f"test_spearman {best['test_spearman']:.4f}, {time.perf_counter() - started:.1f}s")


class ClipAesthetics(Settings):
    """Train and use CLIP-based aesthetic score predictors on AVA, tracked with MLflow."""

    model_config = SettingsConfigDict(cli_prog_name="clip-aesthetics")

    embed: CliSubCommand[EmbedCommand]
    train: CliSubCommand[TrainCommand]
    main: CliSubCommand[MainCommand]
    sample_data: CliSubCommand[SampleDataCommand]

    def cli_cmd(self) -> None:
        CliApp.run_subcommand(self)


def main(argv: list[str] | None = None) -> int:
    from .ava import AvaFormatError
    from .embed import ClipUnavailableError
    from .pipeline import DatasetError

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
    except (AvaFormatError, DatasetError, ClipUnavailableError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
