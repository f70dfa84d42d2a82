"""The fast paths, chosen in ONE place: for each op, one function picks how to compute it.

``minigan.functional`` and the optimisers' ``_update`` are the reference: plain
code, written as the math reads. Each function here computes the same numbers,
faster where the arrays allow it:

* CuPy arrays: a one-pass kernel of ``minigan._fused`` (a GPU spends its time
  launching kernels, so one kernel instead of three to twelve is the speed-up);
* NumPy arrays: the functional code itself, except for Adam, whose update runs
  over cache-sized blocks with no temporaries (``adam_step`` below), and the
  convolutions, which run as a few large matrix products per layer (one per chunk
  of samples, the chunks on several threads where the run asked for them; one per
  layer on a GPU) with the channels last inside (see "convolutions" below; the same
  array code on CuPy, with cuBLAS's products and no cuDNN), and the image batch
  norm, which sums over (N, H, W) in place instead of moving the channels last and
  back (by groups of channels, on those threads too).

The layers, the optimisers and the GAN loop call these functions and never ask
which backend they are on. Every forward returns ``(out, cache)`` and every
backward takes ``(dout, cache)``, as in ``functional``. tests/test_backend_parity.py
and tests/test_optim.py prove each fast path equal to its reference (bit for bit
where no exp or log is involved).
"""

from __future__ import annotations

import importlib
import threading

import numpy as np

from minigan import _fused, _threads
from minigan import functional as F
from minigan.backend import _is_cupy, array_module

__all__ = [
    "dense_backward", "relu_forward", "relu_backward", "leaky_relu_forward",
    "leaky_relu_backward", "sigmoid", "sigmoid_forward", "sigmoid_backward",
    "tanh_forward", "tanh_backward", "bce_with_logits", "ema_update", "adam_scratch", "adam_step",
    "conv2d_forward", "conv2d_backward", "conv_transpose2d_forward", "conv_transpose2d_backward",
    "batchnorm2d_forward", "batchnorm2d_backward",
]


def _on_gpu(*arrays):
    """True when every array is a CuPy array: the fused kernels are for the GPU only."""
    return all(_is_cupy(a) for a in arrays)


# ----------------------------------------------------------------------- threads
#
# ``_threads.share_threads`` gives a convolutional run's threads to these kernels
# (``_threads.workers`` says how many): the chunks of a convolution, the channel
# groups of the image batch norm and the blocks of rows of a large activation
# backward then run on them. Elsewhere (the MLP GAN, a GPU) all runs on the caller's thread.


#: Chunks are dealt to this many lanes, round robin (chunk c to lane c % LANES), and
#: up to this many threads run the lanes at once. A lane's partial sums are added in
#: chunk order and the lanes in lane order, so the weight gradients come out the same
#: on 1, 2 or 4 threads: a run resumed with another --threads goes on bit for bit.
LANES = _threads.MAX_CHUNK_THREADS
_POOL = []
_POOL_LOCK = threading.Lock()


def _pool():
    """The kernels' threads: one pool of LANES, started on first use (a thread only
    starts when there is work for it)."""
    with _POOL_LOCK:
        if not _POOL:
            from concurrent.futures import ThreadPoolExecutor

            _POOL.append(ThreadPoolExecutor(LANES, thread_name_prefix="minigan-chunks"))
        return _POOL[0]


#: Below this size an elementwise pass is not worth a thread's start.
ROWS_BYTES = 1 << 18


def _by_rows(f, *arrays):
    """f(*arrays) for an elementwise f, on the CPU: with the convolutions' threads
    (``_threads.share_threads``), each thread computes f on a block of rows of a
    large array; elementwise, so the numbers are the same whatever the split."""
    first = arrays[0]
    n = first.shape[0] if first.ndim else 0
    workers = _threads.workers(LANES) if first.nbytes >= ROWS_BYTES else 1
    # one dtype throughout, so the result's is known (mixed: f's own promotion, unsplit)
    if workers == 1 or n < workers or any(a.dtype != first.dtype for a in arrays):
        return f(*arrays)
    out = np.empty(first.shape, dtype=first.dtype)

    def block(i):
        r0, r1 = n * i // workers, n * (i + 1) // workers
        out[r0:r1] = f(*(a[r0:r1] for a in arrays))

    _on_threads(block, range(workers), workers)
    return out


# --------------------------------------------------------------------------- dense


