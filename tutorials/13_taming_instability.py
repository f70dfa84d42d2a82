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
#     chapter: 13
#     needs_mnist: false
# ---

# %% [markdown]
# # Chapter 13 — Taming instability: Wasserstein critics, gradient penalties, spectral norm
#
# Chapter 8 met the two open problems every GAN text names: training that does not
# settle, and generators that drop modes. It fixed the second with packing. Most modern
# GANs use a different family of fixes, all aimed at the *discriminator*: keep it
# smooth, so that the gradient it hands the generator stays informative and does not
# swing wildly from step to step. This chapter builds that family by hand.
#
# The hard part is the gradient penalty. It is a penalty on a *gradient*, so its own
# gradient with respect to D's weights is a gradient of a gradient. Without autograd
# we derive it on paper and then check, numerically, that minigan's hand-written
# "double backward" computes it.
#
# **What you will learn**
#
# 1. The **Wasserstein critic**: the Kantorovich-Rubinstein dual, why the critic must be
#    1-Lipschitz, its losses, and why the original fix, **weight clipping**, struggles
#    (shown on a 1-D critic).
# 2. The **gradient penalty** of WGAN-GP: its gradient with respect to the weights of a
#    one-hidden-layer critic, derived by hand (it needs $\phi''$, the *second* derivative
#    of the activation), checked against central differences; and the trap in the
#    derivative of a norm at zero.
# 3. **R1**: a penalty on D's gradient at the real data, and why it makes training
#    converge where the plain GAN circles forever (the "Dirac GAN").
# 4. **Spectral normalisation**: the largest singular value by power iteration, what
#    $W/\sigma(W)$ does to the Lipschitz constant, and why one iteration per step is enough.
# 5. A **stability map** on the 25-mode grid, without packing: learning rate $\times$ method
#    $\times$ seeds, for the plain GAN, WGAN-GP, hinge loss with spectral norm, and R1.
#
# The full run of this chapter takes about six minutes of one CPU core, most of it the
# stability map. In quick mode (the test suite) the training is cut to a few
# dozen steps, and the pictures and numbers of the map mean nothing.

# %%
import os

QUICK = os.environ.get("MINIGAN_QUICK", "0") not in ("", "0")  # the test suite sets MINIGAN_QUICK=1

import time

import matplotlib.pyplot as plt
import numpy as np

import minigan as mg
from minigan import metrics, plot
from minigan.data import grid25
from minigan.gan import EMA, GAN
from minigan.gan_losses import Hinge, NonSaturating, Wasserstein
from minigan.layers import Dense, Sequential, forward_in_eval_mode
from minigan.models import Scale, mlp
from minigan.optim import Adam
from minigan.penalty import NORM_EPS, R1, GradientPenalty, check_penalty, input_gradient_penalty
from minigan.spectral import SpectralNorm
from minigan.train import fit

mg.seed(0)
CRITIC_STEPS = 120 if QUICK else 1000   # training steps of each 1-D critic in section 1
MAP_STEPS = 60 if QUICK else 5000       # generator updates per run of the stability map
print("minigan", mg.__version__, "| quick mode" if QUICK else "| full mode")

# %% [markdown]
# ## 1. The Wasserstein critic
#
# ### 1.1 A distance that does not saturate
#
# Chapter 7 found the best discriminator for a fixed generator,
# $D^* = p_\text{data} / (p_\text{data} + p_g)$. Put back into the value of the game it gives
# $V(D^*, G) = -\log 4 + 2\,\mathrm{JS}(p_\text{data} \,\|\, p_g)$ (Goodfellow et al. 2014):
# against the best D, the generator minimises the Jensen-Shannon divergence. When the two distributions
# do not overlap, which is the rule early in training and for data on thin manifolds, the
# JS divergence is stuck at $\log 2$ however far apart they are, and the optimal $D$ is a
# cliff: 1 on the data, 0 on the fakes, flat elsewhere, with no slope to follow.
#
# The **Wasserstein-1** (earth mover's) distance measures how *far* the mass must move:
#
# $$
# W_1(p, q) = \inf_{\pi \in \Pi(p, q)} \ \mathbb{E}_{(x, y) \sim \pi} \, \|x - y\|,
# $$
#
# the cheapest way to transport $p$ onto $q$, where a *coupling* $\pi$ is a joint
# distribution with marginals $p$ and $q$. Move a point mass by $d$ and $W_1$ grows by
# $d$: it never saturates.
#
# The infimum over couplings is not something a network can compute. The
# **Kantorovich-Rubinstein duality** turns it into a supremum over functions:
#
# $$
# W_1(p, q) = \sup_{\|f\|_L \le 1} \ \mathbb{E}_{x \sim p}\,[f(x)] - \mathbb{E}_{y \sim q}\,[f(y)],
# $$
#
# over all **1-Lipschitz** functions, $|f(x) - f(y)| \le \|x - y\|$ for all $x, y$.
# Arjovsky et al. (2017) let a network $D$, the **critic**, play $f$. It outputs a raw
# score, no sigmoid. Over a batch of $n$ real and $n$ fake samples with scores
# $o_i^\text{real}$, $o_j^\text{fake}$, the critic maximises the estimate, so it minimises
# its negative, and the generator minimises what the critic says about its fakes:
#
# $$
# L_D = \frac1n \sum_j o_j^\text{fake} - \frac1n \sum_i o_i^\text{real},
# \qquad \frac{\partial L_D}{\partial o_i^\text{real}} = -\frac1n,
# \quad \frac{\partial L_D}{\partial o_j^\text{fake}} = +\frac1n;
# \qquad
# L_G = -\frac1n \sum_j o_j^\text{fake}, \quad \frac{\partial L_G}{\partial o_j^\text{fake}} = -\frac1n .
# $$
#
# The gradients are constants. Cross-entropy's gradient $\sigma(l) - y$ dies when D is
# sure; this one pushes every sample equally hard however sure the critic is. In
# minigan this is the loss object `Wasserstein()`, used like every other loss object:

# %%
loss = Wasserstein()
real_out = np.array([[2.0], [0.5], [1.0]], dtype=np.float32)    # critic scores of 3 real samples
fake_out = np.array([[-1.0], [40.0], [0.0]], dtype=np.float32)  # ... and of 3 fakes
d_loss, d_real, d_fake = loss.discriminator(real_out, fake_out)
g_loss, g_fake = loss.generator(fake_out)
print(f"L_D = {float(d_loss):.3f}   dL_D/do_real = {d_real.ravel()}   dL_D/do_fake = {d_fake.ravel()}")
print(f"L_G = {float(g_loss):.3f}   dL_G/do_fake = {g_fake.ravel()}")

# %% [markdown]
# Every entry is $\pm\frac13$, whatever the scores, even for the fake that the critic
# scores 40. (Exercise T13.1 asks you to write these losses and their gradients yourself.)
#
# ### 1.2 Why the critic must be Lipschitz
#
# Drop the constraint and the supremum is infinite: if $f$ gives the two distributions
# different means, so does $2f$, with twice the gap. A critic trained without a constraint
# does exactly that: it grows its weights and its "distance" without bound, and the
# gradient it hands G grows with it. The constraint is what makes the critic's score a
# distance, and its gradient a direction rather than a cliff.
#
# **Weight clipping.** The original WGAN enforced it crudely: after every critic update,
# clip every weight into $[-c, c]$ ($c = 0.01$ in the paper). A network with bounded
# weights has a bounded slope, so the critic is $K$-Lipschitz for *some* $K$, and it
# estimates $K \cdot W_1$. What is $K$? A ReLU net's slope is a product of one weight
# per layer along each path, so with $L$ layers of width $H$ and every weight at
# $\pm c$, $K$ can be up to about $c^L H^{L-1}$: it depends on $c$ like $c^L$. Too small a
# $c$ and the gradients vanish through the layers; too large and they explode.
#
# Let's see it on 1-D data, where everything can be computed exactly. Real data: two
# Gaussians at $\pm 2$ (std 0.3). Fakes: one Gaussian at 0 (std 0.7), a generator that
# sits between the modes. In 1-D the optimal coupling simply pairs the sorted samples
# (the smallest real with the smallest fake, and so on), so $W_1$ is the mean distance
# between the sorted samples; and the optimal critic has slope $f^{*\prime}(x) =
# \operatorname{sign}(F_q(x) - F_p(x))$, with $F_p, F_q$ the two distribution functions
# (the dual of $W_1 = \int |F_p - F_q|\,dx$).

