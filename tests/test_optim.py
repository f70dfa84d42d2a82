"""Optimisers against their closed-form updates, Adam's fast kernels against its plain
update, checkpoints, dtypes through a GAN step."""

import math

import numpy as np
import pytest

from minigan import SGD, Adam, BatchNorm1d, Dense, Layer, LeakyReLU, Sequential, Tanh
from minigan import kernels
from minigan.backend import array_module, to_numpy
from minigan.gan import GAN
from minigan.gan_losses import Minimax, NonSaturating

SHAPES = [(3, 4), (4,), (2, 1)]
STEPS = 6


def _setup(dev, dtype, seed=0):
    """(params, grads) on the backend, and the gradients of every step (NumPy float64)."""
    rng = np.random.default_rng(seed)
    params = [dev(rng.standard_normal(s), dtype) for s in SHAPES]
    grads = [dev(np.zeros(s), dtype) for s in SHAPES]
    # Gradients that change every step, in sign and in scale.
    schedule = [[rng.standard_normal(s) * rng.uniform(0.1, 3.0) for s in SHAPES] for _ in range(STEPS)]
    return params, grads, schedule


def _load_grads(dev, grads, values, dtype):
    for g, v in zip(grads, values):
        g[...] = dev(v, dtype)


def _as_f64(arrays):
    return [to_numpy(a).astype(np.float64) for a in arrays]


