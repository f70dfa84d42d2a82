"""The autograder: score a student's copy of minigan, exercise by exercise.

For each exercise the grader

1. computes the check fixtures in its own process, on the REFERENCE minigan
   (the one running this code, with the solutions in it): inputs, expected
   values and numerical gradients, saved to an ``.npz`` (no pickle);
2. copies the student's ``minigan/`` to a temporary folder and, in that copy,
   puts the reference version back into every function that holds ANOTHER
   exercise's solution, so each exercise is graded on its own (a wrong
   ``dense_backward`` costs Exercise 1.2 only, not the generator step that
   runs through it);
3. runs the checks in a fresh ``python -I`` subprocess on that copy, with a
   time limit, reading back a JSON result file;
4. turns the results into points and feedback.

``check`` (for students) does the same with the visible checks only, and
without step 2 when no reference is at hand (in a student's copy the
fixtures come from the file that the release shipped).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from minigan.classroom import markers

CLASSROOM_DIR = Path(__file__).resolve().parent
RUNNER = CLASSROOM_DIR / "_runner.py"
CHECKS_FILE = CLASSROOM_DIR / "checks.py"
HIDDEN_FILE = CLASSROOM_DIR / "hidden_checks.py"
CHECKS_MODULE = "_minigan_classroom_checks"
HIDDEN_MODULE = "_minigan_classroom_hidden_checks"
MANIFEST = "minigan/classroom/release.json"
FIXTURES = "minigan/classroom/fixtures.npz"
DEFAULT_TIMEOUT = 30.0


class GraderError(RuntimeError):
    """The grading itself cannot go on (not the student's fault): a clear message."""


# ------------------------------------------------------------------ loading checks


def _load_by_path(name, path):
    import importlib.util

    loaded = sys.modules.get(name)
    if loaded is not None and Path(getattr(loaded, "__file__", "")).resolve() == Path(path).resolve():
        return loaded
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def load_checks(hidden=True, classroom_dir: Path | None = None):
    """The checks module (with the hidden checks registered into it when ``hidden``)."""
    classroom_dir = Path(classroom_dir or CLASSROOM_DIR)
    checks = _load_by_path(CHECKS_MODULE, classroom_dir / "checks.py")
    hidden_file = classroom_dir / "hidden_checks.py"
    if hidden and hidden_file.exists():
        _load_by_path(HIDDEN_MODULE, hidden_file)
    return checks


def check_files(hidden):
    files = [str(CHECKS_FILE)]
    if hidden and HIDDEN_FILE.exists():
        files.append(str(HIDDEN_FILE))
    return files


class _ReferenceModules:
    """``ref.functional`` is the reference (running) ``minigan.functional``."""

    def __getattr__(self, name):
        import importlib

        return importlib.import_module("minigan." + name)


def reference_root() -> Path:
    """The folder that holds the running (reference) ``minigan`` package."""
    import minigan

    return Path(minigan.__file__).resolve().parent.parent


# -------------------------------------------------------------------- the exercises


@dataclass
class ExerciseInfo:
    """What the grader knows of an exercise: id, title, targets (checked functions), where."""

    id: str
    title: str
    targets: list
    where: list
    library: bool = True

    @classmethod
    def from_exercise(cls, ex):
        return cls(ex.id, ex.title, ex.targets, [r.where for r in ex.regions], ex.in_library)


def reference_exercises(root: Path | None = None, scanned: dict | None = None) -> dict:
    scanned = scanned if scanned is not None else markers.scan(Path(root or reference_root()))
    return {k: ExerciseInfo.from_exercise(v) for k, v in scanned.items()}


def read_manifest(student_root: Path):
    path = Path(student_root) / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise GraderError(f"{path} is not valid JSON ({err}); was it edited by hand?") from None


# ---------------------------------------------------------------- fixtures (reference)


def prepare_fixtures(chks, ref=None) -> dict:
    """{check key + '__' + name: array} from every check's ``prepare`` on the reference."""
    import numpy as np

    checks_mod = sys.modules[CHECKS_MODULE]
    ref = ref or _ReferenceModules()
    arrays = {}
    for chk in chks:
        rng = np.random.default_rng(checks_mod.seed_for(chk))
        try:
            fx = chk.prepare(ref, rng)
        except NotImplementedError as err:
            raise GraderError(
                f"the reference minigan ({reference_root()}) has no solution for the check "
                f"'{chk.name}' of {chk.target}: {err}. Grade with the teacher's copy (the "
                "repository), not with a student release.") from None
        for k, v in fx.items():
            arr = np.asarray(v)
            if arr.dtype == object:
                raise GraderError(f"check '{chk.name}' prepared '{k}' as an object array")
            arrays[f"{chk.key}__{k}"] = arr
    return arrays


# ------------------------------------------------------------- the student's copy


@dataclass
class Edit:
    """One function of the student's file replaced by the reference's, for line mapping."""

    new_start: int
    new_end: int
    old_start: int
    old_end: int
    exercise: str


def _copy_package(student_root: Path, dest: Path):
    shutil.copytree(student_root / "minigan", dest / "minigan",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".ipynb_checkpoints"),
                    symlinks=False)


