"""minigan.gradcheck as a user tool: it must catch wrong backwards and say which and by how much."""

import re

import numpy as np
import pytest

from minigan import Dense, Sequential, Tanh
from minigan import functional as F
from minigan.backend import to_numpy
from minigan.gradcheck import (
    check_backward,
    check_layer,
    check_loss,
    numerical_gradient,
    rel_error,
)


def _dense_inputs(dev, n=4, d_in=3, d_out=2, seed=0):
    rng = np.random.default_rng(seed)
    return [dev(rng.standard_normal(s)) for s in ((n, d_in), (d_in, d_out), (d_out,))]


def _line(result, name):
    lines = [ln for ln in str(result).splitlines() if ln.strip().startswith(name + " ")]
    assert len(lines) == 1, str(result)
    return lines[0]


# ------------------------------------------------------------ the building blocks


def test_numerical_gradient_matches_calculus(dev, xp):
    rng = np.random.default_rng(0)
    x = dev(rng.uniform(-2, 2, (3, 4)))
    G = dev(rng.standard_normal((3, 4)))
    x_before = to_numpy(x).copy()
    grad = numerical_gradient(lambda: xp.sin(x), x, G)
    np.testing.assert_allclose(to_numpy(grad), np.cos(x_before) * to_numpy(G), rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(to_numpy(x), x_before)  # restored entry by entry
    # A scalar function needs no upstream gradient: d/dx sum(x^3) = 3 x^2.
    grad = numerical_gradient(lambda: (x * x * x).sum(), x)
    np.testing.assert_allclose(to_numpy(grad), 3 * x_before**2, rtol=1e-8)


def test_numerical_gradient_on_a_non_contiguous_view():
    base = np.random.default_rng(1).standard_normal((4, 3))
    x = base.T  # a transposed view: perturbing it must perturb what f reads
    grad = numerical_gradient(lambda: (x**2).sum(), x)
    np.testing.assert_allclose(grad, 2 * x, rtol=1e-8)


def test_rel_error():
    a = np.array([1.0, -2.0, 2.0])
    assert rel_error(a, a) == 0.0
    assert rel_error(a, -a) == pytest.approx(1.0)
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0
    assert rel_error(a, 1.01 * a) == pytest.approx(0.01 / 2.01)


# ------------------------------------------------------------ catching mistakes


def test_correct_backward_passes_with_a_readable_table(dev):
    result = check_backward(F.dense_forward, _dense_inputs(dev))
    assert result.ok and bool(result) and result.wrong() == []
    text = str(result)
    assert text.startswith("Gradient check of dense_forward / dense_backward: passed")
    assert [c.name for c in result.comparisons] == ["dx", "dW", "db"]
    assert _line(result, "dW").rstrip().endswith("ok")
    result.assert_ok()


def test_scaled_dW_is_reported_for_exactly_that_gradient(dev):
    def dense_backward_scaled(dout, cache):
        dx, dW, db = F.dense_backward(dout, cache)
        return dx, 1.01 * dW, db

    result = check_backward(F.dense_forward, _dense_inputs(dev), backward=dense_backward_scaled)
    assert not result.ok
    assert result.wrong() == ["dW"]
    dW = result.comparisons[1]
    # ||1.01 a - a|| / (||1.01 a|| + ||a||) = 0.01 / 2.01 exactly, up to finite differences.
    assert dW.rel_error == pytest.approx(0.01 / 2.01, rel=1e-4)
    assert result.max_rel_error == dW.rel_error
    text = str(result)
    assert "FAILED for dW" in text.splitlines()[0]
    line = _line(result, "dW")
    assert "WRONG" in line and f"{dW.rel_error:9.2e}".strip() in line
    assert str(dW.worst_index) in line
    assert _line(result, "dx").rstrip().endswith("ok") and _line(result, "db").rstrip().endswith("ok")
    with pytest.raises(AssertionError, match="FAILED for dW"):
        result.assert_ok()


def test_batch_averaged_dW_is_caught(dev):
    """A classic slip: dW = x.T @ dout / N, when the loss upstream already averaged."""
    n = 4

    def dense_backward_mean(dout, cache):
        x, W = cache
        return dout @ W.T, x.T @ dout / n, dout.sum(axis=0)

    result = check_backward(F.dense_forward, _dense_inputs(dev, n=n), backward=dense_backward_mean)
    assert result.wrong() == ["dW"]
    assert result.comparisons[1].rel_error == pytest.approx((n - 1) / (n + 1), rel=1e-6)


def test_missing_and_misshapen_gradients_are_named(dev):
    def no_bias(dout, cache):
        dx, dW, _ = F.dense_backward(dout, cache)
        return dx, dW, None

    result = check_backward(F.dense_forward, _dense_inputs(dev), backward=no_bias)
    assert result.wrong() == ["db"]
    assert "missing: the backward returned None" in _line(result, "db")

    def transposed(dout, cache):
        dx, dW, db = F.dense_backward(dout, cache)
        return dx, dW.T, db

    result = check_backward(F.dense_forward, _dense_inputs(dev), backward=transposed)
    assert result.wrong() == ["dW"]
    assert "wrong shape: expected (3, 2) (the input's), got (2, 3)" in _line(result, "dW")

    def two_grads(dout, cache):
        return F.dense_backward(dout, cache)[:2]

    result = check_backward(F.dense_forward, _dense_inputs(dev), backward=two_grads)
    assert not result.ok
    assert "returned 2 gradients for 3 inputs" in str(result)


def test_random_upstream_gradient_catches_what_ones_would_miss(dev):
    """This backward is right only when every entry of dout is equal (e.g. all ones)."""
    def tanh_backward_wrong(dout, cache):
        return (1.0 - cache * cache) * dout.mean()

    x = [dev(np.random.default_rng(3).uniform(-2, 2, (3, 4)))]
    ones = dev(np.ones((3, 4)))
    fooled = check_backward(F.tanh_forward, x, grad_out=ones, backward=tanh_backward_wrong)
    assert fooled.ok, "premise: with an all-ones upstream gradient the bug is invisible"
    result = check_backward(F.tanh_forward, x, backward=tanh_backward_wrong)
    assert result.wrong() == ["dx"], str(result)


def test_wrong_leaky_relu_slope_in_backward(dev):
    def leaky_backward_ignores_slope(dout, cache):
        x, _ = cache
        return dout * (x > 0)

    x = dev(np.array([[-1.0, 0.5, -0.25], [2.0, -3.0, 1.0]]))
    result = check_backward(F.leaky_relu_forward, [x], kwargs={"negative_slope": 0.2},
                            backward=leaky_backward_ignores_slope)
    assert result.wrong() == ["dx"]
    assert result.comparisons[0].worst_index in {(0, 0), (0, 2), (1, 1)}


class ForgetfulDense(Dense):
    """A student's Dense that forgets to accumulate the bias gradient."""

    def backward(self, dout, param_grads=True, input_grad=True):
        cache = self._pop_cache(dout)
        dx, dW, _ = F.dense_backward(dout, cache)
        if param_grads:
            self.grads["W"] += dW
        return dx


def test_check_layer_names_the_wrong_parameter(dev, backend):
    x = dev(np.random.default_rng(0).standard_normal((5, 3)))
    result = check_layer(ForgetfulDense(3, 2, rng=0, backend=backend), x)
    assert result.wrong() == ["db"], str(result)
    assert "WRONG" in _line(result, "db")
    model = Sequential(Dense(3, 4, rng=1, backend=backend), Tanh(), ForgetfulDense(4, 2, rng=2, backend=backend))
    result = check_layer(model, x)
    assert result.wrong() == ["d2.b"], str(result)
    assert [c.name for c in result.comparisons] == ["dx", "d0.W", "d0.b", "d2.W", "d2.b"]


def test_check_layer_leaves_the_layer_alone(dev, backend):
    layer = Dense(3, 2, rng=0, backend=backend)  # float32
    before = {k: to_numpy(v).copy() for k, v in layer.params.items()}
    x = dev(np.random.default_rng(0).standard_normal((4, 3)), "float32")
    assert check_layer(layer, x).ok
    assert layer.dtype == np.float32
    for k, v in layer.params.items():
        np.testing.assert_array_equal(to_numpy(v), before[k])
        assert np.all(to_numpy(layer.grads[k]) == 0)
    with pytest.raises(RuntimeError, match="without a matching forward"):
        layer.backward(dev(np.ones((4, 2)), "float32"))  # no cache left behind either


# --------------------------------------------------------------- misuse


def test_float32_inputs_are_refused_with_an_explanation(dev):
    x32, W32, b32 = (dev(to_numpy(a), "float32") for a in _dense_inputs(dev))
    with pytest.raises(TypeError, match=r"need float64 arrays, but input 0 is float32.*rounding error"):
        check_backward(F.dense_forward, [x32, W32, b32])
    x64 = dev(to_numpy(x32), "float64")
    with pytest.raises(TypeError, match=r"input 1 is float32"):
        check_backward(F.dense_forward, [x64, W32, b32])
    with pytest.raises(TypeError, match=r"pred is float32.*x\.astype\(np\.float64\)"):
        check_loss(F.mse, x32, x32)
    with pytest.raises(TypeError, match="float64"):
        numerical_gradient(lambda: (x32 * x32).sum(), x32)


def test_backward_lookup_needs_a_conventional_name(dev):
    x = dev(np.ones((2, 2)))
    with pytest.raises(ValueError, match=re.escape("pass backward=... explicitly")):
        check_backward(lambda x: (x, None), [x])


# ------------------------------------------------------------- the built-in checks


def test_every_built_in_check_passes_and_covers_the_gan_losses():
    from minigan.gradcheck import builtin_checks

    cases = builtin_checks()
    names = [name for name, _ in cases]
    assert len(set(names)) == len(names)
    for name in ("dense_forward/backward", "NonSaturating()", "Minimax()", "LeastSquares()",
                 "NonSaturating(label_smoothing=0.1)", "Sequential MLP",
                 "GAN generator step through D", "ProjectionDiscriminator",
                 "R1 through a ProjectionDiscriminator (double backward)"):
        assert name in names
    for name, check in cases:
        result = check()
        assert result.ok, f"{name}:\n{result}"


def test_run_checks_prints_a_table_and_counts_the_failures(capsys, monkeypatch):
    from minigan import gan_losses
    from minigan.gradcheck import run_checks

    assert run_checks() == 0
    out = capsys.readouterr().out
    assert "gradient checks passed" in out and "FAILED" not in out

    original = gan_losses.LeastSquares.generator

    def half_gradient(self, fake_out):
        loss, d_fake = original(self, fake_out)
        return loss, 0.5 * d_fake

    monkeypatch.setattr(gan_losses.LeastSquares, "generator", half_gradient)
    assert run_checks(verbose=True) == 1
    out = capsys.readouterr().out
    assert re.search(r"LeastSquares\(\) +[0-9.e+-]+ +FAILED: dL_G/dfake", out), out
    assert "Gradient check of LeastSquares()" in out  # the full table, with --verbose


def test_check_layer_replays_dropout_inside_nested_models(dev):
    from minigan.layers import Dropout, LeakyReLU

    inner = Sequential(Dense(3, 4, rng=1), LeakyReLU(0.2), Dropout(0.5, rng=2))
    model = Sequential(inner, Dense(4, 2, rng=3))
    x = np.random.default_rng(0).standard_normal((5, 3))
    x += np.sign(x) * 0.1
    assert check_layer(model, dev(x)).ok
