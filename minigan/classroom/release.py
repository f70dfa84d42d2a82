"""Make a student copy of minigan with the selected solutions cut out.

The copy holds the ``minigan/`` package (without the hidden checks), the
tutorial notebooks, the packaging files (so ``pip install -e .`` works),
``STUDENT.md``, ``check.py`` (runs ``check`` even when a syntax error breaks
``import minigan``), ``minigan/classroom/release.json`` (the exercise list
``check`` shows) and ``minigan/classroom/fixtures.npz`` (the expected values of
the visible checks, computed from the reference, which ``check`` reads).

The teacher's copy of the manifest is written NEXT TO the release
(``OUT.manifest.json``): ``grade --manifest`` reads that one, never a file in
a submission. Exercises not selected are withheld (cut out as well, with a
message saying they come later) unless ``keep_unassigned``; the fast paths of
every cut exercise are rewritten (fastpaths.py).

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

from minigan.classroom import fastpaths, markers

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
    withheld: list = field(default_factory=list)  # not assigned: cut out too, for later
    needs: list = field(default_factory=list)     # "tutorials/04...: needs 3.2 (withheld)"
    warnings: list = field(default_factory=list)
    manifest: Path | None = None                  # the teacher's manifest, outside the release


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


def release(out, exercises=None, *, force=False, source=None, fixtures=True,
            keep_unassigned=False) -> ReleaseInfo:
    """Write a student copy to ``out``, cutting out ``exercises`` (default: all of them).

    The other exercises are withheld (cut out too, marked as not assigned yet)
    unless ``keep_unassigned``. ``exercises=[]`` cuts out none and keeps every
    solution (a copy that must score full points). Raises ReleaseError or
    MarkerError with a clear message.
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
    withheld = [] if keep_unassigned or not selected else [e for e in found if e not in selected]
    out = _prepare_out(Path(out), source, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        info = _write_release(source, staging, found, selected, withheld, fixtures)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
        out.chmod(0o755)  # mkdtemp made it private
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    info.out = out
    info.manifest = out.parent / f"{out.name}.manifest.json"
    info.manifest.write_text((out / MANIFEST).read_text(encoding="utf-8"), encoding="utf-8")
    info.warnings = (unrecognised_files(source) + solution_echoes(out, source, found, info)
                     + lookalike_functions(out, found, info))
    return info


def _write_release(source: Path, dest: Path, found: dict, selected: list, withheld: list,
                   fixtures: bool) -> ReleaseInfo:
    shutil.copytree(source / markers.LIBRARY_DIR, dest / markers.LIBRARY_DIR, ignore=_ignore)
    if (source / markers.NOTEBOOK_DIR).is_dir():
        shutil.copytree(source / markers.NOTEBOOK_DIR, dest / markers.NOTEBOOK_DIR, ignore=_ignore)
    for name in TOP_LEVEL_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, dest / name)

    chosen = set(selected)
    cut = chosen | set(withheld)
    raises = {}
    for rel, _path in markers.iter_source_files(dest):
        target = dest / rel
        if target.suffix == ".py":
            text = target.read_text(encoding="utf-8")
            regions = [_later(r) if r.exercise in withheld else r for r in markers.parse_text(text, rel)]
            new = text
            if regions:
                new, lines = markers.transform_text(text, regions, cut)
                for ex, nums in lines.items():
                    raises.setdefault(ex, []).extend(f"{rel}:{n}" for n in nums)
            new = fastpaths.strip(rel, new, cut)
            if new != text:
                markers.check_python(new, rel)
                target.write_text(new, encoding="utf-8")
        else:
            _release_notebook(target, rel, cut, raises, withheld)

    _verify(dest)
    info = ReleaseInfo(dest, selected, [e for e in found if e not in cut], raises, withheld=withheld)
    info.needs = tutorial_needs(source, found, withheld)
    if fixtures:
        _write_fixtures(dest, found, chosen)
    _write_manifest(dest, found, chosen, raises, withheld)
    (dest / "check.py").write_text(CHECK_PY, encoding="utf-8")
    (dest / "STUDENT.md").write_text(student_md(found, selected, raises, withheld, info.needs),
                                     encoding="utf-8")
    info.files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    return info


def _later(region):
    """A withheld region: its raise says the exercise comes in a later release."""
    import dataclasses

    return dataclasses.replace(region, what=region.what + " (not assigned yet: a later release has it)")


