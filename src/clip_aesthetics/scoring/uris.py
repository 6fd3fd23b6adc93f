"""Model URIs: what a URI resolves to (a registered version, a run), the scorer behind it, its files and scale.

Imports neither torch nor transformers (loading a PyTorch scorer imports them, an export's does not), so that
`score` with an exported model starts without them.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from clip_aesthetics.errors import ScoringInputError

HEAD_FILE, SPEC_FILE = "head.pt", "scorer.json"  # a PyTorch scorer's head and its spec (scoring/model.py)
GRAPH_FILE = "model.onnx"  # an export's graph (scoring/onnx_export.py)


def load_scorer(model_uri: str, precision: str | None = None):
    """The scorer behind a pyfunc URI (models:/name@alias, runs:/..., models:/m-...): an AestheticScorer computing
    in `precision` (None: the process's CLIP_AESTHETICS_PRECISION, else auto: see embedding/precision.py), or the
    OnnxScorer of an export (then neither torch nor transformers is imported, and the export computes in the
    precision it was exported in)."""
    from clip_aesthetics.errors import UserError

    try:
        scorer = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
        # loaded in the process's own setting (CLIP_AESTHETICS_PRECISION, else auto): models logged before this
        # option take no load-time configuration, so the choice is applied after
        return scorer if precision in (None, getattr(scorer, "requested_precision", "auto")) else \
            scorer.to(scorer.device, precision)
    except MlflowException as error:
        raise ScoringInputError(
            f"cannot load model {model_uri!r} from tracking store {mlflow.get_tracking_uri()}: {error.message} "
            "(register one with `clip-aesthetics register`, or pass --model runs:/RUN_ID/model)"
        ) from error
    except (UserError, RuntimeError, OSError) as error:  # the model's backbone is gone or changed
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
    return f"{model_uri} -> version {version.version} of {name}, logged by run {version.run_id}, tracking store {store}"


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
    weights = artifacts / HEAD_FILE if (artifacts / HEAD_FILE).exists() else artifacts / GRAPH_FILE  # an export
    job = {"model_uri": model_uri, "head_sha256": sha256(weights),
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
                                f"{_why_missing(model_uri) or error.message}") from error


def _why_missing(model_uri: str) -> str:
    """For runs:/RUN_ID/PATH: that the run does not exist, or what it holds instead of a model at PATH."""
    if not model_uri.startswith("runs:/"):
        return ""
    run_id, _, path = model_uri.removeprefix("runs:/").partition("/")
    client = mlflow.MlflowClient()
    try:
        run = client.get_run(run_id)
    except MlflowException:
        return f"no run {run_id!r} there (copy the run id from the MLflow UI's run page)"
    logged = [m.name for m in mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list",
                                                          filter_string=f"source_run_id = '{run_id}'")]
    what = f"its logged models are {', '.join(logged)}" if logged else "it logged no model (not a training run, or " \
        "one that failed before its model was logged)"
    return f"run {run_id} ({run.info.run_name}) has no model named {path!r}: {what}"


def read_spec(folder: str | Path) -> dict:
    """The scorer.json of a model saved in `folder` (as download_model gives it)."""
    return json.loads((Path(folder) / "artifacts" / SPEC_FILE).read_text())


def model_scale(model_uri: str) -> tuple[float, float]:
    """The scale a model's scores are on (its training data's), read from its scorer.json."""
    return score_range_of(download_model(model_uri))


def score_range_of(folder: str | Path) -> tuple[float, float]:
    """The scale of the model saved in `folder`, from its scorer.json (models saved before it was recorded: AVA's)."""
    from clip_aesthetics.data.ava import SCORE_RANGE

    low, high = read_spec(folder)["head"].get("score_range", SCORE_RANGE)
    return float(low), float(high)
