"""A head of any kind (extensions.HEADS): its spec, its module, its scores on the data's scale, and Adam fitting
(closed forms: kinds.py)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from clip_aesthetics.data.ava import SCORE_RANGE  # noqa: E402  models saved before score_range were all on AVA's


@dataclass(frozen=True)
class HeadSpec:
    """Everything needed to rebuild a head and turn its output into a score on its data's scale; stored with
    the model."""

    kind: str  # an entry of extensions.HEADS: linear, mlp, ridge, chain, ...
    in_dim: int
    embed_norm: str  # none | l2, applied to the CLIP embedding before the head
    target_scale: float  # score = output * target_scale + target_offset (10 and 0 when trained on mean_score/10)
    target_offset: float = 0.0
    score_range: tuple[float, float] = SCORE_RANGE  # the data's scale: every score is clipped to it
    # kind "chain" (a published head, published.py): its linear layers [key prefix, in, out, has bias] in order
    layers: tuple = ()
    activation: str = "none"  # between a chain's layers
    clip_scores: bool = True  # False for a published head: its raw output, as its authors' code returns it
    bins: int = 0  # kind "distribution": the ratings 1..bins it predicts a distribution over

    def __post_init__(self):
        object.__setattr__(self, "score_range", (float(self.score_range[0]), float(self.score_range[1])))

    def to_dict(self) -> dict:
        doc = asdict(self)
        doc["score_range"] = list(self.score_range)
        doc["layers"] = [list(layer) for layer in self.layers]
        return doc

    def targets(self, scores: np.ndarray) -> np.ndarray:
        """Scores on the data's scale -> what the head is trained to output."""
        return (np.asarray(scores, np.float64) - self.target_offset) / self.target_scale


def state_bytes(state: dict) -> bytes:
    """A head's state dict as the bytes of a torch file (a per-epoch checkpoint artifact)."""
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def build_head(spec: HeadSpec) -> nn.Module:
    """The untrained module of the spec's head kind (extensions.HEADS), ready for its weights."""
    from clip_aesthetics.extensions import HEADS

    try:
        kind = HEADS.get(spec.kind)
    except KeyError as error:
        raise ValueError(f"head={spec.kind!r}: {error.args[0]}") from None
    return kind.build(spec)


def prepare(embeddings: np.ndarray, embed_norm: str) -> np.ndarray:
    """Apply the embedding normalisation the head was trained with."""
    x = np.asarray(embeddings, dtype=np.float32)
    if embed_norm == "l2":
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    if embed_norm == "none":
        return x
    raise ValueError(f"embed_norm={embed_norm!r}: expected none or l2")


@torch.inference_mode()
def head_outputs(head: nn.Module, spec: HeadSpec, features: np.ndarray) -> np.ndarray:
    """Prepared features -> the head's output on the data's scale, unclipped (for losses and for counting)."""
    head.eval()
    out = head(torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))).squeeze(1)
    return out.double().numpy() * spec.target_scale + spec.target_offset


def predict_scores(head: nn.Module, spec: HeadSpec, features: np.ndarray) -> np.ndarray:
    """Prepared features -> scores clipped to the data's scale (a published head: its raw output): what every
    scoring path returns and evaluation measures. A non-finite output stays non-finite (clipping would turn an
    infinity into a plausible score): callers make it that image's error (NON_FINITE)."""
    outputs = head_outputs(head, spec, features)
    if not spec.clip_scores:
        return outputs
    return np.where(np.isfinite(outputs), np.clip(outputs, *spec.score_range), outputs)


@torch.inference_mode()
def head_extras(head: nn.Module, spec: HeadSpec, features: np.ndarray) -> dict[str, np.ndarray]:
    """What the head kind answers beside the score (a distribution head's score_std), in its declared order."""
    from clip_aesthetics.extensions import HEADS

    names = HEADS.get(spec.kind).extra_outputs
    if not names:
        return {}
    head.eval()
    values = head.extra_outputs(torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)))
    return {name: value.double().numpy() for name, value in zip(names, values, strict=True)}


