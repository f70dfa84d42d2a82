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
#     chapter: 3
#     needs_mnist: false
# ---

# %% [markdown]
# # Chapter 3 — Activations, and binary cross-entropy on logits
#
# Between its dense layers a network needs nonlinear *activations*, or the whole
# stack would collapse into a single affine map. At its end, a GAN's discriminator
# needs a *loss* that scores "real or fake?" answers. Both choices decide how
# gradients flow. This chapter looks at the four activations minigan provides and
# at binary cross-entropy, and it shows, with numbers that overflow in front of you,
# why every GAN in this book computes the loss from *logits* and never from
# probabilities.
#
# **What you will learn**
#
# 1. Sigmoid, tanh, ReLU and LeakyReLU: their formulas, their derivatives (computed
#    by minigan's backward passes) and where each one stops passing gradient.
# 2. Binary cross-entropy (BCE) as the loss of a yes/no classifier.
# 3. How BCE computed on sigmoid outputs overflows, produces `inf` and `nan`, and,
#    worse, silently returns *zero gradient* exactly when a GAN needs a strong one.
# 4. The stable form on logits, $\max(z, 0) - zy + \log(1 + e^{-|z|})$, with gradient
#    $\sigma(z) - y$, which is `minigan.functional.bce_with_logits` and `BCEWithLogits`.

# %%
import os

QUICK = os.environ.get("MINIGAN_QUICK", "0") not in ("", "0")  # the test suite sets MINIGAN_QUICK=1

import warnings

import matplotlib.pyplot as plt
import numpy as np

import minigan as mg
from minigan import functional as F
from minigan.gradcheck import check_loss

mg.seed(0)
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. Four activations
#
# | name | $f(z)$ | $f'(z)$ | range |
# |---|---|---|---|
# | sigmoid | $\sigma(z) = \dfrac{1}{1 + e^{-z}}$ | $\sigma(z)\,(1 - \sigma(z))$ | $(0, 1)$ |
# | tanh | $\tanh z = 2\sigma(2z) - 1$ | $1 - \tanh^2 z$ | $(-1, 1)$ |
# | ReLU | $\max(z, 0)$ | $[z > 0]$ | $[0, \infty)$ |
# | LeakyReLU($a$) | $z$ if $z > 0$, else $a z$ | $1$ if $z > 0$, else $a$ | $\mathbb{R}$ |
#
# The derivatives of sigmoid and tanh are written in terms of the *output*: the
# backward pass does not need the input at all, only what the forward pass produced.
# That is what minigan's layers cache. For the sigmoid the identity follows from
# $\sigma'(z) = e^{-z}/(1 + e^{-z})^2 = \sigma(z)\cdot\frac{e^{-z}}{1 + e^{-z}}
# = \sigma(z)(1 - \sigma(z))$.
#
# Instead of coding the derivative formulas a second time, we ask the library for
# them: an elementwise layer's backward pass, fed an upstream gradient of ones,
# returns exactly $f'(z)$ at every input.

# %%
z = np.linspace(-6, 6, 601).astype(np.float32)
activations = {"sigmoid": mg.Sigmoid(), "tanh": mg.Tanh(), "ReLU": mg.ReLU(),
               "LeakyReLU(0.2)": mg.LeakyReLU(0.2)}
values, slopes = {}, {}
styles = {"sigmoid": {}, "tanh": {}, "ReLU": {"lw": 4, "alpha": 0.4}, "LeakyReLU(0.2)": {"ls": "--"}}
for name, act in activations.items():
    values[name] = act(z[:, None])[:, 0]
    slopes[name] = act.backward(np.ones((len(z), 1), np.float32))[:, 0]   # f'(z)

fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
for name in activations:
    axes[0].plot(z, values[name], label=name, **styles[name])
    axes[1].plot(z, slopes[name], label=name, **styles[name])
axes[0].set_title("activation f(z)")
axes[1].set_title("derivative f'(z), from each layer's backward pass")
for ax in axes:
    ax.axhline(0, color="black", lw=0.5)
    ax.axvline(0, color="black", lw=0.5)
    ax.set_xlabel("z")
    ax.grid(alpha=0.3)
axes[0].set_ylim(-2, 3)
axes[1].legend()
plt.tight_layout()
plt.show()
print("largest slope of the sigmoid:", slopes["sigmoid"].max(), "  at z = +-5:",
      slopes["sigmoid"][np.searchsorted(z, 5.0)])

