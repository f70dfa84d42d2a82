"""How many threads the BLAS library (OpenBLAS, MKL) may use for this run.

The toy networks multiply matrices of a few hundred rows: a second BLAS thread
saves nothing there, and on a busy machine its spinning makes every step
several times slower. ``blas_threads`` decides, ``limit_blas_threads`` applies
the decision, ``blas_info`` describes the library for ``minigan info``.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["THREAD_ENV", "blas_threads", "limit_blas_threads", "blas_info"]

THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
_SET_THREADS = ("openblas_set_num_threads", "openblas_set_num_threads64_",
                "scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads")


def blas_threads(requested, is_image):
    """(threads, reason) for this run's BLAS, or (None, "") to leave the library's default.

    ``requested`` (the --threads option) wins. The toy networks are too small to
    gain from a second thread. For images, a busy machine (load average near the
    CPU count) gets fewer threads: a BLAS thread that shares its core with
    another process makes the others wait for it at every matrix product,
    several times slower than one thread alone.
    """
    if requested is not None:
        return requested, ""
    if any(k in os.environ for k in THREAD_ENV):
        return None, ""
    if not is_image:
        return 1, ""
    cpus = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None, ""
    free = max(1, cpus - int(load + 0.5))
    if free < cpus:
        return free, (f"the machine is busy (load average {load:.1f} on {cpus} CPUs; "
                      "choose with --threads)")
    return None, ""


def limit_blas_threads(n, force=False):
    """Ask the loaded BLAS for ``n`` threads; True if it was done.

    Left alone when the user set a thread variable (unless ``force``). Uses
    threadpoolctl where installed, else OpenBLAS's own setter (found in the
    libraries this process has loaded); quietly does nothing elsewhere.
    """
    if not force and any(k in os.environ for k in THREAD_ENV):
        return False
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return _openblas_set_threads(n)
    threadpool_limits(n, user_api="blas")
    return True


def _openblas_set_threads(n):
    import ctypes

    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if "openblas" in line.lower()}
    except OSError:
        return False
    done = False
    for lib in sorted(libs):
        try:
            handle = ctypes.CDLL(lib)
        except OSError:
            continue
        for name in _SET_THREADS:
            fn = getattr(handle, name, None)
            if fn is not None:
                fn(ctypes.c_int(n))
                done = True
                break
    return done


def blas_info():
    """'name version (THREAD_VARIABLE=n, ...)' of NumPy's BLAS, for ``minigan info``."""
    try:
        config = np.show_config(mode="dicts")
        blas = config.get("Build Dependencies", {}).get("blas", {})
        text = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:
        text = "unknown"
    threads = [f"{k}={os.environ[k]}" for k in THREAD_ENV if k in os.environ]
    return text + (f" ({', '.join(threads)})" if threads else "")
