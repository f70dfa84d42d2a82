"""What the benchmarks share: the classic MLP GAN and the MNIST DCGAN in minigan, a
copier that builds the same model in PyTorch with the same weights, the step in
PyTorch, the FLOP count of one training step, a GEMM-rate probe and the machine's
details.

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
from minigan.presets import DCGAN as DCGAN_PRESET

from _threads import blas_threads, default_threads

# The classic MLP GAN on MNIST (Goodfellow et al. 2014, as in most tutorials):
# G 100-256-512-1024-784 with LeakyReLU(0.2) and a tanh output,
# D 784-1024-512-256-1 with LeakyReLU(0.2), ending in a logit.
LATENT = 100
G_SIZES = (LATENT, 256, 512, 1024, 784)
D_SIZES = (784, 1024, 512, 256, 1)
SLOPE = 0.2
LR, BETAS = 2e-4, (0.5, 0.999)  # Radford et al. 2016

# The DCGAN of Radford et al. 2016 at MNIST size, with the MNIST DCGAN preset's
# architecture (``minigan.presets.DCGAN``: channels, batch norm, packing), built by
# minigan.models.build_dcgan_generator/_discriminator: G 100 -> [Dense hidden BN ReLU, one
# per entry of g_dense] -> Dense C0x7x7 -> BN ReLU -> ConvT C1x14x14 -> BN ReLU -> ConvT
# 1x28x28 -> tanh; D 1x28x28 -> [Pack] -> Conv -> LeakyReLU(0.2) -> Conv [BN] LeakyReLU
# -> Dense 1.
DCGAN_CONFIG = {
    "latent_dim": LATENT, "slope": SLOPE, "init": "pytorch", "dtype": "float32",
    **{k: DCGAN_PRESET[k] for k in ("image_shape", "g_channels", "d_channels", "g_batchnorm",
                                    "d_batchnorm", "pack")},
    "g_dense": DCGAN_PRESET.get("g_dense", []),
}
ARCHS = ("mlp", "dcgan")


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


def dcgan_config(g_dense=None):
    """``DCGAN_CONFIG``, or a copy with G's hidden Dense widths ``g_dense`` (None: the preset's)."""
    return DCGAN_CONFIG if g_dense is None else {**DCGAN_CONFIG, "g_dense": list(g_dense)}


def minigan_dcgan(backend="numpy", seed=0, device_noise=False, g_dense=None):
    """The MNIST DCGAN (``DCGAN_CONFIG``) in minigan: G and D from minigan.models'
    builders, Adam 2e-4 (0.5, 0.999) on each, the non-saturating loss.
    ``init="pytorch"``: PyTorch's default scale (the copy takes these very numbers).
    ``g_dense``: as ``dcgan_config``'s."""
    from minigan.models import build_dcgan_discriminator, build_dcgan_generator

    config = dcgan_config(g_dense)
    G = build_dcgan_generator(config, backend=backend, rng=np.random.default_rng(seed))
    D = build_dcgan_discriminator(config, backend=backend, rng=np.random.default_rng(seed + 2))
    return GAN(G, D, LATENT,
               mg.Adam(G.parameters(), lr=LR, betas=BETAS),
               mg.Adam(D.parameters(), lr=LR, betas=BETAS),
               rng=_device_rng(seed + 1) if device_noise else seed + 1)


def build_gan(arch, backend="numpy", seed=0, device_noise=False, g_dense=None):
    """The benchmark's GAN of architecture ``arch`` ("mlp" or "dcgan"; ``g_dense``: see
    ``minigan_dcgan``)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}: expected one of {ARCHS}")
    if arch == "dcgan":
        return minigan_dcgan(backend, seed=seed, device_noise=device_noise, g_dense=g_dense)
    if g_dense is not None:
        raise ValueError("g_dense is for the DCGAN: the MLP GAN's G has its own sizes")
    return minigan_gan(backend, seed=seed, device_noise=device_noise)


def _device_rng(seed):
    import cupy

    return cupy.random.default_rng(seed)


def real_batch(batch, seed):
    """A stand-in real batch (batch, 784), float32, uniform in [-1, 1] (NumPy): a step's
    time does not depend on the pixel values."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.0, 1.0, (batch, D_SIZES[0])).astype(np.float32)


def torch_models(torch, gan, device="cpu"):
    """nn.Sequential copies of the GAN's G and D, holding the same weights (``torch_copy``)."""
    return torch_copy(torch, gan.G, device), torch_copy(torch, gan.D, device)