# %% [markdown]
# What the right panel tells you about gradient flow:
#
# * **Sigmoid** passes at most a quarter of the gradient ($\sigma' \le 1/4$), and almost
#   nothing once $|z|$ exceeds 5: it *saturates*. A stack of sigmoids shrinks gradients by
#   at least a factor 4 per layer, which is why they disappeared from hidden layers.
# * **Tanh** has slope 1 at the origin but saturates just the same (chapter 1 showed what
#   a badly initialised tanh stack does). It survives as a generator's *output* layer,
#   because it maps to $(-1, 1)$, the range we scale images and data to.
# * **ReLU** passes gradient unchanged where it is active and *nothing* where it is
#   not. A unit whose input is negative for every example in the data is *dead*: it
#   receives no gradient and can never recover.
# * **LeakyReLU** keeps a small slope $a$ for negative inputs, so every unit always
#   passes some gradient. This matters in a GAN's discriminator, whose input gradient
#   is the *only* training signal the generator gets (chapter 5): with plain ReLUs, a fake
#   sample that happens to fall where all units are off gets no signal at all. DCGAN's
#   authors recommend $a = 0.2$ there, and so does this book.
#
# The sigmoid's last refuge is the very end of a binary classifier, turning a score
# into a probability. We will now see that even there it is better left *inside* the
# loss.

# %% [markdown]
# ## 2. Binary cross-entropy
#
# A discriminator answers a yes/no question: is $x$ real ($y = 1$) or fake ($y = 0$)?
# Let it output a probability $p = D(x)$. The likelihood of the correct answer is $p$
# if $y = 1$ and $1 - p$ if $y = 0$, that is $p^y (1 - p)^{1 - y}$, and the binary
# cross-entropy is its negative log:
#
# $$
# \ell(p, y) = -\,y \log p \;-\; (1 - y) \log(1 - p).
# $$
#
# It is zero for a confident correct answer and grows without bound for a confident
# wrong one. Training on the mean of $\ell$ over a batch is maximum likelihood.
# (Targets may also be *soft*, e.g. $y = 0.9$; chapter 8 uses that for label smoothing.)
#
# The obvious implementation ends the network in a sigmoid, $p = \sigma(z)$, where
# $z$ is the score the last dense layer computes (the **logit**), and then evaluates
# the formula. Let us do exactly that in float32, for a range of logits, and look at
# what comes out.

# %%
logits = np.array([-100, -40, -20, -5, 0, 5, 17, 18, 20, 40, 100], dtype=np.float32)
with warnings.catch_warnings(record=True) as caught, np.errstate(all="warn"):
    warnings.simplefilter("always")
    p_naive = 1.0 / (1.0 + np.exp(-logits))                 # the textbook sigmoid
    loss_if_real = -np.log(p_naive)                            # y = 1
    loss_if_fake = -np.log(1.0 - p_naive)                      # y = 0
for w in caught:
    print("warning:", w.message)
print()
print(f"{'logit z':>8} {'sigmoid(z) in float32':>22} {'-log p (y=1)':>13} {'-log(1-p) (y=0)':>16}")
for zi, pi, l1, l0 in zip(logits, p_naive, loss_if_real, loss_if_fake):
    print(f"{zi:8.0f} {pi:22.10g} {l1:13.6g} {l0:16.6g}")

# %% [markdown]
# Two separate things break.
#
# **Overflow.** For $z = -100$ the textbook sigmoid computes $e^{100}$, which is larger
# than the largest float32 (about $3.4 \times 10^{38}$, reached at $e^{88.7}$): it becomes
# `inf`, $p$ becomes $1/\infty = 0$, and $-\log 0 = \infty$. minigan's `F.sigmoid`
# avoids this particular overflow by computing $\tfrac12(1 + \tanh(z/2))$, which never
# exponentiates a large number, but that only fixes the symptom:
#
# **Rounding.** float32 has 24 bits of mantissa. The gap between 1 and the float32 just
# below it is $2^{-24} \approx 6 \times 10^{-8}$, so as soon as $1 - \sigma(z) \approx e^{-z}$
# is smaller than half of that, around $z > 17.3$, even a perfectly rounded $\sigma(z)$ is
# *exactly 1* (the textbook formula gets there a little earlier, at $z \approx 16.6$,
# because $1 + e^{-z}$ already rounds to 1 in its denominator). From then on $1 - p = 0$, and the loss of a fake sample that the discriminator confidently
# calls real is $-\log 0 = \infty$. The information that distinguished $z = 18$ from
# $z = 100$ is gone before the loss is even computed.