# %%
def real_1d(n, rng):
    """Two modes at -2 and +2, std 0.3: (n, 1) float32."""
    centre = np.where(rng.random(n) < 0.5, -2.0, 2.0)
    return (centre + 0.3 * rng.standard_normal(n))[:, None].astype(np.float32)


def fake_1d(n, rng):
    """A 'generator' sitting between the modes: N(0, 0.7^2), (n, 1) float32."""
    return (0.7 * rng.standard_normal(n))[:, None].astype(np.float32)


held_out = np.random.default_rng(99)
real_eval, fake_eval = real_1d(100_000, held_out), fake_1d(100_000, held_out)
W1_true = float(np.mean(np.abs(np.sort(real_eval[:, 0]) - np.sort(fake_eval[:, 0]))))

xs = np.linspace(-4.5, 4.5, 901, dtype=np.float32)[:, None]
F_real = np.searchsorted(np.sort(real_eval[:, 0]), xs[:, 0]) / len(real_eval)   # empirical CDFs
F_fake = np.searchsorted(np.sort(fake_eval[:, 0]), xs[:, 0]) / len(fake_eval)
f_star = np.concatenate([[0.0], np.cumsum(np.sign(F_fake - F_real)[1:] * np.diff(xs[:, 0]))])
print(f"W1(p_data, p_g) = {W1_true:.3f}   (the mean distance between sorted samples)")

# %% [markdown]
# Now the critic: an MLP 1-64-64-1 with ReLUs, trained with Adam on the Wasserstein
# loss for a fixed real and fake distribution. The loop is the discriminator step of
# chapter 6 with nothing hidden: forward the two batches, ask the loss object for the
# gradient on the scores, backward, step, and then, for WGAN, clip. (It can also add a
# penalty before the step; section 2.5 uses that.) Every 50 steps it records the estimate
# $\mathbb{E} f(\text{real}) - \mathbb{E} f(\text{fake})$ on held-out samples.

# %%
def scores(D, x):
    return forward_in_eval_mode(D, x)[:, 0]


def slope_at(D, x0, h=0.5):
    """The critic's slope around x0, (f(x0 + h) - f(x0 - h)) / 2h."""
    f = scores(D, np.array([[x0 - h], [x0 + h]], dtype=np.float32))
    return float(f[1] - f[0]) / (2 * h)


def train_critic(clip=None, penalty=None, steps=CRITIC_STEPS, n=128, seed=0):
    """A 1-D Wasserstein critic: weights clipped to [-clip, clip] after each step,
    and/or a penalty(D, real, fake) added before it. Returns (D, [(step, estimate)])."""
    D = mlp([1, 64, 64, 1], activation="relu", rng=seed)
    opt = Adam(D.parameters(), lr=1e-3, betas=(0.5, 0.9))
    loss, rng, curve = Wasserstein(), np.random.default_rng(seed), []
    for step in range(1, steps + 1):
        real, fake = real_1d(n, rng), fake_1d(n, rng)
        D.zero_grad()
        out = D.forward(np.concatenate([real, fake]))
        _, d_real, d_fake = loss.discriminator(out[:n], out[n:])
        D.backward(np.concatenate([d_real, d_fake]), input_grad=False)
        if penalty is not None:
            penalty(D, real, fake)                 # adds dP/dtheta into D's grads
        opt.step()
        if clip is not None:                       # WGAN: project back into the box
            for p, _ in D.parameters():
                np.clip(p, -clip, clip, out=p)
        if step % 50 == 0 or step == steps:
            curve.append((step, float(scores(D, real_eval).mean() - scores(D, fake_eval).mean())))
    return D, curve


start = time.perf_counter()
critics = {"no constraint": train_critic()}
for c in (0.1, 0.01, 0.001):
    critics[f"clip c={c:g}"] = train_critic(clip=c)
print(f"trained {len(critics)} critics in {time.perf_counter() - start:.1f} s\n")

print(f"{'critic':<15}{'estimate':>11}{'slope K':>10}{'estimate / K':>14}{'weights at +-c':>16}")
slopes = {}
for name, (D, curve) in critics.items():
    f = scores(D, xs)
    slopes[name] = K = float(np.abs(np.diff(f) / np.diff(xs[:, 0])).max())
    at_bound = ""
    if name.startswith("clip"):
        c = float(name.split("=")[1])
        w = np.concatenate([p.ravel() for p, _ in D.parameters()])
        at_bound = f"{np.mean(np.abs(w) >= 0.99 * c):.0%}"
    print(f"{name:<15}{curve[-1][1]:>11.3g}{K:>10.3g}{curve[-1][1] / K:>14.3f}{at_bound:>16}")
print(f"{'true W1':<15}{W1_true:>11.3f}")

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
D01, _ = critics["clip c=0.01"]
w = np.concatenate([p.ravel() for p, _ in D01.parameters()])
axes[0].hist(w / 0.01, bins=41, color="tab:red")
axes[0].set_xlabel("weight / c")
axes[0].set_ylabel("number of weights")
axes[0].set_title("weights of the clipped critic (c = 0.01)")

ax = axes[1]
ax.hist(real_eval[:, 0], bins=120, density=True, color="0.8", label="real density")
ax.hist(fake_eval[:, 0], bins=120, density=True, histtype="step", color="tab:green", label="fake density")
ax.plot(xs, f_star - f_star.mean(), "k--", lw=2, label="optimal critic $f^*$ (slope $\\pm 1$)")
for name, colour in (("clip c=0.1", "tab:orange"), ("clip c=0.01", "tab:red"), ("clip c=0.001", "tab:purple")):
    f = scores(critics[name][0], xs) / slopes[name]          # compare shapes at slope 1
    ax.plot(xs, f - f.mean(), color=colour, label=f"{name}, divided by its K")
ax.set_xlabel("x")
ax.set_ylabel("critic value (centred)")
ax.set_title("the clipped critics' shapes")
ax.legend(fontsize=7, loc="upper center")

ax = axes[2]
colours = {"no constraint": "k", "clip c=0.1": "tab:orange", "clip c=0.01": "tab:red",
           "clip c=0.001": "tab:purple"}
for name, (_, curve) in critics.items():
    steps_, est = zip(*curve)
    ax.plot(steps_, np.abs(est), color=colours[name], label=name)
ax.axhline(W1_true, color="0.4", ls=":", label="true $W_1$")
ax.set_yscale("log")
ax.set_xlabel("critic step")
ax.set_ylabel("|E f(real) - E f(fake)|")
ax.set_title("the critic's estimate of $W_1$")
ax.legend(fontsize=7)
fig.tight_layout()
plt.show()

