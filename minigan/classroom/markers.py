"""Solution markers: find them, check them, and cut them out.

A solution region in a library file or a notebook code cell looks like this
(the marker words are spelled with a placeholder here so that this file, which
ships in every release, never contains a marker itself)::

    # <BEGIN> SOLUTION Exercise 1.2: compute dx, dW and db of the dense layer
    ...reference code...
    # <END> SOLUTION

The BEGIN line carries the exercise id ``N.M`` (any number of dot-separated
integers) and what to implement. A release replaces each selected region,
both marker lines included, by one line at the BEGIN line's indentation::

    raise NotImplementedError("Exercise 1.2: compute dx, dW and db of the dense layer")

and drops only the two marker lines of the regions it keeps. Anything that
looks like a marker but does not follow the grammar (an unbalanced, nested or
id-less marker, a marker inside a string or after code) is an error that names
the file and line: a release never guesses.

Only the standard library is used here, so ``python -m minigan.classroom
release`` works before NumPy is even imported.
"""

from __future__ import annotations

import ast
import io
import json
import re
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

from minigan.classroom.channel import AST_LOCK

_BEGIN_WORD = "BEGIN" + " SOLUTION"
_END_WORD = "END" + " SOLUTION"

# Anything that mentions a marker word after a '#': checked strictly below.
_LOOSE = re.compile(r"#.*\b(?:BEGIN|END) SOLUTION\b")
_BEGIN = re.compile(r"^(?P<indent>[ \t]*)# " + _BEGIN_WORD + r"(?P<rest>.*?)\s*$")
_END = re.compile(r"^(?P<indent>[ \t]*)# " + _END_WORD + r"\s*$")
# Library exercises are numbered N.M; tutorial exercises carry a T (T1.1, T1.2, ...).
_ID = re.compile(r"^\s+Exercise\s+(?P<id>T?\d+(?:\.\d+)*)\s*:\s*(?P<what>\S.*?)\s*$")

# Where a release looks for exercises; minigan/classroom itself never holds any.
LIBRARY_DIR = "minigan"
NOTEBOOK_DIR = "tutorials"
SKIP_DIRS = {"__pycache__", ".ipynb_checkpoints", ".git", ".hypothesis", ".pytest_cache"}


class MarkerError(ValueError):
    """A malformed, unbalanced or nested solution marker; the message names file and line."""


@dataclass
class Region:
    """One solution region: the lines from BEGIN to END, both included (1-based)."""

    exercise: str
    what: str
    path: str            # relative to the source root, with '/' separators
    begin: int           # line of the BEGIN marker (1-based, in the file or the cell)
    end: int             # line of the END marker
    indent: str
    cell: int | None = None   # notebook code cell index (0-based, among all cells)
    function: str | None = None   # qualname of the enclosing def, e.g. "Adam._update"

    @property
    def where(self) -> str:
        if self.cell is None:
            return f"{self.path}:{self.begin}"
        return f"{self.path} cell {self.cell} line {self.begin}"

    @property
    def in_library(self) -> bool:
        """In the package (minigan/...), not in a tutorial (a notebook or its percent script)."""
        return self.cell is None and self.path.startswith(LIBRARY_DIR + "/")

    @property
    def module(self) -> str | None:
        """Dotted module of a library region ("minigan.functional"), None in a tutorial."""
        if not self.in_library or not self.path.endswith(".py"):
            return None
        parts = self.path[:-3].split("/")
        if parts[-1] == "__init__":
            parts = parts[:-1]
        return ".".join(parts)

    @property
    def target(self) -> str | None:
        """What the checks of this region test: "minigan.functional.dense_backward" in the
        library, "tutorials/02_backprop::dense_tanh_backward" in a tutorial (its notebook
        and its percent script share it)."""
        if self.function is None:
            return None
        if self.module is None:
            return f"{self.path.rsplit('.', 1)[0]}::{self.function}"
        return f"{self.module}.{self.function}"


@dataclass
class Exercise:
    """All the regions that share one exercise id."""

    id: str
    regions: list = field(default_factory=list)

    @property
    def title(self) -> str:
        seen = []
        for r in self.regions:
            if r.what not in seen:
                seen.append(r.what)
        return "; ".join(seen)

    @property
    def in_library(self) -> bool:
        return any(r.in_library for r in self.regions)

    @property
    def targets(self) -> list:
        return sorted({r.target for r in self.regions if r.target})

    def sort_key(self):
        return exercise_sort_key(self.id)


