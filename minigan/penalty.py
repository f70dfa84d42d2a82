"""Gradient penalties on the discriminator, through a hand-written double backward.

A gradient penalty asks D to be smooth in its input: WGAN-GP (Gulrajani et al.
2017) pulls the norm of dD/dx towards 1 at points between real and fake data,
R1 (Mescheder et al. 2018) pulls it towards 0 at real data. The penalty is a
function of a GRADIENT, so its own gradient with respect to D's parameters is a
gradient of a gradient. Without autograd it is derived and written here, layer
by layer.

    input_gradient_penalty(D, x, weight, center) -> loss    (adds dP/dtheta into D's grads)
    GradientPenalty(weight=10, center=1)    regularizer(D, real, fake): at interpolates
    R1(gamma=10, every=1)                   regularizer(D, real, fake): at the real batch
                                            (every k-th D step only: lazy R1)

The penalty. D is a chain of layers h_k = f_k(h_{k-1}; theta_k), k = 1..K, from
h_0 = x (n, ...) to the output y = h_K (n_out, 1). D must treat each row of its
input on its own (no batch statistics), so that the gradient of sum(y) with
respect to x holds, for each output row, the gradient of that output alone:

    g = d sum(y) / dx            (shape of x),   one row g_i per output row
    P = weight * mean_i (||g_i|| - center)^2     i = 1..n_out

Which entries make up "g_i": those of the D input row that output i depends on,
after packing. Without ``Pack`` that is sample i (n_out = n). A D starting with
``Pack(m)`` judges m samples at once, so g_i is the gradient with respect to the
whole pack, (m * d) numbers, and the norm is over the pack (n_out = n / m),
not over each of its samples: the pack is D's input, and the Lipschitz
constraint is on D as a function of it.

First backward: g is D's ordinary input gradient for upstream ones,
    delta_K = 1,   delta_{k-1} = B_k(delta_k) = J_k^T delta_k,   g = delta_0
where J_k = d h_k / d h_{k-1} (Dense: delta W^T; elementwise phi: phi'(h) * delta).

The norm. ||g_i|| = sqrt(sum g_i^2 + eps_norm) with eps_norm = 1e-24: at g_i = 0
the true norm's gradient g_i / ||g_i|| is 0/0 (NaN), the smoothed one's is 0
there (PyTorch's norm also takes 0), and everywhere |g_i / ||g_i||| <= 1. Its
value differs from the true norm by at most sqrt(eps_norm) = 1e-12, reached at
g_i = 0 only (a row of dead ReLUs, or an all-zero D): a larger eps, such as
1e-12, would show there as a penalty 2e-6 weight / n_out too high. 1e-24 is a
normal number in float32 too, so the guard works in either dtype.
With center = 0 (R1) the square root is not taken at all: P = weight * mean ||g_i||^2.
The adjoint of g is
    a_0 = dP/dg,   a_0,i = (2 weight / n_out) (||g_i|| - center) g_i / ||g_i||
                   (center 0: (2 weight / n_out) g_i)

Second pass (the double backward). P depends on theta through every delta_k, and
each delta_{k-1} = B_k(delta_k, h_{k-1}, theta_k) depends on its layer's
parameters, its input h_{k-1} (the forward pass) and linearly on delta_k. Let
a_k = dP/d delta_k. Sweep the layers FORWARD, k = 1..K, carrying a:
    a_k      = J_k a_{k-1}                          (a Jacobian-vector product:
                                                     Dense a -> a @ W; phi: phi'(h) * a)
    dtheta_k += d <a_{k-1}, B_k(delta_k, h_{k-1}, theta_k)> / d theta_k
                Dense: <a, delta W^T> gives dW += a^T delta (in, out), db += 0
    r_{k-1}  = d <a_{k-1}, B_k(...)> / d h_{k-1}   (a gradient on the forward's h)
                Dense: 0;  phi: r = a * delta * phi''(h)
The r's are gradients of P with respect to the forward activations h_0..h_{K-1};
one ORDINARY backward sweep of the forward graph carries them to the parameters:
    rho_{K-1} = r_{K-1},  rho_{k-1} = J_k^T rho_k + r_{k-1}
    Dense k: dW += h_{k-1}^T rho_k,  db += sum_rows rho_k
The second derivatives phi'' of the activations:
    ReLU, LeakyReLU: 0 (off the kink)     so in an all-(leaky-)ReLU D the r's are 0
    Tanh:    t = tanh(h),    phi' = 1 - t^2,    phi'' = -2 t (1 - t^2)
    Sigmoid: s = sigmoid(h), phi' = s (1 - s), phi'' = s (1 - s) (1 - 2 s)
They matter: a tanh or sigmoid D gets wrong parameter gradients without them.

Convolutions. A Conv2d is a Dense layer applied to every window of its input,
out = conv(h, W) + b, and is bilinear in (h, W) exactly as h @ W is, so each line
above for Dense holds with the matrix product replaced by the convolution:
    a_k      = conv(a_{k-1}, W)                     (the forward without the bias)
    B_k      = conv's input gradient (a transposed convolution of delta_k)
    dtheta_k += dW of a convolution with input a_{k-1} and upstream delta_k
                (<a, B(delta)> = <conv(a, W), delta>, linear in W),  r = 0
    dW += dW of a convolution with input h_{k-1} and upstream rho_k,  db += sum rho_k
A ConvTranspose2d is linear too, with the roles of conv and its adjoint swapped;
Flatten and Reshape are reshapes both ways, like Pack.

Spectral norm inside D: in training mode the penalty's forward pass is a forward
like any other, so each ``SpectralNorm`` layer runs its power iteration once more
(as PyTorch's does when the critic is called on the interpolates); its W_sn = W /
sigma is then treated like the weight of the Dense or Conv2d it wraps, and dP/dW_sn
goes through the wrapper's W / sigma backward (u and v held fixed) into the raw
W's gradient.

Layers supported: Dense, Conv2d, ConvTranspose2d, ReLU, LeakyReLU, Tanh, Sigmoid,
Pack, Flatten, Reshape (and ``minigan.models.Scale``, a fixed factor), the
``SpectralNorm`` wrapper around a Dense or a Conv2d, and any nesting of them in
``Sequential``, or a ``ProjectionDiscriminator`` (opened into [x, y] -> x, its
body and its head, for a penalty over the image only: ``_ProjectionOutput``).
Batch norm (BatchNorm1d, and BatchNorm2d with it) and Dropout are refused with
the reason; any other layer is refused by name. To support a new layer, add a
rule to ``RULES`` (see ``_Affine``, ``_Convolution``, ``_Elementwise``,
``_Reshape``).
"""

