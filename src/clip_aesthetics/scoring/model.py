"""The scorer model and its format: images (bytes or paths) -> scores on its training data's scale (AVA: 1-10)
through a training run's CLIP and head.

Owns the files of the model (head.pt, scorer.json with the head spec and the CLIP id + revision, and,
once registered, the CLIP vision weights and processor): writing them, logging them as a
models-from-code pyfunc with its signature, reading them back, and loading the model.
"""

from __future__ import annotations

import base64
import binascii
import importlib.metadata
import io
import json
import os
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel
from mlflow.types import ColSpec, Schema

from clip_aesthetics.backbones.families import BackboneSource, load_backbone, resolve_backbone
from clip_aesthetics.embedding.embed import batch_for, default_workers, embed_sources, pick_device, scoring_dtype
from clip_aesthetics.errors import ScoringInputError
from clip_aesthetics.heads.head import HeadSpec, build_head, non_finite_reason, predict_scores, prepare
from clip_aesthetics.images.decode import ImageError, decode_rgb, load_rgb

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the whole package: copied into every model
SCORER_ENTRY = PACKAGE_DIR / "scorer_entry.py"  # models-from-code: this file builds the pyfunc at load time
RUNTIME_PACKAGES = ["mlflow", "torch", "transformers", "pillow", "pandas", "numpy", "scipy", "pydantic-settings"]
HEAD_FILE, SPEC_FILE = "head.pt", "scorer.json"
MODEL_NAME = "model"  # the scorer every training run logs (it refers to the CLIP checkpoint, not carrying it)
# `image` is a string column: base64 text in JSON requests, bytes from Python (MLflow passes both through),
# so that a null or a number among good rows becomes that row's error instead of rejecting the request.
SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string", "image", required=False), ColSpec("string", "path", required=False)]),
    outputs=Schema([ColSpec("double", "score"), ColSpec("string", "error")]),
)


def write_artifacts(folder: Path, head_state: dict, spec_doc: dict, clip_folder: Path | None = None) -> dict[str, str]:
    """The scorer's files in `folder`, as the artifacts dict the model is logged with (and `load` reads)."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(head_state, folder / HEAD_FILE)
    (folder / SPEC_FILE).write_text(json.dumps(spec_doc, indent=2, sort_keys=True))
    artifacts = {"head": str(folder / HEAD_FILE), "scorer_spec": str(folder / SPEC_FILE)}
    if clip_folder is not None:
        artifacts["clip"] = str(clip_folder)
    return artifacts


def _pyfunc(artifacts: dict[str, str]) -> dict:
    return dict(python_model=str(SCORER_ENTRY), artifacts=artifacts, code_paths=[str(PACKAGE_DIR)],
                pip_requirements=[f"{p}=={importlib.metadata.version(p)}" for p in RUNTIME_PACKAGES],
                signature=SIGNATURE, input_example=pd.DataFrame({"image": [_example_png()]}))


def log_scorer(name: str, head_state: dict, spec_doc: dict, clip_folder: Path | None = None,
               model_id: str | None = None) -> str:
    """Log the scorer (in the active run, or as the given logged model); returns its model URI."""
    with tempfile.TemporaryDirectory() as tmp:
        artifacts = write_artifacts(Path(tmp), head_state, spec_doc, clip_folder)
        return mlflow.pyfunc.log_model(name=name, model_id=model_id, **_pyfunc(artifacts)).model_uri


def save_scorer(path: Path, head_state: dict, spec_doc: dict, clip_folder: Path | None = None) -> Path:
    """The same model saved to a local folder, outside any tracking store (benchmarks, offline copies)."""
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.pyfunc.save_model(str(path), **_pyfunc(write_artifacts(Path(tmp), head_state, spec_doc, clip_folder)))
    return Path(path)


def read_logged(artifact_location: str) -> tuple[dict, dict]:
    """(head state, scorer.json) of a logged scorer, from its artifact location."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(mlflow.artifacts.download_artifacts(f"{artifact_location}/artifacts", dst_path=tmp))
        spec_doc = json.loads((folder / SPEC_FILE).read_text())
        head_state = torch.load(folder / HEAD_FILE, map_location="cpu", weights_only=True)
    return head_state, spec_doc


