"""The trusted grader: score a student's copy of minigan without running any of it here.

For each exercise the grader

1. draws the check inputs and computes every expected value in its own process,
   on the REFERENCE minigan (the teacher's copy), with a fresh random salt per
   grading, so no answer can be looked up in the fixtures a release shipped;
2. runs the probes (probes.py) on a private copy of the student's package in a
   sandboxed process (sandbox.py), sending only input arrays (runjob.py);
3. judges what came back, as untrusted data, with the checks (checks.py): the
   tolerances, comparisons and hidden checks never leave this process;
4. when an exercise builds on another that the student's code fails (the
   generator step on a broken dense layer), grades it again with the reference
   code of exactly that part, and says so (substitute.py).

``check`` (for students) runs steps 2-3 with the visible checks and the
fixtures their release shipped, on their own copy, and explains instead of
substituting. Reports are rendered by report.py; whole classes by batch.py.
"""

from __future__ import annotations

import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from minigan.classroom import markers, sandbox
from minigan.classroom.plan import (  # noqa: F401 - re-exported: the grader's public names
    FIXTURES,
    GraderError,
    Plan,
    load_checks,
    make_plan,
    prepare_fixtures,
    reference_root,
)
from minigan.classroom.report import (  # noqa: F401
    DEFAULT_TIMEOUT,
    CheckResult,
    ExerciseResult,
    FileProblem,
    GradeReport,
    exercise_status,
    feedback_lines,
    render_markdown,
    render_table,
)
from minigan.classroom.runjob import SubmissionError, run_checks
from minigan.classroom.substitute import map_line

__all__ = ["grade", "check", "GraderError", "render_table", "render_markdown", "GradeReport"]

# ------------------------------------------------------------------- scoring


_EXERCISE_IN_MESSAGE = re.compile(r"Exercise\s+(T?\d+(?:\.\d+)*)")


def _where(frames, edits):
    """'minigan/functional.py:47 in dense_backward' for the last frame in the student's files."""
    for rel, lineno, name in reversed(frames):
        line, ref_ex = map_line(edits.get(rel, []), lineno)
        if ref_ex is not None:
            return f"{rel} in {name} (the reference code of Exercise {ref_ex}, used for grading)"
        return f"{rel}:{line} in {name}"
    return None


def is_import_failure(err) -> bool:
    frames = err.get("frames") or []
    return err.get("type") in ("SyntaxError", "IndentationError", "TabError") or \
        bool(frames and frames[-1][2] == "<module>")


def error_message(err, exercise_id, plan: Plan, edits):
    """(status, message) for an exception raised by the student's code."""
    etype, message = err.get("type", "Exception"), err.get("message", "")
    where = _where(err.get("frames", []), edits)
    at = f" (at {where})" if where else ""
    if etype == "NotImplementedError":
        m = _EXERCISE_IN_MESSAGE.search(message)
        other = m.group(1) if m else None
        if other and other != exercise_id:
            info = plan.infos.get(other)
            what = f" ({info.title})" if info else ""
            return ("blocked", f"uses Exercise {other}{what}, which is not implemented yet{at}: "
                               "do that one first")
        return "not implemented", f"not implemented: NotImplementedError raised{at}"
    text = f"{etype}: {message}" if message else etype
    if is_import_failure(err):
        path = (err.get("frames") or [["a file"]])[-1][0]
        return "error", f"importing {path} failed: {text}{at}"
    return "error", f"{text}{at}"