from __future__ import annotations

import copy
import functools
import numbers

import numpy as np

from minigan import kernels
from minigan.backend import array_module, backend_of, check_array, make_rng, to_device
from minigan.layers import (
    BatchNorm1d,
    Conv2d,
    ConvTranspose2d,
    Dense,
    Dropout,
    Flatten,
    LeakyReLU,
    Pack,
    ReLU,
    Reshape,
    Sequential,
    Sigmoid,
    Tanh,
)
from minigan.spectral import SpectralNorm

__all__ = ["input_gradient_penalty", "check_penalty", "GradientPenalty", "R1", "NORM_EPS"]

#: added to sum(g_i^2) under the square root (see the module docstring)
NORM_EPS = 1e-24


# ------------------------------------------------------------------ per-layer rules
#
# A rule knows one kind of layer. ``forward`` returns (out, ctx); every other
# method takes that ctx. Parameter gradients are returned as {name: array}; the
# rule's ``add_grads`` puts the sum of everything returned into the layer's grads.


class _Affine:
    """out = h @ W + b (Dense), or the same with W_sn = W / sigma (SpectralNorm(Dense)).

    Bilinear in (h, W), so <a, B(delta)> = <a, delta W^T> = <a @ W, delta>:
    its W-gradient is a^T delta, what a Dense backward gives for input a and
    upstream delta; it does not depend on h (r = 0) or on b.
    """

    def forward(self, layer, h):
        if isinstance(layer, SpectralNorm):
            W, sn_ctx = layer.normalized_weight()    # one power iteration when training
            b = layer.layer.params["b"]
        else:
            W, sn_ctx, b = layer.params["W"], None, layer.params["b"]
        out = h @ W
        out += b
        return out, (h, W, sn_ctx)

    def input_backward(self, ctx, delta):
        _, W, _ = ctx
        return delta @ W.T

    def jvp(self, ctx, a):
        _, W, _ = ctx
        return a @ W

    def second(self, ctx, a, delta):
        return {"W": a.T @ delta}, None

    def backward(self, ctx, rho, need_dx):
        h, W, _ = ctx
        return (rho @ W.T if need_dx else None), {"W": h.T @ rho, "b": rho.sum(axis=0)}

    def add_grads(self, layer, ctx, grads):
        _add_weight_grads(layer, ctx[2], grads)


def _add_weight_grads(layer, sn_ctx, grads):
    """Add {"W": ..., "b": ...} into a Dense's or convolution's grads; for a
    SpectralNorm wrapper (sn_ctx not None) grads["W"] is dP/dW_sn, which goes
    through W / sigma into the raw W's gradient."""
    if sn_ctx is not None:
        inner = layer.layer
        inner.grads["W"] += layer.weight_backward(grads["W"], sn_ctx)
        if "b" in grads:
            inner.grads["b"] += grads["b"]
        return
    for k, g in grads.items():
        layer.grads[k] += g


