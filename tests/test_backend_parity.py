"""NumPy and CuPy compute the same numbers: kernels, layers, optimisers, whole runs.

Every test here needs both kinds of array, so it runs only in the CuPy
parametrisation (skipped, with the reason, where there is no CuPy or no GPU).
The kernels are reached as the library reaches them, through ``minigan.kernels``
(which picks the fused CuPy kernel of ``minigan._fused`` for CuPy arrays), and
compared with the plain reference on NumPy: ``minigan.functional``, Adam's
``_update``.

Tolerances, and why:
* a fused kernel without exp or log against its NumPy reference: none, bit for
  bit (they are compiled without multiply-add fusion, so every operation
  rounds as NumPy's does), Adam's update over 5 steps and the EMA update too;
* a kernel with exp or log1p (sigmoid, BCE): 8 ulp, as CUDA's exp and log1p
  round differently from NumPy's by an ulp or two each; where the result is a
  difference of such values (sigmoid(z) - y) an absolute 8 ulp of 1;
* anything through a matrix product or a reduction: float32 precision after
  sums in a different order, rtol=1e-5 with atol=1e-6, as in the PyTorch tests;
* a whole training run: float64 runs agree to 1e-9. float32 runs drift apart by
  rounding alone (matrix products sum in another order), and a GAN's training
  amplifies that; the test measures how far rounding moves this very run (the
  float32 run against the float64 one, both on NumPy) and lets CuPy's float32
  run differ from NumPy's by at most 10 times that (and 1e-5 at least). A wrong
  formula anywhere moves them by 1e-2 or more within a few steps.
"""

import numpy as np
import pytest

import minigan as mg
from minigan import _fused, kernels
from minigan import functional as F
from minigan.backend import to_device, to_numpy
from minigan.gan import EMA, GAN
from minigan.layers import Pack

pytestmark = pytest.mark.backends("cupy")

ULP_RTOL = {np.float32: 8 * np.finfo(np.float32).eps, np.float64: 8 * np.finfo(np.float64).eps}
DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["float32", "float64"]


def _close_ulp(actual, expected, dtype, what, atol=None):
    """Within 8 ulp (relative), or ``atol`` (default: 1e-3 of 8 ulp of the largest entry)."""
    actual, expected = to_numpy(actual), to_numpy(expected)
    assert actual.dtype == dtype, f"{what}: got {actual.dtype}, expected {np.dtype(dtype)}"
    assert np.all(np.isfinite(actual)), f"{what}: non-finite values"
    scale = max(float(np.abs(expected).max()), np.finfo(dtype).tiny) if expected.size else 1.0
    rtol = ULP_RTOL[dtype]
    atol = rtol * scale * 1e-3 if atol is None else atol
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


def _same(actual, expected, dtype, what):
    """Bit for bit (NaN nowhere)."""
    actual, expected = to_numpy(actual), to_numpy(expected)
    assert actual.dtype == dtype, f"{what}: got {actual.dtype}, expected {np.dtype(dtype)}"
    assert np.all(np.isfinite(actual)), f"{what}: non-finite values"
    np.testing.assert_array_equal(actual, expected, err_msg=what)


def _close_f32(actual, expected, what):
    np.testing.assert_allclose(to_numpy(actual), to_numpy(expected), rtol=1e-5, atol=1e-6,
                               err_msg=what)


def _data(shape, dtype, seed=0, scale=3.0):
    """Random values away from the kinks at 0 (|x| >= 1e-3)."""
    x = np.random.default_rng(seed).standard_normal(shape) * scale
    x[np.abs(x) < 1e-3] = 0.5
    return x.astype(dtype)