# %%
print("minigan's F.sigmoid in float32:", F.sigmoid(np.array([16, 17, 18, 20], np.float32)))


# %% [markdown]
# ### Clamping hides the infinity but not the damage
#
# PyTorch's `BCELoss`, and minigan's teaching version `F.bce` (on probabilities), clamp
# each log at $-100$ so the loss stays finite. The loss is finite now, but look at the
# *gradient* with respect to the logit, which is what training uses. It is computed
# through the chain rule, $\frac{d\ell}{dz} = \frac{d\ell}{dp}\,\sigma'(z)$, where
#
# $$
# \frac{d\ell}{dp} = \frac{p - y}{p(1 - p)}, \qquad \sigma'(z) = p(1 - p).
# $$
#
# Mathematically the two $p(1-p)$ cancel and $\frac{d\ell}{dz} = p - y$, a perfectly
# tame number. Numerically, once $p(1 - p)$ has rounded to zero (or underflowed), the
# first factor is clamped to a huge constant and the second is exactly zero: the product
# is **zero**. Here is minigan's `Sigmoid` layer followed by its `BCE` loss, against
# `BCEWithLogits` on the same logits:

# %%
def grad_through_probabilities(z, y):
    """d loss / d z for a Sigmoid layer followed by BCE on probabilities (per example)."""
    sigmoid, loss = mg.Sigmoid(), mg.BCE()
    with np.errstate(divide="ignore"):          # log(0) inside the clamped loss
        value = loss.forward(sigmoid(z), y)
    return value, sigmoid.backward(loss.backward()) * z.size


def grad_on_logits(z, y):
    loss = mg.BCEWithLogits()
    value = loss.forward(z, y)
    return value, loss.backward() * z.size


print(f"{'z':>6} {'y':>3} | {'loss, probs':>12} {'dl/dz, probs':>13} | {'loss, logits':>12} {'dl/dz, logits':>13}")
for zi, yi in [(-20, 1), (-30, 1), (-40, 1), (-100, 1), (17, 0), (18, 0), (40, 0)]:
    zz, yy = np.array([[zi]], np.float32), np.array([[yi]], np.float32)
    lp, gp = grad_through_probabilities(zz, yy)
    ll, gl = grad_on_logits(zz, yy)
    print(f"{zi:6d} {yi:3d} | {lp:12.4g} {gp[0, 0]:13.4g} | {ll:12.4g} {gl[0, 0]:13.4g}")

# %% [markdown]
# On the right, the logit version: the loss keeps growing linearly with how wrong the
# answer is, and the gradient is $\sigma(z) - y$, essentially $\pm 1$ for any confidently
# wrong answer. On the left: losses that stop at $100$ (or stall at about $z$ for
# $y = 1$ while $p$ still fits in float32's tiny numbers) and gradients that **vanish**.
# A confidently wrong prediction, the case that should produce the strongest
# correction, produces none.
#
# The plot makes the two failure regions visible.

# %%
zs = np.linspace(-60, 60, 1201).astype(np.float32)[:, None]
fig, axes = plt.subplots(1, 2, figsize=(12, 4))

# left: the loss of a fake (y = 0) as the logit grows
ys = np.zeros_like(zs)
with np.errstate(all="ignore"):
    naive = -np.log(1.0 - 1.0 / (1.0 + np.exp(-zs)))                  # textbook, float32
clamped = np.array([grad_through_probabilities(zs[i:i + 1], ys[i:i + 1])[0] for i in range(len(zs))])
stable = np.array([F.bce_with_logits(zs[i:i + 1], ys[i:i + 1])[0] for i in range(len(zs))])
finite = np.isfinite(naive[:, 0])
ax = axes[0]
ax.plot(zs[:, 0], stable, lw=3, alpha=0.5, label="on logits (BCEWithLogits)")
ax.plot(zs[:, 0], clamped, label="sigmoid, then clamped BCE")
ax.plot(zs[finite, 0], naive[finite, 0], "--", label="textbook formula")
ax.axvline(zs[~finite, 0][0], color="black", ls=":",
           label=f"textbook formula is inf from z = {zs[~finite, 0][0]:.1f} on")
ax.set_title("loss of a fake sample (y = 0)")
ax.set_xlabel("logit z")
ax.legend(fontsize=8)
ax.grid(alpha=0.3)