def substitute_reference(copy_root: Path, ref_root: Path, keep: str, scanned: dict | None = None) -> dict:
    """Put the reference version of every function holding another exercise into the copy.

    Functions that hold a region of ``keep`` (the exercise being graded) are the
    student's. ``scanned`` is ``markers.scan(ref_root)`` if already at hand.
    Returns {relative path: [Edit, ...]} for mapping line numbers.
    """
    by_file = {}
    own = set()
    for ex in (scanned if scanned is not None else markers.scan(ref_root)).values():
        for r in ex.regions:
            if r.cell is not None or not r.function:
                continue
            if ex.id == keep:
                own.add((r.path, r.function))
            else:
                by_file.setdefault(r.path, {}).setdefault(r.function, ex.id)
    edits = {}
    for rel, functions in by_file.items():
        target = copy_root / rel
        if not target.exists():
            continue
        ref_text = (ref_root / rel).read_text(encoding="utf-8")
        stu_text = target.read_text(encoding="utf-8")
        try:
            stu_spans = markers.function_spans(markers.parse_python(stu_text))
        except SyntaxError:
            continue  # importing it will fail with the student's own SyntaxError
        ref_spans = markers.function_spans(markers.parse_python(ref_text))
        ref_lines = ref_text.splitlines(keepends=True)
        stu_lines = stu_text.splitlines(keepends=True)
        todo = []
        for function, exercise in functions.items():
            if (rel, function) in own or function not in stu_spans or function not in ref_spans:
                continue
            todo.append((stu_spans[function], ref_spans[function], exercise))
        # Outer functions first would be replaced twice; keep only the outermost spans.
        todo.sort(key=lambda t: (t[0][0], -t[0][1]))
        chosen = []
        for item in todo:
            if chosen and item[0][0] <= chosen[-1][0][1]:
                continue
            chosen.append(item)
        offset, file_edits = 0, []
        new_lines = []
        cursor = 0
        for (s0, e0), (s1, e1), exercise in chosen:
            new_lines.extend(stu_lines[cursor: s0 - 1])
            replacement = ref_lines[s1 - 1: e1]
            if replacement and not replacement[-1].endswith("\n"):
                replacement[-1] += "\n"
            start = s0 + offset
            new_lines.extend(replacement)
            file_edits.append(Edit(start, start + len(replacement) - 1, s0, e0, exercise))
            offset += len(replacement) - (e0 - s0 + 1)
            cursor = e0
        new_lines.extend(stu_lines[cursor:])
        if file_edits:
            target.write_text("".join(new_lines), encoding="utf-8")
            edits[rel] = file_edits
    return edits


