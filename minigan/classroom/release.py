"""Make a student copy of minigan with the selected solutions cut out.

The copy holds the ``minigan/`` package (without the hidden checks), the
tutorial notebooks, the packaging files (so ``pip install -e .`` works),
``STUDENT.md``, ``minigan/classroom/release.json`` (what was cut out, which
``grade`` reads) and ``minigan/classroom/fixtures.npz`` (the expected values of
the visible checks, computed from the reference, which ``check`` reads).

Releases are written to a temporary folder next to the target and renamed
into place at the end, so a failed release leaves nothing half-written; and
they are verified: every Python file parses, every changed notebook cell
parses, no solution marker remains anywhere.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from minigan.classroom import markers

TOP_LEVEL_FILES = ("pyproject.toml", "setup.cfg", "setup.py", "README.md", "LICENSE", "MANIFEST.in")
EXCLUDED_NAMES = ("__pycache__", "*.pyc", "*.pyo", "*.egg-info", ".ipynb_checkpoints",
                  ".pytest_cache", ".hypothesis", ".DS_Store")
# Never shipped: the hidden checks, and anything a previous release left in the source.
EXCLUDED_CLASSROOM = ("hidden*", "fixtures.npz", "release.json")
MANIFEST = "minigan/classroom/release.json"
FIXTURES = "minigan/classroom/fixtures.npz"
RELEASE_FORMAT = 1


class ReleaseError(RuntimeError):
    """The release cannot be made as asked; the message says why."""


@dataclass
class ReleaseInfo:
    out: Path
    released: list                      # exercise ids cut out
    kept: list                          # exercise ids whose solutions stay
    raises: dict = field(default_factory=dict)   # id -> ["path:line", ...] in the release
    files: list = field(default_factory=list)    # relative paths written


def source_root() -> Path:
    """The repository that holds the running minigan (the teacher's copy)."""
    import minigan

    return Path(minigan.__file__).resolve().parent.parent


def _ignore(directory, names):
    import fnmatch

    skip = {n for n in names for pat in EXCLUDED_NAMES if fnmatch.fnmatch(n, pat)}
    if Path(directory).name == "classroom" and Path(directory).parent.name == "minigan":
        skip |= {n for n in names for pat in EXCLUDED_CLASSROOM if fnmatch.fnmatch(n, pat)}
    return skip


def _looks_like_release(path: Path) -> bool:
    return (path / "STUDENT.md").exists() or (path / MANIFEST).exists()


def _prepare_out(out: Path, source: Path, force: bool):
    out = out.resolve()
    if out == source or out in source.parents or source in out.parents:
        raise ReleaseError(f"--out {out} overlaps the source tree {source}; choose a folder outside it")
    if out.exists():
        if not force:
            raise ReleaseError(f"{out} already exists; pass --force to replace it")
        if not out.is_dir():
            raise ReleaseError(f"{out} exists and is not a folder")
        if any(out.iterdir()) and not _looks_like_release(out):
            raise ReleaseError(
                f"refusing to delete {out}: it is not empty and does not look like a minigan "
                "release (no STUDENT.md); remove it yourself if you mean it")
    return out


def release(out, exercises=None, *, force=False, source=None, fixtures=True) -> ReleaseInfo:
    """Write a student copy to ``out``, cutting out ``exercises`` (default: all of them).

    ``exercises=[]`` cuts out none (a copy with every solution in it, which must
    score full points). Raises ReleaseError or MarkerError with a clear message.
    """
    source = Path(source).resolve() if source else source_root()
    found = markers.scan(source)
    if exercises is None:
        selected = list(found)
    else:
        selected = [str(e) for e in exercises]
        unknown = [e for e in selected if e not in found]
        if unknown:
            raise ReleaseError(f"unknown exercise(s) {', '.join(unknown)}; the source has: "
                               f"{', '.join(found) or 'no exercises'}")
    selected = sorted(set(selected), key=markers.exercise_sort_key)
    out = _prepare_out(Path(out), source, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        info = _write_release(source, staging, found, selected, fixtures)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
        out.chmod(0o755)  # mkdtemp made it private
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    info.out = out
    return info


def _write_release(source: Path, dest: Path, found: dict, selected: list, fixtures: bool) -> ReleaseInfo:
    shutil.copytree(source / markers.LIBRARY_DIR, dest / markers.LIBRARY_DIR, ignore=_ignore)
    if (source / markers.NOTEBOOK_DIR).is_dir():
        shutil.copytree(source / markers.NOTEBOOK_DIR, dest / markers.NOTEBOOK_DIR, ignore=_ignore)
    for name in TOP_LEVEL_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, dest / name)

    chosen = set(selected)
    raises = {}
    for rel, _path in markers.iter_source_files(dest):
        target = dest / rel
        if target.suffix == ".py":
            text = target.read_text(encoding="utf-8")
            regions = markers.parse_text(text, rel)
            if regions:
                new, lines = markers.transform_text(text, regions, chosen)
                markers.check_python(new, rel)
                target.write_text(new, encoding="utf-8")
                for ex, nums in lines.items():
                    raises.setdefault(ex, []).extend(f"{rel}:{n}" for n in nums)
        else:
            _release_notebook(target, rel, chosen, raises)

    _verify(dest)
    info = ReleaseInfo(dest, selected, [e for e in found if e not in chosen], raises)
    if fixtures:
        _write_fixtures(dest, found)
    _write_manifest(dest, found, chosen, raises)
    (dest / "STUDENT.md").write_text(student_md(found, selected, raises), encoding="utf-8")
    info.files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    return info


def _release_notebook(target: Path, rel: str, chosen: set, raises: dict):
    nb = markers.read_notebook(target)
    markers.parse_notebook(nb, rel)  # validates every cell first
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        # Outputs could show what a solution computed: a release ships none.
        cell["outputs"] = []
        cell["execution_count"] = None
        source = markers.cell_source(cell)
        python = markers._is_python_cell(source)
        regions = markers.parse_text(source, rel, cell=index, python=python)
        if not regions:
            continue
        new, lines = markers.transform_text(source, regions, chosen)
        if python:
            markers.check_python(new, f"{rel} cell {index}")
        cell["source"] = new.splitlines(keepends=True)
        for ex, nums in lines.items():
            raises.setdefault(ex, []).extend(f"{rel} cell {index} line {n}" for n in nums)
    target.write_text(json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n",
                      encoding="utf-8")


def _verify(dest: Path):
    """No marker anywhere, every Python file valid: fail loudly otherwise."""
    for path in sorted(dest.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(dest).as_posix()
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary files cannot hold a marker we wrote
        if markers.has_marker(text):
            line = next(i for i, ln in enumerate(text.splitlines(), 1) if markers.has_marker(ln))
            raise ReleaseError(f"{rel}:{line}: a solution marker is left in the release "
                               "(a file type the release does not process, or a marker the "
                               "grammar does not recognise); refusing to ship it")
        if path.suffix == ".py":
            markers.check_python(text, rel)


def _write_fixtures(dest: Path, found: dict):
    """Expected values of every visible check, from the reference, for ``check``."""
    import numpy as np

    from minigan.classroom import grader

    checks = grader.load_checks(hidden=False)
    targets = sorted({t for ex in found.values() for t in ex.targets})
    chks = checks.checks_for(targets, hidden=False)
    if not chks:
        return
    arrays = grader.prepare_fixtures(chks)
    (dest / FIXTURES).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(dest / FIXTURES, **arrays)


def _write_manifest(dest: Path, found: dict, chosen: set, raises: dict):
    import minigan

    manifest = {
        "format": RELEASE_FORMAT,
        "minigan_version": getattr(minigan, "__version__", "unknown"),
        "exercises": [
            {"id": ex.id, "title": ex.title, "released": ex.id in chosen, "targets": ex.targets,
             "library": ex.in_library, "where": raises.get(ex.id, [])}
            for ex in found.values()
        ],
    }
    (dest / MANIFEST).parent.mkdir(parents=True, exist_ok=True)
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def student_md(found: dict, selected: list, raises: dict) -> str:
    lines = [
        "# minigan: your assignment",
        "",
        "This is your copy of minigan. Some functions have been cut out: each one now",
        "raises `NotImplementedError(\"Exercise N.M: ...\")`. Replace that line with",
        "your code; keep the function's name, arguments and return values as its",
        "docstring describes them.",
        "",
        "## Exercises",
        "",
    ]
    if not selected:
        lines.append("None: this copy has every solution in it.")
    else:
        lines += ["| Exercise | What to implement | Where |", "|---|---|---|"]
        for ex_id in selected:
            ex = found[ex_id]
            where = ", ".join(f"`{w}`" for w in raises.get(ex_id, []))
            lines.append(f"| {ex_id} | {ex.title} | {where} |")
    notebook_only = [e for e in selected if not found[e].in_library]
    lines += [
        "",
        "## Setting up",
        "",
        "From this folder (the one that contains `minigan/` and this file):",
        "",
        "```",
        "python -m pip install -e .        # once, so the notebooks import this copy",
        "```",
        "",
        "## Checking your work",
        "",
        "```",
        "python -m minigan.classroom check               # every exercise",
        "python -m minigan.classroom check --exercises 1.2 3.2",
        "```",
        "",
        "Run it from this folder. It runs the visible checks of each exercise in a",
        "separate process and prints a table with the points and, for what fails, what",
        "is wrong: which gradient (dx, dW, db, ...) and by how much (its relative error),",
        "the expected and the received shape, or the exception your code raised and",
        "its file and line. Gradients are compared with numerical gradients (central",
        "differences in float64), so they must be exact, not just close.",
        "",
        "Your teacher grades with the same checks plus hidden ones (other shapes, edge",
        "cases, options such as weight decay), so passing `check` is necessary but not",
        "sufficient. Each exercise is graded on its own: for the others, the grader",
        "uses the reference code. When you `check`, though, an exercise that builds",
        "on another (the generator step runs through the dense layers and the loss)",
        "uses your code for both: fix the earlier one first.",
        "",
        "A few rules the checks enforce:",
        "",
        "- do not modify the inputs (`dout`, `x`, ...) in place;",
        "- float32 in gives float32 out (beware of float64 constants);",
        "- optimisers update the parameter arrays in place (`p -= ...`).",
    ]
    if notebook_only:
        lines += ["", "Exercises " + ", ".join(notebook_only)
                  + " are in the notebooks (`tutorials/`) and are not checked automatically."]
    lines += [
        "",
        "## Handing in",
        "",
        "Hand in this whole folder (zip it as it is). Do not rename files or functions.",
        "",
    ]
    return "\n".join(lines)