class _Convolution:
    """out = conv(h, W) + b (Conv2d, ConvTranspose2d, SpectralNorm(Conv2d)): _Affine's
    four facts with the matrix product replaced by the convolution.

    A convolution is a Dense layer applied to every window of h, with the weights
    shared by all windows, so it is bilinear in (h, W) as h @ W is. Write
    conv(h, W) = A_W h for the linear map A_W (no bias). Then
        J a      = A_W a = conv(a, W)                 (the forward without the bias)
        B(delta) = A_W^T delta                        (the layer's input gradient)
        <a, B(delta)> = <A_W a, delta> = <conv(a, W), delta>
    and the last is linear in W: its W-gradient is the weight gradient of a
    convolution whose input is a and whose upstream gradient is delta (for a
    Dense layer, a^T delta). It does not depend on h (r = 0) or on b. The
    ordinary backward of rho gives dW, db and dh as for any upstream gradient.

    Shapes (Conv2d): h and a (n, C_in, H, W); delta and rho (n, C_out, H_out, W_out);
    dW (C_out, C_in, kH, kW), db (C_out,). A transposed convolution is the same
    with A_W the adjoint of a convolution; each uses its own forward and backward
    ops from ``minigan.kernels``.

    J a and the W-gradient of <conv(a, W), delta> both need the windows of a
    (im2col): the kernel op's cache keeps what they are built from (the padded a),
    and ``second`` leaves J a in ctx for the ``jvp`` that follows it on the same a.
    """

    def __init__(self, forward, backward, settings):
        self._forward = forward      # kernels.conv*_forward(x, W, b, *settings) -> (out, cache)
        self._backward = backward    # kernels.conv*_backward(dout, cache, gW, gb, ...) -> dx
        self._settings = settings    # layer -> (stride, padding[, output_padding])

    def forward(self, layer, h):
        spectral = isinstance(layer, SpectralNorm)
        conv = layer.layer if spectral else layer
        conv._check_image(h)         # the layer's own error for a wrong input shape
        if spectral:
            W, sn_ctx = layer.normalized_weight()    # one power iteration when training
        else:
            W, sn_ctx = conv.params["W"], None
        b, settings = conv.params.get("b"), self._settings(conv)
        out, cache = self._forward(h, W, b, *settings)
        return out, _ConvContext(cache, W, b, settings, sn_ctx)

    def input_backward(self, ctx, delta):
        return self._backward(delta, ctx.cache, None, None, need_param_grads=False)

    def jvp(self, ctx, a):
        if ctx.a is a:                                # second() computed it already
            out, ctx.a, ctx.Ja = ctx.Ja, None, None
            return out
        return self._forward(a, ctx.W, None, *ctx.settings)[0]

    def second(self, ctx, a, delta):
        Ja, cache_a = self._forward(a, ctx.W, None, *ctx.settings)
        ctx.a, ctx.Ja = a, Ja
        dW = array_module(ctx.W).zeros_like(ctx.W)
        self._backward(delta, cache_a, dW, None, need_dx=False)
        return {"W": dW}, None

    def backward(self, ctx, rho, need_dx):
        xp = array_module(ctx.W)
        grads = {"W": xp.zeros_like(ctx.W)}
        if ctx.b is not None:
            grads["b"] = xp.zeros_like(ctx.b)
        dx = self._backward(rho, ctx.cache, grads["W"], grads.get("b"), need_dx=need_dx)
        return dx, grads

    def add_grads(self, layer, ctx, grads):
        _add_weight_grads(layer, ctx.sn_ctx, grads)


class _ConvContext:
    """What a convolution's forward leaves for the penalty's other passes: the kernel
    op's cache (the padded h, whose windows its backward builds), the weight used (W_sn under spectral norm), the
    bias, the settings, the spectral-norm ctx, and J a of ``second`` for ``jvp``."""

    __slots__ = ("cache", "W", "b", "settings", "sn_ctx", "a", "Ja")

    def __init__(self, cache, W, b, settings, sn_ctx):
        self.cache, self.W, self.b, self.settings, self.sn_ctx = cache, W, b, settings, sn_ctx
        self.a = self.Ja = None


class _Elementwise:
    """out = phi(h) elementwise: B(delta) = phi'(h) delta, J a = phi'(h) a,
    r = a delta phi''(h) (None where phi'' = 0); no parameters."""

    def __init__(self, forward, derivatives):
        self._forward = forward            # (layer, h) -> out
        self._derivatives = derivatives    # (layer, h, out) -> (phi', phi'' or None)

    def forward(self, layer, h):
        out = self._forward(layer, h)
        d1, d2 = self._derivatives(layer, h, out)
        return out, (d1, d2)

    def input_backward(self, ctx, delta):
        return ctx[0] * delta

    jvp = input_backward

    def second(self, ctx, a, delta):
        _, d2 = ctx
        return {}, (None if d2 is None else a * delta * d2)

    def backward(self, ctx, rho, need_dx):
        return (ctx[0] * rho if need_dx else None), {}

    def add_grads(self, layer, ctx, grads):
        pass


def _relu_derivatives(layer, h, out):
    return (out > 0).astype(out.dtype), None


def _leaky_relu_derivatives(layer, h, out):
    xp = array_module(h)
    return xp.where(h > 0, 1.0, layer.negative_slope).astype(h.dtype), None


