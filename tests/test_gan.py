"""The GAN training loop: what each named step may and may not touch, and its gradients."""

from __future__ import annotations

import numpy as np
import pytest

import minigan.backend as mb
from minigan.gradcheck import compare, numerical_gradient
from minigan.models import build_gan, lr_factor, mlp

TINY = {"latent_dim": 3, "data_dim": 2, "g_hidden": [8, 8], "d_hidden": [8, 8],
        "lr_g": 1e-2, "lr_d": 1e-2}


def _np(x):
    return mb.to_numpy(x)


def _snapshot(model):
    """Copies (on the host) of every parameter, gradient and buffer of a model."""
    out = {}
    for name, p, g in model.named_parameters():
        out["param " + name] = _np(p).copy()
        out["grad " + name] = _np(g).copy()
    for k, v in model.state_dict().items():
        out["state " + k] = _np(v).copy()
    return out


def _opt_snapshot(opt):
    return {k: (_np(v).copy() if hasattr(v, "shape") else v) for k, v in opt.state_dict().items()}


def _real(n, backend, dtype="float32", seed=0):
    x = np.random.default_rng(seed).standard_normal((n, 2)).astype(dtype)
    return mb.to_device(x, backend)


# ------------------------------------------------------------------ the generator step


@pytest.mark.parametrize("d_batchnorm", [False, True], ids=["plain-D", "batchnorm-D"])
def test_generator_step_leaves_d_bit_identical(backend, d_batchnorm):
    gan = build_gan({**TINY, "d_batchnorm": d_batchnorm}, backend=backend, seed=1)
    gan.train_step(_real(16, backend))          # D has non-zero grads and Adam moments now
    z = gan.sample_noise(16)
    fake = gan.generate(z)
    gan.discriminator_step(_real(16, backend, seed=1), fake)
    fake = gan.generate(gan.sample_noise(16))
    before_params = {k: v for k, v in _snapshot(gan.D).items() if not k.startswith("state")}
    assert any(np.any(v != 0) for k, v in before_params.items() if k.startswith("grad"))
    before_opt = _opt_snapshot(gan.d_optimizer)

    gan.generator_step(fake)

    after = _snapshot(gan.D)
    for k, v in before_params.items():
        assert after[k].dtype == v.dtype
        assert np.array_equal(after[k], v), f"the generator step changed D's {k}"
    after_opt = _opt_snapshot(gan.d_optimizer)
    for k, v in before_opt.items():
        assert np.array_equal(after_opt[k], v), f"the generator step changed D's optimiser {k}"


def test_generator_step_moves_every_parameter_of_g(backend):
    gan = build_gan(TINY, backend=backend, seed=2)
    fake = gan.generate(gan.sample_noise(32))
    before = {name: _np(p).copy() for name, p, _ in gan.G.named_parameters()}
    t0 = gan.g_optimizer.t
    gan.generator_step(fake)
    assert gan.g_optimizer.t == t0 + 1
    for name, p, _ in gan.G.named_parameters():
        assert _np(p).dtype == np.float32
        assert not np.array_equal(_np(p), before[name]), f"G's {name} did not move"


def _analytic_generator_grads(gan, z):
    """G's gradients exactly as ``generator_step`` computes them (the update is skipped)."""
    gan.g_optimizer.step = lambda: None  # instance attribute: only this GAN's optimiser
    fake = gan.generate(z)
    gan.generator_step(fake)
    return {name: g.copy() for name, _, g in gan.G.named_parameters()}


@pytest.mark.parametrize("g_loss", ["non-saturating", "minimax"])
@pytest.mark.parametrize("g_batchnorm", [False, True], ids=["plain-G", "batchnorm-G"])
def test_generator_gradient_through_d_matches_finite_differences(g_loss, g_batchnorm):
    config = {**TINY, "g_hidden": [5], "d_hidden": [4], "dtype": "float64",
              "activation": "tanh", "g_loss": g_loss, "g_batchnorm": g_batchnorm}
    gan = build_gan(config, backend="numpy", seed=3)
    z = np.random.default_rng(4).standard_normal((7, 3))
    analytic = _analytic_generator_grads(gan, z)

    def loss():
        fake = gan.G.forward(z)
        value = gan.loss.generator(gan.D.forward(fake))[0]
        gan.G.clear_cache()
        gan.D.clear_cache()
        return float(value)

    for name, p, _ in gan.G.named_parameters():
        numeric = numerical_gradient(loss, p)
        result = compare(name, analytic[name], numeric)
        assert result.ok, result.line()
        if name.endswith(".W"):  # (a bias right before batch norm has gradient exactly 0)
            assert np.abs(analytic[name]).max() > 1e-6, f"{name}'s gradient is trivially zero"


