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
#     chapter: 12
#     needs_mnist: true
# ---

# %% [markdown]
# # Chapter 12 — Convolutions by hand, and the DCGAN
#
# The GAN of chapter 9 sees an image as 784 unrelated numbers. Its first dense layer has a
# separate weight for every pixel and every unit, so a stroke learned in the top left
# corner is of no help in the bottom right: the network must learn it again, position by
# position. A **convolution** slides one small set of weights, a kernel, over the whole
# image. The weights are shared by all positions, so what is learned in one place is known
# everywhere, with a small fraction of the parameters. DCGAN (Radford et al. 2016) built
# both players of a GAN from convolutions, and most image GANs since descend from it.
#
# minigan has no autograd, so we build the convolution by hand, from the forward pass to
# the backward pass, and check every step numerically. Then we train a DCGAN on MNIST.
#
# **What you will learn**
#
# 1. Convolution as a **sliding dot product**: a loop you can read, and the output-size
#    formula $\lfloor (H + 2p - k)/s \rfloor + 1$.
# 2. **im2col**: every window as a column of one matrix, so that a convolution is one
#    matrix product (a dense layer applied to every window), and what that costs.
# 3. The **backward pass**: $dW$ from the windows, $dx$ by **col2im**, the adjoint of
#    im2col; why $dx$ is itself a convolution, of the upstream gradient with the *flipped*
#    kernel; checked against central differences.
# 4. The **transposed convolution** as the adjoint of the convolution: why it upsamples,
#    and why kernel 3 with stride 2 paints a **checkerboard** (Odena et al. 2016) where
#    DCGAN's kernel 4 with stride 2 does not.
# 5. The **DCGAN** on MNIST: its architecture, a short training run, its samples and the
#    classifier's scores.
#
# The full run takes about five minutes on one CPU core, most of it the DCGAN's
# training (shorter than the preset's full run; section 5 says how to get that one). In
# quick mode (the test suite) the DCGAN trains for a few dozen steps on a slice of the
# data, and its samples are noise.

# %%
import os

QUICK = os.environ.get("MINIGAN_QUICK", "0") not in ("", "0")  # the test suite sets MINIGAN_QUICK=1

import time

import matplotlib.pyplot as plt
import numpy as np

import minigan as mg
from minigan import functional as F
from minigan import kernels, metrics, plot
from minigan.data import Minibatches, load_mnist
from minigan.gradcheck import check_backward, check_layer, numerical_gradient, rel_error
from minigan.models import build_gan, lr_factor
from minigan.presets import preset
from minigan.train import ImageSnapshots, fit

STEPS = 30 if QUICK else 750                # DCGAN generator updates (750 x 128 = 1.6 epochs)
N_EVAL = 500 if QUICK else 10000            # generated images scored by the classifier
mg.seed(0)
rng = np.random.default_rng(0)
print("minigan", mg.__version__, "| quick mode" if QUICK else "| full mode")

# %% [markdown]
# ## 1. A convolution is a sliding dot product
#
# Images are stored NCHW, as in PyTorch: `x[n, c, h, w]` is channel `c` of image `n` at
# row `h`, column `w`. A convolution with `C_out` output channels has a weight `W` of shape
# $(C_\text{out}, C_\text{in}, k_H, k_W)$: one kernel of $C_\text{in} \times k_H \times k_W$
# numbers per output channel, and one bias per output channel. The image is padded with
# $p$ zeros on every side; the kernel is laid on a window of it, multiplied entry by entry
# and summed, and the window moves on by $s$ pixels, the **stride**:
#
# $$
# \mathrm{out}[n, o, h, w] = b_o + \sum_{c, i, j} W[o, c, i, j]\;
#     x_\text{pad}[n, c,\; s h + i,\; s w + j] .
# $$
#
# (Mathematicians would call this a cross-correlation: a convolution in their sense flips
# the kernel first. Every deep-learning library computes the form above and calls it a
# convolution; the flip will come back, in the backward pass.)
#
# Here it is as four loops, one dot product per output pixel, beside minigan's
# `F.conv2d_forward`:

# %%
def conv2d_loops(x, W, b, stride=1, padding=0):
    """out[n, o, h, w] = b[o] + <W[o], the window of x_pad under (h, w)>, one pixel at a time."""
    N, C_in, H, W_in = x.shape
    C_out, _, kH, kW = W.shape
    H_out = (H + 2 * padding - kH) // stride + 1
    W_out = (W_in + 2 * padding - kW) // stride + 1
    x_pad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    out = np.empty((N, C_out, H_out, W_out), dtype=x.dtype)
    for n in range(N):
        for o in range(C_out):
            for h in range(H_out):
                for w in range(W_out):
                    window = x_pad[n, :, stride * h:stride * h + kH, stride * w:stride * w + kW]
                    out[n, o, h, w] = np.sum(window * W[o]) + b[o]
    return out


x = rng.standard_normal((2, 3, 7, 6))           # 2 images, 3 channels, 7 x 6 pixels
W = rng.standard_normal((4, 3, 3, 3))           # 4 output channels, 3 x 3 kernels
b = rng.standard_normal(4)
loops = conv2d_loops(x, W, b, stride=2, padding=1)
library, _ = F.conv2d_forward(x, W, b, stride=2, padding=1)
print("output shape", loops.shape, " largest difference from minigan's:", np.abs(loops - library).max())

# %% [markdown]
# ### The output size
#
# Along one axis the window's first pixel can sit at $0, s, 2s, \dots$ as long as the
# window still fits in the padded image: $s\,h + k \le H + 2p$. That gives
#
# $$
# H_\text{out} = \left\lfloor \frac{H + 2p - k}{s} \right\rfloor + 1 ,
# $$
#
# and the same for the width. A few settings that come up all the time, checked against
# the loops and against `F.conv2d_output_shape`:

# %%
print(f"{'H':>3} {'k':>2} {'s':>2} {'p':>2}   H_out   what it is")
for H, k, s, p, what in ((28, 3, 1, 1, "'same': a 3x3 kernel with padding 1 keeps the size"),
                         (28, 5, 1, 0, "'valid': no padding, the border shrinks by k - 1"),
                         (28, 4, 2, 1, "DCGAN's D: stride 2 halves the size"),
                         (14, 4, 2, 1, "... and again"),
                         (8, 3, 2, 0, "the floor: the last row and column are never used")):
    H_out = conv2d_loops(np.zeros((1, 1, H, H)), np.zeros((1, 1, k, k)), np.zeros(1), s, p).shape[2]
    assert (H_out, H_out) == F.conv2d_output_shape((H, H), k, s, p)
    print(f"{H:>3} {k:>2} {s:>2} {p:>2}   {H_out:>5}   {what}")

# %% [markdown]
# What do kernels compute? A kernel is a small template, and the output is large where
# the window looks like it. Two hand-made $3 \times 3$ kernels show it on a digit: one
# responds to vertical edges (dark to the left, bright to the right), one to horizontal
# ones. A convolutional network learns its kernels instead, many of them per layer, and
# stacks layers so that later kernels look for patterns of earlier ones.

# %%
x_train, y_train = load_mnist("train")
if QUICK:  # a small slice keeps the test suite fast
    x_train, y_train = x_train[:2000], y_train[:2000]
