"""Gradient checking: compare a hand-written backward pass with central differences.

For a function out = f(x) and a fixed upstream gradient G (random, so that every
entry of the Jacobian matters and errors cannot cancel), the analytic dL/dx of
L = sum(f(x) * G) must equal, entry by entry,

    (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)   + O(eps^2).

Checks run in float64: in float32 the rounding error of L, about 1e-7 |L|,
divided by 2 eps swamps the O(eps^2) truncation error for every useful eps.
Keep inputs away from kinks (ReLU at 0): there the two one-sided slopes differ
and no finite difference agrees with either.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, field

import numpy as np

from minigan.backend import array_module, to_numpy

DEFAULT_EPS = 1e-6
DEFAULT_ATOL = 1e-7
DEFAULT_RTOL = 1e-5


def rel_error(a, b):
    """Relative error ||a - b|| / (||a|| + ||b||) (Euclidean norms; 0 when both are 0).

    One number for a whole gradient, insensitive to entries that are tiny in
    both: below 1e-7 the gradients agree, above 1e-2 something is wrong.
    """
    a = to_numpy(a).astype(np.float64)
    b = to_numpy(b).astype(np.float64)
    denom = np.linalg.norm(a) + np.linalg.norm(b)
    return 0.0 if denom == 0 else float(np.linalg.norm(a - b) / denom)


def _require_float64(x, name):
    if x.dtype != np.float64:
        raise TypeError(
            f"gradient checks need float64 arrays, but {name} is {x.dtype}: in float32 the "
            "rounding error of the finite difference is larger than the error being "
            "checked for. Pass x.astype(np.float64) (check_layer converts layers itself).")


def numerical_gradient(f, x, grad_out=None, eps=DEFAULT_EPS):
    """Central-difference gradient of sum(f() * grad_out) with respect to the array x.

    ``f`` takes no arguments and reads ``x``, which is perturbed in place, one
    entry at a time, and restored. Without grad_out, f must return a scalar.
    Returns an array of x's shape (float64).
    """
    _require_float64(x, "x")
    xp = array_module(x)
    grad = xp.zeros_like(x)

    def objective():
        out = f()
        if grad_out is None:
            return float(out)
        return float((out * grad_out).sum())

    for index in np.ndindex(*x.shape):  # indexes x itself: works for any memory layout
        old = float(x[index])
        x[index] = old + eps
        plus = objective()
        x[index] = old - eps
        minus = objective()
        x[index] = old
        grad[index] = (plus - minus) / (2.0 * eps)
    return grad


@dataclass
class GradientComparison:
    """One gradient's check: the error and the worst entry."""
    name: str
    shape: tuple
    rel_error: float = float("nan")
    max_abs_error: float = float("nan")
    worst_index: tuple = ()
    analytic: float = float("nan")
    numeric: float = float("nan")
    ok: bool = False
    problem: str = ""

    def line(self):
        if self.problem:
            return f"  {self.name:<10} {str(self.shape):<14} {'':>9}  {'':>9}  {self.problem}"
        status = "ok" if self.ok else "WRONG"
        return (f"  {self.name:<10} {str(self.shape):<14} {self.rel_error:9.2e}  "
                f"{self.max_abs_error:9.2e}  {str(self.worst_index):<12} {self.analytic:12.6g} "
                f"{self.numeric:12.6g}  {status}")


