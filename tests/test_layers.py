"""minigan.layers: gradient checks of every layer and a whole model, the tree walk,
packing, modes, state dicts, dtypes and the errors a user meets."""

import re

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from minigan import (
    BatchNorm1d,
    Dense,
    Dropout,
    Layer,
    LeakyReLU,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
)
from minigan import functional as F
from minigan.backend import to_numpy
from minigan.gradcheck import check_layer
from minigan.layers import Pack

from gradcheck_strategies import assert_gradcheck, batch, seeds, width


def off_kinks(rng, shape, low=1e-3):
    magnitude = 10.0 ** rng.uniform(np.log10(low), 0.5, size=shape)
    return magnitude * rng.choice([-1.0, 1.0], size=shape)


def randomise(layer, rng):
    """Give every parameter and buffer random values (gamma, running_var positive)."""
    for sub in layer.modules():
        for d in (sub.params, sub.buffers):
            for k, v in d.items():
                values = rng.standard_normal(v.shape)
                if k in ("gamma", "running_var"):
                    values = rng.uniform(0.5, 2.0, v.shape)
                v[...] = to_device_like(values, v)
    return layer


def to_device_like(values, like):
    from minigan.backend import backend_of, to_device
    return to_device(values.astype(like.dtype), backend_of(like))


# ------------------------------------------------------------- gradient checks


@given(n=batch, d_in=width, d_out=width, seed=seeds)
@example(n=1, d_in=1, d_out=1, seed=0)
def test_dense_layer_gradcheck(dev, backend, n, d_in, d_out, seed):
    rng = np.random.default_rng(seed)
    layer = randomise(Dense(d_in, d_out, dtype="float64", rng=seed, backend=backend), rng)
    assert_gradcheck(check_layer(layer, dev(rng.standard_normal((n, d_in))), seed=seed))


@pytest.mark.parametrize("make", [ReLU, lambda: LeakyReLU(0.2), LeakyReLU, Sigmoid, Tanh],
                         ids=["ReLU", "LeakyReLU(0.2)", "LeakyReLU()", "Sigmoid", "Tanh"])
@given(n=batch, d=width, seed=seeds)
@example(n=1, d=1, seed=0)
def test_activation_layer_gradcheck(dev, make, n, d, seed):
    rng = np.random.default_rng(seed)
    x = off_kinks(rng, (n, d)) * 2.0  # |x| in [2e-3, 6.3]: off the kinks, off the flat tails
    assert_gradcheck(check_layer(make(), dev(x), seed=seed))


@given(n=batch, d=width, slope=st.floats(0.0, 1.0), seed=seeds)
def test_leaky_relu_layer_gradcheck_any_slope(dev, n, d, slope, seed):
    x = dev(off_kinks(np.random.default_rng(seed), (n, d)))
    assert_gradcheck(check_layer(LeakyReLU(slope), x, seed=seed))


@given(n=batch, d=width, p=st.floats(0.1, 0.8), seed=seeds)
@example(n=1, d=1, p=0.5, seed=0)
def test_dropout_layer_gradcheck(dev, n, d, p, seed):
    x = dev(np.random.default_rng(seed).standard_normal((n, d)))
    assert_gradcheck(check_layer(Dropout(p, rng=seed), x, seed=seed))
    assert_gradcheck(check_layer(Dropout(p, rng=seed).eval(), x, seed=seed))


@pytest.mark.parametrize("mode", ["train", "eval"])
@given(n=st.integers(3, 6), d=width, seed=seeds)
@example(n=3, d=1, seed=0)
def test_batchnorm_layer_gradcheck(dev, backend, mode, n, d, seed):
    rng = np.random.default_rng(seed)
    bn = randomise(BatchNorm1d(d, dtype="float64", backend=backend), rng).train(mode == "train")
    x = dev(rng.normal(rng.uniform(-2, 2), rng.uniform(0.3, 3.0), size=(n, d)))
    assert_gradcheck(check_layer(bn, x, seed=seed))


