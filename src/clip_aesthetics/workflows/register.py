"""`register`: the best finished run (or the one named) -> a registered version and, when it beats the current one,
the champion alias; recorded as a run of its own."""

from __future__ import annotations

from clip_aesthetics.settings import RegisterSettings
from clip_aesthetics.tracking import runs as tracking
from clip_aesthetics.tracking.stores import use_store


def register_step(command) -> None:
    """`register`: the best finished run -> a registered version whose source run is that training run.

    The run to register is chosen before the step's own run opens: a refusal leaves nothing behind."""
    use_store(command.tracking_uri)  # the one way every command chooses its tracking store
    from clip_aesthetics.tracking.registry import register
    from clip_aesthetics.tracking.selection import choose

    settings = command.part(RegisterSettings)
    chosen = choose(settings)
    for passed in chosen.passed_over:
        print(f"not a candidate: run {passed}")
    with tracking.run(command.experiment, command.run_name or "register"):
        done = register(settings, chosen)
        tracking.log_params({"source_run_id": done.run_id, "metric": command.metric, "model_name": command.model_name})
        tracking.set_tags({"registered_version": done.version, "alias": done.alias,
                           "registered_model_id": done.model_id})
    what = "registered as" if done.created else "was already"
    print(f"run {done.run_id} ({command.metric} {done.metric_value:.4f}) {what} {command.model_name} "
          f"version {done.version}, alias {done.alias or '(none)'}")
