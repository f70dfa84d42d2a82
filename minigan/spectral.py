"""Spectral normalisation (Miyato et al. 2018): a layer whose weight has spectral norm 1.

``SpectralNorm(Dense(256, 1))`` (or ``SpectralNorm(Conv2d(64, 128, 4, 2, 1))``)
computes the wrapped layer with W / sigma(W) in place of W, where sigma(W) is the
largest singular value of W as a matrix. A Dense layer is then 1-Lipschitz (for
the bias-free part), and so is a critic built from them with 1-Lipschitz
activations (ReLU, LeakyReLU with slope <= 1, tanh): a cheap way to keep a
discriminator smooth, with no penalty term and no second backward pass.

The weight as a matrix. Singular values are those of a matrix M; for a Dense
layer (W of shape (in, out), ``out = x @ W + b``) this library takes M = W.T, of
shape (out, in), PyTorch's ``nn.Linear.weight``, so that ``u`` and ``v`` mean
what they mean in PyTorch:
    u in R^out (a left singular vector of M),  v in R^in (a right one),
    sigma = u^T M v = v^T W u.

A Conv2d's weight W (C_out, C_in, kH, kW) is taken as PyTorch takes it (its
``dim=0``): M = W.reshape(C_out, C_in kH kW), one row per output channel, the
matrix that multiplies every window of the input (``functional.conv2d_forward``),
so u in R^C_out and v in R^(C_in kH kW). sigma(M) is not the convolution's own
Lipschitz constant: with out[:, l] = M cols_l for the windows cols_l of x,
||conv(x)||^2 = sum_l ||M cols_l||^2 <= sigma^2 sum_l ||cols_l||^2, and with each
pixel of x in up to c = ceil(kH / sH) ceil(kW / sW) windows, ||conv(x)|| <=
sqrt(c) sigma ||x||, more than sigma ||x|| for overlapping windows. Normalising M
is what Miyato et al. do and what PyTorch computes; everything below holds with
M in place of W.T, and d sigma / dW is u v^T reshaped to W's layout.

Power iteration. sigma is estimated, not computed by an SVD: starting from the
stored u, each iteration does
    v <- normalize(M^T u) = normalize(W u)         (in,)
    u <- normalize(M v)   = normalize(W^T v)       (out,)
where normalize(y) = y / max(||y||, eps). One iteration per training forward is
enough because W changes little per optimiser step and u is kept between steps
(a buffer, so it is also saved in state dicts and checkpoints): over training the
iterations accumulate and u, v converge to the top singular vectors. In
evaluation mode u and v are not updated, so eval outputs are repeatable.

Backward. u and v are held fixed (treated as constants, as PyTorch does), so
sigma = v^T W u is linear in W with d sigma / dW = v u^T, shape (in, out). With
W_sn = W / sigma and G = dL/dW_sn (in, out), the quotient rule gives
    dL/dW_ij = G_ij / sigma - (sum_kl G_kl W_kl / sigma^2) d sigma / dW_ij
             = (G - <G, W_sn> v u^T) / sigma            (in, out)
where <G, W_sn> = sum(G * W_sn). The first term is the plain gradient scaled by
1/sigma; the second removes its component along the top singular direction,
the one that would only change sigma and so cannot change W_sn.
"""

from __future__ import annotations

import numpy as np

from minigan.backend import array_module, make_rng, to_device
from minigan.layers import Conv2d, ConvTranspose2d, Dense, Layer

__all__ = ["SpectralNorm"]


def _normalize(y, eps):
    """y / max(||y||, eps): a unit vector, or (nearly) y itself when y is about 0."""
    xp = array_module(y)
    return y / xp.maximum(xp.linalg.norm(y), eps)   # no host sync on a GPU