# right: the gradient for a real target (y = 1), as for the generator's loss
ys = np.ones_like(zs)
g_probs = np.array([grad_through_probabilities(zs[i:i + 1], ys[i:i + 1])[1][0, 0] for i in range(len(zs))])
g_logits = np.array([grad_on_logits(zs[i:i + 1], ys[i:i + 1])[1][0, 0] for i in range(len(zs))])
ax = axes[1]
ax.plot(zs[:, 0], np.abs(g_logits), lw=3, alpha=0.5, label="on logits: |sigmoid(z) - 1|")
ax.plot(zs[:, 0], np.abs(g_probs), label="sigmoid, then clamped BCE")
ax.set_title("|d loss / d z| for a real target (y = 1)")
ax.set_xlabel("logit z")
ax.axvspan(-60, zs[np.argmax(np.abs(g_probs) > 0.5), 0], color="tab:red", alpha=0.1,
           label="gradient lost")
ax.legend(fontsize=8)
ax.grid(alpha=0.3)
plt.tight_layout()
plt.show()

# %% [markdown]
# The right panel is the one to remember for GANs. The generator's usual loss is
# $-\log D(G(z))$: BCE with target $y = 1$ on the discriminator's verdict about a fake.
# Early in training the discriminator easily recognises fakes, so their logits are very
# negative, which is the left part of that panel. Computed on probabilities, the
# generator's gradient is *zero* there (in float32 below about $z = -28$); computed on
# logits, it is a steady $-1$ per sample.

# %% [markdown]
# ## 3. The stable formula
#
# Write the loss in terms of the logit and simplify *before* evaluating anything. With
# $\log \sigma(z) = -\log(1 + e^{-z})$ and $\log(1 - \sigma(z)) = -z - \log(1 + e^{-z})$,
#
# $$
# \ell(z, y) = -y \log\sigma(z) - (1 - y)\log(1 - \sigma(z))
#           = (1 - y)\,z + \log(1 + e^{-z}).
# $$
#
# This is exact but still overflows for very negative $z$. The last step splits on the
# sign of $z$, using $\log(1 + e^{-z}) = -z + \log(1 + e^{z})$:
#
# $$
# \boxed{\;\ell(z, y) = \max(z, 0) - z\,y + \log\!\left(1 + e^{-|z|}\right)\;}
# $$
#
# Now the exponent is never positive, so $e^{-|z|} \in (0, 1]$ cannot overflow, and
# `log1p` evaluates $\log(1 + \text{small})$ accurately. The derivative is just as clean:
#
# $$
# \frac{\partial \ell}{\partial z} = \sigma(z) - y ,
# $$
#
# bounded by 1 in size and never zero for a wrong answer. This is `F.bce_with_logits`
# (it returns the mean over all entries and the gradient of that mean, hence a
# $1/n$). A network trained with it **ends in a Dense layer**, not a sigmoid: the sigmoid
# lives inside the loss, and you apply `F.sigmoid` yourself only when you want to
# *report* a probability. Every discriminator in this book is built that way.
#
# Let us check the formula against the definition where the definition is still safe
# (float64, moderate logits), check its gradient numerically, and confirm it stays
# finite for absurd logits.

# %%
z64 = rng.uniform(-10, 10, (8, 1))
y64 = rng.uniform(0, 1, (8, 1))                      # soft targets are fine
loss, dz = F.bce_with_logits(z64, y64)
p = 1 / (1 + np.exp(-z64))
print("matches the definition:", np.isclose(loss, np.mean(-y64 * np.log(p) - (1 - y64) * np.log(1 - p))))
print("gradient is (sigmoid(z) - y) / n:", np.allclose(dz, (p - y64) / z64.size))

print(check_loss(F.bce_with_logits, z64, y64))

extreme = np.array([[-1e4], [-100.0], [100.0], [1e4]], np.float32)
print("logits:", extreme.ravel())
for target in (0.0, 1.0):
    t_ = np.full((1, 1), target, np.float32)
    per_entry = [F.bce_with_logits(extreme[i:i + 1], t_) for i in range(len(extreme))]
    print(f"y = {target}: losses {[float(l_) for l_, _ in per_entry]}, "
          f"gradients {[float(g_[0, 0]) for _, g_ in per_entry]}")


# %% [markdown]
# The loss for $z = \pm 10^4$ is $10^4$ when wrong, exactly as the formula says, and
# the gradient is exactly $\pm 1$ (here $n = 1$). When right, the loss and the gradient
# are zero or tiny, as they should be. No `inf`, no `nan`, no clamping.