def _tanh_derivatives(layer, h, t):
    d1 = 1.0 - t * t
    return d1, -2.0 * t * d1


def _sigmoid_derivatives(layer, h, s):
    d1 = s * (1.0 - s)
    return d1, d1 * (1.0 - 2.0 * s)


class _Scale(_Elementwise):
    """out = c h for a fixed factor c (``minigan.models.Scale``): phi' = c, phi'' = 0."""

    def __init__(self):
        super().__init__(lambda layer, h: h * layer.factor,
                         lambda layer, h, out: (layer.factor, None))


class _Reshape:
    """A pure reshape (Pack, Flatten, Reshape): J and J^T are reshapes; no parameters.

    The layer's own forward computes the shape (and checks it); its cache is
    put back as it was, so the penalty never disturbs a pending backward.
    """

    def forward(self, layer, h):
        saved = layer._cache
        try:
            out = layer.forward(h)
        finally:
            layer._cache = saved
        return out, (h.shape, out.shape)

    def input_backward(self, ctx, delta):
        return delta.reshape(ctx[0])

    def jvp(self, ctx, a):
        return a.reshape(ctx[1])

    def second(self, ctx, a, delta):
        return {}, None

    def backward(self, ctx, rho, need_dx):
        return (rho.reshape(ctx[0]) if need_dx else None), {}

    def add_grads(self, layer, ctx, grads):
        pass


class _LabelPlanes:
    """LabelPlanes (minigan.models), [x, y] -> the image with its label as constant
    planes: linear and parameter-free, so J a = planes(a), B(delta) = planes^T delta,
    and no second-order term (r = 0)."""

    def forward(self, layer, h):
        return layer.planes(h), layer

    def input_backward(self, layer, delta):
        return layer.planes_adjoint(delta)

    def jvp(self, layer, a):
        return layer.planes(a)

    def second(self, layer, a, delta):
        return {}, None

    def backward(self, layer, rho, need_dx):
        return (layer.planes_adjoint(rho) if need_dx else None), {}

    def add_grads(self, layer, ctx, grads):
        pass


class _ProjectionInput:
    """A ``ProjectionDiscriminator``'s first step, [x, y] -> x for its body (phi); the
    labels y are set aside for ``_ProjectionOutput``, which shares ``labels`` (a
    dict made for one penalty call). A selection of columns, so linear: J a = the
    image columns of a, B(delta) = delta in the image columns and 0 in the label's,
    no second-order term. The label's own slope (dD/dy = V phi, not through the body)
    is left out of B, so the penalty's norm must leave the label columns out too
    (``features`` at most the image's numbers; ConditionalGAN sets it so)."""

    def __init__(self, labels):
        self.labels = labels

    def forward(self, layer, h):
        x, self.labels["y"] = layer.split(h)
        return x, (h.shape, x.shape[1])

    def input_backward(self, ctx, delta):
        shape, d = ctx
        g = array_module(delta).zeros(shape, dtype=delta.dtype)
        g[:, :d] = delta
        return g

    def jvp(self, ctx, a):
        return a[:, :ctx[1]]

    def second(self, ctx, a, delta):
        return {}, None

    def backward(self, ctx, rho, need_dx):
        return (self.input_backward(ctx, rho) if need_dx else None), {}

    def add_grads(self, layer, ctx, grads):
        pass


class _ProjectionOutput:
    """A ``ProjectionDiscriminator``'s head, phi -> psi(phi) + y^T V phi, with the
    labels y that ``_ProjectionInput`` set aside. For labels held fixed it is a
    Dense(F -> 1) whose weight differs per row, v_i = w + y_i V (F,):
        out_i = phi_i . v_i + b,   B(delta)_i = delta_i v_i,   J a_i = a_i . v_i
    bilinear in (phi, (w, V)) as _Affine's layer is in (h, W), so
        <a, B(delta)> = sum_i delta_i a_i . (w + y_i V)
        -> dw += a^T delta (F, 1),  dV += y^T (delta a) (m K, F),  r = 0
    and the ordinary backward of rho: dphi = rho v, dw = phi^T rho, db = sum rho,
    dV = y^T (rho phi). psi may be a SpectralNorm(Dense): w is then its W_sn."""

    def __init__(self, labels):
        self.labels = labels

    def forward(self, layer, phi):
        # psi(phi) = phi w + b, by _Affine (which also takes a SpectralNorm(Dense))
        out, (_, W, sn_ctx) = RULES[Dense].forward(layer.psi, phi)
        y = self.labels["y"]
        v = y @ layer.params["V"]                                  # (n, F): y_i V
        out += (phi * v).sum(axis=1, keepdims=True)
        v += W.T                                                   # w + y_i V
        return out, (phi, v, y, sn_ctx)

    def input_backward(self, ctx, delta):
        return delta * ctx[1]

    def jvp(self, ctx, a):
        return (a * ctx[1]).sum(axis=1, keepdims=True)

    def second(self, ctx, a, delta):
        y = ctx[2]
        return {"W": a.T @ delta, "V": y.T @ (delta * a)}, None

    def backward(self, ctx, rho, need_dx):
        phi, v, y, _ = ctx
        grads = {"W": phi.T @ rho, "b": rho.sum(axis=0), "V": y.T @ (rho * phi)}
        return (rho * v if need_dx else None), grads

    def add_grads(self, layer, ctx, grads):
        grads = dict(grads)
        if "V" in grads:
            layer.grads["V"] += grads.pop("V")
        _add_weight_grads(layer.psi, ctx[3], grads)


