"""Where arrays live: NumPy on the CPU or CuPy on an NVIDIA GPU.

The array module is chosen per call from the data (``xp = array_module(x)``), so
every function has one code path for both. ``use()`` (or the environment variable
``MINIGAN_BACKEND``) only decides where *new* parameters and data are placed.
CuPy is imported the first time it is asked for, never at ``import minigan``.
"""

from __future__ import annotations

import os
import sys

import numpy as np

BACKENDS = ("numpy", "cupy")

_state = {"backend": None, "rng": None}

_CUPY_INSTALL_HINT = (
    "Install it with `pip install \"minigan[gpu]\"` (CuPy for CUDA 12), or "
    "`pip install cupy-cuda13x` on a CUDA 13 machine."
)


def _import_cupy():
    """Import CuPy and check that a GPU is visible, with errors that say how to fix it."""
    try:
        import cupy
    except ImportError as err:
        raise RuntimeError(
            f"The 'cupy' backend needs CuPy, which is not installed ({err}). "
            + _CUPY_INSTALL_HINT
        ) from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # CUDA driver missing or broken
        raise RuntimeError(
            f"CuPy is installed but cannot reach a GPU ({type(err).__name__}: {err}). "
            "Check `nvidia-smi` and that the CuPy wheel matches your CUDA version, "
            "or use the 'numpy' backend."
        ) from None
    if count == 0:
        raise RuntimeError(
            "CuPy is installed but no GPU is visible (0 CUDA devices). "
            "Use the 'numpy' backend, or check CUDA_VISIBLE_DEVICES."
        )
    return cupy


def cupy_available() -> bool:
    """True when CuPy imports and sees at least one GPU."""
    try:
        _import_cupy()
    except RuntimeError:
        return False
    return True


def _check_name(name: str) -> str:
    name = str(name).lower()
    if name not in BACKENDS:
        raise ValueError(f"Unknown backend {name!r}: expected one of {BACKENDS}.")
    return name


def get_backend() -> str:
    """The backend new arrays are placed on: 'numpy' (default) or 'cupy'."""
    if _state["backend"] is None:
        _state["backend"] = _check_name(os.environ.get("MINIGAN_BACKEND", "numpy"))
        if _state["backend"] == "cupy":
            _import_cupy()
    return _state["backend"]


def use(name: str) -> None:
    """Place new parameters and data on ``name`` ('numpy' or 'cupy') from now on."""
    name = _check_name(name)
    if name == "cupy":
        _import_cupy()
    _state["backend"] = name


def backend_module(name: str | None = None):
    """The array module (numpy or cupy) for a backend name (default: the current one)."""
    name = get_backend() if name is None else _check_name(name)
    return _import_cupy() if name == "cupy" else np


def _is_cupy(x) -> bool:
    # Looks at the type's module, so CuPy never has to be imported to answer.
    return type(x).__module__.startswith("cupy")


def array_module(*arrays):
    """NumPy or CuPy, whichever the given arrays live on.

    Mixing NumPy and CuPy arrays in one call raises a ValueError that names both.
    """
    kinds = {("cupy" if _is_cupy(a) else "numpy") for a in arrays if a is not None}
    if len(kinds) > 1:
        described = ", ".join(
            f"{type(a).__module__}.{type(a).__name__}{getattr(a, 'shape', '')}"
            for a in arrays if a is not None
        )
        raise ValueError(
            "Arrays from different backends were mixed in one call: "
            f"{described}. Move them to one backend first with "
            "minigan.to_device(x, 'numpy'|'cupy') or model.to(...)."
        )
    if kinds == {"cupy"}:
        return sys.modules["cupy"]
    return np


def backend_of(x) -> str:
    """'cupy' for a CuPy array, 'numpy' otherwise."""
    return "cupy" if _is_cupy(x) else "numpy"


def to_floats(scalars):
    """Numbers and 0-d arrays (on one backend) -> Python floats, in ONE device-to-host
    copy: on a GPU each float(x) would wait for the GPU to finish its queue."""
    xp = array_module(*[s for s in scalars if hasattr(s, "shape")])
    return [float(v) for v in to_numpy(xp.stack([xp.asarray(s) for s in scalars]))]


def to_numpy(x):
    """A NumPy copy (or view) of ``x``; use at the edges only: plots, saving, tests."""
    if _is_cupy(x):
        return x.get()
    return np.asarray(x)


def to_device(x, backend: str | None = None):
    """``x`` as an array on ``backend`` (default: the current backend); dtype kept."""
    backend = get_backend() if backend is None else _check_name(backend)
    if backend == "cupy":
        cupy = _import_cupy()
        return cupy.asarray(x)
    return to_numpy(x)


def seed(n: int) -> None:
    """Reseed minigan's default generator, so a NumPy run repeats exactly."""
    _state["rng"] = np.random.default_rng(n)


def rng() -> np.random.Generator:
    """minigan's default NumPy generator (seeded by ``seed``); host-side, backend-independent."""
    if _state["rng"] is None:
        _state["rng"] = np.random.default_rng()
    return _state["rng"]


def make_rng(seed_or_rng=None) -> np.random.Generator:
    """A NumPy Generator from None (the default one), an int seed or a Generator."""
    if seed_or_rng is None:
        return rng()
    if isinstance(seed_or_rng, np.random.Generator):
        return seed_or_rng
    return np.random.default_rng(seed_or_rng)


def check_array(x, name: str = "input"):
    """Refuse anything that is not a floating NumPy/CuPy array, saying what arrived."""
    if not (isinstance(x, np.ndarray) or _is_cupy(x)):
        raise TypeError(
            f"{name} must be a NumPy or CuPy array, got {type(x).__name__}. "
            "Convert it with np.asarray(x, dtype=np.float32)."
        )
    if x.dtype.kind != "f":
        raise TypeError(
            f"{name} must have a floating dtype (float32 or float64), got {x.dtype}. "
            "Convert it with x.astype(np.float32)."
        )
    return x
