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
#     chapter: 8
#     needs_mnist: false
# ---

# %% [markdown]
# # Chapter 8 — 2-D mixtures: mode collapse, and how to measure and fix it
#
# On one Gaussian (chapter 7) a GAN behaves. Give it data with several separate modes and
# the best-known GAN failure appears: the generator puts all its samples on one or two
# modes and ignores the rest, or hops from mode to mode as the discriminator catches up.
# This is **mode collapse**. Each sample it draws may look perfect; the *set* of samples
# is wrong. In this chapter we watch it happen in 2-D, measure it with the protocol used
# in the literature, and try the standard remedies.
#
# **What you will learn**
#
# 1. Why alternating gradient steps let the generator collapse, and what it looks like
#    (an animation of the samples and of D's decision surface over training).
# 2. How mode coverage is measured on the 2-D mixtures (the protocol of VEEGAN and
#    PacGAN: modes captured, high-quality samples, reverse KL), with `minigan.metrics`.
# 3. What more discriminator steps per generator step ($k$) and one-sided label
#    smoothing change, in a small table of measured runs.
# 4. **Packing** (PacGAN): a discriminator that judges $m$ samples at once, the math of
#    why that exposes collapse, and the numbers that show it fixing it.
#
# The full run of this chapter takes a few minutes on a laptop CPU.

# %%
import os

QUICK = os.environ.get("MINIGAN_QUICK", "0") not in ("", "0")  # the test suite sets MINIGAN_QUICK=1

import time

import matplotlib.pyplot as plt
import numpy as np

import minigan as mg
from minigan import metrics, plot
from minigan.data import ring8
from minigan.layers import Pack, forward_in_eval_mode
from minigan.models import build_gan, lr_factor

STEPS = 200 if QUICK else 2000       # generator updates per run
SEEDS = [4] if QUICK else [0, 1, 2, 3, 4, 5]   # section 4 trains every configuration once per seed
DEMO_SEED = 4                        # the run watched in sections 2 and 3 (one that collapses)
BATCH = 256
mg.seed(0)
print("minigan", mg.__version__, "| quick mode" if QUICK else "| full mode")

# %% [markdown]
# ## 1. The data: eight small Gaussians on a ring
#
# `ring8` is the standard test set of the mode-collapse papers: eight Gaussians with
# centres $c_k = (\cos\frac{2\pi k}{8}, \sin\frac{2\pi k}{8})$ on the unit circle, each with
# standard deviation $\sigma = 0.01$, and equal weights,
#
# $$
# p_\text{data}(x) = \frac18 \sum_{k=0}^{7} \mathcal{N}\big(x;\ c_k,\ \sigma^2 I\big).
# $$
#
# The modes are tiny (the whole data set fits in eight dots) and far apart (about 0.77
# between neighbours, 77 standard deviations). Between them the density is zero. A
# generator is a *continuous* map from a connected noise space, so to cover all eight it
# must learn to tear the noise into eight pieces and squeeze each onto its dot.

# %%
data = ring8()
real_eval = data.sample(2000, rng=1)
LIM = 1.6
fig = plot.plot_2d(real_eval, real_eval[:0], centres=data.centres, lim=LIM, title="ring8: 2000 samples")
fig

# %% [markdown]
# ## 2. A GAN that collapses
#
# We train a plain GAN built by `minigan.models.build_gan` from a config dict: a 16-dimensional
# noise, G and D each with two hidden layers of 128 ReLU units, Adam with learning rate
# $10^{-3}$ and $\beta_1 = 0.5$, batches of 256, the non-saturating loss.
# Two refinements help the samples become *precise* (the modes have $\sigma = 0.01$, and
# the protocol below only counts a sample within $3\sigma$ of a centre): the learning
# rates decay linearly to 1% over the second half of the run (`lr_factor` computes the
# factor from the config), and samples are drawn from an exponential moving average of
# G's weights (the config's `"ema_decay": 0.99`, from which `build_gan` makes the object
# `EMA(G, 0.99)` that the GAN updates after every generator step and `gan.sample` draws
# from). Neither touches the game itself.
#
# `train` below is the whole training loop. It takes config changes as keyword
# arguments, so that later sections can vary one thing at a time, and it can call a
# function every few steps to record what it sees. The config is only a convenient way
# to describe a GAN: every variant we try below becomes an *object* that `build_gan` puts
# in its place (a loss object, a layer of D, the `EMA`), and the loop, `gan.train_step`,
# stays the same for all of them.