# ---------------------------------------------------- the kernels, one by one


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("slope", [0.2, 0.0, 1.5])
def test_leaky_relu_kernels_match_functional(backend, dtype, slope):
    x, dout = _data((33, 17), dtype, 1), _data((33, 17), dtype, 2)
    ref_out, ref_cache = F.leaky_relu_forward(x, slope)
    out, cache = kernels.leaky_relu_forward(to_device(x, backend), slope)
    _same(out, ref_out, dtype, "forward")
    _same(kernels.leaky_relu_backward(to_device(dout, backend), cache),
          F.leaky_relu_backward(dout, ref_cache), dtype, "backward")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_activation_kernels_match_functional(backend, dtype):
    x, dout = _data((40, 9), dtype, 3), _data((40, 9), dtype, 4)
    dev = lambda a: to_device(a, backend)  # noqa: E731
    for name in ("relu", "tanh", "sigmoid"):
        ref_out, ref_cache = getattr(F, f"{name}_forward")(x)
        out, cache = getattr(kernels, f"{name}_forward")(dev(x))
        check = _same if name == "relu" else _close_ulp  # tanh, exp: CUDA's last bits
        check(out, ref_out, dtype, f"{name} forward")
        # the backward on the reference's own cache: the kernel's arithmetic alone
        _same(getattr(kernels, f"{name}_backward")(dev(dout), dev(ref_cache)),
              getattr(F, f"{name}_backward")(dout, ref_cache), dtype, f"{name} backward")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_sigmoid_kernel_is_stable_and_matches(backend, dtype):
    # far tails included: exp(-|x|) never overflows, and sigmoid(-40) keeps its tiny value
    x = np.concatenate([_data(200, dtype, 5, scale=8.0),
                        np.array([-100, -40, -17, 17, 40, 100], dtype=dtype)])
    got = kernels.sigmoid(to_device(x, backend))
    _close_ulp(got, F.sigmoid(x), dtype, "sigmoid")
    assert to_numpy(got)[-5] > 0, "sigmoid(-40) rounded to 0"
    _close_ulp(_fused.sigmoid_mean(to_device(x.reshape(-1, 1), backend)),
               np.asarray(F.sigmoid(x).mean(), dtype=dtype), dtype, "sigmoid mean")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_bce_with_logits_kernel_matches_functional(backend, dtype):
    logits = np.concatenate([_data(61, dtype, 6), np.array([-60, 60, -1e-4, 1e-4], dtype=dtype)])
    logits = logits.reshape(-1, 1)
    targets = np.random.default_rng(7).uniform(0, 1, logits.shape).astype(dtype)
    ref_loss, ref_grad = F.bce_with_logits(logits, targets)
    loss, grad = kernels.bce_with_logits(to_device(logits, backend), to_device(targets, backend))
    assert loss.shape == ()
    # the loss is a sum over the batch, added up in another order: float32 precision
    np.testing.assert_allclose(float(loss), float(ref_loss), rtol=ULP_RTOL[dtype] * logits.size)
    # dlogits = (sigmoid(z) - y) / n: sigmoid's last bits, not the difference's
    _close_ulp(grad, ref_grad, dtype, "dlogits", atol=ULP_RTOL[dtype] / logits.size)
    with pytest.raises(ValueError, match="shape"):
        kernels.bce_with_logits(to_device(logits, backend), to_device(targets[:-1], backend))
    # one number for every target (what the GAN losses pass) is the same as an array of it
    for target in (0.0, 0.9, 1.0):
        by_number = kernels.bce_with_logits(to_device(logits, backend), target)
        by_array = kernels.bce_with_logits(to_device(logits, backend),
                                           to_device(np.full_like(logits, target), backend))
        for a, b in zip(by_number, by_array):
            _same(a, b, dtype, f"target {target}")
        ref_loss, ref_grad = kernels.bce_with_logits(logits, target)  # the NumPy path
        np.testing.assert_allclose(float(by_number[0]), float(ref_loss),
                                   rtol=ULP_RTOL[dtype] * logits.size)
        _close_ulp(by_number[1], ref_grad, dtype, f"dlogits, target {target}",
                   atol=ULP_RTOL[dtype] / logits.size)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_ema_update_kernel_matches_numpy(backend, dtype):
    ema, p = _data((50, 7), dtype, 15), _data((50, 7), dtype, 16)
    on_gpu = to_device(ema, backend)
    for beta in (0.5, 0.9, 0.999):
        kernels.ema_update(on_gpu, to_device(p, backend), beta)
        kernels.ema_update(ema, p, beta)  # NumPy: ema -= p; ema *= beta; ema += p
        _same(on_gpu, ema, dtype, f"ema, beta {beta}")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_fused_adam_matches_the_plain_update(backend, dtype, weight_decay):
    """Adam.step on CuPy (one fused kernel per parameter) against Adam._update on
    NumPy, the plain reference, for 5 steps with fresh gradients each step."""
    rng = np.random.default_rng(8)
    shapes = [(300, 70), (70,), (1, 1)]
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    host = [(p.copy(), np.zeros_like(p)) for p in params]
    gpu = [(to_device(p, backend), to_device(np.zeros_like(p), backend)) for p in params]
    kwargs = dict(lr=1e-2, betas=(0.5, 0.999), eps=1e-8, weight_decay=weight_decay)
    opt_host, opt_gpu = mg.Adam(host, **kwargs), mg.Adam(gpu, **kwargs)
    opt_host._use_kernel = False  # the plain _update
    for step in range(5):
        for (_, g_h), (_, g_d) in zip(host, gpu):
            g = rng.standard_normal(g_h.shape).astype(dtype) * 10.0 ** rng.integers(-4, 1)
            g_h[...] = g
            g_d[...] = to_device(g, backend)
        opt_host.step()
        opt_gpu.step()
    assert opt_gpu._use_kernel is True, "the fused Adam kernel did not match _update on the probe"
    for i, ((p_h, _), (p_d, _)) in enumerate(zip(host, gpu)):
        _same(p_d, p_h, dtype, f"param {i} after 5 steps")
        _same(opt_gpu.m[i], opt_host.m[i], dtype, f"m {i}")
        _same(opt_gpu.v[i], opt_host.v[i], dtype, f"v {i}")
    assert opt_gpu.t == opt_host.t == 5


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_dense_backward_kernel_accumulates(backend, dtype):
    x, dout, W = _data((37, 11), dtype, 9), _data((37, 5), dtype, 10), _data((11, 5), dtype, 17)
    old_W, old_b = _data((11, 5), dtype, 11), _data((5,), dtype, 12)
    gW, gb = to_device(old_W.copy(), backend), to_device(old_b.copy(), backend)
    dev = lambda a: to_device(a, backend)  # noqa: E731
    dx = kernels.dense_backward(dev(dout), (dev(x), dev(W)), gW, gb)
    _close_f32(dx, dout @ W.T, "dx = dout @ W.T")
    _close_f32(gW, old_W + x.T @ dout, "grad W += x.T @ dout")
    _close_f32(gb, old_b + dout.sum(axis=0), "grad b += sum dout")
    assert gW.dtype == dtype and gb.dtype == dtype
    assert kernels.dense_backward(dev(dout), (dev(x), dev(W)), gW, gb, need_dx=False) is None
    before = to_numpy(gW).copy()
    kernels.dense_backward(dev(dout), (dev(x), dev(W)), gW, gb, need_param_grads=False)
    np.testing.assert_array_equal(to_numpy(gW), before)


