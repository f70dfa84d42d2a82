"""The benchmark scripts run end to end (tiny settings: this checks that they work,
not how fast anything is; no timing is asserted)."""

import json
import os
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def run_script(name, *args):
    """Run benchmarks/<name> with this Python; return its stdout (fails on a non-zero exit)."""
    env = dict(os.environ, PYTHONWARNINGS="error::RuntimeWarning")
    proc = subprocess.run([sys.executable, str(BENCHMARKS / name), *args], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, f"{name} {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_gan_step_writes_a_row_per_batch_size(tmp_path):
    out = tmp_path / "step.json"
    text = run_script("gan_step.py", "--no-torch", "--batch-sizes", "8,16", "--steps", "2",
                      "--warmup", "1", "--block", "1", "--gemm-size", "64", "--json", str(out))
    rows = json.loads(out.read_text())["results"]
    assert [r["batch"] for r in rows] == [8, 16]
    for r in rows:
        assert r["minigan"]["n"] == 2 and r["minigan"]["median_ms"] > 0
        assert r["gemm_gflop_per_step"] > 0
    assert "minigan ms" in text


def test_breakdown_splits_the_step():
    text = run_script("breakdown.py", "--no-torch", "--batch-sizes", "8", "--steps", "2",
                      "--warmup", "1")
    row = next(line.split() for line in text.splitlines() if line.split()[:1] == ["8"])
    whole, adam, zero_grad, passes = map(float, row[1:5])
    assert whole > 0 and adam > 0 and zero_grad > 0 and passes > 0
    # the parts timed inside the whole step cannot add up to more than it (medians vs means:
    # allow for one slow step)
    assert adam + zero_grad < 2 * whole


def test_memory_reports_a_verdict():
    text = run_script("memory.py", "--steps", "30", "--warmup", "5", "--every", "10",
                      "--batch", "8")
    assert "verdict:" in text
