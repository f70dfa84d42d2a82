"""The DCGAN of minigan.models: LabelPlanes, build_dcgan_generator and
build_dcgan_discriminator, and the DCGAN benchmark.

What is checked, and against what:
* the shapes the builders promise (MNIST size and a small non-square image,
  unconditional and conditional) and the layers they put where (batch norm only
  where asked, never on D's first layer; no bias before a batch norm);
* LabelPlanes' forward against planes built one by one, and its gradient (and
  the whole tiny DCGAN's, G into D, every parameter) against central
  differences (minigan.gradcheck, float64, a random upstream gradient);
* a GAN and a ConditionalGAN built from them train in float32 without NaN and
  stay float32; state dicts round-trip;
* PyTorch (where installed): G's and D's forward with copied weights, and the
  gradients of one discriminator step of the GAN loop (real and fake apart,
  because of D's batch norm), written here in torch.nn by hand;
* the errors a user meets for a config the DCGAN cannot build.

(The benchmarks' --arch dcgan runs are in test_benchmarks.py.)
"""

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from minigan import (
    Adam,
    BatchNorm1d,
    Conv2d,
    ConvTranspose2d,
    Dense,
    LeakyReLU,
    ReLU,
    Sequential,
)
from minigan.backend import to_numpy
from minigan.gan import GAN, ConditionalGAN
from minigan.gradcheck import check_layer
from minigan.models import (
    LabelPlanes,
    build_dcgan_discriminator,
    build_dcgan_generator,
    dcgan_config,
)
from minigan.spectral import SpectralNorm

from gradcheck_strategies import assert_gradcheck, seeds
from optional_torch import needs_torch, torch


MNIST = {"latent_dim": 100, "image_shape": [1, 28, 28], "g_channels": [128, 64],
         "d_channels": [64, 128], "g_batchnorm": True, "d_batchnorm": True}
# 2 channels, 8 x 12: G starts at 2 x 3 (two doublings); D ends at 2 x 3 (two halvings)
SMALL = {"latent_dim": 3, "image_shape": [2, 8, 12], "g_channels": [4, 3],
         "d_channels": [3, 4], "g_batchnorm": True, "d_batchnorm": True}
TINY = {"latent_dim": 3, "image_shape": [1, 8, 8], "g_channels": [3, 2],
        "d_channels": [2, 3], "g_batchnorm": True, "d_batchnorm": True}


def build(config, backend, seed=0, **overrides):
    c = {**config, **overrides}
    return (build_dcgan_generator(c, backend=backend, rng=np.random.default_rng(seed)),
            build_dcgan_discriminator(c, backend=backend, rng=np.random.default_rng(seed + 1)))


def one_hot(labels, k, dtype="float32"):
    return np.eye(k, dtype=dtype)[labels]


def spectral_norm_wraps_conv2d():
    try:
        SpectralNorm(Conv2d(1, 1, 1, backend="numpy"))
    except TypeError:
        return False
    return True


# ------------------------------------------------------------------------ shapes


@pytest.mark.parametrize("n_classes", [0, 10], ids=["unconditional", "conditional"])
def test_mnist_sized_dcgan_shapes(dev, backend, n_classes):
    G, D = build(MNIST, backend, n_classes=n_classes)
    z = dev(np.random.default_rng(0).standard_normal((3, 100 + n_classes)), "float32")
    x = G(z)
    assert x.shape == (3, 784) and x.dtype == np.float32
    assert np.abs(to_numpy(x)).max() <= 1.0  # tanh
    d_in = x if not n_classes else dev(np.concatenate(
        [to_numpy(x), one_hot([1, 4, 9], n_classes)], axis=1))
    assert D(d_in).shape == (3, 1)
    # 128 x 7 x 7 -> 64 x 14 x 14 -> 1 x 28 x 28, and 64 x 14 x 14 -> 128 x 7 x 7 in D
    assert [lay.short_repr() for lay in G.layers] == [
        f"Dense({100 + n_classes} -> 6272)", "BatchNorm1d(6272)", "ReLU()", "Reshape(128, 7, 7)",
        "ConvTranspose2d(128 -> 64, k=4, s=2, p=1, no bias)", "BatchNorm2d(64)", "ReLU()",
        "ConvTranspose2d(64 -> 1, k=4, s=2, p=1)", "Tanh()", "Flatten()"]
    front = "LabelPlanes(1x28x28 + 10 labels)" if n_classes else "Reshape(1, 28, 28)"
    assert [lay.short_repr() for lay in D.layers] == [
        front, f"Conv2d({1 + n_classes} -> 64, k=4, s=2, p=1)", "LeakyReLU(0.2)",
        "Conv2d(64 -> 128, k=4, s=2, p=1, no bias)", "BatchNorm2d(128)", "LeakyReLU(0.2)",
        "Flatten()", "Dense(6272 -> 1)"]


