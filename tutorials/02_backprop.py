# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: -all
#     formats: ipynb,py:percent
#     notebook_metadata_filter: minigan,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
#   minigan:
#     chapter: 2
#     needs_mnist: false
# ---

# %% [markdown]
# # Chapter 2 — Backprop by hand, and how to check it
#
# Training means nudging every weight in the direction that lowers the loss, so
# we need the gradient of a scalar loss with respect to every weight, and we need
# it exactly. minigan has no automatic differentiation: every layer carries a
# hand-written backward pass. This chapter derives one (the dense layer's), shows
# how backward passes chain through a network, and then builds the safety net that
# makes hand-written gradients trustworthy: the numerical gradient check.
#
# **What you will learn**
#
# 1. The *upstream gradient* and the chain rule in index form.
# 2. The backward pass of a dense layer, $dx = G W^\top$, $dW = x^\top G$,
#    $db = \sum_n G_n$, derived and checked against `minigan.functional`.
# 3. How `Sequential.backward` chains layers, and why parameter gradients accumulate.
# 4. Gradient checking with central differences, and the three rules for doing it
#    right: a **random upstream gradient**, **float64**, and **no inputs on kinks**.
#    Each rule comes with a demonstration of what goes wrong without it.

# %%
import os

QUICK = os.environ.get("MINIGAN_QUICK", "0") not in ("", "0")  # the test suite sets MINIGAN_QUICK=1

import matplotlib.pyplot as plt
import numpy as np

import minigan as mg
from minigan import functional as F
from minigan.gradcheck import check_backward, check_layer, numerical_gradient, rel_error

mg.seed(0)
rng = np.random.default_rng(0)


# %% [markdown]
# ## 1. The upstream gradient
#
# Somewhere downstream of a layer sits a scalar loss $L$. The layer does not need to
# know what that loss is. All it receives during the backward pass is the
# **upstream gradient** $G = \partial L / \partial\,\mathrm{out}$, an array with
# exactly the shape of the layer's output: entry $G_{nj}$ says how fast $L$ changes
# when output $j$ of example $n$ changes. The layer's job is to turn $G$ into the
# gradients with respect to its own inputs and parameters.
#
# The tool is the chain rule. Every input $x_{ni}$ influences $L$ only through the
# outputs, so
#
# $$
# \frac{\partial L}{\partial x_{ni}} = \sum_{m, j} \frac{\partial L}{\partial\,\mathrm{out}_{mj}}
#   \frac{\partial\,\mathrm{out}_{mj}}{\partial x_{ni}}
#   = \sum_{m, j} G_{mj}\, \frac{\partial\,\mathrm{out}_{mj}}{\partial x_{ni}} .
# $$
#
# The same sum, with $W_{ik}$ or $b_k$ in place of $x_{ni}$, gives the parameter
# gradients. Whatever the layer, the backward pass is this sum, simplified.

# %% [markdown]
# ## 2. The dense layer's backward pass
#
# For $\mathrm{out}_{mj} = \sum_k x_{mk} W_{kj} + b_j$ the partial derivatives are
# simple, because the output is linear in each of $x$, $W$, $b$ separately:
#
# $$
# \frac{\partial\,\mathrm{out}_{mj}}{\partial x_{ni}} = [m = n]\, W_{ij}, \qquad
# \frac{\partial\,\mathrm{out}_{mj}}{\partial W_{ik}} = [j = k]\, x_{mi}, \qquad
# \frac{\partial\,\mathrm{out}_{mj}}{\partial b_k} = [j = k],
# $$
#
# where $[\cdot]$ is 1 when the condition holds and 0 otherwise. The indicators
# collapse the double sums of the chain rule to single sums:
#
# $$
# \frac{\partial L}{\partial x_{ni}} = \sum_j G_{nj} W_{ij}, \qquad
# \frac{\partial L}{\partial W_{ik}} = \sum_m x_{mi} G_{mk}, \qquad
# \frac{\partial L}{\partial b_k} = \sum_m G_{mk} .
# $$
#
# Read as matrices:
#
# $$
# \boxed{\;dx = G\,W^\top \;(N, D_\text{in}),\qquad dW = x^\top G \;(D_\text{in}, D_\text{out}),
# \qquad db = \textstyle\sum_n G_{n\cdot} \;(D_\text{out},)\;}
# $$
#
# A useful habit: **a gradient has the shape of the thing it is the gradient of**, and
# there is usually only one way to multiply the available arrays to get that shape.
# $dW$ must be $(D_\text{in}, D_\text{out})$; from $x$ $(N, D_\text{in})$ and $G$
# $(N, D_\text{out})$ the only product of that shape is $x^\top G$, a sum over the
# batch. That sum matters: every example in the batch contributes to the weight
# gradient, which is why the gradient of a *mean* loss carries a $1/N$ factor
# (the loss supplies it, inside $G$).
#
# Here is the derivation as code, checked against minigan's `F.dense_backward`:

# %%
def my_dense_backward(G, x, W):
    """The three boxed formulas."""
    # BEGIN SOLUTION Exercise 1.2: compute dx, dW and db of the dense layer
    return G @ W.T, x.T @ G, G.sum(axis=0)
    # END SOLUTION


x = rng.standard_normal((4, 5))
W = rng.standard_normal((5, 3))
b = rng.standard_normal(3)
out, cache = F.dense_forward(x, W, b)
G = rng.standard_normal(out.shape)           # some upstream gradient, shaped like out

mine = my_dense_backward(G, x, W)
library = F.dense_backward(G, cache)
for name, a, l in zip(("dx", "dW", "db"), mine, library):
    print(f"{name}: shape {a.shape}, equal to minigan's: {np.allclose(a, l)}")

# %% [markdown]
# ## 3. Chaining layers
#
# A network is a composition, $L = \ell(f_3(f_2(f_1(x))))$, so its backward pass is
# the layers' backward passes in reverse order, each one's output feeding the next
# one's upstream gradient. An activation such as $t = \tanh(h)$ acts elementwise,
# so its sum collapses all the way to a product: $\partial L/\partial h = G \odot
# (1 - t^2)$ (chapter 3 derives it). `Sequential.backward` is nothing more than this
# loop. Let us do it by hand for Dense, Tanh, Dense and compare:

# %%
model = mg.Sequential(mg.Dense(5, 8, rng=1), mg.Tanh(), mg.Dense(8, 2, rng=2)).astype("float64")
x = rng.standard_normal((4, 5))
G = rng.standard_normal((4, 2))

# by hand, with the functional pieces
h1, c1 = F.dense_forward(x, model[0].params["W"], model[0].params["b"])
t1, c2 = F.tanh_forward(h1)
y, c3 = F.dense_forward(t1, model[2].params["W"], model[2].params["b"])
dt1, dW2, db2 = F.dense_backward(G, c3)
dh1 = F.tanh_backward(dt1, c2)
dx_by_hand, dW1, db1 = F.dense_backward(dh1, c1)

# with the model
model.zero_grad()
assert np.allclose(model(x), y)
dx_model = model.backward(G)
print("dx equal:", np.allclose(dx_model, dx_by_hand))
print("dW of the first layer equal:", np.allclose(model[0].grads["W"], dW1))

# %% [markdown]
# ### Parameter gradients accumulate
#
# A layer's `backward` **adds** its parameter gradients into `layer.grads`; it does
# not overwrite them. That is deliberate: a GAN's discriminator sees a real batch and
# a fake batch, and the gradients of both halves of its loss must add up before one
# optimiser step. The price is that you must clear them with `zero_grad()` before each
# step, or gradients from old steps leak into new ones:

# %%
model.zero_grad()
for k in range(3):
    model(x)
    model.backward(G)
    print(f"after {k + 1} backward pass(es): |dW| = {np.linalg.norm(model[0].grads['W']):.4f}")
model.zero_grad()
print("after zero_grad:", np.linalg.norm(model[0].grads["W"]))

# %% [markdown]
# (Each backward needs its own forward: the forward pass leaves a cache that one
# backward consumes. A backward without one raises an error instead of silently
# using stale arrays.)

