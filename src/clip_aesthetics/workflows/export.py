"""`export`: a trained, registered or imported scorer -> a model of its own for another runtime (ONNX), measured
against the source on calibration images, logged as an MLflow run and registered.

The runtime is an entry of extensions.RUNTIMES (`--format`); it writes the files (`write`), loads them as a
scorer (`scorer`) and names the model-from-code file and packages of its pyfunc. Fidelity is measured, not
assumed: the source model in float32 and the export score the same images; a float32 export that differs by
more than FLOAT32_TOLERANCE of the score range, or a quantised one whose Spearman against the source falls
below MIN_SPEARMAN (or `--accept-fidelity`), is logged but not registered.
"""

from __future__ import annotations

import importlib.metadata
import io
import os
import shutil
import tempfile
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from clip_aesthetics.errors import UserError
from clip_aesthetics.extensions import RUNTIMES

FLOAT32_TOLERANCE = 1e-4  # of the score range
MIN_SPEARMAN = 0.995  # a quantised export against the source, unless --accept-fidelity says otherwise
CALIBRATION_IMAGES = 200  # at most, from the source run's test split


class NotRegistered(UserError):
    """The export was measured and falls short; the message gives the figure and how to accept it."""


def calibration_sources(settings, source_run) -> tuple[list, str]:
    """(images to compare the two models on, where they come from): --calibration's images, else the source
    run's test images (its dataset rebuilt from the run's parameters)."""
    from clip_aesthetics.scoring.files import collect_images

    if settings.calibration:
        paths = collect_images([Path(settings.calibration)])
        return paths[:CALIBRATION_IMAGES * 5], f"{len(paths)} image(s) in {settings.calibration}"
    if source_run is None:
        raise UserError(f"{settings.model} has no training run whose test images could calibrate the export: pass "
                        "--calibration DIR (a folder of images like the ones you will score)")
    from clip_aesthetics.data.labels import read_dataset
    from clip_aesthetics.settings import DataSettings

    params = source_run.data.params
    try:
        data = DataSettings(**{k: params[k] for k in DataSettings.model_fields if params.get(k) not in (None, "")})
        labelled = read_dataset(data)
        tests = mlflow.artifacts.load_text(f"runs:/{source_run.info.run_id}/predictions/test.csv")
    except Exception as error:  # noqa: BLE001  any reason the run's data cannot be found again
        raise UserError(f"cannot read the test images of run {source_run.info.run_id} ({error}): pass "
                        "--calibration DIR (a folder of images like the ones you will score)") from None
    ids = pd.read_csv(io.StringIO(tests))["image_id"].tolist()[:CALIBRATION_IMAGES]
    sources = [labelled.sources[i] for i in ids if i in labelled.sources]
    return sources, f"{len(sources)} test image(s) of run {source_run.info.run_id} ({labelled.name})"


