"""Gradient penalties: the hand-written double backward against central differences
of the penalty itself (float64), for MLP and conv critics, the regularisers inside
the GAN's D step, the layers that are refused, PyTorch's double backward, and a
short WGAN-GP run."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigan.backend as mb
import minigan.penalty as penalty_module
from minigan.gan import GAN
from minigan.gan_losses import NonSaturating, Wasserstein
from minigan.gradcheck import compare, numerical_gradient
from minigan.layers import (
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    ConvTranspose2d,
    Dense,
    Dropout,
    Flatten,
    Layer,
    LeakyReLU,
    Pack,
    ReLU,
    Reshape,
    Sequential,
    Sigmoid,
    Tanh,
)
from minigan.models import Scale, mlp
from minigan.optim import Adam
from minigan.penalty import GradientPenalty, R1, check_penalty, input_gradient_penalty
from minigan.spectral import SpectralNorm

from gradcheck_strategies import batch, seeds, width

ACTIVATIONS = {"leaky_relu": lambda: LeakyReLU(0.2), "relu": ReLU, "tanh": Tanh,
               "sigmoid": Sigmoid}


def _critic(sizes, activation, *, pack=1, front=(), spectral=False, dtype="float64", seed=0,
            backend=None):
    """An MLP critic with random (non-zero) biases, so no hidden unit sits at 0 by design."""
    rng = np.random.default_rng(seed)
    layers = list(front)
    if pack > 1:
        layers.append(Pack(pack))
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        dense = Dense(a, b, dtype=dtype, rng=rng, backend=backend)
        dense.params["b"][...] = mb.to_device(rng.normal(0, 0.5, b).astype(dtype), dense.backend)
        layers.append(SpectralNorm(dense, rng=rng) if spectral else dense)
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return Sequential(*layers)


def _random_bias(layer, rng):
    b = layer.params["b"]
    b[...] = mb.to_device(rng.normal(0, 0.5, b.shape).astype(b.dtype), layer.backend)
    return layer


def _conv_critic(activation, *, image=(2, 7, 5), channels=(3, 2), spectral=False,
                 transposed=False, bias=True, flat=False, dtype="float64", seed=0,
                 backend=None):
    """Conv2d(k3, p1) -> act -> Conv2d(k3, stride 2, p(1, 0)) -> act -> Flatten -> Dense,
    with random biases (none in the second Conv2d with ``bias=False``, as before a
    batch norm). ``transposed`` puts a ConvTranspose2d (stride 2) in front, as a
    layer whose input is the critic's (a linear map like any other); ``flat`` a
    Reshape(*image), for flat samples (N, C H W), as the DCGAN discriminator has."""
    rng = np.random.default_rng(seed)
    c_in, H, W = image
    c1, c2 = channels
    kw = dict(dtype=dtype, rng=rng, backend=backend)
    wrap = (lambda layer: SpectralNorm(layer, rng=rng)) if spectral else (lambda layer: layer)
    layers = [Reshape(*image)] if flat else []
    if transposed:
        up = _random_bias(ConvTranspose2d(c_in, 2, 3, stride=2, padding=1, output_padding=1,
                                          **kw), rng)
        layers += [up, ACTIVATIONS[activation]()]
        c_in, (H, W) = 2, up.output_shape((H, W))
    first = _random_bias(Conv2d(c_in, c1, 3, padding=1, **kw), rng)
    second = Conv2d(c1, c2, 3, stride=2, padding=(1, 0), bias=bias, **kw)
    if bias:
        _random_bias(second, rng)
    h_out, w_out = second.output_shape(first.output_shape((H, W)))
    last = _random_bias(Dense(c2 * h_out * w_out, 1, **kw), rng)
    layers += [wrap(first), ACTIVATIONS[activation](), wrap(second), ACTIVATIONS[activation](),
               Flatten(), wrap(last)]
    return Sequential(*layers)


def _pre_activations(D, x):
    """The inputs of every (leaky) ReLU in D for input x, to keep a check off the kinks."""
    found, h = [], x
    for layer in D.layers:
        if isinstance(layer, (ReLU, LeakyReLU)):
            found.append(h)
        h = layer.forward(h)
    D.clear_cache()
    return found


def _penalty_check(D, x, weight, center):
    """(analytic, numeric) parameter gradients of the penalty, by name.

    The analytic ones are what input_gradient_penalty ADDS to zeroed grads; the
    numeric ones are central differences of the penalty's value (its added
    gradients are ignored there). D must have no state a forward changes
    (spectral norm in evaluation mode), so every evaluation sees the same D.
    """
    D.zero_grad()
    value = input_gradient_penalty(D, x, weight, center)
    analytic = {name: mb.to_numpy(g).copy() for name, _, g in D.named_parameters()}

    def objective():
        return float(input_gradient_penalty(D, x, weight, center))

    numeric = {name: numerical_gradient(objective, p) for name, p, _ in D.named_parameters()}
    return value, analytic, numeric


def _assert_gradients_match(analytic, numeric):
    for name in numeric:
        result = compare("d" + name, analytic[name], numeric[name])
        assert result.ok, result.line()
    assert max(np.abs(g).max() for g in analytic.values()) > 1e-3   # not trivially zero


def _x(shape, seed):
    return np.random.default_rng(seed).normal(0, 1.0, shape)


# ------------------------------------------------------- the double backward itself


@pytest.mark.parametrize("center", [1.0, 0.0], ids=["center=1", "center=0"])
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_penalty_gradients_match_finite_differences(activation, center):
    D = _critic([3, 6, 5, 1], activation, seed=1)
    x = _x((7, 3), 2)
    for h in _pre_activations(D, x):
        assert np.abs(h).min() > 1e-3  # off the kinks: a 1e-6 step cannot cross one
    _, analytic, numeric = _penalty_check(D, x, weight=3.0, center=center)
    _assert_gradients_match(analytic, numeric)


@given(seed=seeds, n=batch, widths=st.lists(width, min_size=1, max_size=3),
       activation=st.sampled_from(list(ACTIVATIONS)), pack=st.sampled_from([1, 2]),
       center=st.sampled_from([0.0, 1.0]))
def test_penalty_gradients_on_drawn_critics(seed, n, widths, activation, pack, center):
    """Hypothesis-drawn depth, widths, batch, packing and activation; inputs off the kinks."""
    d_in = widths[0]
    D = _critic([pack * d_in, *widths[1:], 1], activation, pack=pack, seed=seed)
    x = _x((n * pack, d_in), seed + 1)
    pre = _pre_activations(D, x)
    if any(np.abs(h).min() < 1e-3 for h in pre):
        return   # too near a kink for central differences (rare)
    _, analytic, numeric = _penalty_check(D, x, weight=2.0, center=center)
    for name in numeric:
        result = compare("d" + name, analytic[name], numeric[name])
        assert result.ok, result.line()


@pytest.mark.parametrize("activation", ["tanh", "leaky_relu"])
def test_penalty_gradients_of_a_packing_critic(activation):
    D = _critic([2 * 3, 5, 1], activation, pack=2, seed=3)
    x = _x((8, 3), 4)
    _, analytic, numeric = _penalty_check(D, x, weight=10.0, center=1.0)
    _assert_gradients_match(analytic, numeric)


def _conv_case(case, n, seed):
    """(D, x, weight, center) from a test case's name ("r1-spectral-tanh", ...): a conv
    critic with "spectral", "transposed", "nobias" and "flat" as _conv_critic's
    arguments and the last word as its activation, n inputs for it (odd 7x5 images,
    4x3 before a transposed convolution's upsampling), and center 0 for "r1"."""
    image = (2, 4, 3) if "transposed" in case else (2, 7, 5)
    D = _conv_critic(case.split("-")[-1], image=image, spectral="spectral" in case,
                     transposed="transposed" in case, bias="nobias" not in case,
                     flat="flat" in case, seed=seed)
    x = _x((n, *image), seed + 1)
    if "flat" in case:
        x = x.reshape(n, -1)
    weight, center = (5.0, 0.0) if case.startswith("r1") else (10.0, 1.0)
    return D, x, weight, center


@pytest.mark.parametrize("case", ["leaky_relu", "tanh", "sigmoid", "relu", "spectral-leaky_relu",
                                  "spectral-nobias-tanh", "r1-sigmoid", "r1-spectral-tanh",
                                  "transposed-tanh", "flat-leaky_relu"])
def test_conv_critic_penalty_gradients_match_finite_differences(case):
    """Conv2d (padding) -> act -> Conv2d (stride 2) -> act -> Flatten -> Dense on odd
    7x5 images (a ConvTranspose2d in front for "transposed", upsampling 4x3 to 8x6):
    every parameter's dP/dtheta against central differences of P."""
    D, x, weight, center = _conv_case(case, n=3, seed=75)
    D.eval()   # spectral norm: u and v held fixed, so every evaluation sees one D
    for h in _pre_activations(D, x):
        assert np.abs(h).min() > 1e-3  # off the kinks: a 1e-6 step cannot cross one
    _, analytic, numeric = _penalty_check(D, x, weight, center)
    _assert_gradients_match(analytic, numeric)


def test_penalty_gradients_through_scale_and_spectral_norm():
    D = _critic([3, 5, 4, 1], "tanh", front=[Scale(0.5)], spectral=True, seed=5)
    D.eval()   # spectral norm: u and v held fixed, so every evaluation sees one D
    x = _x((6, 3), 6)
    _, analytic, numeric = _penalty_check(D, x, weight=10.0, center=1.0)
    _assert_gradients_match(analytic, numeric)


def test_check_penalty_reports_a_table_and_leaves_d_alone():
    D = _critic([3, 5, 4, 1], "sigmoid", pack=1, spectral=True, dtype="float32", seed=23)
    before = {k: v.copy() for k, v in D.state_dict().items()}
    result = check_penalty(D, _x((6, 3), 24).astype(np.float32))
    assert result.ok, str(result)
    assert [c.name for c in result.comparisons] == ["d0.W", "d0.b", "d2.W", "d2.b", "d4.W", "d4.b"]
    assert "input_gradient_penalty(weight=10, center=1)" in str(result)
    for k, v in D.state_dict().items():     # not even u and v moved
        assert v.dtype == np.float32 and np.array_equal(v, before[k]), k
    assert all(not np.any(g) for _, g in D.parameters())


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_the_second_derivatives_of_the_activations_matter(monkeypatch, activation):
    """Drop phi'' (pretend r = 0) and the gradient check fails: the check can fail,
    and tanh's and sigmoid's second derivatives are not negligible."""
    D = _critic([3, 6, 1], activation, seed=7)
    x = _x((5, 3), 8)
    _, _, numeric = _penalty_check(D, x, weight=1.0, center=1.0)
    layer_type = Tanh if activation == "tanh" else Sigmoid
    rule = penalty_module.RULES[layer_type]
    first_only = rule._derivatives
    monkeypatch.setattr(rule, "_derivatives", lambda *args: (first_only(*args)[0], None))
    _, wrong, _ = _penalty_check(D, x, weight=1.0, center=1.0)
    assert not all(compare(n, wrong[n], numeric[n]).ok for n in numeric)


@pytest.mark.parametrize("kind", ["conv", "transposed"])
def test_the_convolution_rule_has_the_four_facts_of_the_affine_rule(kind):
    """For one convolution, each method of its rule against what it must equal:
    B is the layer's own input gradient, J a the forward without bias, <a, B(delta)>
    = <J a, delta>, and second's dW is d<J a, delta>/dW by central differences."""
    rng = np.random.default_rng(90)
    if kind == "conv":
        layer = Conv2d(2, 3, (3, 2), stride=2, padding=1, dtype="float64", rng=rng)
        h_shape = (2, 2, 7, 6)
    else:
        layer = ConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1,
                                dtype="float64", rng=rng)
        h_shape = (2, 2, 4, 3)
    _random_bias(layer, rng)
    rule = penalty_module.RULES[type(layer)]
    h, a = _x(h_shape, 91), _x(h_shape, 92)
    out, ctx = rule.forward(layer, h)
    delta = _x(out.shape, 93)

    np.testing.assert_allclose(out, layer.forward(h), rtol=1e-13)
    np.testing.assert_allclose(rule.input_backward(ctx, delta),
                               layer.backward(delta, param_grads=False), rtol=1e-13)
    Ja = rule.jvp(ctx, a)
    no_bias = layer.forward(a) - layer.params["b"].reshape(-1, 1, 1)
    layer.clear_cache()
    np.testing.assert_allclose(Ja, no_bias, rtol=1e-12, atol=1e-14)
    assert float((a * rule.input_backward(ctx, delta)).sum()) == pytest.approx(
        float((Ja * delta).sum()), rel=1e-12)

    grads, r = rule.second(ctx, a, delta)
    assert r is None and set(grads) == {"W"}
    assert ctx.a is a                            # J a kept for the jvp on the same a ...
    np.testing.assert_allclose(rule.jvp(ctx, a), Ja, rtol=1e-13)
    assert ctx.a is None and ctx.Ja is None      # ... and used once
    numeric = numerical_gradient(lambda: float((rule.jvp(ctx, a) * delta).sum()),
                                 layer.params["W"])
    result = compare("dW", grads["W"], numeric)
    assert result.ok, result.line()


