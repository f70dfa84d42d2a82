"""Shared test configuration: backends, hypothesis profile, environment.

Backends
    Tests that take the ``backend`` fixture (the name, "numpy" or "cupy") or the
    ``xp`` fixture (the array module) run once per backend, from ONE test body.
    By default both are collected and the CuPy cases are skipped, with the
    reason, where CuPy is not installed or sees no GPU. To make CuPy the only,
    required backend (a GPU machine running the whole suite on it):

        MINIGAN_TEST_BACKEND=cupy python -m pytest          # or --backend=cupy

    Then a missing CuPy or GPU is an error, never a skip. ``numpy`` selects
    NumPy only; ``all`` (the default) both.

Hypothesis
    The "minigan" profile (the default) has no deadline (the suite shares two
    cores with other work) and a modest number of examples; choose another
    with HYPOTHESIS_PROFILE=thorough (more examples) or HYPOTHESIS_PROFILE=ci.

Data
    Real-data tests read $MINIGAN_DATA_DIR. It is never set here, even where
    ../shared/data exists: unset, those tests skip and say how to get the data
    (``MNIST_HOWTO``). CI sets MINIGAN_DATA_DIR=../shared/data.

Skip reasons
    The CuPy case of every backend-generic test skips for the same reason where
    there is no CuPy or GPU, and every real-data test for the same reason where
    MINIGAN_DATA_DIR is unset: ``pytest_runtest_makereport`` files each family under
    one place and one reason, so ``-ra`` prints one line for each, with the count.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

# Before anything can import matplotlib: no window, no display needed.
os.environ.setdefault("MPLBACKEND", "Agg")
# Before NumPy loads its BLAS: tests check correctness, not speed. One BLAS
# thread per process keeps runs repeatable and avoids oversubscription when a
# test starts subprocesses (the CLI, notebooks, the grader) or the machine is
# busy, where OpenBLAS's spinning threads can make GEMMs 10x slower.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

import minigan.backend as mb  # noqa: E402

# ----------------------------------------------------------------- hypothesis

_health = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
           HealthCheck.data_too_large]
settings.register_profile("minigan", deadline=None, max_examples=30,
                          suppress_health_check=_health, print_blob=True)
settings.register_profile("ci", deadline=None, max_examples=30, derandomize=True,
                          suppress_health_check=_health, print_blob=True)
settings.register_profile("thorough", deadline=None, max_examples=300,
                          suppress_health_check=_health, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "minigan"))

# -------------------------------------------------------------------- backends

_BACKEND_CHOICES = ("all", "numpy", "cupy")
REPO_ROOT = Path(__file__).resolve().parent.parent


def pytest_addoption(parser):
    parser.addoption(
        "--backend", action="store", default=None, choices=_BACKEND_CHOICES,
        help="array backends for the tests that take the `backend`/`xp` fixture: "
             "'all' (default; CuPy cases skip without CuPy or a GPU), 'numpy', or "
             "'cupy' (CuPy only and required: no GPU is an error). "
             "Overrides $MINIGAN_TEST_BACKEND.")


def _selected(config):
    """('numpy', 'cupy') etc., and whether CuPy is required rather than optional."""
    choice = config.getoption("--backend") or os.environ.get("MINIGAN_TEST_BACKEND", "all")
    choice = choice.strip().lower() or "all"
    if choice not in _BACKEND_CHOICES:
        raise pytest.UsageError(
            f"MINIGAN_TEST_BACKEND={choice!r}: expected one of {_BACKEND_CHOICES}")
    if choice == "all":
        return ("numpy", "cupy"), False
    return (choice,), choice == "cupy"


def cupy_unavailable_reason():
    """None when CuPy works here, else why not (the backend's own message)."""
    try:
        mb._import_cupy()
    except RuntimeError as err:
        return str(err)
    return None


MNIST_HOWTO = (
    "to get MNIST, run `python -c \"from minigan.data import fetch_files; "
    "fetch_files('mnist'); fetch_files('fashion-mnist')\"` once (it downloads and checks "
    "the original files into ~/.cache/minigan), then set MINIGAN_DATA_DIR=~/.cache/minigan; "
    "or point MINIGAN_DATA_DIR at a folder holding mnist/ and fashion-mnist/ with the "
    "original gzip files")


def pytest_report_header(config):
    names, required = _selected(config)
    reason = cupy_unavailable_reason()
    lines = [f"minigan backends under test: {', '.join(names)}"
             + (" (CuPy required)" if required else "")]
    if "cupy" in names:
        lines.append("CuPy: available" if reason is None else f"CuPy: unavailable: {reason}")
    if not os.environ.get("MINIGAN_DATA_DIR"):
        shared = REPO_ROOT.parent / "shared" / "data"
        hint = (f"; {shared} exists: set MINIGAN_DATA_DIR=../shared/data to run them"
                if shared.is_dir() else "")
        lines.append(f"MINIGAN_DATA_DIR is not set: real-data tests will skip{hint}")
        if not hint:
            lines.append(MNIST_HOWTO[0].upper() + MNIST_HOWTO[1:])
    return lines


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "backends(*names): run this test only on these backends "
        "(e.g. backends('cupy') for a check that needs two kinds of array)")


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames:
        names, _ = _selected(metafunc.config)
        only = metafunc.definition.get_closest_marker("backends")
        if only is not None:
            names = tuple(n for n in names if n in only.args)
        metafunc.parametrize("backend", names, indirect=True)