# %%
CONFIG = {
    "latent_dim": 16, "data_dim": 2, "g_hidden": [128, 128], "d_hidden": [128, 128],
    "activation": "relu", "lr_g": 1e-3, "lr_d": 1e-3, "betas": [0.5, 0.999],
    "lr_decay_start": 0.5, "lr_final": 0.01, "ema_decay": 0.99,
}


def train(seed=0, steps=STEPS, watch=None, every=50, **changes):
    """Train a GAN with CONFIG updated by `changes`; call watch(gan, step, record) every `every` steps."""
    config = {**CONFIG, **changes}
    gan = build_gan(config, seed=seed)
    batches = np.random.default_rng(100 + seed)
    for step in range(steps):
        factor = lr_factor(step, steps, config)
        gan.g_optimizer.lr = config["lr_g"] * factor
        gan.d_optimizer.lr = config["lr_d"] * factor
        record = gan.train_step(data.sample(BATCH, rng=batches))
        if watch is not None and (step + 1) % every == 0:
            watch(gan, step + 1, record)
    return gan


def coverage(gan):
    """The VEEGAN/PacGAN protocol: 2500 samples, scored against the mixture's centres."""
    return metrics.mode_coverage(gan.sample(2500, rng=0), data.centres, data.std)


# %% [markdown]
# While it trains we record three things every 50 steps (10 in quick mode): an animation
# frame (`plot.snapshot_2d`: 500 samples drawn from the *same* noise every time, and D's
# probability of "real" on a grid), the mode coverage of the moment, and at four chosen
# steps a panel for a static figure.

# %%
EVERY = 10 if QUICK else 50
PANEL_STEPS = [50, 100, 150, 200] if QUICK else [200, 500, 1000, 2000]
frames, curve = [], []
fig_panels, panel_axes = plt.subplots(1, len(PANEL_STEPS), figsize=(4.4 * len(PANEL_STEPS), 4.2))
panel_axes = list(panel_axes)


def watch(gan, step, record):
    fake = gan.sample(500, rng=1)
    frames.append(plot.snapshot_2d(real_eval, fake, gan, info=record, lim=LIM))
    curve.append((step, coverage(gan)))
    if step in PANEL_STEPS:
        ax = panel_axes[PANEL_STEPS.index(step)]
        plot.plot_2d(real_eval, fake, discriminator=gan, centres=data.centres, ax=ax, lim=LIM,
                     title=f"step {step}", grid_size=80)
        if step != PANEL_STEPS[0]:
            ax.get_legend().remove()


start = time.perf_counter()
plain = train(seed=DEMO_SEED, watch=watch, every=EVERY)
print(f"trained in {time.perf_counter() - start:.1f} s")
fig_panels.tight_layout()
plt.show()

# %% [markdown]
# Green points are generated, black are real, orange rings mark the eight centres; the
# background is D's opinion (blue: "real", red: "fake", dashed: $D = \tfrac12$). Instead of
# spreading over the ring, all the generated samples gather into one tight cluster, and
# that cluster wanders: sometimes near a mode, often *between* modes, where there is no
# data at all. The animation shows the dynamics: D colours the region around the cluster
# red (the fakes are there, so "fake" is the right answer there), the cluster slides
# down D's slope towards whatever D currently calls real, and D's surface follows it.
# The GIF is written to `ch08_mode_collapse.gif` in the current folder; the cell shows its
# last frame.
#
# Not every run collapses this badly. GAN training is chaotic, and whether a run collapses
# depends on its seed: we watch seed 4, one that does, and section 4 trains six seeds of
# every setting to see how often it happens.

