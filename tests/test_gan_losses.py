"""The adversarial losses: each half's value against its formula, each gradient
against central differences in float64, on both backends."""

from __future__ import annotations

import numpy as np
import pytest

import minigan.backend as mb
from minigan.gan_losses import Hinge, LeastSquares, Minimax, NonSaturating, Wasserstein
from minigan.gradcheck import compare, numerical_gradient

LOSSES = [NonSaturating(), NonSaturating(label_smoothing=0.2), Minimax(), LeastSquares(),
          Wasserstein(), Hinge()]


def _softplus(x):
    return np.logaddexp(0.0, x)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _outputs(n, seed, dtype="float64", scale=3.0):
    return np.random.default_rng(seed).normal(0, scale, (n, 1)).astype(dtype)


@pytest.mark.parametrize("loss", LOSSES, ids=repr)
def test_discriminator_gradients_match_finite_differences(loss):
    real, fake = _outputs(7, 0), _outputs(5, 1)
    _, d_real, d_fake = loss.discriminator(real, fake)
    for name, x, analytic in (("d_real", real, d_real), ("d_fake", fake, d_fake)):
        numeric = numerical_gradient(lambda: float(loss.discriminator(real, fake)[0]), x)
        result = compare(name, analytic, numeric)
        assert result.ok, result.line()
        assert np.abs(analytic).max() > 1e-3  # not trivially zero


@pytest.mark.parametrize("loss", LOSSES, ids=repr)
def test_generator_gradient_matches_finite_differences(loss):
    fake = _outputs(6, 2)
    _, d_fake = loss.generator(fake)
    numeric = numerical_gradient(lambda: float(loss.generator(fake)[0]), fake)
    result = compare("d_fake", d_fake, numeric)
    assert result.ok, result.line()
    # and the check can fail: a gradient off by a factor is caught
    assert not compare("d_fake", 1.01 * d_fake, numeric).ok


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_generator_loss_formulas(dtype):
    logits = np.random.default_rng(5).normal(0, 4, (9, 1)).astype(dtype)
    logits[0, 0], logits[1, 0] = -30.0, 30.0   # D sure of "fake" / sure of "real"
    l64, n = logits.astype(np.float64), logits.size
    tol = dict(rtol=1e-5, atol=1e-7) if dtype == "float32" else dict(rtol=1e-12, atol=1e-15)

    loss, dl = NonSaturating().generator(logits)
    assert dl.dtype == np.dtype(dtype)
    np.testing.assert_allclose(float(loss), _softplus(-l64).mean(), **tol)
    np.testing.assert_allclose(dl, (_sigmoid(l64) - 1.0) / n, **tol)
    assert dl[0, 0] == pytest.approx(-1.0 / n, rel=1e-6)   # does not saturate

    loss, dl = Minimax().generator(logits)
    assert dl.dtype == np.dtype(dtype)
    np.testing.assert_allclose(float(loss), -_softplus(l64).mean(), **tol)
    np.testing.assert_allclose(dl, -_sigmoid(l64) / n, **tol)
    assert abs(dl[0, 0]) < 1e-12                              # saturates: no gradient

    loss, dl = LeastSquares().generator(logits)
    np.testing.assert_allclose(float(loss), 0.5 * np.mean((l64 - 1) ** 2), **tol)
    np.testing.assert_allclose(dl, (l64 - 1) / n, **tol)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_discriminator_loss_formulas(smoothing):
    real, fake = _outputs(8, 3), _outputs(4, 4)
    y = 1 - smoothing
    for loss in (NonSaturating(smoothing), Minimax(smoothing)):
        value, d_real, d_fake = loss.discriminator(real, fake)
        expected = np.mean(_softplus(real) - real * y) + np.mean(_softplus(fake))
        assert float(value) == pytest.approx(expected, rel=1e-12)
        np.testing.assert_allclose(d_real, (_sigmoid(real) - y) / 8, rtol=1e-12)
        np.testing.assert_allclose(d_fake, _sigmoid(fake) / 4, rtol=1e-12)
    value, d_real, d_fake = LeastSquares().discriminator(real, fake)
    assert float(value) == pytest.approx(0.5 * np.mean((real - 1) ** 2) + 0.5 * np.mean(fake ** 2))
    np.testing.assert_allclose(d_real, (real - 1) / 8)
    np.testing.assert_allclose(d_fake, fake / 4)


