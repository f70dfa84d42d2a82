"""Weight initialisers for a dense weight W of shape (fan_in, fan_out), or a
convolution's weight in PyTorch's layout (see ``fan_in_out``).

Why it matters: with W entries of variance s^2, a layer multiplies the variance
of its activations by about fan_in * s^2 on the way forward (and fan_out * s^2
on the way back). Glorot/Xavier picks s^2 = 2 / (fan_in + fan_out) to keep both
near 1 for tanh/sigmoid; He/Kaiming picks s^2 = 2 / fan_in because a ReLU
zeroes half of its inputs. DCGAN used a plain normal with std 0.02.

Every initialiser is ``init(shape, rng, dtype) -> NumPy array`` drawn on the
host from an explicit generator, so a seed repeats the same weights on NumPy
and CuPy alike.
"""

from __future__ import annotations

import math

import numpy as np


def fan_in_out(shape):
    """(fan_in, fan_out) of a weight of this shape.

    A Dense weight is (fan_in, fan_out). A convolution's weight (a, b, kH, kW) has
    PyTorch's layout and PyTorch's rule: fan_in = b kH kW, fan_out = a kH kW. For
    Conv2d's (C_out, C_in, kH, kW) that is the number of inputs of one output (and
    of outputs fed by one input); for ConvTranspose2d's (C_in, C_out, kH, kW) PyTorch
    applies the same rule to the stored layout, so fan_in = C_out kH kW there, and
    so does minigan, for the same initial weights.
    """
    if len(shape) == 2:
        return shape[0], shape[1]
    if len(shape) == 4:
        receptive_field = shape[2] * shape[3]
        return shape[1] * receptive_field, shape[0] * receptive_field
    raise ValueError(f"initialisers expect a dense weight shape (fan_in, fan_out) or a "
                     f"convolution's (a, b, kH, kW), got {shape}")


def glorot_uniform(shape, rng, dtype="float32", gain=1.0):
    """U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = fan_in_out(shape)
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-a, a, size=shape).astype(dtype)


def glorot_normal(shape, rng, dtype="float32", gain=1.0):
    """N(0, s^2) with s = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = fan_in_out(shape)
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    return rng.normal(0.0, std, size=shape).astype(dtype)


def he_uniform(shape, rng, dtype="float32", negative_slope=0.0):
    """U(-a, a) with a = sqrt(6 / ((1 + slope^2) fan_in)); slope of a leaky ReLU, 0 for ReLU."""
    fan_in, _ = fan_in_out(shape)
    a = math.sqrt(6.0 / ((1.0 + negative_slope ** 2) * fan_in))
    return rng.uniform(-a, a, size=shape).astype(dtype)


def he_normal(shape, rng, dtype="float32", negative_slope=0.0):
    """N(0, s^2) with s = sqrt(2 / ((1 + slope^2) fan_in))."""
    fan_in, _ = fan_in_out(shape)
    std = math.sqrt(2.0 / ((1.0 + negative_slope ** 2) * fan_in))
    return rng.normal(0.0, std, size=shape).astype(dtype)


def lecun_uniform(shape, rng, dtype="float32"):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): the default of PyTorch's nn.Linear, weights and bias."""
    fan_in, _ = fan_in_out(shape)
    a = 1.0 / math.sqrt(fan_in)
    return rng.uniform(-a, a, size=shape).astype(dtype)


def normal(shape, rng, dtype="float32", std=0.02):
    """N(0, std^2); DCGAN's choice is std = 0.02."""
    return rng.normal(0.0, std, size=shape).astype(dtype)


def zeros(shape, rng=None, dtype="float32"):
    """All zeros (biases; never for weights, which would then stay identical)."""
    return np.zeros(shape, dtype=dtype)


INITIALISERS = {
    "glorot_uniform": glorot_uniform,
    "xavier_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "xavier_normal": glorot_normal,
    "he_uniform": he_uniform,
    "kaiming_uniform": he_uniform,
    "he_normal": he_normal,
    "kaiming_normal": he_normal,
    "lecun_uniform": lecun_uniform,
    "pytorch": lecun_uniform,
    "normal": normal,
    "zeros": zeros,
}


def get_initialiser(init):
    """An initialiser from its name (see ``INITIALISERS``) or a callable ``(shape, rng, dtype)``."""
    if callable(init):
        return init
    try:
        return INITIALISERS[init]
    except KeyError:
        raise ValueError(
            f"Unknown initialiser {init!r}: expected one of {sorted(INITIALISERS)} "
            "or a callable (shape, rng, dtype) -> array.") from None