def torch_copy(torch, model, device="cpu"):
    """The PyTorch module that computes what the minigan ``model`` computes, with copies
    of its weights and buffers, in its mode (train or eval), on ``device``.

    Layer by layer: Dense -> nn.Linear (minigan's W is (in, out), nn.Linear's weight
    (out, in): transposed); Conv2d and ConvTranspose2d -> their nn namesakes (the
    same weight layouts, PyTorch's); BatchNorm1d/2d -> their namesakes (gamma, beta
    -> weight, bias; running statistics, eps, momentum); ReLU, LeakyReLU (its slope),
    Tanh, Sigmoid; Flatten -> nn.Flatten; Reshape -> nn.Unflatten(1, shape) (both
    reshape each sample row-major); Pack(m) -> the same reshape of the batch (and
    ``minigan_pack = m`` on the copy, for ``torch_step_fn``); Sequential -> nn.Sequential. Anything else is a
    TypeError naming the layer: a copy that silently skipped a layer would time
    another model.
    """
    nn = torch.nn
    dtype = {"float32": torch.float32, "float64": torch.float64}[str(model.dtype or "float32")]

    def tensor(a):
        return torch.from_numpy(np.ascontiguousarray(mg.to_numpy(a)))

    def convert(layer):
        p = layer.params
        if isinstance(layer, mg.Sequential):
            return nn.Sequential(*(convert(child) for child in layer.layers))
        if isinstance(layer, mg.Dense):
            out = nn.Linear(layer.in_features, layer.out_features)
            weights = {"weight": p["W"].T, "bias": p["b"]}
        elif isinstance(layer, (mg.Conv2d, mg.ConvTranspose2d)):
            kind = nn.Conv2d if isinstance(layer, mg.Conv2d) else nn.ConvTranspose2d
            extra = ({"output_padding": layer.output_padding}
                     if isinstance(layer, mg.ConvTranspose2d) else {})
            out = kind(layer.in_channels, layer.out_channels, layer.kernel_size,
                       stride=layer.stride, padding=layer.padding, bias="b" in p, **extra)
            weights = {"weight": p["W"], **({"bias": p["b"]} if "b" in p else {})}
        elif isinstance(layer, mg.BatchNorm1d):  # BatchNorm2d is one by inheritance
            kind = nn.BatchNorm2d if isinstance(layer, mg.BatchNorm2d) else nn.BatchNorm1d
            out = kind(layer.num_features, eps=layer.eps, momentum=layer.momentum)
            weights = {"weight": p["gamma"], "bias": p["beta"],
                       "running_mean": layer.running_mean, "running_var": layer.running_var}
        elif isinstance(layer, mg.LeakyReLU):
            return nn.LeakyReLU(layer.negative_slope)
        elif type(layer) in _SAME_NAME:
            return getattr(nn, type(layer).__name__)()
        elif isinstance(layer, mg.Flatten):
            return nn.Flatten()
        elif isinstance(layer, mg.Reshape):
            return nn.Unflatten(1, layer.shape)
        elif isinstance(layer, mg.Pack):
            return _torch_pack(nn, layer.m)
        else:
            raise TypeError(f"torch_copy: no PyTorch counterpart for {layer.short_repr()}")
        state = out.state_dict()
        with torch.no_grad():
            for name, value in weights.items():
                state[name].copy_(tensor(value))
        return out

    copy = convert(model).to(dtype=dtype, device=device)
    packs = [layer.m for layer in model.modules() if isinstance(layer, mg.Pack)]
    copy.minigan_pack = packs[0] if packs else 1   # torch_step_fn's targets: one per pack
    return copy.train(model.training)


