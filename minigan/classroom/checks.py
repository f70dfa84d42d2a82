"""The visible checks of every exercise, and the small framework they are written in.

A check tests one thing about the function (or class) around a solution region
and is worth a number of points, all or nothing. It has three parts, and only
the middle one touches student code:

``prepare(ref, rng) -> dict of NumPy arrays``
    runs in the grader, on the REFERENCE minigan (the teacher's copy with the
    solutions in it): it draws the inputs and computes what the answer must be,
    including numerical gradients of the reference forward pass.
``probe`` and ``inputs``
    name a function of probes.py and the arrays of ``prepare`` it receives. It
    runs in the sandboxed runner on the STUDENT's copy, calls the student's code
    and sends back what came out, as plain arrays (channel.py). The expected
    values never leave the grader.
``judge(fx, out)``
    runs in the grader: compares ``out`` (what the probe sent back) with the
    expected values in ``fx`` and raises ``Fail("what is wrong")`` when the
    answer is off. It must treat ``out`` as untrusted data: any other exception
    it raises on malformed values scores the check 0.

A check is attached to a *target*, the dotted name of the function or class
that holds the solution region ("minigan.functional.dense_backward",
"minigan.optim.Adam"); an exercise owns every check whose target contains one
of its regions. So exercise ids can be renumbered without touching the checks.
Checks with ``hidden=True`` live in ``hidden_checks.py``, which releases leave out.
"""

from __future__ import annotations

import zlib

import numpy as np

from minigan.classroom.channel import Opaque

# (target, name) -> check instance, in registration order
CHECKS: dict = {}


class Fail(AssertionError):
    """A check's verdict: the student's answer is wrong, and here is how."""


class Check:
    """Base class of a check; subclass it and decorate it with ``@check(...)``."""

    target: str = ""
    name: str = ""
    points: float = 1
    hidden: bool = False
    # Targets of OTHER exercises that the probe goes through. When one of them
    # fails its own checks, ``grade`` grades this check again with the reference there.
    uses: tuple = ()
    probe: str = ""
    inputs: tuple = ()          # names of fx entries sent to the runner (with any '@case' suffix)

    @property
    def key(self) -> str:
        """A short stable id, used to name this check's arrays in fixture files."""
        return "c%08x" % zlib.crc32(f"{self.target}|{self.name}".encode())

    def prepare(self, ref, rng):  # pragma: no cover - overridden
        return {}

    def options(self) -> dict:
        """JSON options for the probe."""
        return {}

    def cases(self) -> list:
        """[(suffix, options)]: the probe runs once per case, on the inputs ending in suffix."""
        return [("", self.options())]

    def sent(self, fx) -> dict:
        """The arrays of ``fx`` the runner receives (inputs only, never an expected value)."""
        return {k: v for k, v in fx.items() if k.split("@")[0] in self.inputs}

    def judge(self, fx, out):  # pragma: no cover - overridden
        raise NotImplementedError

    def judge_cases(self, fx, outs: dict):
        """Judge every case's output; one-case checks judge ``outs['']``."""
        return self.judge(fx, outs[""])

    def matches(self, region_target: str | None) -> bool:
        return bool(region_target) and (region_target == self.target
                                        or region_target.startswith(self.target + "."))


def check(target: str, name: str, points: float = 1, hidden: bool = False):
    """Class decorator that registers a check of ``target`` worth ``points``."""

    def register(cls):
        inst = cls()
        inst.target, inst.name, inst.points, inst.hidden = target, name, points, hidden
        CHECKS[(target, name)] = inst
        return cls

    return register


def checks_for(targets, hidden: bool = True) -> list:
    """The checks (visible first, then hidden) whose target contains any of ``targets``."""
    found = [c for c in CHECKS.values() if any(c.matches(t) for t in targets)]
    found = [c for c in found if hidden or not c.hidden]
    return [c for c in found if not c.hidden] + [c for c in found if c.hidden]


def seed_for(chk, salt: int = 0) -> int:
    """The seed of a check's ``rng``: fixed per check and salt (``grade`` draws a fresh salt)."""
    return zlib.crc32(f"{chk.target}|{chk.name}|seed|{salt}".encode())


# ---------------------------------------------------------------------------- helpers


def rel_error(a, b) -> float:
    """||a - b|| / (||a|| + ||b||) in float64; 0 when both are 0."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    denom = np.linalg.norm(a) + np.linalg.norm(b)
    return 0.0 if denom == 0 else float(np.linalg.norm(a - b) / denom)


def numerical_gradient(f, x, dout=None, h=1e-6):
    """Central differences of sum(f() * dout) (or of the scalar f()) with respect to x.

    ``x`` is a float64 array that ``f`` reads; it is perturbed in place, one
    entry at a time, and restored. Self-contained on purpose: the grader's
    expected gradients depend on nothing but NumPy and the reference forward.
    """
    if x.dtype != np.float64:
        raise TypeError("numerical_gradient needs float64 inputs")
    grad = np.zeros_like(x)

    def objective():
        out = f()
        if dout is None:
            return float(out)
        return float(np.sum(np.asarray(out) * dout))

    for index in np.ndindex(*x.shape):
        old = float(x[index])
        x[index] = old + h
        plus = objective()
        x[index] = old - h
        minus = objective()
        x[index] = old
        grad[index] = (plus - minus) / (2.0 * h)
    return grad


def describe(value) -> str:
    """A short description of what a student's function returned."""
    if isinstance(value, Opaque):
        return value.text
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    if value is None:
        return "None"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} items"
    mod = type(value).__module__
    if mod.startswith("cupy"):
        return f"a CuPy array of shape {value.shape} (the grader runs on NumPy)"
    return f"a {type(value).__name__}"