def _conv2d_settings(layer):
    return layer.stride, layer.padding


def _conv_transpose2d_settings(layer):
    return layer.stride, layer.padding, layer.output_padding


#: layer type -> rule, looked up by exact type (a subclass needs a rule of its own).
RULES = {
    Dense: _Affine(),
    Conv2d: _Convolution(kernels.conv2d_forward, kernels.conv2d_backward, _conv2d_settings),
    ConvTranspose2d: _Convolution(kernels.conv_transpose2d_forward,
                                  kernels.conv_transpose2d_backward, _conv_transpose2d_settings),
    ReLU: _Elementwise(lambda layer, h: kernels.relu_forward(h)[0], _relu_derivatives),
    LeakyReLU: _Elementwise(lambda layer, h: kernels.leaky_relu_forward(h, layer.negative_slope)[0],
                            _leaky_relu_derivatives),
    Tanh: _Elementwise(lambda layer, h: kernels.tanh_forward(h)[0], _tanh_derivatives),
    Sigmoid: _Elementwise(lambda layer, h: kernels.sigmoid_forward(h)[0], _sigmoid_derivatives),
    Pack: _Reshape(),
    Flatten: _Reshape(),
    Reshape: _Reshape(),
}

#: the layers a SpectralNorm wrapper may hold here, and the rule for each
SPECTRAL_RULES = {Dense: RULES[Dense], Conv2d: RULES[Conv2d]}


@functools.lru_cache(maxsize=None)
def _optional_rules():
    """Rules for layers defined outside ``minigan.layers``, looked up once, on first
    use (minigan.models imports much of the package, so not at import time)."""
    from minigan.models import LabelPlanes, Scale

    return {Scale: _Scale(), LabelPlanes: _LabelPlanes()}


#: by isinstance, so subclasses are refused too (BatchNorm2d is a BatchNorm1d)
_REFUSED = {
    BatchNorm1d: "batch normalisation mixes the samples of a batch, so D(x_i) depends on the "
                 "other samples and a per-sample input gradient is not defined (the WGAN-GP "
                 "paper drops batch norm from the critic; use no normalisation, layer norm "
                 "or SpectralNorm)",
    Dropout: "dropout makes D random, so its input gradient changes from one pass to the "
             "next; build the critic without dropout",
}


def _rule_for(layer):
    for cls, why in _REFUSED.items():
        if isinstance(layer, cls):
            raise TypeError(f"input_gradient_penalty: D contains {layer.short_repr()}, which a "
                            f"gradient penalty cannot go through: {why}.")
    # by exact type: a subclass may compute something else, so it needs its own rule
    if isinstance(layer, SpectralNorm):
        rule = SPECTRAL_RULES.get(type(layer.layer))
    else:
        rule = RULES.get(type(layer)) or _optional_rules().get(type(layer))
    if rule is None:
        raise TypeError(f"input_gradient_penalty: D contains {layer.short_repr()}, which has no "
                        f"second-order (double backward) rule. Supported: {_supported()}, and "
                        "Sequential containers of them (or a ProjectionDiscriminator).")
    return rule


def _supported():
    """The layers with a rule, for the error message: 'Conv2d, ..., SpectralNorm(Dense), ...'."""
    names = sorted({c.__name__ for c in (*RULES, *_optional_rules())})
    names += [f"SpectralNorm({c.__name__})" for c in SPECTRAL_RULES]
    return ", ".join(names)


def _chain(model):
    """The layers of D in forward order, with Sequential containers (and a
    ProjectionDiscriminator) opened, each with its rule: [(layer, rule)]. Raises for a
    layer without a rule (or a container it cannot open) before anything is computed."""
    from minigan.models import ProjectionDiscriminator   # not at import time (see above)

    if type(model) is Sequential:
        return [pair for child in model.layers for pair in _chain(child)]
    if type(model) is ProjectionDiscriminator:
        # opened like a Sequential: [x, y] -> x, the body's layers, the head; the two
        # ends share the labels of this call (y skips the body)
        labels = {}
        return [(model, _ProjectionInput(labels)), *_chain(model.body),
                (model, _ProjectionOutput(labels))]
    return [(model, _rule_for(model))]


# --------------------------------------------------------------------- the penalty


