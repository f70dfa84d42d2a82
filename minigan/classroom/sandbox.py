"""Run a student's code in a sandboxed process: limits, isolation, and nothing left behind.

The grader calls ``run_sandboxed`` once per exercise. Which protections are
possible depends on the machine; ``detect()`` finds out once, by trying:

``bwrap`` (bubblewrap installed, and namespaces allowed)
    new mount, PID, network, IPC and UTS namespaces; the process sees only the
    Python runtime, NumPy and its own job folder (not the teacher's checkout, the
    hidden checks, the expected values or the grade files); ``--die-with-parent``
    and the PID namespace take every process it started down with it, even one
    that called setsid(). As root, the student's code also runs under its own
    unprivileged uid (``setpriv``), one uid per parallel slot.
``unshare`` (root, no bubblewrap)
    PID, network and IPC namespaces and an unprivileged uid, but the teacher's
    world-readable files stay readable.
``plain``
    its own session and process group, resource limits; nothing else.

Every strategy applies the same resource limits (CPU, address space, file
size, processes, open files, no core dumps), a wall-clock timeout, and kills
the whole process group at the end (and, with a dedicated uid, every process
of that uid). ``Sandbox.missing`` lists what a strategy cannot give, in words.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

FIRST_UID = 61000          # students' code runs as one of these uids when the grader is root
UID_COUNT = 1000
LOCK_DIR = "/run/lock/minigan-classroom" if os.path.isdir("/run/lock") else "/tmp/minigan-classroom-locks"
INSIDE = "/sandbox"        # where the job folder appears inside bubblewrap
SITE_INSIDE = "/opt/minigan-site"
TMPFS_BYTES = 64 << 20


@dataclass
class Limits:
    wall: float = 30.0                 # seconds of real time
    memory: int = 1 << 30              # bytes of address space
    file_size: int = 8 << 20           # bytes per file written (stdout and stderr included)
    processes: int = 32                # processes of the runner's uid (fork bombs)
    open_files: int = 128

    @property
    def cpu(self) -> int:
        return int(self.wall) + 2


@dataclass
class Outcome:
    returncode: int | None
    timed_out: bool
    seconds: float
    output_exceeded: bool = False
    stderr_tail: str = ""


@dataclass
class Sandbox:
    name: str                              # "bwrap", "unshare" or "plain"
    separate_uid: bool
    missing: list = field(default_factory=list)

    def describe(self) -> str:
        done = {"bwrap": "bubblewrap namespaces (mount, PID, network)",
                "unshare": "unshare namespaces (PID, network)",
                "plain": "its own process group"}[self.name]
        text = f"student code runs with resource limits in {done}"
        text += ", as a separate unprivileged uid" if self.separate_uid else ""
        if self.missing:
            text += ". Missing protections: " + "; ".join(self.missing)
        return text


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def python_runtime():
    """(interpreter, [folders it needs], [site folders to put on sys.path]) for the runner."""
    import numpy

    interpreter = os.path.realpath(sys.executable)
    prefix = os.path.realpath(sys.base_prefix)
    if not interpreter.startswith(prefix + os.sep):  # a venv made with --copies
        base = os.path.join(prefix, "bin", "python%d.%d" % sys.version_info[:2])
        interpreter = base if os.path.exists(base) else interpreter
    numpy_dir = os.path.dirname(os.path.realpath(numpy.__file__))
    site = os.path.dirname(numpy_dir)
    return interpreter, prefix, site, numpy_dir


# ------------------------------------------------------------------- command lines


def _bwrap_args(job_root: Path, reference_pkg: Path | None):
    """Bind only what the runner needs, read-only; the job's out/ folder writable."""
    interpreter, prefix, site, numpy_dir = python_runtime()
    args = ["bwrap", "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
            "--unshare-cgroup-try", "--die-with-parent", "--new-session",
            "--proc", "/proc", "--dev", "/dev",
            "--size", str(TMPFS_BYTES), "--tmpfs", "/tmp"]  # a tmpfs is RAM: cap it
    if not _is_root():
        args.insert(1, "--unshare-user")
    ro = [p for p in ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin") if os.path.exists(p)]
    ro.append(prefix)
    for path in ro:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        else:
            args += _parents(path) + ["--ro-bind", path, path]
    args += _parents(SITE_INSIDE + "/x")
    for name in (os.path.basename(numpy_dir), "numpy.libs"):
        src = os.path.join(site, name)
        if os.path.isdir(src):
            args += ["--ro-bind", src, f"{SITE_INSIDE}/{name}"]
    # Any minigan installed inside a bound folder (the reference, or another copy with the
    # solutions in it) would be readable: hide it.
    for pkg in _installed_minigans(ro, reference_pkg):
        args += ["--size", "4096", "--tmpfs", pkg]
    args += ["--ro-bind", str(job_root), INSIDE, "--bind", str(job_root / "out"), INSIDE + "/out",
             "--chdir", INSIDE + "/out"]
    return args, interpreter, [SITE_INSIDE]


def _installed_minigans(bound, reference_pkg):
    import glob

    found = set()
    for base in bound:
        for pattern in ("lib/python3*/site-packages/minigan", "lib/python3*/dist-packages/minigan",
                        "lib/python3/dist-packages/minigan", "local/lib/python3*/*-packages/minigan"):
            found.update(os.path.realpath(p) for p in glob.glob(os.path.join(base, pattern)))
    if reference_pkg is not None:
        ref = os.path.realpath(reference_pkg)
        if any(ref == p or ref.startswith(p.rstrip("/") + "/") for p in bound):
            found.add(ref)
    return sorted(found)


def _parents(path):
    """bubblewrap creates missing parents 0700 as root: make them 0755 (traversable)."""
    out, parts = [], Path(path).parts[1:-1]
    for i in range(1, len(parts) + 1):
        out += ["--perms", "0755", "--dir", "/" + "/".join(parts[:i])]
    return out


def _setpriv(uid):
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--"]


def command(sandbox: Sandbox, job_root: Path, uid: int, reference_pkg=None):
    """(argv prefix up to the interpreter, the job root as the runner sees it, site folders)."""
    interpreter, _prefix, site, _ = python_runtime()
    if sandbox.name == "bwrap":
        args, interpreter, sites = _bwrap_args(job_root, reference_pkg)
        if sandbox.separate_uid:
            args += _setpriv(uid)
        return args + [interpreter], INSIDE, sites
    prefix = []
    if sandbox.name == "unshare":
        prefix = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "--net", "--ipc"]
    if sandbox.separate_uid:
        prefix += _setpriv(uid)
    return prefix + [interpreter], str(job_root), [site]