@given(n=st.integers(3, 5), d_in=width, hidden=st.integers(2, 6), seed=seeds)
@example(n=3, d_in=1, hidden=2, seed=0)
@example(n=3, d_in=1, hidden=2, seed=1398)  # all of d0.W within 1.2e-10: the noise floor
def test_whole_sequential_gradcheck_end_to_end(dev, backend, n, d_in, hidden, seed):
    rng = np.random.default_rng(seed)
    # Tanh before the batch norm: with Dense -> BatchNorm directly, the first bias
    # has an identically zero gradient (the batch mean removes it), and a check's
    # relative error of a zero gradient measures only rounding noise.
    model = Sequential(
        Dense(d_in, hidden, dtype="float64", rng=rng, backend=backend),
        Tanh(),
        BatchNorm1d(hidden, dtype="float64", backend=backend),
        LeakyReLU(0.2),
        Dropout(0.3, rng=seed),
        Dense(hidden, hidden, dtype="float64", rng=rng, backend=backend),
        Sigmoid(),
        Dense(hidden, 3, init="pytorch", dtype="float64", rng=rng, backend=backend),
    )
    randomise(model, rng)
    result = check_layer(model, dev(rng.standard_normal((n, d_in))), seed=seed)
    names = [c.name for c in result.comparisons]
    assert names == ["dx", "d0.W", "d0.b", "d2.gamma", "d2.beta", "d5.W", "d5.b", "d7.W", "d7.b"]
    assert_gradcheck(result)


@given(n=batch, seed=seeds)
@example(n=1, seed=0)
def test_sequential_with_relu_and_batch_of_one_gradcheck(dev, backend, n, seed):
    rng = np.random.default_rng(seed)
    model = Sequential(Dense(3, 4, dtype="float64", rng=rng, backend=backend), ReLU(),
                       Dense(4, 2, dtype="float64", rng=rng, backend=backend))
    randomise(model, rng)
    assert_gradcheck(check_layer(model, dev(rng.standard_normal((n, 3))), seed=seed))


@given(m=st.integers(1, 3), packs=st.integers(1, 3), d=width, image=st.booleans(), seed=seeds)
@example(m=2, packs=1, d=1, image=False, seed=0)
def test_pack_layer_gradcheck(dev, backend, m, packs, d, image, seed):
    rng = np.random.default_rng(seed)
    shape = (m * packs, d, 2, 3) if image else (m * packs, d)  # (n, d) or NCHW
    assert_gradcheck(check_layer(Pack(m), dev(rng.standard_normal(shape)), seed=seed))


@given(n=st.integers(2, 4), seed=seeds)
def test_packing_discriminator_gradcheck(dev, backend, n, seed):
    """Pack at the front of D, as PacGAN uses it: dx comes back in the unpacked layout."""
    rng = np.random.default_rng(seed)
    model = randomise(Sequential(Pack(2), Dense(6, 4, dtype="float64", rng=rng, backend=backend),
                                 Tanh(), Dense(4, 1, dtype="float64", rng=rng, backend=backend)), rng)
    result = check_layer(model, dev(rng.standard_normal((2 * n, 3))), seed=seed)
    assert [c.name for c in result.comparisons] == ["dx", "d1.W", "d1.b", "d3.W", "d3.b"]
    assert_gradcheck(result)


# ----------------------------------------------------------- forward values


def test_layer_forwards_match_closed_form(dev, backend):
    rng = np.random.default_rng(0)
    x = rng.uniform(-4, 4, (5, 3))
    dense = randomise(Dense(3, 2, dtype="float64", backend=backend), rng)
    W, b = to_numpy(dense.params["W"]), to_numpy(dense.params["b"])
    np.testing.assert_allclose(to_numpy(dense(dev(x))), np.einsum("ni,io->no", x, W) + b, rtol=1e-13)
    assert dense.params["W"].shape == (3, 2)  # (in_features, out_features)
    np.testing.assert_array_equal(to_numpy(ReLU()(dev(x))), np.where(x > 0, x, 0.0))
    np.testing.assert_allclose(to_numpy(LeakyReLU(0.2)(dev(x))), np.where(x > 0, x, 0.2 * x), rtol=1e-15)
    np.testing.assert_allclose(to_numpy(LeakyReLU()(dev(x))), np.where(x > 0, x, 0.01 * x), rtol=1e-15)
    np.testing.assert_allclose(to_numpy(Sigmoid()(dev(x))), 1 / (1 + np.exp(-x)), rtol=1e-14)
    np.testing.assert_allclose(to_numpy(Tanh()(dev(x))), np.tanh(x), rtol=1e-14)