def sgd_reference(p0, schedule, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    """torch.optim.SGD's update (dampening 0), written out."""
    p = [a.copy() for a in p0]
    v = [None] * len(p)
    trajectory = []
    for grads in schedule:
        for i, g in enumerate(grads):
            g = g + weight_decay * p[i]
            if momentum:
                v[i] = g.copy() if v[i] is None else momentum * v[i] + g
                d = g + momentum * v[i] if nesterov else v[i]
            else:
                d = g
            p[i] = p[i] - lr * d
        trajectory.append([a.copy() for a in p])
    return trajectory


def adam_reference(p0, schedule, lr, betas, eps=1e-8, weight_decay=0.0):
    """Adam with bias correction by the step count t, eps outside the square root."""
    b1, b2 = betas
    p = [a.copy() for a in p0]
    m = [np.zeros_like(a) for a in p]
    v = [np.zeros_like(a) for a in p]
    trajectory = []
    for t, grads in enumerate(schedule, start=1):
        for i, g in enumerate(grads):
            g = g + weight_decay * p[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            m_hat = m[i] / (1 - b1**t)
            v_hat = v[i] / (1 - b2**t)
            p[i] = p[i] - lr * m_hat / (np.sqrt(v_hat) + eps)
        trajectory.append([a.copy() for a in p])
    return trajectory


SGD_CASES = {
    "plain": dict(lr=0.1),
    "momentum": dict(lr=0.05, momentum=0.9),
    "nesterov": dict(lr=0.05, momentum=0.8, nesterov=True),
    "weight_decay": dict(lr=0.1, weight_decay=0.05),
    "momentum+wd": dict(lr=0.05, momentum=0.9, weight_decay=0.01),
    "nesterov+wd": dict(lr=0.02, momentum=0.5, nesterov=True, weight_decay=0.1),
}
ADAM_CASES = {
    "default": dict(lr=1e-3, betas=(0.9, 0.999)),
    "gan": dict(lr=2e-4, betas=(0.5, 0.999)),
    "big-lr": dict(lr=0.1, betas=(0.8, 0.99), eps=1e-3),
    "weight_decay": dict(lr=1e-2, betas=(0.9, 0.999), weight_decay=0.1),
}
# float64 runs agree with the reference to rounding; float32 to float32 precision
# (relative 1e-6 of the parameter after 6 steps, atol for entries near 0).
TOL = {"float64": dict(rtol=1e-12, atol=1e-14), "float32": dict(rtol=2e-6, atol=2e-6)}


def _run(dev, dtype, make, reference, kwargs):
    params, grads, schedule = _setup(dev, dtype)
    p0 = _as_f64(params)  # the exact starting values (after rounding to dtype)
    opt = make(list(zip(params, grads)), **kwargs)
    sched = [[g.astype(dtype).astype(np.float64) for g in gs] for gs in schedule]
    expected = reference(p0, sched, **kwargs)
    for t in range(STEPS):
        _load_grads(dev, grads, schedule[t], dtype)
        opt.step()
        assert opt.t == t + 1
        for i, (p, e) in enumerate(zip(params, expected[t])):
            assert p.dtype == np.dtype(dtype)
            np.testing.assert_allclose(to_numpy(p), e, **TOL[dtype],
                                       err_msg=f"param {i} after step {t + 1}")
    return opt, params


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", list(SGD_CASES))
def test_sgd_matches_closed_form(dev, dtype, case):
    _run(dev, dtype, SGD, sgd_reference, SGD_CASES[case])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", list(ADAM_CASES))
def test_adam_matches_closed_form(dev, dtype, case):
    opt, _ = _run(dev, dtype, Adam, adam_reference, ADAM_CASES[case])
    for buf in opt.m + opt.v:
        assert buf.dtype == np.dtype(dtype)


def test_adam_first_step_moves_each_weight_by_lr(dev):
    """With bias correction, step 1 is lr * g / (|g| + eps): about lr * sign(g), whatever |g|."""
    params, grads, schedule = _setup(dev, "float64")
    before = _as_f64(params)
    opt = Adam(list(zip(params, grads)), lr=0.01, betas=(0.5, 0.999), eps=1e-8)
    _load_grads(dev, grads, schedule[0], "float64")
    opt.step()
    for p, b, g in zip(params, before, schedule[0]):
        np.testing.assert_allclose(b - to_numpy(p), 0.01 * g / (np.abs(g) + 1e-8), rtol=1e-10)


def test_zero_grad_and_in_place_updates(dev, backend):
    model = Sequential(Dense(3, 4, backend=backend), Tanh(), Dense(4, 1, backend=backend))
    params = model.parameters()
    ids = [id(p) for p, _ in params]
    opt = Adam(params, lr=1e-2)
    x = dev(np.random.default_rng(0).standard_normal((5, 3)), "float32")
    model(x)
    model.backward(dev(np.ones((5, 1)), "float32"))
    before = [to_numpy(p).copy() for p, _ in params]
    opt.step()
    assert [id(p) for p, _ in model.parameters()] == ids  # the model's own arrays changed
    assert any(not np.array_equal(b, to_numpy(p)) for b, (p, _) in zip(before, model.parameters()))
    opt.zero_grad()
    assert all(np.all(to_numpy(g) == 0) for _, g in model.parameters())


# ------------------------------------------------ Adam's fast path against _update


def _twin_adams(dev, dtype, shapes, kwargs, seed=0):
    """Two Adams on equal copies of the same parameters: one forced onto the plain
    ``_update``, one free to choose its kernel. Returns them and a gradient feeder."""
    rng = np.random.default_rng(seed)
    start = [rng.standard_normal(s) for s in shapes]
    # p.copy(): on NumPy, dev() of a float64 array in float64 is that very array
    pairs = [[(dev(p.copy(), dtype), dev(np.zeros(p.shape), dtype)) for p in start]
             for _ in range(2)]
    plain, fast = Adam(pairs[0], **kwargs), Adam(pairs[1], **kwargs)
    plain._use_kernel = False

    def feed():
        for (_, g_plain), (_, g_fast) in zip(pairs[0], pairs[1]):
            # gradients that change in sign and in scale (1e-4 to 1) from step to step
            g = rng.standard_normal(g_plain.shape) * 10.0 ** rng.integers(-4, 1)
            g_plain[...] = dev(g, dtype)
            g_fast[...] = dev(g, dtype)

    return plain, fast, feed


def _assert_same_state(plain, fast, when):
    for name, a, b in [("param", p, q) for (p, _), (q, _) in zip(plain.params, fast.params)] \
            + [("m", a, b) for a, b in zip(plain.m, fast.m)] \
            + [("v", a, b) for a, b in zip(plain.v, fast.v)]:
        assert b.dtype == a.dtype
        np.testing.assert_array_equal(to_numpy(b), to_numpy(a), err_msg=f"{name} {when}")


@pytest.mark.parametrize("block", [None, 7], ids=["default-blocks", "blocks-of-7"])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01], ids=["no-wd", "wd"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_adam_fast_path_is_bit_for_bit_the_plain_update(dev, backend, dtype, weight_decay,
                                                        block, monkeypatch):
    """kernels.adam_step (NumPy: in place over cache-sized blocks; CuPy: one fused
    kernel per parameter) gives exactly the numbers of Adam._update, step after step."""
    if block is not None:  # blocks of 7 cut every parameter below, with a ragged last block
        monkeypatch.setattr(kernels, "ADAM_BLOCK", block)
    shapes = [(300, 70), (70,), (13, 11), (1, 1)]  # (300, 70) spans several default blocks too
    kwargs = dict(lr=1e-2, betas=(0.5, 0.999), eps=1e-8, weight_decay=weight_decay)
    plain, fast, feed = _twin_adams(dev, dtype, shapes, kwargs)
    for step in range(1, 6):
        feed()
        plain.step()
        fast.step()
        _assert_same_state(plain, fast, f"after step {step}")
    assert fast._use_kernel is True, "the reference Adam did not take its fast path"
    assert plain.t == fast.t == 5


def test_adam_fast_path_handles_arrays_that_are_not_contiguous(dev, backend):
    """A parameter that is not C-contiguous cannot be cut into flat views: it is
    updated whole, in place, and still gives _update's numbers."""
    plain, fast, feed = _twin_adams(dev, "float32", [(40, 30), (5,)], dict(lr=1e-2))
    for opt in (plain, fast):
        opt.params[0] = tuple(a.T for a in opt.params[0])  # (30, 40) views, F-ordered
        opt.m[0], opt.v[0] = opt.m[0].T, opt.v[0].T
    for step in range(3):
        feed()
        plain.step()
        fast.step()
    _assert_same_state(plain, fast, "after 3 steps")
    assert fast._use_kernel is True


def test_a_changed_update_rule_is_what_runs(dev, monkeypatch):
    """The kernel stands in for _update only where it gives _update's numbers: a
    subclass's own rule, or an edited Adam._update (a student's solution of
    Exercise 3.2, here one without bias correction), runs as written."""
    class SignAdam(Adam):
        def _update(self, i, p, g):
            p -= self.lr * array_module(g).sign(g)

    p, g = dev([1.0, 2.0, 3.0], "float64"), dev([0.5, -2.0, 0.0], "float64")
    opt = SignAdam([(p, g)], lr=0.1)
    opt.step()
    np.testing.assert_allclose(to_numpy(p), [0.9, 2.1, 3.0])
    assert opt._use_kernel is False

    def no_bias_correction(self, i, p, g):
        b1, b2 = self.betas
        self.m[i][...] = b1 * self.m[i] + (1 - b1) * g
        self.v[i][...] = b2 * self.v[i] + (1 - b2) * g * g
        p -= self.lr * self.m[i] / ((self.v[i]) ** 0.5 + self.eps)

    monkeypatch.setattr(Adam, "_update", no_bias_correction)
    p = dev([1.0, 2.0, 3.0], "float64")
    opt = Adam([(p, g)], lr=0.1, betas=(0.5, 0.999))
    opt.step()
    # step 1 without bias correction: 0.1 * (0.5 g) / (sqrt(0.001) |g|), not 0.1 * sign(g)
    np.testing.assert_allclose(to_numpy(p), [1 - 0.05 / 0.001 ** 0.5, 2 + 0.05 / 0.001 ** 0.5, 3.0],
                               rtol=1e-5)
    assert opt._use_kernel is False

    def not_written_yet(self, i, p, g):
        raise NotImplementedError("Exercise 3.2: update p in place by Adam, with bias correction")

    monkeypatch.setattr(Adam, "_update", not_written_yet)
    with pytest.raises(NotImplementedError, match="Exercise 3.2"):
        Adam([(p, g)]).step()


def test_a_wrapped_step_runs_once_per_call(dev):
    """Deciding on the kernel copies the optimiser; a wrapper on its step (a timer,
    as benchmarks/breakdown.py sets) is not run by the copy."""
    params, grads, _ = _setup(dev, "float32")
    opt = Adam(list(zip(params, grads)), lr=1e-2)
    calls, inner = [], opt.step

    def timed():
        calls.append(opt.t)
        inner()

    opt.step = timed
    opt.step()
    opt.step()
    assert calls == [0, 1] and opt.t == 2 and opt._use_kernel is True


def test_sgd_is_its_plain_update(dev):
    """SGD has no fast path: step() is _update over every parameter, in place."""
    params, grads, schedule = _setup(dev, "float64")
    opt = SGD(list(zip(params, grads)), lr=0.1, momentum=0.9, nesterov=True)
    _load_grads(dev, grads, schedule[0], "float64")
    before = _as_f64(params)
    opt.step()
    for p, b, g in zip(params, before, schedule[0]):  # v = g on step 1: p -= lr (g + 0.9 g)
        np.testing.assert_allclose(to_numpy(p), b - 0.1 * 1.9 * g, rtol=1e-14)


# ------------------------------------------------------------------- checkpoints


def _training_run(dev, backend, make_opt, seed_model, steps, state=None):
    model = Sequential(Dense(3, 5, rng=seed_model, backend=backend), BatchNorm1d(5, backend=backend),
                       LeakyReLU(0.2), Dense(5, 2, rng=seed_model + 1, backend=backend))
    opt = make_opt(model.parameters())
    if state is not None:
        model.load_state_dict(state[0])
        opt.load_state_dict(state[1])
    return model, opt, _continue(dev, model, opt, steps)


@pytest.mark.parametrize("make_opt", [
    lambda ps: SGD(ps, lr=0.05, momentum=0.9),
    lambda ps: SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    lambda ps: Adam(ps, lr=1e-2, betas=(0.5, 0.999)),
    lambda ps: Adam(ps, lr=1e-2, weight_decay=0.1),
], ids=["sgd-momentum", "sgd-nesterov-wd", "adam", "adam-wd"])
def test_optimizer_state_dict_round_trip(dev, backend, make_opt):
    model, opt, _ = _training_run(dev, backend, make_opt, seed_model=0, steps=3)
    saved = (model.state_dict(), opt.state_dict())
    assert saved[1]["t"] == 3
    continued = _continue(dev, model, opt, 4)
    # A fresh model and optimiser (other initial weights) restored from the checkpoint
    # follow exactly the same trajectory.
    _, opt2, resumed = _training_run(dev, backend, make_opt, seed_model=7, steps=4, state=saved)
    assert opt2.t == 7
    for a, b in zip(continued, resumed):
        for pa, pb in zip(a, b):
            np.testing.assert_array_equal(pa, pb)
    # The checkpoint holds copies: the continued training did not change it.
    fresh = make_opt(Sequential(Dense(3, 5, backend=backend), BatchNorm1d(5, backend=backend),
                                LeakyReLU(0.2), Dense(5, 2, backend=backend)).parameters())
    fresh.load_state_dict(saved[1])
    assert fresh.t == 3
    for key, value in fresh.state_dict().items():
        if key not in ("t", "lr"):
            np.testing.assert_array_equal(to_numpy(value), to_numpy(saved[1][key]))


def _continue(dev, model, opt, steps):
    """Train for ``steps``; the data depend only on the optimiser's step count."""
    rng = np.random.default_rng(100 + opt.t)
    trajectory = []
    for _ in range(steps):
        x = dev(rng.standard_normal((4, 3)), "float32")
        model.zero_grad()
        model(x)
        model.backward(dev(rng.standard_normal((4, 2)), "float32"))
        opt.step()
        trajectory.append([to_numpy(p).copy() for p, _ in model.parameters()])
    return trajectory


def test_optimizer_state_for_another_model_is_refused(backend):
    small = Sequential(Dense(3, 4, backend=backend), Dense(4, 1, backend=backend))
    big = Sequential(Dense(3, 5, backend=backend), Dense(5, 1, backend=backend))
    state = Adam(small.parameters()).state_dict()
    with pytest.raises(ValueError, match=r"'m\.0' has shape \(3, 4\) in the saved state but \(3, 5\)"):
        Adam(big.parameters()).load_state_dict(state)
    with pytest.raises(ValueError, match=r"no 'm\.0'"):
        Adam(small.parameters()).load_state_dict(SGD(small.parameters()).state_dict())


def test_optimizer_argument_errors(backend):
    model = Dense(2, 2, backend=backend)
    with pytest.raises(ValueError, match="empty parameter list"):
        Adam([])
    with pytest.raises(TypeError, match=r"\(param, grad\) pairs as returned by model\.parameters\(\); item 0 is a ndarray"):
        SGD(list(model.params.values()))
    with pytest.raises(ValueError, match="learning rate must be positive, got 0"):
        SGD(model.parameters(), lr=0)
    with pytest.raises(ValueError, match="Nesterov momentum needs momentum > 0"):
        SGD(model.parameters(), nesterov=True)
    with pytest.raises(ValueError, match=r"betas must be in \[0, 1\)"):
        Adam(model.parameters(), betas=(0.9, 1.0))


# ---------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("make_opt", [
    lambda ps: SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    lambda ps: Adam(ps, lr=1e-2, weight_decay=0.01),
], ids=["sgd", "adam"])
def test_float32_stays_float32_through_optimizer_steps(dev, backend, make_opt):
    model = Sequential(Dense(3, 4, backend=backend), BatchNorm1d(4, backend=backend), LeakyReLU(0.2),
                       Dense(4, 1, backend=backend))
    opt = make_opt(model.parameters())
    for step in range(3):
        model.zero_grad()
        model(dev(np.random.default_rng(step).standard_normal((5, 3)), "float32"))
        model.backward(dev(np.ones((5, 1)), "float32"))
        opt.step()
    for name, p, g in model.named_parameters():
        assert p.dtype == np.float32 and g.dtype == np.float32, name
    for key, value in opt.state_dict().items():
        if hasattr(value, "dtype"):
            assert value.dtype == np.float32, key