class SpectralNorm(Layer):
    """Wraps a Dense or Conv2d layer and uses W / sigma(W) as its weight.

    Args:
        layer: the layer to normalise; its parameter "W" is the raw weight that
            the optimiser trains (PyTorch's ``weight_orig``), and "b" is left alone.
        n_power_iterations: power iterations per training forward (>= 1).
        eps: the floor of a norm in ``normalize`` (PyTorch's 1e-12).
        rng: seed or NumPy generator for the random start of u and v (followed by
            ``INITIAL_ITERATIONS`` = 15 power iterations, so that sigma is a fair
            estimate, and positive, from the first forward on).

    The wrapped layer is the only child, named "" so the parameters keep their
    names: ``SpectralNorm(Dense(2, 8))`` has "W" and "b", and the buffers "u"
    (out_features,) and "v" (in_features,), PyTorch's ``weight_u`` and
    ``weight_v``; around a Conv2d, u is (out_channels,) and v
    (in_channels kH kW,). See the module docstring for the math.
    """

    #: power iterations run once, when the wrapper is built
    INITIAL_ITERATIONS = 15

    def __init__(self, layer, n_power_iterations=1, eps=1e-12, rng=None):
        super().__init__()
        if not isinstance(layer, (Dense, Conv2d)):
            got = layer.short_repr() if isinstance(layer, Layer) else type(layer).__name__
            why = (" (a transposed convolution's weight is (C_in, C_out, kH, kW): PyTorch "
                   "takes its matrix along dim=1, which is not supported here)"
                   if isinstance(layer, ConvTranspose2d) else "")
            raise TypeError(f"SpectralNorm wraps a Dense or Conv2d layer, got {got}{why}; "
                            "wrap the layer whose weight you want normalised")
        n = n_power_iterations
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"SpectralNorm: n_power_iterations must be an int >= 1, "
                             f"got {n_power_iterations!r}")
        eps = float(eps)
        if not eps > 0:
            raise ValueError(f"SpectralNorm: eps must be > 0, got {eps}")
        self.layer = layer
        self.n_power_iterations = int(n_power_iterations)
        self.eps = eps
        W = layer.params["W"]
        rows, cols = self._matrix(W).shape   # (out, in) for Dense, (C_out, C_in kH kW) for Conv2d
        generator = make_rng(rng)
        u = generator.standard_normal(rows)
        v = generator.standard_normal(cols)
        backend = layer.backend
        self.buffers["u"] = to_device((u / np.linalg.norm(u)).astype(W.dtype), backend)
        self.buffers["v"] = to_device((v / np.linalg.norm(v)).astype(W.dtype), backend)
        # A head start, as PyTorch's parametrizations.spectral_norm does: from a
        # random u, sigma = u^T M v may be far off or even negative, which an
        # evaluation before any training step would use as it is.
        self._power_iteration(self.INITIAL_ITERATIONS)

    def named_children(self):
        return [("", self.layer)]   # "": the wrapped layer's names are the wrapper's

    # -- the weight as a matrix ---------------------------------------------------
    def _matrix(self, W):
        """M, the weight as PyTorch's matrix (a view, no copy): W.T (out, in) for
        Dense's (in, out); W.reshape(C_out, C_in kH kW) for Conv2d's (C_out, C_in, kH, kW)."""
        if isinstance(self.layer, Conv2d):
            return W.reshape(W.shape[0], -1)
        return W.T

    def _from_matrix(self, M):
        """The inverse of ``_matrix``: a matrix of M's shape back to the layer's layout."""
        if isinstance(self.layer, Conv2d):
            return M.reshape(self.layer.params["W"].shape)
        return M.T

    # -- sigma and its gradient ---------------------------------------------------
    def normalized_weight(self):
        """(W_sn, ctx): W / sigma(W), and what ``weight_backward`` needs.

        In training mode first runs ``n_power_iterations`` iterations, updating
        the buffers u and v in place; in evaluation mode uses them as they are.
        ctx = (W_sn, sigma, u, v) holds copies of u and v, so a later forward
        (which updates the buffers) cannot change this forward's backward.
        """
        if self.training:
            self._power_iteration(self.n_power_iterations)
        W = self.layer.params["W"]
        u, v = self.buffers["u"], self.buffers["v"]
        sigma = u @ (self._matrix(W) @ v)                # u^T M v = v^T W u, a 0-d array
        W_sn = W / sigma
        return W_sn, (W_sn, sigma, u.copy(), v.copy())

    def _power_iteration(self, n):
        """n iterations on the buffers u and v, in place (no gradient flows through them)."""
        M = self._matrix(self.layer.params["W"])
        u, v = self.buffers["u"], self.buffers["v"]
        for _ in range(n):
            v[...] = _normalize(M.T @ u, self.eps)   # normalize(W u)
            u[...] = _normalize(M @ v, self.eps)     # normalize(W^T v)

    def weight_backward(self, G, ctx):
        """dL/dW from G = dL/dW_sn, with u and v fixed: (G - <G, W_sn> v u^T) / sigma."""
        W_sn, sigma, u, v = ctx
        xp = array_module(G)
        # d sigma / dM = u v^T (out, in), i.e. d sigma / dW = v u^T in Dense's layout,
        # u v^T reshaped to (C_out, C_in, kH, kW) in Conv2d's
        dsigma = self._from_matrix(xp.outer(u, v))
        dW = G - (G * W_sn).sum() * dsigma
        dW /= sigma
        return dW

    @property
    def sigma(self):
        """sigma = u^T M v with the stored u and v (no iteration): the current estimate."""
        M = self._matrix(self.layer.params["W"])
        return self.buffers["u"] @ (M @ self.buffers["v"])

    # -- the two passes -------------------------------------------------------------
    def forward(self, x):
        """The wrapped layer's forward with W_sn in place of W (the raw W is put back)."""
        W_sn, ctx = self.normalized_weight()
        inner = self.layer
        W = inner.params["W"]
        inner.params["W"] = W_sn
        try:
            out = inner.forward(x)       # caches (x, W_sn) for its backward
        finally:
            inner.params["W"] = W
        self._save_cache(ctx, out)
        return out

    def backward(self, dout, param_grads=True, input_grad=True):
        """dL/dx of the wrapped layer; ADDS dL/dW (through W / sigma) and dL/db to its grads."""
        ctx = self._pop_cache(dout)
        inner = self.layer
        if not param_grads:
            return inner.backward(dout, param_grads=False, input_grad=input_grad)
        grad_W = inner.grads["W"]
        G = array_module(grad_W).zeros_like(grad_W)
        inner.grads["W"] = G             # the wrapped layer adds dL/dW_sn into G
        try:
            dx = inner.backward(dout, param_grads=True, input_grad=input_grad)
        finally:
            inner.grads["W"] = grad_W
        grad_W += self.weight_backward(G, ctx)
        return dx

    def short_repr(self):
        n = self.n_power_iterations
        its = f", n_power_iterations={n}" if n != 1 else ""
        return f"SpectralNorm({self.layer.short_repr()}{its})"
