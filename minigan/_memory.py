"""Keep the memory a training step frees, for the next step (glibc's malloc only).

Why: NumPy's arrays of a few MB come from glibc's malloc. When a step frees them,
glibc gives the top of its heap back to the kernel as soon as more than
M_TRIM_THRESHOLD bytes lie free there (a threshold that follows the largest block
freed so far: a few MB). The next step asks for the same memory again, and the
kernel maps it afresh: one fault, and one zeroed 4 KiB page, per page touched.
A DCGAN step at batch 64 took about 5,000 such faults, some 15% of its time on two
cores (benchmarks/RESULTS.md, "Freed memory kept"). Told to keep up to 256 MiB free
and to serve blocks of up to 32 MiB from its heap, glibc hands the same pages back
step after step, and the step takes none.

This is a setting of the whole process, so the library never makes it on import:
``minigan train`` does, for the run it starts (as it sets the BLAS's threads).
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["keep_freed_memory"]

# mallopt's parameters, from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1   # free bytes at the heap's top before it is given back
M_TOP_PAD = -2          # extra bytes taken whenever the heap grows
M_MMAP_THRESHOLD = -3   # blocks at least this large get their own mapping (at most 32 MiB)


def keep_freed_memory(keep=256 << 20, heap_blocks=32 << 20, top_pad=64 << 20):
    """Ask glibc's malloc to keep up to ``keep`` bytes of freed memory, serve blocks
    below ``heap_blocks`` bytes from its heap, and grow it ``top_pad`` bytes at a time.

    Returns True if glibc took all three settings; False elsewhere (macOS, Windows, a
    C library without mallopt, or one that declines, as musl's), changing nothing there.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this Python runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # glibc answers 1 for a setting taken, 0 for one refused (musl: always 0)
    return all([mallopt(M_MMAP_THRESHOLD, heap_blocks) == 1,
                mallopt(M_TRIM_THRESHOLD, keep) == 1,
                mallopt(M_TOP_PAD, top_pad) == 1])