@dataclass
class GradCheckResult:
    """The outcome of a gradient check; ``print`` it for a table, test ``.ok``."""
    what: str
    comparisons: list = field(default_factory=list)
    eps: float = DEFAULT_EPS
    upstream: str = "random upstream gradient"
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL

    @property
    def ok(self):
        return all(c.ok for c in self.comparisons)

    @property
    def max_rel_error(self):
        return max((c.rel_error for c in self.comparisons), default=0.0)

    def __bool__(self):
        return self.ok

    def wrong(self):
        """The names of the gradients that failed."""
        return [c.name for c in self.comparisons if not c.ok]

    def __str__(self):
        verdict = "passed" if self.ok else "FAILED for " + ", ".join(self.wrong())
        head = (f"Gradient check of {self.what}: {verdict}\n"
                f"  (float64, {self.upstream}, eps={self.eps:g}; an entry passes "
                f"when |analytic - numeric| <= {self.atol:g} + {self.rtol:g} |numeric|)\n"
                f"  {'gradient':<10} {'shape':<14} {'rel.error':>9}  {'max|diff|':>9}  "
                f"{'worst entry':<12} {'analytic':>12} {'numeric':>12}  status")
        return "\n".join([head] + [c.line() for c in self.comparisons])

    __repr__ = __str__

    def assert_ok(self):
        """Raise AssertionError with the table when any gradient is wrong."""
        if not self.ok:
            raise AssertionError(str(self))
        return self


def compare(name, analytic, numeric, atol=DEFAULT_ATOL, rtol=DEFAULT_RTOL):
    """Compare one analytic gradient with its numerical estimate."""
    numeric = to_numpy(numeric)
    result = GradientComparison(name=name, shape=tuple(numeric.shape))
    if analytic is None:
        result.problem = "missing: the backward returned None for this gradient"
        return result
    if not hasattr(analytic, "shape"):
        result.problem = f"not an array: the backward returned a {type(analytic).__name__}"
        return result
    analytic = to_numpy(analytic)
    if analytic.shape != numeric.shape:
        result.problem = (f"wrong shape: expected {numeric.shape} (the input's), "
                          f"got {analytic.shape}")
        return result
    a, n = analytic.astype(np.float64), numeric.astype(np.float64)
    diff = np.abs(a - n)
    if not np.all(np.isfinite(a)):
        result.problem = "not finite: the analytic gradient has NaN or inf entries"
        return result
    excess = diff - (atol + rtol * np.abs(n))
    # The worst entry: the one furthest past its tolerance when any fails, else
    # simply the largest difference.
    ranking = excess if np.any(excess > 0) else diff
    worst = np.unravel_index(int(np.argmax(ranking)), a.shape) if a.size else ()
    result.rel_error = rel_error(a, n)
    result.max_abs_error = float(diff.max()) if a.size else 0.0
    result.worst_index = tuple(int(i) for i in worst)
    result.analytic = float(a[worst]) + 0.0 if a.size else 0.0  # + 0.0 prints -0 as 0
    result.numeric = float(n[worst]) + 0.0 if a.size else 0.0
    result.ok = bool(np.all(excess <= 0))
    return result


def _random_like(out, seed):
    # A stream of its own: with a plain default_rng(seed), a user who drew x from
    # default_rng(0) would get grad_out == x, a degenerate direction for some ops.
    rng = np.random.default_rng((seed, 0x6D696E6967616E))
    xp = array_module(out)
    return xp.asarray(rng.standard_normal(out.shape))


def _input_names(forward, n):
    """'dx', 'dW', 'db' from the forward's parameter names (x, W, b), else 'd(input i)'."""
    try:
        params = list(inspect.signature(forward).parameters)[:n]
    except (TypeError, ValueError):
        params = []
    if len(params) == n:
        return ["d" + p for p in params]
    return [f"d(input {i})" for i in range(n)]


def _find_backward(forward):
    name = getattr(forward, "__name__", "")
    if not name.endswith("_forward"):
        raise ValueError(
            f"cannot find the backward of {name or forward!r}: pass backward=... explicitly "
            "(automatic lookup needs a function named '<op>_forward' beside '<op>_backward').")
    backward_name = name[: -len("_forward")] + "_backward"
    backward = getattr(forward, "__globals__", {}).get(backward_name)
    if backward is None:
        raise ValueError(f"no function '{backward_name}' found beside '{name}': pass backward=...")
    return backward