# %% [markdown]
# ## 4. Gradient checking
#
# A derivation like the one above is easy to get subtly wrong: a missing transpose,
# a sum over the wrong axis, a forgotten factor. The remedy is to compare against
# the *definition* of the derivative. For any scalar function $L(\theta)$ the
# central difference
#
# $$
# \frac{L(\theta + \varepsilon e_i) - L(\theta - \varepsilon e_i)}{2\varepsilon}
#   = \frac{\partial L}{\partial \theta_i} + \frac{\varepsilon^2}{6}
#   \frac{\partial^3 L}{\partial \theta_i^3} + O(\varepsilon^4)
# $$
#
# approximates the derivative with an error of order $\varepsilon^2$ (Taylor-expand
# both terms: the even powers cancel). The one-sided difference
# $(L(\theta + \varepsilon e_i) - L(\theta))/\varepsilon$ is only first-order accurate.
#
# To check a layer $\mathrm{out} = f(x)$ we need a *scalar*, so we contract the output
# with a fixed array $G$ of its shape: $L(x) = \sum_{nj} f(x)_{nj} G_{nj}$. By
# construction $\partial L / \partial\,\mathrm{out} = G$, so the backward pass called with
# $G$ must return $\partial L/\partial x$, and we can compare that entry by entry with
# central differences. We compare with the **relative error**
# $\|a - n\| / (\|a\| + \|n\|)$, which does not depend on the gradient's scale:
# around $10^{-7}$ or below is agreement in float64, $10^{-2}$ is a bug.
#
# `minigan.gradcheck` does all of this. `check_backward(forward, inputs)` checks a
# functional pair, `check_layer(layer, x)` a layer or a whole model, and both print a
# table with the worst entry of every gradient.

# %%
x = rng.standard_normal((4, 5))
W = rng.standard_normal((5, 3))
b = rng.standard_normal(3)
print(check_backward(F.dense_forward, [x, W, b]))
print()
print(check_layer(model, x))

# %% [markdown]
# Now the three rules, each with what goes wrong without it.
#
# ### Rule 1: float64
#
# The finite difference subtracts two nearly equal numbers. Each of them carries a
# rounding error of about $u\,|L|$, where $u$ is the unit roundoff ($6 \times 10^{-8}$
# in float32, $1.1 \times 10^{-16}$ in float64), and dividing by $2\varepsilon$
# magnifies it. The total error of the estimate is therefore about
#
# $$
# \underbrace{\tfrac{1}{6}\,\varepsilon^2\,|L'''|}_{\text{truncation}}
# + \underbrace{u\,|L| / \varepsilon}_{\text{rounding}},
# $$
#
# smallest near $\varepsilon \approx u^{1/3}$: about $10^{-5}$ in float64, but $4
# \times 10^{-3}$ in float32, where even the best achievable error is no better than
# about $10^{-5}$ *relative*. A check that can only promise five digits in the best case,
# and that needs a different $\varepsilon$ for every function, cannot tell a correct
# backward pass from one with a small bug. minigan's `numerical_gradient` therefore
# refuses float32:

# %%
try:
    numerical_gradient(lambda: (x.astype(np.float32) ** 2).sum(), x.astype(np.float32))
except TypeError as err:
    print("TypeError:", err)

# %% [markdown]
# To *see* the two regimes we write the central difference ourselves (it is three
# lines) and run it in both precisions, for a range of $\varepsilon$, on a Dense layer
# followed by tanh. The analytic gradient comes from minigan's backward passes.
# (Why the tanh? A dense layer alone is linear in $x$, and the central difference of a
# linear function has no truncation error at all, so one side of the picture would
# be missing.)

# %%
x0 = rng.standard_normal((4, 5))
W0 = 0.5 * rng.standard_normal((5, 3))
b0 = 0.1 * rng.standard_normal(3)
G0 = rng.standard_normal((4, 3))


def loss_dense_tanh(x, W, b, G):
    h, _ = F.dense_forward(x, W, b)
    t, _ = F.tanh_forward(h)
    return (t * G).sum()


def central_difference(f, x, eps):
    """Central-difference gradient of the scalar f(x), computed in x's own dtype."""
    grad = np.zeros(x.shape)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + x.dtype.type(eps)
        plus = f(x)
        x[i] = old - x.dtype.type(eps)
        minus = f(x)
        x[i] = old
        grad[i] = (float(plus) - float(minus)) / (2 * eps)
    return grad


# analytic gradient in float64, with minigan's backward passes
h, cache_dense = F.dense_forward(x0, W0, b0)
t, cache_tanh = F.tanh_forward(h)
dx_exact = F.dense_backward(F.tanh_backward(G0, cache_tanh), cache_dense)[0]

epsilons = np.logspace(0, -12, 25 if QUICK else 49)
errors = {}
for dtype in (np.float32, np.float64):
    xs, Ws, bs, Gs = (a.astype(dtype) for a in (x0, W0, b0, G0))
    errors[dtype.__name__] = [
        rel_error(central_difference(lambda v: loss_dense_tanh(v, Ws, bs, Gs), xs.copy(), eps), dx_exact)
        for eps in epsilons]

