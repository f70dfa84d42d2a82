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
#     chapter: 7
#     needs_mnist: false
# ---

# %% [markdown]
# # Chapter 7 — The full loop on 1-D data
#
# Chapters 5 and 6 built the two halves of a GAN separately: a discriminator that
# learns to tell real from fake, and a generator that learns through the gradient the
# discriminator hands back. Now we let them play against each other, on data so
# simple that we can draw *everything*: the data density, the generator's density and
# the discriminator's opinion at every point of the line. That is the picture of
# Figure 1 in Goodfellow et al. (2014), and we will make it move.
#
# **What you will learn**
#
# 1. The GAN objective $V(D, G)$ as a two-player game, and the discriminator that is
#    optimal for a fixed generator, $D^*(x) = p_\text{data}(x) / (p_\text{data}(x) + p_g(x))$.
# 2. How to run the training loop (Algorithm 1 of the paper) with `minigan.gan.GAN`,
#    and how to watch it: a row of snapshots and an animation in the style of Figure 1.
# 3. Why the paper's original generator loss $\log(1 - D(G(z)))$ *stalls* when the
#    discriminator wins early, why the non-saturating loss $-\log D(G(z))$ does not,
#    seen in the gradient with respect to D's logit and in a training run.
#
# The whole chapter trains in well under a minute on a laptop CPU.

# %%
import os

QUICK = os.environ.get("MINIGAN_QUICK", "0") not in ("", "0")  # the test suite sets MINIGAN_QUICK=1

import time

import matplotlib.pyplot as plt
import numpy as np

import minigan as mg
from minigan import plot
from minigan.data import gaussian1d
from minigan.gan import GAN
from minigan.gan_losses import Minimax, NonSaturating
from minigan.models import mlp

STEPS = 300 if QUICK else 4000              # generator updates in the main run
SNAPSHOTS = [0, 100, 200, 300] if QUICK else [0, 250, 500, 4000]
FRAME_EVERY = 30 if QUICK else 100          # steps between animation frames
mg.seed(0)
print("minigan", mg.__version__, "| quick mode" if QUICK else "| full mode")

# %% [markdown]
# ## 1. The game
#
# The data are numbers drawn from one Gaussian, $p_\text{data} = \mathcal{N}(4, 0.5^2)$
# (`minigan.data.gaussian1d`). The generator $G$ turns noise $z \sim \mathcal{N}(0, 1)$
# into a number $x = G(z)$; the distribution of those numbers is the *generator density*
# $p_g$. The discriminator $D$ maps a number to the probability that it is real. The two
# play a game over one value,
#
# $$
# V(D, G) = \mathbb{E}_{x \sim p_\text{data}}\big[\log D(x)\big]
#         + \mathbb{E}_{z \sim p_z}\big[\log\big(1 - D(G(z))\big)\big],
# \qquad \min_G \max_D V(D, G).
# $$
#
# $D$ wants $V$ large: $\log D(x)$ near 0 on real data, $\log(1 - D(G(z)))$ near 0 on
# fakes. This is exactly minus the binary cross-entropy of chapters 3 and 5 with
# targets 1 for real and 0 for fake, so *maximising $V$ over $D$ is training a classifier*.
# $G$ wants $V$ small, which it can only do through the second term.
#
# **The best discriminator for a fixed generator.** Write the expectations as integrals
# over $x$ (the second one over the fakes' density $p_g$):
#
# $$
# V(D, G) = \int \Big( p_\text{data}(x) \log D(x) + p_g(x) \log\big(1 - D(x)\big) \Big)\, dx .
# $$
#
# $D$ can choose its value at each $x$ separately, so we maximise the integrand point by
# point. For $a, b \ge 0$ the function $y \mapsto a \log y + b \log(1 - y)$ on $(0, 1)$ has
# derivative $a/y - b/(1-y)$, which vanishes at $y = a/(a+b)$. Hence
#
# $$
# D^*(x) = \frac{p_\text{data}(x)}{p_\text{data}(x) + p_g(x)} .
# $$
#
# Where only real data lives, $D^* = 1$; where only fakes live, $D^* = 0$; and where the
# two densities are equal, $D^* = \tfrac12$. If the generator matches the data
# everywhere, $p_g = p_\text{data}$, the best discriminator can do no better than a coin
# flip: $D^* \equiv \tfrac12$, and $V = \log\tfrac12 + \log\tfrac12 = -\log 4$. That is
# the equilibrium of the game, and the picture we are aiming for: the green curve ($p_g$)
# on top of the black one ($p_\text{data}$) and a flat blue line ($D$) at one half.

