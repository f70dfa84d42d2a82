"""The benchmark scripts run end to end, and their numbers are consistent: the parts
of a step add up, PyTorch's step computes what minigan's does. Tiny settings; how
fast anything is never asserted."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def breakdown_row(*args):
    """The numbers of breakdown.py's row for batch 8."""
    text = run_script("breakdown.py", "--batch-sizes", "8", *args)
    row = next(line.split() for line in text.splitlines() if line.split()[:1] == ["8"])
    return [float(x) for x in row[1:]]


def test_breakdown_splits_the_step():
    # one timed step: every column is that step's own number, so the parts add up
    whole, adam, zero_grad, rest = breakdown_row("--no-torch", "--steps", "1", "--warmup", "1")
    assert adam > 0 and zero_grad > 0 and rest > 0
    assert abs(adam + zero_grad + rest - whole) <= 0.21  # four numbers rounded to 0.1


def test_breakdown_against_pytorch():
    pytest.importorskip("torch")
    whole, adam, zero_grad, rest, pt_whole, pt_adam, pt_rest, budget = breakdown_row(
        "--steps", "1", "--warmup", "1")
    assert pt_adam > 0 and pt_rest > 0
    assert abs(pt_adam + pt_rest - pt_whole) <= 0.16
    assert abs(budget - (pt_whole - rest)) <= 0.16


def test_gan_step_matches_pytorch_on_the_same_step(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "step.json"
    run_script("gan_step.py", "--batch-sizes", "8", "--steps", "1", "--warmup", "0",
               "--block", "1", "--gemm-size", "64", "--json", str(out))
    check = json.loads(out.read_text())["results"][0]["identical_step_check"]
    assert check["d_loss_rel_diff"] < 1e-5 and check["g_loss_rel_diff"] < 1e-5


def test_memory_reports_a_verdict():
    text = run_script("memory.py", "--steps", "30", "--warmup", "5", "--every", "10",
                      "--batch", "8")
    assert "verdict:" in text


def test_plot_results_draws_one_bar_per_run_and_batch(tmp_path):
    runs = []
    for k, ratios in enumerate(({64: 1.1, 256: 0.9}, {64: 1.05, 256: 0.95})):
        path = tmp_path / f"run{k}.json"
        path.write_text(json.dumps({"results": [{"batch": b, "ratio": r}
                                                for b, r in ratios.items()]}))
        runs.append(str(path))
    out = tmp_path / "ratios.png"
    text = run_script("plot_results.py", *runs, "--labels", "before", "after", "--out", str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "wrote" in text
    no_torch = tmp_path / "no_torch.json"
    no_torch.write_text(json.dumps({"results": [{"batch": 8}]}))
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "plot_results.py"), str(no_torch),
                           "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "no minigan/PyTorch ratios" in proc.stderr


# ------------------------------------------------------------------------ DCGAN


@pytest.mark.parametrize("args, message", [
    (["--g-dense", "32"], "--g-dense is for --arch dcgan"),
    (["--arch", "dcgan", "--g-dense", "32", "0"], "--g-dense widths must be >= 1, got [32, 0]"),
])
def test_gan_step_refuses_a_g_dense_it_cannot_build(args, message):
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "gan_step.py"), *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and message in proc.stderr


@pytest.mark.parametrize("g_dense", [None, [24]], ids=["preset", "--g-dense 24"])
def test_gan_step_dcgan_matches_pytorch_on_the_same_step(tmp_path, g_dense):
    pytest.importorskip("torch")
    from minigan.presets import DCGAN

    out = tmp_path / "step.json"
    flag = [] if g_dense is None else ["--g-dense", *map(str, g_dense)]
    run_script("gan_step.py", "--arch", "dcgan", "--batch-sizes", "4", "--steps", "1",
               "--warmup", "0", "--block", "1", "--gemm-size", "64", "--threads", "1",
               "--json", str(out), *flag)
    result = json.loads(out.read_text())
    row = result["results"][0]
    assert result["machine"]["arch"] == "dcgan" and row["arch"] == "dcgan"
    g_dense = DCGAN.get("g_dense", []) if g_dense is None else g_dense
    assert result["machine"]["g_dense"] == g_dense
    check = row["identical_step_check"]
    assert check["d_loss_rel_diff"] < 1e-5 and check["g_loss_rel_diff"] < 1e-5
    # the preset's layers' multiply-adds per sample, from their sizes (4x4 kernels):
    # G  Dense z -> each of g_dense -> C0 7 7, ConvT C0 x 7x7 -> C1 (16 taps each),
    #    ConvT C1 x 14x14 -> 1;
    # D  Conv m -> D0 at 14x14 (a row holds m images), Conv D0 -> D1 at 7x7, Dense D1 7 7
    #    -> 1, per row, so divided by m per sample
    (C0, C1), (D0, D1), m = DCGAN["g_channels"], DCGAN["d_channels"], DCGAN["pack"]
    widths = [100, *g_dense, C0 * 49]
    g = [a * b for a, b in zip(widths, widths[1:])] + [C0 * 49 * C1 * 16, C1 * 196 * 16]
    d = [D0 * 196 * m * 16 / m, D1 * 49 * D0 * 16 / m, D1 * 49 / m]
    # a step (batch n = 4): G forward; D forward, weight and input gradients (none for
    # the first layer's input) on 2n; D forward and input gradients, G's three products
    # (none for z) on n: 2 FLOPs per multiply-add
    n = 4
    flops = 2 * (n * sum(g) + 2 * n * (3 * sum(d) - d[0]) + n * (2 * sum(d) + 2 * sum(g) - g[0]))
    assert row["gemm_gflop_per_step"] == pytest.approx(flops / 1e9, rel=1e-9)