def test_generator_gradient_check_catches_a_wrong_gradient():
    """The finite-difference comparison above would notice a broken generator step."""
    gan = build_gan({**TINY, "g_hidden": [5], "d_hidden": [4], "dtype": "float64"},
                    backend="numpy", seed=3)
    z = np.random.default_rng(4).standard_normal((7, 3))
    analytic = _analytic_generator_grads(gan, z)
    name, p, _ = gan.G.named_parameters()[0]

    def loss():
        value = gan.loss.generator(gan.D.forward(gan.G.forward(z)))[0]
        gan.G.clear_cache()
        gan.D.clear_cache()
        return float(value)

    numeric = numerical_gradient(loss, p)
    assert compare(name, analytic[name], numeric).ok
    assert not compare(name, -analytic[name], numeric).ok
    assert not compare(name, 2 * analytic[name], numeric).ok


# ------------------------------------------------------------------ what the steps hand on


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _softplus(x):
    return np.logaddexp(0.0, x)


def _spy(obj, name, log):
    """Record every call of ``obj.name`` (its arguments and result) in ``log``."""
    original = getattr(obj, name)

    def spy(*args, **kwargs):
        result = original(*args, **kwargs)
        log.append((name, args, result))
        return result

    setattr(obj, name, spy)  # an instance attribute: only this object is spied on


@pytest.mark.parametrize("g_loss", ["non-saturating", "minimax"])
def test_generator_step_feeds_the_formula_gradient_into_d(g_loss):
    gan = build_gan({**TINY, "g_loss": g_loss}, backend="numpy", seed=6)
    fake = gan.generate(gan.sample_noise(10))
    calls = []
    _spy(gan.D, "forward", calls)
    _spy(gan.D, "backward", calls)
    gan.generator_step(fake)
    (_, (d_in,), logits), (_, (dlogits,), dfake) = calls
    assert d_in is fake
    l = logits.astype(np.float64)
    expected = (_sigmoid(l) - 1.0) / l.size if g_loss == "non-saturating" else -_sigmoid(l) / l.size
    np.testing.assert_allclose(dlogits, expected, rtol=1e-5, atol=1e-8)
    assert dfake.shape == fake.shape


# ------------------------------------------------------------------ D steps, smoothing


