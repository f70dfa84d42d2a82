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
#     chapter: 10
#     needs_mnist: false
# ---

# %% [markdown]
# # Chapter 10 — On the GPU with CuPy
#
# Every array operation in minigan is a NumPy call: matrix products, elementwise maps,
# reductions. CuPy implements the same functions, with the same names and arguments, on
# NVIDIA GPUs. So minigan runs on a GPU without a second implementation: each function
# asks its input which library it belongs to and calls that one. This chapter shows the
# mechanism, moves a GAN and its data to the GPU, and measures what that buys.
#
# **What you will learn**
#
# 1. How one code path serves both backends: `xp = minigan.array_module(x)`.
# 2. How to move models (`model.to("cupy")`, or `build_gan(..., backend="cupy")`) and data
#    (`minigan.to_device`, `Minibatches(..., backend="cupy")`), and what must happen in
#    which order.
# 3. How to time GPU code correctly (warm-up, synchronisation), and the measured
#    speed-up of a training step for several batch sizes.
# 4. When a GPU helps and when it does not.
#
# **No GPU? This chapter still runs.** Every cell that needs one checks
# `minigan.backend.cupy_available()` first and, where it is false, prints why it skips.
# The NumPy half of every measurement runs anyway. To run the GPU cells, install CuPy for
# your CUDA version (`pip install "minigan[gpu]"` for CUDA 12) on a machine with an NVIDIA GPU.

# %%
import os

QUICK = os.environ.get("MINIGAN_QUICK", "0") not in ("", "0")  # the test suite sets MINIGAN_QUICK=1

import time

import matplotlib.pyplot as plt
import numpy as np

import minigan as mg
from minigan import functional as F
from minigan import plot
from minigan.backend import cupy_available
from minigan.data import Minibatches
from minigan.gan import GAN
from minigan.models import build_gan, mlp
from minigan.presets import preset

GPU = cupy_available()
BATCH_SIZES = [64, 256] if QUICK else [64, 256, 1024]
TIMED_STEPS = 2 if QUICK else 5          # training steps timed per measurement (after a warm-up)
mg.seed(0)
print("minigan", mg.__version__, "| quick mode" if QUICK else "| full mode")
if GPU:
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(0)
    print("GPU found:", props["name"].decode(), f"({props['totalGlobalMem'] / 2**30:.0f} GiB); CuPy", cupy.__version__)
else:
    try:
        mg.use("cupy")   # this raises, and its message says what is missing and how to fix it
    except RuntimeError as err:
        print("No GPU backend here, so the GPU cells of this chapter will skip.\nReason:", err)

# %% [markdown]
# ## 1. One code path, two array libraries
#
# The pattern is the one CuPy's own documentation recommends. A function receives arrays,
# asks `xp = array_module(x)` for the module they belong to (`numpy` or `cupy`), and calls
# `xp.exp`, `xp.maximum`, `xp.zeros_like`, ... instead of `np.exp`. The same source line
# then runs on the CPU for NumPy arrays and on the GPU for CuPy arrays. `minigan.functional`
# is written this way throughout; for example, its sigmoid:

# %%
import inspect

print(inspect.getsource(F.sigmoid))

# %% [markdown]
# `array_module` looks at the *type* of its arguments, so it never imports CuPy to answer,
# and it refuses to mix backends: a NumPy array and a CuPy array in one call raise an error
# that names both, instead of a silent, slow copy. The backend is therefore a property of
# the data. There is one global setting, `minigan.use("numpy" | "cupy")` (or the
# environment variable `MINIGAN_BACKEND`), and all it decides is where *new* parameters and
# data are placed.

# %%
x = np.linspace(-3, 3, 5, dtype=np.float32)
print("array_module of a NumPy array:", mg.array_module(x).__name__, "->", F.sigmoid(x))
if GPU:
    x_gpu = mg.to_device(x, "cupy")
    print("array_module of a CuPy array: ", mg.array_module(x_gpu).__name__, "->", F.sigmoid(x_gpu))
    try:
        mg.array_module(x, x_gpu)
    except ValueError as err:
        print("mixing backends:", err)
else:
    print("(skipped the CuPy half: no GPU)")