def dense_backward(dout, cache, grad_W, grad_b, *, need_dx=True, need_param_grads=True):
    """``functional.dense_backward`` with dW and db ADDED into ``grad_W`` and ``grad_b``.

    Returns dx (None with ``need_dx=False``). On a GPU, cuBLAS adds x.T @ dout into
    grad_W directly (no temporary, no separate addition).
    """
    if need_param_grads and _on_gpu(dout):
        x, W = cache
        _fused.add_dense_param_grads(x, dout, grad_W, grad_b)
        return dout @ W.T if need_dx else None
    # One output (a discriminator's logit): dout @ W.T is an outer product, each entry
    # one product, which a matrix product with an inner size of 1 computes many times
    # slower than a broadcast multiply (the same numbers, bit for bit).
    outer = need_dx and cache[1].shape[1] == 1
    if need_dx and need_param_grads and not outer and _two_products(dout, cache[1]):
        dx, dW, db = _dense_backward_on_two_threads(dout, cache)
    else:
        dx, dW, db = F.dense_backward(dout, cache, need_dx=need_dx and not outer,
                                      need_param_grads=need_param_grads)
    if outer:
        dx = dout * cache[1].T
    if need_param_grads:
        grad_W += dW
        grad_b += db
    return dx


#: Multiply-adds per product from which the dense backward's two products go on two threads.
DENSE_SPLIT_MACS = 1 << 22


def _two_products(dout, W):
    """True when the kernels have two threads (``_threads.share_threads``, a convolutional
    run on the CPU: a GPU's arrays never get here, see above) and the dense layer's
    products are large enough to share them."""
    return _threads.workers(2) == 2 and dout.shape[0] * W.size >= DENSE_SPLIT_MACS


def _dense_backward_on_two_threads(dout, cache):
    """``functional.dense_backward``'s dx on one thread and its dW, db on another: two
    independent products of the same size (the DCGAN preset's projection from G's hidden
    layer to the first feature maps), each with one BLAS thread as before: the same
    products and sum as on one thread, so the same numbers."""
    def half(want_dx):
        return F.dense_backward(dout, cache, need_dx=want_dx, need_param_grads=not want_dx)

    with _threads.one_blas_thread():
        (dx, _, _), (_, dW, db) = _on_threads(half, [True, False], 2)
    return dx, dW, db


# --------------------------------------------------------------------- activations

# One array operation each already (maximum, tanh): nothing to fuse on any backend.
relu_forward = F.relu_forward
tanh_forward = F.tanh_forward


def relu_backward(dout, cache):
    if _on_gpu(dout):
        return _fused.relu_backward(dout, cache)
    return _by_rows(lambda d, out: F.relu_backward(d, out), dout, cache)


def leaky_relu_forward(x, negative_slope=0.01):
    if _on_gpu(x):
        negative_slope = float(negative_slope)
        return _fused.leaky_relu(x, negative_slope), (x, negative_slope)
    return F.leaky_relu_forward(x, negative_slope)  # two passes: not worth a thread's start


def leaky_relu_backward(dout, cache):
    if _on_gpu(dout):
        x, negative_slope = cache
        return _fused.leaky_relu_backward(dout, x, negative_slope)
    x, negative_slope = cache
    return _by_rows(lambda d, rows: F.leaky_relu_backward(d, (rows, negative_slope)), dout, x)


def sigmoid(x):
    """``functional.sigmoid``: stable for any x."""
    return _fused.sigmoid(x) if _on_gpu(x) else F.sigmoid(x)


def sigmoid_forward(x):
    if _on_gpu(x):
        out = _fused.sigmoid(x)
        return out, out
    return F.sigmoid_forward(x)


def sigmoid_backward(dout, cache):
    if _on_gpu(dout):
        return _fused.sigmoid_backward(dout, cache)
    return F.sigmoid_backward(dout, cache)


def tanh_backward(dout, cache):
    if _on_gpu(dout):
        return _fused.tanh_backward(dout, cache)
    return _by_rows(lambda d, t: F.tanh_backward(d, t), dout, cache)


