"""Spectral normalisation: the backward of W / sigma(W) with u held fixed against
central differences (float64), sigma against the SVD, the buffers u and v, and
PyTorch's ``nn.utils.spectral_norm``; around Dense and Conv2d layers."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import given

import minigan.backend as mb
from minigan.gradcheck import check_layer, compare, numerical_gradient
from minigan.layers import Conv2d, ConvTranspose2d, Dense, Flatten, LeakyReLU, Sequential, Tanh
from minigan.spectral import SpectralNorm

from gradcheck_strategies import assert_gradcheck, batch, seeds, width


def _sn(in_features=4, out_features=3, dtype="float64", seed=0, backend=None, **kwargs):
    rng = np.random.default_rng(seed)
    dense = Dense(in_features, out_features, dtype=dtype, rng=rng, backend=backend)
    dense.params["b"][...] = mb.to_device(rng.normal(size=out_features).astype(dtype), dense.backend)
    return SpectralNorm(dense, rng=rng, **kwargs)


def _sn_conv(c_in=2, c_out=3, kernel_size=3, stride=1, padding=0, dtype="float64", seed=0,
             backend=None, **kwargs):
    rng = np.random.default_rng(seed)
    conv = Conv2d(c_in, c_out, kernel_size, stride, padding, dtype=dtype, rng=rng,
                  backend=backend)
    conv.params["b"][...] = mb.to_device(rng.normal(size=c_out).astype(dtype), conv.backend)
    return SpectralNorm(conv, rng=rng, **kwargs)


def _matrix(W):
    """A weight as PyTorch's matrix, written out here (not the module's code):
    Dense (in, out) -> (out, in); Conv2d (C_out, C_in, kH, kW) -> (C_out, C_in kH kW)."""
    return W.T if W.ndim == 2 else W.reshape(W.shape[0], -1)


#: small layers of both kinds, with the weight's matrix wide, tall and a single row
LAYERS = {
    "dense 4->3": lambda seed: _sn(4, 3, seed=seed),
    "dense 3->4": lambda seed: _sn(3, 4, seed=seed),
    "dense 6->1": lambda seed: _sn(6, 1, seed=seed),
    "conv 2->3 k3": lambda seed: _sn_conv(2, 3, 3, seed=seed),                  # (3, 18)
    "conv 3->5 k(2,1)": lambda seed: _sn_conv(3, 5, (2, 1), seed=seed),         # (5, 6)
    "conv 1->7 k2": lambda seed: _sn_conv(1, 7, 2, seed=seed),                  # (7, 4): tall
}


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


@pytest.mark.parametrize("c_in, c_out, k, stride, padding, hw", [
    (2, 3, 3, 1, 0, (5, 6)),
    (3, 2, (3, 2), 2, 1, (7, 5)),     # odd sizes, stride 2, padding, a non-square kernel
    (1, 4, 4, 2, 1, (6, 6)),          # DCGAN's 4 / 2 / 1
], ids=["k3", "k(3,2)-s2-p1", "k4-s2-p1"])
def test_conv_backward_with_u_held_fixed_matches_finite_differences(c_in, c_out, k, stride,
                                                                     padding, hw):
    layer = _sn_conv(c_in, c_out, k, stride, padding, seed=30).eval()
    assert layer.buffers["u"].shape == (c_out,)
    assert layer.buffers["v"].shape == (c_in * int(np.prod(layer.layer.kernel_size)),)
    assert_gradcheck(check_layer(layer, _x((3, c_in) + hw, 31)))


@pytest.mark.parametrize("kind", list(LAYERS))
def test_the_w_over_sigma_backward_formula_in_the_layers_layout(kind):
    """dL/dW = (G - <G, W_sn> dsigma/dW) / sigma, with dsigma/dW = v u^T in Dense's
    (in, out) layout and u v^T reshaped to (C_out, C_in, kH, kW) in Conv2d's:
    checked on L = <W_sn(W), R> for a random R, by central differences in W."""
    layer = LAYERS[kind](3).eval()
    W = layer.layer.params["W"]
    R = _x(W.shape, 4)

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


@pytest.mark.parametrize("kind, x_shape", [("dense", (2, 7)), ("conv", (2, 3, 4, 5))])
def test_sigma_converges_to_the_largest_singular_value(kind, x_shape):
    layer = _sn(7, 5, seed=11) if kind == "dense" else _sn_conv(3, 5, (2, 3), seed=11)
    x = _x(x_shape, 12)
    for _ in range(100):
        layer.forward(x)
    layer.clear_cache()
    M = _matrix(layer.layer.params["W"])
    top = np.linalg.svd(M, compute_uv=False)[0]
    assert float(layer.sigma) == pytest.approx(top, rel=1e-10)
    W_sn, _ = layer.eval().normalized_weight()
    assert W_sn.shape == layer.layer.params["W"].shape
    assert np.linalg.svd(_matrix(W_sn), compute_uv=False)[0] == pytest.approx(1.0, rel=1e-10)
    # u and v are the top singular vectors (up to sign), in PyTorch's orientation:
    # M (out, in) or (C_out, C_in kH kW), so u has out entries and v in
    U, _, Vt = np.linalg.svd(M)
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


def _sn_critic(seeds):
    """A Conv2d -> LeakyReLU -> Flatten -> Dense critic with both layers normalised."""
    return Sequential(_sn_conv(2, 3, 3, stride=2, seed=seeds[0]), LeakyReLU(0.2), Flatten(),
                      _sn(3 * 2 * 2, 1, seed=seeds[1]))


def test_u_and_v_are_saved_in_the_state_dict_and_restored():
    D = _sn_critic((15, 16))
    assert sorted(D.state_dict()) == ["0.W", "0.b", "0.u", "0.v", "3.W", "3.b", "3.u", "3.v"]
    assert D.state_dict()["0.u"].shape == (3,) and D.state_dict()["0.v"].shape == (18,)
    x = _x((4, 2, 5, 6), 17)
    for layer in (D[0], D[3]):
        _restart(layer, 52)
    for _ in range(3):
        D.forward(x)              # u and v move away from their start
    D.clear_cache()
    state = D.state_dict()
    other = _sn_critic((90, 91))
    other.load_state_dict(state)
    for key, value in other.state_dict().items():
        assert np.array_equal(value, state[key]), key
    np.testing.assert_array_equal(other.eval().forward(x), D.eval().forward(x))
    # only W and b are trained; u and v are buffers
    assert [name for name, _, _ in D.named_parameters()] == ["0.W", "0.b", "3.W", "3.b"]


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_float32_and_the_backend_are_kept(backend, kind):
    if kind == "dense":
        layer, x_shape = _sn(4, 3, dtype="float32", seed=18, backend=backend), (5, 4)
    else:
        layer = _sn_conv(2, 3, 3, padding=1, dtype="float32", seed=18, backend=backend)
        x_shape = (2, 2, 5, 4)
    x = mb.to_device(_x(x_shape, 19).astype(np.float32), backend)
    out = layer.forward(x)
    dx = layer.backward(out * 0 + 1)
    for a in (out, dx, layer.buffers["u"], layer.buffers["v"], *(g for _, g in layer.parameters())):
        assert a.dtype == np.float32 and mb.backend_of(a) == backend
    assert "u" in layer.to("numpy").astype("float64").buffers


def test_bad_arguments_are_explained():
    with pytest.raises(TypeError, match=r"wraps a Dense or Conv2d layer, got Tanh\(\)"):
        SpectralNorm(Tanh())
    with pytest.raises(TypeError, match=r"got ConvTranspose2d\(2 -> 3.*dim=1"):
        SpectralNorm(ConvTranspose2d(2, 3, 3))
    with pytest.raises(ValueError, match="n_power_iterations must be an int >= 1"):
        SpectralNorm(Dense(2, 2), n_power_iterations=0)
    assert repr(SpectralNorm(Dense(2, 3))) == "SpectralNorm(Dense(2 -> 3))"


def _swap_layout(w, layer):
    """A weight (or its gradient) between PyTorch's and minigan's layouts: Linear's
    (out, in) is Dense's (in, out) transposed; Conv2d's (C_out, C_in, kH, kW) is the same."""
    return w.T if isinstance(layer.layer, Dense) else w


def _torch_twin(torch, layer):
    """PyTorch's spectral-normalised copy of a wrapped Dense or Conv2d (same W, b, u, v)."""
    inner = layer.layer
    if isinstance(inner, Dense):
        mod = torch.nn.Linear(inner.in_features, inner.out_features).double()
    else:
        mod = torch.nn.Conv2d(inner.in_channels, inner.out_channels, inner.kernel_size,
                              inner.stride, inner.padding).double()
    with torch.no_grad():
        mod.weight.copy_(torch.from_numpy(_swap_layout(inner.params["W"], layer).copy()))
        mod.bias.copy_(torch.from_numpy(inner.params["b"].copy()))
    mod = torch.nn.utils.spectral_norm(mod, n_power_iterations=layer.n_power_iterations)
    with torch.no_grad():
        mod.weight_u.copy_(torch.from_numpy(layer.buffers["u"].copy()))
        mod.weight_v.copy_(torch.from_numpy(layer.buffers["v"].copy()))
    return mod


