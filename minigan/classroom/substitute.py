"""Reference substitution: grade an exercise on its own when one it builds on is broken.

When Exercise 4.1 (the generator step) runs through a student's dense layers
and those fail their own checks, ``grade`` grades 4.1 a second time with the
REFERENCE versions of exactly those functions put into a copy of the student's
files, and says so in the feedback. Only the functions of exercises the
student's code fails are replaced, and only for that second run: code that
passes is always the student's (a consistent cache format of their own works).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from minigan.classroom import markers


@dataclass
class Edit:
    """One function of the student's file replaced by the reference's, for line mapping."""

    new_start: int
    new_end: int
    old_start: int
    old_end: int
    exercise: str


def substitute_reference(copy_root: Path, ref_root: Path, keep: str, scanned: dict,
                         only=None) -> dict:
    """Put the reference version of the functions holding exercises ``only`` into the copy.

    Functions that hold a region of ``keep`` (the exercise being graded) stay the
    student's. ``scanned`` is ``markers.scan(ref_root)``.
    Returns {relative path: [Edit, ...]} for mapping line numbers.
    """
    by_file = {}
    own = set()
    for ex in scanned.values():
        for r in ex.regions:
            if not r.in_library or not r.function:
                continue
            if ex.id == keep:
                own.add((r.path, r.function))
            elif only is None or ex.id in only:
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
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue  # importing it will fail with the student's own error
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