def _release_notebook(target: Path, rel: str, chosen: set, raises: dict, withheld=()):
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
        regions = [_later(r) if r.exercise in withheld else r
                   for r in markers.parse_text(source, rel, cell=index, python=python)]
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


def _write_fixtures(dest: Path, found: dict, chosen: set):
    """Inputs and expected values of the released exercises' visible checks, for ``check``.

    Drawn with salt 0; ``grade`` draws fresh inputs, so these answers are worth nothing there.
    """
    import numpy as np

    from minigan.classroom import grader

    checks = grader.load_checks(hidden=False)
    targets = sorted({t for ex in found.values() if ex.id in chosen for t in ex.targets})
    chks = checks.checks_for(targets, hidden=False)
    if not chks:
        return
    fixtures = grader.prepare_fixtures(chks, salt=0)
    arrays = {f"{key}__{k}": v for key, fx in fixtures.items() for k, v in fx.items()}
    (dest / FIXTURES).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(dest / FIXTURES, **arrays)


def _write_manifest(dest: Path, found: dict, chosen: set, raises: dict, withheld=()):
    import minigan

    manifest = {
        "format": RELEASE_FORMAT,
        "minigan_version": getattr(minigan, "__version__", "unknown"),
        "exercises": [
            {"id": ex.id, "title": ex.title, "released": ex.id in chosen, "targets": ex.targets,
             "library": ex.in_library, "withheld": ex.id in withheld,
             "where": raises.get(ex.id, [])}
            for ex in found.values()
        ],
    }
    (dest / MANIFEST).parent.mkdir(parents=True, exist_ok=True)
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


CHECK_PY = '''"""Run the visible checks of this copy: `python check.py [--exercises 1.2 ...]`.

Unlike `python -m minigan.classroom check`, this works even when a syntax error
in one of your files breaks `import minigan`: the checks import each module on
its own, so only the exercises that need the broken file fail.
"""
import os
import sys
import types

root = os.path.dirname(os.path.abspath(__file__))
package = types.ModuleType("minigan")  # the package, without running minigan/__init__.py
package.__path__ = [os.path.join(root, "minigan")]
package.__file__ = os.path.join(root, "minigan", "__init__.py")
sys.modules["minigan"] = package
sys.path.insert(0, root)

from minigan.classroom.__main__ import main  # noqa: E402

sys.exit(main(["check", root] + sys.argv[1:]))
'''


def tutorial_needs(source: Path, found: dict, withheld) -> list:
    """'tutorials/04_x.ipynb uses Adam (Exercise 3.2, withheld)' for each tutorial that calls
    a withheld exercise's function or class by name (a textual search: a guide, not a proof)."""
    import re

    needs = []
    for nb_path in sorted((source / markers.NOTEBOOK_DIR).glob("*.ipynb")):
        nb = markers.read_notebook(nb_path)
        code = "\n".join(markers.cell_source(c) for c in nb.get("cells", [])
                         if c.get("cell_type") == "code")
        used = []
        for ex_id in withheld:
            for target in found[ex_id].targets:
                parts = target.split(".")
                name = parts[-2] if parts[-1].startswith("_") else parts[-1]  # Adam._update -> Adam
                if re.search(r"\b" + re.escape(name) + r"\b", code):
                    used.append(f"{name} (Exercise {ex_id})")
                    break
        if used:
            needs.append(f"{nb_path.relative_to(source).as_posix()} uses {', '.join(used)}, withheld")
    return needs