# %%
anim = plot.animate_2d(frames, "ch08_mode_collapse.gif", fps=8, centres=data.centres,
                       title="plain GAN on ring8")
print("wrote ch08_mode_collapse.gif with", len(frames), "frames")
anim

# %% [markdown]
# **Why it happens.** The theory of chapter 7 is about the *game*: if D were always the
# optimal $D^*$ for the current G, then G's loss would be a divergence between
# $p_\text{data}$ and $p_g$, and a generator missing modes would pay for it. But we do not
# solve the inner maximisation; we take one gradient step on each player in turn. For a
# *fixed* D, the best response of G is not to spread out at all: it is to put every sample
# at the single point where D is most convinced, a point mass. Gradient steps move G
# towards that response; D then learns that this region is fake and lowers its score
# there; G's best response moves to another region; and so on. Nothing in one player's
# gradient step rewards *diversity*, because each sample is judged alone: D cannot see
# that ten thousand samples are all the same dot.
#
# ## 3. Measuring mode coverage
#
# To compare remedies we need numbers. The VEEGAN (Srivastava et al. 2017) and PacGAN
# (Lin et al. 2018) papers score a mixture GAN like this, and `metrics.mode_coverage`
# implements it:
#
# 1. Draw $N = 2500$ samples from G. Assign each to its nearest centre.
# 2. A sample is **high quality** (HQ) if it lies within $3\sigma$ of that centre
#    ($3 \times 0.01$ for ring8).
# 3. A mode is **captured** if at least one HQ sample falls nearest to it.
# 4. With $p_k$ the fraction of HQ samples at mode $k$ (of $K$), the **reverse KL** to the
#    uniform distribution over modes is
#    $$
#    \mathrm{KL}(p \,\|\, u) = \sum_{k=1}^{K} p_k \log \frac{p_k}{1/K} = \sum_k p_k \log (K p_k),
#    $$
#    0 when the HQ samples are spread evenly over all $K$ modes, and $\log(K/c)$ when they
#    are spread evenly over only $c$ of them ($\log 8 = 2.08$ for a single mode).
#
# "Modes captured" says *which* modes are reached at all, HQ says how *precise* the
# samples are, and the reverse KL says how *evenly* they are shared. A collapsed
# generator can score a perfect HQ fraction with one mode captured.

# %%
m = coverage(plain)
print({k: v for k, v in m.items() if k != "counts"})
print("HQ samples per mode:", m["counts"])

steps_seen = [s for s, _ in curve]
fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
axes[0].plot(steps_seen, [c["modes_captured"] for _, c in curve], "o-", ms=3)
axes[0].set_ylim(-0.3, 8.3)
axes[0].set_title("modes captured (of 8)")
axes[1].plot(steps_seen, [c["high_quality_fraction"] for _, c in curve], "o-", ms=3, color="tab:green")
axes[1].set_ylim(-0.02, 1.02)
axes[1].set_title("high-quality fraction")
axes[2].plot(steps_seen, [c["reverse_kl"] for _, c in curve], "o-", ms=3, color="tab:red")
axes[2].axhline(np.log(8), color="0.5", ls=":", label="log 8: one mode")
axes[2].set_title("reverse KL to uniform")
axes[2].legend(fontsize=8)
for ax in axes:
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
fig.suptitle("The plain GAN on ring8, measured every few steps", y=1.02)
plt.show()