def _input_gradient_by_backward(D, x):
    """g = dD/dx by D's own backward with upstream ones (not the penalty's code)."""
    out = D.forward(x)
    g = D.backward(np.ones_like(out), param_grads=False)
    return out, g


@pytest.mark.parametrize("pack", [1, 2])
def test_penalty_value_is_the_formula_with_one_norm_per_d_output(pack):
    D = _critic([pack * 3, 5, 1], "sigmoid", pack=pack, seed=9)
    x = _x((8, 3), 10)
    out, g = _input_gradient_by_backward(D, x)
    rows = g.reshape(out.shape[0], -1)          # per D output: per pack of `pack` samples
    assert rows.shape == (8 // pack, 3 * pack)
    norms = np.linalg.norm(rows, axis=1)
    D.zero_grad()
    assert float(input_gradient_penalty(D, x, 10.0, 1.0)) == pytest.approx(
        10.0 * np.mean((norms - 1.0) ** 2), rel=1e-10)
    assert float(input_gradient_penalty(D, x, 2.5, 0.0)) == pytest.approx(
        2.5 * np.mean(norms ** 2), rel=1e-12)
    with pytest.raises(RuntimeError, match="without a matching forward"):
        D.backward(np.ones_like(out))   # the penalty left D's caches alone (used: none)


def test_penalty_at_zero_gradient_is_finite():
    """||g|| = 0 (all weights zero): the smoothed norm's gradient is 0, not NaN."""
    D = _critic([3, 4, 1], "tanh", seed=11)
    for _, p, _ in D.named_parameters():
        p[...] = 0.0
    D.zero_grad()
    value = input_gradient_penalty(D, _x((4, 3), 12), 10.0, 1.0)
    assert float(value) == pytest.approx(10.0, rel=1e-5)
    for _, _, g in D.named_parameters():
        assert np.all(np.isfinite(g))


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_penalty_keeps_float32_and_adds_to_existing_grads(backend, kind):
    if kind == "mlp":
        D, x_shape = _critic([3, 5, 1], "tanh", dtype="float32", seed=13, backend=backend), (6, 3)
    else:
        D = _conv_critic("tanh", spectral=True, dtype="float32", seed=13, backend=backend)
        D.eval()   # u and v fixed: the two calls below see the same D
        x_shape = (3, 2, 7, 5)
    x = mb.to_device(_x(x_shape, 14).astype(np.float32), backend)
    D.zero_grad()
    first = input_gradient_penalty(D, x, 10.0, 1.0)
    once = [mb.to_numpy(g).copy() for _, g in D.parameters()]
    second = input_gradient_penalty(D, x, 10.0, 1.0)
    assert first.dtype == np.float32 and mb.backend_of(first) == backend
    assert float(first) == float(second)
    for (_, g), g1 in zip(D.parameters(), once):
        assert g.dtype == np.float32 and mb.backend_of(g) == backend
        np.testing.assert_allclose(mb.to_numpy(g), 2 * g1, rtol=1e-6)   # added, not set


# ----------------------------------------------------------------- refused layers


class _Custom(Layer):
    def forward(self, x):
        return x

    def backward(self, dout, param_grads=True, input_grad=True):
        return dout


@pytest.mark.parametrize("layer, match", [
    (BatchNorm1d(4, dtype="float64"), r"BatchNorm1d\(4\).*WGAN-GP paper drops batch norm"),
    (Dropout(0.3), r"Dropout\(p=0.3\).*random"),
    (BatchNorm2d(4, dtype="float64"), r"BatchNorm2d\(4\).*WGAN-GP paper drops batch norm"),
    (_Custom(), r"_Custom\(\).*no second-order.*Supported: Conv2d, ConvTranspose2d, Dense, "
                r"Flatten.*SpectralNorm\(Dense\), SpectralNorm\(Conv2d\)"),
])
def test_layers_without_a_double_backward_are_refused_by_name(layer, match):
    D = Sequential(Dense(3, 4, dtype="float64"), layer, LeakyReLU(0.2), Dense(4, 1, dtype="float64"))
    with pytest.raises(TypeError, match=match):
        input_gradient_penalty(D, _x((4, 3), 0), 10.0, 1.0)
    for _, g in D.parameters():
        assert not np.any(g)     # refused before anything was added


def test_a_batchnorm2d_conv_critic_is_refused_before_anything_runs():
    D = Sequential(Conv2d(2, 4, 3, dtype="float64"), BatchNorm2d(4, dtype="float64"),
                   LeakyReLU(0.2), Flatten(), Dense(4 * 3 * 3, 1, dtype="float64"))
    running = D[1].running_mean.copy()
    with pytest.raises(TypeError, match=r"BatchNorm2d\(4\).*batch normalisation mixes"):
        input_gradient_penalty(D, _x((4, 2, 5, 5), 0), 10.0, 1.0)
    assert np.array_equal(D[1].running_mean, running)   # no forward ran


def test_a_conv_critic_given_the_wrong_image_says_what_it_expected():
    D = _conv_critic("tanh")
    with pytest.raises(ValueError, match=r"Conv2d\(2 -> 3.*expected input of shape \(N, 2, H, W\)"):
        input_gradient_penalty(D, _x((3, 3, 7, 5), 0), 10.0, 1.0)


def test_an_input_of_another_dtype_is_refused():
    D = _critic([3, 4, 1], "tanh", dtype="float32")
    with pytest.raises(TypeError, match="x is float64 but D's parameters are float32"):
        input_gradient_penalty(D, _x((4, 3), 0), 10.0, 1.0)


def test_bad_regulariser_arguments_are_explained():
    with pytest.raises(ValueError, match="weight must be a finite number >= 0"):
        GradientPenalty(weight=-1)
    with pytest.raises(ValueError, match="gamma must be a finite number >= 0"):
        R1(gamma=float("nan"))
    with pytest.raises(ValueError, match="same shape"):
        GradientPenalty(rng=0)(_critic([3, 1], "tanh"), _x((4, 3), 0), _x((5, 3), 1))


# ----------------------------------------------------- the regularisers in the D step


class _Recorder:
    """A stand-in optimiser: records D's gradients at ``step`` and changes nothing."""

    def __init__(self, model):
        self.model, self.seen = model, []

    def step(self):
        self.seen.append([g.copy() for _, g in self.model.parameters()])


def _gan(regularizer, loss, D=None):
    G = mlp([2, 8, 2], activation="tanh", dtype="float64", rng=20)
    D = _critic([2, 8, 6, 1], "tanh", seed=21) if D is None else D
    opt = _Recorder(D)
    gan = GAN(G, D, 2, _Recorder(G), opt, loss=loss, regularizer=regularizer, rng=0)
    return gan, opt


@pytest.mark.parametrize("loss", [Wasserstein(), NonSaturating()], ids=repr)
def test_gradient_penalty_in_the_d_step_adds_exactly_its_gradient(loss):
    plain, plain_opt = _gan(None, loss)
    reg, reg_opt = _gan(GradientPenalty(weight=10.0, rng=3), loss)
    real, fake = _x((6, 2), 30), _x((6, 2), 31)
    stats = reg.discriminator_step(real, fake)
    plain.discriminator_step(real, fake)

    # the same epsilons, drawn again from the same seed
    x_hat, eps = GradientPenalty(rng=3).interpolate(real, fake)
    assert eps.shape == (6, 1) and np.all((eps >= 0) & (eps <= 1))
    assert len(np.unique(eps)) == 6                      # one epsilon per sample
    np.testing.assert_allclose(x_hat, eps * real + (1 - eps) * fake)
    D = copy.deepcopy(reg.D)
    D.zero_grad()
    value = input_gradient_penalty(D, x_hat, 10.0, 1.0)
    assert stats["d_penalty"] == pytest.approx(float(value), rel=1e-12)
    for g_reg, g_plain, (_, g_pen) in zip(reg_opt.seen[0], plain_opt.seen[0], D.parameters()):
        np.testing.assert_allclose(g_reg, g_plain + g_pen, rtol=1e-12, atol=1e-15)
    # and that gradient is the penalty's own, by central differences at x_hat
    _, analytic, numeric = _penalty_check(D, x_hat, 10.0, 1.0)
    _assert_gradients_match(analytic, numeric)


def test_r1_in_the_d_step_penalises_the_real_batch():
    plain, plain_opt = _gan(None, NonSaturating())
    reg, reg_opt = _gan(R1(gamma=4.0), NonSaturating())
    real, fake = _x((6, 2), 40), _x((6, 2), 41)
    stats = reg.discriminator_step(real, fake)
    plain.discriminator_step(real, fake)
    D = copy.deepcopy(reg.D)
    D.zero_grad()
    out, g = _input_gradient_by_backward(copy.deepcopy(D), real)
    assert stats["d_penalty"] == pytest.approx(2.0 * np.mean((g ** 2).sum(axis=1)), rel=1e-12)
    input_gradient_penalty(D, real, 2.0, 0.0)
    for g_reg, g_plain, (_, g_pen) in zip(reg_opt.seen[0], plain_opt.seen[0], D.parameters()):
        np.testing.assert_allclose(g_reg, g_plain + g_pen, rtol=1e-12, atol=1e-15)
    assert repr(R1(4)) == "R1(gamma=4)" and repr(GradientPenalty()) == "GradientPenalty(weight=10)"


def _conditional_critic(kind, pack):
    """A D that reads [x, one-hot y]: an MLP (3 numbers + 2 label columns per sample) or
    a conv net whose LabelPlanes turn the label into planes (1x4x4 image + 2 labels)."""
    from minigan.models import LabelPlanes

    if kind == "mlp":
        return _critic([pack * 5, 6, 1], "tanh", pack=pack, seed=61), 3, 5
    rng = np.random.default_rng(62)
    layers = [LabelPlanes((1, 4, 4), 2)] + ([Pack(pack)] if pack > 1 else [])
    layers += [Conv2d(pack * 3, 2, 3, padding=1, dtype="float64", rng=rng), Tanh(), Flatten(),
               Dense(32, 1, dtype="float64", rng=rng)]
    return Sequential(*layers), 16, 18


@pytest.mark.parametrize("kind, pack", [("mlp", 1), ("mlp", 2), ("conv", 1), ("conv", 2)])
@pytest.mark.parametrize("center", [0.0, 1.0])
def test_features_keeps_the_label_columns_out_of_the_norm(kind, pack, center):
    """features = k: the norm is over the first k numbers of each sample (a conditional
    D's x, not its label): the value is the formula on those entries of g, and the
    gradient matches central differences of that value."""
    D, k, d = _conditional_critic(kind, pack)
    x = _x((4, d), 63)
    x[:, k:] = np.eye(2)[[0, 1, 1, 0]]               # one-hot labels
    out, g = _input_gradient_by_backward(copy.deepcopy(D), x)
    assert np.abs(g[:, k:]).max() > 1e-3              # D's slope in the label is not 0 ...
    g[:, k:] = 0                                      # ... and the norm leaves it out
    norms = np.linalg.norm(g.reshape(out.shape[0], -1), axis=1)
    expected = 2.5 * np.mean((norms - center) ** 2)
    D.zero_grad()
    value = float(input_gradient_penalty(D, x, 2.5, center, features=k))
    assert value == pytest.approx(expected, rel=1e-12)
    assert float(input_gradient_penalty(copy.deepcopy(D), x, 2.5, center)) != \
        pytest.approx(expected, rel=1e-6)             # without features the labels count
    result = check_penalty(D, x, 2.5, center, features=k)
    assert result.ok, str(result)
    assert "features=" in str(result)


def test_features_is_checked_and_reaches_the_regularisers():
    D, x = _critic([5, 4, 1], "tanh", seed=64), _x((3, 5), 65)
    for bad in (0, 6):
        with pytest.raises(ValueError, match=r"features must be in 1..5 \(the numbers per sample"):
            input_gradient_penalty(D, x, 1.0, 0.0, features=bad)
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="features must be None"):
            R1(features=bad)
        with pytest.raises(ValueError, match="features must be None"):
            GradientPenalty(features=bad)
    r1, gp = R1(2.0, features=3), GradientPenalty(4.0, rng=1, features=3)
    assert repr(r1) == "R1(gamma=2, features=3)"
    assert repr(gp) == "GradientPenalty(weight=4, features=3)"
    D.zero_grad()
    value = r1(D, x)
    assert value == pytest.approx(float(input_gradient_penalty(copy.deepcopy(D), x, 1.0, 0.0,
                                                               features=3)), rel=1e-12)
    # the gradient penalty passes features on too: the same value and gradient as the
    # penalty over the first 3 numbers at the same interpolates, not over all 5
    fake = _x((3, 5), 66)
    x_hat, _ = GradientPenalty(rng=1).interpolate(x, fake)
    masked, whole = copy.deepcopy(D), copy.deepcopy(D)
    for net in (D, masked, whole):
        net.zero_grad()
    value = gp(D, x, fake)
    expected = float(input_gradient_penalty(masked, x_hat, 4.0, 1.0, features=3))
    assert float(value) == pytest.approx(expected, rel=1e-12)
    assert float(input_gradient_penalty(whole, x_hat, 4.0, 1.0)) != pytest.approx(expected)
    for (_, g), (_, g_masked) in zip(D.parameters(), masked.parameters()):
        np.testing.assert_allclose(g, g_masked, rtol=1e-12, atol=1e-15)