# pixels in [0, 1]: the background is then 0, like the zero padding, and has no edge
digit = (x_train[:1].reshape(1, 1, 28, 28).astype(np.float64) + 1) / 2
edges = np.array([[[[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]],       # vertical edges (Sobel)
                  [[[-1, -2, -1], [0, 0, 0], [1, 2, 1]]]],      # horizontal edges
                 dtype=np.float64)                               # (C_out=2, C_in=1, 3, 3)
maps, _ = F.conv2d_forward(digit, edges, None, stride=1, padding=1)
halved, _ = F.conv2d_forward(digit, edges, None, stride=2, padding=1)
fig, axes = plt.subplots(1, 4, figsize=(11, 3))
panels = [(digit[0, 0], "the digit, 28x28", "gray"), (maps[0, 0], "vertical edges, 28x28", "RdBu_r"),
          (maps[0, 1], "horizontal edges, 28x28", "RdBu_r"),
          (halved[0, 0], "vertical edges, stride 2: 14x14", "RdBu_r")]
for ax, (image, title, cmap) in zip(axes, panels):
    limit = np.abs(image).max()             # symmetric, so that white is 0 on the edge maps
    ax.imshow(image, cmap=cmap, vmin=-limit if cmap == "RdBu_r" else None,
              vmax=limit if cmap == "RdBu_r" else None, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
plt.tight_layout()
plt.show()

# %% [markdown]
# (Red is a large positive response, blue a large negative one: the left and the right
# side of a vertical stroke answer with opposite signs.)
#
# ## 2. im2col: a convolution is one matrix product
#
# The loops are correct and hopeless: a DCGAN layer computes tens of thousands of dot
# products per image, and Python pays for each of them. The way out is to notice that
# every output pixel is the dot product of the *flattened kernel* with a *flattened
# window*. Copy each window into a column of a matrix, and all those dot products become
# one matrix product. That copy is called **im2col** (image to columns).
#
# For one image of $C$ channels and $L = H_\text{out} W_\text{out}$ windows, `im2col`
# builds `cols` of shape $(C k_H k_W, L)$: column $l = h W_\text{out} + w$ holds the window
# under output pixel $(h, w)$, flattened in $(c, i, j)$ order. That is the order of
# `W.reshape(C_out, -1)`, the kernels as the rows of a matrix $W_\text{row}$ of shape
# $(C_\text{out}, C k_H k_W)$, so
#
# $$
# \mathrm{out}[n] = W_\text{row}\; \mathrm{cols}[n] + b \qquad (C_\text{out}, L) .
# $$
#
# That is chapter 2's dense layer, applied to every window with the same weights. Here are
# the windows of a $4 \times 4$ image of the numbers 0 to 15 under a $2 \times 2$ kernel
# with stride 1: nine windows, nine columns.

# %%
tiny = np.arange(16.0).reshape(1, 1, 4, 4)
print("the image:\n", tiny[0, 0].astype(int))
print("im2col, one column per window (top-left window first):\n",
      F.im2col(tiny, 2, 2, stride=1, padding=0)[0].astype(int))

# %% [markdown]
# Column 0 is the top-left window, pixels 0, 1, 4, 5; column 1 moves one pixel right.
# Pixel 5 sits in four windows, so it is copied four times: windows overlap whenever the
# stride is smaller than the kernel. Now the convolution of section 1 as one product, with
# the shape of every step:

# %%
cols = F.im2col(x, 3, 3, stride=2, padding=1)          # (N, C_in kH kW, L)
W_row = W.reshape(W.shape[0], -1)                      # (C_out, C_in kH kW)
out = W_row @ cols + b[:, None]                        # (N, C_out, L): one product per image
H_out, W_out = F.conv2d_output_shape(x.shape[2:], 3, stride=2, padding=1)
out = out.reshape(x.shape[0], W.shape[0], H_out, W_out)
for name, a in (("x", x), ("W", W), ("cols = im2col(x)", cols), ("W_row = W.reshape(C_out, -1)", W_row),
                ("W_row @ cols + b, reshaped", out)):
    print(f"{name:>30}: {a.shape}")
print("largest difference from the loops:", np.abs(out - loops).max())

# %% [markdown]
# ### What it costs
#
# The product does exactly the loops' arithmetic, $2\, C_\text{out}\, C k_H k_W\, L$
# floating-point operations per image, but in one call to a tuned BLAS instead of $N
# C_\text{out} L$ Python-level dot products. The price is memory: every pixel is copied
# into each window that holds it, so `cols` holds $k_H k_W L$ entries per channel where the
# image holds $H W$: about $k_H k_W$ times the input for stride 1, and
# $k_H k_W / (s_H s_W)$ times for stride $s$. For the two convolutions of DCGAN's
# discriminator on a batch of 64 MNIST digits:

# %%
for name, shape, k in (("D's first convolution", (64, 1, 28, 28), 4),
                       ("D's second convolution", (64, 64, 14, 14), 4)):
    N, C, H, W_in = shape
    L = np.prod(F.conv2d_output_shape((H, W_in), k, stride=2, padding=1))
    x_bytes, cols_bytes = 4 * N * C * H * W_in, 4 * N * C * k * k * L     # float32
    print(f"{name}: input {x_bytes / 2**20:5.1f} MiB, windows {cols_bytes / 2**20:5.1f} MiB "
          f"({cols_bytes / x_bytes:.0f} times the input)")

# %% [markdown]
# And the speed, on a batch of 16 digits and a $3 \times 3$ convolution with 8 output
# channels:

# %%
digits = x_train[:16].reshape(16, 1, 28, 28).astype(np.float64)
W8, b8 = rng.standard_normal((8, 1, 3, 3)), np.zeros(8)
start = time.perf_counter()
slow = conv2d_loops(digits, W8, b8, stride=1, padding=1)
loop_seconds = time.perf_counter() - start
start = time.perf_counter()
fast, _ = F.conv2d_forward(digits, W8, b8, stride=1, padding=1)
product_seconds = time.perf_counter() - start
print(f"loops {1e3 * loop_seconds:.0f} ms, im2col and one product {1e3 * product_seconds:.1f} ms "
      f"({loop_seconds / product_seconds:.0f} times faster), same numbers: {np.allclose(slow, fast)}")

# %% [markdown]
# `F.conv2d_forward` is written to be read: it is the steps above, and little else. The `Conv2d`
# layer calls the same math through `minigan.kernels`, which computes the same sums
# faster: it keeps the channels last inside, so that a window's numbers lie side by side
# in memory and im2col copies long runs instead of single numbers; and it builds the
# windows a few samples at a time, multiplying each chunk while it is still in the CPU's
# cache instead of writing the whole window matrix to memory and reading it back. The test
# suite proves the two equal; here is one spot check:

# %%
fast_out, _ = kernels.conv2d_forward(x.astype(np.float32), W.astype(np.float32),
                                     b.astype(np.float32), stride=2, padding=1)
print("kernels.conv2d_forward (float32) vs F.conv2d_forward (float64), relative error:",
      rel_error(fast_out, library))

# %% [markdown]
# ## 3. The backward pass
#
# Per image the forward pass is a dense layer, $\mathrm{out}[n] = W_\text{row}\,
# \mathrm{cols}[n] + b$, so chapter 2 gives its backward pass almost for free. With the
# upstream gradient $G[n] = \partial L / \partial\, \mathrm{out}[n]$ viewed as a
# $(C_\text{out}, L)$ matrix:
#
# $$
# dW_\text{row} = \sum_n G[n]\, \mathrm{cols}[n]^\top \quad (C_\text{out}, C k_H k_W), \qquad
# db = \sum_{n, l} G[n]_{\cdot, l} \quad (C_\text{out},), \qquad
# d\mathrm{cols}[n] = W_\text{row}^\top\, G[n] \quad (C k_H k_W, L).
# $$
#
# The sums over $n$ and over the windows $l$ are there because the weights are shared:
# every window of every image used the same $W$, and each use contributes to its gradient.
#
# That leaves $dx$. `cols` is not the input, it is copies of it; $d\mathrm{cols}$ says how
# the loss changes with each *copy*. A pixel that was copied into $m$ windows influences
# the loss through all $m$ copies, so by the chain rule its gradient is the **sum** of the
# gradients of its copies. The operation that puts every column back into its window and
# *adds* where windows overlap is **col2im**:
#
# $$
# dx = \mathrm{col2im}(d\mathrm{cols}) .
# $$
#
# ### col2im is the adjoint of im2col
#
# im2col is linear: $\mathrm{cols} = M x$ for a matrix $M$ of zeros and ones that copies
# each pixel into each window holding it. The backward pass of a linear map is its
# transpose, and $M^\top$ sends each entry of a column back to the pixel it came from and
# sums per pixel. That is col2im. A transpose is characterised by
#
# $$
# \langle M x, c \rangle = \langle x, M^\top c \rangle \quad \text{for every } x, c :
# $$

# %%
x3 = rng.standard_normal((2, 3, 7, 6))
c3 = rng.standard_normal(F.im2col(x3, 3, 3, stride=2, padding=1).shape)
print("<im2col(x), c> =", np.sum(F.im2col(x3, 3, 3, stride=2, padding=1) * c3))
print("<x, col2im(c)> =", np.sum(x3 * F.col2im(c3, x3.shape, 3, 3, stride=2, padding=1)))

# %% [markdown]
# So col2im undoes im2col only where windows do not overlap: col2im(im2col(x)) is x with
# every pixel multiplied by the number of windows that hold it. For an image of ones this
# count is the picture itself. With a $3 \times 3$ kernel, stride 1 and padding 1, an
# interior pixel lies in 9 windows, an edge pixel in 6 and a corner in 4 (windows that
# would reach past the padding do not exist):

# %%
ones = np.ones((1, 1, 6, 6))
counts = F.col2im(F.im2col(ones, 3, 3, stride=1, padding=1), ones.shape, 3, 3, stride=1, padding=1)
print(counts[0, 0].astype(int))

# %% [markdown]
# Now both by hand. `col2im_by_hand` loops over the windows and adds each column into
# its place in a zero-padded image, then cuts the padding off (sums that land on the
# padding are dropped: the padding is a constant, not an input). minigan's `F.col2im`
# loops over the $k_H k_W$ kernel offsets instead, moving a whole strided slice at a time,
# which is fewer and larger operations for the same sums. `conv2d_backward_by_hand` is the
# three formulas above with col2im at the end. Their bodies are the solutions of
# Exercises 12.1 and 12.2, which are in the library (see the end of the chapter).

# %%
def col2im_by_hand(cols, x_shape, kH, kW, stride=1, padding=0):
    """The adjoint of im2col: each column ADDED into its window of the padded image."""
    # BEGIN SOLUTION Exercise 12.1: add each column back into its window, then drop the padding
    N, C, H, W_in = x_shape
    H_out, W_out = F.conv2d_output_shape((H, W_in), (kH, kW), stride, padding)
    x_pad = np.zeros((N, C, H + 2 * padding, W_in + 2 * padding))
    windows = cols.reshape(N, C, kH, kW, H_out, W_out)
    for h in range(H_out):
        for w in range(W_out):
            x_pad[:, :, stride * h:stride * h + kH, stride * w:stride * w + kW] += windows[..., h, w]
    return x_pad[:, :, padding:padding + H, padding:padding + W_in]
    # END SOLUTION


def conv2d_backward_by_hand(dout, cols, W, x_shape, stride, padding):
    """(dx, dW, db) of out[n] = W_row @ cols[n] + b, from the windows cols = im2col(x)."""
    # BEGIN SOLUTION Exercise 12.2: compute dx, dW and db of conv2d (dx may call col2im)
    N, C_out = dout.shape[:2]
    G = dout.reshape(N, C_out, -1)                                 # (N, C_out, L)
    W_row = W.reshape(C_out, -1)                                   # (C_out, C_in kH kW)
    dW = sum(G[n] @ cols[n].T for n in range(N)).reshape(W.shape)
    db = G.sum(axis=(0, 2))
    dcols = np.stack([W_row.T @ G[n] for n in range(N)])           # (N, C_in kH kW, L)
    dx = col2im_by_hand(dcols, x_shape, W.shape[2], W.shape[3], stride, padding)
    return dx, dW, db
    # END SOLUTION


out, cache = F.conv2d_forward(x, W, b, stride=2, padding=1)
G = rng.standard_normal(out.shape)                             # an upstream gradient
mine = conv2d_backward_by_hand(G, F.im2col(x, 3, 3, 2, 1), W, x.shape, stride=2, padding=1)
theirs = F.conv2d_backward(G, cache)
for name, a, t in zip(("dx", "dW", "db"), mine, theirs):
    print(f"{name}: shape {a.shape}, relative error to minigan's {rel_error(a, t):.1e}")

# %% [markdown]
# And the real test, chapter 2's: minigan's backward pass against central differences,
# in float64, with a random upstream gradient, on a convolution with stride 2 and padding
# 1, where windows overlap and some of them hang over the border:

# %%
print(check_backward(F.conv2d_forward, [x, W, b], kwargs={"stride": 2, "padding": 1}))

# %% [markdown]
# ### The input gradient is a convolution with the flipped kernel
#
# Look at one axis, one channel, stride 1 and no padding: $\mathrm{out}[h] = \sum_i W[i]\,
# x[h + i]$. Pixel $t$ meets kernel entry $i$ at output $h = t - i$, so
#
# $$
# dx[t] = \sum_i W[i]\; G[t - i] = \sum_j W[k - 1 - j]\; G[t - (k - 1) + j] ,
# $$
#
# substituting $j = k - 1 - i$. The right-hand side is the forward formula again: a
# convolution of $G$, padded with $k - 1$ zeros on each side (a "full" convolution, so
# that the output has the input's size), with the kernel **flipped**, $W[k - 1 - j]$.
# With padding $p$ in the forward pass, $x$ is pixel $p$ onwards of $x_\text{pad}$, so the
# padding becomes $k - 1 - p$. With channels, $dx[c]$ sums over the output channels $o$
# that $x[c]$ fed, so the flipped kernel also swaps its two channel axes: it maps
# $C_\text{out}$ channels back to $C_\text{in}$. In numbers, for stride 1:

# %%
x1 = rng.standard_normal((2, 3, 6, 5))
W1 = rng.standard_normal((4, 3, 3, 3))
out1, cache1 = F.conv2d_forward(x1, W1, None, stride=1, padding=1)
G1 = rng.standard_normal(out1.shape)
dx1, _, _ = F.conv2d_backward(G1, cache1)
W_flipped = W1[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)          # (C_in, C_out, kH, kW): C_out -> C_in
dx_as_conv, _ = F.conv2d_forward(G1, np.ascontiguousarray(W_flipped), None, stride=1,
                                 padding=3 - 1 - 1)
print("dx from conv2d_backward vs conv2d(G, flipped W, padding k - 1 - p): relative error",
      rel_error(dx1, dx_as_conv))

# %% [markdown]
# With stride $s > 1$ the same holds once $s - 1$ zeros are put between the entries of $G$
# (the forward pass skipped those positions). Section 4 gives the operation that does all
# of this, padding and spreading included, its own name.
#
# ## 4. The transposed convolution: the adjoint, and why it upsamples
#
# A convolution without its bias is linear in its input, $\mathrm{conv}(x) = A x$, and
# its input gradient, $dx = A^\top G$, is the map $A^\top$ applied to the upstream
# gradient. $A^\top$ on its own, applied to any input, is the **transposed convolution**.
# It takes $C_\text{out}$ channels to $C_\text{in}$, and its defining property is the one
# col2im had:
#
# $$
# \langle \mathrm{conv}(x), y \rangle = \langle x, \mathrm{conv}^\top(y) \rangle
# \quad \text{for every } x, y .
# $$
#
# minigan's `F.conv_transpose2d_forward(y, W, b, stride, padding, output_padding)` is
# $A^\top$ for the convolution with the *same* weight array. (That is why PyTorch and
# minigan store a transposed convolution's weight with its *input* channels first: its
# $(C_\text{in}, C_\text{out}, k_H, k_W)$ is the $(C_\text{out}, C_\text{in}, k_H, k_W)$
# of the convolution it transposes.) It computes $W_\text{row}^\top y$ and then col2im:
# each input pixel paints a weighted copy of the kernel into the output, and overlapping
# copies add. Checked:

# %%
x4 = rng.standard_normal((2, 3, 7, 7))
W4 = rng.standard_normal((4, 3, 4, 4))                  # a 3 -> 4 convolution, 4x4, stride 2
y4 = rng.standard_normal(F.conv2d_forward(x4, W4, None, stride=2, padding=1)[0].shape)
conv_x = F.conv2d_forward(x4, W4, None, stride=2, padding=1)[0]
conv_T_y = F.conv_transpose2d_forward(y4, W4, None, stride=2, padding=1, output_padding=1)[0]
print(f"x {x4.shape} -> conv(x) {conv_x.shape};  y {y4.shape} -> conv_T(y) {conv_T_y.shape}")
print("<conv(x), y>   =", np.sum(conv_x * y4))
print("<x, conv_T(y)> =", np.sum(x4 * conv_T_y))
_, cache4 = F.conv2d_forward(x4, W4, None, stride=2, padding=1)
print("conv2d_backward's dx vs conv_transpose2d_forward: relative error",
      rel_error(F.conv2d_backward(y4, cache4)[0], conv_T_y))

# %% [markdown]
# The shapes show why a generator wants it. The convolution took $7 \times 7$ to
# $3 \times 3$; its transpose goes back from $3 \times 3$ to $7 \times 7$. With stride $s$,
# each input pixel moves its kernel copy $s$ output pixels on, so the output is about $s$
# times larger:
#
# $$
# H_\text{out} = (H - 1)\, s - 2p + k + o ,
# $$
#
# where $o$ is `output_padding`. Because the convolution's floor maps several sizes to
# the same $H$ (here 6 and 7 both give 3), the transpose needs $o$ (from 0 to $s - 1$)
# to say which one it means: $o = 1$ above gives back 7. Exercise T12.1 derives the
# formula. DCGAN's generator uses $k = 4$, $s = 2$, $p = 1$, which doubles the size
# exactly: $7 \to 14 \to 28$.
#
# ### The checkerboard artefact
#
# How many kernel copies land on each output pixel? Give a transposed convolution an
# input of ones and a kernel of ones, and its output counts them. With kernel 3 and
# stride 2, copies that start 2 pixels apart overlap by one pixel, so along each axis the
# count alternates 1, 2, 1, 2, ...; in two dimensions that is a checkerboard of 1, 2 and
# 4. With kernel 4 and stride 2 every interior pixel is covered by exactly 2 copies per
# axis, 4 in all (only the outermost ring sees fewer).

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 4))
for ax, (k, p, op) in zip(axes, ((3, 1, 1), (4, 1, 0))):
    layer = mg.ConvTranspose2d(1, 1, k, stride=2, padding=p, output_padding=op, bias=False,
                               dtype="float64")
    layer.params["W"][...] = 1.0
    overlap = layer(np.ones((1, 1, 8, 8)))[0, 0]       # 8x8 -> 16x16
    print(f"kernel {k}, stride 2, copies per pixel along row 5: {overlap[5].astype(int).tolist()}")
    shown = ax.imshow(overlap, cmap="viridis", vmin=0, vmax=4, interpolation="nearest")
    ax.set_title(f"kernel {k}, stride 2", fontsize=10)
    ax.set_axis_off()