def _no_result(raw, chk, limits):
    """(status, message) for a check that sent nothing back."""
    outcome = raw.outcome
    if not raw.started:
        return "error", ("the grader could not start its runner (twice), so this check did not run "
                         f"and says nothing about your code: {outcome.stderr_tail or 'no output'} "
                         f"(exit code {outcome.returncode}"
                         + (f", stopped after {limits.wall:g} s" if outcome.timed_out else "")
                         + "). Ask your teacher to grade again.")
    if outcome.timed_out:
        if raw.current == chk.key:
            return "timeout", (f"did not finish within the time limit of {limits.wall:g} s "
                               "(an infinite loop, at import or in your code?)")
        return "timeout", "not run: the exercise hit its time limit"
    if outcome.output_exceeded:
        return "error", _output_limit(limits)
    tail = f"; last output: {outcome.stderr_tail}" if outcome.stderr_tail else ""
    return "error", (f"the grading process died (exit code {outcome.returncode}) before this check "
                     f"finished{tail}; does your code call os._exit, crash Python, or use more "
                     f"than the memory limit ({plan_memory(limits)})?")


def _output_limit(limits):
    return (f"your code printed (or wrote) more than {limits.file_size >> 20} MB, the output "
            "limit: the process was stopped")


def plan_memory(limits):
    return f"{limits.memory / (1 << 30):g} GiB"


def score_exercise(info, chks, raw, plan: Plan) -> ExerciseResult:
    results, import_failed = [], False
    for chk in chks:
        res = CheckResult(chk.name, chk.target, chk.hidden, 0, chk.points, "skipped")
        cases = raw.items.get(chk.key)
        wanted = [s for s, _ in chk.cases()]
        if cases is None or any(s not in cases for s in wanted):
            res.status, res.message = _no_result(raw, chk, plan.limits)
        else:
            errors = [cases[s][1] for s in wanted if cases[s][0] == "error"]
            if errors:
                res.status, res.message = error_message(errors[0], info.id, plan, raw.edits)
                import_failed |= is_import_failure(errors[0])
                if raw.outcome.output_exceeded and "File too large" in res.message:
                    res.message = _output_limit(plan.limits) + f" ({res.message})"
            else:
                res.status, res.message = _judge(chk, plan.fixtures[chk.key],
                                                 {s: cases[s][1] for s in wanted})
        if res.status == "pass":
            res.points = chk.points
        res.message = plan.redactor.clean(res.message)
        results.append(res)
    status = exercise_status(results, import_failed)
    points = sum(r.points for r in results)
    return ExerciseResult(info.id, info.title, points, sum(r.max_points for r in results), status,
                          feedback_lines(results, status), results,
                          round(raw.outcome.seconds, 3) if raw.outcome else 0.0)


def _judge(chk, fx, outs):
    """The check's verdict on the runner's values, which may be anything: never trusted."""
    from minigan.classroom.checks import Fail

    try:
        note = chk.judge_cases(fx, outs)
        return "pass", note or ""
    except Fail as fail:
        return "fail", str(fail)
    except Exception as err:  # noqa: BLE001 - malformed values from the runner
        return "fail", (f"the values your code returned could not be checked "
                        f"({type(err).__name__}: {str(err)[:200]})")


def run_exercise(student_root, info, chks, plan: Plan, slots, substitute=None) -> ExerciseResult:
    for _ in range(2):
        with slots.slot() as uid:
            raw = run_checks(student_root, chks, {c.key: plan.fixtures[c.key] for c in chks},
                             box=plan.box, limits=plan.limits, uid=uid, exercise_id=info.id,
                             substitution=substitute,
                             reference_pkg=plan.ref_root / "minigan" if plan.ref_root else None)
            if raw.started:
                break
            # It never reached the student's code. E.g. "setpriv: failed to execute python:
            # Resource temporarily unavailable": the uid's process cap is taken by processes
            # we cannot see (another container's grader): try once more on another uid.
            slots.retire(uid)
    return score_exercise(info, chks, raw, plan)


# --------------------------------------------------------------- one submission


def _student_root(directory) -> Path:
    given = Path(directory)
    if given.is_symlink() or (given / "minigan").is_symlink():
        # a link could point at the teacher's own copy, solutions and hidden checks included
        raise GraderError(f"{given} (or its minigan/) is a symbolic link: grade the folder itself")
    root = given.resolve()
    if not (root / "minigan" / "__init__.py").is_file():
        hint = ""
        if root.is_dir():
            inner = [p.parent.parent for p in root.glob("*/minigan/__init__.py")]
            if len(inner) == 1:
                hint = f" (did you mean {inner[0]}?)"
        raise GraderError(f"{root} does not contain a minigan/ package (minigan/__init__.py){hint}")
    return root


