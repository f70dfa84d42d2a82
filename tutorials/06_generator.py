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
#     chapter: 6
#     needs_mnist: false
# ---

# %% [markdown]
# # Chapter 6 — The generator: learning through someone else's gradient
#
# The generator $G$ never sees a real sample. It turns noise $z$ into samples
# $x = G(z)$, and all it ever learns comes from the discriminator's verdict on them:
# the arrows of chapter 5, $\partial L_G/\partial x$, one per fake sample. This chapter
# shows how those arrows become updates of $G$'s weights, why the update must leave $D$
# exactly as it was, and then lets the two networks play on `ring8` until the
# generator's cloud has become a ring.
#
# **What you will learn**
#
# 1. The generator's gradient as a chain rule *across two networks*: $D$'s input
#    gradient becomes $G$'s upstream gradient.
# 2. The four named steps of `minigan.gan.GAN`, `sample_noise`, `generate`,
#    `discriminator_step` and `generator_step`, called one at a time, and every
#    intermediate array they compute, read straight from $D$ and the loss object.
# 3. A demonstration that the generator step changes $G$ and leaves $D$'s parameters
#    and gradients **bit-identical**, and a numerical check of $G$'s gradient.
# 4. What those updates do, step by step and over a few thousand steps.

# %%
import os

QUICK = os.environ.get("MINIGAN_QUICK", "0") not in ("", "0")  # the test suite sets MINIGAN_QUICK=1

import copy

import matplotlib.pyplot as plt
import numpy as np

import minigan as mg
from minigan import functional as F
from minigan import metrics
from minigan.data import ring8
from minigan.gan import GAN
from minigan.gradcheck import numerical_gradient, rel_error
from minigan.layers import forward_in_eval_mode
from minigan.plot import D_CMAP, D_COLOUR, FAKE_COLOUR, REAL_COLOUR  # the colours of every minigan figure

mg.seed(0)

# %% [markdown]
# ## 1. The chain rule across two networks
#
# Let $\theta$ be the generator's parameters. For a batch of noise $z_1, \dots, z_n$
# the generator produces $x_i = G_\theta(z_i)$, the discriminator scores them with
# logits $l_i = l(x_i)$, and the generator's (non-saturating) loss is chapter 5's
#
# $$
# L_G(\theta) = -\frac{1}{n}\sum_{i=1}^n \log \sigma\bigl(l(G_\theta(z_i))\bigr).
# $$
#
# $\theta$ influences $L_G$ only through the samples, so the chain rule splits the
# gradient at the boundary between the two networks:
#
# $$
# \frac{\partial L_G}{\partial \theta}
#   = \sum_{i=1}^n \underbrace{\frac{\partial L_G}{\partial x_i}}_{\text{from } D}
#     \;\underbrace{\frac{\partial x_i}{\partial \theta}}_{\text{from } G}.
# $$
#
# The first factor is exactly what chapter 5 computed: $D$'s backward pass with
# `param_grads=False`, fed $\partial L_G/\partial l$. The second factor is never formed
# as a matrix: $G$'s ordinary backward pass, fed $\partial L_G/\partial x$ as its upstream
# gradient (chapter 2), computes the whole product and accumulates it into `G.grads`.
# So one generator step is
#
# 1. $l = D(x)$, forward through $D$ (the fakes $x$ and $G$'s cache come from `generate`);
# 2. $\partial L_G/\partial l = (\sigma(l) - 1)/n$, from the loss (`gan.loss.generator(l)`,
#    the generator's half of the loss object, chapter 7);
# 3. $\partial L_G/\partial x$ = `D.backward(dl, param_grads=False)`;
# 4. `G.zero_grad()`, `G.backward(dx)`, `g_optimizer.step()`.
#
# $D$'s parameters appear in $L_G$, but in this step they are constants. Its forward and
# backward passes are used purely as a differentiable function of $x$. If step 3
# accumulated $D$'s parameter gradients anyway, in minigan they would merely be wasted
# work, a whole set of parameter-gradient GEMMs thrown away, because
# `discriminator_step` calls `D.zero_grad()` before it computes anything. But they
# would be a real bug in any training loop that does not zero $D$'s gradients right
# before its update, accumulates gradients over several batches, or steps $D$'s
# optimiser after $G$'s: there the *generator's* loss, which wants $D$ to call fakes
# real, would push $D$ in exactly the wrong direction.