def check_backward(forward, inputs, grad_out=None, *, backward=None, kwargs=None,
                   names=None, eps=DEFAULT_EPS, atol=DEFAULT_ATOL, rtol=DEFAULT_RTOL, seed=0):
    """Check a functional pair ``forward(*inputs, **kwargs) -> (out, cache)``,
    ``backward(dout, cache) -> grad or tuple of grads`` (one per input, in order).

    ``backward`` defaults to the function named like ``forward`` with
    "_backward" in place of "_forward". ``grad_out`` defaults to a standard
    normal array (seeded by ``seed``) of the output's shape. Every input must be
    float64. Returns a GradCheckResult: ``print`` it, or test ``.ok``.
    """
    kwargs = kwargs or {}
    backward = backward or _find_backward(forward)
    inputs = list(inputs)
    for i, x in enumerate(inputs):
        _require_float64(x, f"input {i}")
    names = names or _input_names(forward, len(inputs))

    out, cache = forward(*inputs, **kwargs)
    upstream = "random upstream gradient" if grad_out is None else "given upstream gradient"
    if grad_out is None:
        grad_out = _random_like(out, seed)
    grads = backward(grad_out, cache)
    if not isinstance(grads, tuple):
        grads = (grads,)
    what = f"{getattr(forward, '__name__', 'forward')} / {getattr(backward, '__name__', 'backward')}"
    result = GradCheckResult(what, eps=eps, atol=atol, rtol=rtol, upstream=upstream)
    if len(grads) != len(inputs):
        result.comparisons.append(GradientComparison(
            name="(all)", shape=(), problem=f"the backward returned {len(grads)} gradients "
            f"for {len(inputs)} inputs"))
        return result
    for i, (x, analytic) in enumerate(zip(inputs, grads)):
        numeric = numerical_gradient(lambda: forward(*inputs, **kwargs)[0], x, grad_out, eps)
        result.comparisons.append(compare(names[i], analytic, numeric, atol, rtol))
    return result


def check_loss(loss_fn, pred, target, *, eps=DEFAULT_EPS, atol=DEFAULT_ATOL, rtol=DEFAULT_RTOL):
    """Check ``loss_fn(pred, target) -> (loss, dpred)``: dpred against d(loss)/d(pred)."""
    _require_float64(pred, "pred")
    _, dpred = loss_fn(pred, target)
    numeric = numerical_gradient(lambda: loss_fn(pred, target)[0], pred, None, eps)
    result = GradCheckResult(getattr(loss_fn, "__name__", "loss"), eps=eps, atol=atol, rtol=rtol,
                             upstream="scalar loss")
    result.comparisons.append(compare("dpred", dpred, numeric, atol, rtol))
    return result


def check_layer(layer, x, grad_out=None, *, eps=DEFAULT_EPS, atol=DEFAULT_ATOL,
                rtol=DEFAULT_RTOL, seed=0):
    """Check a layer's (or a whole model's) dx and every parameter gradient.

    Works on a float64 deep copy: the layer you pass is not touched. Random
    layers (dropout) replay the same mask on every forward pass.
    """
    from minigan.layers import Dropout  # local: gradcheck is importable on its own

    model = copy.deepcopy(layer).astype("float64")
    x = x.astype(np.float64)
    replay = []
    for sub in model.modules():
        if isinstance(sub, Dropout) and sub.training and sub.p > 0:
            if sub.rng is None:
                sub.rng = np.random.default_rng(seed)
            replay.append((sub.rng, copy.deepcopy(sub.rng.bit_generator.state)))

    def run_forward():
        for generator, state in replay:
            generator.bit_generator.state = copy.deepcopy(state)
        return model.forward(x)

    out = run_forward()
    upstream = "random upstream gradient" if grad_out is None else "given upstream gradient"
    if grad_out is None:
        grad_out = _random_like(out, seed)
    model.zero_grad()
    dx = model.backward(grad_out)
    analytic = {"dx": dx}
    for name, _, g in model.named_parameters():
        analytic["d" + name] = g.copy()
    result = GradCheckResult(layer.short_repr(), eps=eps, atol=atol, rtol=rtol, upstream=upstream)
    numeric = numerical_gradient(run_forward, x, grad_out, eps)
    result.comparisons.append(compare("dx", analytic["dx"], numeric, atol, rtol))
    for name, p, _ in model.named_parameters():
        numeric = numerical_gradient(run_forward, p, grad_out, eps)
        result.comparisons.append(compare("d" + name, analytic["d" + name], numeric, atol, rtol))
    return result