@pytest.mark.parametrize("batchnorm", [True, False])
def test_g_dense_puts_hidden_dense_layers_before_the_projection(dev, backend, batchnorm):
    G, _ = build(MNIST, backend, n_classes=10, g_dense=[32, 16], g_batchnorm=batchnorm)
    bn = lambda n: [f"BatchNorm1d({n})"] if batchnorm else []   # noqa: E731
    assert [lay.short_repr() for lay in G.layers[:8 + 3 * batchnorm]] == [
        "Dense(110 -> 32)", *bn(32), "ReLU()", "Dense(32 -> 16)", *bn(16), "ReLU()",
        "Dense(16 -> 6272)", *bn(6272), "ReLU()", "Reshape(128, 7, 7)",
        "ConvTranspose2d(128 -> 64, k=4, s=2, p=1" + (", no bias)" if batchnorm else ")")]
    x = G(dev(np.random.default_rng(0).standard_normal((3, 110)), "float32"))
    assert x.shape == (3, 784) and x.dtype == np.float32
    # none asked (missing, None or []): the plain DCGAN G, layer for layer
    plain = [lay.short_repr() for lay in build(MNIST, backend)[0].layers]
    for none in (None, []):
        assert [lay.short_repr() for lay in build(MNIST, backend, g_dense=none)[0].layers] == plain
    assert plain[0] == "Dense(100 -> 6272)"


def test_non_square_image_shapes(dev, backend):
    G, D = build({**SMALL, "d_channels": [3, 4, 5]}, backend)
    # G: 4 x 2 x 3 -> 3 x 4 x 6 -> 2 x 8 x 12 (each transposed convolution doubles)
    assert G.layers[3].short_repr() == "Reshape(4, 2, 3)"
    x = G(dev(np.random.default_rng(0).standard_normal((4, 3)), "float32"))
    assert x.shape == (4, 2 * 8 * 12)
    # D: 8 x 12 -> 4 x 6 -> 2 x 3 -> 1 x 1 (each stride-2 convolution halves, rounding down)
    assert D.layers[-1].short_repr() == "Dense(5 -> 1)"
    assert D(x).shape == (4, 1)
    _, D = build(SMALL, backend)
    assert D.layers[-1].short_repr() == "Dense(24 -> 1)"   # 4 channels x 2 x 3


def test_batch_norm_only_where_asked(backend):
    G, D = build(MNIST, backend, g_batchnorm=False, d_batchnorm=False)
    assert not any(isinstance(m, BatchNorm1d) for m in G.modules() + D.modules())
    # without batch norm after them, the convolutions have their biases back
    assert all("b" in m.params for m in G.modules() + D.modules()
               if isinstance(m, (Conv2d, ConvTranspose2d)))
    _, D = build({**MNIST, "d_channels": [8, 16, 32]}, backend)
    kinds = [type(m).__name__ for m in D.layers]
    # never on the first convolution (it would normalise the data itself), on every other
    assert kinds[1:4] == ["Conv2d", "LeakyReLU", "Conv2d"] and kinds.count("BatchNorm2d") == 2


def test_every_layer_follows_the_config_dtype_and_init(backend):
    G, D = build(TINY, backend, dtype="float64", init="normal")
    for net in (G, D):
        assert {p.dtype for p, _ in net.parameters()} == {np.dtype("float64")}
    W = to_numpy(G.layers[0].params["W"])
    assert abs(W.std() - 0.02) < 0.005  # init="normal": N(0, 0.02), the DCGAN paper's


# ------------------------------------------------------------------- LabelPlanes


def label_planes_reference(x, labels, image_shape, k):
    """Plane by plane: the image's channels, then for each class a plane of ones
    (the sample's class) or zeros."""
    C, H, W = image_shape
    out = np.zeros((len(x), C + k, H, W))
    for n in range(len(x)):
        out[n, :C] = x[n].reshape(C, H, W)
        for j in range(k):
            out[n, C + j] = np.full((H, W), 1.0 if labels[n] == j else 0.0)
    return out


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_label_planes_forward_is_image_and_constant_planes(dev, dtype):
    rng = np.random.default_rng(0)
    shape, k = (2, 3, 5), 4
    x, labels = rng.standard_normal((6, 30)), rng.integers(0, k, 6)
    out = LabelPlanes(shape, k)(dev(np.concatenate([x, one_hot(labels, k)], axis=1), dtype))
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(to_numpy(out), label_planes_reference(
        x, labels, shape, k).astype(dtype))