@functools.lru_cache(maxsize=None)
def _line_of(text):
    """The line of this file that starts with ``text`` (where a collapsed skip points)."""
    lines = Path(__file__).read_text(encoding="utf-8").splitlines()
    return next((i for i, line in enumerate(lines, 1) if line.startswith(text)), 0)


_CUPY_SKIP = "CuPy backend unavailable: "
_NO_DATA_DIR = "MINIGAN_DATA_DIR is not set"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """One place and one reason per family of identical skips (see "Skip reasons")."""
    outcome = yield
    report = outcome.get_result()
    if not (report.skipped and isinstance(report.longrepr, tuple)
            and len(report.longrepr) == 3):
        return
    reason = str(report.longrepr[2])
    if _CUPY_SKIP in reason:
        report.longrepr = (__file__, _line_of("def backend("),
                           "the CuPy case of each backend-generic test: "
                           + reason[reason.index(_CUPY_SKIP):])
    elif _NO_DATA_DIR in reason:
        report.longrepr = (__file__, _line_of("MNIST_HOWTO = ("),
                           f"real-data tests: {_NO_DATA_DIR}; {MNIST_HOWTO}")


@pytest.fixture
def backend(request):
    """The backend name for this case; minigan.use() is set to it for the test."""
    name = request.param
    if name == "cupy":
        reason = cupy_unavailable_reason()
        if reason is not None:
            _, required = _selected(request.config)
            if required:
                pytest.fail(f"MINIGAN_TEST_BACKEND=cupy (or --backend=cupy) requires CuPy "
                            f"and a GPU, but: {reason}", pytrace=False)
            pytest.skip(f"CuPy backend unavailable: {reason}")
    saved = dict(mb._state)
    mb.use(name)
    try:
        yield name
    finally:
        mb._state.update(saved)


@pytest.fixture
def xp(backend):
    """The array module (numpy or cupy) of this case's backend."""
    return mb.backend_module(backend)


@pytest.fixture
def dev(backend):
    """``dev(a)``: a NumPy array (or anything np.asarray takes) placed on this case's backend."""
    def place(a, dtype=None):
        a = np.asarray(a) if dtype is None else np.asarray(a, dtype=dtype)
        return mb.to_device(a, backend)
    return place


@pytest.fixture(autouse=True)
def ctrl_c_raises_keyboard_interrupt():
    """Ctrl-C is KeyboardInterrupt in every test, as at a terminal.

    A shell without job control starts background commands (``pytest &``) with
    SIGINT ignored, and Python then installs no handler: the tests of Ctrl-C
    would fail for a reason that has nothing to do with minigan.
    """
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
