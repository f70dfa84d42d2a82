"""Convolutions by hand: im2col/col2im, conv2d, the transposed convolution, image batch
norm, and the layers Conv2d, ConvTranspose2d, BatchNorm2d, Flatten and Reshape.

What is checked, and against what:
* forwards against direct nested-loop references written here (a window sum per
  output pixel; for the transposed convolution, a scatter of the kernel per input
  pixel), on tiny hypothesis-drawn shapes: batch 1, stride 2 and 3, odd and
  non-square images and kernels, padding, output_padding;
* every gradient against central differences (minigan.gradcheck, float64, a
  random upstream gradient), functional pairs and layers alike;
* the adjoint identities <im2col(x), c> = <x, col2im(c)> and
  <conv(y), x> = <y, conv_T(x)>, which are why col2im adds and why the transposed
  convolution is conv2d's input gradient;
* the fast path (minigan.kernels) against the plain functional code;
* PyTorch (where installed), forward and every gradient, float32 and float64;
* the layers' bookkeeping and the errors a user meets.
"""

import numpy as np
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from minigan import (
    BatchNorm2d,
    Conv2d,
    ConvTranspose2d,
    Dense,
    Flatten,
    LeakyReLU,
    Reshape,
    Sequential,
    Tanh,
)
from minigan import functional as F
from minigan import kernels
from minigan.backend import to_numpy
from minigan.gradcheck import check_backward, check_layer

from gradcheck_strategies import assert_gradcheck, seeds
from optional_torch import needs_torch, torch


# ----------------------------------------------------------------- references


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def conv2d_reference(x, W, b, stride, padding):
    """out[n, o, h, w] = b[o] + sum over the window under (h, w): a loop per output pixel."""
    (sH, sW), (pH, pW) = pair(stride), pair(padding)
    N, C, H, Wd = x.shape
    C_out, _, kH, kW = W.shape
    x_pad = np.zeros((N, C, H + 2 * pH, Wd + 2 * pW))
    x_pad[:, :, pH:pH + H, pW:pW + Wd] = x
    H_out, W_out = (H + 2 * pH - kH) // sH + 1, (Wd + 2 * pW - kW) // sW + 1
    out = np.zeros((N, C_out, H_out, W_out))
    for n in range(N):
        for o in range(C_out):
            for h in range(H_out):
                for w in range(W_out):
                    window = x_pad[n, :, h * sH:h * sH + kH, w * sW:w * sW + kW]
                    out[n, o, h, w] = np.sum(window * W[o]) + (0.0 if b is None else b[o])
    return out


def conv_transpose2d_reference(x, W, b, stride, padding, output_padding):
    """Each input pixel scatters x[n, c, h, w] * W[c] into the output window at
    (sH h, sW w) of the uncropped output; then the padding is cut off both sides."""
    (sH, sW), (pH, pW), (oH, oW) = pair(stride), pair(padding), pair(output_padding)
    N, C, H, Wd = x.shape
    _, C_out, kH, kW = W.shape
    full = np.zeros((N, C_out, (H - 1) * sH + kH + oH, (Wd - 1) * sW + kW + oW))
    for n in range(N):
        for c in range(C):
            for h in range(H):
                for w in range(Wd):
                    full[n, :, h * sH:h * sH + kH, w * sW:w * sW + kW] += x[n, c, h, w] * W[c]
    H_out, W_out = full.shape[2] - 2 * pH, full.shape[3] - 2 * pW
    out = full[:, :, pH:pH + H_out, pW:pW + W_out]
    return out + (0.0 if b is None else b.reshape(-1, 1, 1))


# ----------------------------------------------------------------- strategies


@st.composite
def conv_cases(draw, transpose=False):
    """(x shape, W shape, stride, padding, output_padding) of a small valid convolution."""
    n, c_in, c_out = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    p = tuple(draw(st.integers(0, kk - 1)) for kk in k)
    op = tuple(draw(st.integers(0, ss - 1)) for ss in s) if transpose else (0, 0)
    smallest = [max(1, kk - 2 * pp) for kk, pp in zip(k, p)]  # the kernel fits when padded
    hw = tuple(draw(st.integers(lo, lo + 5)) for lo in smallest)
    if transpose:
        assume(all((h - 1) * ss - 2 * pp + kk + oo >= 1
                   for h, ss, pp, kk, oo in zip(hw, s, p, k, op)))
    w_shape = (c_in, c_out) + k if transpose else (c_out, c_in) + k
    # stride and padding as ints where square, as a user would write them
    simplify = lambda v: v[0] if v[0] == v[1] else v  # noqa: E731
    return (n, c_in) + hw, w_shape, simplify(s), simplify(p), simplify(op)


def arrays(rng, *shapes):
    return [rng.standard_normal(shape) for shape in shapes]


# ------------------------------------------------------ forwards vs references


@given(case=conv_cases(), bias=st.booleans(), seed=seeds)
@example(case=((1, 1, 5, 4), (2, 1, 3, 2), 2, 1, 0), bias=True, seed=0)
def test_conv2d_forward_matches_nested_loops(dev, case, bias, seed):
    x_shape, w_shape, s, p, _ = case
    x, W, b = arrays(np.random.default_rng(seed), x_shape, w_shape, w_shape[:1])
    b = b if bias else None
    expected = conv2d_reference(x, W, b, s, p)
    for forward in (F.conv2d_forward, kernels.conv2d_forward):
        out, _ = forward(dev(x), dev(W), None if b is None else dev(b), s, p)
        np.testing.assert_allclose(to_numpy(out), expected, rtol=1e-12, atol=1e-12,
                                   err_msg=forward.__module__)


@given(case=conv_cases(transpose=True), bias=st.booleans(), seed=seeds)
@example(case=((1, 2, 3, 2), (2, 1, 4, 3), 2, 1, 1), bias=True, seed=0)
def test_conv_transpose2d_forward_matches_nested_scatter(dev, case, bias, seed):
    x_shape, w_shape, s, p, op = case
    x, W, b = arrays(np.random.default_rng(seed), x_shape, w_shape, w_shape[1:2])
    b = b if bias else None
    expected = conv_transpose2d_reference(x, W, b, s, p, op)
    for forward in (F.conv_transpose2d_forward, kernels.conv_transpose2d_forward):
        out, _ = forward(dev(x), dev(W), None if b is None else dev(b), s, p, op)
        np.testing.assert_allclose(to_numpy(out), expected, rtol=1e-12, atol=1e-12,
                                   err_msg=forward.__module__)