def test_a_conditional_gan_keeps_the_label_out_of_its_penalty():
    """ConditionalGAN gives a regulariser without features the data's width: the D
    step with R1() adds what R1(features=data_dim) adds, not R1 over [x, y]."""
    from minigan.gan import ConditionalGAN
    from minigan.gan_losses import NonSaturating

    def gan(regularizer):
        D = _critic([5, 6, 1], "tanh", seed=67)
        G = _critic([4, 3], "tanh", seed=68)
        opt = _Recorder(D)
        return ConditionalGAN(G, D, 2, 2, _Recorder(G), opt, loss=NonSaturating(),
                              regularizer=regularizer, rng=5), opt

    x, labels = _x((4, 3), 69), np.array([0, 1, 1, 0])
    auto, auto_opt = gan(R1(gamma=2.0))
    told, told_opt = gan(R1(gamma=2.0, features=3))
    whole, whole_opt = gan(R1(gamma=2.0, features=5))
    for g in (auto, told, whole):
        g.train_step((x, labels))
    assert auto.regularizer.features == 3
    for a, b, c in zip(auto_opt.seen[0], told_opt.seen[0], whole_opt.seen[0]):
        np.testing.assert_array_equal(a, b)
    assert any(not np.allclose(a, c) for a, c in zip(auto_opt.seen[0], whole_opt.seen[0]))


