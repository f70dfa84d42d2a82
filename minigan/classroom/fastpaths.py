"""Fast paths that would give a solution away, and what a release puts in their place.

``minigan.kernels`` (dispatch) and ``minigan._fused`` (CuPy kernels) compute
the same numbers as the exercises' reference code, faster: the GPU kernel of
the leaky ReLU's backward IS Exercise 1.3's answer, the blocked NumPy Adam IS
Exercise 3.2's. They are not marked regions (a ``raise`` there would break
the library for the student), so a release that cuts an exercise out also
rewrites them, from this table:

* each listed ``kernels`` function gets a plain body that calls the student's
  ``functional`` code on every backend (docstring and comments go too);
* each listed ``_fused`` function becomes a stub that raises, and its kernel
  source leaves ``_fused._kernels()``, with the comment above it.

A fast forward whose cache only its own fast backward can read is replaced
with that backward (the convolutions of Exercises 12.1 and 12.2): the plain
forward leaves the cache that the student's ``functional`` backward reads.

``kernels.adam_step`` gets an empty body: ``Adam.step()`` first checks that the
kernel reproduces ``_update`` bit for bit, finds that it does not, and runs the
student's ``_update`` (so an empty kernel is never used for training).

Adding an exercise with a fast path means adding a row here; the release test
(tests/test_classroom.py) fails when a released file still holds a known
solution pattern.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

KERNELS = "minigan/kernels.py"
FUSED = "minigan/_fused.py"


@dataclass(frozen=True)
class FastPath:
    kernels: dict = None        # kernels.py function -> its plain body (4-space indented lines)
    fused: tuple = ()           # _fused.py functions to stub
    fused_kernels: tuple = ()   # keys of _fused._kernels() to remove


#: The convolutions of ``kernels`` as plain calls of ``functional`` (whose conv2d_backward
#: and col2im are the student's), adding dW and db into the layer's gradients; the
#: helpers that hold the fast col2im and weight gradient are withheld.
_PLAIN_CONVOLUTIONS = {
    "conv2d_forward": "return F.conv2d_forward(x, W, b, stride, padding)\n",
    **{name: f"""\
dx, dW, db = F.{name}(dout, cache, need_dx=need_dx,
                     need_param_grads=need_param_grads)
if need_param_grads:
    grad_W += dW
    if grad_b is not None:
        grad_b += db
return dx
""" for name in ("conv2d_backward", "conv_transpose2d_backward")},
    "conv_transpose2d_forward":
        "return F.conv_transpose2d_forward(x, W, b, stride, padding, output_padding)\n",
    **{name: "raise NotImplementedError(\"withheld with Exercises 12.1 and 12.2\")\n"
       for name in ("_col2im_rows", "_im2col_weight_grad", "_add_param_grads")},
}

FAST_PATHS = {
    "1.2": FastPath({"dense_backward": """\
dx, dW, db = F.dense_backward(dout, cache, need_dx=need_dx,
                              need_param_grads=need_param_grads)
if need_param_grads:
    grad_W += dW
    grad_b += db
return dx
"""}, ("add_dense_param_grads",)),
    "1.3": FastPath({"leaky_relu_backward": "return F.leaky_relu_backward(dout, cache)\n"},
                    ("leaky_relu_backward",), ("leaky_relu_backward",)),
    "1.4": FastPath({"sigmoid_backward": "return F.sigmoid_backward(dout, cache)\n"},
                    ("sigmoid_backward",), ("sigmoid_backward",)),
    "1.5": FastPath({"tanh_backward": "return F.tanh_backward(dout, cache)\n"},
                    ("tanh_backward",), ("tanh_backward",)),
    "2.1": FastPath({"bce_with_logits": """\
if not hasattr(target, "shape"):
    target = array_module(logits).full_like(logits, target)
return F.bce_with_logits(logits, target)
"""}, ("bce_with_logits",), ("bce",)),
    "3.2": FastPath({
        "adam_step": "# Withheld with Exercise 3.2: Adam.step() sees this does nothing and runs _update.\n"
                     "return None\n",
        "_adam_numpy": "raise NotImplementedError(\"withheld with Exercise 3.2\")\n"},
        ("adam_step",), ("adam",)),
    # The channels-last convolutions compute col2im (``_col2im_rows``) and conv2d's
    # backward (``_im2col_weight_grad``, ``_add_param_grads``) in their own layout, so
    # they go for either exercise. The forwards go too: the fast forward caches a padded
    # NHWC image, and only the plain forward's cache is what the student's backward reads.
    "12.1": FastPath(_PLAIN_CONVOLUTIONS),
    "12.2": FastPath(_PLAIN_CONVOLUTIONS),
}


def _functions(tree):
    return {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def _replace(lines, start, end, new_lines):
    """lines[start-1:end] (1-based, inclusive) -> new_lines; returns the new list."""
    return lines[:start - 1] + new_lines + lines[end:]


def strip_kernels(text: str, exercises) -> str:
    """kernels.py with the fast paths of ``exercises`` replaced by plain bodies."""
    todo = {}
    for ex in exercises:
        todo.update((FAST_PATHS[ex].kernels or {}) if ex in FAST_PATHS else {})
    lines = text.splitlines(keepends=True)
    funcs = _functions(ast.parse(text))
    for name in sorted(todo, key=lambda n: -funcs[n].lineno if n in funcs else 0):
        node = funcs.get(name)
        if node is None:
            continue
        body = ["    " + ln if ln.strip() else ln for ln in todo[name].splitlines(keepends=True)]
        lines = _replace(lines, node.body[0].lineno, node.end_lineno, body)
    return "".join(lines)


def strip_fused(text: str, exercises) -> str:
    """_fused.py without the kernels and functions of ``exercises``."""
    stubs, keys = [], set()
    for ex in exercises:
        if ex in FAST_PATHS:
            stubs += [(n, ex) for n in FAST_PATHS[ex].fused]
            keys |= set(FAST_PATHS[ex].fused_kernels)
    tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    cuts = []   # (start, end, replacement lines), applied from the bottom up
    funcs = _functions(tree)
    for name, ex in stubs:
        node = funcs.get(name)
        if node is not None:
            msg = (f"withheld from this release with Exercise {ex}: minigan.kernels computes "
                   "this with the plain code")
            cuts.append((node.body[0].lineno, node.end_lineno, [f"    raise NotImplementedError({msg!r})\n"]))
    table = funcs.get("_kernels")
    for node in ast.walk(table) if table is not None else ():
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value in keys:
                    start = key.lineno
                    while lines[start - 2].strip().startswith("#"):
                        start -= 1   # the comment that explains the kernel's math goes too
                    cuts.append((start, value.end_lineno, []))
    for start, end, new in sorted(cuts, key=lambda c: -c[0]):
        lines = _replace(lines, start, end, new)
    return "".join(lines)


def strip(rel: str, text: str, exercises) -> str:
    """The released text of ``rel`` when ``exercises`` are cut out (unchanged for other files)."""
    if rel == KERNELS:
        return strip_kernels(text, exercises)
    if rel == FUSED:
        return strip_fused(text, exercises)
    return text