@pytest.mark.parametrize("k", [1, 3])
def test_d_steps_does_k_discriminator_updates(backend, k):
    gan = build_gan({**TINY, "d_steps": k}, backend=backend, seed=7)
    calls = []
    for step in ("sample_noise", "generate", "discriminator_step", "generator_step"):
        _spy(gan, step, calls)
    d_before = _snapshot(gan.D)
    gan.train_step(_real(8, backend))
    assert gan.d_optimizer.t == k
    assert gan.g_optimizer.t == 1
    stages = [name for name, _, _ in calls]
    assert stages == ["sample_noise", "generate", "discriminator_step"] * k + ["generator_step"]
    # the generator step works on the fake batch of the last generate
    assert calls[-1][1][0] is calls[-2][1][1]
    assert not np.array_equal(_snapshot(gan.D)["param 0.W"], d_before["param 0.W"])
    batches = [_real(8, backend, seed=s) for s in range(k)]
    gan.train_step(batches)  # one real batch per D update
    assert gan.d_optimizer.t == 2 * k
    with pytest.raises(ValueError, match=f"d_steps={k}"):
        gan.train_step([_real(8, backend)] * (k + 1))


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.25])
def test_label_smoothing_changes_only_the_real_target(smoothing):
    gan = build_gan({**TINY, "label_smoothing": smoothing}, backend="numpy", seed=8)
    calls = []
    _spy(gan.D, "forward", calls)
    _spy(gan.D, "backward", calls)
    real = _real(12, "numpy")
    stats = gan.train_step(real)
    # the discriminator step: one joint pass over [real; fake], then its backward
    (_, (d_in,), out), (_, (dout,), _) = calls[:2]
    np.testing.assert_array_equal(d_in[:12], real)
    lr, lf = out[:12].astype(np.float64), out[12:].astype(np.float64)
    np.testing.assert_allclose(dout[:12], (_sigmoid(lr) - (1 - smoothing)) / 12,
                               rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(dout[12:], _sigmoid(lf) / 12, rtol=1e-5, atol=1e-8)
    y = 1 - smoothing
    expected = (np.mean(_softplus(lr) - lr * y) + np.mean(_softplus(lf)))
    assert stats["d_loss"] == pytest.approx(expected, rel=1e-5)


# ------------------------------------------------------------------ history


def test_history_records_every_step():
    gan = build_gan(TINY, backend="numpy", seed=11)
    returned = [gan.train_step(_real(8, "numpy", seed=s)) for s in range(4)]
    h = gan.history
    assert len(h.records) == 4 and gan.step == 4
    assert list(h["step"]) == [1, 2, 3, 4]
    assert set(h) == {"step", "d_loss", "g_loss", "d_real", "d_fake"}
    for key in ("d_loss", "g_loss", "d_real", "d_fake"):
        assert key in h
        np.testing.assert_array_equal(h[key], [r[key] for r in returned])
        assert all(isinstance(r[key], float) for r in returned)
    assert all(0 < r["d_real"] < 1 and 0 < r["d_fake"] < 1 for r in returned)


def test_a_training_step_stays_float32():
    gan = build_gan(TINY, backend="numpy", seed=12)
    gan.train_step(_real(8, "numpy"))
    for model in (gan.G, gan.D):
        for name, p, g in model.named_parameters():
            assert p.dtype == np.float32 and g.dtype == np.float32, name
    for opt in (gan.g_optimizer, gan.d_optimizer):
        assert all(m.dtype == np.float32 for m in opt.m + opt.v)
    with pytest.raises(TypeError, match="float64"):
        gan.train_step(_real(8, "numpy", dtype="float64"))


# ------------------------------------------------------------------ sampling


def test_sample_shape_dtype_and_mode(backend):
    gan = build_gan({**TINY, "g_batchnorm": True}, backend=backend, seed=13)
    x = gan.sample(17)
    assert x.shape == (17, 2) and x.dtype == np.float32
    assert mb.backend_of(x) == backend
    assert gan.G.training  # back in training mode afterwards
    # batch norm in eval mode: one sample does not depend on the others in the batch
    a = _np(gan.sample(5, rng=0))
    b = _np(gan.sample(50, rng=0))[:5]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_sample_with_its_own_rng_leaves_the_training_noise_alone():
    gan = build_gan(TINY, backend="numpy", seed=14)
    state = gan.rng.bit_generator.state
    a = gan.sample(10, rng=5)
    assert gan.rng.bit_generator.state == state
    np.testing.assert_array_equal(a, gan.sample(10, rng=5))
    gan.sample(10)  # without rng: draws from the GAN's own generator
    assert gan.rng.bit_generator.state != state


def test_sample_between_generate_and_generator_step_is_refused_clearly():
    """sample() runs G in eval mode and clears its cache, so a generator step cannot
    silently backpropagate through the eval pass; it raises, saying what is missing."""
    gan = build_gan(TINY, backend="numpy", seed=15)
    fake = gan.generate(gan.sample_noise(8))
    gan.sample(4)
    with pytest.raises(RuntimeError, match="without a matching forward"):
        gan.generator_step(fake)
    # generating again makes the step work, and training carries on normally
    fake = gan.generate(gan.sample_noise(8))
    gan.generator_step(fake)
    gan.train_step(_real(8, "numpy"))


def test_sampling_does_not_change_training():
    """A run that samples (evaluation mode) between steps trains exactly like one that does not."""
    config = {**TINY, "g_batchnorm": True}
    a = build_gan(config, backend="numpy", seed=16)
    b = build_gan(config, backend="numpy", seed=16)
    for s in range(3):
        real = _real(8, "numpy", seed=s)
        a.train_step(real)
        b.sample(20, rng=s)
        b.train_step(real)
    for (na, pa, _), (_, pb, _) in zip(a.G.named_parameters(), b.G.named_parameters()):
        np.testing.assert_array_equal(pa, pb, err_msg=na)
    for k, v in a.G.state_dict().items():
        np.testing.assert_array_equal(v, b.G.state_dict()[k], err_msg=k)


# ------------------------------------------------------------------ builders


def test_mlp_builds_the_layers_asked_for():
    model = mlp([4, 16, 8, 3], activation="leaky_relu", slope=0.2, out_activation="tanh",
                batchnorm=True, dropout=0.25, rng=0)
    names = [type(layer).__name__ for layer in model]
    assert names == ["Dense", "BatchNorm1d", "LeakyReLU", "Dropout",
                     "Dense", "BatchNorm1d", "LeakyReLU", "Dropout", "Dense", "Tanh"]
    assert model[2].negative_slope == 0.2
    assert [(layer.in_features, layer.out_features) for layer in model
            if type(layer).__name__ == "Dense"] == [(4, 16), (16, 8), (8, 3)]
    assert model.dtype == np.float32
    with pytest.raises(ValueError, match="sizes"):
        mlp([4])
    with pytest.raises(ValueError, match="activation"):
        mlp([4, 2], activation="swish")


def test_build_gan_is_seeded_and_follows_the_config():
    config = {"latent_dim": 100, "data_dim": 784, "g_hidden": [256, 512, 1024],
              "d_hidden": [1024, 512, 256], "g_out": "tanh", "lr_g": 2e-4, "lr_d": 3e-4,
              "betas": [0.5, 0.999]}
    gan = build_gan(config, backend="numpy", seed=0)
    g_sizes = [(l.in_features, l.out_features) for l in gan.G if hasattr(l, "in_features")]
    d_sizes = [(l.in_features, l.out_features) for l in gan.D if hasattr(l, "in_features")]
    assert g_sizes == [(100, 256), (256, 512), (512, 1024), (1024, 784)]
    assert d_sizes == [(784, 1024), (1024, 512), (512, 256), (256, 1)]
    assert type(gan.G[-1]).__name__ == "Tanh" and type(gan.D[-1]).__name__ == "Dense"
    assert [type(l).__name__ for l in gan.G][1] == "LeakyReLU" and gan.G[1].negative_slope == 0.2
    assert gan.g_optimizer.lr == 2e-4 and gan.d_optimizer.lr == 3e-4
    assert gan.g_optimizer.betas == (0.5, 0.999)
    again = build_gan(config, backend="numpy", seed=0)
    other = build_gan(config, backend="numpy", seed=1)
    np.testing.assert_array_equal(gan.G[0].params["W"], again.G[0].params["W"])
    assert not np.array_equal(gan.G[0].params["W"], other.G[0].params["W"])
    assert not np.array_equal(gan.G[0].params["W"][:, :100], gan.D[0].params["W"][:100, :100])
    with pytest.raises(ValueError, match="missing"):
        build_gan({"latent_dim": 2}, backend="numpy")


def test_lr_factor_schedule():
    config = {"lr_decay_start": 0.5, "lr_final": 0.1}
    factors = [lr_factor(s, 11, config) for s in range(11)]
    # the decay starts at step round(0.5 * 11) = 6 (factor 1 there) and reaches 0.1 at step 10
    assert factors[:7] == [1.0] * 7
    assert factors[-1] == pytest.approx(0.1)
    np.testing.assert_allclose(factors[6:], np.linspace(1.0, 0.1, 5))
    assert [lr_factor(s, 11, {}) for s in range(11)] == [1.0] * 11


def test_noise_comes_from_the_generator_given_as_rng():
    """Any object with NumPy's standard_normal draws the noise (a CuPy generator draws
    it on the GPU); a seed becomes a NumPy Generator."""

    class Constant:
        def standard_normal(self, shape, dtype):
            return np.full(shape, 0.5, dtype=dtype)

    G, D = mlp([3, 8, 2], rng=0), mlp([2, 8, 1], rng=1)
    from minigan import Adam
    from minigan.gan import GAN

    gan = GAN(G, D, 3, Adam(G.parameters()), Adam(D.parameters()), rng=Constant())
    np.testing.assert_array_equal(gan.sample_noise(4), np.full((4, 3), 0.5, np.float32))
    seeded = GAN(G, D, 3, Adam(G.parameters()), Adam(D.parameters()), rng=7)
    np.testing.assert_array_equal(seeded.sample_noise(4),
                                  np.random.default_rng(7).standard_normal((4, 3), np.float32))
