"""Every tutorial chapter runs top to bottom, in quick mode, and its two files agree.

Each ``tutorials/*.ipynb`` is one test case, named after its file, so a new
chapter is picked up without touching this file. The kernel runs with
``MINIGAN_QUICK=1`` (every chapter shrinks its training), in a temporary
directory (a notebook that writes files writes them there, never into the
repository), within a time budget per notebook: ``QUICK_TIMEOUT_S`` seconds,
or ``metadata["minigan"]["quick_timeout"]`` of the notebook.

A chapter that reads MNIST says so with ``metadata["minigan"]["needs_mnist"] =
true``; it is skipped, with the reason and how to get the data, unless
``$MINIGAN_DATA_DIR`` points at a folder holding the four MNIST files.

Each chapter is a jupytext percent script paired with its notebook
(``tutorials/_build.py``): both must exist and hold the same cells (checked where
jupytext is installed), and the committed notebooks must carry no outputs.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="needs nbformat: pip install -e '.[test]'")
nbclient = pytest.importorskip("nbclient", reason="needs nbclient: pip install -e '.[test]'")

from conftest import MNIST_HOWTO  # noqa: E402

from minigan.data.mnist import FILES  # noqa: E402

TUTORIALS = Path(__file__).resolve().parent.parent / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))
QUICK_TIMEOUT_S = 240  # per notebook, the whole of it, on a busy 2-core machine
KERNEL = "python3"


def _ids(paths):
    return [p.name for p in paths]


def _mnist_missing_reason():
    """None when $MINIGAN_DATA_DIR holds the MNIST files, else why the chapter must skip."""
    data_dir = os.environ.get("MINIGAN_DATA_DIR")
    if not data_dir:
        return f"needs MNIST, and MINIGAN_DATA_DIR is not set: {MNIST_HOWTO}"
    folder = Path(data_dir).expanduser().resolve() / "mnist"
    missing = [name for name in FILES["mnist"] if not (folder / name).is_file()]
    if missing:
        return f"needs MNIST: {folder} lacks {', '.join(missing)}; {MNIST_HOWTO}"
    return None


def _minigan_meta(nb):
    return nb.metadata.get("minigan", {})


def test_there_are_tutorials():
    assert NOTEBOOKS, f"no notebooks found in {TUTORIALS}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
             and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not dirty, (f"{path.name}: code cells {dirty} carry outputs or execution counts; "
                       "clear them (python tutorials/_build.py strip tutorials/*.ipynb)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_paired_with_its_percent_script(path):
    """The notebook and its jupytext script hold the same cells and metadata."""
    script = path.with_suffix(".py")
    assert script.is_file(), (f"{path.name} has no percent script {script.name}: "
                              "run python tutorials/_build.py sync")
    pytest.importorskip("jupytext", reason="comparing the pair needs jupytext: "
                                           "pip install -e '.[docs]'")
    import importlib.util

    spec = importlib.util.spec_from_file_location("_tutorial_build", TUTORIALS / "_build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    problems = build.problems(path.stem)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_imports_installed_package(path):
    """No sys.path tricks: the chapters import the installed minigan."""
    nb = nbformat.read(path, as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "sys.path" not in code, f"{path.name} changes sys.path; import the installed package"


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_tutorial_runs_in_quick_mode(path, tmp_path, monkeypatch):
    nb = nbformat.read(path, as_version=4)
    meta = _minigan_meta(nb)
    if meta.get("needs_mnist"):
        reason = _mnist_missing_reason()
        if reason:
            pytest.skip(f"{path.name} {reason}")
        # The kernel runs elsewhere: hand it an absolute path.
        monkeypatch.setenv("MINIGAN_DATA_DIR",
                           str(Path(os.environ["MINIGAN_DATA_DIR"]).expanduser().resolve()))
    monkeypatch.setenv("MINIGAN_QUICK", "1")
    # Figures go to the notebook's inline backend, as for a reader (conftest sets Agg).
    monkeypatch.delenv("MPLBACKEND", raising=False)
    # Caches (e.g. a trained classifier) go to the temporary folder, not the user's.
    monkeypatch.setenv("MINIGAN_CACHE_DIR", str(tmp_path / "cache"))
    # Quick mode multiplies small matrices: one BLAS thread each avoids
    # oversubscribing the cores when other work runs beside the tests.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(var, os.environ.get(var, "1"))

    budget = float(meta.get("quick_timeout", QUICK_TIMEOUT_S))
    client = nbclient.NotebookClient(
        nb, kernel_name=KERNEL, timeout=budget, allow_errors=False,
        resources={"metadata": {"path": str(tmp_path)}})
    deadline = time.monotonic() + budget
    problem = None
    with client.setup_kernel(cwd=str(tmp_path)):
        for index, cell in enumerate(nb.cells):
            left = deadline - time.monotonic()
            if left <= 0:
                problem = (f"{path.name} ran past its quick-mode budget of {budget:.0f} s "
                           f"before cell {index}")
                break
            client.timeout = max(1, int(left))
            try:
                client.execute_cell(cell, index)
            except nbclient.exceptions.CellTimeoutError:
                problem = (f"{path.name} ran past its quick-mode budget of {budget:.0f} s "
                           f"in cell {index}:\n{cell.source[:500]}")
                break
            except nbclient.exceptions.CellExecutionError as err:
                problem = f"{path.name} failed in cell {index}:\n{err}"
                break
    if problem:
        pytest.fail(problem, pytrace=False)