def input_gradient_penalty(D, x, weight, center=1.0, features=None):
    """P = weight * mean_i (||dD(x)/dx_i|| - center)^2; ADDS dP/dtheta into D's grads.

    Args:
        D: the discriminator (a Sequential of supported layers, or a
            ProjectionDiscriminator of them; see the module docstring), in the
            mode it is trained in. Its caches are not used or
            disturbed, so this may run before or after D's loss backward.
        x: (n, ...) the points where D's input gradient is penalised.
        weight: lambda of WGAN-GP (10), gamma / 2 for R1.
        center: 1 for WGAN-GP (a 1-Lipschitz critic), 0 for R1.
        features: None, or k: only the first k numbers of each (flattened) sample
            count in the norm. A conditional GAN's D reads [x, y], the image and
            its one-hot label; the penalty is on D's slope in the image, and a
            penalty on its slope in the label would teach D to ignore the label.
            With the mask M (1 on those entries), P uses M g, and since M M = M
            the adjoint 2 weight M g / n_out (center 0) already has M in it.

    Returns the penalty as a 0-d array of x's dtype (the caller may ``float`` it).
    The gradient with respect to x itself is not computed (x is data, not a
    parameter). Shapes: with y = D(x) of shape (n_out, 1), the norm of output i is
    over the n * (numbers per sample) / n_out entries of x that reach it.
    """
    weight, center = float(weight), float(center)
    chain = _chain(D)
    if not chain:
        raise ValueError("input_gradient_penalty: D has no layers")
    layers, rules = zip(*chain)
    xp = _array_module_of_input(D, x)
    for layer, rule in chain:
        if isinstance(rule, _ProjectionInput):
            _check_image_only(layer, features)

    # forward: h_0 = x, h_k = f_k(h_{k-1})
    ctxs, h = [], x
    for layer, rule in zip(layers, rules):
        h, ctx = rule.forward(layer, h)
        ctxs.append(ctx)
    y = h
    if y.ndim != 2 or y.shape[1] != 1:
        raise ValueError(f"input_gradient_penalty: D's output must have shape (n, 1), got "
                         f"{tuple(y.shape)}")
    n_out = y.shape[0]

    # first backward: delta_K = 1, delta_{k-1} = J_k^T delta_k, g = delta_0
    deltas = [None] * len(layers) + [xp.ones_like(y)]
    for k in range(len(layers), 0, -1):
        deltas[k - 1] = rules[k - 1].input_backward(ctxs[k - 1], deltas[k])
    g = deltas[0]
    if features is not None:
        g = _only_features(g, features)
    g = g.reshape(n_out, -1)                  # one row per D output (per pack)

    penalty, a = _penalty_and_adjoint(g, weight, center, xp)
    a = a.reshape(x.shape)

    _second_pass(layers, rules, ctxs, deltas, a)
    return penalty


def _second_pass(layers, rules, ctxs, deltas, a):
    """dP/dtheta from the adjoint a = dP/dg (shape of x), added into each layer's grads:
    the forward sweep that carries a (and collects the r's), then an ordinary backward
    of the forward graph with the r's injected (the module docstring's second pass)."""
    # second pass, forward: a_k = J_k a_{k-1}; the parameters' and the h's part of
    # d<a_{k-1}, B_k(delta_k, h_{k-1}, theta_k)>
    grads = [{} for _ in layers]
    r = [None] * len(layers)                  # r[k-1]: gradient on h_{k-1}
    for k in range(1, len(layers) + 1):
        rule, ctx = rules[k - 1], ctxs[k - 1]
        pgrads, r[k - 1] = rule.second(ctx, a, deltas[k])
        _accumulate(grads[k - 1], pgrads)
        if k < len(layers):
            a = rule.jvp(ctx, a)

    # an ordinary backward of the forward graph, with r_k injected at h_k
    rho = None                                # gradient on h_k; None while it is zero
    for k in range(len(layers), 0, -1):
        rule, ctx = rules[k - 1], ctxs[k - 1]
        if rho is not None:
            rho, pgrads = rule.backward(ctx, rho, need_dx=k > 1)
            _accumulate(grads[k - 1], pgrads)
        if r[k - 1] is not None:
            rho = r[k - 1] if rho is None else rho + r[k - 1]

    for layer, rule, ctx, g_layer in zip(layers, rules, ctxs, grads):
        if g_layer:
            rule.add_grads(layer, ctx, g_layer)


def _check_image_only(layer, features):
    """A projection D's penalty must leave its label columns out of the norm."""
    if features is None or features > layer.image_dim:
        raise ValueError(
            f"input_gradient_penalty: D is a {type(layer).__name__}, whose input is [x, y] "
            f"with the image's {layer.image_dim} numbers first; the penalty is on D's slope "
            f"in the image only (a slope in the label would teach D to ignore it), so "
            f"features must be at most {layer.image_dim}, got {features}. ConditionalGAN "
            f"sets it; with R1 or GradientPenalty of your own, pass features={layer.image_dim}")