# %%
data = gaussian1d()
print(data, " mean", data.centres[0, 0], " std", data.std)

real_eval = data.sample(5000, rng=1)        # a fixed sample of real data for the plots
LIM = (-3.5, 7.5)                           # the part of the line we draw

# %% [markdown]
# ## 2. The players and Algorithm 1
#
# Both players are small multilayer perceptrons built with `minigan.models.mlp`: one input,
# two hidden layers of 32 tanh units, one output. $G$'s output is the sample itself (no
# output activation: the data live around 4, outside tanh's range); $D$'s output is a
# *logit* $\ell$, and $D(x) = \sigma(\ell)$ is applied inside the loss, never as a layer
# (chapter 3 showed why).
#
# `minigan.gan.GAN` runs Algorithm 1 of the paper. One call of `train_step(real)` does
#
# 1. `sample_noise(n)`: $z_1, \dots, z_n \sim \mathcal{N}(0, 1)$;
# 2. `generate(z)`: $x^\text{fake}_i = G(z_i)$;
# 3. `discriminator_step(real, fake)`: one Adam step on D's parameters that lowers
#    $\mathrm{BCE}(D(x^\text{real}), 1) + \mathrm{BCE}(D(x^\text{fake}), 0)$, i.e. raises $V$
#    (chapter 5);
# 4. `generator_step(fake)`: one Adam step on G's parameters only, through D's input
#    gradient (chapter 6).
#
# The proof that this game reaches $p_g = p_\text{data}$ assumes that $D$ stays close to
# $D^*$ while $G$ moves. The paper achieves that with $k$ discriminator steps per generator
# step; here we give D a learning rate ten times larger than G's (1e-3 against 1e-4),
# which serves the same purpose and costs nothing extra.
#
# Which losses the two players minimise is one object, passed as `loss=`: the default,
# `minigan.gan_losses.NonSaturating()`, is the cross-entropy of step 3 for D together with
# the generator loss that section 4 explains. Section 4 swaps it for `Minimax()`; the
# loop itself never changes.

# %%
LOSSES = {"minimax": Minimax(), "non-saturating": NonSaturating()}


def make_gan(g_loss="non-saturating", g_optimizer="adam", g_lr=1e-4, seed=0):
    """A 1-D GAN: G and D are 1-32-32-1 tanh MLPs; D ends in a logit; g_loss names a loss of LOSSES."""
    G = mlp([1, 32, 32, 1], activation="tanh", rng=seed)
    D = mlp([1, 32, 32, 1], activation="tanh", rng=seed + 1000)
    if g_optimizer == "adam":
        g_opt = mg.Adam(G.parameters(), lr=g_lr, betas=(0.5, 0.999))
    else:
        g_opt = mg.SGD(G.parameters(), lr=g_lr)
    d_opt = mg.Adam(D.parameters(), lr=1e-3, betas=(0.5, 0.999))
    return GAN(G, D, latent_dim=1, g_optimizer=g_opt, d_optimizer=d_opt,
               loss=LOSSES[g_loss], rng=seed + 2000)


gan = make_gan()
print("G:", gan.G)
print("D:", gan.D)

# %% [markdown]
# ## 3. Training, watched as in Figure 1
#
# We train for `STEPS` generator updates with batches of 128 real numbers. At a few
# chosen steps we keep a *snapshot* (samples of $G$ with their $z$, and $D$'s curve), and
# every `FRAME_EVERY` steps a frame for the animation. `plot.snapshot_1d` copies what a
# frame needs (samples and $D$ on a grid of points), so collecting one is cheap.