def test_lazy_r1_adds_k_times_the_gradient_once_every_k_d_steps():
    """R1(every=3): on D steps 0, 3, 6, ... the gradient added is 3 times R1's; on
    the others nothing is added and the value of the last evaluation comes back."""
    k, gamma = 3, 4.0
    plain, plain_opt = _gan(None, NonSaturating())
    lazy, lazy_opt = _gan(R1(gamma=gamma, every=k), NonSaturating())
    values = []
    for step in range(2 * k + 1):
        real, fake = _x((6, 2), 50 + step), _x((6, 2), 70 + step)
        D_before = copy.deepcopy(lazy.D)    # lazy and plain D drift apart once R1 acts
        plain.D = copy.deepcopy(D_before)
        plain_opt.model = plain.D
        stats = lazy.discriminator_step(real, fake)
        plain.discriminator_step(real, fake)
        added = [g_lazy - g_plain for g_lazy, g_plain in zip(lazy_opt.seen[-1], plain_opt.seen[-1])]
        if step % k == 0:
            D = copy.deepcopy(D_before)
            D.zero_grad()
            once = float(input_gradient_penalty(D, real, gamma / 2, 0.0))
            for a, (_, g_pen) in zip(added, D.parameters()):
                np.testing.assert_allclose(a, k * g_pen, rtol=1e-10, atol=1e-14)
            assert np.abs(added[0]).max() > 0
            values.append(once)
        else:
            assert all(np.abs(a).max() <= 1e-15 for a in added)
        assert stats["d_penalty"] == pytest.approx(values[-1], rel=1e-12)
        # the optimiser changed nothing, so move D by hand: later steps see new weights
        for (p, _), g in zip(lazy.D.parameters(), lazy_opt.seen[-1]):
            p -= 0.1 * g
    assert lazy.regularizer.calls == 2 * k + 1 and len(set(values)) == 3
    assert repr(R1(4, every=16)) == "R1(gamma=4, every=16)"