def unpack(result, names, func: str):
    """``result`` as a tuple of ``len(names)`` items, or a Fail that says what came back."""
    if len(names) == 1:
        return (result,)
    if not isinstance(result, (tuple, list)) or len(result) != len(names):
        raise Fail(f"{func} must return a tuple ({', '.join(names)}), but it returned "
                   f"{describe(result)}")
    return tuple(result)


def nth_backward(out, i, func: str):
    """What the i-th recorded call of a backward returned, or a Fail naming ``func``."""
    calls = out.get("backward")
    if not isinstance(calls, list) or len(calls) <= i:
        raise Fail(f"{func} returned nothing readable")
    return calls[i]


def _hint(got, expected, factor_hints=None) -> str:
    """A guess at what went wrong, from how ``got`` relates to ``expected``."""
    if got.shape != expected.shape:
        if got.shape == expected.shape[::-1]:
            return " (transposed?)"
        if got.ndim == expected.ndim + 1 and got.shape[1:] == expected.shape:
            return " (did you forget to sum over the batch axis?)"
        if got.size == expected.size:
            return " (same number of entries: a reshape or a transpose is missing?)"
        return ""
    if not np.all(np.isfinite(got)):
        return " (it contains NaN or inf)"
    if np.linalg.norm(expected) == 0:
        return ""
    if rel_error(got, -expected) < 1e-6:
        return " (the sign is flipped)"
    if got.ndim == 2 and got.shape[0] == got.shape[1] and rel_error(got, expected.T) < 1e-6:
        return " (it is transposed)"
    factor = float(np.sum(got * expected) / np.sum(expected * expected))
    if factor != 0 and abs(factor - 1) > 1e-3 and rel_error(got, factor * expected) < 1e-6:
        for f, why in (factor_hints or {}).items():
            if abs(factor - f) < 1e-6 * max(1.0, abs(f)):
                return f" (it is {factor:.6g} times the right value: {why})"
        return f" (it is {factor:.6g} times the right value)"
    return ""


def compare(name, got, expected, tol, dtype=None, factor_hints=None):
    """None if ``got`` matches ``expected`` within relative error ``tol``, else a message."""
    expected = np.asarray(expected)
    if not isinstance(got, np.ndarray):
        if np.isscalar(got) and expected.shape == ():
            got = np.asarray(got)
        else:
            return f"{name} should be an array of shape {expected.shape}, got {describe(got)}"
    if got.shape != expected.shape:
        return (f"{name} has the wrong shape: expected {expected.shape}, received {got.shape}"
                f"{_hint(got, expected)}")
    if dtype is not None and got.dtype != np.dtype(dtype):
        return (f"{name} has dtype {got.dtype}, expected {np.dtype(dtype)} "
                "(float32 in must give float32 out: beware of float64 constants and np.float64 scalars)")
    if not np.all(np.isfinite(got)) and np.all(np.isfinite(expected)):
        return f"{name} contains NaN or inf"
    err = rel_error(got, expected)
    if not err <= tol:
        return (f"{name} is wrong: relative error {err:.1e} (tolerance {tol:.0e})"
                f"{_hint(got, expected, factor_hints)}")
    return None


def expect(problems):
    """Raise one Fail listing every problem (None entries are ignored)."""
    problems = [p for p in problems if p]
    if problems:
        raise Fail("; ".join(problems))


def unchanged(name, before, after):
    if not (isinstance(after, np.ndarray) and before.shape == after.shape
            and np.array_equal(before, after)):
        return (f"{name} was modified in place; the functions must not change their inputs "
                "(write `dx = dout * ...`, not `dout *= ...`)")
    return None


def as_float(name, value):
    """A loss as a Python float: accepts a float or a 0-d (or size-1) array."""
    try:
        arr = np.asarray(value)
        if arr.size != 1:
            raise Fail(f"{name} should be a single number, got {describe(value)}")
        return float(arr.reshape(()))
    except (TypeError, ValueError):
        raise Fail(f"{name} should be a number, got {describe(value)}") from None


# ------------------------------------------------------------------ gradient checks


def gradient_fixture(ref, rng, forward, shapes, backward_names, make=None, extra=None):
    """Fixture for a backward check: inputs, upstream gradient, numerical gradients.

    ``forward(ref, *arrays) -> out`` is the reference forward; ``shapes`` names
    the inputs in order; gradients are taken with respect to every input.
    """
    arrays = {}
    for name, shape in shapes.items():
        arrays[name] = make(name, shape) if make else rng.standard_normal(shape)
    out = np.asarray(forward(ref, *arrays.values()))
    dout = rng.standard_normal(out.shape)
    fx = dict(arrays, dout=dout)
    for (name, x), gname in zip(arrays.items(), backward_names):
        fx["num_" + gname] = numerical_gradient(lambda: forward(ref, *arrays.values()), x, dout)
    fx.update(extra or {})
    return fx


def gradient_problems(func, got, names, fx, tol=1e-6, dtype=None):
    """Messages for the wrong gradients among ``got`` (a tuple in the order of ``names``)."""
    got = unpack(got, names, func)
    problems = []
    for n, g in zip(names, got):
        msg = compare(n, g, fx["num_" + n], tol, dtype=dtype)
        if msg and isinstance(g, np.ndarray):
            swapped = [m for m in names if m != n and g.shape == fx["num_" + m].shape
                       and rel_error(g, fx["num_" + m]) <= max(tol, 1e-4)]
            if swapped:
                msg += (f" (it is {swapped[0]}: return the gradients in the order "
                        f"({', '.join(names)}))")
        problems.append(msg)
    return problems