# %% [markdown]
# ## 2. Two players and the referee
#
# Both networks are small MLPs with LeakyReLU(0.2). $G$ maps 2-D noise to 2-D points and
# ends in a plain dense layer, not tanh: ring8's modes sit at radius 1, so a mode such
# as $(1, 0)$, and the noise around it, asks for outputs of $\pm 1$ and beyond, which
# tanh approaches only deep in saturation, where its gradient vanishes; $D$
# ends in a logit. Each has its own Adam optimiser. `GAN` holds the four objects and
# knows the order in which to use them.

# %%
data = ring8()


def mlp(sizes, seed):
    weights = np.random.default_rng(seed)
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(mg.Dense(n_in, n_out, rng=weights))
        if i < len(sizes) - 2:
            layers.append(mg.LeakyReLU(0.2))
    return mg.Sequential(*layers)


G = mlp([2, 128, 128, 2], seed=0)
D = mlp([2, 128, 128, 1], seed=1)
gan = GAN(G, D, latent_dim=2,
          g_optimizer=mg.Adam(G.parameters(), lr=1e-3, betas=(0.5, 0.999)),
          d_optimizer=mg.Adam(D.parameters(), lr=1e-3, betas=(0.5, 0.999)),
          rng=2)
print("G:", G, "\nD:", D, sep="\n")

# %% [markdown]
# ### Watching the arrays go by
#
# Nothing in a step is hidden. Each named step is built from public pieces: $D$'s
# `forward` and `backward`, and the loss object `gan.loss` (here the default,
# `NonSaturating()`), whose `discriminator(real_logits, fake_logits)` returns the
# discriminator's loss and its gradients with respect to both batches of logits, and whose
# `generator(fake_logits)` returns the generator's loss and its gradient. So we can take one
# training step by hand, one named step at a time, and next to each step compute, with
# the same pieces, the arrays it uses. (Computing them changes nothing: $D$ here has no
# batch norm or dropout, so an extra forward pass has no side effect, and a backward pass
# with `param_grads=False` leaves $D$'s gradients alone.)

# %%
seen = {}


def keep(stage, **arrays):
    """Keep copies (a later pass may reuse a layer's output buffers)."""
    seen[stage] = {name: np.array(a, copy=True) for name, a in arrays.items()}


batch_rng = np.random.default_rng(3)
real = data.sample(256, rng=batch_rng)

z = gan.sample_noise(256)                      # 1. z ~ N(0, I)
fake = gan.generate(z)                         # 2. x_fake = G(z); G keeps its cache
keep("noise", z=z)
keep("generate", fake=fake)

# what step 3 computes: D's logits on both batches, and the loss's gradients
logits = forward_in_eval_mode(D, np.concatenate([real, fake]))
_, dlogits_real, dlogits_fake = gan.loss.discriminator(logits[:256], logits[256:])
keep("discriminator", logits=logits, dlogits_real=dlogits_real, dlogits_fake=dlogits_fake)
d_stats = gan.discriminator_step(real, fake)   # 3. one update of D on real and fake

# what step 4 computes: D's (now updated) logits on the fakes, and the arrows dL_G/dx
logits = D.forward(fake)
_, dlogits = gan.loss.generator(logits)
dfake = D.backward(dlogits, param_grads=False)
keep("generator", logits=logits, dlogits=dlogits, dfake=dfake)
g_stats = gan.generator_step(fake)             # 4. one update of G through D

print("discriminator step:", {k: round(v, 4) for k, v in d_stats.items()})
print("generator step:    ", {k: round(v, 4) for k, v in g_stats.items()})
print()
for stage, arrays in seen.items():
    for name, a in arrays.items():
        print(f"{stage:14s} {name:14s} {str(a.shape):11s} {str(a.dtype):8s} mean {a.mean():+.4f}   std {a.std():.4f}")