# ----------------------------------------------------------------------- convolutions
#
# ``functional``'s convolutions are written for reading: im2col in PyTorch's unfold
# layout (N, C kH kW, L) and one matrix product per sample. The fast path computes
# the same sums with the channels last (NHWC) inside, on both backends:
#
# * im2col is ONE copy out of a strided view of the padded NHWC image: a window's
#   row is kW C numbers side by side in memory, so the copy moves long runs, where
#   the NCHW layout moves runs of one number (``_window_rows``);
# * the windows of many samples are rows of one matrix (n H_out W_out, kH kW C), so
#   a layer is a few large matrix products (BLAS's best case), not N small ones,
#   and each chunk of rows is multiplied while it is still in cache (``CHUNK_BYTES``);
# * col2im runs one kernel offset at a time, each a matrix product whose result is
#   added into a strided slice of the padded output (``_col2im_rows``): as fast as
#   one large product followed by the additions, without its (N L, kH kW C)
#   temporary (13 MB for DCGAN's 64 -> 128 layer at batch 64; kH kW times the input);
# * each chunk also does its own padding, bias and move back to NCHW, and on the CPU
#   the chunks of a layer run on the threads that ``_threads.share_threads`` gave the
#   convolutions (``_run_lanes``), one BLAS thread each: the copies and additions,
#   which a BLAS thread never helps, then use every core too.
#
# The same numbers as ``functional`` up to rounding: each output is the same sum of
# products, added in another order (another K order, BLAS blocking), so float32
# results agree to a few ulp, not bit for bit (tests/test_conv.py).
# A cache from these forwards belongs to these backwards, not to ``functional``'s.


def _as_strided(x, shape, strides):
    """NumPy's or CuPy's ``as_strided``, whichever owns x: a view, nothing copied."""
    tricks = importlib.import_module(array_module(x).__name__ + ".lib.stride_tricks")
    return tricks.as_strided(x, shape=shape, strides=strides)


def _to_rows(x):
    """(N, C, H, W) -> (N H W, C): channels last, one row per pixel (a copy)."""
    N, C, H, W = x.shape
    return x.transpose(0, 2, 3, 1).reshape(N * H * W, C)


#: Bytes of window rows (im2col) per chunk of samples on the CPU. The whole window
#: matrix of the paper's (unpacked) D's 64 -> 128 convolution is 13 MB at batch 64 and
#: 51 MB at 256: built
#: whole, it is written to memory and read back by the product. Built and multiplied
#: a few samples at a time, each chunk is still in the core's cache (L2: ~2 MiB) when
#: the product reads it. On a GPU a chunk is the whole batch: one large product.
CHUNK_BYTES = 1 << 21
#: The same for col2im's padded output, which every one of the kH kW products adds into.
COL2IM_BYTES = 1 << 20


