"""Embeddings + targets -> a fitted regression head (the seed's linear probe, or a small MLP)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

MLP_HIDDEN = 256  # one hidden layer: enough to bend a linear probe, small enough to train in seconds


@dataclass(frozen=True)
class HeadSpec:
    """Everything needed to rebuild a head and turn its output into a 1-10 score; stored with the model."""

    kind: str  # linear | mlp
    in_dim: int
    embed_norm: str  # none | l2, applied to the CLIP embedding before the head
    target_scale: float  # score = output * target_scale (10 when trained on mean_score/10)

    def to_dict(self) -> dict:
        return asdict(self)


def build_head(spec: HeadSpec) -> nn.Module:
    if spec.kind == "linear":
        return nn.Linear(spec.in_dim, 1)  # the seed's nn.Linear(512, 1)
    if spec.kind == "mlp":
        return nn.Sequential(nn.Linear(spec.in_dim, MLP_HIDDEN), nn.GELU(), nn.Linear(MLP_HIDDEN, 1))
    raise ValueError(f"head={spec.kind!r}: expected linear or mlp")


def prepare(embeddings: np.ndarray, embed_norm: str) -> np.ndarray:
    """Apply the embedding normalisation the head was trained with."""
    x = np.asarray(embeddings, dtype=np.float32)
    if embed_norm == "l2":
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    if embed_norm == "none":
        return x
    raise ValueError(f"embed_norm={embed_norm!r}: expected none or l2")


@torch.inference_mode()
def predict_scores(head: nn.Module, spec: HeadSpec, features: np.ndarray) -> np.ndarray:
    """Prepared features -> scores on the 1-10 scale."""
    head.eval()
    out = head(torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))).squeeze(1)
    return out.double().numpy() * spec.target_scale


def fit(
    head: nn.Module,
    features: np.ndarray,
    targets: np.ndarray,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    on_epoch: Callable[[int, float], None],
) -> None:
    """MSE + Adam over shuffled mini-batches; `on_epoch(epoch, mean_batch_loss)` after each pass."""
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    y = torch.from_numpy(np.asarray(targets, dtype=np.float32))
    optimiser = torch.optim.Adam(head.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    loss_fn = nn.MSELoss()
    for epoch in range(1, epochs + 1):
        head.train()
        order = torch.randperm(len(x), generator=generator)
        # One gather per epoch, then contiguous slices: cheaper than indexing every batch.
        x_epoch, y_epoch = x[order], y[order]
        total = torch.zeros((), dtype=torch.float64)
        for start in range(0, len(x), batch_size):
            xb, yb = x_epoch[start:start + batch_size], y_epoch[start:start + batch_size]
            loss = loss_fn(head(xb).squeeze(1), yb)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += loss.detach() * len(xb)
        on_epoch(epoch, float(total) / len(x))
