"""Stateful layers for training, PyTorch-like, on top of ``minigan.functional``.

A layer owns ``params`` and ``grads`` (dicts of arrays of the same shapes) and
caches what its backward pass needs during ``forward``. ``backward(dout)``
returns dL/dx and ADDS the parameter gradients into ``grads``, so gradients from
several backward passes accumulate until ``zero_grad()``. Forward and backward
come in pairs: a backward with no forward before it raises instead of reusing
a stale cache.

The cache holds references to the forward's input, not copies: do not modify an
input array in place between a layer's forward and its backward.

Layers form a tree: a container (``Sequential``) names its children in
``named_children()``, and ``Layer`` walks that tree in one place
(``named_modules()``) for everything that concerns a whole model: parameters,
gradients, modes, state dicts, ``to`` and ``astype``. The math of each layer is
``minigan.functional``'s, reached through ``minigan.kernels`` (which picks a fused
kernel for the same numbers on a GPU).
"""

from __future__ import annotations

import numpy as np

from minigan import functional as F
from minigan import kernels
from minigan.backend import (
    array_module,
    backend_of,
    check_array,
    get_backend,
    make_rng,
    to_device,
)
from minigan.init import fan_in_out, get_initialiser, lecun_uniform


class Layer:
    """Base class: parameters, gradients, buffers, the cache and mode switches.

    Subclasses implement ``forward(x)`` and ``backward(dout, param_grads, input_grad)``;
    a layer that holds other layers also names them in ``named_children()``.
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
        if self.params:
            dtype = next(iter(self.params.values())).dtype
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

    # -- the tree of layers ----------------------------------------------------
    def named_children(self):
        """(name, layer) for each layer directly inside this one; none by default.

        Containers override this, and everything below (parameters, state dicts,
        modes, moving between backends) follows from it. A child named "" adds
        nothing to the names: a wrapper with one such child has its child's names.
        """
        return []

    def children(self):
        return [child for _, child in self.named_children()]

    def named_modules(self, prefix=""):
        """(name, layer) for this layer and every layer inside it: depth first, this
        layer first, in a stable order. Names are dotted paths ("", "0", "3.1", ...)."""
        found = [(prefix, self)]
        for name, child in self.named_children():
            found += child.named_modules(_join(prefix, name))
        return found

    def modules(self):
        """This layer and every layer inside it, in the order of ``named_modules``.

        The walk a training step takes several times (zero_grad, parameters), so
        it builds no names: on a small model it is a measurable part of a step.
        """
        found = [self]
        for child in self.children():
            found += child.modules()
        return found

    def _named_arrays(self, *kinds):
        """(key, owning layer, array) for each array of the given kinds ("params",
        "grads", "buffers") of every layer in the tree; keys as in ``state_dict``."""
        return [(_join(path, k), module, array)
                for path, module in self.named_modules()
                for kind in kinds for k, array in getattr(module, kind).items()]

    # -- bookkeeping over the tree -------------------------------------------
    @property
    def dtype(self):
        """The parameters' dtype, or None for a model without parameters."""
        p = self._first_param()
        return None if p is None else p.dtype

    @property
    def backend(self):
        """'numpy' or 'cupy', where the parameters live (None without parameters)."""
        p = self._first_param()
        return None if p is None else backend_of(p)

    def _first_param(self):
        """The first parameter in the walk's order, found without walking the rest
        (a step asks for the dtype and backend several times)."""
        for p in self.params.values():
            return p
        for child in self.children():
            p = child._first_param()
            if p is not None:
                return p
        return None

    @property
    def n_params(self):
        return int(sum(p.size for _, _, p in self._named_arrays("params")))

    def parameters(self):
        """(param, grad) pairs in a stable order (that of ``named_parameters``), for an optimiser."""
        return [(m.params[k], m.grads[k]) for m in self.modules() for k in m.params]

    def named_parameters(self, prefix=""):
        """(name, param, grad) triples: "W" for a layer's own, "0.W", "2.gamma", ... inside
        a container; ``prefix`` is put in front of every name."""
        return [(prefix + _join(path, k), p, module.grads[k])
                for path, module in self.named_modules()
                for k, p in module.params.items()]

    def zero_grad(self):
        for module in self.modules():
            for g in module.grads.values():
                g.fill(0)

    def clear_cache(self):
        """Forget the last forward pass: a backward now raises instead of using it."""
        for module in self.modules():
            module._cache = None

    def train(self, mode=True):
        """Training mode (batch norm uses batch statistics, dropout drops) for every layer."""
        for module in self.modules():
            module.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def state_dict(self, prefix=""):
        """Copies of parameters and buffers, keyed by name ("0.W", "1.running_mean", ...),
        on the model's backend; ``prefix`` is put in front of every key."""
        return {prefix + key: a.copy() for key, _, a in self._named_arrays("params", "buffers")}

    def load_state_dict(self, state, prefix="", strict=True):
        """Copy values into the existing arrays (in place, so optimisers keep their references).

        Values may be NumPy or CuPy arrays; they are cast to the model's dtype.
        With ``strict`` (the default) a missing or unexpected key raises a
        ValueError; without it, keys the model does not have are ignored and
        arrays the state does not have are left alone. A wrong shape always raises.
        """
        own = self._named_arrays("params", "buffers")
        if strict:
            _check_keys([key for key, _, _ in own], state, prefix, self.short_repr())
        for key, module, target in own:
            if prefix + key not in state:
                continue  # only without strict: checked above
            value = state[prefix + key]
            if tuple(value.shape) != tuple(target.shape):
                raise ValueError(
                    f"{module.short_repr()}: '{prefix + key}' has shape {tuple(value.shape)} in "
                    f"the state dict but {tuple(target.shape)} in the layer (another architecture?).")
            target[...] = to_device(value, backend_of(target))  # casts to target.dtype
        return self

    def to(self, backend):
        """Move parameters, gradients and buffers of every layer to 'numpy' or 'cupy'; returns self.

        The arrays are replaced, not moved in place: an optimiser created before
        holds the old arrays and would update those. Create optimisers after moving
        the model.
        """
        return self._replace_arrays(lambda a: to_device(a, backend))

    def astype(self, dtype):
        """Cast parameters, gradients and buffers of every layer to ``dtype``; returns self.

        As with ``to``, the arrays are replaced: create optimisers afterwards.
        """
        return self._replace_arrays(lambda a: a.astype(dtype))

    def _replace_arrays(self, convert):
        for module in self.modules():
            for d in (module.params, module.grads, module.buffers):
                for k in d:
                    d[k] = convert(d[k])
        return self

    def short_repr(self):
        return f"{type(self).__name__}()"

    def __repr__(self):
        return self.short_repr()


