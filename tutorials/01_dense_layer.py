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
#     chapter: 1
#     needs_mnist: false
# ---

# %% [markdown]
# # Chapter 1 — Arrays, batches and the dense layer
#
# A GAN is two neural networks, and in this book both are stacks of *dense* layers.
# Before anything adversarial can happen we need to be completely at ease with one
# such layer: what goes in, what comes out, what shape every array has, and how its
# weights should be drawn so that a deep stack of them neither fades to zero nor
# blows up.
#
# **What you will learn**
#
# 1. Why data is stored as a *batch*, an array of shape $(N, D)$ with one example per row.
# 2. The forward pass of a dense layer, $\mathrm{out} = xW + b$, written with indices,
#    with shapes, and with `minigan`.
# 3. That the rows of a batch never talk to each other in a dense layer.
# 4. How the scale of the initial weights decides whether the signal survives
#    twenty layers, why Glorot's rule suits `tanh` and He's rule suits ReLU,
#    and how to see it in a plot.
#
# Everything here runs in a few seconds on a laptop.

# %%
import os

QUICK = os.environ.get("MINIGAN_QUICK", "0") not in ("", "0")  # the test suite sets MINIGAN_QUICK=1

import functools

import matplotlib.pyplot as plt
import numpy as np

import minigan as mg
from minigan import functional as F
from minigan import init
from minigan.data import ring8

mg.seed(0)
print("minigan", mg.__version__, "| quick mode" if QUICK else "| full mode")

# %% [markdown]
# ## 1. A batch is a matrix with one example per row
#
# A single example is a vector of $D$ numbers: the two coordinates of a point in
# the plane, or the $28 \times 28 = 784$ pixels of an MNIST digit read row by row.
# We almost never process one example at a time. We stack $N$ of them into a
# matrix $x \in \mathbb{R}^{N \times D}$ whose row $n$ is example $n$:
#
# $$
# x = \begin{pmatrix} - & x_1 & - \\ & \vdots & \\ - & x_N & - \end{pmatrix},
# \qquad x_{n i} = \text{feature } i \text{ of example } n .
# $$
#
# The reason is speed: one matrix product over $N$ rows does the same arithmetic
# as $N$ vector products, but runs much faster, because NumPy (and the BLAS library
# beneath it) can then reuse data in the caches, fill the SIMD units and use every
# core. The first axis is always the batch axis, in
# minigan as in PyTorch.
#
# Here is a batch of 5 points from `ring8`, the toy set of eight small Gaussian
# blobs on the unit circle that we will meet again when we train GANs.

# %%
data = ring8()
x = data.sample(5, rng=0)
print("shape", x.shape, "dtype", x.dtype)
print(x)

# %% [markdown]
# Two things to notice. The shape is `(5, 2)`: five examples, two features.
# And the dtype is `float32`: single precision is minigan's default everywhere,
# because it halves the memory and doubles the speed of float64 and is precise
# enough for training. (Gradient *checks* are the exception; chapter 2 explains
# why they need float64.)

# %% [markdown]
# ## 2. The dense layer
#
# A dense (fully connected, affine, linear) layer with $D_\text{in}$ inputs and
# $D_\text{out}$ outputs holds a weight matrix $W \in \mathbb{R}^{D_\text{in}
# \times D_\text{out}}$ and a bias vector $b \in \mathbb{R}^{D_\text{out}}$.
# Output $j$ of example $n$ is a weighted sum of that example's inputs plus a bias:
#
# $$
# \mathrm{out}_{nj} = \sum_{i=1}^{D_\text{in}} x_{ni}\, W_{ij} + b_j .
# $$
#
# For the whole batch at once this is one matrix product and one broadcast addition,
#
# $$
# \underbrace{\mathrm{out}}_{(N,\, D_\text{out})}
#   = \underbrace{x}_{(N,\, D_\text{in})}\;\underbrace{W}_{(D_\text{in},\, D_\text{out})}
#   + \underbrace{b}_{(D_\text{out},)} ,
# $$
#
# where the bias row is added to every row of $xW$ (NumPy *broadcasting*). The
# shapes check themselves: the inner dimensions $D_\text{in}$ must agree, and the
# outer ones, $N$ and $D_\text{out}$, are what is left. Column $j$ of $W$ is the
# "template" that output unit $j$ compares every input against.
#
# minigan keeps the math in `minigan.functional` as pure functions.
# `F.dense_forward(x, W, b)` returns the output and a *cache*, the arrays the
# backward pass of chapter 2 will need.

