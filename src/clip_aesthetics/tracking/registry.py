"""Finished runs -> the best one by a metric -> a registered, self-contained model version with an alias.

`champion` is the best version by the metric; a new version that is not is the `challenger`.
Registering a run that already has a version creates nothing new. The version carries the CLIP
vision weights, so it scores images without the hub or the original model folder, and its source
run is the training run (the bundled model is logged as that run's model), so the UI's lineage and
the model page's metrics are the training run's.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import torch
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from clip_aesthetics.heads.head import SCORE_RANGE
from clip_aesthetics.heads.metrics import ranking_key
from clip_aesthetics.scoring.model import MODEL_NAME, log_scorer, read_logged
from clip_aesthetics.scoring.reference import describe as reference_line
from clip_aesthetics.scoring.reference import of_spec
from clip_aesthetics.settings import RegisterSettings
from clip_aesthetics.tracking.runs import link_metrics_to_model
from clip_aesthetics.tracking.selection import Choice, RegistryError, choose, score_of

CHAMPION, CHALLENGER = "champion", "challenger"
# What decides an embedding besides the weights (clip.describe), copied from the run onto each version.
BACKBONE_RECORD = ("backbone_family", "embedding_kind", "embedding_dim", "input_size", "activation", "processor_digest",
                   "max_num_patches")
BUNDLED_MODEL = "scorer"  # the self-contained copy of a run's `model`, logged by this step


@dataclass
class Registration:
    run_id: str
    version: str
    alias: str
    metric_value: float
    created: bool  # False when this run was registered before
    model_id: str = ""  # the logged model (with the CLIP weights) the version was made from


MODEL_DESCRIPTION = (
    "Predicts the aesthetic score of an image on the scale of the ratings it was trained on (AVA: 1-10, the mean "
    "of photographers' votes; each version's `score_range` tag and description say which), from a frozen "
    "backbone's image embedding and a regression head. Each version carries its backbone's vision "
    "weights and image processor and applies exactly the training run's preprocessing. Call it with "
    "`mlflow.pyfunc.load_model(\"models:/NAME@champion\").predict(pd.DataFrame({\"image\": [jpeg_bytes]}))` or "
    "serve it and POST `{\"dataframe_records\": [{\"image\": \"<base64>\"}]}`; each row gets `score` (1-10) "
    "and `error` (why an image could not be scored). `champion` is the best version by the metric `register` "
    "was given (validation Spearman unless stated; for errors such as val_mse, the lowest)."
)


def register(settings: RegisterSettings, chosen: Choice | None = None) -> Registration:
    """Inside an active run (the register step's own): bundle the best run's scorer, register it, alias it.

    Safe under concurrency, also against a remote tracking server where no local lock helps: it converges
    after the fact. Of several versions registered from the same run the oldest stays and the others are
    deleted by their writers; `champion` is recomputed from all versions, until no new one appears.
    """
    client = MlflowClient()
    chosen = chosen or choose(settings)
    value, run = chosen.value, chosen.run
    run_id, name = run.info.run_id, settings.model_name
    existing = versions_of_run(client, name, run_id)
    created = not existing
    if existing:
        version, model_id = str(existing[0].version), getattr(existing[0], "model_id", "") or ""
    else:
        model_uri, model_id, spec_doc = bundle_scorer(run, settings.bundle_dtype)
        tags = _version_tags(run, spec_doc, settings.metric, value)
        mine = str(mlflow.register_model(model_uri, name, tags=tags).version)
        version = str(versions_of_run(client, name, run_id)[0].version)  # the oldest wins a concurrent registration
        if version != mine:
            client.delete_model_version(name, mine)
            created = False
        else:
            client.update_model_version(name, version, description=_version_description(run, spec_doc, tags))
    client.update_registered_model(name, description=MODEL_DESCRIPTION.replace("NAME", name))
    champion = elect_champion(client, name, settings.metric)
    if champion == version:
        alias = CHAMPION
    elif created:
        client.set_registered_model_alias(name, CHALLENGER, version)
        alias = CHALLENGER
    else:
        alias = ",".join(a for a, v in client.get_registered_model(name).aliases.items() if str(v) == version)
    return Registration(run_id, version, alias, value, created=created, model_id=model_id)


def register_imported(run, name: str, facts: dict, dtype: str) -> tuple[str, str, bool]:
    """An import run's head, bundled with its backbone, as a version of `name` (the same file and backbone
    registered before: that version). Alias `champion` when the name has none yet. Returns (version, alias,
    created)."""
    client = MlflowClient()
    try:
        versions = client.search_model_versions(f"name = {quoted(name)}")
    except MlflowException:
        versions = []
    revision = run.data.params.get("clip_resolved_revision", "")
    same = [v for v in versions if v.tags.get("head_sha256") == facts["head_sha256"]
            and v.tags.get("clip_revision") == revision]
    if same:
        version = str(min(int(v.version) for v in same))
        aliases = ",".join(a for a, v in client.get_registered_model(name).aliases.items() if str(v) == version)
        return version, aliases, False
    uri, _, spec_doc = bundle_scorer(run, dtype)
    tags = {"run_id": run.info.run_id, "clip_model_id": spec_doc["clip"]["model_id"],
            "clip_revision": spec_doc["clip"]["revision"], "imported": "true", "score_range": "1,10 (raw output)",
            "clip_dtype": spec_doc.get("clip_dtype", "float32"), **facts, **{key: run.data.params[key] for key in BACKBONE_RECORD if key in run.data.params}}
    version = str(mlflow.register_model(uri, name, tags=tags).version)
    client.update_model_version(name, version, description=(
        f"**Imported published head** `{facts['head_file']}` (sha256 `{facts['head_sha256']}`), layout "
        f"{facts['head_layout']} ({facts['head_layers']}), from {facts['head_origin']}; licence: "
        f"{facts['head_licence']}. Backbone `{spec_doc['clip']['model_id']}` at revision "
        f"`{spec_doc['clip']['revision']}` (bundled as {spec_doc.get('clip_dtype', 'float32')}); L2-normalised "
        "embeddings, the head's raw output as its authors' code returns it, on their scale (nominally AVA's 1-10, "
        "not clipped), computed in float32 as its authors did unless a user asks otherwise (`--precision`). Not "
        "trained or measured by this project: `clip-aesthetics evaluate` measures it on your data. "
        f"Each score comes with a `percentile`: {reference_line(of_spec(spec_doc))}."))
    registered = client.get_registered_model(name)
    if not registered.description:
        client.update_registered_model(name, description=MODEL_DESCRIPTION.replace("NAME", name))
    if CHAMPION not in registered.aliases:
        client.set_registered_model_alias(name, CHAMPION, version)
        return version, CHAMPION, True
    return version, "", True


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
        scored = [(ranking_key(_number(v.tags.get(metric)), metric), -int(v.version), str(v.version))
                  for v in versions]
        scored = [row for row in scored if row[0][0]]  # a version without a defined value never wins
        if not scored:
            return None
        best = max(scored)[2]
        if str(client.get_registered_model(name).aliases.get(CHAMPION)) != best:
            client.set_registered_model_alias(name, CHAMPION, best)
        if {v.version for v in client.search_model_versions(f"name = {quoted(name)}")} == {v.version for v in versions}:
            return best
    return best


def _number(text: str | None) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


def _version_tags(run, spec_doc: dict, metric: str, value: float) -> dict[str, str]:
    inputs = run.inputs.dataset_inputs if run.inputs else []
    return {"run_id": run.info.run_id, "clip_model_id": spec_doc["clip"]["model_id"],
            "clip_revision": spec_doc["clip"]["revision"], metric: str(value), "registered_by": metric,
            "val_spearman": str(score_of(run, "val_spearman")), "test_spearman": str(score_of(run, "test_spearman")),
            "dataset_digest": inputs[0].dataset.digest if inputs else "",
            # the scale the version's scores are on, so nobody mistakes a 1-5 score for AVA's 1-10
            "score_range": ",".join(f"{v:g}" for v in spec_doc["head"].get("score_range", SCORE_RANGE)),
            **{key: run.data.params[key] for key in (*BACKBONE_RECORD, "dataset", "accuracy_threshold")
               if key in run.data.params}}


def _measured(tags: dict[str, str]) -> str:
    """Its Spearman on val and test, or, for a model without one (trained on pairs), the metric it was chosen by."""
    if _number(tags.get("val_spearman")) == _number(tags.get("val_spearman")):  # defined
        return f"val_spearman {float(tags['val_spearman']):.4f}, test_spearman {_number(tags['test_spearman']):.4f}"
    metric = tags.get("registered_by", "")
    return f"{metric} {_number(tags.get(metric)):.4f}" if metric else "no Spearman (no scores to rank)"


def _version_description(run, spec_doc: dict, tags: dict[str, str]) -> str:
    head, params = spec_doc["head"], run.data.params
    low, high = head.get("score_range", SCORE_RANGE)
    dataset = tags.get("dataset") or "AVA"
    from clip_aesthetics.extensions import HEADS

    scale = HEADS.get(head["kind"]).targets_text or (
        "raw scores" if head["target_scale"] == 1 and head.get("target_offset", 0) == 0 else (
            "mean_score/10" if head["target_scale"] == 10 and not head.get("target_offset") else
            f"the {low:g}-{high:g} range mapped to 0-1"))
    return (f"**Scores on a {low:g}-{high:g} scale**, the scale of `{dataset}` it was trained on (not comparable "
            f"in absolute terms with a model trained on another scale). "
            f"Backbone `{tags['clip_model_id']}` at revision `{tags['clip_revision']}` (weights bundled as "
            f"{spec_doc.get('clip_dtype', 'float32')}), head `{head['kind']}` on {head['in_dim']}-d embeddings "
            f"(embed_norm {head['embed_norm']}), targets {scale}, trained in run `{run.info.run_name}` "
            f"(epochs {params.get('epochs', '?')}, lr {params.get('lr', '?')}, split {params.get('split', '?')}). "
            + _measured(tags) + "; "
            f"dataset digest `{tags['dataset_digest'] or 'unknown'}`. "
            f"Each score comes with a `percentile`: {reference_line(of_spec(spec_doc))}.")


def bundle_scorer(run, dtype: str) -> tuple[str, str, dict]:
    """Log a copy of `run`'s scorer that carries the CLIP vision weights, as a model of that training run.

    Returns (model URI, logged model id, its scorer.json). The training run's best-epoch metrics are
    linked to the new model, so its page in the UI shows them.
    """
    from clip_aesthetics.backbones.families import load_backbone, resolve_backbone, stored_dtype

    models = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list",
                                         filter_string=f"source_run_id = '{run.info.run_id}' and name = '{MODEL_NAME}'")
    if not models:
        raise RegistryError(f"run {run.info.run_id} has no logged model named {MODEL_NAME!r} to register")
    head_state, spec_doc = read_logged(models[0].artifact_location)
    source = resolve_backbone(spec_doc["clip"]["model_id"], spec_doc["clip"]["revision"])
    if source.revision != spec_doc["clip"]["revision"]:
        raise RegistryError(f"CLIP {source.model_id} changed since run {run.info.run_id} was trained "
                            f"(now {source.revision}, trained with {spec_doc['clip']['revision']})")
    model, processor = load_backbone(source, torch.device("cpu"))
    model, dtype = _bundled_weights(model, dtype, spec_doc.get("precision"), stored_dtype(source))
    spec_doc = {**spec_doc, "clip_dtype": dtype, "source_run_id": run.info.run_id}
    logged = mlflow.initialize_logged_model(name=BUNDLED_MODEL, source_run_id=run.info.run_id,
                                            experiment_id=run.info.experiment_id)
    with tempfile.TemporaryDirectory() as tmp:
        clip_dir = Path(tmp) / "clip"
        model.save_pretrained(clip_dir)
        processor.save_pretrained(clip_dir)
        uri = log_scorer(BUNDLED_MODEL, head_state, spec_doc, clip_dir, model_id=logged.model_id)
    best = {k: v for k, v in run.data.metrics.items() if k.startswith("best_")}
    link_metrics_to_model(run.info.run_id, logged.model_id, best)
    return uri, logged.model_id, spec_doc


def _bundled_weights(model, dtype: str, precision: str | None, stored: str = "float32") -> tuple[torch.nn.Module, str]:
    """The CLIP tower as it will be bundled, and how to describe it.

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
