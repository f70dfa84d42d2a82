"""The math of every layer and loss, as pure forward/backward pairs.

Each op comes as ``*_forward(inputs...) -> (out, cache)`` and
``*_backward(dout, cache) -> grads``, in the style of CS231n's ``layers.py``.
The rules, which the tests check:

* nothing here mutates its inputs (``dout`` is read-only) or allocates parameters;
* the output has the dtype of the input: float32 in, float32 out;
* one code path for NumPy and CuPy: ``xp = array_module(x)`` picks the module.

Scalars are kept as Python floats on purpose: a NumPy float64 scalar would
silently promote a float32 array to float64 (NEP 50).
"""

from __future__ import annotations

import numpy as np

from minigan.backend import array_module, make_rng

# --------------------------------------------------------------------------- dense


def dense_forward(x, W, b):
    """Affine map ``out = x @ W + b``.

    Shapes: x (N, D_in), W (D_in, D_out), b (D_out,) -> out (N, D_out).
    The cache holds references to x and W (no copies).
    """
    # BEGIN SOLUTION Exercise 1.1: compute out = x @ W + b and keep (x, W) for the backward pass
    out = x @ W
    out += b  # in place: saves one (N, D_out) temporary
    return out, (x, W)
    # END SOLUTION


def dense_backward(dout, cache, *, need_dx=True, need_param_grads=True):
    """Gradients of ``out = x @ W + b``.

    With L the loss and dout = dL/dout (N, D_out):
        dL/dx = dout @ W.T          (N, D_in)
        dL/dW = x.T @ dout          (D_in, D_out)   -- sums over the batch
        dL/db = sum_n dout[n]       (D_out,)
    ``need_dx=False`` skips dx (the first layer of a network never needs it) and
    ``need_param_grads=False`` skips dW and db (the generator step through D);
    a skipped gradient is returned as None.
    """
    # BEGIN SOLUTION Exercise 1.2: compute dx, dW and db of the dense layer
    x, W = cache
    dx = dout @ W.T if need_dx else None
    if need_param_grads:
        dW = x.T @ dout
        db = dout.sum(axis=0)
    else:
        dW = db = None
    return dx, dW, db
    # END SOLUTION


# --------------------------------------------------------------------- activations


def relu_forward(x):
    """``max(x, 0)`` elementwise; any shape."""
    xp = array_module(x)
    out = xp.maximum(x, 0)
    return out, out  # the output's sign is the input's: cache it, not x


def relu_backward(dout, cache):
    """dL/dx = dout where x > 0, else 0 (the kink at 0 gets gradient 0)."""
    out = cache
    return dout * (out > 0)


def leaky_relu_forward(x, negative_slope=0.01):
    """``x`` where x > 0, ``negative_slope * x`` elsewhere (PyTorch's default slope 0.01)."""
    xp = array_module(x)
    negative_slope = float(negative_slope)
    scaled = x * negative_slope
    # For 0 <= slope <= 1, leaky_relu(x) = max(x, slope*x): one pass, no mask.
    if 0.0 <= negative_slope <= 1.0:
        out = xp.maximum(x, scaled, out=scaled)
    else:
        out = xp.where(x > 0, x, scaled)
    return out, (x, negative_slope)


def leaky_relu_backward(dout, cache):
    """dL/dx = dout where x > 0, ``negative_slope * dout`` elsewhere."""
    # BEGIN SOLUTION Exercise 1.3: compute dx of the leaky ReLU
    x, negative_slope = cache
    xp = array_module(dout, x)
    # dx = dout * f'(x), with the local slope f'(x) = 1 where x > 0, else negative_slope.
    # Build f'(x) as an array and multiply once: plain elementwise passes, several
    # times faster than a masked copy (copyto(..., where=x > 0)).
    if 0.0 <= negative_slope <= 1.0:
        # max(1[x > 0], slope) is exactly 1 or slope, for a slope in [0, 1]
        slope = (x > 0).astype(dout.dtype)
        xp.maximum(slope, negative_slope, out=slope)
    else:
        slope = xp.where(x > 0, 1.0, negative_slope).astype(dout.dtype)
    slope *= dout
    return slope
    # END SOLUTION