# %%
rng = np.random.default_rng(1)
W = rng.standard_normal((2, 3)).astype(np.float32)   # D_in = 2, D_out = 3
b = np.array([0.5, -1.0, 2.0], dtype=np.float32)

out, cache = F.dense_forward(x, W, b)
print("x", x.shape, " W", W.shape, " b", b.shape, " ->  out", out.shape, out.dtype)

# %% [markdown]
# Let us convince ourselves that the matrix form is the index formula, by
# computing the double sum with plain Python loops and comparing.

# %%
out_loops = np.zeros((x.shape[0], W.shape[1]), dtype=np.float32)
for n in range(x.shape[0]):
    for j in range(W.shape[1]):
        out_loops[n, j] = sum(x[n, i] * W[i, j] for i in range(W.shape[0])) + b[j]

print("largest difference:", np.abs(out - out_loops).max())
assert np.allclose(out, out_loops, atol=1e-6)

# %% [markdown]
# ### The rows of a batch are independent
#
# Row $n$ of the output depends on row $n$ of the input and on nothing else:
# the sum in the formula runs over features $i$, never over examples. So pushing
# a batch through the layer is the same as pushing each example through on its own
# and stacking the results. This is why we are free to choose the batch size for
# speed; the layer computes the same function either way. (Batch normalisation,
# which we meet later, is the one layer that breaks this rule on purpose.)

# %%
one_at_a_time = np.concatenate([F.dense_forward(x[n:n + 1], W, b)[0] for n in range(len(x))])
print("batch == one at a time:", np.allclose(out, one_at_a_time))

# %% [markdown]
# ### The `Dense` layer object
#
# For training we want the weights to live inside an object that also keeps
# their gradients and the cache between the forward and the backward pass.
# That is `minigan.Dense`, a thin wrapper around `F.dense_forward`. Its weights
# are drawn by an *initialiser* (more on that in section 3) and its biases start at zero.
# `Sequential` chains layers; printing it lists every layer with its parameter shapes.

# %%
layer = mg.Dense(2, 3, rng=0)
print("W", layer.params["W"].shape, layer.params["W"].dtype, "  b", layer.params["b"])
print("same as the functional form:",
      np.allclose(layer(x), F.dense_forward(x, layer.params["W"], layer.params["b"])[0]))

model = mg.Sequential(mg.Dense(2, 64, rng=0), mg.Tanh(), mg.Dense(64, 64, rng=1), mg.Tanh(),
                      mg.Dense(64, 1, rng=2))
print(model)
print("output shape for our batch:", model(x).shape)

# %% [markdown]
# Shapes are checked at the door. A layer refuses an input of the wrong width,
# and it refuses a float64 batch for float32 weights rather than silently
# computing in double precision. The messages say what to do:

# %%
for bad in (np.zeros((5, 3), np.float32), x.astype(np.float64)):
    try:
        layer(bad)
    except (ValueError, TypeError) as err:
        print(f"{type(err).__name__}: {err}\n")

# %% [markdown]
# ## 3. Initialisation: keeping the signal alive through depth
#
# What scale should the random initial weights have? Consider one output unit of
# a layer with $D_\text{in} = $ `fan_in` inputs, before any activation:
# $h_j = \sum_i x_i W_{ij}$ (the bias starts at zero). Suppose the weights are
# independent with mean 0 and variance $\sigma_W^2$, independent of the inputs.
# Then each term has mean 0 and the variances of independent terms add:
#
# $$
# \operatorname{Var}(h_j) = \sum_{i=1}^{\text{fan\_in}} \operatorname{Var}(x_i W_{ij})
#   = \text{fan\_in}\;\sigma_W^2\;\mathbb{E}[x_i^2].
# $$
#
# A layer multiplies the signal's second moment by $\text{fan\_in}\,\sigma_W^2$.
# Stack $L$ layers and that factor is raised to the power $L$: slightly above 1
# and the activations explode, slightly below and they vanish. The activation
# function adds its own factor:
#
# * **tanh** is close to the identity near 0, so a factor of 1 needs
#   $\sigma_W^2 = 1/\text{fan\_in}$. Glorot and Bengio (2010) also asked for the
#   backward pass (where the sum runs over `fan_out` instead) to keep its scale and
#   settled on the compromise $\sigma_W^2 = 2/(\text{fan\_in} + \text{fan\_out})$.
#   That is `init="glorot_uniform"` (minigan's default) and `"glorot_normal"`.
# * **ReLU** sets the negative half of its inputs to zero. For a symmetric
#   $h$, $\mathbb{E}[\mathrm{relu}(h)^2] = \tfrac12 \operatorname{Var}(h)$, so half the
#   second moment is lost at every layer. He et al. (2015) compensate with
#   $\sigma_W^2 = 2/\text{fan\_in}$: `init="he_normal"` or `"he_uniform"`.
#
# Let us watch it happen. We push a batch of standard normal inputs through 20
# layers of width 256 and record the standard deviation of the activations after
# every layer, for four initialisations: a plain normal with a tiny std of 0.01,
# a plain normal with std 0.2, Glorot and He.

