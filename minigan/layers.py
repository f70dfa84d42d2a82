"""Stateful layers for training, PyTorch-like, on top of ``minigan.functional``.

A layer owns ``params`` and ``grads`` (dicts of arrays of the same shapes) and
caches what its backward pass needs during ``forward``. ``backward(dout)``
returns dL/dx and ADDS the parameter gradients into ``grads``, so gradients from
several backward passes accumulate until ``zero_grad()``. Forward and backward
come in pairs: a backward with no forward before it raises instead of reusing
a stale cache.

The cache holds references to the forward's input, not copies: do not modify an
input array in place between a layer's forward and its backward.
"""

from __future__ import annotations

import numpy as np

from minigan import _fused
from minigan import functional as F
from minigan.backend import (
    array_module,
    backend_of,
    check_array,
    get_backend,
    make_rng,
    to_device,
)
from minigan.init import get_initialiser, lecun_uniform


class Layer:
    """Base class: parameters, gradients, buffers, the cache and mode switches.

    Subclasses implement ``forward(x)`` and ``backward(dout, param_grads, input_grad)``.
    ``buffers`` hold state that is saved but not trained (batch norm's running
    statistics).
    """

    def __init__(self):
        self.params = {}
        self.grads = {}
        self.buffers = {}
        self.training = True
        self._cache = None

    # -- the two passes -------------------------------------------------------
    def forward(self, x):
        raise NotImplementedError

    def backward(self, dout, param_grads=True, input_grad=True):
        raise NotImplementedError

    def __call__(self, x):
        return self.forward(x)

    # -- helpers for subclasses ------------------------------------------------
    def _check_input(self, x):
        check_array(x, f"{self.short_repr()} input")
        dtype = self.dtype
        if self.params:
            # Raises a clear error if x and the parameters live on different backends.
            array_module(x, *self.params.values())
            if x.dtype != dtype:
                raise TypeError(
                    f"{self.short_repr()} has {dtype} parameters but got a {x.dtype} input; "
                    f"convert the input with x.astype('{dtype}') or the layer with "
                    f".astype('{x.dtype}') (minigan never mixes dtypes silently).")
        return x

    def _save_cache(self, cache, out):
        self._cache = (cache, out.shape)

    def _pop_cache(self, dout):
        if self._cache is None:
            raise RuntimeError(
                f"{self.short_repr()}.backward() was called without a matching forward(): "
                "call forward (or the model) on a batch first. Each backward needs its "
                "own forward; the cache is used once.")
        cache, out_shape = self._cache
        self._cache = None
        check_array(dout, f"{self.short_repr()} upstream gradient dout")
        if dout.shape != out_shape:
            raise ValueError(
                f"{self.short_repr()}.backward: dout has shape {dout.shape}, expected "
                f"{out_shape} (the shape of the forward output).")
        return cache

    def _add_param(self, name, value):
        self.params[name] = value
        xp = array_module(value)
        self.grads[name] = xp.zeros_like(value)

    # -- bookkeeping -----------------------------------------------------------
    @property
    def dtype(self):
        """The parameters' dtype, or None for a layer without parameters."""
        for p in self.params.values():
            return p.dtype
        return None

    @property
    def backend(self):
        """'numpy' or 'cupy', where the parameters live (None without parameters)."""
        for p in self.params.values():
            return backend_of(p)
        return None

    @property
    def n_params(self):
        return int(sum(p.size for p in self.params.values()))

    def parameters(self):
        """(param, grad) pairs in a stable order, for an optimiser."""
        return [(self.params[k], self.grads[k]) for k in self.params]

    def named_parameters(self, prefix=""):
        return [(prefix + k, self.params[k], self.grads[k]) for k in self.params]

    def zero_grad(self):
        for g in self.grads.values():
            g.fill(0)

    def clear_cache(self):
        """Forget the last forward pass: a backward now raises instead of using it."""
        self._cache = None

    def train(self, mode=True):
        self.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def state_dict(self, prefix=""):
        """Copies of parameters and buffers, keyed by name, on the layer's backend."""
        state = {prefix + k: v.copy() for k, v in self.params.items()}
        state.update({prefix + k: v.copy() for k, v in self.buffers.items()})
        return state

    def load_state_dict(self, state, prefix="", strict=True):
        """Copy values into the existing arrays (in place, so optimisers keep their references).

        Values may be NumPy or CuPy arrays; they are cast to the layer's dtype.
        A missing or unexpected key or a wrong shape raises a ValueError.
        """
        own = {**self.params, **self.buffers}
        if strict:
            _check_keys(own, state, prefix, self.short_repr())
        for k, target in own.items():
            value = state[prefix + k]
            if tuple(value.shape) != tuple(target.shape):
                raise ValueError(
                    f"{self.short_repr()}: '{prefix + k}' has shape {tuple(value.shape)} in the "
                    f"state dict but {tuple(target.shape)} in the layer (another architecture?).")
            target[...] = to_device(value, backend_of(target))  # casts to target.dtype
        return self

    def to(self, backend):
        """Move parameters, gradients and buffers to 'numpy' or 'cupy'; returns self.

        Arrays are replaced, so create optimisers after moving the model.
        """
        for d in (self.params, self.grads, self.buffers):
            for k in d:
                d[k] = to_device(d[k], backend)
        return self

    def astype(self, dtype):
        """Cast parameters, gradients and buffers to ``dtype``; returns self."""
        for d in (self.params, self.grads, self.buffers):
            for k in d:
                d[k] = d[k].astype(dtype)
        return self

    def short_repr(self):
        return f"{type(self).__name__}()"

    def __repr__(self):
        return self.short_repr()