# %% [markdown]
# Read the table from top to bottom and you have the whole algorithm. `z` and `fake`
# are 256 points each. The discriminator step saw 256 real and 256 fake rows and
# produced a logit for each, with the BCE gradients `dlogits_real` (negative: push the
# logit up, towards "real") and `dlogits_fake` (positive: push it down). The generator
# step ran $D$ again on the same fakes (with $D$'s weights now one step newer, hence
# new `logits`), computed its own `dlogits` (all negative: it wants "real"), and turned
# them into `dfake`, the $(256, 2)$ array of arrows $\partial L_G/\partial x$ that went
# into $G$'s backward pass. Everything stays float32.

# %% [markdown]
# ## 3. The generator step touches $G$ and only $G$
#
# Now the claim of this chapter, tested: take a snapshot of both networks' parameters
# and gradients, run `generator_step`, and compare. We do it at a fresh batch, after a
# discriminator step, so that $D$'s gradient buffers hold that step's (non-zero)
# gradients, which the generator step must not disturb either.

# %%
def snapshot(model):
    return ({k: p.copy() for k, p, _ in model.named_parameters()},
            {k: g.copy() for k, _, g in model.named_parameters()})


real = data.sample(256, rng=batch_rng)
z = gan.sample_noise(256)
fake = gan.generate(z)
gan.discriminator_step(real, fake)

(G_params, G_grads), (D_params, D_grads) = snapshot(G), snapshot(D)
gan.generator_step(fake)
(G_params_after, _), (D_params_after, D_grads_after) = snapshot(G), snapshot(D)

D_same = all(np.array_equal(D_params[k], D_params_after[k]) for k in D_params)
D_grads_same = all(np.array_equal(D_grads[k], D_grads_after[k]) for k in D_grads)
def rms_change(before, after):
    return {k: float(np.sqrt(np.mean((after[k] - before[k]) ** 2))) for k in before}


G_moved, D_moved = rms_change(G_params, G_params_after), rms_change(D_params, D_params_after)
print("D's parameters bit-identical:", D_same, "| D's gradients bit-identical:", D_grads_same)
print("G's parameters moved:", all(v > 0 for v in G_moved.values()))
assert D_same and D_grads_same and all(v > 0 for v in G_moved.values())

fig, ax = plt.subplots(figsize=(9, 3.2))
names = [f"G {k}" for k in G_moved] + [f"D {k}" for k in D_moved]
changes = list(G_moved.values()) + list(D_moved.values())
ax.bar(names, changes, color=[FAKE_COLOUR] * len(G_moved) + [D_COLOUR] * len(D_moved))
ax.set_yscale("log")
ax.set_ylim(1e-6, 1e-2)
for i, value in enumerate(changes):
    ax.text(i, value if value else 1.3e-6, f"{value:.1e}" if value else "0\n(exact)",
            ha="center", va="bottom", fontsize=8)
ax.set_ylabel("RMS change per entry")
ax.set_title("one generator step: how much each parameter array of G and D changed")
plt.xticks(rotation=45)
plt.tight_layout()
plt.show()

# %% [markdown]
# Every one of $G$'s six parameter arrays moved, each entry by about $10^{-3}$, the size
# of one Adam step with learning rate $10^{-3}$ (Adam's step is about $\eta$ per entry,
# chapter 4), and all six of $D$'s are exactly as they were, to the last bit, as are
# $D$'s gradient buffers.
#
# ### Is $G$'s gradient right?
#
# The gradient that flowed through two networks should be checked like any other. We
# make float64 copies of both networks, take a generator step there, and compare $G$'s
# parameter gradients (which `generator_step` leaves in `G.grads`, computed at the
# parameters *before* the update) with central differences of $L_G(\theta)$, with the same
# noise and the same, untouched, $D$. The networks are shrunk to a few units for this,
# because the numerical gradient needs two forward passes per parameter.

# %%
G_small, D_small = mlp([2, 8, 8, 2], seed=10).astype("float64"), mlp([2, 8, 8, 1], seed=11).astype("float64")
gan64 = GAN(G_small, D_small, latent_dim=2,
            g_optimizer=mg.SGD(G_small.parameters(), lr=0.1), d_optimizer=mg.SGD(D_small.parameters(), lr=0.1),
            rng=12)
z64 = gan64.sample_noise(16)
G_before = copy.deepcopy(G_small)                    # theta before the update
gan64.generator_step(gan64.generate(z64))            # fills G_small.grads at theta before


def generator_loss():
    logits = D_small.forward(G_before.forward(z64))
    D_small.clear_cache()
    G_before.clear_cache()
    return F.bce_with_logits(logits, np.ones_like(logits))[0]