# %%
batch_rng = np.random.default_rng(3)
z_show = mg.to_device(np.sort(np.random.default_rng(5).standard_normal((2000, 1)), axis=0).astype(np.float32))  # fixed z ~ N(0, 1)


def snapshot(gan, step, record=None):
    # G on the same 2000 draws of z every time, so that the lines z -> G(z) can be compared.
    fake = gan.G.eval()(z_show)
    gan.G.clear_cache()
    gan.G.train()
    return plot.snapshot_1d(real_eval, fake, gan, step=step, info=record, lim=LIM, z=z_show)


panels, frames = {0: snapshot(gan, 0)}, [snapshot(gan, 0)]
start = time.perf_counter()
for step in range(1, STEPS + 1):
    record = gan.train_step(data.sample(128, rng=batch_rng))
    if step in SNAPSHOTS:
        panels[step] = snapshot(gan, step, record)
    if step % FRAME_EVERY == 0:
        frames.append(snapshot(gan, step, record))
elapsed = time.perf_counter() - start
final = mg.to_numpy(gan.sample(20000, rng=7))
print(f"{STEPS} steps in {elapsed:.1f} s;  G's samples: mean {final.mean():.3f}, std {final.std():.3f}"
      f"  (data: mean 4.000, std 0.500)")
print(f"last step: mean D(real) {record['d_real']:.3f}, mean D(G(z)) {record['d_fake']:.3f}")

# %% [markdown]
# The row below is our version of Figure 1. In every panel the black dotted curve is the
# data density, the green curve the generator's density (a kernel estimate from its
# samples), and the blue dashed curve $D(x)$, read on the right-hand axis. Under the
# x-axis, thin green lines join a value of $z$ (lower line) to $G(z)$ (upper line): they
# show how the generator moves and stretches the noise.
#
# * At step 0 the generator squeezes all its noise into a narrow bump near 0, far from
#   the data, and $D$ has not learned anything yet.
# * After a few hundred steps $D$ has become a good classifier: high to the right, where
#   the data are, low over the generator's bump. Its slope is what pushes $G$ to the
#   right (the gradient $\partial D / \partial x$ of chapter 6).
# * As $p_g$ slides onto $p_\text{data}$, $D$'s curve loses its slope over the data, and
#   at the end it sits near $\tfrac12$ wherever there are samples: the equilibrium
#   $D^* \equiv \tfrac12$. Except on the far right, where $D$ rises again. That rise is
#   not noise: it is $D$ pointing at the part of the data the generator misses. The data
#   have a tail beyond $x = 5$ (2.3% of a Gaussian of mean 4 and std 0.5 lies two
#   standard deviations up), while the generator's samples stop short of it (the cell
#   below prints both). There $p_\text{data} > 0$ and $p_g \approx 0$, so $D^* = 1$: $D$
#   is right to call that region real, and its slope is what would push $G$'s right edge
#   further out. A rising $D$ where $G$ has no samples is the missing tail, this chapter's
#   lesson about reading $D$, not an extrapolation to ignore. (The left side reads the
#   same way, reversed: where $G$'s tail has samples and the data have none,
#   $D^* = 0$, and $D$ is near 0. Only where neither density has any mass is $D^*$
#   undefined, and $D$ whatever its weights extrapolate.)

# %%
fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.0))
for ax, (step, frame) in zip(axes, panels.items()):
    plot.plot_1d(frame["real"], frame["fake"], discriminator=lambda x, f=frame: np.interp(x[:, 0], f["grid_x"], f["d_grid"]),
                 ax=ax, lim=LIM, z=frame["z"], data_pdf=data.pdf, title=f"step {step}")
    if ax is not axes[0]:
        ax.get_legend().remove()
fig.tight_layout()
plt.show()
print(f"G's largest sample (of 20,000): {final.max():.2f};  "
      f"share of the data above 5: {np.mean(real_eval > 5):.1%}, of G's samples: {np.mean(final > 5):.2%}")

# %% [markdown]
# The same run as an animation, one frame every `FRAME_EVERY` steps, written to
# `ch07_training.gif` in the current folder (open it in a browser or an image viewer).
# The cell shows the last frame.