def load_scorer(model_uri: str) -> AestheticScorer:
    """The AestheticScorer behind a pyfunc URI (models:/name@alias, runs:/..., models:/m-...)."""
    from clip_aesthetics.backbones.families import BackboneUnavailableError

    try:
        return mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    except MlflowException as error:
        raise ScoringInputError(
            f"cannot load model {model_uri!r} from tracking store {mlflow.get_tracking_uri()}: {error.message} "
            "(register one with `clip-aesthetics register`, or pass --model runs:/RUN_ID/model)"
        ) from error
    except (BackboneUnavailableError, RuntimeError, OSError) as error:  # the model's CLIP is gone or changed
        raise ScoringInputError(f"model {model_uri!r} cannot score: {error}") from error


def describe_model(model_uri: str) -> str:
    """What a model URI resolved to, for the user: `models:/NAME@ALIAS` -> its version, and the store."""
    store = mlflow.get_tracking_uri()
    rest = model_uri.removeprefix("models:/")
    if rest == model_uri or rest.startswith("m-"):
        return f"{model_uri} (tracking store {store})"
    found = registered_version(model_uri)
    if found is None:
        return f"{model_uri} (not found in tracking store {store})"
    name, version = found
    return f"{model_uri} -> version {version.version} of {name}, trained in run {version.run_id}, tracking store {store}"


def registered_version(model_uri: str):
    """(name, ModelVersion) behind `models:/NAME@ALIAS` or `models:/NAME/N`; None for other URIs or when absent."""
    rest = model_uri.removeprefix("models:/")
    if rest == model_uri or rest.startswith("m-"):
        return None
    client = mlflow.MlflowClient()
    try:
        if "@" in rest:
            name, alias = rest.split("@", 1)
            return name, client.get_model_version_by_alias(name, alias)
        name, number = rest.rsplit("/", 1)
        return name, client.get_model_version(name, number)
    except (MlflowException, ValueError):
        return None


def model_identity(model_uri: str, folder: str) -> dict:
    """What identifies the scorer saved in `folder` (downloaded from `model_uri`): the URI, its registered version
    and run where it has them, and the digests of its head and spec (backbone, precision, decoding, scale)."""
    from clip_aesthetics.digests import file_sha256 as sha256

    artifacts = Path(folder) / "artifacts"
    job = {"model_uri": model_uri, "head_sha256": sha256(artifacts / HEAD_FILE),
           "spec_sha256": sha256(artifacts / SPEC_FILE)}
    found = registered_version(model_uri)
    if found:
        job.update(registered_model=found[0], version=str(found[1].version), run_id=found[1].run_id or "")
    elif model_uri.startswith("runs:/"):
        job["run_id"] = model_uri.removeprefix("runs:/").split("/", 1)[0]
    return job


def download_model(model_uri: str) -> str:
    """A local folder holding the model behind `model_uri` (to ship to Spark executors, say)."""
    try:
        return mlflow.artifacts.download_artifacts(model_uri)
    except MlflowException as error:
        raise ScoringInputError(f"cannot find model {model_uri!r} in tracking store {mlflow.get_tracking_uri()}: "
                                f"{error.message}") from error


def read_spec(folder: str | Path) -> dict:
    """The scorer.json of a model saved in `folder` (as download_model gives it)."""
    return json.loads((Path(folder) / "artifacts" / SPEC_FILE).read_text())


def model_scale(model_uri: str) -> tuple[float, float]:
    """The scale a model's scores are on (its training data's), read from its scorer.json."""
    return HeadSpec(**read_spec(download_model(model_uri))["head"]).score_range


def set_model() -> None:
    """Called by scorer_entry.py when MLflow loads the model from code."""
    mlflow.models.set_model(AestheticScorer())


