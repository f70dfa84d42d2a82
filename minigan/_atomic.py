"""Atomic file writes: readers see the old file or the complete new one, never half.

Every file minigan writes (checkpoints, run outputs, figures, the cached
classifier) goes through here: the data is written to a temporary file in the
same folder (a rename is only atomic within one file system), flushed to disk,
given the permissions ``open()`` would give it, and renamed over the target. If
anything fails, the temporary file is removed and the old target is untouched.
"""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path


def _temporary_beside(path: Path) -> Path:
    # Same suffix as the target, so writers that pick a format by extension
    # (matplotlib, Pillow) still do; a hidden, unique name so nothing collides.
    return path.parent / f".{path.stem}-{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp{path.suffix}"


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; when the block succeeds, rename it into place.

    For writers that want a file name (``fig.savefig``, animation writers).
    The parent folder is created if needed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_beside(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise


@contextmanager
def atomic_open(path, mode="wb", **kwargs):
    """``open`` for writing, atomically: the file appears complete, or not at all."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as f:  # open() applies the usual umask permissions
            yield f
            f.flush()
            os.fsync(f.fileno())