# %%
WIDTH, DEPTH = 256, 20
N = 200 if QUICK else 1000
inputs = np.random.default_rng(2).standard_normal((N, WIDTH)).astype(np.float32)

INITS = {
    "normal, std 0.01": functools.partial(init.normal, std=0.01),
    "normal, std 0.2": functools.partial(init.normal, std=0.2),
    "Glorot (glorot_uniform)": "glorot_uniform",
    "He (he_normal)": "he_normal",
}


def activation_stds(init_rule, activation, depth=DEPTH, width=WIDTH, x=inputs, seed=3):
    """Std of the activations after each layer of a fresh deep stack, and the last activations."""
    weights = np.random.default_rng(seed)
    stack = mg.Sequential(*[item for _ in range(depth)
                            for item in (mg.Dense(width, width, init=init_rule, rng=weights),
                                         activation())])
    stds, h = [], x
    for layer in stack:
        h = layer(h)
        if not isinstance(layer, mg.Dense):
            stds.append(float(h.std()))
    stack.clear_cache()  # we will not call backward: free the cached activations
    return np.array(stds), h


results = {(act.__name__, name): activation_stds(rule, act)
           for act in (mg.Tanh, mg.ReLU) for name, rule in INITS.items()}
for (act, name), (stds, _) in results.items():
    print(f"{act:5s} {name:24s} std after layer 1: {stds[0]:9.3g}   after layer {DEPTH}: {stds[-1]:9.3g}")

# %%
COLOURS = dict(zip(INITS, ("tab:blue", "tab:orange", "tab:green", "tab:red")))
layers = np.arange(1, DEPTH + 1)
fig, axes = plt.subplots(1, 3, figsize=(15, 4))
axes[1].sharey(axes[0])
for ax, act in zip(axes[:2], ("Tanh", "ReLU")):
    for name in INITS:
        stds, _ = results[(act, name)]
        ax.semilogy(layers, stds, marker="o", ms=3, color=COLOURS[name], label=name)
    ax.set_title(f"{act} after every Dense({WIDTH}, {WIDTH})")
    ax.set_ylabel("std of the activations (log scale)")
axes[1].legend(loc="lower left", fontsize=9)
# On the log scale, the three tanh curves that do not vanish lie on top of one
# another; a linear scale separates them.
for name in list(INITS)[1:]:
    stds, _ = results[("Tanh", name)]
    axes[2].plot(layers, stds, marker="o", ms=3, color=COLOURS[name], label=name)
axes[2].set_ylim(0, 1)
axes[2].set_title("Tanh again, linear scale (std 0.01 left out)")
axes[2].set_ylabel("std of the activations")
axes[2].legend(loc="center right", bbox_to_anchor=(1, 0.4), fontsize=9)
for ax in axes:
    ax.set_xlabel("layer")
    ax.set_xticks(range(0, DEPTH + 1, 5))
    ax.grid(True, which="both", alpha=0.3)
fig.suptitle("Too small, the signal vanishes; too large, it explodes (ReLU) or saturates (tanh)")
fig.tight_layout()
plt.show()

# %% [markdown]
# Read the panels from left to right (the third repeats the tanh curves on a linear
# scale, where the ones that survive can be told apart):
#
# * With **std 0.01** the factor $\text{fan\_in}\,\sigma_W^2 = 256 \times 10^{-4}
#   \approx 0.026$ (and half that for ReLU) shrinks the signal by about an order of
#   magnitude per layer. After 20 layers nothing is left, for either activation: every
#   input produces the same (zero) output, and as chapter 2 will show, the gradients
#   shrink the same way.
# * With **std 0.2** the factor is $256 \times 0.04 \approx 10$. ReLU passes half of
#   it on, and the activations grow without bound. Tanh cannot grow past 1, so instead
#   it *saturates*: a large share of the units sit at $\pm 1$, where the slope of tanh is
#   practically zero, and the std stays near its ceiling.
# * **Glorot** keeps tanh in its useful range, decaying only slowly (tanh is a little
#   less than the identity, so a little is lost at every layer), but it is too small
#   for ReLU, which halves the second moment at every layer.
# * **He** holds the ReLU stack at a constant scale, layer after layer, as the
#   algebra promised. For tanh it is too large: its factor
#   $\text{fan\_in}\,\sigma_W^2 = 2$ doubles the second moment at every layer
#   instead of keeping it, and tanh, which cannot grow past 1, answers by
#   saturating part of the way.
#
# The standard deviation hides *how* the values are spread. The histograms of the
# last tanh layer show saturation directly:

# %%
fig, axes = plt.subplots(1, 4, figsize=(13, 2.8), sharey=True)
for ax, name in zip(axes, INITS):
    _, last = results[("Tanh", name)]
    values = last.ravel()
    scale = float(np.abs(values).max())
    ax.hist(values / scale, bins=60, range=(-1, 1), color="tab:blue")
    ax.set_title(name, fontsize=10)
    ax.set_xlabel(f"value / {scale:.1e}")
axes[0].set_ylabel("count")
fig.suptitle(f"Activations after the {DEPTH}th tanh layer, each divided by its largest |value|", y=1.04)
plt.show()
saturated = float(np.mean(np.abs(results[("Tanh", "normal, std 0.2")][1]) > 0.99))
print(f"std 0.2: {saturated:.0%} of the tanh outputs are beyond +-0.99")


# %% [markdown]
# With std 0.2 the histogram piles up in two spikes at $\pm 1$: a good part of the
# network has turned into a machine that outputs signs, and a unit at $\pm 1$ passes
# almost no gradient back. With std 0.01 the shape is a fine bell but the scale
# (printed under the panel) is around $10^{-16}$: numerically, everything is zero.
# Glorot gives a bell of a healthy size. He, whose factor of 2 per layer is too
# large for tanh, spreads the values over the whole range $[-1, 1]$: that is the
# doubling pushing tanh towards saturation, though not yet piling the values up at
# the ends as std 0.2 (a factor of about 10) does.
#
# **What this means for GANs.** The generator and the discriminator we train later
# are a handful of layers deep, use LeakyReLU (a ReLU that keeps a small slope for
# negative inputs), and are initialised with Glorot's rule. A LeakyReLU with slope
# $a$ keeps $(1 + a^2)/2$ of the second moment, so He's rule generalises to
# $\sigma_W^2 = 2 / ((1 + a^2)\,\text{fan\_in})$, which is what
# `init.he_normal(..., negative_slope=a)` draws; exercise T1.3 checks it.
# For shallow networks the difference between these rules is small, but the
# cautionary tale above is what happens when it is ignored.

# %% [markdown]
# ## Summary
#
# * A batch is an $(N, D)$ array, one example per row; every layer maps rows to rows.
# * A dense layer computes $\mathrm{out} = xW + b$ with $W$ of shape
#   $(D_\text{in}, D_\text{out})$; rows never mix. `F.dense_forward` is the math,
#   `mg.Dense` the trainable layer, `mg.Sequential` a stack.
# * Each layer multiplies the second moment of its input by about
#   $\text{fan\_in}\,\sigma_W^2$ times the activation's own factor. Glorot
#   ($2/(\text{fan\_in}+\text{fan\_out})$) suits tanh and sigmoid, He
#   ($2/\text{fan\_in}$) suits ReLU. Get it wrong and a deep network outputs zeros,
#   infinities or signs.
#
# Next, chapter 2 runs the layer backwards: how the gradient of a loss flows
# from the output back to $x$, $W$ and $b$, and how to check that we got it right.

# %% [markdown]
# ## Exercises
#
# Each exercise has a cell for your code between the solution markers, followed by
# a cell that checks it.
#
# **Exercise T1.1 — the dense layer, one example at a time.** Write
# `dense_one(x_row, W, b)` that computes the output for a single example (a
# vector of shape `(D_in,)`) *without* the `@` operator or `np.dot`: use one loop
# over the outputs $j$ and an elementwise product and sum for each. Then compare
# with `F.dense_forward` on a whole batch.

# %%
def dense_one(x_row, W, b):
    """Output (D_out,) of a dense layer for one example x_row (D_in,), without a matrix product."""
    # BEGIN SOLUTION Exercise T1.1: compute one example's dense output with a loop over outputs
    out = np.empty(W.shape[1], dtype=x_row.dtype)
    for j in range(W.shape[1]):
        out[j] = np.sum(x_row * W[:, j]) + b[j]
    return out
    # END SOLUTION


