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
#     chapter: 5
#     needs_mnist: false
# ---

# %% [markdown]
# # Chapter 5 — The discriminator: real or fake, and which way is "more real"
#
# A GAN has two players. This chapter is about the first one, the **discriminator**
# $D$, on its own. We freeze a bad generator, so that the fakes do not change, and
# train $D$ to tell them from real data. That is ordinary binary classification, with
# everything from chapters 1 to 4. Then we ask $D$ a question no ordinary classifier is
# asked: *in which direction should this sample move to look more real?* The answer,
# the gradient of $D$'s verdict with respect to its **input**, is the only thing the
# generator will ever learn from.
#
# **What you will learn**
#
# 1. The discriminator's loss, $-\mathbb{E}_\text{real}\log D(x) -
#    \mathbb{E}_\text{fake}\log(1 - D(x))$, as binary cross-entropy on logits.
# 2. What a perfectly trained discriminator computes, $D^*(x) = p_\text{data}(x) /
#    (p_\text{data}(x) + p_g(x))$, and how close a small network gets to it.
# 3. How to get $\partial(\text{loss})/\partial x$ out of $D$ with
#    `backward(dout, param_grads=False)`, leaving $D$'s own gradients alone, and how to
#    check it numerically.
# 4. What that gradient field looks like in 2-D, drawn as arrows.

# %%
import os

QUICK = os.environ.get("MINIGAN_QUICK", "0") not in ("", "0")  # the test suite sets MINIGAN_QUICK=1

import copy

import matplotlib.pyplot as plt
import numpy as np

import minigan as mg
from minigan import functional as F
from minigan.data import gaussian1d, ring8
from minigan.gan import GAN
from minigan.gradcheck import numerical_gradient, rel_error
from minigan.plot import D_CMAP, D_COLOUR, FAKE_COLOUR, REAL_COLOUR  # the colours of every minigan figure

mg.seed(0)
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. Real data and a frozen, bad generator
#
# The real data is `ring8`: eight tight Gaussian blobs (std 0.01) evenly spaced on the
# unit circle. The generator maps noise $z \sim \mathcal{N}(0, I)$ to samples. A
# generator is just a network, and the simplest network is one dense layer,
# $G(z) = zW + b$. We set its weights by hand to $W = 0.9\,I$, $b = (0.3, -0.2)$, which
# makes the fakes a round Gaussian cloud of std 0.9, a little off centre: a generator
# that has learned nothing yet. It stays frozen for the whole chapter.

# %%
data = ring8()
G = mg.Dense(2, 2, rng=0)
G.params["W"][...] = 0.9 * np.eye(2, dtype=np.float32)
G.params["b"][...] = [0.3, -0.2]


def fake_batch(n, rng):
    z = rng.standard_normal((n, 2)).astype(np.float32)
    x = G(z)
    G.clear_cache()           # G is frozen: no backward will follow
    return x


real_show, fake_show = data.sample(1000, rng=1), fake_batch(1000, np.random.default_rng(2))
fig, ax = plt.subplots(figsize=(4.8, 4.8))
ax.scatter(*fake_show.T, s=4, c=FAKE_COLOUR, alpha=0.6, label="fake: G(z), z ~ N(0, I)")
ax.scatter(*real_show.T, s=4, c=REAL_COLOUR, label="real: ring8")
ax.set_aspect("equal")
ax.set_xlim(-2, 2.3)
ax.set_ylim(-2.2, 2)
ax.legend(loc="upper right", fontsize=8)
ax.set_title("the two distributions D must separate")
plt.show()