def test_pytorch_init_draws_weights_and_bias_in_bound(backend):
    layer = Dense(16, 300, init="pytorch", rng=0, backend=backend)
    W, b = to_numpy(layer.params["W"]), to_numpy(layer.params["b"])
    bound = 1 / np.sqrt(16)
    assert np.abs(W).max() <= bound and np.abs(b).max() <= bound
    assert np.abs(b).max() > 0.8 * bound  # the bias is drawn too, not zeros
    assert np.all(to_numpy(Dense(16, 3, backend=backend).params["b"]) == 0)


# ------------------------------------------------- backward: pairs, accumulation


def test_backward_twice_with_same_dout_and_accumulation(dev, backend):
    rng = np.random.default_rng(2)
    model = Sequential(Dense(4, 5, rng=1, backend=backend), BatchNorm1d(5, backend=backend),
                       LeakyReLU(0.2), Dense(5, 2, rng=2, backend=backend))
    x = dev(rng.standard_normal((6, 4)), "float32")
    dout = dev(rng.standard_normal((6, 2)), "float32")
    dout_copy = dout.copy()
    if isinstance(dout, np.ndarray):
        dout.flags.writeable = False
    model.train()
    model(x)
    dx1 = model.backward(dout)
    first = [to_numpy(g).copy() for _, g in model.parameters()]
    model(x)
    dx2 = model.backward(dout)
    np.testing.assert_array_equal(to_numpy(dx1), to_numpy(dx2))
    np.testing.assert_array_equal(to_numpy(dout), to_numpy(dout_copy))
    # Gradients ADD up over backward passes: twice the single-pass gradient.
    for g1, (_, g) in zip(first, model.parameters()):
        np.testing.assert_allclose(to_numpy(g), 2 * g1, rtol=1e-6, atol=1e-7)
    model.zero_grad()
    assert all(np.all(to_numpy(g) == 0) for _, g in model.parameters())


def test_param_grads_false_and_input_grad_false(dev, backend):
    model = Sequential(Dense(3, 4, rng=0, backend=backend), Tanh(), Dense(4, 1, rng=1, backend=backend))
    x = dev(np.random.default_rng(0).standard_normal((5, 3)), "float32")
    dout = dev(np.ones((5, 1)), "float32")
    model(x)
    dx_full = to_numpy(model.backward(dout))
    grads = [to_numpy(g).copy() for _, g in model.parameters()]
    params = [to_numpy(p).copy() for p, _ in model.parameters()]
    model(x)
    dx = model.backward(dout, param_grads=False)  # the generator step through D
    np.testing.assert_array_equal(to_numpy(dx), dx_full)
    for before, (p, g) in zip(grads, model.parameters()):
        np.testing.assert_array_equal(to_numpy(g), before)
    for before, (p, _) in zip(params, model.parameters()):
        np.testing.assert_array_equal(to_numpy(p), before)
    model.zero_grad()
    model(x)
    assert model.backward(dout, input_grad=False) is None
    for before, (_, g) in zip(grads, model.parameters()):
        np.testing.assert_allclose(to_numpy(g), before, rtol=1e-6)


