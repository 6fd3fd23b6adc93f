"""Params, metrics, tables, figures and the scorer model -> the active MLflow run. The only run-tracking module."""

from __future__ import annotations

import importlib.metadata
import io
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import mlflow
import pandas as pd
import torch
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

PACKAGE_DIR = Path(__file__).resolve().parent
SCORER_ENTRY = PACKAGE_DIR / "scorer_entry.py"  # models-from-code: this file builds the pyfunc at load time
_RUNTIME_PACKAGES = ["mlflow", "torch", "transformers", "pillow", "pandas", "numpy", "scipy", "pydantic-settings"]


@contextmanager
def run(experiment: str, run_name: str, tags: dict | None = None, parent_run_id: str | None = None) -> Iterator:
    """Resume the run `mlflow run` created (MLFLOW_RUN_ID), start a child of `parent_run_id`, or a run in `experiment`."""
    launched = "MLFLOW_RUN_ID" in os.environ and parent_run_id is None
    kwargs = {} if launched else {"run_name": run_name or None}
    if parent_run_id:  # children live in their parent's experiment, whatever is active in this thread
        parent = mlflow.get_run(parent_run_id)
        kwargs.update(parent_run_id=parent_run_id, nested=True, experiment_id=parent.info.experiment_id)
    elif not launched:
        kwargs["experiment_id"] = mlflow.set_experiment(experiment).experiment_id
    with mlflow.start_run(tags=tags, **kwargs) as active:
        if launched and run_name:
            mlflow.set_tag("mlflow.runName", run_name)
        yield active


def log_params(params: dict) -> None:
    """Log params, leaving alone those already set (`mlflow run` logs every -P value itself)."""
    existing = mlflow.get_run(mlflow.active_run().info.run_id).data.params
    fresh = {key: _param_text(value) for key, value in params.items() if key not in existing}
    if fresh:
        mlflow.log_params(fresh)


def _param_text(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def library_versions() -> dict[str, str]:
    return {f"{name.replace('-', '_')}_version": importlib.metadata.version(name) for name in _RUNTIME_PACKAGES}


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    mlflow.log_metrics(metrics, step=step)


def set_tags(tags: dict) -> None:
    mlflow.set_tags({key: str(value) for key, value in tags.items()})


def log_csv(frame: pd.DataFrame, artifact_file: str) -> None:
    mlflow.log_text(frame.to_csv(index=False), artifact_file)


def log_text(text: str, artifact_file: str) -> None:
    mlflow.log_text(text, artifact_file)


def log_table(frame: pd.DataFrame, artifact_file: str) -> None:
    """A table the MLflow UI shows in its artifact view (and that `mlflow.load_table` reads back)."""
    mlflow.log_table(frame, artifact_file)


def find_finished_run(experiment_id: str, tag: str, value: str) -> str | None:
    """The newest FINISHED run carrying tag=value, if any."""
    runs = mlflow.MlflowClient().search_runs(
        [experiment_id], filter_string=f"tags.`{tag}` = '{value}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"], max_results=1,
    )
    return runs[0].info.run_id if runs else None


def run_metrics(run_id: str) -> dict[str, float]:
    return mlflow.MlflowClient().get_run(run_id).data.metrics


def metric_history(run_id: str, name: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in mlflow.MlflowClient().get_metric_history(run_id, name)]


def log_figure(figure, artifact_file: str) -> None:
    mlflow.log_figure(figure, artifact_file)


def log_state(state: dict, artifact_file: str) -> None:
    """A torch state_dict as an artifact (per-epoch checkpoints)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(artifact_file).name
        torch.save(state, path)
        mlflow.log_artifact(str(path), str(Path(artifact_file).parent))


def scorer_artifacts(folder: Path, head_state: dict, spec_doc: dict, clip_folder: Path | None) -> dict[str, str]:
    """Write what the scorer loads into `folder`: head weights, its spec, the processor, maybe CLIP itself."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(head_state, folder / "head.pt")
    (folder / "scorer.json").write_text(json.dumps(spec_doc, indent=2, sort_keys=True))
    artifacts = {"head": str(folder / "head.pt"), "scorer_spec": str(folder / "scorer.json")}
    if clip_folder is not None:
        artifacts["clip"] = str(clip_folder)
    return artifacts


def log_scorer(name: str, artifacts: dict[str, str]) -> str:
    """Log the image scorer as a models-from-code pyfunc carrying this package; returns its model URI."""
    signature = ModelSignature(
        inputs=Schema([ColSpec("string", "image", required=False), ColSpec("string", "path", required=False)]),
        outputs=Schema([ColSpec("double", "score"), ColSpec("string", "error")]),
    )
    requirements = [f"{name}=={importlib.metadata.version(name)}" for name in _RUNTIME_PACKAGES]
    info = mlflow.pyfunc.log_model(
        name=name,
        python_model=str(SCORER_ENTRY),
        artifacts=artifacts,
        code_paths=[str(PACKAGE_DIR)],
        pip_requirements=requirements,
        signature=signature,
        input_example=pd.DataFrame({"image": [_example_png()]}),
    )
    return info.model_uri


def _example_png() -> bytes:
    """A small valid image for the model's input example."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 120, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


