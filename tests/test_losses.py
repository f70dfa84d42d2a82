"""Losses: gradient checks, closed forms, stability of BCE on logits, bad input."""

import math
import re
import warnings

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from minigan import BCE, MSE, BCEWithLogits, SoftmaxCrossEntropy
from minigan import functional as F
from minigan.backend import to_numpy
from minigan.gradcheck import check_loss
from minigan.losses import LeastSquares

from gradcheck_strategies import assert_gradcheck, batch, seeds, width


# ------------------------------------------------------------- gradient checks


@pytest.mark.parametrize("soft", [False, True])
@given(n=batch, d=width, seed=seeds)
@example(n=1, d=1, seed=0)
def test_bce_with_logits_gradcheck(dev, soft, n, d, seed):
    rng = np.random.default_rng(seed)
    z = dev(rng.uniform(-6, 6, (n, d)))
    y = dev(rng.uniform(0, 1, (n, d)) if soft else rng.integers(0, 2, (n, d)).astype(float))
    assert_gradcheck(check_loss(F.bce_with_logits, z, y))
    assert_gradcheck(check_loss(BCEWithLogits().value_and_grad, z, y))


@given(n=batch, d=width, seed=seeds)
@example(n=1, d=1, seed=0)
def test_bce_gradcheck(dev, n, d, seed):
    rng = np.random.default_rng(seed)
    p = dev(rng.uniform(0.02, 0.98, (n, d)))
    y = dev(rng.uniform(0, 1, (n, d)))
    assert_gradcheck(check_loss(F.bce, p, y))
    assert_gradcheck(check_loss(BCE().value_and_grad, p, y))


@pytest.mark.parametrize("name", ["mse", "least_squares"])
@given(n=batch, d=width, seed=seeds)
@example(n=1, d=1, seed=0)
def test_squared_losses_gradcheck(dev, name, n, d, seed):
    rng = np.random.default_rng(seed)
    pred, target = dev(rng.standard_normal((n, d))), dev(rng.standard_normal((n, d)))
    cls = {"mse": MSE, "least_squares": LeastSquares}[name]
    assert_gradcheck(check_loss(getattr(F, name), pred, target))
    assert_gradcheck(check_loss(cls().value_and_grad, pred, target))


@pytest.mark.parametrize("targets", ["int", "soft", "unnormalised"])
@given(n=batch, c=st.integers(2, 6), seed=seeds)
@example(n=1, c=2, seed=0)
def test_softmax_cross_entropy_gradcheck(dev, targets, n, c, seed):
    rng = np.random.default_rng(seed)
    z = dev(rng.uniform(-4, 4, (n, c)))
    if targets == "int":
        y = dev(rng.integers(0, c, n))
    elif targets == "soft":
        y = dev(rng.dirichlet(np.ones(c), size=n))
    else:  # any non-negative weights, as torch.nn.CrossEntropyLoss accepts
        y = dev(rng.uniform(0, 2, (n, c)))
    assert_gradcheck(check_loss(F.softmax_cross_entropy, z, y))
    assert_gradcheck(check_loss(SoftmaxCrossEntropy().value_and_grad, z, y))


# ---------------------------------------------------------------- closed forms


