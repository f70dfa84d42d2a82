"""Packing (PacGAN), conditional GANs, the least-squares loss, G's moving average,
and the divergence guard.

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
from minigan.gan import GAN, DivergenceError, check_finite
from minigan.gradcheck import check_loss, numerical_gradient, rel_error
from minigan.layers import Dense, LeakyReLU, Sequential, Tanh
from minigan.optim import SGD, Adam

TOL = 1e-6  # rel_error of analytic vs central-difference gradients in float64


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


def nets(latent, data_dim, pack=1, n_classes=0, hidden=5, dtype="float64", seed=0):
    rng = np.random.default_rng(seed)
    G = Sequential(Dense(latent + n_classes, hidden, dtype=dtype, rng=rng), Tanh(),
                   Dense(hidden, data_dim, dtype=dtype, rng=rng))
    D = Sequential(Dense(pack * (data_dim + n_classes), hidden, dtype=dtype, rng=rng),
                   LeakyReLU(0.2), Dense(hidden, 1, dtype=dtype, rng=rng))
    return G, D


def recording_gan(latent=3, data_dim=2, **options):
    G, D = nets(latent, data_dim, pack=options.get("pack", 1),
                n_classes=options.get("n_classes") or 0)
    g_opt, d_opt = RecordingOptimizer(G.parameters()), RecordingOptimizer(D.parameters())
    return GAN(G, D, latent, g_opt, d_opt, rng=0, **options), g_opt, d_opt


def pack_by_hand(x, m):
    """Packed row k = [x[k*m], x[k*m + 1], ..., x[k*m + m - 1]] (written without reshape)."""
    return np.concatenate([x[j::m] for j in range(m)], axis=1)


def one_hot_by_hand(labels, c):
    return np.eye(c)[labels]


def d_objective(D, real_in, fake_in, loss):
    """D's loss on already packed/conditioned inputs, from the formulas."""
    lr, lf = D.forward(real_in), D.forward(fake_in)
    D.clear_cache()
    if loss == "lsgan":
        return 0.5 * np.mean((lr - 1.0) ** 2) + 0.5 * np.mean(lf ** 2)
    return np.mean(F.softplus(-lr)) + np.mean(F.softplus(lf))  # BCE(l, 1) + BCE(l, 0)


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


def test_packing_puts_consecutive_samples_side_by_side():
    gan, _, _ = recording_gan(pack=3)
    x = np.arange(12.0).reshape(6, 2)
    packed = gan.discriminator_input(x)
    assert packed.shape == (2, 6)
    np.testing.assert_array_equal(packed, pack_by_hand(x, 3))
    np.testing.assert_array_equal(packed[0], [0, 1, 2, 3, 4, 5])
    # sample_gradient is the exact inverse of the packing
    np.testing.assert_array_equal(gan.sample_gradient(packed), x)


@pytest.mark.parametrize("loss", ["bce", "lsgan"])
@pytest.mark.parametrize("pack", [2, 3])
def test_packed_discriminator_gradient_matches_finite_differences(pack, loss):
    gan, _, d_opt = recording_gan(pack=pack, loss=loss)
    rng = np.random.default_rng(1)
    real = rng.standard_normal((6, 2))
    fake = rng.standard_normal((6, 2))
    stats = gan.discriminator_step(real, fake)
    assert len(d_opt.seen) == 1
    real_in, fake_in = pack_by_hand(real, pack), pack_by_hand(fake, pack)
    assert math.isclose(stats["d_loss"], float(d_objective(gan.D, real_in, fake_in, loss)),
                        rel_tol=1e-12)
    assert_grads_match(gan.D, d_opt.seen[0], lambda: d_objective(gan.D, real_in, fake_in, loss))


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

    def objective():
        return g_objective(gan.G, gan.D, z, lambda x: pack_by_hand(x, pack), loss)

    assert math.isclose(stats["g_loss"], float(objective()), rel_tol=1e-12)
    assert_grads_match(gan.G, g_opt.seen[0], objective)