def forward_in_eval_mode(model, x):
    """``model.forward(x)`` in evaluation mode (batch norm's running statistics, no
    dropout), for sampling and plotting: the mode is restored afterwards and the pass
    leaves no cache, so a later training backward cannot use it by mistake."""
    was_training = model.training
    model.eval()
    try:
        return model.forward(x)
    finally:
        model.clear_cache()
        model.train(was_training)


def _check_keys(own, state, prefix, who):
    expected = {prefix + k for k in own}
    got = {k for k in state if k.startswith(prefix)}
    missing, unexpected = sorted(expected - got), sorted(got - expected)
    if missing or unexpected:
        raise ValueError(
            f"{who}: state dict does not match the model: missing keys {missing}, "
            f"unexpected keys {unexpected}.")


class Dense(Layer):
    """Fully connected layer ``out = x @ W + b`` with W (in_features, out_features).

    ``init`` names an initialiser from ``minigan.init`` (or is a callable);
    "pytorch" reproduces nn.Linear's default (weights and bias U(+-1/sqrt(in))).
    """

    def __init__(self, in_features, out_features, init="glorot_uniform", dtype="float32",
                 rng=None, backend=None):
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"Dense: {name} must be a positive int, got {value!r}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        generator = make_rng(rng)
        init_fn = get_initialiser(init)
        W = init_fn((self.in_features, self.out_features), generator, dtype=dtype)
        if init_fn is lecun_uniform:
            b = lecun_uniform((self.in_features, self.out_features), generator, dtype=dtype)[0]
        else:
            b = np.zeros(self.out_features, dtype=dtype)
        backend = get_backend() if backend is None else backend
        self._add_param("W", to_device(W, backend))
        self._add_param("b", to_device(b, backend))

    def forward(self, x):
        self._check_input(x)
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(
                f"{self.short_repr()} expected input of shape (N, {self.in_features}), "
                f"got {tuple(x.shape)}.")
        out, cache = F.dense_forward(x, self.params["W"], self.params["b"])
        self._save_cache(cache, out)
        return out

    def backward(self, dout, param_grads=True, input_grad=True):
        cache = self._pop_cache(dout)
        if param_grads and _fused.applies(dout):
            # GPU: cuBLAS adds x.T @ dout and sum_n dout into the gradients directly
            x, W = cache
            _fused.add_dense_param_grads(x, dout, self.grads["W"], self.grads["b"])
            return dout @ W.T if input_grad else None
        dx, dW, db = F.dense_backward(dout, cache, need_dx=input_grad,
                                      need_param_grads=param_grads)
        if param_grads:
            self.grads["W"] += dW
            self.grads["b"] += db
        return dx

    def short_repr(self):
        return f"Dense({self.in_features} -> {self.out_features})"


