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
#     chapter: 4
#     needs_mnist: true
# ---

# %% [markdown]
# # Chapter 4 — Optimisers, and an MNIST classifier that scores our digits
#
# Chapters 1 to 3 gave us a network, its gradients and a loss. An *optimiser* turns
# gradients into better weights. This chapter compares the three that matter for
# this book, plain SGD, SGD with momentum, and Adam, first on two-dimensional
# surfaces where you can watch every step, then on the real thing: a classifier of
# handwritten digits, trained with minigan to better than 98% test accuracy.
#
# That classifier is not a throwaway exercise. It is the same network, trained the
# same way, that `minigan.metrics` uses to judge the digits our GANs will generate in
# later chapters: which classes they draw, how confidently, how evenly.
#
# **What you will learn**
#
# 1. The update rules of SGD, momentum and Adam, and what problem each one solves.
# 2. How they move on an ill-conditioned quadratic and on the Rosenbrock valley.
# 3. A complete training loop: minibatches, softmax cross-entropy, a learning-rate
#    schedule, evaluation on held-out data.
# 4. That our loop and `minigan.metrics.MnistClassifier` are the same recipe, checked
#    bit for bit.

# %%
import os

QUICK = os.environ.get("MINIGAN_QUICK", "0") not in ("", "0")  # the test suite sets MINIGAN_QUICK=1

import inspect
import math
import time

import matplotlib.pyplot as plt
import numpy as np

import minigan as mg
from minigan import metrics
from minigan.data import Minibatches, load_mnist

mg.seed(0)


# %% [markdown]
# ## 1. Three update rules
#
# All three take the gradient $g_t = \nabla_\theta L(\theta_t)$ of the loss on the
# current minibatch and move the parameters $\theta$ against it, with a learning rate
# $\eta$. They differ in what else they remember.
#
# **SGD** remembers nothing:
#
# $$ \theta_{t+1} = \theta_t - \eta\, g_t . $$
#
# Its weakness is *ill-conditioning*. If the loss curves steeply in one direction and
# gently in another, $\eta$ must be small enough not to overshoot in the steep
# direction (for a quadratic with curvature $\lambda_\text{max}$, $\eta <
# 2/\lambda_\text{max}$), and then progress along the gentle direction, with curvature
# $\lambda_\text{min}$, shrinks the error only by a factor $1 - \eta\lambda_\text{min}$ per
# step. The ratio $\kappa = \lambda_\text{max}/\lambda_\text{min}$ (the condition number)
# sets the pace: roughly $\kappa$ steps per decade of progress.
#
# **Momentum** keeps a running sum of past gradients, a *velocity*, and steps along it
# (this is PyTorch's form, which minigan follows):
#
# $$ v_{t+1} = \mu\, v_t + g_t, \qquad \theta_{t+1} = \theta_t - \eta\, v_{t+1}. $$
#
# Gradients that keep pointing the same way add up (a constant gradient is amplified
# by $1/(1 - \mu)$, ten times for $\mu = 0.9$); gradients that flip sign from step to
# step, the zig-zag across a steep valley, cancel. For quadratics the number of steps
# per decade drops from about $\kappa$ to about $\sqrt\kappa$.
#
# **Adam** (Kingma and Ba, 2015) keeps running averages of the gradient and of its
# elementwise square, corrects them for starting at zero, and divides one by the
# square root of the other:
#
# $$
# m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t, \quad
# v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2, \quad
# \hat m_t = \frac{m_t}{1 - \beta_1^t}, \quad \hat v_t = \frac{v_t}{1 - \beta_2^t},
# $$
# $$
# \theta_{t+1} = \theta_t - \eta\, \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}.
# $$
#
# The division gives every parameter its own step size: a coordinate with consistently
# large gradients and one with consistently small gradients both move by about $\eta$
# per step. That makes Adam nearly insensitive to the scale of the gradients, which is
# why it is the default for GANs (with $\eta = 2\times10^{-4}$, $\beta_1 = 0.5$, as
# recommended by the DCGAN paper), where the scale of each network's gradients changes
# as its opponent learns.
#
# In minigan an optimiser holds `(parameter, gradient)` pairs, exactly what
# `model.parameters()` returns, and updates the parameters in place. That means we can
# also hand it a single two-element array and its gradient buffer, and watch it walk
# across a surface:

# %%
def quadratic(p):
    return 0.5 * (p[0] ** 2 + 100.0 * p[1] ** 2)           # curvatures 1 and 100: kappa = 100


def quadratic_grad(p):
    return np.array([p[0], 100.0 * p[1]])


def rosenbrock(p):
    return (1.0 - p[0]) ** 2 + 100.0 * (p[1] - p[0] ** 2) ** 2   # minimum at (1, 1)


def rosenbrock_grad(p):
    return np.array([-2.0 * (1.0 - p[0]) - 400.0 * p[0] * (p[1] - p[0] ** 2),
                     200.0 * (p[1] - p[0] ** 2)])


def walk(make_optimiser, grad_fn, start, steps):
    """Run an optimiser on a 2-D function; returns the path, shape (steps + 1, 2)."""
    p = np.array(start, dtype=np.float64)   # the "parameter"...
    g = np.zeros_like(p)                    # ...and its gradient buffer
    opt = make_optimiser([(p, g)])
    path = [p.copy()]
    for _ in range(steps):
        g[...] = grad_fn(p)                 # write the gradient in place, as a backward pass does
        opt.step()                          # the optimiser updates p in place
        path.append(p.copy())
    return np.array(path)


SURFACES = {
    "quadratic, kappa = 100": dict(
        f=quadratic, grad=quadratic_grad, start=(-4.0, 0.6), steps=150, box=(-4.5, 1.0, -0.8, 0.8),
        optimisers={"SGD, lr 0.019": lambda ps: mg.SGD(ps, lr=0.019),
                    "momentum 0.8, lr 0.006": lambda ps: mg.SGD(ps, lr=0.006, momentum=0.8),
                    "Adam, lr 0.3": lambda ps: mg.Adam(ps, lr=0.3)}),
    "Rosenbrock": dict(
        f=rosenbrock, grad=rosenbrock_grad, start=(-1.5, 2.0), steps=3000, box=(-2.0, 2.0, -1.0, 3.0),
        optimisers={"SGD, lr 1.5e-3": lambda ps: mg.SGD(ps, lr=1.5e-3),
                    "momentum 0.95, lr 2e-4": lambda ps: mg.SGD(ps, lr=2e-4, momentum=0.95),
                    "Adam, lr 0.02": lambda ps: mg.Adam(ps, lr=0.02)}),
}
paths = {(s, o): walk(make, cfg["grad"], cfg["start"], cfg["steps"])
         for s, cfg in SURFACES.items() for o, make in cfg["optimisers"].items()}