# ------------------------------------------------------------------------ running


def _limits_preexec(limits: Limits, nproc):
    """Set the limits in the child before exec (they bind everything it starts)."""
    if os.name != "posix":
        return None  # Windows (a student's check): no rlimits, the wall clock still applies
    import resource

    wanted = [(resource.RLIMIT_CPU, limits.cpu), (resource.RLIMIT_AS, limits.memory),
              (resource.RLIMIT_FSIZE, limits.file_size), (resource.RLIMIT_CORE, 0),
              (resource.RLIMIT_NOFILE, limits.open_files)]
    if nproc is not None:
        wanted.append((resource.RLIMIT_NPROC, nproc))

    def apply():
        for res, value in wanted:
            try:
                resource.setrlimit(res, (value, value))
            except (ValueError, OSError):  # e.g. macOS refuses some: the others still hold
                pass
    return apply


def _process_uids():
    """The owner's uid of every process visible here, or None where /proc is missing (macOS)."""
    if not os.path.isdir("/proc"):
        return None
    uids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                uids.append(os.stat(f"/proc/{entry}").st_uid)
            except OSError:
                pass
    return uids


def _own_process_count():
    """The grader's user's processes, or None where /proc is missing."""
    uids = _process_uids()
    return None if uids is None else uids.count(os.getuid())


def _uids_with_processes():
    return set(_process_uids() or ())


def child_env():
    """A minimal environment: nothing of the grader's (tokens, paths) reaches student code."""
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
           "MINIGAN_BACKEND": "numpy", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HOME": "/nonexistent"}
    if os.name == "nt":  # Python does not start on Windows without it
        env["SYSTEMROOT"] = os.environ.get("SYSTEMROOT", r"C:\Windows")
    return env