# %% [markdown]
# The numbers agree with the pictures. At no time are more than a few modes captured,
# and hardly any sample is high quality: the cluster is rarely sitting *on* a mode,
# because it keeps being chased away. The reverse KL, computed from the few HQ samples
# there are, sits at or near its maximum $\log 8$. (A collapsed generator can also fail
# more quietly: a precise cluster on one mode would score a high HQ fraction with one
# mode captured. That is why the protocol reports all three numbers; any one alone can
# hide the failure.)
#
# ## 4. Two classic remedies: $k$ discriminator steps, and label smoothing
#
# * **$k$ steps of D per step of G** (`d_steps=k`; Algorithm 1 of Goodfellow et al. has
#   this $k$). A discriminator closer to its optimum $D^*$ should make G's loss closer to
#   the divergence the theory promises.
# * **One-sided label smoothing** (config `label_smoothing=0.2`, which `build_gan` turns
#   into the loss object `NonSaturating(label_smoothing=0.2)`; Salimans et al. 2016): train D
#   towards $0.8$ instead of $1$ on real data, fakes still towards $0$. The optimal
#   discriminator becomes $D^*(x) = 0.8\, p_\text{data}(x) / (p_\text{data}(x) + p_g(x))$: it can
#   never be fully sure, its logits stay moderate, and the gradient it hands G stays smooth
#   instead of a cliff around the occupied modes. (Only the *real* side is smoothed:
#   smoothing the fake targets would let $D^*$ stay positive where only fakes live, and G
#   would have no reason to leave.)
#
# We train each setting with the same six seeds and score the final generator.

# %%
demo_runs = {}   # the DEMO_SEED run of every setting, for the pictures at the end


def score(**changes):
    """Train once per seed with CONFIG changed by `changes`; the mean coverage numbers."""
    rows, seconds, trained = [], 0.0, 0
    for seed in SEEDS:
        start = time.perf_counter()
        if not changes and seed == DEMO_SEED:
            gan = plain                           # trained in section 2 already
        else:
            gan, trained = train(seed=seed, **changes), trained + 1
            seconds += time.perf_counter() - start
        if seed == DEMO_SEED:
            demo_runs[tuple(sorted(changes.items()))] = gan
        rows.append(coverage(gan))
    seconds /= max(trained, 1)
    return {"modes": np.mean([r["modes_captured"] for r in rows]),
            "hq": np.mean([r["high_quality_fraction"] for r in rows]),
            "kl": np.mean([r["reverse_kl"] for r in rows]), "seconds": seconds,
            "per_seed": [r["modes_captured"] for r in rows]}


def print_table(results):
    print(f"{'setting':<28}{'modes (of 8)':>14}{'per seed':>21}{'HQ':>8}{'rev. KL':>9}{'s/run':>8}")
    for name, r in results.items():
        print(f"{name:<28}{r['modes']:>14.1f}{str(r['per_seed']):>21}{r['hq']:>8.1%}{r['kl']:>9.2f}{r['seconds']:>8.1f}")


results = {
    "plain GAN (k=1)": score(),
    "k=3 D steps per G step": score(d_steps=3),
    "label smoothing 0.2": score(label_smoothing=0.2),
}
print_table(results)