# %%
check_x = np.random.default_rng(10).standard_normal((4, 6)).astype(np.float32)
check_W = np.random.default_rng(11).standard_normal((6, 3)).astype(np.float32)
check_b = np.random.default_rng(12).standard_normal(3).astype(np.float32)
mine = np.stack([dense_one(row, check_W, check_b) for row in check_x])
assert mine.shape == (4, 3), mine.shape
assert np.allclose(mine, F.dense_forward(check_x, check_W, check_b)[0], atol=1e-5)
print("T1.1 ok")


# %% [markdown]
# **Exercise T1.2 — predict the ReLU stack.** Using the variance argument of
# section 3, write `predicted_relu_stds(depth, fan_in, w_std, x_std)` returning the
# predicted std of the *pre-activations* $h$ after each of `depth` layers of
# `Dense(fan_in, fan_in)` + ReLU, with weights of std `w_std`, zero biases, and
# inputs of std `x_std` (zero mean). Hints: the first layer sees
# $\mathbb{E}[x^2] = $ `x_std**2`; after a ReLU, $\mathbb{E}[\mathrm{relu}(h)^2]
# = \tfrac12 \operatorname{Var}(h)$. The check compares your prediction with a
# measurement for two widths. (Why does the measurement drift a little away from the
# prediction in the deeper layers? Think about what the argument assumed about the
# inputs of a unit, and whether it still holds after a few layers of finite width.)

# %%
def predicted_relu_stds(depth, fan_in, w_std, x_std):
    """Predicted std of h = x W after each of `depth` Dense+ReLU layers, shape (depth,)."""
    # BEGIN SOLUTION Exercise T1.2: predict the pre-activation std after each Dense+ReLU layer
    second_moment = x_std ** 2          # E[input^2] of the first layer
    stds = []
    for _ in range(depth):
        var_h = fan_in * w_std ** 2 * second_moment
        stds.append(np.sqrt(var_h))
        second_moment = 0.5 * var_h     # what the ReLU passes on to the next layer
    return np.array(stds)
    # END SOLUTION


# %%
def measured_relu_stds(depth, fan_in, w_std, x, seed=5):
    weights = np.random.default_rng(seed)
    stds, h = [], x
    for _ in range(depth):
        dense = mg.Dense(fan_in, fan_in, init=functools.partial(init.normal, std=w_std), rng=weights)
        pre = dense(h)
        stds.append(float(pre.std()))
        h = mg.ReLU()(pre)
    return np.array(stds)


for fan_in, w_std, x_std in ((128, 0.08, 1.0), (256, 0.12, 3.0)):
    x_check = np.random.default_rng(6).normal(0.0, x_std, (2000, fan_in)).astype(np.float32)
    predicted = predicted_relu_stds(8, fan_in, w_std, x_std)
    measured = measured_relu_stds(8, fan_in, w_std, x_check)
    ratio = measured / predicted
    print(f"fan_in {fan_in}, w_std {w_std}: predicted", np.round(predicted, 3))
    print("    measured / predicted", np.round(ratio, 2))
    assert predicted.shape == (8,)
    assert np.all((ratio > 0.6) & (ratio < 1.6)), ratio
print("T1.2 ok")


# %% [markdown]
# **Exercise T1.3 — He's rule for LeakyReLU.** A LeakyReLU with slope $a$ outputs
# $h$ for $h > 0$ and $a h$ otherwise. For a symmetric $h$, compute
# $\mathbb{E}[\mathrm{lrelu}(h)^2] / \operatorname{Var}(h)$ and deduce the weight std
# that keeps the scale constant. Write `leaky_he_std(fan_in, a)` and compare it with
# the empirical std of `init.he_normal(..., negative_slope=a)`.

# %%
def leaky_he_std(fan_in, a):
    """Weight std that keeps the scale of a Dense + LeakyReLU(a) stack constant."""
    # BEGIN SOLUTION Exercise T1.3: derive the He std for a leaky ReLU of slope a
    # Half of h is kept, half is multiplied by a: E[lrelu(h)^2] = (1 + a^2) / 2 * Var(h).
    return float(np.sqrt(2.0 / ((1.0 + a ** 2) * fan_in)))
    # END SOLUTION


# %%
for a in (0.0, 0.2, 1.0):
    drawn = init.he_normal((512, 512), np.random.default_rng(7), dtype="float64", negative_slope=a)
    print(f"slope {a}: yours {leaky_he_std(512, a):.5f}   he_normal's empirical std {drawn.std():.5f}")
    assert abs(drawn.std() / leaky_he_std(512, a) - 1) < 0.01
assert abs(leaky_he_std(100, 1.0) - 0.1) < 1e-12  # slope 1 is the identity: variance 1/fan_in
print("T1.3 ok")