# --------------------------------------------------------- layers and models


def _twin_layers(backend):
    """Pairs (NumPy layer, the same layer with the same weights on CuPy)."""
    pairs = []
    # backend="numpy" explicitly: the backend fixture made CuPy the default for new layers
    for make in (lambda: mg.Dense(13, 7, rng=1, backend="numpy"), lambda: mg.LeakyReLU(0.2),
                 mg.ReLU, mg.Tanh, mg.Sigmoid, lambda: mg.BatchNorm1d(13, backend="numpy"),
                 lambda: mg.Dropout(0.3, rng=4), lambda: Pack(4)):
        host, gpu = make(), make()
        gpu.to(backend)
        if isinstance(host, mg.BatchNorm1d):
            for layer in (host, gpu):
                layer.params["gamma"][...] = to_device(np.linspace(0.5, 2, 13, dtype=np.float32),
                                                       layer.backend)
        pairs.append((host, gpu))
    return pairs


def test_every_layer_forward_and_backward_agree(backend):
    for host, gpu in _twin_layers(backend):
        x, dout = _data((24, 13), np.float32, 13), None
        out_h, out_d = host.forward(x), gpu.forward(to_device(x, backend))
        assert type(out_d).__module__.startswith("cupy"), type(out_d)
        _close_f32(out_d, out_h, f"{host.short_repr()} forward")
        dout = _data(out_h.shape, np.float32, 14)
        dx_h, dx_d = host.backward(dout), gpu.backward(to_device(dout, backend))
        _close_f32(dx_d, dx_h, f"{host.short_repr()} backward")
        for (k, g_h), (_, g_d) in zip(host.grads.items(), gpu.grads.items()):
            assert g_d.dtype == np.float32
            _close_f32(g_d, g_h, f"{host.short_repr()} grad {k}")
        for k in host.buffers:
            _close_f32(gpu.buffers[k], host.buffers[k], f"{host.short_repr()} buffer {k}")


def test_sgd_steps_agree(backend):
    for kwargs in (dict(lr=0.1), dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)):
        host, gpu = mg.Dense(9, 4, rng=2, backend="numpy"), mg.Dense(9, 4, rng=2).to(backend)
        opt_h, opt_d = mg.SGD(host.parameters(), **kwargs), mg.SGD(gpu.parameters(), **kwargs)
        for step in range(3):
            x, dout = _data((16, 9), np.float32, 20 + step), _data((16, 4), np.float32, 30 + step)
            for layer, opt, dev in ((host, opt_h, np.asarray), (gpu, opt_d, lambda a: to_device(a, backend))):
                opt.zero_grad()
                layer.forward(dev(x))
                layer.backward(dev(dout))
                opt.step()
        for k in host.params:
            _close_f32(gpu.params[k], host.params[k], f"SGD {kwargs}: {k}")


# ------------------------------------------------------------ whole training runs