fig, ax = plt.subplots(figsize=(7, 5.2))
for name, errs in errors.items():
    best = int(np.argmin(errs))
    ax.loglog(epsilons, errs, marker="o", ms=3, label=f"{name}: best {errs[best]:.0e} at eps={epsilons[best]:.0e}")
ax.axvline(1e-6, color="gray", ls=":", label="minigan's default eps = 1e-6")
ax.set_xlabel("eps")
ax.set_ylabel("relative error of the central difference")
ax.set_title("Central differences: truncation error (left) vs rounding error (right)")
ax.invert_xaxis()
ax.grid(True, which="both", alpha=0.3)
# below the axes, where it hides neither the float32 curve nor the float64 valley
ax.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.15))
fig.tight_layout()
plt.show()


# %% [markdown]
# Read the plot from left to right ($\varepsilon$ shrinking). At large $\varepsilon$
# both precisions agree: the error falls as $\varepsilon^2$, a slope of two decades
# per decade. Then rounding takes over and the error climbs again as
# $1/\varepsilon$. In float64 the valley is deep (around $10^{-11}$) and wide, so one
# default $\varepsilon = 10^{-6}$ works for every layer in the library. In float32 the
# valley is shallow and narrow; at $\varepsilon = 10^{-6}$ the estimate is off by a
# few percent, and from about $10^{-7}$ on it is noise, until the relative error
# reaches 1 (the estimate is zero). The first thing to go is not $L$ but its input:
# float32 numbers near 1 are $1.2 \times 10^{-7}$ apart, so for $\varepsilon$ around
# $10^{-7}$ the perturbation that $x_i \pm \varepsilon$ actually applies is a whole
# float32 step, not $\varepsilon$, and once $\varepsilon$ is below half a step,
# $x_i + \varepsilon$ rounds back to $x_i$ itself: both evaluations see the same
# input. Most entries of this $x$ are of order 1 and are lost that way; the few small
# ones, whose float32 neighbours are closer, survive a little longer, until the change
# they cause in $L$ falls below the float32 spacing of $L$.
#
# This is why minigan trains in float32 but checks gradients in float64:
# `check_layer` makes a float64 copy of the layer it is given.

# %% [markdown]
# ### Rule 2: a random upstream gradient
#
# Why contract with a *random* $G$ rather than simply checking $L = \sum \mathrm{out}$,
# that is $G = 1$? Because with $G = 1$ the check only sees $J^\top \mathbf{1}$, the
# column sums of the Jacobian, and a backward pass can get those right while getting
# the Jacobian wrong.
#
# A realistic example is batch normalisation, which we meet later in the book. All you
# need to know now: it standardises every column over the batch, $\hat x = (x -
# \mu_B)/\sigma_B$, then scales and shifts. Its backward pass has three terms, because
# $x$ enters directly *and* through the batch mean *and* through the batch variance.
# Suppose we forget the variance term:
#
# $$
# dx_\text{buggy} = \frac{1}{\sigma_B}\left(g - \operatorname{mean}_n(g)\right)
# \quad\text{instead of}\quad
# \frac{1}{\sigma_B}\left(g - \operatorname{mean}_n(g)
#   - \hat x \operatorname{mean}_n(g \hat x)\right), \qquad g = G \odot \gamma .
# $$
#
# With $G = 1$, $g$ is constant down every column, so $g - \operatorname{mean}_n(g) = 0$,
# and $\operatorname{mean}_n(g \hat x) = 0$ too because $\hat x$ has mean zero: the
# correct and the buggy formula both give exactly zero, and so does the numerical
# gradient (the sum of a standardised column is always zero, whatever $x$ is).
# The check passes. A random $G$ exposes the bug at once:

# %%
def buggy_batchnorm_backward(dout, cache):
    """Batch norm's backward with the variance term forgotten (the other grads are right)."""
    _, dgamma, dbeta = F.batchnorm_backward(dout, cache)
    g = dout * cache["gamma"]
    dx = cache["inv_std"] * (g - g.mean(axis=0))
    return dx, dgamma, dbeta


xb = rng.standard_normal((6, 4))
gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
with_ones = check_backward(F.batchnorm_forward, [xb, gamma, beta],
                           backward=buggy_batchnorm_backward, grad_out=np.ones((6, 4)))
