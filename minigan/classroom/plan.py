"""The grading plan: which exercises, which checks, and every input and expected value.

Everything here is the same for each student of a class, so a class is planned
once (batch.py). Inputs and expected values come from the REFERENCE minigan
(the running one, the teacher's copy) with a fresh salt per grading; in a
student's copy (``check``) they come from the fixtures its release shipped.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from minigan.classroom import markers, report, sandbox
from minigan.classroom.report import DEFAULT_TIMEOUT

CLASSROOM_DIR = Path(__file__).resolve().parent
HIDDEN_FILE = CLASSROOM_DIR / "hidden_checks.py"
STUDENT_MANIFEST = "minigan/classroom/release.json"   # the student's copy: informative only
FIXTURES = "minigan/classroom/fixtures.npz"
NOTEBOOK_WHY = ("a notebook exercise without checks: its cell needs its tutorial's data, models "
                "or plots, which the grader does not rebuild; read it in the student's notebook")


class GraderError(RuntimeError):
    """The grading itself cannot go on (not the student's fault): a clear message."""


def load_checks(hidden=True):
    """The checks module, with the hidden checks registered into it when ``hidden``."""
    from minigan.classroom import checks

    if hidden and HIDDEN_FILE.exists():
        import minigan.classroom.hidden_checks  # noqa: F401 - registers into checks.CHECKS
    return checks


def reference_root() -> Path:
    """The folder that holds the running (reference) ``minigan`` package."""
    import minigan

    return Path(minigan.__file__).resolve().parent.parent


class _ReferenceModules:
    """``ref.functional`` is the reference (running) ``minigan.functional``."""

    def __getattr__(self, name):
        import importlib

        return importlib.import_module("minigan." + name)


@dataclass
class ExerciseInfo:
    id: str
    title: str
    targets: list
    library: bool = True


# ------------------------------------------------------------------------ the plan


@dataclass
class Plan:
    """What to grade and how: the same for every student of a class."""

    mode: str                                   # "grade" or "check"
    chosen: list                                # [(ExerciseInfo, [checks])]
    ungraded: list                              # [(id, title, why)]
    infos: dict                                 # every exercise known: id -> ExerciseInfo
    fixtures: dict                              # check key -> {name: array}
    box: sandbox.Sandbox
    limits: sandbox.Limits
    ref_root: Path | None = None
    ref_scan: dict | None = None
    redactor: report.Redactor = field(default_factory=report.Redactor)
    notes: list = field(default_factory=list)
    substitute: bool = True

    def owner(self, target):
        """The exercise whose region is in ``target`` (a function or class), or None."""
        for info in self.infos.values():
            if any(t == target or t.startswith(target + ".") for t in info.targets):
                return info.id
        return None


def read_manifest(path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise GraderError(f"cannot read the release manifest {path}: {err}") from None


def _select(infos, wanted, manifest, checks_mod, hidden):
    if wanted:
        unknown = [w for w in wanted if w not in infos]
        if unknown:
            raise GraderError(f"unknown exercise(s) {', '.join(unknown)}; known: {', '.join(infos)}")
        ids = list(dict.fromkeys(wanted))
    elif manifest is not None:
        ids = [e["id"] for e in manifest.get("exercises", []) if e.get("released", True)]
        ids = [i for i in ids if i in infos] or list(infos)
    else:
        ids = list(infos)
    chosen, ungraded = [], []
    for i in sorted(ids, key=markers.exercise_sort_key):
        info = infos[i]
        chks = checks_mod.checks_for(info.targets, hidden=hidden)
        if chks:
            chosen.append((info, chks))
        else:
            ungraded.append((i, info.title, NOTEBOOK_WHY if not info.library
                             else "no checks are defined for it"))
    return chosen, ungraded


def make_plan(student_root=None, *, hidden=True, exercises=None, manifest=None, timeout=DEFAULT_TIMEOUT,
              seed=None, limits=None, box=None, substitute=True) -> Plan:
    """Everything that does not depend on the student: exercises, checks, expected values."""
    ref_scan = _scan_running()
    limits = limits or sandbox.Limits(wall=timeout)
    try:
        box = box or sandbox.detect()
    except RuntimeError as err:
        raise GraderError(str(err)) from None
    checks_mod = load_checks(hidden=hidden)
    if hidden and not ref_scan:
        raise GraderError(
            f"the minigan running the grader ({reference_root()}) has no solution regions, so it "
            "cannot be the reference: grade from the teacher's copy (the repository).")
    if ref_scan:
        infos = {k: ExerciseInfo(k, v.title, v.targets, v.in_library) for k, v in ref_scan.items()}
    else:
        infos = _student_infos(student_root)
    man = read_manifest(manifest) if manifest else None
    chosen, ungraded = _select(infos, exercises, man, checks_mod, hidden)
    all_checks = [c for _, chks in chosen for c in chks]
    notes = [] if man or not hidden else [
        "no release manifest given: every exercise of the reference was graded"]
    if ref_scan:
        # check uses the inputs the release shipped (salt 0); grade draws new ones, so no answer
        # to a shipped input is worth anything there.
        salt = seed if seed is not None else (secrets.randbits(32) if hidden else 0)
        fixtures = prepare_fixtures(all_checks, salt=salt)
        notes.append(f"inputs drawn with salt {salt} (pass --seed {salt} to grade the same way again)")
    else:
        fixtures = load_shipped_fixtures(student_root, all_checks)
    plan = Plan("grade" if hidden else "check", chosen, ungraded, infos, fixtures, box, limits,
                notes=notes, substitute=substitute and bool(ref_scan))
    if ref_scan:
        plan.ref_root, plan.ref_scan = reference_root(), ref_scan
        plan.redactor = report.Redactor(_secret_texts(ref_scan, plan.ref_root))
    return plan


def _secret_texts(scan, root):
    """The reference solutions and the hidden checks: no message may quote them."""
    texts = [HIDDEN_FILE.read_text(encoding="utf-8")] if HIDDEN_FILE.exists() else []
    for ex in scan.values():
        for r in ex.regions:
            if r.cell is None:
                lines = (root / r.path).read_text(encoding="utf-8").splitlines()
                texts.append("\n".join(lines[r.begin: r.end - 1]))
    return texts


def _scan_running() -> dict:
    """The exercises of the running minigan: {} in a student's copy (no markers left)."""
    try:
        return markers.scan(reference_root())
    except markers.MarkerError:
        return {}


def _student_infos(student_root):
    """In a student's copy (``check``): the exercises its release.json lists."""
    path = Path(student_root) / STUDENT_MANIFEST
    if not path.exists():
        raise GraderError(f"{path} is missing: this copy was not made by `python -m "
                          "minigan.classroom release`; ask your teacher for a fresh copy")
    man = read_manifest(path)
    return {e["id"]: ExerciseInfo(e["id"], e["title"], e.get("targets", []), e.get("library", True))
            for e in man.get("exercises", []) if e.get("released", True)}


def prepare_fixtures(chks, salt=0, ref=None) -> dict:
    """{check key: {name: array}}: every check's inputs and expected values, on the reference."""
    import numpy as np

    from minigan.classroom import checks as checks_mod

    ref = ref or _ReferenceModules()
    out = {}
    for chk in chks:
        rng = np.random.default_rng(checks_mod.seed_for(chk, salt))
        try:
            fx = chk.prepare(ref, rng)
        except NotImplementedError as err:
            raise GraderError(
                f"the reference minigan ({reference_root()}) has no solution for the check "
                f"'{chk.name}' of {chk.target}: {err}. Grade with the teacher's copy.") from None
        out[chk.key] = {k: np.asarray(v) for k, v in fx.items()}
    return out


def load_shipped_fixtures(student_root, chks) -> dict:
    import numpy as np

    path = Path(student_root) / FIXTURES
    if not path.exists():
        raise GraderError(f"{path} is missing: the visible checks need the fixtures that "
                          "`release` ships; ask your teacher for a fresh copy")
    from minigan.classroom.channel import AST_LOCK

    with AST_LOCK, np.load(path, allow_pickle=False) as data:
        flat = {k: data[k] for k in data.files}
    out = {}
    for chk in chks:
        prefix = chk.key + "__"
        out[chk.key] = {k[len(prefix):]: v for k, v in flat.items() if k.startswith(prefix)}
        if not out[chk.key]:
            raise GraderError(f"{path} has no fixtures for: {chk.name}")
    return out