# %% [markdown]
# ## 2. Moving a model, moving data
#
# A model's parameters, gradients and buffers (batch norm's running statistics) are arrays;
# `model.to("cupy")` replaces each by a copy on the GPU, and `model.to("numpy")` brings
# them back. Because the arrays are *replaced*, an optimiser created earlier would still
# hold the old NumPy arrays: **move the model first, then create its optimiser**.
# `build_gan(config, backend=...)` builds G and D directly on a backend in that order.
#
# Data go with `minigan.to_device(x, backend)`. `Minibatches(..., backend="cupy")` copies
# the whole training set to the GPU *once*, when it is created, and then cuts every batch
# on the GPU, so nothing crosses the PCIe bus during training except each epoch's
# permutation. The noise $z$ is drawn on the host by a NumPy generator and copied to G's
# device inside `sample_noise`: that costs a few kilobytes per step and makes a NumPy run
# and a CuPy run with the same seed draw the same numbers.

# %%
def make_gan(backend, seed=0):
    """The MNIST MLP GAN of chapter 9, built on the CPU, then moved to `backend`."""
    config = preset("mnist")
    G = mlp([config["latent_dim"], *config["g_hidden"], config["data_dim"]], activation="leaky_relu",
            slope=0.2, out_activation="tanh", rng=seed).to(backend)         # move first ...
    D = mlp([config["data_dim"], *config["d_hidden"], 1], activation="leaky_relu", slope=0.2,
            rng=seed + 1).to(backend)
    g_opt = mg.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))          # ... then the optimisers
    d_opt = mg.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    return GAN(G, D, config["latent_dim"], g_opt, d_opt, rng=seed + 2)


cpu_gan = make_gan("numpy")
print("on the CPU:", cpu_gan.G.backend, type(cpu_gan.G[0].params["W"]))
if GPU:
    gpu_gan = make_gan("cupy")
    print("on the GPU:", gpu_gan.G.backend, type(gpu_gan.G[0].params["W"]))
else:
    print("(skipped building the GPU copy: no GPU)")

# %% [markdown]
# Since the weights are drawn on the host from the same seed and the noise comes from the
# same host generator, the CPU and GPU runs start identically and, step by step, compute
# the same thing. They do not stay bit-identical: the GPU's matrix products add in another
# order, so results differ in the last bits of float32, and in a GAN small differences grow
# over many steps. Over a few steps, though, the losses must agree closely: a good check that
# the GPU computes what the CPU computes.

# %%
data_rng = np.random.default_rng(0)
batches = [np.tanh(data_rng.standard_normal((64, 784))).astype(np.float32) for _ in range(3)]
cpu_losses = [cpu_gan.train_step(b)["d_loss"] for b in batches]
print("CPU d_loss over 3 steps:", np.round(cpu_losses, 5))
if GPU:
    gpu_losses = [gpu_gan.train_step(mg.to_device(b, "cupy"))["d_loss"] for b in batches]
    print("GPU d_loss over 3 steps:", np.round(gpu_losses, 5))
    print("largest relative difference:", np.max(np.abs(np.subtract(cpu_losses, gpu_losses)) / np.abs(cpu_losses)))
    assert np.allclose(cpu_losses, gpu_losses, rtol=1e-3)
else:
    print("(skipped the GPU run: no GPU)")


# %% [markdown]
# ## 3. Timing it correctly
#
# Two things make naive GPU timings wrong.
#
# * **Asynchrony.** A CuPy call *queues* work on the GPU and returns at once. A timer
#   stopped right after it measures the queuing, not the computation. We must wait for the
#   device to finish, `cupy.cuda.Device().synchronize()`, before reading the clock. (In
#   minigan, `train_step` already synchronises: it converts the losses to Python floats,
#   which needs their values. We synchronise anyway, so the timer does not rely on that.)
# * **Warm-up.** The first call of each CuPy kernel compiles or loads it and the memory pool
#   grows to its working size; that happens once. We run one untimed step first.
#
# We time `TIMED_STEPS` training steps of the MNIST GAN at several batch sizes, on each
# backend, and report milliseconds per step.

# %%
def ms_per_step(backend, batch_size, steps=TIMED_STEPS):
    gan = make_gan(backend)
    real = mg.to_device(np.tanh(np.random.default_rng(1).standard_normal((batch_size, 784))).astype(np.float32),
                        backend)
    sync = (lambda: cupy.cuda.Device().synchronize()) if backend == "cupy" else (lambda: None)
    gan.train_step(real)                      # warm-up: kernels, memory pool, caches
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        gan.train_step(real)
    sync()
    return 1000 * (time.perf_counter() - start) / steps