def _join(path, name):
    """Dotted path of ``name`` under ``path``; an empty part adds nothing."""
    return f"{path}.{name}" if path and name else path or name


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
    """A ValueError naming every missing and unexpected key (own: keys without prefix)."""
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
        return kernels.dense_backward(dout, cache, self.grads["W"], self.grads["b"],
                                      need_dx=input_grad, need_param_grads=param_grads)

    def short_repr(self):
        return f"Dense({self.in_features} -> {self.out_features})"


class _Activation(Layer):
    """A parameter-free elementwise layer built from a forward/backward pair of
    ``minigan.kernels`` (the functional math, or its fused kernel on a GPU)."""

    _forward = None   # x -> (out, cache)
    _backward = None  # (dout, cache) -> dx

    def forward(self, x):
        self._check_input(x)
        out, cache = type(self)._forward(x)
        self._save_cache(cache, out)
        return out

    def backward(self, dout, param_grads=True, input_grad=True):
        cache = self._pop_cache(dout)
        return type(self)._backward(dout, cache) if input_grad else None


class ReLU(_Activation):
    """max(x, 0)."""
    _forward = staticmethod(kernels.relu_forward)
    _backward = staticmethod(kernels.relu_backward)


class Sigmoid(_Activation):
    """1 / (1 + exp(-x))."""
    _forward = staticmethod(kernels.sigmoid_forward)
    _backward = staticmethod(kernels.sigmoid_backward)


class Tanh(_Activation):
    """tanh(x): the usual output layer of a generator for data scaled to [-1, 1]."""
    _forward = staticmethod(kernels.tanh_forward)
    _backward = staticmethod(kernels.tanh_backward)