@pytest.mark.parametrize("with_torch", [False, True], ids=["minigan", "with PyTorch"])
def test_breakdown_dcgan_splits_the_step_by_layer_type(with_torch):
    if with_torch:
        pytest.importorskip("torch")
    # one timed step: every number is that step's own, so the parts add up to the whole
    text = run_script("breakdown.py", "--arch", "dcgan", "--batch-sizes", "4", "--steps", "1",
                      "--warmup", "1", "--threads", "1", *([] if with_torch else ["--no-torch"]))
    parts = [f"{kind} {way}" for kind in ("Dense", "Conv2d", "ConvTranspose2d", "batch norm",
                                          "activations", "reshapes") for way in ("fwd", "bwd")]
    parts += ["adam", "zero_grad", "rest"]
    columns = 3 if with_torch else 1   # minigan [PyTorch ratio]
    rows = {}
    for line in text.splitlines():
        for name in parts + ["whole step"]:
            if line.startswith(name + " "):
                rows[name] = [float(v) for v in line[len(name):].split()]
                assert len(rows[name]) == columns, line
    assert set(rows) == set(parts) | {"whole step"}, text
    for library in range(2 if with_torch else 1):
        whole = rows["whole step"][library]
        assert abs(sum(rows[p][library] for p in parts) - whole) <= 0.01 * len(parts), text
        assert rows["Conv2d fwd"][library] > 0 and rows["ConvTranspose2d bwd"][library] > 0


def test_lazy_r1_times_the_preset_with_and_without_its_penalty():
    text = run_script("lazy_r1.py", "--batch", "8", "--every", "1,2", "--blocks", "1",
                      "--block", "2", "--warmup", "1", "--threads", "1")
    rows = [line.split("|")[1:-1] for line in text.splitlines()
            if line.startswith("| ") and "ms/step" not in line]
    assert [r[0].strip() for r in rows] == ["no penalty", "R1 every 1", "R1 every 2"]
    assert float(rows[0][3]) == 1.0 and all(float(r[1]) > 0 for r in rows)
    # the period must divide the block: each block pays its share of penalties
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "lazy_r1.py"), "--every", "16",
                           "--block", "20"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "not a multiple of every period" in proc.stderr


# Garments are harder to tell apart than digits: trained on 5,000 of them for 2 epochs,
# the classifier says "shirt" for 246 of the 10,000 real test images, 1,000 of which are
# shirts (KL 0.055 from uniform); trained on 10,000, KL 0.022.
@pytest.mark.parametrize("dataset, n_train", [("mnist", 5000), ("fashion-mnist", 10000)])
def test_independent_score_scores_real_images_above_an_untrained_generator(dataset, n_train,
                                                                           tmp_path):
    """The second opinion's classifier (PyTorch), trained on the runs' own data set,
    scores the real test images as ten balanced classes and a generator trained for 2
    steps far below them."""
    pytest.importorskip("torch")
    if not os.environ.get("MINIGAN_DATA_DIR"):
        pytest.skip("MINIGAN_DATA_DIR is not set: the classifier trains on the real images")
    run = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "minigan", "train", "--dataset", dataset, "--steps",
                    "2", "--out", str(run), "--no-metrics", "--no-figures", "--quiet"],
                   check=True, timeout=300)
    text = run_script("independent_score.py", "--n-train", str(n_train), "--epochs", "2",
                      "--threads", "1", str(run / "checkpoint.npz"))
    assert f"on the {dataset} test set" in text.splitlines()[0]
    rows = {line[:44].strip(): line[44:].split() for line in text.splitlines()[2:]}
    real, fake = rows["the real test images"], rows["run (seed 0)"]
    assert real[0] == "10/10" and float(real[1]) < 0.05 and float(real[2]) > 5.0
    assert float(fake[2]) < float(real[2]) - 2.0


def test_independent_score_refuses_runs_of_two_data_sets(tmp_path):
    if not os.environ.get("MINIGAN_DATA_DIR"):
        pytest.skip("MINIGAN_DATA_DIR is not set")
    paths = []
    for dataset in ("mnist", "fashion-mnist"):
        run = tmp_path / dataset
        subprocess.run([sys.executable, "-m", "minigan", "train", "--dataset", dataset, "--steps",
                        "1", "--out", str(run), "--no-metrics", "--no-figures", "--quiet"],
                       check=True, timeout=300)
        paths.append(str(run / "checkpoint.npz"))
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "independent_score.py"), *paths],
                          capture_output=True, text=True, timeout=300)
    if "needs PyTorch" in proc.stderr:
        pytest.skip("PyTorch is not installed")
    assert proc.returncode == 1 and "fashion-mnist and mnist" in proc.stderr, proc.stderr