@pytest.mark.parametrize("make", [lambda b: Dense(3, 2, backend=b), lambda b: ReLU(),
                                  lambda b: LeakyReLU(0.2), lambda b: Sigmoid(), lambda b: Tanh(),
                                  lambda b: Dropout(0.5, rng=0), lambda b: BatchNorm1d(3, backend=b),
                                  lambda b: Sequential(Dense(3, 3, backend=b), Tanh()),
                                  lambda b: Pack(2)],
                         ids=["Dense", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Dropout",
                              "BatchNorm1d", "Sequential", "Pack"])
def test_backward_needs_its_own_forward(dev, backend, make):
    layer = make(backend)
    x = dev(np.random.default_rng(0).standard_normal((4, 3)), "float32")
    with pytest.raises(RuntimeError, match=r"backward\(\) was called without a matching forward"):
        layer.backward(dev(np.ones((4, 3 if not isinstance(layer, Dense) else 2)), "float32"))
    out = layer(x)
    dout = dev(np.ones(out.shape), "float32")
    layer.backward(dout)
    with pytest.raises(RuntimeError, match="without a matching forward"):
        layer.backward(dout)  # the cache is used once


def test_backward_with_wrong_dout_shape(dev, backend):
    layer = Dense(3, 2, backend=backend)
    layer(dev(np.ones((4, 3)), "float32"))
    with pytest.raises(ValueError, match=r"dout has shape \(4, 3\), expected \(4, 2\)"):
        layer.backward(dev(np.ones((4, 3)), "float32"))


def test_eval_pass_clears_nothing_but_clear_cache_does(dev, backend):
    layer = Dense(3, 2, backend=backend)
    layer(dev(np.ones((4, 3)), "float32"))
    layer.clear_cache()
    with pytest.raises(RuntimeError, match="without a matching forward"):
        layer.backward(dev(np.ones((4, 2)), "float32"))


# --------------------------------------------------- batch norm and dropout modes


def test_batchnorm_running_statistics_and_eval(dev, backend):
    rng = np.random.default_rng(8)
    bn = BatchNorm1d(3, momentum=0.1, eps=1e-5, dtype="float64", backend=backend)
    gamma, beta = rng.uniform(0.5, 2, 3), rng.standard_normal(3)
    bn.params["gamma"][...] = dev(gamma)
    bn.params["beta"][...] = dev(beta)
    running_mean, running_var = np.zeros(3), np.ones(3)
    for step in range(4):
        x = rng.normal(step, 1 + step, size=(7, 3))
        out = to_numpy(bn(dev(x)))
        mu = x.sum(0) / 7
        biased = ((x - mu) ** 2).sum(0) / 7
        unbiased = ((x - mu) ** 2).sum(0) / 6
        np.testing.assert_allclose(out, gamma * (x - mu) / np.sqrt(biased + 1e-5) + beta, rtol=1e-12, atol=1e-12)
        running_mean = 0.9 * running_mean + 0.1 * mu
        running_var = 0.9 * running_var + 0.1 * unbiased
        np.testing.assert_allclose(to_numpy(bn.running_mean), running_mean, rtol=1e-12)
        np.testing.assert_allclose(to_numpy(bn.running_var), running_var, rtol=1e-12)
        bn.backward(dev(np.ones((7, 3))))
    bn.eval()
    x = rng.standard_normal((2, 3))
    out = to_numpy(bn(dev(x)))
    np.testing.assert_allclose(out, gamma * (x - running_mean) / np.sqrt(running_var + 1e-5) + beta,
                               rtol=1e-12, atol=1e-12)
    # Evaluation leaves the running statistics alone and works on a batch of one.
    np.testing.assert_allclose(to_numpy(bn.running_mean), running_mean, rtol=1e-12)
    out1 = to_numpy(bn(dev(x[:1])))
    np.testing.assert_allclose(out1, out[:1], rtol=1e-13)
    bn.train()
    with pytest.raises(ValueError, match="at least 2 samples"):
        bn(dev(x[:1]))


