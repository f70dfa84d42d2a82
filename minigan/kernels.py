"""The fast paths, chosen in ONE place: for each op, one function picks how to compute it.

``minigan.functional`` and the optimisers' ``_update`` are the reference: plain
code, written as the math reads. Each function here computes the same numbers,
faster where the arrays allow it:

* CuPy arrays: a one-pass kernel of ``minigan._fused`` (a GPU spends its time
  launching kernels, so one kernel instead of three to twelve is the speed-up);
* NumPy arrays: the functional code itself, except for Adam, whose update runs
  over cache-sized blocks with no temporaries (``adam_step`` below).

The layers, the optimisers and the GAN loop call these functions and never ask
which backend they are on. Every forward returns ``(out, cache)`` and every
backward takes ``(dout, cache)``, as in ``functional``. tests/test_backend_parity.py
and tests/test_optim.py prove each fast path equal to its reference (bit for bit
where no exp or log is involved).
"""

from __future__ import annotations

import numpy as np

from minigan import _fused
from minigan import functional as F
from minigan.backend import _is_cupy, array_module

__all__ = [
    "dense_backward", "relu_forward", "relu_backward", "leaky_relu_forward",
    "leaky_relu_backward", "sigmoid", "sigmoid_forward", "sigmoid_backward",
    "tanh_forward", "tanh_backward", "bce_with_logits", "ema_update", "adam_scratch", "adam_step",
]


def _on_gpu(*arrays):
    """True when every array is a CuPy array: the fused kernels are for the GPU only."""
    return all(_is_cupy(a) for a in arrays)


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
    dx, dW, db = F.dense_backward(dout, cache, need_dx=need_dx,
                                  need_param_grads=need_param_grads)
    if need_param_grads:
        grad_W += dW
        grad_b += db
    return dx


# --------------------------------------------------------------------- activations

# One array operation each already (maximum, tanh): nothing to fuse on any backend.
relu_forward = F.relu_forward
tanh_forward = F.tanh_forward


def relu_backward(dout, cache):
    if _on_gpu(dout):
        return _fused.relu_backward(dout, cache)
    return F.relu_backward(dout, cache)


def leaky_relu_forward(x, negative_slope=0.01):
    if _on_gpu(x):
        negative_slope = float(negative_slope)
        return _fused.leaky_relu(x, negative_slope), (x, negative_slope)
    return F.leaky_relu_forward(x, negative_slope)


def leaky_relu_backward(dout, cache):
    if _on_gpu(dout):
        x, negative_slope = cache
        return _fused.leaky_relu_backward(dout, x, negative_slope)
    return F.leaky_relu_backward(dout, cache)


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
    return F.tanh_backward(dout, cache)


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