def sigmoid(x):
    """Logistic function 1 / (1 + exp(-x)), stable and accurate for any x.

    With e = exp(-|x|) (in (0, 1], so it never overflows), sigmoid(-|x|) = e / (1 + e)
    and sigmoid(|x|) = 1 - sigmoid(-|x|). Both keep full relative precision: the
    small tail (x << 0) is not rounded to 0 the way (1 + tanh(x/2)) / 2 would
    round it (that form is off by up to 1e-7 absolute in float32, so 100% relative
    for x < -17, and disagrees with torch.sigmoid there).
    """
    xp = array_module(x)
    e = xp.abs(x)
    xp.negative(e, out=e)
    xp.exp(e, out=e)
    out = e + 1.0
    xp.divide(e, out, out=e)       # e = sigmoid(-|x|)
    xp.subtract(1.0, e, out=out)   # out = sigmoid(|x|)
    xp.copyto(out, e, where=x < 0)
    return out


def sigmoid_forward(x):
    """s = sigmoid(x); any shape."""
    out = sigmoid(x)
    return out, out


def sigmoid_backward(dout, cache):
    """dL/dx = dout * s * (1 - s), with s = sigmoid(x) from the forward pass."""
    # BEGIN SOLUTION Exercise 1.4: compute dx of the sigmoid from its output s
    s = cache
    dx = 1.0 - s
    dx *= s
    dx *= dout
    return dx
    # END SOLUTION


def tanh_forward(x):
    """t = tanh(x); any shape."""
    xp = array_module(x)
    out = xp.tanh(x)
    return out, out


def tanh_backward(dout, cache):
    """dL/dx = dout * (1 - t^2), with t = tanh(x) from the forward pass."""
    # BEGIN SOLUTION Exercise 1.5: compute dx of tanh from its output t
    t = cache
    dx = 1.0 - t * t
    dx *= dout
    return dx
    # END SOLUTION


# ------------------------------------------------------------------------- dropout


