"""The projection discriminator (minigan.models.ProjectionDiscriminator, Miyato and
Koyama 2018): D(x, y) = psi(phi(x)) + y^T V phi(x).

What is checked, and against what:
* the forward against the formula written sample by sample (the class row of V
  picked by index, not by a product with the one-hot label), with and without
  packing;
* the gradient of every input and parameter against central differences
  (minigan.gradcheck, float64, a random upstream gradient) on drawn shapes;
* the DCGAN builder's projection D (what it holds, the weights it shares with the
  unconditional D's stream, spectral norm on phi and psi but not V) and the
  config errors;
* R1 and WGAN-GP through it: the penalty's value against D's own input gradient,
  its parameter gradients against central differences (``check_penalty``), and
  the refusal of a norm that would take in the label;
* a ConditionalGAN with it trains in float32 and its D reads the label.
"""

import copy

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from minigan import Adam, Conv2d, Dense, Flatten, Reshape, Sequential, Tanh
from minigan.backend import to_numpy
from minigan.gan import ConditionalGAN
from minigan.gradcheck import check_layer
from minigan.layers import Pack
from minigan.models import (
    ProjectionDiscriminator,
    build_dcgan_discriminator,
    build_dcgan_generator,
    build_gan,
    complete_config,
)
from minigan.penalty import R1, check_penalty, input_gradient_penalty
from minigan.spectral import SpectralNorm

from gradcheck_strategies import assert_gradcheck, seeds

# 1 x 8 x 8 images: D's convolutions 8 -> 4 -> 2, phi of 3 x 2 x 2 = 12 features
TINY = {"arch": "dcgan", "latent_dim": 3, "image_shape": [1, 8, 8], "g_channels": [3, 2], "d_channels": [2, 3],
        "g_batchnorm": True, "d_batchnorm": False, "n_classes": 3, "projection": True}


def one_hot(labels, k):
    return np.eye(k)[labels]


def small_projection(k, pack, seed, dtype="float64"):
    """phi: Reshape -> [Pack] -> Conv2d -> Tanh -> Flatten on 1 x 4 x 4 images (smooth:
    no kinks for the finite differences), 2 x 2 x 2 = 8 features."""
    rng = np.random.default_rng(seed)
    layers = [Reshape(1, 4, 4)] + ([Pack(pack)] if pack > 1 else [])
    layers += [Conv2d(pack, 2, 3, stride=2, padding=1, init="glorot_uniform", dtype=dtype,
                      rng=rng), Tanh(), Flatten()]
    return ProjectionDiscriminator(Sequential(*layers), Dense(8, 1, dtype=dtype, rng=rng), k, 16,
                                   pack=pack, dtype=dtype, rng=rng)


def labelled(n, k, seed, d=16):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    return np.concatenate([rng.uniform(-1, 1, (n, d)), one_hot(labels, k)], axis=1), labels


# --------------------------------------------------------------------- the layer


