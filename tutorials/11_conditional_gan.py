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
#     chapter: 11
#     needs_mnist: true
# ---

# %% [markdown]
# # Chapter 11 — Conditional GAN: digits on demand
#
# The GAN of chapter 9 draws digits, but we cannot ask it for a *seven*: the class of a
# sample is decided somewhere inside G, by the noise. A **conditional GAN** (Mirza and
# Osindero, 2014) gives both players the label. G receives the noise *and* the class it
# must draw; D receives an image *and* a class, and must decide whether this is a real
# image *of that class*. The change to the code is two concatenations; the change to what
# the model can do is large.
#
# **What you will learn**
#
# 1. The conditional objective, and why feeding the label to D is what forces G to obey it.
# 2. One-hot labels concatenated to G's noise and to D's input, with `ConditionalGAN`:
#    what `gan.one_hot` and `gan.with_labels` build, and the layer widths that follow.
# 3. Training on labelled batches and sampling on demand, `gan.sample(n, labels=...)`, with a
#    class-by-class sample grid.
# 4. Measuring obedience with the classifier of chapter 4: does the digit drawn for label
#    $y$ get classified as $y$? Why, at first, it is not, and the initialisation fix: a
#    one-hot input needs first-layer weights of a different scale than an image does.
# 5. What the noise controls once the label fixes the class.
#
# The full run takes a few minutes on a laptop CPU; the quick mode of the test suite trains
# for a few dozen steps on a small slice of the data.

# %%
import os

QUICK = os.environ.get("MINIGAN_QUICK", "0") not in ("", "0")  # the test suite sets MINIGAN_QUICK=1

import time

import matplotlib.pyplot as plt
import numpy as np

import minigan as mg
from minigan import metrics, plot
from minigan.data import Minibatches, load_mnist
from minigan.layers import forward_in_eval_mode
from minigan.models import build_gan
from minigan.presets import CONDITIONAL, preset

STEPS = 40 if QUICK else 4000          # generator updates of the conditional GAN
PLAIN_STEPS = 20 if QUICK else 1000    # ... and of the first try, in section 3
N_EVAL = 500 if QUICK else 5000          # generated images per evaluation (equal numbers per class)
mg.seed(0)
print("minigan", mg.__version__, "| quick mode" if QUICK else "| full mode")

# %% [markdown]
# ## 1. The conditional game
#
# With labels $y \in \{0, \dots, 9\}$ the data are pairs $(x, y)$. The generator gets a
# label drawn from the label distribution $p(y)$ and noise $z$, and produces $G(z, y)$; the
# discriminator scores pairs. The value of the game becomes
#
# $$
# V(D, G) = \mathbb{E}_{(x, y) \sim p_\text{data}}\big[\log D(x, y)\big]
#         + \mathbb{E}_{y \sim p(y),\, z \sim p_z}\big[\log\big(1 - D(G(z, y), y)\big)\big].
# $$
#
# Repeating the argument of chapter 7 for each label separately gives the optimal
# discriminator $D^*(x, y) = p_\text{data}(x \mid y) / \big(p_\text{data}(x \mid y) + p_g(x \mid y)\big)$
# (the label probabilities cancel, since real and fake labels are drawn from the same
# $p(y)$), and the equilibrium $p_g(x \mid y) = p_\text{data}(x \mid y)$ *for every class*.
#
# Why must G obey the label? Suppose G is asked for a 7 and draws a perfect 3. Without the
# label, D would accept it: it is a fine digit. With the label, D sees the pair (a 3, "7"),
# and no real pair ever looks like that, so $D^*(x, 7) = 0$ there. The only way to fool D is
# to draw something that looks like a *real 7*. The labels are not a hint; they change the
# question D answers.
#
# ## 2. Labels as one-hot vectors, concatenated
#
# A network cannot use the integer 7 as a magnitude (7 is not "more" than 3), so the label
# enters as a one-hot vector $e_y \in \{0, 1\}^{10}$, and it is simply concatenated:
#
# $$
# G:\ [\,z,\ e_y\,] \in \mathbb{R}^{100 + 10} \;\mapsto\; x \in \mathbb{R}^{784},
# \qquad
# D:\ [\,x,\ e_y\,] \in \mathbb{R}^{784 + 10} \;\mapsto\; \ell \in \mathbb{R}.
# $$
#
# The first dense layer then adds a learned vector per class: $[z, e_y]\, W = z\, W_z + W_{e,y}$,
# where $W_{e,y}$ is row $y$ of the label part of $W$. Everything after that is an ordinary
# MLP. In minigan all of this lives in one place, the class `ConditionalGAN(G, D,
# latent_dim, n_classes, g_optimizer, d_optimizer, ...)` of `minigan.gan`; with the config
# key `n_classes=10`, `build_gan` builds one, with G's first layer 10 inputs wider and D's
# too. It builds the one-hot rows (`gan.one_hot`), appends them to a batch
# (`gan.with_labels(x, labels)`, which is $[x, e_y]$, a sample as D sees it), and draws
# uniform labels for the fake batches (`gan.sample_noise(n)` returns $[z, e_y]$).
#
# The trick that keeps the training loop unchanged: **a sample carries its label with it**,
# as its last 10 columns. `gan.G` is a thin wrapper (`LabelledGenerator`) around the
# generator we built, `gan.G.net`, that passes the label columns of its input on to its
# output, $[z, e_y] \mapsto [G([z, e_y]), e_y]$. So a fake leaves G with its label attached,
# exactly as a real image with its label is shown to D, and `sample_noise`, `generate`,
# `discriminator_step` and `generator_step` run just as in chapter 6.