def _example_png() -> bytes:
    """A small valid image for the model's input example."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 120, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


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


def _decode_value(value, min_short: int | None = None):
    return decode_rgb(_image_bytes(value), min_short=min_short)


def _bad_request(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


class AestheticScorer(PythonModel):
    """The registered model: applies exactly the CLIP (id + revision), processor, decoding, precision, embed_norm
    and scale of training."""

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
            source = BackboneSource(self.clip_info["model_id"], self.clip_info["revision"], Path(artifacts["clip"]))
        else:
            source = resolve_backbone(self.clip_info["model_id"], self.clip_info["revision"])
            if source.revision != self.clip_info["revision"]:
                raise RuntimeError(
                    f"the CLIP folder {source.model_id} changed since training (fingerprint {source.revision}, "
                    f"trained with {self.clip_info['revision']}); scores would not match the trained head"
                )
        self.device = pick_device(device)
        self.precision = doc.get("precision")  # as at training; older models have none: the device's choice
        self.decoding = doc.get("decoding", "full")  # as at training; older models decoded in full
        self.dtype = scoring_dtype(self.precision, self.device)
        self.model, self.processor = load_backbone(source, self.device)
        if self.model.embedding_dim != self.spec.in_dim:
            raise RuntimeError(f"backbone {source.model_id} gives {self.model.embedding_dim}-d embeddings but the "
                               f"head was trained on {self.spec.in_dim}-d ones")
        return self

    def to(self, device) -> AestheticScorer:
        """Move the CLIP to `device` (a GPU Spark assigned a task, say), in that device's precision."""
        self.device = torch.device(device)
        self.dtype = scoring_dtype(self.precision, self.device)
        self.model = self.model.to(self.device)
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
            return self.score_bytes(list(frame["image"]))
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

    def _score(self, sources: list, load, threads: bool, workers: int = -1, progress: bool = False) -> pd.DataFrame:
        scores = np.full(len(sources), np.nan)
        errors = [""] * len(sources)
        batch = batch_for(self.device)
        items = list(enumerate(sources))
        workers = default_workers(workers)  # bytes: a thread pool sized to the cores; files: worker processes
        for ok, embeddings, failed in embed_sources(
            items, load, self.model, self.processor, self.dtype, batch, workers, threads=threads, progress=progress,
            decoding=self.decoding,
        ):
            if ok:
                rows = [row[0] for row in ok]
                predicted = predict_scores(self.head, self.spec, prepare(embeddings, self.spec.embed_norm))
                for row, value in zip(rows, predicted, strict=True):
                    if np.isfinite(value):
                        scores[row] = value
                    else:  # never a silent NaN or infinity: the row says why it has no score
                        errors[row] = non_finite_reason(value)
            for row in failed:
                errors[row[0]] = row[2]
        return pd.DataFrame({"score": scores, "error": errors})

    def score(self, images: list, num_workers: int = -1) -> pd.DataFrame:
        """Images -> DataFrame(score, error), one row per image, in order: each a path (str or Path), encoded bytes
        or a PIL image, mixed as you like. `score` is on the model's scale (its `score_range`); an image that
        cannot be scored gets NaN and the reason in `error`. The same embedding and head as every other path
        (CLI, server, Spark); a PIL image is taken as it is in memory (decoded in full)."""
        from clip_aesthetics.images.decode import load_any

        sources = [Path(image) if isinstance(image, str) else image for image in images]
        return self._score(sources, load_any, threads=True, workers=num_workers)

    @property
    def score_range(self) -> tuple[float, float]:
        """The scale scores are on: the ratings the model was trained on (AVA: 1-10)."""
        return self.spec.score_range

    def score_bytes(self, images: list) -> pd.DataFrame:
        """Encoded images (bytes, or base64 text) -> DataFrame(score, error), decoded on a thread pool."""
        return self._score(list(images), _decode_value, threads=True)