class LeakyReLU(Layer):
    """x for x > 0, negative_slope * x otherwise (PyTorch's default slope 0.01; GANs use 0.2)."""

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = float(negative_slope)

    def forward(self, x):
        self._check_input(x)
        out, cache = kernels.leaky_relu_forward(x, self.negative_slope)
        self._save_cache(cache, out)
        return out

    def backward(self, dout, param_grads=True, input_grad=True):
        cache = self._pop_cache(dout)
        return kernels.leaky_relu_backward(dout, cache) if input_grad else None

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
        n = self._values_per_feature(x)
        out, cache = self._normalize(
            x, self.params["gamma"], self.params["beta"], train=self.training,
            running_mean=self.running_mean, running_var=self.running_var, eps=self.eps)
        if self.training:
            self._update_running_stats(n, cache)
        self._save_cache(cache, out)
        return out

    # What BatchNorm2d changes: the input's shape, and the math it calls.
    def _values_per_feature(self, x):
        """Checks x's shape; returns how many values each feature's statistics come from."""
        if x.ndim != 2 or x.shape[1] != self.num_features:
            raise ValueError(
                f"{self.short_repr()} expected input of shape (N, {self.num_features}), "
                f"got {tuple(x.shape)}.")
        if self.training and x.shape[0] < 2:
            raise ValueError(
                f"{self.short_repr()} in training mode needs at least 2 samples per batch (the "
                f"batch variance of 1 sample is undefined), got {x.shape[0]}; use a larger "
                "batch, or call .eval() to use the running statistics")
        return x.shape[0]

    def _normalize(self, x, *args, **kwargs):
        return F.batchnorm_forward(x, *args, **kwargs)

    def _normalize_backward(self, dout, cache):
        return F.batchnorm_backward(dout, cache)

    def _update_running_stats(self, n, cache):
        """running <- (1 - momentum) running + momentum batch, per feature, except
        where the batch's statistics are NaN or inf: one bad batch must not poison
        the statistics every later evaluation uses (its outputs are NaN anyway,
        which the divergence guard reports)."""
        xp, m = array_module(cache["mean"]), self.momentum
        ok = xp.isfinite(cache["mean"]) & xp.isfinite(cache["var"])
        mean = (1.0 - m) * self.running_mean + m * cache["mean"]
        # the unbiased batch variance, as PyTorch
        var = (1.0 - m) * self.running_var + (m * n / (n - 1)) * cache["var"]
        self.running_mean[...] = xp.where(ok, mean, self.running_mean)
        self.running_var[...] = xp.where(ok, var, self.running_var)

    def backward(self, dout, param_grads=True, input_grad=True):
        cache = self._pop_cache(dout)
        dx, dgamma, dbeta = self._normalize_backward(dout, cache)
        if param_grads:
            self.grads["gamma"] += dgamma
            self.grads["beta"] += dbeta
        return dx if input_grad else None

    def short_repr(self):
        return f"BatchNorm1d({self.num_features})"


class BatchNorm2d(BatchNorm1d):
    """Batch normalisation of images (N, num_features, H, W), per channel over (N, H, W).

    BatchNorm1d's parameters, buffers and conventions (PyTorch's: eps=1e-5,
    momentum=0.1, unbiased running variance), with every pixel of every sample
    counted as a sample of its channel: the statistics of a channel come from
    N H W values (``functional.batchnorm2d_forward``, through ``minigan.kernels``).
    A BatchNorm1d by inheritance, so whatever treats batch norm specially (the
    GAN's discriminator step, the gradient penalty's refusal) treats this one the
    same way.
    """

    def _values_per_feature(self, x):
        if x.ndim != 4 or x.shape[1] != self.num_features:
            raise ValueError(
                f"{self.short_repr()} expected input of shape (N, {self.num_features}, H, W), "
                f"got {tuple(x.shape)}.")
        N, _, H, W = x.shape
        if self.training and N * H * W < 2:
            raise ValueError(
                f"{self.short_repr()} in training mode needs at least 2 values per channel "
                f"(N H W >= 2), got input of shape {tuple(x.shape)}; use a larger batch, or "
                "call .eval() to use the running statistics")
        return N * H * W

    def _normalize(self, x, *args, **kwargs):
        return kernels.batchnorm2d_forward(x, *args, **kwargs)

    def _normalize_backward(self, dout, cache):
        return kernels.batchnorm2d_backward(dout, cache)

    def short_repr(self):
        return f"BatchNorm2d({self.num_features})"