def test_lazy_r1_state_dict_resumes_the_schedule():
    reg = R1(every=4)
    D, x = _critic([2, 5, 1], "tanh", seed=3), _x((4, 2), 9)
    for _ in range(6):
        reg(D, x)
    resumed = R1(every=4).load_state_dict(reg.state_dict())
    assert (resumed.calls, resumed.last) == (6, reg.last) and reg.last > 0
    def grads():
        return [g.copy() for _, g in D.parameters()]

    before = grads()
    resumed(D, x)                          # calls 6 and 7 (counting from 0): nothing added
    resumed(D, x)
    assert all(np.array_equal(a, b) for a, b in zip(before, grads()))
    resumed(D, x)                          # call 8 = 2 * 4: the penalty's turn
    assert any(not np.array_equal(a, b) for a, b in zip(before, grads()))
    with pytest.raises(ValueError, match="from an R1 with every=4, this one has every=16"):
        R1(every=16).load_state_dict(reg.state_dict())
    state = reg.state_dict()
    del state["every"]                     # a state saved before every was kept
    assert R1(every=4).load_state_dict(state).calls == 6


@pytest.mark.parametrize("every", [0, -2, 1.5, True, "4"])
def test_r1_every_must_be_a_positive_integer(every):
    with pytest.raises(ValueError, match="every must be an integer >= 1"):
        R1(every=every)