# %% [markdown]
# What to see, left to right (in our full run; quick mode trains too briefly to show it):
#
# * **The weights pile up at the clip bounds.** Most of the clipped critic's weights sit
#   exactly at $\pm c$ (the table says what fraction). The optimiser keeps pushing them
#   outward, because a larger slope means a larger estimate, and the clip keeps pushing
#   them back. The network's weights have become little more than a pattern of signs.
# * **The shape is fine, the scale is not.** Divided by its own slope $K$, each clipped
#   critic is close to $f^*$ where the data are: V-shaped, pointing the fakes outwards,
#   towards the modes, and the generator only uses the *direction* of the critic's
#   gradient. But the estimate is $K \cdot W_1$ (the table's last column is close to
#   $W_1$), and $K$ is set by $c$ like $c^3$, the depth of this critic: with $c = 0.01$
#   the critic reports a distance about a thousand times too small, with $c = 0.001$ about
#   a million times; $c = 0.1$ lands near $K = 1$ by luck of this width and depth. The
#   "distance" is only defined up to a factor that depends on the clip, the depth and the
#   width, and the gradients G receives shrink or grow with it.
# * **Without a constraint the estimate grows without bound** (black): the critic is
#   maximising something unbounded, exactly as the dual predicts.
#
# Gulrajani et al. (2017) found more: in deeper critics, clipping biases the critic
# towards overly simple functions, and training is very sensitive to $c$. Their fix is
# to ask for the Lipschitz property directly, where it matters.
#
# ## 2. The gradient penalty
#
# ### 2.1 What WGAN-GP asks for
#
# A differentiable $f$ is 1-Lipschitz exactly when $\|\nabla f(x)\| \le 1$ everywhere.
# And the optimal critic does more than obey this: along the straight line between a
# real sample and the fake it is transported to (a pair of the optimal coupling), it
# rises with slope exactly 1. Gulrajani et al. turn that into a soft constraint on
# random lines between real and fake samples:
#
# $$
# \hat x = \epsilon\, x^\text{real} + (1 - \epsilon)\, x^\text{fake}, \quad \epsilon \sim U(0, 1)
# \text{ (one per sample)}, \qquad
# P = \lambda \, \frac1n \sum_{i=1}^n \big(\|\nabla_x D(\hat x_i)\| - 1\big)^2, \quad \lambda = 10,
# $$
#
# added to the critic's loss. `GradientPenalty(weight=10)` draws the $\hat x_i$ and calls
# `input_gradient_penalty(D, x_hat, weight, center=1)`, which returns $P$ and adds
# $\partial P / \partial \theta$ into D's gradients. (Each $g_i = \nabla_x D(\hat x_i)$ is the
# gradient of D's output for sample $i$ with respect to sample $i$ alone; a D with batch
# norm mixes the samples of a batch, and minigan refuses it with that reason.)
#
# $P$ depends on the weights through a *gradient*. Its derivative is a second
# derivative, and it is worth doing once by hand.
#
# ### 2.2 The derivation for one hidden layer
#
# Take a critic with one hidden layer of $H$ units and activation $\phi$, for one input
# $x \in \mathbb{R}^d$ (column vectors here; minigan's `Dense` stores its weight as
# (in, out), which is $W_1^\top$):
#
# $$
# h = W_1 x + b_1 \in \mathbb{R}^H, \qquad D(x) = w_2^\top \phi(h) + c .
# $$
#
# **The first backward**, the input gradient, is the chain rule once:
#
# $$
# g = \nabla_x D = W_1^\top \big(\phi'(h) \odot w_2\big) = W_1^\top s,
# \qquad s = \phi'(h) \odot w_2 \in \mathbb{R}^H .
# $$
#
# **The penalty's adjoint.** For $P = \lambda \frac1n \sum_i (\|g_i\| - 1)^2$, with
# $\partial \|g\| / \partial g = g / \|g\|$,
#
# $$
# u_i = \frac{\partial P}{\partial g_i} = \frac{2\lambda}{n}\, \big(\|g_i\| - 1\big)\, \frac{g_i}{\|g_i\|} \in \mathbb{R}^d .
# $$
#
# **The second pass.** Write $dP = \sum_i u_i^\top dg_i$ and differentiate
# $g = W_1^\top s$ with respect to everything that $s$ and $W_1$ depend on (drop the $i$):
#
# $$
# dg = dW_1^\top\, s + W_1^\top\, ds, \qquad
# ds = \phi''(h) \odot dh \odot w_2 + \phi'(h) \odot dw_2, \qquad
# dh = dW_1\, x + db_1 .
# $$
#
# Two paths reach $W_1$: directly, since $g$ is linear in $W_1$, and through $h$, since
# $s$ depends on where each unit sits on its activation curve. With $v = W_1 u \in
# \mathbb{R}^H$ (the adjoint carried *forward* through the layer) and
# $u^\top W_1^\top ds = v^\top ds$:
#
# $$
# \boxed{\;
# \frac{\partial P}{\partial W_1} = \sum_i \big(s_i\, u_i^\top + r_i\, x_i^\top\big), \quad
# \frac{\partial P}{\partial b_1} = \sum_i r_i, \quad
# \frac{\partial P}{\partial w_2} = \sum_i v_i \odot \phi'(h_i), \quad
# \frac{\partial P}{\partial c} = 0,
# \qquad r_i = v_i \odot w_2 \odot \phi''(h_i) .\;}
# $$
#
# Read it line by line:
#
# * $s\,u^\top$: moving $W_1$ rotates and stretches $g$ directly.
# * $r\,x^\top$ and $r$: moving $W_1$ or $b_1$ moves $h$, which changes the *slope*
#   $\phi'(h)$ of every unit, and so $g$. That path goes through $\phi''$.
# * $c$ never enters $g$: a constant shift of the critic does not change its slope.
#
# **Which activations need $\phi''$.** For $\tanh$, $t = \tanh(h)$: $\phi' = 1 - t^2$ and
# $\phi'' = -2t(1 - t^2)$; for the sigmoid $\phi'' = \sigma(1 - \sigma)(1 - 2\sigma)$; for
# softplus $\phi'' = \sigma(h)(1 - \sigma(h))$. None is zero: a smooth critic gets wrong
# weight gradients if $r$ is left out. ReLU and LeakyReLU are piecewise linear: $\phi''
# = 0$ everywhere except at the kink, so $r = 0$ and, for a one-hidden-layer ReLU critic,
# the penalty does not move $b_1$ at all.
#
# For a deeper critic the same two moves repeat layer by layer: minigan's
# `input_gradient_penalty` sweeps the adjoint *forward* through the layers ($u$, then
# $v = W_1 u$, then $\phi'(h) \odot v$, ...), collecting each layer's direct term and the
# $r$'s, and then runs one ordinary backward pass of the forward graph with the $r$'s
# injected where they arise. The docstring of `minigan.penalty` has the general algorithm.
#
# ### 2.3 Checking it numerically
#
# A derivation is a claim until it is checked. `check_penalty(D, x, weight, center)`
# computes the penalty's parameter gradients with the double backward and compares them,
# entry by entry, with central differences of the penalty's *value*, in float64. One
# critic per activation, with two hidden layers (so that the $r$ terms also flow
# through a second layer):

# %%
rng = np.random.default_rng(3)
x = rng.standard_normal((6, 3))      # 6 points in 3-D, float64
for activation in ("tanh", "sigmoid", "leaky_relu", "relu"):
    D = mlp([3, 5, 4, 1], activation=activation, dtype="float64", rng=4)
    result = check_penalty(D, x, weight=10.0, center=1.0)
    print(f"{activation:<11} passed: {result.ok}   largest relative error {result.max_rel_error:.1e}")
print()
print(check_penalty(mlp([3, 5, 1], activation="tanh", dtype="float64", rng=4), x))

# %% [markdown]
# Every gradient agrees with the finite differences to about $10^{-8}$ or better. Now the
# claim about ReLU: with $\phi'' = 0$ the penalty's gradient on the hidden bias is exactly
# zero, and with tanh it is not.

# %%
for activation in ("relu", "tanh"):
    D = mlp([3, 5, 1], activation=activation, dtype="float64", rng=4)
    D.zero_grad()
    P = input_gradient_penalty(D, x, weight=10.0, center=1.0)
    print(f"{activation:<5} P = {float(P):.4f}   dP/db1 = {np.round(D[0].grads['b'], 4)}")

# %% [markdown]
# ### 2.4 The trap: the gradient of a norm at zero
#
# The adjoint $u = \frac{2\lambda}{n}(\|g\| - 1)\, g / \|g\|$ divides by $\|g\|$. Where
# $g = 0$ that is $0/0$. It happens: a ReLU critic whose hidden units are all off at
# $\hat x$ has exactly zero input gradient there. One NaN in $u$ becomes NaN in every
# weight gradient, Adam writes it into every weight, and the run is dead.

# %%
g = np.zeros(3)
with np.errstate(invalid="ignore", divide="ignore"):
    print("g / ||g||                     at g = 0:", g / np.linalg.norm(g))
print("g / sqrt(||g||^2 + NORM_EPS)  at g = 0:", g / np.sqrt(g @ g + NORM_EPS), f"  (NORM_EPS = {NORM_EPS:g})")

dead = mlp([3, 5, 1], activation="relu", dtype="float64", rng=4)
dead[0].params["b"][...] = -100.0          # every hidden unit off for these inputs
dead.zero_grad()
P = input_gradient_penalty(dead, x, weight=10.0, center=1.0)
grads = np.concatenate([gr.ravel() for _, gr in dead.parameters()])
print(f"dead ReLU critic: P = {float(P):.1f} (= weight * (0 - 1)^2), gradients finite: {np.isfinite(grads).all()}")

