"""One-pass CuPy kernels for the elementwise work of a training step.

On a GPU the small networks of minigan spend their time launching kernels, not
computing. Written with array operations, the backward pass of a leaky ReLU is
three kernels (compare, maximum, multiply) and Adam's update a dozen per
parameter, each one a trip through the Python interpreter, CuPy and the CUDA
driver (~10 us) for a few microseconds of arithmetic. Every function here does
the same arithmetic, in the same order, as its reference (named in its
docstring), in one ``cupy.ElementwiseKernel`` (plus CuPy's own mean for a loss); the
dense layer's weight gradient is added into its gradient buffer by
cuBLAS itself (``beta = 1``), without a temporary.

The library reaches these only through ``minigan.kernels``, the one place that
picks a fast path per op, and only for CuPy arrays (NumPy arrays never come
here). Kernels are compiled on first use and CuPy is imported then, never by
``import minigan``. They are compiled with ``--fmad=false``: the GPU compiler
would otherwise fuse a multiply and an add into one rounding step, so each +,
-, *, / and sqrt rounds exactly as NumPy's does, and a kernel without exp or log
gives NumPy's reference numbers bit for bit (Adam's update included). CUDA's
exp and log1p differ from NumPy's by an ulp or two. tests/test_backend_parity.py
checks every kernel, in float32 and float64.
"""

from __future__ import annotations

import functools


def _scalar(x, value):
    """``value`` as a scalar of x's dtype, so that a kernel's type T is x's type."""
    return x.dtype.type(value)


@functools.lru_cache(maxsize=None)
def _kernels():
    import cupy as cp

    def elementwise(in_params, out_params, body, name):
        return cp.ElementwiseKernel(in_params, out_params, body, "minigan_" + name,
                                    options=("--fmad=false",))

    # sigmoid(x) as functional.sigmoid computes it: with e = exp(-|x|) in (0, 1],
    # sigmoid(-|x|) = e / (1 + e) and sigmoid(|x|) = 1 - sigmoid(-|x|).
    sigmoid = ("T e_ = exp(-fabs(x)); T neg_ = e_ / ((T)1 + e_); "
               "T s_ = x < 0 ? neg_ : (T)1 - neg_;")
    return {
        "leaky_relu": elementwise("T x, T slope", "T y", "y = x > 0 ? x : x * slope", "leaky_relu"),
        "leaky_relu_backward": elementwise(
            "T dy, T x, T slope", "T dx", "dx = x > 0 ? dy : dy * slope", "leaky_relu_backward"),
        "relu_backward": elementwise("T dy, T y", "T dx", "dx = dy * (T)(y > 0)", "relu_backward"),
        "tanh_backward": elementwise("T dy, T t", "T dx", "dx = ((T)1 - t * t) * dy", "tanh_backward"),
        "sigmoid": elementwise("T x", "T y", sigmoid + " y = s_;", "sigmoid"),
        "sigmoid_backward": elementwise(
            "T dy, T s", "T dx", "dx = ((T)1 - s) * s * dy", "sigmoid_backward"),
        # per entry: l = max(z, 0) - z y + log1p(exp(-|z|)) and dl/dz of the mean, (sigmoid(z) - y) / n
        "bce": elementwise(
            "T x, T y, T inv_n", "T loss, T dx",
            sigmoid + " loss = ((x > 0 ? x : (T)0) - x * y) + log1p(e_); dx = (s_ - y) * inv_n;",
            "bce_with_logits"),
        # optim.Adam._update, operation for operation (weight decay 0 adds 0 * p)
        "adam": elementwise(
            "T g, T weight_decay, T one_minus_b1, T one_minus_b2, T bc2, T eps, T step_size",
            "T p, T m, T v",
            """
            T grad = g + weight_decay * p;
            m = m + (grad - m) * one_minus_b1;
            v = v + (grad * grad - v) * one_minus_b2;
            T v_hat = v / bc2;
            p = p - (step_size * m) / (sqrt(v_hat) + eps);
            """, "adam"),
        # kernels.ema_update: ema <- beta (ema - p) + p
        "ema": elementwise("T p, T beta", "T e", "e = (e - p) * beta + p", "ema"),
    }