@pytest.mark.parametrize("which", ["gradient-penalty", "r1"])
def test_regularisers_on_a_conv_critic_in_the_d_step(which):
    """Image batches through GradientPenalty (one epsilon per image) and R1 in the D
    step of a conv critic: the value is the formula, with g from D's own backward;
    the gradient added is the penalty's, which matches central differences."""
    def regularizer():
        return GradientPenalty(weight=10.0, rng=3) if which == "gradient-penalty" else R1(4.0)

    plain, plain_opt = _gan(None, Wasserstein(), D=_conv_critic("tanh", seed=82))
    reg, reg_opt = _gan(regularizer(), Wasserstein(), D=_conv_critic("tanh", seed=82))
    real, fake = _x((4, 2, 7, 5), 80), _x((4, 2, 7, 5), 81)
    stats = reg.discriminator_step(real, fake)
    plain.discriminator_step(real, fake)
    if which == "gradient-penalty":
        x, eps = GradientPenalty(rng=3).interpolate(real, fake)   # the same epsilons
        assert eps.shape == (4, 1, 1, 1) and len(np.unique(eps)) == 4
        weight, center = 10.0, 1.0
    else:
        x, weight, center = real, 2.0, 0.0

    D = copy.deepcopy(reg.D)
    _, g = _input_gradient_by_backward(copy.deepcopy(D), x)
    norms = np.linalg.norm(g.reshape(4, -1), axis=1)                # one norm per image
    assert stats["d_penalty"] == pytest.approx(weight * np.mean((norms - center) ** 2),
                                               rel=1e-10)
    _, analytic, numeric = _penalty_check(D, x, weight, center)
    for g_reg, g_plain, name in zip(reg_opt.seen[0], plain_opt.seen[0], analytic):
        np.testing.assert_allclose(g_reg, g_plain + analytic[name], rtol=1e-12, atol=1e-15)
    _assert_gradients_match(analytic, numeric)