@pytest.mark.parametrize("pack", [1, 2])
def test_forward_is_psi_plus_the_class_row_of_V(dev, backend, pack):
    k, n = 3, 6
    D = small_projection(k, pack, seed=0)
    inp, labels = labelled(n, k, seed=1)
    out = to_numpy(D.to(backend)(dev(inp)))
    D.clear_cache()
    # the same numbers, sample by sample: phi by the body alone, V's row by index
    phi = to_numpy(D.body(dev(inp[:, :16])))
    w, b = to_numpy(D.psi.params["W"])[:, 0], to_numpy(D.psi.params["b"])[0]
    V = to_numpy(D.params["V"])
    for i in range(n // pack):
        rows = [j * k + labels[i * pack + j] for j in range(pack)]   # class row per place
        expected = phi[i] @ w + b + sum(V[r] @ phi[i] for r in rows)
        assert out[i, 0] == pytest.approx(expected, rel=1e-12)
    assert out.shape == (n // pack, 1)


@settings(max_examples=8)
@given(n_packs=st.integers(1, 3), k=st.integers(1, 4), pack=st.integers(1, 2), seed=seeds)
@example(n_packs=1, k=1, pack=1, seed=0)
def test_gradcheck(dev, backend, n_packs, k, pack, seed):
    """dx (the image and the label columns) and dV, dW, db of phi and psi."""
    D = small_projection(k, pack, seed=seed)
    inp, _ = labelled(n_packs * pack, k, seed=seed + 1)
    result = check_layer(D.to(backend), dev(inp), seed=seed)
    assert [c.name for c in result.comparisons] == [
        "dx", "dV", "dbody.2.W" if pack > 1 else "dbody.1.W",
        "dbody.2.b" if pack > 1 else "dbody.1.b", "dpsi.W", "dpsi.b"]
    assert_gradcheck(result)


def test_the_label_changes_the_opinion_through_V_only(dev, backend):
    D = small_projection(3, 1, seed=2).to(backend)
    inp, labels = labelled(4, 3, seed=3)
    other = inp.copy()
    other[:, 16:] = one_hot((labels + 1) % 3, 3)   # every sample another class
    a, b = to_numpy(D(dev(inp))), to_numpy(D(dev(other)))
    assert np.abs(a - b).min() > 1e-6
    D.params["V"][...] = 0   # without V, the label is not read at all
    np.testing.assert_array_equal(to_numpy(D(dev(inp))), to_numpy(D(dev(other))))


@pytest.mark.parametrize("init", ["glorot_uniform", "he_uniform", "lecun_uniform", "normal"])
def test_V_is_drawn_at_psis_scale(init):
    """Each row of V multiplies phi as psi's weight does, so it has psi's fan-in (F =
    6272 here), not the number of classes: the same spread as psi's weight."""
    config = {**TINY, "image_shape": [1, 28, 28], "d_channels": [64, 128], "init": init}
    D = build_dcgan_discriminator(config, rng=0)
    V, w = to_numpy(D.params["V"]), to_numpy(D.psi.params["W"])
    assert V.shape == (3, 6272) and V.flags.c_contiguous
    assert V.std() == pytest.approx(w.std(), rel=0.1)


def test_V_takes_psis_dtype_and_is_copied():
    V = np.ones((3, 8))
    D = ProjectionDiscriminator(Sequential(Flatten()), Dense(8, 1, dtype="float32"), 3, 16, V=V)
    assert D.params["V"].dtype == np.float32
    D.params["V"][...] = 0
    assert V.min() == 1.0


def test_errors_say_what_was_expected():
    D = small_projection(3, 2, seed=0)
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 19\): 16 image columns "
                                         r"then 3 one-hot label columns"):
        D(np.zeros((2, 16)))
    with pytest.raises(ValueError, match=r"packs 2 samples per output: the batch \(3\) must be "
                                         r"a multiple of 2"):
        D(np.zeros((3, 19)))
    with pytest.raises(TypeError, match=r"psi must be a Dense\(F -> 1\)"):
        ProjectionDiscriminator(Sequential(Flatten()), Dense(8, 2), 3, 16)
    with pytest.raises(TypeError, match=r"psi must be a Dense\(F -> 1\) .*got Tanh"):
        ProjectionDiscriminator(Sequential(Flatten()), Tanh(), 3, 16)
    with pytest.raises(ValueError, match=r"V must have shape \(3, 8\)"):
        ProjectionDiscriminator(Sequential(Flatten()), Dense(8, 1), 3, 16, V=np.zeros((3, 7)))
    with pytest.raises(ValueError, match="n_classes must be a positive int"):
        ProjectionDiscriminator(Sequential(Flatten()), Dense(8, 1), 0, 16)
    with pytest.raises(RuntimeError, match="without a matching forward"):
        small_projection(3, 1, seed=0).backward(np.zeros((1, 1)))


# ------------------------------------------------------------------ the builder


def test_the_dcgan_builder_puts_the_label_at_the_end(backend):
    D = build_dcgan_discriminator({**TINY, "pack": 2}, backend=backend, rng=0)
    assert isinstance(D, ProjectionDiscriminator)
    # no label planes: the first convolution sees the 2 packed images only
    assert [layer.short_repr() for layer in D.body.layers] == [
        "Reshape(1, 8, 8)", "Pack(2)", "Conv2d(2 -> 2, k=4, s=2, p=1)", "LeakyReLU(0.2)",
        "Conv2d(2 -> 3, k=4, s=2, p=1)", "LeakyReLU(0.2)", "Flatten()"]
    assert D.psi.short_repr() == "Dense(12 -> 1)"
    assert D.params["V"].shape == (2 * 3, 12)
    assert sorted(D.state_dict()) == ["V", "body.2.W", "body.2.b", "body.4.W", "body.4.b",
                                      "psi.W", "psi.b"]


def test_spectral_norm_wraps_phi_and_psi_not_V_and_keeps_the_weights(backend):
    plain = build_dcgan_discriminator(TINY, backend=backend, rng=4)
    sn = build_dcgan_discriminator({**TINY, "spectral_norm": True}, backend=backend, rng=4)
    assert isinstance(sn.psi, SpectralNorm)
    assert [type(m.layer).__name__ for m in sn.modules() if isinstance(m, SpectralNorm)] == \
        ["Conv2d", "Conv2d", "Dense"]
    assert len(plain.parameters()) == len(sn.parameters()) == 7
    for (p, _), (q, _) in zip(plain.parameters(), sn.parameters()):
        np.testing.assert_array_equal(to_numpy(p), to_numpy(q))   # V included


