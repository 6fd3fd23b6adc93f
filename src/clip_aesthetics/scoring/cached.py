"""A scorer x a labelled dataset's images -> scores (NaN where an image failed) and each failure's reason.

A PyTorch scorer embeds through the same embedding cache training uses (keyed by backbone, precision and decoding),
so a model measured on the data it was trained on finds its embeddings there and reproduces its run's numbers
exactly; a scorer that computes no embedding of its own (an export) scores image by image on its runtime.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from clip_aesthetics.data.labels import Labelled
from clip_aesthetics.embedding.embed import batch_for, default_workers, embed_to_cache
from clip_aesthetics.embedding.filling import open_cache, to_embed
from clip_aesthetics.errors import non_finite_reason
from clip_aesthetics.heads.head import predict_scores, prepare


def score_images(scorer, labelled: Labelled, ids: np.ndarray, cache_dir, num_workers: int = -1):
    """(scores aligned with ids, NaN where the image failed; reasons by id) through the shared embedding cache, or,
    for a scorer that computes no embedding of its own (an exported model), image by image on its runtime."""
    from clip_aesthetics.backbones.families import BackboneSource

    if not getattr(scorer, "uses_embedding_cache", True):
        frame = scorer.score([labelled.sources[int(i)] for i in ids], num_workers)
        return frame["score"].to_numpy(dtype=float), {int(i): e for i, e in zip(ids, frame["error"]) if e}

    source = BackboneSource(scorer.clip_info["model_id"], scorer.clip_info["revision"], None)
    precision = str(scorer.dtype).removeprefix("torch.")
    cache = open_cache(cache_dir, source, labelled.images, precision, scorer.decoding, scorer.model.embedding_dim)
    todo = to_embed(cache, [(int(i), labelled.sources[int(i)]) for i in ids], labelled.images)
    if todo:
        batch = batch_for(scorer.device)
        embed_to_cache(cache, todo, scorer.model, scorer.processor, scorer.dtype, batch,
                       default_workers(num_workers), 4096, progress=True, decoding=scorer.decoding)
    cached = cache.load()
    rows = pd.Index(cached.ids).get_indexer(ids)
    scores = np.full(len(ids), np.nan)
    ok = rows >= 0
    if ok.any():
        features = prepare(cached.embeddings[rows[ok]].astype(np.float32), scorer.spec.embed_norm)
        scores[ok] = predict_scores(scorer.head, scorer.spec, features)
    reasons = cached.failures.set_index("image_id")["reason"]
    failed = {int(i): str(reasons.get(int(i), "no embedding")) for i in ids[~ok]}
    for i, value in zip(ids[ok], scores[ok], strict=True):
        if not np.isfinite(value):  # never measured as a number: the image's error says why
            failed[int(i)] = non_finite_reason(value)
    scores[~np.isfinite(scores)] = np.nan
    return scores, failed
