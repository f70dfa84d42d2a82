"""Packing (PacGAN), conditional GANs, the least-squares loss, G's moving average,
a regulariser hook, D with batch norm, and the divergence guard.

Gradients are checked in float64 on tiny networks against central differences
of a loss written out independently here (packing by explicit concatenation,
labels by an explicit one-hot), so that a packing or labelling bug in
``minigan.gan`` shows up as a gradient mismatch, not as a shared mistake.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from minigan import functional as F
from minigan.backend import to_numpy
from minigan.gan import EMA, GAN, ConditionalGAN, LabelledGenerator
from minigan.gan_losses import LeastSquares, NonSaturating
from minigan.gradcheck import check_layer, check_loss, compare, numerical_gradient, rel_error
from minigan.layers import BatchNorm1d, Dense, LeakyReLU, Pack, Sequential, Tanh
from minigan.optim import SGD, Adam
from minigan.train import check_finite

TOL = 1e-6  # rel_error of analytic vs central-difference gradients in float64
LOSSES = {"bce": NonSaturating, "lsgan": LeastSquares}


class RecordingOptimizer:
    """Stands in for an optimiser: records copies of the gradients at each step()
    and leaves the parameters alone, so finite differences see the same weights."""

    def __init__(self, params):
        self.params = list(params)
        self.seen = []
        self.lr = 1.0

    def step(self):
        self.seen.append([to_numpy(g).copy() for _, g in self.params])

    def zero_grad(self):
        for _, g in self.params:
            g.fill(0)


def nets(latent, data_dim, pack=1, n_classes=0, hidden=5, dtype="float64", seed=0,
         d_batchnorm=False):
    rng = np.random.default_rng(seed)
    G = Sequential(Dense(latent + n_classes, hidden, dtype=dtype, rng=rng), Tanh(),
                   Dense(hidden, data_dim, dtype=dtype, rng=rng))
    d_layers = [Dense(pack * (data_dim + n_classes), hidden, dtype=dtype, rng=rng)]
    if d_batchnorm:
        d_layers.append(BatchNorm1d(hidden, dtype=dtype))
    d_layers += [LeakyReLU(0.2), Dense(hidden, 1, dtype=dtype, rng=rng)]
    D = Sequential(*([Pack(pack)] if pack > 1 else []), *d_layers)
    return G, D


def recording_gan(latent=3, data_dim=2, pack=1, n_classes=0, loss="bce", **options):
    G, D = nets(latent, data_dim, pack=pack, n_classes=n_classes,
                d_batchnorm=options.pop("d_batchnorm", False))
    g_opt, d_opt = RecordingOptimizer(G.parameters()), RecordingOptimizer(D.parameters())
    if n_classes:
        gan = ConditionalGAN(G, D, latent, n_classes, g_opt, d_opt, rng=0,
                             loss=LOSSES[loss](), **options)
    else:
        gan = GAN(G, D, latent, g_opt, d_opt, rng=0, loss=LOSSES[loss](), **options)
    return gan, g_opt, d_opt


def pack_by_hand(x, m):
    """Packed row k = [x[k*m], x[k*m + 1], ..., x[k*m + m - 1]] (written without reshape)."""
    return np.concatenate([x[j::m] for j in range(m)], axis=1)


def one_hot_by_hand(labels, c):
    return np.eye(c)[labels]


def d_objective(D, real_in, fake_in, loss):
    """D's loss on D's inputs (packing is D's first layer), from the formulas."""
    lr, lf = D.forward(real_in), D.forward(fake_in)
    D.clear_cache()
    if loss == "lsgan":
        return 0.5 * np.mean((lr - 1.0) ** 2) + 0.5 * np.mean(lf ** 2)
    return np.mean(F.softplus(-lr)) + np.mean(F.softplus(lf))  # BCE(l, 1) + BCE(l, 0)


def packed_d_objective(net, real_in, fake_in, loss):
    """The same loss, with the packing done by hand in front of D's other layers."""
    m = net[0].m
    rest = Sequential(*net.layers[1:])
    return d_objective(rest, pack_by_hand(real_in, m), pack_by_hand(fake_in, m), loss)


def g_objective(G, D, g_in, d_in_of, loss):
    """G's loss for noise (plus labels) g_in; d_in_of maps samples to D's input."""
    logits = D.forward(d_in_of(G.forward(g_in)))
    G.clear_cache(), D.clear_cache()
    if loss == "lsgan":
        return 0.5 * np.mean((logits - 1.0) ** 2)
    return np.mean(F.softplus(-logits))  # non-saturating: -log sigmoid(l)


def assert_grads_match(model, analytic, objective):
    for (name, p, _), got in zip(model.named_parameters(), analytic):
        numeric = numerical_gradient(objective, p)
        err = rel_error(got, numeric)
        assert err < TOL, f"{name}: analytic vs numeric gradient, relative error {err:.2e}"


# ---------------------------------------------------------------------- packing


def test_pack_puts_consecutive_samples_side_by_side():
    x = np.arange(12.0).reshape(6, 2)
    pack = Pack(3)
    packed = pack.forward(x)
    assert packed.shape == (2, 6)
    np.testing.assert_array_equal(packed, pack_by_hand(x, 3))
    np.testing.assert_array_equal(packed[0], [0, 1, 2, 3, 4, 5])
    # its backward is the exact inverse of the packing
    np.testing.assert_array_equal(pack.backward(packed), x)


@pytest.mark.parametrize("loss", ["bce", "lsgan"])
@pytest.mark.parametrize("pack", [2, 3])
def test_packed_discriminator_gradient_matches_finite_differences(pack, loss):
    gan, _, d_opt = recording_gan(pack=pack, loss=loss)
    rng = np.random.default_rng(1)
    real = rng.standard_normal((6, 2))
    fake = rng.standard_normal((6, 2))
    stats = gan.discriminator_step(real, fake)
    assert len(d_opt.seen) == 1

    def objective():
        return packed_d_objective(gan.D, real, fake, loss)

    assert math.isclose(stats["d_loss"], float(objective()), rel_tol=1e-12)
    assert_grads_match(gan.D, d_opt.seen[0], objective)


@pytest.mark.parametrize("loss", ["bce", "lsgan"])
def test_generator_gradient_through_packed_discriminator(loss):
    pack = 2
    gan, g_opt, d_opt = recording_gan(pack=pack, loss=loss)
    z = np.random.default_rng(2).standard_normal((6, 3))
    d_before = [p.copy() for p, _ in gan.D.parameters()]
    stats = gan.generator_step(gan.generate(z))
    assert not d_opt.seen
    for (p, g), before in zip(gan.D.parameters(), d_before):
        np.testing.assert_array_equal(p, before)
        assert not g.any(), "the generator step must not accumulate D's gradients"
    rest = Sequential(*gan.D.layers[1:])

    def objective():
        return g_objective(gan.G, rest, z, lambda x: pack_by_hand(x, pack), loss)

    assert math.isclose(stats["g_loss"], float(objective()), rel_tol=1e-12)
    assert_grads_match(gan.G, g_opt.seen[0], objective)


def test_packing_rejects_an_indivisible_batch_and_a_d_of_the_wrong_width():
    gan, _, _ = recording_gan(pack=4)
    with pytest.raises(ValueError, match=r"(?s)6.*4"):
        gan.train_step(np.zeros((6, 2)))
    G, _ = nets(3, 2)
    _, D = nets(3, 2, pack=1)
    D = Sequential(Pack(2), *D.layers)  # a Dense(2, ...) cannot take packs of width 4
    gan = GAN(G, D, 3, SGD(G.parameters()), SGD(D.parameters()))
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 2\), got \(8, 4\)"):
        gan.train_step(np.zeros((8, 2)))