def test_packing_rejects_indivisible_batch_and_wrong_width():
    gan, _, _ = recording_gan(pack=4)
    real = np.zeros((6, 2))
    with pytest.raises(ValueError, match="divisible by pack=4"):
        gan.train_step(real)
    G, D = nets(3, 2, pack=1)
    with pytest.raises(ValueError, match=r"pack=2 it sees 2 x data_dim 2 = 4"):
        GAN(G, D, 3, SGD(G.parameters()), SGD(D.parameters()), pack=2)
    for bad in (0, -1, 1.5, True):
        G, D = nets(3, 2)
        with pytest.raises(ValueError, match="pack must be a positive int"):
            GAN(G, D, 3, SGD(G.parameters()), SGD(D.parameters()), pack=bad)


def test_packed_training_keeps_float32(backend, dev):
    G, D = nets(3, 2, pack=2, dtype="float32")
    G.to(backend), D.to(backend)
    gan = GAN(G, D, 3, Adam(G.parameters()), Adam(D.parameters()), pack=2, rng=0,
              ema_decay=0.9)
    record = gan.train_step(dev(np.ones((8, 2)), dtype=np.float32))
    assert all(isinstance(v, (int, float)) for v in record.values())
    for p, g in G.parameters() + D.parameters() + gan.G_ema.parameters():
        assert p.dtype == np.float32 and g.dtype == np.float32
    assert gan.sample(5).dtype == np.float32
    # D's opinion of single points: each judged as a pack of copies of itself
    assert gan.discriminate(dev(np.zeros((5, 2)), dtype=np.float32)).shape == (5, 1)
    assert gan.discriminate(dev(np.zeros((6, 2)), dtype=np.float32), packed=True).shape == (3, 1)


# ------------------------------------------------------------------ conditional


def test_conditional_shapes_and_width_checks():
    gan, _, _ = recording_gan(n_classes=4, pack=2)
    x = np.random.default_rng(0).standard_normal((6, 2))
    labels = np.array([0, 3, 1, 1, 2, 0])
    d_in = gan.discriminator_input(x, labels)
    assert d_in.shape == (3, 2 * (2 + 4))
    by_hand = pack_by_hand(np.concatenate([x, one_hot_by_hand(labels, 4)], axis=1), 2)
    np.testing.assert_array_equal(d_in, by_hand)
    assert gan.sample(7).shape == (7, 2)
    G, D = nets(3, 2, n_classes=0)
    with pytest.raises(ValueError, match=r"latent_dim 3 \+ n_classes 4 = 7"):
        GAN(G, D, 3, SGD(G.parameters()), SGD(D.parameters()), n_classes=4)


def test_labels_reach_the_generator():
    gan, _, _ = recording_gan(n_classes=4)
    z = np.random.default_rng(5).standard_normal((6, 3)).astype(np.float32).astype(np.float64)
    labels = np.array([2, 0, 3, 1, 2, 2])
    out = gan.sample(6, rng=7, labels=labels)
    z = np.random.default_rng(7).standard_normal((6, 3), dtype=np.float32).astype(np.float64)
    expected = gan.G.forward(np.concatenate([z, one_hot_by_hand(labels, 4)], axis=1))
    gan.G.clear_cache()
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
    gan.discriminator_step(real, fake, y_real, y_fake)

    def cond(x, y):
        return pack_by_hand(np.concatenate([x, one_hot_by_hand(y, c)], axis=1), 2)

    assert_grads_match(gan.D, d_opt.seen[0],
                       lambda: d_objective(gan.D, cond(real, y_real), cond(fake, y_fake), loss))
    # other labels give D another loss: the labels are really used
    other = gan.discriminator_step(real, fake, (y_real + 1) % c, y_fake)
    first = d_objective(gan.D, cond(real, y_real), cond(fake, y_fake), loss)
    assert not math.isclose(other["d_loss"], float(first))

    # and G's gradient through the conditioned, packed D
    z = rng.standard_normal((4, 3))
    gan.generator_step(gan.generate(z, y_fake), y_fake)
    g_in = np.concatenate([z, one_hot_by_hand(y_fake, c)], axis=1)
    assert_grads_match(gan.G, g_opt.seen[0],
                       lambda: g_objective(gan.G, gan.D, g_in, lambda x: cond(x, y_fake), loss))


