"""Toy data sets small enough to watch a GAN learn: 1-D and 2-D.

The Gaussian mixtures follow the specifications used in the mode-collapse
literature (Metz et al. 2017, "Unrolled GANs"; Srivastava et al. 2017, "VEEGAN";
Lin et al. 2018, "PacGAN"), and expose their mode centres and std so that
``minigan.metrics`` can score mode coverage against them:

=============  ====  =====  ==================================================
name           dim   modes  specification
=============  ====  =====  ==================================================
``ring8``      2     8      centres at angles 2*pi*k/8 on a circle of radius 1,
                            std 0.01
``grid25``     2     25     centres at {-4, -2, 0, 2, 4}^2, std 0.05
``gaussian1d`` 1     1      mean 4.0, std 0.5 (the 1-D demo of Goodfellow et
                            al. 2014, Figure 1)
``spiral``     2     --     a noisy Swiss-roll spiral, within about [-2, 2]^2
``moons``      2     --     two interleaved half circles, within
                            [-1.5, 1.5] x [-0.75, 0.75] before noise
=============  ====  =====  ==================================================

Sampling happens on the host with NumPy and returns NumPy arrays; move them to
the training backend with ``minigan.to_device`` (or let ``Minibatches`` do it).
Every ``rng`` argument takes None (minigan's default generator, seeded by
``minigan.seed``), an int seed, or a ``numpy.random.Generator``.
"""

from __future__ import annotations

import numbers

import numpy as np

from minigan.backend import make_rng

__all__ = [
    "ToyDataset",
    "GaussianMixture",
    "Spiral",
    "Moons",
    "ring8",
    "grid25",
    "gaussian1d",
    "spiral",
    "moons",
    "TOY_DATASETS",
    "toy_dataset",
]


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"n must be a non-negative int (number of samples), got {n!r}.")
    if n < 0:
        raise ValueError(f"n must be a non-negative int (number of samples), got {n}.")
    return int(n)


def _check_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be a floating dtype such as 'float32', got {dtype!r}.") from None
    if dt.kind != "f":
        raise TypeError(
            f"dtype must be a floating dtype ('float32' or 'float64'), got {dt}: "
            "samples are real-valued."
        )
    return dt


def _check_noise(noise) -> float:
    if isinstance(noise, bool) or not isinstance(noise, numbers.Real) or not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite number >= 0 (a std), got {noise!r}.")
    return float(noise)


class ToyDataset:
    """Base class: a named distribution you can draw samples from.

    Subclasses implement ``_sample(n, rng) -> (n, dim) float64``. ``centres`` and
    ``std`` are None for sets that are not Gaussian mixtures.
    """

    name: str = "toy"
    dim: int = 2
    centres = None
    std = None

    def sample(self, n: int, rng=None, dtype="float32") -> np.ndarray:
        """Draw ``n`` samples: a NumPy array of shape ``(n, dim)`` and the given dtype."""
        n = _check_n(n)
        dt = _check_dtype(dtype)
        # Draw in float64 and cast once at the end, so float32 and float64 samples
        # from the same seed are the same points (up to rounding).
        x = self._sample(n, make_rng(rng))
        return x.astype(dt, copy=False)

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    @property
    def plot_lim(self):
        """The region figures show, the same in every figure and animation frame:
        ``(lo, hi)`` for 1-D data, ``(xmin, xmax, ymin, ymax)`` for 2-D.

        Here the range of 10,000 samples plus a fifth on each side; the built-in
        sets override it with a fixed, rounder box.
        """
        x = self._sample(10_000, np.random.default_rng(0))
        lo, hi = x.min(axis=0), x.max(axis=0)
        pad = 0.2 * np.maximum(hi - lo, 1e-3)
        box = np.stack([lo - pad, hi + pad], axis=1).ravel()
        return tuple(float(v) for v in box)

    @property
    def plot_centres(self):
        """The mode centres to mark in a 2-D scatter plot (K, 2), or None."""
        return self.centres if self.centres is not None and self.dim == 2 else None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim})"


class GaussianMixture(ToyDataset):
    """An equal-weight mixture of isotropic Gaussians with one shared std.

    centres: (K, D) array of mode centres (stored as float64); std: the per-axis
    standard deviation of every mode. ``sample`` picks a mode uniformly at random,
    then adds ``std * N(0, I)``.
    """

    def __init__(self, name: str, centres, std: float):
        centres = np.array(centres, dtype=np.float64)  # a private copy
        if centres.ndim != 2 or centres.shape[0] < 1 or centres.shape[1] < 1:
            raise ValueError(
                f"centres must be a (K, D) array with K >= 1 modes and D >= 1 dims, "
                f"got shape {centres.shape}."
            )
        if not np.all(np.isfinite(centres)):
            raise ValueError("centres must be finite (no NaN or inf).")
        if isinstance(std, bool) or not isinstance(std, numbers.Real) or not np.isfinite(std) or std <= 0:
            raise ValueError(f"std must be a finite number > 0, got {std!r}.")
        centres.setflags(write=False)  # metrics read these; nobody should move them
        self.name = str(name)
        self.centres = centres
        self.std = float(std)

    @property
    def n_modes(self) -> int:
        """K, the number of modes."""
        return self.centres.shape[0]

    @property
    def dim(self) -> int:
        """D, the dimension of a sample."""
        return self.centres.shape[1]

    def _sample(self, n, rng):
        # Mode first, then noise: the order of draws is part of what a seed repeats.
        modes = rng.integers(self.n_modes, size=n)
        noise = rng.standard_normal((n, self.dim))
        return self.centres[modes] + self.std * noise

    @property
    def plot_lim(self):
        """1-D: 6 std beyond the outermost modes. 2-D: a square around the origin that
        holds every mode with room for stray samples: the largest |coordinate| r of
        a centre plus max(0.6, 3r/8) (ring8: 1.6, grid25: 5.5)."""
        if self.dim == 1:
            return (float(self.centres.min()) - 6 * self.std,
                    float(self.centres.max()) + 6 * self.std)
        if self.dim != 2:
            return None
        r = float(np.abs(self.centres).max())
        half = r + max(0.6, 0.375 * r)
        return (-half, half, -half, half)

    def pdf(self, x) -> np.ndarray:
        """Mixture density at ``x``: (n, D) (or (n,) when D == 1) -> (n,) float64."""
        x = np.asarray(x, dtype=np.float64)
        if self.dim == 1 and x.ndim == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (n, {self.dim}), got {x.shape}.")
        sq = ((x[:, None, :] - self.centres[None, :, :]) ** 2).sum(axis=-1)  # (n, K)
        norm = (2.0 * np.pi * self.std**2) ** (self.dim / 2.0)
        return np.exp(-0.5 * sq / self.std**2).mean(axis=1) / norm

    def __repr__(self) -> str:
        return (
            f"GaussianMixture(name={self.name!r}, n_modes={self.n_modes}, "
            f"dim={self.dim}, std={self.std})"
        )


