"""Atomic file writes: readers see the old file or the complete new one, never half.

Every file minigan writes (checkpoints, run outputs, figures, the cached
classifier) goes through here: the data is written to a temporary file in the
same folder (a rename is only atomic within one file system), flushed to disk,
given the permissions ``open()`` would give it, and renamed over the target. If
anything fails, the temporary file is removed and the old target is untouched.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from contextlib import contextmanager
from pathlib import Path


# .NAME-PID-XXXXXXXX.tmp.SUFFIX: the pid tells a later run whether the writer still lives
_TEMPORARY = re.compile(r"^\.(?P<stem>.*)-(?P<pid>\d+)-[0-9a-f]{8}\.tmp(\.[^.]*)?$")


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def _temporary_beside(path: Path) -> Path:
    # Same suffix as the target, so writers that pick a format by extension
    # (matplotlib, Pillow) still do; a hidden, unique name so nothing collides.
    tail = f"-{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp{path.suffix}"
    # A target name near the file system's limit (255 bytes) must not be pushed
    # over it by the tail: shorten the stem of the temporary name instead.
    room = _name_max(path.parent) - len(tail.encode()) - 1
    stem = path.stem.encode()[:max(room, 1)].decode(errors="ignore")
    return path.parent / f".{stem}{tail}"


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (on this machine)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # it exists, owned by someone else
    return True


def remove_stale_temporaries(folder, pattern=_TEMPORARY, max_age_s=None) -> list:
    """Delete temporary files that a killed writer (kill -9, power loss) left in
    ``folder``: those whose writer's pid no longer runs (or, for names without a
    pid, older than ``max_age_s``). Returns the names removed; never raises."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        match = pattern.match(name)
        if match is None:
            continue
        pid = match.groupdict().get("pid")
        path = os.path.join(folder, name)
        try:
            if pid is not None:
                stale = not pid_alive(int(pid))
            else:
                stale = max_age_s is not None and time.time() - os.path.getmtime(path) > max_age_s
            if stale and os.path.isfile(path):
                os.unlink(path)
                removed.append(name)
        except OSError:
            continue  # gone already, or not ours to delete: leave it
    return removed


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