# %%
x_train, y_train = load_mnist("train")
if QUICK:  # a small slice keeps the test suite fast
    x_train, y_train = x_train[:2000], y_train[:2000]

config = {**preset("mnist"), **CONDITIONAL,   # what --conditional uses: no packing (see below)
          "n_classes": 10, "g_hidden": [256, 512], "d_hidden": [512, 256]}
gan = build_gan(config, seed=0)
print("G:", gan.G, "around", gan.G.net)
print("D:", gan.D)

labels = np.array([7, 3, 0])
print("one-hot rows of", labels, ":\n", mg.to_numpy(gan.one_hot(labels)))
print("D's input for 3 images and their labels:",
      gan.with_labels(mg.to_device(x_train[:3]), labels).shape)
z3 = np.random.default_rng(1).standard_normal((3, config["latent_dim"])).astype(np.float32)
g_in = gan.with_labels(mg.to_device(z3), labels)                 # [z, e_y]
print("G's input:", g_in.shape, "-> gan.G's output, labels attached:",
      forward_in_eval_mode(gan.G, g_in).shape)

# %% [markdown]
# The networks are those of chapter 9 with one hidden layer fewer on each side
# (G: 110-256-512-784, D: 794-512-256-1), so that the chapter trains in a few minutes on a
# CPU; the label makes the task easier, and this size is plenty for it. Everything else,
# LeakyReLU 0.2, Adam $2\cdot 10^{-4}$ with $\beta_1 = 0.5$, batches of 64, the moving
# average of G's weights for sampling, is the `mnist` preset, with the changes of
# `minigan.presets.CONDITIONAL`: the unconditional preset packs D's input to keep the ten
# digits equally frequent, which a conditional GAN gets for free by asking for each digit
# equally often, so it judges one image at a time.
#
# ## 3. A first try, and why the label is ignored
#
# To see whether G obeys, we need the classifier of chapter 4 (`metrics.load_classifier()`,
# trained once and cached) and one number: the **label accuracy**, the fraction of samples
# drawn for label $y$ that the classifier reads as $y$. Chance is 10%; real test digits
# score the classifier's own accuracy, about 98%.

# %%
cache_file = metrics.resolve_cache_dir() / metrics.CLASSIFIER_FILE
if QUICK and not cache_file.exists():
    # The test suite must not spend half a minute here: a stand-in trained on the slice.
    clf = metrics.MnistClassifier(seed=0).fit(x_train, y_train, epochs=1)
else:
    clf = metrics.load_classifier()
print(clf)


def label_accuracy(gan, n=1000):
    """Fraction of n samples, labels 0..9 in turn, that the classifier reads as requested."""
    requested = np.arange(n) % 10
    return float(np.mean(clf.predict(gan.sample(n, rng=5, labels=requested)) == requested))