fig.colorbar(shown, ax=axes, shrink=0.8, label="kernel copies that land on the pixel")
plt.show()

# %% [markdown]
# Odena, Dumoulin and Olah (2016, "Deconvolution and checkerboard artifacts") traced the
# checkerboards in many generated images to this uneven overlap: when some output pixels
# receive twice the contributions of their neighbours, a generator has to fight its own
# architecture to draw a smooth surface, and in practice it often loses. Even overlap does
# not forbid a checkerboard (a learned kernel can still give the two phases different
# weights), it only stops the layer from imposing one. **DCGAN's 4x4 kernels with stride 2
# have even overlap: the kernel size is divisible by the stride.** (Odena et al. also
# propose upsampling by resizing and then convolving, which avoids the problem entirely.)
#
# ## 5. The DCGAN on MNIST
#
# Radford, Metz and Chintala (2016) found a recipe that made convolutional GANs train
# reliably: no pooling, strided convolutions in D and transposed convolutions in G to
# change the resolution; batch normalisation in both networks (but not on D's input layer
# or G's output layer); ReLU in G with a tanh output, LeakyReLU with slope 0.2 in D;
# weights drawn from $\mathcal{N}(0, 0.02^2)$; Adam with learning rate $2 \cdot 10^{-4}$ and
# $\beta_1 = 0.5$. minigan's `presets.DCGAN` is that network at MNIST size, laid over the
# `mnist` preset of chapter 9 by `preset("mnist", arch="dcgan")` (this is what `--arch
# dcgan` does on the command line), with what measuring changed (below, and in
# `benchmarks/RESULTS.md`): D without batch norm and judging pairs of images, a higher
# learning rate that decays over the second half of a longer run, a light R1 penalty on
# D (chapter 13), paid once every 16 steps, with Adam's $\beta_1 = 0$ (no momentum, as
# R1's authors train; $\beta_2 = 0.99$), a hidden dense layer in G and batches of 128:
#
# * **G**: the noise goes through a hidden dense layer of 128 units (`g_dense`), then a
#   dense layer to a stack of small feature maps ($7 \times 7$ for MNIST), then
#   transposed convolutions ($k = 4$, $s = 2$, $p = 1$) double the size until the image
#   is $28 \times 28$, with batch norm and ReLU between them and a tanh at the end;
# * **D**: the mirror image, strided convolutions that halve the size, LeakyReLU, and a
#   dense layer to one logit. The paper puts batch norm in D as well; the preset leaves
#   it out and lets D judge two images at once, stacked as two channels (packing, chapter
#   8): measured on MNIST, that is what made the ten digits come out about equally often
#   (`benchmarks/RESULTS.md`).
#
# A layer followed by batch norm has no bias: batch norm subtracts the mean, and with it
# any bias (Exercise T12.2). Printing the networks shows the preset's current settings,
# and how few parameters the convolutions need next to chapter 9's fully connected GAN:

# %%
config = preset("mnist", arch="dcgan")
print({k: config[k] for k in ("latent_dim", "g_dense", "g_channels", "d_channels", "g_batchnorm",
                              "d_batchnorm", "init", "lr_g", "lr_d", "betas", "batch_size",
                              "ema_decay", "steps", "penalty", "penalty_weight", "penalty_every")})
gan = build_gan(config, seed=0)
print("G:", gan.G)
print("D:", gan.D)
mlp_gan = build_gan({**preset("mnist"), "pack": 1}, seed=0)
print(f"parameters: DCGAN G {gan.G.n_params:,}, D {gan.D.n_params:,};  "
      f"chapter 9's MLP GAN: G {mlp_gan.G.n_params:,}, D {mlp_gan.D.n_params:,}")
del mlp_gan

# %% [markdown]
# Every layer of both networks has a hand-written backward pass, so one gradient check
# covers the whole model: a small DCGAN-shaped stack (a transposed convolution, batch norm,
# a convolution, a dense layer), in float64, every parameter against central differences.

# %%
small = mg.Sequential(mg.Reshape(2, 2, 2),
                      mg.ConvTranspose2d(2, 3, 4, stride=2, padding=1, bias=False, rng=1),
                      mg.BatchNorm2d(3), mg.ReLU(),
                      mg.Conv2d(3, 2, 4, stride=2, padding=1, rng=2), mg.LeakyReLU(0.2),
                      mg.Flatten(), mg.Dense(8, 1, rng=3))
