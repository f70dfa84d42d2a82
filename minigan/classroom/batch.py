"""Grade a whole class: a folder with one submission per student, a gradebook, feedback files.

::

    python -m minigan.classroom grade submissions/ --manifest hw1.manifest.json --out grades/

writes ``grades/gradebook.csv`` (one row per student, one column per exercise,
then the total: the layout Canvas, Moodle and Google Classroom import),
``grades/summary.md``, and per student ``grades/NAME/feedback.md`` (to hand
back: no hidden-check names or expected values), ``report.md`` and
``grades.json`` (the teacher's). The check inputs and expected values are
computed once; submissions are graded in parallel, at most ``jobs`` runners
at a time (one per core by default).
"""

from __future__ import annotations

import csv
import io
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from minigan.classroom import grader, sandbox
from minigan.classroom.report import num, ungraded_text


def is_class_folder(path) -> bool:
    """A folder of submissions (not itself a submission): some subfolder holds minigan/."""
    root = Path(path)
    if (root / "minigan" / "__init__.py").is_file():
        return False
    return root.is_dir() and any((p / "minigan").is_dir() for p in root.iterdir() if p.is_dir())


@dataclass
class Gradebook:
    out: Path
    exercises: list                                   # [(id, max points)]
    rows: list = field(default_factory=list)          # [(student, report or error text)]
    seconds: float = 0.0
    sandbox: str = ""
    ungraded: list = field(default_factory=list)      # [(id, title, why)]

    @property
    def csv_path(self) -> Path:
        return self.out / "gradebook.csv"

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["student"] + [f"Exercise {i}" for i, _ in self.exercises] + ["total"])
        for student, rep in self.rows:
            student = _cell_text(student)
            if isinstance(rep, str):
                writer.writerow([student] + [0 for _ in self.exercises] + [0])
                continue
            points = {e.id: num(e.points) for e in rep.exercises}
            writer.writerow([student] + [points.get(i, 0) for i, _ in self.exercises]
                            + [num(rep.points)])
        return buf.getvalue()

    def summary(self) -> str:
        total = sum(m for _, m in self.exercises)
        lines = [f"# Gradebook: {len(self.rows)} submissions in {self.seconds:.1f} s", "",
                 "| Student | " + " | ".join(i for i, _ in self.exercises) + " | Total | Notes |",
                 "|---|" + "---:|" * (len(self.exercises) + 1) + "---|",
                 "| (max) | " + " | ".join(str(num(m)) for _, m in self.exercises)
                 + f" | {num(total)} | |"]
        for student, rep in self.rows:
            if isinstance(rep, str):
                lines.append(f"| {student} | " + " | ".join("-" for _ in self.exercises)
                             + f" | 0 | not graded: {rep} |")
                continue
            by_id = {e.id: e for e in rep.exercises}
            cells = [f"{num(by_id[i].points)}" if i in by_id else "-" for i, _ in self.exercises]
            notes = sorted({e.status for e in rep.exercises if e.status != "passed"})
            if rep.files:
                notes.append("import errors in " + ", ".join(f.path for f in rep.files))
            lines.append(f"| {student} | " + " | ".join(cells) + f" | {num(rep.points)} | "
                         + "; ".join(notes) + " |")
        if self.ungraded:
            lines += ["", "Not graded automatically: " + ungraded_text(self.ungraded) + "."]
        lines += ["", f"Sandbox: {self.sandbox}"]
        return "\n".join(lines) + "\n"


def grade_class(folder, out, *, jobs=None, progress=None, **plan_kwargs) -> Gradebook:
    """Grade every subfolder of ``folder`` that holds a minigan/ package; write the gradebook.

    ``progress(name, report_or_error)`` is called as each submission finishes.
    """
    started = time.perf_counter()
    folder = Path(folder).resolve()
    out = Path(out).resolve()
    if out == folder or folder in out.parents:
        raise grader.GraderError(f"--out {out} is inside the submissions folder {folder}")
    students = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not students:
        raise grader.GraderError(f"{folder} has no submission folders")
    plan = grader.make_plan(hidden=True, **plan_kwargs)
    jobs = jobs or os.cpu_count() or 1
    slots = sandbox.SlotPool(jobs)

    def one(student: Path):
        try:
            result = grader.grade_submission(grader._student_root(student), plan, slots, jobs)
        except (grader.GraderError, grader.SubmissionError) as err:
            result = str(err)
        except Exception as err:  # noqa: BLE001 - one submission must not stop the class
            result = f"the grader failed on it ({type(err).__name__}: {err}); grade it alone"
        if progress is not None:
            progress(student.name, result)
        return result

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        reports = list(pool.map(one, students))
    # Every runner has finished and been killed: only now is anything written.
    book = Gradebook(out, [(info.id, sum(c.points for c in chks)) for info, chks in plan.chosen],
                     list(zip([s.name for s in students], reports)),
                     sandbox=plan.box.describe(), ungraded=list(plan.ungraded))
    out.mkdir(parents=True, exist_ok=True)
    for student, rep in book.rows:
        if not isinstance(rep, str):
            grader.write_report(rep, out / _safe(student))
    book.seconds = time.perf_counter() - started
    grader.write_atomic(book.csv_path, book.to_csv())
    grader.write_atomic(out / "summary.md", book.summary())
    return book


def _cell_text(name: str) -> str:
    """A folder name as a spreadsheet cell: '=...' would be read as a formula."""
    return "'" + name if name[:1] in ("=", "+", "-", "@", "\t", "\r") else name


def _safe(name: str) -> str:
    """A student's folder name as a plain file name (it is student-controlled)."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).lstrip(".")
    return cleaned or "student"