# %% [markdown]
# ## 2. The discriminator is a binary classifier
#
# $D$ takes a sample and returns a probability that it is real. Following chapter 3,
# the network itself ends in a dense layer that outputs a **logit** $l(x)$, and
# $D(x) = \sigma(l(x))$ only exists inside the loss. With real samples labelled 1 and
# fakes labelled 0, the binary cross-entropy of a batch of each is
#
# $$
# L_D = -\frac{1}{n}\sum_{i} \log D(x_i^\text{real})
#       -\frac{1}{n}\sum_{i} \log\bigl(1 - D(x_i^\text{fake})\bigr)
#     = \mathrm{BCE}(l^\text{real}, 1) + \mathrm{BCE}(l^\text{fake}, 0),
# $$
#
# the sum of two means. This is the discriminator's half of Goodfellow et al.'s
# minimax game: $D$ *maximises* $\mathbb{E}\log D(x) + \mathbb{E}\log(1 - D(G(z)))$,
# which is the same as minimising $L_D$.
#
# **What does the best possible $D$ compute?** Write the expectation as an integral
# over $x$, with $p_\text{data}$ and $p_g$ the densities of real and fake samples:
#
# $$
# \mathbb{E}_{p_\text{data}} \log D(x) + \mathbb{E}_{p_g} \log(1 - D(x))
#   = \int \bigl[\, p_\text{data}(x)\log D(x) + p_g(x)\log(1 - D(x)) \,\bigr]\, dx .
# $$
#
# $D(x)$ can be chosen separately at every $x$, and $t \mapsto a\log t + b\log(1 - t)$
# is maximised at $t = a/(a + b)$ (set its derivative $a/t - b/(1-t)$ to zero). So
#
# $$
# \boxed{\;D^*(x) = \frac{p_\text{data}(x)}{p_\text{data}(x) + p_g(x)}\;}
# $$
#
# the fraction of the probability mass at $x$ that is real. Where only real data lives,
# $D^* = 1$; where only fakes live, $0$; where both are equally dense, $\tfrac12$.
#
# Our discriminator is a small MLP with LeakyReLU(0.2) (chapter 3 explained why not
# plain ReLU) and a single logit at the end:

# %%
def make_discriminator(in_dim=2, width=128, seed=1):
    weights = np.random.default_rng(seed)
    return mg.Sequential(mg.Dense(in_dim, width, rng=weights), mg.LeakyReLU(0.2),
                         mg.Dense(width, width, rng=weights), mg.LeakyReLU(0.2),
                         mg.Dense(width, 1, rng=weights))


D = make_discriminator()
d_opt = mg.Adam(D.parameters(), lr=1e-3, betas=(0.5, 0.999))
print(D)


# %% [markdown]
# One training step, written out: one forward pass over real and fake rows together,
# the two BCE means on the two halves, one backward pass, one Adam step. We do not need
# $\partial L_D/\partial x$ here ($D$ is being trained, the samples are not), so
# `input_grad=False` skips it.

# %%
def d_step(D, opt, real, fake):
    n = len(real)
    D.zero_grad()
    logits = D.forward(np.concatenate([real, fake]))
    loss_real, dreal = F.bce_with_logits(logits[:n], np.ones((n, 1), np.float32))
    loss_fake, dfake = F.bce_with_logits(logits[n:], np.zeros((len(fake), 1), np.float32))
    D.backward(np.concatenate([dreal, dfake]), input_grad=False)
    opt.step()
    return float(loss_real + loss_fake), float(F.sigmoid(logits[:n]).mean()), float(F.sigmoid(logits[n:]).mean())


# %% [markdown]
# This is precisely what `minigan.gan.GAN.discriminator_step(real, fake)` does, and we
# can prove it: start two copies of $D$ (and of its optimiser) from the same weights,
# take one step with each on the same batches, and compare the weights bit for bit.

# %%
real, fake = data.sample(128, rng=3), fake_batch(128, np.random.default_rng(4))
D_ours = copy.deepcopy(D)
D_lib = copy.deepcopy(D)
G_copy = mg.Sequential(copy.deepcopy(G))
gan = GAN(G_copy, D_lib, latent_dim=2, g_optimizer=mg.Adam(G_copy.parameters()),
          d_optimizer=mg.Adam(D_lib.parameters(), lr=1e-3, betas=(0.5, 0.999)))
print("ours:   ", d_step(D_ours, mg.Adam(D_ours.parameters(), lr=1e-3, betas=(0.5, 0.999)), real, fake))
print("library:", gan.discriminator_step(real, fake))
same = all(np.array_equal(a, b) for a, b in zip(D_ours.state_dict().values(), D_lib.state_dict().values()))
print("weights bit-identical after one step:", same)
assert same

# %% [markdown]
# Now train the real $D$ for a while, each step on a fresh real batch and a fresh fake
# batch, and watch its average verdicts on both.

# %%
STEPS = 300 if QUICK else 2000
batch_rng = np.random.default_rng(5)
history = np.array([d_step(D, d_opt, data.sample(128, rng=batch_rng), fake_batch(128, batch_rng))
                    for _ in range(STEPS)])
print(f"after {STEPS} steps: loss {history[-50:, 0].mean():.3f}, mean D(real) "
      f"{history[-50:, 1].mean():.3f}, mean D(fake) {history[-50:, 2].mean():.3f}")

fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
axes[0].plot(history[:, 0])
axes[0].set_title("discriminator loss $L_D$")
axes[0].set_yscale("log")
axes[1].plot(history[:, 1], label="mean D(real)")
axes[1].plot(history[:, 2], label="mean D(fake)")
axes[1].set_title("average verdicts")
axes[1].legend()
for ax in axes:
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
plt.tight_layout()
plt.show()


# %% [markdown]
# The loss drops fast and the two verdicts separate: real samples get a probability
# near 1, fakes near 0. The loss does not reach zero, and cannot: a few fake samples
# land right on the ring, where no classifier can tell them from real ones.
#
# Here is what $D$ has learned, as a map of $D(x)$ over the plane:

# %%
def d_probability(D, points):
    """D(x) = sigmoid(logit) for many points, in evaluation mode, no backward."""
    D.eval()
    p = F.sigmoid(D(points))
    D.clear_cache()
    D.train()
    return p[:, 0]


lim = 1.9
gx, gy = np.meshgrid(np.linspace(-lim, lim, 241), np.linspace(-lim, lim, 241))
grid = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)
prob = d_probability(D, grid).reshape(gx.shape)

fig, ax = plt.subplots(figsize=(6, 5))
surface = ax.contourf(gx, gy, prob, levels=np.linspace(0, 1, 21), cmap=D_CMAP)
fig.colorbar(surface, label="D(x): probability that x is real")
ax.scatter(*fake_show.T, s=3, c=FAKE_COLOUR, alpha=0.5, label="fake")
ax.scatter(*real_show.T, s=3, c=REAL_COLOUR, label="real")
ax.set_aspect("equal")
ax.set_xlim(-lim, lim)
ax.set_ylim(-lim, lim)
ax.legend(loc="upper right", fontsize=8)
ax.set_title("the trained discriminator")
plt.show()

# %% [markdown]
# $D$ has carved out eight small islands around the real modes (blue) and calls
# everything else fake (red). Notice how much of the plane it is sure about: the wide
# fake cloud reaches almost every corner of this picture, so $D$ has seen fakes nearly
# everywhere. Where no sample of either kind ever comes, its verdict would be pure
# extrapolation; the 1-D example below shows what that looks like.

# %% [markdown]
# ### How close does $D$ get to $D^*$? A 1-D check
#
# In 2-D the optimum involves ring8's razor-thin modes. In 1-D we can compare $D$ with
# the formula directly. The real data is `gaussian1d`, $\mathcal{N}(4, 0.5^2)$; the
# frozen "generator" produces $\mathcal{N}(2.5, 1)$; both densities are known, so
# $D^*$ is too.

# %%
data1d = gaussian1d()


def fake_density_1d(x):
    return np.exp(-0.5 * (x - 2.5) ** 2) / np.sqrt(2 * np.pi)


D1 = make_discriminator(in_dim=1, width=64, seed=6)
opt1 = mg.Adam(D1.parameters(), lr=1e-3, betas=(0.5, 0.999))
r1 = np.random.default_rng(7)
for _ in range(400 if QUICK else 3000):
    fake1 = (2.5 + r1.standard_normal((256, 1))).astype(np.float32)
    d_step(D1, opt1, data1d.sample(256, rng=r1), fake1)

xs = np.linspace(0, 7, 500).astype(np.float32)[:, None]
p_data, p_fake = data1d.pdf(xs), fake_density_1d(xs[:, 0])
d_star = p_data / (p_data + p_fake)
d_learned = d_probability(D1, xs)
both_common = (p_data > 0.05 * p_data.max()) & (p_fake > 0.05 * p_fake.max())

fig, ax = plt.subplots(figsize=(8, 3.8))
ax.fill_between(xs[:, 0], p_data / p_data.max(), alpha=0.2, color=REAL_COLOUR, label="p_data (scaled)")
ax.fill_between(xs[:, 0], p_fake / p_data.max(), alpha=0.2, color=FAKE_COLOUR, label="p_g (same scale)")
ax.plot(xs[:, 0], d_star, "k--", lw=2, label="optimal D* = p_data / (p_data + p_g)")
ax.plot(xs[:, 0], d_learned, color=D_COLOUR, lw=2, label="trained D")
ax.set_xlabel("x")
ax.legend(fontsize=8, loc="upper left")
ax.set_title("1-D: the trained discriminator against the formula")
plt.show()
gap = np.abs(d_learned - d_star)
x_both = xs[both_common, 0]
print(f"where both kinds of samples are common (x from {x_both.min():.2f} to {x_both.max():.2f}): "
      f"largest |D - D*| = {gap[both_common].max():.3f}")
