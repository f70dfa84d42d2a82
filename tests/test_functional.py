"""minigan.functional: gradient checks, closed-form forwards, purity and dtypes;
and minigan.kernels, the dispatch in front of it, under the same contracts.

Every test body runs on each backend (the ``backend`` fixture, see conftest.py).
Reference values are written here independently in NumPy (float64), never by
calling the code under test.
"""

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from minigan import functional as F
from minigan import kernels
from minigan.backend import to_numpy
from minigan.gradcheck import check_backward

from gradcheck_strategies import assert_gradcheck, batch, seeds, width

slopes = st.floats(-1.0, 3.0, allow_nan=False)


def off_kinks(rng, shape, low=1e-3):
    """Random values with |x| >= low (kinks of relu/leaky relu at 0 stay out of reach)."""
    magnitude = 10.0 ** rng.uniform(np.log10(low), 0.5, size=shape)
    return magnitude * rng.choice([-1.0, 1.0], size=shape)


# ------------------------------------------------------------- gradient checks


@given(n=batch, d_in=width, d_out=width, seed=seeds)
@example(n=1, d_in=1, d_out=1, seed=0)
def test_dense_gradcheck(dev, n, d_in, d_out, seed):
    rng = np.random.default_rng(seed)
    x, W, b = (dev(rng.standard_normal(s)) for s in ((n, d_in), (d_in, d_out), (d_out,)))
    assert_gradcheck(check_backward(F.dense_forward, [x, W, b], seed=seed))


@given(n=batch, d=width, seed=seeds)
@example(n=1, d=1, seed=0)
def test_relu_gradcheck(dev, n, d, seed):
    x = dev(off_kinks(np.random.default_rng(seed), (n, d)))
    assert_gradcheck(check_backward(F.relu_forward, [x], seed=seed))


@given(n=batch, d=width, slope=slopes, seed=seeds)
@example(n=1, d=3, slope=0.2, seed=0)
@example(n=2, d=2, slope=0.0, seed=1)
def test_leaky_relu_gradcheck(dev, n, d, slope, seed):
    x = dev(off_kinks(np.random.default_rng(seed), (n, d)))
    result = check_backward(F.leaky_relu_forward, [x], kwargs={"negative_slope": slope}, seed=seed)
    assert_gradcheck(result)


@pytest.mark.parametrize("op", ["sigmoid", "tanh"])
@given(n=batch, d=width, seed=seeds)
@example(n=1, d=1, seed=0)
def test_smooth_activation_gradcheck(dev, op, n, d, seed):
    # |x| <= 4: further out the derivative (~e^-|x|) drops below the finite
    # difference's rounding noise and the relative error measures only that noise.
    x = dev(np.random.default_rng(seed).uniform(-4.0, 4.0, (n, d)))
    forward = getattr(F, f"{op}_forward")
    assert_gradcheck(check_backward(forward, [x], seed=seed))


@given(n=batch, d=width, p=st.floats(0.05, 0.9), seed=seeds)
@example(n=1, d=1, p=0.5, seed=0)
def test_dropout_gradcheck_with_fixed_mask(dev, n, d, p, seed):
    rng = np.random.default_rng(seed)
    x = dev(rng.standard_normal((n, d)))
    mask = dev((rng.random((n, d)) >= p) / (1.0 - p))
    result = check_backward(F.dropout_forward, [x], kwargs={"p": p, "mask": mask}, seed=seed)
    assert_gradcheck(result)
    # Evaluation mode is the identity, whose gradient is dout itself.
    result = check_backward(F.dropout_forward, [x], kwargs={"p": p, "train": False}, seed=seed)
    assert_gradcheck(result)


@given(n=st.integers(3, 6), d=width, seed=seeds)
@example(n=3, d=1, seed=0)
def test_batchnorm_train_gradcheck(dev, n, d, seed):
    rng = np.random.default_rng(seed)
    x = dev(rng.normal(rng.uniform(-2, 2), rng.uniform(0.3, 3), size=(n, d)))
    gamma, beta = dev(rng.uniform(0.5, 2.0, d)), dev(rng.standard_normal(d))
    result = check_backward(F.batchnorm_forward, [x, gamma, beta], kwargs={"train": True},
                            names=["dx", "dgamma", "dbeta"], seed=seed)
    assert_gradcheck(result)


