"""Model URIs: what a URI names (a registered version, by number or alias; a logged model; a run's model; a folder),
resolved once by `resolve` for every command; the scorer behind it, its files and scale.

MLflow's own grammar decides: `models:/NAME@ALIAS` and `models:/NAME/VERSION` name a registered version, whatever
the name looks like (a model called `m-clip`, or named like a run id, is a registered model); `models:/MODEL_ID`
with no version names a logged model (MLflow 3's `m-` + 32 hex digits); `runs:/RUN_ID/PATH` a run's model. Imports
neither torch nor transformers (loading a PyTorch scorer imports them, an export's does not), so that `score` with
an exported model starts without them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
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


LOGGED_MODEL_ID = re.compile(r"^m-[0-9a-f]{32}$")  # MLflow 3's logged-model ids


@dataclass(frozen=True)
class ModelRef:
    """What a model URI names, as far as the tracking store knows it."""

    uri: str
    kind: str  # "version" (registered), "logged" (a logged model), "run" (a run's model), "folder", "other"
    name: str = ""  # registered model name
    version: str = ""  # its version number, once found
    alias: str = ""  # as the URI gave it
    run_id: str = ""  # the run that logged the model (a registered version's source run)
    model_id: str = ""  # the logged model (MLflow 3)
    missing: str = ""  # why the store does not know it, or ""

    def describe(self) -> str:
        """What the URI resolved to, for the user: its version and run, and the store."""
        store = mlflow.get_tracking_uri()
        if self.missing:
            return f"{self.uri} (not found in tracking store {store}: {self.missing})"
        if self.kind == "version":
            return (f"{self.uri} -> version {self.version} of {self.name}, logged by run {self.run_id}, tracking "
                    f"store {store}")
        if self.kind in ("run", "logged") and self.run_id:
            return f"{self.uri} (logged by run {self.run_id}, tracking store {store})"
        return f"{self.uri} (tracking store {store})" if self.kind != "folder" else f"{self.uri} (a model folder)"

    def identity(self) -> dict:
        """Its registered version and run, where it has them (what a job's parts record)."""
        if self.kind == "version" and not self.missing:
            return {"registered_model": self.name, "version": self.version, "run_id": self.run_id}
        return {"run_id": self.run_id} if self.run_id else {}


def resolve(model_uri: str) -> ModelRef:
    """What `model_uri` names, asking the store once; an unknown one comes back with `missing` saying why."""
    uri = str(model_uri)
    client = mlflow.MlflowClient()
    if uri.startswith("models:/"):
        rest = uri.removeprefix("models:/")
        if "@" in rest or "/" in rest:
            name, alias = rest.split("@", 1) if "@" in rest else (rest, "")
            number = "" if alias else name.rsplit("/", 1)[1]
            name = name if alias else name.rsplit("/", 1)[0]
            try:
                found = client.get_model_version_by_alias(name, alias) if alias else \
                    client.get_model_version(name, number)
            except (MlflowException, ValueError) as error:
                return ModelRef(uri, "version", name, number, alias, missing=getattr(error, "message", str(error)))
            return ModelRef(uri, "version", name, str(found.version), alias, found.run_id or "",
                            model_of_version(found))
        try:
            logged = mlflow.get_logged_model(rest)
        except MlflowException as error:
            why = "not a logged model's id (m- and 32 hex digits)" if not LOGGED_MODEL_ID.match(rest) else error.message
            return ModelRef(uri, "logged", model_id=rest, missing=why)
        return ModelRef(uri, "logged", run_id=logged.source_run_id or "", model_id=rest)
    if uri.startswith("runs:/"):
        run_id, _, path = uri.removeprefix("runs:/").partition("/")
        return ModelRef(uri, "run", run_id=run_id, model_id=_logged_by(run_id, path))
    return ModelRef(uri, "folder" if Path(uri).is_dir() else "other")


def model_of_version(version) -> str:
    """The logged model a registered version was made from (MLflow keeps it as the version's source URI)."""
    source = str(getattr(version, "source", "") or "").removeprefix("models:/")
    return getattr(version, "model_id", None) or (source if LOGGED_MODEL_ID.match(source) else "")


def _logged_by(run_id: str, name: str) -> str:
    """The logged model a run logged under `name`, if the store knows one."""
    try:
        run = mlflow.MlflowClient().get_run(run_id)
        logged = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list",
                                             filter_string=f"source_run_id = '{run_id}' and name = '{name}'")
    except MlflowException:
        return ""
    return logged[0].model_id if logged else ""


def model_identity(ref: ModelRef, folder: str) -> dict:
    """What identifies the scorer saved in `folder` (downloaded from `ref`'s URI): the URI, its registered version
    and run where it has them, and the digests of its head and spec (backbone, precision, decoding, scale)."""
    from clip_aesthetics.digests import file_sha256
    from clip_aesthetics.errors import ModelFolderError

    def sha256(path: Path) -> str:
        if not path.is_file():
            raise ModelFolderError(f"{path}: missing; the model folder is incomplete: download or export it again")
        return file_sha256(path)

    artifacts = Path(folder) / "artifacts"
    weights = artifacts / HEAD_FILE if (artifacts / HEAD_FILE).exists() else artifacts / GRAPH_FILE  # an export
    return {"model_uri": ref.uri, "head_sha256": sha256(weights), "spec_sha256": sha256(artifacts / SPEC_FILE),
            **ref.identity()}


def download_model(model_uri: str) -> str:
    """A local folder holding the model behind `model_uri` (to ship to Spark executors, say)."""
    try:
        return mlflow.artifacts.download_artifacts(model_uri)
    except MlflowException as error:
        hint = " (register one with `clip-aesthetics register`, or pass --model runs:/RUN_ID/model)" \
            if model_uri.startswith("models:/") else ""
        raise ScoringInputError(f"cannot find model {model_uri!r} in tracking store {mlflow.get_tracking_uri()}: "
                                f"{_why_missing(model_uri) or error.message}{hint}") from error


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
    """The scorer.json of a model saved in `folder` (as download_model gives it), checked (model_checks)."""
    from clip_aesthetics.scoring.model_checks import read_json

    return read_json(Path(folder) / "artifacts" / SPEC_FILE, "scorer.json")


def score_range_of(folder: str | Path) -> tuple[float, float]:
    """The scale of the model saved in `folder`, from its scorer.json (models saved before it was recorded: AVA's)."""
    from clip_aesthetics.data.ava import SCORE_RANGE

    low, high = read_spec(folder)["head"].get("score_range", SCORE_RANGE)
    return float(low), float(high)