class _Activation(Layer):
    """A parameter-free elementwise layer built from a functional forward/backward pair.

    On CuPy arrays, the one-kernel versions named by ``_fused_forward`` and
    ``_fused_backward`` (functions of ``minigan._fused``) do the same math.
    """

    _forward = None
    _backward = None
    _fused_forward = None   # name of a function x -> out in minigan._fused; the cache is out
    _fused_backward = None  # name of a function (dout, cache) -> dx in minigan._fused

    def forward(self, x):
        self._check_input(x)
        if self._fused_forward and _fused.applies(x):
            out = getattr(_fused, self._fused_forward)(x)
            cache = out
        else:
            out, cache = type(self)._forward(x)
        self._save_cache(cache, out)
        return out

    def backward(self, dout, param_grads=True, input_grad=True):
        cache = self._pop_cache(dout)
        if not input_grad:
            return None
        if self._fused_backward and _fused.applies(dout):
            return getattr(_fused, self._fused_backward)(dout, cache)
        return type(self)._backward(dout, cache)


class ReLU(_Activation):
    """max(x, 0)."""
    _forward = staticmethod(F.relu_forward)
    _backward = staticmethod(F.relu_backward)
    _fused_backward = "relu_backward"


class Sigmoid(_Activation):
    """1 / (1 + exp(-x))."""
    _forward = staticmethod(F.sigmoid_forward)
    _backward = staticmethod(F.sigmoid_backward)
    _fused_forward, _fused_backward = "sigmoid", "sigmoid_backward"


class Tanh(_Activation):
    """tanh(x): the usual output layer of a generator for data scaled to [-1, 1]."""
    _forward = staticmethod(F.tanh_forward)
    _backward = staticmethod(F.tanh_backward)
    _fused_backward = "tanh_backward"


class LeakyReLU(Layer):
    """x for x > 0, negative_slope * x otherwise (PyTorch's default slope 0.01; GANs use 0.2)."""

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = float(negative_slope)

    def forward(self, x):
        self._check_input(x)
        if _fused.applies(x):
            out, cache = _fused.leaky_relu(x, self.negative_slope), (x, self.negative_slope)
        else:
            out, cache = F.leaky_relu_forward(x, self.negative_slope)
        self._save_cache(cache, out)
        return out

    def backward(self, dout, param_grads=True, input_grad=True):
        cache = self._pop_cache(dout)
        if not input_grad:
            return None
        if _fused.applies(dout):
            return _fused.leaky_relu_backward(dout, *cache)
        return F.leaky_relu_backward(dout, cache)

    def short_repr(self):
        return f"LeakyReLU({self.negative_slope:g})"


class Dropout(Layer):
    """Inverted dropout with probability ``p``; the identity in evaluation mode.

    Masks come from the NumPy generator ``rng`` (an int seed, a Generator, or
    minigan's default), so a seeded run repeats exactly.
    """

    def __init__(self, p=0.5, rng=None):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        self.p = float(p)
        self.rng = make_rng(rng) if rng is not None else None

    def forward(self, x):
        self._check_input(x)
        out, cache = F.dropout_forward(x, self.p, train=self.training, rng=self.rng)
        self._save_cache(cache, out)
        return out

    def backward(self, dout, param_grads=True, input_grad=True):
        cache = self._pop_cache(dout)
        return F.dropout_backward(dout, cache) if input_grad else None

    def short_repr(self):
        return f"Dropout(p={self.p:g})"


