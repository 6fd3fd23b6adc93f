"""Params, metrics, tables, figures, datasets and notes -> MLflow runs: the run-tracking edge's one MLflow wrapper.

The workflows (workflows/: one module per entry point) call these; nothing below them (filling, embed, head,
training, metrics) logs anything. The scorer model's files are the scorer module's; the registry's calls are
registry.py's.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import mlflow
import pandas as pd
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric

from clip_aesthetics.environment import RUNTIME_PACKAGES

# The MLflow UI opens an experiment in the view for its kind; without the tag it may guess GenAI.
EXPERIMENT_KIND_TAG, MODEL_DEVELOPMENT = "mlflow.experimentKind", "custom_model_development"
DESCRIPTION_TAG = "mlflow.note.content"  # a run's description in the UI
KEY_TAG = "clip_aesthetics.run_key"  # a sweep child's parameters + code version, for reusing finished runs
SWEEP_TAG = "clip_aesthetics.sweep"  # on a sweep's parent run
SELECTION_TAG = "selection"  # on a training run: how its kept epoch was chosen (`undefined`: on nothing)
SELECTED_BY_TAG = "selected_by"  # on a training run: its head kind's selection metric (what compares it with others)
REPORTED_BY_TAG = "reported_by"  # on a training run: its head kind's reported metric
DEGENERATE_TAG = "degenerate"  # on a training run whose kept model gives constant or mostly clipped scores
CHILDREN_TAG = "clip_aesthetics.children"  # on a sweep's parent: run ids of every grid point, trained or reused


@contextmanager
def run(experiment: str, run_name: str, tags: dict | None = None, parent_run_id: str | None = None,
        experiment_id: str | None = None) -> Iterator:
    """Resume the run `mlflow run` created (MLFLOW_RUN_ID), start a child of `parent_run_id`, or a run in `experiment`
    (or in the experiment `experiment_id`: an export beside its source)."""
    launched = "MLFLOW_RUN_ID" in os.environ and parent_run_id is None and experiment_id is None
    kwargs = {} if launched else {"run_name": run_name or None}
    if parent_run_id:  # children live in their parent's experiment, whatever is active in this thread
        parent = mlflow.get_run(parent_run_id)
        kwargs.update(parent_run_id=parent_run_id, nested=True, experiment_id=parent.info.experiment_id)
    elif not launched:
        kwargs["experiment_id"] = experiment_id or mlflow.set_experiment(experiment).experiment_id
    with mlflow.start_run(tags=tags, **kwargs) as active:
        if launched and run_name:
            mlflow.set_tag("mlflow.runName", run_name)
        _mark_model_development(active.info.experiment_id)
        yield active


def _mark_model_development(experiment_id: str) -> None:
    """Tag the experiment as model development, unless someone chose another kind explicitly."""
    client = mlflow.MlflowClient()
    kind = client.get_experiment(experiment_id).tags.get(EXPERIMENT_KIND_TAG, "")
    if not kind or kind.endswith("_inferred") or kind == "no_inferred_type":
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, MODEL_DEVELOPMENT)


def active_run_id() -> str:
    return mlflow.active_run().info.run_id


def log_params(params: dict) -> None:
    """Log params, leaving alone those already set (`mlflow run` logs every -P value itself)."""
    existing = mlflow.get_run(active_run_id()).data.params
    fresh = {key: _param_text(value) for key, value in params.items() if key not in existing}
    if fresh:
        mlflow.log_params(fresh)


def _param_text(value) -> str:
    """As the CLI and MLproject spell it: lists comma-separated, None empty, booleans lower case."""
    from clip_aesthetics.settings.values import as_text

    return as_text(value)


def library_versions() -> dict[str, str]:
    return {f"{name.replace('-', '_')}_version": importlib.metadata.version(name) for name in RUNTIME_PACKAGES}


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    mlflow.log_metrics(metrics, step=step)


def set_tags(tags: dict) -> None:
    mlflow.set_tags({key: str(value) for key, value in tags.items()})


def set_description(text: str) -> None:
    """The active run's description (markdown), shown on its page and in the runs table."""
    mlflow.set_tag(DESCRIPTION_TAG, text)


def log_csv(frame: pd.DataFrame, artifact_file: str) -> None:
    mlflow.log_text(frame.to_csv(index=False), artifact_file)


