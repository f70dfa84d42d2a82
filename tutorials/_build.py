"""Build tutorial notebooks from plain Python scripts, and back.

The chapters are edited as "percent" scripts (the format jupytext and VS Code
understand): a line ``# %%`` starts a code cell, ``# %% [markdown]`` starts a
Markdown cell whose lines are comments (``# `` is stripped). An optional first
line ``# minigan: {...}`` (JSON) becomes the notebook's ``metadata["minigan"]``,
which the tests read (``{"needs_mnist": true}`` for chapters that read MNIST).

    python tutorials/_build.py export tutorials/01_dense_layer.ipynb -o /tmp/01.py
    ... edit /tmp/01.py ...
    python tutorials/_build.py build /tmp/01.py -o tutorials/01_dense_layer.ipynb
    python tutorials/_build.py check            # committed notebooks carry no outputs
    python tutorials/_build.py strip tutorials/*.ipynb   # remove outputs in place

The notebook is the file that is committed; the script is only a convenient
form to edit it in. Built notebooks have no outputs, ``execution_count`` None
and cell ids numbered in order, so rebuilding an unchanged script gives the
same bytes. Needs nbformat (``pip install -e ".[test]"``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
META_PREFIX = "# minigan:"
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def _strip_comment(line: str) -> str:
    if line.startswith("# "):
        return line[2:]
    if line.rstrip() == "#":
        return ""
    raise ValueError(f"markdown lines must start with '# ' (or be '#'), got {line!r}")


def _trim(lines):
    while lines and not lines[0].strip():
        lines = lines[1:]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


def parse_script(text: str):
    """(metadata dict, [(kind, source)]) from a percent script."""
    lines = text.splitlines()
    meta = {}
    if lines and lines[0].startswith(META_PREFIX):
        meta = json.loads(lines[0][len(META_PREFIX):])
        lines = lines[1:]
    cells, kind, body = [], None, []

    def flush():
        if kind is None:
            if any(line.strip() for line in body):
                raise ValueError("text before the first '# %%' cell marker")
            return
        src = _trim(body)
        if kind == "markdown":
            src = [_strip_comment(line) for line in src]
        cells.append((kind, "\n".join(src)))

    for line in lines:
        if line.startswith("# %%"):
            flush()
            tag = line[4:].strip()
            if tag not in ("", "[markdown]"):
                raise ValueError(f"unknown cell marker {line!r}: use '# %%' or '# %% [markdown]'")
            kind, body = ("markdown" if tag else "code"), []
        else:
            body.append(line)
    flush()
    return meta, cells


def to_notebook(text: str):
    """An nbformat v4 notebook (no outputs) from a percent script."""
    meta, cells = parse_script(text)
    nb = nbformat.v4.new_notebook()
    for i, (kind, src) in enumerate(cells):
        if kind == "code":
            cell = nbformat.v4.new_code_cell(src)
        else:
            cell = nbformat.v4.new_markdown_cell(src)
        cell["id"] = f"cell-{i:03d}"
        nb.cells.append(cell)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    if meta:
        nb.metadata["minigan"] = meta
    nbformat.validate(nb)
    return nb


def to_script(nb) -> str:
    """The percent script of a notebook (outputs are dropped)."""
    out = []
    meta = nb.metadata.get("minigan")
    if meta:
        out.append(META_PREFIX + " " + json.dumps(meta, sort_keys=True))
    for cell in nb.cells:
        src = cell.source
        if cell.cell_type == "markdown":
            out.append("# %% [markdown]")
            out.extend(("# " + line) if line else "#" for line in src.splitlines())
        else:
            out.append("# %%")
            out.extend(src.splitlines())
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def strip_outputs(nb):
    """Remove outputs and execution counts in place; returns whether anything changed."""
    changed = False
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if cell.get("outputs") or cell.get("execution_count") is not None:
            changed = True
        cell["outputs"] = []
        cell["execution_count"] = None
        for key in ("execution", "collapsed", "scrolled"):
            if cell.metadata.pop(key, None) is not None:
                changed = True
    return changed


def write_notebook(nb, path: Path) -> None:
    text = nbformat.writes(nb)
    Path(path).write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")


def problems(path: Path) -> list:
    """Why a committed notebook is not clean: outputs, execution counts."""
    nb = nbformat.read(path, as_version=4)
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if cell.get("outputs"):
            found.append(f"{path.name} cell {i}: has outputs")
        if cell.get("execution_count") is not None:
            found.append(f"{path.name} cell {i}: execution_count is {cell.execution_count}")
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("build", help="percent script -> notebook without outputs")
    p.add_argument("script", type=Path)
    p.add_argument("-o", "--output", type=Path, help="default: tutorials/<script stem>.ipynb")
    p = sub.add_parser("export", help="notebook -> percent script")
    p.add_argument("notebook", type=Path)
    p.add_argument("-o", "--output", type=Path, help="default: print to stdout")
    p = sub.add_parser("strip", help="remove outputs from notebooks in place")
    p.add_argument("notebooks", type=Path, nargs="+")
    sub.add_parser("check", help="fail if a notebook in tutorials/ has outputs")
    args = parser.parse_args(argv)

    if args.command == "build":
        nb = to_notebook(args.script.read_text(encoding="utf-8"))
        out = args.output or HERE / (args.script.stem + ".ipynb")
        write_notebook(nb, out)
        print(f"wrote {out} ({len(nb.cells)} cells)")
    elif args.command == "export":
        text = to_script(nbformat.read(args.notebook, as_version=4))
        if args.output:
            args.output.write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
    elif args.command == "strip":
        for path in args.notebooks:
            nb = nbformat.read(path, as_version=4)
            if strip_outputs(nb):
                write_notebook(nb, path)
                print(f"stripped {path}")
    elif args.command == "check":
        found = [msg for path in sorted(HERE.glob("*.ipynb")) for msg in problems(path)]
        for msg in found:
            print(msg)
        return 1 if found else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