# %%
anim = plot.animate_1d(frames, "ch07_training.gif", fps=8, lim=LIM, data_pdf=data.pdf,
                       title="1-D GAN")
print("wrote ch07_training.gif with", len(frames), "frames")
anim

# %% [markdown]
# The losses tell the same story in numbers. `plot.plot_losses` draws `gan.history`, the
# record of every `train_step`: the discriminator loss (the sum of the real and fake
# cross-entropies) settles at $2 \log 2 \approx 1.386$, the value for $D \equiv \tfrac12$,
# and the mean outputs $D(x)$ and $D(G(z))$ meet at one half.

# %%
plot.plot_losses(gan.history, title="1-D GAN, non-saturating loss")

# %% [markdown]
# ## 4. Two generator losses, and why the original one stalls
#
# In the game, $G$ minimises $\log(1 - D(G(z)))$: the **minimax** loss. The paper
# itself notes that this works badly in practice and trains $G$ to *maximise*
# $\log D(G(z))$ instead, the **non-saturating** loss $-\log D(G(z))$. Both are
# smallest when $D(G(z)) = 1$, so both push the fakes the same way. The difference is in
# how hard they push.
#
# Let $\ell$ be D's logit for a fake, $D(G(z)) = \sigma(\ell)$, and use
# $\frac{d}{d\ell} \log \sigma(\ell) = 1 - \sigma(\ell)$ and
# $\frac{d}{d\ell} \log(1 - \sigma(\ell)) = -\sigma(\ell)$:
#
# $$
# \text{minimax: } L = \log\big(1 - \sigma(\ell)\big), \quad \frac{\partial L}{\partial \ell} = -\sigma(\ell);
# \qquad
# \text{non-saturating: } L = -\log \sigma(\ell), \quad \frac{\partial L}{\partial \ell} = \sigma(\ell) - 1 .
# $$
#
# Everything the generator learns flows through this number: the gradient reaching G's
# weights is $\partial L / \partial \ell$ times D's input gradient times G's own Jacobian
# (chapter 6). Early in training the fakes are bad and D rejects them confidently,
# $\sigma(\ell) \approx 0$. Then the minimax gradient $-\sigma(\ell)$ is almost zero: the
# generator gets no signal precisely when it most needs one. The non-saturating gradient
# is then $\approx -1$, as large as it ever gets. Near the equilibrium, $\sigma(\ell)
# \approx \tfrac12$, the two are equal in size.
#
# In minigan each loss is an object of `minigan.gan_losses` with one method per player:
# `loss.discriminator(real_logits, fake_logits)` and `loss.generator(fake_logits)`, each
# returning the loss and its gradient with respect to the logits (the formulas above are
# written out in their docstrings). `Minimax()` and `NonSaturating()` share the
# discriminator half and differ only in `generator`, which we call on a range of logits
# for both. (It returns the gradient of the *mean* over the batch, so we multiply by the
# batch size to get the per-sample value.)

# %%
logits = np.linspace(-9, 9, 400, dtype=np.float32)[:, None]
d_of_fake = 1.0 / (1.0 + np.exp(-logits[:, 0].astype(np.float64)))

fig, ax = plt.subplots(figsize=(7, 4))
for g_loss, colour in (("minimax", "tab:red"), ("non-saturating", "tab:green")):
    _, dlogits = LOSSES[g_loss].generator(logits)
    ax.plot(d_of_fake, np.abs(dlogits[:, 0]) * len(logits), color=colour, lw=2,
            label=f"{g_loss}: |dL/dlogit| = " + ("D(G(z))" if g_loss == "minimax" else "1 - D(G(z))"))