def test_config_errors():
    with pytest.raises(ValueError, match="projection .* needs a conditional GAN"):
        build_dcgan_discriminator({**TINY, "n_classes": 0}, rng=0)
    with pytest.raises(TypeError, match="'projection' must be true or false"):
        build_dcgan_discriminator({**TINY, "projection": "yes"}, rng=0)
    with pytest.raises(ValueError, match="projection .* is built for the DCGAN's D"):
        complete_config({"latent_dim": 2, "data_dim": 2, "g_hidden": [4], "d_hidden": [4],
                         "n_classes": 2, "projection": True})
    # off by default, and then the conditional D takes the label as planes
    assert not isinstance(build_dcgan_discriminator({**TINY, "projection": False}, rng=0),
                          ProjectionDiscriminator)


# ------------------------------------------------------------------ penalties


@pytest.mark.parametrize("spectral", [False, True], ids=["plain", "spectral_norm"])
@pytest.mark.parametrize("pack", [1, 2])
@pytest.mark.parametrize("center", [0.0, 1.0], ids=["R1", "GP"])
def test_penalty_through_the_projection(center, pack, spectral):
    """The value is the formula on D's own input gradient (image columns only), and
    the parameter gradients, V's and psi's included, match central differences."""
    D = small_projection(3, pack, seed=5)
    if spectral:
        D.psi = SpectralNorm(D.psi, rng=6)
        D.body.layers[-3] = SpectralNorm(D.body.layers[-3], rng=7)
        D.eval()   # u and v fixed, so every evaluation sees the same function
    inp, _ = labelled(4, 3, seed=8)
    out = D.forward(inp)
    g = D.backward(np.ones_like(out), param_grads=False)[:, :16]   # the image's slope
    norms = np.linalg.norm(g.reshape(out.shape[0], -1), axis=1)
    expected = 1.5 * np.mean((norms - center) ** 2)
    D.zero_grad()
    assert float(input_gradient_penalty(D, inp, 1.5, center, features=16)) == \
        pytest.approx(expected, rel=1e-12)
    result = check_penalty(D, inp, 1.5, center, features=16)
    assert "dV" in [c.name for c in result.comparisons]
    assert result.ok, str(result)


def test_the_penalty_refuses_a_norm_over_the_label():
    D = small_projection(3, 1, seed=9)
    inp, _ = labelled(2, 3, seed=10)
    for features in (None, 17):
        with pytest.raises(ValueError, match="features must be at most 16"):
            input_gradient_penalty(D, inp, 1.0, 0.0, features=features)


# ------------------------------------------------------------------- training


def test_a_conditional_gan_with_it_trains_in_float32(dev, backend):
    config = {**TINY, "pack": 2, "init": "normal"}
    G = build_dcgan_generator(config, backend=backend, rng=0)
    D = build_dcgan_discriminator(config, backend=backend, rng=1)
    gan = ConditionalGAN(G, D, 3, 3, Adam(G.parameters()), Adam(D.parameters()), rng=0,
                         regularizer=R1(1.0))
    rng = np.random.default_rng(2)
    before = copy.deepcopy([to_numpy(p) for p, _ in D.parameters()])
    for _ in range(3):
        x = dev(rng.uniform(-1, 1, (8, 64)), "float32")
        record = gan.train_step((x, rng.integers(0, 3, 8)))
        assert all(np.isfinite(v) for v in record.values()), record
    assert gan.regularizer.features == 64          # set by ConditionalGAN: the image only
    assert record["d_penalty"] > 0
    assert {p.dtype for p, _ in D.parameters()} == {np.dtype("float32")}
    assert all(not np.array_equal(b, to_numpy(a)) for b, (a, _) in zip(before, D.parameters()))
    x = dev(rng.uniform(-1, 1, (4, 64)), "float32")
    assert not np.allclose(to_numpy(gan.discriminate(x, labels=0)),
                           to_numpy(gan.discriminate(x, labels=1)))


def test_build_gan_and_a_state_dict_round_trip(backend):
    config = {**TINY, "penalty": "r1"}
    a, b = build_gan(config, backend=backend, seed=0), build_gan(config, backend=backend, seed=1)
    assert isinstance(a.D, ProjectionDiscriminator)
    assert not np.array_equal(to_numpy(a.D.params["V"]), to_numpy(b.D.params["V"]))
    b.D.load_state_dict(a.D.state_dict())
    for (p, _), (q, _) in zip(a.D.parameters(), b.D.parameters()):
        np.testing.assert_array_equal(to_numpy(p), to_numpy(q))
