"""`import-head`: a published head's weight file + its backbone -> an import run and a registered version, with
the scores of a reference folder (when given) as what its percentiles compare with, and the registered version's
fidelity to a float32 computation on those images.

A published head scores as its authors computed it: in float32 (`scoring_precision` in its scorer.json, what
precision=auto then means for it), with the backbone's weights bundled in the precision they were published in.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clip_aesthetics.backbones.families import resolve_backbone
from clip_aesthetics.scoring.model import MODEL_NAME, log_scorer
from clip_aesthetics.scoring.reference import KEY as REFERENCE_KEY
from clip_aesthetics.scoring.reference import describe as reference_line
from clip_aesthetics.scoring.reference import make as make_reference
from clip_aesthetics.tracking import runs as tracking
from clip_aesthetics.tracking.stores import use_store
from clip_aesthetics.workflows.embed import clip_params

PUBLISHED_PRECISION = "float32"  # how the published heads' authors computed their scores


def import_head_step(command) -> None:
    """`import-head`: a published head's weight file + its backbone -> an import run and a registered version."""
    use_store(command.tracking_uri)  # the one way every command chooses its tracking store
    from clip_aesthetics.backbones.families import embedding_dim
    from clip_aesthetics.heads.published import import_head
    from clip_aesthetics.scoring.bundle import bundle_scorer
    from clip_aesthetics.tracking.registry import AliasPolicy, register_version
    from clip_aesthetics.tracking.versions import imported_description, imported_tags

    source = resolve_backbone(command.clip, command.clip_revision)
    state, spec, facts = import_head(Path(command.path), embedding_dim(source), command.activation)
    print(f"{facts['head_file']}: {facts['head_layout']} head ({facts['head_layers']}), sha256 {facts['head_sha256']}")
    name = command.model_name
    scored = None
    with tracking.run(command.experiment, command.run_name or f"import-{name}") as active:
        tracking.log_params({"clip": command.clip, **clip_params(source), **facts, "model_name": name,
                             "activation": command.activation, "embed_norm": "l2"})
        tracking.set_tags({"imported_head": facts["head_layout"], "head_sha256": facts["head_sha256"]})
        tracking.set_description(f"Imported `{facts['head_file']}` ({facts['head_layout']}, {facts['head_layers']}) "
                                 f"from {facts['head_origin']}; licence: {facts['head_licence']}.")
        spec_doc = {"head": spec.to_dict(), "best_epoch": 0, "precision": None, "decoding": "full",
                    "scoring_precision": PUBLISHED_PRECISION,
                    "clip": {"model_id": source.model_id, "revision": source.revision}}
        if command.reference:
            folder = Path(command.reference).expanduser()
            scored = scores_of_folder(folder, state, spec_doc)
            reference = make_reference(scored[1], f"the scores of the {int(np.isfinite(scored[1]).sum())} images "
                                       f"in {folder.resolve()} (given at import)", score_range=spec.score_range,
                                       precision=PUBLISHED_PRECISION)
            if reference is None:
                from clip_aesthetics.errors import ScoringInputError

                raise ScoringInputError(f"reference={folder}: fewer than two of its {len(scored[0])} image(s) could "
                                        "be scored")
            spec_doc[REFERENCE_KEY] = reference.to_doc()
            tracking.log_params({"percentile_reference": reference_line(reference)})
            print(reference_line(reference))
        log_scorer(MODEL_NAME, state, spec_doc)
    run = tracking.get_run(active.info.run_id)

    def make():
        uri, _, bundled = bundle_scorer(run, command.bundle_dtype)
        return uri, imported_tags(run, bundled, facts), imported_description(bundled, facts)

    revision = run.data.params.get("clip_resolved_revision", "")
    done = register_version(name, make, AliasPolicy("if_none"), same=lambda version: (
        version.tags.get("head_sha256") == facts["head_sha256"] and version.tags.get("clip_revision") == revision))
    what = "registered as" if done.created else "was already"
    print(f"{facts['head_file']} on {source.model_id} {what} {name} version {done.version}, alias "
          f"{done.alias or '(none)'}: models:/{name}/{done.version}")
    if done.created:
        print(record_fidelity(name, done.version, scored))


def scores_of_folder(folder: Path, head_state: dict, spec_doc: dict) -> tuple[list[Path], np.ndarray]:
    """(the folder's images, their scores) by the model these files make, in its own precision (float32)."""
    import tempfile

    from clip_aesthetics.scoring.image_files import collect as collect_images
    from clip_aesthetics.scoring.model import AestheticScorer, write_artifacts

    paths = collect_images([folder])
    with tempfile.TemporaryDirectory() as tmp:
        scorer = AestheticScorer().load(write_artifacts(Path(tmp), head_state, spec_doc), precision="auto")
        return paths, scorer.score_paths(paths)["score"].to_numpy(dtype=float)


def record_fidelity(name: str, version: str, scored: tuple[list[Path], np.ndarray] | None) -> str:
    """How far the registered version (its bundled weights, in the precision it scores in) is from the float32
    computation of the same head on the reference images; written into the version's description and tags.
    Returns the line printed."""
    from clip_aesthetics.scoring.runtime import measure_fidelity
    from clip_aesthetics.scoring.uris import load_scorer
    from clip_aesthetics.tracking.registry import add_to_version, version_info

    if scored is None:
        line = "Fidelity to a float32 computation: not measured (no --reference images to measure it on)."
        add_to_version(name, version, {}, line)
        return line
    paths, expected = scored
    scorer = load_scorer(f"models:/{name}/{version}", "auto")
    got = scorer.score_paths(paths)["score"].to_numpy(dtype=float)
    figures = measure_fidelity(expected, got, scorer.score_range)
    spread = float(np.nanstd(expected))
    share = figures["max_abs_diff"] / spread if spread > 0 else float("nan")
    line = (f"Fidelity to a float32 computation of the same head on the {figures['n_images']} reference images, as "
            f"registered (backbone weights bundled as {version_info(name, version).tags.get('clip_dtype', '?')}, "
            f"scoring in {scorer.compute_precision}): max |score difference| {figures['max_abs_diff']:.3g} "
            f"({share:.2%} of the scores' standard deviation), Spearman {figures['spearman']:.6f}.")
    add_to_version(name, version, {"fidelity_max_abs_diff": f"{figures['max_abs_diff']:.6g}",
                                   "fidelity_spearman": f"{figures['spearman']:.6f}"}, line)
    return line