for (name, p, _), (_, _, analytic) in zip(G_before.named_parameters(), G_small.named_parameters()):
    numeric = numerical_gradient(generator_loss, p)
    print(f"dL_G/d{name:4s} {str(p.shape):8s} relative error {rel_error(analytic, numeric):.1e}")
    assert rel_error(analytic, numeric) < 1e-6


# %% [markdown]
# Agreement to eight or nine digits: the gradient the generator receives through the
# discriminator is the exact gradient of $L_G$ with respect to $\theta$.

# %% [markdown]
# ## 4. What one generator step does to the samples
#
# The arrows $-\partial L_G/\partial x_i$ say where each fake *should* go. But $G$ cannot
# move the samples individually: it can only change its weights, which move all samples
# at once, in a correlated way. Let us compare, for one step, the arrows with the actual
# displacement $G_{\theta'}(z_i) - G_\theta(z_i)$ of the same noise vectors. First we train
# for a while, so that the picture is more interesting than a blob.

# %%
def train(gan, steps, batch_rng, batch_size=256, on_step=None):
    """`steps` training steps built from the named steps; returns their statistics."""
    stats = []
    for step in range(steps):
        real = data.sample(batch_size, rng=batch_rng)
        z = gan.sample_noise(batch_size)
        fake = gan.generate(z)
        record = gan.discriminator_step(real, fake)
        record.update(gan.generator_step(fake))
        stats.append(record)
        if on_step is not None:
            on_step(step, gan)
    return stats


train(gan, 100 if QUICK else 400, batch_rng)

z_probe = gan.sample_noise(300)
x_before = gan.generate(z_probe)
G.clear_cache()

real = data.sample(300, rng=batch_rng)
gan.discriminator_step(real, x_before)
# the loss and the arrows dL_G/dx that the generator step is about to use, as in section 2
loss_before, dlogits = gan.loss.generator(D.forward(x_before))
dfake = D.backward(dlogits, param_grads=False).copy()
x_before = gan.generate(z_probe)                     # the generator step needs G's cache
gan.generator_step(x_before)

x_after = gan.generate(z_probe)
G.clear_cache()
loss_after = gan.loss.generator(D.forward(x_after))[0]
D.clear_cache()
push = -dfake * len(z_probe)                         # per-sample -dL_G/dx
move = x_after - x_before
cosine = np.sum(push * move, axis=1) / (np.linalg.norm(push, axis=1) * np.linalg.norm(move, axis=1))
print(f"L_G on these samples, same D: before {float(loss_before):.4f}, after {float(loss_after):.4f}")
print(f"cosine between arrow and actual move: median {np.median(cosine):.2f}, "
      f"positive for {np.mean(cosine > 0):.0%} of the samples")

# %%
lim = 1.8
gx, gy = np.meshgrid(np.linspace(-lim, lim, 181), np.linspace(-lim, lim, 181))
grid = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)
prob = gan.discriminate(grid)[:, 0].reshape(gx.shape)
real_show = data.sample(500, rng=9)

fig, axes = plt.subplots(1, 2, figsize=(12, 5.6))
for ax, vectors, title in ((axes[0], push, "what D asks for: -dL_G/dx (normalised)"),
                           (axes[1], move, "what one G step did: G'(z) - G(z) (normalised)")):
    ax.contourf(gx, gy, prob, levels=np.linspace(0, 1, 21), cmap=D_CMAP, alpha=0.4)
    ax.scatter(*real_show.T, s=3, c=REAL_COLOUR)
    ax.scatter(*x_before.T, s=6, c=FAKE_COLOUR)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    ax.quiver(x_before[:, 0], x_before[:, 1], unit[:, 0], unit[:, 1], color="tab:purple",
              scale=30, width=0.004)
    ax.set_aspect("equal")
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_title(title, fontsize=10)
plt.tight_layout()
plt.show()

# %% [markdown]
# The two fields agree on the whole: most samples moved the way $D$ asked, and the loss
# on these very samples went down. They do not agree arrow for arrow. A weight update is
# shared by every sample, so where the arrows of neighbouring samples disagree, $G$ can
# only compromise; and Adam rescales each weight's step, so the update is not even
# parallel to the gradient in weight space. This is the generator's situation in a
# nutshell: it learns from someone else's gradient, through its own, limited, parameters.

