"""Classroom tools: student releases with the solutions cut out, and an autograder.

From the teacher's copy (the repository)::

    python -m minigan.classroom list                         # the exercises found
    python -m minigan.classroom release --out hw1 --exercises 1.2 3.2
    python -m minigan.classroom grade submissions/alice --manifest hw1.manifest.json --out reports/alice
    python -m minigan.classroom grade submissions/ --manifest hw1.manifest.json --out reports/

and, in a student's copy::

    python check.py

See docs/teachers.md. The functions below are the same commands from Python;
nothing here is imported by ``import minigan``.
"""

from __future__ import annotations


def release(out, exercises=None, *, force=False):
    """Write a student copy to ``out`` (see ``minigan.classroom.release.release``)."""
    from minigan.classroom.release import release as _release

    return _release(out, exercises, force=force)


def grade(directory, out=None, **kwargs):
    """Grade a student's copy (see ``minigan.classroom.grader.grade``)."""
    from minigan.classroom.grader import grade as _grade

    return _grade(directory, out, **kwargs)


def grade_class(folder, out, **kwargs):
    """Grade a folder of submissions into a gradebook (see ``minigan.classroom.batch``)."""
    from minigan.classroom.batch import grade_class as _grade_class

    return _grade_class(folder, out, **kwargs)


def check(directory=None, **kwargs):
    """Run the visible checks of a copy (see ``minigan.classroom.grader.check``)."""
    from minigan.classroom.grader import check as _check

    return _check(directory, **kwargs)


def find_exercises(root=None):
    """{exercise id: Exercise} for the solution regions under ``root`` (default: this repository)."""
    from minigan.classroom import markers
    from minigan.classroom.release import source_root

    return markers.scan(root or source_root())


__all__ = ["release", "grade", "grade_class", "check", "find_exercises"]
