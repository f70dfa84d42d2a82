"""How many threads the BLAS library (OpenBLAS, MKL) may use for this run.

The toy networks multiply matrices of a few hundred rows: a second BLAS thread
saves nothing there, and on a busy machine its spinning makes every step
several times slower. ``blas_threads`` decides, ``limit_blas_threads`` applies
the decision, ``blas_info`` describes the library for ``minigan info``.
``share_threads`` gives a convolutional model's threads to the kernels instead
(a layer's chunks on the threads, one BLAS thread each; ``workers`` tells them).
"""

from __future__ import annotations

import contextlib
import functools
import os
import time

import numpy as np

__all__ = ["THREAD_ENV", "blas_threads", "busy_cpus", "limit_blas_threads", "blas_info",
           "share_threads", "blas_thread_count", "cpu_count", "workers", "one_blas_thread",
           "MAX_CHUNK_THREADS"]

THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
_SET_THREADS = ("openblas_set_num_threads", "openblas_set_num_threads64_",
                "scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads")
_GET_THREADS = tuple(name.replace("_set_", "_get_") for name in _SET_THREADS)


def blas_threads(requested, is_image):
    """(threads, reason) for this run's BLAS, or (None, "") to leave the library's default.

    ``requested`` (the --threads option) wins. The toy networks are too small to
    gain from a second thread. For images, a busy machine (other processes using
    some of this process's CPUs now, ``busy_cpus``) gets fewer threads: a BLAS
    thread that shares its core with another process makes the others wait for it
    at every matrix product, several times slower than one thread alone.
    """
    if requested is not None:
        return requested, ""
    if any(k in os.environ for k in THREAD_ENV):
        return None, ""
    if not is_image:
        return 1, ""
    cpus = cpu_count()
    busy, how = busy_cpus(), "{busy:.1f} of its {cpus} CPUs in use by other processes"
    if busy is None:  # no CPU time counters (not Linux), or they did not move: the load average
        try:
            busy, how = os.getloadavg()[0], "load average {busy:.1f} on {cpus} CPUs"
        except (AttributeError, OSError):
            return None, ""
    free = max(1, cpus - int(busy + 0.5))
    if free < cpus:
        return free, (f"the machine is busy ({how.format(busy=busy, cpus=cpus)}; "
                      "choose with --threads)")
    return None, ""


#: Seconds over which ``busy_cpus`` watches the CPUs.
BUSY_INTERVAL_S = 0.3


def busy_cpus(interval=BUSY_INTERVAL_S):
    """How many of the CPUs this process may run on are busy now, a float; None where
    the system has no CPU time counters to read (Linux's /proc/stat) or they did not
    move.

    Their busy time over ``interval`` seconds, while this process sleeps: the other
    processes' use (and this one's other threads', none when a run starts). Not the
    load average: that is a moving average over a minute, which still counts a job
    that has just ended (a pip install, the last training run) for a minute or two,
    and would give a DCGAN run started then one thread for all its 7,000 steps. A
    job that is busy now is what makes a BLAS thread wait; a burst of work during
    those 0.3 s costs the run a thread too (``--threads`` decides instead).
    """
    mine = _affinity()
    before = _cpu_times(cpus=mine)
    if before is None:
        return None
    time.sleep(interval)
    after = _cpu_times(cpus=mine)
    if after is None:
        return None
    (busy0, total0, n), (busy1, total1, _) = before, after
    return n * (busy1 - busy0) / (total1 - total0) if total1 > total0 else None


def _affinity():
    """The numbers of the CPUs this process may run on; None where the OS does not say."""
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:
        return None


def _cpu_times(path="/proc/stat", cpus=None):
    """(busy, total, n) from the kernel's counters of CPUs ``cpus`` (CPU numbers; None:
    all): the time they spent since boot (in clock ticks) doing anything but waiting
    idle, the time in all, and how many of them there are; None where there is no such
    file or it reads otherwise. (A container's /proc/stat counts the host's CPUs: the
    affinity mask picks this process's own.)"""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    busy = total = n = 0
    for line in lines:
        fields = line.split()
        # cpuN user nice system idle iowait irq softirq steal [guest guest_nice: in user]
        if not fields or not fields[0].startswith("cpu") or not fields[0][3:].isdigit():
            continue
        if cpus is not None and int(fields[0][3:]) not in cpus:
            continue
        try:
            ticks = [int(v) for v in fields[1:9]]
        except ValueError:
            return None
        if len(ticks) < 8:
            return None
        total += sum(ticks)
        busy += sum(ticks) - ticks[3] - ticks[4]  # all but idle, and idle waiting for the disk
        n += 1
    return (busy, total, n) if n else None


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
    functions = _openblas_functions(loaded_openblas())
    for _, set_threads in functions:
        set_threads(n)
    return bool(functions)


