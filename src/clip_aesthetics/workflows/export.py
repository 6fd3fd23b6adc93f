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
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from clip_aesthetics.errors import UserError
from clip_aesthetics.extensions import RUNTIMES
from clip_aesthetics.tracking import runs as tracking

FLOAT32_TOLERANCE = 1e-4  # of the score range
MIN_SPEARMAN = 0.995  # a quantised export against the source, unless --accept-fidelity says otherwise
CALIBRATION_IMAGES = 200  # at most, from the source run's test split


class NotRegistered(UserError):
    """The export was measured and falls short; the message gives the figure and how to accept it."""


def calibration_sources(settings, source_run) -> tuple[list, str]:
    """(images to compare the two models on, where they come from): --calibration's images, else the test images the
    source's training run recorded (data/test_images.csv), where they still are; the dataset is never read again."""
    from clip_aesthetics.scoring.image_files import collect as collect_images
    from clip_aesthetics.workflows.train import TEST_SOURCES

    if settings.calibration:
        paths = collect_images([Path(settings.calibration)])
        return paths[:CALIBRATION_IMAGES * 5], f"{len(paths)} image(s) in {settings.calibration}"
    if source_run is None:
        raise UserError(f"{settings.model} has no training run whose test images could calibrate the export: pass "
                        "--calibration DIR (a folder of images like the ones you will score)")
    run_id = source_run.info.run_id
    try:
        recorded = pd.read_csv(io.StringIO(tracking.load_text(run_id, TEST_SOURCES)), keep_default_na=False)
    except Exception:  # noqa: BLE001  no such artifact: a run from before it was recorded, or not a training run
        raise UserError(f"run {run_id} has no record of its test images' files ({TEST_SOURCES}: an import, or a run "
                        "trained before it was recorded): pass --calibration DIR (a folder of images like the ones you "
                        "will score)") from None
    files = [Path(f) for f in recorded["file"] if f][:CALIBRATION_IMAGES]
    present = [f for f in files if f.is_file()]
    if not present:
        why = f"none of its {len(files)} recorded test image files is where it was (moved or deleted?)" if files \
            else "its test images were bytes in a table, not files"
        raise UserError(f"run {run_id}: {why}; pass --calibration DIR (a folder of images like the ones you will "
                        "score)")
    return present, f"{len(present)} test image(s) of run {run_id}"


@dataclass
class Source:
    """The model being exported: what its URI names (a registered version, its training run), its files."""

    ref: object  # scoring.uris.ModelRef
    run: object | None  # the training (or import) run, whose test images calibrate the export
    spec_doc: dict
    scorer: object

    @property
    def registered(self) -> bool:
        return self.ref.kind == "version" and not self.ref.missing

    @property
    def described(self) -> str:
        if self.registered:
            return f" (version {self.ref.version} of {self.ref.name}, run {self.ref.run_id})"
        return f" (run {self.ref.run_id})" if self.ref.run_id else ""

    @property
    def tags(self) -> dict[str, str]:
        return {"source_run_id": self.ref.run_id, **({"source_model": self.ref.name, "source_version":
                                                      self.ref.version} if self.registered else {})}


def export_step(settings) -> None:
    from clip_aesthetics.tracking.stores import check_store, use_store

    store = use_store(settings.tracking_uri)
    runtime = RUNTIMES.get(settings.format)
    runtime.check(settings.quantize)
    out = Path(settings.out) if settings.out else None
    if out is not None:
        check_out(out, settings.replace)  # before any work: an --out that cannot take the export is no surprise later
    check_store(settings.model, store)
    source = _source(settings.model)
    name = settings.model_name or f"{source.ref.name if source.registered else 'clip-aesthetics'}-{settings.format}"
    sources, calibration = calibration_sources(settings, source.run)  # after the refusals: it reads a dataset
    reference = runtime.reference(source.scorer)  # the source, computing in float32 on the CPU
    weights = "float32" if settings.quantize == "none" else settings.quantize
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        artifacts = runtime.write(reference, Path(tmp) / "export", settings.quantize, source.spec_doc)
        export_seconds = time.perf_counter() - started
        exported = runtime.scorer(artifacts)
        expected = reference.score(sources)["score"].to_numpy()
        started = time.perf_counter()
        got = exported.score(sources)["score"].to_numpy()
        figures = runtime.fidelity(expected, got, reference.score_range)
        figures["seconds_per_image"] = (time.perf_counter() - started) / max(1, len(sources))
        floor = settings.accept_fidelity or MIN_SPEARMAN
        verdict = _verdict(figures, weights, floor, expected, got)
        _report(figures, calibration, weights, verdict)
        params = {"source_model_uri": settings.model, "format": settings.format, "weights": weights,
                  "execution_provider": exported.device, "calibration": calibration[:500], "accept_fidelity": floor,
                  **{package: importlib.metadata.version(package) for package in runtime.packages}}
        metrics = {f"fidelity_{k}": float(v) for k, v in figures.items()} | {"export_seconds": export_seconds}
        tags = {"runtime": settings.format, "weights": weights, "source_model_uri": settings.model, **source.tags}
        logged, run_id = _log(runtime, artifacts, source, f"export-{settings.format}-{weights}", params, metrics,
                              tags, verdict)
        if out is not None:  # only an accepted export reaches --out (a refused one raised above)
            _copy_out(artifacts, out)
        description = (f"{settings.format} export ({weights}) of {settings.model}{source.described}. Fidelity on "
                       f"{calibration}: max |score difference| {figures['max_abs_diff']:.3g} "
                       f"({figures['max_abs_diff_of_range']:.2g} of the score range), Spearman "
                       f"{figures['spearman']:.6f} against the source in float32. Export run {run_id}.")
        version = _register(logged, name, weights, tags, description)
    print(f"registered {name} version {version} (alias {weights}): models:/{name}@{weights}")