print(f"for x > 5.5 (fakes almost never seen): largest |D - D*| = {gap[xs[:, 0] > 5.5].max():.3f}")

# %% [markdown]
# Where both kinds of samples are common, the trained $D$ sits on the dashed optimum.
# Beyond $x \approx 4.5$ the formula turns down again: the fake Gaussian is wider, its
# tail eventually exceeds the real one, so far out $p_g > p_\text{data}$. But a fake
# sample beyond 5 turns up in fewer than 2% of draws, and beyond 5.5 almost never, so
# $D$ has no evidence for the downturn and simply continues the trend it learned nearby. **A discriminator only knows the regions its training samples
# visit.** Keep that in mind when reading its gradients far from the data.

# %% [markdown]
# ## 3. The gradient $D$ hands back
#
# So far we have used $D$'s backward pass for its *parameter* gradients, to train it.
# The generator needs something else. It wants its fakes to be called real, so it
# wants to **lower** the loss of labelling a fake as real (the *non-saturating*
# generator loss, which chapter 7 compares with the original minimax one):
#
# $$
# L_G = -\frac{1}{n}\sum_i \log D(x_i) = \mathrm{BCE}(l(x_i), 1),
# \qquad x_i = G(z_i).
# $$
#
# By the chain rule, and with chapter 3's gradient of BCE on logits,
#
# $$
# \frac{\partial L_G}{\partial x_i}
#   = \frac{\partial L_G}{\partial l_i}\,\frac{\partial l_i}{\partial x_i}
#   = \frac{\sigma(l_i) - 1}{n}\;\nabla_x\, l(x_i) .
# $$
#
# $-\partial L_G/\partial x_i$ is the direction in which sample $x_i$ should move to look
# more real to $D$. The second factor, $\nabla_x l$, is what $D$'s backward pass
# computes when it is fed $\partial L_G/\partial l$ as its upstream gradient: `dx` of the
# first dense layer, chained back through every layer. We want it **without** touching
# $D$'s parameter gradients, which belong to $D$'s own training and must not be polluted
# by the generator's loss. `backward(dout, param_grads=False)` does exactly that:
# it returns $\partial L_G/\partial x$ and leaves every `D.grads` array as it was.

# %%
x_fake = fake_batch(256, np.random.default_rng(8))
grads_before = {name: g.copy() for name, _, g in D.named_parameters()}  # left over from training

logits = D.forward(x_fake)
g_loss, dlogits = F.bce_with_logits(logits, np.ones_like(logits))     # L_G and dL_G/dl
dx = D.backward(dlogits, param_grads=False)                           # dL_G/dx, shape (256, 2)

print("L_G =", float(g_loss), "| dL_G/dx has shape", dx.shape)
untouched = all(np.array_equal(grads_before[name], g) for name, _, g in D.named_parameters())
print("D's parameter gradients bit-identical after the backward pass:", untouched)
assert untouched

# %% [markdown]
# Is `dx` right? It is a gradient like any other, so we check it like any other:
# central differences in float64 (chapter 2), on a float64 copy of $D$ and a few
# samples, perturbing the *samples* and re-evaluating $L_G$.

# %%
D64 = copy.deepcopy(D).astype("float64")
x64 = x_fake[:6].astype(np.float64)


def generator_loss_of_samples():
    out = D64.forward(x64)
    D64.clear_cache()
    return F.bce_with_logits(out, np.ones_like(out))[0]


out64 = D64.forward(x64)
analytic = D64.backward(F.bce_with_logits(out64, np.ones_like(out64))[1], param_grads=False)
numeric = numerical_gradient(generator_loss_of_samples, x64)
print("relative error of dL_G/dx:", rel_error(analytic, numeric))
assert rel_error(analytic, numeric) < 1e-6


# %% [markdown]
# Now the picture. On a grid of points we compute $-\partial L_G/\partial x$ (scaled by
# $n$, so that each arrow is the per-sample gradient) and draw it over $D$'s map: the
# arrows show which way "more real" lies from each point. Arrow length is normalised so
# that the directions are readable; colour shows the size, on a log scale. On the
# right, the same arrows attached to actual fake samples: this is the message every fake
# would receive in a generator step.

