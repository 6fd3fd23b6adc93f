"""The `spark` section: Spark local[2] against one process on the same images, scoring files and embedding."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import torch
from common import b32_setup, local_spark, saved_scorer, spark_job

from clip_aesthetics.backbones.families import load_backbone
from clip_aesthetics.embedding.embed import default_workers, embed_to_cache


def bench_spark(work: Path, quick: bool) -> dict:
    """Spark local[2] against the single process on the same images: scoring files, embedding, and start-up."""
    n_images = 96 if quick else 256
    from clip_aesthetics.embedding.cache import EmbeddingCache
    from clip_aesthetics.engines import spark
    from clip_aesthetics.scoring.model import save_scorer

    paths, clip, source, spec, head = b32_setup(work, n_images, seed=2)
    spec_doc = {"head": spec.to_dict(), "clip": {"model_id": source.model_id, "revision": source.revision}}
    model_dir = save_scorer(work / "model", head.state_dict(), spec_doc)
    items = [(int(p.stem), p) for p in paths]

    started = time.perf_counter()
    scorer = saved_scorer(model_dir)
    scorer.score_paths(paths)
    local_score = len(paths) / (time.perf_counter() - started)  # model load included, as Spark's figure has it
    model, processor = load_backbone(source, torch.device("cpu"))
    cache = EmbeddingCache(work / "cache-local")
    cache.open({"embedding_dim": 512})
    started = time.perf_counter()
    embed_to_cache(cache, items, model, processor, torch.float32, 32,
                   default_workers(-1), 4096, progress=False)
    local_embed = len(items) / (time.perf_counter() - started)

    started = time.perf_counter()
    session = local_spark()
    startup = time.perf_counter() - started
    started = time.perf_counter()
    job = spark_job([str(paths[0].parent)], model_dir, work / "scores.parquet")
    spark.score_job(session, job)
    spark_score = len(pd.read_parquet(work / "scores.parquet")) / (time.perf_counter() - started)
    cache = EmbeddingCache(work / "cache-spark")
    cache.open({"embedding_dim": 512})
    started = time.perf_counter()
    spark.embed_missing(cache.root, items, clip, "float32", 32, 4096)
    spark_embed = len(items) / (time.perf_counter() - started)
    session.stop()
    return {"spark_startup_seconds": startup,
            "spark_score_images_per_second": spark_score, "local_score_images_per_second": local_score,
            "spark_score_fraction_of_local": spark_score / local_score,
            "spark_embed_images_per_second": spark_embed, "local_embed_images_per_second": local_embed,
            "spark_embed_fraction_of_local": spark_embed / local_embed, "spark_model_loads": job.counts["model_loads"]}