def test_dropout_modes(dev):
    x = dev(np.random.default_rng(0).standard_normal((300, 200)), "float32")
    layer = Dropout(0.4, rng=9)
    layer.eval()
    out = layer(x)
    np.testing.assert_array_equal(to_numpy(out), to_numpy(x))
    np.testing.assert_array_equal(to_numpy(layer.backward(dev(np.ones((300, 200)), "float32"))), 1.0)
    layer.train()
    out = to_numpy(layer(x))
    xr = to_numpy(x)
    dropped = out == 0
    n = out.size
    assert abs(dropped.mean() - 0.4) < 5 * np.sqrt(0.4 * 0.6 / n)
    np.testing.assert_array_equal(out[~dropped], xr[~dropped] * np.float32(1 / 0.6))
    # The mask of a seeded layer is the functional mask of the same seed.
    expected_mask = to_numpy(F.dropout_mask((300, 200), 0.4, rng=np.random.default_rng(9)))
    np.testing.assert_array_equal(dropped, expected_mask == 0)
    # backward applies the same mask; its mean over many entries is ~1 (inverted dropout).
    g = to_numpy(layer.backward(dev(np.ones((300, 200)), "float32")))
    np.testing.assert_array_equal(g, expected_mask)
    assert abs(g.astype(np.float64).mean() - 1.0) < 5 * np.sqrt(0.4 / 0.6 / n)
    # Two forwards draw two different masks.
    assert not np.array_equal(to_numpy(layer(x)) == 0, dropped)


def test_dropout_rejects_bad_p():
    for p in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match=r"p must be in \[0, 1\)"):
            Dropout(p)


# ---------------------------------------------------------------------- packing


def test_pack_puts_consecutive_rows_side_by_side(dev, backend):
    x = np.arange(12.0).reshape(6, 2)
    pack = Pack(3)
    packed = to_numpy(pack(dev(x)))
    np.testing.assert_array_equal(packed, [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]])
    # backward is the inverse reshape: each gradient goes back to the sample it came from
    np.testing.assert_array_equal(to_numpy(pack.backward(dev(packed))), x)
    pack(dev(x))
    assert pack.backward(dev(packed), input_grad=False) is None