class DtypeSpy(Layer):
    """The identity, recording the dtype of every array passing through, both ways."""

    def __init__(self, name, seen):
        super().__init__()
        self.name, self.seen = name, seen

    def forward(self, x):
        self.seen.append((f"{self.name} forward", x.dtype))
        self._save_cache(None, x)
        return x

    def backward(self, dout, param_grads=True, input_grad=True):
        self._pop_cache(dout)
        self.seen.append((f"{self.name} backward", dout.dtype))
        return dout


@pytest.mark.parametrize("d_batchnorm", [False, True], ids=["joint-D-pass", "D-with-batchnorm"])
@pytest.mark.parametrize("loss", [NonSaturating(label_smoothing=0.1), Minimax()],
                         ids=["non-saturating", "minimax"])
def test_float32_everywhere_through_gan_train_step(dev, backend, d_batchnorm, loss):
    latent, seen = 3, []
    G = Sequential(Dense(latent, 8, backend=backend), BatchNorm1d(8, backend=backend), LeakyReLU(0.2),
                   Dense(8, 2, backend=backend), DtypeSpy("G output", seen))
    d_layers = [Dense(2, 8, backend=backend), LeakyReLU(0.2), Dense(8, 1, backend=backend),
                DtypeSpy("D output", seen)]  # its backward sees the loss's gradient
    if d_batchnorm:
        d_layers.insert(1, BatchNorm1d(8, backend=backend))
    D = Sequential(*d_layers)
    g_opt = Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    d_opt = Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    gan = GAN(G, D, latent, g_opt, d_opt, loss=loss, rng=0)
    real = dev(np.random.default_rng(1).standard_normal((6, 2)), "float32")
    # the named steps one by one, then whole steps
    z = gan.sample_noise(6)
    fake = gan.generate(z)
    assert z.dtype == np.float32 and fake.dtype == np.float32
    stats = {**gan.discriminator_step(real, fake), **gan.generator_step(fake)}
    for _ in range(2):
        stats.update(gan.train_step(real))
    for k, v in stats.items():
        assert isinstance(v, (int, float)) and math.isfinite(v), (k, v)
    assert {where for where, _ in seen} == {"G output forward", "G output backward",
                                             "D output forward", "D output backward"}
    for where, dtype in seen:
        assert dtype == np.float32, f"{where}: {dtype}"
    for model in (G, D):
        for name, p, g in model.named_parameters():
            assert p.dtype == np.float32 and g.dtype == np.float32, name
        for key, value in model.state_dict().items():
            assert value.dtype == np.float32, key
    for opt in (g_opt, d_opt):
        for buf in opt.m + opt.v:
            assert buf.dtype == np.float32
        assert opt.t == 3
    assert gan.sample(4).dtype == np.float32