def test_packed_training_keeps_float32(backend, dev):
    G, D = nets(3, 2, pack=2, dtype="float32")
    G.to(backend), D.to(backend)
    gan = GAN(G, D, 3, Adam(G.parameters()), Adam(D.parameters()), rng=0, ema=EMA(G, 0.9))
    record = gan.train_step(dev(np.ones((8, 2)), dtype=np.float32))
    assert all(isinstance(v, (int, float)) for v in record.values())
    for p, g in G.parameters() + D.parameters() + gan.ema.G.parameters():
        assert p.dtype == np.float32 and g.dtype == np.float32
    assert gan.sample(5).dtype == np.float32
    # D's opinion of single points: each judged as a pack of copies of itself
    assert gan.discriminate(dev(np.zeros((5, 2)), dtype=np.float32)).shape == (5, 1)
    assert gan.discriminate(dev(np.zeros((6, 2)), dtype=np.float32), packed=True).shape == (3, 1)


# ------------------------------------------------------------------ conditional


def cond(x, y, c):
    return np.concatenate([x, one_hot_by_hand(y, c)], axis=1)


def test_conditional_shapes_and_argument_checks():
    gan, _, _ = recording_gan(n_classes=4, pack=2)
    x = np.random.default_rng(0).standard_normal((6, 2))
    labels = np.array([0, 3, 1, 1, 2, 0])
    np.testing.assert_array_equal(gan.with_labels(x, labels), cond(x, labels, 4))
    assert gan.sample_noise(5).shape == (5, 3 + 4)
    assert gan.generate(gan.sample_noise(5)).shape == (5, 2 + 4)  # samples carry their labels
    assert gan.sample(7).shape == (7, 2)
    G, D = nets(3, 2, n_classes=4)
    for bad in (1, 0, 2.5, True):
        with pytest.raises(ValueError, match="n_classes must be an int >= 2"):
            ConditionalGAN(G, D, 3, bad, SGD(G.parameters()), SGD(D.parameters()))