def _float32(fx, *names):
    return {n: fx[n].astype(np.float32) for n in names}




# ------------------------------------------------------------------------- 1: layers

DENSE_SHAPES = {"x": (4, 5), "W": (5, 3), "b": (3,)}
DENSE_INPUTS = ("x", "W", "b", "dout")


def _dense_out(ref, x, W, b):
    return ref.functional.dense_forward(x, W, b)[0]


class _DenseCheck(Check):
    probe, inputs = "dense", DENSE_INPUTS
    backward: tuple = ()         # the keyword sets dense_backward is called with, in order

    def options(self):
        return {"backward": [dict(kw) for kw in self.backward]}

    def forward_out(self, out):
        res, _cache = unpack(out["forward"], ("out", "cache"), "dense_forward")
        return res

    def backward_out(self, out, i=0):
        return nth_backward(out, i, "dense_backward")


@check("minigan.functional.dense_forward", "out matches the reference (float64)", points=2)
class DenseForwardValues(_DenseCheck):
    def prepare(self, ref, rng):
        fx = {k: rng.standard_normal(s) for k, s in DENSE_SHAPES.items()}
        fx["out"] = _dense_out(ref, fx["x"].copy(), fx["W"].copy(), fx["b"].copy())
        return fx

    def judge(self, fx, out):
        expect([compare("out", self.forward_out(out), fx["out"], 1e-10)])


@check("minigan.functional.dense_forward", "float32 stays float32; x, W, b are not modified")
class DenseForwardFloat32(_DenseCheck):
    def prepare(self, ref, rng):
        fx = {k: rng.standard_normal(s).astype(np.float32) for k, s in DENSE_SHAPES.items()}
        fx["out"] = _dense_out(ref, *(fx[k].astype(np.float64) for k in "xWb"))
        return fx

    def judge(self, fx, out):
        expect([compare("out", self.forward_out(out), fx["out"], 1e-5, dtype=np.float32)]
               + [unchanged(k, fx[k], out.get(k)) for k in ("x", "W", "b")])


@check("minigan.functional.dense_backward", "dx, dW, db match numerical gradients (float64)", points=2)
class DenseBackwardGradients(_DenseCheck):
    uses = ("minigan.functional.dense_forward",)
    backward = ({},)

    def prepare(self, ref, rng):
        return gradient_fixture(ref, rng, _dense_out, DENSE_SHAPES, ("dx", "dW", "db"))

    def judge(self, fx, out):
        expect(gradient_problems("dense_backward", self.backward_out(out), ("dx", "dW", "db"), fx))


@check("minigan.functional.dense_backward", "float32 stays float32; dout is not modified")
class DenseBackwardFloat32(_DenseCheck):
    uses = ("minigan.functional.dense_forward",)
    backward = ({},)

    def prepare(self, ref, rng):
        fx = gradient_fixture(ref, rng, _dense_out, DENSE_SHAPES, ("dx", "dW", "db"))
        sent = _float32(fx, "x", "W", "b", "dout")
        fx.update(sent)  # the runner gets the float32 inputs; num_* stay float64
        return fx

    def judge(self, fx, out):
        problems = gradient_problems("dense_backward", self.backward_out(out), ("dx", "dW", "db"), fx,
                                     tol=1e-5, dtype=np.float32)
        expect(problems + [unchanged("dout", fx["dout"], out.get("dout"))])


def _leaky_out(slope):
    return lambda ref, x: ref.functional.leaky_relu_forward(x, slope)[0]


def _off_kinks(rng, shape, margin=0.1):
    """Inputs at least ``margin`` away from 0, where ReLU-like functions have a kink."""
    x = rng.uniform(margin, 2.0, size=shape)
    return x * rng.choice([-1.0, 1.0], size=shape)


class _ActivationCheck(Check):
    probe, inputs = "activation", ("x", "dout")
    kind, slope, dtype, tol = "leaky_relu", None, None, 1e-6

    def options(self):
        return {"kind": self.kind, "slope": self.slope}

    def judge(self, fx, out):
        problems = gradient_problems(f"{self.kind}_backward", out.get("dx"), ("dx",), fx,
                                     tol=self.tol, dtype=self.dtype)
        if self.dtype is not None:
            problems.append(unchanged("dout", fx["dout"], out.get("dout")))
        expect(problems)


@check("minigan.functional.leaky_relu_backward", "dx matches the numerical gradient (slope 0.2, float64)",
       points=2)
class LeakyReluGradients(_ActivationCheck):
    slope = 0.2

    def prepare(self, ref, rng):
        return gradient_fixture(ref, rng, _leaky_out(0.2), {"x": (5, 6)}, ("dx",),
                                make=lambda n, s: _off_kinks(rng, s))


@check("minigan.functional.leaky_relu_backward",
       "default slope 0.01; float32 stays float32; dout is not modified")
class LeakyReluFloat32(_ActivationCheck):
    dtype, tol = np.float32, 1e-5

    def prepare(self, ref, rng):
        fx = gradient_fixture(ref, rng, _leaky_out(0.01), {"x": (4, 3)}, ("dx",),
                              make=lambda n, s: _off_kinks(rng, s))
        fx.update(_float32(fx, "x", "dout"))
        return fx


