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


# ---------------------------------------------------------------------- convolutions
#
# Images are NCHW, as in PyTorch: x[n, c, h, w]. A (kH, kW) kernel slides over the
# zero-padded image in steps of the stride; output pixel (h, w) sees the window of
# the padded image whose top-left corner is at (sH * h, sW * w). Everything below is
# built from two data movers, im2col (windows -> columns) and col2im (its adjoint),
# and matrix products: a convolution is a dense layer applied to every window.


def _pair(value, name):
    """(a, b) from an int or a pair of ints: kernel_size=4 means (4, 4), as in PyTorch."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                 for v in pair):
        raise TypeError(f"{name} must be an int or a pair of ints (height, width), got {value!r}")
    return int(pair[0]), int(pair[1])


def conv_params(kernel_size, stride=1, padding=0):
    """((kH, kW), (sH, sW), (pH, pW)) from ints or pairs, checked: kernel and stride
    at least 1, padding at least 0."""
    k, s, p = _pair(kernel_size, "kernel_size"), _pair(stride, "stride"), _pair(padding, "padding")
    if min(k) < 1 or min(s) < 1 or min(p) < 0:
        raise ValueError(f"a convolution needs kernel_size >= 1, stride >= 1 and padding >= 0; "
                         f"got kernel_size={k}, stride={s}, padding={p}")
    return k, s, p


def conv2d_output_shape(in_hw, kernel_size, stride=1, padding=0):
    """(H_out, W_out) of a convolution of an (H, W) image: per axis
    floor((H + 2 p - k) / s) + 1, the number of windows that fit in the padded image."""
    (kH, kW), (sH, sW), (pH, pW) = conv_params(kernel_size, stride, padding)
    H, W = in_hw
    if H + 2 * pH < kH or W + 2 * pW < kW:
        raise ValueError(
            f"a {kH}x{kW} kernel does not fit in a {H}x{W} image padded by {(pH, pW)}: the "
            f"padded image is {H + 2 * pH}x{W + 2 * pW}; use a larger image, a smaller kernel "
            "or more padding")
    return (H + 2 * pH - kH) // sH + 1, (W + 2 * pW - kW) // sW + 1


def conv_transpose2d_output_shape(in_hw, kernel_size, stride=1, padding=0, output_padding=0):
    """(H_out, W_out) of a transposed convolution of an (H, W) image: per axis
    (H - 1) s - 2 p + k + output_padding, the largest image (for output_padding = s - 1)
    or smallest (for 0) that a convolution with these settings maps to size H.

    output_padding must be smaller than the stride (PyTorch's rule, with dilation 1):
    from output_padding = s on, the convolution would give H + 1, not H.
    """
    (kH, kW), (sH, sW), (pH, pW) = conv_params(kernel_size, stride, padding)
    opH, opW = _pair(output_padding, "output_padding")
    if not (0 <= opH < sH and 0 <= opW < sW):
        raise ValueError(
            f"output_padding must be at least 0 and smaller than the stride (PyTorch's rule; "
            f"dilation is 1 here), got output_padding={(opH, opW)} with stride={(sH, sW)}")
    H, W = in_hw
    out = ((H - 1) * sH - 2 * pH + kH + opH, (W - 1) * sW - 2 * pW + kW + opW)
    if min(out) < 1:
        raise ValueError(
            f"a transposed convolution of a {H}x{W} image with kernel {(kH, kW)}, stride "
            f"{(sH, sW)}, padding {(pH, pW)} would have size {out}: the padding removes "
            "more than the kernel adds; use less padding")
    return out


def _check_image(x, fn, name="x", channels=None):
    if x.ndim != 4:
        raise ValueError(f"{fn}: {name} must be a batch of images (N, C, H, W) (NCHW, as in "
                         f"PyTorch), got shape {tuple(x.shape)}; add the missing axes, e.g. "
                         "x.reshape(N, 1, H, W) for one channel")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{fn}: {name} has {x.shape[1]} channels (shape {tuple(x.shape)}) but "
                         f"the weights expect {channels}")


def _check_conv_args(fn, x, W, b, layout, in_axis, out_axis):
    """Shapes and dtypes of a convolution's x, W (``layout`` names W's axes) and b."""
    if W.ndim != 4:
        raise ValueError(f"{fn}: W must have shape {layout}, got {tuple(W.shape)}")
    _check_image(x, fn, channels=W.shape[in_axis])
    if b is not None and tuple(b.shape) != (W.shape[out_axis],):
        raise ValueError(f"{fn}: b must have shape ({W.shape[out_axis]},), one per output "
                         f"channel, got {tuple(b.shape)}")
    if any(a.dtype != x.dtype for a in (W, b) if a is not None):
        raise TypeError(f"{fn}: x is {x.dtype} but W or b is not; convert them to one dtype "
                        "(minigan never mixes dtypes silently)")


def im2col(x, kH, kW, stride=1, padding=0):
    """Every (kH, kW) window of the padded images, flattened into a column.

    Shapes: x (N, C, H, W) -> cols (N, C kH kW, H_out W_out), with (H_out, W_out)
    from ``conv2d_output_shape``. Column l = h W_out + w of sample n holds the window
    under output pixel (h, w), flattened in (c, i, j) order, the order of
    ``W.reshape(C_out, -1)`` for a conv2d weight W (C_out, C, kH, kW); this is
    PyTorch's ``unfold`` layout. Windows overlap when the stride is smaller than
    the kernel, so a pixel is copied into several columns.

    Kernel offset (i, j) meets padded pixel (sH h + i, sW w + j) at output pixel
    (h, w): for each of the kH kW offsets, one strided slice of the padded images
    fills one row of every window at once (no loop over pixels or samples).
    """
    xp = array_module(x)
    _check_image(x, "im2col")
    N, C, H, W = x.shape
    (kH, kW), (sH, sW), (pH, pW) = conv_params((kH, kW), stride, padding)
    H_out, W_out = conv2d_output_shape((H, W), (kH, kW), (sH, sW), (pH, pW))
    x_pad = xp.pad(x, ((0, 0), (0, 0), (pH, pH), (pW, pW)))
    cols = xp.empty((N, C, kH, kW, H_out, W_out), dtype=x.dtype)
    for i in range(kH):
        for j in range(kW):
            cols[:, :, i, j] = x_pad[:, :, i:i + sH * H_out:sH, j:j + sW * W_out:sW]
    return cols.reshape(N, C * kH * kW, H_out * W_out)


def col2im(cols, x_shape, kH, kW, stride=1, padding=0):
    """The adjoint of ``im2col``: put every column back into its window, ADDING overlaps.

    Shapes: cols (N, C kH kW, H_out W_out) -> (N, C, H, W) = x_shape.

    Why add: im2col is linear, cols = M x, where M copies each pixel into every
    window that contains it (a 0/1 matrix). Its adjoint M^T, the map with
    <M x, c> = <x, M^T c> for all x and c, sends each entry of c back to the
    pixel it was copied from and sums the entries of one pixel. That is what a
    backward pass needs (by the chain rule, a pixel used by several windows
    collects the gradient of each use), and what a transposed convolution does.
    So col2im(im2col(x)) is not x: each pixel comes back multiplied by the number
    of windows it lies in. Sums that land on the padding are dropped (the padding
    is a constant, not an input).
    """
    xp = array_module(cols)
    N, C, H, W = x_shape
    (kH, kW), (sH, sW), (pH, pW) = conv_params((kH, kW), stride, padding)
    H_out, W_out = conv2d_output_shape((H, W), (kH, kW), (sH, sW), (pH, pW))
    if tuple(cols.shape) != (N, C * kH * kW, H_out * W_out):
        raise ValueError(f"col2im: cols must have shape {(N, C * kH * kW, H_out * W_out)} for "
                         f"images of shape {tuple(x_shape)}, got {tuple(cols.shape)}")
    # BEGIN SOLUTION Exercise 12.1: add each column back into its window, then drop the padding
    cols = cols.reshape(N, C, kH, kW, H_out, W_out)
    x_pad = xp.zeros((N, C, H + 2 * pH, W + 2 * pW), dtype=cols.dtype)
    for i in range(kH):
        for j in range(kW):
            x_pad[:, :, i:i + sH * H_out:sH, j:j + sW * W_out:sW] += cols[:, :, i, j]
    if pH == pW == 0:
        return x_pad
    return xp.ascontiguousarray(x_pad[:, :, pH:pH + H, pW:pW + W])
    # END SOLUTION


def conv2d_forward(x, W, b, stride=1, padding=0):
    """2-D convolution (cross-correlation, as in every deep-learning library).

    Shapes: x (N, C_in, H, W), W (C_out, C_in, kH, kW), b (C_out,) or None
    -> out (N, C_out, H_out, W_out), with (H_out, W_out) from ``conv2d_output_shape``.

        out[n, o, h, w] = b[o] + sum_{c,i,j} W[o, c, i, j] x_pad[n, c, sH h + i, sW w + j]

    With cols = im2col(x) (N, C_in kH kW, L), L = H_out W_out, and the weights as
    a matrix W_row = W.reshape(C_out, C_in kH kW), that sum is one matrix product
    per sample: out[n] = W_row @ cols[n] + b. A convolution is a dense layer applied
    to every window, with the weights shared by all windows. The cache holds cols
    (the backward needs the windows, not x).
    """
    _check_conv_args("conv2d_forward", x, W, b, "(C_out, C_in, kH, kW)", in_axis=1, out_axis=0)
    C_out, _, kH, kW = W.shape
    H_out, W_out = conv2d_output_shape(x.shape[2:], (kH, kW), stride, padding)
    cols = im2col(x, kH, kW, stride, padding)           # (N, C_in kH kW, L)
    out = W.reshape(C_out, -1) @ cols                   # (N, C_out, L)
    if b is not None:
        out += b.reshape(C_out, 1)
    out = out.reshape(x.shape[0], C_out, H_out, W_out)
    return out, (cols, x.shape, W, stride, padding, b is not None)


def conv2d_backward(dout, cache, *, need_dx=True, need_param_grads=True):
    """Gradients (dx, dW, db) of ``conv2d_forward``.

    Per sample the forward is a dense layer, out[n] = W_row @ cols[n] + b, so with
    dout[n] as a (C_out, L) matrix:

        dW_row   = sum_n dout[n] @ cols[n].T   (C_out, C_in kH kW): sums over samples
                                                and windows (the weights are shared)
        db       = sum of dout over n, h, w    (C_out,)
        dcols[n] = W_row.T @ dout[n]           (C_in kH kW, L)
        dx       = col2im(dcols)               (N, C_in, H, W)

    col2im adds up the gradients of every window a pixel lies in. (For stride 1,
    dx is itself a convolution: of dout padded by k - 1 - p, with the kernel
    flipped in both axes and its two channel axes swapped.)
    ``need_dx`` and ``need_param_grads`` skip what is not needed (returned as None),
    as in ``dense_backward``. db is None when the forward had no bias.
    """
    # BEGIN SOLUTION Exercise 12.2: compute dx, dW and db of conv2d (dx may call col2im)
    xp = array_module(dout)
    cols, x_shape, W, stride, padding, has_bias = cache
    C_out, _, kH, kW = W.shape
    dout = dout.reshape(dout.shape[0], C_out, -1)       # (N, C_out, L)
    dx = dW = db = None
    if need_param_grads:
        dW = xp.tensordot(dout, cols, axes=([0, 2], [0, 2])).reshape(W.shape)
        db = dout.sum(axis=(0, 2)) if has_bias else None
    if need_dx:
        dcols = W.reshape(C_out, -1).T @ dout           # (N, C_in kH kW, L)
        dx = col2im(dcols, x_shape, kH, kW, stride, padding)
    return dx, dW, db
    # END SOLUTION


def conv_transpose2d_forward(x, W, b, stride=1, padding=0, output_padding=0):
    """Transposed convolution: the adjoint of ``conv2d_forward`` (without its bias).

    Shapes: x (N, C_in, H, W), W (C_in, C_out, kH, kW), b (C_out,) or None
    -> out (N, C_out, H_out, W_out), H_out = (H - 1) sH - 2 pH + kH + output_padding.

    Why it is conv2d's input gradient. Read W as the weight of a convolution that
    goes the other way, from C_out channels to C_in (conv2d's layout (C_out', C_in',
    kH, kW) with C_out' = C_in: that is why PyTorch stores W as (C_in, C_out, ...)).
    That convolution is linear in its input, conv(y) = A y for a matrix A, and the
    transposed convolution is A^T, the map with

        <conv(y), x> = <y, conv_T(x)>   for every y (N, C_out, H_out, W_out), x (N, C_in, H, W).

    conv2d_backward computes A^T already: for L = <conv(y), x>, dL/d conv(y) = x and
    dL/dy = A^T x. So, step by step as there, with W_row = W.reshape(C_in, C_out kH kW):

        cols[n] = W_row.T @ x[n]     (C_out kH kW, H W): each input pixel's weighted
                                       copy of the kernel, one column per pixel
        out     = col2im(cols) + b   the copies land in their windows and overlaps add

    With stride s each input pixel moves s output pixels on: an upsampling by s
    (several H_out give the same conv2d output size H; output_padding picks one).
    """
    _check_conv_args("conv_transpose2d_forward", x, W, b, "(C_in, C_out, kH, kW)",
                     in_axis=0, out_axis=1)
    N, C_in, H, W_in = x.shape
    _, C_out, kH, kW = W.shape
    H_out, W_out = conv_transpose2d_output_shape((H, W_in), (kH, kW), stride, padding,
                                                 output_padding)
    cols = W.reshape(C_in, -1).T @ x.reshape(N, C_in, H * W_in)    # (N, C_out kH kW, H W)
    out = col2im(cols, (N, C_out, H_out, W_out), kH, kW, stride, padding)
    if b is not None:
        out += b.reshape(C_out, 1, 1)
    return out, (x, W, stride, padding, b is not None)


def conv_transpose2d_backward(dout, cache, *, need_dx=True, need_param_grads=True):
    """Gradients (dx, dW, db) of ``conv_transpose2d_forward``.

    The forward is the linear map A^T (plus the bias), so its input gradient is
    (A^T)^T = A: a plain convolution of dout with the same W. In im2col terms,
    with dcols = im2col(dout) (N, C_out kH kW, H W) (the windows of dout that each
    input pixel's kernel copy landed on) and W_row = W.reshape(C_in, C_out kH kW):

        dx[n]  = W_row @ dcols[n]               (C_in, H W)
        dW_row = sum_n x[n] @ dcols[n].T        (C_in, C_out kH kW)
        db     = sum of dout over n, h, w       (C_out,)

    dout's windows fit exactly H x W times: output_padding only added rows that
    no window of a stride-s convolution reaches in full.
    """
    xp = array_module(dout)
    x, W, stride, padding, has_bias = cache
    N, C_in, H, W_in = x.shape
    _, _, kH, kW = W.shape
    dcols = im2col(dout, kH, kW, stride, padding)                  # (N, C_out kH kW, H W)
    dx = dW = db = None
    if need_dx:
        dx = (W.reshape(C_in, -1) @ dcols).reshape(x.shape)
    if need_param_grads:
        x_rows = x.reshape(N, C_in, H * W_in)
        dW = xp.tensordot(x_rows, dcols, axes=([0, 2], [0, 2])).reshape(W.shape)
        db = dout.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dW, db


def _check_batchnorm2d(x, gamma, train):
    _check_image(x, "batchnorm2d_forward", channels=gamma.shape[0])
    N, _, H, W = x.shape
    if train and N * H * W < 2:
        raise ValueError(f"batchnorm2d in training mode needs at least 2 values per channel "
                         f"(N H W >= 2), got x of shape {tuple(x.shape)}")


def batchnorm2d_forward(x, gamma, beta, *, train=True, running_mean=None,
                        running_var=None, eps=1e-5):
    """Batch normalisation of images, per channel over (N, H, W).

    Shapes: x (N, C, H, W), gamma (C,), beta (C,) -> out (N, C, H, W).
    It is ``batchnorm_forward`` with each channel a feature and every pixel of
    every sample one of its samples: with the channels moved last, x becomes
    (N H W, C) rows and the 1-d math applies unchanged (statistics over N H W
    values per channel; the cache's "var" is their biased variance).
    """
    _check_batchnorm2d(x, gamma, train)
    N, C, H, W = x.shape
    rows = x.transpose(0, 2, 3, 1).reshape(-1, C)                  # (N H W, C)
    out, cache = batchnorm_forward(rows, gamma, beta, train=train, running_mean=running_mean,
                                   running_var=running_var, eps=eps)
    xp = array_module(out)
    return xp.ascontiguousarray(out.reshape(N, H, W, C).transpose(0, 3, 1, 2)), cache


def batchnorm2d_backward(dout, cache):
    """Gradients (dx, dgamma, dbeta) of ``batchnorm2d_forward``: ``batchnorm_backward``
    on the (N H W, C) rows, and dx back to (N, C, H, W)."""
    xp = array_module(dout)
    N, C, H, W = dout.shape
    rows = dout.transpose(0, 2, 3, 1).reshape(-1, C)
    drows, dgamma, dbeta = batchnorm_backward(rows, cache)
    dx = xp.ascontiguousarray(drows.reshape(N, H, W, C).transpose(0, 3, 1, 2))
    return dx, dgamma, dbeta


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
    "conv_params", "conv2d_output_shape", "conv_transpose2d_output_shape", "im2col", "col2im",
    "conv2d_forward", "conv2d_backward", "conv_transpose2d_forward", "conv_transpose2d_backward",
    "batchnorm2d_forward", "batchnorm2d_backward",
    "bce_with_logits", "bce", "mse", "least_squares", "log_softmax",
    "softmax_cross_entropy", "softplus",
]