def test_labelled_generator_gradient():
    G, _ = nets(3, 2, n_classes=4)
    x = cond(np.random.default_rng(8).standard_normal((5, 3)), np.array([0, 1, 2, 3, 0]), 4)
    result = check_layer(LabelledGenerator(G, 4), x)
    assert result.ok, str(result)
    assert [name for name, _, _ in LabelledGenerator(G, 4).named_parameters()] == \
        [name for name, _, _ in G.named_parameters()]


def test_labels_reach_the_generator():
    gan, _, _ = recording_gan(n_classes=4)
    labels = np.array([2, 0, 3, 1, 2, 2])
    out = gan.sample(6, rng=7, labels=labels)
    z = np.random.default_rng(7).standard_normal((6, 3), dtype=np.float32).astype(np.float64)
    expected = gan.G.net.forward(cond(z, labels, 4))
    gan.G.net.clear_cache()
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    # one class for all samples, and the same noise gives different samples per class
    a, b = gan.sample(6, rng=7, labels=0), gan.sample(6, rng=7, labels=1)
    assert not np.allclose(a, b)
    # default labels cycle through the classes
    np.testing.assert_allclose(gan.sample(8, rng=7)[:4], gan.sample(4, rng=7, labels=np.arange(4)))


@pytest.mark.parametrize("loss", ["bce", "lsgan"])
def test_labels_reach_the_discriminator_and_its_gradient(loss):
    c = 3
    gan, g_opt, d_opt = recording_gan(n_classes=c, pack=2, loss=loss)
    rng = np.random.default_rng(3)
    real, fake = rng.standard_normal((4, 2)), rng.standard_normal((4, 2))
    y_real, y_fake = np.array([0, 2, 1, 1]), np.array([2, 2, 0, 1])
    gan.discriminator_step(gan.with_labels(real, y_real), gan.with_labels(fake, y_fake))

    def objective(y=y_real):
        return packed_d_objective(gan.D, cond(real, y, c), cond(fake, y_fake, c), loss)

    assert_grads_match(gan.D, d_opt.seen[0], objective)
    # other labels give D another loss: the labels are really used
    assert not math.isclose(float(objective((y_real + 1) % c)), float(objective()))

    # and G's gradient through the conditioned, packed D
    z = rng.standard_normal((4, 3))
    gan.generator_step(gan.generate(gan.with_labels(z, y_fake)))
    rest = Sequential(*gan.D.layers[1:])
    assert_grads_match(gan.G, g_opt.seen[0], lambda: g_objective(
        gan.G.net, rest, cond(z, y_fake, c), lambda x: pack_by_hand(cond(x, y_fake, c), 2),
        loss))


