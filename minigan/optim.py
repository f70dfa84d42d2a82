"""Optimisers that update parameters in place: SGD (momentum, Nesterov) and Adam.

An optimiser holds the (param, grad) pairs from ``model.parameters()``; ``step()``
reads the grads and changes the params in place, ``zero_grad()`` clears the
grads. Hyper-parameters follow PyTorch's definitions so results can be compared
number for number. All state (momentum buffers, Adam's moments) has the
parameters' dtype and backend; updates are written in place through one scratch
buffer per optimiser, so a step allocates nothing.
"""

from __future__ import annotations

import math

import numpy as np

from minigan import _fused
from minigan.backend import array_module, to_device, backend_of


def _blockable(a):
    """Can ``a`` be cut into flat blocks that are views? (C-contiguous NumPy arrays;
    on CuPy one kernel per operation over the whole array is faster.)"""
    return isinstance(a, np.ndarray) and a.flags.c_contiguous


def _view(a, block):
    """``a`` itself, or the block (a slice) of its flattened entries, as a view."""
    return a if block is None else a.reshape(-1)[block]


class Optimizer:
    """Base class: parameter pairs, a step counter, zero_grad, state_dict.

    ``step()`` calls ``_update(i, p, g)`` once per *slot* i: a small parameter is
    one slot, a large NumPy parameter is cut into flat blocks of ``block_size``
    entries, one slot each. A slot's p, g and state (``self.m[i]``, ...) are views
    of the parameter's arrays, so updating the slot in place updates the parameter.
    """

    #: Entries per block of a large NumPy parameter. Why blocks: an update is about
    #: a dozen elementwise passes over p, g and the state. Over a whole 800k-entry
    #: weight matrix, every pass streams each 3 MB array through the memory bus
    #: again; over a block of 64k entries (256 KiB per float32 array, about 1.3 MiB
    #: for the five arrays Adam touches) the arrays stay in the core's L2 cache
    #: between passes, so each entry travels from memory about once per step.
    #: The results are the same numbers: every operation is elementwise.
    block_size = 1 << 16

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
            # One scratch buffer serves every parameter, so they must share a dtype.
            raise TypeError(f"{type(self).__name__}: parameters mix dtypes {sorted(dtypes)}; "
                            "cast the model with model.astype(...) first")
        if lr <= 0:
            raise ValueError(f"{type(self).__name__}: learning rate must be positive, got {lr}")
        self.params = params
        self.lr = float(lr)
        self.t = 0  # number of steps taken
        # (parameter index, block of its flattened entries or None for all of it) per slot
        self._slot_of = []
        for k, (p, g) in enumerate(params):
            if p.size > self.block_size and _blockable(p) and _blockable(g):
                self._slot_of += [(k, slice(s, s + self.block_size))
                                  for s in range(0, p.size, self.block_size)]
            else:
                self._slot_of.append((k, None))
        self._slots = [(_view(params[k][0], b), _view(params[k][1], b)) for k, b in self._slot_of]
        self._state = {}  # name -> one array per parameter, shaped like it (for state_dict)
        largest = max(self._slots, key=lambda pg: pg[0].size)[0]
        xp = array_module(largest)
        self._scratch = xp.empty(largest.size, dtype=largest.dtype)

    def _new_state(self, name):
        """Zero state shaped like every parameter, kept as ``name`` for state_dict;
        returned as one view per slot, the list ``_update`` indexes."""
        full = [array_module(p).zeros_like(p) for p, _ in self.params]
        self._state[name] = full
        return [_view(full[k], b) for k, b in self._slot_of]

    def _scratch_for(self, p):
        """A temporary with p's shape, a view of the one shared scratch buffer."""
        return self._scratch[: p.size].reshape(p.shape)

    def zero_grad(self):
        for _, g in self.params:
            g.fill(0)

    def step(self):
        self.t += 1
        for i, (p, g) in enumerate(self._slots):
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
        """Restore a state from ``state_dict()``; buffers are copied in place."""
        for name, buffers in self._state_buffers().items():
            for i, b in enumerate(buffers):
                key = f"{name}.{i}"
                if key not in state:
                    raise ValueError(f"{type(self).__name__}: optimiser state has no '{key}' "
                                     "(saved for another model or optimiser?)")
                value = state[key]
                if tuple(value.shape) != tuple(b.shape):
                    raise ValueError(
                        f"{type(self).__name__}: '{key}' has shape {tuple(value.shape)} in the "
                        f"saved state but {tuple(b.shape)} here")
                b[...] = to_device(value, backend_of(b))
        self.t = int(state["t"])
        self.lr = float(state["lr"])
        return self


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov and weight decay.

    With g = grad + weight_decay * p and buffer v (v = g on the first step):
        v <- momentum * v + g
        p <- p - lr * (g + momentum * v)   (Nesterov)   or   p - lr * v
    which is PyTorch's torch.optim.SGD with dampening 0.
    """

    def __init__(self, params, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(params, lr)
        if momentum < 0 or weight_decay < 0:
            raise ValueError("SGD: momentum and weight_decay must be >= 0")
        if nesterov and momentum == 0:
            raise ValueError("SGD: Nesterov momentum needs momentum > 0")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)
        self.weight_decay = float(weight_decay)
        self.velocity = self._new_state("velocity") if momentum else []

    def _update(self, i, p, g):
        # BEGIN SOLUTION Exercise 3.1: update p in place by SGD with momentum (and weight decay, Nesterov)
        if self.weight_decay:
            g = g + self.weight_decay * p
        if self.momentum:
            v = self.velocity[i]
            if self.t == 1:
                v[...] = g
            else:
                v *= self.momentum
                v += g
            if self.nesterov:
                direction = self._scratch_for(p)
                array_module(p).multiply(v, self.momentum, out=direction)
                direction += g
            else:
                direction = v
        else:
            direction = g
        step = self._scratch_for(p)
        array_module(p).multiply(direction, self.lr, out=step)
        p -= step
        # END SOLUTION


class Adam(Optimizer):
    """Adam (Kingma and Ba 2015) with bias correction and optional L2 weight decay.

    With g = grad + weight_decay * p and step count t = 1, 2, ...:
        m <- b1 m + (1 - b1) g,      v <- b2 v + (1 - b2) g^2
        p <- p - lr * m_hat / (sqrt(v_hat) + eps),  m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t)
    eps is added to the bias-corrected square root, as in PyTorch. GANs use
    lr=2e-4, betas=(0.5, 0.999) (Radford et al. 2016).
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        b1, b2 = betas
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ValueError(f"Adam: betas must be in [0, 1), got {betas}")
        self.betas = (float(b1), float(b2))
        self.eps, self.weight_decay = float(eps), float(weight_decay)
        self.m = self._new_state("m")
        self.v = self._new_state("v")

    def step(self):
        if not _fused.applies(self._scratch):
            return super().step()
        # GPU: the update below, in one kernel per parameter instead of about twelve
        self.t += 1
        _fused.adam_step(self._slots, self.m, self.v, lr=self.lr, betas=self.betas,
                         eps=self.eps, weight_decay=self.weight_decay, t=self.t)

    def _update(self, i, p, g):
        # BEGIN SOLUTION Exercise 3.2: update p in place by Adam, with bias correction
        xp = array_module(p)
        b1, b2 = self.betas
        m, v, tmp = self.m[i], self.v[i], self._scratch_for(p)
        if self.weight_decay:
            g = g + self.weight_decay * p
        # m += (1 - b1) (g - m)  is  b1 m + (1 - b1) g  without a second temporary
        xp.subtract(g, m, out=tmp)
        tmp *= 1.0 - b1
        m += tmp
        xp.multiply(g, g, out=tmp)
        tmp *= 1.0 - b2
        v *= b2
        v += tmp
        # p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)
        bias_correction1 = 1.0 - b1 ** self.t
        bias_correction2 = 1.0 - b2 ** self.t
        xp.sqrt(v, out=tmp)
        tmp /= math.sqrt(bias_correction2)
        tmp += self.eps
        xp.divide(m, tmp, out=tmp)
        tmp *= self.lr / bias_correction1
        p -= tmp
        # END SOLUTION