# %% [markdown]
# `Minibatches(x_train, y_train, ...)` yields `(images, labels)` pairs, and `train_step`
# takes such a pair: the real images are judged with their true labels, and the fakes with
# the labels they were generated for. `train` runs the loop and measures the label accuracy
# as it goes.

# %%
EVERY = 10 if QUICK else 250


def train(gan, steps=STEPS, grids=None, grid_steps=()):
    """Train on labelled batches; return [(step, label accuracy)] measured every EVERY steps."""
    batches = Minibatches(x_train, y_train, batch_size=config["batch_size"], rng=0).forever()
    curve, start = [(0, label_accuracy(gan))], time.perf_counter()
    for step, (real, real_labels) in zip(range(1, steps + 1), batches):
        gan.train_step((real, real_labels))
        if step % EVERY == 0:
            curve.append((step, label_accuracy(gan)))
        if step in grid_steps:
            grids[step] = mg.to_numpy(gan.sample(len(grid_labels), rng=10, labels=grid_labels))
    print(f"{steps} steps in {time.perf_counter() - start:.0f} s; label accuracy {curve[-1][1]:.1%}")
    return curve


grid_labels = np.repeat(np.arange(10), 8)         # class-major: 8 samples of 0, then of 1, ...
plain_curve = train(gan, steps=PLAIN_STEPS)


# %% [markdown]
# After a thousand steps the generator's digits are read as the requested class no more
# often than chance. G is learning to draw digits, but it ignores what it is asked for.
# (Train much longer and it does start to listen: with the larger networks of chapter 9 we
# saw the label accuracy climb only after about three thousand steps. But why so slow, when
# the label is the most useful input there is?)
#
# **The answer is in the first layer's initialisation.** Chapter 1 chose the scale of the
# initial weights so that each unit's pre-activation starts with a variance of order one,
# counting on *many* inputs to add up: D's first layer takes 794 inputs, and Glorot's rule
# gives weights with standard deviation $\sqrt{2 / (794 + 512)} \approx 0.04$. The 784 pixels
# (most near $\pm 1$) add up to a pre-activation of size $\approx 0.04 \sqrt{784 \cdot 0.8}
# \approx 1$. But a one-hot label has exactly *one* non-zero entry, so its whole
# contribution is a single weight, $W_{e,y}$, of size $0.04$: the label is a whisper next to
# the image. G's first layer is the same story: 100 noise values against one label weight.
#
# And Adam cannot fix that quickly. Chapter 4 showed that Adam moves every weight by about
# the learning rate per step, whatever its gradient. To grow from $0.04$ to order one at
# $2\cdot10^{-4}$ per step takes thousands of steps: the "click" we would see if we trained on.
#
# The fix follows: give the label rows of both first layers the scale they need, standard
# deviation 1 (the scale an embedding table, the usual alternative to one-hot inputs, is
# initialised with). Then each class starts with its own clearly different bias pattern in
# G and in D, and the networks only have to shape it. The rows are re-drawn in place, so
# the optimisers keep their references; the moving-average copy of G gets the same rows.

# %%
def scale_label_rows(gan, std=1.0, seed=0):
    """Re-draw the label rows of G's and D's first Dense layers with standard deviation `std`."""
    rng = np.random.default_rng(seed)
    data_dim = gan.D[0].in_features - gan.n_classes      # D does not pack here: D[0] is Dense
    for model, first_label_row in ((gan.G.net, gan.latent_dim), (gan.D, data_dim)):
        W = model[0].params["W"]
        rows = std * rng.standard_normal((gan.n_classes, W.shape[1]))
        W[first_label_row:first_label_row + gan.n_classes] = mg.to_device(rows.astype(W.dtype), model.backend)
    if gan.ema is not None:                               # the moving average starts from the same rows
        gan.ema.G.net[0].params["W"][...] = gan.G.net[0].params["W"]


plain_gan = gan
gan = build_gan(config, seed=0)           # the same networks and seed ...
scale_label_rows(gan)                     # ... with label rows of scale 1
GRID_STEPS = [10, 20, 40] if QUICK else [250, 500, 1000, STEPS]
grids = {}
scaled_curve = train(gan, grids=grids, grid_steps=GRID_STEPS)