# ------------------------------------------------------------- the built-in checks


def run_checks(cases=None, verbose=False):
    """Run ``cases`` (default ``builtin_checks()``), print one line each and a total;
    returns the number that failed. ``verbose``: also the full table of a failure."""
    cases = builtin_checks() if cases is None else cases
    failures = 0
    width = max(len(name) for name, _ in cases)
    print(f"{'check':<{width}}  {'max rel. error':>14}  result")
    print("-" * (width + 26))
    for name, fn in cases:
        result = None
        try:
            result = fn()
            ok, err = result.ok, result.max_rel_error
            status = "ok" if ok else "FAILED: " + ", ".join(result.wrong())
        except Exception as exc:  # a crash in a backward is a failed check, not a traceback
            ok, err, status = False, float("nan"), f"ERROR: {type(exc).__name__}: {exc}"
        failures += not ok
        print(f"{name:<{width}}  {err:14.2e}  {status}")
        if not ok and verbose and result is not None:
            print(result)
    print("-" * (width + 26))
    print(f"{len(cases) - failures}/{len(cases)} gradient checks passed (float64, central "
          "differences, random upstream gradient)")
    return failures


def builtin_checks():
    """(name, zero-argument function returning a GradCheckResult) for every built-in
    op, loss and layer, and the generator step through D: what ``python -m minigan
    gradcheck`` runs. Inputs are float64 and away from the kinks of ReLU/LeakyReLU."""
    from minigan import functional as F

    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 4))
    x += np.sign(x) * 0.1  # |x| >= 0.1: no kink of ReLU/LeakyReLU within eps
    W, b = rng.standard_normal((4, 3)), rng.standard_normal(3)
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    mask = F.dropout_mask((5, 4), 0.5, rng=1, dtype="float64")
    running = {"running_mean": rng.standard_normal(4), "running_var": rng.uniform(0.5, 2.0, 4)}
    logits, probs = rng.standard_normal((6, 1)) * 3, rng.uniform(0.05, 0.95, (6, 1))
    soft = rng.uniform(0, 1, (6, 1))
    class_logits, labels = rng.standard_normal((6, 5)), rng.integers(0, 5, 6)
    cases = [
        ("dense_forward/backward", lambda: check_backward(F.dense_forward, [x, W, b])),
        ("relu_forward/backward", lambda: check_backward(F.relu_forward, [x])),
        ("leaky_relu_forward/backward", lambda: check_backward(
            F.leaky_relu_forward, [x], kwargs={"negative_slope": 0.2})),
        ("sigmoid_forward/backward", lambda: check_backward(F.sigmoid_forward, [x])),
        ("tanh_forward/backward", lambda: check_backward(F.tanh_forward, [x])),
        ("dropout_forward/backward", lambda: check_backward(
            F.dropout_forward, [x], kwargs={"p": 0.5, "mask": mask})),
        ("batchnorm_forward/backward (train)", lambda: check_backward(
            F.batchnorm_forward, [x, gamma, beta], kwargs={"train": True})),
        ("batchnorm_forward/backward (eval)", lambda: check_backward(
            F.batchnorm_forward, [x, gamma, beta], kwargs={"train": False, **running})),
        ("bce_with_logits", lambda: check_loss(F.bce_with_logits, logits, soft)),
        ("bce", lambda: check_loss(F.bce, probs, soft)),
        ("mse", lambda: check_loss(F.mse, logits, soft)),
        ("least_squares", lambda: check_loss(F.least_squares, logits, soft)),
        ("softmax_cross_entropy", lambda: check_loss(
            F.softmax_cross_entropy, class_logits, labels)),
    ]
    return cases + _gan_loss_checks(logits, soft * 4 - 2) + _layer_checks(x) + _conv_checks() + [
        ("GAN generator step through D", gan_generator_check),
        ("gradient penalty (double backward)", _penalty_check)] + _projection_checks()