def _activation_checks(kind, low, high):
    target = f"minigan.functional.{kind}_backward"

    def out(ref, x):
        return getattr(ref.functional, f"{kind}_forward")(x)[0]

    @check(target, "dx matches the numerical gradient (float64)", points=2)
    class Gradients(_ActivationCheck):
        def prepare(self, ref, rng):
            return gradient_fixture(ref, rng, out, {"x": (4, 5)}, ("dx",),
                                    make=lambda n, s: rng.uniform(low, high, size=s))

    @check(target, "float32 stays float32; dout is not modified")
    class Float32(_ActivationCheck):
        dtype, tol = np.float32, 1e-5

        def prepare(self, ref, rng):
            fx = gradient_fixture(ref, rng, out, {"x": (3, 4)}, ("dx",),
                                  make=lambda n, s: rng.uniform(low, high, size=s))
            fx.update(_float32(fx, "x", "dout"))
            return fx

    Gradients.kind = Float32.kind = kind


_activation_checks("sigmoid", -4.0, 4.0)
_activation_checks("tanh", -2.5, 2.5)


def _bn_out(ref, x, gamma, beta):
    return ref.functional.batchnorm_forward(x, gamma, beta, train=True)[0]


BN_SHAPES = {"x": (6, 4), "gamma": (4,), "beta": (4,)}
BN_NAMES = ("dx", "dgamma", "dbeta")


def _bn_inputs(rng):
    def make(name, shape):
        if name == "x":
            return rng.standard_normal(shape) * 2.0 + 0.5
        if name == "gamma":
            return rng.uniform(0.5, 1.5, size=shape)
        return rng.standard_normal(shape)
    return make


class _BatchNormCheck(Check):
    probe, inputs = "batchnorm", ("x", "gamma", "beta", "dout", "rm", "rv")


@check("minigan.functional.batchnorm_backward",
       "dx, dgamma, dbeta match numerical gradients in training mode (float64)", points=2)
class BatchNormGradients(_BatchNormCheck):
    def prepare(self, ref, rng):
        return gradient_fixture(ref, rng, _bn_out, BN_SHAPES, BN_NAMES, make=_bn_inputs(rng))

    def judge(self, fx, out):
        expect(gradient_problems("batchnorm_backward", out.get("grads"), BN_NAMES, fx))


@check("minigan.functional.batchnorm_backward", "float32 stays float32; dout is not modified")
class BatchNormFloat32(_BatchNormCheck):
    def prepare(self, ref, rng):
        fx = gradient_fixture(ref, rng, _bn_out, BN_SHAPES, BN_NAMES, make=_bn_inputs(rng))
        fx.update(_float32(fx, "x", "gamma", "beta", "dout"))
        return fx

    def judge(self, fx, out):
        expect(gradient_problems("batchnorm_backward", out.get("grads"), BN_NAMES, fx, tol=1e-4,
                                 dtype=np.float32) + [unchanged("dout", fx["dout"], out.get("dout"))])


# --------------------------------------------------------------------------- 2: loss


def _bce_fixture(ref, logits, targets):
    loss = float(ref.functional.bce_with_logits(logits, targets)[0])
    num = numerical_gradient(lambda: ref.functional.bce_with_logits(logits, targets)[0], logits)
    return {"logits": logits, "targets": targets, "loss": np.float64(loss), "num_dlogits": num}


def _bce_problems(fx, ret, tol, dtype=None):
    loss, dlogits = unpack(ret, ("loss", "dlogits"), "bce_with_logits")
    n = fx["logits"].size
    hints = {float(n): f"the gradient of the MEAN over all {n} entries divides by {n}",
             1.0 / n: f"the gradient of the MEAN over all {n} entries divides by {n} once, not twice"}
    problems = [compare("dlogits", dlogits, fx["num_dlogits"], tol, dtype=dtype, factor_hints=hints)]
    value = as_float("loss", loss)
    err = rel_error(value, fx["loss"])
    if not err <= tol:
        why = ""
        if abs(value - fx["loss"] * n) <= 1e-6 * abs(fx["loss"] * n):
            why = f" (it looks like the sum over the {n} entries, not the mean)"
        problems.insert(0, f"loss is wrong: got {value:.8g}, expected {float(fx['loss']):.8g}, "
                           f"relative error {err:.1e}{why}")
    return problems


class _BCECheck(Check):
    probe, inputs = "bce", ("logits", "targets")


@check("minigan.functional.bce_with_logits", "loss and dlogits match the reference (float64)", points=2)
class BCEValues(_BCECheck):
    def prepare(self, ref, rng):
        logits = rng.uniform(-4, 4, size=(8, 1))
        targets = rng.integers(0, 2, size=(8, 1)).astype(np.float64)
        return _bce_fixture(ref, logits, targets)

    def judge(self, fx, out):
        expect(_bce_problems(fx, out.get("ret"), 1e-7))


@check("minigan.functional.bce_with_logits",
       "stable for logits of +-1000 (no overflow, no NaN); float32 stays float32; inputs not modified")
