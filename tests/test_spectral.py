"""Spectral normalisation: the backward of W / sigma(W) with u held fixed against
central differences (float64), sigma against the SVD, the buffers u and v, and
PyTorch's ``nn.utils.spectral_norm``."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import given

import minigan.backend as mb
from minigan.gradcheck import check_layer, compare, numerical_gradient
from minigan.layers import Dense, LeakyReLU, Sequential, Tanh
from minigan.spectral import SpectralNorm

from gradcheck_strategies import assert_gradcheck, batch, seeds, width


def _sn(in_features=4, out_features=3, dtype="float64", seed=0, backend=None, **kwargs):
    rng = np.random.default_rng(seed)
    dense = Dense(in_features, out_features, dtype=dtype, rng=rng, backend=backend)
    dense.params["b"][...] = mb.to_device(rng.normal(size=out_features).astype(dtype), dense.backend)
    return SpectralNorm(dense, rng=rng, **kwargs)


def _x(shape, seed):
    return np.random.default_rng(seed).normal(size=shape)


def _restart(layer, seed):
    """Put u and v back to random unit vectors, so one iteration visibly moves them."""
    for key in ("u", "v"):
        b = layer.buffers[key]
        b[...] = _x(b.shape, seed)
        b /= np.linalg.norm(b)
        seed += 1
    return layer


def test_sigma_starts_as_a_fair_positive_estimate():
    for seed in range(20):
        layer = _sn(6, 5, seed=seed).eval()
        top = np.linalg.svd(layer.layer.params["W"], compute_uv=False)[0]
        assert 0.5 * top < float(layer.sigma) <= top * (1 + 1e-12)


def test_backward_with_u_held_fixed_matches_finite_differences():
    layer = _sn(5, 3, seed=1).eval()   # evaluation: u and v are not updated by a forward
    result = check_layer(layer, _x((6, 5), 2))
    assert result.ok, str(result)


@given(seed=seeds, n=batch, fan_in=width, fan_out=width)
def test_backward_on_drawn_shapes(seed, n, fan_in, fan_out):
    layer = _sn(fan_in, fan_out, seed=seed).eval()
    assert_gradcheck(check_layer(layer, _x((n, fan_in), seed + 1)))


@pytest.mark.parametrize("shape", [(4, 3), (3, 4), (6, 1)], ids=str)
def test_the_w_over_sigma_backward_formula_for_dense_layout(shape):
    """dL/dW = (G - <G, W_sn> v u^T) / sigma, v in R^in, u in R^out, W (in, out):
    checked on L = <W_sn(W), R> for a random R, by central differences in W."""
    layer = _sn(*shape, seed=3).eval()
    W = layer.layer.params["W"]
    R = _x(shape, 4)

    def objective():
        return float((layer.normalized_weight()[0] * R).sum())

    W_sn, ctx = layer.normalized_weight()
    analytic = layer.weight_backward(R, ctx)
    result = compare("dW", analytic, numerical_gradient(objective, W))
    assert result.ok, result.line()
    # the plain W / sigma part alone is wrong: the check can fail
    assert not compare("dW", R / ctx[1], numerical_gradient(objective, W)).ok


def test_a_training_backward_uses_the_u_and_v_of_its_own_forward():
    """Training: the forward iterates once, then W_sn's backward holds that u, v fixed.
    The same gradients as an evaluation-mode pass that starts from the updated u, v."""
    train = _restart(_sn(4, 3, seed=5), 50)
    x, dout = _x((7, 4), 6), _x((7, 3), 7)
    u0 = train.buffers["u"].copy()
    out = train.forward(x)
    assert not np.allclose(train.buffers["u"], u0)     # one power iteration happened
    frozen = copy.deepcopy(train).eval()               # u, v after the iteration
    train.zero_grad()
    dx = train.backward(dout)
    out_eval = frozen.forward(x)
    frozen.zero_grad()
    dx_eval = frozen.backward(dout)
    np.testing.assert_allclose(out, out_eval, rtol=1e-13)
    np.testing.assert_allclose(dx, dx_eval, rtol=1e-13)
    for (_, g), (_, g_eval) in zip(train.parameters(), frozen.parameters()):
        np.testing.assert_allclose(g, g_eval, rtol=1e-12, atol=1e-15)


def test_param_grads_false_leaves_the_grads_alone():
    layer = _sn(4, 3, seed=8)
    layer.forward(_x((5, 4), 9))
    dx = layer.backward(_x((5, 3), 10), param_grads=False)
    assert dx.shape == (5, 4)
    assert all(not np.any(g) for _, g in layer.parameters())


def test_sigma_converges_to_the_largest_singular_value():
    layer = _sn(7, 5, seed=11)
    W = layer.layer.params["W"]
    x = _x((2, 7), 12)
    for _ in range(100):
        layer.forward(x)
    layer.clear_cache()
    top = np.linalg.svd(W, compute_uv=False)[0]
    assert float(layer.sigma) == pytest.approx(top, rel=1e-10)
    W_sn, _ = layer.eval().normalized_weight()
    assert np.linalg.svd(W_sn, compute_uv=False)[0] == pytest.approx(1.0, rel=1e-10)
    # u and v are the top singular vectors (up to sign), in PyTorch's orientation:
    # M = W.T (out, in), so u has out_features entries and v in_features
    U, _, Vt = np.linalg.svd(W.T)
    assert abs(layer.buffers["u"] @ U[:, 0]) == pytest.approx(1.0, rel=1e-8)
    assert abs(layer.buffers["v"] @ Vt[0]) == pytest.approx(1.0, rel=1e-8)


def test_evaluation_mode_does_not_update_u():
    layer = _restart(_sn(4, 3, seed=13), 51)
    x = _x((3, 4), 14)
    layer.eval()
    u, v = layer.buffers["u"].copy(), layer.buffers["v"].copy()
    first = layer.forward(x)
    second = layer.forward(x)
    layer.clear_cache()
    assert np.array_equal(layer.buffers["u"], u) and np.array_equal(layer.buffers["v"], v)
    assert np.array_equal(first, second)
    layer.train()
    layer.forward(x)
    assert not np.array_equal(layer.buffers["u"], u)


def test_u_and_v_are_saved_in_the_state_dict_and_restored():
    D = Sequential(_sn(2, 8, seed=15), LeakyReLU(0.2), _sn(8, 1, seed=16))
    assert sorted(D.state_dict()) == ["0.W", "0.b", "0.u", "0.v", "2.W", "2.b", "2.u", "2.v"]
    x = _x((4, 2), 17)
    for layer in (D[0], D[2]):
        _restart(layer, 52)
    for _ in range(3):
        D.forward(x)              # u and v move away from their start
    D.clear_cache()
    state = D.state_dict()
    other = Sequential(_sn(2, 8, seed=90), LeakyReLU(0.2), _sn(8, 1, seed=91))
    other.load_state_dict(state)
    for key, value in other.state_dict().items():
        assert np.array_equal(value, state[key]), key
    np.testing.assert_array_equal(other.eval().forward(x), D.eval().forward(x))
    # only W and b are trained; u and v are buffers
    assert [name for name, _, _ in D.named_parameters()] == ["0.W", "0.b", "2.W", "2.b"]


def test_float32_and_the_backend_are_kept(backend):
    layer = _sn(4, 3, dtype="float32", seed=18, backend=backend)
    x = mb.to_device(_x((5, 4), 19).astype(np.float32), backend)
    out = layer.forward(x)
    dx = layer.backward(out * 0 + 1)
    for a in (out, dx, layer.buffers["u"], layer.buffers["v"], *(g for _, g in layer.parameters())):
        assert a.dtype == np.float32 and mb.backend_of(a) == backend
    assert "u" in layer.to("numpy").astype("float64").buffers


def test_bad_arguments_are_explained():
    with pytest.raises(TypeError, match=r"wraps a Dense layer.*got Tanh\(\)"):
        SpectralNorm(Tanh())
    with pytest.raises(ValueError, match="n_power_iterations must be an int >= 1"):
        SpectralNorm(Dense(2, 2), n_power_iterations=0)
    assert repr(SpectralNorm(Dense(2, 3))) == "SpectralNorm(Dense(2 -> 3))"


@pytest.mark.parametrize("n_power_iterations", [1, 3])
def test_matches_pytorch_spectral_norm(n_power_iterations):
    torch = pytest.importorskip("torch", reason="PyTorch parity needs torch installed")
    layer = _sn(6, 4, seed=20, n_power_iterations=n_power_iterations)
    dense = layer.layer
    lin = torch.nn.Linear(6, 4).double()
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(dense.params["W"].T.copy()))
        lin.bias.copy_(torch.from_numpy(dense.params["b"].copy()))
    lin = torch.nn.utils.spectral_norm(lin, n_power_iterations=n_power_iterations)
    with torch.no_grad():
        lin.weight_u.copy_(torch.from_numpy(layer.buffers["u"].copy()))
        lin.weight_v.copy_(torch.from_numpy(layer.buffers["v"].copy()))

    x, dout = _x((5, 6), 21), _x((5, 4), 22)
    for step in range(3):    # three training forwards: u and v follow PyTorch's
        xt = torch.from_numpy(x.copy()).requires_grad_(True)
        out_t = lin(xt)
        lin.zero_grad()
        out_t.backward(torch.from_numpy(dout))
        layer.zero_grad()
        out = layer.forward(x)
        dx = layer.backward(dout)
        np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(layer.buffers["u"], lin.weight_u.numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(layer.buffers["v"], lin.weight_v.numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(dense.grads["W"], lin.weight_orig.grad.numpy().T,
                                   rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(dense.grads["b"], lin.bias.grad.numpy(), rtol=1e-12)
    # evaluation: neither updates u or v
    lin.eval()
    layer.eval()
    np.testing.assert_allclose(layer.forward(x), lin(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-12, atol=1e-14)
