"""The run directory of ``python -m minigan train``: claimed before anything trains.

A run directory is claimed (``claim``) before the first step, so that nothing a
run does later can lose data:

* it must be a folder that is empty, or that ``--overwrite`` or ``--resume``
  allows us to reuse; paths are compared after resolving symlinks;
* it is proven writable by writing: our pid goes into its lock file, and an
  ``flock`` on that file keeps a second concurrent run out (the lock dies with
  the process, so a run killed with -9 leaves none behind);
* nothing is deleted at claim time: an old run's outputs are removed only after
  the new run has saved its checkpoint (``remove_stale_outputs``);
* temporary files left by a run killed while saving are cleaned up.

Problems raise ``RunDirectoryError`` with what to do; the command line prints
it as a usage error.
"""

from __future__ import annotations

import datetime
import os

__all__ = ["RunDirectoryError", "LOCK_FILE", "new_name", "claim", "release", "same_file",
           "remove_stale_outputs"]


class RunDirectoryError(Exception):
    """A run directory that cannot be used: exists as a file, not writable, in use."""


def new_name(dataset, root="runs"):
    """A fresh run directory name, runs/<dataset>-<date>-<time>[-k], not yet taken."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = os.path.join(root, f"{dataset}-{stamp}")
    out, k = base, 2
    while os.path.exists(out):
        out, k = f"{base}-{k}", k + 1
    return out


#: The lock file in a run directory while a run writes to it.
LOCK_FILE = ".minigan-run.lock"


def same_file(a, b):
    """Whether two paths name the same file once symlinks are resolved."""
    return os.path.realpath(a) == os.path.realpath(b)


def claim(out, overwrite, resume_path=None):
    """Claim the run directory before anything trains: refuse a file, a non-empty
    folder without --overwrite, a folder that cannot be written (found by writing)
    and one that another run is writing to. Returns the lock (see ``_lock``).

    Nothing is deleted here: with --overwrite, the old run's files stay until the
    new run has saved its checkpoint (``remove_stale_outputs``), so a run that
    fails early (a full disk, a bad setting) loses nothing.
    """
    if os.path.exists(out) and not os.path.isdir(out):
        raise RunDirectoryError(f"--out {out!r} exists and is not a directory")
    if os.path.isdir(out) and set(_listdir(out)) - {LOCK_FILE}:
        resuming_here = resume_path is not None and \
            same_file(os.path.dirname(os.path.abspath(resume_path)), out)
        if not overwrite and not resuming_here:
            raise RunDirectoryError(f"the run directory {out!r} exists and is not empty; pass --overwrite "
                           "to replace its files, or choose another --out")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as err:
        raise RunDirectoryError(f"cannot create the run directory {out!r} ({err.strerror or err}); "
                       "choose a writable --out") from None
    lock = _lock(out)
    from minigan._atomic import remove_stale_temporaries

    remove_stale_temporaries(out)  # left by a run that was killed while saving
    return lock


def _listdir(out):
    try:
        return os.listdir(out)
    except OSError as err:
        raise RunDirectoryError(f"cannot read the run directory {out!r} ({err.strerror or err}); "
                       "choose another --out") from None


def _lock(out):
    """Lock ``out`` against a second concurrent run and prove it writable by writing
    our pid into its lock file. The lock (an open file descriptor with an flock)
    dies with the process, so a run killed with -9 leaves no lock behind. Where
    there is no flock (Windows), the folder is only checked for writing."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        fcntl = None

    path = os.path.join(out, LOCK_FILE)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise RunDirectoryError(f"the run directory {out!r} is not writable ({err.strerror or err}); "
                           "choose a writable --out, or fix its permissions") from None
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = _read_pid(fd)
            os.close(fd)
            raise RunDirectoryError(f"another minigan run{f' (process {other})' if other else ''} is "
                           f"writing to {out!r}; wait for it to finish, stop it, or choose "
                           "another --out") from None
        # The previous holder may have deleted the file between our open and our
        # lock: then we hold a lock on a name nobody sees. Try again.
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.fsync(fd)
    except OSError as err:
        release((fd, path))
        raise RunDirectoryError(f"the run directory {out!r} is not writable ({err.strerror or err}); "
                       "choose another --out, or free some space") from None
    return fd, path


def _read_pid(fd):
    try:
        text = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def release(lock):
    """Give the run directory back: remove the lock file, close (and so unlock) it."""
    if lock is None:
        return
    fd, path = lock
    try:
        os.unlink(path)  # while still locked: a waiting run re-checks the name (see above)
    except OSError:
        pass
    os.close(fd)


def remove_stale_outputs(out, names, written):
    """After the new checkpoint is on disk: remove the old run's outputs (of
    ``names``) that this run has not (yet) ``written``, so the folder never mixes
    two runs' results."""
    for name in names:
        path = os.path.join(out, name)
        if name not in written and os.path.isfile(path):
            try:
                os.remove(path)
            except OSError:
                pass
