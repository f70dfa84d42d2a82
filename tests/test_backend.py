"""minigan.backend: choosing NumPy or CuPy, moving arrays, seeds, and the errors
that say how to fix a missing CuPy or GPU. Also the test suite's own backend switch."""

import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import minigan
import minigan.backend as mb
from minigan import Dense, Dropout, to_device, to_numpy


@pytest.fixture
def fresh_state(monkeypatch):
    """Run with minigan's backend and generator unset; restored afterwards."""
    monkeypatch.setattr(mb, "_state", {"backend": None, "rng": None})
    monkeypatch.delenv("MINIGAN_BACKEND", raising=False)
    return mb._state


@pytest.fixture
def no_cupy(monkeypatch, fresh_state):
    """`import cupy` fails, as on a machine without it (installed or not here)."""
    monkeypatch.setitem(sys.modules, "cupy", None)


# ----------------------------------------------------------------- choosing


def test_default_backend_is_numpy(fresh_state):
    assert mb.get_backend() == "numpy"
    assert isinstance(Dense(2, 3).params["W"], np.ndarray)


def test_use_accepts_names_case_insensitively(fresh_state):
    minigan.use("NumPy")
    assert mb.get_backend() == "numpy"


def test_unknown_backend_name(fresh_state, monkeypatch):
    with pytest.raises(ValueError, match=r"Unknown backend 'tensorflow': expected one of \('numpy', 'cupy'\)"):
        minigan.use("tensorflow")
    with pytest.raises(ValueError, match="Unknown backend 'jax'"):
        to_device(np.ones(2), "jax")
    monkeypatch.setenv("MINIGAN_BACKEND", "torch")
    with pytest.raises(ValueError, match="Unknown backend 'torch'"):
        mb.get_backend()


def test_env_variable_chooses_the_backend(fresh_state, monkeypatch):
    monkeypatch.setenv("MINIGAN_BACKEND", "numpy")
    assert mb.get_backend() == "numpy"


def test_cupy_not_installed_says_how_to_install(no_cupy, monkeypatch):
    hint = r"needs CuPy, which is not installed.*pip install \"minigan\[gpu\]\".*cupy-cuda13x"
    with pytest.raises(RuntimeError, match=hint):
        minigan.use("cupy")
    assert mb.get_backend() == "numpy"  # a failed use() changes nothing
    with pytest.raises(RuntimeError, match=hint):
        to_device(np.ones(3), "cupy")
    with pytest.raises(RuntimeError, match=hint):
        Dense(2, 2, backend="cupy")
    assert mb.cupy_available() is False
    monkeypatch.setenv("MINIGAN_BACKEND", "cupy")
    mb._state["backend"] = None
    with pytest.raises(RuntimeError, match=hint):
        mb.get_backend()


def _fake_cupy(device_count):
    fake = types.ModuleType("cupy")

    def get_device_count():
        if isinstance(device_count, Exception):
            raise device_count
        return device_count

    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=get_device_count))
    return fake


def test_cupy_without_a_gpu_says_so(fresh_state, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(0))
    with pytest.raises(RuntimeError, match=r"no GPU is visible \(0 CUDA devices\).*CUDA_VISIBLE_DEVICES"):
        minigan.use("cupy")
    assert mb.cupy_available() is False
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(OSError("libcuda.so.1: cannot open")))
    with pytest.raises(RuntimeError, match=r"cannot reach a GPU \(OSError: libcuda\.so\.1.*nvidia-smi"):
        minigan.use("cupy")


# ------------------------------------------------------------- array modules


class _FakeCupyArray:
    """Looks like a CuPy array to array_module (which reads the type's module only)."""
    __module__ = "cupy._core.core"
    shape = (2, 3)


_FakeCupyArray.__name__ = "ndarray"


def test_array_module_and_mixing_message(xp, dev):
    a = dev(np.ones(3))
    assert mb.array_module(a) is xp
    assert mb.array_module(a, None, a) is xp
    assert mb.array_module(np.ones(2)) is np
    with pytest.raises(ValueError, match=r"different backends.*numpy\.ndarray\(4,\).*cupy\._core\.core\.ndarray\(2, 3\)"
                                         r".*minigan\.to_device"):
        mb.array_module(np.ones(4), _FakeCupyArray())