@pytest.mark.parametrize("n_power_iterations", [1, 3])
@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_matches_pytorch_spectral_norm(kind, n_power_iterations):
    torch = pytest.importorskip("torch", reason="PyTorch parity needs torch installed")
    if kind == "dense":
        layer = _sn(6, 4, seed=20, n_power_iterations=n_power_iterations)
        x = _x((5, 6), 21)
    else:   # odd image, stride 2, padding, a non-square kernel: u (4,), v (3 * 3 * 2,)
        layer = _sn_conv(3, 4, (3, 2), stride=2, padding=1, seed=20,
                         n_power_iterations=n_power_iterations)
        x = _x((2, 3, 7, 6), 21)
    inner = layer.layer
    lin = _torch_twin(torch, layer)
    out_hw = inner.output_shape(x.shape[2:]) if kind == "conv" else ()
    dout = _x((x.shape[0], 4, *out_hw), 22)

    for step in range(3):    # three training forwards: u and v follow PyTorch's
        xt = torch.from_numpy(x.copy()).requires_grad_(True)
        out_t = lin(xt)
        lin.zero_grad()
        out_t.backward(torch.from_numpy(dout))
        layer.zero_grad()
        out = layer.forward(x)
        dx = layer.backward(dout)
        u, v = lin.weight_u, lin.weight_v
        sigma_t = torch.dot(u, lin.weight_orig.detach().reshape(len(u), -1) @ v).item()
        np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(layer.buffers["u"], u.numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(layer.buffers["v"], v.numpy(), rtol=1e-12, atol=1e-14)
        assert float(layer.sigma) == pytest.approx(sigma_t, rel=1e-12)
        np.testing.assert_allclose(inner.params["W"] / layer.sigma,    # W_sn
                                   _swap_layout(lin.weight.detach().numpy(), layer),
                                   rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(inner.grads["W"],
                                   _swap_layout(lin.weight_orig.grad.numpy(), layer),
                                   rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(inner.grads["b"], lin.bias.grad.numpy(), rtol=1e-12)
    # evaluation: neither updates u or v
    lin.eval()
    layer.eval()
    np.testing.assert_allclose(layer.forward(x), lin(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-12, atol=1e-14)
