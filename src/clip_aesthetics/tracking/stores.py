"""Which MLflow tracking store a command uses: the one way every command, and `clip_aesthetics.load`, chooses it
(the `tracking_uri` setting, else $MLFLOW_TRACKING_URI, else ./mlflow.db as MLflow's default), and the check that a
SQLite store named for a registered model exists before MLflow would create an empty one."""

from __future__ import annotations

from pathlib import Path

import mlflow

from clip_aesthetics.errors import ScoringInputError

DEFAULT_DATABASE = "mlflow.db"  # MLflow's own default store: this file in the folder a command runs from


def use_store(tracking_uri: str = "") -> str:
    """A command's store: `tracking_uri` when given, else $MLFLOW_TRACKING_URI, else ./mlflow.db; made this process's
    store (whatever an earlier caller in the process set). Returns it."""
    from mlflow.environment_variables import MLFLOW_TRACKING_URI

    uri = tracking_uri or MLFLOW_TRACKING_URI.get() or f"sqlite:///{DEFAULT_DATABASE}"
    mlflow.set_tracking_uri(uri)
    return uri


def check_store(model_uri: str, tracking_uri: str) -> None:
    """Refuse, before any work, a registry or run URI when the store it needs is a SQLite file that does not exist
    (MLflow would create an empty one there and then find no model)."""
    if not str(model_uri).startswith(("models:/", "runs:/")) or not tracking_uri.startswith("sqlite:///"):
        return
    database = Path(tracking_uri.removeprefix("sqlite:///"))
    if not database.is_file():
        here = " (the default: ./mlflow.db in the folder you run from)" \
            if tracking_uri == f"sqlite:///{DEFAULT_DATABASE}" else ""
        raise ScoringInputError(
            f"no tracking store at {database.resolve()}{here} to find {model_uri} in: run from the folder that holds "
            "mlflow.db, or pass --tracking-uri sqlite:////ABSOLUTE/PATH/mlflow.db (or set MLFLOW_TRACKING_URI)")