def _only_features(g, features):
    """g with every entry after the first ``features`` of each sample set to 0."""
    per_sample = g.reshape(g.shape[0], -1)
    if isinstance(features, bool) or not isinstance(features, numbers.Integral) \
            or not 0 < features <= per_sample.shape[1]:
        raise ValueError(f"input_gradient_penalty: features must be in 1..{per_sample.shape[1]} "
                         f"(the numbers per sample), got {features}")
    masked = per_sample.copy()
    masked[:, features:] = 0
    return masked.reshape(g.shape)


def _array_module_of_input(D, x):
    """NumPy or CuPy for x, with clear errors when x and D's parameters differ in
    backend or dtype."""
    check_array(x, "input_gradient_penalty: x")
    first = D._first_param()
    if first is None:
        return array_module(x)
    xp = array_module(x, first)   # a clear error when x and D are on different backends
    if x.dtype != first.dtype:
        raise TypeError(f"input_gradient_penalty: x is {x.dtype} but D's parameters are "
                        f"{first.dtype}; convert x with x.astype('{first.dtype}')")
    return xp


def _penalty_and_adjoint(g, weight, center, xp):
    """P = weight * mean_i (||g_i|| - center)^2 over the rows of g (n_out, m), and its
    adjoint a_0 = dP/dg = 2 weight (||g_i|| - center) g_i / (||g_i|| n_out)
    (for center 0, without the square root: dP/dg = 2 weight g_i / n_out)."""
    n_out = g.shape[0]
    sq = (g * g).sum(axis=1, keepdims=True)
    if center == 0.0:
        return weight * sq.mean(), g * (2.0 * weight / n_out)
    norm = xp.sqrt(sq + NORM_EPS)
    gap = norm - center
    return weight * (gap * gap).mean(), g * (gap * (2.0 * weight / n_out) / norm)


def check_penalty(D, x, weight=10.0, center=1.0, *, features=None, eps=None, atol=None,
                  rtol=None):
    """Gradient-check ``input_gradient_penalty``: its parameter gradients against
    central differences of the penalty's value, in float64. Returns a
    ``GradCheckResult`` (``print`` it for the table, test ``.ok``).

    Works on a float64 deep copy of D (D itself is not touched). SpectralNorm
    layers are put in evaluation mode there, so u and v stay fixed and every
    evaluation of the penalty sees the same function. Keep x away from ReLU kinks.
    """
    from minigan import gradcheck as gc   # gradcheck is importable on its own

    eps = gc.DEFAULT_EPS if eps is None else eps
    atol = gc.DEFAULT_ATOL if atol is None else atol
    rtol = gc.DEFAULT_RTOL if rtol is None else rtol
    model = copy.deepcopy(D).astype("float64")
    model.clear_cache()
    for layer in model.modules():
        if isinstance(layer, SpectralNorm):
            layer.eval()
    x = x.astype(np.float64)
    model.zero_grad()
    input_gradient_penalty(model, x, weight, center, features)
    analytic = {name: g.copy() for name, _, g in model.named_parameters()}

    def value():
        return float(input_gradient_penalty(model, x, weight, center, features))

    masked = "" if features is None else f", features={features}"
    result = gc.GradCheckResult(f"input_gradient_penalty(weight={weight:g}, center={center:g}"
                                f"{masked})",
                                eps=eps, atol=atol, rtol=rtol, upstream="scalar penalty")
    for name, p, _ in model.named_parameters():
        numeric = gc.numerical_gradient(value, p, None, eps)
        result.comparisons.append(gc.compare("d" + name, analytic[name], numeric, atol, rtol))
    return result


def _accumulate(into, grads):
    for k, g in grads.items():
        if k in into:
            into[k] = into[k] + g
        else:
            into[k] = g


# ------------------------------------------------------------------ the regularisers