def dropout_mask(shape, p, rng=None, dtype="float32", xp=None):
    """An inverted-dropout mask: each entry is 0 with probability p, else 1/(1-p).

    Drawn on the host from an explicit NumPy generator so a run can be repeated
    and a gradient check can reuse the same mask; moved to ``xp`` if given.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    keep = make_rng(rng).random(shape) >= p
    mask = keep.astype(dtype) * (1.0 / (1.0 - p))
    mask = mask.astype(dtype, copy=False)
    return mask if xp is None else xp.asarray(mask)


def dropout_forward(x, p=0.5, train=True, rng=None, mask=None):
    """Inverted dropout: ``out = x * mask`` in training, ``out = x`` in evaluation.

    Scaling the kept units by 1/(1-p) keeps E[out] = x, so evaluation needs no
    rescaling. Pass ``mask`` (shape of x) to fix the mask; otherwise it is drawn
    from ``rng`` (an int seed, a NumPy Generator, or minigan's default).
    """
    if not train or p == 0.0:
        return x, None
    xp = array_module(x)
    if mask is None:
        mask = dropout_mask(x.shape, p, rng=rng, dtype=x.dtype, xp=xp)
    elif mask.shape != x.shape:
        raise ValueError(f"dropout mask has shape {mask.shape}, expected {x.shape} (the input's)")
    return x * mask, mask


def dropout_backward(dout, cache):
    """dL/dx = dout * mask (dout itself in evaluation mode)."""
    mask = cache
    return dout.copy() if mask is None else dout * mask


# ---------------------------------------------------------------------- batch norm


def batchnorm_forward(x, gamma, beta, *, train=True, running_mean=None,
                      running_var=None, eps=1e-5):
    """Batch normalisation over the batch axis.

    Shapes: x (N, D), gamma (D,), beta (D,) -> out (N, D).
    Training: xhat = (x - mean_B) / sqrt(var_B + eps) with the batch's mean and
    biased variance; out = gamma * xhat + beta. The cache carries ``mean`` and
    ``var`` (biased) so the caller can update its running statistics.
    Evaluation (``train=False``): the same with running_mean and running_var.
    """
    xp = array_module(x, gamma, beta)
    if train:
        if x.shape[0] < 2:
            raise ValueError(
                f"batch norm in training mode needs at least 2 samples per batch, got shape {x.shape}")
        mean = x.mean(axis=0)
        centred = x - mean
        var = (centred * centred).mean(axis=0)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch norm in evaluation mode needs running_mean and running_var")
        mean, var = running_mean, running_var
        centred = x - mean
    inv_std = 1.0 / xp.sqrt(var + eps)
    xhat = centred * inv_std
    out = xhat * gamma
    out += beta
    cache = {"xhat": xhat, "inv_std": inv_std, "gamma": gamma, "train": train,
             "mean": mean, "var": var}
    return out, cache


def batchnorm_backward(dout, cache):
    """Gradients (dx, dgamma, dbeta) of batch norm.

    dbeta = sum_n dout, dgamma = sum_n dout * xhat. In training the batch
    statistics depend on x, which gives, with g = dout * gamma,
        dx = inv_std * (g - mean_n(g) - xhat * mean_n(g * xhat)).
    In evaluation the statistics are constants: dx = g * inv_std.
    """
    # BEGIN SOLUTION Exercise 1.6: compute dx, dgamma and dbeta of batch norm
    xhat, inv_std, gamma = cache["xhat"], cache["inv_std"], cache["gamma"]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    g = dout * gamma
    if cache["train"]:
        dx = g - g.mean(axis=0)
        dx -= xhat * (g * xhat).mean(axis=0)
        dx *= inv_std
    else:
        dx = g * inv_std
    return dx, dgamma, dbeta
    # END SOLUTION


# -------------------------------------------------------------------------- losses


def _check_same_shape(pred, target, name):
    if pred.shape != target.shape:
        raise ValueError(
            f"{name}: predictions have shape {pred.shape} but targets have shape "
            f"{target.shape}; they must match (reshape the targets, e.g. y.reshape(-1, 1)).")


def bce_with_logits(logits, targets):
    """Binary cross-entropy on logits z, averaged over every entry.

    Per entry, with y in [0, 1] (soft targets allowed):
        l(z, y) = -y log s(z) - (1 - y) log(1 - s(z))
                = max(z, 0) - z * y + log(1 + exp(-|z|)),
    the second form is finite for any z (no exp overflow, no log(0)).
    Gradient of the mean: dl/dz = (s(z) - y) / n.
    Returns (loss as a 0-d array, dlogits with the shape of logits).
    """
    # BEGIN SOLUTION Exercise 2.1: compute the stable mean BCE on logits and its gradient
    xp = array_module(logits, targets)
    _check_same_shape(logits, targets, "bce_with_logits")
    n = logits.size
    losses = xp.maximum(logits, 0)
    losses -= logits * targets
    losses += xp.log1p(xp.exp(-xp.abs(logits)))
    loss = losses.mean()
    dlogits = sigmoid(logits)
    dlogits -= targets
    dlogits *= 1.0 / n
    return loss, dlogits
    # END SOLUTION


def bce(probs, targets):
    """Binary cross-entropy on probabilities p = D(x), averaged over every entry.

    l(p, y) = -y log p - (1 - y) log(1 - p); dl/dp = (p - y) / (p (1 - p)) / n.
    Kept for teaching: it is worse than ``bce_with_logits``. Once a sigmoid has
    rounded p to exactly 0 or 1 (float32 does so for |z| > ~17) the log is -inf
    and the gradient divides by zero; and even before that, the chain through
    the sigmoid multiplies by p (1 - p), which underflows. As PyTorch's BCELoss
    does, each log is clamped at -100 and the denominator at 1e-12, so the loss
    stays finite, but the information in large logits is lost.
    """
    xp = array_module(probs, targets)
    _check_same_shape(probs, targets, "bce")
    n = probs.size
    with np.errstate(divide="ignore"):  # log(0) = -inf is expected here, then clamped
        log_p = xp.maximum(xp.log(probs), -100.0)
        log_1mp = xp.maximum(xp.log1p(-probs), -100.0)
    loss = -(targets * log_p + (1.0 - targets) * log_1mp).mean()
    dprobs = (probs - targets) / xp.maximum(probs * (1.0 - probs), 1e-12)
    dprobs *= 1.0 / n
    return loss, dprobs


def mse(pred, target):
    """Mean squared error mean((pred - target)^2) and its gradient 2 (pred - target) / n."""
    _check_same_shape(pred, target, "mse")
    diff = pred - target
    loss = (diff * diff).mean()
    diff *= 2.0 / pred.size
    return loss, diff


def log_softmax(logits):
    """log softmax over the last axis, shifted by the max so exp never overflows."""
    xp = array_module(logits)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    shifted -= xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))
    return shifted


def softmax_cross_entropy(logits, targets):
    """Cross-entropy of softmax(logits) against class labels, averaged over the batch.

    Shapes: logits (N, C); targets either int labels (N,) or probabilities (N, C)
    (soft targets, e.g. label smoothing). With q = softmax(z):
        loss = -mean_n sum_c y_nc log q_nc,   dL/dz = (q sum_c y_nc - y) / N,
    which is (q - y) / N when each row of y sums to 1.
    """
    xp = array_module(logits, targets)
    if logits.ndim != 2:
        raise ValueError(f"softmax_cross_entropy expects logits of shape (N, C), got {logits.shape}")
    n, c = logits.shape
    if targets.ndim == 1:
        if targets.dtype.kind not in "iu":
            raise TypeError(f"class labels must be integers, got dtype {targets.dtype}")
        if targets.shape[0] != n:
            raise ValueError(f"got {targets.shape[0]} labels for {n} rows of logits")
        onehot = xp.zeros_like(logits)
        onehot[xp.arange(n), targets] = 1.0
        targets = onehot
        row_sums = None  # one-hot rows sum to 1
    else:
        _check_same_shape(logits, targets, "softmax_cross_entropy")
        # dL/dz = (q * sum_c y_c - y) / N; the sum is 1 for probabilities, but
        # PyTorch accepts any non-negative soft target and so does this.
        row_sums = targets.sum(axis=-1, keepdims=True)
    logq = log_softmax(logits)
    loss = -(targets * logq).sum() * (1.0 / n)
    dlogits = xp.exp(logq)
    if row_sums is not None:
        dlogits *= row_sums
    dlogits -= targets
    dlogits *= 1.0 / n
    return loss, dlogits


def least_squares(pred, target):
    """Least-squares GAN loss 0.5 * mean((pred - target)^2) on raw D outputs, and its gradient.

    LSGAN (Mao et al. 2017) uses this instead of BCE; d/dpred = (pred - target) / n.
    """
    _check_same_shape(pred, target, "least_squares")
    diff = pred - target
    loss = 0.5 * (diff * diff).mean()
    diff *= 1.0 / pred.size
    return loss, diff


def softplus(x):
    """log(1 + exp(x)), stable for any x: max(x, 0) + log1p(exp(-|x|))."""
    xp = array_module(x)
    return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))


__all__ = [
    "dense_forward", "dense_backward",
    "relu_forward", "relu_backward", "leaky_relu_forward", "leaky_relu_backward",
    "sigmoid", "sigmoid_forward", "sigmoid_backward", "tanh_forward", "tanh_backward",
    "dropout_mask", "dropout_forward", "dropout_backward",
    "batchnorm_forward", "batchnorm_backward",
    "bce_with_logits", "bce", "mse", "least_squares", "log_softmax",
    "softmax_cross_entropy", "softplus",
]