# %% [markdown]
# What the table shows, in our runs (your numbers can differ a little: GAN training is
# chaotic, and a different BLAS can send the same seed down another path):
#
# * **The plain GAN is a lottery.** One seed of the six collapses completely (seed 4, the
#   run of section 2). The others end with all eight modes captured, but unevenly: their
#   reverse KL (up to about 1 in our runs) says that some modes get several times their
#   share of the samples and others hardly any, and few samples are high quality. "Modes
#   captured" alone would call those runs a success; the reverse KL does not.
# * **More D steps are not a reliable cure.** The seeds disagree (look at the "per seed"
#   column): a run may find all eight modes or stay stuck on a few. What the extra steps do
#   buy is *precision*: a discriminator nearer its optimum judges each sample more sharply,
#   and the HQ fraction jumps. They also cost $k$ times the discriminator work (the s/run
#   column). More D steps make D better at the question it is asked, "is this one sample
#   real?", and that question says nothing about diversity.
# * **Label smoothing helps a lot here.** With the real target at 0.8 the discriminator's
#   surface stays gentle, and the generator's samples spread over the ring instead of being
#   chased around as one cluster: every seed captures all eight modes, and shares the
#   samples between them much more evenly than the plain GAN. This is not guaranteed in general (it is a regulariser,
#   not a cure), but on this problem it is cheap and it works.
#
# Neither remedy changes the basic blindness: D still looks at one sample at a time.
#
# ## 5. Packing: let D judge several samples at once (PacGAN)
#
# Lin et al. (2018) proposed a direct fix. D receives $m$ samples *concatenated*, all real
# or all fake, and says whether the pack is real. Nothing else changes: G is the same, the
# losses are the same. In minigan packing is a layer: `Pack(m)` (from `minigan.layers`)
# reshapes a batch of $n$ samples into $n/m$ packs (consecutive rows side by side), and
# with the config key `pack=m` `build_gan` puts it at the front of D, followed by a first
# dense layer of input width $m \cdot d$. Its backward pass un-packs the gradient, so the
# generator step still gets one arrow $\partial L_G/\partial x$ per sample. The GAN itself
# does not know that D packs: it hands D a batch of samples, as always.
#
# **Why that sees collapse.** Look at the packs as samples from a new distribution: $m$
# independent draws from $p_\text{data}$ for real packs, from $p_g$ for fake ones. Take a
# generator that covers only $c$ of the $K$ modes evenly. Each fake sample, alone, looks
# real; but the probability that all $m$ members of a pack land on the *same* mode is
# $c^{1-m}$ for the fakes and $K^{1-m}$ for real packs:
#
# $$
# \text{same-mode packs:}\quad
# \underbrace{K^{1-m}}_{\text{real}} \ \text{ vs } \ \underbrace{c^{1-m}}_{\text{fake}},
# \qquad K = 8,\ c = 2:\quad m = 2:\ \tfrac18 \text{ vs } \tfrac12, \qquad m = 4:\ \tfrac1{512} \text{ vs } \tfrac18 .
# $$
#
# A feature as simple as "are the members of this pack close to each other?" separates
# real from fake packs, and D learns it. Lin et al. make this precise: the total variation
# distance between the *pack* distributions grows much faster with the missing mass for
# distributions that drop modes, so the packed discriminator penalises exactly the
# collapsed generators. The cost is small: the first layer of D is $m$ times wider, and D
# processes $n/m$ rows instead of $n$.

# %%
packed = build_gan({**CONFIG, "pack": 4}, seed=0)
x = mg.to_device(data.sample(8, rng=2))
print("D:", packed.D)
print("a batch", x.shape, "-> Pack(4) ->", forward_in_eval_mode(packed.D[0], x).shape,
      "-> D's first dense layer", packed.D[1])

# %%
results["PacGAN2 (pack=2)"] = score(pack=2)
results["PacGAN4 (pack=4)"] = score(pack=4)
print_table(results)

# %% [markdown]
# Packing fixes the collapse: with `pack=2` or `pack=4`, every seed captures all eight
# modes and shares the samples evenly between them (the lowest reverse KL of the table),
# with the same architecture, learning rates and number of steps that, without packing,
# collapsed in one seed and covered the modes unevenly in the others. A packed step costs no more than a plain one: D's first
# layer is $m$ times wider but sees $m$ times fewer rows, and its later layers just see
# fewer rows. The HQ fraction shows what is left to do:
# 2000 steps of this small model do not make the samples precise on all eight modes, and
# in our runs `pack=4` sharpened more slowly than `pack=2` (each D update sees 64 packs
# instead of 128). Training longer pushes the HQ fraction up: the library's own ring8
# preset (`minigan.presets.preset("ring8")`, what `python -m minigan train --dataset ring8`
# uses) packs pairs too, and trains for several times as many steps.
#
# Finally, the final samples of each setting side by side (seed 4, the run of section 2):

# %%
finals = {"plain GAN": plain, "label smoothing 0.2": demo_runs[(("label_smoothing", 0.2),)],
          "pack=2": demo_runs[(("pack", 2),)]}