def run_sandboxed(sandbox: Sandbox, argv_tail, job_root: Path, limits: Limits, uid: int,
                  reference_pkg=None) -> Outcome:
    """Run ``interpreter argv_tail`` (paths relative to what ``command`` returns) and clean up.

    ``argv_tail`` is a function of (inside_root, sites) giving the interpreter's arguments.
    """
    prefix, inside, sites = command(sandbox, job_root, uid, reference_pkg)
    argv = prefix + argv_tail(inside, sites)
    if sandbox.separate_uid:
        os.chown(job_root / "out", uid, uid)
        # The job folder is this runner's alone: without a mount namespace, another
        # student's runner (another uid) could otherwise read this copy from /tmp.
        os.chown(job_root, uid, uid)
        os.chmod(job_root, 0o700)
    # Without a uid of its own the cap counts all of the grader's processes.
    count = _own_process_count()
    nproc = limits.processes if sandbox.separate_uid else (
        None if count is None else count + limits.processes)
    out_path, err_path = job_root / "stdout.txt", job_root / "stderr.txt"
    started = time.perf_counter()
    with open(out_path, "wb") as fout, open(err_path, "wb") as ferr:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fout, stderr=ferr,
                                cwd=job_root / "out", env=child_env(),
                                start_new_session=os.name == "posix",
                                preexec_fn=_limits_preexec(limits, nproc))
        timed_out = False
        try:
            proc.wait(timeout=limits.wall)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            _kill_everything(proc, sandbox, uid)
    seconds = time.perf_counter() - started
    exceeded = any(p.stat().st_size >= limits.file_size for p in (out_path, err_path))
    return Outcome(proc.returncode, timed_out, seconds, exceeded, _tail(err_path))


def _kill_everything(proc, sandbox: Sandbox, uid: int):
    """The runner, its process group and, with a uid of its own, every process of that uid."""
    try:
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
    if sandbox.separate_uid:
        kill_uid(uid)


def kill_uid(uid: int):
    """kill -9 -1 as ``uid``: every process of that uid (a setsid() daemon included) dies."""
    kill = shutil.which("kill")
    argv = [kill, "-9", "-1"] if kill else [
        sys.executable, "-I", "-S", "-c", "import os, signal; os.kill(-1, signal.SIGKILL)"]
    for _ in range(3):  # a fork bomb may fork between two rounds
        subprocess.run(argv, user=uid, group=uid, extra_groups=[], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, env=child_env())


def _tail(path: Path, limit=400) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - 4000))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [ln for ln in data.splitlines() if ln.strip()]
    return " | ".join(lines[-3:])[-limit:]


# ----------------------------------------------------------------------- detection