class BCEStable(_BCECheck):
    def options(self):
        return {"raise_on_overflow": True}

    def prepare(self, ref, rng):
        # Extreme logits in a random order and scale, so no answer can be looked up.
        pool = np.array([-1000.0, 1000.0, -60.0, 60.0, 0.0, 3.0, -800.0, 500.0])
        logits = rng.permutation(pool * rng.uniform(0.9, 1.1, size=pool.size)).reshape(-1, 1)
        targets = rng.integers(0, 2, size=logits.shape).astype(np.float64)
        fx = _bce_fixture(ref, logits.astype(np.float32).astype(np.float64), targets)
        fx.update(_float32(fx, "logits", "targets"))
        return fx

    def judge(self, fx, out):
        if isinstance(out.get("fpe"), np.ndarray):
            raise Fail(f"not numerically stable: NumPy reported '{str(out['fpe'])[:100]}' for logits "
                       "of +-1000; no exp() may overflow and no log() may see 0")
        loss, _ = unpack(out.get("ret"), ("loss", "dlogits"), "bce_with_logits")
        if not np.isfinite(as_float("loss", loss)):
            raise Fail(f"loss is {as_float('loss', loss)} for logits of +-1000: not numerically "
                       "stable (no exp() may overflow and no log() may see 0)")
        expect(_bce_problems(fx, out.get("ret"), 1e-5, dtype=np.float32)
               + [unchanged("logits", fx["logits"], out.get("logits")),
                  unchanged("targets", fx["targets"], out.get("targets"))])


# --------------------------------------------------------------------- 3: optimisers


class _OptimizerCheck(Check):
    """Runs an optimiser on two parameters for a few steps, feeding gradients in place."""

    probe = "optimizer"
    cls = "SGD"
    kwargs: dict = {}
    steps = 5
    dtype = np.float64
    constant = False
    tol = 1e-7
    shapes = ((3, 4), (4,))

    def sent(self, fx):
        return {k: v for k, v in fx.items() if not k.startswith("after")}

    def options(self):
        kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in self.kwargs.items()}
        return {"cls": self.cls, "kwargs": kwargs, "n": len(self.shapes), "steps": self.steps}

    def make_grads(self, rng):
        if self.constant:
            g = [rng.standard_normal(s) for s in self.shapes]
            return [[gi.copy() for gi in g] for _ in range(self.steps)]
        return [[rng.standard_normal(s) for s in self.shapes] for _ in range(self.steps)]

    def prepare(self, ref, rng):
        fx = {f"p{i}": rng.standard_normal(s).astype(self.dtype) for i, s in enumerate(self.shapes)}
        for t, gs in enumerate(self.make_grads(rng)):
            for i, g in enumerate(gs):
                fx[f"g{i}_{t}"] = g.astype(self.dtype)
        fx.update(self.expected(ref, fx, len(self.shapes)))
        return fx

    def expected(self, ref, fx, n):
        from minigan.classroom import probes

        traj = probes.optimizer(ref, fx, self.options())["trajectory"]
        return {f"after{i}_{t}": traj[t][i] for t in range(self.steps) for i in range(n)}

    def judge(self, fx, out):
        n = len(self.shapes)
        traj, same = out.get("trajectory"), out.get("same")
        if not (isinstance(traj, list) and len(traj) == self.steps
                and all(isinstance(s, list) and len(s) == n for s in traj)):
            raise Fail("the optimiser's parameters could not be read back after its steps")
        if not (isinstance(same, list) and all(bool(np.all(s)) for s in same)):
            raise Fail("step() replaced a parameter array; it must update it in place")
        for t in range(self.steps):
            for i in range(n):
                before = fx[f"p{i}"] if t == 0 else fx[f"after{i}_{t - 1}"]
                got = traj[t][i]
                if not isinstance(got, np.ndarray) or got.shape != before.shape:
                    raise Fail(f"after step {t + 1}, parameter {i} is {describe(got)}")
                got_step = got - (fx[f"p{i}"] if t == 0 else traj[t - 1][i])
                want_step = fx[f"after{i}_{t}"] - before
                if t == 0 and np.array_equal(got, fx[f"p{i}"]) and np.any(want_step):
                    raise Fail("step() did not change the parameters: update them in place "
                               "(p -= ..., or p[...] = ...; `p = p - ...` only rebinds a local name)")
                err = rel_error(got_step, want_step)
                if not err <= self.tol:
                    ratio = np.linalg.norm(got_step) / max(np.linalg.norm(want_step), 1e-300)
                    raise Fail(f"the update of step {t + 1} (parameter {i}, shape {want_step.shape}) "
                               f"is wrong: relative error {err:.1e}, its size is {ratio:.3g} times "
                               f"the expected one{self.hint(t, ratio)}")

    def hint(self, t, ratio):
        return ""


@check("minigan.optim.SGD", "plain SGD (momentum 0): p -= lr * grad, in place")
class SGDPlain(_OptimizerCheck):
    cls, kwargs, steps = "SGD", {"lr": 0.1}, 3


@check("minigan.optim.SGD", "momentum 0.9, constant gradient: matches the closed form over 6 steps",
       points=2)
class SGDMomentumClosedForm(_OptimizerCheck):
    cls, kwargs, steps, constant = "SGD", {"lr": 0.05, "momentum": 0.9}, 6, True

    def expected(self, ref, fx, n):
        # v_t = g (1 - mu^t) / (1 - mu): the velocity of t steps with a constant g
        lr, mu = self.kwargs["lr"], self.kwargs["momentum"]
        out = {}
        for i in range(n):
            p = fx[f"p{i}"].copy()
            for t in range(self.steps):
                p = p - lr * fx[f"g{i}_{t}"] * (1 - mu ** (t + 1)) / (1 - mu)
                out[f"after{i}_{t}"] = p
        return out

    def hint(self, t, ratio):
        if t == 0:
            return " (on the first step the velocity is the gradient itself: v = g)"
        return " (v <- momentum * v + g, then p -= lr * v)"