def grade_submission(student_root: Path, plan: Plan, slots, jobs: int) -> GradeReport:
    """Grade one student's copy with ``plan``: pass 1 on their code, pass 2 where a dependency fails."""
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(lambda item: run_exercise(student_root, *item, plan, slots),
                                plan.chosen))
        if plan.substitute:
            _regrade_with_reference(student_root, results, plan, slots, pool)
        else:
            _add_dependency_hints(results, plan)
    rep = GradeReport(str(student_root), plan.mode, results, list(plan.ungraded), plan.limits.wall,
                      sandbox=plan.box.describe(), notes=list(plan.notes))
    rep.files = file_problems(rep)
    return rep


def _dependencies(chks, plan, own_id):
    deps = {plan.owner(u) for c in chks for u in c.uses}
    return {d for d in deps if d and d != own_id}


def _through(check_result, targets) -> bool:
    """Does this check run through any of ``targets`` (another exercise's functions)?"""
    chk = load_checks(hidden=True).CHECKS.get((check_result.target, check_result.name))
    return chk is not None and any(t == u or t.startswith(u + ".") for u in chk.uses for t in targets)


def _fails_on_its_own(dep: ExerciseResult, targets) -> bool:
    """Does ``dep`` fail a check that does not run through ``targets`` (the exercise graded)?

    1.1's hidden check runs the student's dense_backward (1.2): when only that check
    fails, 1.1 is not shown to be broken by it.
    """
    return any(c.status != "pass" and not _through(c, targets) for c in dep.checks)


def _suspect(result: ExerciseResult, targets, dep: ExerciseResult, dep_targets) -> bool:
    """May ``dep`` be why ``result`` lost points? Either it fails on its own, or it fails
    somewhere and every check of ``result`` that avoids it passes (1.1 and 1.2 each run
    through the other: a wrong dense_backward is 1.2's fault when the forward checks pass)."""
    if dep.status == "passed":
        return False
    if _fails_on_its_own(dep, targets):
        return True
    return all(c.status == "pass" for c in result.checks if not _through(c, dep_targets))


def _regrade_with_reference(student_root, results, plan, slots, pool):
    """Exercises that lost points and build on exercises the student's code fails (or that were
    not graded in this run): grade again with the reference code of those, keep the better score."""
    by_id = {r.id: r for r in results}
    todo = []
    for i, (info, chks) in enumerate(plan.chosen):
        if results[i].status == "passed":
            continue
        deps = _dependencies(chks, plan, info.id)
        failing = sorted((d for d in deps if d in by_id and _suspect(
            results[i], info.targets, by_id[d], plan.infos[d].targets)), key=markers.exercise_sort_key)
        unknown = sorted((d for d in deps if d not in by_id), key=markers.exercise_sort_key)
        if failing or unknown:
            future = pool.submit(run_exercise, student_root, info, chks, plan, slots,
                                 (plan.ref_root, plan.ref_scan, set(failing) | set(unknown)))
            todo.append((i, future, _substitution_note(failing, unknown)))
    for i, future, note in todo:
        second = future.result()
        # Better, or as good and no longer blocked by the other exercise: the truer picture.
        if second.points > results[i].points or (
                second.points == results[i].points and results[i].status == "blocked"):
            second.notes.append("graded with " + note)
            results[i] = second
        else:  # for the teacher only: the student's own code was the better grade
            results[i].feedback.append(f"also graded with {note}: no better")


def _substitution_note(failing, unknown):
    parts = []
    if failing:
        parts.append(f"the reference code of Exercise {', '.join(failing)} (your code there does "
                     "not pass its own checks yet)")
    if unknown:
        parts.append(f"the reference code of Exercise {', '.join(unknown)} (not graded in this run)")
    return " and ".join(parts)


