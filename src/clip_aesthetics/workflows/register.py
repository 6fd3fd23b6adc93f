"""`register`: the best finished run (or the one named) -> a registered version, bundled with its backbone, and, when
it beats the current one, the champion alias; recorded as a run of its own."""

from __future__ import annotations

from clip_aesthetics.extensions import HEADS
from clip_aesthetics.settings import RegisterSettings
from clip_aesthetics.tracking import runs as tracking
from clip_aesthetics.tracking.stores import use_store


def register_step(command) -> None:
    """`register`: the best finished run -> a registered version whose source run is that training run.

    The run to register is chosen before the step's own run opens: a refusal leaves nothing behind."""
    use_store(command.tracking_uri)  # the one way every command chooses its tracking store
    from clip_aesthetics.scoring.bundle import bundle_scorer
    from clip_aesthetics.tracking.registry import AliasPolicy, register_version
    from clip_aesthetics.tracking.selection import choose
    from clip_aesthetics.tracking.versions import trained_description, trained_tags

    settings = command.part(RegisterSettings)
    chosen = choose(settings)
    for passed in chosen.passed_over:
        print(f"not a candidate: run {passed}")
    run, metric = chosen.run, chosen.metric

    def make():
        uri, model_id, spec_doc = bundle_scorer(run, settings.bundle_dtype)
        # the training run's best-epoch metrics on the bundled model: its page in the UI shows them
        tracking.link_metrics_to_model(run.info.run_id, model_id, {k: v for k, v in run.data.metrics.items()
                                                                   if k.startswith("best_")})
        tags = trained_tags(run, spec_doc, metric, chosen.value)
        return uri, tags, trained_description(run, spec_doc, tags, HEADS.get(spec_doc["head"]["kind"]).targets_text)

    with tracking.run(command.experiment, command.run_name or "register"):
        done = register_version(settings.model_name, make, AliasPolicy("elect", metric),
                                same=lambda version: version.tags.get("run_id") == run.info.run_id)
        tracking.log_params({"source_run_id": run.info.run_id, "metric": metric, "model_name": command.model_name})
        tracking.set_tags({"registered_version": done.version, "alias": done.alias,
                           "registered_model_id": done.model_id})
    what = "registered as" if done.created else "was already"
    print(f"run {run.info.run_id} ({metric} {chosen.value:.4f}) {what} {command.model_name} "
          f"version {done.version}, alias {done.alias or '(none)'}")
