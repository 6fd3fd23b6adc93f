"""Finished runs -> the best one by a metric -> a registered, self-contained model version with an alias.

The new version becomes `champion` only if it beats the current champion on the metric; otherwise it
is the `challenger`. Registering a run that already has a version creates nothing new. The version
carries the CLIP vision weights, so it scores images without the hub or the original model folder.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import torch
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from .config import RegisterSettings
from .sweep import CHILDREN_TAG, SWEEP_TAG

CHAMPION, CHALLENGER = "champion", "challenger"
BUNDLED_MODEL = "scorer"  # the self-contained copy of a run's `model`, logged by this step


class RegistryError(RuntimeError):
    """No run to register, or the chosen run lacks what registering needs."""


@dataclass
class Registration:
    run_id: str
    version: str
    alias: str
    metric_value: float
    created: bool  # False when this run was registered before


def candidate_runs(client: MlflowClient, settings: RegisterSettings) -> list:
    if settings.run_id:
        try:
            return [client.get_run(settings.run_id)]
        except MlflowException as error:
            raise RegistryError(f"no run {settings.run_id!r} in tracking store {mlflow.get_tracking_uri()} "
                                f"({error.error_code}); copy the run id from the MLflow UI's run page") from None
    if settings.experiment_name:
        experiment = client.get_experiment_by_name(settings.experiment_name)
        if experiment is None:
            raise RegistryError(f"no experiment named {settings.experiment_name!r}")
        return client.search_runs([experiment.experiment_id], "attributes.status = 'FINISHED'")
    experiments = [e.experiment_id for e in client.search_experiments()]
    sweeps = client.search_runs(experiments, f"tags.`{SWEEP_TAG}` = 'true'",
                                order_by=["attributes.start_time DESC"], max_results=1)
    if not sweeps:
        raise RegistryError("no sweep found: run `mlflow run . -e sweep` first, or pass run_id or experiment_name")
    ids = [i for i in sweeps[0].data.tags.get(CHILDREN_TAG, "").split(",") if i]
    return [client.get_run(run_id) for run_id in ids]


def score_of(run, metric: str) -> float:
    """The run's value at its best epoch (the logged model is that epoch's head), else its last value."""
    value = run.data.metrics.get(f"best_{metric}", run.data.metrics.get(metric))
    return float("nan") if value is None else float(value)


def pick_best(runs: list, metric: str):
    scored = [(score_of(run, metric), run) for run in runs if run.info.status == "FINISHED"]
    scored = [(value, run) for value, run in scored if not math.isnan(value)]
    if not scored:
        raise RegistryError(f"none of the {len(runs)} candidate run(s) is FINISHED with a {metric!r} metric")
    return max(scored, key=lambda pair: pair[0])


def register(settings: RegisterSettings) -> Registration:
    """Inside an active run (the register step's own): bundle the best run's scorer, register it, alias it.

    Safe under concurrency, also against a remote tracking server where no local lock helps: it converges
    after the fact. Of several versions registered from the same run the oldest stays and the others are
    deleted by their writers; `champion` is recomputed from all versions, until no new one appears.
    """
    client = MlflowClient()
    value, run = pick_best(candidate_runs(client, settings), settings.metric)
    run_id, name = run.info.run_id, settings.model_name
    existing = versions_of_run(client, name, run_id)
    created = not existing
    if existing:
        version = str(existing[0].version)
    else:
        model_uri = bundle_scorer(run, settings.bundle_dtype)
        mine = str(mlflow.register_model(model_uri, name, tags=_version_tags(run, settings.metric, value)).version)
        version = str(versions_of_run(client, name, run_id)[0].version)  # the oldest wins a concurrent registration
        if version != mine:
            client.delete_model_version(name, mine)
            created = False
    champion = elect_champion(client, name, settings.metric)
    if champion == version:
        alias = CHAMPION
    elif created:
        client.set_registered_model_alias(name, CHALLENGER, version)
        alias = CHALLENGER
    else:
        alias = ",".join(a for a, v in client.get_registered_model(name).aliases.items() if str(v) == version)
    return Registration(run_id, version, alias, value, created=created)


def quoted(value: str) -> str:
    """A string literal for an MLflow filter (which has no escapes: the quote must not occur inside)."""
    quote = "'" if "'" not in value else '"'
    if quote in value:
        raise RegistryError(f"{value!r} holds both quote characters; MLflow's filters cannot express it")
    return f"{quote}{value}{quote}"


def versions_of_run(client: MlflowClient, name: str, run_id: str) -> list:
    """The versions of `name` registered from training run `run_id` (its `run_id` tag), oldest first."""
    versions = client.search_model_versions(f"name = {quoted(name)}")
    return sorted((v for v in versions if v.tags.get("run_id") == run_id), key=lambda v: int(v.version))


def elect_champion(client: MlflowClient, name: str, metric: str) -> str | None:
    """Point `champion` at the best version by `metric` (the oldest among equals); repeat while versions appear."""
    for _ in range(5):
        versions = client.search_model_versions(f"name = {quoted(name)}")
        scored = [(float(v.tags.get(metric, "nan")), -int(v.version), str(v.version)) for v in versions]
        scored = [row for row in scored if not math.isnan(row[0])]
        if not scored:
            return None
        best = max(scored)[2]
        if str(client.get_registered_model(name).aliases.get(CHAMPION)) != best:
            client.set_registered_model_alias(name, CHAMPION, best)
        if {v.version for v in client.search_model_versions(f"name = {quoted(name)}")} == {v.version for v in versions}:
            return best
    return best


def _version_tags(run, metric: str, value: float) -> dict[str, str]:
    params = run.data.params
    return {"run_id": run.info.run_id, "clip_model_id": params.get("clip_model_id", ""),
            "clip_revision": params.get("clip_revision", ""), metric: str(value),
            "val_spearman": str(score_of(run, "val_spearman")), "test_spearman": str(score_of(run, "test_spearman"))}


def bundle_scorer(run, dtype: str) -> str:
    """Log, in the active run, a copy of `run`'s model that carries the CLIP vision weights; returns its URI."""
    from .embed import load_clip, resolve_clip
    from .tracking import log_scorer, scorer_artifacts

    models = mlflow.search_logged_models(filter_string=f"source_run_id = '{run.info.run_id}' and name = 'model'",
                                         output_format="list")
    if not models:
        raise RegistryError(f"run {run.info.run_id} has no logged model named 'model' to register")
    with tempfile.TemporaryDirectory() as tmp:
        logged = Path(mlflow.artifacts.download_artifacts(f"{models[0].artifact_location}/artifacts", dst_path=tmp))
        spec_doc = json.loads((logged / "scorer.json").read_text())
        head_state = torch.load(logged / "head.pt", map_location="cpu", weights_only=True)
        source = resolve_clip(spec_doc["clip"]["model_id"], spec_doc["clip"]["revision"])
        if source.revision != spec_doc["clip"]["revision"]:
            raise RegistryError(f"CLIP {source.model_id} changed since run {run.info.run_id} was trained "
                                f"(now {source.revision}, trained with {spec_doc['clip']['revision']})")
        model, processor = load_clip(source, torch.device("cpu"))
        clip_dir = Path(tmp) / "clip"
        model.to(getattr(torch, dtype)).save_pretrained(clip_dir)
        processor.save_pretrained(clip_dir)
        spec_doc = {**spec_doc, "clip_dtype": dtype, "source_run_id": run.info.run_id}
        artifacts = scorer_artifacts(Path(tmp) / "scorer", head_state, spec_doc, clip_dir)
        return log_scorer(BUNDLED_MODEL, artifacts)
