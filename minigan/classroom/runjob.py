"""One runner job: a private copy of the student's package, the inputs, a sandboxed run, raw results.

The job folder (a fresh temporary folder per exercise) holds::

    submission/minigan/   a copy of the student's package (regular files only, no links)
    runner/               _runner.py, channel.py, probes.py (never the checks)
    job/                  job.json (probe names and options) and inputs.npz
    out/                  the only folder the runner may write

What comes back is raw and untrusted: per check and case, either a decoded
value or an error report; which check was running when the time ran out.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from minigan.classroom import channel, sandbox
from minigan.classroom.substitute import substitute_reference

CLASSROOM_DIR = Path(__file__).resolve().parent
RUNNER_FILES = ("_runner.py", "channel.py", "probes.py")
MAX_COPY_BYTES = 32 << 20
MAX_RESULT_BYTES = 64 << 20
SKIP_NAMES = {"__pycache__", ".ipynb_checkpoints"}
# (notebook checks read SUBMISSION/tutorials/*.ipynb; copy_package brings them along)


class SubmissionError(RuntimeError):
    """The submission cannot be copied (too large, no package); the message says why."""


@dataclass
class RawRun:
    items: dict = field(default_factory=dict)     # key -> {suffix: ("ok", value) | ("error", info)}
    current: str | None = None                    # the check running when the process stopped
    started: bool = False                         # did the runner get as far as the first check?
    done: bool = False
    outcome: sandbox.Outcome | None = None
    edits: dict = field(default_factory=dict)     # substituted functions, for line mapping


def copy_package(student_root: Path, dest: Path):
    """Copy minigan/ file by file: regular files only (a link could point at the teacher's files)."""
    total = 0
    src_pkg = student_root / "minigan"
    for dirpath, dirnames, filenames in os.walk(src_pkg, followlinks=False):
        dirnames[:] = [d for d in dirnames if d not in SKIP_NAMES
                       and not os.path.islink(os.path.join(dirpath, d))]
        rel = Path(dirpath).relative_to(src_pkg)
        (dest / "minigan" / rel).mkdir(parents=True, exist_ok=True)
        for name in filenames:
            src = Path(dirpath) / name
            if src.is_symlink() or not src.is_file() or name.endswith((".pyc", ".pyo")):
                continue
            if src.stat().st_nlink > 1:  # a hard link may share its content with a teacher's file
                continue
            total += src.stat().st_size
            if total > MAX_COPY_BYTES:
                raise SubmissionError(f"{student_root}/minigan is larger than "
                                      f"{MAX_COPY_BYTES >> 20} MB; is a data file in it?")
            shutil.copyfile(src, dest / "minigan" / rel / name)
    _copy_notebooks(student_root, dest, total)
    for path in [dest, *dest.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def _copy_notebooks(student_root: Path, dest: Path, total: int):
    """The tutorials' notebooks (regular files only), for the notebook exercises' checks."""
    src = student_root / "tutorials"
    if not src.is_dir() or src.is_symlink():
        return
    (dest / "tutorials").mkdir(parents=True, exist_ok=True)
    for path in sorted(src.glob("*.ipynb")):
        if path.is_symlink() or not path.is_file() or path.stat().st_nlink > 1:
            continue
        total += path.stat().st_size
        if total > MAX_COPY_BYTES:
            return  # the notebook checks of what is left out fail with "no cell defines"
        shutil.copyfile(path, dest / "tutorials" / path.name)


def _write_job(tmp: Path, chks, fixtures: dict):
    (tmp / "job").mkdir()
    (tmp / "runner").mkdir()
    (tmp / "out").mkdir()
    for name in RUNNER_FILES:
        shutil.copyfile(CLASSROOM_DIR / name, tmp / "runner" / name)
    items, arrays = [], {}
    for chk in chks:
        fx = fixtures[chk.key]
        items.append({"key": chk.key, "probe": chk.probe,
                      "cases": [{"suffix": s, "opt": o} for s, o in chk.cases()]})
        arrays.update({f"{chk.key}__{k}": v for k, v in chk.sent(fx).items()})
    channel.save_json(tmp / "job" / "job.json", {"items": items})
    channel.save_arrays(tmp / "job" / "inputs.npz", arrays)
    for path in [tmp, *tmp.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def _read_results(out: Path) -> RawRun:
    raw = RawRun()
    progress = channel.load_json(out / "progress.json", 1 << 16)
    # written before any of the student's code is imported: without it the runner never
    # started (the sandbox, the interpreter or the uid failed), and the student is not to blame
    raw.started = progress is not None
    if isinstance(progress, dict) and isinstance(progress.get("current"), str):
        raw.current = progress["current"]
    results = channel.load_json(out / "results.json", 4 << 20)
    if not isinstance(results, dict) or not isinstance(results.get("items"), dict):
        return raw
    try:
        arrays = channel.load_arrays(out / "results.npz", MAX_RESULT_BYTES)
    except Exception as err:  # noqa: BLE001 - a runner can write any bytes there (a bad zip, ...)
        raw.items = {k: {"": ("error", {"type": "GraderError", "message": f"unreadable results: {err}",
                                        "frames": []})} for k in results["items"]}
        return raw
    raw.done = results.get("done") is True
    for key, cases in results["items"].items():
        if not isinstance(cases, dict):
            continue
        parsed = {}
        for suffix, entry in cases.items():
            if not isinstance(entry, dict):
                continue
            if entry.get("status") == "ok":
                parsed[suffix] = ("ok", channel.decode(entry.get("value"), arrays, f"{key}/{suffix}"))
            else:
                parsed[suffix] = ("error", _error(entry.get("error")))
        raw.items[str(key)] = parsed
    return raw


def _error(info):
    """An error report from the runner, reduced to plain, bounded fields."""
    if not isinstance(info, dict):
        return {"type": "Exception", "message": "", "frames": []}
    frames = []
    for f in info.get("frames", [])[:20] if isinstance(info.get("frames"), list) else []:
        if isinstance(f, list) and len(f) == 3:
            frames.append([str(f[0])[:200], int(f[1]) if isinstance(f[1], int) else 0, str(f[2])[:100]])
    return {"type": str(info.get("type", "Exception"))[:80],
            "message": str(info.get("message", ""))[:600], "frames": frames}


def run_checks(student_root: Path, chks, fixtures: dict, *, box: sandbox.Sandbox,
               limits: sandbox.Limits, uid: int, exercise_id: str, substitution=None,
               reference_pkg=None) -> RawRun:
    """Run ``chks`` on a copy of the student's package in the sandbox; the raw results.

    ``substitution`` is None or (reference root, markers.scan of it, exercise ids to replace).
    """
    with tempfile.TemporaryDirectory(prefix=f"minigan-grade-{exercise_id}-") as tmp:
        tmp = Path(tmp)
        copy_package(student_root, tmp / "submission")
        edits = {}
        if substitution is not None:
            ref_root, scanned, only = substitution
            edits = substitute_reference(tmp / "submission", ref_root, exercise_id, scanned, only)
        _write_job(tmp, chks, fixtures)

        def argv(inside, sites):
            return ["-I", "-S", "-B", f"{inside}/runner/_runner.py", f"{inside}/job",
                    f"{inside}/out", f"{inside}/submission", *sites]

        outcome = sandbox.run_sandboxed(box, argv, tmp, limits, uid, reference_pkg)
        raw = _read_results(tmp / "out")
        raw.outcome, raw.edits = outcome, edits
        return raw
