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
    """{library: threads} as the loaded BLAS libraries report it (needs threadpoolctl), else {}."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {}
    return {f"{i['internal_api']} ({os.path.basename(i['filepath'])})": i["num_threads"]
            for i in threadpool_info()}