# %% [markdown]
# ## 5. The game, played for a while
#
# Now we simply repeat the four steps. Every few hundred steps we draw 2500 samples
# (in evaluation mode, with `gan.sample`) and count how many of ring8's eight modes they
# reach, with `metrics.mode_coverage` (a sample is *high quality* if it lies within three
# standard deviations of a mode's centre).

# %%
STEPS = 200 if QUICK else 3000
SNAPSHOTS = [0, 50, 100, 200] if QUICK else [0, 250, 500, 1000, 2000, 3000]
snapshots = {}


def take_snapshot(step, gan):
    if step + 1 in SNAPSHOTS:
        snapshots[step + 1] = mg.to_numpy(gan.sample(2500, rng=4))


fresh_G, fresh_D = mlp([2, 128, 128, 2], seed=0), mlp([2, 128, 128, 1], seed=1)
gan = GAN(fresh_G, fresh_D, latent_dim=2,
          g_optimizer=mg.Adam(fresh_G.parameters(), lr=1e-3, betas=(0.5, 0.999)),
          d_optimizer=mg.Adam(fresh_D.parameters(), lr=1e-3, betas=(0.5, 0.999)),
          rng=2)
snapshots[0] = mg.to_numpy(gan.sample(2500, rng=4))
stats = train(gan, STEPS, np.random.default_rng(5), on_step=take_snapshot)

fig, axes = plt.subplots(1, len(SNAPSHOTS), figsize=(2.9 * len(SNAPSHOTS), 3.2))
for ax, step in zip(axes, SNAPSHOTS):
    samples = snapshots[step]
    coverage = metrics.mode_coverage(samples, data.centres, data.std)
    ax.scatter(*real_show.T, s=3, c=REAL_COLOUR)
    ax.scatter(*samples[:800].T, s=2, c=FAKE_COLOUR, alpha=0.6)
    ax.set_xlim(-1.6, 1.6)
    ax.set_ylim(-1.6, 1.6)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"step {step}\n{coverage['modes_captured']}/8 modes, "
                 f"{coverage['high_quality_fraction']:.0%} high quality", fontsize=9)
fig.suptitle("G's samples (green) and ring8 (black) as training goes on", y=1.05)
plt.show()

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 3.4))
steps = np.arange(1, len(stats) + 1)
smooth = lambda v, w=25: np.convolve(v, np.ones(w) / w, mode="valid")  # noqa: E731
for key, label in (("d_loss", "D loss"), ("g_loss", "G loss")):
    axes[0].plot(steps[24:], smooth([s[key] for s in stats]), label=label)
axes[0].axhline(2 * np.log(2), color="gray", ls=":", label="D loss at D = 1/2: 2 log 2")
axes[0].axhline(np.log(2), color="gray", ls="--", label="G loss at D = 1/2: log 2")
for key, label, colour in (("d_real", "mean D(real)", REAL_COLOUR),
                           ("d_fake", "mean D(fake)", FAKE_COLOUR)):
    axes[1].plot(steps[24:], smooth([s[key] for s in stats]), label=label, color=colour)
axes[1].axhline(0.5, color="gray", ls=":")
for ax in axes:
    ax.set_xlabel("step")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
axes[0].set_title("losses (moving average of 25 steps)")
axes[1].set_title("D's average verdicts")
plt.tight_layout()
plt.show()