def test_gradient_penalty_state_dict_repeats_the_epsilons():
    reg = GradientPenalty(rng=7)
    reg.interpolate(np.ones((5, 2)), np.zeros((5, 2)))
    state = reg.state_dict()
    _, expected = reg.interpolate(np.ones((5, 2)), np.zeros((5, 2)))
    resumed = GradientPenalty(rng=99).load_state_dict(state)
    _, eps = resumed.interpolate(np.ones((5, 2)), np.zeros((5, 2)))
    np.testing.assert_array_equal(eps, expected)


def test_gradient_penalty_epsilons_broadcast_over_image_shaped_samples():
    real, fake = np.ones((3, 2, 4, 4)), np.zeros((3, 2, 4, 4))
    x_hat, eps = GradientPenalty(rng=0).interpolate(real, fake)
    assert eps.shape == (3, 1, 1, 1)
    for i in range(3):   # every entry of sample i is the same mix
        assert np.all(x_hat[i] == eps[i, 0, 0, 0])


def test_wgan_gp_runs_200_steps_on_ring8_without_nan():
    from minigan.data import ring8

    dtype = "float32"
    G = mlp([2, 64, 64, 2], activation="relu", dtype=dtype, rng=1)
    D = mlp([2, 64, 64, 1], activation="leaky_relu", slope=0.2, dtype=dtype, rng=2)
    gan = GAN(G, D, 2, Adam(G.parameters(), lr=1e-4, betas=(0.5, 0.9)),
              Adam(D.parameters(), lr=1e-4, betas=(0.5, 0.9)), loss=Wasserstein(),
              d_steps=5, regularizer=GradientPenalty(weight=10.0, rng=3), rng=4)
    data, rng = ring8(), np.random.default_rng(5)
    for _ in range(200):
        gan.train_step([data.sample(64, rng=rng, dtype=dtype) for _ in range(5)])
    for key in ("d_loss", "d_penalty", "g_loss"):
        assert np.all(np.isfinite(gan.history[key])), key
    assert np.all(gan.history["d_penalty"] >= 0)
    assert np.all(np.isfinite(mb.to_numpy(gan.sample(256))))


# ------------------------------------------------------------------ PyTorch parity


def _torch_layer(torch, layer):
    """PyTorch's float64 copy of a Dense, Conv2d or ConvTranspose2d (same weights), or of
    a SpectralNorm around one (same u and v)."""
    nn = torch.nn
    inner = layer.layer if isinstance(layer, SpectralNorm) else layer
    if isinstance(inner, Dense):
        mod, W = nn.Linear(inner.in_features, inner.out_features), inner.params["W"].T
    elif isinstance(inner, Conv2d):
        mod, W = nn.Conv2d(inner.in_channels, inner.out_channels, inner.kernel_size,
                           inner.stride, inner.padding), inner.params["W"]
    else:
        mod, W = nn.ConvTranspose2d(inner.in_channels, inner.out_channels, inner.kernel_size,
                                    inner.stride, inner.padding, inner.output_padding), \
            inner.params["W"]
    mod = mod.double()
    with torch.no_grad():
        mod.weight.copy_(torch.from_numpy(W.copy()))
        if "b" in inner.params:
            mod.bias.copy_(torch.from_numpy(inner.params["b"].copy()))
        else:
            mod.bias = None
    if isinstance(layer, SpectralNorm):
        mod = nn.utils.spectral_norm(mod)
        with torch.no_grad():
            mod.weight_u.copy_(torch.from_numpy(layer.buffers["u"].copy()))
            mod.weight_v.copy_(torch.from_numpy(layer.buffers["v"].copy()))
    return mod