def _penalty_check():
    """The WGAN-GP penalty's parameter gradients, through a tanh/leaky-ReLU critic
    (tanh's second derivative is not zero: the double backward must carry it)."""
    from minigan import layers as L
    from minigan.penalty import check_penalty

    D = L.Sequential(L.Dense(3, 5, dtype="float64", rng=6), L.Tanh(),
                     L.Dense(5, 4, dtype="float64", rng=7), L.LeakyReLU(0.2),
                     L.Dense(4, 1, dtype="float64", rng=8))
    return check_penalty(D, np.random.default_rng(9).standard_normal((6, 3)))


def _projection_checks():
    """The projection discriminator (pairs packed, so V has a row per class and place),
    as a layer (dx, dV, phi's and psi's parameters) and under R1 over the image."""
    from minigan import layers as L
    from minigan.models import ProjectionDiscriminator
    from minigan.penalty import check_penalty

    def build():
        body = L.Sequential(L.Reshape(1, 4, 4), L.Pack(2), L.Conv2d(
            2, 2, 3, stride=2, padding=1, dtype="float64", rng=17), L.Tanh(), L.Flatten())
        return ProjectionDiscriminator(body, L.Dense(8, 1, dtype="float64", rng=18), 3, 16,
                                       pack=2, dtype="float64", rng=19)

    rng = np.random.default_rng(16)
    x = np.concatenate([rng.uniform(-1, 1, (4, 16)), np.eye(3)[[0, 2, 1, 2]]], axis=1)
    return [("ProjectionDiscriminator", lambda: check_layer(build(), x)),
            ("R1 through a ProjectionDiscriminator (double backward)",
             lambda: check_penalty(build(), x, 2.0, 0.0, features=16))]


def _gan_loss_checks(real_out, fake_out):
    """Both halves of every adversarial loss of ``minigan.gan_losses``."""
    from minigan import gan_losses

    def check(loss):
        result = GradCheckResult(repr(loss), upstream="scalar loss")
        _, d_real, d_fake = loss.discriminator(real_out, fake_out)
        for name, x, analytic in (("dL_D/dreal", real_out, d_real),
                                  ("dL_D/dfake", fake_out, d_fake)):
            numeric = numerical_gradient(lambda: loss.discriminator(real_out, fake_out)[0], x)
            result.comparisons.append(compare(name, analytic, numeric))
        _, d_fake = loss.generator(fake_out)
        numeric = numerical_gradient(lambda: loss.generator(fake_out)[0], fake_out)
        result.comparisons.append(compare("dL_G/dfake", d_fake, numeric))
        return result

    losses = [gan_losses.NonSaturating(), gan_losses.NonSaturating(label_smoothing=0.1),
              gan_losses.Minimax(), gan_losses.LeastSquares(), gan_losses.Wasserstein(),
              gan_losses.Hinge()]  # the outputs lie off the hinge's kinks at +-1
    return [(repr(loss), lambda loss=loss: check(loss)) for loss in losses]


def _layer_checks(x):
    from minigan import layers as L

    def layer(lay):
        return lambda: check_layer(lay, x)

    return [
        ("Dense", layer(L.Dense(4, 3, dtype="float64", rng=2))),
        ("ReLU", layer(L.ReLU())),
        ("LeakyReLU", layer(L.LeakyReLU(0.2))),
        ("Sigmoid", layer(L.Sigmoid())),
        ("Tanh", layer(L.Tanh())),
        ("Dropout", layer(L.Dropout(0.5, rng=3))),
        ("BatchNorm1d (train)", layer(L.BatchNorm1d(4, dtype="float64"))),
        ("BatchNorm1d (eval)", layer(L.BatchNorm1d(4, dtype="float64").eval())),
        ("Sequential MLP", layer(L.Sequential(
            # batch norm after the activation: right after a Dense it would make that
            # layer's bias gradient exactly 0, which says nothing about the check
            L.Dense(4, 6, dtype="float64", rng=4), L.LeakyReLU(0.2),
            L.BatchNorm1d(6, dtype="float64"), L.Dense(6, 2, dtype="float64", rng=5),
            L.Tanh()))),
    ]


