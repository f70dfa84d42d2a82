"""What the benchmarks share: the classic MLP GAN in minigan and in PyTorch, the
FLOP count of one training step, a GEMM-rate probe and the machine's details.

It imports NumPy: call ``_threads.set_threads`` BEFORE importing it (OpenBLAS,
MKL and OpenMP read their thread counts from the environment when they are
loaded, so a variable set after ``import numpy`` changes nothing).
"""

from __future__ import annotations

import os
import platform
import sys
import time

import numpy as np

import minigan as mg
from minigan.gan import GAN

from _threads import blas_threads, default_threads

# The classic MLP GAN on MNIST (Goodfellow et al. 2014, as in most tutorials):
# G 100-256-512-1024-784 with LeakyReLU(0.2) and a tanh output,
# D 784-1024-512-256-1 with LeakyReLU(0.2), ending in a logit.
LATENT = 100
G_SIZES = (LATENT, 256, 512, 1024, 784)
D_SIZES = (784, 1024, 512, 256, 1)
SLOPE = 0.2
LR, BETAS = 2e-4, (0.5, 0.999)  # Radford et al. 2016


# ------------------------------------------------------------------------ models


def minigan_gan(backend="numpy", seed=0, device_noise=False):
    """The classic MLP GAN in minigan, with nn.Linear's default initialisation scale.

    ``init="pytorch"`` draws weights and biases from U(+-1/sqrt(fan_in)), PyTorch's
    nn.Linear default, so both libraries start from the same scale (the PyTorch
    copy then takes these very numbers, see ``torch_models``).
    ``device_noise`` draws z on the GPU (a CuPy generator as the GAN's ``rng``), as
    torch.randn(..., device="cuda") does.
    """
    rng = np.random.default_rng(seed)

    def mlp(sizes, last):
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(mg.Dense(a, b, init="pytorch", rng=rng, backend=backend))
            if i < len(sizes) - 2:
                layers.append(mg.LeakyReLU(SLOPE))
        if last is not None:
            layers.append(last)
        return mg.Sequential(*layers)

    G = mlp(G_SIZES, mg.Tanh())
    D = mlp(D_SIZES, None)
    return GAN(G, D, LATENT,
               mg.Adam(G.parameters(), lr=LR, betas=BETAS),
               mg.Adam(D.parameters(), lr=LR, betas=BETAS),
               rng=_device_rng(seed + 1) if device_noise else seed + 1)


def _device_rng(seed):
    import cupy

    return cupy.random.default_rng(seed)


def real_batch(batch, seed):
    """A stand-in real batch (batch, 784), float32, uniform in [-1, 1] (NumPy): a step's
    time does not depend on the pixel values."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.0, 1.0, (batch, D_SIZES[0])).astype(np.float32)


def torch_models(torch, gan, device="cpu"):
    """nn.Sequential copies of the GAN's G and D, holding the same weights."""
    nn = torch.nn

    def mlp(model, sizes, last):
        layers = []
        dense = [layer for layer in model.layers if isinstance(layer, mg.Dense)]
        for i, layer in enumerate(dense):
            lin = nn.Linear(sizes[i], sizes[i + 1])
            with torch.no_grad():  # minigan's W is (in, out), nn.Linear's weight (out, in)
                lin.weight.copy_(torch.from_numpy(mg.to_numpy(layer.params["W"]).T.copy()))
                lin.bias.copy_(torch.from_numpy(mg.to_numpy(layer.params["b"])))
            layers.append(lin)
            if i < len(dense) - 1:
                layers.append(nn.LeakyReLU(SLOPE))
        if last is not None:
            layers.append(last)
        return nn.Sequential(*layers).to(device)

    return mlp(gan.G, G_SIZES, nn.Tanh()), mlp(gan.D, D_SIZES, None)


def torch_step_fn(torch, G, D, batch, real, device="cpu", freeze_d=True):
    """One training step in PyTorch eager, the same maths as ``GAN.train_step``.

    The way the PyTorch DCGAN example writes it: the D step runs D on the real
    batch and on ``fake.detach()`` and sums the two BCE means; the G step reuses
    the same fake batch (no second G forward) through the freshly updated D with
    the non-saturating loss BCE(D(G(z)), 1); gradients are cleared with
    ``zero_grad(set_to_none=True)``.

    ``freeze_d=True`` (the reference) switches off requires_grad of D's
    parameters during the G step, as careful PyTorch code does (e.g.
    ``set_requires_grad(netD, False)`` in pytorch-CycleGAN-and-pix2pix): autograd
    then skips D's weight gradients that the G step throws away, which is
    exactly the work minigan does (``backward(param_grads=False)``).
    ``freeze_d=False`` is the DCGAN example as written: it computes them anyway.

    The returned function takes an optional z (for the identical-step check)
    and returns the same Python floats as minigan's ``train_step``.
    """
    opt_g = torch.optim.Adam(G.parameters(), lr=LR, betas=BETAS)
    opt_d = torch.optim.Adam(D.parameters(), lr=LR, betas=BETAS)
    bce = torch.nn.BCEWithLogitsLoss()
    ones = torch.ones(batch, 1, device=device)
    zeros = torch.zeros(batch, 1, device=device)
    d_params = list(D.parameters())

    def step(z=None):
        if z is None:
            z = torch.randn(batch, LATENT, device=device)
        fake = G(z)
        # discriminator: real -> 1, fake -> 0; G is not updated
        opt_d.zero_grad(set_to_none=True)
        logits_real = D(real)
        logits_fake = D(fake.detach())
        d_loss = bce(logits_real, ones) + bce(logits_fake, zeros)
        d_loss.backward()
        opt_d.step()
        # generator: the same fake batch through the updated D, labelled real
        if freeze_d:
            for p in d_params:
                p.requires_grad_(False)
        opt_g.zero_grad(set_to_none=True)
        g_loss = bce(D(fake), ones)
        g_loss.backward()
        opt_g.step()
        if freeze_d:
            for p in d_params:
                p.requires_grad_(True)
        with torch.no_grad():  # the numbers minigan's train_step returns
            return {"d_loss": d_loss.item(), "g_loss": g_loss.item(),
                    "d_real": torch.sigmoid(logits_real).mean().item(),
                    "d_fake": torch.sigmoid(logits_fake).mean().item()}

    return step


