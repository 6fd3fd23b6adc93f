"""Any model's scores against a dataset's labels or pairs -> eval_* metrics, and how they were computed.

A model on another scale than the data is measured on ranks only (Spearman; Pearson, which a linear map from its
scale to the data's does not change), never compared in absolute terms; on a pair table, by pairwise accuracy.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from clip_aesthetics.heads import metrics

RANK_METRICS = ("spearman", "pearson")


def same_scale(model_range, data_range) -> bool:
    return tuple(map(float, model_range)) == tuple(map(float, data_range))


def measure(true: np.ndarray, pred: np.ndarray, model_range, data_range, threshold: float) -> tuple[dict, str]:
    """The metrics of one model on one set, and how they were computed (for the run's description)."""
    values = metrics.evaluate("eval", true, pred, threshold)
    if same_scale(model_range, data_range):
        return values, f"on the data's {data_range[0]:g}-{data_range[1]:g} scale, accuracy at {threshold:g}"
    kept = {k: v for k, v in values.items() if k.rsplit("_", 1)[-1] in RANK_METRICS}
    note = (f"the model scores on a {model_range[0]:g}-{model_range[1]:g} scale and the data on "
            f"{data_range[0]:g}-{data_range[1]:g}: evaluated on ranks only. eval_spearman as is; eval_pearson after a "
            "linear least-squares map of the model's scores onto the data's scale (Pearson is unchanged by it); "
            "no MSE, MAE or accuracy, which would compare numbers on different scales")
    return kept, note


def measure_pairs(pairs: pd.DataFrame, ids: np.ndarray, scores: np.ndarray) -> tuple[dict, str]:
    """Pairwise accuracy of any model's scores on pairs whose two images it scored (ties excluded; a predicted tie
    counts half); no log-loss, which would need the model's scores as logits."""
    from clip_aesthetics.heads.pairwise import pair_metrics

    position = pd.Index(ids)
    a, b = position.get_indexer(pairs["a_id"]), position.get_indexer(pairs["b_id"])
    ok = (a >= 0) & (b >= 0)
    ok[ok] = np.isfinite(scores[a[ok]]) & np.isfinite(scores[b[ok]])
    preference = pairs["preference"].to_numpy(np.float64)[ok]
    values = pair_metrics("eval", scores[a[ok]] - scores[b[ok]], preference, logloss=False)
    values.update({"eval_pairs": float(ok.sum()), "eval_pairs_decided": float(np.sum(preference != 0.5))})
    note = (f"pairwise accuracy on {int(np.sum(preference != 0.5))} pairs with a preference (ties excluded; chance "
            f"is 0.5), {int((~ok).sum())} pair(s) without two scored images left out")
    return values, note
