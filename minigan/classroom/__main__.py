"""``python -m minigan.classroom {list,release,grade,check}``: see docs/teachers.md."""

from __future__ import annotations

import argparse
import sys


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m minigan.classroom",
        description="Student releases of minigan with the solutions cut out, and their autograder.")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("list", help="list the exercises marked in this copy of minigan")

    p = sub.add_parser("release", help="write a student copy with the solutions cut out")
    p.add_argument("--out", required=True, help="folder to write (must not exist, see --force)")
    p.add_argument("--exercises", nargs="*", metavar="N.M",
                   help="exercises to cut out (default: all; give the flag alone for none)")
    p.add_argument("--keep-unassigned", action="store_true",
                   help="keep the solutions of the exercises not released (default: withhold them)")
    p.add_argument("--force", action="store_true", help="replace --out if it is an earlier release")

    p = sub.add_parser("grade", help="grade a student's copy, or a folder of them (a class)")
    p.add_argument("dir", help="a student's copy (the folder that contains minigan/), or a folder "
                               "with one such copy per student")
    p.add_argument("--out", help="folder for the reports (default: ./grades-NAME; never inside DIR)")
    p.add_argument("--manifest", metavar="FILE",
                   help="the release manifest release wrote next to the release (what to grade)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S",
                   help="time limit per exercise in seconds (default: 30)")
    p.add_argument("--memory", type=float, default=1.0, metavar="GIB",
                   help="address-space limit of student code in GiB (default: 1)")
    p.add_argument("--exercises", nargs="+", metavar="N.M", help="exercises to grade")
    p.add_argument("--jobs", type=int, default=None, help="runners in parallel (default: cores)")
    p.add_argument("--seed", type=int, default=None, help="salt of the check inputs (default: fresh)")

    p = sub.add_parser("check", help="run the visible checks of your copy (for students)")
    p.add_argument("dir", nargs="?", default=None,
                   help="the copy to check (default: the one this minigan is imported from)")
    p.add_argument("--exercises", nargs="+", metavar="N.M", help="only these exercises")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S",
                   help="time limit per exercise in seconds (default: 30)")
    p.add_argument("--jobs", type=int, default=None, help="exercises checked in parallel")
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    from minigan.classroom.grader import GraderError
    from minigan.classroom.markers import MarkerError
    from minigan.classroom.release import ReleaseError

    try:
        return _COMMANDS[args.command](args)
    except (GraderError, MarkerError, ReleaseError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _list(args):
    from minigan.classroom import find_exercises

    found = find_exercises()
    if not found:
        print("no exercises marked")
    for ex in found.values():
        print(f"{ex.id:6} {ex.title}")
        for r in ex.regions:
            print(f"{'':6}   {r.where}" + (f"  ({r.target})" if r.target else ""))
    return 0


def _release(args):
    from minigan.classroom.release import release

    info = release(args.out, args.exercises, force=args.force, keep_unassigned=args.keep_unassigned)
    print(f"wrote {info.out}: {len(info.files)} files")
    print("cut out: " + (", ".join(info.released) or "nothing"))
    if info.withheld:
        print("withheld (not assigned yet): " + ", ".join(info.withheld))
        for line in info.needs:
            print("  " + line)
    if info.kept:
        print("solutions kept: " + ", ".join(info.kept))
    for warning in info.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"teacher's manifest (keep it; grade --manifest): {info.manifest}")
    print(f"students start with {info.out / 'STUDENT.md'}")
    return 0


def _grade(args):
    from pathlib import Path

    from minigan.classroom import batch, sandbox
    from minigan.classroom.grader import GraderError, grade

    limits = sandbox.Limits(wall=args.timeout, memory=int(args.memory * (1 << 30)))
    try:
        box = sandbox.detect()
    except RuntimeError as err:
        raise GraderError(str(err)) from None
    if box.missing:  # the teacher must know what a dishonest submission could still do
        print(f"warning: {box.describe()}", file=sys.stderr)
    kwargs = dict(exercises=args.exercises, jobs=args.jobs, manifest=args.manifest,
                  seed=args.seed, limits=limits, timeout=args.timeout)
    if batch.is_class_folder(args.dir):
        out = Path(args.out) if args.out else Path.cwd() / f"grades-{Path(args.dir).resolve().name}"
        def progress(name, rep):
            done = f"{rep.points:g}/{rep.max_points:g}" if not isinstance(rep, str) else f"not graded: {rep}"
            print(f"graded {name}: {done}", file=sys.stderr, flush=True)

        book = batch.grade_class(args.dir, out, progress=progress, **kwargs)
        print(book.summary())
        print(f"wrote {book.csv_path} and one folder per student in {out}", file=sys.stderr)
        return 0
    report = grade(args.dir, args.out, **kwargs)
    print(report.to_markdown())
    out = Path(args.out) if args.out else Path.cwd() / f"grades-{Path(args.dir).resolve().name}"
    print(f"wrote grades.json, report.md (yours) and feedback.md (the student's) to {out}",
          file=sys.stderr)
    return 0


def _check(args):
    from minigan.classroom.grader import check, render_table

    report = check(args.dir, timeout=args.timeout, exercises=args.exercises, jobs=args.jobs)
    print(render_table(report))
    return 0 if report.points == report.max_points else 1


_COMMANDS = {"list": _list, "release": _release, "grade": _grade, "check": _check}

if __name__ == "__main__":
    sys.exit(main())