@given(n=st.integers(1, 4), c=st.integers(1, 3), h=st.integers(1, 4), w=st.integers(1, 4),
       k=st.integers(1, 4), seed=seeds)
@example(n=1, c=1, h=1, w=1, k=1, seed=0)
def test_label_planes_gradcheck(dev, n, c, h, w, k, seed):
    # any real numbers in the label columns: the gradient is checked for all inputs
    x = np.random.default_rng(seed).standard_normal((n, c * h * w + k))
    result = check_layer(LabelPlanes((c, h, w), k), dev(x), seed=seed)
    assert_gradcheck(result)


def test_label_planes_backward_sums_each_plane(dev):
    layer = LabelPlanes((1, 2, 3), 2)
    layer(dev(np.zeros((1, 8))))
    dout = np.arange(18.0).reshape(1, 3, 2, 3)
    dx = to_numpy(layer.backward(dev(dout)))
    np.testing.assert_array_equal(dx, [[0, 1, 2, 3, 4, 5, 6 + 7 + 8 + 9 + 10 + 11,
                                        12 + 13 + 14 + 15 + 16 + 17]])


def test_label_planes_errors(dev):
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 9\): 6 image columns "
                                         r"\(1x2x3\) then 3 one-hot label columns"):
        LabelPlanes((1, 2, 3), 3)(dev(np.zeros((2, 6))))
    with pytest.raises(ValueError, match="image_shape must be"):
        LabelPlanes((2, 3), 3)
    with pytest.raises(ValueError, match="n_classes must be a positive int"):
        LabelPlanes((1, 2, 3), 0)
    with pytest.raises(RuntimeError, match="without a matching forward"):
        LabelPlanes((1, 2, 3), 3).backward(dev(np.zeros((1, 4, 2, 3))))


def test_conditional_discriminator_takes_the_gans_labelled_samples(dev, backend):
    G, D = build(MNIST, backend, n_classes=10, g_channels=[8, 4], d_channels=[4, 8])
    gan = ConditionalGAN(G, D, 100, 10, Adam(G.parameters()), Adam(D.parameters()), rng=0)
    x = dev(np.random.default_rng(1).uniform(-1, 1, (5, 784)), "float32")
    labelled = gan.with_labels(x, np.array([0, 3, 3, 7, 9]))
    assert labelled.shape == (5, 794)
    assert D(labelled).shape == (5, 1)
    assert gan.discriminate(x, labels=3).shape == (5, 1)
    # the label reaches D: another label, another opinion of the same images
    assert not np.allclose(to_numpy(gan.discriminate(x, labels=3)),
                           to_numpy(gan.discriminate(x, labels=4)))
    with pytest.raises(ValueError, match=r"\(N, 794\)"):
        D(x)


# ------------------------------------------------------------------ gradients


def distance_to_kinks(model, x):
    """The smallest |input| of any ReLU or LeakyReLU of the Sequential ``model`` on x: a
    finite difference across a kink agrees with neither one-sided slope."""
    nearest = np.inf
    for layer in model.layers:
        if isinstance(layer, (ReLU, LeakyReLU)):
            nearest = min(nearest, float(np.abs(to_numpy(x)).min()))
        x = layer(x)
    model.clear_cache()
    return nearest