@check("minigan.optim.SGD", "momentum 0.5 with changing gradients, float32: matches the reference")
class SGDMomentumReference(_OptimizerCheck):
    # float32 steps are compared as differences of rounded parameters: a large lr
    # keeps the rounding (~1e-7 |p|) small next to the step.
    cls, kwargs, steps, dtype, tol = "SGD", {"lr": 0.1, "momentum": 0.5}, 4, np.float32, 1e-4


@check("minigan.optim.Adam",
       "constant gradient: every step moves p by lr * g / (|g| + eps), the bias-corrected closed form",
       points=2)
class AdamClosedForm(_OptimizerCheck):
    cls, kwargs, steps, constant = "Adam", {"lr": 0.01, "betas": (0.9, 0.999), "eps": 1e-8}, 5, True

    def expected(self, ref, fx, n):
        lr, eps = self.kwargs["lr"], self.kwargs["eps"]
        out = {}
        for i in range(n):
            p = fx[f"p{i}"].copy()
            for t in range(self.steps):
                g = fx[f"g{i}_{t}"]
                p = p - lr * g / (np.abs(g) + eps)
                out[f"after{i}_{t}"] = p
        return out

    def hint(self, t, ratio):
        return (" (with a constant gradient the bias-corrected m_hat = m / (1 - b1^t) and "
                "v_hat = v / (1 - b2^t) equal g and g^2 at every step t = 1, 2, ...: is the bias "
                "correction missing or using the wrong t?)")


@check("minigan.optim.Adam", "betas (0.5, 0.999), changing gradients, float32: matches the reference")
class AdamReference(_OptimizerCheck):
    cls, dtype, tol = "Adam", np.float32, 1e-4
    kwargs = {"lr": 0.05, "betas": (0.5, 0.999), "eps": 1e-8}


# --------------------------------------------------------------------------- 4: GAN


class _GeneratorStepCheck(Check):
    probe = "generator_step"
    uses = ("minigan.functional.dense_forward", "minigan.functional.dense_backward",
            "minigan.functional.leaky_relu_backward", "minigan.functional.bce_with_logits")
    dtype = np.float64
    g_loss = "non-saturating"
    stale_g_grads = False

    def options(self):
        return {"dtype": np.dtype(self.dtype).name, "loss": self.g_loss}

    def sent(self, fx):
        return {k: v for k, v in fx.items() if k == "z" or k[:2] in ("Gp", "Gg", "Dp", "Dg")}

    def prepare(self, ref, rng):
        from minigan.classroom import probes

        G, D = probes.gan_models(ref, self.dtype)
        fx = {"z": rng.standard_normal((7, 3)).astype(self.dtype)}
        for prefix, model in (("G", G), ("D", D)):
            for i, (p, g) in enumerate(model.parameters()):
                fx[f"{prefix}p{i}"] = (rng.standard_normal(p.shape) * 0.7).astype(self.dtype)
                stale = prefix == "D" or self.stale_g_grads
                fx[f"{prefix}g{i}"] = (rng.standard_normal(p.shape) if stale
                                       else np.zeros(p.shape)).astype(self.dtype)
        res = probes.run_generator_step(ref, fx, self.dtype, self.g_loss)
        fx["g_loss"] = np.float64(res["stats"]["g_loss"])
        for i, g in enumerate(res["g_seen"][0]):
            fx[f"want_g{i}"] = g
        return fx

    def g_problems(self, out, fx, tol):
        seen, stats = out.get("g_seen"), out.get("stats")
        if not isinstance(seen, list) or len(seen) != 1 or not isinstance(seen[0], list):
            count = len(seen) if isinstance(seen, list) else "an unknown number of"
            return [f"generator_step called G's optimizer step() {count} times, expected once"]
        problems = []
        if not isinstance(stats, dict) or "g_loss" not in stats:
            problems.append(f"generator_step must return a dict with 'g_loss', got {describe(stats)}")
        else:
            err = rel_error(as_float("g_loss", stats["g_loss"]), fx["g_loss"])
            if not err <= tol:
                problems.append(f"g_loss is wrong: got {as_float('g_loss', stats['g_loss']):.8g}, "
                                f"expected {float(fx['g_loss']):.8g} (relative error {err:.1e})")
        wanted = sorted(k for k in fx if k.startswith("want_g"))
        if len(seen[0]) != len(wanted):
            return problems + ["G's optimizer saw the wrong number of gradients"]
        names = [f"G {'W' if i % 2 == 0 else 'b'}{i // 2 + 1}" for i in range(len(wanted))]
        for i, g in enumerate(seen[0]):
            msg = compare(f"the gradient of {names[i]} at the optimizer step", g, fx[f"want_g{i}"], tol)
            if msg:
                problems.append(msg)
                break  # the first wrong gradient says enough
        return problems


@check("minigan.gan.GAN.generator_step",
       "G's gradients, its update and g_loss match the reference (float64)", points=2)
class GeneratorStepValues(_GeneratorStepCheck):
    def judge(self, fx, out):
        expect(self.g_problems(out, fx, 1e-8))


@check("minigan.gan.GAN.generator_step",
       "D's parameters and gradients stay bit-identical, D's optimizer is not stepped (float32)")