class Spiral(ToyDataset):
    """A 2-D Swiss-roll spiral: angle t in [1.5*pi, 4.5*pi], radius t / 7.5, plus noise.

    The scale 7.5 keeps the noiseless curve inside radius 1.89 (the same scale as
    ``ring8``); neighbouring arms are 2*pi/7.5 = 0.84 apart.
    """

    name = "spiral"
    dim = 2
    plot_lim = (-2.2, 2.2, -2.2, 2.2)
    SCALE = 7.5
    T_MIN, T_MAX = 1.5 * np.pi, 4.5 * np.pi

    def __init__(self, noise: float = 0.05):
        self.noise = _check_noise(noise)

    def _sample(self, n, rng):
        # t uniform as in sklearn's make_swiss_roll: denser near the centre per unit length.
        t = rng.uniform(self.T_MIN, self.T_MAX, size=n)
        curve = np.stack([t * np.cos(t), t * np.sin(t)], axis=1) / self.SCALE
        return curve + self.noise * rng.standard_normal((n, 2))

    def __repr__(self) -> str:
        return f"Spiral(noise={self.noise})"


class Moons(ToyDataset):
    """Two interleaved half circles of radius 1 (sklearn's make_moons), centred at 0.

    Upper moon: centre (-0.5, -0.25), angles [0, pi]; lower moon: centre
    (0.5, 0.25), angles [pi, 2*pi]. Each sample picks a moon uniformly.
    """

    name = "moons"
    dim = 2
    plot_lim = (-2.0, 2.0, -1.6, 1.6)
    # sklearn's moons span x in [-1, 2], y in [-0.5, 1]; shifting by (0.5, 0.25)
    # centres them so the set sits in [-1.5, 1.5] x [-0.75, 0.75].
    MOON_CENTRES = np.array([[-0.5, -0.25], [0.5, 0.25]])

    def __init__(self, noise: float = 0.05):
        self.noise = _check_noise(noise)

    def _sample(self, n, rng):
        moon = rng.integers(2, size=n)
        theta = rng.uniform(0.0, np.pi, size=n) + np.pi * moon  # lower moon: [pi, 2*pi]
        curve = self.MOON_CENTRES[moon] + np.stack([np.cos(theta), np.sin(theta)], axis=1)
        return curve + self.noise * rng.standard_normal((n, 2))

    def __repr__(self) -> str:
        return f"Moons(noise={self.noise})"


def ring8() -> GaussianMixture:
    """8 Gaussians at angles 2*pi*k/8 on the unit circle, std 0.01 (2-D, 8 modes)."""
    angles = 2.0 * np.pi * np.arange(8) / 8.0
    return GaussianMixture("ring8", np.stack([np.cos(angles), np.sin(angles)], axis=1), 0.01)


def grid25() -> GaussianMixture:
    """25 Gaussians at {-4, -2, 0, 2, 4}^2, std 0.05 (2-D, 25 modes; x varies slowest)."""
    axis = np.array([-4.0, -2.0, 0.0, 2.0, 4.0])
    xs, ys = np.meshgrid(axis, axis, indexing="ij")
    return GaussianMixture("grid25", np.stack([xs.ravel(), ys.ravel()], axis=1), 0.05)


def gaussian1d() -> GaussianMixture:
    """One 1-D Gaussian, mean 4.0, std 0.5: samples have shape (n, 1)."""
    return GaussianMixture("gaussian1d", [[4.0]], 0.5)


def spiral(noise: float = 0.05) -> Spiral:
    """A 2-D spiral within about [-2, 2]^2 (not a mixture: centres and std are None)."""
    return Spiral(noise)


def moons(noise: float = 0.05) -> Moons:
    """Two interleaved 2-D half circles (not a mixture: centres and std are None)."""
    return Moons(noise)


TOY_DATASETS = {
    "ring8": ring8,
    "grid25": grid25,
    "gaussian1d": gaussian1d,
    "spiral": spiral,
    "moons": moons,
}


def toy_dataset(name: str) -> ToyDataset:
    """The toy set called ``name`` (one of ``TOY_DATASETS``), with its default settings."""
    try:
        factory = TOY_DATASETS[name]
    except (KeyError, TypeError):
        known = ", ".join(TOY_DATASETS)
        raise ValueError(f"Unknown toy dataset {name!r}: expected one of {known}.") from None
    return factory()