def exercise_sort_key(exercise_id: str):
    """Library exercises (1.1, 1.2, ...) first, then tutorial exercises (T1.1, ...), each numerically."""
    tutorial = exercise_id.startswith("T")
    return (int(tutorial),) + tuple(int(p) for p in exercise_id.lstrip("T").split("."))


def raise_line(exercise_id: str, what: str, indent: str = "") -> str:
    """The line a release puts in place of a region (without the newline)."""
    message = f"Exercise {exercise_id}: {what}"
    literal = f'"{message}"' if ('"' not in message and "\\" not in message) else repr(message)
    return f"{indent}raise NotImplementedError({literal})"


# ----------------------------------------------------------------------------- parsing


def _comment_lines(text: str, where: str) -> set:
    """Line numbers whose comment token starts the line (after indentation)."""
    lines = set()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.COMMENT and not tok.line[: tok.start[1]].strip():
                lines.add(tok.start[0])
    except (tokenize.TokenError, IndentationError, SyntaxError) as err:
        raise MarkerError(f"{where}: cannot be tokenized ({err}); fix the source first") from None
    return lines


def parse_text(text: str, path: str, cell: int | None = None, python: bool = True) -> list:
    """The regions of one file's (or one cell's) text, checked strictly.

    ``python=False`` skips the tokenizer check (for cells with IPython magics).
    """
    where_file = path if cell is None else f"{path} cell {cell}"
    lines = text.splitlines()
    candidates = [i for i, line in enumerate(lines, 1) if _LOOSE.search(line)]
    if not candidates:
        return []
    comments = _comment_lines(text, where_file) if python else None
    regions = []
    open_region = None

    def here(lineno):
        return f"{path}:{lineno}" if cell is None else f"{path} cell {cell} line {lineno}"

    for lineno in candidates:
        line = lines[lineno - 1]
        if comments is not None and lineno not in comments:
            raise MarkerError(
                f"{here(lineno)}: a solution marker must be a comment on its own line "
                f"(found inside a string or after code): {line.strip()!r}")
        m_begin, m_end = _BEGIN.match(line), _END.match(line)
        if m_begin:
            if open_region is not None:
                raise MarkerError(
                    f"{here(lineno)}: nested solution marker: the region opened at line "
                    f"{open_region.begin} (Exercise {open_region.exercise}) is not closed yet")
            m_id = _ID.match(m_begin.group("rest"))
            if not m_id:
                raise MarkerError(
                    f"{here(lineno)}: solution marker without an exercise id; write it as "
                    f"'# {_BEGIN_WORD} Exercise N.M: what to implement' (got {line.strip()!r})")
            open_region = Region(
                exercise=m_id.group("id"), what=m_id.group("what"), path=path,
                begin=lineno, end=-1, indent=m_begin.group("indent"), cell=cell)
        elif m_end:
            if open_region is None:
                raise MarkerError(f"{here(lineno)}: '# {_END_WORD}' without a matching BEGIN")
            open_region.end = lineno
            regions.append(open_region)
            open_region = None
        else:
            raise MarkerError(
                f"{here(lineno)}: malformed solution marker {line.strip()!r}; the grammar is "
                f"'# {_BEGIN_WORD} Exercise N.M: what to implement' ... '# {_END_WORD}', "
                "each on its own line")
    if open_region is not None:
        raise MarkerError(
            f"{here(open_region.begin)}: solution region of Exercise {open_region.exercise} "
            f"is never closed (no '# {_END_WORD}' after it)")
    if python:
        _attach_functions(text, regions, where_file)
    return regions


# CPython 3.11 keeps the AST constructor's recursion counter in per-interpreter
# state: two threads parsing at once (the grader grades exercises in a thread
# pool, and the GIL can switch threads mid-construction, e.g. during a garbage
# collection) corrupt it and raise "SystemError: AST constructor recursion depth
# mismatch" (gh-106905). One lock serialises every parse, NumPy's parses of .npy
# headers (ast.literal_eval) in the grader's loads included.
_PARSE_LOCK = AST_LOCK


def parse_python(text: str) -> ast.Module:
    """``ast.parse``, safe to call from several threads at once."""
    with _PARSE_LOCK:
        return ast.parse(text)


