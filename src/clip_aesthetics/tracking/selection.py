"""Which run to register: the candidates (the latest sweep's children, a run, or an experiment's finished runs)
and the best of them by a metric, in its direction; a run with an undefined value, or tagged undefined or
degenerate, is never chosen, and every run passed over is named with why."""

from __future__ import annotations

from dataclasses import dataclass

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from clip_aesthetics.errors import UserError
from clip_aesthetics.heads.metrics import is_defined, ranking_key
from clip_aesthetics.settings import RegisterSettings
from clip_aesthetics.settings.values import direction
from clip_aesthetics.tracking.runs import CHILDREN_TAG, SELECTED_BY_TAG, SWEEP_TAG, not_comparable


class RegistryError(UserError, RuntimeError):
    """No run to register, or the chosen run lacks what registering needs."""


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
        runs = client.search_runs([experiment.experiment_id], "attributes.status = 'FINISHED'")
        return [run for run in runs if "n_train" in run.data.params]  # training runs, not embed or register ones
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


def why_not(run, metric: str) -> str:
    """Why `run` cannot be registered by `metric`, or "" when it can."""
    if run.info.status != "FINISHED":
        return f"status {run.info.status}"
    if not_comparable(run.data.tags):
        return not_comparable(run.data.tags)
    if not is_defined(score_of(run, metric)):
        return f"no defined {metric}"
    return ""


def pick_best(runs: list, metric: str):
    """(value, run, {run id: why it was passed over}) of the best eligible run by `metric`, in its direction
    (errors: lowest); a run with an undefined value, or tagged undefined or degenerate, is never chosen.
    Refuses, naming each run and why."""
    reasons = {run.info.run_id: why_not(run, metric) for run in runs}
    eligible = [run for run in runs if not reasons[run.info.run_id]]
    if not eligible:
        known = sorted({k.removeprefix("best_") for run in runs for k in run.data.metrics if has_direction(k)})
        listed = "; ".join(f"{run.info.run_id} ({run.info.run_name}): {reasons[run.info.run_id]}" for run in runs[:5])
        more = f"; and {len(runs) - 5} more" if len(runs) > 5 else ""
        hint = ""
        if metric.startswith("val_") and any(run.data.params.get("val_fraction") in ("0", "0.0") for run in runs):
            hint = (" Runs trained with val_fraction=0 log no val_* metrics: pass metric=test_spearman to choose "
                    "on the test split (then report the result as selected on test).")
        raise RegistryError(f"no run can be registered by {metric!r}: {listed or 'no candidate runs'}{more}. "
                            f"Metrics the candidates have: {', '.join(known) or 'none'}.{hint}")
    best = max(eligible, key=lambda run: ranking_key(score_of(run, metric), metric))
    return score_of(best, metric), best, {run_id: why for run_id, why in reasons.items() if why}


@dataclass
class Choice:
    value: float  # the winner's metric at its best epoch
    run: object  # the winning mlflow Run
    passed_over: list[str]  # "RUN_ID (name): why" for every candidate that could not be chosen
    metric: str = "val_spearman"  # what it was chosen by


def selection_metric(runs: list) -> str:
    """What the candidates are compared by when no metric is named: the metric their head kinds are selected by (their
    `selected_by` tag; runs from before it: val_spearman), when they share one."""
    chosen = {run.data.tags.get(SELECTED_BY_TAG, "val_spearman") for run in runs}
    if len(chosen) > 1:
        raise RegistryError(f"the candidate runs are selected by different metrics ({', '.join(sorted(chosen))}): "
                            "pass --metric to say which one compares them (val_spearman, if they all have it)")
    return chosen.pop() if chosen else "val_spearman"


def choose(settings: RegisterSettings) -> Choice:
    """The run to register and the candidates passed over, decided before anything is written."""
    runs = candidate_runs(MlflowClient(), settings)
    metric = settings.metric or selection_metric(runs)
    value, run, reasons = pick_best(runs, metric)
    return Choice(value, run, [f"{r.info.run_id} ({r.info.run_name}): {reasons[r.info.run_id]}" for r in runs
                               if r.info.run_id in reasons], metric)


def has_direction(metric: str) -> bool:
    try:
        direction(metric)
        return True
    except ValueError:
        return False
