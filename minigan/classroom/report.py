"""Grading results and how they are shown: to the teacher, to the student, in a terminal.

Two audiences, two renderings of one ``GradeReport``:

* the teacher's (``grades.json``, ``report.md``): every check by name, hidden
  ones included, with their messages;
* the student's (``feedback.md``, and the ``check`` table): visible checks with
  their messages; hidden checks only as "hidden check 2 of 3: failed", because
  their names and messages would say what they test and what they expect.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEFAULT_TIMEOUT = 30.0


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
    status: str          # passed, partial, failed, not implemented, blocked, error, timed out
    feedback: list = field(default_factory=list)      # teacher's lines (hidden checks included)
    checks: list = field(default_factory=list)
    seconds: float = 0.0
    notes: list = field(default_factory=list)         # e.g. reference code used for Exercise 1.2

    def student_feedback(self) -> list:
        """The feedback without hidden-check names or messages."""
        lines = list(self.notes)
        lines += feedback_lines([c for c in self.checks if not c.hidden], self.status)
        hidden = [c for c in self.checks if c.hidden]
        failed = [i for i, c in enumerate(hidden, 1) if c.status != "pass"]
        if failed and hidden:
            lines.append(f"hidden checks: {len(hidden) - len(failed)} of {len(hidden)} pass "
                         f"(failed: {', '.join(f'#{i}' for i in failed)})")
        return lines


@dataclass
class FileProblem:
    """A student file that could not be imported, and the exercises that needed it."""

    path: str
    problem: str
    exercises: list


@dataclass
class GradeReport:
    directory: str
    mode: str            # "grade" or "check"
    exercises: list
    ungraded: list = field(default_factory=list)   # [(id, title, why)]
    timeout: float = DEFAULT_TIMEOUT
    files: list = field(default_factory=list)      # [FileProblem]
    sandbox: str = ""
    notes: list = field(default_factory=list)

    @property
    def points(self):
        return sum(e.points for e in self.exercises)

    @property
    def max_points(self):
        return sum(e.max_points for e in self.exercises)

    @property
    def name(self):
        return Path(self.directory).name

    def exercise(self, exercise_id) -> ExerciseResult:
        for e in self.exercises:
            if e.id == exercise_id:
                return e
        raise KeyError(exercise_id)

    def to_dict(self):
        return {
            "directory": self.directory, "mode": self.mode,
            "points": num(self.points), "max_points": num(self.max_points),
            "timeout_seconds": self.timeout, "sandbox": self.sandbox, "notes": self.notes,
            "exercises": [dict(asdict(e), points=num(e.points), max_points=num(e.max_points))
                          for e in self.exercises],
            "files": [asdict(f) for f in self.files],
            "not_graded": [{"id": i, "title": t, "why": w} for i, t, w in self.ungraded],
        }

    def to_markdown(self, title=None) -> str:
        return render_markdown(self, title)


def num(x):
    return int(x) if float(x).is_integer() else round(float(x), 3)


def exercise_status(results, import_failed=False) -> str:
    points = sum(r.points for r in results)
    statuses = {r.status for r in results}
    if points == sum(r.max_points for r in results):
        return "passed"
    if "timeout" in statuses:
        return "timed out"
    if import_failed:
        return "error"
    if statuses <= {"not implemented", "blocked"}:
        return "blocked" if "blocked" in statuses else "not implemented"
    if points > 0:
        return "partial"
    if "error" in statuses and "fail" not in statuses:
        return "error"
    return "failed"


def feedback_lines(results, status) -> list:
    """The actionable lines: one per failing check, without repeating the same message."""
    if status == "passed":
        return []
    lines, seen = [], set()
    for r in results:
        if r.status == "pass" or r.message in seen:
            continue
        seen.add(r.message)
        label = ("hidden check: " if r.hidden else "") + r.name
        if r.status in ("not implemented", "blocked") or r.message.startswith("importing"):
            lines.append(r.message[:1].upper() + r.message[1:])
        else:
            lines.append(f"{label}: {r.message}")
    return lines


# -------------------------------------------------------------- untrusted messages


class Redactor:
    """Withholds any message a student's code produced that quotes secret source.

    Exception messages come from the student's process; one that contains a
    line of a reference solution or of the hidden checks (code the runner may
    have been able to read, e.g. a substituted reference function) is replaced.
    """

    def __init__(self, texts=()):
        self.lines = set()
        for text in texts:
            for line in text.splitlines():
                norm = _norm(line)
                if len(norm) >= 16 and not norm.startswith("#"):
                    self.lines.add(norm)

    def clean(self, message: str, limit=300) -> str:
        norm = _norm(message)
        if any(line in norm for line in self.lines):
            return "[message withheld: it quotes the grader's reference code]"
        return message if len(message) <= limit else message[:limit] + " [...]"


def _norm(text):
    return re.sub(r"\s+", " ", text).strip()


# ------------------------------------------------------------------- rendering


def cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def render_files(report: GradeReport) -> list:
    """Markdown lines of the 'files that failed to import' table (none when all import)."""
    if not report.files:
        return []
    lines = ["", "Files that could not be imported (they cost only the exercises that need them):",
             "", "| File | Problem | Exercises affected |", "|---|---|---|"]
    for f in report.files:
        lines.append(f"| {cell(f.path)} | {cell(f.problem)} | {', '.join(f.exercises)} |")
    return lines


def render_markdown(report: GradeReport, title=None, student=False) -> str:
    """The teacher's report, or (``student=True``) the student's feedback file."""
    heading = title or (f"Grades: {report.name}" if report.mode == "grade"
                        else f"Visible checks: {report.name}")
    lines = [f"# {heading}", ""]
    lines.append(f"**Total: {num(report.points)} / {num(report.max_points)} points** "
                 f"({sum(e.status == 'passed' for e in report.exercises)} of "
                 f"{len(report.exercises)} exercises passed"
                 + ("; hidden checks included" if report.mode == "grade" else "; visible checks only")
                 + ")")
    lines += ["", "| Exercise | Points | Max | Status | Feedback |", "|---|---:|---:|---|---|"]
    for e in report.exercises:
        fb = e.student_feedback() if student else e.notes + e.feedback
        feedback = "<br>".join(cell(f) for f in fb) or "all checks pass"
        lines.append(f"| {e.id} {cell(e.title)} | {num(e.points)} | {num(e.max_points)} | "
                     f"{e.status} | {feedback} |")
    lines += render_files(report)
    if report.ungraded:
        lines += ["", "Not graded automatically: " + ungraded_text(report.ungraded) + "."]
    if student:
        return "\n".join(lines).rstrip() + "\n"
    lines += ["", "## Checks", ""]
    for e in report.exercises:
        lines.append(f"**{e.id}** {e.title}: {num(e.points)} / {num(e.max_points)}")
        lines.append("")
        for c in e.checks:
            mark = "PASS" if c.status == "pass" else c.status.upper()
            hidden = " (hidden)" if c.hidden else ""
            lines.append(f"- {mark}{hidden} {c.name} [{num(c.points)}/{num(c.max_points)}]"
                         + (f": {c.message}" if c.message and c.status != "pass" else ""))
        lines.append("")
    if report.sandbox or report.notes:
        lines += ["## Grading", ""] + [f"- {n}" for n in [report.sandbox] + report.notes if n]
    return "\n".join(lines).rstrip() + "\n"


def render_table(report: GradeReport) -> str:
    """A plain-text table for the terminal (``check``); further feedback lines go under their row."""
    rows = [(f"{e.id} {e.title}", f"{num(e.points)}/{num(e.max_points)}", e.status)
            for e in report.exercises]
    header = ("Exercise", "Points", "Status")
    width = [min(max([len(header[i])] + [len(r[i]) for r in rows]), w)
             for i, w in enumerate((44, 8, 16))]

    def fmt(cells, last):
        out = []
        for text, w in zip(cells, width):
            out.append(text[: w - 1] + "~" if len(text) > w else text.ljust(w))
        return "  ".join(out + [last]).rstrip()

    indent = " " * (sum(width) + 2 * len(width))
    lines = [fmt(header, "Feedback"), "  ".join("-" * w for w in width) + "  --------"]
    for e, row in zip(report.exercises, rows):
        fb = e.student_feedback()
        lines.append(fmt(row, fb[0] if fb else "all checks pass"))
        lines += [indent + extra for extra in fb[1:]]
    if report.files:
        lines += ["", "Files that could not be imported (only the exercises that need them are lost):"]
        for f in report.files:
            lines.append(f"  {f.path}: {f.problem}  -> exercises {', '.join(f.exercises)}")
    lines.append("")
    lines.append(f"Total: {num(report.points)} / {num(report.max_points)} points"
                 + (" (visible checks only; grading adds hidden ones)" if report.mode == "check" else ""))
    if report.ungraded:
        lines.append("Not checked automatically: " + ungraded_text(report.ungraded))
    return "\n".join(lines)


def ungraded_text(ungraded) -> str:
    """'T1.1, T1.2 (why); 5.1 (why)': exercises grouped by the reason."""
    by_why = {}
    for i, _title, why in ungraded:
        by_why.setdefault(why, []).append(i)
    return "; ".join(f"{_ids(ids)} ({why})" for why, ids in by_why.items())


def _ids(ids):
    return ", ".join(ids) if len(ids) <= 6 else f"{ids[0]} to {ids[-1]} ({len(ids)} exercises)"