def test_conditional_train_step_call_forms():
    x = np.random.default_rng(0).standard_normal((6, 2))
    y = np.array([0, 1, 2, 0, 1, 2])
    records = []
    for call in (lambda g: g.train_step(x, y), lambda g: g.train_step((x, y))):
        G, D = nets(3, 2, n_classes=3, pack=2)
        gan = GAN(G, D, 3, Adam(G.parameters()), Adam(D.parameters()), n_classes=3, pack=2,
                  rng=0)
        records.append(call(gan))
    assert records[0] == records[1]
    with pytest.raises(ValueError, match="conditional"):
        gan.train_step(x)
    with pytest.raises(ValueError, match=r"labels must lie in 0..2"):
        gan.train_step(x, y + 1)
    with pytest.raises(TypeError, match="1-D array of ints"):
        gan.train_step(x, y.astype(np.float64))
    plain, _, _ = recording_gan()
    with pytest.raises(ValueError, match="unconditional"):
        plain.train_step(x, y)


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


def test_lsgan_generator_loss_matches_its_formula():
    gan, _, _ = recording_gan(loss="lsgan")
    logits = np.random.default_rng(6).standard_normal((5, 1))
    loss, dlogits = gan.generator_loss(logits)
    # c = 1: G wants D to score its samples as real
    np.testing.assert_allclose(loss, 0.5 * np.mean((logits - 1) ** 2), rtol=1e-14)
    np.testing.assert_allclose(dlogits, (logits - 1) / 5, rtol=1e-14)
    result = check_loss(lambda l, t: gan.generator_loss(l), logits, None)
    assert result.ok, str(result)


def test_loss_options_are_checked():
    G, D = nets(3, 2)
    opts = (SGD(G.parameters()), SGD(D.parameters()))
    gan = GAN(G, D, 3, *opts, loss="lsgan")
    assert (gan.g_loss, gan.d_loss) == ("lsgan", "lsgan")
    assert GAN(G, D, 3, *opts, g_loss="lsgan", d_loss="lsgan").d_loss == "lsgan"
    with pytest.raises(ValueError, match="do not match"):
        GAN(G, D, 3, *opts, d_loss="lsgan")
    with pytest.raises(ValueError, match="cannot be combined"):
        GAN(G, D, 3, *opts, loss="lsgan", g_loss="minimax")
    with pytest.raises(ValueError, match="loss must be one of"):
        GAN(G, D, 3, *opts, loss="wasserstein")


# -------------------------------------------------------- moving average of G


def test_ema_follows_its_formula_and_is_used_for_sampling():
    G, D = nets(3, 2)
    gan = GAN(G, D, 3, SGD(G.parameters(), lr=0.1), SGD(D.parameters(), lr=0.1), rng=0,
              ema_decay=0.9)
    x = np.random.default_rng(0).standard_normal((4, 2))
    expected = [p.copy() for p, _ in G.parameters()]
    for t in (1, 2, 3):
        gan.train_step(x)
        beta = min(0.9, (1 + t) / (10 + t))
        expected = [beta * e + (1 - beta) * p for e, (p, _) in zip(expected, G.parameters())]
        for e, (p, _) in zip(expected, gan.G_ema.parameters()):
            np.testing.assert_allclose(p, e, rtol=1e-12)
    assert not np.allclose(gan.sample(4, rng=1), gan.sample(4, rng=1, ema=False))
    z = np.random.default_rng(1).standard_normal((4, 3), dtype=np.float32).astype(np.float64)
    np.testing.assert_allclose(gan.sample(4, rng=1), gan.G_ema.forward(z), rtol=1e-12)


# ------------------------------------------------------------ divergence guard


def test_check_finite_raises_on_nan_losses_and_weights():
    gan, _, _ = recording_gan()
    check_finite({"step": 3, "d_loss": 1.0, "g_loss": 0.5}, gan)
    with pytest.raises(DivergenceError, match=r"step 4: g_loss=nan"):
        check_finite({"step": 4, "d_loss": 1.0, "g_loss": float("nan")})
    with pytest.raises(DivergenceError, match="d_loss=inf"):
        check_finite({"step": 4, "d_loss": float("inf"), "g_loss": 1.0})
    gan.D.parameters()[0][0][0, 0] = np.nan
    with pytest.raises(DivergenceError, match="D's parameter '0.W'"):
        check_finite({"step": 5, "d_loss": 1.0, "g_loss": 1.0}, gan)


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
    assert (gan.pack, gan.d_loss, gan.g_loss) == (4, "lsgan", "lsgan")
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
    assert gan.G.layers[0].in_features == 100 + 10 and gan.D.layers[0].in_features == 784 + 10
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
