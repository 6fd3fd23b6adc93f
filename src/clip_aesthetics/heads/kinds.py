"""The head kinds `--head` trains: each a `HeadKind` entry of `extensions.HEADS` (a new kind: one entry there and
its own module defining a `HeadKind`; training, saving, loading and scoring need nothing else).

- linear: the seed's `nn.Linear(d, 1)`, trained with Adam (head.fit);
- mlp: one hidden layer, trained with Adam;
- ridge: the linear probe solved in closed form, its penalty chosen on val (epochs, lr, batch_size unused);
- distribution: the rating distribution (heads/distribution.py), trained on vote counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from clip_aesthetics.heads.metrics import mse, ranking_key, spearman

MLP_HIDDEN = 256  # one hidden layer: enough to bend a linear probe, small enough to train in seconds


@dataclass(frozen=True)
class HeadKind:
    """What a head kind is: its module from a HeadSpec, and how it is fitted.

    `closed_form(head, x, y, x_val, y_val) -> penalty` solves the head in one step (logged as one epoch, its
    return value as `ridge_lambda` when not None); without it the head is trained by `head.fit` (Adam,
    mini-batches, `epochs` passes) on `loss(head, x, targets)`, MSE of its output by default. `trains_on` says
    what its targets are: "scores" (the data's scores, as the spec maps them) or "votes" (each image's rating
    distribution: only data with vote counts). `extra_outputs` name the columns the module's own
    `extra_outputs(x) -> tuple of N tensors` (on the data's scale) gives beside `score` on every scoring path, the
    ONNX export included; `metrics(split, head, spec, features, part)` adds metrics to each split's row (`part`:
    the split's SplitFeatures, with its votes or pairs). `fit_inputs(part, features, spec) -> (x, y)` gives what
    `fit` iterates over (default: the features and the spec's targets of the scores); `finish(head, spec,
    train features) -> spec` fixes the spec after training (a pairwise head's scale). A kind owns the metrics it is
    judged by: `selection_metric` keeps its best epoch and ranks it in a sweep and at registration (on val), and
    `reported_metric` is what its runs report (on test); runs record both as tags, and everything that compares runs
    reads them there. `metric_directions` says which way is better for the metrics its `metrics` adds (by their last
    word after the split: {"pair_logloss": -1}). `trainable` False: only imported (published heads), never
    `--head`."""

    build: Callable  # HeadSpec -> nn.Module (its output: N x 1, the score on the spec's target scale)
    description: str
    closed_form: Callable | None = None
    trainable: bool = True
    trains_on: str = "scores"  # scores | votes
    loss: Callable | None = None  # (head, x batch, targets batch) -> scalar tensor; None: MSE of the output
    extra_outputs: tuple[str, ...] = ()  # named in order; the module's extra_outputs(x) computes them
    metrics: Callable | None = None  # (split, head, spec, prepared features, SplitFeatures) -> {name: value}
    fit_inputs: Callable | None = None  # (SplitFeatures, prepared features, spec) -> (x, y) for fit
    finish: Callable | None = None  # (head, spec, prepared train features) -> the spec the model is saved with
    selection_metric: str = "val_spearman"  # keeps its best epoch; ranks it in sweeps and registration
    reported_metric: str = "test_spearman"  # what its runs report
    metric_directions: dict = field(default_factory=dict)  # its own metrics' kinds -> +1 higher / -1 lower is better
    targets_text: str = ""  # what its scores are, for a registered version's description (empty: the spec's map)


def _linear(spec) -> nn.Module:
    return nn.Linear(spec.in_dim, 1)  # the seed's nn.Linear(512, 1)


def _mlp(spec) -> nn.Module:
    return nn.Sequential(nn.Linear(spec.in_dim, MLP_HIDDEN), nn.GELU(), nn.Linear(MLP_HIDDEN, 1))


# Penalties tried, relative to the mean eigenvalue of the centred X^T X (so the grid suits any scale).
RIDGE_ALPHAS = np.logspace(-7, 1, 17)


def fit_ridge(head: nn.Linear, x: np.ndarray, y: np.ndarray, x_val: np.ndarray | None,
              y_val: np.ndarray | None) -> float:
    """Least squares with an L2 penalty (intercept unpenalised), the penalty chosen by val Spearman.

    X^T X is accumulated in float64 over row blocks; one eigendecomposition serves every penalty.
    Writes the solution into `head` and returns the chosen penalty.
    """
    n, d = x.shape
    mean_x = np.zeros(d)
    gram = np.zeros((d, d))
    xty = np.zeros(d)
    for start in range(0, n, 16384):
        block = x[start:start + 16384].astype(np.float64)
        mean_x += block.sum(axis=0)
        gram += block.T @ block
        xty += block.T @ y[start:start + 16384].astype(np.float64)
    mean_x /= n
    mean_y = float(np.mean(y, dtype=np.float64))
    gram -= n * np.outer(mean_x, mean_x)  # centred: the intercept carries the mean
    xty -= n * mean_x * mean_y
    eigenvalues, vectors = np.linalg.eigh(gram)
    projected = vectors.T @ xty
    scale = max(float(eigenvalues.mean()), 1e-12)
    best = None
    for alpha in RIDGE_ALPHAS:
        w = vectors @ (projected / (np.maximum(eigenvalues, 0) + alpha * scale))
        b = mean_y - mean_x @ w
        if x_val is None or len(x_val) < 2:
            best = (alpha, w, b)
            if alpha >= 1e-4:  # no validation split: a light, fixed penalty
                break
            continue
        pred = x_val.astype(np.float64) @ w + b
        # An undefined Spearman (constant predictions) never beats a defined one; ties go to the lower MSE.
        key = (ranking_key(spearman(y_val, pred), "spearman"), -mse(y_val, pred))
        if best is None or key > best[0]:
            best = (key, alpha, w, b)
    alpha, w, b = best[-3:]
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(w.astype(np.float32)).unsqueeze(0))
        head.bias.fill_(float(b))
    return float(alpha * scale)


LINEAR = HeadKind(_linear, "the seed's nn.Linear(512, 1) trained with Adam")
MLP = HeadKind(_mlp, "one hidden layer")
RIDGE = HeadKind(_linear, "the linear probe solved in closed form (penalty chosen on val; epochs, lr, batch_size "
                 "unused)", closed_form=fit_ridge)
