"""head=pairwise: a score learned from "A is better than B" (Bradley-Terry on the embeddings).

A linear layer gives each image a utility u; the probability that raters prefer A to B is the logistic of
u(A) - u(B). Trained with the cross-entropy of that probability against the share of raters who preferred A
(ties: 0.5), on pairs of embeddings from the same cache as every head. Once trained, the utilities are mapped
onto a declared 1-10 scale by an affine map fixed at training: the training images average 5.5 and one standard
deviation of their utilities is 1.5 points. So a score difference d between two images means raters prefer the
higher one with probability logistic(d * `pair_slope`) (the slope is stored with the model and printed).

Metrics of each split's pairs: `*_pair_accuracy` (the share of pairs with a preference, ties excluded, whose
preferred image scores higher; a predicted tie counts half; chance is 0.5) and `*_pair_logloss` (cross-entropy
of the predicted probabilities, ties included; ln 2 = 0.693 is a model that always says 50%).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from clip_aesthetics.heads.kinds import HeadKind

CENTRE, SPREAD = 5.5, 1.5  # the training images' mean and standard deviation on the declared 1-10 scale
SELECTION_METRIC = "val_pair_logloss"  # the continuous one: accuracy on a small val set ties between epochs


def _build(spec) -> nn.Module:
    return nn.Linear(spec.in_dim, 1)


def pair_features(features: np.ndarray, pairs) -> np.ndarray:
    """What `fit` iterates over: one row per pair, [x_a, x_b]."""
    return np.concatenate([features[pairs.a], features[pairs.b]], axis=1)


def _loss(head: nn.Module, x: torch.Tensor, preference: torch.Tensor) -> torch.Tensor:
    d = x.shape[1] // 2
    margin = (head(x[:, :d]) - head(x[:, d:])).squeeze(1)
    return nn.functional.binary_cross_entropy_with_logits(margin, preference)


@torch.inference_mode()
def utilities(head: nn.Module, features: np.ndarray) -> np.ndarray:
    head.eval()
    return head(torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))).squeeze(1).double().numpy()


def pair_metrics(prefix: str, margin: np.ndarray, preference: np.ndarray, logloss: bool = True) -> dict[str, float]:
    """Accuracy of the margins' signs on the pairs with a preference (a predicted tie counts half), and the
    cross-entropy of logistic(margin) against the preferences (when the margin is a logit)."""
    decided = preference != 0.5
    right = np.where(margin == 0, 0.5, (margin > 0) == (preference > 0.5))
    values = {f"{prefix}_pair_accuracy": float(np.mean(right[decided])) if decided.any() else float("nan")}
    if logloss:
        p = np.clip(1.0 / (1.0 + np.exp(-margin)), 1e-12, 1 - 1e-12)
        values[f"{prefix}_pair_logloss"] = float(np.mean(-(preference * np.log(p) + (1 - preference) *
                                                           np.log(1 - p)))) if len(p) else float("nan")
    return values


def _metrics(split: str, head: nn.Module, spec, features: np.ndarray, part) -> dict[str, float]:
    u = utilities(head, features)
    return pair_metrics(split, u[part.pairs.a] - u[part.pairs.b], part.pairs.preference)


def _finish(head: nn.Module, spec, features: np.ndarray):
    """The affine map onto the declared scale, fixed from the training images' utilities."""
    from dataclasses import replace

    u = utilities(head, features)
    spread = float(np.std(u))
    scale = SPREAD / spread if spread > 0 and math.isfinite(spread) else 1.0
    return replace(spec, target_scale=scale, target_offset=CENTRE - float(np.mean(u)) * scale)


def slope(spec) -> float:
    """logistic(slope * score difference) is the preference probability the head predicts."""
    return 1.0 / spec.target_scale


PAIRWISE = HeadKind(_build, "a score learned from pairwise preferences (Bradley-Terry: logistic of the utility "
                    "difference), mapped onto a declared 1-10 scale; needs a pair table",
                    trains_on="pairs", loss=_loss, metrics=_metrics, finish=_finish,
                    selection_metric=SELECTION_METRIC, reported_metric="test_pair_accuracy",
                    metric_directions={"pair_accuracy": 1, "pair_logloss": -1},
                    targets_text="Bradley-Terry utilities learned from pairwise preferences, mapped onto 1-10 (5.5: "
                                 "the training images' mean; 1.5 points: one standard deviation of them)",
                    fit_inputs=lambda part, features, spec: (pair_features(features, part.pairs),
                                                             part.pairs.preference))