# %% [markdown]
# ## Summary
#
# * Sigmoid and tanh saturate, ReLU dies for negative inputs, LeakyReLU always passes
#   some gradient. A GAN discriminator uses LeakyReLU(0.2) so that every fake sample
#   gets a signal; a generator often ends in tanh to produce data in $(-1, 1)$.
# * BCE on sigmoid outputs overflows ($e^{-z}$ for very negative $z$), rounds
#   ($\sigma(z) = 1$ exactly for $z \gtrsim 17$ in float32), and with the usual clamps it
#   returns **zero gradient for confidently wrong predictions**.
# * BCE on logits, $\max(z, 0) - zy + \log(1 + e^{-|z|})$ with gradient $\sigma(z) - y$,
#   is exact and finite for every logit. Networks end in a logit; the loss holds the
#   sigmoid.
#
# Chapter 4 turns gradients into training: optimisers, and an MNIST classifier.

# %% [markdown]
# ## Exercises
#
# **Exercise T3.1 — a stable log-sigmoid.** Write `log_sigmoid(z)` computing
# $\log \sigma(z)$ for any float array without overflow or `-inf` (except where the
# true value is below the smallest float). Hint: $\log\sigma(z) = -\log(1 + e^{-z})$;
# split on the sign of $z$ as in section 3.

# %%
def log_sigmoid(z):
    # BEGIN SOLUTION Exercise T3.1: compute log(sigmoid(z)) stably for any z
    return np.minimum(z, 0) - np.log1p(np.exp(-np.abs(z)))
    # END SOLUTION


# %%
zt = np.linspace(-30, 30, 121)
assert np.allclose(log_sigmoid(zt), np.log(1 / (1 + np.exp(-zt))), rtol=1e-10, atol=1e-12)
with np.errstate(over="raise", divide="raise", invalid="raise"):   # overflow, log(0), nan: errors
    big = log_sigmoid(np.array([-1e4, 1e4], np.float32))
assert big.dtype == np.float32 and np.allclose(big, [-1e4, 0.0])
print("T3.1 ok")


# %% [markdown]
# **Exercise T3.2 — where soft targets pull the logit.** With a soft target
# $y \in (0, 1)$ the loss $\ell(z, y)$ has a finite minimum in $z$. Set the gradient
# $\sigma(z) - y$ to zero and write `best_logit(y)`. What logit does one-sided label
# smoothing with $y = 0.9$ ask the discriminator for? The check compares with a grid
# search over `F.bce_with_logits`.

# %%
def best_logit(y):
    # BEGIN SOLUTION Exercise T3.2: the logit that minimises BCE for a soft target y
    return float(np.log(y / (1.0 - y)))
    # END SOLUTION


# %%
grid = np.linspace(-10, 10, 20001)[:, None]
for y in (0.1, 0.5, 0.9, 0.99):
    losses = [F.bce_with_logits(grid[i:i + 1], np.array([[y]]))[0] for i in range(0, len(grid), 10)]
    z_grid = grid[::10][int(np.argmin(losses)), 0]
    print(f"y = {y}: best logit {best_logit(y):+.4f}, grid search {z_grid:+.3f}")
    assert abs(best_logit(y) - z_grid) < 0.02
print("T3.2 ok")


# %% [markdown]
# **Exercise T3.3 — dead units.** Write `dead_fraction(pre)` that takes the
# pre-activations of a layer on a batch, shape $(N, D)$, and returns the fraction of the
# $D$ units that are dead under ReLU on that batch (input $\le 0$ for every example).
# The check cell builds a layer with a strongly negative bias and asks you to compare:
# how much of the gradient reaches the inputs through ReLU, and through LeakyReLU(0.2)?

# %%
def dead_fraction(pre):
    # BEGIN SOLUTION Exercise T3.3: fraction of units whose input is <= 0 on every example
    return float(np.mean(np.all(pre <= 0, axis=0)))
    # END SOLUTION


# %%
assert dead_fraction(np.array([[1.0, -1.0, 0.0], [-2.0, -3.0, 0.0]])) == 2 / 3
dense = mg.Dense(2, 256, init="he_normal", rng=3)
dense.params["b"][:] = -2.5                    # a badly shifted layer
xs = rng.standard_normal((500, 2)).astype(np.float32)
pre = dense(xs)
dense.clear_cache()
print(f"dead ReLU units: {dead_fraction(pre):.0%}")
for act in (mg.ReLU(), mg.LeakyReLU(0.2)):
    act(pre)
    passed = act.backward(np.ones_like(pre))
    print(f"{act!r}: fraction of (example, unit) pairs passing no gradient: {np.mean(passed == 0):.0%}")
assert 0.2 < dead_fraction(pre) < 1.0
print("T3.3 ok")