with_random = check_backward(F.batchnorm_forward, [xb, gamma, beta], backward=buggy_batchnorm_backward)
print("upstream gradient of ones:\n", with_ones, "\n")
print("random upstream gradient:\n", with_random)
assert with_ones.ok and not with_random.ok

# %% [markdown]
# (In the first table the relative error reads 1.0 only because both gradients are
# zero up to rounding, where a ratio means nothing; entries are judged against the
# absolute tolerance, and all of them pass.)
#
# The same blind spot exists for any layer whose outputs are constrained (a softmax,
# whose outputs always sum to one, is the classic case). A random $G$ costs nothing
# and weights every entry of the Jacobian differently, so errors cannot hide in a sum.
# `check_backward` and `check_layer` draw one from a seeded generator unless you pass
# your own.

# %% [markdown]
# ### Rule 3: stay away from kinks
#
# ReLU, $\max(x, 0)$, has no derivative at $x = 0$: the slope is 0 on the left and 1 on
# the right. A backward pass must pick a value there, and minigan, like PyTorch, picks 0.
# The central difference straddles the kink and measures the average slope of the
# secant, $\tfrac12$. The same happens for any input closer to 0 than $\varepsilon$.
# Neither answer is wrong, they are answers to a question that has none, but the check
# reports a failure:

# %%
xr = rng.standard_normal((3, 4))
xr[0, 0] = 0.0          # exactly on the kink
xr[1, 2] = 3e-7         # within eps = 1e-6 of it
Gr = rng.standard_normal((3, 4))
result = check_backward(F.relu_forward, [xr], grad_out=Gr)
print(result)

numeric = numerical_gradient(lambda: F.relu_forward(xr)[0], xr, Gr)
analytic = F.relu_backward(Gr, F.relu_forward(xr)[1])
disagree = ~np.isclose(numeric, analytic, atol=1e-7, rtol=1e-5)
print("entries that disagree:", [tuple(int(i) for i in idx) for idx in np.argwhere(disagree)])
print("numeric / upstream there (the secant slope):", np.round(numeric[disagree] / Gr[disagree], 3))

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
eps_demo = 0.5  # exaggerated, so the secant is visible
s = np.linspace(-1.5, 1.5, 301)
for ax, x_at, title in ((axes[0], 1.0, "away from the kink: secant = slope"),
                        (axes[1], 0.0, "on the kink: secant slope 1/2, backward says 0")):
    ax.plot(s, np.maximum(s, 0), color="black", lw=2, label="relu(x)")
    xa, xb_ = x_at - eps_demo, x_at + eps_demo
    ax.plot([xa, xb_], [max(xa, 0), max(xb_, 0)], "o--", color="tab:red",
            label=f"central difference, slope {(max(xb_, 0) - max(xa, 0)) / (2 * eps_demo):.2f}")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("x")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
plt.tight_layout()
plt.show()

# %% [markdown]
# The cure is in the test data, not in the layer: draw inputs and push any that fall
# within a margin (say $10^{-3}$, far more than $\varepsilon$) of a kink away from it.
# minigan's own tests do exactly that. (Why does training not suffer from the kink?
# Because an input lands *exactly* on zero with probability zero, and the choice at a
# single point changes nothing for gradient descent.)

# %%
safe = np.where(np.abs(xr) < 1e-3, np.sign(xr + 1e-12) * 1e-3, xr)
print(check_backward(F.relu_forward, [safe], grad_out=Gr))


# %% [markdown]
# ## Summary
#
# * Backward passes receive $G = \partial L/\partial\,\mathrm{out}$ and return gradients
#   shaped like the inputs and parameters; the chain rule in index form derives them.
# * Dense layer: $dx = GW^\top$, $dW = x^\top G$, $db = \sum_n G_n$. A network's
#   backward is its layers' backward passes in reverse order. Parameter gradients
#   accumulate until `zero_grad()`.
# * Check every backward pass numerically, with central differences, in float64,
#   contracting with a random upstream gradient, on inputs kept off kinks.
#   `check_backward` and `check_layer` do all of that and say which gradient is wrong.
#
# Chapter 3 applies the same machinery to activations and to the loss every GAN
# uses, binary cross-entropy, where numerical care turns out to matter a great deal.