timings = {}
for batch_size in BATCH_SIZES:
    cpu_ms = ms_per_step("numpy", batch_size)
    gpu_ms = ms_per_step("cupy", batch_size) if GPU else float("nan")
    timings[batch_size] = (cpu_ms, gpu_ms)

print(f"{'batch':>6}{'NumPy ms/step':>15}{'NumPy images/s':>16}" + (f"{'CuPy ms/step':>14}{'CuPy images/s':>15}{'speed-up':>10}" if GPU else ""))
for batch_size, (cpu_ms, gpu_ms) in timings.items():
    row = f"{batch_size:>6}{cpu_ms:>15.1f}{1000 * batch_size / cpu_ms:>16.0f}"
    if GPU:
        row += f"{gpu_ms:>14.2f}{1000 * batch_size / gpu_ms:>15.0f}{cpu_ms / gpu_ms:>9.1f}x"
    print(row)
if not GPU:
    print("(CuPy columns skipped: no GPU here. The numbers above are this machine's CPU.)")

# %%
fig, ax = plt.subplots(figsize=(6.5, 3.8))
sizes = list(timings)
ax.plot(sizes, [1000 * b / timings[b][0] for b in sizes], "o-", label="NumPy (CPU)")
if GPU:
    ax.plot(sizes, [1000 * b / timings[b][1] for b in sizes], "s-", label="CuPy (GPU)")
ax.set_xscale("log", base=2)
ax.set_yscale("log")
ax.set_xlabel("batch size")
ax.set_ylabel("real images per second")
ax.set_title("Training throughput of the MNIST MLP GAN" + ("" if GPU else " (CPU only: no GPU here)"))
ax.grid(alpha=0.3, which="both")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# **Reading the numbers.** One training step of this GAN is about a dozen matrix products
# of sizes like $64 \times 784$ by $784 \times 1024$, some 2 GFLOP in all at batch 64
# (exercise T10.2 counts them). A laptop CPU does tens of GFLOP/s, a current data-centre
# GPU tens of TFLOP/s in float32. But each kernel launch also costs a few microseconds,
# and a small batch does not give the GPU enough independent work to fill its thousands of
# cores. So the speed-up grows with the batch size: modest at 64, where overheads weigh
# most, and large at 1024. The CPU gains from larger batches too (its vector units and
# caches are used better), but far less: it is already doing useful work at 64.
#
# Launch overhead is also why minigan takes a shortcut on the GPU. Written with array
# operations, the backward pass of a leaky ReLU is three kernels and one Adam update a dozen
# per parameter. The layers, Adam and the GAN loop therefore compute such operations through
# `minigan.kernels`, the one module that chooses a fast path for each of them: on CuPy arrays
# it hands the work to a one-kernel version (`minigan/_fused.py`); on NumPy arrays it runs
# the plain code of `minigan.functional` (and, for Adam, the same update over cache-sized
# blocks). `functional` and the optimisers' update rules stay the readable reference. The
# fused kernels do the same arithmetic in the same order, compiled so that every operation
# rounds as NumPy's does: without an exp or a log in them, they give NumPy's numbers bit
# for bit, which the tests check. On an NVIDIA H100
# this chapter measured speed-ups of 4x at batch 64 and 14x at 1024 over the CPU of that
# machine, and a step of the MNIST GAN about as fast as PyTorch's (`benchmarks/RESULTS.md`).
#
# The lesson carries over to any framework: a GPU pays off for large matrix products, and
# tiny models such as the 1-D and 2-D GANs of chapters 7 and 8 (a few thousand weights)
# usually run *faster* on the CPU, where there is no launch overhead.
#
# ## 4. Training on the GPU: the same loop
#
# Here is chapter 9's training loop, unchanged except for where things live: the data go to
# the GPU once (`backend="cupy"` in `Minibatches`), the GAN is built there, and the
# samples come back to the host only for plotting (the plot functions call
# `minigan.to_numpy` themselves). The data are MNIST when it is available; without it this
# cell trains on random images, which is enough to exercise the code path.

