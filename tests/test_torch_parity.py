"""Parity with PyTorch: the same inputs and weights give the same outputs and gradients.

Everything here runs in float32 on both sides. The tolerance, rtol=1e-5 with
atol=1e-6, is "float32 precision" for results that went through sums: both
libraries round every operation to float32 (eps = 1.2e-7), but they add up the
terms of a matrix product or a batch reduction in different orders (BLAS
blocking, pairwise or vectorised sums), so the last few bits differ, by up to
a few tens of ulp after a matrix product, a batch norm and an optimiser step.
atol covers entries that are near zero, where a relative tolerance means nothing.
Nothing here is compared more loosely than that. One case runs in float64
(a GAN whose D has a batch norm; see there why) and is held to rtol=1e-9.

minigan's Dense keeps W as (in_features, out_features), so W = linear.weight.T.
"""

import numpy as np
import pytest

torch = pytest.importorskip(
    "torch", reason="PyTorch is not installed; the parity tests need it (pip install torch, CPU is enough)")
nn = torch.nn

from minigan import (  # noqa: E402
    SGD,
    Adam,
    BatchNorm1d,
    BCEWithLogits,
    Dense,
    LeakyReLU,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
)
from minigan.backend import to_numpy  # noqa: E402
from minigan.gan import GAN  # noqa: E402

RTOL, ATOL = 1e-5, 1e-6

torch.set_num_threads(1)  # the test machines are shared; one thread is plenty here


RTOL64, ATOL64 = 1e-9, 1e-12  # the float64 case: the same few ulp, of float64


def close(actual, expected, what="", dtype=np.float32):
    expected = expected.detach().cpu().numpy() if isinstance(expected, torch.Tensor) else expected
    actual = to_numpy(actual)
    assert actual.dtype == dtype, f"{what}: minigan gave {actual.dtype}, expected {np.dtype(dtype)}"
    rtol, atol = (RTOL, ATOL) if actual.dtype == np.float32 else (RTOL64, ATOL64)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


def T(a, requires_grad=False):
    a = to_numpy(a)
    dtype = torch.float64 if a.dtype == np.float64 else torch.float32
    return torch.tensor(a, dtype=dtype, requires_grad=requires_grad)


def mirror(model):
    """A torch nn.Sequential with the same layers and the same weights as a minigan Sequential."""
    float64 = any(p.dtype == np.float64 for p, _ in model.parameters())
    dtype = torch.float64 if float64 else torch.float32
    modules = []
    for layer in model:
        if isinstance(layer, Dense):
            m = nn.Linear(layer.in_features, layer.out_features, dtype=dtype)
            with torch.no_grad():
                m.weight.copy_(T(layer.params["W"]).T)
                m.bias.copy_(T(layer.params["b"]))
        elif isinstance(layer, BatchNorm1d):
            m = nn.BatchNorm1d(layer.num_features, eps=layer.eps, momentum=layer.momentum,
                               dtype=dtype)
            with torch.no_grad():
                m.weight.copy_(T(layer.params["gamma"]))
                m.bias.copy_(T(layer.params["beta"]))
                m.running_mean.copy_(T(layer.running_mean))
                m.running_var.copy_(T(layer.running_var))
        elif isinstance(layer, LeakyReLU):
            m = nn.LeakyReLU(layer.negative_slope)
        else:
            m = {ReLU: nn.ReLU, Tanh: nn.Tanh, Sigmoid: nn.Sigmoid}[type(layer)]()
        modules.append(m)
    return nn.Sequential(*modules)


def assert_same_model(model, tmodel, what, dtype=np.float32):
    for i, (layer, m) in enumerate(zip(model, tmodel)):
        if isinstance(layer, Dense):
            close(layer.params["W"], m.weight.T, f"{what}: layer {i} W", dtype)
            close(layer.params["b"], m.bias, f"{what}: layer {i} b", dtype)
        elif isinstance(layer, BatchNorm1d):
            close(layer.params["gamma"], m.weight, f"{what}: layer {i} gamma", dtype)
            close(layer.params["beta"], m.bias, f"{what}: layer {i} beta", dtype)
            close(layer.running_mean, m.running_mean, f"{what}: layer {i} running_mean", dtype)
            close(layer.running_var, m.running_var, f"{what}: layer {i} running_var", dtype)