def test_im2col_lays_out_windows_like_torch_unfold(dev):
    """Column l of sample n is the window under output pixel l, flattened (c, i, j)."""
    x = np.arange(2 * 2 * 4 * 5, dtype=np.float64).reshape(2, 2, 4, 5)
    cols = to_numpy(F.im2col(dev(x), 3, 2, stride=(1, 2), padding=(1, 0)))
    assert cols.shape == (2, 2 * 3 * 2, 4 * 2)
    x_pad = np.pad(x, ((0, 0), (0, 0), (1, 1), (0, 0)))
    for n, h, w in [(0, 0, 0), (1, 2, 1), (1, 3, 0)]:
        window = x_pad[n, :, h:h + 3, 2 * w:2 * w + 2]
        np.testing.assert_array_equal(cols[n, :, h * 2 + w], window.reshape(-1))
    if torch is not None:
        unfold = torch.nn.functional.unfold(torch.tensor(x), (3, 2), padding=(1, 0), stride=(1, 2))
        np.testing.assert_array_equal(cols, unfold.numpy())


def test_col2im_adds_each_pixel_once_per_window(dev):
    """col2im(im2col(x)) is x times the number of windows each pixel lies in."""
    x = np.random.default_rng(0).standard_normal((1, 1, 5, 5))
    back = to_numpy(F.col2im(F.im2col(dev(x), 3, 3, 1, 0), x.shape, 3, 3, 1, 0))
    per_axis = np.array([1, 2, 3, 2, 1])  # a 3-window slides over 5 pixels
    np.testing.assert_allclose(back, x * np.outer(per_axis, per_axis), rtol=1e-15)


# ---------------------------------------------------------------- adjoints


@given(case=conv_cases(), seed=seeds)
def test_col2im_is_the_adjoint_of_im2col(dev, case, seed):
    x_shape, w_shape, s, p, _ = case
    rng = np.random.default_rng(seed)
    kH, kW = w_shape[2:]
    x = rng.standard_normal(x_shape)
    cols = to_numpy(F.im2col(dev(x), kH, kW, s, p))
    c = rng.standard_normal(cols.shape)
    back = to_numpy(F.col2im(dev(c), x_shape, kH, kW, s, p))
    np.testing.assert_allclose(np.sum(cols * c), np.sum(x * back), rtol=1e-12, atol=1e-12)


