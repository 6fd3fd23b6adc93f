"""A run's logged scorer -> a self-contained copy of it that carries its backbone's vision weights and image
processor (what a registered version is made from), logged as a model of that run.

The copy scores without the hub or the original model folder; its source run is the training (or import) run, so
the UI's lineage and the model page's metrics are that run's. The weights are copied in the precision `bundle_dtype`
names (see `bundled_weights`)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
import torch

from clip_aesthetics.errors import UserError
from clip_aesthetics.scoring.model import MODEL_NAME, log_scorer, read_logged

BUNDLED_MODEL = "scorer"  # the self-contained copy of a run's `model`


class BundleError(UserError, RuntimeError):
    """The run has no scorer to bundle, or its backbone changed since it was trained."""


def bundle_scorer(run, dtype: str) -> tuple[str, str, dict]:
    """Log a copy of `run`'s scorer that carries the backbone's vision weights, as a model of that run.

    Returns (model URI, logged model id, its scorer.json)."""
    from clip_aesthetics.backbones.families import load_backbone, resolve_backbone, stored_dtype

    models = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list",
                                         filter_string=f"source_run_id = '{run.info.run_id}' and name = '{MODEL_NAME}'")
    if not models:
        raise BundleError(f"run {run.info.run_id} has no logged model named {MODEL_NAME!r} to register")
    head_state, spec_doc = read_logged(models[0].artifact_location)
    source = resolve_backbone(spec_doc["clip"]["model_id"], spec_doc["clip"]["revision"])
    if source.revision != spec_doc["clip"]["revision"]:
        raise BundleError(f"CLIP {source.model_id} changed since run {run.info.run_id} was trained "
                          f"(now {source.revision}, trained with {spec_doc['clip']['revision']})")
    model, processor = load_backbone(source, torch.device("cpu"))
    model, dtype = bundled_weights(model, dtype, spec_doc.get("precision"), stored_dtype(source))
    spec_doc = {**spec_doc, "clip_dtype": dtype, "source_run_id": run.info.run_id}
    logged = mlflow.initialize_logged_model(name=BUNDLED_MODEL, source_run_id=run.info.run_id,
                                            experiment_id=run.info.experiment_id)
    with tempfile.TemporaryDirectory() as tmp:
        clip_dir = Path(tmp) / "clip"
        model.save_pretrained(clip_dir)
        processor.save_pretrained(clip_dir)
        uri = log_scorer(BUNDLED_MODEL, head_state, spec_doc, clip_dir, model_id=logged.model_id)
    return uri, logged.model_id, spec_doc


def bundled_weights(model, dtype: str, precision: str | None, stored: str = "float32") -> tuple[torch.nn.Module, str]:
    """The backbone as it will be bundled, and how to describe it.

    `auto` for a model computed in float16/bfloat16: the transformer's matrix weights in that dtype (autocast
    rounds them to it anyway, so scoring sees the very numbers of training) and the rest (norms, embeddings,
    the final projection, which run in float32) unchanged: about half of float32's size, scores as at
    training. `auto` for a float32 model: float16 throughout. `auto` for an imported head (no precision of its
    own): the precision the checkpoint's weights were published in (`stored`), so it scores as its authors
    computed it. Otherwise the whole tower in `dtype`.
    """
    if dtype == "auto" and precision in ("float16", "bfloat16"):
        half = getattr(torch, precision)
        float32 = tuple(f"tower.{name}" for name in model.family.float32_modules)
        with torch.no_grad():
            for name, module in model.named_modules():
                if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)) and not name.startswith(float32):
                    for parameter in module.parameters(recurse=False):
                        parameter.data = parameter.data.to(half)
        return model, f"{precision} matrices, float32 norms, embeddings and projection"
    if dtype == "auto":
        dtype = "float16" if precision else (stored if stored in ("float32", "float16", "bfloat16") else "float32")
    return model.to(getattr(torch, dtype)), dtype