def map_line(edits: list, line: int):
    """(student's line, None) or (None, exercise id) when the line is substituted reference code."""
    offset = 0
    for e in edits:
        if line < e.new_start:
            break
        if line <= e.new_end:
            return None, e.exercise
        offset += (e.new_end - e.new_start + 1) - (e.old_end - e.old_start + 1)
    return line - offset, None


# --------------------------------------------------------------------- the results


@dataclass
class CheckResult:
    name: str
    target: str
    hidden: bool
    points: float
    max_points: float
    status: str          # pass, fail, not implemented, blocked, error, timeout, skipped
    message: str = ""
    seconds: float = 0.0


@dataclass
class ExerciseResult:
    id: str
    title: str
    points: float
    max_points: float
    status: str          # passed, partial, failed, not implemented, error, timed out
    feedback: list = field(default_factory=list)
    checks: list = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class GradeReport:
    directory: str
    mode: str            # "grade" or "check"
    exercises: list
    ungraded: list = field(default_factory=list)   # [(id, title, why)]
    timeout: float = DEFAULT_TIMEOUT

    @property
    def points(self):
        return sum(e.points for e in self.exercises)

    @property
    def max_points(self):
        return sum(e.max_points for e in self.exercises)

    def exercise(self, exercise_id) -> ExerciseResult:
        for e in self.exercises:
            if e.id == exercise_id:
                return e
        raise KeyError(exercise_id)

    def to_dict(self):
        return {
            "directory": self.directory,
            "mode": self.mode,
            "points": _num(self.points),
            "max_points": _num(self.max_points),
            "timeout_seconds": self.timeout,
            "exercises": [dict(asdict(e), points=_num(e.points), max_points=_num(e.max_points))
                          for e in self.exercises],
            "not_graded": [{"id": i, "title": t, "why": w} for i, t, w in self.ungraded],
        }

    def to_markdown(self, title=None) -> str:
        return render_markdown(self, title)


def _num(x):
    return int(x) if float(x).is_integer() else round(float(x), 3)


_EXERCISE_IN_MESSAGE = re.compile(r"Exercise\s+(\d+(?:\.\d+)*)")


class _Locator:
    """Turns traceback frames of the temporary copy into the student's file:line."""

    def __init__(self, copy_root: Path, display_root: Path, edits: dict, exercises: dict):
        self.copy_root = str(Path(copy_root).resolve())
        self.display_root = display_root
        self.edits = edits
        self.exercises = exercises

    def frame(self, frames):
        """'minigan/functional.py:47 in dense_backward' for the last frame in the copy."""
        for filename, lineno, name in reversed(frames):
            path = os.path.realpath(filename)
            if not path.startswith(self.copy_root + os.sep):
                continue
            rel = Path(os.path.relpath(path, self.copy_root)).as_posix()
            line, ref_ex = map_line(self.edits.get(rel, []), lineno)
            if ref_ex is not None:
                return f"{rel} in {name} (the reference code of Exercise {ref_ex}, used for grading)"
            return f"{rel}:{line} in {name}"
        return None


def _error_message(err, exercise_id, locator: _Locator):
    """(status, message) for an exception raised by the student's code."""
    etype, message = err.get("type", "Exception"), err.get("message", "")
    where = locator.frame(err.get("frames", []))
    at = f" (at {where})" if where else ""
    if etype == "NotImplementedError":
        m = _EXERCISE_IN_MESSAGE.search(message)
        other = m.group(1) if m else None
        if other and other != exercise_id:
            info = locator.exercises.get(other)
            what = f" ({info.title})" if info else ""
            return ("blocked", f"uses Exercise {other}{what}, which is not implemented yet{at}: "
                               "do that one first")
        return "not implemented", f"not implemented: NotImplementedError raised{at}"
    text = f"{etype}: {message}" if message else etype
    return "error", f"{text}{at}"


