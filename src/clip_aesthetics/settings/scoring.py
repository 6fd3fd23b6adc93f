"""How `score` reads its inputs, which model scores them, and what it writes and keeps."""

from __future__ import annotations

from pydantic import Field

from clip_aesthetics.settings.base import StoreSettings, WorkersSettings
from clip_aesthetics.settings.embedding import EngineSettings, PrecisionSettings
from clip_aesthetics.settings.values import OptionalNumber


def requested_precision(model_config: dict | None = None) -> str:
    """The precision a model loaded by MLflow computes in: its load's model_config (load_scorer passes the user's
    choice), else this process's CLIP_AESTHETICS_PRECISION (a served model, a notebook), else auto."""
    asked = (model_config or {}).get("precision")
    return str(asked) if asked else PrecisionSettings().precision


class ScoreSettings(EngineSettings, PrecisionSettings, StoreSettings, WorkersSettings):
    model: str = Field("models:/clip-aesthetics@champion", description="any MLflow model URI of a scorer")
    gallery: str = Field("", description="also write an HTML page of the scored images by score bucket, with the "
                         "histogram, top, bottom and failures (self-contained); empty = none")
    out: str = Field("", description="where the rows go, in the format its suffix names, the same for every input: "
                     ".csv one CSV table; .parquet one parquet table (a folder of parts for shards and tables, "
                     "resumable, and on Spark); a name without a suffix, such a folder; with engine=spark and image "
                     "files also a URI Spark writes (hdfs://, s3a://). Empty = scores.csv for image files, "
                     "scores.parquet for shards and tables and on Spark")
    image_column: str = Field("", description="parquet/arrow inputs: the column of image bytes; empty = the first "
                              "binary or {bytes, path} column")
    min_score: OptionalNumber = Field(None, description="shards and tables: keep the samples scoring at least this "
                                      "(_report/kept.parquet in the output folder); empty = no minimum")
    min_percentile: OptionalNumber = Field(None, ge=0.0, le=100.0, description="shards and tables: keep the samples "
                                           "whose percentile (against the model's reference scores) is at least "
                                           "this, 0-100; empty = no minimum")
    top_fraction: float = Field(0.0, ge=0.0, le=1.0, description="shards and tables: keep the best this share of "
                                "all input samples (exact); 0 = no such cut")
    write_shards: str = Field("", description="shards: also write new webdataset shards of the kept samples into "
                              "this folder (a new or empty one, never one holding an input), members copied byte "
                              "for byte")
    fresh: bool = Field(False, description="shards and tables: score every input again into --out, replacing the "
                        "parts an earlier job wrote there (without it, a folder scored by another model or with other "
                        "options is refused, and one scored by the same model is resumed)")
