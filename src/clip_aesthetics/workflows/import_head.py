"""`import-head`: a published head's weight file + its backbone -> an import run and a registered version, with
the scores of a reference folder (when given) as what its percentiles compare with."""

from __future__ import annotations

from pathlib import Path

from clip_aesthetics.backbones.families import resolve_backbone
from clip_aesthetics.scoring.model import MODEL_NAME, log_scorer
from clip_aesthetics.scoring.reference import KEY as REFERENCE_KEY, describe as reference_line, make as make_reference
from clip_aesthetics.tracking import runs as tracking
from clip_aesthetics.workflows.embed import clip_params


def import_head_step(command) -> None:
    """`import-head`: a published head's weight file + its backbone -> an import run and a registered version."""
    from mlflow import MlflowClient

    from clip_aesthetics.backbones.families import embedding_dim
    from clip_aesthetics.heads.published import import_head
    from clip_aesthetics.tracking.registry import register_imported

    source = resolve_backbone(command.clip, command.clip_revision)
    state, spec, facts = import_head(Path(command.path), embedding_dim(source), command.activation)
    print(f"{facts['head_file']}: {facts['head_layout']} head ({facts['head_layers']}), sha256 {facts['head_sha256']}")
    name = command.model_name
    with tracking.run(command.experiment, command.run_name or f"import-{name}") as active:
        tracking.log_params({"clip": command.clip, **clip_params(source), **facts, "model_name": name,
                             "activation": command.activation, "embed_norm": "l2"})
        tracking.set_tags({"imported_head": facts["head_layout"], "head_sha256": facts["head_sha256"]})
        tracking.set_description(f"Imported `{facts['head_file']}` ({facts['head_layout']}, {facts['head_layers']}) "
                                 f"from {facts['head_origin']}; licence: {facts['head_licence']}.")
        spec_doc = {"head": spec.to_dict(), "best_epoch": 0, "precision": None, "decoding": "full",
                    "clip": {"model_id": source.model_id, "revision": source.revision}}
        if command.reference:
            reference = reference_of_folder(Path(command.reference).expanduser(), state, spec_doc)
            spec_doc[REFERENCE_KEY] = reference.to_doc()
            tracking.log_params({"percentile_reference": reference_line(reference)})
            print(reference_line(reference))
        log_scorer(MODEL_NAME, state, spec_doc)
    run = MlflowClient().get_run(active.info.run_id)
    version, alias, created = register_imported(run, name, facts, command.bundle_dtype)
    what = "registered as" if created else "was already"
    print(f"{facts['head_file']} on {source.model_id} {what} {name} version {version}, alias {alias or '(none)'}: "
          f"models:/{name}/{version}")


def reference_of_folder(folder: Path, head_state: dict, spec_doc: dict):
    """The scores of a folder's images by the model these files make: an imported head's reference."""
    import tempfile

    from clip_aesthetics.errors import ScoringInputError
    from clip_aesthetics.scoring.files import collect_images
    from clip_aesthetics.scoring.model import AestheticScorer, write_artifacts

    paths = collect_images([folder])
    with tempfile.TemporaryDirectory() as tmp:
        scorer = AestheticScorer().load(write_artifacts(Path(tmp), head_state, spec_doc))
        scored = scorer.score_paths(paths)
    reference = make_reference(scored["score"], f"the scores of the {int(scored['score'].notna().sum())} images "
                               f"in {folder.resolve()} (given at import)")
    if reference is None:
        raise ScoringInputError(f"reference={folder}: fewer than two of its {len(paths)} image(s) could be scored")
    return reference
