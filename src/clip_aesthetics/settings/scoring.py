"""How `score` reads its inputs, which model scores them, and what it writes and keeps."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from clip_aesthetics.settings.embedding import EngineSettings, PrecisionSettings
from clip_aesthetics.settings.values import optional_number


def requested_precision(model_config: dict | None = None) -> str:
    """The precision a model loaded by MLflow computes in: its load's model_config (load_scorer passes the user's
    choice), else this process's CLIP_AESTHETICS_PRECISION (a served model, a notebook), else auto."""
    asked = (model_config or {}).get("precision")
    return str(asked) if asked else PrecisionSettings().precision


class ScoreSettings(EngineSettings, PrecisionSettings):
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