def test_conditional_train_step_call_forms():
    x = np.random.default_rng(0).standard_normal((6, 2))
    y = np.array([0, 1, 2, 0, 1, 2])
    records = []
    for call in (lambda g: g.train_step(x, y), lambda g: g.train_step((x, y))):
        G, D = nets(3, 2, n_classes=3, pack=2)
        gan = ConditionalGAN(G, D, 3, 3, Adam(G.parameters()), Adam(D.parameters()), rng=0)
        records.append(call(gan))
    assert records[0] == records[1]
    with pytest.raises(ValueError, match="conditional"):
        gan.train_step(x)
    with pytest.raises(ValueError, match=r"labels must lie in 0..2"):
        gan.train_step(x, y + 1)
    with pytest.raises(TypeError, match="1-D array of ints"):
        gan.train_step(x, y.astype(np.float64))
    with pytest.raises(ValueError, match="5 labels for 6 samples"):
        gan.train_step(x, y[:5])


def test_conditional_ema_samples_from_the_average():
    G, D = nets(3, 2, n_classes=3)
    gan = ConditionalGAN(G, D, 3, 3, SGD(G.parameters(), lr=0.1), SGD(D.parameters(), lr=0.1),
                         rng=0, ema=EMA(G, 0.5))
    x, y = np.random.default_rng(0).standard_normal((6, 2)), np.arange(6) % 3
    for _ in range(3):
        gan.train_step((x, y))
    assert gan.ema.updates == 3
    assert not np.allclose(gan.sample(6, rng=1), gan.sample(6, rng=1, ema=False))
    z = np.random.default_rng(1).standard_normal((6, 3), dtype=np.float32).astype(np.float64)
    np.testing.assert_allclose(gan.sample(6, rng=1), gan.ema.G.net.forward(cond(z, y, 3)))


# ------------------------------------------------------------------ least squares


def test_least_squares_loss_formula_and_gradcheck():
    rng = np.random.default_rng(4)
    pred = rng.standard_normal((7, 1))
    target = rng.choice([0.0, 1.0], size=(7, 1))
    loss, dpred = F.least_squares(pred, target)
    np.testing.assert_allclose(loss, 0.5 * np.mean((pred - target) ** 2), rtol=1e-14)
    np.testing.assert_allclose(dpred, (pred - target) / 7, rtol=1e-14)
    assert check_loss(F.least_squares, pred, target).ok
    # the inputs are not modified
    before = pred.copy()
    F.least_squares(pred, target)
    np.testing.assert_array_equal(pred, before)
    p32 = pred.astype(np.float32)
    assert F.least_squares(p32, target.astype(np.float32))[1].dtype == np.float32


def test_the_config_names_a_loss_object():
    from minigan.gan_losses import Minimax
    from minigan.models import build_loss

    base = {"latent_dim": 2, "data_dim": 2, "g_hidden": [4], "d_hidden": [4]}
    assert type(build_loss(base)) is NonSaturating
    assert type(build_loss({**base, "g_loss": "minimax"})) is Minimax
    assert build_loss({**base, "label_smoothing": 0.1}).label_smoothing == 0.1
    assert type(build_loss({**base, "loss": "lsgan"})) is LeastSquares
    with pytest.raises(ValueError, match="cannot be combined"):
        build_loss({**base, "loss": "lsgan", "g_loss": "minimax"})
    with pytest.raises(ValueError, match="loss must be one of"):
        build_loss({**base, "loss": "wgan"})


# -------------------------------------------------------- moving average of G