def _check_weight(value, name, who):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) \
            or value < 0:
        raise ValueError(f"{who}: {name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _check_features(features, who):
    if features is not None and (isinstance(features, bool)
                                 or not isinstance(features, numbers.Integral) or features < 1):
        raise ValueError(f"{who}: features must be None (all of D's input) or an integer >= 1 "
                         f"(the first numbers of each sample), got {features!r}")
    return None if features is None else int(features)


def _features_repr(features):
    return "" if features is None else f", features={features}"


class GradientPenalty:
    """WGAN-GP's penalty (Gulrajani et al. 2017), a regulariser of the D step.

    ``regularizer(D, real, fake)``: draws one epsilon per sample,
    eps_i ~ U(0, 1) of shape (n, 1, ..., 1), broadcast over the sample, and
    penalises D's input gradient at the interpolates
        x_hat_i = eps_i x_i^real + (1 - eps_i) x_i^fake
        P = weight * mean_i (||dD(x_hat)/dx_hat_i|| - center)^2
    adding dP/dtheta into D's grads (``input_gradient_penalty``). The optimal
    critic has gradient norm 1 on the lines between real and fake samples, so
    WGAN-GP asks for exactly that there, instead of clipping D's weights.

    ``rng`` (a seed or NumPy generator) draws the epsilons on the host, so a
    seeded run repeats exactly on either backend. ``features = k`` puts only the
    first k numbers of each sample in the norm (a conditional GAN's image, not its
    label columns; see ``input_gradient_penalty``).
    """

    def __init__(self, weight=10.0, center=1.0, rng=None, features=None):
        self.weight = _check_weight(weight, "weight", "GradientPenalty")
        self.center = _check_weight(center, "center", "GradientPenalty")
        self.rng = make_rng(rng)
        self.features = _check_features(features, "GradientPenalty")

    def interpolate(self, real, fake):
        """x_hat = eps real + (1 - eps) fake, one eps ~ U(0, 1) per sample: (x_hat, eps)."""
        if real.shape != fake.shape:
            raise ValueError(f"GradientPenalty: real and fake batches must have the same shape "
                             f"to interpolate, got {tuple(real.shape)} and {tuple(fake.shape)}")
        eps = self.rng.random((real.shape[0],) + (1,) * (real.ndim - 1))
        eps = to_device(eps.astype(real.dtype), backend_of(real))
        return eps * real + (1.0 - eps) * fake, eps

    def __call__(self, D, real, fake):
        x_hat, _ = self.interpolate(real, fake)
        return input_gradient_penalty(D, x_hat, self.weight, self.center, self.features)

    def state_dict(self):
        """The epsilon generator's state (JSON-able), so a resumed run draws the same
        epsilons: a checkpoint that keeps it resumes bit-exactly."""
        return {"rng": copy.deepcopy(self.rng.bit_generator.state)}

    def load_state_dict(self, state):
        self.rng.bit_generator.state = copy.deepcopy(state["rng"])
        return self

    def __repr__(self):
        center = f", center={self.center:g}" if self.center != 1.0 else ""
        return f"GradientPenalty(weight={self.weight:g}{center}{_features_repr(self.features)})"


class R1:
    """R1 (Mescheder et al. 2018): gamma / 2 * mean_i ||dD(x_i)/dx_i||^2 at the REAL batch.

    ``regularizer(D, real, fake)`` ignores ``fake``. Penalising D's gradient on
    the data makes the equilibrium where G matches the data locally stable: D
    cannot keep a slope there that would push G away again. Its gradient is
    ``input_gradient_penalty(D, real, gamma / 2, center=0)``'s.

    ``every = k`` is lazy regularisation (StyleGAN2, Karras et al. 2020): the
    penalty is computed on the first of every k calls only, with weight k times
    gamma / 2, so that over k D steps its gradient adds up to the same amount.
    That makes the same updates on average for SGD only: Adam divides each step by
    a running RMS of the gradient, which the k-fold spikes raise, so with Adam lazy
    R1 pushes less than eager R1 of the same gamma (tune gamma with its ``every``).
    On the DCGAN preset the double backward on every D step makes a whole training
    step 1.34 times as long; with k = 16, 1.05 times (``benchmarks/lazy_r1.py``).
    In between, the call adds nothing and returns the penalty's value at its last
    evaluation (as gamma / 2 * mean ||g||^2, without the factor k), so the logged
    ``d_penalty`` stays comparable.

    ``features = k`` puts only the first k numbers of each sample in the norm: for a
    conditional GAN, whose D reads [x, y], R1 on D's slope in the label too would
    teach D to ignore the label (``input_gradient_penalty``).
    """

    def __init__(self, gamma=10.0, every=1, features=None):
        self.gamma = _check_weight(gamma, "gamma", "R1")
        if isinstance(every, bool) or not isinstance(every, numbers.Integral) or every < 1:
            raise ValueError(f"R1: every must be an integer >= 1 (1 = every D step), got {every!r}")
        self.every = int(every)
        self.features = _check_features(features, "R1")
        self.calls = 0          # D steps seen; the penalty runs when calls % every == 0
        self.last = 0.0         # the penalty at its last evaluation

    def __call__(self, D, real, fake=None):
        due = self.calls % self.every == 0
        self.calls += 1
        if not due:
            return self.last
        # k times the weight once every k steps: the same gradient per step on average
        value = input_gradient_penalty(D, real, 0.5 * self.gamma * self.every, 0.0,
                                       self.features)
        self.last = float(value) / self.every
        return self.last

    def state_dict(self):
        """Where the lazy schedule stands, so a resumed run penalises the same steps
        (``every`` is kept so that loading into an R1 of another period is refused)."""
        return {"calls": self.calls, "last": self.last, "every": self.every}

    def load_state_dict(self, state):
        every = state.get("every", self.every)   # states saved before it was kept: trust
        if every != self.every:
            raise ValueError(f"R1: this state comes from an R1 with every={every}, this one "
                             f"has every={self.every}; the same period resumes the same "
                             "schedule")
        self.calls, self.last = int(state["calls"]), float(state["last"])
        return self

    def __repr__(self):
        every = f", every={self.every}" if self.every != 1 else ""
        return f"R1(gamma={self.gamma:g}{every}{_features_repr(self.features)})"