def n_outside_range(outputs: np.ndarray, score_range: tuple[float, float] = SCORE_RANGE) -> int:
    """How many head outputs needed clipping to lie on the data's scale."""
    return int(np.count_nonzero((outputs < score_range[0]) | (outputs > score_range[1])))


def fit(
    head: nn.Module,
    features: np.ndarray,
    targets: np.ndarray,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    on_epoch: Callable[[int, float], None],
    loss: Callable | None = None,
) -> None:
    """Adam over shuffled mini-batches of `loss(head, x, targets)` (default: MSE of the output); `on_epoch(epoch,
    mean_batch_loss)` after each pass.

    The linear head takes a NumPy path with the gradient written out: the same Adam update as
    torch.optim.Adam (a test holds them equal), about 14x faster, since a 513-parameter model's
    step is all per-call overhead. Other heads use autograd.
    """
    x = np.ascontiguousarray(features, dtype=np.float32)
    y = np.ascontiguousarray(targets, dtype=np.float32)
    generator = torch.Generator().manual_seed(seed)
    step = _LinearAdam(head, lr) if isinstance(head, nn.Linear) and loss is None else _TorchAdam(head, lr, loss)
    for epoch in range(1, epochs + 1):
        head.train()
        order = torch.randperm(len(x), generator=generator).numpy()
        total = 0.0
        for start in range(0, len(x), batch_size):
            rows = order[start:start + batch_size]
            total += step(x[rows], y[rows]) * len(rows)
        step.sync()
        on_epoch(epoch, total / len(x))


def _mse(head: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(head(x).squeeze(1), y)


class _TorchAdam:
    def __init__(self, head: nn.Module, lr: float, loss: Callable | None = None):
        self.head, self.optimiser = head, torch.optim.Adam(head.parameters(), lr=lr)
        self.loss = loss or _mse

    def __call__(self, xb: np.ndarray, yb: np.ndarray) -> float:
        loss = self.loss(self.head, torch.from_numpy(xb), torch.from_numpy(yb))
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        return float(loss.detach())

    def sync(self) -> None:
        pass


class _LinearAdam:
    """Adam (torch's defaults: betas 0.9/0.999, eps 1e-8) on [weight, bias] of an nn.Linear(d, 1)."""

    beta1, beta2, eps = 0.9, 0.999, 1e-8

    def __init__(self, head: nn.Linear, lr: float):
        self.head, self.lr, self.t = head, lr, 0
        self.d = head.in_features
        self.p = np.concatenate([head.weight.detach().numpy()[0], head.bias.detach().numpy()]).astype(np.float32)
        self.m, self.v = np.zeros_like(self.p), np.zeros_like(self.p)
        self.g, self.tmp = np.empty_like(self.p), np.empty_like(self.p)

    def __call__(self, xb: np.ndarray, yb: np.ndarray) -> float:
        p, g, tmp, d = self.p, self.g, self.tmp, self.d
        residual = xb @ p[:d]
        residual += p[d] - yb
        loss = float(residual @ residual) / len(yb)
        np.dot(residual, xb, out=g[:d])  # d(mean squared error)/dw = 2/B * X^T r
        g[d] = residual.sum()
        g *= 2.0 / len(yb)
        self.t += 1
        self.m *= self.beta1
        self.m += (1 - self.beta1) * g
        self.v *= self.beta2
        np.multiply(g, g, out=tmp)
        tmp *= 1 - self.beta2
        self.v += tmp
        np.sqrt(self.v, out=tmp)
        tmp /= np.sqrt(1 - self.beta2 ** self.t)
        tmp += self.eps
        np.divide(self.m, tmp, out=tmp)
        tmp *= self.lr / (1 - self.beta1 ** self.t)
        p -= tmp
        return loss

    def sync(self) -> None:
        """Copy the parameters back into the torch module (for evaluation and checkpoints)."""
        with torch.no_grad():
            self.head.weight.copy_(torch.from_numpy(self.p[: self.d]).unsqueeze(0))
            self.head.bias.copy_(torch.from_numpy(self.p[self.d:]))