# %%
def push_towards_real(D, points):
    """-dL_G/dx per sample, with L_G the non-saturating generator loss."""
    logits = D.forward(points)
    _, dlogits = F.bce_with_logits(logits, np.ones_like(logits))
    return -D.backward(dlogits, param_grads=False) * len(points)


qx, qy = np.meshgrid(np.linspace(-1.7, 1.7, 23), np.linspace(-1.7, 1.7, 23))
arrows_at = np.stack([qx.ravel(), qy.ravel()], axis=1).astype(np.float32)
fields = {"on a grid": (arrows_at, push_towards_real(D, arrows_at)),
          "on fake samples": (fake_show[:300], push_towards_real(D, fake_show[:300]))}

fig, axes = plt.subplots(1, 2, figsize=(13, 6))
for ax, (title, (where, move)) in zip(axes, fields.items()):
    size = np.linalg.norm(move, axis=1)
    ax.contourf(gx, gy, prob, levels=np.linspace(0, 1, 21), cmap=D_CMAP, alpha=0.45)
    ax.scatter(*real_show.T, s=3, c=REAL_COLOUR)
    if title == "on fake samples":
        ax.scatter(*where.T, s=8, c=FAKE_COLOUR, zorder=3)
    q = ax.quiver(where[:, 0], where[:, 1], move[:, 0] / size, move[:, 1] / size,
                  np.log10(size), cmap="viridis", scale=32, width=0.004, zorder=4)
    fig.colorbar(q, ax=ax, shrink=0.8, label="log10 |dL_G/dx| per sample")
    ax.set_aspect("equal")
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_title(f"-dL_G/dx {title}: the way to look more real")
plt.tight_layout()
plt.show()
print(f"per-sample gradient size at the fakes: median {np.median(np.linalg.norm(fields['on fake samples'][1], axis=1)):.3g}")


# %% [markdown]
# Almost everywhere the arrows point from the red region towards the nearest blue
# island: from the middle of the fake cloud outwards to the ring, from outside inwards,
# and around each mode towards its centre. That is the information a generator gets:
# not "here is the data", only "from where you are, real lies that way". Three things
# are worth noticing, because they come back in every later chapter:
#
# * The arrows come from $D$'s *current* opinion. Between the islands they point at
#   whichever island is nearer, so nearby fakes are sent to the same mode; nothing in
#   this field asks the fakes to spread out over all eight. That is how mode collapse
#   (chapter 8) can begin.
# * Outside the region the samples visit, the field is $D$'s extrapolation. Here the
#   fake cloud is wide, so the arrows point inwards even in the corners; a narrower
#   cloud would leave parts of the plane where nothing guarantees that.
# * The loss contributes the factor $\sigma(l) - 1$, which stays close to $-1$ for every
#   confidently rejected fake: that is the non-saturating loss at work (chapter 3).
#   The sizes in the picture still vary, by more than a factor of ten, but only through
#   $|\nabla_x l|$, the steepness of $D$'s logit: smallest in the middle of the fake
#   cloud, where $D$ is flat, and largest far out, in the corners (the yellow arrows),
#   where $D$'s logit keeps falling steeply the further a point is from the ring. That
#   too is extrapolation: the fakes furthest from the data get the strongest push. Exercise T5.1 computes the alternative
#   loss, whose factor vanishes for exactly those confidently rejected fakes.

# %% [markdown]
# ## Summary
#
# * The discriminator is a binary classifier on logits, trained with
#   $\mathrm{BCE}(l^\text{real}, 1) + \mathrm{BCE}(l^\text{fake}, 0)$; our
#   step is bit-identical to `GAN.discriminator_step`.
# * Its optimum is $D^*(x) = p_\text{data}/(p_\text{data} + p_g)$; a small network
#   matches it where samples are plentiful and extrapolates elsewhere.
# * `D.backward(dlogits, param_grads=False)` returns the gradient of a loss with respect
#   to $D$'s **input** and leaves $D$'s parameter gradients untouched. For the generator's
#   loss it is a field of arrows pointing towards "more real".
#
# Chapter 6 feeds those arrows into the generator's own backward pass.

# %% [markdown]
# ## Exercises
#
# **Exercise T5.1 — the saturating alternative.** The original GAN paper's generator
# *minimises* $\frac{1}{n}\sum_i \log(1 - D(x_i))$ instead. Its gradient with respect to
# the logit is $-\sigma(l_i)/n$ (chapter 7 derives it). Write `minimax_push(D, points)`,
# the analogue of `push_towards_real` for this loss, and compare the per-sample
# gradient sizes of the two losses at the fake samples. Show that the ratio of the
# two sizes is $\sigma(l)/(1 - \sigma(l))$ for every sample, and explain which loss
# gives a stronger signal to the fakes $D$ rejects most confidently.