print(check_layer(small, rng.standard_normal((4, 8))))

# %% [markdown]
# ### Training
#
# The preset's full run (its `steps` above) is longer than a chapter should take, so this
# one is shorter, and the preset's learning-rate schedule (constant, then a linear decay)
# is squeezed into it with `lr_factor`. The loop is the library's training driver,
# `minigan.train.fit`, with a callback, `ImageSnapshots`, that keeps what G draws from
# ten fixed noise vectors after every sixth of the run. On a CPU a DCGAN step costs a few
# times a step of chapter 9's MLP GAN, although it has far fewer weights: each weight of a
# convolution is used once per window, so the arithmetic grows with the image, not with
# the parameter count.

# %%
snapshots = ImageSnapshots(every=max(1, STEPS // 6), n=10, seed=10)
batches = Minibatches(x_train, batch_size=config["batch_size"], rng=0).forever()
start = time.perf_counter()
fit(gan, batches, STEPS, schedule=lambda step: lr_factor(step, STEPS, config),
    callbacks=[snapshots])
train_seconds = time.perf_counter() - start
print(f"{STEPS} steps in {train_seconds:.0f} s ({1000 * train_seconds / STEPS:.0f} ms per step)")

# %% [markdown]
# The same ten noise vectors over training (the samples come from G's moving average,
# as in chapter 9):

# %%
plot.plot_progress(snapshots.snapshots, title="the same 10 noise vectors over training")

# %% [markdown]
# At step 0 the generator paints grey noise. Within the first few hundred steps the
# background turns black and thick, blotchy strokes sit in the middle; from there the
# strokes thin into pen lines and bend into the shapes of digits. A larger sample from
# the end of the run:

# %%
samples = gan.sample(64, rng=1)
plot.plot_image_grid(samples, nrow=8, title=f"64 samples after {STEPS} steps")

# %% [markdown]
# Many are recognisable digits; others are digit-like strokes that do not settle on one:
# the preset's full run is longer for a reason. A walk through the latent space shows
# whether G has learnt a smooth map: each row goes from one z to another along the
# great circle (`plot.slerp`; a straight line would pass through short vectors that G
# never saw), and a digit should morph into the next without jumping:

# %%
plot.plot_interpolation(gan, n_rows=6, n_steps=10, seed=3)

# %% [markdown]
# The loss curves:

# %%
plot.plot_losses(gan.history, title="DCGAN on MNIST")

# %% [markdown]
# Watch how far apart $D(x)$ and $D(G(z))$ stay. A D that stays ahead is not a failure:
# with the non-saturating loss a confident D still hands G a strong gradient (chapter
# 7), and the samples keep improving; what would be a failure is D's loss collapsing to
# 0 for good.
#
# ### The classifier's scores
#
# As in chapter 9: chapter 4's classifier (`metrics.load_classifier()`) labels thousands of
# samples, and `metrics.classifier_scores` reports how many classes G draws, how evenly
# (the KL divergence of the class histogram to uniform: 0 is perfectly even) and how
# recognisably (the Inception-style score: 10 at best). Real test digits give the
# reference. (In quick mode, unless chapter 4's classifier is cached, a stand-in trained
# for one epoch on the data slice scores the samples, and the numbers mean nothing.)

# %%
cache_file = metrics.resolve_cache_dir() / metrics.CLASSIFIER_FILE
if QUICK and not cache_file.exists():
    clf = metrics.MnistClassifier(seed=0).fit(x_train, y_train, epochs=1)
    CLF_NAME = "a quick-mode stand-in classifier (1 epoch on a slice)"
    print("QUICK MODE: the scores below come from a STAND-IN classifier, not chapter 4's")
else:
    clf = metrics.load_classifier()
    CLF_NAME = "the chapter-4 classifier"

x_test, _ = load_mnist("test")
fake = gan.sample(N_EVAL, rng=2)
real_scores = metrics.classifier_scores(x_test[:N_EVAL], clf)
fake_scores = metrics.classifier_scores(fake, clf)
print(f"scored by {CLF_NAME}")
print(f"{'':>12}{'classes covered':>17}{'KL to uniform':>15}{'Inception-style score':>23}")
for name, s in (("real test", real_scores), ("DCGAN", fake_scores)):
    print(f"{name:>12}{s['classes_covered']:>14}/10{s['kl_to_uniform']:>15.3f}"
          f"{s['inception_score']:>23.2f}")

# %% [markdown]
# The short run draws all ten digits, though not in equal numbers, and its score is far
# below that of real digits: the unsettled strokes seen above spread the classifier's
# belief over several classes. The preset's full run trains several times longer, with the
# learning-rate decay spread over all of it, and writes its samples, curves and scores
# into a run directory:
#
# ```bash
# python -m minigan train --dataset mnist --arch dcgan                # the preset's full run
# python -m minigan train --dataset mnist --arch dcgan --conditional  # digits on demand (chapter 11)
# python -m minigan evaluate --checkpoint RUN_DIR/checkpoint.npz --cas  # the conditional run's CAS
# ```
#
# (`benchmarks/RESULTS.md` has the numbers of those runs. The classification accuracy
# score, `metrics.classification_accuracy_score`, trains the classifier on a conditional
# generator's samples and tests it on real digits, so that missing variety costs
# accuracy, not only unrecognisable digits. The conditional DCGAN's D reads the label
# the way Miyato and Koyama's projection discriminator does, by an inner product with
# its features at the end, $\psi(\phi(x)) + y^\top V \phi(x)$, not as input planes:
# `models.ProjectionDiscriminator`.)
#
# ## Summary
#
# * A convolution is a dot product of a kernel with every window of the padded image;
#   along each axis it has $\lfloor (H + 2p - k)/s \rfloor + 1$ outputs.
# * im2col copies every window into a column, and the convolution becomes one matrix
#   product, $W_\text{row}\, \mathrm{cols}$: a dense layer applied to every window with
#   shared weights. It costs about $k_H k_W / (s_H s_W)$ times the input in memory.
# * The backward pass is the dense layer's: $dW_\text{row} = \sum_n G[n]\,
#   \mathrm{cols}[n]^\top$, $db = \sum G$, and $dx = \mathrm{col2im}(W_\text{row}^\top G)$,
#   where col2im, the adjoint of im2col, adds up the gradients of every copy of a pixel.
#   For stride 1 that is a full convolution of $G$ with the flipped kernel.
# * The transposed convolution is that input gradient used as a layer: the adjoint of
#   the convolution, $\langle \mathrm{conv}(x), y\rangle = \langle x,
#   \mathrm{conv}^\top(y)\rangle$. With stride $s$ it upsamples by $s$; with a kernel size
#   not divisible by the stride its kernel copies overlap unevenly and paint a
#   checkerboard, which DCGAN's $4 \times 4$ kernels with stride 2 avoid.
# * The DCGAN replaces chapter 9's dense layers by convolutions: the same game, with a
#   fraction of the parameters, and digits after a short run on a CPU.
#
# Chapter 13 turns to GANs that do not train as smoothly, and the fixes aimed at D.
#
# ## Exercises
#
# **Exercise 12.1 — col2im** and **Exercise 12.2 — the convolution's backward pass** are
# exercises in the library, graded by the classroom tool (`docs/teachers.md`): in a
# practice copy (`python -m minigan.classroom release`, see the chapters' README) the
# bodies of `col2im` and `conv2d_backward` in `minigan/functional.py` raise
# `NotImplementedError`, and so do the two functions of section 3 that spell out the same
# answers. Write `col2im` first: `conv2d_backward`'s $dx$ calls it, and so does every
# transposed convolution. The `Conv2d` and `ConvTranspose2d` layers (and so this
# chapter's DCGAN) then run through your code. After editing the library, restart the
# kernel, run the two cells below, and check with
# `python -m minigan.classroom check --exercises 12.1 12.2`.
#
# The cell below checks `F.col2im` as the adjoint of im2col: for random columns $c$,
# $\mathrm{col2im}(c)$ must be the gradient of $x \mapsto \langle \mathrm{im2col}(x), c
# \rangle$, which central differences measure without knowing how col2im works. It runs
# through overlapping and non-overlapping windows, padding, stride 2 and a non-square
# kernel.

# %%
for x_shape, k, s, p in (((2, 3, 5, 5), (3, 3), 1, 1), ((2, 1, 6, 6), (4, 4), 2, 1),
                         ((1, 2, 7, 8), (2, 2), 3, 0), ((3, 2, 7, 4), (3, 2), (2, 1), (1, 0))):
    x12 = rng.standard_normal(x_shape)
    c12 = rng.standard_normal(F.im2col(x12, *k, s, p).shape)
    numeric = numerical_gradient(lambda: F.im2col(x12, *k, s, p), x12, c12)
    error = rel_error(F.col2im(c12, x_shape, *k, s, p), numeric)
    print(f"images {x_shape}, kernel {k}, stride {s}, padding {p}: relative error {error:.1e}")
    assert error < 1e-8
print("Exercise 12.1 ok")

# %% [markdown]
# The cell below checks `F.conv2d_backward` against central differences (float64, a
# random upstream gradient) for stride 1 and 2, with and without padding, on non-square
# images and kernels, and the `Conv2d` layer that uses it.

# %%
for x_shape, W_shape, s, p in (((2, 2, 5, 5), (3, 2, 3, 3), 1, 1), ((2, 2, 6, 6), (3, 2, 4, 4), 2, 1),
                               ((3, 2, 7, 5), (2, 2, 3, 2), (2, 1), (0, 1))):
    result = check_backward(F.conv2d_forward, [rng.standard_normal(x_shape), rng.standard_normal(W_shape),
                                               rng.standard_normal(W_shape[0])],
                            kwargs={"stride": s, "padding": p})
    print(result)
    assert result.ok
layer_result = check_layer(mg.Conv2d(2, 3, 4, stride=2, padding=1, rng=4), rng.standard_normal((2, 2, 6, 6)))
print(layer_result)
assert layer_result.ok
print("Exercise 12.2 ok")

# %% [markdown]
# **Exercise T12.1 — the transposed convolution's output size.** A convolution with kernel
# $k$, stride $s$ and padding $p$ maps every size $H'$ with
# $\lfloor (H' + 2p - k)/s \rfloor + 1 = H$ to $H$. Show that these $H'$ are exactly
# $(H - 1)s - 2p + k + o$ for $o = 0, 1, \dots, s - 1$ (and why no other), which is why
# `output_padding` must be smaller than the stride. Then write
# `sizes_that_map_to(H, k, s, p)`, returning the sorted list of those $H'$ from the
# formula, and the cell checks it against the convolution itself.

# %%
def sizes_that_map_to(H, k, s, p):
    """The sizes H' that a convolution (k, s, p) maps to H, smallest first."""
    # BEGIN SOLUTION Exercise T12.1: the input sizes a strided convolution maps to H
    return [(H - 1) * s - 2 * p + k + o for o in range(s)]
    # END SOLUTION


# %%
for H, k, s, p in ((7, 4, 2, 1), (3, 4, 2, 1), (5, 3, 2, 1), (4, 5, 3, 2), (6, 3, 1, 0)):
    brute = [Hp for Hp in range(1, 60) if Hp + 2 * p >= k
             and F.conv2d_output_shape((Hp, Hp), k, s, p)[0] == H]
    assert sizes_that_map_to(H, k, s, p) == brute, (H, k, s, p, brute)
    assert [F.conv_transpose2d_output_shape((H, H), k, s, p, o)[0] for o in range(s)] == brute
print("T12.1 ok")

# %% [markdown]
# **Exercise T12.2 — no bias before batch norm.** In training mode batch norm subtracts
# the mean of each channel over $(N, H, W)$. Show that a bias $b_o$ added to channel $o$
# just before it changes nothing after it, and so its gradient is exactly zero (write
# $\partial L/\partial b_o = \sum_{n,h,w} \partial L / \partial z[n, o, h, w]$ and use the
# fact that batch norm's input gradient sums to zero over each channel). Then write
# `bias_grad_before_batchnorm(rng)`: a `Conv2d` *with* a bias followed by `BatchNorm2d`
# and a `Tanh`, one forward and one backward pass with a random upstream gradient;
# return the convolution's bias gradient and its weight gradient.

# %%
def bias_grad_before_batchnorm(rng):
    """(the bias gradient, the weight gradient) of a Conv2d followed by BatchNorm2d (train)."""
    # BEGIN SOLUTION Exercise T12.2: a conv bias's gradient through batch norm
    conv = mg.Conv2d(2, 3, 3, stride=1, padding=1, dtype="float64", rng=rng)
    conv.params["b"][...] = rng.standard_normal(3)
    model = mg.Sequential(conv, mg.BatchNorm2d(3, dtype="float64"), mg.Tanh())
    out = model(rng.standard_normal((4, 2, 5, 5)))
    model.zero_grad()
    model.backward(rng.standard_normal(out.shape))
    return conv.grads["b"].copy(), conv.grads["W"].copy()
    # END SOLUTION


# %%
db_bn, dW_bn = bias_grad_before_batchnorm(np.random.default_rng(5))
print("the bias gradient:", db_bn, " |dW| =", np.linalg.norm(dW_bn))
assert db_bn.shape == (3,) and np.abs(db_bn).max() < 1e-10 * np.linalg.norm(dW_bn)
assert np.linalg.norm(dW_bn) > 1e-3                 # the weights do learn
print("T12.2 ok")