# %% [markdown]
# From a shapeless blob, the samples spread into a ring and then gather around the
# modes (in full mode; the quick mode used by the tests stops earlier). They do not
# settle on all eight: the count in the panel titles goes up and down as $G$ drifts
# towards some modes and away from others (in full mode it stays between five and
# eight of eight after the first few hundred steps, without holding all eight), a first
# sight of the mode dropping that chapter 8 studies. The share of high-quality samples,
# on the other hand, rises steadily, but stays low: most samples lie near the ring, not
# yet within three standard deviations of a centre. The loss curves tell a different
# story, and it is worth learning to read them.
# At the start both losses sit at the values of the game's equilibrium, where $D$ cannot
# tell real from fake and says $\tfrac12$ everywhere: $2\log 2$ for $D$'s two BCE terms,
# $\log 2$ for $G$'s. Then $D$'s loss falls and $G$'s rises, and $D$'s verdicts on real
# and fake drift apart, *while the samples visibly improve*. There is no contradiction.
# The real modes are extremely narrow (std 0.01), and however close the generator's
# samples come, they remain spread far more widely around each centre; a discriminator
# with sharp enough islands keeps finding that difference. The losses measure the current
# state of the contest between two moving players, not the quality of the samples, which
# is why we judge a GAN by its samples and by metrics such as mode coverage. (Pulling
# the samples in tightly enough to make most of them high quality takes two more tricks,
# a learning rate that decays towards the end and sampling from a running average of
# $G$'s weights; `python -m minigan train` uses both, see `minigan.presets`.)
#
# The loop we wrote is exactly `gan.train_step(real)` (with one discriminator step per
# generator step, the default). To be sure, we run both from identical copies for a
# few steps and compare the parameters:

# %%
twin_a, twin_b = copy.deepcopy(gan), copy.deepcopy(gan)
rng_a, rng_b = np.random.default_rng(6), np.random.default_rng(6)
train(twin_a, 5, rng_a)
for _ in range(5):
    twin_b.train_step(data.sample(256, rng=rng_b))
identical = all(np.array_equal(a, b) for a, b in zip(
    list(twin_a.G.state_dict().values()) + list(twin_a.D.state_dict().values()),
    list(twin_b.G.state_dict().values()) + list(twin_b.D.state_dict().values())))
print("named steps == train_step, bit for bit:", identical)
assert identical


# %% [markdown]
# ## Summary
#
# * The generator's gradient is a chain rule across both networks: $D$'s input gradient,
#   computed with `param_grads=False`, is $G$'s upstream gradient.
# * `GAN` spells a training step out as `sample_noise`, `generate`,
#   `discriminator_step`, `generator_step`; `train_step` is those four in order. They are
#   built from $D$'s forward and backward passes and the two halves of the loss object
#   `gan.loss`, so every intermediate array can be computed and looked at next to them.
# * The generator step changes $G$'s parameters and leaves $D$'s parameters and gradients
#   bit-identical; the gradient it uses matches finite differences.
# * A weight update moves all samples at once: the generator follows $D$'s arrows on
#   average, not one by one. Over a few thousand steps, on ring8, that turns a blob into
#   a ring of eight modes.
#
# Chapter 7 plays the full game on 1-D data and compares the generator losses.

# %% [markdown]
# ## Exercises
#
# **Exercise T6.1 — the generator step from scratch.** Write `my_generator_step(gan,
# fake)` using only `gan.D`, `gan.G`, `gan.g_optimizer` and functions from
# `minigan.functional` (not `gan.generator_step` or `gan.loss`), following the
# four steps of section 1. The check runs yours and the library's on identical copies
# and compares $G$'s parameters to a tolerance (a correct step written differently, a
# sigmoid of your own for instance, rounds differently in float32), and $D$'s parameters
# and gradients bit for bit: the generator step must not touch them at all.

# %%
def my_generator_step(gan, fake):
    # BEGIN SOLUTION Exercise T6.1: update G through D, leaving D's parameters and gradients alone
    logits = gan.D.forward(fake)
    _, dlogits = F.bce_with_logits(logits, np.ones_like(logits))
    dfake = gan.D.backward(dlogits, param_grads=False)
    gan.G.zero_grad()
    gan.G.backward(dfake, input_grad=False)
    gan.g_optimizer.step()
    # END SOLUTION


# %%
mine, lib = copy.deepcopy(gan), copy.deepcopy(gan)
z_check = mine.sample_noise(64)
my_generator_step(mine, mine.generate(z_check))
lib.generator_step(lib.generate(z_check))
yours, ref = mine.G.state_dict(), lib.G.state_dict()
for k in ref:
    # float32 rounding differs from one correct formula to another: compare to a tolerance.
    worst = float(np.max(np.abs(yours[k] - ref[k])))
    assert np.allclose(yours[k], ref[k], rtol=1e-4, atol=1e-6), (
        f"G's {k} after your step differs from the library's by up to {worst:.2e} "
        f"(tolerance 1e-6 + 1e-4 |value|): the update of G is wrong, not just rounded")