def _x(shape, seed=0, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


# --------------------------------------------------------------------- layers


def test_dense_matches_nn_linear(dev, backend):
    layer = Dense(7, 5, init="pytorch", rng=0, backend=backend)
    lin = mirror(Sequential(layer))[0]
    x, dout = _x((6, 7), 1), _x((6, 5), 2)
    xt = T(x, requires_grad=True)
    out_t = lin(xt)
    out_t.backward(T(dout))
    out = layer(dev(x))
    close(out, out_t, "Dense forward")
    dx = layer.backward(dev(dout))
    close(dx, xt.grad, "Dense dx")
    close(layer.grads["W"], lin.weight.grad.T, "Dense dW")
    close(layer.grads["b"], lin.bias.grad, "Dense db")


@pytest.mark.parametrize("make,torch_make", [
    (lambda: LeakyReLU(0.2), lambda: nn.LeakyReLU(0.2)),
    (LeakyReLU, nn.LeakyReLU),  # the default slope is PyTorch's 0.01
    (Tanh, nn.Tanh),
    (Sigmoid, nn.Sigmoid),
    (ReLU, nn.ReLU),
], ids=["LeakyReLU(0.2)", "LeakyReLU()", "Tanh", "Sigmoid", "ReLU"])
def test_activations_match_torch(dev, make, torch_make):
    # Moderate values and both tails (|x| up to 30: sigmoid(-30) ~ 9e-14 must not round to 0).
    x = np.concatenate([_x((4, 8), 3, 3.0), np.linspace(-30, 30, 32, dtype=np.float32).reshape(4, 8)])
    dout = _x(x.shape, 4)
    xt = T(x, requires_grad=True)
    out_t = torch_make()(xt)
    out_t.backward(T(dout))
    layer = make()
    close(layer(dev(x)), out_t, f"{layer!r} forward")
    close(layer.backward(dev(dout)), xt.grad, f"{layer!r} dx")


def test_batchnorm1d_matches_torch_in_train_and_eval(dev, backend):
    rng = np.random.default_rng(5)
    bn = BatchNorm1d(6, backend=backend)
    bn.params["gamma"][...] = dev(rng.uniform(0.5, 2, 6).astype(np.float32))
    bn.params["beta"][...] = dev(rng.standard_normal(6).astype(np.float32))
    tbn = mirror(Sequential(bn))[0]
    for step in range(4):  # running statistics after a few steps
        x = _x((8, 6), 10 + step, scale=1 + step) + step
        dout = _x((8, 6), 20 + step)
        xt = T(x, requires_grad=True)
        tbn.zero_grad()
        out_t = tbn(xt)
        out_t.backward(T(dout))
        bn.zero_grad()
        close(bn(dev(x)), out_t, f"BatchNorm1d train forward, step {step}")
        close(bn.backward(dev(dout)), xt.grad, f"BatchNorm1d dx, step {step}")
        close(bn.grads["gamma"], tbn.weight.grad, f"BatchNorm1d dgamma, step {step}")
        close(bn.grads["beta"], tbn.bias.grad, f"BatchNorm1d dbeta, step {step}")
        close(bn.running_mean, tbn.running_mean, f"running_mean after step {step}")
        close(bn.running_var, tbn.running_var, f"running_var after step {step}")
    bn.eval()
    tbn.eval()
    x, dout = _x((3, 6), 30), _x((3, 6), 31)
    xt = T(x, requires_grad=True)
    tbn.zero_grad()
    out_t = tbn(xt)
    out_t.backward(T(dout))
    bn.zero_grad()
    close(bn(dev(x)), out_t, "BatchNorm1d eval forward")
    close(bn.backward(dev(dout)), xt.grad, "BatchNorm1d eval dx")
    close(bn.grads["gamma"], tbn.weight.grad, "BatchNorm1d eval dgamma")
    close(bn.grads["beta"], tbn.bias.grad, "BatchNorm1d eval dbeta")


# --------------------------------------------------------------------- losses


@pytest.mark.parametrize("case", ["moderate-hard", "soft", "extreme"])
def test_bce_with_logits_matches_torch(dev, case):
    rng = np.random.default_rng(6)
    if case == "moderate-hard":
        z = rng.uniform(-6, 6, (8, 1))
        y = rng.integers(0, 2, (8, 1)).astype(float)
    elif case == "soft":
        z = rng.uniform(-6, 6, (8, 3))
        y = rng.uniform(0, 1, (8, 3))
    else:
        z = np.array([[50.0], [-50.0], [50.0], [-50.0], [1e4], [-1e4], [30.0], [-30.0]])
        y = np.array([[1.0], [0.0], [0.0], [0.9], [0.1], [1.0], [1.0], [0.0]])
    z, y = z.astype(np.float32), y.astype(np.float32)
    zt = T(z, requires_grad=True)
    loss_t = nn.BCEWithLogitsLoss()(zt, T(y))
    loss_t.backward()
    crit = BCEWithLogits()
    loss = crit.forward(dev(z), dev(y))
    np.testing.assert_allclose(loss, loss_t.item(), rtol=RTOL, atol=ATOL)
    close(crit.backward(), zt.grad, "BCEWithLogits gradient")


# ----------------------------------------------------------------- optimisers


def _optimiser_run(dev, make, torch_make, steps=6):
    rng = np.random.default_rng(7)
    shapes = [(4, 3), (3,)]
    init = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    params = [dev(a.copy()) for a in init]
    grads = [dev(np.zeros(s, np.float32)) for s in shapes]
    tparams = [torch.tensor(a.copy(), requires_grad=True) for a in init]
    opt, topt = make(list(zip(params, grads))), torch_make(tparams)
    for t in range(steps):
        values = [(rng.standard_normal(s) * rng.uniform(0.1, 3)).astype(np.float32) for s in shapes]
        for g, tp, v in zip(grads, tparams, values):
            g[...] = dev(v)
            tp.grad = torch.tensor(v)
        opt.step()
        topt.step()
        for i, (p, tp) in enumerate(zip(params, tparams)):
            close(p, tp, f"param {i} after step {t + 1}")


@pytest.mark.parametrize("kwargs", [
    dict(lr=2e-4, betas=(0.5, 0.999)),
    dict(lr=1e-2, betas=(0.5, 0.999)),
    dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.1),
], ids=["gan", "gan-big-lr", "weight-decay"])
def test_adam_matches_torch(dev, kwargs):
    _optimiser_run(dev, lambda ps: Adam(ps, **kwargs), lambda ps: torch.optim.Adam(ps, **kwargs))