fig, axes = plt.subplots(1, len(finals), figsize=(4.4 * len(finals), 4.2))
for ax, (name, gan) in zip(axes, finals.items()):
    m = coverage(gan)
    plot.plot_2d(real_eval, gan.sample(1000, rng=3), centres=data.centres, ax=ax, lim=LIM,
                 title=f"{name}: {m['modes_captured']}/8 modes, KL {m['reverse_kl']:.2f}")
    if ax is not axes[0]:
        ax.get_legend().remove()
fig.tight_layout()
plt.show()


# %% [markdown]
# ## Summary
#
# * Alternating gradient steps let G chase whatever D currently calls real; judged one
#   sample at a time, nothing rewards diversity, and G collapses onto a few modes: in some
#   runs completely, in others it reaches every mode but with very uneven shares.
# * Mode coverage is measured with three numbers: modes captured, the fraction of
#   high-quality samples, and the reverse KL of the HQ samples' histogram to uniform
#   (`metrics.mode_coverage`).
# * More D steps sharpened the samples but did not reliably restore the missing modes;
#   one-sided label smoothing helped on this problem; packing (a `Pack(m)` layer at the
#   front of D, config `pack=m`) restored all eight modes at no extra cost per step,
#   because a packed D can see that fake packs lack diversity.
# * Apart from `d_steps=k`, a number of the loop itself, every variant is an object or a
#   layer (`NonSaturating(label_smoothing=...)` as the loss, `Pack(m)` in D, `EMA(G, decay)`
#   for sampling), which `build_gan` builds from the config; the training loop is the same
#   for all of them.
#
# ## Exercises

# %% [markdown]
# **Exercise T8.1 — the protocol by hand.** Write `my_mode_coverage(samples, centres, std)`
# returning `(modes_captured, hq_fraction, reverse_kl)` following the four steps of
# section 3 (use $0 \log 0 = 0$; with no HQ sample at all return $\log K$ for the KL, as
# the library does). The check compares your numbers with `metrics.mode_coverage` on the
# samples of every generator trained above.

# %%
def my_mode_coverage(samples, centres, std):
    """(modes captured, fraction of high-quality samples, reverse KL to uniform)."""
    # BEGIN SOLUTION Exercise T8.1: mode coverage (captured, HQ fraction, reverse KL) by hand
    x = np.asarray(mg.to_numpy(samples), dtype=np.float64)
    c = np.asarray(centres, dtype=np.float64)
    d = np.sqrt(((x[:, None, :] - c[None, :, :]) ** 2).sum(axis=-1))   # (N, K)
    nearest = d.argmin(axis=1)
    hq = d[np.arange(len(x)), nearest] <= 3 * std
    counts = np.bincount(nearest[hq], minlength=len(c))
    if counts.sum() == 0:
        return 0, 0.0, float(np.log(len(c)))
    p = counts / counts.sum()
    nz = p > 0
    return int((counts > 0).sum()), float(hq.mean()), float(np.sum(p[nz] * np.log(p[nz] * len(c))))
    # END SOLUTION


# %%
for name, gan in finals.items():
    x = gan.sample(2500, rng=0)
    mine = my_mode_coverage(x, data.centres, data.std)
    lib = metrics.mode_coverage(x, data.centres, data.std)
    print(f"{name:<22} yours {mine[0]}, {mine[1]:.4f}, {mine[2]:.4f}   library {lib['modes_captured']}, "
          f"{lib['high_quality_fraction']:.4f}, {lib['reverse_kl']:.4f}")
    assert mine[0] == lib["modes_captured"]
    assert np.isclose(mine[1], lib["high_quality_fraction"]) and np.isclose(mine[2], lib["reverse_kl"], atol=1e-9)
print("T8.1 ok")