@pytest.mark.backends("cupy")
def test_mixing_real_numpy_and_cupy_arrays(backend):
    import cupy
    with pytest.raises(ValueError, match=r"numpy\.ndarray.*cupy.*ndarray"):
        mb.array_module(np.ones(2), cupy.ones(2))
    layer = Dense(3, 2, backend="cupy")
    with pytest.raises(ValueError, match="different backends"):
        layer(np.ones((4, 3), np.float32))
    from minigan import functional as F
    with pytest.raises(ValueError, match="different backends"):
        F.bce_with_logits(cupy.zeros((2, 1), cupy.float32), np.zeros((2, 1), np.float32))


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64"])
def test_to_device_and_to_numpy_round_trip(backend, xp, dtype):
    a = np.arange(12, dtype=dtype).reshape(3, 4) / (3 if dtype != "int64" else 1)
    a = a.astype(dtype)
    on = to_device(a, backend)
    assert isinstance(on, xp.ndarray) and on.dtype == a.dtype
    back = to_numpy(on)
    assert isinstance(back, np.ndarray)
    np.testing.assert_array_equal(back, a)
    assert mb.backend_of(on) == backend
    assert to_device(a).dtype == a.dtype  # the current backend (set by the fixture)
    assert mb.backend_of(to_device(a)) == backend


def test_use_decides_where_new_parameters_go(backend, xp):
    minigan.use(backend)
    layer = Dense(2, 3)
    assert layer.backend == backend and isinstance(layer.params["W"], xp.ndarray)
    assert isinstance(layer.grads["W"], xp.ndarray)


def test_check_array_messages():
    with pytest.raises(TypeError, match="x must be a NumPy or CuPy array, got list.*np.asarray"):
        mb.check_array([1.0], "x")
    with pytest.raises(TypeError, match="x must have a floating dtype.*got int32.*astype"):
        mb.check_array(np.ones(2, np.int32), "x")
    a = np.ones(2, np.float32)
    assert mb.check_array(a) is a


# ------------------------------------------------------------------ randomness


def test_seed_makes_runs_repeat(fresh_state):
    x = np.ones((50, 4), np.float32)

    def run():
        layer = Dense(4, 3)  # initialised from minigan's default generator
        mask = Dropout(0.5)(x) == 0
        return layer.params["W"].copy(), mask

    minigan.seed(123)
    W1, m1 = run()
    minigan.seed(123)
    W2, m2 = run()
    np.testing.assert_array_equal(W1, W2)
    np.testing.assert_array_equal(m1, m2)
    minigan.seed(124)
    W3, _ = run()
    assert not np.array_equal(W1, W3)
    assert mb.rng() is mb.rng()


def test_make_rng():
    g = np.random.default_rng(0)
    assert mb.make_rng(g) is g
    np.testing.assert_array_equal(mb.make_rng(5).random(3), np.random.default_rng(5).random(3))
    assert mb.make_rng(None) is mb.rng()


def test_explicit_generators_give_identical_layers_on_every_backend(backend):
    a = Dense(3, 4, rng=7, backend=backend)
    b = Dense(3, 4, rng=7, backend="numpy")
    np.testing.assert_array_equal(to_numpy(a.params["W"]), b.params["W"])


# ----------------------------------------------- the suite's own backend switch


_META_TEST = '''
import os

def test_uses_backend(backend):
    assert backend in ("numpy", "cupy")

def test_conftest_environment():
    assert "MINIGAN_DATA_DIR" not in os.environ  # never set behind the user's back
    assert os.environ["MPLBACKEND"] == "Agg"
'''


@pytest.fixture(scope="module")
def meta_suite(tmp_path_factory):
    """A copy of this suite's conftest, on a machine where `import cupy` fails."""
    root = tmp_path_factory.mktemp("meta")
    conftest = (Path(__file__).parent / "conftest.py").read_text()
    (root / "conftest.py").write_text(conftest + "\nimport sys\nsys.modules['cupy'] = None\n")
    (root / "test_meta.py").write_text(_META_TEST)
    return root


def _run_meta(root, *args, backend_env=None):
    env = {k: v for k, v in os.environ.items()
           if k not in ("MINIGAN_TEST_BACKEND", "MINIGAN_DATA_DIR", "MPLBACKEND", "PYTEST_ADDOPTS")}
    if backend_env is not None:
        env["MINIGAN_TEST_BACKEND"] = backend_env
    proc = subprocess.run([sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", *args],
                          cwd=root, env=env, capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout + proc.stderr


def test_suite_skips_cupy_with_a_reason_by_default(meta_suite):
    code, out = _run_meta(meta_suite)
    assert code == 0, out
    assert "2 passed, 1 skipped" in out, out
    assert "CuPy backend unavailable" in out and "pip install" in out, out


def test_suite_with_cupy_required_fails_loudly_without_it(meta_suite):
    code, out = _run_meta(meta_suite, backend_env="cupy")
    assert code != 0, out
    assert "skipped" not in out.splitlines()[-1], out
    assert "1 passed, 1 error" in out, out
    assert "MINIGAN_TEST_BACKEND=cupy (or --backend=cupy) requires CuPy and a GPU" in out, out
    code, out = _run_meta(meta_suite, "--backend=numpy", backend_env="cupy")  # the option wins
    assert code == 0 and "2 passed" in out and "skipped" not in out, out