def _small_gan(backend, dtype, pack=1, ema_decay=None, rng=1):
    """A small GAN: G 2 -> 64 -> 64 -> 2, D [Pack(pack)] -> 2 pack -> 64 -> 64 -> 1."""
    init = np.random.default_rng(0)

    def mlp(sizes):
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(mg.Dense(a, b, rng=init, backend=backend))
            if i < len(sizes) - 2:
                layers.append(mg.LeakyReLU(0.2))
        return mg.Sequential(*layers).astype(dtype)

    G, D = mlp([2, 64, 64, 2]), mlp([2 * pack, 64, 64, 1])
    if pack > 1:
        D = mg.Sequential(Pack(pack), *D.layers)
    adam = dict(lr=1e-3, betas=(0.5, 0.999))
    ema = EMA(G, ema_decay) if ema_decay else None
    return GAN(G, D, 2, mg.Adam(G.parameters(), **adam), mg.Adam(D.parameters(), **adam),
               rng=rng, ema=ema)


def _run(gan, data, backend):
    """Train on every batch of data; (losses per step (steps, 4), final parameters)."""
    keys = ("d_loss", "g_loss", "d_real", "d_fake")
    losses = []
    for batch in data:
        stats = gan.train_step(to_device(batch.astype(gan.dtype), backend))
        losses.append([stats[k] for k in keys])
    models = [gan.G, gan.D] + ([gan.ema.G] if gan.ema is not None else [])
    params = [to_numpy(p) for m in models for p, _ in m.parameters()]
    assert all(p.dtype == gan.dtype for p in params), "a parameter changed its dtype"
    params = [p.astype(np.float64) for p in params]
    return np.array(losses).reshape(-1, len(keys)), params


def _distance(run_a, run_b):
    """(largest loss difference, largest parameter difference relative to the parameter's size)."""
    (loss_a, params_a), (loss_b, params_b) = run_a, run_b
    loss = float(np.abs(loss_a - loss_b).max(initial=0.0))
    param = max(float(np.abs(a - b).max()) / max(float(np.abs(a).max()), float(np.abs(b).max()), 1e-30)
                for a, b in zip(params_a, params_b))
    return loss, param


@pytest.mark.parametrize("options", [{}, {"pack": 2, "ema_decay": 0.99}], ids=["plain", "pack2-ema"])
def test_training_trajectories_agree_for_300_steps(backend, options):
    """The same GAN, weights and host-side noise on NumPy and on CuPy: the same run."""
    data = np.random.default_rng(2).standard_normal((300, 128, 2))
    # float64: the two backends agree to 1e-9 over the whole run
    ref64 = _run(_small_gan("numpy", np.float64, **options), data, "numpy")
    gpu64 = _run(_small_gan(backend, np.float64, **options), data, backend)
    loss_err, param_err = _distance(gpu64, ref64)
    assert loss_err <= 1e-9 and param_err <= 1e-9, \
        f"float64: losses differ by {loss_err:.1e}, parameters by {param_err:.1e} (relative)"
    # float32: as close to NumPy's float32 run as rounding itself moves a run
    ref32 = _run(_small_gan("numpy", np.float32, **options), data, "numpy")
    gpu32 = _run(_small_gan(backend, np.float32, **options), data, backend)
    rounding = _distance(ref32, ref64)
    for what, got, drift in zip(("losses", "parameters"), _distance(gpu32, ref32), rounding):
        assert got <= max(1e-5, 10 * drift), (
            f"float32 {what}: CuPy and NumPy differ by {got:.1e}, but rounding alone moves "
            f"this run by {drift:.1e} (float32 against float64)")
    # the run did something: the weights moved far beyond the tolerances
    start = _run(_small_gan("numpy", np.float64, **options), data[:0], "numpy")
    assert _distance((ref64[0][:0], ref64[1]), start)[1] > 1e-2


def test_a_cupy_generator_draws_the_noise_on_the_gpu(backend):
    import cupy

    gan = _small_gan(backend, np.float32, rng=cupy.random.default_rng(1))
    z = gan.sample_noise(4096)
    assert type(z).__module__.startswith("cupy") and z.dtype == np.float32 and z.shape == (4096, 2)
    z = to_numpy(z)
    assert abs(z.mean()) < 0.05 and abs(z.std() - 1.0) < 0.05
    again = _small_gan(backend, np.float32, rng=cupy.random.default_rng(1)).sample_noise(4096)
    np.testing.assert_array_equal(to_numpy(again), z)  # a seeded generator: repeatable
    stats = gan.train_step(to_device(np.zeros((64, 2), np.float32), backend))
    assert np.isfinite(stats["d_loss"]) and np.isfinite(stats["g_loss"])