def _assemble(exercise: ExerciseInfo, chks, child: dict, locator: _Locator, timeout, proc_info):
    results = []
    by_key = {c["key"]: c for c in child.get("checks", [])}
    import_error = child.get("import_error")
    timed_out = proc_info["timed_out"]
    for chk in chks:
        res = CheckResult(chk.name, chk.target, chk.hidden, 0, chk.points, "skipped")
        entry = by_key.get(chk.key)
        if import_error is not None:
            status, msg = _error_message(import_error, exercise.id, locator)
            res.status = "error"
            res.message = f"importing your minigan failed: {msg}"
        elif entry is not None:
            res.seconds = round(entry.get("seconds", 0.0), 3)
            if entry["status"] == "pass":
                res.status, res.points = "pass", chk.points
                res.message = entry.get("message", "")
            elif entry["status"] == "fail":
                res.status, res.message = "fail", entry["message"]
            else:
                res.status, res.message = _error_message(entry["error"], exercise.id, locator)
        elif timed_out:
            if child.get("phase") in (None, "start", "import"):
                res.status = "timeout"
                res.message = (f"importing your minigan took more than {timeout:g} s "
                               "(an infinite loop or a long computation at import time?)")
            elif child.get("current") == chk.key:
                res.status = "timeout"
                res.message = f"did not finish within the time limit of {timeout:g} s (an infinite loop?)"
            else:
                res.status, res.message = "timeout", "not run: the exercise hit its time limit"
        else:
            tail = proc_info["stderr_tail"]
            res.status = "error"
            res.message = (f"the grading process died (exit code {proc_info['returncode']}) "
                           "before this check finished"
                           + (f"; last output: {tail}" if tail else "")
                           + "; does your code call os._exit, or crash Python?")
        results.append(res)

    points = sum(r.points for r in results)
    max_points = sum(r.max_points for r in results)
    statuses = {r.status for r in results}
    if points == max_points:
        status = "passed"
    elif any(r.status == "timeout" for r in results):
        status = "timed out"
    elif import_error is not None:
        status = "error"
    elif statuses == {"not implemented"}:
        status = "not implemented"
    elif statuses <= {"not implemented", "blocked"}:
        status = "blocked" if "blocked" in statuses else "not implemented"
    elif points > 0:
        status = "partial"
    elif "error" in statuses and "fail" not in statuses:
        status = "error"
    else:
        status = "failed"
    feedback = _feedback(results, status)
    return ExerciseResult(exercise.id, exercise.title, points, max_points, status, feedback, results,
                          round(proc_info["seconds"], 3))


def _feedback(results, status):
    """The actionable lines: one per failing check, without repeating the same message."""
    if status == "passed":
        return []
    lines, seen = [], set()
    for r in results:
        if r.status == "pass":
            continue
        if r.message in seen:
            continue
        seen.add(r.message)
        label = ("hidden check: " if r.hidden else "") + r.name
        if r.status in ("not implemented", "blocked") or r.message.startswith("importing"):
            lines.append(r.message[:1].upper() + r.message[1:])
        else:
            lines.append(f"{label}: {r.message}")
    return lines


# -------------------------------------------------------------------------- running


def _tail(path: Path, limit=400):
    try:
        data = path.read_bytes()[-4000:].decode("utf-8", "replace").strip()
    except OSError:
        return ""
    lines = [ln for ln in data.splitlines() if ln.strip()]
    text = " | ".join(lines[-3:])
    return text[-limit:]