def _attach_functions(text: str, regions: list, where: str) -> None:
    """Set ``region.function`` to the qualname of the innermost def around it."""
    try:
        tree = parse_python(text)
    except SyntaxError as err:
        raise MarkerError(f"{where}:{err.lineno}: the source is not valid Python ({err.msg})") from None
    spans = function_spans(tree)
    for r in regions:
        # The END marker may lie after the def's last statement (comments are not
        # part of the tree), so the BEGIN line decides.
        inside = [(start, end, name) for name, (start, end) in spans.items()
                  if start < r.begin <= end]
        if inside:
            r.function = max(inside)[2]  # the innermost: the latest start


def function_spans(tree) -> dict:
    """{qualname: (first line incl. decorators, last line)} for every def and class."""
    spans = {}

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = prefix + child.name
                start = min([child.lineno] + [d.lineno for d in child.decorator_list])
                spans.setdefault(name, (start, child.end_lineno))
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return spans


def _is_python_cell(source: str) -> bool:
    """False for cells with IPython syntax (magics, shell escapes) that ast cannot read."""
    for line in source.splitlines():
        s = line.lstrip()
        if s.startswith(("%", "!")) or (s.endswith("?") and not s.startswith("#")):
            return False
    return True


def cell_source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def read_notebook(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise MarkerError(f"{path}: not a readable notebook ({err})") from None


def parse_notebook(nb, path: str) -> list:
    regions = []
    for index, cell in enumerate(nb.get("cells", [])):
        source = cell_source(cell)
        if cell.get("cell_type") != "code":
            if _LOOSE.search(source):
                raise MarkerError(
                    f"{path} cell {index}: solution markers in a {cell.get('cell_type')} cell; "
                    "they are only understood in code cells")
            continue
        regions += parse_text(source, path, cell=index, python=_is_python_cell(source))
    return regions


def iter_source_files(root: Path):
    """(relative path, absolute path) of every file a release processes for markers."""
    root = Path(root)
    for top in (LIBRARY_DIR, NOTEBOOK_DIR):
        base = root / top
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            rel = path.relative_to(root)
            if any(part in SKIP_DIRS for part in rel.parts) or not path.is_file():
                continue
            if rel.parts[:2] == (LIBRARY_DIR, "classroom"):
                continue
            if path.suffix in (".py", ".ipynb"):
                yield rel.as_posix(), path


def scan(root) -> dict:
    """{exercise id: Exercise} for every marked region under ``root`` (library and notebooks).

    Raises MarkerError, naming file and line, for any malformed marker.
    """
    exercises = {}
    for rel, path in iter_source_files(Path(root)):
        if path.suffix == ".py":
            regions = parse_text(path.read_text(encoding="utf-8"), rel)
        else:
            regions = parse_notebook(read_notebook(path), rel)
        for r in regions:
            exercises.setdefault(r.exercise, Exercise(r.exercise)).regions.append(r)
    return dict(sorted(exercises.items(), key=lambda kv: exercise_sort_key(kv[0])))


# ------------------------------------------------------------------------ transforming


def transform_text(text: str, regions: list, selected) -> tuple:
    """Cut ``regions`` (parsed from ``text``) out of ``text``.

    Regions whose exercise is in ``selected`` become one ``raise
    NotImplementedError`` line; the others keep their code and lose only the
    marker lines. Returns (new text, {exercise id: [new line numbers of the raises]}).
    """
    lines = text.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    by_begin = {r.begin: r for r in regions}
    out, raises = [], {}
    i = 0
    while i < len(lines):
        r = by_begin.get(i + 1)
        if r is None:
            out.append(lines[i])
            i += 1
            continue
        if r.exercise in selected:
            out.append(raise_line(r.exercise, r.what, r.indent) + newline)
            raises.setdefault(r.exercise, []).append(len(out))
        else:
            out.extend(lines[r.begin: r.end - 1])  # the body, without the two markers
        i = r.end
    return "".join(out), raises


def check_python(text: str, where: str) -> None:
    """ast.parse, with an error naming the file and line."""
    try:
        parse_python(text)
    except SyntaxError as err:
        raise MarkerError(
            f"{where}:{err.lineno}: the released code is not valid Python ({err.msg}); is a "
            "solution region cutting a statement in two?") from None


def has_marker(text: str) -> bool:
    return _BEGIN_WORD in text or _END_WORD in text