class BatchNorm1d(Layer):
    """Batch normalisation of (N, num_features) inputs, PyTorch's conventions.

    Parameters gamma (ones) and beta (zeros); buffers running_mean and
    running_var, updated in training as (1 - momentum) * running + momentum * batch,
    with the unbiased batch variance for running_var. Evaluation uses them.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, dtype="float32", backend=None):
        super().__init__()
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), float(momentum)
        backend = get_backend() if backend is None else backend
        self._add_param("gamma", to_device(np.ones(num_features, dtype=dtype), backend))
        self._add_param("beta", to_device(np.zeros(num_features, dtype=dtype), backend))
        self.buffers["running_mean"] = to_device(np.zeros(num_features, dtype=dtype), backend)
        self.buffers["running_var"] = to_device(np.ones(num_features, dtype=dtype), backend)

    @property
    def running_mean(self):
        return self.buffers["running_mean"]

    @property
    def running_var(self):
        return self.buffers["running_var"]

    def forward(self, x):
        self._check_input(x)
        if x.ndim != 2 or x.shape[1] != self.num_features:
            raise ValueError(
                f"{self.short_repr()} expected input of shape (N, {self.num_features}), "
                f"got {tuple(x.shape)}.")
        out, cache = F.batchnorm_forward(
            x, self.params["gamma"], self.params["beta"], train=self.training,
            running_mean=self.running_mean, running_var=self.running_var, eps=self.eps)
        if self.training:
            n, m = x.shape[0], self.momentum
            running_mean, running_var = self.running_mean, self.running_var
            running_mean *= 1.0 - m
            running_mean += m * cache["mean"]
            running_var *= 1.0 - m
            running_var += (m * n / (n - 1)) * cache["var"]  # unbiased, as PyTorch
        self._save_cache(cache, out)
        return out

    def backward(self, dout, param_grads=True, input_grad=True):
        cache = self._pop_cache(dout)
        dx, dgamma, dbeta = F.batchnorm_backward(dout, cache)
        if param_grads:
            self.grads["gamma"] += dgamma
            self.grads["beta"] += dbeta
        return dx if input_grad else None

    def short_repr(self):
        return f"BatchNorm1d({self.num_features})"


class Sequential(Layer):
    """Layers applied in order; backward runs them in reverse.

    Parameters are named "<index>.<name>" ("0.W", "2.gamma", ...), the order of
    ``parameters()`` and ``state_dict()`` is the layers' order.
    """

    def __init__(self, *layers):
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential: item {i} is a {type(layer).__name__}, not a minigan Layer")
        self.layers = list(layers)

    def __getitem__(self, i):
        return self.layers[i]

    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dout, param_grads=True, input_grad=True):
        """dL/dx of the whole stack; ``input_grad=False`` skips the first layer's dx (returns None)."""
        last = len(self.layers) - 1
        for i in range(last, -1, -1):
            dout = self.layers[i].backward(dout, param_grads=param_grads,
                                           input_grad=input_grad or i > 0)
        return dout

    @property
    def dtype(self):
        for layer in self.layers:
            if layer.dtype is not None:
                return layer.dtype
        return None

    @property
    def backend(self):
        for layer in self.layers:
            if layer.backend is not None:
                return layer.backend
        return None

    @property
    def n_params(self):
        return sum(layer.n_params for layer in self.layers)

    def parameters(self):
        return [pair for layer in self.layers for pair in layer.parameters()]

    def named_parameters(self, prefix=""):
        return [item for i, layer in enumerate(self.layers)
                for item in layer.named_parameters(f"{prefix}{i}.")]

    def zero_grad(self):
        for layer in self.layers:
            layer.zero_grad()

    def clear_cache(self):
        for layer in self.layers:
            layer.clear_cache()

    def train(self, mode=True):
        self.training = bool(mode)
        for layer in self.layers:
            layer.train(mode)
        return self

    def state_dict(self, prefix=""):
        state = {}
        for i, layer in enumerate(self.layers):
            state.update(layer.state_dict(f"{prefix}{i}."))
        return state

    def load_state_dict(self, state, prefix="", strict=True):
        if strict:
            own = {k: None for k in self.state_dict(prefix)}
            _check_keys({k[len(prefix):]: v for k, v in own.items()}, state, prefix, "Sequential")
        for i, layer in enumerate(self.layers):
            layer.load_state_dict(state, f"{prefix}{i}.", strict=False)
        return self

    def to(self, backend):
        for layer in self.layers:
            layer.to(backend)
        return self

    def astype(self, dtype):
        for layer in self.layers:
            layer.astype(dtype)
        return self

    def short_repr(self):
        return f"Sequential({len(self.layers)} layers)"

    def __repr__(self):
        lines = ["Sequential("]
        for i, layer in enumerate(self.layers):
            shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in layer.params.items())
            detail = f"  [{shapes}; {layer.n_params:,} params]" if layer.params else ""
            lines.append(f"  ({i}) {layer!r}{detail}")
        dtype = self.dtype
        lines.append(f")  total {self.n_params:,} parameters"
                     + (f", {dtype}, on {self.backend}" if dtype is not None else ""))
        return "\n".join(lines)
