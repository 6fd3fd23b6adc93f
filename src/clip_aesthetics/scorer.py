"""Images (bytes or paths) -> 1-10 aesthetic scores, through the training run's CLIP, processor and head."""

from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

from .embed import ClipSource, default_workers, embed_sources, load_clip, pick_device, pick_dtype, resolve_clip
from .head import HeadSpec, build_head, predict_scores, prepare
from .images import ImageError, decode_rgb, load_rgb

DEFAULT_BATCH = {"cuda": 256, "cpu": 32}


def _image_bytes(value) -> bytes:
    """Bytes as given, or decoded from a base64 string (as JSON requests carry them)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        raise ImageError("no image in this row (null or absent)")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ImageError("image is a string but not valid base64") from None
    raise ImageError(f"image must be bytes or a base64 string, got {type(value).__name__}")


def _decode_value(value):
    return decode_rgb(_image_bytes(value))


def _bad_request(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


class AestheticScorer(PythonModel):
    """The registered model: applies exactly the CLIP (id + revision), processor, embed_norm and scale of training."""

    def load_context(self, context) -> None:
        self.load(context.artifacts)

    def load(self, artifacts: dict[str, str], device: str = "auto") -> AestheticScorer:
        doc = json.loads(Path(artifacts["scorer_spec"]).read_text())
        self.spec = HeadSpec(**doc["head"])
        self.clip_info = doc["clip"]
        self.head = build_head(self.spec)
        self.head.load_state_dict(torch.load(artifacts["head"], map_location="cpu", weights_only=True))
        self.head.eval()
        if "clip" in artifacts:  # bundled into the model: no hub, no original folder needed
            source = ClipSource(self.clip_info["model_id"], self.clip_info["revision"], Path(artifacts["clip"]))
        else:
            source = resolve_clip(self.clip_info["model_id"], self.clip_info["revision"])
            if source.revision != self.clip_info["revision"]:
                raise RuntimeError(
                    f"the CLIP folder {source.model_id} changed since training (fingerprint {source.revision}, "
                    f"trained with {self.clip_info['revision']}); scores would not match the trained head"
                )
        self.device = pick_device(device)
        self.dtype = pick_dtype("auto", self.device)
        self.model, self.processor = load_clip(source, self.device)
        if self.model.config.projection_dim != self.spec.in_dim:
            raise RuntimeError(f"CLIP {source.model_id} gives {self.model.config.projection_dim}-d embeddings but the "
                               f"head was trained on {self.spec.in_dim}-d ones")
        return self

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        """`image` column (bytes or base64) -> DataFrame(score, error); `path` only outside a server.

        A bad row gets NaN and its reason; a request that cannot be scored at all raises an error whose
        message (what a server answers with, as HTTP 400) says what was wrong.
        """
        frame = pd.DataFrame(model_input)
        served = os.environ.get("_MLFLOW_IS_IN_SERVING_ENVIRONMENT", "").lower() == "true"
        if len(frame) == 0:
            # (MLflow drops columns outside the signature first, so a request with only unknown columns lands here)
            raise _bad_request("the request holds no rows with an `image` column: send one row per image, "
                               "e.g. {\"dataframe_records\": [{\"image\": \"<base64>\"}]}")
        if "image" in frame.columns and (served or frame["image"].notna().any()):
            return self._score(list(frame["image"]), _decode_value, threads=True)
        if "path" in frame.columns:
            if served:
                raise _bad_request("the served model accepts only an `image` column of base64 images, not `path` "
                                   "(a server does not read files named by its clients)")
            return self.score_paths(list(frame["path"]))
        raise _bad_request(f"expected an `image` column (encoded image bytes, base64 in JSON)"
                           f"{'' if served else ' or a `path` column'}, got columns {list(frame.columns)}")

    def score_paths(self, paths: list, num_workers: int = -1, progress: bool = False) -> pd.DataFrame:
        workers = default_workers(num_workers)
        return self._score([Path(p) for p in paths], load_rgb, threads=False, workers=workers, progress=progress)

    def _score(self, sources: list, load, threads: bool, workers: int = 4, progress: bool = False) -> pd.DataFrame:
        scores = np.full(len(sources), np.nan)
        errors = [""] * len(sources)
        batch = DEFAULT_BATCH.get(self.device.type, 32)
        items = list(enumerate(sources))
        for ok, embeddings, failed in embed_sources(
            items, load, self.model, self.processor, self.dtype, batch, workers, threads=threads, progress=progress
        ):
            if ok:
                rows = [row[0] for row in ok]
                scores[rows] = predict_scores(self.head, self.spec, prepare(embeddings, self.spec.embed_norm))
            for row in failed:
                errors[row[0]] = row[2]
        return pd.DataFrame({"score": scores, "error": errors})