ax.set_xscale("log")
ax.set_xlabel("D(G(z)): how real D finds the fake (log scale)")
ax.set_ylabel("|dL / dlogit| per sample")
ax.axvspan(d_of_fake.min(), 0.01, color="0.9", label="D confidently rejects the fake")
ax.set_title("The generator's gradient with respect to D's logit")
ax.legend(fontsize=8, loc="center left")
ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# ### The same thing in a training run
#
# To see the stall, we recreate the situation the paper warns about: a discriminator that
# has already won. We build a fresh GAN, then train *only* D for a while against the
# untrained generator, calling the named step `discriminator_step` directly (G is never
# updated). Then we train both players with each generator loss, from identical copies of
# that starting point, and watch the mean of G's samples and the norm of G's gradient.
# `train_step` does not report that norm, but it is easy to read: the optimiser updates the
# parameters and leaves the gradients alone, so after a step `G.parameters()` still holds
# the gradient that step used, and `grad_norm` below adds up its squares.
#
# The generator uses plain SGD here. With SGD the size of the step is the size of the
# gradient, so a vanishing gradient is a vanishing step. (Adam divides each step by a
# running estimate of the gradient's size and hides much of the effect; exercise T7.2
# lets you see how much.)

# %%
PRETRAIN = 200 if QUICK else 1000
COMPARE = 100 if QUICK else 400


def grad_norm(model):
    """The norm of all of a model's parameter gradients together, sqrt(sum of g^2)."""
    return float(np.sqrt(sum(float((g * g).sum()) for _, g in model.parameters())))


def stalled_start(g_loss):
    """A GAN whose D has been trained alone for PRETRAIN steps against the untrained G."""
    gan = make_gan(g_loss=g_loss, g_optimizer="sgd", g_lr=1e-2, seed=1)
    rng = np.random.default_rng(11)
    for _ in range(PRETRAIN):
        fake = gan.generate(gan.sample_noise(128))
        gan.discriminator_step(mg.to_device(data.sample(128, rng=rng)), fake)
    return gan


runs = {}
for g_loss in ("minimax", "non-saturating"):
    g = stalled_start(g_loss)
    rng = np.random.default_rng(12)
    means, norms = [float(mg.to_numpy(g.sample(2000, rng=0)).mean())], []
    for step in range(COMPARE):
        g.train_step(data.sample(128, rng=rng))
        norms.append(grad_norm(g.G))              # the gradient of the G step just taken
        means.append(float(mg.to_numpy(g.sample(2000, rng=0)).mean()))
    runs[g_loss] = (np.array(means), np.array(norms))
    first = g.history.records[0]
    print(f"{g_loss:>15}: at the start D(G(z)) = {first['d_fake']:.4f}, |grad G| = {norms[0]:.2e};"
          f"  mean of G's samples after {COMPARE} steps: {means[-1]:.2f}")

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
for g_loss, colour in (("minimax", "tab:red"), ("non-saturating", "tab:green")):
    means, norms = runs[g_loss]
    ax1.plot(np.arange(len(means)), means, color=colour, lw=2, label=g_loss)
    ax2.plot(np.arange(1, len(norms) + 1), norms, color=colour, lw=1.2, label=g_loss)
ax1.axhline(4.0, color="black", ls=":", label="data mean")
ax1.set_xlabel("generator step")
ax1.set_ylabel("mean of G's samples")
ax1.set_title("Where the generator is")
ax1.legend(fontsize=8)
ax2.set_yscale("log")
ax2.set_xlabel("generator step")
ax2.set_ylabel("norm of G's gradient")
ax2.set_title("How hard it is pushed")
ax2.legend(fontsize=8)
for ax in (ax1, ax2):
    ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()