# %% [markdown]
# minigan computes $\|g\| = \sqrt{\sum g^2 + \varepsilon}$ with $\varepsilon$ =
# `NORM_EPS` $= 10^{-24}$. At $g = 0$ the adjoint is then exactly 0 (what PyTorch's norm
# gives too), and elsewhere the smoothed norm differs from the true one by at most
# $\sqrt{\varepsilon} = 10^{-12}$. Why so small? The error is largest at $g = 0$, where
# the smoothed norm is $\sqrt{\varepsilon}$ instead of 0: with the $\varepsilon = 10^{-12}$
# that some code uses, that is $10^{-6}$, visible in $P$. $10^{-24}$ is still a normal
# float32 number, so the guard works in either precision. (Two other classic mistakes in
# WGAN-GP code: taking the norm over the wrong axis, which mixes the samples of a batch,
# and drawing one $\epsilon$ per *entry* instead of one per sample, which puts $\hat x$
# off the line between the two samples.)
#
# ### 2.5 The penalty at work, and a trap of its own
#
# Back to the 1-D problem of section 1, with `GradientPenalty(weight=10)` instead of the
# clip, for four seeds of the critic's initial weights. For each we print the critic's
# slopes left and right of 0 at the start and at the end (between $\pm 0.5$ and
# $\pm 1.5$), and its estimate of $W_1$.

# %%
gp_critics = {}
print(f"{'seed':<6}{'slopes at the start (left, right)':>36}{'at the end':>18}{'estimate':>11}")
for seed in range(4):
    initial = mlp([1, 64, 64, 1], activation="relu", rng=seed)     # what train_critic starts from
    D, curve = train_critic(penalty=GradientPenalty(weight=10.0, rng=1), seed=seed)
    gp_critics[seed] = (D, curve)
    print(f"{seed:<6}{slope_at(initial, -1.0):>22.3f}, {slope_at(initial, 1.0):>7.3f}"
          f"{slope_at(D, -1.0):>12.3f}, {slope_at(D, 1.0):>6.3f}{curve[-1][1]:>11.3f}")
print(f"true W1 = {W1_true:.3f};  a V with slopes +-(1 + W1 / 2 lambda) = "
      f"+-{1 + W1_true / 20:.3f} would estimate {W1_true * (1 + W1_true / 20):.3f}")

fig, axes = plt.subplots(1, 2, figsize=(11, 4))
axes[0].plot(xs, f_star - f_star.mean(), "k--", lw=2, label="optimal critic $f^*$")
for seed, (D, curve) in gp_critics.items():
    f = scores(D, xs)
    axes[0].plot(xs, f - f.mean(), label=f"seed {seed}")
    axes[1].plot(*zip(*curve), label=f"seed {seed}")
axes[0].set_xlabel("x")
axes[0].set_ylabel("critic value (centred)")
axes[0].set_title("critics trained with the gradient penalty, $\\lambda = 10$")
axes[0].legend(fontsize=8)
axes[1].axhline(W1_true, color="0.4", ls=":", label="true $W_1$")
axes[1].set_xlabel("critic step")
axes[1].set_ylabel("E f(real) - E f(fake)")
axes[1].set_title("their estimates of $W_1$")
axes[1].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# What the table and the figure show (in our full run):
#
# * **One seed finds the optimal critic.** Seed 1 ends as a V with slopes about $\pm 1.07$
#   and an estimate about 7% above $W_1$. Both numbers are what a *soft* constraint
#   predicts: for a V with slopes $\pm a$ the penalised loss is
#   $-a W_1 + \lambda (a - 1)^2$, smallest at $a = 1 + W_1 / 2\lambda$. A larger $\lambda$
#   holds the slope closer to 1.
# * **The other three end nearly linear**, with estimates near 0. Here a linear critic is
#   useless: both distributions have mean 0, so every linear function gives them the same
#   expected score. Look at the slopes at the start: seed 1 is the only one that already
#   had the V's signs, falling on the left and rising on the right. The penalty, with its
#   weight of 10, pulls both slopes to magnitude about 1 early on (quick mode's 120 steps
#   already show it) and keeps their signs; the Wasserstein loss is too weak to flip a
#   side that fast. Later, a side can change its sign only by taking its slope through 0,
#   which the penalty charges for (up to $\lambda (0 - 1)^2 = 10$ on every interpolate
#   there), or by sliding a kink across the data. Seed 0 shows the second way: it starts
#   as an upside-down V, with a negative estimate, and over a few hundred steps slides its
#   kink on the right out past the right-hand mode (the bump near $x = 3$ in the left
#   panel). That leaves it linear, not a V, and the linear critics stay linear for the
#   rest of the run.
#
# These are traps of the penalised objective (the critics sit in them to the end), not a
# bug of the double backward: section 2.3 checked the gradients, and a critic of the same
# shape trained with PyTorch's autograd got stuck the same way in our runs. The penalty
# is a soft constraint: it reshapes the critic's loss landscape, it does not project the
# critic onto the 1-Lipschitz functions. In a GAN the fakes move while the critic trains, so the landscape
# keeps changing; how often a GAN's critic is caught like this, we have not measured.
#
# ## 3. R1: a penalty at the data
#
# Mescheder et al. (2018) asked a sharper question: near the equilibrium, where G already
# matches the data, does gradient descent *stay* there? Their smallest example, the
# **Dirac GAN**, shows that it need not. The data is a point mass at 0; the generator is a single number
# $\theta$ (its only "sample"); the discriminator is linear, $D(x) = \psi x$ (a logit).
# With the non-saturating loss, the two gradient steps are
#
# $$
# \psi \leftarrow \psi - h\, \sigma(\psi\theta)\, \theta, \qquad
# \theta \leftarrow \theta + h\, \sigma(-\psi\theta)\, \psi .
# $$
#
# The equilibrium is $\theta = \psi = 0$, but near it the update is a rotation: D tilts
# to push G towards the data, G overshoots, D tilts the other way. The **R1 penalty**
# pulls D's gradient towards 0 *on the real data*:
#
# $$
# R_1 = \frac{\gamma}{2}\, \mathbb{E}_{x \sim p_\text{data}} \|\nabla_x D(x)\|^2 ,
# $$
#
# the gradient penalty of section 2 with center 0 (no square root needed) evaluated at
# the real batch only. At the equilibrium the data is all D sees, and a flat D there has
# no slope left to push G away. Here $\nabla_x D = \psi$, so R1 adds $\gamma \psi$ to D's
# gradient. `R1(gamma)` computes it through the same double backward:

# %%
gamma, psi = 0.3, 0.8
D_lin = Dense(1, 1, dtype="float64")
D_lin.params["W"][...] = psi
D_lin.zero_grad()
R1(gamma)(D_lin, np.zeros((1, 1)))        # one real sample, at 0
print(f"R1's gradient on psi: {D_lin.grads['W'][0, 0]:.3f}   gamma * psi = {gamma * psi:.3f}")


# %%
def dirac_gan(gamma, steps=1500, h=0.1, theta=1.0, psi=1.0):
    """Alternating gradient steps on the Dirac GAN; R1 with weight gamma. Returns the path."""
    loss, path = NonSaturating(), [(theta, psi)]
    for _ in range(steps):
        _, d_real, d_fake = loss.discriminator(np.array([[0.0]]), np.array([[psi * theta]]))
        psi -= h * (d_real[0, 0] * 0.0 + d_fake[0, 0] * theta + gamma * psi)  # d logit / d psi = x
        _, d_fake = loss.generator(np.array([[psi * theta]]))
        theta -= h * d_fake[0, 0] * psi                                       # d logit / d theta = psi
        path.append((theta, psi))
    return np.array(path)


fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
for gamma_, colour in ((0.0, "tab:red"), (0.3, "tab:orange"), (1.0, "tab:blue")):
    path = dirac_gan(gamma_)
    label = "no regulariser" if gamma_ == 0 else f"R1, $\\gamma$ = {gamma_:g}"
    axes[0].plot(path[:, 0], path[:, 1], color=colour, lw=1, label=label)
    axes[1].plot(np.hypot(path[:, 0], path[:, 1]), color=colour, label=label)