def _torch_pack(nn, m):
    """minigan's Pack(m) as a module: (n, c, ...) -> (n/m, m c, ...), a row-major reshape."""

    class Pack(nn.Module):
        def forward(self, x):
            return x.reshape(x.shape[0] // m, m * x.shape[1], *x.shape[2:])

        def extra_repr(self):
            return f"m={m}"

    return Pack()


_SAME_NAME = (mg.ReLU, mg.Tanh, mg.Sigmoid)


def torch_step_fn(torch, G, D, batch, real, device="cpu", freeze_d=True, latent=LATENT):
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
    and returns the same Python floats as minigan's ``train_step``. D sees the
    real and the fake batch in two passes when D has batch norm (which must not
    mix the two batches' statistics), else in one pass over both, as minigan's D
    step does.
    """
    opt_g = torch.optim.Adam(G.parameters(), lr=LR, betas=BETAS)
    rows = batch // getattr(D, "minigan_pack", 1)  # D's outputs: one per pack of samples
    bn = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)
    one_pass = not any(isinstance(m, bn) for m in D.modules())
    opt_d = torch.optim.Adam(D.parameters(), lr=LR, betas=BETAS)
    bce = torch.nn.BCEWithLogitsLoss()
    ones = torch.ones(rows, 1, device=device)
    zeros = torch.zeros(rows, 1, device=device)
    d_params = list(D.parameters())

    def step(z=None):
        if z is None:
            z = torch.randn(batch, latent, device=device)
        fake = G(z)
        # discriminator: real -> 1, fake -> 0; G is not updated
        opt_d.zero_grad(set_to_none=True)
        if one_pass:
            logits_real, logits_fake = D(torch.cat([real, fake.detach()])).split(rows)
        else:
            logits_real, logits_fake = D(real), D(fake.detach())
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
    """Multiply-adds per sample of an MLP's Dense layers of widths ``sizes``, one per layer."""
    return [a * b for a, b in zip(sizes[:-1], sizes[1:])]


def layer_macs(model, sample_shape):
    """[(layer, multiply-adds per sample)] for each matrix-product layer of a minigan
    ``Sequential`` (a SpectralNorm wrapper counts as the layer it wraps), in order.

    Read off the shapes of one forward pass (evaluation mode, no cache left) of a
    batch of m samples, m the model's packing degree (1 without a ``Pack(m)``: a D
    that packs judges m samples in one row), each count divided by m:
      Dense            in * out
      Conv2d           C_out H_out W_out  *  C_in kH kW   (one kernel dot product per
                                                        output value)
      ConvTranspose2d  C_in H_in W_in  *  C_out kH kW     (each input value scatters
                                                        a C_out x kH x kW kernel)
    The same count for the weight gradient and for the input gradient of the layer
    (the other two products of the same three sizes).
    """
    if not isinstance(model, mg.Sequential):
        raise TypeError(f"layer_macs counts the layers of a Sequential, got "
                        f"{type(model).__name__} (for a ProjectionDiscriminator, count its "
                        "body, then psi's F and V's F multiply-adds per output)")
    found = []
    was_training = model.training
    model.eval()
    try:
        m = next((layer.m for layer in model.modules() if isinstance(layer, mg.Pack)), 1)
        x = mg.to_device(np.zeros((m,) + tuple(sample_shape), dtype=model.dtype),
                         model.backend)
        for layer in model.layers:
            inner = getattr(layer, "layer", layer)
            out = layer.forward(x)
            if isinstance(inner, mg.Dense):
                found.append((inner, len(out) * inner.in_features * inner.out_features / m))
            elif isinstance(inner, mg.Conv2d):
                kH, kW = inner.kernel_size
                found.append((inner, out.size * inner.in_channels * kH * kW / m))
            elif isinstance(inner, mg.ConvTranspose2d):
                kH, kW = inner.kernel_size
                found.append((inner, x.size * inner.out_channels * kH * kW / m))
            x = out
    finally:
        model.clear_cache()
        model.train(was_training)
    return found


def gan_macs(gan, data_shape):
    """(G's, D's) multiply-adds per sample, one number per layer, for ``step_flops``."""
    g = [m for _, m in layer_macs(gan.G, (gan.latent_dim,))]
    d = [m for _, m in layer_macs(gan.D, data_shape)]
    return g, d


def step_flops(n, g_macs=None, d_macs=None):
    """FLOPs of the matrix products one training step needs at batch n (2 per multiply-add).

    ``g_macs``, ``d_macs``: multiply-adds per sample of each matrix-product layer of G
    and D, in order (``gan_macs``; default: the classic MLP GAN's Dense layers). A
    layer of k multiply-adds per sample costs, on m samples, m k for each of forward,
    weight gradient and input gradient (the same three sizes, multiplied three ways;
    for a Dense layer x W, x^T dout and dout W^T). One step:
      generate         G forward on n samples
      D step           D forward on 2n samples (real and fake), weight gradients of
                       every layer, input gradients of all but the first layer
                       (nothing upstream of the data needs them)
      G step           D forward on n samples, input gradients through every D layer
                       (no D weight gradients), G's weight gradients, G's input
                       gradients of all but the first layer (z needs none)
    Bias adds, activations, batch norm, the loss and Adam are not counted: they are
    O(size of the activations), not matrix products.
    """
    g_macs = _macs(G_SIZES) if g_macs is None else list(g_macs)
    d_macs = _macs(D_SIZES) if d_macs is None else list(d_macs)
    g_all, d_all = sum(g_macs), sum(d_macs)
    g_first, d_first = g_macs[0], d_macs[0]
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


def share_threads(arch, threads, backend="numpy"):
    """minigan's threads as ``python -m minigan train`` gives them (``minigan._threads.
    share_threads``): a DCGAN's convolutions run their chunks on ``threads`` threads of
    their own with one BLAS thread each; the MLP GAN's products get the BLAS threads.
    Returns a line to print."""
    if backend != "numpy":
        return None
    from minigan import _threads

    _threads.share_threads(threads, convolutional=arch == "dcgan")
    if arch == "dcgan":
        return (f"# minigan: the convolutions' chunks on {threads} thread(s), one BLAS thread "
                "each (as `python -m minigan train --arch dcgan` runs them)")
    return None


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
