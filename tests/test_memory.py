"""minigan._memory: a training process keeps the memory its steps free (glibc only)."""

import subprocess
import sys
import textwrap

import pytest

from minigan import _memory

# Each run in its own process: the setting is process-wide, and the count of page
# faults must not depend on what the test process did before.
PROBE = textwrap.dedent("""
    import resource, sys
    import numpy as np
    if sys.argv[1] == "keep":
        from minigan._memory import keep_freed_memory
        assert keep_freed_memory(), "glibc declined the settings"

    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    def step():  # three 10 MB arrays made and dropped, as a step's activations are
        arrays = [np.ones(10 << 18, dtype=np.float32) for _ in range(3)]
        del arrays

    for _ in range(3):  # past the first mappings and glibc's own adjustments
        step()
    before = faults()
    for _ in range(10):
        step()
    print((faults() - before) / 10)
""")


def _faults_per_step(mode):
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return float(done.stdout)


def _glibc():
    import platform

    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not _glibc(), reason="mallopt's settings are glibc's (Linux)")
def test_kept_memory_is_reused_without_page_faults():
    plain, kept = _faults_per_step("plain"), _faults_per_step("keep")
    # glibc alone gives the 30 MB back after each step and maps it again in the next
    assert plain > 100, f"the probe shows no faults to remove ({plain} per step)"
    assert kept < plain / 20, f"{kept} faults per step with the memory kept, {plain} without"


@pytest.mark.skipif(_glibc(), reason="this is glibc: the settings are taken")
def test_elsewhere_it_changes_nothing_and_says_so():
    assert _memory.keep_freed_memory() is False


def test_minigan_train_keeps_freed_memory(tmp_path, monkeypatch):
    from minigan import cli

    calls = []
    monkeypatch.setattr(_memory, "keep_freed_memory", lambda: calls.append(True) or True)
    cli.main(["train", "--steps", "2", "--no-metrics", "--no-figures", "--quiet",
              "--out", str(tmp_path / "run")])
    assert calls == [True]