class GeneratorStepLeavesD(_GeneratorStepCheck):
    dtype = np.float32

    def judge(self, fx, out):
        problems = []
        if not isinstance(out.get("d_steps"), np.ndarray) or int(out["d_steps"]) != 0:
            problems.append("the generator step called D's optimizer step(); only G is updated")
        params, grads = out.get("D"), out.get("Dgrad")
        if not isinstance(params, list) or not isinstance(grads, list):
            raise Fail("D's parameters could not be read back")
        for i, (p, g) in enumerate(zip(params, grads)):
            if not isinstance(p, np.ndarray) or p.dtype != np.float32 or not np.array_equal(p, fx[f"Dp{i}"]):
                problems.append(f"D's parameter {i} changed: the generator step must not touch "
                                "D's parameters")
                break
            if not isinstance(g, np.ndarray) or not np.array_equal(g, fx[f"Dg{i}"]):
                problems.append(f"D's gradient {i} changed: run D's backward with "
                                "param_grads=False in the generator step")
                break
        problems += self.g_problems(out, fx, 1e-4)
        expect(problems)


# ------------------------------------------------------------------- 12: convolutions
# col2im is the adjoint of im2col: col2im(c) is the gradient of x -> <im2col(x), c>
# (im2col is linear). So its expected values are central differences of the reference
# im2col, which is not an exercise, and nothing here spells out the loop that the
# exercise asks for.


def _settings(kernel, stride, padding):
    """A convolution's settings as the probes' JSON options (pairs as lists)."""
    pair = lambda v: list(v) if isinstance(v, tuple) else v  # noqa: E731
    return {"kernel": list(kernel), "stride": pair(stride), "padding": pair(padding)}


def _col2im_fixture(ref, rng, x_shape, kernel, stride, padding, ones=False):
    """{"cols", "num_dx"}: random (or all-ones) columns for images of ``x_shape``, and
    what col2im must give for them: the gradient of <im2col(x), cols> with respect to x
    (for all-ones columns, how many windows hold each pixel)."""
    x = rng.standard_normal(x_shape)

    def windows():
        return ref.functional.im2col(x, *kernel, stride, padding)

    shape = windows().shape
    cols = np.ones(shape) if ones else rng.standard_normal(shape)
    return {"cols": cols, "num_dx": numerical_gradient(windows, x, cols)}


def _col2im_problems(label, got, fx, x_shape, padding, tol=1e-6, dtype=None):
    """Messages for a wrong col2im, with a guess at the cause."""
    expected = fx["num_dx"]
    msg = compare(label, got, expected, tol, dtype=dtype)
    if not msg or not isinstance(got, np.ndarray):
        return msg
    pH, pW = padding if isinstance(padding, (tuple, list)) else (padding, padding)
    N, C, H, W = x_shape
    if got.shape == (N, C, H + 2 * pH, W + 2 * pW) and (pH or pW):
        return msg + (" (that is the padded image: return only the H x W pixels inside the "
                      "padding; sums that land on the padding are dropped)")
    return msg


def _overlap_hint(got, counts):
    """The telltale of a col2im that overwrites: on all-ones columns, no pixel above 1."""
    if (isinstance(got, np.ndarray) and got.shape == counts.shape and counts.max() > 1
            and np.all(np.isfinite(got)) and got.max() <= 1 + 1e-9):
        return (" (every pixel came back at most once, but windows overlap here: a pixel "
                "in k windows must receive the SUM of its k entries; add (+=), do not assign)")
    return ""


class _Col2imCheck(Check):
    """col2im on random columns (and, with ``ones``, on all-ones columns) for one setting."""

    probe, inputs = "col2im", ("cols",)
    x_shape, kernel, stride, padding = (2, 2, 5, 5), (3, 3), 1, 1
    ones, dtype, tol = False, None, 1e-6

    def cases(self):
        opt = dict(_settings(self.kernel, self.stride, self.padding), x_shape=list(self.x_shape))
        return [("", opt)] + ([("@ones", opt)] if self.ones else [])

    def prepare(self, ref, rng):
        setting = (self.x_shape, self.kernel, self.stride, self.padding)
        fx = _col2im_fixture(ref, rng, *setting)
        if self.dtype is not None:
            fx["cols"] = fx["cols"].astype(self.dtype)
        if self.ones:
            ones = _col2im_fixture(ref, rng, *setting, ones=True)
            fx.update({k + "@ones": v for k, v in ones.items()})
        return fx

    def judge_cases(self, fx, outs):
        problems = [_col2im_problems("col2im(cols)", outs[""].get("ret"), fx, self.x_shape,
                                     self.padding, self.tol, self.dtype)]
        if self.dtype is not None:
            problems.append(unchanged("cols", fx["cols"], outs[""].get("cols")))
        if self.ones:
            got = outs["@ones"].get("ret")
            ones = {"num_dx": fx["num_dx@ones"]}
            msg = _col2im_problems("col2im(ones)", got, ones, self.x_shape, self.padding)
            problems.append(msg and msg + _overlap_hint(got, fx["num_dx@ones"]))
        expect(problems)


@check("minigan.functional.col2im",
       "the adjoint of im2col: col2im(c) is the gradient of <im2col(x), c> "
       "(float64; 3x3 kernel, stride 1, padding 1)", points=2)
class Col2imAdjoint(_Col2imCheck):
    ones = True


@check("minigan.functional.col2im",
       "DCGAN's 4x4 kernel with stride 2 and padding 1; float32 stays float32; "
       "cols is not modified")
class Col2imStride2Float32(_Col2imCheck):
    x_shape, kernel, stride, padding = (2, 3, 6, 6), (4, 4), 2, 1
    dtype, tol = np.float32, 1e-5


CONV_NAMES = ("dx", "dW", "db")