# %% [markdown]
# With the minimax loss the generator barely moves: D rejects its samples with
# $D(G(z)) \approx 0.001$, so every per-sample gradient is about a thousandth of its
# non-saturating counterpart, and the gradient norm starts two to three orders of magnitude
# smaller and stays small. The non-saturating generator, from the same starting point and
# the same learning rate, jumps onto the data within a few dozen steps, overshoots, and
# settles around it in damped swings; once it is there $D(G(z))$ is near $\tfrac12$ and
# its gradient shrinks too, as it should.
#
# Both losses have the same fixed point ($p_g = p_\text{data}$, $D \equiv \tfrac12$); the
# non-saturating loss is simply the one that can reach it from a bad start. That is why it
# is minigan's default (`GAN(..., loss=NonSaturating())`, what a `GAN` gets when no `loss`
# is given), and why every later chapter uses it.
#
# ## Summary
#
# * The GAN game $\min_G \max_D V(D, G)$ has the optimal discriminator
#   $D^* = p_\text{data} / (p_\text{data} + p_g)$ and its equilibrium at $p_g = p_\text{data}$,
#   $D^* \equiv \tfrac12$, $V = -\log 4$.
# * `GAN.train_step` alternates one D step and one G step; snapshots of $p_g$ and $D$
#   (`plot.snapshot_1d`, `plot.plot_1d`, `plot.animate_1d`) show $G$ sliding onto the data
#   and $D$ flattening to one half.
# * The minimax generator loss has gradient $-D(G(z))$ with respect to D's logit, which
#   vanishes when D wins; the non-saturating loss has $D(G(z)) - 1$, largest exactly then.
#   In minigan each is a loss object (`Minimax()`, `NonSaturating()`) passed as `loss=`;
#   the training loop is the same for both.
#
# ## Exercises

# %% [markdown]
# **Exercise T7.1 — the optimal discriminator, measured.** Write
# `optimal_discriminator(x, p_data, fake)` that returns $D^*(x)$ at the points `x` (shape
# `(K,)`), given a callable `p_data` (the data density) and generated samples `fake`
# (shape `(M,)`). Estimate $p_g$ with a histogram of `fake` (use `np.histogram` with
# `density=True` and 60 bins over the range of `x`). The check compares $D^*$ with the
# discriminator we trained, at an early snapshot where $D$ is far from flat: the two curves
# should agree where there are samples (they cannot agree where neither density has any
# mass: there $D^*$ is undefined, and D outputs whatever its weights extrapolate).

# %%
def optimal_discriminator(x, p_data, fake, bins=60):
    """D*(x) = p_data(x) / (p_data(x) + p_g(x)), p_g estimated by a histogram of fake."""
    # BEGIN SOLUTION Exercise T7.1: the optimal discriminator from p_data and a histogram of p_g
    x = np.asarray(x, dtype=np.float64)
    hist, edges = np.histogram(fake, bins=bins, range=(x.min(), x.max()), density=True)
    idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, bins - 1)
    p_g = hist[idx]
    p_d = p_data(x[:, None])
    with np.errstate(invalid="ignore", divide="ignore"):
        return p_d / (p_d + p_g)
    # END SOLUTION


# %%
check_step = SNAPSHOTS[2]
frame = panels[check_step]
xs = frame["grid_x"]
d_star = optimal_discriminator(xs, data.pdf, frame["fake"][:, 0])
d_trained = frame["d_grid"]
fake_mass = np.histogram(frame["fake"][:, 0], bins=60, range=(xs.min(), xs.max()), density=True)[0]
has_mass = (data.pdf(xs[:, None]) > 0.05) | (np.interp(xs, np.linspace(xs.min(), xs.max(), 60), fake_mass) > 0.05)
gap = np.nanmean(np.abs(d_star[has_mass] - d_trained[has_mass]))
print(f"step {check_step}: mean |D* - D| where there is mass: {gap:.3f}")

fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(xs, np.where(has_mass, d_star, np.nan), color="tab:purple", lw=2,
        label="D* from the densities (where either has mass)")
ax.plot(xs, d_trained, color=plot.D_COLOUR, ls="--", lw=2, label="trained D")
ax.set_xlabel("x")
ax.set_ylabel("probability of real")
ax.set_title(f"Optimal and trained discriminator at step {check_step}")
ax.legend(fontsize=8)
plt.show()
assert d_star.shape == xs.shape
assert gap < 0.35, gap
print("T7.1 ok")


# %% [markdown]
# **Exercise T7.2 — the stall under Adam.** Repeat the comparison of section 4 with Adam
# for the generator instead of SGD. Write `adam_comparison(steps)` that builds the stalled
# start for both losses (same pretraining as `stalled_start`, but `g_optimizer="adam"` and
# `g_lr=1e-3`), trains each for `steps` steps and returns a dict
# `{g_loss: mean of G's samples after the steps}`. Does the minimax generator still stall?
# Explain the difference with the SGD run using Adam's update
# $\theta \leftarrow \theta - \eta\, \hat m / (\sqrt{\hat v} + \epsilon)$:
# what happens to the step when every gradient is multiplied by $10^{-3}$?