# %%
fig, ax = plt.subplots(figsize=(7, 3.6))
for curve, name, colour in ((plain_curve, "Glorot-scale label rows (std 0.04)", "tab:red"),
                            (scaled_curve, "label rows of std 1", "tab:green")):
    ax.plot(*zip(*curve), "o-", ms=3, color=colour, label=name)
ax.axhline(0.1, color="0.5", ls=":", label="chance")
ax.set_ylim(0, 1)
ax.set_xlabel("step")
ax.set_ylabel("label accuracy")
ax.set_title("Does G draw the digit it is asked for?")
ax.legend(fontsize=8)
ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# The same networks, the same seed, the same data: only the ten label rows of each first
# layer differ, and the difference is total. With label rows of scale 1, G draws the requested
# digit most of the time within a few hundred steps; at Glorot scale it stays at chance.
#
# ## 4. Digits on demand
#
# `gan.sample(n, labels=...)` draws one image per requested label. Asking for eight of each
# class, in order, gives a class-by-class grid (`plot.plot_class_grid`): row $c$ holds the
# samples G drew when asked for digit $c$. Every row is its digit, in several styles; the
# strokes are still speckled and some classes (2 and 6 are usually the hardest) come out
# blotchy. A few minutes of CPU training buys that much; the larger networks and longer runs
# of chapter 9 draw cleaner strokes.

# %%
plot.plot_class_grid(grids[STEPS], n_per_class=8, title=f"conditional samples after {STEPS} steps (row = requested digit)")

# %% [markdown]
# Earlier in training, with the same noise: one sample per digit (columns 0 to 9) at a few
# steps. With the label rows at a useful scale the classes separate early, while the
# strokes are still rough: the label is the easiest thing for G to learn, because D punishes
# a wrong class from the start.

# %%
first_of_each = [grids[step].reshape(10, 8, 784)[:, 0] for step in GRID_STEPS]
plot.plot_class_grid(np.concatenate(first_of_each), n_per_class=10,
                     class_names=[f"step {step}" for step in GRID_STEPS],
                     title="digits 0-9 requested, over training")

# %% [markdown]
# ## 5. Does it obey? A closer look
#
# We ask for the same number of samples of each digit, more than during training, and
# compare the requested label with the classifier's prediction: the label accuracy again,
# per digit, and the confusion matrix (requested against predicted), which shows *how*
# requests go wrong. As in chapter 9, `metrics.classifier_scores` adds class coverage and
# balance.

# %%
requested = np.arange(N_EVAL) % 10
fake = gan.sample(N_EVAL, rng=2, labels=requested)
predicted = clf.predict(fake)
accuracy = float(np.mean(predicted == requested))
confusion = np.zeros((10, 10), dtype=int)
np.add.at(confusion, (requested, predicted), 1)
scores = metrics.classifier_scores(fake, clf)
print(f"label accuracy of the conditional samples: {accuracy:.1%}")
print("per requested digit:", " ".join(f"{c}:{confusion[c, c] / confusion[c].sum():.0%}" for c in range(10)))
print(f"classes covered {scores['classes_covered']}/10, KL to uniform {scores['kl_to_uniform']:.3f}, "
      f"Inception-style score {scores['inception_score']:.2f}")

fig, ax = plt.subplots(figsize=(4.8, 4.2))
im = ax.imshow(confusion / confusion.sum(axis=1, keepdims=True), cmap="Greens", vmin=0, vmax=1)
ax.set_xticks(range(10))
ax.set_yticks(range(10))
ax.set_xlabel("predicted by the classifier")
ax.set_ylabel("requested from G")
ax.set_title(f"requested vs predicted (accuracy {accuracy:.0%})")
fig.colorbar(im, ax=ax, fraction=0.046)
plt.show()

# %% [markdown]
# Most samples are read as the digit that was requested, and all ten classes come out in
# equal numbers (a KL to uniform near 0: we asked for equal numbers, and G delivered). The
# errors sit off the diagonal in a few places: digits of similar shape (in our run, 9s read
# as 7s, and 5s as 9s) and, above all, the digits G draws worst, whose blotchy samples
# in the grid above the classifier cannot place.
#
# The label-accuracy curve of section 3 showed another detail: it peaked near 100% after a
# few hundred steps and then eased to its final value. The grid over training suggests
# why: early on G draws one tidy prototype per class, easy to classify; later it spreads
# out over many styles of handwriting, which is what a generator should do, and some of
# those styles it has not yet learned to draw well.
#
# ## 6. What the noise controls now
#
# With the class fixed by the label, the noise $z$ is left to encode everything else:
# thickness, slant, width, the style of the stroke. We can see that by holding $z$ fixed and
# changing only the label: each row below is one noise vector, each column one requested digit.