@given(case=conv_cases(transpose=True), seed=seeds)
@example(case=((2, 2, 3, 4), (2, 3, 3, 2), 2, 1, 1), seed=0)
def test_transposed_convolution_is_the_adjoint(dev, case, seed):
    """<conv(y), x> = <y, conv_T(x)> for the same W: conv2d reads W (C_in, C_out, kH, kW)
    as a map from C_out channels to C_in, conv_transpose2d goes back."""
    x_shape, w_shape, s, p, op = case
    rng = np.random.default_rng(seed)
    x, W = arrays(rng, x_shape, w_shape)
    for module in (F, kernels):
        conv_T = to_numpy(module.conv_transpose2d_forward(dev(x), dev(W), None, s, p, op)[0])
        y = rng.standard_normal(conv_T.shape)
        conv = to_numpy(module.conv2d_forward(dev(y), dev(W), None, s, p)[0])
        assert conv.shape == x.shape
        np.testing.assert_allclose(np.sum(conv * x), np.sum(y * conv_T), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------- gradient checks


@given(case=conv_cases(), seed=seeds)
@example(case=((1, 2, 5, 3), (3, 2, 3, 2), (2, 1), (1, 0), 0), seed=0)
def test_conv2d_gradcheck(dev, case, seed):
    x_shape, w_shape, s, p, _ = case
    x, W, b = (dev(a) for a in arrays(np.random.default_rng(seed), x_shape, w_shape, w_shape[:1]))
    assert_gradcheck(check_backward(F.conv2d_forward, [x, W, b], kwargs={"stride": s, "padding": p},
                                    seed=seed))


@given(case=conv_cases(transpose=True), seed=seeds)
@example(case=((1, 2, 3, 4), (2, 3, 4, 3), 2, 1, 1), seed=0)
def test_conv_transpose2d_gradcheck(dev, case, seed):
    x_shape, w_shape, s, p, op = case
    x, W, b = (dev(a) for a in arrays(np.random.default_rng(seed), x_shape, w_shape, w_shape[1:2]))
    kwargs = {"stride": s, "padding": p, "output_padding": op}
    assert_gradcheck(check_backward(F.conv_transpose2d_forward, [x, W, b], kwargs=kwargs,
                                    seed=seed))


@pytest.mark.parametrize("mode", ["train", "eval"])
@given(n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(1, 4), w=st.integers(1, 4),
       seed=seeds)
@example(n=1, c=2, h=1, w=3, seed=0)
def test_batchnorm2d_gradcheck(dev, mode, n, c, h, w, seed):
    # In training, with 2 values per channel xhat is +-1 whatever x is: dx is ~0 and
    # its relative error measures rounding noise only (as BatchNorm1d's tests, n >= 3).
    assume(mode == "eval" or n * h * w >= 3)
    rng = np.random.default_rng(seed)
    x = rng.normal(rng.uniform(-2, 2), rng.uniform(0.3, 3.0), size=(n, c, h, w))
    gamma, beta = rng.uniform(0.5, 2.0, c), rng.standard_normal(c)
    kwargs = {"train": mode == "train", "running_mean": dev(rng.standard_normal(c)),
              "running_var": dev(rng.uniform(0.5, 2.0, c))}
    assert_gradcheck(check_backward(F.batchnorm2d_forward, [dev(x), dev(gamma), dev(beta)],
                                    kwargs=kwargs, seed=seed))


def randomise(layer, rng):
    """Random parameters and buffers (gamma and running_var positive), on the layer's device."""
    from minigan.backend import backend_of, to_device
    for sub in layer.modules():
        for d in (sub.params, sub.buffers):
            for k, v in d.items():
                values = rng.uniform(0.5, 2.0, v.shape) if k in ("gamma", "running_var") \
                    else rng.standard_normal(v.shape)
                v[...] = to_device(values.astype(v.dtype), backend_of(v))
    return layer


@given(case=conv_cases(), bias=st.booleans(), seed=seeds)
@example(case=((1, 1, 4, 5), (2, 1, 3, 3), 2, 1, 0), bias=False, seed=0)
def test_conv2d_layer_gradcheck(dev, backend, case, bias, seed):
    x_shape, w_shape, s, p, _ = case
    rng = np.random.default_rng(seed)
    layer = randomise(Conv2d(w_shape[1], w_shape[0], w_shape[2:], stride=s, padding=p, bias=bias,
                             dtype="float64", backend=backend), rng)
    result = check_layer(layer, dev(rng.standard_normal(x_shape)), seed=seed)
    assert [c.name for c in result.comparisons] == ["dx", "dW"] + (["db"] if bias else [])
    assert_gradcheck(result)


@given(case=conv_cases(transpose=True), bias=st.booleans(), seed=seeds)
@example(case=((1, 2, 3, 3), (2, 1, 4, 4), 2, 1, 1), bias=True, seed=0)
def test_conv_transpose2d_layer_gradcheck(dev, backend, case, bias, seed):
    x_shape, w_shape, s, p, op = case
    rng = np.random.default_rng(seed)
    layer = randomise(ConvTranspose2d(w_shape[0], w_shape[1], w_shape[2:], stride=s, padding=p,
                                      output_padding=op, bias=bias, dtype="float64",
                                      backend=backend), rng)
    assert_gradcheck(check_layer(layer, dev(rng.standard_normal(x_shape)), seed=seed))


@pytest.mark.parametrize("mode", ["train", "eval"])
@given(n=st.integers(1, 3), c=st.integers(1, 3), hw=st.integers(2, 4), seed=seeds)
@example(n=1, c=1, hw=2, seed=0)
def test_batchnorm2d_layer_gradcheck(dev, backend, mode, n, c, hw, seed):
    rng = np.random.default_rng(seed)
    bn = randomise(BatchNorm2d(c, dtype="float64", backend=backend), rng).train(mode == "train")
    x = rng.normal(rng.uniform(-2, 2), rng.uniform(0.3, 3.0), size=(n, c, hw, hw + 1))
    assert_gradcheck(check_layer(bn, dev(x), seed=seed))


@given(n=st.integers(1, 3), seed=seeds)
@example(n=1, seed=0)
def test_dcgan_shaped_model_gradcheck_end_to_end(dev, backend, n, seed):
    """G's shape into D's: Dense -> Reshape -> ConvTranspose2d -> BatchNorm2d -> Conv2d ->
    Flatten -> Dense, each gradient by name."""
    rng = np.random.default_rng(seed)
    kw = {"dtype": "float64", "backend": backend}
    model = randomise(Sequential(
        Dense(3, 8, **kw), Reshape(2, 2, 2), ConvTranspose2d(2, 3, 4, stride=2, padding=1, **kw),
        Tanh(), BatchNorm2d(3, **kw), LeakyReLU(0.2), Conv2d(3, 2, 3, stride=2, padding=1, **kw),
        Flatten(), Dense(8, 1, **kw)), rng)
    result = check_layer(model, dev(rng.standard_normal((n + 1, 3))), seed=seed)
    assert [c.name for c in result.comparisons] == [
        "dx", "d0.W", "d0.b", "d2.W", "d2.b", "d4.gamma", "d4.beta", "d6.W", "d6.b", "d8.W", "d8.b"]
    assert_gradcheck(result)


# -------------------------------------------------------- fast path == plain


@pytest.mark.parametrize("per_chunk", [None, 1, 2], ids=["chunks-as-sized", "1-per-chunk",
                                                         "2-per-chunk"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("transpose", [False, True], ids=["conv2d", "conv_transpose2d"])
def test_fast_path_matches_the_functional_code(dev, dtype, transpose, per_chunk, monkeypatch):
    """The same sums in another order (channels last, a matrix product per chunk of
    samples, the col2im one kernel offset at a time): equal to rounding, not bit for
    bit. The tolerance is a few ulp of the largest entry of each result: 64 eps. The
    batch of 5 is also cut into chunks of 1 and of 2 (the last one shorter)."""
    if per_chunk is not None:
        sized = kernels._chunks
        monkeypatch.setattr(kernels, "_chunks", lambda x, n, sample_bytes, budget: sized(
            x, n, sample_bytes, per_chunk * sample_bytes))
    rng = np.random.default_rng(3)
    k, s, p = (4, 3), 2, (1, 2)
    if transpose:
        x_shape, w_shape, extra = (5, 6, 7, 5), (6, 4) + k, (1,)
        plain_f, plain_b = F.conv_transpose2d_forward, F.conv_transpose2d_backward
        fast_f, fast_b = kernels.conv_transpose2d_forward, kernels.conv_transpose2d_backward
    else:
        x_shape, w_shape, extra = (5, 6, 11, 8), (4, 6) + k, ()
        plain_f, plain_b = F.conv2d_forward, F.conv2d_backward
        fast_f, fast_b = kernels.conv2d_forward, kernels.conv2d_backward
    x, W = (dev(a, dtype) for a in arrays(rng, x_shape, w_shape))
    b = dev(rng.standard_normal(4), dtype)
    out, cache = plain_f(x, W, b, s, p, *extra)
    fast_out, fast_cache = fast_f(x, W, b, s, p, *extra)
    dout = dev(rng.standard_normal(out.shape), dtype)
    dx, dW, db = plain_b(dout, cache)
    grad_W, grad_b = dev(np.ones(W.shape), dtype), dev(np.ones(4), dtype)  # backward ADDS
    fast_dx = fast_b(dout, fast_cache, grad_W, grad_b)
    tol = 64 * np.finfo(dtype).eps
    for name, fast, plain in [("out", fast_out, out), ("dx", fast_dx, dx),
                              ("dW", to_numpy(grad_W) - 1, dW), ("db", to_numpy(grad_b) - 1, db)]:
        fast, plain = to_numpy(fast), to_numpy(plain)
        assert fast.dtype == dtype and fast.shape == plain.shape, name
        np.testing.assert_allclose(fast, plain, rtol=0, atol=tol * np.abs(plain).max() + tol,
                                   err_msg=name)
    # with only one of the two gradients asked for, the other is left alone
    grad_W[...] = 0
    assert fast_b(dout, fast_f(x, W, b, s, p, *extra)[1], grad_W, grad_b,
                  need_param_grads=False) is not None
    assert np.all(to_numpy(grad_W) == 0)
    assert fast_b(dout, fast_f(x, W, b, s, p, *extra)[1], grad_W, None, need_dx=False) is None
    assert np.any(to_numpy(grad_W) != 0)


@pytest.mark.parametrize("transpose", [False, True], ids=["conv2d", "conv_transpose2d"])
def test_threads_share_the_chunks_and_change_no_bit(transpose, monkeypatch):
    """On the CPU the chunks of a layer run on up to LANES threads (--threads): the
    forward, dx and the weight gradient (a sum of per-chunk products) are the same
    to the bit on 1, 2, 3 and 4 threads, so a run resumed with another thread
    count goes on exactly."""
    import threading

    sized = kernels._chunks
    monkeypatch.setattr(kernels, "_chunks", lambda x, n, sample_bytes, budget: sized(
        x, n, sample_bytes, sample_bytes))  # 7 chunks of one sample: lanes of 2, 2, 2 and 1
    seen, running, lock = set(), [0, 0], threading.Lock()   # [now, most at once]
    real_window_rows = kernels._window_rows

    def window_rows(*args):
        with lock:
            seen.add(threading.current_thread().name)
            running[0] += 1
            running[1] = max(running)
        try:
            return real_window_rows(*args)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(kernels, "_window_rows", window_rows)
    rng = np.random.default_rng(4)
    if transpose:
        x, W = rng.standard_normal((7, 6, 5, 4)), rng.standard_normal((6, 3, 4, 4))
        forward, backward = kernels.conv_transpose2d_forward, kernels.conv_transpose2d_backward
    else:
        x, W = rng.standard_normal((7, 3, 9, 8)), rng.standard_normal((6, 3, 4, 4))
        forward, backward = kernels.conv2d_forward, kernels.conv2d_backward
    x, W = x.astype(np.float32), W.astype(np.float32)
    results = {}
    for threads in (1, 2, 3, 4):
        monkeypatch.setattr(kernels._threads, "workers", lambda most, t=threads: min(most, t))
        seen.clear()
        running[1] = 0
        out, cache = forward(x, W, None, 2, 1)
        grad_W = np.zeros_like(W)
        dx = backward(np.linspace(-1, 1, out.size, dtype=np.float32).reshape(out.shape), cache,
                      grad_W, None)
        results[threads] = (out, dx, grad_W)
        # one thread: the caller's; more: the pool's, never more than that many at once
        assert (seen == {threading.current_thread().name}) == (threads == 1), (threads, seen)
        assert running[1] <= threads, (threads, running)
    for threads in (2, 3, 4):
        for name, a, b in zip(("out", "dx", "dW"), results[1], results[threads]):
            assert a.dtype == np.float32 and np.array_equal(a, b), (name, threads)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_threads_share_the_large_elementwise_passes_bit_for_bit(threads, monkeypatch):
    """The activations' passes over a large array are split into blocks of rows, one per
    thread: elementwise, so the same numbers as functional's, to the bit."""
    import threading

    monkeypatch.setattr(kernels._threads, "workers", lambda most: min(most, threads))
    seen = set()
    real = F.leaky_relu_backward

    def spy(*args):
        seen.add(threading.current_thread().name)
        return real(*args)

    monkeypatch.setattr(F, "leaky_relu_backward", spy)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((67, 8, 13, 11)).astype(np.float32)   # 300 KB: above ROWS_BYTES
    assert x.nbytes >= kernels.ROWS_BYTES
    dout = rng.standard_normal(x.shape).astype(np.float32)
    t = np.tanh(x)
    pairs = [(kernels.leaky_relu_backward(dout, (x, 0.2)), real(dout, (x, 0.2))),
             (kernels.relu_backward(dout, np.maximum(x, 0)), F.relu_backward(dout, np.maximum(x, 0))),
             (kernels.tanh_backward(dout, t), F.tanh_backward(dout, t))]
    for fast, plain in pairs:
        assert fast.dtype == np.float32 and np.array_equal(fast, plain)
    main = threading.current_thread().name
    assert (seen == {main}) if threads == 1 else (main not in seen), seen


@pytest.mark.parametrize("threads", [1, 2])
def test_two_threads_share_a_large_dense_backward_bit_for_bit(threads, monkeypatch):
    """A DCGAN's projection (Dense 128 -> 128x7x7) has two products of the same size in
    its backward, dx and dW: with two threads each runs on its own, the same products as
    on one thread, so the same numbers as functional's, to the bit (and added to the grads)."""
    import threading

    monkeypatch.setattr(kernels._threads, "workers", lambda most: min(most, threads))
    seen = set()
    real = F.dense_backward

    def spy(*args, **kwargs):
        seen.add(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(F, "dense_backward", spy)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((96, 64)).astype(np.float32)
    W = rng.standard_normal((64, 700)).astype(np.float32)
    dout = rng.standard_normal((96, 700)).astype(np.float32)
    assert 96 * W.size >= kernels.DENSE_SPLIT_MACS
    grad_W, grad_b = np.ones_like(W), np.ones(700, np.float32)
    dx = kernels.dense_backward(dout, (x, W), grad_W, grad_b)
    dx_ref, dW_ref, db_ref = real(dout, (x, W))
    assert dx.dtype == np.float32 and np.array_equal(dx, dx_ref)
    assert np.array_equal(grad_W, 1 + dW_ref) and np.array_equal(grad_b, 1 + db_ref)
    main = threading.current_thread().name
    assert (seen == {main}) if threads == 1 else (main not in seen), seen
    # only what was asked for: dx alone leaves the grads alone; the grads alone give no dx
    seen.clear()
    dx = kernels.dense_backward(dout, (x, W), grad_W, grad_b, need_param_grads=False)
    assert np.array_equal(dx, dx_ref) and np.array_equal(grad_W, 1 + dW_ref)
    assert kernels.dense_backward(dout, (x, W), grad_W, grad_b, need_dx=False) is None
    assert np.array_equal(grad_W, (1 + dW_ref) + dW_ref)
    assert np.array_equal(grad_b, (1 + db_ref) + db_ref)
    assert seen == {main}   # one product each: on the caller's thread
    # a product too small to be worth a thread's start stays on the caller's thread
    seen.clear()
    kernels.dense_backward(dout[:4, :10], (x[:4], W[:, :10]), np.zeros((64, 10), np.float32),
                           np.zeros(10, np.float32))
    assert seen == {main}


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_threads_share_batch_norm_by_channels_bit_for_bit(train, monkeypatch):
    """Image batch norm's channels are independent: they go in LANES fixed groups, one
    per thread, and the numbers do not depend on how many threads there are."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((33, 11, 14, 15)).astype(np.float32)   # 11 channels: uneven groups
    assert x.nbytes >= kernels.ROWS_BYTES
    gamma, beta = rng.standard_normal(11).astype(np.float32), rng.standard_normal(11).astype(np.float32)
    stats = {} if train else {"running_mean": rng.standard_normal(11).astype(np.float32),
                              "running_var": rng.random(11).astype(np.float32) + 0.5}
    dout = rng.standard_normal(x.shape).astype(np.float32)
    results = []
    for threads in (1, 2, 3):
        monkeypatch.setattr(kernels._threads, "workers", lambda most, t=threads: min(most, t))
        out, cache = kernels.batchnorm2d_forward(x, gamma, beta, train=train, **stats)
        results.append((out, cache["inv_std"], *kernels.batchnorm2d_backward(dout, cache)))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert a.dtype == np.float32 and np.array_equal(a, b)


@pytest.mark.parametrize("transpose", [False, True], ids=["conv2d", "conv_transpose2d"])
def test_fast_path_takes_a_batch_of_zero(transpose):
    """No chunk at all: empty outputs, and a weight gradient of zeros added."""
    x = np.zeros((0, 3, 8, 8), np.float32)
    W = np.ones((3, 4, 4, 4) if transpose else (4, 3, 4, 4), np.float32)
    forward, backward = ((kernels.conv_transpose2d_forward, kernels.conv_transpose2d_backward)
                         if transpose else (kernels.conv2d_forward, kernels.conv2d_backward))
    out, cache = forward(x, W, None, 2, 1)
    grad_W = np.ones_like(W)
    dx = backward(np.zeros(out.shape, np.float32), cache, grad_W, None)
    assert out.shape[0] == 0 and dx.shape == x.shape and np.all(grad_W == 1)


def test_a_convolutional_run_shares_at_most_lanes_threads():
    """Up to LANES threads go to the kernels (the BLAS on one); more go to the BLAS, as
    for any other model: the lanes could not use them."""
    from minigan import _threads

    before = _threads.blas_thread_count()
    if before is None:
        pytest.skip("NumPy's BLAS is not one OpenBLAS that this process can set")
    try:
        _threads.share_threads(2, convolutional=True)
        assert _threads.workers(8) == 2 and _threads.blas_thread_count() == 1
        _threads.share_threads(kernels.LANES + 1, convolutional=True)
        assert _threads.workers(8) == 1 and _threads.blas_thread_count() == kernels.LANES + 1
        _threads.share_threads(2, convolutional=False)
        assert _threads.workers(8) == 1 and _threads.blas_thread_count() == 2
    finally:
        _threads.share_threads(before, convolutional=False)


def test_chunks_cut_the_batch_by_the_byte_budget():
    x = np.zeros(1, np.float32)
    assert kernels._chunks(x, 5, 100, 250) == ([(0, 2), (2, 4), (4, 5)], 2)
    # at least LANES chunks where the batch has that many samples: every lane has work
    assert kernels.LANES == 4
    assert kernels._chunks(x, 64, 100, 10**9) == ([(n, n + 16) for n in range(0, 64, 16)], 16)
    assert kernels._chunks(x, 5, 100, 10_000) == ([(0, 2), (2, 4), (4, 5)], 2)
    assert kernels._chunks(x, 3, 100, 10_000) == ([(0, 1), (1, 2), (2, 3)], 1)
    assert kernels._chunks(x, 5, 100, 50) == ([(n, n + 1) for n in range(5)], 1)  # at least 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_fast_batchnorm2d_matches_the_functional_code(dev, dtype, mode):
    """The same statistics and gradients, summed over (N, H, W) in place rather than over
    rows of a transposed copy: equal to rounding (64 eps of the largest entry)."""
    rng = np.random.default_rng(11)
    x = dev(rng.normal(2.0, 3.0, (6, 4, 5, 7)), dtype)
    gamma, beta = dev(rng.uniform(0.5, 2.0, 4), dtype), dev(rng.standard_normal(4), dtype)
    stats = {"running_mean": dev(rng.standard_normal(4), dtype),
             "running_var": dev(rng.uniform(0.5, 2.0, 4), dtype)}
    dout = dev(rng.standard_normal(x.shape), dtype)
    results = []
    for module in (F, kernels):
        out, cache = module.batchnorm2d_forward(x, gamma, beta, train=mode == "train", **stats)
        grads = module.batchnorm2d_backward(dout, cache)
        results.append([out, cache["mean"], cache["var"], *grads])
    tol = 64 * np.finfo(dtype).eps
    for name, plain, fast in zip(["out", "mean", "var", "dx", "dgamma", "dbeta"], *results):
        plain, fast = to_numpy(plain), to_numpy(fast)
        assert fast.dtype == dtype and fast.shape == plain.shape, name
        np.testing.assert_allclose(fast, plain, rtol=0, atol=tol * np.abs(plain).max() + tol,
                                   err_msg=name)


def test_functional_ops_do_not_mutate_inputs_and_keep_float32(dev):
    rng = np.random.default_rng(4)
    x, W, Wt = (dev(a, np.float32) for a in arrays(rng, (2, 3, 6, 5), (4, 3, 3, 3), (3, 4, 3, 3)))
    b, gamma, beta = dev(rng.standard_normal(4), np.float32), dev(np.ones(3), np.float32), \
        dev(np.zeros(3), np.float32)
    inputs = [x, W, Wt, b, gamma, beta]
    saved = [to_numpy(a).copy() for a in inputs]
    results = []
    for module, name, args in [(F, "conv2d", (x, W, b, 2, 1)), (kernels, "conv2d", (x, W, b, 2, 1)),
                               (F, "conv_transpose2d", (x, Wt, b, 2, 1, 1)),
                               (kernels, "conv_transpose2d", (x, Wt, b, 2, 1, 1))]:
        out, cache = getattr(module, name + "_forward")(*args)
        results.append(out)
        dout = dev(rng.standard_normal(out.shape), np.float32)
        dout_saved = to_numpy(dout).copy()
        backward = getattr(module, name + "_backward")
        if module is F:
            results += list(backward(dout, cache))
        else:  # the fast path adds the parameter gradients into given arrays
            grad_W, grad_b = args[1] * 0, b * 0
            results += [backward(dout, cache, grad_W, grad_b), grad_W, grad_b]
        np.testing.assert_array_equal(to_numpy(dout), dout_saved)
    for module in (F, kernels):
        out, cache = module.batchnorm2d_forward(x, gamma, beta)
        results += [out, *module.batchnorm2d_backward(out * 1.5, cache)]
    for a, before in zip(inputs, saved):
        np.testing.assert_array_equal(to_numpy(a), before)
    assert all(r.dtype == np.float32 for r in results), [r.dtype for r in results]


# ------------------------------------------------------------ PyTorch parity

TOLERANCES = {np.float32: (1e-5, 1e-6), np.float64: (1e-10, 1e-12)}


def torch_close(actual, expected, dtype, what):
    """float32: rtol 1e-5 with atol 1e-6 times the largest entry (the sums here have a
    few dozen terms, added in another order than oneDNN's; see test_torch_parity.py)."""
    expected = expected.detach().numpy()
    actual = to_numpy(actual)
    assert actual.dtype == dtype, f"{what}: {actual.dtype}"
    rtol, atol = TOLERANCES[dtype]
    np.testing.assert_allclose(actual, expected, rtol=rtol,
                               atol=atol * max(1.0, np.abs(expected).max()), err_msg=what)


def tt(a, dtype, grad=False):
    return torch.tensor(to_numpy(a), dtype={np.float32: torch.float32,
                                            np.float64: torch.float64}[dtype], requires_grad=grad)


@needs_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("kind", ["Conv2d", "ConvTranspose2d"])
def test_conv_layers_match_pytorch(dev, backend, dtype, kind):
    rng = np.random.default_rng(5)
    dt = np.dtype(dtype).name
    if kind == "Conv2d":
        ours = Conv2d(3, 5, (4, 3), stride=(2, 1), padding=(1, 2), init="pytorch", dtype=dt,
                      rng=1, backend=backend)
        theirs = torch.nn.Conv2d(3, 5, (4, 3), stride=(2, 1), padding=(1, 2))
        x = rng.standard_normal((4, 3, 9, 7))
    else:
        ours = ConvTranspose2d(3, 5, 4, stride=2, padding=1, output_padding=1, init="pytorch",
                               dtype=dt, rng=1, backend=backend)
        theirs = torch.nn.ConvTranspose2d(3, 5, 4, stride=2, padding=1, output_padding=1)
        x = rng.standard_normal((4, 3, 5, 6))
    theirs = theirs.to(tt(np.zeros(1), dtype).dtype)
    with torch.no_grad():
        theirs.weight.copy_(tt(ours.params["W"], dtype))
        theirs.bias.copy_(tt(ours.params["b"], dtype))
    x_t = tt(x, dtype, grad=True)
    out_t = theirs(x_t)
    dout = rng.standard_normal(tuple(out_t.shape))
    out_t.backward(tt(dout, dtype))
    out = ours(dev(x, dtype))
    dx = ours.backward(dev(dout, dtype))
    torch_close(out, out_t, dtype, "out")
    torch_close(dx, x_t.grad, dtype, "dx")
    torch_close(ours.grads["W"], theirs.weight.grad, dtype, "dW")
    torch_close(ours.grads["b"], theirs.bias.grad, dtype, "db")


@needs_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_batchnorm2d_matches_pytorch(dev, backend, dtype):
    rng = np.random.default_rng(6)
    dt = np.dtype(dtype).name
    ours = randomise(BatchNorm2d(3, dtype=dt, backend=backend), rng)
    theirs = torch.nn.BatchNorm2d(3).to(tt(np.zeros(1), dtype).dtype)
    with torch.no_grad():
        for name, t in [("gamma", theirs.weight), ("beta", theirs.bias)]:
            t.copy_(tt(ours.params[name], dtype))
        theirs.running_mean.copy_(tt(ours.running_mean, dtype))
        theirs.running_var.copy_(tt(ours.running_var, dtype))
    for step in range(2):  # two training steps (running statistics), then evaluation
        x = rng.normal(1.5, 2.0, (4, 3, 5, 3))
        x_t = tt(x, dtype, grad=True)
        out_t = theirs(x_t)
        dout = rng.standard_normal(x.shape)
        out_t.backward(tt(dout, dtype))
        ours.zero_grad()
        out, dx = ours(dev(x, dtype)), None
        dx = ours.backward(dev(dout, dtype))
        torch_close(out, out_t, dtype, f"out, step {step}")
        torch_close(dx, x_t.grad, dtype, f"dx, step {step}")
        torch_close(ours.grads["gamma"], theirs.weight.grad, dtype, "dgamma")
        torch_close(ours.grads["beta"], theirs.bias.grad, dtype, "dbeta")
        theirs.weight.grad = theirs.bias.grad = None
        torch_close(ours.running_mean, theirs.running_mean, dtype, "running_mean")
        torch_close(ours.running_var, theirs.running_var, dtype, "running_var (unbiased)")
    ours.eval(), theirs.eval()
    x = rng.normal(1.5, 2.0, (2, 3, 4, 4))
    torch_close(ours(dev(x, dtype)), theirs(tt(x, dtype)), dtype, "evaluation")


@needs_torch
def test_pytorch_init_matches_pytorch_bounds(backend):
    """init="pytorch" draws W and b from U(+-1/sqrt(fan_in)) with PyTorch's fan_in
    (for ConvTranspose2d, from the stored layout: C_out kH kW)."""
    for ours, theirs in [(Conv2d(6, 50, 3, init="pytorch", rng=0, backend=backend),
                          torch.nn.Conv2d(6, 50, 3)),
                         (ConvTranspose2d(50, 6, 3, init="pytorch", rng=0, backend=backend),
                          torch.nn.ConvTranspose2d(50, 6, 3))]:
        bound = 1 / np.sqrt(theirs.weight[0].numel())
        for name, t in [("W", theirs.weight), ("b", theirs.bias)]:
            mine = to_numpy(ours.params[name])
            assert mine.shape == tuple(t.shape)
            assert np.abs(mine).max() <= bound and np.abs(t.detach().numpy()).max() <= bound
            assert np.abs(mine).max() > 0.7 * bound, f"{ours.short_repr()} {name}: not drawn"


# --------------------------------------------------------- layer behaviour


def test_default_init_is_dense_default_with_conv_fans(backend):
    """glorot_uniform with fan_in = C_in kH kW and fan_out = C_out kH kW, zero bias."""
    layer = Conv2d(4, 6, (3, 2), rng=0, backend=backend)
    W, b = to_numpy(layer.params["W"]), to_numpy(layer.params["b"])
    bound = np.sqrt(6 / (4 * 6 + 6 * 6))
    assert W.shape == (6, 4, 3, 2) and np.abs(W).max() <= bound
    assert np.abs(W).max() > 0.8 * bound and np.all(b == 0)
    same = Conv2d(4, 6, (3, 2), rng=0, backend=backend)
    np.testing.assert_array_equal(to_numpy(same.params["W"]), W)  # a seed repeats the weights


def make_layers(backend, dtype="float32"):
    kw = {"dtype": dtype, "backend": backend}
    return [(Conv2d(2, 3, 3, stride=2, padding=1, rng=0, **kw), (4, 2, 7, 6)),
            (ConvTranspose2d(2, 3, 4, stride=2, padding=1, output_padding=1, rng=0, **kw),
             (4, 2, 3, 5)),
            (BatchNorm2d(2, **kw), (4, 2, 3, 3))]


def test_param_grads_false_and_input_grad_false(dev, backend):
    rng = np.random.default_rng(7)
    for layer, shape in make_layers(backend):
        randomise(layer, rng)
        x = dev(rng.standard_normal(shape), "float32")
        dout = dev(rng.standard_normal(layer(x).shape), "float32")
        dx_full = layer.backward(dout)
        full = {k: to_numpy(g).copy() for k, g in layer.grads.items()}
        layer.zero_grad()
        layer(x)
        dx = layer.backward(dout, param_grads=False)
        np.testing.assert_allclose(to_numpy(dx), to_numpy(dx_full), rtol=1e-6, atol=1e-6)
        assert all(np.all(to_numpy(g) == 0) for g in layer.grads.values()), layer
        layer(x)
        assert layer.backward(dout, input_grad=False) is None
        for k, g in layer.grads.items():
            np.testing.assert_allclose(to_numpy(g), full[k], rtol=1e-6, atol=1e-6)
        layer(x)
        layer.backward(dout)  # gradients ADD
        for k, g in layer.grads.items():
            np.testing.assert_allclose(to_numpy(g), 2 * full[k], rtol=1e-5, atol=1e-5)


def test_backward_needs_its_own_forward(dev, backend):
    for layer, shape in make_layers(backend) + [(Flatten(), (2, 3, 4)), (Reshape(4, 3), (2, 12))]:
        x = dev(np.ones(shape), "float32")
        with pytest.raises(RuntimeError, match="without a matching forward"):
            layer.backward(dev(np.ones((2, 1)), "float32"))
        out = layer(x)
        layer.backward(out * 0 + 1)
        with pytest.raises(RuntimeError, match="without a matching forward"):
            layer.backward(out * 0 + 1)
        layer(x)
        with pytest.raises(ValueError, match="expected"):
            layer.backward(out[:1])


def test_state_dict_round_trip_and_float32(dev, backend):
    rng = np.random.default_rng(8)
    model = Sequential(*[layer for layer, _ in make_layers(backend)[:2]])
    model[0].train()
    state = {k: to_numpy(v) for k, v in model.state_dict().items()}
    assert sorted(state) == ["0.W", "0.b", "1.W", "1.b"]
    assert state["0.W"].shape == (3, 2, 3, 3) and state["1.W"].shape == (2, 3, 4, 4)
    other = Sequential(Conv2d(2, 3, 3, stride=2, padding=1, rng=5, backend=backend),
                       ConvTranspose2d(2, 3, 4, stride=2, padding=1, output_padding=1, rng=5,
                                       backend=backend))
    other.load_state_dict(state)
    x = dev(rng.standard_normal((2, 2, 7, 6)), "float32")
    np.testing.assert_array_equal(to_numpy(other[0](x)), to_numpy(model[0](x)))
    bn = BatchNorm2d(2, backend=backend)
    bn(dev(rng.normal(3.0, 2.0, (4, 2, 3, 3)), "float32"))
    loaded = BatchNorm2d(2, backend=backend).load_state_dict(bn.state_dict())
    for key in ("gamma", "beta", "running_mean", "running_var"):
        np.testing.assert_array_equal(to_numpy(loaded.state_dict()[key]),
                                      to_numpy(bn.state_dict()[key]))
    for layer, shape in make_layers(backend):
        out = layer(dev(rng.standard_normal(shape), "float32"))
        dx = layer.backward(out)
        assert out.dtype == dx.dtype == np.float32
        assert all(a.dtype == np.float32 for a in list(layer.params.values())
                   + list(layer.grads.values()) + list(layer.buffers.values()))


def test_astype_and_to(dev, backend):
    for layer, shape in make_layers("numpy"):
        layer.to(backend).astype("float64")
        out = layer(dev(np.ones(shape)))
        assert out.dtype == np.float64 and layer.backend == backend


def test_batchnorm2d_statistics_are_per_channel_over_batch_and_pixels(dev, backend):
    rng = np.random.default_rng(9)
    x = rng.normal([[[[-3.0]], [[5.0]]]], [[[[0.5]], [[4.0]]]], size=(6, 2, 4, 3))
    bn = BatchNorm2d(2, momentum=0.5, dtype="float64", backend=backend)
    out = to_numpy(bn(dev(x)))
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(out.var(axis=(0, 2, 3)), 1 / (1 + 1e-5 / x.var(axis=(0, 2, 3))),
                               rtol=1e-9)
    np.testing.assert_allclose(to_numpy(bn.running_mean), 0.5 * x.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(to_numpy(bn.running_var),
                               0.5 + 0.5 * x.var(axis=(0, 2, 3), ddof=1), rtol=1e-12)
    bn.eval()
    y = to_numpy(bn(dev(x)))
    expected = (x - to_numpy(bn.running_mean).reshape(1, 2, 1, 1)) \
        / np.sqrt(to_numpy(bn.running_var).reshape(1, 2, 1, 1) + 1e-5)
    np.testing.assert_allclose(y, expected, rtol=1e-12)


def test_flatten_and_reshape(dev, backend):
    x = dev(np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5))
    flat = Flatten()(x)
    np.testing.assert_array_equal(to_numpy(flat), to_numpy(x).reshape(2, 60))
    back = Reshape(3, 4, 5)
    assert back.short_repr() == "Reshape(3, 4, 5)" and Reshape((3, 20)).shape == (3, 20)
    np.testing.assert_array_equal(to_numpy(back(flat)), to_numpy(x))
    np.testing.assert_array_equal(to_numpy(back.backward(x + 1)), to_numpy(flat) + 1)
    with pytest.raises(ValueError, match=r"Reshape\(3, 4, 5\) expected samples of 60 values"):
        back(dev(np.ones((2, 59), dtype=np.float32)))
    with pytest.raises(ValueError, match="positive ints"):
        Reshape(3, 0)
    with pytest.raises(ValueError, match="at least 2 axes"):
        Flatten()(dev(np.ones(4, dtype=np.float32)))


def test_flatten_and_reshape_are_reshapes_to_the_gradient_penalty(dev, backend):
    from minigan.penalty import check_penalty
    rng = np.random.default_rng(10)
    D = Sequential(Reshape(2, 3), Flatten(), Dense(6, 3, dtype="float64", rng=1, backend=backend),
                   Tanh(), Dense(3, 1, dtype="float64", rng=2, backend=backend))
    assert_gradcheck(check_penalty(D, dev(rng.standard_normal((4, 6)))))


def test_repr_shows_the_geometry(backend):
    assert repr(Conv2d(1, 64, 4, 2, 1, backend=backend)) == "Conv2d(1 -> 64, k=4, s=2, p=1)"
    assert repr(Conv2d(3, 8, (3, 5), padding=(1, 2), bias=False, backend=backend)) == \
        "Conv2d(3 -> 8, k=(3, 5), s=1, p=(1, 2), no bias)"
    assert repr(ConvTranspose2d(128, 64, 4, 2, 1, backend=backend)) == \
        "ConvTranspose2d(128 -> 64, k=4, s=2, p=1)"
    assert repr(ConvTranspose2d(8, 4, 3, 2, 1, output_padding=1, backend=backend)) == \
        "ConvTranspose2d(8 -> 4, k=3, s=2, p=1, op=1)"
    assert repr(BatchNorm2d(64, backend=backend)) == "BatchNorm2d(64)"
    text = repr(Sequential(Conv2d(1, 4, 3, backend=backend), Flatten()))
    assert "W (4, 1, 3, 3), b (4,)" in text and "Flatten()" in text


def test_bad_inputs_say_what_was_expected(dev, backend):
    conv = Conv2d(3, 4, 5, backend=backend)
    expected = r"expected input of shape \(N, 3, H, W\)"
    with pytest.raises(ValueError, match=expected + r".*got \(2, 3, 8\)"):
        conv(dev(np.ones((2, 3, 8)), "float32"))
    with pytest.raises(ValueError, match=expected + r".*\(2, 1, 8, 8\)"):
        conv(dev(np.ones((2, 1, 8, 8)), "float32"))
    with pytest.raises(ValueError, match=r"Conv2d\(3 -> 4.*5x5 kernel does not fit in a 3x8"):
        conv(dev(np.ones((2, 3, 3, 8)), "float32"))
    with pytest.raises(TypeError, match="float32 parameters but got a float64 input"):
        conv(dev(np.ones((2, 3, 8, 8))))
    with pytest.raises(ValueError, match=r"BatchNorm2d\(3\) " + expected):
        BatchNorm2d(3, backend=backend)(dev(np.ones((4, 3)), "float32"))
    with pytest.raises(ValueError, match="at least 2 values per channel"):
        BatchNorm2d(3, backend=backend)(dev(np.ones((1, 3, 1, 1)), "float32"))
    up = ConvTranspose2d(2, 2, 3, stride=1, padding=2, backend=backend)
    with pytest.raises(ValueError, match="use less padding"):
        up(dev(np.ones((1, 2, 1, 1)), "float32"))


def test_bad_arguments_say_what_was_expected(dev):
    with pytest.raises(ValueError, match="output_padding must be .* smaller than the stride"):
        ConvTranspose2d(2, 2, 4, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="output_padding must be .* smaller than the stride"):
        F.conv_transpose2d_output_shape((3, 3), 3, stride=1, output_padding=1)
    with pytest.raises(ValueError, match="kernel_size >= 1, stride >= 1 and padding >= 0"):
        Conv2d(2, 2, 3, stride=0)
    with pytest.raises(TypeError, match=r"kernel_size must be an int or a pair.*\(3, 3, 3\)"):
        Conv2d(2, 2, (3, 3, 3))
    with pytest.raises(ValueError, match="in_channels must be a positive int"):
        Conv2d(0, 2, 3)
    x, W = dev(np.ones((2, 3, 5, 5))), dev(np.ones((4, 2, 3, 3)))
    with pytest.raises(ValueError, match="x has 3 channels .* the weights expect 2"):
        F.conv2d_forward(x, W, None)
    with pytest.raises(ValueError, match=r"b must have shape \(4,\)"):
        F.conv2d_forward(x[:, :2], W, dev(np.ones(3)))
    with pytest.raises(ValueError, match=r"W must have shape \(C_in, C_out, kH, kW\)"):
        F.conv_transpose2d_forward(x, W[0], None)
    with pytest.raises(ValueError, match=r"batch of images \(N, C, H, W\)"):
        F.im2col(dev(np.ones((5, 5))), 3, 3)
    with pytest.raises(TypeError, match="x is float32 but W or b is not"):
        kernels.conv2d_forward(dev(np.ones((2, 2, 5, 5)), "float32"), W, None)
    with pytest.raises(ValueError, match=r"cols must have shape \(2, 18, 9\)"):
        F.col2im(dev(np.ones((2, 18, 8))), (2, 2, 5, 5), 3, 3)


@pytest.mark.parametrize("transpose", [False, True], ids=["conv2d", "conv_transpose2d"])
def test_fast_backward_refuses_an_upstream_gradient_of_another_size(dev, transpose):
    """The fast path builds its windows with as_strided, which checks no bounds: a dout
    one pixel too large would read past the end of the image instead of failing."""
    x = dev(np.ones((2, 3, 6, 6)))
    if transpose:
        W = dev(np.ones((3, 2, 4, 4)))
        out, cache = kernels.conv_transpose2d_forward(x, W, None, 2, 1)
        backward, grad_W = kernels.conv_transpose2d_backward, dev(np.zeros((3, 2, 4, 4)))
    else:
        W = dev(np.ones((2, 3, 3, 3)))
        out, cache = kernels.conv2d_forward(x, W, None, 1, 0)
        backward, grad_W = kernels.conv2d_backward, dev(np.zeros((2, 3, 3, 3)))
    N, C, H, W_out = out.shape
    # two pixels: one more is a valid output_padding of the stride-2 transposed convolution
    too_large = dev(np.ones((N, C, H + 2, W_out + 2)))
    with pytest.raises(ValueError, match="must have the shape of the forward's output"):
        backward(too_large, cache, grad_W, None)
