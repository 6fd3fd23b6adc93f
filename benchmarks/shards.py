"""The `shards` section: scoring webdataset shards against the forward alone and the folder path, and Spark
local[2] against one process on the same shards."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from common import (
    b32_setup,
    fast_precisions,
    forward_all,
    fraction_of_forward,
    local_spark,
    pixels_of,
    saved_scorer,
    spark_job,
)


def bench_shards(work: Path, quick: bool) -> dict:
    """Scoring webdataset shards (curate.py) against the model's own forward, the folder path beside it in the
    same run, in each precision this CPU runs well; then Spark local[2] against one process on the same shards."""
    n_images = 96 if quick else 256
    import io
    import tarfile

    from clip_aesthetics.engines import spark
    from clip_aesthetics.scoring import curate
    from clip_aesthetics.scoring.model import AestheticScorer, save_scorer, write_artifacts

    paths, _, source, spec, head = b32_setup(work, n_images, seed=4)
    shards = []
    for start in range(0, len(paths), 32):  # 32 samples a shard: jpg + json, as img2dataset writes them
        shard = work / "shards" / f"{start // 32:05d}.tar"
        shard.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(shard, "w") as tar:
            for path in paths[start:start + 32]:
                for name, data in ((f"{path.stem}.jpg", path.read_bytes()), (f"{path.stem}.json", b'{"url": "u"}')):
                    member = tarfile.TarInfo(name)
                    member.size = len(data)
                    tar.addfile(member, io.BytesIO(data))
        shards.append(str(shard))
    figures = {"shards_images": len(paths), "shards": len(shards)}
    for precision in fast_precisions():
        spec_doc = {"head": spec.to_dict(), "precision": precision,
                    "clip": {"model_id": source.model_id, "revision": source.revision}}
        scorer = AestheticScorer().load(write_artifacts(work / precision, head.state_dict(), spec_doc, None), "cpu")
        pixels = pixels_of(scorer.processor, paths)
        out = work / f"out-{precision}"
        out.mkdir()
        forward, through, fraction, folder = fraction_of_forward(
            lambda: forward_all(scorer.model, pixels, scorer.dtype),
            lambda: [curate.score_input(scorer, shard, out) for shard in shards], len(paths),
            folder=lambda: scorer.score_paths(paths))
        suffix = "" if precision == "float32" else "_bf16"
        figures.update({f"shards_forward_images_per_second{suffix}": forward,
                        f"shards_images_per_second{suffix}": through,
                        f"shards_fraction_of_forward{suffix}": fraction,
                        f"shards_folder_fraction_of_forward{suffix}": folder})
    spec_doc = {"head": spec.to_dict(), "precision": "float32",
                "clip": {"model_id": source.model_id, "revision": source.revision}}
    model_dir = save_scorer(work / "model", head.state_dict(), spec_doc)
    started = time.perf_counter()
    scorer = saved_scorer(model_dir)
    (work / "local").mkdir()
    for shard in shards:
        curate.score_input(scorer, shard, work / "local")
    local = len(paths) / (time.perf_counter() - started)  # model load included, as Spark's figure has it
    session = local_spark()
    (work / "spark").mkdir()
    started = time.perf_counter()
    job = spark_job(shards, model_dir, work / "spark")
    spark.score_job(session, job)
    loads = job.counts["model_loads"]
    distributed = len(paths) / (time.perf_counter() - started)
    session.stop()
    same = curate.read_parts(work / "local", shards)["score"].to_numpy()
    other = curate.read_parts(work / "spark", shards)["score"].to_numpy()
    return {**figures, "shards_spark_images_per_second": distributed, "shards_local_images_per_second": local,
            "shards_spark_fraction_of_local": distributed / local, "shards_spark_model_loads": loads,
            "shards_spark_max_score_difference": float(np.max(np.abs(same - other)))}