class SlotPool:
    """Parallel runners each take a slot: a uid (and so a process cap) of its own.

    Each uid is locked (flock) for the pool's lifetime, so two graders on one
    machine never share a uid, and never kill each other's runners. A lock file
    only coordinates graders that see the same /run/lock, and the process cap
    (RLIMIT_NPROC) counts a uid's processes in the whole kernel: a grader in another
    container on the same host may be using the same uid number. So the search
    starts at a random uid, skips uids that have processes here, and a uid whose
    runner could not even start is given up for another (``retire``).
    """

    def __init__(self, n: int):
        self._free = queue.Queue()
        self._locks = {}                                  # uid -> locked fd
        self._retired = set()
        self._lock = threading.Lock()
        if not _is_root():  # no uid of its own to give: the slots only bound parallelism
            for uid in range(FIRST_UID, FIRST_UID + max(1, n)):
                self._free.put(uid)
            return
        os.makedirs(LOCK_DIR, mode=0o700, exist_ok=True)
        start = random.SystemRandom().randrange(UID_COUNT)  # whatever a user seeded
        self._candidates = [FIRST_UID + (start + i) % UID_COUNT for i in range(UID_COUNT)]
        for _ in range(n):
            uid = self._lock_another()
            if uid is None:
                break
            self._free.put(uid)
        if not self._locks:
            raise RuntimeError(f"no free runner uid in {FIRST_UID}..{FIRST_UID + UID_COUNT - 1}")

    def _lock_another(self):
        """Lock the next free uid that has no processes here; None when none is left."""
        import fcntl  # POSIX only, and only root gets here

        busy = _uids_with_processes()
        while self._candidates:
            uid = self._candidates.pop(0)
            if uid in busy:
                continue
            fd = os.open(os.path.join(LOCK_DIR, f"{uid}.lock"), os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            self._locks[uid] = fd
            return uid
        return None

    def retire(self, uid):
        """Give ``uid`` up when its slot is returned: its runner could not start (its
        process cap is taken, by processes this grader cannot see or kill)."""
        if self._locks:
            with self._lock:
                self._retired.add(uid)

    @contextlib.contextmanager
    def slot(self):
        uid = self._free.get()
        try:
            yield uid
        finally:
            with self._lock:
                if uid in self._retired:
                    self._retired.discard(uid)
                    new = self._lock_another()
                    if new is not None:  # none left: keep the old one
                        os.close(self._locks.pop(uid))
                        uid = new
            self._free.put(uid)

    def __del__(self):
        for fd in getattr(self, "_locks", {}).values():
            try:
                os.close(fd)
            except OSError:
                pass


def _works(sandbox: Sandbox):
    """(ok, why not): can this strategy start Python, import NumPy and write to out/?"""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="minigan-sandbox-probe-") as tmp:
        root = Path(tmp)
        os.chmod(root, 0o755)
        (root / "out").mkdir()

        def tail(inside, sites):
            code = (f"import sys; sys.path[:0] = {sites!r}; import numpy; "
                    f"open({inside + '/out/ok'!r}, 'w').write('ok')")
            return ["-I", "-S", "-c", code]
        try:
            with SlotPool(1).slot() as uid:
                outcome = run_sandboxed(sandbox, tail, root, Limits(wall=20), uid)
        except (OSError, subprocess.SubprocessError) as err:
            return False, str(err)
        return (root / "out" / "ok").exists(), outcome.stderr_tail or f"exit code {outcome.returncode}"


def detect(allow=None) -> Sandbox:
    """The strongest sandbox that works here.

    ``allow`` (or the environment variable MINIGAN_CLASSROOM_SANDBOX, e.g. "unshare,plain")
    narrows the choice: to try the fallbacks on a machine that has bubblewrap.
    """
    if allow is None:
        env = os.environ.get("MINIGAN_CLASSROOM_SANDBOX", "")
        allow = tuple(a.strip() for a in env.split(",") if a.strip()) or ("bwrap", "unshare", "plain")
    return _detect(tuple(allow))


@functools.lru_cache(maxsize=None)
def _detect(allow) -> Sandbox:
    root = _is_root()
    candidates = []
    if "bwrap" in allow and shutil.which("bwrap"):
        candidates.append(Sandbox("bwrap", root, [] if root else [
            "no separate uid (the grader is not root): student code runs as the grader's user, "
            "inside namespaces that hide the grader's files"]))
    if "unshare" in allow and root and shutil.which("unshare") and shutil.which("setpriv"):
        candidates.append(Sandbox("unshare", True, [
            "no mount namespace (bubblewrap is not installed): student code can read every "
            "world-readable file, the teacher's checkout included"]))
    if "plain" in allow:
        missing = ["no PID or network namespace: a process that calls setsid() can outlive its "
                   "runner, and student code can reach the network",
                   "no mount namespace: student code can read every file the grader can"]
        if root and shutil.which("setpriv"):
            candidates.append(Sandbox("plain", True, missing))
        candidates.append(Sandbox("plain", False, missing + [
            "no separate uid: student code runs as the grader's user (it can read other "
            "students' copies being graded at the same time, and signal the grader)"]))
    failures = []
    for sandbox in candidates:
        ok, why = _works(sandbox)
        if ok:
            return sandbox
        failures.append(f"{sandbox.name}{' with its own uid' if sandbox.separate_uid else ''}: {why}")
    raise RuntimeError("cannot run student code here; tried " + "; ".join(failures))