def test_pack_concatenates_the_channels_of_images(dev, backend):
    n, c, h, w, m = 6, 2, 3, 4, 3
    x = np.random.default_rng(0).standard_normal((n, c, h, w))
    out = to_numpy(Pack(m)(dev(x)))
    assert out.shape == (n // m, m * c, h, w)
    for k in range(n // m):
        for j in range(m):  # sample k*m + j fills channels j*c .. j*c + c - 1 of pack k
            np.testing.assert_array_equal(out[k, j * c:(j + 1) * c], x[k * m + j])


def test_pack_errors_and_repr(dev, backend):
    with pytest.raises(ValueError, match=re.escape("Pack(4): a batch of n=6 samples cannot be cut "
                                                   "into packs of m=4")):
        Pack(4)(dev(np.ones((6, 3)), "float32"))
    with pytest.raises(ValueError, match=re.escape("Pack(2) expected input of shape (n, d, ...), got (6,)")):
        Pack(2)(dev(np.ones(6), "float32"))
    for bad in (0, -2, 2.5, True):
        with pytest.raises(ValueError, match="m .samples per pack. must be a positive int"):
            Pack(bad)
    assert Pack(4).short_repr() == "Pack(4)" and Pack(4).params == {}
    assert "(0) Pack(4)" in repr(Sequential(Pack(4), Dense(8, 1, backend=backend)))


# --------------------------------------------------------------------- the tree


class Wrapper(Layer):
    """A layer around one network, named "": it has the network's names."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def named_children(self):
        return [("", self.net)]

    def forward(self, x):
        return self.net.forward(x)

    def backward(self, dout, param_grads=True, input_grad=True):
        return self.net.backward(dout, param_grads, input_grad)


def _nested(backend):
    inner = Sequential(Tanh(), Dense(4, 3, rng=1, backend=backend))
    return Sequential(Dense(2, 4, rng=0, backend=backend), inner, BatchNorm1d(3, backend=backend)), inner


def test_children_and_modules_walk_the_tree_depth_first(backend):
    model, inner = _nested(backend)
    assert [name for name, _ in model.named_children()] == ["0", "1", "2"]
    assert model.children() == [model[0], inner, model[2]]
    assert [name for name, _ in model.named_modules()] == ["", "0", "1", "1.0", "1.1", "2"]
    assert model.modules() == [model, model[0], inner, inner[0], inner[1], model[2]]
    assert [name for name, _ in model.named_modules("D")] == ["D", "D.0", "D.1", "D.1.0", "D.1.1", "D.2"]
    leaf = model[0]
    assert leaf.children() == [] and leaf.modules() == [leaf]


def test_the_whole_tree_has_one_set_of_names(dev, backend):
    model, inner = _nested(backend)
    names = ["0.W", "0.b", "1.1.W", "1.1.b", "2.gamma", "2.beta"]
    assert [name for name, _, _ in model.named_parameters()] == names
    assert [name for name, _, _ in model.named_parameters("D.")] == ["D." + n for n in names]
    assert [(id(p), id(g)) for p, g in model.parameters()] == \
        [(id(p), id(g)) for _, p, g in model.named_parameters()]
    assert list(model.state_dict()) == names + ["2.running_mean", "2.running_var"]
    assert model.n_params == 2 * 4 + 4 + 4 * 3 + 3 + 3 + 3
    # a layer named "" adds nothing: the wrapper has its network's names
    wrapped = Wrapper(model)
    assert [name for name, _, _ in wrapped.named_parameters()] == names
    assert list(wrapped.state_dict()) == list(model.state_dict())
    assert [name for name, _ in wrapped.named_modules()][:3] == ["", "", "0"]
    wrapped.load_state_dict(_nested(backend)[0].state_dict())


def test_modes_grads_and_caches_reach_nested_layers(dev, backend):
    model, inner = _nested(backend)
    x = dev(np.random.default_rng(0).standard_normal((5, 2)), "float32")
    model(x)
    model.backward(dev(np.random.default_rng(1).standard_normal((5, 3)), "float32"))
    assert np.any(to_numpy(inner[1].grads["W"]) != 0)
    model.zero_grad()
    assert all(np.all(to_numpy(g) == 0) for _, g in model.parameters())
    Wrapper(model).eval()
    assert [m.training for m in model.modules()] == [False] * 6
    model.train()
    assert all(m.training for m in model.modules())
    model(x)
    model.clear_cache()
    with pytest.raises(RuntimeError, match=re.escape("Dense(4 -> 3).backward() was called without")):
        inner[1].backward(dev(np.ones((5, 3)), "float32"))


def test_astype_and_to_reach_nested_layers(backend):
    model, inner = _nested(backend)
    model.astype("float64")
    assert inner[1].params["W"].dtype == np.float64 and inner[1].grads["W"].dtype == np.float64
    assert model[2].running_var.dtype == np.float64 and model.dtype == np.float64
    assert model.to("numpy") is model and inner.backend == "numpy"
    assert all(isinstance(a, np.ndarray) for _, p, g in model.named_parameters() for a in (p, g))


def test_sequential_leaves_the_bookkeeping_to_layer():
    """The tree walk is written once, in Layer: Sequential only names its children."""
    walked = {"parameters", "named_parameters", "n_params", "zero_grad", "clear_cache", "train",
              "eval", "state_dict", "load_state_dict", "to", "astype", "dtype", "backend",
              "modules", "named_modules", "children"}
    assert not walked & set(vars(Sequential)), sorted(walked & set(vars(Sequential)))
    assert "named_children" in vars(Sequential)


# ------------------------------------------------------------------ state dicts


def _model(backend, hidden=5, rng=0):
    return Sequential(Dense(3, hidden, rng=rng, backend=backend), BatchNorm1d(hidden, backend=backend),
                      LeakyReLU(0.2), Dense(hidden, 2, rng=rng + 1, backend=backend))


def test_state_dict_round_trip(dev, backend):
    model = _model(backend)
    x = dev(np.random.default_rng(1).standard_normal((6, 3)), "float32")
    model(x)
    model.backward(dev(np.ones((6, 2)), "float32"))  # running stats have moved off their init
    model.eval()
    reference = to_numpy(model(x)).copy()
    state = model.state_dict()
    assert list(state) == ["0.W", "0.b", "1.gamma", "1.beta", "1.running_mean", "1.running_var",
                           "3.W", "3.b"]
    for p, _ in model.parameters():
        p += 1.0  # perturb the model: the saved state must not follow (copies)
    model[1].running_mean[...] += 3.0
    assert not np.allclose(to_numpy(model(x)), reference)
    model.load_state_dict(state)
    np.testing.assert_array_equal(to_numpy(model(x)), reference)
    # Into a fresh model of the same architecture: identical outputs.
    other = _model(backend, rng=10).eval()
    other.load_state_dict(state)
    np.testing.assert_array_equal(to_numpy(other(x)), reference)


def test_load_state_dict_keeps_arrays_in_place(backend):
    model = _model(backend)
    before = [id(p) for p, _ in model.parameters()]
    model.load_state_dict(_model(backend, rng=3).state_dict())
    assert [id(p) for p, _ in model.parameters()] == before  # optimisers keep their references


def test_load_state_dict_into_wrong_architecture(backend):
    state = _model(backend, hidden=5).state_dict()
    with pytest.raises(ValueError, match=re.escape("'0.W' has shape (3, 5) in the state dict but (3, 4)")):
        _model(backend, hidden=4).load_state_dict(state)
    smaller = Sequential(Dense(3, 5, backend=backend), LeakyReLU(0.2), Dense(5, 2, backend=backend))
    with pytest.raises(ValueError, match=r"missing keys \['2.W', '2.b'\].*unexpected keys \['1.beta'"):
        smaller.load_state_dict(state)
    dense = Dense(3, 5, backend=backend)
    with pytest.raises(ValueError, match=r"missing keys \['W', 'b'\]"):
        dense.load_state_dict(state)


def test_load_state_dict_without_strict_takes_what_matches(backend):
    state = _model(backend, rng=3).state_dict()
    state["extra"] = state["0.W"]  # unexpected: ignored
    del state["3.b"]               # missing: left as it is
    model = _model(backend)
    b_before = to_numpy(model[3].params["b"]).copy()
    model.load_state_dict(state, strict=False)
    np.testing.assert_array_equal(to_numpy(model[0].params["W"]), to_numpy(state["0.W"]))
    np.testing.assert_array_equal(to_numpy(model[3].params["b"]), b_before)
    state["0.W"] = state["0.W"][:2]
    wrong_shape = "Dense(3 -> 5): '0.W' has shape (2, 5) in the state dict"
    with pytest.raises(ValueError, match=re.escape(wrong_shape)):
        model.load_state_dict(state, strict=False)


# ------------------------------------------------------------------- dtypes


def test_float32_everywhere_in_layers(dev, backend):
    model = Sequential(Dense(4, 6, backend=backend), BatchNorm1d(6, backend=backend), LeakyReLU(0.2),
                       Dropout(0.3, rng=0), Dense(6, 6, backend=backend), ReLU(), Dense(6, 3, backend=backend),
                       Sigmoid(), Tanh())
    x = dev(np.random.default_rng(0).standard_normal((5, 4)), "float32")
    h = x
    for layer in model:
        h = layer(h)
        assert h.dtype == np.float32, f"{layer!r} forward gave {h.dtype}"
    g = dev(np.ones(h.shape), "float32")
    for layer in reversed(model.layers):
        g = layer.backward(g)
        assert g.dtype == np.float32, f"{layer!r} backward gave {g.dtype}"
    for name, p, grad in model.named_parameters():
        assert p.dtype == np.float32 and grad.dtype == np.float32, name
    for key, value in model.state_dict().items():
        assert value.dtype == np.float32, key


def test_astype_and_to(dev, backend):
    model = _model(backend).astype("float64")
    assert model.dtype == np.float64
    assert all(p.dtype == np.float64 and g.dtype == np.float64 for p, g in model.parameters())
    assert model[1].running_var.dtype == np.float64
    assert model.backend == backend
    moved = model.to("numpy")
    assert moved is model and model.backend == "numpy"
    assert all(isinstance(p, np.ndarray) for p, _ in model.parameters())


# --------------------------------------------------------------- bad input


def test_dense_wrong_input_width(dev, backend):
    layer = Dense(3, 4, backend=backend)
    with pytest.raises(ValueError, match=re.escape("Dense(3 -> 4) expected input of shape (N, 3), got (2, 5)")):
        layer(dev(np.ones((2, 5)), "float32"))
    with pytest.raises(ValueError, match=re.escape("(N, 3), got (3,)")):
        layer(dev(np.ones(3), "float32"))
    with pytest.raises(ValueError, match=re.escape("BatchNorm1d(4) expected input of shape (N, 4), got (2, 3)")):
        BatchNorm1d(4, backend=backend)(dev(np.ones((2, 3)), "float32"))
    model = Sequential(Dense(3, 4, backend=backend), Dense(5, 1, backend=backend))
    with pytest.raises(ValueError, match=re.escape("Dense(5 -> 1) expected input of shape (N, 5), got (2, 4)")):
        model(dev(np.ones((2, 3)), "float32"))


@pytest.mark.parametrize("make", [lambda b: Dense(3, 2, backend=b), lambda b: ReLU(), lambda b: Tanh(),
                                  lambda b: BatchNorm1d(3, backend=b), lambda b: Dropout(0.5)],
                         ids=["Dense", "ReLU", "Tanh", "BatchNorm1d", "Dropout"])
def test_integer_and_non_array_input(dev, backend, make):
    layer = make(backend)
    name = re.escape(layer.short_repr())
    with pytest.raises(TypeError, match=f"{name} input must have a floating dtype.*int64"):
        layer(dev(np.ones((2, 3), np.int64)))
    with pytest.raises(TypeError, match=f"{name} input must be a NumPy or CuPy array, got list"):
        layer([[1.0, 2.0, 3.0]])
    with pytest.raises(TypeError, match="got tuple"):
        layer(((1.0, 2.0, 3.0),))


def test_dtype_mismatch_between_input_and_layer(dev, backend):
    layer = Dense(3, 2, backend=backend)  # float32 by default
    with pytest.raises(TypeError, match=re.escape("Dense(3 -> 2) has float32 parameters but got a float64 input")):
        layer(dev(np.ones((2, 3)), "float64"))
    bn = BatchNorm1d(3, dtype="float64", backend=backend)
    with pytest.raises(TypeError, match="float64 parameters but got a float32 input"):
        bn(dev(np.ones((2, 3)), "float32"))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="in_features must be a positive int, got 0"):
        Dense(0, 3)
    with pytest.raises(ValueError, match=r"out_features must be a positive int, got 2.5"):
        Dense(3, 2.5)
    with pytest.raises(ValueError, match="Unknown initialiser 'glorot'"):
        Dense(3, 2, init="glorot")
    with pytest.raises(TypeError, match="item 1 is a function, not a minigan Layer"):
        Sequential(Dense(2, 2), lambda x: x)


@pytest.mark.backends("cupy")
def test_mixing_numpy_and_cupy_names_both(backend):
    layer = Dense(3, 2, backend="cupy")
    with pytest.raises(ValueError, match=r"different backends.*numpy\.ndarray.*cupy|different backends.*cupy.*numpy\.ndarray"):
        layer(np.ones((4, 3), np.float32))


def test_repr_lists_layers_shapes_and_counts(backend):
    model = Sequential(Dense(2, 8, backend=backend), LeakyReLU(0.2), Dense(8, 1, backend=backend))
    text = repr(model)
    assert "Dense(2 -> 8)" in text and "W (2, 8)" in text and "24 params" in text
    assert "LeakyReLU(0.2)" in text and "total 33 parameters" in text and backend in text