# %%
GPU_STEPS = 20 if QUICK else 3000
if GPU:
    try:
        from minigan.data import load_mnist
        images, _ = load_mnist("train", download=False)
    except Exception as err:   # no MNIST files here: the loop still runs, on stand-in data
        print("MNIST not found, training on random images instead:", type(err).__name__)
        images = np.tanh(np.random.default_rng(0).standard_normal((2048, 784))).astype(np.float32)
    gan = build_gan(preset("mnist"), backend="cupy", seed=0)
    batches = Minibatches(images, batch_size=64, rng=0, backend="cupy").forever()
    start = time.perf_counter()
    for step, real in zip(range(GPU_STEPS), batches):
        record = gan.train_step(real)
    cupy.cuda.Device().synchronize()
    seconds = time.perf_counter() - start
    print(f"{GPU_STEPS} steps on the GPU in {seconds:.1f} s ({1000 * seconds / GPU_STEPS:.1f} ms per step); "
          f"on this CPU they would take about {GPU_STEPS * timings[64][0] / 1000:.0f} s")
    fig = plot.plot_image_grid(gan.sample(64, rng=1), nrow=8, title=f"trained on the GPU, {GPU_STEPS} steps")
else:
    fig = None
    print("Skipped: training on the GPU needs CuPy and an NVIDIA GPU (cupy_available() is False).")
fig


# %% [markdown]
# ## Summary
#
# * minigan has one code path: every function picks `numpy` or `cupy` from its inputs with
#   `array_module`, and refuses to mix them. On the GPU, fused kernels (chosen in one place,
#   `minigan.kernels`) do the elementwise work of a step in fewer launches, with NumPy's
#   numbers.
# * `model.to("cupy")` (then the optimiser), or `build_gan(..., backend="cupy")`, puts a
#   model on the GPU; `to_device` and `Minibatches(..., backend="cupy")` put data there,
#   once; `to_numpy` brings results back at the edges.
# * Time GPU code after a warm-up and with a synchronisation. The speed-up of a GPU grows
#   with the size of the matrix products: small at small batches, large at large ones, and
#   below 1 for tiny models.
#
# ## Exercises

# %% [markdown]
# **Exercise T10.1 — write a backend-agnostic function.** Write
# `pairwise_sq_distances(a, b)` that returns the matrix of squared Euclidean distances
# between the rows of `a` (shape `(n, d)`) and of `b` (shape `(m, d)`), using
# $\|a_i - b_j\|^2 = \|a_i\|^2 - 2 a_i \cdot b_j + \|b_j\|^2$, written once with
# `xp = mg.array_module(a, b)` so that it runs on both backends. Clip tiny negative
# values (round-off) to 0. The check runs it on NumPy, and on CuPy where there is a GPU.

# %%
def pairwise_sq_distances(a, b):
    """(n, m) squared distances between rows of a (n, d) and b (m, d), on a's backend."""
    # BEGIN SOLUTION Exercise T10.1: pairwise squared distances, one code path for NumPy and CuPy
    xp = mg.array_module(a, b)
    d2 = (a * a).sum(axis=1)[:, None] - 2.0 * (a @ b.T) + (b * b).sum(axis=1)[None, :]
    return xp.maximum(d2, 0.0)
    # END SOLUTION


# %%
a = np.random.default_rng(0).standard_normal((5, 3))
b = np.random.default_rng(1).standard_normal((4, 3))
brute = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
assert np.allclose(pairwise_sq_distances(a, b), brute)
assert np.all(pairwise_sq_distances(a, a) >= 0) and np.allclose(np.diag(pairwise_sq_distances(a, a)), 0, atol=1e-12)
if GPU:
    on_gpu = pairwise_sq_distances(mg.to_device(a, "cupy"), mg.to_device(b, "cupy"))
    assert mg.array_module(on_gpu) is cupy and np.allclose(mg.to_numpy(on_gpu), brute)
    print("checked on NumPy and CuPy")
else:
    print("checked on NumPy (no GPU for the CuPy half)")
print("T10.1 ok")