yours, ref = mine.D.state_dict(), lib.D.state_dict()
for k in ref:
    assert np.array_equal(yours[k], ref[k]), (
        f"D's {k} changed: the generator step must leave D's parameters alone "
        "(no d_optimizer.step())")
for (name, _, g1), (_, _, g2) in zip(mine.D.named_parameters(), lib.D.named_parameters()):
    assert np.array_equal(g1, g2), (
        f"D's gradient of {name} changed: call D.backward with param_grads=False, so that "
        "only the input gradient is computed")
print("T6.1 ok")


# %% [markdown]
# **Exercise T6.2 — a diary of the generator step.** Write
# `generator_step_with_diary(gan, fake, diary)` that takes the generator step
# `gan.generator_step(fake)` and, before it, records two numbers about the fakes it is
# given: the mean of $D(G(z))$ (the probability `gan.loss.score` reads from $D$'s logits)
# in `diary["d_of_fake"]`, and the mean per-sample norm of the arrows,
# $n \cdot \lVert$`dfake`$_i\rVert$, in `diary["arrow_size"]` (compute `dfake` as in
# section 2). Train a fresh GAN for 200 steps with it and plot both. How do they change as
# $G$ improves?

# %%
def generator_step_with_diary(gan, fake, diary):
    # BEGIN SOLUTION Exercise T6.2: record mean D(G(z)) and the mean arrow size, then take the generator step
    logits = gan.D.forward(fake)
    _, dlogits = gan.loss.generator(logits)
    dfake = gan.D.backward(dlogits, param_grads=False)
    diary["d_of_fake"].append(float(gan.loss.score(logits).mean()))
    diary["arrow_size"].append(float(np.linalg.norm(dfake, axis=1).mean() * len(dfake)))
    return gan.generator_step(fake)
    # END SOLUTION


# %%
G_d, D_d = mlp([2, 64, 64, 2], seed=20), mlp([2, 64, 64, 1], seed=21)
diary_gan = GAN(G_d, D_d, 2, mg.Adam(G_d.parameters(), lr=1e-3, betas=(0.5, 0.999)),
                mg.Adam(D_d.parameters(), lr=1e-3, betas=(0.5, 0.999)), rng=22)
diary = {"d_of_fake": [], "arrow_size": []}
diary_rng = np.random.default_rng(23)
for _ in range(200):                              # the loop of `train`, with the diary's G step
    fake = diary_gan.generate(diary_gan.sample_noise(128))
    diary_gan.discriminator_step(data.sample(128, rng=diary_rng), fake)
    generator_step_with_diary(diary_gan, fake, diary)
fig, axes = plt.subplots(1, 2, figsize=(10, 2.8))
axes[0].plot(diary["d_of_fake"])
axes[0].set_title("mean D(G(z)) at each generator step")
axes[1].plot(diary["arrow_size"])
axes[1].set_title("mean per-sample |dL_G/dx|")
for ax in axes:
    ax.set_xlabel("step")
plt.tight_layout()
plt.show()
assert len(diary["d_of_fake"]) == 200 and len(diary["arrow_size"]) == 200
assert all(0 < v < 1 for v in diary["d_of_fake"]) and np.all(np.isfinite(diary["arrow_size"]))
print("T6.2 ok")


# %% [markdown]
# **Exercise T6.3 — and the other way round.** The discriminator step must leave $G$
# alone just as strictly. Write `g_untouched_by_d_step(gan, real)` that generates a
# fake batch, snapshots $G$'s parameters and gradients, runs `gan.discriminator_step`,
# and returns whether all of them are bit-identical afterwards.

# %%
def g_untouched_by_d_step(gan, real):
    # BEGIN SOLUTION Exercise T6.3: check that a discriminator step changes nothing in G
    fake = gan.generate(gan.sample_noise(len(real)))
    before = [(p.copy(), g.copy()) for p, g in gan.G.parameters()]
    gan.discriminator_step(real, fake)
    gan.G.clear_cache()
    return all(np.array_equal(p, p0) and np.array_equal(g, g0)
               for (p, g), (p0, g0) in zip(gan.G.parameters(), before))
    # END SOLUTION


# %%
assert g_untouched_by_d_step(copy.deepcopy(gan), data.sample(128, rng=7))
print("T6.3 ok")