class _Conv(Layer):
    """What Conv2d and ConvTranspose2d share: arguments, weights, checks, the repr.

    The weight has PyTorch's layout (``_weight_shape``), so a state dict moves
    between the two libraries unchanged. ``init`` names an initialiser from
    ``minigan.init`` (or is a callable (shape, rng, dtype)); fan_in and fan_out
    follow PyTorch's rule for a weight (a, b, kH, kW): fan_in = b kH kW,
    fan_out = a kH kW. The default, "glorot_uniform" with zero bias, is Dense's;
    "pytorch" reproduces PyTorch's default (W and b drawn from U(+-1/sqrt(fan_in)),
    kaiming_uniform with a = sqrt(5)).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, bias,
                 init, dtype, rng, backend):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{type(self).__name__}: {name} must be a positive int, "
                                 f"got {value!r}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride, self.padding = F.conv_params(kernel_size, stride, padding)
        generator = make_rng(rng)
        init_fn = get_initialiser(init)
        shape = self._weight_shape()
        W = init_fn(shape, generator, dtype=dtype)
        if tuple(W.shape) != shape:
            raise ValueError(f"{type(self).__name__}: the initialiser returned shape "
                             f"{tuple(W.shape)}, expected {shape}")
        backend = get_backend() if backend is None else backend
        self._add_param("W", to_device(W, backend))
        if bias:
            if init_fn is lecun_uniform:  # PyTorch's bias: U(+-1/sqrt(fan_in)), fan_in as for W
                bound = 1.0 / np.sqrt(fan_in_out(shape)[0])
                b = generator.uniform(-bound, bound, size=self.out_channels).astype(dtype)
            else:
                b = np.zeros(self.out_channels, dtype=dtype)
            self._add_param("b", to_device(b, backend))

    def _check_image(self, x):
        """x must be (N, in_channels, H, W), with an image large enough for the kernel."""
        self._check_input(x)
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{self.short_repr()} expected input of shape (N, {self.in_channels}, H, W) "
                f"(NCHW), got {tuple(x.shape)}.")
        try:
            self.output_shape(x.shape[2:])
        except ValueError as err:
            raise ValueError(f"{self.short_repr()}: {err}") from None

    def _backward(self, backward, dout, param_grads, input_grad):
        cache = self._pop_cache(dout)
        return backward(dout, cache, self.grads["W"], self.grads.get("b"),
                        need_dx=input_grad, need_param_grads=param_grads)

    def _describe(self, extra=""):
        def show(pair):
            return str(pair[0]) if pair[0] == pair[1] else str(pair)
        k, s, p = (show(v) for v in (self.kernel_size, self.stride, self.padding))
        no_bias = "" if "b" in self.params else ", no bias"
        return (f"{type(self).__name__}({self.in_channels} -> {self.out_channels}, "
                f"k={k}, s={s}, p={p}{extra}{no_bias})")


class Conv2d(_Conv):
    """2-D convolution of NCHW images, PyTorch's nn.Conv2d: W (out_channels,
    in_channels, kH, kW), b (out_channels,); (N, C_in, H, W) -> (N, C_out, H_out, W_out)
    with H_out = floor((H + 2 padding - kH) / stride) + 1.

    ``kernel_size``, ``stride`` and ``padding`` are ints or (height, width) pairs.
    ``init`` as Dense's (default "glorot_uniform" with zero bias; "pytorch" for
    nn.Conv2d's default), with fan_in = in_channels kH kW. The math is
    ``functional.conv2d_forward``/``conv2d_backward``, reached through
    ``minigan.kernels`` (a matrix product per chunk of samples; the whole batch on a GPU).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 init="glorot_uniform", dtype="float32", rng=None, backend=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, bias,
                         init, dtype, rng, backend)

    def _weight_shape(self):
        return (self.out_channels, self.in_channels) + self.kernel_size

    def output_shape(self, in_hw):
        """(H_out, W_out) for an (H, W) input."""
        return F.conv2d_output_shape(in_hw, self.kernel_size, self.stride, self.padding)

    def forward(self, x):
        self._check_image(x)
        out, cache = kernels.conv2d_forward(x, self.params["W"], self.params.get("b"),
                                            self.stride, self.padding)
        self._save_cache(cache, out)
        return out

    def backward(self, dout, param_grads=True, input_grad=True):
        return self._backward(kernels.conv2d_backward, dout, param_grads, input_grad)

    def short_repr(self):
        return self._describe()