# %%
def adam_comparison(steps):
    """{g_loss: mean of G's samples after `steps` steps from a D-pretrained start, G on Adam}."""
    # BEGIN SOLUTION Exercise T7.2: the minimax/non-saturating comparison with Adam for G
    out = {}
    for g_loss in ("minimax", "non-saturating"):
        g = make_gan(g_loss=g_loss, g_optimizer="adam", g_lr=1e-3, seed=1)
        rng = np.random.default_rng(11)
        for _ in range(PRETRAIN):
            g.discriminator_step(mg.to_device(data.sample(128, rng=rng)), g.generate(g.sample_noise(128)))
        rng = np.random.default_rng(12)
        for _ in range(steps):
            g.train_step(data.sample(128, rng=rng))
        out[g_loss] = float(mg.to_numpy(g.sample(2000, rng=0)).mean())
    return out
    # Adam's step is m_hat / sqrt(v_hat): scaling every gradient by c scales both m_hat
    # and sqrt(v_hat) by c, so the step does not change. The minimax generator still gets
    # a tiny *gradient*, but Adam turns it into a full-sized step; what is lost is only
    # the weighting between samples (minimax listens to the fakes D already likes).
    # END SOLUTION


# %%
adam_means = adam_comparison(COMPARE)
sgd_means = {g_loss: runs[g_loss][0][-1] for g_loss in runs}
for g_loss in adam_means:
    print(f"{g_loss:>15}: mean after {COMPARE} steps  SGD {sgd_means[g_loss]:.2f}   Adam {adam_means[g_loss]:.2f}")
assert set(adam_means) == {"minimax", "non-saturating"}
assert adam_means["minimax"] > sgd_means["minimax"] + 0.2, "Adam should move the minimax generator further"
print("T7.2 ok")


# %% [markdown]
# **Exercise T7.3 — the minimax gradient by hand.** Without calling `Minimax().generator`,
# write `minimax_loss_and_grad(logits)` that returns the minimax generator loss
# $L = \frac1n \sum_i \log(1 - \sigma(\ell_i))$ and its gradient $\partial L / \partial \ell$
# for a column of logits of shape `(n, 1)`. Compute $\log(1 - \sigma(\ell))$ stably:
# it equals $-\operatorname{softplus}(\ell) = -\big(\max(\ell, 0) + \log(1 + e^{-|\ell|})\big)$,
# which never overflows (chapter 3). The check compares with the library, including
# logits of $\pm 80$ where a naive formula gives `inf` or `nan`.

# %%
def minimax_loss_and_grad(logits):
    """(mean log(1 - sigmoid(l)), dL/dl) for logits of shape (n, 1), float64 or float32."""
    # BEGIN SOLUTION Exercise T7.3: the minimax generator loss and its gradient, stably
    l = np.asarray(logits, dtype=np.float64)
    softplus = np.maximum(l, 0.0) + np.log1p(np.exp(-np.abs(l)))
    sig = np.where(l >= 0, 1.0 / (1.0 + np.exp(-np.abs(l))), np.exp(-np.abs(l)) / (1.0 + np.exp(-np.abs(l))))
    n = l.shape[0]
    return float(-softplus.mean()), -sig / n
    # END SOLUTION


# %%
check_logits = np.array([[-80.0], [-5.0], [-0.3], [0.0], [2.0], [80.0]])
loss_mine, grad_mine = minimax_loss_and_grad(check_logits)
loss_lib, grad_lib = Minimax().generator(check_logits)
print("loss", loss_mine, "library", float(loss_lib))
print("grad", grad_mine.ravel(), "\nlib ", np.asarray(grad_lib).ravel())
assert np.isfinite(loss_mine) and np.all(np.isfinite(grad_mine))
assert np.isclose(loss_mine, float(loss_lib), rtol=1e-6)
assert np.allclose(grad_mine, grad_lib, rtol=1e-6, atol=1e-12)
print("T7.3 ok")