def _data(seed=0, shape=(6, 3)):
    rng = np.random.default_rng(seed)
    return rng.uniform(-5, 5, shape), rng.uniform(0, 1, shape), rng.uniform(0.01, 0.99, shape)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_losses_match_closed_form(dev, dtype):
    z, y, p = _data()
    z, y, p = (a.astype(dtype).astype(np.float64) for a in (z, y, p))  # exactly what is passed
    tol = {"float32": dict(rtol=2e-6, atol=1e-7), "float64": dict(rtol=1e-12, atol=1e-15)}[dtype]
    n = z.size
    s = 1.0 / (1.0 + np.exp(-z))
    cases = [
        (BCEWithLogits, z, y, np.mean(-y * np.log(s) - (1 - y) * np.log(1 - s)), (s - y) / n),
        (BCE, p, y, np.mean(-y * np.log(p) - (1 - y) * np.log(1 - p)),
         (-y / p + (1 - y) / (1 - p)) / n),
        (MSE, z, y, np.mean((z - y) ** 2), 2 * (z - y) / n),
        (LeastSquares, z, y, 0.5 * np.mean((z - y) ** 2), (z - y) / n),
    ]
    for cls, pred, target, loss, grad in cases:
        crit = cls()
        value = crit.forward(dev(pred, dtype), dev(target, dtype))
        assert type(value) is float, f"{cls.__name__}.forward returned {type(value)}"
        np.testing.assert_allclose(value, loss, **tol, err_msg=cls.__name__)
        g = crit.backward()
        assert g.dtype == np.dtype(dtype), f"{cls.__name__} gradient is {g.dtype}"
        np.testing.assert_allclose(to_numpy(g), grad, **tol, err_msg=cls.__name__)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_cross_entropy_closed_form(dev, dtype):
    rng = np.random.default_rng(4)
    z = rng.uniform(-5, 5, (5, 4)).astype(dtype).astype(np.float64)
    labels = np.array([0, 3, 1, 1, 2])
    q = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    onehot = np.eye(4)[labels]
    tol = {"float32": dict(rtol=2e-6, atol=1e-7), "float64": dict(rtol=1e-12, atol=1e-15)}[dtype]

    crit = SoftmaxCrossEntropy()
    loss = crit.forward(dev(z, dtype), dev(labels))
    np.testing.assert_allclose(loss, -np.mean(np.log(q[np.arange(5), labels])), **tol)
    g = crit.backward()
    assert g.dtype == np.dtype(dtype)
    np.testing.assert_allclose(to_numpy(g), (q - onehot) / 5, **tol)
    # Soft targets that are one-hot give the same numbers as the labels.
    loss_soft = crit.forward(dev(z, dtype), dev(onehot, dtype))
    np.testing.assert_allclose(loss_soft, loss, **tol)
    np.testing.assert_allclose(to_numpy(crit.backward()), to_numpy(g), **tol)
    # Label smoothing: y = 0.9 onehot + 0.1 / C.
    smooth = 0.9 * onehot + 0.1 / 4
    loss_s = crit.forward(dev(z, dtype), dev(smooth, dtype))
    np.testing.assert_allclose(loss_s, -np.mean(np.sum(smooth * np.log(q), axis=1)), **tol)
    np.testing.assert_allclose(to_numpy(crit.backward()), (q - smooth) / 5, **tol)


def test_softmax_cross_entropy_is_stable_for_huge_logits(dev):
    z = dev([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]])
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        loss, g = F.softmax_cross_entropy(z, dev(np.array([1, 2])))
    # Row 0: log q_1 = -1e4 - 1e4 = -2e4; row 1: log q_2 = 0 (to double precision).
    assert float(loss) == pytest.approx(1e4)
    np.testing.assert_allclose(to_numpy(g), [[0.5, -0.5, 0.0], [0.0, 0.0, 0.0]], atol=1e-300)


# ------------------------------------------------------ BCE on logits, stability


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bce_with_logits_is_finite_and_exact_at_huge_logits(dev, dtype):
    # l(z, y) = max(z, 0) - z y + log(1 + e^-|z|); at |z| = 1e4 the last term is
    # e^-10000, far below any float's resolution of the rest, so analytically:
    z = np.array([1e4, -1e4, 1e4, -1e4, 1e4, -1e4])
    y = np.array([0.0, 1.0, 1.0, 0.0, 0.3, 0.9])
    per_entry = np.array([1e4, 1e4, 0.0, 0.0, 7e3, 9e3])
    # ds/dz (s - y) / n with s(1e4) = 1 and s(-1e4) = 0 (e^-10000 again):
    grad = (np.array([1.0, 0.0, 1.0, 0.0, 1.0, 0.0]) - y) / 6
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow or divide-by-zero warnings either
        crit = BCEWithLogits()
        value = crit.forward(dev(z, dtype), dev(y, dtype))
        g = crit.backward()
    assert math.isfinite(value)
    np.testing.assert_allclose(value, per_entry.mean(), rtol=1e-6)
    assert g.dtype == np.dtype(dtype)
    assert np.all(np.isfinite(to_numpy(g)))
    np.testing.assert_allclose(to_numpy(g), grad, rtol=1e-6, atol=1e-12)


