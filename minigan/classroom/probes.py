"""Probes: the only code that calls a student's minigan, run inside the sandboxed runner.

A probe takes the input arrays the grader drew and a few options, calls the
student's functions the way a check needs, and returns what came back (and the
inputs as they are afterwards, to see in-place changes). It decides nothing:
whether the answer is right is judged by the grader, in its own process, from
these values alone (see checks.py). So nothing here is secret: a student can
read this file, and patching it changes only the values reported, which must
then be right to earn points.

``stu.functional`` is the student's ``minigan.functional``, imported on first
use. Stdlib and NumPy only; loaded by path in the runner.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import re

import numpy as np

PROBES = {}


def probe(fn):
    PROBES[fn.__name__] = fn
    return fn


def _copies(inp, *names):
    return [inp[n].copy() for n in names]


def _pair(ret):
    """The cache of a ``(out, cache)`` return, or None when it is not a pair."""
    return ret[1] if isinstance(ret, (tuple, list)) and len(ret) == 2 else None


# --------------------------------------------------------------------- layers


@probe
def dense(stu, inp, opt):
    """dense_forward(x, W, b); then dense_backward(dout, cache, **kw) for each kw in opt['backward']."""
    F = stu.functional
    x, W, b = _copies(inp, "x", "W", "b")
    fwd = F.dense_forward(x, W, b)
    out = {"forward": fwd, "x": x, "W": W, "b": b, "backward": []}
    cache = _pair(fwd)
    for kw in opt.get("backward", []):
        dout = inp["dout"].copy()
        out["backward"].append(F.dense_backward(dout, cache, **kw))
        out["dout"] = dout
    return out


@probe
def activation(stu, inp, opt):
    """{kind}_forward(x[, slope]) then {kind}_backward(dout, cache)."""
    F = stu.functional
    kind = opt["kind"]
    x, dout = _copies(inp, "x", "dout")
    args = (x,) if opt.get("slope") is None else (x, opt["slope"])
    fwd = getattr(F, f"{kind}_forward")(*args)
    dx = getattr(F, f"{kind}_backward")(dout, _pair(fwd))
    return {"dx": dx, "dout": dout}


@probe
def batchnorm(stu, inp, opt):
    F = stu.functional
    x, gamma, beta, dout = _copies(inp, "x", "gamma", "beta", "dout")
    kw = {"train": bool(opt.get("train", True))}
    if not kw["train"]:
        kw.update(running_mean=inp["rm"].copy(), running_var=inp["rv"].copy())
    fwd = F.batchnorm_forward(x, gamma, beta, **kw)
    grads = F.batchnorm_backward(dout, _pair(fwd))
    return {"grads": grads, "dout": dout}


def _setting(value):
    """A stride or padding from JSON options: an int, or a list for a (height, width) pair."""
    return tuple(value) if isinstance(value, list) else value


@probe
def col2im(stu, inp, opt):
    """col2im(cols, x_shape, kH, kW, stride, padding) with the settings of ``opt``."""
    cols = inp["cols"].copy()
    ret = stu.functional.col2im(cols, tuple(opt["x_shape"]), *opt["kernel"],
                                _setting(opt["stride"]), _setting(opt["padding"]))
    return {"ret": ret, "cols": cols}


@probe
def conv2d(stu, inp, opt):
    """conv2d_forward(x, W, b, stride, padding) (b None when not sent); then
    conv2d_backward(dout, cache, **kw) for each kw in opt['backward']."""
    F = stu.functional
    x, W = _copies(inp, "x", "W")
    b = inp["b"].copy() if "b" in inp else None
    fwd = F.conv2d_forward(x, W, b, _setting(opt["stride"]), _setting(opt["padding"]))
    out = {"x": x, "W": W, "backward": []}
    for kw in opt.get("backward", []):
        dout = inp["dout"].copy()
        out["backward"].append(F.conv2d_backward(dout, _pair(fwd), **kw))
        out["dout"] = dout
    return out


@probe
def bce(stu, inp, opt):
    """bce_with_logits, optionally under np.errstate(raise) to catch overflow."""
    logits, targets = _copies(inp, "logits", "targets")
    out = {"logits": logits, "targets": targets, "fpe": None}
    if opt.get("raise_on_overflow"):
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            try:
                out["ret"] = stu.functional.bce_with_logits(logits, targets)
            except FloatingPointError as err:
                out["fpe"] = np.array(str(err)[:200])
    else:
        out["ret"] = stu.functional.bce_with_logits(logits, targets)
    return out


# ----------------------------------------------------------------- optimisers


@probe
def optimizer(stu, inp, opt):
    """``steps`` steps of ``optim.{cls}(**kwargs)`` on n parameters, feeding gradients in place.

    Returns the parameters after every step and whether each is still the same array.
    """
    n, steps = int(opt["n"]), int(opt["steps"])
    params = [(inp[f"p{i}"].copy(), np.zeros_like(inp[f"p{i}"])) for i in range(n)]
    objects = [p for p, _ in params]
    optim = getattr(stu.optim, opt["cls"])(params, **opt.get("kwargs", {}))
    trajectory = []
    for t in range(steps):
        for i, (_, g) in enumerate(params):
            g[...] = inp[f"g{i}_{t}"]
        optim.step()
        trajectory.append([p.copy() for p, _ in params])
    same = [bool(params[i][0] is objects[i]) for i in range(n)]
    return {"trajectory": trajectory, "same": same}


# ------------------------------------------------------------------------ GAN


class RecordingOptimizer:
    """A stand-in optimiser for the GAN checks: p -= lr * g, and a copy of every gradient seen.

    It keeps the check of the generator step independent of the optimiser exercises.
    """

    def __init__(self, params, lr=0.1):
        self.params, self.lr, self.seen = list(params), lr, []

    def step(self):
        self.seen.append([g.copy() for _, g in self.params])
        for p, g in self.params:
            p -= self.lr * g

    def zero_grad(self):
        for _, g in self.params:
            g.fill(0)


def gan_models(mod, dtype):
    """The G and D of the generator-step checks (also built by the grader on the reference)."""
    L = mod.layers
    G = L.Sequential(L.Dense(3, 6, dtype=dtype), L.LeakyReLU(0.2), L.Dense(6, 2, dtype=dtype))
    D = L.Sequential(L.Dense(2, 5, dtype=dtype), L.LeakyReLU(0.2), L.Dense(5, 1, dtype=dtype))
    return G, D


def gan_setup(mod, inp, dtype, loss):
    """Models holding the given parameters and gradients, a GAN around them, its optimisers."""
    G, D = gan_models(mod, dtype)
    for prefix, model in (("G", G), ("D", D)):
        for i, (p, g) in enumerate(model.parameters()):
            p[...] = inp[f"{prefix}p{i}"]
            g[...] = inp[f"{prefix}g{i}"]
    g_opt, d_opt = RecordingOptimizer(G.parameters()), RecordingOptimizer(D.parameters())
    loss_obj = mod.gan_losses.Minimax() if loss == "minimax" else mod.gan_losses.NonSaturating()
    gan = mod.gan.GAN(G, D, 3, g_opt, d_opt, loss=loss_obj)
    return gan, G, D, g_opt, d_opt


def run_generator_step(mod, inp, dtype, loss):
    gan, G, D, g_opt, d_opt = gan_setup(mod, inp, dtype, loss)
    stats = gan.generator_step(gan.generate(inp["z"].copy()))
    return {"stats": stats, "g_seen": g_opt.seen, "d_steps": len(d_opt.seen),
            "G": [p.copy() for p, _ in G.parameters()],
            "D": [p.copy() for p, _ in D.parameters()],
            "Dgrad": [g.copy() for _, g in D.parameters()]}


@probe
def generator_step(stu, inp, opt):
    return run_generator_step(stu, inp, np.dtype(opt["dtype"]), opt["loss"])


# ------------------------------------------------------------------- notebooks


def notebook_functions(notebook, function):
    """The functions (and imports) of the last code cell of ``notebook`` that defines
    ``function``, executed on their own: not the tutorial's other cells, which load data
    and train. The cell sees ``np``, ``F`` (minigan.functional) and ``mg`` (minigan)."""
    mg = importlib.import_module("minigan")
    root = os.path.dirname(os.path.dirname(os.path.abspath(mg.__file__)))
    path = os.path.join(root, notebook + ".ipynb")
    with open(path, encoding="utf-8") as f:
        cells = [c for c in json.load(f).get("cells", []) if c.get("cell_type") == "code"]
    sources = ["".join(c.get("source", "")) if isinstance(c.get("source"), list) else c.get("source", "")
               for c in cells]
    defining = [src for src in sources if re.search(rf"^def {re.escape(function)}\b", src, re.M)]
    if not defining:
        raise LookupError(f"no code cell of {notebook}.ipynb defines {function}(): was it renamed?")
    # IPython magics become blank lines: the line numbers stay the cell's own
    lines = ["" if ln.lstrip().startswith(("%", "!")) else ln for ln in defining[-1].splitlines()]
    tree = ast.parse("\n".join(lines), filename=path)
    tree.body = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.Import, ast.ImportFrom))]
    namespace = {"np": np, "F": importlib.import_module("minigan.functional"), "mg": mg,
                 "__name__": "notebook_cell"}
    exec(compile(tree, path, "exec"), namespace)  # noqa: S102 - the student's own cell, in the sandbox
    return namespace


@probe
def notebook_function(stu, inp, opt):
    ns = notebook_functions(opt["notebook"], opt["function"])
    if opt["call"] == "dense_tanh":
        _, cache = ns["dense_tanh_forward"](*_copies(inp, "x", "W", "b"))
        dout = inp["dout"].copy()
        return {"ret": ns["dense_tanh_backward"](dout, cache), "dout": dout}
    if opt["call"] == "forward_difference":
        x = inp["x"].copy()
        ret = ns["forward_difference"](lambda v: float(np.sum(v ** 3)), x, float(opt["eps"]))
        return {"ret": ret, "x": x}
    raise ValueError(f"unknown notebook call {opt['call']!r}")