def unrecognised_files(source: Path) -> list:
    """Files under minigan/ and tutorials/ that git does not track: a teacher's notes or
    answers would ship with the release, so say so (nothing is said without git)."""
    import subprocess

    try:
        proc = subprocess.run(["git", "-C", str(source), "ls-files", "--others", "--exclude-standard",
                               "--", markers.LIBRARY_DIR, markers.NOTEBOOK_DIR],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return []
    if proc.returncode != 0:
        return []
    return [f"{name}: not tracked by git, shipped as it is; is it meant for students?"
            for name in proc.stdout.splitlines()
            if name and not any(part in SKIP_WARN for part in Path(name).parts)]


SKIP_WARN = {"__pycache__", ".ipynb_checkpoints"}


def solution_echoes(dest: Path, source: Path, found: dict, info: ReleaseInfo) -> list:
    """Two consecutive lines of a cut exercise's reference solution that still appear in the
    release (a copy in a docstring, a tutorial cell without markers): each is a warning.
    Pairs, not single lines, so that a common line (``xp = array_module(x)``) is not flagged;
    and not two block headers (``for i in range(kH):`` over ``for j in range(kW):``, which
    col2im shares with im2col): a loop over the kernel gives away nothing of what it does."""
    cut = set(info.released) | set(info.withheld)
    pairs = {}
    for ex in found.values():
        for r in ex.regions if ex.id in cut else ():
            text = _region_text(source, r)
            body = [" ".join(ln.split()) for ln in text.splitlines()]
            body = [ln for ln in body if len(ln) >= 12 and not ln.startswith("#")]
            for first, second in zip(body, body[1:]):
                if not (first.endswith(":") and second.endswith(":")):
                    pairs.setdefault(f"{first} {second}", ex.id)
    warnings = []
    for path in sorted(dest.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".ipynb", ".md"):
            text = " ".join(_code_text(path).split())
            rel = path.relative_to(dest).as_posix()
            warnings += [f"{rel}: still holds two lines of Exercise {ex_id}'s solution: {pair[:70]!r}"
                         for pair, ex_id in pairs.items() if pair in text]
    return warnings


def lookalike_functions(dest: Path, found: dict, info: ReleaseInfo) -> list:
    """Tutorial functions named like a cut exercise's function (``my_dense_backward`` when
    1.2 ``dense_backward`` is cut) that a release left whole: they may spell out the answer."""
    import ast

    names = {}
    for ex_id in set(info.released) | set(info.withheld):
        for target in found[ex_id].targets:
            if "::" not in target and not target.split(".")[-1].startswith("_"):
                names[target.split(".")[-1]] = ex_id
    warnings = []
    for nb_path in sorted((dest / markers.NOTEBOOK_DIR).glob("*.ipynb")):
        cells = markers.read_notebook(nb_path).get("cells", [])
        for index, cell in enumerate(cells):
            src = markers.cell_source(cell)
            if cell.get("cell_type") != "code" or "NotImplementedError" in src:
                continue
            try:
                tree = markers.parse_python(src)
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                hit = isinstance(node, ast.FunctionDef) and next(
                    (n for n in names if n in node.name and node.name != n), None)
                if hit:
                    warnings.append(f"{nb_path.relative_to(dest).as_posix()} cell {index}: "
                                    f"{node.name}() looks like Exercise {names[hit]} ({hit}) and is "
                                    "not in a solution region: mark it with that id, or check it "
                                    "gives nothing away")
    return warnings


def _region_text(source: Path, region) -> str:
    if region.cell is None:
        lines = (source / region.path).read_text(encoding="utf-8").splitlines()
    else:
        nb = markers.read_notebook(source / region.path)
        lines = markers.cell_source(nb["cells"][region.cell]).splitlines()
    return "\n".join(lines[region.begin: region.end - 1])


def _code_text(path: Path) -> str:
    if path.suffix == ".ipynb":
        nb = markers.read_notebook(path)
        return "\n".join(markers.cell_source(c) for c in nb.get("cells", []))
    return path.read_text(encoding="utf-8", errors="replace")


def student_md(found: dict, selected: list, raises: dict, withheld=(), needs=()) -> str:
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
        "python check.py                  # every exercise",
        "python check.py --exercises 1.2 3.2",
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
        "sufficient, and it draws new inputs, so only code that computes the answer",
        "passes. An exercise that builds on another (the generator step runs through",
        "the dense layers and the loss) runs through your code for both; when the",
        "earlier one fails its own checks, grading tries the later one again with the",
        "reference code there, and your feedback says so. `check` cannot: fix the",
        "earlier one first. A syntax error in one file costs only the exercises that",
        "import that file; `python check.py` lists such files in a table.",
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
    if withheld:
        lines += ["", "## Not assigned yet", "",
                  "The solutions of exercises " + ", ".join(withheld) + " come with a later "
                  "release; until then they raise NotImplementedError. Tutorials that need them:"]
        lines += [f"- {n}" for n in needs] or ["- none"]
    lines += [
        "",
        "## Handing in",
        "",
        "Hand in this whole folder (zip it as it is). Do not rename files or functions.",
        "",
    ]
    return "\n".join(lines)