def loaded_openblas():
    """The OpenBLAS libraries this process has loaded (paths), from /proc/self/maps."""
    try:
        with open("/proc/self/maps") as f:
            return tuple(sorted({line.split()[-1] for line in f if "openblas" in line.lower()}))
    except OSError:
        return ()


@functools.lru_cache(maxsize=None)
def _openblas_functions(libs):
    """[(get_num_threads, set_num_threads)] of each library in ``libs`` that has both."""
    import ctypes

    found = []
    for lib in libs:
        try:
            handle = ctypes.CDLL(lib)
        except OSError:
            continue
        for get_name, set_name in zip(_GET_THREADS, _SET_THREADS):
            get, set_ = getattr(handle, get_name, None), getattr(handle, set_name, None)
            if get is not None and set_ is not None:
                set_.argtypes = [ctypes.c_int]
                found.append((get, set_))
                break
    return found


@functools.lru_cache(maxsize=1)
def _numpy_openblas():
    """The OpenBLAS libraries loaded at the first call (NumPy's, where it uses one) as
    [(get, set)], or [] (MKL, Accelerate, no /proc): asked once."""
    return _openblas_functions(loaded_openblas())


_chunk_threads = 1
#: The most threads the kernels' lanes use (``kernels.LANES``): a run with more threads
#: gives them to the BLAS instead.
MAX_CHUNK_THREADS = 4


def share_threads(n, convolutional, force=True):
    """Give a run's ``n`` threads to the convolutions or to the BLAS.

    A convolutional model's step is mostly window copies, col2im's additions and
    elementwise passes, which a BLAS thread never helps: there ``minigan.kernels``
    runs each layer's chunks (and its large elementwise passes) on ``n`` threads
    of its own, and the BLAS gets one thread (each of ours runs its own products).
    Any other model's step is a few large products: the BLAS gets the ``n`` (None:
    left as it is). So does a convolutional one when ``n`` is more than the kernels'
    lanes (MAX_CHUNK_THREADS), or when the BLAS cannot be set to one thread (MKL
    without threadpoolctl): threads of ours on top of its own would fight for the
    cores. ``force=False`` leaves a BLAS thread variable the user set alone. True if
    the BLAS was asked.
    """
    global _chunk_threads
    _chunk_threads = 1
    if n is None:
        return False
    if convolutional and 1 < n <= MAX_CHUNK_THREADS and limit_blas_threads(1, force=True):
        _chunk_threads = int(n)
        return True
    return limit_blas_threads(n, force=force)


def blas_thread_count():
    """The threads NumPy's OpenBLAS uses now; None where it cannot be asked."""
    functions = _numpy_openblas()
    return functions[0][0]() if len(functions) == 1 else None


def cpu_count():
    """The cores this process may run on (its affinity mask where the OS has one)."""
    mine = _affinity()
    return len(mine) if mine is not None else (os.cpu_count() or 1)


def workers(most):
    """How many threads may share a piece of work now: what ``share_threads`` gave
    the kernels (1 unless a convolutional run asked), at most ``most``."""
    return max(1, min(most, _chunk_threads))


@contextlib.contextmanager
def one_blas_thread():
    """OpenBLAS on one thread inside (a guard: ``share_threads`` already asked for it):
    each of our threads runs its own products, and BLAS threads on top of them
    would only fight for the cores, spinning. Restored after."""
    functions = _numpy_openblas()
    before = [get() for get, _ in functions]
    if all(n == 1 for n in before):  # the usual case: nothing to set (nor to race over)
        yield
        return
    for _, set_threads in functions:
        set_threads(1)
    try:
        yield
    finally:
        for (_, set_threads), n in zip(functions, before):
            set_threads(n)


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