class ConvTranspose2d(_Conv):
    """Transposed 2-D convolution (the adjoint of Conv2d), PyTorch's nn.ConvTranspose2d:
    W (in_channels, out_channels, kH, kW), b (out_channels,); (N, C_in, H, W) ->
    (N, C_out, H_out, W_out) with H_out = (H - 1) stride - 2 padding + kH + output_padding.

    With stride s it upsamples by s: DCGAN's generator is made of these.
    ``output_padding`` (smaller than the stride) picks among the sizes that a
    Conv2d with the same settings maps back to H. ``init`` as Conv2d's, with
    PyTorch's fan_in for this layout, out_channels kH kW (``minigan.init.fan_in_out``).
    The math is ``functional.conv_transpose2d_forward``/``_backward``, through
    ``minigan.kernels``.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, bias=True, init="glorot_uniform", dtype="float32",
                 rng=None, backend=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, bias,
                         init, dtype, rng, backend)
        self.output_padding = F._pair(output_padding, "output_padding")
        F.conv_transpose2d_output_shape((1, 1), self.kernel_size, self.stride, 0,
                                        self.output_padding)  # checks output_padding < stride

    def _weight_shape(self):
        return (self.in_channels, self.out_channels) + self.kernel_size

    def output_shape(self, in_hw):
        """(H_out, W_out) for an (H, W) input."""
        return F.conv_transpose2d_output_shape(in_hw, self.kernel_size, self.stride,
                                               self.padding, self.output_padding)

    def forward(self, x):
        self._check_image(x)
        out, cache = kernels.conv_transpose2d_forward(
            x, self.params["W"], self.params.get("b"), self.stride, self.padding,
            self.output_padding)
        self._save_cache(cache, out)
        return out

    def backward(self, dout, param_grads=True, input_grad=True):
        return self._backward(kernels.conv_transpose2d_backward, dout, param_grads, input_grad)

    def short_repr(self):
        op = self.output_padding
        extra = "" if op == (0, 0) else f", op={op[0] if op[0] == op[1] else op}"
        return self._describe(extra)


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1 d2 ...): each sample as one row (row-major, as
    PyTorch's nn.Flatten); backward reshapes back. No parameters."""

    def forward(self, x):
        self._check_input(x)
        if x.ndim < 2:
            raise ValueError(f"Flatten expected input of shape (N, ...) with at least 2 axes, "
                             f"got {tuple(x.shape)}.")
        out = x.reshape(x.shape[0], -1)
        self._save_cache(x.shape, out)
        return out

    def backward(self, dout, param_grads=True, input_grad=True):
        in_shape = self._pop_cache(dout)
        return dout.reshape(in_shape) if input_grad else None


class Reshape(Layer):
    """``(N, ...) -> (N, *shape)``: each sample reshaped (row-major), e.g. Reshape(128, 7, 7)
    turns a Dense layer's (N, 6272) output into images; backward reshapes back.
    No parameters."""

    def __init__(self, *shape):
        super().__init__()
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        if not shape or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool)
                                and d >= 1 for d in shape):
            raise ValueError(f"Reshape: the per-sample shape must be positive ints, e.g. "
                             f"Reshape(128, 7, 7), got {shape!r}")
        self.shape = tuple(int(d) for d in shape)

    def forward(self, x):
        self._check_input(x)
        size = int(np.prod(self.shape))
        if x.ndim < 1 or int(np.prod(x.shape[1:])) != size:
            raise ValueError(
                f"{self.short_repr()} expected samples of {size} values (input of shape (N, "
                f"{size}) or any (N, ...) with {size} values per sample), got input of shape "
                f"{tuple(x.shape)}.")
        out = x.reshape((x.shape[0],) + self.shape)
        self._save_cache(x.shape, out)
        return out

    def backward(self, dout, param_grads=True, input_grad=True):
        in_shape = self._pop_cache(dout)
        return dout.reshape(in_shape) if input_grad else None

    def short_repr(self):
        return f"Reshape({', '.join(map(str, self.shape))})"