@pytest.mark.parametrize("loss", LOSSES, ids=repr)
def test_losses_keep_the_dtype_and_backend(backend, loss):
    real = mb.to_device(_outputs(6, 5, "float32"), backend)
    fake = mb.to_device(_outputs(6, 6, "float32"), backend)
    value, d_real, d_fake = loss.discriminator(real, fake)
    g_value, g_fake = loss.generator(fake)
    for g in (d_real, d_fake, g_fake):
        assert g.dtype == np.float32 and mb.backend_of(g) == backend
    assert mb.backend_of(loss.score(real)) == backend
    # the same numbers as on NumPy in float64, to float32 precision
    ref = loss.discriminator(_outputs(6, 5), _outputs(6, 6))
    assert float(value) == pytest.approx(float(ref[0]), rel=1e-5)


def test_score_is_a_probability_for_cross_entropy_and_the_raw_output_for_least_squares():
    out = np.array([[-40.0], [0.0], [40.0]])
    np.testing.assert_allclose(NonSaturating().score(out), [[0.0], [0.5], [1.0]], atol=1e-15)
    assert LeastSquares().score(out) is out
    assert Wasserstein().score(out) is out and Hinge().score(out) is out


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_wasserstein_formulas(dtype):
    real, fake = _outputs(8, 20, dtype), _outputs(5, 21, dtype)
    r64, f64 = real.astype(np.float64), fake.astype(np.float64)
    value, d_real, d_fake = Wasserstein().discriminator(real, fake)
    assert d_real.dtype == d_fake.dtype == np.dtype(dtype)
    assert float(value) == pytest.approx(f64.mean() - r64.mean(), rel=1e-6, abs=1e-6)
    np.testing.assert_array_equal(d_real, np.full((8, 1), -1 / 8, dtype))  # whatever D says
    np.testing.assert_array_equal(d_fake, np.full((5, 1), 1 / 5, dtype))
    g_value, g_fake = Wasserstein().generator(fake)
    assert float(g_value) == pytest.approx(-f64.mean(), rel=1e-6, abs=1e-6)
    np.testing.assert_array_equal(g_fake, np.full((5, 1), -1 / 5, dtype))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_hinge_formulas(dtype):
    real = np.array([[3.0], [1.5], [0.5], [-2.0]], dtype)    # two past the margin +1
    fake = np.array([[-4.0], [-0.5], [2.0]], dtype)           # one past the margin -1
    value, d_real, d_fake = Hinge().discriminator(real, fake)
    r64, f64 = real.astype(np.float64), fake.astype(np.float64)
    expected = np.maximum(1 - r64, 0).mean() + np.maximum(1 + f64, 0).mean()
    assert float(value) == pytest.approx(expected, rel=1e-6)
    assert d_real.dtype == d_fake.dtype == np.dtype(dtype)
    # samples past their margin get no gradient; the others -1/n (real), +1/n (fake)
    np.testing.assert_array_equal(d_real, np.array([[0], [0], [-1 / 4], [-1 / 4]], dtype))
    np.testing.assert_array_equal(d_fake, np.array([[0], [1 / 3], [1 / 3]], dtype))
    g_value, g_fake = Hinge().generator(fake)
    assert float(g_value) == pytest.approx(-f64.mean(), rel=1e-6)
    np.testing.assert_array_equal(g_fake, np.full((3, 1), -1 / 3, dtype))


def test_hinge_gradients_off_the_margins_match_finite_differences():
    """Scores on both sides of each margin (kept 0.05 away from +-1, the kinks)."""
    rng = np.random.default_rng(22)
    real = rng.uniform(-3, 3, (40, 1))
    fake = rng.uniform(-3, 3, (30, 1))
    for out, kink in ((real, 1.0), (fake, -1.0)):
        near = np.abs(out - kink) < 0.05
        out[near] += 0.1
    assert (real < 1).any() and (real > 1).any() and (fake > -1).any() and (fake < -1).any()
    _, d_real, d_fake = Hinge().discriminator(real, fake)
    for name, x, analytic in (("d_real", real, d_real), ("d_fake", fake, d_fake)):
        numeric = numerical_gradient(lambda: float(Hinge().discriminator(real, fake)[0]), x)
        result = compare(name, analytic, numeric)
        assert result.ok, result.line()
        # a hinge without its margins (every sample pushed, as in WGAN) is caught
        everyone = np.full_like(analytic, (-1.0 if name == "d_real" else 1.0) / len(x))
        assert not compare(name, everyone, numeric).ok


def test_bad_arguments_are_explained():
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\).*got 1.0"):
        NonSaturating(label_smoothing=1.0)
    two_outputs = np.zeros((4, 2))
    for loss in LOSSES:
        with pytest.raises(ValueError, match=r"shape \(n, 1\).*got \(4, 2\)"):
            loss.generator(two_outputs)
        with pytest.raises(ValueError, match=r"shape \(n, 1\).*got \(4, 2\)"):
            loss.discriminator(two_outputs, two_outputs)