# ------------------------------------------------------------------------- FLOPs


def _macs(sizes):
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def step_flops(n, g_sizes=G_SIZES, d_sizes=D_SIZES):
    """FLOPs of the matrix products one training step needs at batch n (2 per multiply-add).

    A dense layer with k = in * out weights costs, on m rows, m k multiply-adds
    for each of forward (x W), weight gradient (x^T dout) and input gradient
    (dout W^T). One step:
      generate         G forward on n rows
      D step           D forward on 2n rows (real and fake), W gradients of every
                       layer, input gradients of all but the first layer (nothing
                       upstream of the data needs them)
      G step           D forward on n rows, input gradients through every D layer
                       (no D weight gradients), G's W gradients, G's input
                       gradients of all but the first layer (z needs none)
    Bias adds, activations, the loss and Adam are not counted: they are O(n d),
    not O(n d^2), and not matrix products.
    """
    g_all, d_all = _macs(g_sizes), _macs(d_sizes)
    g_first, d_first = g_sizes[0] * g_sizes[1], d_sizes[0] * d_sizes[1]
    generate = n * g_all
    d_step = 2 * n * (d_all + d_all + (d_all - d_first))
    g_step = n * (d_all + d_all + g_all + (g_all - g_first))
    return 2 * (generate + d_step + g_step)


# ------------------------------------------------------------------ GEMM probe


def _median_gflops(product, sync, n, reps):
    """GFLOP/s of ``product()`` (an n x n x n matrix product, 2 n^3 FLOPs): the median of
    ``reps`` timed calls, after one untimed call (threads started, pages touched)."""
    product()
    sync()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        product()
        sync()
        times.append(time.perf_counter() - t)
    return 2.0 * n ** 3 / sorted(times)[len(times) // 2] / 1e9


def gemm_rate(xp, n, reps=5, sync=lambda: None):
    """Median float32 GFLOP/s of an n x n x n matrix product on module xp."""
    rng = np.random.default_rng(0)
    a = xp.asarray(rng.standard_normal((n, n), dtype=np.float32))
    b = xp.asarray(rng.standard_normal((n, n), dtype=np.float32))
    out = xp.empty((n, n), dtype=np.float32)
    return _median_gflops(lambda: xp.matmul(a, b, out=out), sync, n, reps)


def torch_gemm_rate(torch, n, reps=5, device="cpu"):
    """The same probe with torch.mm (MKL or cuBLAS), for context."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    out = torch.empty(n, n, device=device)
    sync = torch.cuda.synchronize if device != "cpu" else (lambda: None)
    return _median_gflops(lambda: torch.mm(a, b, out=out), sync, n, reps)


# ----------------------------------------------------------------- the machine


def loadavg():
    """The 1, 5 and 15 minute load averages (runnable processes), or None."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def numpy_blas():
    """NumPy's BLAS as np.show_config reports it: name, version, configuration."""
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    except Exception:  # older NumPy
        return "unknown"
    text = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    config = blas.get("openblas configuration")
    return f"{text} ({config})" if config else text


def machine_info(threads, torch=None):
    info = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_available": default_threads(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numpy_blas": numpy_blas(),
        "threads": threads,
        "blas_threads": blas_threads(),
        "platform": platform.platform(),
        "minigan": mg.__version__,
    }
    if torch is not None:
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        blas = [part.strip() for part in torch.__config__.show().splitlines()
                if "Math Kernel Library" in part or "MKL-DNN" in part or "BLAS_INFO" in part]
        info["torch_blas"] = "; ".join(p.split(",")[0] for p in blas)
    return info


def import_torch():
    """PyTorch if installed, else None (the comparison is then skipped)."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def import_cupy_or_exit(script):
    """CuPy with a visible GPU, or exit with a one-line message saying why not."""
    try:
        return mg.backend.backend_module("cupy")
    except RuntimeError as err:
        sys.exit(f"{script}: --backend cupy is not available here: {err}")