def export_step(settings) -> None:
    from clip_aesthetics.scoring.files import DEFAULT_STORE, check_store
    from clip_aesthetics.scoring.uris import download_model, load_scorer, read_spec, registered_version

    if settings.tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = settings.tracking_uri
        mlflow.set_tracking_uri(settings.tracking_uri)
    runtime = RUNTIMES.get(settings.format)
    runtime.check(settings.quantize)
    check_store(settings.model, os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_STORE))
    found = registered_version(settings.model)
    run_id = found[1].run_id if found else (settings.model.removeprefix("runs:/").split("/", 1)[0]
                                            if settings.model.startswith("runs:/") else "")
    client = mlflow.MlflowClient()
    source_run = client.get_run(run_id) if run_id else None
    name = settings.model_name or f"{found[0] if found else 'clip-aesthetics'}-{settings.format}"
    folder = download_model(settings.model)  # once: its spec and the scorer both come from this copy
    spec_doc = read_spec(folder)
    source = load_scorer(folder)
    if getattr(source, "runtime", "torch") != "torch":
        origin = source_run.data.params.get("source_model_uri", "") if source_run else ""
        raise UserError(f"{settings.model} is already an export ({source.runtime}): export its source model"
                        + (f", {origin}" if origin else ""))
    sources, calibration = calibration_sources(settings, source_run)  # after the refusals: it reads a dataset
    reference = runtime.reference(source)  # the source, computing in float32 on the CPU
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        artifacts = runtime.write(reference, Path(tmp) / "export", settings.quantize, spec_doc)
        export_seconds = time.perf_counter() - started
        exported = runtime.scorer(artifacts)
        expected = reference.score(sources)["score"].to_numpy()
        started = time.perf_counter()
        got = exported.score(sources)["score"].to_numpy()
        figures = runtime.fidelity(expected, got, reference.score_range)
        figures["seconds_per_image"] = (time.perf_counter() - started) / max(1, len(sources))
        weights = "float32" if settings.quantize == "none" else settings.quantize
        floor = settings.accept_fidelity or MIN_SPEARMAN
        verdict = _verdict(figures, weights, floor)
        _report(figures, calibration, weights, verdict)
        if settings.out:
            _copy_out(artifacts, Path(settings.out))
        experiment = source_run.info.experiment_id if source_run else mlflow.set_experiment("clip-aesthetics")\
            .experiment_id
        with mlflow.start_run(experiment_id=experiment, run_name=f"export-{settings.format}-{weights}") as run:
            mlflow.log_params({"source_model_uri": settings.model, "format": settings.format, "weights": weights,
                               "execution_provider": exported.device, "calibration": calibration[:500],
                               "accept_fidelity": floor,
                               **{package: importlib.metadata.version(package) for package in runtime.packages}})
            mlflow.log_metrics({f"fidelity_{k}": float(v) for k, v in figures.items()} |
                               {"export_seconds": export_seconds})
            tags = {"runtime": settings.format, "weights": weights, "source_model_uri": settings.model,
                    "source_run_id": run_id, **({"source_model": found[0], "source_version": str(found[1].version)}
                                                if found else {})}
            mlflow.set_tags(tags)
            logged = runtime.log_model(artifacts)
            if verdict:
                mlflow.set_tag("not_registered", verdict)
                raise NotRegistered(f"{verdict}: logged in run {run.info.run_id}, not registered")
        version = mlflow.register_model(logged, name, tags=tags)
        description = (f"{settings.format} export ({weights}) of {settings.model}"
                       + (f" (version {found[1].version} of {found[0]}, run {run_id})" if found else
                          f" (run {run_id})" if run_id else "")
                       + f". Fidelity on {calibration}: max |score difference| {figures['max_abs_diff']:.3g} "
                       f"({figures['max_abs_diff_of_range']:.2g} of the score range), Spearman "
                       f"{figures['spearman']:.6f} against the source in float32. Export run {run.info.run_id}.")
        client.update_model_version(name, version.version, description)
        client.set_registered_model_alias(name, weights, version.version)
    print(f"registered {name} version {version.version} (alias {weights}): models:/{name}@{weights}")


def _verdict(figures: dict, weights: str, floor: float) -> str:
    """Why the export must not be registered, or "" when it may."""
    if weights == "float32" and figures["max_abs_diff_of_range"] > FLOAT32_TOLERANCE:
        return (f"the float32 export differs from the source by {figures['max_abs_diff']:.3g} "
                f"({figures['max_abs_diff_of_range']:.2g} of the score range, more than {FLOAT32_TOLERANCE:g})")
    if weights != "float32" and not figures["spearman"] >= floor:
        return (f"the {weights} export's Spearman against the source is {figures['spearman']:.6f}, below "
                f"{floor:g} (pass --accept-fidelity {np.floor(figures['spearman'] * 1e4) / 1e4:g} to register it)")
    return ""


def _report(figures: dict, calibration: str, weights: str, verdict: str) -> None:
    print(f"fidelity of the {weights} export on {calibration}: max |difference| {figures['max_abs_diff']:.3g} "
          f"({figures['max_abs_diff_of_range']:.2g} of the score range), mean {figures['mean_abs_diff']:.3g}, "
          f"Spearman {figures['spearman']:.6f}" + (f"; {verdict}" if verdict else ""))


def _copy_out(artifacts: dict[str, str], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for path in artifacts.values():
        shutil.copy2(path, out / Path(path).name)
    print(f"wrote {', '.join(Path(p).name for p in artifacts.values())} to {out}")