def _child_env(copy_root: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update({
        "PYTHONPATH": str(copy_root),   # informative: -I ignores it, the runner sets sys.path
        "PYTHONHASHSEED": "0",
        "MINIGAN_BACKEND": "numpy",
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    })
    return env


def run_exercise(exercise: ExerciseInfo, chks, student_root: Path, fixtures: dict, *,
                 timeout=DEFAULT_TIMEOUT, hidden=True, ref_root: Path | None = None,
                 ref_scan: dict | None = None, all_exercises: dict | None = None,
                 python=None) -> ExerciseResult:
    """Run one exercise's checks on ``student_root`` in a subprocess and score them."""
    import numpy as np

    with tempfile.TemporaryDirectory(prefix=f"minigan-grade-{exercise.id}-") as tmp:
        tmp = Path(tmp)
        copy_root = tmp / "submission"
        _copy_package(student_root, copy_root)
        edits = {}
        if ref_root is not None:
            edits = substitute_reference(copy_root, ref_root, exercise.id, ref_scan)
        work = tmp / "work"
        work.mkdir()
        fixture_file = tmp / "fixtures.npz"
        prefixes = tuple(c.key + "__" for c in chks)
        np.savez(fixture_file, **{k: v for k, v in fixtures.items() if k.startswith(prefixes)})
        result_file = tmp / "result.json"
        spec = {
            "root": str(copy_root),
            "checks_files": check_files(hidden),
            "fixtures": str(fixture_file),
            "result": str(result_file),
            "exercise": exercise.id,
            "checks": [{"target": c.target, "name": c.name, "key": c.key} for c in chks],
        }
        spec_file = tmp / "spec.json"
        spec_file.write_text(json.dumps(spec), encoding="utf-8")
        stdout, stderr = tmp / "stdout.txt", tmp / "stderr.txt"
        started = time.perf_counter()
        with open(stdout, "wb") as fout, open(stderr, "wb") as ferr:
            proc = subprocess.Popen(
                [python or sys.executable, "-I", "-B", str(RUNNER), str(spec_file)],
                cwd=work, stdin=subprocess.DEVNULL, stdout=fout, stderr=ferr,
                env=_child_env(copy_root), start_new_session=(os.name == "posix"))
            timed_out = False
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _kill_group(proc)
        seconds = time.perf_counter() - started
        child = {}
        if result_file.exists():
            try:
                child = json.loads(result_file.read_text(encoding="utf-8"))
            except ValueError:
                child = {}
        proc_info = {"timed_out": timed_out and not child.get("done"), "returncode": proc.returncode,
                     "stderr_tail": _tail(stderr), "seconds": seconds}
        locator = _Locator(copy_root, student_root, edits, all_exercises or {})
        return _assemble(exercise, chks, child, locator, timeout, proc_info)


def _kill_group(proc):
    """Kill the runner and anything it started (a student's code may spawn processes)."""
    if os.name == "posix":
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    elif proc.poll() is None:
        proc.kill()
    proc.wait()


# ------------------------------------------------------------------ grade and check


def _student_root(directory) -> Path:
    root = Path(directory).resolve()
    if not (root / "minigan" / "__init__.py").is_file():
        hint = ""
        if root.is_dir():
            inner = [p.parent.parent for p in root.glob("*/minigan/__init__.py")]
            if len(inner) == 1:
                hint = f" (did you mean {inner[0]}?)"
        raise GraderError(f"{root} does not contain a minigan/ package (minigan/__init__.py){hint}")
    return root


def _select(exercises: dict, wanted, manifest, checks_mod, hidden):
    """The exercises to grade, and those that cannot be (no checks, notebook only)."""
    if wanted:
        unknown = [w for w in wanted if w not in exercises]
        if unknown:
            raise GraderError(f"unknown exercise(s) {', '.join(unknown)}; known: "
                              f"{', '.join(exercises) or 'none'}")
        ids = list(dict.fromkeys(wanted))
    chosen, ungraded = [], []
    if not wanted:
        ids = []
        if manifest is not None:
            for e in manifest.get("exercises", []):
                if not e.get("released", True):
                    continue
                if e["id"] in exercises:
                    ids.append(e["id"])
                else:
                    ungraded.append((e["id"], e.get("title", ""),
                                     "released, but the reference has no such exercise (renumbered?)"))
        # No manifest, or a release that cut nothing out (a copy with every solution
        # in it): grade every exercise.
        ids = ids or list(exercises)
    for i in sorted(ids, key=markers.exercise_sort_key):
        info = exercises[i]
        chks = checks_mod.checks_for(info.targets, hidden=hidden)
        if chks:
            chosen.append((info, chks))
        elif not info.library:
            ungraded.append((i, info.title, "a notebook exercise: not graded automatically"))
        else:
            ungraded.append((i, info.title, "no checks are defined for it"))
    return chosen, ungraded


def _scan_running() -> dict:
    """The exercises of the running minigan: {} in a student's copy (no markers left)."""
    try:
        return markers.scan(reference_root())
    except markers.MarkerError:
        return {}


def grade(directory, out=None, *, timeout=DEFAULT_TIMEOUT, exercises=None, hidden=True,
          jobs=None, write=True, substitute=None) -> GradeReport:
    """Grade the student's copy in ``directory``; write grades.json and grades.md to ``out``.

    ``out`` defaults to ``directory``. ``exercises`` defaults to those the release
    cut out (its manifest), or every exercise when it cut none out or has no manifest. ``hidden=False``
    runs the visible checks only (what ``check`` does).
    """
    student_root = _student_root(directory)
    manifest = read_manifest(student_root)
    ref_scan = _scan_running()
    ref_available = bool(ref_scan)
    mode = "grade" if hidden else "check"
    if hidden and not ref_available:
        raise GraderError(
            f"the minigan running the grader ({reference_root()}) has no solution regions, so it "
            "cannot be the reference: grade from the teacher's copy (the repository), not from "
            "a student release.")
    checks_mod = load_checks(hidden=hidden)
    if ref_available:
        ref_root = reference_root()
        infos = reference_exercises(ref_root, ref_scan)
    else:
        ref_root = None
        if manifest is None:
            raise GraderError(f"{student_root} has no {MANIFEST}: it was not made by "
                              "`python -m minigan.classroom release`, and no reference is at hand")
        infos = {e["id"]: ExerciseInfo(e["id"], e["title"], e.get("targets", []), e.get("where", []),
                                       e.get("library", True))
                 for e in manifest.get("exercises", [])}
    chosen, ungraded = _select(infos, exercises, manifest, checks_mod, hidden)
    all_checks = [c for _, chks in chosen for c in chks]
    if ref_available:
        fixtures = prepare_fixtures(all_checks)
    else:
        fixtures = load_shipped_fixtures(student_root, all_checks)
    if substitute is None:
        substitute = ref_available
    jobs = jobs or max(1, min(4, os.cpu_count() or 1))

    def one(item):
        info, chks = item
        return run_exercise(info, chks, student_root, fixtures, timeout=timeout, hidden=hidden,
                            ref_root=ref_root if substitute else None, ref_scan=ref_scan,
                            all_exercises=infos)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(one, chosen))
    if not substitute:
        _add_dependency_hints(results, chosen, infos)
    report = GradeReport(str(student_root), mode, results, ungraded, timeout)
    if write:
        out = Path(out) if out is not None else student_root
        out.mkdir(parents=True, exist_ok=True)
        (out / "grades.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
        (out / "grades.md").write_text(report.to_markdown(), encoding="utf-8")
    return report


def _add_dependency_hints(results, chosen, infos):
    """Without the reference substituted, say when a failure may come from another exercise."""
    by_id = {r.id: r for r in results}
    for result, (info, chks) in zip(results, chosen):
        if result.status == "passed":
            continue
        used = {u for c in chks for u in getattr(c, "uses", ())}
        culprits = []
        for other in infos.values():
            if other.id == info.id or other.id not in by_id or by_id[other.id].status == "passed":
                continue
            if any(t == u or t.startswith(u + ".") for t in other.targets for u in used):
                culprits.append(other.id)
        if culprits and result.status != "blocked":
            names = ", ".join(sorted(culprits, key=markers.exercise_sort_key))
            result.feedback.append(
                f"This exercise runs through your code for Exercise {names}, which does not pass "
                "its own checks yet: fix that first (grading uses the reference code there).")


def check(directory=None, *, timeout=DEFAULT_TIMEOUT, exercises=None, jobs=None) -> GradeReport:
    """The visible checks of a copy (default: the one this minigan was imported from)."""
    directory = directory if directory is not None else reference_root()
    return grade(directory, timeout=timeout, exercises=exercises, hidden=False, jobs=jobs, write=False)


def load_shipped_fixtures(student_root: Path, chks) -> dict:
    import numpy as np

    path = student_root / FIXTURES
    if not path.exists():
        raise GraderError(f"{path} is missing: the visible checks need the fixtures that "
                          "`release` ships; ask your teacher for a fresh copy")
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    missing = [c.name for c in chks if not any(k.startswith(c.key + "__") for k in arrays)]
    if missing:
        raise GraderError(f"{path} has no fixtures for: {', '.join(missing)}")
    return arrays


# ------------------------------------------------------------------------- reports


_STATUS_MARK = {"passed": "passed", "partial": "partial", "failed": "failed", "error": "error",
                "not implemented": "not implemented", "blocked": "blocked", "timed out": "timed out"}


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def render_markdown(report: GradeReport, title=None) -> str:
    name = Path(report.directory).name
    heading = title or (f"Grades: {name}" if report.mode == "grade" else f"Visible checks: {name}")
    lines = [f"# {heading}", ""]
    lines.append(f"**Total: {_num(report.points)} / {_num(report.max_points)} points** "
                 f"({sum(e.status == 'passed' for e in report.exercises)} of "
                 f"{len(report.exercises)} exercises passed"
                 + ("; hidden checks included" if report.mode == "grade" else "; visible checks only")
                 + ")")
    lines += ["", "| Exercise | Points | Max | Status | Feedback |", "|---|---:|---:|---|---|"]
    for e in report.exercises:
        feedback = "<br>".join(_cell(f) for f in e.feedback) or "all checks pass"
        lines.append(f"| {e.id} {_cell(e.title)} | {_num(e.points)} | {_num(e.max_points)} | "
                     f"{_STATUS_MARK.get(e.status, e.status)} | {feedback} |")
    if report.ungraded:
        lines += ["", "Not graded automatically: " + "; ".join(
            f"{i} {t} ({why})" for i, t, why in report.ungraded) + "."]
    lines += ["", "## Checks", ""]
    for e in report.exercises:
        lines.append(f"**{e.id}** {e.title}: {_num(e.points)} / {_num(e.max_points)}")
        lines.append("")
        for c in e.checks:
            mark = "PASS" if c.status == "pass" else c.status.upper()
            hidden = " (hidden)" if c.hidden else ""
            lines.append(f"- {mark}{hidden} {c.name} [{_num(c.points)}/{_num(c.max_points)}]"
                         + (f": {c.message}" if c.message and c.status != "pass" else ""))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def render_table(report: GradeReport) -> str:
    """A plain-text table for the terminal (``check``); further feedback lines go under their row."""
    rows = [(f"{e.id} {e.title}", f"{_num(e.points)}/{_num(e.max_points)}", e.status) for e in report.exercises]
    header = ("Exercise", "Points", "Status")
    width = [min(max([len(header[i])] + [len(r[i]) for r in rows]), w) for i, w in enumerate((44, 8, 16))]

    def fmt(cells, last):
        out = []
        for text, w in zip(cells, width):
            out.append(text[: w - 1] + "~" if len(text) > w else text.ljust(w))
        return "  ".join(out + [last]).rstrip()

    indent = " " * (sum(width) + 2 * len(width))
    lines = [fmt(header, "Feedback"), "  ".join("-" * w for w in width) + "  --------"]
    for e, row in zip(report.exercises, rows):
        lines.append(fmt(row, e.feedback[0] if e.feedback else "all checks pass"))
        lines += [indent + extra for extra in e.feedback[1:]]
    lines.append("")
    lines.append(f"Total: {_num(report.points)} / {_num(report.max_points)} points"
                 + (" (visible checks only; grading adds hidden ones)" if report.mode == "check" else ""))
    if report.ungraded:
        lines.append("Not checked automatically: "
                     + "; ".join(f"{i} ({why})" for i, _, why in report.ungraded))
    return "\n".join(lines)
