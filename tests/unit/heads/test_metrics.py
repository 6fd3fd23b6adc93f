"""Metrics on known values, and the head's output scale and embedding normalisation."""

import math

import numpy as np
import pytest
import torch

from clip_aesthetics.heads import metrics
from clip_aesthetics.heads.head import HeadSpec, build_head, predict_scores, prepare


def test_metrics_on_known_values():
    true = np.array([4.0, 5.5, 6.0, 7.0])
    pred = np.array([4.5, 5.0, 6.5, 8.0])
    values = metrics.evaluate("test", true, pred)
    assert values["test_spearman"] == pytest.approx(1.0)
    assert values["test_mse"] == pytest.approx((0.25 + 0.25 + 0.25 + 1.0) / 4)
    assert values["test_mae"] == pytest.approx(0.625)
    assert values["test_accuracy"] == pytest.approx(0.75)  # 5.5 is above 5, its prediction 5.0 is not
    assert metrics.accuracy(np.array([4.0, 6.0]), np.array([6.0, 6.0])) == 0.5
    assert metrics.spearman(true, true[::-1]) == pytest.approx(-1.0)


def test_correlations_of_a_constant_prediction_are_nan_not_zero():
    assert math.isnan(metrics.spearman(np.array([1.0, 2.0, 3.0]), np.full(3, 5.0)))
    assert math.isnan(metrics.pearson(np.array([1.0, 2.0, 3.0]), np.full(3, 5.0)))


def test_scores_come_back_on_the_1_to_10_scale_whatever_the_training_scale():
    features = np.ones((3, 4), dtype=np.float32)
    for scale in (10.0, 1.0):
        spec = HeadSpec("linear", 4, "none", scale)
        head = build_head(spec)
        with torch.no_grad():
            head.weight.zero_()
            head.bias.fill_(0.6 if scale == 10.0 else 6.0)
        np.testing.assert_allclose(predict_scores(head, spec, features), 6.0, rtol=1e-6)


def test_l2_embedding_norm():
    x = np.array([[3.0, 4.0], [0.0, 0.0]])
    np.testing.assert_allclose(prepare(x, "l2"), [[0.6, 0.8], [0.0, 0.0]])
    np.testing.assert_array_equal(prepare(x, "none"), x)
    assert build_head(HeadSpec("mlp", 512, "l2", 10.0))(torch.zeros(2, 512)).shape == (2, 1)


def test_fast_linear_path_is_the_same_adam_as_torch():
    from torch import nn

    from clip_aesthetics.heads.head import _TorchAdam, fit

    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 8)).astype(np.float32)
    y = (x @ rng.standard_normal(8) + 5).astype(np.float32) / 10
    torch.manual_seed(3)
    fast = nn.Linear(8, 1)
    reference = nn.Linear(8, 1)
    reference.load_state_dict(fast.state_dict())
    losses = []
    fit(fast, x, y, epochs=3, lr=1e-2, batch_size=32, seed=1, on_epoch=lambda e, loss: losses.append(loss))
    step = _TorchAdam(reference, 1e-2)
    generator = torch.Generator().manual_seed(1)
    for _ in range(3):
        order = torch.randperm(len(x), generator=generator).numpy()
        for start in range(0, len(x), 32):
            step(x[order[start:start + 32]], y[order[start:start + 32]])
    np.testing.assert_allclose(fast.weight.detach().numpy(), reference.weight.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(fast.bias.detach().numpy(), reference.bias.detach().numpy(), atol=1e-5)
    assert losses[2] < losses[0]


def test_ridge_with_a_tiny_penalty_is_least_squares():
    from torch import nn

    from clip_aesthetics.heads.kinds import fit_ridge

    rng = np.random.default_rng(1)
    x = rng.standard_normal((40_000, 6)).astype(np.float32)  # more rows than one accumulation block
    y = (x @ np.arange(1, 7) + 5.4 + rng.normal(0, 0.1, len(x))).astype(np.float32)
    head = nn.Linear(6, 1)
    fit_ridge(head, x, y, None, None)
    solution = np.linalg.lstsq(np.c_[x, np.ones(len(x))].astype(np.float64), y.astype(np.float64), rcond=None)[0]
    np.testing.assert_allclose(head.weight.detach().numpy()[0], solution[:6], atol=1e-3)
    assert head.bias.item() == pytest.approx(solution[6], abs=1e-3)