# %%
def minimax_push(D, points):
    """-dL/dx per sample for L = mean log(1 - D(x))."""
    # BEGIN SOLUTION Exercise T5.1: input gradient of the minimax generator loss
    logits = D.forward(points)
    dlogits = -F.sigmoid(logits) / len(points)
    return -D.backward(dlogits, param_grads=False) * len(points)
    # END SOLUTION


# %%
pts = fake_show[:300]
size_ns = np.linalg.norm(push_towards_real(D, pts), axis=1)
size_mm = np.linalg.norm(minimax_push(D, pts), axis=1)
s = d_probability(D, pts)
unsure = s < 0.99          # where 1 - s is still accurate in float32
assert np.allclose((size_mm / size_ns)[unsure], (s / (1 - s))[unsure], rtol=1e-2)
rejected = s < 0.01
print(f"{rejected.sum()} fakes with D(x) < 0.01: median gradient size, non-saturating "
      f"{np.median(size_ns[rejected]):.3g}, minimax {np.median(size_mm[rejected]):.3g}")
print("T5.1 ok")


# %% [markdown]
# **Exercise T5.2 — move the samples themselves.** Before we build a generator, cut
# out the middleman: treat the fake *points* as the parameters and take gradient steps
# on them directly, $x \leftarrow x + \eta\,(-\partial L_G/\partial x)$ per sample, with
# $D$ frozen. Write `move_points(D, points, lr, steps)` returning the moved points, then
# plot where 300 fakes end up after 50 steps of size 0.01. Where do they go, and are
# all eight modes reached evenly? (Compare with the first bullet point above.)

# %%
def move_points(D, points, lr, steps):
    # BEGIN SOLUTION Exercise T5.2: gradient steps on the samples, D frozen
    x = points.copy()
    for _ in range(steps):
        x += lr * push_towards_real(D, x)
    return x
    # END SOLUTION


# %%
start = fake_show[:300]
moved = move_points(D, start, lr=0.01, steps=50)
fig, ax = plt.subplots(figsize=(5, 5))
ax.contourf(gx, gy, prob, levels=np.linspace(0, 1, 21), cmap=D_CMAP, alpha=0.35)
ax.scatter(*start.T, s=4, c=FAKE_COLOUR, alpha=0.25, label="before")
ax.scatter(*moved.T, s=6, c="tab:purple", label="after 50 steps")
ax.set_aspect("equal")
ax.set_xlim(-lim, lim)
ax.set_ylim(-lim, lim)
ax.legend(fontsize=8)
plt.show()
before, after = d_probability(D, start).mean(), d_probability(D, moved).mean()
print(f"mean D(x) before {before:.3f}, after {after:.3f}")
assert moved.shape == start.shape and after > before + 0.2
print("T5.2 ok")


# %% [markdown]
# **Exercise T5.3 — an optimum you can write down.** If both densities are Gaussians
# with the *same* variance, $p_\text{data} = \mathcal{N}(\mu_1, s^2)$ and
# $p_g = \mathcal{N}(\mu_0, s^2)$, show that the logit of $D^*$, $\log(D^*/(1 - D^*)) =
# \log p_\text{data} - \log p_g$, is a linear function $a x + c$, so that a single dense
# layer, logistic regression, can represent $D^*$ exactly. Write `optimal_logit(x, mu1,
# mu0, s)`.

# %%
def optimal_logit(x, mu1, mu0, s):
    # BEGIN SOLUTION Exercise T5.3: the logit of the optimal discriminator for two equal-variance Gaussians
    a = (mu1 - mu0) / s ** 2
    c = (mu0 ** 2 - mu1 ** 2) / (2 * s ** 2)
    return a * x + c
    # END SOLUTION


# %%
xt = np.linspace(-3, 8, 50)
for mu1, mu0, s in ((4.0, 2.5, 0.5), (0.0, 1.0, 2.0)):
    log_ratio = (-0.5 * ((xt - mu1) / s) ** 2) - (-0.5 * ((xt - mu0) / s) ** 2)
    assert np.allclose(optimal_logit(xt, mu1, mu0, s), log_ratio)
    assert np.allclose(np.diff(optimal_logit(xt, mu1, mu0, s), 2), 0, atol=1e-9)   # a straight line
print("T5.3 ok")