@pytest.mark.parametrize("kwargs", [
    dict(lr=0.05),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, nesterov=True),
    dict(lr=0.05, momentum=0.5, nesterov=True, weight_decay=0.01),
], ids=["plain", "momentum", "nesterov", "nesterov-wd"])
def test_sgd_matches_torch(dev, kwargs):
    _optimiser_run(dev, lambda ps: SGD(ps, **kwargs), lambda ps: torch.optim.SGD(ps, **kwargs))


# ------------------------------------------------------------ a whole GAN step


def _torch_gan_step(G, D, g_opt, d_opt, z, real):
    """Goodfellow et al.'s step with the non-saturating G loss, as PyTorch users write it."""
    bce = nn.BCEWithLogitsLoss()
    fake = G(z)
    d_opt.zero_grad()
    logits_real = D(real)
    logits_fake = D(fake.detach())
    d_loss = bce(logits_real, torch.ones_like(logits_real)) + bce(logits_fake, torch.zeros_like(logits_fake))
    d_loss.backward()
    d_opt.step()
    g_opt.zero_grad()
    logits = D(fake)
    g_loss = bce(logits, torch.ones_like(logits))
    g_loss.backward()
    g_opt.step()
    return d_loss.item(), g_loss.item()


@pytest.mark.parametrize("d_batchnorm", [False, True], ids=["plain-D", "D-with-batchnorm"])
def test_gan_train_step_matches_torch(dev, backend, d_batchnorm):
    latent, data_dim, n = 4, 2, 16
    # A Tanh between Dense and BatchNorm: directly before a batch norm in training
    # mode a bias has a gradient of exactly zero in exact arithmetic (the batch mean
    # cancels it), so both libraries compute rounding noise of ~1e-9 there, and Adam,
    # which divides by the gradient's own scale, turns that noise into steps of
    # +-lr in directions that differ between the two. Nothing to compare there.
    G = Sequential(Dense(latent, 16, init="pytorch", rng=1, backend=backend), Tanh(),
                   BatchNorm1d(16, backend=backend), LeakyReLU(0.2),
                   Dense(16, data_dim, init="pytorch", rng=2, backend=backend))
    d_layers = [Dense(data_dim, 16, init="pytorch", rng=3, backend=backend), LeakyReLU(0.2),
                Dense(16, 1, init="pytorch", rng=4, backend=backend)]
    if d_batchnorm:
        d_layers[1:1] = [Tanh(), BatchNorm1d(16, backend=backend)]
    D = Sequential(*d_layers)
    # With a batch norm in D, G's gradient is ill-conditioned: the batch norm's
    # input gradients sum to exactly zero over the batch, so G's last bias gets
    # a gradient that is a small remainder of large cancelling terms (about 2e-5
    # against a typical 1e-3 at step 3). Its rounding error is then ~1e-3 relative
    # in float32 (the float32 and float64 runs of this very GAN in minigan differ
    # by 1.5e-5 in that bias after 5 Adam steps), and a different summation order
    # (another BLAS, a GPU) moves it by as much. So that case is compared in
    # float64, where the same amplification stays ~1e-12.
    dtype = np.float64 if d_batchnorm else np.float32
    G.astype(dtype)
    D.astype(dtype)
    tG, tD = mirror(G), mirror(D)
    kwargs = dict(lr=1e-2, betas=(0.5, 0.999))  # large enough that 5 steps move every weight
    gan = GAN(G, D, latent, Adam(G.parameters(), **kwargs), Adam(D.parameters(), **kwargs), rng=0)
    tg_opt, td_opt = torch.optim.Adam(tG.parameters(), **kwargs), torch.optim.Adam(tD.parameters(), **kwargs)
    noise, draw = [], gan.sample_noise

    def sample_noise(n):  # the same z goes to PyTorch's step
        z = draw(n)
        noise.append(to_numpy(z).copy())
        return z

    gan.sample_noise = sample_noise
    real_rng = np.random.default_rng(9)
    initial_G = [to_numpy(p).copy() for p, _ in G.parameters()]
    for step in range(1, 6):
        real = (real_rng.standard_normal((n, data_dim)) * 0.5 + 2.0).astype(dtype)
        stats = gan.train_step(dev(real))
        d_loss_t, g_loss_t = _torch_gan_step(tG, tD, tg_opt, td_opt, T(noise[-1]), T(real))
        for name, ours, theirs in (("d_loss", stats["d_loss"], d_loss_t),
                                   ("g_loss", stats["g_loss"], g_loss_t)):
            close(np.asarray(ours, dtype=dtype), np.asarray(theirs), f"{name}, step {step}", dtype)
        if step in (1, 5):
            assert_same_model(G, tG, f"G after {step} steps", dtype)
            assert_same_model(D, tD, f"D after {step} steps", dtype)
    assert len(noise) == 5
    # The comparison was not vacuous: the generator's weights did move.
    moved = [np.abs(to_numpy(p) - p0).max() for (p, _), p0 in zip(G.parameters(), initial_G)]
    assert min(moved) > 1e-3, moved