# %% [markdown]
# **Exercise T10.2 — how much arithmetic is a training step?** A dense layer's forward pass
# on $n$ rows costs $2 n\, d_\text{in} d_\text{out}$ floating-point operations (a multiply and
# an add per weight per row). Its backward pass costs the same again for $dW$, and again for
# $dx$ when that is needed. Write `dense_flops(sizes, rows)`, the forward cost of an MLP
# with layer widths `sizes`, then `train_step_flops(batch)` for one `train_step` of the MNIST
# GAN, counting only the dense layers:
#
# * D step: D forward on $2n$ rows (real and fake together), backward with $dW$ everywhere and
#   $dx$ everywhere except at the first layer (nobody needs the gradient of the data);
# * G forward on $n$ rows;
# * G step: D forward on $n$ rows and backward with $dx$ only (D's parameters are frozen),
#   then G backward with $dW$ everywhere and $dx$ everywhere except at the first layer.
#
# Then turn the timings of section 3 into achieved GFLOP/s.

# %%
def dense_flops(sizes, rows):
    """2 * rows * sum(d_in * d_out): the forward cost of an MLP with layer widths `sizes`."""
    # BEGIN SOLUTION Exercise T10.2: count the floating-point operations of a GAN training step
    return 2 * rows * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    # END SOLUTION


def train_step_flops(batch):
    """Dense-layer FLOPs of one train_step of the MNIST GAN at this batch size."""
    # BEGIN SOLUTION Exercise T10.2: count the floating-point operations of a GAN training step
    g_sizes, d_sizes = [100, 256, 512, 1024, 784], [784, 1024, 512, 256, 1]

    def first(sizes, rows):   # the first layer alone
        return dense_flops(sizes[:2], rows)

    d_fwd2 = dense_flops(d_sizes, 2 * batch)
    d_step = d_fwd2 + d_fwd2 + (d_fwd2 - first(d_sizes, 2 * batch))      # forward, dW, dx (not layer 1)
    g_fwd = dense_flops(g_sizes, batch)
    g_step = (dense_flops(d_sizes, batch) * 2                             # D forward + dx only
              + g_fwd + (g_fwd - first(g_sizes, batch)))                  # G: dW, dx (not layer 1)
    return d_step + g_fwd + g_step
    # END SOLUTION


# %%
assert dense_flops([3, 4, 5], rows=2) == 2 * 2 * (3 * 4 + 4 * 5)
flops64 = train_step_flops(64)
print(f"one train_step at batch 64: {flops64 / 1e9:.2f} GFLOP")
assert 1.5e9 < flops64 < 3.0e9
for batch_size, (cpu_ms, gpu_ms) in timings.items():
    f = train_step_flops(batch_size)
    print(f"batch {batch_size:>5}: NumPy {f / cpu_ms / 1e6:7.1f} GFLOP/s"
          + (f"   CuPy {f / gpu_ms / 1e6:9.1f} GFLOP/s" if GPU else ""))
print("T10.2 ok")


# %% [markdown]
# **Exercise T10.3 — the price of float64.** minigan trains in float32 and checks gradients
# in float64. Write `float64_slowdown(batch_size, backend)` that builds the MNIST GAN with
# `{**preset("mnist"), "dtype": "float64"}` and with the preset as it is, times a few steps
# of each with `ms_per_step`-style timing (data in the matching dtype!), and returns the ratio
# of the float64 time to the float32 time. On a CPU expect about 2 (twice the bytes to move,
# half the numbers per vector instruction); on most consumer GPUs far more, since they have
# few float64 units.

# %%
def float64_slowdown(batch_size, backend="numpy", steps=TIMED_STEPS):
    """Time per train_step in float64 divided by the time in float32."""
    # BEGIN SOLUTION Exercise T10.3: time float64 against float32 training steps
    times = {}
    for dtype in ("float32", "float64"):
        gan = build_gan({**preset("mnist"), "dtype": dtype}, backend=backend, seed=0)
        real = mg.to_device(np.tanh(np.random.default_rng(1).standard_normal((batch_size, 784))).astype(dtype),
                            backend)
        gan.train_step(real)
        start = time.perf_counter()
        for _ in range(steps):
            gan.train_step(real)
        if backend == "cupy":
            cupy.cuda.Device().synchronize()
        times[dtype] = time.perf_counter() - start
    return times["float64"] / times["float32"]
    # END SOLUTION


# %%
ratio = float64_slowdown(128)
print(f"NumPy: float64 takes {ratio:.1f}x as long as float32")
assert ratio > 1.0
if GPU:
    print(f"CuPy:  float64 takes {float64_slowdown(1024, 'cupy'):.1f}x as long as float32")
else:
    print("(CuPy half skipped: no GPU)")
print("T10.3 ok")
