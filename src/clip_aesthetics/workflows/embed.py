"""`embed`: a dataset + a backbone -> the embedding cache filled, as one MLflow run (the images processed, their
rate, the precision and why)."""

from __future__ import annotations

from clip_aesthetics.backbones.families import BackboneSource, describe, resolve_backbone
from clip_aesthetics.data.labels import Labelled, read_dataset
from clip_aesthetics.embedding.filling import EmbedReport, embed_dataset
from clip_aesthetics.engines import embedder
from clip_aesthetics.heads.training import backbone_label
from clip_aesthetics.settings import DatasetSettings, EmbedSettings
from clip_aesthetics.tracking import runs as tracking
from clip_aesthetics.tracking.stores import use_store


def embed_step(command) -> EmbedReport:
    """`embed`: fill the cache for one backbone, as one run."""
    use_store(command.tracking_uri)  # the one way every command chooses its tracking store
    source = resolve_backbone(command.clip, command.clip_revision)
    labelled = read_dataset(command.part(DatasetSettings), command.cache_dir)  # refused before a run opens
    with tracking.run(command.experiment, command.run_name or f"embed-{backbone_label(command.clip)}"):
        return embed_and_log(labelled, command.part(EmbedSettings), command.clip, source)


def embed_and_log(labelled: Labelled, embed: EmbedSettings, clip: str, source: BackboneSource) -> EmbedReport:
    report = embed_dataset(labelled, embed, source, elsewhere=embedder(embed))
    print(f"precision: {report.precision_reason}")
    tracking.log_params({"clip": clip, **clip_params(source), "device": report.device,
                         "precision_reason": report.precision_reason})
    rate = report.n_processed / report.seconds if report.n_processed and report.seconds > 0 else 0.0
    tracking.log_metrics({"embed_images_processed": report.n_processed, "embed_seconds": report.seconds,
                          "embed_images_per_second": rate, "embed_shards_set_aside": len(report.cache.set_aside)})
    return report


def clip_params(source: BackboneSource) -> dict[str, str]:
    """What was actually used: `clip`/`clip_revision` are as asked, these as resolved (hub commit or fingerprint),
    with what else decides an embedding (family, embedding kind and size, input size, activation, processor)."""
    return {"clip_model_id": source.model_id, "clip_resolved_revision": source.revision, **describe(source)}
