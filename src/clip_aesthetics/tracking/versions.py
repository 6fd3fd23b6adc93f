"""What a registered version says about itself: its tags (backbone, scale, the metrics it is compared by) and its
description, for a trained head and for an imported published one. Read from the run and the model's scorer.json;
nothing here computes a score."""

from __future__ import annotations

from clip_aesthetics.scoring.reference import describe as reference_line
from clip_aesthetics.scoring.reference import of_spec
from clip_aesthetics.tracking.registry import BACKBONE_RECORD
from clip_aesthetics.tracking.runs import REPORTED_BY_TAG, SELECTED_BY_TAG
from clip_aesthetics.tracking.selection import score_of

AVA_RANGE = (1.0, 10.0)  # models saved before their scale was recorded were all on AVA's


def trained_tags(run, spec_doc: dict, metric: str, value: float) -> dict[str, str]:
    """A trained run's version: what it was registered by, the metrics its head kind is selected and reported by
    (read from the run's tags, with their values), Spearman where it has one, its data and backbone."""
    inputs = run.inputs.dataset_inputs if run.inputs else []
    selected = run.data.tags.get(SELECTED_BY_TAG, "val_spearman")
    reported = run.data.tags.get(REPORTED_BY_TAG, "test_spearman")
    measured = {m: str(score_of(run, m)) for m in dict.fromkeys(("val_spearman", "test_spearman", selected, reported))}
    return {"run_id": run.info.run_id, "clip_model_id": spec_doc["clip"]["model_id"],
            "clip_revision": spec_doc["clip"]["revision"], **measured, metric: str(value), "registered_by": metric,
            SELECTED_BY_TAG: selected, REPORTED_BY_TAG: reported,
            "dataset_digest": inputs[0].dataset.digest if inputs else "",
            # the scale the version's scores are on, so nobody mistakes a 1-5 score for AVA's 1-10
            "score_range": ",".join(f"{v:g}" for v in spec_doc["head"].get("score_range", AVA_RANGE)),
            **{key: run.data.params[key] for key in (*BACKBONE_RECORD, "dataset", "accuracy_threshold")
               if key in run.data.params}}


def _number(text: str | None) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


def _measured(tags: dict[str, str]) -> str:
    """The metrics its head kind is selected and reported by, at its best epoch (and the one it was registered by)."""
    shown = dict.fromkeys((tags.get(SELECTED_BY_TAG, "val_spearman"), tags.get(REPORTED_BY_TAG, "test_spearman"),
                           tags.get("registered_by", "")))
    values = [f"{m} {_number(tags.get(m)):.4f}" for m in shown if m and _number(tags.get(m)) == _number(tags.get(m))]
    return ", ".join(values) or "no defined metric"


def trained_description(run, spec_doc: dict, tags: dict[str, str], targets_text: str = "") -> str:
    """`targets_text`: what its head kind's scores are, when the kind says it (else read from the spec's map)."""
    head, params = spec_doc["head"], run.data.params
    low, high = head.get("score_range", AVA_RANGE)
    dataset = tags.get("dataset") or "AVA"
    scale = targets_text or (
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


def imported_tags(run, spec_doc: dict, facts: dict) -> dict[str, str]:
    return {"run_id": run.info.run_id, "clip_model_id": spec_doc["clip"]["model_id"],
            "clip_revision": spec_doc["clip"]["revision"], "imported": "true", "score_range": "1,10 (raw output)",
            "clip_dtype": spec_doc.get("clip_dtype", "float32"), **facts,
            **{key: run.data.params[key] for key in BACKBONE_RECORD if key in run.data.params}}


def imported_description(spec_doc: dict, facts: dict) -> str:
    return (f"**Imported published head** `{facts['head_file']}` (sha256 `{facts['head_sha256']}`), layout "
            f"{facts['head_layout']} ({facts['head_layers']}), from {facts['head_origin']}; licence: "
            f"{facts['head_licence']}. Backbone `{spec_doc['clip']['model_id']}` at revision "
            f"`{spec_doc['clip']['revision']}` (bundled as {spec_doc.get('clip_dtype', 'float32')}); L2-normalised "
            "embeddings, the head's raw output as its authors' code returns it, on their scale (nominally AVA's 1-10, "
            "not clipped), computed in float32 as its authors did unless a user asks otherwise (`--precision`). Not "
            "trained or measured by this project: `clip-aesthetics evaluate` measures it on your data. "
            f"Each score comes with a `percentile`: {reference_line(of_spec(spec_doc))}.")