axes[0].plot([1.0], [1.0], "ko")
axes[0].plot([0.0], [0.0], "k*", ms=12)
axes[0].set_xlabel(r"generator $\theta$")
axes[0].set_ylabel(r"discriminator $\psi$")
axes[0].set_title("paths from (1, 1) (dot) to the equilibrium (star)")
axes[0].legend(fontsize=8)
axes[1].set_yscale("log")
axes[1].set_xlabel("step")
axes[1].set_ylabel(r"distance to the equilibrium $\sqrt{\theta^2 + \psi^2}$")
axes[1].set_title("how fast each one gets there")
axes[1].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# Without a regulariser (red) the pair spirals around the equilibrium, and after 1500
# steps it is still circling at a distance of about 0.2, ever more slowly. With R1 it
# spirals in and converges geometrically, faster for the larger $\gamma$. R1 does not
# constrain D's slope *between* real and fake data, as WGAN-GP does; it only forbids a
# slope *on* the data. It is the penalty of StyleGAN, with the ordinary non-saturating
# loss.
#
# ## 4. Spectral normalisation
#
# ### 4.1 The Lipschitz constant of a layer
#
# A dense layer $x \mapsto xW + b$ stretches a difference $x - y$ by at most the largest
# singular value of $W$, $\sigma(W) = \max_{v \ne 0} \|vW\| / \|v\|$; ReLU, LeakyReLU
# (slope $\le 1$) and tanh are 1-Lipschitz. A composition's constant is at most the product
# of the parts', so
#
# $$
# \|D\|_L \le \prod_{\text{layers } k} \sigma(W_k), \qquad\text{and with } W_k / \sigma(W_k)
# \text{ in place of every } W_k:\quad \|D\|_L \le 1 .
# $$
#
# This is **spectral normalisation** (Miyato et al. 2018): a hard constraint, at the cost
# of computing $\sigma(W)$, with no penalty term and no second backward pass.
#
# ### 4.2 Power iteration
#
# An SVD per layer per step would be expensive. The top singular value is found by
# **power iteration**: for $W$ of shape (in, out), start from a unit $u \in
# \mathbb{R}^\text{out}$ and repeat
#
# $$
# v \leftarrow \frac{W u}{\|W u\|} \in \mathbb{R}^\text{in}, \qquad
# u \leftarrow \frac{W^\top v}{\|W^\top v\|}, \qquad
# \sigma \approx v^\top W u .
# $$
#
# Each round multiplies $u$ by $W^\top W$, which stretches the top singular direction by
# $\sigma_1^2$ and the next one by $\sigma_2^2$, so after $k$ rounds the part of $u$ off the
# top direction has shrunk like $(\sigma_2/\sigma_1)^{2k}$. The estimate $v^\top W u$ is
# off by the *square* of that part (it is a maximum, flat at the top), so its relative
# error shrinks like $(\sigma_2/\sigma_1)^{4k}$.
#
# minigan's `SpectralNorm(Dense(...))` holds the wrapped layer's raw weight $W$ (the one
# the optimiser trains) and two buffers, `u` and `v`. Its estimate is
# `layer.sigma` $= v^\top W u$. In training mode, each forward (and each call of
# `layer.normalized_weight()`, which returns $W/\sigma$) first runs one round on the
# buffers. When it is built, it runs 15 rounds. Let's restart `u` at random and watch the
# rounds converge on a 64 $\times$ 64 weight, the size of a hidden layer of the critics below.

# %%
layer = SpectralNorm(Dense(64, 64, rng=7), rng=8)
W = layer.layer.params["W"]                   # (in, out): the raw weight
sv = np.linalg.svd(W, compute_uv=False)       # the exact singular values, for reference
print(f"sigma after the 15 starting rounds: estimate {float(layer.sigma):.5f}, SVD {sv[0]:.5f};"
      f"  sigma_2 / sigma_1 = {sv[1] / sv[0]:.3f}")


def restart(layer, seed):
    """A random unit vector in the layer's u buffer: forget what the rounds have learned."""
    u = np.random.default_rng(seed).standard_normal(layer.buffers["u"].shape)
    layer.buffers["u"][...] = u / np.linalg.norm(u)


restart(layer, 0)
errors = []
for k in range(60):
    layer.normalized_weight()                 # training mode: one round on u and v
    errors.append(abs(float(layer.sigma) - sv[0]) / sv[0])
W_sn, _ = layer.normalized_weight()
print(f"after 60 more rounds: estimate {float(layer.sigma):.5f};  "
      f"largest singular value of W / sigma: {np.linalg.svd(W_sn, compute_uv=False)[0]:.5f}")

# %% [markdown]
# From a random start one round is far from enough. But during training $W$ moves a
# little per step, so the $u$ of the last step is already almost the top singular
# vector of this step's $W$. That is why the buffer is **persistent** (kept between steps
# and saved with the model), and one round per training step suffices. To see it, let
# $W$ drift the way an optimiser moves it, a small random step at a time, and compare one
# round per step from the kept $u$ with one round from a fresh random $u$.

# %%
drift = np.random.default_rng(6)
kept, fresh = [], []
for step in range(300):
    W += 2e-3 * drift.standard_normal(W.shape)            # an optimiser step, roughly
    top = np.linalg.svd(W, compute_uv=False)[0]
    layer.normalized_weight()                             # one round from the kept u
    kept.append(abs(float(layer.sigma) - top) / top)
    saved = layer.buffers["u"].copy()
    restart(layer, 1000 + step)                           # one round from a fresh u ...
    layer.normalized_weight()
    fresh.append(abs(float(layer.sigma) - top) / top)
    layer.buffers["u"][...] = saved                       # ... then back to the kept one

fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
k = np.arange(1, 61)
axes[0].semilogy(k, errors, "o-", ms=3, label="power iteration")
axes[0].semilogy(k, errors[9] * (sv[1] / sv[0]) ** (4 * (k - 10)), "k:", label=r"slope $(\sigma_2/\sigma_1)^{4k}$")
axes[0].set_xlabel("rounds k")
axes[0].set_ylabel(r"relative error of $\sigma$")
axes[0].set_title("a fixed W, from a random u")
axes[0].legend()
axes[1].semilogy(fresh, color="tab:red", label="one round from a fresh random u")
axes[1].semilogy(kept, color="tab:blue", label="one round from the kept u")
axes[1].set_xlabel("training step (W drifts a little each step)")
axes[1].set_ylabel(r"relative error of $\sigma$")
axes[1].set_title("a drifting W, one round per step")
axes[1].legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# Left: after the first few rounds the error falls at the predicted rate (dotted), and
# slowly, because for a random matrix $\sigma_2$ is close to $\sigma_1$ (0.958 of it
# here): 60 rounds to reach $10^{-6}$. Right: one round from a fresh $u$ is off by about
# 30% at every step, while from the kept $u$ the error stays around $10^{-4}$: the rounds
# of all the earlier steps add up, and the estimate follows the $\sigma$ of a moving matrix.
# (Power iteration never overestimates: $|v^\top W u| \le \sigma$ for unit $u$ and $v$.)
#
# The layer's backward treats $u$ and $v$ as constants (as PyTorch does); the quotient
# rule gives $\partial L/\partial W = (G - \langle G, W_\text{sn}\rangle\, v u^\top)/\sigma$
# for $G = \partial L / \partial W_\text{sn}$, derived in the docstring of `minigan.spectral`.
#
# How tight is the bound $\|D\|_L \le 1$ for a whole critic? We measure the input
# gradient of a 2-64-64-1 ReLU critic at many random points (its backward with upstream
# ones, as in section 2), with and without spectral norm on every layer.

# %%
def input_gradient_norms(D, x):
    out = D.forward(x)
    g = D.backward(np.ones_like(out), param_grads=False)     # dD(x_i)/dx_i, one row each
    D.clear_cache()
    return np.linalg.norm(g, axis=1)


plain_critic = mlp([2, 64, 64, 1], activation="relu", rng=9)
sn_critic = Sequential(*[SpectralNorm(layer, rng=10) if isinstance(layer, Dense) else layer
                         for layer in mlp([2, 64, 64, 1], activation="relu", rng=9).layers])
points = np.random.default_rng(11).uniform(-4, 4, (5000, 2)).astype(np.float32)
bound = np.prod([np.linalg.svd(l.params["W"], compute_uv=False)[0]
                 for l in plain_critic.layers if isinstance(l, Dense)])
for name, D in (("plain", plain_critic), ("spectral norm", sn_critic)):
    norms = input_gradient_norms(D, points)
    print(f"{name:<14} ||grad D||: median {np.median(norms):.3f}, max {norms.max():.3f}")