# %% [markdown]
# **Exercise T8.2 — the reverse KL of a partial generator.** Show that a generator whose
# HQ samples are spread evenly over $c$ of the $K$ modes has reverse KL $\log(K/c)$, and
# that one putting a fraction $q$ of them on one mode and the rest evenly on the other
# $K-1$ has $q \log(Kq) + (1-q) \log\frac{K(1-q)}{K-1}$. Write `reverse_kl_formula(K, c=None, q=None)`
# for both cases and check it against `metrics.mode_coverage` on samples you build
# yourself: points placed exactly at the chosen centres.

# %%
def reverse_kl_formula(K, c=None, q=None):
    """log(K/c) for c evenly covered modes, or the one-heavy-mode formula for fraction q."""
    # BEGIN SOLUTION Exercise T8.2: closed forms of the reverse KL for partial coverage
    if c is not None:
        return float(np.log(K / c))
    return float(q * np.log(K * q) + (1 - q) * np.log(K * (1 - q) / (K - 1)))
    # END SOLUTION


# %%
centres = data.centres
for c in (1, 2, 4, 8):
    x = np.repeat(centres[:c], 100, axis=0)           # 100 points on each of the first c modes
    lib = metrics.mode_coverage(x, centres, data.std)["reverse_kl"]
    print(f"c={c}: formula {reverse_kl_formula(8, c=c):.4f}  library {lib:.4f}")
    assert np.isclose(reverse_kl_formula(8, c=c), lib)
x = np.concatenate([np.repeat(centres[:1], 300, axis=0), np.repeat(centres[1:], 100, axis=0)])
lib = metrics.mode_coverage(x, centres, data.std)["reverse_kl"]
print(f"q=0.3: formula {reverse_kl_formula(8, q=0.3):.4f}  library {lib:.4f}")
assert np.isclose(reverse_kl_formula(8, q=0.3), lib)
print("T8.2 ok")


# %% [markdown]
# **Exercise T8.3 — packing by hand.** (a) Write `pack_rows(x, m)` that turns a batch
# `(n, d)` into packs `(n/m, m*d)` exactly as the layer `Pack(m)` does (consecutive
# rows side by side). (b) Write `same_mode_probability(weights, m)`: the probability that
# $m$ independent samples from a mixture with mode weights `weights` all fall on the same
# mode. Check (b) against the numbers in section 5 and against a simulation.

# %%
def pack_rows(x, m):
    """(n, d) -> (n/m, m*d), rows k*m .. k*m+m-1 side by side."""
    # BEGIN SOLUTION Exercise T8.3: packing as a reshape, and the same-mode probability
    n, d = x.shape
    assert n % m == 0, "the batch size must be a multiple of m"
    return x.reshape(n // m, m * d)
    # END SOLUTION


def same_mode_probability(weights, m):
    """P(m independent draws all land on the same mode) = sum_k w_k^m."""
    # BEGIN SOLUTION Exercise T8.3: packing as a reshape, and the same-mode probability
    w = np.asarray(weights, dtype=np.float64)
    return float(np.sum(w ** m))
    # END SOLUTION


# %%
x = mg.to_device(data.sample(12, rng=4))
for m_ in (2, 4):
    assert np.array_equal(mg.to_numpy(pack_rows(x, m_)), mg.to_numpy(forward_in_eval_mode(Pack(m_), x)))
real_w, fake_w = np.full(8, 1 / 8), np.array([0.5, 0.5, 0, 0, 0, 0, 0, 0])
for m_, real_p, fake_p in ((2, 1 / 8, 1 / 2), (4, 1 / 512, 1 / 8)):
    assert np.isclose(same_mode_probability(real_w, m_), real_p)
    assert np.isclose(same_mode_probability(fake_w, m_), fake_p)
modes = np.random.default_rng(5).integers(8, size=(200_000, 2))
simulated = np.mean(modes[:, 0] == modes[:, 1])
print(f"m=2, uniform over 8 modes: formula {same_mode_probability(real_w, 2):.4f}, simulated {simulated:.4f}")
assert abs(simulated - 1 / 8) < 0.005
print("T8.3 ok")