def log_text(text: str, artifact_file: str) -> None:
    mlflow.log_text(text, artifact_file)


def log_table(frame: pd.DataFrame, artifact_file: str) -> None:
    """A table the MLflow UI shows in its artifact view (and that `mlflow.load_table` reads back)."""
    mlflow.log_table(frame, artifact_file)


def log_figure(figure, artifact_file: str) -> None:
    mlflow.log_figure(figure, artifact_file)


def log_bytes(data: bytes, artifact_file: str) -> None:
    """A file of bytes as an artifact (a per-epoch checkpoint, as heads.head.state_bytes writes it)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(artifact_file).name
        path.write_bytes(data)
        mlflow.log_artifact(str(path), str(Path(artifact_file).parent))


def log_datasets(name: str, digest: str, source: str, profiles: dict[str, dict]) -> None:
    """One dataset input per context (train, validation, test; or one for a sweep), all with the table's digest.

    MLflow links a dataset (name + digest) to a run once, so each context is its own dataset, named
    `<name>#<context>`; the profile holds what that context is (its size, the split that made it).
    """
    inputs = [DatasetInput(Dataset(name=f"{name}#{context}", digest=digest, source_type="local",
                                   source=json.dumps({"uri": source}), schema=None, profile=json.dumps(profile)),
                           [InputTag("mlflow.data.context", context)])
              for context, profile in profiles.items()]
    mlflow.MlflowClient().log_inputs(active_run_id(), datasets=inputs)


def link_metrics_to_model(run_id: str, model_id: str, metrics: dict[str, float], dataset_name: str | None = None,
                          dataset_digest: str | None = None) -> None:
    """Log `metrics` on `run_id` as measured for logged model `model_id` (its page in the UI shows them), and,
    when given, on the dataset they were measured on."""
    import time

    now = int(time.time() * 1000)
    mlflow.MlflowClient().log_batch(run_id, metrics=[Metric(key, float(value), now, 0, model_id=model_id,
                                                            dataset_name=dataset_name, dataset_digest=dataset_digest)
                                                     for key, value in metrics.items()])


def find_finished_run(experiment_id: str, tag: str, value: str) -> str | None:
    """The newest FINISHED run carrying tag=value, if any."""
    runs = mlflow.MlflowClient().search_runs(
        [experiment_id], filter_string=f"tags.`{tag}` = '{value}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"], max_results=1,
    )
    return runs[0].info.run_id if runs else None


class MissingRun(LookupError):
    """No run of that id in the tracking store."""


def store() -> str:
    return mlflow.get_tracking_uri()


def get_run(run_id: str):
    """A run: its info, params, metrics, tags and inputs; MissingRun when the store has none of that id."""
    try:
        return mlflow.MlflowClient().get_run(run_id)
    except mlflow.exceptions.MlflowException:
        raise MissingRun(run_id) from None


def load_text(run_id: str, artifact_file: str) -> str:
    """A text artifact of a run."""
    return mlflow.artifacts.load_text(f"runs:/{run_id}/{artifact_file}")


def run_data(run_id: str):
    """A run's metrics, params and tags, in one request."""
    return mlflow.MlflowClient().get_run(run_id).data


def load_csv(run_id: str, artifact_file: str) -> pd.DataFrame:
    """A CSV artifact of a run (a child's predictions, say)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_file, dst_path=tmp)
        return pd.read_csv(path)


def not_comparable(tags: dict) -> str:
    """Why a training run's result must not be compared, elected or registered (its tags say so), or ""."""
    if tags.get(SELECTION_TAG) == "undefined":
        return f"no epoch had a defined {tags.get(SELECTED_BY_TAG, 'val_spearman')} ({SELECTION_TAG}=undefined)"
    if tags.get(DEGENERATE_TAG):
        return f"degenerate model: {tags[DEGENERATE_TAG]}"
    return ""


def metric_history(run_id: str, name: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in mlflow.MlflowClient().get_metric_history(run_id, name)]


def log_dataset(labelled, profiles: dict[str, dict]) -> None:
    """The label table as the active run's input, once per context, all with the table's digest.

    Named `<AVA folder name>/AVA.txt` or the table's file name; each context's profile also holds the split
    that made it and the data's scale (labelled.split_info, settled before).
    """
    log_datasets(labelled.name, labelled.digest, str(labelled.location),
                 {context: {**profile, **labelled.split_info} for context, profile in profiles.items()})