def _conv_out(stride, padding, bias=True):
    if bias:
        return lambda ref, x, W, b: ref.functional.conv2d_forward(x, W, b, stride, padding)[0]
    return lambda ref, x, W: ref.functional.conv2d_forward(x, W, None, stride, padding)[0]


def _weight_order_hint(got, expected):
    """The telltale of dW computed as a (C_in kH kW, C_out) product: the right numbers,
    each at the transposed place of W's (C_out, C_in kH kW) matrix view."""
    if not isinstance(got, np.ndarray) or got.shape != expected.shape:
        return ""
    swapped = expected.reshape(expected.shape[0], -1).T
    if rel_error(got.reshape(swapped.shape), swapped) < 1e-4:
        return (" (the right numbers in the wrong places: as a matrix dW is (C_out, C_in kH kW), "
                "like W.reshape(C_out, -1); yours is its transpose, reshaped to W's shape)")
    return ""


class _ConvCheck(Check):
    """conv2d_forward on the student's code, then conv2d_backward with each keyword set."""

    probe = "conv2d"
    uses = ("minigan.functional.col2im",)
    x_shape, W_shape, stride, padding, bias = (2, 2, 5, 5), (3, 2, 3, 3), 1, 1, True
    backward: tuple = ({},)
    dtype, tol = None, 1e-6

    @property
    def inputs(self):
        return ("x", "W", "b", "dout") if self.bias else ("x", "W", "dout")

    def options(self):
        return dict(_settings(self.W_shape[2:], self.stride, self.padding),
                    backward=[dict(kw) for kw in self.backward])

    def prepare(self, ref, rng):
        shapes = {"x": self.x_shape, "W": self.W_shape}
        if self.bias:
            shapes["b"] = (self.W_shape[0],)
        fx = gradient_fixture(ref, rng, _conv_out(self.stride, self.padding, self.bias), shapes,
                              CONV_NAMES)
        if self.dtype is not None:
            fx.update(_float32(fx, *self.inputs))  # the runner gets float32; num_* stay float64
        return fx

    def backward_out(self, out, i=0):
        return nth_backward(out, i, "conv2d_backward")

    def judge(self, fx, out):
        names = CONV_NAMES if self.bias else CONV_NAMES[:2]
        got = unpack(self.backward_out(out), CONV_NAMES, "conv2d_backward")
        problems = gradient_problems("conv2d_backward", got[:len(names)], names, fx,
                                     tol=self.tol, dtype=self.dtype)
        problems[1] = problems[1] and problems[1] + _weight_order_hint(got[1], fx["num_dW"])
        if not self.bias and got[2] is not None:
            problems.append(f"db must be None when the forward had no bias (b=None), got "
                            f"{describe(got[2])}")
        if self.dtype is not None:
            problems.append(unchanged("dout", fx["dout"], out.get("dout")))
        expect(problems)


@check("minigan.functional.conv2d_backward",
       "dx, dW, db match numerical gradients (float64; 3x3 kernel, stride 1, padding 1)",
       points=2)
class ConvBackwardGradients(_ConvCheck):
    pass


@check("minigan.functional.conv2d_backward",
       "DCGAN's 4x4 kernel with stride 2 and padding 1; float32 stays float32; "
       "dout is not modified")
class ConvBackwardStride2Float32(_ConvCheck):
    x_shape, W_shape, stride, padding = (2, 2, 6, 6), (3, 2, 4, 4), 2, 1
    dtype, tol = np.float32, 1e-4


# ------------------------------------------------------------------- notebooks
# A notebook exercise is graded like the library's when its cell defines functions
# that can run on their own (probes.notebook_functions runs only the cell's defs).


@check("tutorials/02_backprop::dense_tanh_backward",
       "dx, dW, db of tanh(x @ W + b) match numerical gradients (float64)", points=2)
class DenseTanhBackward(Check):
    probe, inputs = "notebook_function", ("x", "W", "b", "dout")

    def options(self):
        return {"notebook": "tutorials/02_backprop", "function": "dense_tanh_backward",
                "call": "dense_tanh"}

    def prepare(self, ref, rng):
        return gradient_fixture(ref, rng, lambda ref, x, W, b: np.tanh(x @ W + b),
                                {"x": (4, 5), "W": (5, 3), "b": (3,)}, ("dx", "dW", "db"))

    def judge(self, fx, out):
        expect(gradient_problems("dense_tanh_backward", out.get("ret"), ("dx", "dW", "db"), fx))


@check("tutorials/02_backprop::forward_difference",
       "one-sided differences of sum(x**3), eps 1e-4; x is restored", points=2)
class ForwardDifference(Check):
    probe, inputs = "notebook_function", ("x",)
    EPS = 1e-4

    def options(self):
        return {"notebook": "tutorials/02_backprop", "function": "forward_difference",
                "call": "forward_difference", "eps": self.EPS}

    def prepare(self, ref, rng):
        # ((x + eps)^3 - x^3) / eps in closed form: this file ships with releases, so it
        # must not spell out the loop the exercise asks for.
        x = rng.standard_normal((3, 4))
        eps = self.EPS
        return {"x": x, "want": 3 * x ** 2 + 3 * x * eps + eps ** 2, "exact": 3 * x ** 2}

    def judge(self, fx, out):
        got = out.get("ret")
        msg = compare("the gradient", got, fx["want"], 1e-6)
        if msg and isinstance(got, np.ndarray) and compare("g", got, fx["exact"], 1e-7) is None:
            msg += " (that is the exact derivative: central differences? use (f(x + eps) - f(x)) / eps)"
        expect([msg, unchanged("x", fx["x"], out.get("x"))])