def _conv_checks():
    """The convolutions and image batch norm, functional and as layers, on tiny
    non-square images with stride 2, padding and output_padding (every rule at once)."""
    from minigan import functional as F
    from minigan import layers as L

    rng = np.random.default_rng(10)
    img = rng.standard_normal((2, 2, 5, 4))
    W, W_t, b = rng.standard_normal((3, 2, 3, 2)), rng.standard_normal((2, 3, 3, 2)), \
        rng.standard_normal(3)
    gamma, beta = rng.uniform(0.5, 2.0, 2), rng.standard_normal(2)
    conv = {"stride": 2, "padding": 1}

    def layer(lay, x=img):
        return lambda: check_layer(lay, x)

    return [
        ("conv2d_forward/backward", lambda: check_backward(F.conv2d_forward, [img, W, b],
                                                           kwargs=conv)),
        ("conv_transpose2d_forward/backward", lambda: check_backward(
            F.conv_transpose2d_forward, [img, W_t, b], kwargs={**conv, "output_padding": 1})),
        ("batchnorm2d_forward/backward (train)", lambda: check_backward(
            F.batchnorm2d_forward, [img, gamma, beta], kwargs={"train": True})),
        ("Conv2d", layer(L.Conv2d(2, 3, (3, 2), stride=2, padding=1, init="pytorch",
                                  dtype="float64", rng=11))),
        ("ConvTranspose2d", layer(L.ConvTranspose2d(2, 3, (3, 2), stride=2, padding=1,
                                                    output_padding=1, init="pytorch",
                                                    dtype="float64", rng=12))),
        ("BatchNorm2d (train)", layer(L.BatchNorm2d(2, dtype="float64"))),
        ("Sequential DCGAN-style", layer(L.Sequential(
            L.Reshape(2, 2, 2), L.ConvTranspose2d(2, 3, 4, stride=2, padding=1, dtype="float64",
                                                  rng=13),
            L.Tanh(), L.BatchNorm2d(3, dtype="float64"),
            L.Conv2d(3, 2, 3, stride=2, padding=1, dtype="float64", rng=14),
            L.Flatten(), L.Dense(8, 1, dtype="float64", rng=15)),
            rng.standard_normal((3, 8)))),
    ]


def gan_generator_check():
    """G's parameter gradient of the generator loss, through D, against finite differences:
    the generator step of ``minigan.gan.GAN``, one backward at a time."""
    from minigan.models import build_gan

    gan = build_gan({"latent_dim": 3, "data_dim": 2, "g_hidden": [5], "d_hidden": [4],
                     "dtype": "float64", "activation": "tanh"}, backend="numpy", seed=0)
    z = np.random.default_rng(1).standard_normal((6, 3))

    def loss():
        return float(gan.loss.generator(gan.D.forward(gan.G.forward(z)))[0])

    _, d_fake_out = gan.loss.generator(gan.D.forward(gan.G.forward(z)))
    dfake = gan.D.backward(d_fake_out, param_grads=False)
    gan.G.zero_grad()
    gan.G.backward(dfake)
    result = GradCheckResult("generator loss through D w.r.t. G's parameters")
    for name, p, g in gan.G.named_parameters():
        analytic = g.copy()
        result.comparisons.append(compare("d" + name, analytic, numerical_gradient(loss, p)))
    gan.G.clear_cache()
    gan.D.clear_cache()
    return result