print(f"product of the plain critic's sigmas (its bound): {bound:.3f}")

# %% [markdown]
# The spectrally normalised critic's gradient never exceeds 1, and is typically far below
# it: the product bound assumes that every layer stretches the same direction maximally,
# which a random network rarely does. Training raises the slopes where the critic needs
# them; the bound only caps them. (The spectrally normalised critic of section 5 sees the
# data divided by 4, like every critic there, so its cap is $\tfrac14$ in the data's
# units: the scale of the data is part of what "1-Lipschitz" means.)
#
# ### 4.3 The hinge loss
#
# Spectral norm is usually paired with the **hinge loss** (Lim and Ye 2017; SAGAN, BigGAN):
#
# $$
# L_D = \frac1n \sum_i \max(0,\, 1 - o_i^\text{real}) + \frac1n \sum_j \max(0,\, 1 + o_j^\text{fake}),
# \qquad L_G = -\frac1n \sum_j o_j^\text{fake} .
# $$
#
# D wants real scores above $+1$ and fake scores below $-1$, and stops caring beyond those
# margins: a sample already past its margin gives D no gradient. G's loss is the
# Wasserstein one. In minigan it is `Hinge()`.
#
# ## 5. A stability map on grid25
#
# Now the question the chapter is about: what does each fix buy on a hard problem?
# grid25 (chapter 8 used its little brother, ring8) has 25 Gaussians of std 0.05 on a
# $5 \times 5$ grid in $[-4, 4]^2$. Without packing, the plain GAN of the literature
# captures 17.3 of the 25 modes on average (as reported in the PacGAN paper). We train four methods,
# all **without packing**, with the same networks and the same optimiser, and change
# only the loss and the discriminator's regulariser:
#
# | method | loss | D | D steps per G step |
# |---|---|---|---|
# | non-saturating (baseline) | `NonSaturating()` | plain | 1 |
# | WGAN-GP | `Wasserstein()` | plain, `regularizer=GradientPenalty(10)` | 5 |
# | hinge + SN | `Hinge()` | every `Dense` wrapped in `SpectralNorm` | 1 |
# | R1 | `NonSaturating()` | plain, `regularizer=R1(gamma=10)` | 1 |
#
# The networks are those of minigan's grid25 preset (`minigan.presets`) without its
# packing: G 8-64-64-64-2 and D 2-64-64-1 with ReLUs, G's output multiplied by 4 and D's
# input divided by 4 (`Scale`), so that both work on $[-1, 1]^2$. For all four: Adam with
# $\beta = (0, 0.9)$ (WGAN-GP's Algorithm 1, and SAGAN's), batches of 256, the learning
# rate held for the first half of the run and then decayed linearly to 1% of itself, and
# samples from an `EMA(G, 0.999)`. WGAN-GP takes 5 critic steps per generator step, as in
# its paper, so each of its steps costs several times as much. Each run is scored with the protocol of chapter 8 (2500 samples), and we
# call it a **success** when it captures all 25 modes with at least 75% high-quality
# samples. (The bar is lower than the 90% of the long runs of the literature: these runs
# are 5000 steps, short enough for a map of 24 of them to fit in a few minutes.)

# %%
data = grid25()
LATENT, WIDTH, BATCH = 8, 64, 256
METHODS = {
    "non-saturating": dict(loss=NonSaturating, regularizer=None, d_steps=1),
    "WGAN-GP": dict(loss=Wasserstein, regularizer=lambda seed: GradientPenalty(10.0, rng=seed), d_steps=5),
    "hinge + SN": dict(loss=Hinge, regularizer=None, d_steps=1, spectral=True),
    "R1": dict(loss=NonSaturating, regularizer=lambda seed: R1(10.0), d_steps=1),
}
LRS = [1e-3, 5e-3] if QUICK else [1e-3, 3e-3, 1e-2]
SEEDS = [0] if QUICK else [0, 1]


def make_gan(method, lr, seed):
    """G, D and their optimisers for one cell of the map."""
    spec = METHODS[method]
    weights = np.random.default_rng(seed)
    G = Sequential(*mlp([LATENT, WIDTH, WIDTH, WIDTH, 2], activation="relu", rng=weights).layers,
                   Scale(4.0))
    D_layers = mlp([2, WIDTH, WIDTH, 1], activation="relu", rng=weights).layers
    if spec.get("spectral"):
        D_layers = [SpectralNorm(l, rng=weights) if isinstance(l, Dense) else l for l in D_layers]
    D = Sequential(Scale(0.25), *D_layers)
    regularizer = spec["regularizer"](seed) if spec["regularizer"] else None
    return GAN(G, D, LATENT, Adam(G.parameters(), lr=lr, betas=(0.0, 0.9)),
               Adam(D.parameters(), lr=lr, betas=(0.0, 0.9)), loss=spec["loss"](),
               d_steps=spec["d_steps"], regularizer=regularizer,
               rng=np.random.default_rng(1000 + seed), ema=EMA(G, 0.999))


def real_batches(d_steps, seed):
    """Fresh grid25 samples: one batch per D step (a list of d_steps batches when d_steps > 1)."""
    rng = np.random.default_rng(500 + seed)
    while True:
        batches = [data.sample(BATCH, rng=rng) for _ in range(d_steps)]
        yield batches if d_steps > 1 else batches[0]


def schedule(step, steps=MAP_STEPS):
    """1 for the first half of the run, then linear decay to 0.01."""
    half = steps // 2
    return 1.0 if step < half else max(0.01, 1.0 - (step - half) / (steps - half))


start = time.perf_counter()
gan = make_gan("R1", 1e-3, 0)
fit(gan, real_batches(1, 0), 20)
print(f"one R1 step: {(time.perf_counter() - start) / 20 * 1e3:.1f} ms;  the GAN: {gan}")

# %% [markdown]
# The whole map: every method at every learning rate with every seed. (In full mode
# about five minutes of CPU time, more wall time on a busy machine; the loop prints each
# run as it finishes.)

