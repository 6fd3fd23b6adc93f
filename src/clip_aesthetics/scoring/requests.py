"""What every scorer model (PyTorch or ONNX) accepts and answers: the pyfunc signature, the image cells of a
request (bytes, or base64 text in JSON), and the error a request that cannot be scored at all gets.

Imports neither torch nor transformers: the ONNX scorer uses it too.
"""

from __future__ import annotations

import base64
import binascii
import io
import os

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types import ColSpec, Schema

from clip_aesthetics.images.decode import ImageError, decode_rgb

# `image` is a string column: base64 text in JSON requests, bytes from Python (MLflow passes both through),
# so that a null or a number among good rows becomes that row's error instead of rejecting the request.
INPUTS = Schema([ColSpec("string", "image", required=False), ColSpec("string", "path", required=False)])
SIGNATURE = ModelSignature(inputs=INPUTS, outputs=Schema([ColSpec("double", "score"), ColSpec("double", "percentile"),
                                                          ColSpec("string", "error")]))


def output_columns(spec_doc: dict | None = None) -> list[str]:
    """A scorer's answer, in order: score, what its head kind adds (a distribution head's score_std: scorer.json's
    `extra_outputs`), percentile (scoring/reference.py), error."""
    return ["score", *(spec_doc or {}).get("extra_outputs", []), "percentile", "error"]


def signature_for(spec_doc: dict | None) -> ModelSignature:
    return ModelSignature(inputs=INPUTS, outputs=Schema([ColSpec("string" if c == "error" else "double", c)
                                                         for c in output_columns(spec_doc)]))


def example_png() -> bytes:
    """A small valid image for the model's input example."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 120, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


def image_bytes(value) -> bytes:
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


def decode_value(value, min_short: int | None = None):
    return decode_rgb(image_bytes(value), min_short=min_short)


def served() -> bool:
    """Whether this request is served by MLflow's scoring server (`mlflow models serve`), which sets this variable
    (MLflow sets it too while it checks a model's input example as it logs it)."""
    return os.environ.get("_MLFLOW_IS_IN_SERVING_ENVIRONMENT", "").lower() == "true"


def announce(scorer) -> None:
    """A served model says once, in the server's log, what it computes in and why (at its first request: MLflow's
    server marks itself after loading the model)."""
    import sys

    # the server runs under uvicorn; logging a model only simulates serving, to check its input example
    if served() and "uvicorn" in sys.modules and not getattr(scorer, "announced", False):
        scorer.announced = True
        print(f"clip-aesthetics: the served model scores in {scorer.precision_reason}", file=sys.stderr, flush=True)


def bad_request(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def dispatch(scorer, model_input) -> pd.DataFrame:
    """A pyfunc request -> the scorer's score_bytes (an `image` column) or score_paths (`path`, not when served).

    A bad row gets NaN and its reason; a request that cannot be scored at all raises an error whose message (what
    a server answers with, as HTTP 400) says what was wrong.
    """
    frame = pd.DataFrame(model_input)
    in_server = served()
    announce(scorer)
    if len(frame) == 0:
        # (MLflow drops columns outside the signature first, so a request with only unknown columns lands here)
        raise bad_request("the request holds no rows with an `image` column: send one row per image, "
                          "e.g. {\"dataframe_records\": [{\"image\": \"<base64>\"}]}")
    if "image" in frame.columns and (in_server or frame["image"].notna().any()):
        answer = scorer.score_bytes(list(frame["image"]))
        # JSON has no NaN: a served row without a score answers null (JavaScript's JSON.parse refuses NaN)
        return answer.astype(object).where(answer.notna(), None) if in_server else answer
    if "path" in frame.columns:
        if in_server:
            raise bad_request("the served model accepts only an `image` column of base64 images, not `path` "
                              "(a server does not read files named by its clients)")
        return scorer.score_paths(list(frame["path"]))
    raise bad_request(f"expected an `image` column (encoded image bytes, base64 in JSON)"
                      f"{'' if in_server else ' or a `path` column'}, got columns {list(frame.columns)}")