EXPORT_FILES = ("model.onnx", "preprocess.json", "scorer.json")  # what an export folder holds (onnx_export.py)


def check_out(out: Path, replace: bool) -> None:
    """Refuse, before any work, an --out the export cannot be copied into: a file, a folder holding other files,
    or one holding an export already (replaced only with --replace)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is an existing file: the export is a folder of files (model.onnx, "
                        "preprocess.json, scorer.json); give a folder name")
    held = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    foreign = [name for name in held if name not in EXPORT_FILES]
    if foreign:
        more = f" and {len(foreign) - 1} more" if foreign[1:] else ""
        raise UserError(f"--out {out} already holds {foreign[0]!r}{more}, which no export wrote: give a new or empty "
                        "folder")
    if held and not replace:
        raise UserError(f"--out {out} already holds an export ({', '.join(held)}): pass --replace to replace it once "
                        "the new export is accepted, or give another folder")


def _source(model_uri: str) -> Source:
    """The model to export, downloaded once (its spec and the scorer both come from this copy); an export refused."""
    from clip_aesthetics.scoring.uris import download_model, load_scorer, read_spec, resolve

    ref = resolve(model_uri)
    try:
        run = tracking.get_run(ref.run_id) if ref.run_id else None
    except tracking.MissingRun:
        raise UserError(f"--model {model_uri}: no run {ref.run_id!r} in tracking store {tracking.store()}; copy the "
                        "run id from the MLflow UI, or name a registered model (models:/NAME@ALIAS)") from None
    folder = download_model(model_uri)
    scorer = load_scorer(folder, "float32")
    if getattr(scorer, "runtime", "torch") != "torch":
        origin = run.data.params.get("source_model_uri", "") if run else ""
        raise UserError(f"{model_uri} is already an export ({scorer.runtime}): export its source model"
                        + (f", {origin}" if origin else ""))
    return Source(ref, run, read_spec(folder), scorer)


def _log(runtime, artifacts: dict, source: Source, run_name: str, params: dict, metrics: dict, tags: dict,
         verdict: str) -> tuple[str, str]:
    """The export as a run of its own, in the source's experiment: (its model URI, the run's id); a verdict
    against it is tagged and raised once it is logged."""
    experiment_id = source.run.info.experiment_id if source.run else None
    with tracking.run("clip-aesthetics", run_name, tags=tags, experiment_id=experiment_id) as run:
        tracking.log_params(params)
        tracking.log_metrics(metrics)
        logged = runtime.log_model(artifacts)
        if verdict:
            tracking.set_tags({"not_registered": verdict})
            raise NotRegistered(f"{verdict}: logged in run {run.info.run_id}, not registered")
    return logged, run.info.run_id


def _register(logged: str, name: str, alias: str, tags: dict, description: str) -> str:
    """A new version of `name` (an export is always a new one), aliased by its weights (float32, int8)."""
    from clip_aesthetics.tracking.registry import AliasPolicy, register_version

    return register_version(name, lambda: (logged, tags, description), AliasPolicy("fixed", alias=alias)).version


def _verdict(figures: dict, weights: str, floor: float, expected=None, got=None) -> str:
    """Why the export must not be registered, or "" when it may."""
    if weights == "float32" and figures["max_abs_diff_of_range"] > FLOAT32_TOLERANCE:
        return (f"the float32 export differs from the source by {figures['max_abs_diff']:.3g} "
                f"({figures['max_abs_diff_of_range']:.2g} of the score range, more than {FLOAT32_TOLERANCE:g})")
    if weights == "float32" or figures["spearman"] >= floor:
        return ""
    rho = figures["spearman"]
    if not np.isfinite(rho):
        alike = [what for what, values in (("the source", expected), ("the export", got))
                 if values is not None and np.nanmax(values) == np.nanmin(values)]
        why = f"{' and '.join(alike) or 'one of them'} scores all {figures['n_images']} calibration images alike"
        return (f"the {weights} export's Spearman against the source is undefined: {why}, so there is no ranking to "
                "compare (pass --calibration DIR with images that score differently, or keep the float32 export)")
    if rho <= 0:
        return (f"the {weights} export's Spearman against the source is {rho:.6f}: it ranks the calibration images no "
                "better than chance, so it is no substitute for the source; keep the float32 export (no --quantize)")
    accept = max(np.floor(rho * 1e4) / 1e4, 1e-4)
    return (f"the {weights} export's Spearman against the source is {rho:.6f}, below {floor:g} (pass "
            f"--accept-fidelity {accept:g} to register it)")


def _report(figures: dict, calibration: str, weights: str, verdict: str) -> None:
    print(f"fidelity of the {weights} export on {calibration}: max |difference| {figures['max_abs_diff']:.3g} "
          f"({figures['max_abs_diff_of_range']:.2g} of the score range), mean {figures['mean_abs_diff']:.3g}, "
          f"Spearman {figures['spearman']:.6f}" + (f"; {verdict}" if verdict else ""))


def _copy_out(artifacts: dict[str, str], out: Path) -> None:
    """The export's files into `out`, each whole or not at all (an earlier export there replaced file by file)."""
    from clip_aesthetics.atomic import atomic_path

    out.mkdir(parents=True, exist_ok=True)
    for path in artifacts.values():
        with atomic_path(out / Path(path).name) as temporary:
            shutil.copy2(path, temporary)
    print(f"wrote {', '.join(Path(p).name for p in artifacts.values())} to {out}")