# %%
runs, cpu_seconds = {}, {}
start_all, cpu_all = time.perf_counter(), time.process_time()
for method in METHODS:
    for lr in LRS:
        for seed in SEEDS:
            start, cpu = time.perf_counter(), time.process_time()
            gan = make_gan(method, lr, seed)
            fit(gan, real_batches(gan.d_steps, seed), MAP_STEPS, schedule=schedule)
            cpu_seconds[method] = cpu_seconds.get(method, 0.0) + time.process_time() - cpu
            m = metrics.mode_coverage(gan.sample(2500, rng=0), data.centres, data.std)
            runs[method, lr, seed] = (gan, m)
            print(f"{method:<15} lr {lr:<6g} seed {seed}: {m['modes_captured']:2d}/25 modes, "
                  f"{m['high_quality_fraction']:6.1%} HQ, reverse KL {m['reverse_kl']:.3f}  "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
print(f"the map took {time.perf_counter() - start_all:.0f} s ({time.process_time() - cpu_all:.0f} s of CPU time)")


# %%
def map_of(key):
    """(methods, learning rates) array of the seed-mean of one mode_coverage number."""
    return np.array([[np.mean([runs[method, lr, seed][1][key] for seed in SEEDS]) for lr in LRS]
                     for method in METHODS])


panels = [("modes_captured", "modes captured (of 25)", "viridis", 0, 25, "{:.1f}"),
          ("high_quality_fraction", "high-quality fraction", "viridis", 0, 1, "{:.0%}"),
          ("reverse_kl", "reverse KL to uniform (0 is balanced)", "viridis_r", 0, 1, "{:.2f}")]
fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
for ax, (key, title, cmap, lo, hi, fmt) in zip(axes, panels):
    values = map_of(key)
    image = ax.imshow(values, cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
    for (i, j), value in np.ndenumerate(values):
        r, g, b, _ = image.cmap(image.norm(value))
        ax.text(j, i, fmt.format(value), ha="center", va="center", fontsize=10,
                color="black" if 0.3 * r + 0.6 * g + 0.1 * b > 0.5 else "white")
    ax.set_xticks(range(len(LRS)), [f"{lr:g}" for lr in LRS])
    ax.set_yticks(range(len(METHODS)), list(METHODS))
    ax.set_xlabel("learning rate (G and D)")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046)
fig.suptitle(f"grid25 without packing, {MAP_STEPS} generator steps, mean over seeds {SEEDS}", y=1.03)
fig.tight_layout()
plt.show()

print("CPU seconds per run:", {m: round(s / (len(LRS) * len(SEEDS)), 1) for m, s in cpu_seconds.items()})
success = {method: sum(runs[method, lr, seed][1]["modes_captured"] == 25
                       and runs[method, lr, seed][1]["high_quality_fraction"] >= 0.75
                       for lr in LRS for seed in SEEDS) for method in METHODS}
print(f"runs with 25/25 modes and >= 75% HQ (of {len(LRS) * len(SEEDS)}):", success)

# %% [markdown]
# **What the full map shows** (two seeds per cell, 5000 generator steps; the quick
# mode's map above means nothing; another BLAS may change a run or two):
#
# * **The baseline never gets there.** The non-saturating GAN reaches 22 to 25 modes at
#   the two smaller learning rates, but with at most 69% high-quality samples and
#   unevenly shared modes (reverse KL 0.24 to 0.65). At 0.01 it collapses: 9 and 13 modes,
#   one of them with 96% high-quality samples, precise and few. None of its six runs is a
#   success.
# * **R1 works at every learning rate.** All six runs capture 25/25 modes. At 0.003 and
#   0.01 they have 77 to 86% high-quality samples and evenly shared modes (reverse KL at
#   most 0.06); at 0.001, 5000 steps are too few to sharpen the modes (16 and 20%). Four
#   of six runs are successes, the most of the map.
# * **Hinge + spectral norm and WGAN-GP have a sweet spot.** At 0.003 both succeed on both
#   seeds: hinge + SN with the most precise and most even samples of the map (87% HQ,
#   reverse KL 0.01), WGAN-GP with 86% HQ but less even shares (reverse KL 0.10 and 0.25).
#   On either side they lose ground. At 0.001 hinge + SN finds only 7 or 8 modes, and
#   WGAN-GP 24 with under half of its samples precise; at 0.01 hinge + SN keeps 20 and 25
#   modes at half the precision, and one WGAN-GP run falls apart (16 modes, 3% HQ).
# * **The cost differs.** WGAN-GP's 5 critic steps, each with a double backward, make its
#   runs about four times slower than the others (the CPU seconds per run above: 28 s
#   against 7 to 8 s in our run). R1 adds one double backward per step, at the real batch
#   only, and spectral norm one round of power iteration per layer: both cost little here.
#   On a convolutional D it costs more: on every step it makes the DCGAN's training step
#   a third longer (`benchmarks/lazy_r1.py`), so the
#   DCGAN of chapter 12 pays R1 *lazily* (Karras et al. 2020): `R1(gamma, every=16)`
#   penalises one D step in 16 with 16 times the weight: the same gradient summed over
#   16 steps (the same push on average for SGD; Adam, which divides each step by the
#   gradient's running size, feels the spikes less, so gamma is tuned with the period),
#   for a sixteenth of the penalty's cost.
#
# So the fixes buy different things: R1 buys *range*, a learning rate that need not be
# tuned; hinge + spectral norm buys the best samples when the rate is right; WGAN-GP
# buys about the same at about four times the cost. The optimiser matters as much as any
# of them: in trial runs with DCGAN's Adam $\beta_1 = 0.5$ instead of 0, the baseline at
# 0.001 collapsed onto 1 or 2 modes on both seeds. And none of these 5000-step runs
# matches packing (chapter 8): the library's grid25 preset, which packs pairs, captures
# 25/25 modes on each of 10 seeds with 97.5% high-quality samples on average, in 30,000
# steps (`benchmarks/RESULTS.md`).
#
# ## 6. The samples side by side
#
# The seed-0 runs at the two largest learning rates of the map, one panel per method
# (black: real samples; green: 1000 samples of G's moving average; orange crosses: the 25
# centres):

# %%
LRS_SHOWN = LRS[-2:]
fig, axes = plt.subplots(len(LRS_SHOWN), len(METHODS), figsize=(4.3 * len(METHODS), 4.7 * len(LRS_SHOWN)),
                         squeeze=False)
real_shown = data.sample(1000, rng=3)
for row, lr in zip(axes, LRS_SHOWN):
    for ax, method in zip(row, METHODS):
        gan, m = runs[method, lr, 0]
        plot.plot_2d(real_shown, gan.sample(1000, rng=1), centres=data.centres, ax=ax, lim=5.0,
                     title=f"{method}, lr {lr:g}: {m['modes_captured']}/25, "
                           f"{m['high_quality_fraction']:.0%} HQ")
        if ax is not axes[0, 0]:
            ax.get_legend().remove()
fig.suptitle("grid25 without packing, seed 0", y=1.01)
fig.tight_layout()
plt.show()

# %% [markdown]
# At 0.003 (top row) every method but the baseline covers the grid, and what the
# high-quality fraction misses are *bridges*, not blurry modes: samples strung along the
# grid lines between neighbouring modes, where G's continuous map from the noise has to
# tear (chapter 8). The baseline's misses are longer streaks, on the left of the grid. At 0.01 (bottom row) the baseline has collapsed onto 9 modes,
# which it hits precisely; WGAN-GP and hinge + spectral norm keep most modes, with more
# samples astray along and between the grid lines; R1 still puts its samples on all 25.
#
# ## Summary
#
# * The Wasserstein critic estimates $W_1$ through the Kantorovich-Rubinstein dual, a
#   supremum over **1-Lipschitz** functions. Its losses are means of raw scores, with
#   constant gradients $\pm 1/n$ that never saturate (`Wasserstein()`).
# * **Weight clipping** makes the critic $K$-Lipschitz for a $K$ that scales like $c^L$:
#   the weights pile up at $\pm c$ and the estimate is off by that unknown factor.
# * The **gradient penalty** asks for $\|\nabla_x D\| = 1$ at random interpolates. Its
#   weight gradient needs a second pass through the critic, with $\phi''$ for smooth
#   activations; we derived it for one hidden layer and checked minigan's
#   `input_gradient_penalty` against central differences. The norm's gradient at
#   $g = 0$ is $0/0$: minigan adds `NORM_EPS` under the square root. The penalty is a
#   soft constraint: it shapes the critic's loss landscape, traps included.
# * **R1** penalises $\frac{\gamma}{2}\|\nabla_x D\|^2$ at the real data only, and turns the
#   Dirac GAN's slow circling into geometric convergence.
# * **Spectral normalisation** divides each weight by its top singular value, found by
#   one round of power iteration per step from a persistent $u$; the critic is then at
#   most 1-Lipschitz in its input's units.
# * On grid25 without packing: R1 captured all 25 modes in every run, at
#   every learning rate; hinge + spectral norm and WGAN-GP matched it only near their best
#   learning rate, with the most precise samples there (hinge + SN); the plain GAN never
#   met the bar (25/25 modes, at least 75% high-quality samples), and collapsed at the
#   largest rate. WGAN-GP costs about four times as much per run.
#
# ## Exercises

# %% [markdown]
# **Exercise T13.1 — the Wasserstein losses and their gradients.** Write
# `wasserstein_losses(real_out, fake_out)` for critic scores of shape `(n, 1)` and
# `(m, 1)` (the two batches may differ in size), returning
# `(d_loss, d_real, d_fake, g_loss, g_fake)`: the critic's loss and its gradients with
# respect to the two score arrays, and the generator's loss on the fakes and its
# gradient, as in section 1.1. The check compares with `Wasserstein()` and with central
# differences.

# %%
def wasserstein_losses(real_out, fake_out):
    """(L_D, dL_D/dreal_out, dL_D/dfake_out, L_G, dL_G/dfake_out) of the Wasserstein GAN."""
    # BEGIN SOLUTION Exercise T13.1: the Wasserstein critic's and generator's losses and their gradients
    n, m = real_out.shape[0], fake_out.shape[0]
    d_loss = fake_out.mean() - real_out.mean()
    d_real = np.full_like(real_out, -1.0 / n)
    d_fake = np.full_like(fake_out, 1.0 / m)
    g_loss = -fake_out.mean()
    g_fake = np.full_like(fake_out, -1.0 / m)
    return d_loss, d_real, d_fake, g_loss, g_fake
    # END SOLUTION


# %%
check_rng = np.random.default_rng(13)
real_o, fake_o = check_rng.standard_normal((5, 1)), check_rng.standard_normal((7, 1))
mine = wasserstein_losses(real_o, fake_o)
ref_d = Wasserstein().discriminator(real_o, fake_o)
ref_g = Wasserstein().generator(fake_o)
for name, got, want in zip(("d_loss", "d_real", "d_fake", "g_loss", "g_fake"), mine, (*ref_d, *ref_g)):
    assert np.shape(got) == np.shape(want), f"{name}: shape {np.shape(got)}, expected {np.shape(want)}"
    assert np.allclose(got, want), f"{name}: {np.ravel(got)[:3]} ..., expected {np.ravel(want)[:3]} ..."
h = 1e-6
for which, arr in ((1, real_o), (2, fake_o)):                 # d_loss by central differences
    bumped = arr.copy()
    bumped[0, 0] += h
    plus = wasserstein_losses(*((bumped, fake_o) if which == 1 else (real_o, bumped)))[0]
    bumped[0, 0] -= 2 * h
    minus = wasserstein_losses(*((bumped, fake_o) if which == 1 else (real_o, bumped)))[0]
    assert abs((plus - minus) / (2 * h) - mine[which][0, 0]) < 1e-6
print("T13.1 ok")


# %% [markdown]
# **Exercise T13.2 — one round of power iteration.** Write `power_iteration_step(W, u)`
# for a weight `W` of shape (in, out) and a unit vector `u` of shape (out,): one round of
# section 4.2, returning `(u_new, v_new, sigma)` with $\sigma = v_\text{new}^\top W u_\text{new}$.
# The check compares one round with `SpectralNorm`'s own (a layer in training mode runs
# one round per forward, from its buffer `u`), and 300 rounds with the SVD.

# %%
def power_iteration_step(W, u):
    """One round: v = normalize(W u), u = normalize(W^T v); sigma = v^T W u."""
    # BEGIN SOLUTION Exercise T13.2: one round of power iteration and the estimate of sigma
    v = W @ u
    v = v / np.linalg.norm(v)
    u_new = W.T @ v
    u_new = u_new / np.linalg.norm(u_new)
    return u_new, v, float(v @ W @ u_new)
    # END SOLUTION


# %%
sn = SpectralNorm(Dense(6, 4, dtype="float64", rng=14), rng=15)
W_check = sn.layer.params["W"]
u0 = np.random.default_rng(16).standard_normal(4)
u0 /= np.linalg.norm(u0)
sn.buffers["u"][...] = u0
_, (_, sigma_lib, u_lib, v_lib) = sn.normalized_weight()   # training mode: one round from u0
u1, v1, sigma1 = power_iteration_step(W_check, u0)
assert np.allclose(u1, u_lib) and np.allclose(v1, v_lib), "u or v differs from SpectralNorm's round"
assert np.isclose(sigma1, float(sigma_lib)), f"sigma {sigma1}, SpectralNorm's {float(sigma_lib)}"
u_k = u0
for _ in range(300):
    u_k, _, sigma_k = power_iteration_step(W_check, u_k)
assert np.isclose(sigma_k, np.linalg.svd(W_check, compute_uv=False)[0], rtol=1e-8)
print(f"sigma after 300 rounds {sigma_k:.6f}, SVD {np.linalg.svd(W_check, compute_uv=False)[0]:.6f}")
print("T13.2 ok")


# %% [markdown]
# **Exercise T13.3 — the gradient penalty's gradient, by hand.** For the one-hidden-layer
# tanh critic of section 2.2, $D(x) = w_2^\top \tanh(W_1 x + b_1) + c$, write
# `gp_grads_tanh(x, W1, b1, w2, c, weight, second_order=True)` in NumPy: `x` is `(n, d)`,
# `W1` is `(H, d)` (the math layout), `b1` and `w2` are `(H,)`, `c` a number. Return
# `(P, dW1, db1, dw2, dc)` with $P = \lambda \frac1n \sum_i (\|g_i\| - 1)^2$ and the boxed
# formulas. With `second_order=False`, leave out the $r$ terms, the mistake of a double
# backward that forgets $\phi''$. The check compares with minigan's
# `input_gradient_penalty` and with central differences of your own $P$, then shows how
# wrong the gradients are without $\phi''$.

# %%
def gp_grads_tanh(x, W1, b1, w2, c, weight, second_order=True):
    """P = weight * mean_i (||dD/dx_i|| - 1)^2 for D(x) = w2 . tanh(W1 x + b1) + c, and its
    gradients (P, dW1, db1, dw2, dc). Rows of x are samples."""
    # BEGIN SOLUTION Exercise T13.3: the gradient penalty's weight gradients for a tanh critic
    n = x.shape[0]
    h = x @ W1.T + b1                       # (n, H) pre-activations
    t = np.tanh(h)
    d1 = 1.0 - t * t                        # phi'(h)
    d2 = -2.0 * t * d1                      # phi''(h)
    s = d1 * w2                             # (n, H)
    g = s @ W1                              # (n, d): g_i = W1^T s_i
    norm = np.sqrt((g * g).sum(axis=1, keepdims=True))
    P = weight * np.mean((norm - 1.0) ** 2)
    u = (2.0 * weight / n) * (norm - 1.0) * g / norm     # dP/dg, (n, d)
    v = u @ W1.T                            # (n, H): v_i = W1 u_i
    r = v * w2 * d2 if second_order else np.zeros_like(v)
    dW1 = s.T @ u + r.T @ x                 # sum_i s_i u_i^T + r_i x_i^T, (H, d)
    db1 = r.sum(axis=0)
    dw2 = (v * d1).sum(axis=0)
    return float(P), dW1, db1, dw2, 0.0
    # END SOLUTION


# %%
check_rng = np.random.default_rng(17)
n_, d_, H_ = 5, 3, 4
x_c = check_rng.standard_normal((n_, d_))
critic = mlp([d_, H_, 1], activation="tanh", dtype="float64", rng=18)
critic[2].params["b"][...] = 0.3
W1_c, b1_c = critic[0].params["W"].T.copy(), critic[0].params["b"].copy()   # Dense stores W1^T
w2_c, c_c = critic[2].params["W"][:, 0].copy(), float(critic[2].params["b"][0])
critic.zero_grad()
P_lib = float(input_gradient_penalty(critic, x_c, weight=10.0, center=1.0))
P, dW1, db1, dw2, dc = gp_grads_tanh(x_c, W1_c, b1_c, w2_c, c_c, 10.0)
assert np.isclose(P, P_lib), f"P = {P}, minigan's {P_lib}"
for name, got, want in (("dW1", dW1, critic[0].grads["W"].T), ("db1", db1, critic[0].grads["b"]),
                        ("dw2", dw2, critic[2].grads["W"][:, 0]), ("dc", dc, critic[2].grads["b"][0])):
    assert np.shape(got) == np.shape(want), f"{name}: shape {np.shape(got)}, expected {np.shape(want)}"
    assert np.allclose(got, want, rtol=1e-7, atol=1e-10), f"{name} differs from minigan's"
params = {"W1": W1_c, "b1": b1_c, "w2": w2_c}
analytic = {"W1": dW1, "b1": db1, "w2": dw2}
for name, p in params.items():                  # central differences of your own P
    numeric = np.zeros_like(p)
    for idx in np.ndindex(p.shape):
        keep = p[idx]
        p[idx] = keep + 1e-6
        plus = gp_grads_tanh(x_c, W1_c, b1_c, w2_c, c_c, 10.0)[0]
        p[idx] = keep - 1e-6
        minus = gp_grads_tanh(x_c, W1_c, b1_c, w2_c, c_c, 10.0)[0]
        p[idx] = keep
        numeric[idx] = (plus - minus) / 2e-6
    assert np.allclose(analytic[name], numeric, rtol=1e-5, atol=1e-7), f"d{name} fails the numerical check"
_, dW1_first, db1_first, _, _ = gp_grads_tanh(x_c, W1_c, b1_c, w2_c, c_c, 10.0, second_order=False)
err = np.linalg.norm(dW1_first - dW1) / np.linalg.norm(dW1)
print(f"without phi'': dW1 off by {err:.0%} (relative), db1 = {db1_first} instead of {np.round(db1, 4)}")
assert err > 1e-3
print("T13.3 ok")