class Pack(Layer):
    """PacGAN's packing (Lin et al. 2018): m consecutive samples side by side, as one.

    Forward (n, d, ...) -> (n/m, m*d, ...): row k of the output is samples
    k*m, ..., k*m + m - 1, concatenated along the feature axis (for images,
    NCHW, along the channels). It is a row-major reshape, so no number moves;
    backward is the inverse reshape. At the start of D it makes D judge m samples
    at once, which lets it see a lack of variety (mode collapse) that a single
    sample cannot show. No parameters.
    """

    def __init__(self, m):
        super().__init__()
        if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
            raise ValueError(f"Pack: m (samples per pack) must be a positive int, got {m!r}")
        self.m = int(m)

    def forward(self, x):
        self._check_input(x)
        if x.ndim < 2:
            raise ValueError(f"{self.short_repr()} expected input of shape (n, d, ...), "
                             f"got {tuple(x.shape)}.")
        n = x.shape[0]
        if n % self.m:
            raise ValueError(
                f"{self.short_repr()}: a batch of n={n} samples cannot be cut into packs of "
                f"m={self.m}; use a batch size divisible by {self.m}.")
        out = x.reshape(n // self.m, self.m * x.shape[1], *x.shape[2:])
        self._save_cache(x.shape, out)
        return out

    def backward(self, dout, param_grads=True, input_grad=True):
        in_shape = self._pop_cache(dout)
        return dout.reshape(in_shape) if input_grad else None

    def short_repr(self):
        return f"Pack({self.m})"


class Sequential(Layer):
    """Layers applied in order; backward runs them in reverse.

    Its children are named by position, so parameters are named "<index>.<name>"
    ("0.W", "2.gamma", ...) and ``parameters()`` and ``state_dict()`` follow the
    layers' order. Everything else (modes, state dicts, ``to``, ``astype``) is
    ``Layer``'s, over ``named_children``.
    """

    def __init__(self, *layers):
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential: item {i} is a {type(layer).__name__}, not a minigan Layer")
        self.layers = list(layers)
        self._check_each_layer_once()

    def _check_each_layer_once(self):
        # A layer keeps the cache of one forward pass: used twice, its second forward
        # overwrites the first's cache and backward gets wrong gradients.
        seen = {}
        for name, layer in self.named_modules():
            if id(layer) in seen:
                raise ValueError(
                    f"Sequential: the same {type(layer).__name__} object is at {seen[id(layer)]!r} "
                    f"and at {name!r}; a layer keeps the cache of one forward pass, so each "
                    "place needs its own layer (build a new one, or copy.deepcopy it)")
            seen[id(layer)] = name

    def __getitem__(self, i):
        return self.layers[i]

    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def named_children(self):
        return [(str(i), layer) for i, layer in enumerate(self.layers)]
    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dout, param_grads=True, input_grad=True):
        """dL/dx of the whole stack. ``input_grad=False`` (returns None) skips every input
        gradient that only the input would need: that of the first layer with parameters,
        and the passes of the parameter-free layers before it (a Reshape in front of D's
        first convolution must not make that convolution compute its dx)."""
        stop = 0 if input_grad else self._first_with_params()
        for i in range(len(self.layers) - 1, stop - 1, -1):
            dout = self.layers[i].backward(dout, param_grads=param_grads,
                                           input_grad=input_grad or i > stop)
        for layer in self.layers[:stop]:
            layer.clear_cache()   # nothing below needs a gradient: forget their forwards
        return dout

    def _first_with_params(self):
        """The index of the first layer that has parameters (the last layer when none has)."""
        for i, layer in enumerate(self.layers):
            if layer._first_param() is not None:
                return i
        return len(self.layers) - 1

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
