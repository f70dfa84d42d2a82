"""Keep the chapters' percent scripts and notebooks paired, in sync and output-free.

Each chapter is two files: ``NN_name.py``, a jupytext "percent" script (``# %%``
starts a code cell, ``# %% [markdown]`` a Markdown cell written as comments), which is
the source that is edited and reviewed; and ``NN_name.ipynb``, the notebook paired with
it, committed without outputs, which Jupyter opens and the tests execute. The pairing
and the notebook metadata that travels in the script's header (``minigan:
{needs_mnist: true}`` for chapters that read MNIST) are set in ``pyproject.toml``
under ``[tool.jupytext]``; jupytext does the conversion. What it does not do is
what this script adds: clearing outputs after a sync, and the check.

    python tutorials/_build.py sync      # after editing either side of any pair
    python tutorials/_build.py check     # pairs complete, in sync, notebooks output-free
    python tutorials/_build.py strip tutorials/*.ipynb   # clear outputs in place

Editing in Jupyter (with jupytext installed, ``pip install -e ".[docs]"``) saves both
files at once; then run ``sync`` to clear the outputs before committing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent


def chapters():
    """The chapter stems (``01_dense_layer``, ...), from both kinds of file."""
    stems = {p.stem for p in HERE.glob("[0-9][0-9]_*.ipynb")}
    stems |= {p.stem for p in HERE.glob("[0-9][0-9]_*.py")}
    return sorted(stems)


def strip_outputs(nb) -> bool:
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


def _cells(nb):
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def problems(stem: str) -> list:
    """Why a chapter's pair is not clean: a missing side, a difference, outputs."""
    import jupytext

    nb_path, py_path = HERE / f"{stem}.ipynb", HERE / f"{stem}.py"
    missing = [p.name for p in (nb_path, py_path) if not p.is_file()]
    if missing:
        return [f"{stem}: {' and '.join(missing)} missing; run python tutorials/_build.py sync"]
    found = []
    nb = nbformat.read(nb_path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and (cell.get("outputs")
                                         or cell.get("execution_count") is not None):
            found.append(f"{nb_path.name} cell {i}: has outputs or an execution count")
    script = jupytext.read(py_path)
    a, b = _cells(nb), _cells(script)
    if a != b:
        first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        found.append(f"{stem}: the notebook ({len(a)} cells) and the script ({len(b)} cells) "
                     f"differ from cell {first} on; run python tutorials/_build.py sync")
    if nb.metadata.get("minigan") != script.metadata.get("minigan"):
        found.append(f"{stem}: metadata['minigan'] differs between the notebook and the script")
    return found


def sync() -> None:
    """jupytext --sync on every pair (the newer side wins), then clear the notebooks."""
    from jupytext.cli import jupytext as jupytext_cli

    for stem in chapters():
        nb_path, py_path = HERE / f"{stem}.ipynb", HERE / f"{stem}.py"
        source = nb_path if nb_path.is_file() else py_path
        if not nb_path.is_file() or not py_path.is_file():
            jupytext_cli(["--quiet", "--set-formats", "ipynb,py:percent", str(source)])
        else:
            jupytext_cli(["--quiet", "--sync", str(source)])
        nb = nbformat.read(nb_path, as_version=4)
        if strip_outputs(nb):
            write_notebook(nb, nb_path)
        print(f"synced {stem}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("sync", help="jupytext --sync every pair, then clear notebook outputs")
    sub.add_parser("check", help="fail if a pair is incomplete, out of sync or has outputs")
    p = sub.add_parser("strip", help="remove outputs from notebooks in place")
    p.add_argument("notebooks", type=Path, nargs="+")
    args = parser.parse_args(argv)

    if args.command == "sync":
        sync()
    elif args.command == "strip":
        for path in args.notebooks:
            nb = nbformat.read(path, as_version=4)
            if strip_outputs(nb):
                write_notebook(nb, path)
                print(f"stripped {path}")
    elif args.command == "check":
        found = [msg for stem in chapters() for msg in problems(stem)]
        for msg in found:
            print(msg)
        return 1 if found else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