def _torch_critic(torch, D):
    """PyTorch's version of a minigan critic (same weights), as a list of callables."""
    nn = torch.nn
    mods = []
    for layer in D.layers:
        if isinstance(layer, (Dense, Conv2d, ConvTranspose2d, SpectralNorm)):
            mods.append(_torch_layer(torch, layer))
        elif isinstance(layer, Pack):
            m = layer.m
            mods.append(lambda h, m=m: h.reshape(h.shape[0] // m, m * h.shape[1]))
        elif isinstance(layer, Flatten):
            mods.append(nn.Flatten())
        elif isinstance(layer, Reshape):
            mods.append(lambda h, shape=layer.shape: h.reshape(h.shape[0], *shape))
        elif isinstance(layer, LeakyReLU):
            mods.append(nn.LeakyReLU(layer.negative_slope))
        else:
            mods.append({ReLU: nn.ReLU, Tanh: nn.Tanh, Sigmoid: nn.Sigmoid}[type(layer)]())
    return mods


def _or_zeros(torch, grad, param):
    return torch.zeros_like(param) if grad is None else grad


def _torch_weight_grads(torch, mods):
    """dP/dW (in minigan's layout: Linear's transposed, a convolution's as it is) and
    dP/db of every layer with weights, in order."""
    grads = []
    for mod in mods:
        if isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            W = mod.weight_orig if hasattr(mod, "weight_orig") else mod.weight
            # None: P does not depend on it (the last bias moves D, not its gradient)
            dW = _or_zeros(torch, W.grad, W).numpy()
            grads.append(dW.T if isinstance(mod, torch.nn.Linear) else dW)
            if mod.bias is not None:
                grads.append(_or_zeros(torch, mod.bias.grad, mod.bias).numpy())
    return grads


def _assert_penalty_matches_pytorch(torch, D, x, weight, center):
    """Our penalty and its parameter gradients (D in training mode: spectral norm
    iterates once) against PyTorch's double backward of the same critic."""
    mods = _torch_critic(torch, D)   # before the penalty: the same u and v to start from

    D.zero_grad()
    value = input_gradient_penalty(D, x, weight, center)

    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    h = xt
    for mod in mods:
        h = mod(h)
    (g,) = torch.autograd.grad(h.sum(), xt, create_graph=True)
    norms = g.reshape(h.shape[0], -1).norm(dim=1)
    P = weight * ((norms - center) ** 2).mean()
    P.backward()

    assert float(value) == pytest.approx(P.item(), rel=1e-10)
    ours = [mb.to_numpy(grad) for _, _, grad in D.named_parameters()]
    theirs = _torch_weight_grads(torch, mods)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-10)
    # spectral norm: the one power iteration updated u the same way
    sn = [layer for layer in D.layers if isinstance(layer, SpectralNorm)]
    lins = [m for m in mods if hasattr(m, "weight_u")]
    assert len(sn) == len(lins)
    for layer, lin in zip(sn, lins):
        np.testing.assert_allclose(layer.buffers["u"], lin.weight_u.numpy(), rtol=1e-12)


@pytest.mark.parametrize("case", ["tanh", "sigmoid", "leaky_relu", "relu", "pack-tanh",
                                  "spectral-tanh", "r1-sigmoid"])
def test_penalty_gradients_match_pytorch_double_backward(case):
    torch = pytest.importorskip("torch", reason="PyTorch parity needs torch installed")
    activation = case.split("-")[-1]
    pack = 2 if case.startswith("pack") else 1
    weight, center = (5.0, 0.0) if case.startswith("r1") else (10.0, 1.0)
    D = _critic([3 * pack, 7, 5, 1], activation, pack=pack, spectral="spectral" in case, seed=50)
    _assert_penalty_matches_pytorch(torch, D, _x((8, 3), 51), weight, center)


@pytest.mark.parametrize("case", ["tanh", "leaky_relu", "spectral-sigmoid", "spectral-leaky_relu",
                                  "r1-tanh", "transposed-sigmoid", "nobias-tanh",
                                  "spectral-nobias-tanh", "flat-spectral-tanh"])
def test_conv_critic_penalty_gradients_match_pytorch_double_backward(case):
    """The conv critics of the finite-difference test (odd 7x5 images) against PyTorch,
    the spectral cases with every weighted layer normalised (u and v iterated once)."""
    torch = pytest.importorskip("torch", reason="PyTorch parity needs torch installed")
    D, x, weight, center = _conv_case(case, n=4, seed=52)
    _assert_penalty_matches_pytorch(torch, D, x, weight, center)


def test_a_wgan_gp_training_step_matches_pytorch():
    """Two whole GAN steps (Wasserstein + GradientPenalty, d_steps=2, SGD so that every
    gradient's size shows) against the same steps written in PyTorch with autograd."""
    torch = pytest.importorskip("torch", reason="PyTorch parity needs torch installed")
    from minigan.optim import SGD

    n, latent, d_steps, lr = 6, 3, 2, 0.05
    G = mlp([latent, 5, 2], activation="tanh", dtype="float64", rng=60)
    D = _critic([2, 7, 5, 1], "tanh", seed=61)
    Gt = torch.nn.Sequential(*_torch_critic(torch, G))
    Dt = torch.nn.Sequential(*_torch_critic(torch, D))
    gan = GAN(G, D, latent, SGD(G.parameters(), lr=lr), SGD(D.parameters(), lr=lr),
              loss=Wasserstein(), d_steps=d_steps, regularizer=GradientPenalty(10.0, rng=62),
              rng=63)
    opt_g = torch.optim.SGD(Gt.parameters(), lr=lr)
    opt_d = torch.optim.SGD(Dt.parameters(), lr=lr)
    noise, eps_rng = np.random.default_rng(63), np.random.default_rng(62)   # the same streams
    data = np.random.default_rng(64)

    for _ in range(2):
        reals = [data.normal(size=(n, 2)) for _ in range(d_steps)]
        ours = gan.train_step(reals)
        for real in reals:
            z = noise.standard_normal((n, latent), dtype=np.float32).astype(np.float64)
            fake = Gt(torch.from_numpy(z))
            real_t = torch.from_numpy(real)
            eps = torch.from_numpy(eps_rng.random((n, 1)))
            x_hat = (eps * real_t + (1 - eps) * fake.detach()).requires_grad_(True)
            (g,) = torch.autograd.grad(Dt(x_hat).sum(), x_hat, create_graph=True)
            penalty = 10.0 * ((g.norm(dim=1) - 1.0) ** 2).mean()
            d_loss = Dt(fake.detach()).mean() - Dt(real_t).mean()
            opt_d.zero_grad()
            (d_loss + penalty).backward()
            opt_d.step()
        g_loss = -Dt(fake).mean()
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        assert ours["d_loss"] == pytest.approx(d_loss.item(), rel=1e-10)
        assert ours["d_penalty"] == pytest.approx(penalty.item(), rel=1e-10)
        assert ours["g_loss"] == pytest.approx(g_loss.item(), rel=1e-10)

    for model, torch_model in ((G, Gt), (D, Dt)):
        theirs = [p.detach().numpy() for p in torch_model.parameters()]
        ours = [p for _, p, _ in model.named_parameters()]
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(a, b.T if b.ndim == 2 else b, rtol=1e-10, atol=1e-12)