def test_bce_with_logits_at_50(dev):
    # log(1 + e^-50) = 1.9287498479639178e-22 to double precision (log1p(t) = t - t^2/2 ...).
    tail = math.exp(-50.0)
    z = dev([50.0, -50.0, 50.0, -50.0])
    y = dev([1.0, 0.0, 0.25, 0.75])
    loss, g = F.bce_with_logits(z, y)
    expected = np.array([tail, tail, 50 - 12.5 + tail, 50 * 0.75 + tail])
    np.testing.assert_allclose(float(loss), expected.mean(), rtol=1e-14)
    s_pos, s_neg = 1.0 / (1.0 + tail), tail / (1.0 + tail)
    np.testing.assert_allclose(
        to_numpy(g), np.array([s_pos - 1, s_neg, s_pos - 0.25, s_neg - 0.75]) / 4, rtol=1e-12)
    # The tiny per-entry loss of a confident right answer is resolved, not rounded to 0.
    loss_one, _ = F.bce_with_logits(dev([50.0]), dev([1.0]))
    np.testing.assert_allclose(float(loss_one), tail, rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@given(seed=seeds)
def test_bce_with_logits_equals_bce_of_sigmoid(dev, dtype, seed):
    rng = np.random.default_rng(seed)
    z = rng.uniform(-8, 8, (4, 3)).astype(dtype)
    y = rng.uniform(0, 1, (4, 3)).astype(dtype)
    zd, yd = dev(z), dev(y)
    p = F.sigmoid(zd)
    loss_logits, dz = F.bce_with_logits(zd, yd)
    loss_probs, dp = F.bce(p, yd)
    # float32: both paths round differently by a few ulp of terms up to ~8.
    rtol = {"float32": 1e-5, "float64": 1e-11}[dtype]
    np.testing.assert_allclose(float(loss_logits), float(loss_probs), rtol=rtol)
    # Chain rule through the sigmoid: dL/dz = dL/dp * p (1 - p).
    pn = to_numpy(p)
    np.testing.assert_allclose(to_numpy(dz), to_numpy(dp) * pn * (1 - pn), rtol=rtol, atol=1e-7 * rtol)


def test_bce_on_saturated_probabilities_is_clamped_not_infinite(dev):
    """The teaching BCE clamps log at -100 (PyTorch's BCELoss convention)."""
    with np.errstate(divide="ignore"):
        loss, g = F.bce(dev([0.0, 1.0]), dev([1.0, 0.0]))
    assert float(loss) == pytest.approx(100.0)
    assert np.all(np.isfinite(to_numpy(g)))


# --------------------------------------------------------------- bad input


LOSSES = [BCEWithLogits, BCE, MSE, LeastSquares, SoftmaxCrossEntropy]


@pytest.mark.parametrize("cls", LOSSES, ids=lambda c: c.__name__)
def test_mismatched_target_shape_is_refused(dev, cls):
    pred = dev(np.full((4, 1), 0.5), "float32")
    shape = (4, 2) if cls is SoftmaxCrossEntropy else (4,)  # 1-D would be class labels for CE
    target = dev(np.full(shape, 0.5), "float32")
    pattern = r"predictions have shape \(4, 1\) but targets have shape " + re.escape(str(shape))
    with pytest.raises(ValueError, match=pattern):
        cls().forward(pred, target)


def test_softmax_cross_entropy_label_errors(dev):
    z = dev(np.zeros((3, 4)), "float32")
    with pytest.raises(ValueError, match="2 labels for 3 rows"):
        SoftmaxCrossEntropy().forward(z, dev(np.array([0, 1])))
    with pytest.raises(TypeError, match="class labels must be integers.*float32"):
        SoftmaxCrossEntropy().forward(z, dev(np.array([0.0, 1.0, 2.0], np.float32)))
    with pytest.raises(ValueError, match=r"\(N, C\).*\(3,\)"):
        SoftmaxCrossEntropy().forward(dev(np.zeros(3), "float32"), dev(np.array([0, 1, 2])))


@pytest.mark.parametrize("cls", LOSSES, ids=lambda c: c.__name__)
def test_loss_input_errors(dev, cls):
    crit = cls()
    with pytest.raises(RuntimeError, match=r"backward\(\) was called before forward\(\)"):
        crit.backward()
    pred = dev(np.full((2, 3), 0.5), "float32")
    target = dev(np.full((2, 3), 0.25), "float32")
    with pytest.raises(TypeError, match="must have a floating dtype.*int64"):
        crit.forward(dev(np.ones((2, 3), np.int64)), target)
    with pytest.raises(TypeError, match="must be a NumPy or CuPy array, got list"):
        crit.forward([[0.5, 0.5, 0.5]] * 2, target)
    with pytest.raises(TypeError, match="targets are float64 but predictions are float32"):
        crit.forward(pred, dev(np.full((2, 3), 0.25), "float64"))
    crit.forward(pred, target)
    crit.backward()
    with pytest.raises(RuntimeError, match="before forward"):
        crit.backward()  # the gradient is used once, like a layer's cache


@pytest.mark.parametrize("cls", LOSSES, ids=lambda c: c.__name__)
def test_losses_do_not_mutate_inputs(dev, cls):
    pred = dev(np.random.default_rng(0).uniform(0.1, 0.9, (3, 2)))
    target = dev(np.random.default_rng(1).dirichlet([1, 1], size=3))
    copies = [pred.copy(), target.copy()]
    for a in (pred, target):
        if isinstance(a, np.ndarray):
            a.flags.writeable = False
    crit = cls()
    crit.forward(pred, target)
    g = crit.backward()
    g += 1.0  # the returned gradient is the caller's to modify
    np.testing.assert_array_equal(to_numpy(pred), to_numpy(copies[0]))
    np.testing.assert_array_equal(to_numpy(target), to_numpy(copies[1]))