@settings(max_examples=5)  # about a second each: 500 parameters, two forwards apiece
@given(n=st.integers(3, 4), seed=seeds)
@example(n=3, seed=0)
@pytest.mark.parametrize("g_dense", [[], [5]], ids=["plain", "g_dense"])
def test_tiny_dcgan_gradcheck_end_to_end(dev, backend, n, seed, g_dense):
    """G into D, 8 x 8 images, batch norm on: dz and every parameter of both nets.
    (Batches of 3 or more: with 2 samples, G's BatchNorm1d maps every input to
    -1 or +1, and dz is nearly 0.)"""
    G, D = build(TINY, backend, seed=seed, dtype="float64", init="pytorch", g_dense=g_dense)
    model = Sequential(*G.layers, *D.layers)
    z = dev(np.random.default_rng(seed).standard_normal((n, 3)))
    assume(distance_to_kinks(model, z) > 1e-4)
    result = check_layer(model, z, seed=seed)
    names = [c.name for c in result.comparisons]
    assert names[0] == "dx" and len(names) == 1 + len(model.parameters())
    # The bias of each Dense right before one of G's BatchNorm1d: the batch mean cancels
    # it, so its gradient is 0 (up to rounding), where a relative error means nothing.
    # The backward gives 0 to ~1e-14; the central difference only to its own rounding,
    # about eps |L| / h ~ 1e-9 (seen up to 1.8e-9 with a hidden layer in G).
    before_bn = [i for i, layer in enumerate(model.layers[:-1])
                 if isinstance(layer, Dense) and isinstance(model.layers[i + 1], BatchNorm1d)]
    assert len(before_bn) == 1 + len(g_dense)
    for dead in [result.comparisons[names.index(f"d{i}.b")] for i in before_bn]:
        assert dead.name.endswith(".b")
        assert dead.ok and abs(dead.analytic) < 1e-12 and dead.max_abs_error < 1e-8
        result.comparisons.remove(dead)
    assert_gradcheck(result)


@settings(max_examples=5)
@given(seed=seeds)
@example(seed=0)
def test_tiny_conditional_discriminator_gradcheck(dev, backend, seed):
    """D with LabelPlanes in front: the gradient of its input includes the label columns."""
    _, D = build(TINY, backend, seed=seed, n_classes=3, dtype="float64", init="pytorch")
    rng = np.random.default_rng(seed)
    x = dev(np.concatenate([rng.uniform(-1, 1, (3, 64)), one_hot([0, 2, 1], 3, "float64")],
                           axis=1))
    assume(distance_to_kinks(D, x) > 1e-4)
    assert_gradcheck(check_layer(D, x, seed=seed))


@pytest.mark.skipif(not spectral_norm_wraps_conv2d(),
                    reason="SpectralNorm does not wrap Conv2d yet (minigan.spectral)")
def test_spectral_norm_discriminator(dev, backend):
    _, D = build(TINY, backend, spectral_norm=True, dtype="float64", init="pytorch")
    _, D_plain = build(TINY, backend, dtype="float64", init="pytorch")
    wrapped = [m for m in D.layers if isinstance(m, SpectralNorm)]
    assert [type(m.layer).__name__ for m in wrapped] == ["Conv2d", "Conv2d", "Dense"]
    # the same weights with and without (u and v draw from a stream of their own)
    for (p, _), (q, _) in zip(D.parameters(), D_plain.parameters()):
        np.testing.assert_array_equal(to_numpy(p), to_numpy(q))
    x = np.random.default_rng(0).uniform(-1, 1, (3, 64))
    assert_gradcheck(check_layer(D.eval(), dev(x)))


# ------------------------------------------------------------------ training


@pytest.mark.parametrize("conditional", [False, True], ids=["GAN", "ConditionalGAN"])
def test_a_dcgan_trains_in_float32(dev, backend, conditional):
    k = 10 if conditional else 0
    config = {**MNIST, "g_channels": [16, 8], "d_channels": [8, 16], "n_classes": k}
    G, D = build(config, backend)
    opts = (Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999)),
            Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999)))
    gan = (ConditionalGAN(G, D, 100, k, *opts, rng=0) if conditional
           else GAN(G, D, 100, *opts, rng=0))
    rng = np.random.default_rng(1)
    before = [to_numpy(p).copy() for p, _ in G.parameters() + D.parameters()]
    for _ in range(3):
        x = dev(rng.uniform(-1, 1, (8, 784)), "float32")
        record = gan.train_step((x, rng.integers(0, 10, 8))) if conditional \
            else gan.train_step(x)
        assert all(np.isfinite(v) for v in record.values()), record
    after = [p for p, _ in G.parameters() + D.parameters()]
    assert {p.dtype for p in after} | {g.dtype for _, g in G.parameters() + D.parameters()} \
        == {np.dtype("float32")}
    assert all(not np.array_equal(b, to_numpy(a)) for b, a in zip(before, after)
               if b.size > 1)  # every weight moved (not a 1-entry bias behind batch norm)
    samples = gan.sample(6)
    assert samples.shape == (6, 784) and samples.dtype == np.float32
    assert np.all(np.isfinite(to_numpy(samples)))


