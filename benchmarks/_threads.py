"""Thread settings for the benchmarks, importable before NumPy (it imports nothing heavy).

OpenBLAS, MKL and OpenMP read their thread counts from the environment once,
when the library is loaded: set them here, then import NumPy and PyTorch.
At run time ``threadpoolctl`` (if installed) can also change and report them.
"""

from __future__ import annotations

import os


def default_threads() -> int:
    """The cores this process may run on (os.cpu_count(), less any affinity mask)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def set_threads(n: int) -> None:
    """Ask every BLAS/OpenMP runtime for n threads. Must run before NumPy is imported."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


def blas_threads() -> dict:
    """{library: "N threads, core"} as the loaded BLAS libraries report it.

    Uses threadpoolctl where installed, else asks any OpenBLAS this process has
    loaded directly (its get_num_threads and get_corename, the kernel set picked
    at run time, which the build configuration string does not show).
    """
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        threadpool_info = None
    if threadpool_info is not None:
        return {f"{i['internal_api']} ({os.path.basename(i['filepath'])})":
                f"{i['num_threads']} threads" + (f", {i['architecture']}" if i.get("architecture") else "")
                for i in threadpool_info()}
    import ctypes

    found = {}
    try:
        with open("/proc/self/maps") as f:
            libs = sorted({line.split()[-1] for line in f if "openblas" in line.lower()})
    except OSError:
        return found
    for lib in libs:
        try:
            handle = ctypes.CDLL(lib)
        except OSError:
            continue
        info = []
        for prefix in ("scipy_openblas_", "openblas_"):
            for suffix in ("64_", ""):
                threads = getattr(handle, f"{prefix}get_num_threads{suffix}", None)
                core = getattr(handle, f"{prefix}get_corename{suffix}", None)
                if threads is not None and core is not None:
                    core.restype = ctypes.c_char_p
                    info = [f"{threads()} threads", core().decode()]
                    break
            if info:
                break
        if info:
            found[f"openblas ({os.path.basename(lib)})"] = ", ".join(info)
    return found