def _chunks(x, n, bytes_per_sample, budget):
    """(the (n0, n1) sample ranges, the most samples in one) to cut a batch of n into:
    on the CPU at most ``budget`` bytes each, and at least LANES chunks where the batch
    has that many samples (so that every lane has work); on a GPU one chunk."""
    per = max(1, n) if _on_gpu(x) else max(1, min(-(-n // LANES), budget // max(1, bytes_per_sample)))
    return [(n0, min(n, n0 + per)) for n0 in range(0, n, per)], per


def _run_lanes(x, chunks, work):
    """[work(lane's chunks) for each lane that has chunks], in lane order.

    On the CPU, with T > 1 threads given to the kernels (``_threads.share_threads``),
    min(T, lanes) threads run the lanes, each its own products with the BLAS on one
    thread: the window copies and col2im's additions, which a BLAS thread never helps,
    then use every core too (NumPy lets go of the GIL in copies, additions and
    products). Else one lane after another, on the caller's thread.
    """
    lanes = [chunks[k::LANES] for k in range(min(LANES, len(chunks)))]
    workers = 1 if _on_gpu(x) or len(lanes) == 1 else _threads.workers(len(lanes))
    if workers == 1:
        return [work(lane) for lane in lanes]
    with _threads.one_blas_thread():
        return _on_threads(work, lanes, workers)


def _on_threads(work, items, workers):
    """[work(item) for item in items], on ``workers`` of the pool's threads: thread w
    takes items w, w + workers, ... one after another."""
    results = [None] * len(items)

    def thread(w):
        for k in range(w, len(items), workers):
            results[k] = work(items[k])

    list(_pool().map(thread, range(workers)))
    return results


def _padded_nhwc(x, p):
    """x (N, C, H, W) zero-padded by p = (pH, pW) on each side, channels last (a copy)."""
    (pH, pW), (N, C, H, W) = p, x.shape
    x_pad = array_module(x).zeros((N, H + 2 * pH, W + 2 * pW, C), dtype=x.dtype)
    x_pad[:, pH:pH + H, pW:pW + W] = x.transpose(0, 2, 3, 1)
    return x_pad


def _windows(x_pad, k, s, out_hw):
    """Every window of a padded NHWC image as a (N, H_out, W_out, kH, kW, C) view: window
    (h, w) starts at pixel (s_H h, s_W w); nothing is copied."""
    (kH, kW), (sH, sW) = k, s
    N, H_pad, W_pad, C = x_pad.shape
    # as_strided checks no bounds: a dout of the wrong size would read past the image
    if (out_hw[0] - 1) * sH + kH > H_pad or (out_hw[1] - 1) * sW + kW > W_pad:
        raise ValueError(f"{tuple(out_hw)} windows of {kH}x{kW} with stride {(sH, sW)} do not fit "
                         f"a padded image of {(H_pad, W_pad)}: the upstream gradient must have "
                         f"the shape of the forward's output")
    bN, bH, bW, bC = x_pad.strides
    return _as_strided(x_pad, (N, *out_hw, kH, kW, C), (bN, sH * bH, sW * bW, bH, bW, bC))


def _window_rows(windows, n0, n1, buf):
    """Im2col of samples n0..n1: their windows copied into ``buf`` as rows
    ((n1 - n0) H_out W_out, kH kW C), in (i, j, c) order; returns that part of buf."""
    rows = buf[:(n1 - n0) * windows.shape[1] * windows.shape[2]]
    array_module(buf).copyto(rows.reshape(windows[n0:n1].shape), windows[n0:n1])
    return rows


def _im2col_products(windows, right, finish, fill=None):
    """For each chunk of samples n0..n1: fill(n0, n1) writes their part of the image
    the windows read (if given), then their im2col rows ((n1 - n0) L, K) @ right (K, b)
    go to finish(n0, n1, product), all on the chunk's thread."""
    xp = array_module(right)
    N, H_out, W_out, kH, kW, C = windows.shape
    L, K = H_out * W_out, kH * kW * C
    dtype = xp.result_type(windows, right)  # mixed: the wider one
    chunks, per = _chunks(right, N, L * K * dtype.itemsize, CHUNK_BYTES)

    def lane(its_chunks):
        buf = xp.empty((per * L, K), dtype=dtype)
        product = xp.empty((per * L, right.shape[1]), dtype=dtype)
        for n0, n1 in its_chunks:
            if fill is not None:
                fill(n0, n1)
            rows = _window_rows(windows, n0, n1, buf)
            finish(n0, n1, xp.matmul(rows, right, out=product[:len(rows)]))

    _run_lanes(right, chunks, lane)


def _to_nchw(out, n0, n1, rows, bias=None):
    """out[n0:n1] (NCHW) = rows ((n1 - n0) H W, C) channels last, plus bias (C,) if given."""
    if bias is not None:
        rows += bias
    C, H, W = out.shape[1:]
    out[n0:n1] = rows.reshape(n1 - n0, H, W, C).transpose(0, 3, 1, 2)


def _im2col_weight_grad(left, windows):
    """left.T (a, N L) @ im2col rows (N L, K): the sum over chunks of samples of each
    chunk's product (partial sums: a different rounding from one product, a few ulp)."""
    xp = array_module(left)
    N, H_out, W_out, kH, kW, C = windows.shape
    L, K = H_out * W_out, kH * kW * C
    dtype = xp.result_type(left, windows)  # mixed dtypes: computed in the wider one
    chunks, per = _chunks(left, N, L * K * dtype.itemsize, CHUNK_BYTES)

    def lane(its_chunks):
        buf = xp.empty((per * L, K), dtype=dtype)
        total, part = xp.empty((left.shape[1], K), dtype=dtype), None
        for c, (n0, n1) in enumerate(its_chunks):
            product = xp.matmul(left[n0 * L:n1 * L].T, _window_rows(windows, n0, n1, buf),
                                out=total if c == 0 else part)
            if c > 0:
                total += product
            elif len(its_chunks) > 1:
                part = xp.empty_like(total)
        return total

    totals = _run_lanes(left, chunks, lane)
    if not totals:  # a batch of 0
        return xp.zeros((left.shape[1], K), dtype=dtype)
    for other in totals[1:]:
        totals[0] += other
    return totals[0]


def _col2im_rows(rows, taps, out_shape, k, s, p, bias=None):
    """col2im(rows @ taps) as (N, C_b, H, W), plus bias if given, a chunk of samples at
    a time: for each kernel offset (i, j), a chunk's rows (n L, C_a) @ taps[i, j]
    (C_a, C_b) hold the (i, j) entry of each of its windows, and are ADDED into the
    strided slice of the chunk's padded output (channels last) that those entries sit on."""
    xp = array_module(rows)
    (kH, kW), (sH, sW), (pH, pW) = k, s, p
    N, C, H, W = out_shape
    H_in, W_in = F.conv2d_output_shape((H, W), k, s, p)
    L, padded = H_in * W_in, (H + 2 * pH, W + 2 * pW)
    dtype = xp.result_type(rows, taps)
    chunks, per = _chunks(rows, N, padded[0] * padded[1] * C * dtype.itemsize, COL2IM_BYTES)
    result = xp.empty(out_shape, dtype=dtype)

    def lane(its_chunks):
        pad = xp.empty((per, *padded, C), dtype=dtype)
        product = xp.empty((per * L, C), dtype=dtype)
        for n0, n1 in its_chunks:
            m = n1 - n0
            out, prod, chunk = pad[:m], product[:m * L], rows[n0 * L:n1 * L]
            out.fill(0)
            for i in range(kH):
                for j in range(kW):
                    xp.matmul(chunk, taps[i, j], out=prod)
                    out[:, i:i + sH * H_in:sH, j:j + sW * W_in:sW] += prod.reshape(m, H_in, W_in, C)
            inner = out[:, pH:pH + H, pW:pW + W]
            if bias is not None:
                inner += bias
            result[n0:n1] = inner.transpose(0, 3, 1, 2)

    _run_lanes(rows, chunks, lane)
    return result


def conv2d_forward(x, W, b, stride=1, padding=0):
    """``functional.conv2d_forward`` (the same numbers, to rounding): (out, cache).

    out (N L, C_out) = rows (N L, kH kW C_in) @ W_rows.T, with W's entries put in
    the rows' (i, j, c) order, then back to NCHW. The cache keeps the padded image
    (kH kW / (sH sW) times smaller than its rows); the backward builds the rows again.
    """
    F._check_conv_args("conv2d_forward", x, W, b, "(C_out, C_in, kH, kW)", in_axis=1, out_axis=0)
    xp = array_module(x)
    C_out, _, kH, kW = W.shape
    k, s, p = F.conv_params((kH, kW), stride, padding)
    N, _, H, W_in = x.shape
    H_out, W_out = F.conv2d_output_shape((H, W_in), k, s, p)
    (pH, pW), C_in = p, x.shape[1]
    x_pad = xp.zeros((N, H + 2 * pH, W_in + 2 * pW, C_in), dtype=x.dtype)  # NHWC

    def fill(n0, n1):  # each chunk pads its own samples
        x_pad[n0:n1, pH:pH + H, pW:pW + W_in] = x[n0:n1].transpose(0, 2, 3, 1)

    W_rows = W.transpose(0, 2, 3, 1).reshape(C_out, -1)            # (C_out, kH kW C_in)
    out = xp.empty((N, C_out, H_out, W_out), dtype=x.dtype)
    _im2col_products(_windows(x_pad, k, s, (H_out, W_out)), W_rows.T,
                     lambda n0, n1, rows: _to_nchw(out, n0, n1, rows, b), fill)
    return out, (x_pad, x.shape, W, k, s, p)


def _check_dout(name, dout, expected):
    """An upstream gradient of another shape than the forward's output is an error (the
    strided windows would otherwise read the wrong pixels, or past the image)."""
    if isinstance(expected, str) or tuple(dout.shape) != tuple(expected):
        raise ValueError(f"{name}: dout must have the shape of the forward's output, "
                         f"{expected if isinstance(expected, str) else tuple(expected)}; "
                         f"got {tuple(dout.shape)}")


def _taps(W):
    """W (a, b, kH, kW) as kH kW contiguous (a, b) matrices, one per kernel offset [i, j]."""
    return array_module(W).ascontiguousarray(W.transpose(2, 3, 0, 1))


def _add_param_grads(grad_W, dW_rows, grad_b, dout):
    """ADD a weight gradient computed channels last, dW_rows (a, kH kW b), into grad_W
    (a, b, kH, kW), and dout's sum over (n, h, w) into grad_b (None: no bias)."""
    a, b, kH, kW = grad_W.shape
    grad_W += dW_rows.reshape(a, kH, kW, b).transpose(0, 3, 1, 2)
    if grad_b is not None:
        grad_b += dout.sum(axis=(0, 2, 3))


def conv2d_backward(dout, cache, grad_W, grad_b, *, need_dx=True, need_param_grads=True):
    """``functional.conv2d_backward`` with dW and db ADDED into ``grad_W`` and ``grad_b``
    (``grad_b`` None without a bias). Returns dx (None with ``need_dx=False``)."""
    x_pad, x_shape, W, k, s, p = cache
    _check_dout("conv2d_backward", dout, (x_shape[0], W.shape[0],
                                          *F.conv2d_output_shape(x_shape[2:], k, s, p)))
    d_rows = _to_rows(dout)                                        # (N L, C_out)
    if need_param_grads:
        windows = _windows(x_pad, k, s, dout.shape[2:])
        _add_param_grads(grad_W, _im2col_weight_grad(d_rows, windows), grad_b, dout)
    if not need_dx:
        return None
    return _col2im_rows(d_rows, _taps(W), x_shape, k, s, p)         # taps: (C_out, C_in)


def conv_transpose2d_forward(x, W, b, stride=1, padding=0, output_padding=0):
    """``functional.conv_transpose2d_forward`` (the same numbers, to rounding): (out, cache).

    col2im(x_rows @ W's taps), one kernel offset at a time: no (N H W, kH kW C_out)
    temporary."""
    F._check_conv_args("conv_transpose2d_forward", x, W, b, "(C_in, C_out, kH, kW)",
                       in_axis=0, out_axis=1)
    _, C_out, kH, kW = W.shape
    k, s, p = F.conv_params((kH, kW), stride, padding)
    N, _, H, W_in = x.shape
    out_shape = (N, C_out) + F.conv_transpose2d_output_shape((H, W_in), k, s, p, output_padding)
    x_rows = _to_rows(x)                                           # (N H W, C_in)
    taps = _taps(W)                                                # [i, j]: (C_in, C_out)
    return _col2im_rows(x_rows, taps, out_shape, k, s, p, bias=b), (x_rows, x.shape, W, k, s, p)


def conv_transpose2d_backward(dout, cache, grad_W, grad_b, *, need_dx=True,
                              need_param_grads=True):
    """``functional.conv_transpose2d_backward`` with dW and db ADDED into ``grad_W`` and
    ``grad_b`` (``grad_b`` None without a bias). Returns dx (None with ``need_dx=False``).
    Both are products with the im2col rows of dout (N H W, kH kW C_out)."""
    x_rows, x_shape, W, k, s, p = cache
    C_in = W.shape[0]
    # any output_padding < stride gives an output whose convolution has x's size
    if tuple(dout.shape[:2]) != (x_shape[0], W.shape[1]) \
            or F.conv2d_output_shape(dout.shape[2:], k, s, p) != tuple(x_shape[2:]):
        _check_dout("conv_transpose2d_backward", dout, "the forward's output shape")
    windows = _windows(_padded_nhwc(dout, p), k, s, x_shape[2:])
    if need_param_grads:
        _add_param_grads(grad_W, _im2col_weight_grad(x_rows, windows), grad_b, dout)
    if not need_dx:
        return None
    W_rows = W.transpose(0, 2, 3, 1).reshape(C_in, -1)             # (C_in, kH kW C_out)
    dx = array_module(dout).empty(x_shape, dtype=dout.dtype)
    _im2col_products(windows, W_rows.T, lambda n0, n1, rows: _to_nchw(dx, n0, n1, rows))
    return dx


def batchnorm2d_forward(x, gamma, beta, *, train=True, running_mean=None, running_var=None,
                        eps=1e-5):
    """``functional.batchnorm2d_forward`` (the same numbers, to rounding): (out, cache).

    The channels stay where they are: with x viewed as (N, C, H W), every statistic
    is a sum over axes 0 and 2, so nothing is transposed, and each step is one
    pass over the data (the functional code moves the channels last and back).
    Channels are independent: on the CPU they go in LANES groups, one per thread.
    """
    F._check_batchnorm2d(x, gamma, train)
    if not train and (running_mean is None or running_var is None):
        raise ValueError("batch norm in evaluation mode needs running_mean and running_var")
    xp = array_module(x, gamma, beta)
    N, C, H, W = x.shape
    x3, m = x.reshape(N, C, H * W), N * H * W
    xhat = xp.empty(x3.shape, x.dtype if train else xp.result_type(x, running_mean))
    out = xp.empty(x3.shape, xp.result_type(xhat, gamma))   # as xhat * gamma; += beta
    mean, var = (xp.empty(C, x.dtype), xp.empty(C, x.dtype)) if train else (running_mean,
                                                                            running_var)
    inv_std = xp.empty(C, var.dtype)

    def channels(c):
        if train:
            mean[c] = x3[:, c].sum(axis=(0, 2)) * (1.0 / m)
        xp.subtract(x3[:, c], mean[c, None], out=xhat[:, c])     # centred, for now
        if train:                                                # biased, as the 1-d code
            var[c] = xp.einsum("ncl,ncl->c", xhat[:, c], xhat[:, c]) * (1.0 / m)
        inv_std[c] = 1.0 / xp.sqrt(var[c] + eps)
        xhat[:, c] *= inv_std[c, None]
        xp.multiply(xhat[:, c], gamma[c, None], out=out[:, c])
        out[:, c] += beta[c, None]

    _by_channels(x, channels)
    cache = {"xhat": xhat, "inv_std": inv_std, "gamma": gamma, "train": train,
             "mean": mean, "var": var}
    return out.reshape(x.shape), cache


def batchnorm2d_backward(dout, cache):
    """``functional.batchnorm2d_backward`` (the same numbers, to rounding): (dx, dgamma, dbeta).

    With m = N H W values per channel, mean_m(g) = gamma dbeta / m and
    mean_m(g xhat) = gamma dgamma / m for g = dout gamma, so the training-mode
    dx = inv_std (g - mean_m(g) - xhat mean_m(g xhat)) is
    dx = gamma inv_std (dout - dbeta / m - xhat dgamma / m): four passes.
    """
    xp = array_module(dout)
    xhat, inv_std, gamma = cache["xhat"], cache["inv_std"], cache["gamma"]
    N, C, H, W = dout.shape
    d3, m = dout.reshape(N, C, H * W), N * H * W
    dbeta, dgamma = xp.empty(C, dout.dtype), xp.empty(C, xp.result_type(dout, xhat))
    dx = xp.empty(d3.shape, xp.result_type(dout, xhat) if cache["train"]
                  else xp.result_type(dout, gamma, inv_std))

    def channels(c):
        dbeta[c] = d3[:, c].sum(axis=(0, 2))
        dgamma[c] = xp.einsum("ncl,ncl->c", d3[:, c], xhat[:, c])
        if cache["train"]:
            xp.multiply(xhat[:, c], (dgamma[c] * (1.0 / m))[:, None], out=dx[:, c])
            xp.subtract(d3[:, c], dx[:, c], out=dx[:, c])
            dx[:, c] -= (dbeta[c] * (1.0 / m))[:, None]
            dx[:, c] *= (gamma[c] * inv_std[c])[:, None]
        else:
            xp.multiply(d3[:, c], (gamma[c] * inv_std[c])[:, None], out=dx[:, c])

    _by_channels(dout, channels)
    return dx.reshape(dout.shape), dgamma, dbeta


def _by_channels(x, work):
    """work(slice of channels) for every group of x's channels (axis 1): on a GPU one
    group; on the CPU LANES groups, always the same ones (so the numbers do not
    depend on the thread count), on the kernels' threads where x is large."""
    C = x.shape[1]
    if _on_gpu(x):
        return work(slice(0, C))
    groups = [slice(C * g // LANES, C * (g + 1) // LANES) for g in range(LANES)]
    groups = [g for g in groups if g.stop > g.start]
    workers = _threads.workers(len(groups)) if x.nbytes >= ROWS_BYTES else 1
    if workers == 1:
        for g in groups:
            work(g)
    else:
        _on_threads(work, groups, workers)


# --------------------------------------------------------------------------- losses


def bce_with_logits(logits, target):
    """``functional.bce_with_logits``: (mean loss as a 0-d array, dlogits).

    ``target`` is an array shaped like ``logits``, or one number for every entry
    (a GAN's 1 or 0; on a GPU no array of targets is ever filled).
    """
    if _on_gpu(logits):
        return _fused.bce_with_logits(logits, target if hasattr(target, "shape") else float(target))
    if not hasattr(target, "shape"):
        target = array_module(logits).full_like(logits, target)
    return F.bce_with_logits(logits, target)


# ------------------------------------------------------------------- in-place updates


def ema_update(ema, p, beta):
    """ema <- beta ema + (1 - beta) p, in place (a moving average of parameters).

    Written as beta (ema - p) + p: the same value, with no temporary array.
    """
    if _on_gpu(ema, p):
        _fused.ema_update(ema, p, beta)
        return
    ema -= p
    ema *= beta
    ema += p


#: Entries per block of the NumPy Adam step. Why blocks: Adam's update is about a
#: dozen elementwise passes over p, g, m and v. Over a whole 800k-entry weight
#: matrix every pass streams each 3 MB array through the memory bus again; over a
#: block of 64k entries (256 KiB per float32 array, about 1.5 MiB for the six
#: arrays touched) the arrays stay in the core's L2 cache between passes, so each
#: entry travels from memory about once per step. Every operation is elementwise,
#: so the numbers are the same as over the whole array.
ADAM_BLOCK = 1 << 16


def adam_scratch(pairs):
    """The two temporaries ``adam_step`` needs for these parameters on NumPy (as
    large as the largest block, shared by every block); None on a GPU.

    Allocate them once and pass them to every step: a new 512 KiB buffer each
    step would come from a fresh memory mapping, and its page faults cost more
    than a small network's whole update.
    """
    p0 = pairs[0][0]
    if _on_gpu(p0):
        return None
    largest = max(min(p.size, ADAM_BLOCK) if p.flags.c_contiguous else p.size for p, _ in pairs)
    return np.empty((2, largest), dtype=p0.dtype)


def adam_step(pairs, ms, vs, *, lr, betas, eps, weight_decay, t, scratch=None):
    """``optim.Adam._update`` for every (param, grad) pair and its m and v, in place.

    ``t`` is the step count after this step (1 on the first). The same numbers as
    the plain update, bit for bit: on CuPy one fused kernel per parameter, on
    NumPy the in-place update over cache-sized blocks (``_adam_numpy``), with the
    temporaries of ``adam_scratch`` (allocated here when not given).
    """
    hyper = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, t=t)
    if _on_gpu(pairs[0][0]):
        _fused.adam_step(pairs, ms, vs, **hyper)
        return
    blocks = [block for (p, g), m, v in zip(pairs, ms, vs) for block in _blocks(p, g, m, v)]
    if scratch is None or scratch.dtype != pairs[0][0].dtype \
            or scratch.shape[1] < max(p.size for p, _, _, _ in blocks):
        scratch = adam_scratch(pairs)
    for p, g, m, v in blocks:
        tmp, tmp2 = (row[:p.size].reshape(p.shape) for row in scratch)
        _adam_numpy(p, g, m, v, tmp, tmp2, **hyper)


def _blocks(*arrays):
    """The arrays (of one shape) as matching flat blocks of ADAM_BLOCK entries:
    views, so updating a block updates the array. A small array is one block,
    and so is one that is not C-contiguous (it cannot be cut into views)."""
    if arrays[0].size <= ADAM_BLOCK or not all(a.flags.c_contiguous for a in arrays):
        return [arrays]
    flat = [a.reshape(-1) for a in arrays]
    return [[a[start:start + ADAM_BLOCK] for a in flat]
            for start in range(0, flat[0].size, ADAM_BLOCK)]


def _adam_numpy(p, g, m, v, tmp, tmp2, *, lr, betas, eps, weight_decay, t):
    """Adam._update written with ``out=``: each line is one operation of the plain
    update, in its order, so each rounds the same way; tmp and tmp2 are scratch."""
    b1, b2 = betas
    if weight_decay:
        np.multiply(p, weight_decay, out=tmp2)   # g + weight_decay * p
        tmp2 += g
        g = tmp2
    np.subtract(g, m, out=tmp)                   # m += (1 - b1) * (g - m)
    tmp *= 1 - b1
    m += tmp
    np.multiply(g, g, out=tmp)                   # v += (1 - b2) * (g * g - v)
    tmp -= v
    tmp *= 1 - b2
    v += tmp
    np.divide(v, 1 - b2 ** t, out=tmp2)          # v_hat = v / (1 - b2^t)
    np.sqrt(tmp2, out=tmp2)                      # sqrt(v_hat) + eps
    tmp2 += eps
    np.multiply(m, lr / (1 - b1 ** t), out=tmp)  # p -= step_size * m / (sqrt(v_hat) + eps)
    tmp /= tmp2
    p -= tmp
