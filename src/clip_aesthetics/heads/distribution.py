"""head=distribution: the rating distribution over the data's bins (NIMA), from which the mean and the raters'
disagreement follow.

A linear layer gives one logit per rating (AVA's 10, a table's `vote_columns` count); a softmax makes them a
distribution p over the ratings 1..K. Trained with NIMA's earth mover's distance (r=2) between the predicted and
the voted distributions, on the same cache as every head. Its score is the distribution's mean, sum_k k p_k, on
the data's scale (so every scoring path, the ONNX export and every metric of the mean treat it as any head);
`score_std` is the distribution's standard deviation, the disagreement among raters it predicts.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from clip_aesthetics.heads import metrics
from clip_aesthetics.heads.kinds import HeadKind


class DistributionHead(nn.Module):
    """Embeddings -> (N, 1): the predicted mean on the head's target scale, (mean - offset) / scale, as the head
    spec's affine map expects; `distribution` and `std` give the rest."""

    def __init__(self, in_dim: int, bins: int, target_scale: float, target_offset: float):
        super().__init__()
        self.logits = nn.Linear(in_dim, bins)
        self.register_buffer("ratings", torch.arange(1, bins + 1, dtype=torch.float32), persistent=False)
        self.target_scale, self.target_offset = float(target_scale), float(target_offset)

    def distribution(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(x), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = self.distribution(x) @ self.ratings
        return ((mean - self.target_offset) / self.target_scale).unsqueeze(1)

    def std(self, x: torch.Tensor) -> torch.Tensor:
        p = self.distribution(x)
        mean = p @ self.ratings
        return torch.sqrt(torch.sum(p * (self.ratings - mean.unsqueeze(1)) ** 2, dim=1))

    def extra_outputs(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.std(x),)  # score_std


def _build(spec) -> nn.Module:
    if spec.bins < 2:
        raise ValueError("head=distribution needs the number of rating bins (spec.bins), at least 2")
    return DistributionHead(spec.in_dim, spec.bins, spec.target_scale, spec.target_offset)


def emd(p: torch.Tensor, q: torch.Tensor, r: float = 2.0) -> torch.Tensor:
    """NIMA's earth mover's distance between distributions over ordered bins, per row:
    (mean_k |CDF_p(k) - CDF_q(k)|^r)^(1/r)."""
    difference = torch.cumsum(p, dim=1) - torch.cumsum(q, dim=1)
    return torch.mean(torch.abs(difference) ** r, dim=1) ** (1.0 / r)


def _loss(head: DistributionHead, x: torch.Tensor, votes: torch.Tensor) -> torch.Tensor:
    return emd(head.distribution(x), votes).mean()


def true_std(votes: np.ndarray) -> np.ndarray:
    """The standard deviation of each row's voted distribution over the ratings 1..K."""
    ratings = np.arange(1, votes.shape[1] + 1, dtype=np.float64)
    mean = votes @ ratings
    return np.sqrt(np.sum(votes * (ratings - mean[:, None]) ** 2, axis=1))


@torch.inference_mode()
def _metrics(split: str, head: DistributionHead, spec, features: np.ndarray, part) -> dict[str, float]:
    """`{split}_emd` (the loss, on held-out images), and how the predicted std ranks and fits the voted std."""
    votes = part.votes
    head.eval()
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    predicted = head.std(x).double().numpy()
    actual = true_std(votes)
    return {f"{split}_emd": float(emd(head.distribution(x).double(), torch.from_numpy(votes)).mean()),
            f"{split}_std_spearman": metrics.spearman(actual, predicted),
            f"{split}_std_pearson": metrics.pearson(actual, predicted)}


DISTRIBUTION = HeadKind(_build, "the rating distribution over the data's bins (softmax), trained with the earth "
                        "mover's distance (NIMA); score = its mean, score_std = its spread; needs vote counts",
                        trains_on="votes", loss=_loss, extra_outputs=("score_std",),
                        fit_inputs=lambda part, features, spec: (features, part.votes),
                        metrics=_metrics)