# %%
n_styles = 6
z = np.random.default_rng(7).standard_normal((n_styles, config["latent_dim"])).astype(np.float32)
styles = []
G = (gan.ema.G if gan.ema is not None else gan.G).net     # the (averaged) generator itself
for i in range(n_styles):
    zi = np.repeat(z[i:i + 1], 10, axis=0)                   # the same z ten times
    g_in = gan.with_labels(mg.to_device(zi, G.backend), np.arange(10))   # [z, e_0], ..., [z, e_9]
    styles.append(mg.to_numpy(forward_in_eval_mode(G, g_in)))
plot.plot_class_grid(np.concatenate(styles), n_per_class=10,
                     class_names=[f"z #{i + 1}" for i in range(n_styles)],
                     title="one noise vector per row, digits 0-9 across")


# %% [markdown]
# Along a row the digits change, but the stroke tends to keep its character: its thickness,
# its width, its slant. Down a column the same digit is drawn in different hands. With this
# small generator and a short run the separation is only partial (some rows look much
# alike), but it is there, and nobody asked for it: the network has separated *what* is
# drawn (the label) from *how* it is drawn (the noise) by itself, because once the label
# explains the class, style is all that is left for the noise to explain.
#
# ## Summary
#
# * A conditional GAN feeds the label to both players. D then judges pairs (image, label),
#   and fooling it requires an image that is real *for that label*.
# * In minigan, `ConditionalGAN` (config key `n_classes=C` of `build_gan`) concatenates
#   one-hot labels to G's noise and to D's input, in one place: a sample carries its label
#   as one-hot columns, and G's wrapper passes them on, so the training loop is unchanged.
#   `train_step((images, labels))` trains on labelled batches, `sample(n, labels=...)`
#   draws digits on demand.
# * A one-hot label has a single non-zero entry, so at Glorot scale its first-layer weights
#   make it a whisper next to the image or the noise, and Adam needs thousands of steps to
#   turn it up. Re-drawing the label rows with standard deviation 1 makes G obey its labels
#   from the first few hundred steps.
# * The classifier of chapter 4 measures obedience (label accuracy, the confusion matrix),
#   and fixing $z$ while changing $y$ shows that the noise has learned style.
#
# ## Exercises

# %% [markdown]
# **Exercise T11.1 — one-hot rows and D's input by hand.** Write `one_hot(labels, n_classes)`
# returning a float32 array of shape `(n, n_classes)` with a 1 in column `labels[i]` of row
# `i`, without a Python loop (use fancy indexing or a comparison with `np.arange`), and
# `conditional_input(x, labels, n_classes)` returning `[x, one_hot(labels)]` side by side.
# Check them against `gan.one_hot` and `gan.with_labels`.

# %%
def one_hot(labels, n_classes):
    """(n, n_classes) float32 one-hot rows."""
    # BEGIN SOLUTION Exercise T11.1: one-hot labels and the conditional input of D
    labels = np.asarray(labels)
    return (labels[:, None] == np.arange(n_classes)[None, :]).astype(np.float32)
    # END SOLUTION


def conditional_input(x, labels, n_classes):
    """[x, one_hot(labels)]: what D sees for images x (n, d) with their labels."""
    # BEGIN SOLUTION Exercise T11.1: one-hot labels and the conditional input of D
    return np.concatenate([np.asarray(x, dtype=np.float32), one_hot(labels, n_classes)], axis=1)
    # END SOLUTION


# %%
check_labels = np.array([3, 0, 9, 9, 1])
assert np.array_equal(one_hot(check_labels, 10), mg.to_numpy(gan.one_hot(check_labels)))
mine = conditional_input(x_train[:5], check_labels, 10)
theirs = mg.to_numpy(gan.with_labels(mg.to_device(x_train[:5]), check_labels))
assert mine.shape == (5, 794) and np.array_equal(mine, theirs)
print("T11.1 ok")