def test_state_dict_round_trip(dev, backend):
    G, D = build(TINY, backend, n_classes=3)
    G2, D2 = build(TINY, backend, seed=5, n_classes=3)
    z = dev(np.random.default_rng(0).standard_normal((4, 6)), "float32")
    # a training forward moves batch norm's running statistics away from (0, 1)
    x = dev(np.concatenate([to_numpy(G(z)), one_hot([0, 1, 2, 0], 3)], axis=1))
    D(x)
    G.clear_cache(), D.clear_cache()
    for net, other in ((G, G2), (D, D2)):
        state = net.state_dict()
        assert any(k.endswith("running_mean") for k in state)
        other.load_state_dict(state)
        assert other.state_dict().keys() == state.keys()
        for key, value in other.state_dict().items():
            assert np.array_equal(to_numpy(value), to_numpy(state[key])), key
        net.eval(), other.eval()  # evaluation uses the running statistics: buffers too
    assert np.array_equal(to_numpy(G2(z)), to_numpy(G(z)))
    assert np.array_equal(to_numpy(D2(x)), to_numpy(D(x)))


# ------------------------------------------------------------------- errors


@pytest.mark.parametrize("change, message", [
    ({"image_shape": [1, 28, 30]}, r"H and W must be divisible by 4"),
    ({"g_channels": [64, 32, 16]}, r"divisible by 8"),
    ({"d_channels": [8] * 6}, r"shrink a 28x28 image below one pixel"),
    ({"image_shape": [28, 28]}, r"'image_shape' must be 3 positive ints, got \[28, 28\]"),
    ({"g_channels": []}, r"'g_channels' must be a non-empty list of positive ints, got \[\]"),
    ({"d_channels": [64, 0]}, r"'d_channels' must be a non-empty list"),
    ({"g_dense": [256, 0]}, r"'g_dense' must be a list of positive ints \(or \[\]\), got \[256, 0\]"),
    ({"g_dense": 256}, r"'g_dense' must be a list of positive ints \(or \[\]\), got 256"),
    ({"latent_dim": 0}, r"'latent_dim' must be a positive int, got 0"),
    ({"pack": 0}, r"'pack' must be a positive int, got 0"),
    ({"data_dim": 100}, r"data_dim 100 does not match image_shape \[1, 28, 28\]"),
    ({"n_classes": -1}, r"'n_classes' must be an int >= 0"),
    ({"d_dropout": 0.5}, r"d_dropout=0.5 is not supported"),
    ({"slope": 2.0}, r"'slope' must be a finite number in \[0, 1\]"),
])
def test_config_errors_say_what_was_expected(change, message):
    with pytest.raises(ValueError, match=message):
        build_dcgan_generator({**MNIST, **change}, backend="numpy", rng=0)
    with pytest.raises(ValueError, match=message):
        build_dcgan_discriminator({**MNIST, **change}, backend="numpy", rng=0)


def test_config_requires_the_image_keys():
    with pytest.raises(ValueError, match=r"missing \['image_shape', 'g_channels'\]"):
        dcgan_config({"latent_dim": 100, "d_channels": [64]})
    with pytest.raises(TypeError, match="'g_batchnorm' must be true or false, got 'yes'"):
        dcgan_config({**MNIST, "g_batchnorm": "yes"})
    full = dcgan_config(MNIST)
    assert full["spectral_norm"] is False and full["n_classes"] == 0


# ------------------------------------------------------------ PyTorch parity