def leaky_relu(x, negative_slope):
    """functional.leaky_relu_forward's output: x where x > 0, else negative_slope * x."""
    return _kernels()["leaky_relu"](x, _scalar(x, negative_slope))


def leaky_relu_backward(dout, x, negative_slope):
    """functional.leaky_relu_backward: dout where x > 0, else negative_slope * dout."""
    return _kernels()["leaky_relu_backward"](dout, x, _scalar(dout, negative_slope))


def relu_backward(dout, out):
    """functional.relu_backward: dout where the output is > 0, else 0."""
    return _kernels()["relu_backward"](dout, out)


def tanh_backward(dout, t):
    """functional.tanh_backward: dout * (1 - t^2)."""
    return _kernels()["tanh_backward"](dout, t)


def sigmoid(x):
    """functional.sigmoid, stable for any x."""
    return _kernels()["sigmoid"](x)


def sigmoid_backward(dout, s):
    """functional.sigmoid_backward: dout * s * (1 - s)."""
    return _kernels()["sigmoid_backward"](dout, s)


def sigmoid_mean(x):
    """mean(sigmoid(x)) as a 0-d array."""
    return _kernels()["sigmoid"](x).mean()


def bce_with_logits(logits, targets):
    """functional.bce_with_logits: (mean loss as a 0-d array, dlogits).

    ``targets``: an array shaped like logits, or one number for every entry (a
    GAN's 1 or 0: no array of ones to fill first). One kernel writes every
    entry's loss and gradient, a second takes the mean.
    """
    if hasattr(targets, "shape"):
        if logits.shape != targets.shape:
            raise ValueError(f"bce_with_logits: predictions have shape {logits.shape} but "
                             f"targets have shape {targets.shape}; they must match")
    else:
        targets = _scalar(logits, targets)
    losses, dlogits = _kernels()["bce"](logits, targets, _scalar(logits, 1.0 / logits.size))
    return losses.mean(), dlogits


def adam_step(pairs, ms, vs, *, lr, betas, eps, weight_decay, t):
    """optim.Adam._update of every (param, grad) pair and its m and v, in place:
    one kernel per parameter, the step's scalars computed as the plain update
    computes them (in Python floats) and converted to the parameters' dtype once."""
    b1, b2 = betas
    dtype = pairs[0][0].dtype.type
    scalars = [dtype(x) for x in (weight_decay, 1 - b1, 1 - b2, 1 - b2 ** t, eps,
                                  lr / (1 - b1 ** t))]
    kernel = _kernels()["adam"]
    for (p, g), m, v in zip(pairs, ms, vs):
        kernel(g, *scalars, p, m, v)


def ema_update(ema, p, beta):
    """ema <- beta ema + (1 - beta) p, in place, as kernels.ema_update writes it on NumPy."""
    _kernels()["ema"](p, _scalar(p, beta), ema)


def add_dense_param_grads(x, dout, grad_W, grad_b):
    """grad_W += x.T @ dout (by cuBLAS, in place) and grad_b += sum_n dout[n].

    The weight gradient is a matrix product that accumulates (cuBLAS's beta = 1):
    no temporary, no separate addition kernel. The bias gradient is summed by
    CuPy's tree reduction, NOT as the product ones(1, N) @ dout: cuBLAS adds the
    N terms one after another, with an error that grows with N, and the bias
    gradient of D's last layer is a sum that nearly cancels (the real terms are
    negative, the fake ones positive). There, the product was off by 3e-5
    relative against 1e-7 for the tree sum, and enough to set a float32 GAN run
    on another course than NumPy's after 40 steps (tests/test_backend_parity.py).
    """
    from cupy import cublas

    cublas.gemm("T", "N", x, dout, out=grad_W, alpha=1.0, beta=1.0)
    grad_b += dout.sum(axis=0)