@given(d=width, seed=seeds)
def test_batchnorm_train_gradcheck_batch_of_two(dev, d, seed):
    """With 2 samples xhat = +-1 whatever x is, so dx is only O(eps / var): every entry
    must still pass, and dgamma, dbeta are checked to the usual relative error (the
    relative error of a gradient that is ~0 measures only finite-difference noise)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, size=(2, d))
    x[1] = x[0] + rng.choice([-1, 1], size=d) * rng.uniform(0.5, 3.0, size=d)
    gamma, beta = dev(rng.uniform(0.5, 2.0, d)), dev(rng.standard_normal(d))
    result = check_backward(F.batchnorm_forward, [dev(x), gamma, beta], kwargs={"train": True},
                            names=["dx", "dgamma", "dbeta"], seed=seed)
    assert result.ok, str(result)
    errors = {c.name: c.rel_error for c in result.comparisons}
    assert errors["dgamma"] < 1e-6 and errors["dbeta"] < 1e-6, str(result)
    # dx in closed form: with delta = (x0 - x1) / 2, xhat0 = delta / sqrt(delta^2 + eps)
    # = -xhat1, so dL/dx0 = -dL/dx1 = gamma (g0 - g1) eps / (2 (delta^2 + eps)^(3/2)).
    g = np.random.default_rng(seed + 1).standard_normal((2, d))
    out, cache = F.batchnorm_forward(dev(x), gamma, beta, train=True, eps=1e-5)
    dx = to_numpy(F.batchnorm_backward(dev(g), cache)[0])
    delta = (x[0] - x[1]) / 2
    dx0 = to_numpy(gamma) * (g[0] - g[1]) * 1e-5 / (2 * (delta**2 + 1e-5) ** 1.5)
    np.testing.assert_allclose(dx, np.stack([dx0, -dx0]), rtol=1e-6, atol=1e-15)


@given(n=batch, d=width, seed=seeds)
@example(n=1, d=1, seed=0)
def test_batchnorm_eval_gradcheck(dev, n, d, seed):
    rng = np.random.default_rng(seed)
    x = dev(rng.standard_normal((n, d)))
    gamma, beta = dev(rng.uniform(0.5, 2.0, d)), dev(rng.standard_normal(d))
    kwargs = {"train": False, "running_mean": dev(rng.standard_normal(d)),
              "running_var": dev(rng.uniform(0.2, 3.0, d))}
    result = check_backward(F.batchnorm_forward, [x, gamma, beta], kwargs=kwargs,
                            names=["dx", "dgamma", "dbeta"], seed=seed)
    assert_gradcheck(result)


# ---------------------------------------------------- forwards in closed form


def np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))  # only for moderate x, where it is exact enough


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_forwards_match_closed_form(dev, dtype):
    rng = np.random.default_rng(7)
    tol = {"float32": dict(rtol=2e-6, atol=1e-6), "float64": dict(rtol=1e-13, atol=1e-14)}[dtype]
    x64 = rng.uniform(-6, 6, size=(4, 5))
    x = dev(x64, dtype)
    xr = to_numpy(x).astype(np.float64)  # the exact values the library sees
    W = rng.standard_normal((5, 3))
    b = rng.standard_normal(3)
    out, _ = F.dense_forward(x, dev(W, dtype), dev(b, dtype))
    Wr, br = W.astype(dtype).astype(np.float64), b.astype(dtype).astype(np.float64)
    expected = np.einsum("ni,io->no", xr, Wr) + br
    # A sum of k products rounded at each step is off by at most about
    # k * eps * sum |terms| (Higham's bound; k = 6 terms here, the bias included).
    bound = 6 * np.finfo(dtype).eps * (np.abs(xr) @ np.abs(Wr) + np.abs(br))
    assert to_numpy(out).dtype == np.dtype(dtype)
    assert np.all(np.abs(to_numpy(out) - expected) <= bound)

    np.testing.assert_array_equal(to_numpy(F.relu_forward(x)[0]), np.where(xr > 0, xr, 0.0))
    for slope in (0.01, 0.2, 0.0, 1.5, -0.3):
        got = to_numpy(F.leaky_relu_forward(x, slope)[0])
        np.testing.assert_allclose(got, np.where(xr > 0, xr, slope * xr), **tol)
    np.testing.assert_allclose(to_numpy(F.sigmoid_forward(x)[0]), np_sigmoid(xr), **tol)
    np.testing.assert_allclose(to_numpy(F.sigmoid(x)), np_sigmoid(xr), **tol)
    e2x = np.exp(2.0 * xr)
    np.testing.assert_allclose(to_numpy(F.tanh_forward(x)[0]), (e2x - 1.0) / (e2x + 1.0), **tol)


def test_sigmoid_is_finite_and_saturates_for_huge_inputs(dev):
    x = dev([-1e4, -800.0, -50.0, 0.0, 50.0, 800.0, 1e4])
    with np.errstate(over="raise", divide="raise", invalid="raise"):  # underflow to 0 is fine
        s = to_numpy(F.sigmoid(x))
    assert np.all(np.isfinite(s))
    np.testing.assert_array_equal(s[[0, 1, -2, -1]], [0.0, 0.0, 1.0, 1.0])
    assert s[3] == 0.5
    # sigmoid(-50) = 1 / (1 + e^50) ~ 1.9e-22: the small tail keeps its relative
    # precision, it is not rounded to zero (nor to a multiple of float eps).
    np.testing.assert_allclose(s[2], 1.0 / (1.0 + np.exp(50.0)), rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sigmoid_keeps_relative_precision_in_both_tails(dev, dtype):
    x = np.linspace(-80.0, 80.0, 1601)
    s = to_numpy(F.sigmoid(dev(x, dtype)))
    xr = x.astype(dtype).astype(np.float64)
    # 1/(1+exp(-x)) is accurate to a few ulp in float64 for every |x| <= 80.
    expected = (1.0 / (1.0 + np.exp(-xr))).astype(dtype)
    ulp = np.spacing(np.abs(expected).astype(dtype)).astype(np.float64)
    assert np.all(np.abs(s.astype(np.float64) - expected) <= 2 * ulp)


@pytest.mark.parametrize("train", [True, False])
def test_batchnorm_forward_matches_closed_form(dev, train):
    rng = np.random.default_rng(3)
    x = rng.normal(2.0, 3.0, size=(8, 4))
    gamma, beta = rng.uniform(0.5, 2, 4), rng.standard_normal(4)
    rm, rv = rng.standard_normal(4), rng.uniform(0.5, 2, 4)
    eps = 1e-5
    out, cache = F.batchnorm_forward(dev(x), dev(gamma), dev(beta), train=train,
                                     running_mean=dev(rm), running_var=dev(rv), eps=eps)
    if train:
        mu = x.sum(axis=0) / 8
        var = ((x - mu) ** 2).sum(axis=0) / 8  # biased
    else:
        mu, var = rm, rv
    expected = gamma * (x - mu) / np.sqrt(var + eps) + beta
    np.testing.assert_allclose(to_numpy(out), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(to_numpy(cache["mean"]), mu, rtol=1e-12)
    np.testing.assert_allclose(to_numpy(cache["var"]), var, rtol=1e-12)


def test_batchnorm_rejects_batch_of_one_in_training(dev):
    x, g, b = dev(np.ones((1, 3))), dev(np.ones(3)), dev(np.zeros(3))
    with pytest.raises(ValueError, match=r"at least 2 samples.*\(1, 3\)"):
        F.batchnorm_forward(x, g, b, train=True)
    with pytest.raises(ValueError, match="running_mean and running_var"):
        F.batchnorm_forward(x, g, b, train=False)


def test_dropout_forward_values(dev):
    p = 0.3
    x = dev(np.random.default_rng(0).standard_normal((50, 40)), "float32")
    out, mask = F.dropout_forward(x, p, rng=123)
    out, mask, xr = to_numpy(out), to_numpy(mask), to_numpy(x)
    scale = np.float32(1.0 / (1.0 - p))
    assert set(np.unique(mask)) <= {np.float32(0.0), scale}
    kept = mask != 0
    np.testing.assert_array_equal(out[kept], xr[kept] * scale)
    np.testing.assert_array_equal(out[~kept], 0.0)
    # The same seed gives the same mask; a different seed another one.
    np.testing.assert_array_equal(to_numpy(F.dropout_forward(x, p, rng=123)[1]), mask)
    assert not np.array_equal(to_numpy(F.dropout_forward(x, p, rng=124)[1]), mask)
    # Evaluation mode and p = 0: the identity.
    np.testing.assert_array_equal(to_numpy(F.dropout_forward(x, p, train=False)[0]), xr)
    np.testing.assert_array_equal(to_numpy(F.dropout_forward(x, 0.0)[0]), xr)
    with pytest.raises(ValueError, match=r"mask has shape \(3, 3\), expected \(50, 40\)"):
        F.dropout_forward(x, p, mask=dev(np.ones((3, 3), np.float32)))
    with pytest.raises(ValueError, match=r"\[0, 1\), got 1.0"):
        F.dropout_forward(x, 1.0)


def test_dropout_mask_statistics(xp):
    p, n = 0.25, 400_000
    mask = F.dropout_mask((n,), p, rng=np.random.default_rng(5), xp=xp)
    mask = to_numpy(mask)
    zero_fraction = float(np.mean(mask == 0))
    sigma = np.sqrt(p * (1 - p) / n)  # binomial standard error
    assert abs(zero_fraction - p) < 5 * sigma, zero_fraction
    assert abs(float(mask.astype(np.float64).mean()) - 1.0) < 5 * sigma / (1 - p)


# --------------------------------------- purity: no mutation, repeatable backward


def _ops(dev, dtype):
    """(name, forward thunk, backward) for every forward/backward pair, inputs on the backend."""
    rng = np.random.default_rng(11)
    x = dev(off_kinks(rng, (4, 3)), dtype)
    W, b = dev(rng.standard_normal((3, 2)), dtype), dev(rng.standard_normal(2), dtype)
    gamma, beta = dev(rng.uniform(0.5, 2, 3), dtype), dev(rng.standard_normal(3), dtype)
    rm, rv = dev(rng.standard_normal(3), dtype), dev(rng.uniform(0.5, 2, 3), dtype)
    mask = dev((rng.random((4, 3)) > 0.5) * 2.0, dtype)
    return [
        ("dense", lambda: F.dense_forward(x, W, b), F.dense_backward, (x, W, b)),
        ("relu", lambda: F.relu_forward(x), F.relu_backward, (x,)),
        ("leaky_relu", lambda: F.leaky_relu_forward(x, 0.2), F.leaky_relu_backward, (x,)),
        ("leaky_relu>1", lambda: F.leaky_relu_forward(x, 1.5), F.leaky_relu_backward, (x,)),
        ("sigmoid", lambda: F.sigmoid_forward(x), F.sigmoid_backward, (x,)),
        ("tanh", lambda: F.tanh_forward(x), F.tanh_backward, (x,)),
        ("dropout", lambda: F.dropout_forward(x, 0.5, mask=mask), F.dropout_backward, (x, mask)),
        ("dropout-seeded", lambda: F.dropout_forward(x, 0.5, rng=3), F.dropout_backward, (x,)),
        ("dropout-eval", lambda: F.dropout_forward(x, 0.5, train=False), F.dropout_backward, (x,)),
        ("batchnorm-train", lambda: F.batchnorm_forward(x, gamma, beta, train=True),
         F.batchnorm_backward, (x, gamma, beta)),
        ("batchnorm-eval", lambda: F.batchnorm_forward(
            x, gamma, beta, train=False, running_mean=rm, running_var=rv),
         F.batchnorm_backward, (x, gamma, beta, rm, rv)),
        # the dispatch keeps the same contracts (fused kernels on CuPy)
        ("kernels.relu", lambda: kernels.relu_forward(x), kernels.relu_backward, (x,)),
        ("kernels.leaky_relu", lambda: kernels.leaky_relu_forward(x, 0.2),
         kernels.leaky_relu_backward, (x,)),
        ("kernels.sigmoid", lambda: kernels.sigmoid_forward(x), kernels.sigmoid_backward, (x,)),
        ("kernels.tanh", lambda: kernels.tanh_forward(x), kernels.tanh_backward, (x,)),
    ]


def _as_tuple(g):
    return g if isinstance(g, tuple) else (g,)


def _freeze(arrays):
    """Copies to compare against; NumPy inputs are also made read-only to prove no writes."""
    copies = [a.copy() for a in arrays]
    for a in arrays:
        if isinstance(a, np.ndarray):
            a.flags.writeable = False
    return copies


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_forward_and_backward_are_pure_and_repeatable(dev, dtype):
    for name, forward, backward, inputs in _ops(dev, dtype):
        before = _freeze(inputs)
        out, cache = forward()
        for a, c in zip(inputs, before):
            np.testing.assert_array_equal(to_numpy(a), to_numpy(c), err_msg=f"{name} forward mutated an input")
        dout = dev(np.random.default_rng(1).standard_normal(out.shape), dtype)
        dout_copy = _freeze([dout])[0]
        first = [g.copy() for g in _as_tuple(backward(dout, cache))]
        second = _as_tuple(backward(dout, cache))
        assert len(first) == len(second)
        for g1, g2 in zip(first, second):
            assert np.array_equal(to_numpy(g1), to_numpy(g2)), f"{name}: second backward differs"
        assert np.array_equal(to_numpy(dout), to_numpy(dout_copy)), f"{name} backward mutated dout"
        for a, c in zip(inputs, before):
            assert np.array_equal(to_numpy(a), to_numpy(c)), f"{name} backward mutated an input"


def test_backward_gradients_do_not_alias_dout(dev):
    """Writing into a returned gradient must not change dout (e.g. eval-mode dropout)."""
    for name, forward, backward, _ in _ops(dev, "float64"):
        out, cache = forward()
        dout = dev(np.ones(out.shape))
        for g in _as_tuple(backward(dout, cache)):
            g += 1.0
        assert np.array_equal(to_numpy(dout), np.ones(out.shape)), name


# ------------------------------------------------------------------- dtypes


def test_float32_stays_float32_through_every_op(dev):
    for name, forward, backward, _ in _ops(dev, "float32"):
        out, cache = forward()
        assert out.dtype == np.float32, f"{name} forward gave {out.dtype}"
        dout = dev(np.ones(out.shape), "float32")
        for g in _as_tuple(backward(dout, cache)):
            assert g.dtype == np.float32, f"{name} backward gave {g.dtype}"
    x = dev([[0.5, -1.0]], "float32")
    assert F.sigmoid(x).dtype == np.float32
    assert F.softplus(x).dtype == np.float32
    assert F.log_softmax(x).dtype == np.float32
    assert F.dropout_mask((3,), 0.5, rng=0).dtype == np.float32


# ------------------------------------------- minigan.kernels: the same math


def test_kernels_compute_the_functional_numbers(dev, backend):
    """On NumPy the dispatch IS the functional code; on CuPy a fused kernel computes
    the same numbers (to the last bits of exp; tests/test_backend_parity.py is exact)."""
    rng = np.random.default_rng(3)
    x = off_kinks(rng, (6, 5)).astype(np.float32)
    dout = rng.standard_normal((6, 5)).astype(np.float32)
    same = np.testing.assert_array_equal if backend == "numpy" else \
        (lambda a, b, err_msg: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7, err_msg=err_msg))
    for name, args in (("relu", ()), ("leaky_relu", (0.2,)), ("sigmoid", ()), ("tanh", ())):
        out, cache = getattr(kernels, f"{name}_forward")(dev(x), *args)
        ref_out, ref_cache = getattr(F, f"{name}_forward")(x, *args)
        same(to_numpy(out), ref_out, err_msg=f"{name} forward")
        dx = getattr(kernels, f"{name}_backward")(dev(dout), cache)
        same(to_numpy(dx), getattr(F, f"{name}_backward")(dout, ref_cache), err_msg=f"{name} backward")
    same(to_numpy(kernels.sigmoid(dev(x))), F.sigmoid(x), err_msg="sigmoid")


@pytest.mark.parametrize("target", [0.0, 0.9, 1.0])
def test_kernel_bce_with_one_target_for_every_entry(dev, target):
    z = np.array([[-60.0], [-2.0], [-1e-4], [0.0], [0.3], [5.0], [60.0]])
    loss, dz = kernels.bce_with_logits(dev(z, "float32"), target)
    assert to_numpy(dz).dtype == np.float32 and to_numpy(loss).dtype == np.float32
    expected = np.mean(np.maximum(z, 0) - z * target + np.log1p(np.exp(-np.abs(z))))
    np.testing.assert_allclose(float(loss), expected, rtol=1e-6)
    np.testing.assert_allclose(to_numpy(dz), (np_sigmoid(z) - target) / z.size, rtol=1e-5, atol=1e-9)


def test_kernel_ema_update_is_in_place(dev, backend):
    rng = np.random.default_rng(4)
    e0, p0 = rng.standard_normal(50), rng.standard_normal(50)
    ema, p = dev(e0, "float32"), dev(p0, "float32")
    kernels.ema_update(ema, p, 0.9)  # in place: no value to return
    np.testing.assert_allclose(to_numpy(ema), 0.9 * e0 + 0.1 * p0, rtol=1e-5, atol=1e-6)
    if backend == "numpy":  # the reference numbers: ema -= p; ema *= beta; ema += p
        ref = e0.astype(np.float32)
        ref -= p0.astype(np.float32)
        ref *= 0.9
        ref += p0.astype(np.float32)
        ema[...] = e0.astype(np.float32)
        kernels.ema_update(ema, p, 0.9)
        np.testing.assert_array_equal(ema, ref)


def test_kernel_dense_backward_adds_into_the_gradients(dev):
    rng = np.random.default_rng(5)
    x, W, dout = rng.standard_normal((7, 3)), rng.standard_normal((3, 2)), rng.standard_normal((7, 2))
    gW, gb = dev(np.ones((3, 2))), dev(np.ones(2))
    dx = kernels.dense_backward(dev(dout), (dev(x), dev(W)), gW, gb)
    np.testing.assert_allclose(to_numpy(dx), dout @ W.T, rtol=1e-12)
    np.testing.assert_allclose(to_numpy(gW), 1 + np.einsum("ni,no->io", x, dout), rtol=1e-12)
    np.testing.assert_allclose(to_numpy(gb), 1 + dout.sum(axis=0), rtol=1e-12)
    assert kernels.dense_backward(dev(dout), (dev(x), dev(W)), gW, gb, need_dx=False) is None
    np.testing.assert_allclose(to_numpy(gb), 1 + 2 * dout.sum(axis=0), rtol=1e-12)
    kernels.dense_backward(dev(dout), (dev(x), dev(W)), gW, gb, need_param_grads=False)
    np.testing.assert_allclose(to_numpy(gb), 1 + 2 * dout.sum(axis=0), rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("param_grads", [True, False], ids=["param_grads", "dx_only"])
def test_kernel_dense_backward_one_output_is_the_product(dev, dtype, param_grads):
    """A layer with one output (D's logit): dx = dout @ W.T is computed as a broadcast
    outer product, each entry one product, so it equals the matrix product bit for bit."""
    rng = np.random.default_rng(6)
    x, W, dout = (rng.standard_normal(shape).astype(dtype) for shape in ((37, 11), (11, 1), (37, 1)))
    gW, gb = dev(np.ones((11, 1), dtype)), dev(np.ones(1, dtype))
    dx = kernels.dense_backward(dev(dout), (dev(x), dev(W)), gW, gb, need_param_grads=param_grads)
    assert dx.shape == (37, 11) and dx.dtype == dtype
    np.testing.assert_array_equal(to_numpy(dx), dout @ W.T)
    expected_gW = 1 + x.T @ dout if param_grads else np.ones((11, 1), dtype)
    np.testing.assert_allclose(to_numpy(gW), expected_gW, rtol=1e-5)