def torch_dcgan(G, D, config, dtype):
    """G and D written out in torch.nn from the architecture's description (not from
    the minigan models), then given their weights."""
    nn = torch.nn
    C, H, W = config["image_shape"]
    (g0, g1), (d0, d1), k = config["g_channels"], config["d_channels"], config.get("n_classes", 0)
    h, w = H // 4, W // 4
    widths = [config["latent_dim"] + k, *config.get("g_dense", [])]
    hidden = [module for a, b in zip(widths, widths[1:])
              for module in (nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU())]
    G_t = nn.Sequential(
        *hidden,
        nn.Linear(widths[-1], g0 * h * w), nn.BatchNorm1d(g0 * h * w), nn.ReLU(),
        nn.Unflatten(1, (g0, h, w)), nn.ConvTranspose2d(g0, g1, 4, 2, 1, bias=False),
        nn.BatchNorm2d(g1), nn.ReLU(), nn.ConvTranspose2d(g1, C, 4, 2, 1), nn.Tanh(),
        nn.Flatten())

    class Planes(nn.Module):
        def forward(self, xy):
            x = xy[:, :C * H * W].reshape(-1, C, H, W)
            y = xy[:, C * H * W:, None, None].expand(-1, k, H, W)
            return torch.cat([x, y], dim=1)

    D_t = nn.Sequential(
        Planes() if k else nn.Unflatten(1, (C, H, W)), nn.Conv2d(C + k, d0, 4, 2, 1),
        nn.LeakyReLU(0.2), nn.Conv2d(d0, d1, 4, 2, 1, bias=False), nn.BatchNorm2d(d1),
        nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(d1 * (H // 4) * (W // 4), 1))
    G_t, D_t = G_t.to(dtype), D_t.to(dtype)  # before the copy: float32 would round it
    for ours, theirs in ((G, G_t), (D, D_t)):
        params = list(theirs.parameters())
        assert len(params) == len(ours.parameters())
        with torch.no_grad():
            for (p, _), t in zip(ours.parameters(), params):
                value = to_numpy(p)
                t.copy_(torch.from_numpy(value.T.copy() if t.ndim == 2 else value))
    return G_t, D_t


TOLERANCES = {"float32": (1e-5, 1e-6), "float64": (1e-10, 1e-12)}


def close(actual, expected, dtype, what):
    """rtol with atol relative to the largest entry (sums in another order than oneDNN's;
    as tests/test_conv.py)."""
    expected = expected.detach().numpy()
    actual = to_numpy(actual)
    assert actual.dtype == np.dtype(dtype), f"{what}: {actual.dtype}"
    rtol, atol = TOLERANCES[dtype]
    np.testing.assert_allclose(actual, expected, rtol=rtol,
                               atol=atol * max(1.0, np.abs(expected).max()), err_msg=what)


@needs_torch
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n_classes", [0, 10], ids=["unconditional", "conditional"])
@pytest.mark.parametrize("g_dense", [[], [12]], ids=["plain", "g_dense"])
def test_forward_matches_pytorch(dev, backend, dtype, n_classes, g_dense):
    config = {**MNIST, "g_channels": [16, 8], "d_channels": [8, 16], "n_classes": n_classes,
              "g_dense": g_dense}
    G, D = build(config, backend, dtype=dtype, init="pytorch")
    tdtype = getattr(torch, dtype)
    G_t, D_t = torch_dcgan(G, D, config, tdtype)
    rng = np.random.default_rng(3)
    z = np.concatenate([rng.standard_normal((6, 100)), one_hot(rng.integers(0, 10, 6), 10)
                        [:, :n_classes]], axis=1)
    x = G(dev(z, dtype))
    x_t = G_t(torch.from_numpy(z).to(tdtype))
    close(x, x_t, dtype, "G(z)")
    x_np = np.concatenate([to_numpy(x), z[:, 100:]], axis=1)
    close(D(dev(x_np, dtype)), D_t(torch.from_numpy(x_np).to(tdtype)), dtype, "D(x)")


@needs_torch
def test_discriminator_step_gradients_match_pytorch(dev, backend):
    """One discriminator step of the GAN loop (BCE on logits, real -> 1, fake -> 0): D
    has batch norm, so minigan runs the real and the fake batch apart, as PyTorch does;
    the loss and every gradient of D agree. float64: the gradients of a batch norm's
    input are differences of nearly equal sums, which float32 rounding blurs."""
    config = {**MNIST, "g_channels": [16, 8], "d_channels": [8, 16]}
    G, D = build(config, backend, dtype="float64", init="pytorch")
    gan = GAN(G, D, 100, Adam(G.parameters()), Adam(D.parameters()), rng=0)
    G_t, D_t = torch_dcgan(G, D, config, torch.float64)
    rng = np.random.default_rng(4)
    real = rng.uniform(-1, 1, (8, 784))
    z = rng.standard_normal((8, 100))
    fake = gan.generate(dev(z))
    record = gan.discriminator_step(dev(real), fake)   # leaves D's gradients in D.grads

    fake_t = G_t(torch.from_numpy(z)).detach()
    bce = torch.nn.BCEWithLogitsLoss()
    ones, zeros = torch.ones(8, 1, dtype=torch.float64), torch.zeros(8, 1, dtype=torch.float64)
    loss = bce(D_t(torch.from_numpy(real)), ones) \
        + bce(D_t(fake_t), zeros)
    loss.backward()
    assert abs(record["d_loss"] - loss.item()) <= 1e-10 * loss.item()
    for (name, _, grad), p in zip(D.named_parameters(), D_t.parameters()):
        expected = p.grad.T if p.ndim == 2 else p.grad
        close(grad, expected, "float64", f"dL/d{name}")