# %% [markdown]
# **Exercise T11.2 — the label lives in the first layer.** Show that for G's first dense
# layer, $[z, e_y] W + b = z W_z + (W_{e,y} + b)$: the label only adds a learned per-class
# bias. Write `class_bias(gan)` that returns the `(10, 256)` matrix of those per-class
# biases $W_{e,y} + b$ from the parameters of `gan.G.net[0]` (the generator we built is
# `gan.G.net`; the last 10 rows of its first layer's `W` belong to the label), and check
# the identity on a batch. Then measure how different the classes
# are at this point of the network: print the smallest and the typical root-mean-square
# difference per unit between two class biases. (Compare them with the size of the noise
# part $z W_z$ of the same pre-activations, about 1 per unit: is every class clearly apart
# from every other?)

# %%
def class_bias(gan):
    """(n_classes, width) per-class biases of G's first layer: W_e[y] + b."""
    # BEGIN SOLUTION Exercise T11.2: per-class biases hidden in G's first layer
    W = mg.to_numpy(gan.G.net[0].params["W"])
    b = mg.to_numpy(gan.G.net[0].params["b"])
    return W[gan.latent_dim:] + b
    # END SOLUTION


# %%
bias = class_bias(gan)
z_check = np.random.default_rng(3).standard_normal((10, config["latent_dim"])).astype(np.float32)
W0 = mg.to_numpy(gan.G.net[0].params["W"])
direct = np.concatenate([z_check, mg.to_numpy(gan.one_hot(np.arange(10)))], axis=1) @ W0 + mg.to_numpy(gan.G.net[0].params["b"])
via_bias = z_check @ W0[: config["latent_dim"]] + bias
assert bias.shape == (10, W0.shape[1]) and np.allclose(direct, via_bias, atol=1e-4)
dist = np.sqrt(((bias[:, None, :] - bias[None, :, :]) ** 2).mean(axis=-1))   # RMS per unit
np.fill_diagonal(dist, np.inf)
i, j = np.unravel_index(np.argmin(dist), dist.shape)
noise_part = (z_check @ W0[: config["latent_dim"]]).std()
print(f"closest pair of class biases: {i} and {j}, RMS difference {dist[i, j]:.2f} per unit "
      f"(median over pairs {np.median(dist[np.isfinite(dist)]):.2f}); noise part: {noise_part:.2f} per unit")
print("T11.2 ok")


# %% [markdown]
# **Exercise T11.3 — how loud is the label?** Section 3 estimated by hand how much the
# label and the image each contribute to D's first-layer pre-activations at initialisation.
# Measure it. Write `contributions(gan, images, labels)` that returns the standard deviation
# (over the batch and the 512 units) of the two parts of $[x, e_y] W$: the image part
# $x W_x$ and the label part $e_y W_e$ (the bias is left out). Compare a freshly built GAN
# with one whose label rows were re-drawn by `scale_label_rows`.

# %%
def contributions(gan, images, labels):
    """(std of x @ W_x, std of onehot(labels) @ W_e) for D's first layer."""
    # BEGIN SOLUTION Exercise T11.3: the image's and the label's share of D's first pre-activation
    W = mg.to_numpy(gan.D[0].params["W"]).astype(np.float64)
    d = np.asarray(images).shape[1]
    image_part = np.asarray(mg.to_numpy(images), dtype=np.float64) @ W[:d]
    label_part = mg.to_numpy(gan.one_hot(labels)).astype(np.float64) @ W[d:]
    return float(image_part.std()), float(label_part.std())
    # END SOLUTION


# %%
fresh = build_gan(config, seed=1)
img_std, lab_std = contributions(fresh, x_train[:256], y_train[:256])
print(f"Glorot init:      image part {img_std:.3f}, label part {lab_std:.3f}  (ratio {img_std / lab_std:.0f})")
assert 0.5 < img_std < 2.0 and 0.02 < lab_std < 0.06
scale_label_rows(fresh)
img_std2, lab_std2 = contributions(fresh, x_train[:256], y_train[:256])
print(f"label rows std 1: image part {img_std2:.3f}, label part {lab_std2:.3f}")
assert np.isclose(img_std, img_std2) and 0.8 < lab_std2 < 1.2
print("T11.3 ok")