def test_ema_follows_its_formula_and_is_used_for_sampling():
    G, D = nets(3, 2)
    gan = GAN(G, D, 3, SGD(G.parameters(), lr=0.1), SGD(D.parameters(), lr=0.1), rng=0,
              ema=EMA(G, 0.9))
    x = np.random.default_rng(0).standard_normal((4, 2))
    expected = [p.copy() for p, _ in G.parameters()]
    for t in (1, 2, 3):
        gan.train_step(x)
        beta = min(0.9, (1 + t) / (10 + t))
        expected = [beta * e + (1 - beta) * p for e, (p, _) in zip(expected, G.parameters())]
        for e, (p, _) in zip(expected, gan.ema.G.parameters()):
            np.testing.assert_allclose(p, e, rtol=1e-12)
    assert not np.allclose(gan.sample(4, rng=1), gan.sample(4, rng=1, ema=False))
    z = np.random.default_rng(1).standard_normal((4, 3), dtype=np.float32).astype(np.float64)
    np.testing.assert_allclose(gan.sample(4, rng=1), gan.ema.G.forward(z), rtol=1e-12)
    with pytest.raises(ValueError, match=r"decay must be in \(0, 1\)"):
        EMA(G, 1.0)


# ------------------------------------------------------- regulariser, batch norm


class WeightPenalty:
    """A stand-in regulariser: 0.5 * c * ||W_0||^2 on D's first weight, gradient c W_0."""

    def __init__(self, c):
        self.c = c

    def __call__(self, D, real, fake):
        W, dW = D.parameters()[0]
        dW += self.c * W
        return 0.5 * self.c * float((W * W).sum())


def test_a_regularizer_adds_its_gradient_and_is_reported():
    plain, _, d_plain = recording_gan()
    reg, _, d_reg = recording_gan(regularizer=WeightPenalty(0.3))
    rng = np.random.default_rng(5)
    real, fake = rng.standard_normal((4, 2)), rng.standard_normal((4, 2))
    stats = reg.discriminator_step(real, fake)
    assert "d_penalty" not in plain.discriminator_step(real, fake)
    W = reg.D.parameters()[0][0]
    assert stats["d_penalty"] == pytest.approx(0.15 * (W * W).sum())
    np.testing.assert_allclose(d_reg.seen[0][0], d_plain.seen[0][0] + 0.3 * W, rtol=1e-12)


def test_a_batchnorm_discriminator_sees_real_and_fake_apart():
    gan, _, d_opt = recording_gan(d_batchnorm=True)
    rng = np.random.default_rng(6)
    real, fake = rng.standard_normal((6, 2)) + 3.0, rng.standard_normal((6, 2))
    stats = gan.discriminator_step(real, fake)

    def objective():
        return d_objective(gan.D, real, fake, "bce")  # two passes: each batch's own statistics

    assert math.isclose(stats["d_loss"], float(objective()), rel_tol=1e-12)
    for (name, p, _), got in zip(gan.D.named_parameters(), d_opt.seen[0]):
        # compare's atol: the bias right before batch norm has a gradient of exactly 0
        result = compare(name, got, numerical_gradient(objective, p))
        assert result.ok, result.line()
    assert np.abs(d_opt.seen[0][0]).max() > 1e-3  # D's first weight: not trivially zero


# ------------------------------------------------------------ divergence guard
# (check_finite itself is tested in test_train.py; here, the command line around it)


def _train_with_injected_nan(monkeypatch, tmp_path, capsys, after_step, where):
    """A short CLI run whose weights become NaN after ``after_step`` steps: in D before
    a step (the next losses are NaN) or in G after a step (the losses look fine)."""
    from minigan import cli
    from minigan.gan import GAN as GANClass

    original = GANClass.train_step

    def poisoned(self, *args, **kwargs):
        if where == "D" and self.step == after_step:
            self.D.parameters()[0][0][...] = np.nan
        record = original(self, *args, **kwargs)
        if where == "G" and self.step == after_step:
            self.G.parameters()[0][0][...] = np.nan
        return record

    monkeypatch.setattr(GANClass, "train_step", poisoned)
    out = tmp_path / "run"
    code = cli.main(["train", "--dataset", "ring8", "--steps", "40", "--batch-size", "16",
                     "--checkpoint-every", "10", "--out", str(out), "--no-figures",
                     "--no-metrics", "--quiet"])
    return code, out, capsys.readouterr().err


def _assert_kept_checkpoint(out, step):
    from minigan.checkpoint import load_checkpoint

    gan = load_checkpoint(out / "checkpoint.npz").gan
    assert gan.step == step
    check_finite({"step": step, "d_loss": 0.0, "g_loss": 0.0}, gan)  # finite weights
    assert np.isfinite(to_numpy(gan.sample(10))).all()