# %%
fig, axes = plt.subplots(2, 2, figsize=(12, 8.5), gridspec_kw={"height_ratios": [1.3, 1]})
colors = ["tab:red", "tab:blue", "tab:green"]
for col, (surface, cfg) in enumerate(SURFACES.items()):
    x0, x1, y0, y1 = cfg["box"]
    gx, gy = np.meshgrid(np.linspace(x0, x1, 300), np.linspace(y0, y1, 300))
    fz = cfg["f"](np.stack([gx, gy]))
    ax = axes[0, col]
    ax.contour(gx, gy, np.log10(fz + 1e-3), levels=25, cmap="Greys", linewidths=0.7)
    for color, name in zip(colors, cfg["optimisers"]):
        path = paths[(surface, name)]
        ax.plot(path[:, 0], path[:, 1], ".-", color=color, ms=2, lw=0.8, label=name)
    ax.plot(*cfg["start"], "ko", ms=6)
    minimum = (0.0, 0.0) if surface.startswith("quad") else (1.0, 1.0)
    ax.plot(*minimum, "k*", ms=14)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_title(f"{surface}: {cfg['steps']} steps from the black dot")
    ax.legend(fontsize=8, loc="upper right")
    ax = axes[1, col]
    for color, name in zip(colors, cfg["optimisers"]):
        values = [cfg["f"](p) for p in paths[(surface, name)]]
        ax.semilogy(values, color=color, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("f (log scale)")
    ax.grid(True, which="both", alpha=0.3)
plt.tight_layout()
plt.show()

for (surface, name), path in paths.items():
    f = SURFACES[surface]["f"]
    below = next((i for i, p in enumerate(path) if f(p) < 1e-2), None)
    print(f"{surface:24s} {name:24s} f < 0.01 after {below if below is not None else 'never':>5} steps,"
          f" final f = {f(path[-1]):.2e}")

# %% [markdown]
# **On the quadratic** (left), SGD's learning rate sits just below the stability limit
# $2/100$ of the steep $y$ direction. In $y$ it therefore overshoots at every step,
# zig-zagging across the valley with an amplitude that shrinks by only 10% per step, and
# along the gentle $x$ direction it crawls, removing less than 2% of the remaining
# distance per step: after 150 steps it is still well short of the minimum, and its
# loss (lower panel, red) falls slowly and steadily. Momentum (blue) damps the zig-zag
# sooner and builds up speed along $x$, several times faster. Adam (green) divides each
# coordinate's step by that coordinate's recent gradient size, so it moves by about
# $\eta$ in both directions whatever their curvature: it swings past the minimum, circles
# it with a shrinking amplitude, and despite the detour its loss falls fastest.
#
# **On Rosenbrock** (right) the minimum at $(1, 1)$ lies at the end of a long curved
# valley. All three fall into the valley within a few steps (SGD's first step
# overshoots wildly, because the gradient at the start is large); then the slow part
# begins, creeping along the valley floor, where the gradient is tiny. Momentum
# accumulates those small gradients and Adam normalises them, so both get there long
# before SGD, which is still on its way after 3000 steps.
#
# These pictures are about *deterministic* gradients. In training, $g_t$ is
# computed on a random minibatch and is noisy; momentum and Adam's averages also smooth
# that noise. Let us see all three on real data.

# %% [markdown]
# ## 2. MNIST: data and model
#
# MNIST holds 70,000 greyscale digits of $28 \times 28$ pixels, 60,000 for training
# and 10,000 for testing, with labels 0 to 9. `load_mnist` reads the original files
# (from `$MINIGAN_DATA_DIR`, or downloads them once), checks their checksums, and
# returns each image as a row of 784 float32 pixels scaled to $[-1, 1]$, the range a
# tanh generator produces.

# %%
x_train, y_train = load_mnist("train")
x_test, y_test = load_mnist("test")
print("train", x_train.shape, x_train.dtype, "pixels in", (x_train.min(), x_train.max()),
      "| labels", y_train.shape, y_train.dtype)
print("test ", x_test.shape)
if QUICK:  # a small slice keeps the test suite fast; the full run uses everything
    x_train, y_train = x_train[:4096], y_train[:4096]
    x_test, y_test = x_test[:2000], y_test[:2000]

fig, axes = plt.subplots(2, 10, figsize=(10, 2.3))
for ax, i in zip(axes.ravel(), range(20)):
    ax.imshow(x_train[i].reshape(28, 28), cmap="gray_r")
    ax.set_title(str(y_train[i]), fontsize=9)
    ax.axis("off")
plt.show()

# %% [markdown]
# The classifier is a multilayer perceptron: $784 \to 512 \to 256 \to 10$ with
# LeakyReLU(0.01) between the dense layers (a ReLU with a sliver of slope, chapter 3),
# Glorot initialisation (chapter 1), and ten outputs, one *logit* per class. The
# loss is softmax cross-entropy: the logits $z$ become class probabilities
# $q_c = e^{z_c} / \sum_k e^{z_k}$, and the loss of an example with label $y$ is
# $-\log q_y$. Its gradient with respect to the logits is $q - \text{onehot}(y)$,
# the multi-class cousin of chapter 3's $\sigma(z) - y$, and like it, it is
# computed stably from the logits (`minigan.SoftmaxCrossEntropy`).
#
# One new ingredient: **dropout** after each hidden activation. During training,
# `Dropout(0.1)` sets each unit to zero with probability 0.1 and multiplies the
# survivors by $1/0.9$ (so the expected value is unchanged). A network that cannot rely
# on any single unit being present learns more redundant, more robust features, and
# overfits less. In evaluation mode (`model.eval()`) dropout does nothing, which is why
# the `accuracy` function below switches to it. The masks come from seeded generators,
# so a run repeats exactly.
#
# The weights of the three dense layers are drawn, in order, from one generator seeded
# with the classifier's seed, and each dropout layer has its own seeded stream. This is
# exactly how `metrics.MnistClassifier` builds its network, which will let us compare the
# two bit for bit.

# %%
HIDDEN, SLOPE, DROPOUT = (512, 256), 0.01, 0.1


def build_classifier(seed=0):
    weights = np.random.default_rng(seed)
    return mg.Sequential(
        mg.Dense(784, HIDDEN[0], rng=weights), mg.LeakyReLU(SLOPE),
        mg.Dropout(DROPOUT, rng=np.random.default_rng([seed, 2, 0])),
        mg.Dense(HIDDEN[0], HIDDEN[1], rng=weights), mg.LeakyReLU(SLOPE),
        mg.Dropout(DROPOUT, rng=np.random.default_rng([seed, 2, 1])),
        mg.Dense(HIDDEN[1], 10, rng=weights))


model = build_classifier()
print(model)


def accuracy(model, x, y, batch_size=2000):
    """Fraction of correct argmax predictions, computed in batches, in evaluation mode."""
    model.eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        logits = model(x[start:start + batch_size])
        correct += int((logits.argmax(axis=1) == y[start:start + batch_size]).sum())
    model.clear_cache()   # no backward follows: free the cached activations
    model.train()
    return correct / len(x)


print(f"untrained accuracy: {accuracy(model, x_test, y_test):.3f} (chance is 0.1)")


# %% [markdown]
# ## 3. The three optimisers on MNIST
#
# One training step is the pattern every later chapter repeats: forward, loss, zero the
# gradients, backward, optimiser step. We give each optimiser the same initial weights
# and the same sequence of minibatches of 128 images, and record the loss.
# The learning rates are typical good values for each: 0.1 for SGD, 0.01 with momentum
# 0.9 (the effective step $\eta/(1-\mu)$ is again 0.1), and $10^{-3}$ for Adam.

# %%
def train_steps(model, optimiser, batches, steps):
    """Run `steps` training steps; returns the loss of every step."""
    loss_fn = mg.SoftmaxCrossEntropy()
    losses = []
    for _, (xb, yb) in zip(range(steps), batches.forever()):
        loss = loss_fn.forward(model.forward(xb), yb)        # forward + loss
        optimiser.zero_grad()                                  # clear old gradients
        model.backward(loss_fn.backward(), input_grad=False)  # backward (no dL/dx needed)
        optimiser.step()                                       # update
        losses.append(loss)
    return np.array(losses)


COMPARE_STEPS = 30 if QUICK else 468                          # 468 steps = one epoch
OPTIMISERS = {"SGD, lr 0.1": lambda ps: mg.SGD(ps, lr=0.1),
              "momentum 0.9, lr 0.01": lambda ps: mg.SGD(ps, lr=0.01, momentum=0.9),
              "Adam, lr 1e-3": lambda ps: mg.Adam(ps, lr=1e-3)}
curves = {}
for name, make in OPTIMISERS.items():
    net = build_classifier(seed=0)                             # identical start for each
    batches = Minibatches(x_train, y_train, batch_size=128, rng=1)   # identical batches
    start = time.perf_counter()
    curves[name] = train_steps(net, make(net.parameters()), batches, COMPARE_STEPS)
    print(f"{name:22s}: test accuracy after {COMPARE_STEPS} steps {accuracy(net, x_test, y_test):.4f}"
          f"  ({time.perf_counter() - start:.1f} s)")

# %%
fig, ax = plt.subplots(figsize=(7, 3.8))
window = 5 if QUICK else 20
for name, losses in curves.items():
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    ax.plot(np.arange(window - 1, len(losses)), smooth, label=name)
ax.set_yscale("log")
ax.set_xlabel("step (batches of 128)")
ax.set_ylabel(f"training loss (moving average of {window})")
ax.set_title("The first epoch on MNIST")
ax.grid(True, which="both", alpha=0.3)
ax.legend()
plt.show()


# %% [markdown]
# With well-chosen learning rates the three are much closer here than on the toy
# surfaces: a classifier's loss is far better conditioned than Rosenbrock's valley.
# Adam's training loss is the lowest throughout the epoch; momentum is ahead of plain
# SGD early on, and by the end of the epoch the two are level. Their test accuracies
# after one epoch are within half a percent of each other. What sets Adam apart is that
# it got there with *no* tuning: its default $10^{-3}$ is a good value for most networks,
# while SGD's best learning rate must be searched for anew for every model. That
# robustness is why the rest of the book uses Adam.

# %% [markdown]
# ## 4. The classifier, trained to 98%
#
# One more ingredient lifts a plain MLP past 98% within a few epochs: a **learning-rate
# schedule**. Large steps early make fast progress; small steps late let the weights
# settle into a minimum instead of bouncing around it. We use a cosine decay over the
# $T$ steps of training,
#
# $$ \eta_t = \tfrac12\,\eta_0 \left(1 + \cos(\pi t / T)\right), $$
#
# which falls smoothly from $\eta_0$ to 0. Changing an optimiser's learning rate is just
# `opt.lr = ...`. Everything else is the loop from section 3, epoch after epoch,
# with the minibatch order drawn from its own seeded generator.

# %%
def train_classifier(model, x, y, epochs, batch_size=128, lr=1e-3, seed=0, eval_data=None):
    """Adam + softmax cross-entropy + cosine learning rate: metrics.MnistClassifier's recipe."""
    batches = Minibatches(x, y, batch_size=batch_size, rng=np.random.default_rng([seed, 1]))
    total = epochs * len(batches)
    opt = mg.Adam(model.parameters(), lr=lr)
    loss_fn = mg.SoftmaxCrossEntropy()
    log = {"loss": [], "epoch_accuracy": []}
    t = 0
    for epoch in range(epochs):
        for xb, yb in batches:                      # one epoch, freshly shuffled
            opt.lr = 0.5 * lr * (1.0 + math.cos(math.pi * t / total))
            loss = loss_fn.forward(model.forward(xb), yb)
            opt.zero_grad()
            model.backward(loss_fn.backward(), input_grad=False)
            opt.step()
            log["loss"].append(loss)
            t += 1
        if eval_data is not None:
            log["epoch_accuracy"].append(accuracy(model, *eval_data))
            print(f"epoch {epoch + 1}/{epochs}: last loss {loss:.4f}, "
                  f"test accuracy {log['epoch_accuracy'][-1]:.4f}")
    return log


# %% [markdown]
# ### Is this really the classifier `minigan.metrics` uses?
#
# `metrics.MnistClassifier(seed).fit(images, labels)` is what `metrics.load_classifier()`
# trains (once; it caches the result) to score generated digits. Before spending a few
# minutes of CPU, we check that our loop is the same recipe: same architecture, same
# initial weights, same batches in the same order, same schedule. If it is, a short run
# of both on the same data must give *bit-identical* weights, not merely close ones.

# %%
n_small = 1024
ours = build_classifier(seed=0)
train_classifier(ours, x_train[:n_small], y_train[:n_small], epochs=2)
theirs = metrics.MnistClassifier(seed=0).fit(x_train[:n_small], y_train[:n_small], epochs=2)
a, b = ours.state_dict(), theirs.model.state_dict()
print("layers:", [type(layer).__name__ for layer in theirs.model])
print("same parameter names and shapes:", {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()})
identical = all(np.array_equal(a[k], b[k]) for k in a)
print("bit-identical after two epochs on", n_small, "images:", identical)
assert identical

# %% [markdown]
# Identical. The library's settings are the ones we wrote down (this cell checks them,
# so that the chapter notices if the library's recipe ever changes):

# %%
reference = metrics.MnistClassifier(seed=0)
library_epochs = inspect.signature(metrics.MnistClassifier.fit).parameters["epochs"].default
print(f"library: hidden {reference.hidden}, slope {reference.negative_slope}, dropout {reference.dropout}, "
      f"{library_epochs} epochs by default")
assert (reference.hidden, reference.negative_slope, reference.dropout) == (HIDDEN, SLOPE, DROPOUT)
assert library_epochs == 10

# %% [markdown]
# Now the real run: 10 epochs over all 60,000 training images (the same number of
# epochs that `fit` uses by default, so this *is* the network `load_classifier()` would
# train), with the test accuracy measured after each epoch (measuring does not change
# the training, since evaluation mode draws no dropout masks).

# %%
EPOCHS = 2 if QUICK else 10
model = build_classifier(seed=0)
start = time.perf_counter()
log = train_classifier(model, x_train, y_train, epochs=EPOCHS, eval_data=(x_test, y_test))
train_seconds = time.perf_counter() - start
test_accuracy = log["epoch_accuracy"][-1]
print(f"\nfinal test accuracy {test_accuracy:.4f} after {EPOCHS} epochs, {train_seconds:.0f} s")
if not QUICK:
    assert test_accuracy >= 0.98, test_accuracy

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
steps_per_epoch = len(log["loss"]) // EPOCHS
window = 10 if QUICK else 50
smooth = np.convolve(log["loss"], np.ones(window) / window, mode="valid")
axes[0].plot(np.arange(window - 1, len(log["loss"])) / steps_per_epoch, smooth)
axes[0].set_yscale("log")
axes[0].set_xlabel("epoch")
axes[0].set_ylabel("training loss (moving average)")
axes[0].grid(True, which="both", alpha=0.3)
axes[1].plot(np.arange(1, EPOCHS + 1), 100 * np.array(log["epoch_accuracy"]), "o-")
axes[1].axhline(98, color="tab:red", ls="--", label="98%")
axes[1].set_xlabel("epoch")
axes[1].set_ylabel("test accuracy (%)")
axes[1].legend()
axes[1].grid(alpha=0.3)
fig.suptitle("Adam with a cosine learning rate: the MNIST classifier")
plt.tight_layout()
plt.show()

# %% [markdown]
# The training loss keeps falling through the last epochs as the learning rate decays
# towards zero, and the test accuracy climbs past 98%. What does the remaining error
# look like? Here are test digits the classifier gets wrong:

# %%
model.eval()
predictions = model(x_test).argmax(axis=1)
model.clear_cache()
wrong = np.flatnonzero(predictions != y_test)
print(f"{len(wrong)} of {len(y_test)} test digits misclassified")
fig, axes = plt.subplots(2, 10, figsize=(10, 2.6))
for ax, i in zip(axes.ravel(), wrong[:20]):
    ax.imshow(x_test[i].reshape(28, 28), cmap="gray_r")
    ax.set_title(f"{y_test[i]} -> {predictions[i]}", fontsize=9, color="tab:red")
for ax in axes.ravel():
    ax.axis("off")
fig.suptitle("misclassified test digits: true label -> prediction", y=1.04)
plt.show()

# %% [markdown]
# Several of the mistakes are digits a person would hesitate over too. For judging a GAN's
# samples that is the right kind of classifier: confident on clear digits, unsure on
# scribbles.
#
# Finally, we hand our weights to a `metrics.MnistClassifier`, the object that the
# scoring functions take, and confirm it gives the same accuracy. In the full run we
# also save it where `metrics.load_classifier()` looks for it, so that chapter 9 finds
# it ready instead of training the identical network again. (The quick run of the test
# suite trains on a small slice and saves nothing.)

# %%
clf = metrics.MnistClassifier(seed=0)
clf.model.load_state_dict(model.state_dict())
clf.test_accuracy = clf.accuracy(x_test, y_test)
clf.train_seconds = train_seconds
print(clf, "| same accuracy as our model:", clf.test_accuracy == test_accuracy)
assert clf.test_accuracy == test_accuracy

probs = clf.predict_proba(x_test[:1000])
print("scores of 1000 real test digits:",
      {k: v for k, v in metrics.scores_from_probs(probs).items() if k != "class_histogram"})

cache_file = metrics.resolve_cache_dir() / metrics.CLASSIFIER_FILE
if not QUICK and test_accuracy >= 0.98 and EPOCHS == library_epochs and not cache_file.exists():
    clf.save(cache_file)
    print("saved for later chapters:", cache_file)


# %% [markdown]
# Real digits cover all ten classes almost evenly (a KL divergence to uniform near 0)
# and are classified confidently (an Inception-style score close to 10, its maximum).
# A generator that draws only ones, or only blurry blobs, will score far lower on both.
# Those numbers will tell us, in chapter 9, how good our GAN's digits are.

# %% [markdown]
# ## Summary
#
# * SGD steps along the gradient; its speed is limited by the condition number.
#   Momentum accumulates consistent directions and cancels oscillating ones. Adam
#   gives every parameter a step of about $\eta$, whatever the scale of its gradient.
# * A training step is: forward, loss, `zero_grad`, backward, `step`. With Adam, a
#   cosine learning-rate schedule, a little dropout and 10 epochs, a minigan MLP
#   classifies MNIST with better than 98% accuracy.
# * Our loop reproduces `metrics.MnistClassifier` bit for bit: the classifier that will
#   score generated digits is one you have now built and trained yourself.

# %% [markdown]
# ## Exercises
#
# **Exercise T4.1 — momentum by hand.** Write `momentum_step(p, g, v, lr, mu, first)`
# that updates the parameter `p` and velocity `v` in place according to the rule of
# section 1 (on the very first step, PyTorch sets $v = g$ rather than $\mu \cdot 0 + g$;
# with a zero initial velocity that is the same thing). The check runs yours and
# `mg.SGD(..., momentum=mu)` side by side for ten steps of random gradients.

# %%
def momentum_step(p, g, v, lr, mu, first):
    # BEGIN SOLUTION Exercise T4.1: one SGD-with-momentum update, in place
    if first:
        v[...] = g
    else:
        v *= mu
        v += g
    p -= lr * v
    # END SOLUTION


# %%
check_rng = np.random.default_rng(0)
p_mine, p_lib = np.ones(5), np.ones(5)
v_mine, g_lib = np.zeros(5), np.zeros(5)
opt_lib = mg.SGD([(p_lib, g_lib)], lr=0.1, momentum=0.9)
for step in range(10):
    grad = check_rng.standard_normal(5)
    momentum_step(p_mine, grad, v_mine, lr=0.1, mu=0.9, first=(step == 0))
    g_lib[...] = grad
    opt_lib.step()
print("yours:  ", np.round(p_mine, 6))
print("minigan:", np.round(p_lib, 6))
assert np.allclose(p_mine, p_lib, rtol=1e-12, atol=1e-12)
print("T4.1 ok")


# %% [markdown]
# **Exercise T4.2 — Adam does not care about scale.** Show from the formulas that
# Adam's *first* step is $\eta\,g_1/(|g_1| + \epsilon)$ elementwise, that is about
# $\eta\,\mathrm{sign}(g_1)$, whatever the size of $g_1$. Write
# `adam_first_step(g, lr, eps)` returning that update (the amount *subtracted* from the
# parameter). The check compares it with `mg.Adam` for gradients scaled by $10^{-6}$,
# 1 and $10^{6}$, and with what SGD would do.

# %%
def adam_first_step(g, lr, eps=1e-8):
    # BEGIN SOLUTION Exercise T4.2: Adam's first update, from the bias-corrected moments
    m_hat = g                    # (1 - b1) g / (1 - b1)
    v_hat = g * g                # (1 - b2) g^2 / (1 - b2)
    return lr * m_hat / (np.sqrt(v_hat) + eps)
    # END SOLUTION


# %%
for scale in (1e-6, 1.0, 1e6):
    g = scale * np.array([0.5, -2.0, 3.0])
    p, buf = np.zeros(3), np.zeros(3)
    opt = mg.Adam([(p, buf)], lr=0.01)
    buf[...] = g
    opt.step()
    print(f"gradient scale {scale:g}: Adam moved by {np.round(-p, 6)}, SGD(lr=0.01) would move by {0.01 * g}")
    assert np.allclose(-p, adam_first_step(g, 0.01), rtol=1e-9)
print("T4.2 ok")


# %% [markdown]
# **Exercise T4.3 — how much does the schedule buy?** Train the classifier once more
# with a *constant* learning rate of $10^{-3}$ (same seed, same epochs) and compare the
# final test accuracy with the cosine schedule's. Write `train_constant_lr(epochs)` that
# returns the test accuracy. (In quick mode this trains on the small slice; in the full
# run it takes as long as section 4. Do you expect the difference to be large? Which
# gives a smoother end to the loss curve?)

# %%
def train_constant_lr(epochs):
    # BEGIN SOLUTION Exercise T4.3: train with a constant learning rate and return the test accuracy
    net = build_classifier(seed=0)
    batches = Minibatches(x_train, y_train, batch_size=128, rng=np.random.default_rng([0, 1]))
    opt = mg.Adam(net.parameters(), lr=1e-3)
    loss_fn = mg.SoftmaxCrossEntropy()
    for _ in range(epochs):
        for xb, yb in batches:
            loss_fn.forward(net.forward(xb), yb)
            opt.zero_grad()
            net.backward(loss_fn.backward(), input_grad=False)
            opt.step()
    return accuracy(net, x_test, y_test)
    # END SOLUTION


# %%
constant = train_constant_lr(EPOCHS)
print(f"constant lr: {constant:.4f}   cosine schedule: {test_accuracy:.4f}")
assert 0.5 < constant <= 1.0
print("T4.3 ok")