def _add_dependency_hints(results, plan):
    """Without the reference at hand (``check``), say when a failure may come from another exercise."""
    by_id = {r.id: r for r in results}
    for result, (info, chks) in zip(results, plan.chosen):
        if result.status in ("passed", "blocked"):
            continue
        culprits = sorted((d for d in _dependencies(chks, plan, info.id)
                           if d in by_id and _fails_on_its_own(by_id[d], info.targets)),
                          key=markers.exercise_sort_key)
        if culprits:
            result.notes.append(
                f"This exercise runs through your code for Exercise {', '.join(culprits)}, which "
                "does not pass its own checks yet: fix that first (grading uses the reference "
                "code there).")


def file_problems(rep: GradeReport) -> list:
    """The files that failed to import, from the checks' messages, with the exercises they cost."""
    found = {}
    pattern = re.compile(r"importing (\S+) failed: (.*?)(?: \(at \S+:\d+ in \S+\))?$")
    for e in rep.exercises:
        for c in e.checks:
            m = pattern.search(c.message) if c.status == "error" else None
            if m:
                where = re.search(r"\(at (\S+:\d+) in", c.message)
                problem = m.group(2) + (f" (line {where.group(1).split(':')[-1]})" if where else "")
                entry = found.setdefault(m.group(1), FileProblem(m.group(1), problem, []))
                if e.id not in entry.exercises:
                    entry.exercises.append(e.id)
    return list(found.values())


# ------------------------------------------------------------------ grade and check


def write_atomic(path: Path, text: str):
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def default_out(student_root: Path) -> Path:
    return Path.cwd() / f"grades-{student_root.name}"


def check_out_dir(out: Path, student_root: Path) -> Path:
    out = Path(out).resolve()
    if out == student_root or student_root in out.parents:
        raise GraderError(f"--out {out} is inside the submission {student_root}: grade files are "
                          "written outside it, where the student's code cannot reach them")
    return out


def write_report(rep: GradeReport, out: Path):
    """grades.json and report.md (the teacher's), feedback.md (the student's): after every runner."""
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "grades.json", json.dumps(rep.to_dict(), indent=2) + "\n")
    write_atomic(out / "report.md", render_markdown(rep))
    write_atomic(out / "feedback.md", render_markdown(rep, title=f"Feedback: {rep.name}", student=True))


def grade(directory, out=None, *, timeout=DEFAULT_TIMEOUT, exercises=None, hidden=True, jobs=None,
          write=True, manifest=None, seed=None, limits=None, box=None, substitute=True) -> GradeReport:
    """Grade the student's copy in ``directory``; write the reports to ``out`` (never inside it).

    ``exercises`` defaults to those the teacher's ``manifest`` lists as released,
    or every exercise of the reference without one. ``hidden=False`` runs the
    visible checks only (what ``check`` does).
    """
    student_root = _student_root(directory)
    if write:
        out = check_out_dir(out if out is not None else default_out(student_root), student_root)
    plan = make_plan(student_root, hidden=hidden, exercises=exercises, manifest=manifest,
                     timeout=timeout, seed=seed, limits=limits, box=box, substitute=substitute)
    jobs = jobs or os.cpu_count() or 1
    try:
        rep = grade_submission(student_root, plan, sandbox.SlotPool(jobs), jobs)
    except SubmissionError as err:
        raise GraderError(str(err)) from None
    if write:
        write_report(rep, out)
    return rep


def check(directory=None, *, timeout=DEFAULT_TIMEOUT, exercises=None, jobs=None) -> GradeReport:
    """The visible checks of a copy (default: the one this minigan was imported from)."""
    directory = directory if directory is not None else reference_root()
    return grade(directory, timeout=timeout, exercises=exercises, hidden=False, jobs=jobs,
                 write=False, substitute=False)
