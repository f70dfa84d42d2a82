"""Optimisers that update parameters in place: SGD (momentum, Nesterov) and Adam.

An optimiser holds the (param, grad) pairs from ``model.parameters()``; ``step()``
reads the grads and changes the params in place, ``zero_grad()`` clears the
grads. Hyper-parameters follow PyTorch's definitions so results can be compared
number for number. All state (momentum buffers, Adam's moments) has the
parameters' dtype and backend.

Each update rule (``_update``) is plain code, written as the math reads. Adam's
``step()`` runs the same numbers through a faster kernel (``minigan.kernels.adam_step``:
cache-sized blocks on NumPy, one fused kernel per parameter on CuPy), which
tests/test_optim.py proves equal to ``_update`` bit for bit.
"""

from __future__ import annotations

import copy
import math
import numbers

import numpy as np

from minigan import kernels
from minigan.backend import array_module, backend_of, to_device


def _number(owner, name, value, low=None, high=None, low_open=False, high_open=True):
    """``value`` as a float, refused unless it is a finite real number in the range:
    NaN or inf learning rates, momenta >= 1 and the like train silently to garbage."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {name} must be a number, got {type(value).__name__} "
                        f"{value!r}")
    value = float(value)
    ok = math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "" if low is None else f"{'(' if low_open else '['}{low}, "
        hi = "inf)" if high is None else f"{high}{')' if high_open else ']'}"
        expected = f"a finite number in {lo or '(-inf, '}{hi}"
        raise ValueError(f"{owner}: {name} must be {expected}, got {value!r}")
    return value


def _learning_rate(owner, lr):
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
        raise TypeError(f"{owner}: the learning rate must be a number, got "
                        f"{type(lr).__name__} {lr!r}")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"{owner}: learning rate must be positive, got {lr} (expected a "
                         "finite number > 0, such as 2e-4)")
    return float(lr)


class Optimizer:
    """Base class: parameter pairs, a step counter, zero_grad, state_dict.

    ``step()`` counts the step and calls ``_update(i, p, g)`` for every parameter
    i: the update rule, written as the math reads, which changes p in place.
    """

    def __init__(self, params, lr):
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        for i, pair in enumerate(params):
            if not (isinstance(pair, tuple) and len(pair) == 2):
                raise TypeError(
                    f"{type(self).__name__}: parameters must be (param, grad) pairs as returned "
                    f"by model.parameters(); item {i} is a {type(pair).__name__}")
            p, g = pair
            if p.shape != g.shape or p.dtype != g.dtype:
                raise ValueError(
                    f"{type(self).__name__}: parameter {i} is {p.dtype}{p.shape} but its gradient "
                    f"is {g.dtype}{g.shape}")
        dtypes = {str(p.dtype) for p, _ in params}
        if len(dtypes) > 1:
            # The fast kernels update every parameter with scalars of one dtype.
            raise TypeError(f"{type(self).__name__}: parameters mix dtypes {sorted(dtypes)}; "
                            "cast the model with model.astype(...) first")
        lr = _learning_rate(type(self).__name__, lr)
        self.params = params
        self.lr = lr
        self.t = 0  # number of steps taken
        self._state = {}  # name -> one array per parameter (for state_dict)

    def _new_state(self, name):
        """Zeros shaped like every parameter (same dtype and backend), one array per
        parameter, kept as ``name`` for state_dict."""
        self._state[name] = [array_module(p).zeros_like(p) for p, _ in self.params]
        return self._state[name]

    def check_holds(self, model, who="the model"):
        """Refuse to train ``model`` unless this optimiser updates its very arrays.

        ``model.astype(...)`` and ``model.to(...)`` give a model new arrays; an
        optimiser built before keeps updating the old ones, and the model never
        learns. One identity comparison per parameter: cheap, done at the start.
        """
        mine = {id(p) for p, _ in self.params}
        for name, p, _ in model.named_parameters():
            if id(p) not in mine:
                raise ValueError(
                    f"{type(self).__name__} does not hold {who}'s parameter {name!r} (it holds "
                    f"{len(self.params)} other arrays): was {who} moved or cast with .to() or "
                    f".astype() after the optimiser was built? Build the optimiser after "
                    f"moving the model: {type(self).__name__}(model.parameters(), ...).")

    def zero_grad(self):
        for _, g in self.params:
            g.fill(0)

    def step(self):
        self.t += 1
        for i, (p, g) in enumerate(self.params):
            self._update(i, p, g)

    def _update(self, i, p, g):
        raise NotImplementedError

    # -- checkpoints -----------------------------------------------------------
    def _state_buffers(self):
        """{name: one array per parameter}: the state that state_dict saves."""
        return self._state

    def state_dict(self):
        """Step count, hyper-parameters and buffers (copies), keyed by name."""
        state = {"t": self.t, "lr": self.lr}
        for name, buffers in self._state_buffers().items():
            for i, b in enumerate(buffers):
                state[f"{name}.{i}"] = b.copy()
        return state

    def load_state_dict(self, state):
        """Restore a state from ``state_dict()``; buffers are copied in place.

        Everything is checked before anything is changed: a state of another
        model or optimiser, or a damaged one, leaves this optimiser as it was.
        """
        owner = type(self).__name__
        if not isinstance(state, dict):
            raise TypeError(f"{owner}: load_state_dict expects the dict of state_dict(), got "
                            f"{type(state).__name__}")
        for key in ("t", "lr"):
            if key not in state:
                raise ValueError(f"{owner}: optimiser state has no {key!r} (expected the dict "
                                 "of state_dict(), with 't', 'lr' and the buffers)")
        t = state["t"]
        if isinstance(t, bool) or not isinstance(t, numbers.Integral) or t < 0:
            raise ValueError(f"{owner}: optimiser state 't' must be an integer >= 0, got {t!r}")
        lr = _learning_rate(f"{owner} state", state["lr"])
        values = {}
        for name, buffers in self._state_buffers().items():
            for i, b in enumerate(buffers):
                values[(name, i)] = self._checked_buffer(state, f"{name}.{i}", b)
        buffers = self._state_buffers()
        for (name, i), value in values.items():
            target = buffers[name][i]
            target[...] = to_device(value, backend_of(target))
        self.t, self.lr = int(t), lr
        return self

    def _checked_buffer(self, state, key, b):
        owner = type(self).__name__
        if key not in state:
            raise ValueError(f"{owner}: optimiser state has no '{key}' "
                             "(saved for another model or optimiser?)")
        value = state[key]
        if not hasattr(value, "shape") or not hasattr(value, "dtype"):
            raise TypeError(f"{owner}: optimiser state '{key}' must be an array, got "
                            f"{type(value).__name__}")
        if tuple(value.shape) != tuple(b.shape):
            raise ValueError(
                f"{owner}: '{key}' has shape {tuple(value.shape)} in the "
                f"saved state but {tuple(b.shape)} here")
        if value.dtype.kind != "f":
            raise TypeError(f"{owner}: optimiser state '{key}' must be floating point, got "
                            f"{value.dtype}")
        if not bool(array_module(value).isfinite(value).all()):
            raise ValueError(f"{owner}: optimiser state '{key}' holds NaN or inf; it cannot "
                             "continue a run (use an earlier, intact checkpoint)")
        return value


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov and weight decay.

    With g = grad + weight_decay * p and buffer v (v = g on the first step):
        v <- momentum * v + g
        p <- p - lr * (g + momentum * v)   (Nesterov)   or   p - lr * v
    which is PyTorch's torch.optim.SGD with dampening 0.
    """

    def __init__(self, params, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(params, lr)
        # momentum >= 1 makes the velocity grow without bound
        momentum = _number("SGD", "momentum", momentum, low=0, high=1)
        weight_decay = _number("SGD", "weight_decay", weight_decay, low=0, high=None)
        if nesterov and momentum == 0:
            raise ValueError("SGD: Nesterov momentum needs momentum > 0")
        self.momentum, self.nesterov = momentum, bool(nesterov)
        self.weight_decay = weight_decay
        self.velocity = self._new_state("velocity") if momentum else []

    def _update(self, i, p, g):
        # BEGIN SOLUTION Exercise 3.1: update p in place by SGD with momentum (and weight decay, Nesterov)
        if self.weight_decay:
            g = g + self.weight_decay * p
        if self.momentum:
            v = self.velocity[i]
            if self.t == 1:
                v[...] = g  # the first step starts the velocity at the gradient itself
            else:
                v *= self.momentum
                v += g
            direction = g + self.momentum * v if self.nesterov else v
        else:
            direction = g
        p -= self.lr * direction
        # END SOLUTION


class Adam(Optimizer):
    """Adam (Kingma and Ba 2015) with bias correction and optional L2 weight decay.

    With g = grad + weight_decay * p and step count t = 1, 2, ...:
        m <- b1 m + (1 - b1) g,      v <- b2 v + (1 - b2) g^2
        p <- p - lr * m_hat / (sqrt(v_hat) + eps),  m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t)
    eps is added to the bias-corrected square root, as in PyTorch. GANs use
    lr=2e-4, betas=(0.5, 0.999) (Radford et al. 2016).

    ``step()`` computes ``_update``'s numbers with ``kernels.adam_step`` (much
    faster on large parameters), provided that kernel has been seen to give them
    bit for bit (``_kernel_matches_update``); a changed ``_update`` (a subclass,
    or a student's own solution of Exercise 3.2) is what runs, as written.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise TypeError(f"Adam: betas must be a pair (beta1, beta2), got {betas!r}")
        if not all(isinstance(b, numbers.Real) and not isinstance(b, bool) and 0 <= b < 1
                   for b in betas):  # NaN fails 0 <= b too
            raise ValueError(f"Adam: betas must be in [0, 1) (finite numbers; beta = 1 never "
                             f"forgets, > 1 diverges), got {tuple(betas)}")
        b1, b2 = float(betas[0]), float(betas[1])
        self.betas = (b1, b2)
        # eps keeps the step finite where v_hat is 0: it must be > 0
        self.eps = _number("Adam", "eps", eps, low=0, low_open=True, high=None)
        self.weight_decay = _number("Adam", "weight_decay", weight_decay, low=0, high=None)
        self.m = self._new_state("m")
        self.v = self._new_state("v")
        self._use_kernel = None  # decided at the first step

    def step(self):
        if self._use_kernel is None:
            self._use_kernel = self._kernel_matches_update()
        if self._use_kernel:
            self._kernel_step()
        else:
            super().step()  # _update on every parameter

    def _kernel_step(self):
        self.t += 1
        if getattr(self, "_scratch", None) is None:
            self._scratch = kernels.adam_scratch(self.params)  # once, not every step
        kernels.adam_step(self.params, self.m, self.v, lr=self.lr, betas=self.betas,
                          eps=self.eps, weight_decay=self.weight_decay, t=self.t,
                          scratch=self._scratch)

    def _update(self, i, p, g):
        # BEGIN SOLUTION Exercise 3.2: update p in place by Adam, with bias correction
        b1, b2 = self.betas
        m, v = self.m[i], self.v[i]
        if self.weight_decay:
            g = g + self.weight_decay * p
        m += (1 - b1) * (g - m)       # m <- b1 m + (1 - b1) g: the gradients' running mean
        v += (1 - b2) * (g * g - v)   # v <- b2 v + (1 - b2) g^2: their running mean square
        # m and v start at 0, so early on they are too small by the factors 1 - b^t:
        # divide them out. m_hat = m / (1 - b1^t) is folded into the step size.
        v_hat = v / (1 - b2 ** self.t)
        step_size = self.lr / (1 - b1 ** self.t)
        p -= step_size * m / (array_module(p).sqrt(v_hat) + self.eps)
        # END SOLUTION

    def _kernel_matches_update(self):
        """Does ``kernels.adam_step`` give this optimiser's ``_update`` numbers?

        Two copies of the optimiser take three steps on one small random problem
        (these hyper-parameters, dtype and backend), one by ``_update`` and one by
        the kernel; only a bit-for-bit match counts. Checked once, at the first step.
        """
        if type(self)._update is not Adam._update:
            return False  # a subclass's own update rule runs as written
        like = self.params[0][0]
        xp = array_module(like)

        def run(use_kernel):
            rng = np.random.default_rng(0)

            def draw(shape):
                return to_device(rng.standard_normal(shape).astype(like.dtype), backend_of(like))

            probe = copy.copy(self)  # same settings; its own parameters and state below
            probe.params = [(draw(s), xp.zeros(s, like.dtype)) for s in ((3, 5), (4,))]
            probe.m = [xp.zeros_like(p) for p, _ in probe.params]
            probe.v = [xp.zeros_like(p) for p, _ in probe.params]
            probe.t = 0
            for _ in range(3):
                for _, g in probe.params:
                    g[...] = draw(g.shape)
                # the class's steps, not probe.step: that may be a wrapper (a timer)
                # that the copy took over from self
                if use_kernel:
                    Adam._kernel_step(probe)
                else:
                    Optimizer.step(probe)
            return [p for p, _ in probe.params] + probe.m + probe.v

        try:
            reference = run(use_kernel=False)
        except Exception:  # e.g. an _update not written yet: step() raises it where it is seen
            return False
        return all(bool(xp.array_equal(a, b)) for a, b in zip(reference, run(use_kernel=True)))