# %% [markdown]
# ## Exercises
#
# **Exercise T2.1 — a fused layer.** `dense_tanh_forward` below computes
# $\tanh(xW + b)$ in one function and caches $x$, $W$ and the output $t$. Write its
# backward pass, returning `(dx, dW, db)`, without calling minigan's backward functions
# (derive the tanh part with the chain rule: $\tanh'(h) = 1 - \tanh(h)^2$). The check
# cell runs `check_backward` on it.

# %%
def dense_tanh_forward(x, W, b):
    t = np.tanh(x @ W + b)
    return t, (x, W, t)


def dense_tanh_backward(dout, cache):
    # BEGIN SOLUTION Exercise T2.1: backward pass of tanh(x @ W + b)
    x, W, t = cache
    dh = dout * (1.0 - t * t)
    return dh @ W.T, x.T @ dh, dh.sum(axis=0)
    # END SOLUTION


# %%
res = check_backward(dense_tanh_forward, [rng.standard_normal((5, 4)), rng.standard_normal((4, 3)),
                                         rng.standard_normal(3)])
print(res)
assert res.ok
print("T2.1 ok")


# %% [markdown]
# **Exercise T2.2 — one-sided differences.** Write `forward_difference(f, x, eps)`,
# the one-sided estimate $(f(x + \varepsilon e_i) - f(x))/\varepsilon$ for every entry
# of `x` (in float64; restore `x` after each perturbation). Then compare its best error
# over $\varepsilon$ with the central difference's on the Dense+tanh example. Which is
# better, by how much, and at which $\varepsilon$? Explain with the Taylor expansion.

# %%
def forward_difference(f, x, eps):
    """One-sided difference gradient of the scalar f(x) (x float64, perturbed in place and restored)."""
    # BEGIN SOLUTION Exercise T2.2: one-sided finite-difference gradient
    grad = np.zeros(x.shape)
    base = float(f(x))
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        grad[i] = (float(f(x)) - base) / eps
        x[i] = old
    return grad
    # END SOLUTION


# %%
f64 = lambda v: loss_dense_tanh(v, W0, b0, G0)  # noqa: E731
sweep = np.logspace(-1, -11, 21)
one_sided = [rel_error(forward_difference(f64, x0.copy(), e), dx_exact) for e in sweep]
central = [rel_error(central_difference(f64, x0.copy(), e), dx_exact) for e in sweep]
print(f"best one-sided error {min(one_sided):.1e} at eps={sweep[np.argmin(one_sided)]:.0e}")
print(f"best central error   {min(central):.1e} at eps={sweep[np.argmin(central)]:.0e}")
assert min(one_sided) > 100 * min(central)
assert rel_error(forward_difference(f64, x0.copy(), 1e-1), dx_exact) > 1e-3   # first order: ~eps
print("T2.2 ok")


# %% [markdown]
# **Exercise T2.3 — a layer of your own.** `ScaleShift` computes
# $\mathrm{out} = x \odot \gamma + \beta$ with learned vectors $\gamma, \beta$ of shape
# $(D,)$ (the affine part of batch normalisation). Write its `backward`: return $dx$,
# and **add** $d\gamma$ and $d\beta$ into `self.grads` (only when `param_grads` is
# true). `check_layer` checks all three.

# %%
class ScaleShift(mg.Layer):
    def __init__(self, dim, rng=None):
        super().__init__()
        r = np.random.default_rng(rng)
        self._add_param("gamma", r.standard_normal(dim).astype(np.float32))
        self._add_param("beta", r.standard_normal(dim).astype(np.float32))

    def forward(self, x):
        self._check_input(x)
        out = x * self.params["gamma"] + self.params["beta"]
        self._save_cache(x, out)
        return out

    def backward(self, dout, param_grads=True, input_grad=True):
        x = self._pop_cache(dout)
        # BEGIN SOLUTION Exercise T2.3: gradients of x * gamma + beta (accumulate the parameter grads)
        if param_grads:
            self.grads["gamma"] += (dout * x).sum(axis=0)
            self.grads["beta"] += dout.sum(axis=0)
        return dout * self.params["gamma"] if input_grad else None
        # END SOLUTION


# %%
res = check_layer(mg.Sequential(mg.Dense(3, 4, rng=0), ScaleShift(4, rng=1), mg.Tanh()),
                  rng.standard_normal((6, 3)))
print(res)
assert res.ok
print("T2.3 ok")