def test_cli_stops_on_nan_losses_and_keeps_the_last_good_checkpoint(monkeypatch, tmp_path,
                                                                    capsys):
    code, out, err = _train_with_injected_nan(monkeypatch, tmp_path, capsys, 25, "D")
    assert code == 1
    assert "diverged at step 26" in err and "NaN or inf" in err
    assert "last good checkpoint, step 20" in err and str(out / "checkpoint.npz") in err
    _assert_kept_checkpoint(out, 20)
    assert not (out / "samples.npy").exists()          # no outputs from a broken G
    with open(out / "history.csv") as f:
        assert len(f.readlines()) == 1 + 26            # header + the steps that ran


def test_cli_never_saves_nan_weights_behind_finite_losses(monkeypatch, tmp_path, capsys):
    # The step-30 losses are finite (computed before its update), its weights are
    # not: the checkpoint due at step 30 must not replace the one of step 20.
    code, out, err = _train_with_injected_nan(monkeypatch, tmp_path, capsys, 30, "G")
    assert code == 1
    assert "diverged at step 30" in err and "G's parameter '0.W'" in err
    _assert_kept_checkpoint(out, 20)


def test_cli_pack_and_loss_options(tmp_path, capsys):
    from minigan import cli
    from minigan.checkpoint import load_checkpoint

    out = tmp_path / "run"
    code = cli.main(["train", "--dataset", "ring8", "--steps", "4", "--batch-size", "16",
                     "--pack", "4", "--loss", "lsgan", "--out", str(out), "--no-figures",
                     "--no-metrics", "--quiet"])
    assert code == 0, capsys.readouterr().err
    gan, config, _ = load_checkpoint(out / "checkpoint.npz")
    assert isinstance(gan.loss, LeastSquares)
    assert isinstance(gan.D[0], Pack) and gan.D[0].m == 4
    assert config["pack"] == 4 and config["loss"] == "lsgan"
    assert cli.main(["train", "--dataset", "ring8", "--batch-size", "10", "--pack", "4",
                     "--out", str(tmp_path / "b")]) == 2
    assert "multiple of pack=4" in capsys.readouterr().err
    assert cli.main(["train", "--dataset", "ring8", "--conditional",
                     "--out", str(tmp_path / "c")]) == 2
    assert "--conditional needs labelled data" in capsys.readouterr().err


def test_cli_conditional_mnist(tmp_path, capsys):
    from minigan import cli
    from minigan.checkpoint import load_checkpoint

    data_dir = __import__("os").environ.get("MINIGAN_DATA_DIR")
    if not data_dir:
        pytest.skip("MINIGAN_DATA_DIR is not set (CI sets it to ../shared/data)")
    out = tmp_path / "run"
    code = cli.main(["train", "--dataset", "mnist", "--conditional", "--steps", "3",
                     "--batch-size", "8", "--out", str(out), "--no-metrics", "--quiet",
                     "--data-dir", data_dir])
    assert code == 0, capsys.readouterr().err
    gan, config, _ = load_checkpoint(out / "checkpoint.npz")
    assert gan.n_classes == 10 and config["n_classes"] == 10
    assert gan.G.net[0].in_features == 100 + 10 and gan.D[0].in_features == 784 + 10
    assert (out / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_lr_schedule_warm_phase_then_linear_decay():
    from minigan.models import lr_factor

    config = {"lr_decay_start": 0.5, "lr_final": 0.002, "lr_warmup": 0.3,
              "lr_warmup_factor": 0.5}
    got = [lr_factor(s, 100, config) for s in (0, 29, 30, 49, 50, 99)]
    assert got[:5] == [0.5, 0.5, 1.0, 1.0, 1.0]
    assert math.isclose(got[5], 0.002)
    # halfway through the decay: 1 - (1 - 0.002) * (74 - 50) / 49
    assert math.isclose(lr_factor(74, 100, config), 1 - 0.998 * 24 / 49)
    assert [lr_factor(s, 100, {}) for s in (0, 50, 99)] == [1.0, 1.0, 1.0]
