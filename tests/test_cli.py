"""The command line: ``python -m minigan train | sample | gradcheck | info``."""

from __future__ import annotations

import csv
import json
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from minigan import cli, metrics
from minigan.presets import penalty_weight
from minigan.checkpoint import load_checkpoint

PNG = b"\x89PNG\r\n\x1a\n"
HISTORY_COLUMNS = {"step", "d_loss", "g_loss", "d_real", "d_fake", "d_grad_norm", "g_grad_norm",
                   "lr_g", "lr_d"}
FAST = ["--no-figures", "--no-metrics", "--quiet"]


def run_minigan(*args, cwd=None, timeout=300, env_extra=None):
    """``python -m minigan ARGS`` in a subprocess, as a user would run it."""
    env = {**os.environ, "MPLBACKEND": "Agg", "OPENBLAS_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "minigan", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def ring8_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    proc = run_minigan("train", "--dataset", "ring8", "--steps", 50, "--batch-size", 64,
                       "--frames", 5, "--seed", 3, "--out", out)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return out, proc


# ------------------------------------------------------------------------- train


def test_train_writes_every_output(ring8_run):
    out, proc = ring8_run
    assert {p.name for p in out.iterdir()} == set(cli.RUN_FILES) - set(cli.IMAGE_FIGURES)

    gan, config, extra = load_checkpoint(out / "checkpoint.npz")
    assert gan.step == 50 and config["dataset"] == "ring8" and config["steps"] == 50
    assert config["batch_size"] == 64 and extra["seed"] == 3

    with open(out / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 50
    assert HISTORY_COLUMNS <= set(rows[0])
    assert [int(float(r["step"])) for r in rows] == list(range(1, 51))
    assert all(np.isfinite(float(r["d_loss"])) for r in rows)

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "ring8" and metrics["steps"] == 50
    cov = metrics["mode_coverage"]
    assert cov["n_modes"] == 8 and cov["n_samples"] == 2500
    assert 0 <= cov["modes_captured"] <= 8 and 0 <= cov["high_quality_fraction"] <= 1
    assert np.isfinite(cov["reverse_kl"])
    assert metrics["headline"].startswith(f"{cov['modes_captured']}/8 modes")
    assert metrics["train_seconds"] > 0

    samples = np.load(out / "samples.npy", allow_pickle=False)
    assert samples.shape == (2500, 2) and samples.dtype == np.float32
    assert np.all(np.isfinite(samples))

    for name in ("losses.png", "samples.png"):
        assert (out / name).read_bytes()[:8] == PNG, name
    gif = (out / "training.gif").read_bytes()
    assert gif[:6] in (b"GIF87a", b"GIF89a")
    pil = pytest.importorskip("PIL.Image")
    with pil.open(out / "training.gif") as im:
        assert im.n_frames == 6  # step 0 and every 10 steps

    assert "modes" in proc.stdout and "high quality" in proc.stdout
    assert str(out) in proc.stdout and "checkpoint.npz" in proc.stdout
    assert "D(G(z))" in proc.stdout  # the periodic progress line (not a terminal here)


def test_train_refuses_to_overwrite(ring8_run, tmp_path):
    out, _ = ring8_run
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    code = cli.main(["train", "--steps", "2", "--out", str(out), "--quiet"])
    assert code == 2
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_train_overwrite_replaces_the_run(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "training.gif").write_bytes(b"old")
    (out / "notes.txt").write_text("mine")
    code = cli.main(["train", "--steps", "3", "--batch-size", "16", "--out", str(out),
                     "--overwrite", "--no-figures", "--quiet"])
    assert code == 0
    names = {p.name for p in out.iterdir()}
    assert "training.gif" not in names        # the stale output of the old run is gone
    assert "notes.txt" in names               # files that are not ours stay
    assert load_checkpoint(out / "checkpoint.npz").gan.step == 3


def test_refusal_message(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "x").write_text("x")
    assert cli.main(["train", "--steps", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "exists and is not empty" in err and "--overwrite" in err


@pytest.mark.parametrize("args, message", [
    (["--steps", "-5"], "expected a positive integer, got -5"),
    (["--steps", "0"], "expected a positive integer, got 0"),
    (["--steps", "ten"], "expected a positive integer, got 'ten'"),
    (["--batch-size", "0"], "expected a positive integer, got 0"),
    (["--lr", "-0.001"], "expected a positive number, got -0.001"),
    (["--lr", "nan"], "expected a positive number"),
    (["--label-smoothing", "1.5"], "expected a number in [0, 1)"),
    (["--seed", "-1"], "expected an integer >= 0"),
])
def test_nonsense_numbers_are_refused(args, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--out", str(tmp_path / "r"), *args])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_batch_larger_than_the_data_is_refused(tmp_path, capsys):
    assert cli.main(["train", "--batch-size", "1000000", "--out", str(tmp_path / "r")]) == 2
    assert "--batch-size 1000000" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_unknown_dataset_lists_the_known_ones(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--dataset", "cifar10"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "cifar10" in err
    for name in ("ring8", "grid25", "gaussian1d", "spiral", "moons", "mnist", "fashion-mnist"):
        assert name in err


def test_missing_cupy_is_a_clear_error(tmp_path, capsys):
    from minigan.backend import cupy_available

    if cupy_available():
        pytest.skip("CuPy works here")
    assert cli.main(["train", "--backend", "cupy", "--out", str(tmp_path / "r")]) == 2
    assert "CuPy" in capsys.readouterr().err


def test_resume_is_bit_identical_including_the_data_order(tmp_path):
    common = ["train", "--steps", "12", "--batch-size", "32", "--seed", "1", "--no-figures",
              "--no-metrics", "--frames", "4", "--quiet"]
    assert cli.main([*common, "--out", str(tmp_path / "straight")]) == 0
    assert cli.main([*common, "--stop-after", "5", "--out", str(tmp_path / "split")]) == 0
    half = load_checkpoint(tmp_path / "split" / "checkpoint.npz")
    assert half.gan.step == 5
    assert cli.main(["train", "--resume", str(tmp_path / "split" / "checkpoint.npz"),
                     "--out", str(tmp_path / "split"), "--quiet", "--no-figures",
                     "--no-metrics"]) == 0
    a = np.load(tmp_path / "straight" / "checkpoint.npz", allow_pickle=False)
    b = np.load(tmp_path / "split" / "checkpoint.npz", allow_pickle=False)
    assert sorted(a.files) == sorted(b.files)
    for name in a.files:
        if name != "__meta__":
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    meta_a, meta_b = (json.loads(x["__meta__"].tobytes()) for x in (a, b))
    assert meta_a["noise_rng"] == meta_b["noise_rng"]
    assert meta_a["extra"]["data_state"] == meta_b["extra"]["data_state"]
    assert meta_a["step"] == meta_b["step"] == 12


def test_resume_keeps_the_stored_settings(ring8_run, tmp_path, capsys):
    out, _ = ring8_run
    code = cli.main(["train", "--resume", str(out / "checkpoint.npz"), "--steps", "60",
                     "--lr", "0.1", "--out", str(tmp_path / "r")])
    assert code == 2
    assert "--lr cannot be changed when resuming" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_resume_needs_more_steps(ring8_run, tmp_path, capsys):
    out, _ = ring8_run
    code = cli.main(["train", "--resume", str(out / "checkpoint.npz"), "--out",
                     str(tmp_path / "r")])
    assert code == 2
    assert "step 50" in capsys.readouterr().err


def assert_same_checkpoints(path_a, path_b):
    """Every array bit for bit, and the generators' and the data's states."""
    a = np.load(path_a, allow_pickle=False)
    b = np.load(path_b, allow_pickle=False)
    assert sorted(a.files) == sorted(b.files)
    for name in a.files:
        if name != "__meta__":
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    meta_a, meta_b = (json.loads(x["__meta__"].tobytes()) for x in (a, b))
    for key in ("step", "noise_rng", "optimizers", "ema_updates"):
        assert meta_a[key] == meta_b[key], key
    assert meta_a["extra"]["data_state"] == meta_b["extra"]["data_state"]


def _hint(err):
    """The arguments of the printed 'Continue with: python -m minigan ...' line."""
    lines = [line for line in err.splitlines() if line.startswith("Continue with: ")]
    assert len(lines) == 1, err
    words = shlex.split(lines[0][len("Continue with: "):])
    assert words[:4] == ["python", "-m", "minigan", "train"], words
    return words[3:]


def test_ctrl_c_at_an_arbitrary_moment_resumes_bit_exactly(tmp_path):
    """SIGINT to a real `python -m minigan train` at random moments of its training;
    the printed hint resumes it; the end is bit-identical to an uninterrupted run."""
    common = ["train", "--dataset", "ring8", "--steps", 400, "--checkpoint-every", 50,
              "--no-figures", "--no-metrics"]
    proc = run_minigan(*common, "--out", tmp_path / "straight")
    assert proc.returncode == 0, proc.stderr
    seconds = json.loads((tmp_path / "straight" / "metrics.json").read_text())["train_seconds"]
    seed = random.randrange(10**6)
    rng = random.Random(seed)
    env = {**os.environ, "MPLBACKEND": "Agg", "OPENBLAS_NUM_THREADS": "1"}
    mid_run = 0
    for trial in range(3):
        out = tmp_path / f"cut{trial}"
        proc = subprocess.Popen([sys.executable, "-m", "minigan", *map(str, common), "--out",
                                 str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env)
        for line in proc.stdout:  # the header: training starts right after it
            if line.startswith("Training a GAN"):
                break
        delay = rng.uniform(0.0, 0.8 * seconds)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        stdout, err = proc.communicate(timeout=300)
        why = f"(random seed {seed}, trial {trial}, SIGINT after {delay:.3f} s)\n{err}"
        # 0: finished first; -SIGINT: it came as Python was exiting, after the run
        assert proc.returncode in (0, 130, -signal.SIGINT) and "Traceback" not in err, why
        if "Continue with:" in err:
            assert "Interrupted at step" in err, why
            for name in ("config.json", "checkpoint.npz", "history.csv"):
                assert (out / name).is_file(), why
            resumed = run_minigan(*_hint(err))
            assert resumed.returncode == 0, why + resumed.stderr
            assert "resuming" in resumed.stdout, why
            mid_run += 1
        # else: the signal came after the last step, while the outputs were written
        assert_same_checkpoints(tmp_path / "straight" / "checkpoint.npz",
                                out / "checkpoint.npz")
        with open(out / "history.csv") as f:
            assert len(f.readlines()) == 401, why
    assert mid_run >= 1, f"no SIGINT landed during training (random seed {seed})"


def _interrupt_at_step(monkeypatch, step):
    """Press Ctrl-C (a real SIGINT) in the middle of the given step, between D's and G's
    updates."""
    from minigan.gan import GAN

    original = GAN.generator_step

    def generator_step(self, fake):
        if self.step == step - 1:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, fake)

    monkeypatch.setattr(GAN, "generator_step", generator_step)


def test_ctrl_c_saves_checkpoint_history_and_losses_and_says_how_to_continue(
        tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    common = ["train", "--steps", "30", "--batch-size", "32", "--seed", "2", "--frames", "3",
              "--no-metrics"]
    _interrupt_at_step(monkeypatch, 13)
    assert cli.main([*common, "--out", str(out)]) == 130
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert "Interrupted at step 13 of 30" in err and "Traceback" not in err
    hint = _hint(err)
    assert hint[hint.index("--resume") + 1] == str(out / "checkpoint.npz")
    assert hint[hint.index("--out") + 1] == str(out) and "--no-metrics" in hint
    assert load_checkpoint(out / "checkpoint.npz").gan.step == 13
    with open(out / "history.csv", newline="") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == list(range(1, 14))
    assert (out / "losses.png").read_bytes()[:8] == PNG
    assert (out / "config.json").is_file() and not (out / "samples.npy").exists()

    assert cli.main(hint) == 0
    assert cli.main([*common, "--out", str(tmp_path / "straight"), "--quiet"]) == 0
    assert_same_checkpoints(tmp_path / "straight" / "checkpoint.npz", out / "checkpoint.npz")


def test_ctrl_c_while_the_figures_are_drawn_exits_cleanly(tmp_path, capsys, monkeypatch):
    from minigan import plot

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(plot, "animate", interrupted)
    out = tmp_path / "run"
    assert cli.main(["train", "--steps", "20", "--batch-size", "32", "--frames", "2",
                     "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "Interrupted while writing the outputs" in err and "Traceback" not in err
    line = next(line for line in err.splitlines() if "Interrupted while" in line)
    written = line.split("; ")[1].split(" were written")[0].split(", ")
    assert written == ["config.json", "checkpoint.npz", "history.csv", "metrics.json",
                       "samples.npy", "losses.png", "samples.png"]
    for name in written:
        assert (out / name).is_file(), name
    assert not (out / "training.gif").exists()
    assert load_checkpoint(out / "checkpoint.npz").gan.step == 20


def test_config_json_has_every_setting_and_history_the_learning_rates(ring8_run):
    from minigan.models import lr_factor

    out, _ = ring8_run
    config = json.loads((out / "config.json").read_text())
    for key in ("dataset", "latent_dim", "data_dim", "g_hidden", "d_hidden", "activation",
                "g_out", "lr_g", "lr_d", "betas", "lr_decay_start", "lr_final", "lr_warmup",
                "lr_warmup_factor", "schedule_steps", "steps", "batch_size", "pack", "loss",
                "g_loss", "label_smoothing", "d_steps", "ema_decay", "seed", "backend",
                "dtype", "init"):
        assert key in config, key
    assert (config["seed"], config["steps"], config["schedule_steps"]) == (3, 50, 50)
    assert (config["pack"], config["loss"], config["backend"]) == (2, "bce", "numpy")
    assert load_checkpoint(out / "checkpoint.npz").config["seed"] == 3
    with open(out / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for step, row in enumerate(rows):
        factor = lr_factor(step, 50, config)
        assert float(row["lr_g"]) == pytest.approx(config["lr_g"] * factor, rel=1e-12)
        assert float(row["lr_d"]) == pytest.approx(config["lr_d"] * factor, rel=1e-12)
    assert float(rows[-1]["lr_g"]) < float(rows[0]["lr_g"])  # ring8 decays its rates


def test_resuming_with_more_steps_keeps_the_schedule_and_says_so(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "--steps", "12", "--batch-size", "32", "--out", str(out),
                     *FAST]) == 0
    assert cli.main(["train", "--resume", str(out / "checkpoint.npz"), "--steps", "20",
                     "--out", str(out), "--no-figures", "--no-metrics"]) == 0
    captured = capsys.readouterr()
    note = captured.err
    assert "schedule keeps the length of the run as it was started, 12 steps" in note
    assert "steps 12 to 20 continue at its final rates (lr_g 2e-05, lr_d 2e-05)" in note
    assert "--steps 20" in note
    with open(out / "history.csv", newline="") as f:
        lr = [float(r["lr_g"]) for r in csv.DictReader(f)]
    assert len(lr) == 20 and lr[0] == 1e-3
    assert lr[11:] == [pytest.approx(2e-5, rel=1e-12)] * 9  # no jump back up
    assert json.loads((out / "config.json").read_text())["schedule_steps"] == 12


def test_a_short_run_warns_of_the_steps_the_preset_expects(tmp_path, capsys):
    assert cli.main(["train", "--dataset", "grid25", "--steps", "2000", "--stop-after", "1",
                     "--out", str(tmp_path / "r"), "--no-figures", "--no-metrics"]) == 0
    err = capsys.readouterr().err
    assert "grid25 preset's settings" in err and "expect 30000 steps" in err
    assert "--steps 2000" in err


@pytest.mark.parametrize("value", ["cupy", "tpu"])
def test_a_bad_minigan_backend_is_a_clean_error_for_every_command(value, tmp_path, capsys,
                                                                  monkeypatch):
    from minigan.backend import cupy_available

    if value == "cupy" and cupy_available():
        pytest.skip("CuPy works here")
    monkeypatch.setenv("MINIGAN_BACKEND", value)
    commands = [["train", "--out", str(tmp_path / "r")], ["info"], ["gradcheck"],
                ["sample", "--checkpoint", "x.npz", "--out", str(tmp_path / "s.npy")]]
    for command in commands:
        assert cli.main(command) == 2, command
        err = capsys.readouterr().err
        assert f"minigan {command[0]}: error: MINIGAN_BACKEND={value}: " in err, err
        assert ("needs CuPy" if value == "cupy" else "Unknown backend 'tpu'") in err
    assert not (tmp_path / "r").exists()
    proc = run_minigan("info", env_extra={"MINIGAN_BACKEND": value})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"MINIGAN_BACKEND={value}" in proc.stderr


# --------------------------------------------- losses, penalties, spectral norm, methods

# tiny runs: a few steps, small batches, nothing but the checkpoint and history
TINY_RUN = ["--steps", "3", "--batch-size", "32", "--frames", "0", *FAST]


def _run_config(out):
    return json.loads((out / "config.json").read_text())


def _history_columns(out):
    with open(out / "history.csv", newline="") as f:
        return next(csv.reader(f))


@pytest.mark.parametrize("args, loss, regularizer, weight, spectral", [
    (["--loss", "wgan-gp"], "Wasserstein", "GradientPenalty", penalty_weight("gp", "grid25"),
     False),
    (["--loss", "wasserstein", "--penalty", "gp", "--penalty-weight", "3"], "Wasserstein",
     "GradientPenalty", 3.0, False),
    (["--loss", "hinge"], "Hinge", None, None, True),
    (["--loss", "hinge", "--no-spectral-norm"], "Hinge", None, None, False),
    (["--penalty", "r1", "--penalty-weight", "0.5"], "NonSaturating", "R1", 0.5, False),
    (["--penalty", "r1", "--penalty-weight", "0.5", "--penalty-every", "4"], "NonSaturating",
     "R1", 0.5, False),
    (["--loss", "lsgan", "--penalty", "r1", "--spectral-norm"], "LeastSquares", "R1",
     penalty_weight("r1", "grid25"), True),
    (["--spectral-norm"], "NonSaturating", None, None, True),
])
def test_loss_penalty_and_spectral_norm_flags_reach_the_gan(tmp_path, args, loss, regularizer,
                                                           weight, spectral):
    out = tmp_path / "run"
    assert cli.main(["train", "--dataset", "grid25", "--pack", "1", *args, *TINY_RUN,
                     "--out", str(out)]) == 0
    gan, config, _ = load_checkpoint(out / "checkpoint.npz")
    assert type(gan.loss).__name__ == loss
    assert (None if gan.regularizer is None else type(gan.regularizer).__name__) == regularizer
    if regularizer == "GradientPenalty":
        assert gan.regularizer.weight == weight
    elif regularizer == "R1":
        every = int(args[args.index("--penalty-every") + 1]) if "--penalty-every" in args else 1
        assert (gan.regularizer.gamma, gan.regularizer.every) == (weight, every)
        assert _run_config(out)["penalty_every"] == every
        assert gan.regularizer.calls == 3     # TINY_RUN's D steps, counted for the schedule
    n_dense = sum(type(m).__name__ == "Dense" for m in gan.D.modules())
    n_sn = sum(type(m).__name__ == "SpectralNorm" for m in gan.D.modules())
    assert n_sn == (n_dense if spectral else 0) and n_dense == 3
    stored = _run_config(out)
    assert stored["loss"] == config.get("loss", "bce") == {
        "Wasserstein": "wasserstein", "Hinge": "hinge", "LeastSquares": "lsgan"}.get(loss, "bce")
    assert stored["penalty"] == {"GradientPenalty": "gp", "R1": "r1"}.get(regularizer, "none")
    assert stored["penalty_weight"] == weight and stored["spectral_norm"] is spectral
    assert ("d_penalty" in _history_columns(out)) is (regularizer is not None)


@pytest.mark.parametrize("loss, penalty, method", [
    ("wgan-gp", None, "wgan-gp"), ("wgan-gp", "r1", "wgan-gp"), ("wasserstein", "gp", "wgan-gp"),
    ("wasserstein", None, None), ("hinge", None, "hinge"), ("hinge", "r1", "hinge"),
    (None, "r1", "r1"), ("bce", "r1", "r1"), ("lsgan", "r1", None), (None, "gp", None),
    (None, None, None), ("lsgan", None, None),
])
def test_which_method_the_flags_select(loss, penalty, method):
    from minigan import presets

    assert presets.method_for(loss, penalty) == method


def test_a_penalty_weight_comes_from_its_method_for_the_dataset(monkeypatch):
    from minigan import presets

    assert presets.penalty_weight("gp", "mnist") == presets.METHODS["wgan-gp"]["penalty_weight"]
    assert presets.penalty_weight("r1", "fashion-mnist") == presets.METHODS["r1"]["penalty_weight"]
    monkeypatch.setitem(presets.METHOD_OVERRIDES, ("moons", "r1"), {"penalty_weight": 0.25})
    assert presets.penalty_weight("r1", "moons") == 0.25
    assert presets.method_settings("r1", "moons") == {"penalty": "r1", "penalty_weight": 0.25}
    with pytest.raises(ValueError, match="expected one of gp, r1"):
        presets.penalty_weight("none", "moons")


def test_preset_lays_the_conditional_and_dcgan_settings_over_the_datasets_in_order(monkeypatch):
    from minigan import presets

    # distinct markers show which overlay wrote each key last
    monkeypatch.setattr(presets, "CONDITIONAL", {"steps": 1, "pack": 1, "lr_final": 0.5})
    monkeypatch.setattr(presets, "DCGAN", {"arch": "dcgan", "steps": 2, "pack": 2})
    monkeypatch.setattr(presets, "CONDITIONAL_DCGAN", {"steps": 3})
    base = presets.PRESETS["mnist"]
    assert presets.preset("mnist") == base
    assert presets.preset("mnist", conditional=True) == \
        {**base, "steps": 1, "pack": 1, "lr_final": 0.5}
    assert presets.preset("mnist", arch="dcgan") == {**base, "arch": "dcgan", "steps": 2, "pack": 2}
    assert presets.preset("mnist", arch="dcgan", conditional=True) == \
        {**base, "arch": "dcgan", "steps": 3, "pack": 2, "lr_final": 0.5}
    # fresh copies, overlays included: changing a run's settings leaves the presets alone
    presets.DCGAN["g_dense"] = [8]
    run = presets.preset("mnist", arch="dcgan")
    run["g_dense"].append(4)
    run["betas"].append(0.0)
    assert presets.DCGAN["g_dense"] == [8] and presets.PRESETS["mnist"]["betas"] == [0.5, 0.999]


@pytest.mark.parametrize("name, kwargs, message", [
    ("cifar", {}, "no preset for dataset 'cifar': expected one of ring8"),
    ("mnist", {"arch": "resnet"}, "no architecture 'resnet': expected 'mlp' or 'dcgan'"),
    ("ring8", {"arch": "dcgan"}, "the DCGAN is for images (mnist, fashion-mnist); 'ring8'"),
    ("moons", {"conditional": True}, "a conditional GAN needs labelled images"),
])
def test_preset_refuses_what_it_has_no_settings_for(name, kwargs, message):
    from minigan import presets

    with pytest.raises(ValueError, match=re.escape(message)):
        presets.preset(name, **kwargs)


@pytest.mark.parametrize("conditional", [False, True], ids=["dcgan", "conditional dcgan"])
def test_the_training_command_starts_from_the_layered_preset(conditional):
    from minigan import presets

    flags = ["--conditional"] if conditional else []
    args = cli.build_parser().parse_args(["train", "--dataset", "mnist", "--arch", "dcgan",
                                          *flags])
    config = cli._config_from_args(args)
    want = presets.preset("mnist", arch="dcgan", conditional=conditional)
    assert {k: config[k] for k in want} == want
    if conditional:   # its own batch, length and G, not the unconditional DCGAN's
        assert {k: config[k] for k in presets.CONDITIONAL_DCGAN} == presets.CONDITIONAL_DCGAN


@pytest.mark.parametrize("flags, message", [
    (["--arch", "dcgan"], "--arch dcgan is a convolutional GAN for images (mnist, "
                          "fashion-mnist); ring8 has 1-D/2-D points"),
    (["--arch", "dcgan", "--conditional"], "--arch dcgan is a convolutional GAN for images"),
    (["--g-dense", "8"], "--g-dense adds hidden Dense layers to the DCGAN's G: it needs "
                         "--arch dcgan"),
    (["--arch", "mlp", "--g-dense", "8"], "--g-dense adds hidden Dense layers"),
    (["--conditional"], "--conditional needs labelled data (mnist, fashion-mnist); ring8 has "
                        "no labels"),
    (["--projection"], "--projection is how the conditional DCGAN's D takes the label: it "
                       "needs --arch dcgan --conditional"),
])
def test_a_toy_set_refuses_what_only_images_have_with_the_commands_words(flags, message):
    args = cli.build_parser().parse_args(["train", "--dataset", "ring8", *flags])
    with pytest.raises(cli.CLIError, match=re.escape(message)):
        cli._config_from_args(args)


@pytest.mark.parametrize("flags, tuned", [
    ([], {"arch": "dcgan"}), (["--conditional"], {"arch": "dcgan", "conditional": True}),
], ids=["dcgan", "conditional dcgan"])
def test_a_short_dcgan_run_is_warned_of_its_own_presets_length(flags, tuned):
    from types import SimpleNamespace

    from minigan import presets

    args = cli.build_parser().parse_args(["train", "--dataset", "mnist", "--arch", "dcgan",
                                          "--steps", "5", *flags])
    config = {**cli._config_from_args(args), "schedule_steps": 5}
    notes = cli._notes(SimpleNamespace(config=config, args=args, resume=None))
    assert any(f"expect {presets.preset('mnist', **tuned)['steps']} steps" in n for n in notes)
    # a resumed run keeps its length: no preset is looked up, not even for a dataset
    # that has none (a checkpoint made through the Python API may name any)
    resumed = SimpleNamespace(config={**config, "dataset": "my-digits"}, args=args, resume="x")
    assert not any("expect" in n for n in cli._notes(resumed))


def test_a_method_lays_its_settings_over_the_preset_and_the_flags_win(tmp_path, monkeypatch):
    from minigan import presets

    out = tmp_path / "gp"
    assert cli.main(["train", "--dataset", "grid25", "--loss", "wgan-gp", *TINY_RUN,
                     "--out", str(out)]) == 0
    config = _run_config(out)
    method = presets.method_settings("wgan-gp", "grid25")
    for key, value in method.items():
        if key != "steps":                                        # --steps of TINY_RUN wins
            assert config[key] == value, key
    assert config["g_loss"] == "wasserstein"
    assert config["latent_dim"] == presets.PRESETS["grid25"]["latent_dim"]  # the preset's
    assert method["lr_g"] != presets.METHODS["wgan-gp"]["lr_g"]   # the dataset's line applied

    out = tmp_path / "flags"
    assert cli.main(["train", "--dataset", "grid25", "--loss", "wgan-gp", "--lr", "3e-4",
                     "--d-steps", "2", "--betas", "0", "0.99", "--penalty-weight", "2",
                     "--pack", "1", *TINY_RUN, "--out", str(out)]) == 0
    config = _run_config(out)
    assert (config["lr_g"], config["lr_d"], config["d_steps"]) == (3e-4, 3e-4, 2)
    assert (config["betas"], config["penalty_weight"], config["pack"]) == ([0.0, 0.99], 2.0, 1)
    gan = load_checkpoint(out / "checkpoint.npz").gan
    assert gan.g_optimizer.betas == (0.0, 0.99) and gan.d_steps == 2

    # tuned numbers go into METHOD_OVERRIDES, one line per dataset and method
    monkeypatch.setitem(presets.METHOD_OVERRIDES, ("grid25", "hinge"),
                        {"lr_d": 4e-4, "d_steps": 2})
    out = tmp_path / "tuned"
    assert cli.main(["train", "--dataset", "grid25", "--loss", "hinge", *TINY_RUN,
                     "--out", str(out)]) == 0
    config = _run_config(out)
    assert (config["lr_d"], config["lr_g"], config["d_steps"]) == (4e-4, 2e-4, 2)
    assert config["spectral_norm"] is True


@pytest.mark.parametrize("args, message", [
    (["--loss", "hinge", "--label-smoothing", "0.1"], "--loss hinge has no real target to smooth"),
    (["--loss", "wgan-gp", "--g-loss", "minimax"],
     "--loss wgan-gp sets both losses to the Wasserstein critic's; it cannot be combined with "
     "--g-loss minimax"),
    (["--penalty-weight", "2"], "--penalty-weight needs a penalty"),
    (["--loss", "wgan-gp", "--penalty", "none", "--penalty-weight", "2"],
     "--penalty-weight needs a penalty"),
    (["--penalty-every", "4"], "--penalty-every is lazy R1: it needs --penalty r1"),
    (["--loss", "wgan-gp", "--penalty-every", "4"],
     "--penalty-every is lazy R1: it needs --penalty r1 (the penalty here is 'gp')"),
])
def test_settings_that_do_not_fit_are_refused(args, message, tmp_path, capsys):
    assert cli.main(["train", *args, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("key, value, why", [("d_batchnorm", True, "batch normalisation"),
                                             ("d_dropout", 0.3, "dropout makes D random")])
def test_a_penalty_on_a_preset_d_with_batch_norm_or_dropout_is_refused(key, value, why,
                                                                       tmp_path, capsys,
                                                                       monkeypatch):
    from minigan import presets

    monkeypatch.setitem(presets.PRESETS["ring8"], key, value)
    assert cli.main(["train", "--loss", "wgan-gp", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "these settings cannot be used together" in err and "penalty 'gp'" in err
    assert why in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()
    assert cli.main(["train", *TINY_RUN, "--out", str(tmp_path / "plain")]) == 0   # no penalty


def test_the_unconstrained_critic_gets_a_note(tmp_path, capsys):
    assert cli.main(["train", "--loss", "wasserstein", "--steps", "2", "--batch-size", "32",
                     "--no-figures", "--no-metrics", "--out", str(tmp_path / "w")]) == 0
    err = capsys.readouterr().err
    assert "critic unconstrained" in err and "no clipping" in err and "--loss wgan-gp" in err
    for args in (["--loss", "wgan-gp"], ["--loss", "wasserstein", "--spectral-norm"]):
        assert cli.main(["train", *args, "--steps", "2", "--batch-size", "32", "--no-figures",
                         "--no-metrics", "--out", str(tmp_path / args[-1])]) == 0
        assert "unconstrained" not in capsys.readouterr().err


def test_resume_keeps_the_method_settings(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "--loss", "hinge", *TINY_RUN, "--out", str(out)]) == 0
    for args, flag in ((["--loss", "bce"], "--loss"), (["--penalty", "gp"], "--penalty"),
                       (["--no-spectral-norm"], "--spectral-norm"),
                       (["--betas", "0", "0.9"], "--betas"),
                       (["--penalty-weight", "1"], "--penalty-weight"),
                       (["--penalty-every", "2"], "--penalty-every")):
        assert cli.main(["train", "--resume", str(out / "checkpoint.npz"), "--steps", "5",
                         *args, "--out", str(out)]) == 2
        assert f"{flag} cannot be changed when resuming" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["--loss", "wgan-gp", "--spectral-norm"], ["--loss", "hinge"],
                                  ["--penalty", "r1", "--penalty-every", "2"]],
                         ids=["wgan-gp", "hinge-sn", "lazy-r1"])
def test_resume_with_a_penalty_or_spectral_norm_is_bit_identical(tmp_path, args):
    common = ["train", "--dataset", "grid25", "--pack", "1", *args, "--steps", "8",
              "--batch-size", "32", "--seed", "4", "--no-figures", "--no-metrics", "--frames",
              "2", "--quiet"]
    assert cli.main([*common, "--out", str(tmp_path / "straight")]) == 0
    assert cli.main([*common, "--stop-after", "3", "--out", str(tmp_path / "split")]) == 0
    assert cli.main(["train", "--resume", str(tmp_path / "split" / "checkpoint.npz"), "--out",
                     str(tmp_path / "split"), "--quiet", "--no-figures", "--no-metrics"]) == 0
    assert_same_checkpoints(tmp_path / "straight" / "checkpoint.npz",
                            tmp_path / "split" / "checkpoint.npz")
    meta = load_checkpoint(tmp_path / "split" / "checkpoint.npz")
    spectral = any(type(m).__name__ == "SpectralNorm" for m in meta.gan.D.modules())
    assert spectral is ("--penalty" not in args)
    assert (tmp_path / "split" / "history.csv").read_text() == \
        (tmp_path / "straight" / "history.csv").read_text()


def test_ctrl_c_in_a_wgan_gp_step_resumes_bit_exactly(tmp_path, capsys, monkeypatch):
    """Ctrl-C between D's updates (and their penalties) and G's, then the printed hint."""
    out = tmp_path / "run"
    common = ["train", "--dataset", "ring8", "--loss", "wgan-gp", "--steps", "8",
              "--batch-size", "32", "--seed", "2", "--frames", "0", "--no-metrics",
              "--no-figures"]
    _interrupt_at_step(monkeypatch, 5)
    assert cli.main([*common, "--out", str(out)]) == 130
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert "Interrupted at step 5 of 8" in err
    assert cli.main(_hint(err)) == 0
    assert cli.main([*common, "--out", str(tmp_path / "straight"), "--quiet"]) == 0
    assert_same_checkpoints(tmp_path / "straight" / "checkpoint.npz", out / "checkpoint.npz")
    assert "d_penalty" in _history_columns(out)


def test_help_cites_the_papers_and_explains_the_methods(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for name in ("Arjovsky et al. 2017", "Gulrajani et al. 2017", "Lim & Ye 2017",
                 "Miyato et al. 2018", "Mescheder et al. 2018", "--penalty-weight W",
                 "--spectral-norm, --no-spectral-norm", "--betas B1 B2", "METHOD_OVERRIDES",
                 "preset, then method, then flags"):
        assert name in out, name


# ------------------------------------------------------------------------ sample


def test_sample_to_npy_and_png(ring8_run, tmp_path, capsys):
    out, _ = ring8_run
    ckpt = out / "checkpoint.npz"
    assert cli.main(["sample", "--checkpoint", str(ckpt), "--n", "10",
                     "--out", str(tmp_path / "s.npy")]) == 0
    x = np.load(tmp_path / "s.npy", allow_pickle=False)
    assert x.shape == (10, 2) and x.dtype == np.float32
    again = tmp_path / "again.npy"
    assert cli.main(["sample", "--checkpoint", str(ckpt), "--n", "10", "--out", str(again)]) == 0
    np.testing.assert_array_equal(x, np.load(again))           # seeded: the same samples
    # an existing file is kept unless --overwrite says otherwise
    assert cli.main(["sample", "--checkpoint", str(ckpt), "--n", "10", "--seed", "1",
                     "--out", str(again)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    np.testing.assert_array_equal(x, np.load(again))
    assert cli.main(["sample", "--checkpoint", str(ckpt), "--n", "10", "--seed", "1",
                     "--out", str(again), "--overwrite"]) == 0
    assert not np.array_equal(x, np.load(again))
    assert cli.main(["sample", "--checkpoint", str(ckpt), "--n", "300",
                     "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").read_bytes()[:8] == PNG


def test_sample_errors(ring8_run, tmp_path, capsys):
    out, _ = ring8_run
    assert cli.main(["sample", "--checkpoint", str(tmp_path / "none.npz"), "--n", "3",
                     "--out", str(tmp_path / "s.npy")]) == 2
    assert "none.npz" in capsys.readouterr().err
    assert cli.main(["sample", "--checkpoint", str(out / "checkpoint.npz"), "--n", "3",
                     "--out", str(tmp_path / "s.txt")]) == 2
    assert ".npy" in capsys.readouterr().err
    bad = tmp_path / "bad.npz"
    bad.write_bytes((out / "checkpoint.npz").read_bytes()[:5000])
    assert cli.main(["sample", "--checkpoint", str(bad), "--n", "3",
                     "--out", str(tmp_path / "s.npy")]) == 2
    assert "truncated" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["sample", "--checkpoint", str(out / "checkpoint.npz"), "--n", "0",
                  "--out", str(tmp_path / "s.npy")])


# -------------------------------------------------------------- gradcheck, info, help


def test_gradcheck_passes():
    proc = run_minigan("gradcheck")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "gradient checks passed" in proc.stdout
    for name in ("dense_forward/backward", "batchnorm_forward/backward (train)",
                 "bce_with_logits", "BatchNorm1d (eval)", "Dropout", "GAN generator step"):
        assert name in proc.stdout
    assert "FAILED" not in proc.stdout


def test_gradcheck_fails_with_exit_code_1_on_a_wrong_backward(monkeypatch, capsys):
    from minigan import functional as F

    def wrong_tanh_backward(dout, cache):
        return dout * (1.0 - cache)  # forgot the square
    # F.tanh_forward.__globals__ is F's namespace, so this one setattr is all it takes
    # (patching it a second time with setitem would be undone in the wrong order).
    monkeypatch.setattr(F, "tanh_backward", wrong_tanh_backward)
    from minigan import layers

    monkeypatch.setattr(layers.Tanh, "_backward", staticmethod(wrong_tanh_backward))
    assert cli.main(["gradcheck"]) == 1
    out = capsys.readouterr().out
    assert "tanh_forward/backward" in out and "FAILED" in out


def test_info_runs():
    proc = run_minigan("info")
    assert proc.returncode == 0, proc.stderr
    for word in ("minigan", "Python", "NumPy", "matplotlib", "backends", "GPU", "BLAS",
                 "data dir", "mnist"):
        assert word in proc.stdout


@pytest.mark.parametrize("command", [[], ["train"], ["sample"], ["gradcheck"], ["info"]])
def test_help_everywhere(command, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([*command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: minigan {' '.join(command)}".rstrip())


def test_python_dash_m_help_and_no_command():
    proc = run_minigan("--help")
    assert proc.returncode == 0 and "train" in proc.stdout and "gradcheck" in proc.stdout
    proc = run_minigan()
    assert proc.returncode == 2 and "usage: minigan" in proc.stdout


def test_console_script_is_declared():
    setup_cfg = Path(__file__).resolve().parent.parent / "setup.cfg"
    assert "minigan = minigan.cli:main" in setup_cfg.read_text()


# ------------------------------------------------------------------------- MNIST


def _mnist_dir():
    root = os.environ.get("MINIGAN_DATA_DIR")
    if not root:
        pytest.skip("MINIGAN_DATA_DIR is not set (e.g. MINIGAN_DATA_DIR=../shared/data)")
    folder = Path(root) / "mnist"
    if not (folder / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"no MNIST files in {folder}")
    return root


def test_mnist_smoke(tmp_path):
    _mnist_dir()
    out = tmp_path / "mnist"
    proc = run_minigan("train", "--dataset", "mnist", "--steps", 3, "--batch-size", 16,
                       "--no-metrics", "--out", out)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "classifier" not in proc.stderr.lower()   # --no-metrics: nothing trained
    samples = np.load(out / "samples.npy", allow_pickle=False)
    assert samples.shape == (1000, 784) and samples.dtype == np.float32
    assert samples.min() >= -1 and samples.max() <= 1      # tanh output
    assert (out / "samples.png").read_bytes()[:8] == PNG
    assert not (out / "training.gif").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["skipped"] == "--no-metrics"
    gan, config, _ = load_checkpoint(out / "checkpoint.npz")
    assert config["g_hidden"] == [256, 512, 1024] and config["d_hidden"] == [1024, 512, 256]
    assert gan.step == 3


def test_mnist_batch_larger_than_the_data(tmp_path, capsys):
    root = _mnist_dir()
    code = cli.main(["train", "--dataset", "mnist", "--batch-size", "60001", "--data-dir", root,
                     "--out", str(tmp_path / "r")])
    assert code == 2
    assert "larger than the data set (60000 images)" in capsys.readouterr().err


def _unreachable_mirrors(monkeypatch):
    """Downloads fail at once (offline), without touching the network."""
    from minigan.data import mnist

    for name in mnist.MIRRORS:
        monkeypatch.setitem(mnist.MIRRORS, name, ("http://127.0.0.1:9/",))


def test_offline_mnist_names_all_four_files_and_data_dir(tmp_path, capsys, monkeypatch):
    _unreachable_mirrors(monkeypatch)
    monkeypatch.setenv("MINIGAN_CACHE_DIR", str(tmp_path / "cache"))
    code = cli.main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path / "data"),
                     "--out", str(tmp_path / "r")])
    assert code == 2
    err = capsys.readouterr().err
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        assert name in err
    assert "--data-dir" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_mnist_without_test_files_refuses_to_start_unless_no_metrics(tmp_path, capsys,
                                                                       monkeypatch):
    root = Path(_mnist_dir())
    data = tmp_path / "data" / "mnist"
    data.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        (data / name).symlink_to(root / "mnist" / name)
    _unreachable_mirrors(monkeypatch)
    monkeypatch.setenv("MINIGAN_CACHE_DIR", str(tmp_path / "cache"))  # no classifier yet
    args = ["train", "--dataset", "mnist", "--data-dir", str(tmp_path / "data"), "--steps", "2",
            "--batch-size", "8", "--no-figures"]
    assert cli.main([*args, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "t10k-images-idx3-ubyte.gz" in err and "t10k-labels-idx1-ubyte.gz" in err
    assert not (tmp_path / "r").exists()
    assert cli.main([*args, "--no-metrics", "--quiet", "--out", str(tmp_path / "ok")]) == 0


def test_a_closed_pipe_is_not_a_traceback(tmp_path):
    """`python -m minigan gradcheck | head -n 2`: the reader leaves early; no traceback."""
    proc = subprocess.run(
        f'"{sys.executable}" -m minigan gradcheck | head -n 2', shell=True,
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert len(proc.stdout.splitlines()) == 2
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


# ------------------------------------------------------------------------ evaluate


def _two_step_conditional_run(tmp_path):
    """(MNIST dir, run dir) of a conditional MLP GAN trained for two steps."""
    root = _mnist_dir()
    run = tmp_path / "cgan"
    assert cli.main(["train", "--dataset", "mnist", "--conditional", "--steps", "2",
                     "--batch-size", "16", "--no-metrics", "--no-figures", "--quiet",
                     "--data-dir", root, "--out", str(run)]) == 0
    return root, run


def test_evaluate_cas_of_a_conditional_mnist_run(tmp_path, capsys):
    root, run = _two_step_conditional_run(tmp_path)
    out = tmp_path / "cas.json"
    code = cli.main(["evaluate", "--checkpoint", str(run / "checkpoint.npz"), "--cas",
                     "--n", "1000", "--epochs", "1", "--data-dir", root, "--quiet",
                     "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    result = json.loads(out.read_text())
    assert result["n"] == 1000 and result["epochs"] == 1 and result["step"] == 2
    # two steps of training draw noise, not digits; real digits teach the classifier
    assert result["real_accuracy"] > 0.5 > result["cas"]
    assert f"CAS {100 * result['cas']:.2f}%" in printed
    assert len(result["cas_per_class"]) == len(result["real_per_class"]) == 10
    assert printed.splitlines()[-1] == metrics.per_class_line(result)


def test_evaluate_cas_with_several_seeds_prints_each_and_their_mean(tmp_path, capsys):
    root, run = _two_step_conditional_run(tmp_path)
    capsys.readouterr()
    out = tmp_path / "cas.json"
    common = ["evaluate", "--checkpoint", str(run / "checkpoint.npz"), "--cas", "--n", "1000",
              "--epochs", "1", "--data-dir", root, "--quiet"]
    assert cli.main([*common, "--seed", "3", "5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    result = json.loads(out.read_text())
    assert result["seeds"] == [3, 5] and [r["seed"] for r in result["runs"]] == [3, 5]
    assert result["cas_mean"] == pytest.approx(np.mean([r["cas"] for r in result["runs"]]))
    assert printed[0].startswith(f"seed 3: CAS {100 * result['runs'][0]['cas']:.2f}%")
    assert printed[2].startswith(f"seed 5: CAS {100 * result['runs'][1]['cas']:.2f}%")
    assert printed[-1] == metrics.headline(result) and "on average over seeds 3, 5" in printed[-1]
    # each run is the single-seed command's result
    assert cli.main([*common, "--seed", "5", "--out", str(out), "--overwrite"]) == 0
    single = json.loads(out.read_text())
    assert single["cas"] == result["runs"][1]["cas"]
    assert cli.main([*common, "--seed", "5", "5"]) == 2
    assert "give each seed once" in capsys.readouterr().err


def test_evaluate_cas_refuses_unconditional_and_toy_runs(tmp_path, capsys):
    toy = tmp_path / "ring"
    assert cli.main(["train", "--dataset", "ring8", "--steps", "2", "--no-metrics",
                     "--no-figures", "--quiet", "--out", str(toy)]) == 0
    assert cli.main(["evaluate", "--checkpoint", str(toy / "checkpoint.npz"), "--cas"]) == 2
    assert "trained on 'ring8'" in capsys.readouterr().err
    root = _mnist_dir()
    plain = tmp_path / "gan"
    assert cli.main(["train", "--dataset", "mnist", "--steps", "2", "--batch-size", "16",
                     "--no-metrics", "--no-figures", "--quiet", "--data-dir", root,
                     "--out", str(plain)]) == 0
    assert cli.main(["evaluate", "--checkpoint", str(plain / "checkpoint.npz"), "--cas",
                     "--data-dir", root]) == 2
    assert "train with --conditional" in capsys.readouterr().err


@pytest.mark.parametrize("flag, widths", [(["--g-dense", "16", "8"], [16, 8]), (["--g-dense"], [])],
                         ids=["two", "none"])
def test_g_dense_sets_the_dcgan_generators_hidden_dense_layers(tmp_path, capsys, flag, widths):
    from minigan.layers import Dense

    out = tmp_path / "run"
    assert cli.main(["train", "--dataset", "mnist", "--arch", "dcgan", *flag, "--steps", "1",
                     "--batch-size", "8", "--no-metrics", "--no-figures",
                     "--data-dir", _mnist_dir(), "--out", str(out)]) == 0
    assert f"DCGAN: G 100{''.join(f' -> {w}' for w in widths)} -> channels" in capsys.readouterr().out
    gan, config, _ = load_checkpoint(out / "checkpoint.npz")
    assert config["g_dense"] == widths
    dense = [m for m in gan.G.modules() if isinstance(m, Dense)]
    assert [(m.in_features, m.out_features) for m in dense] == list(
        zip([100, *widths], [*widths, 128 * 49]))
    # --resume rebuilds the same G from the checkpoint and refuses another --g-dense
    assert cli.main(["train", "--resume", str(out / "checkpoint.npz"), "--g-dense", "4"]) == 2
    assert "--g-dense cannot be changed when resuming" in capsys.readouterr().err
    # the MLP's G is all Dense layers already
    assert cli.main(["train", "--dataset", "mnist", "--g-dense", "16", "--out",
                     str(tmp_path / "mlp")]) == 2
    assert "--g-dense adds hidden Dense layers to the DCGAN's G: it needs --arch dcgan" \
        in capsys.readouterr().err


def test_projection_builds_the_projection_discriminator(tmp_path, capsys):
    from minigan.models import LabelPlanes, ProjectionDiscriminator

    def train(out, *flags):
        assert cli.main(["train", "--dataset", "mnist", "--arch", "dcgan", "--conditional",
                         *flags, "--steps", "1", "--batch-size", "8", "--no-metrics",
                         "--no-figures", "--data-dir", _mnist_dir(), "--out", str(out)]) == 0
        return load_checkpoint(out / "checkpoint.npz")[:2]

    # the conditional DCGAN's preset has it, one sample per D output
    gan, config = train(tmp_path / "run")
    assert "channels 64-128 -> 1 + projection of the label" in capsys.readouterr().out
    assert config["projection"] is True and isinstance(gan.D, ProjectionDiscriminator)
    assert gan.D.params["V"].shape == (10, 128 * 7 * 7)
    # with pairs packed, a row per class and place; --no-projection: the label planes
    gan, _ = train(tmp_path / "pairs", "--projection", "--pack", "2")
    assert gan.D.params["V"].shape == (2 * 10, 128 * 7 * 7)
    gan, config = train(tmp_path / "planes", "--no-projection")
    assert config["projection"] is False and isinstance(gan.D.layers[0], LabelPlanes)
    out = tmp_path / "run"
    assert cli.main(["train", "--resume", str(out / "checkpoint.npz"), "--no-projection"]) == 2
    assert "--projection cannot be changed when resuming" in capsys.readouterr().err
    for flags in (["--conditional"], ["--arch", "dcgan"]):
        assert cli.main(["train", "--dataset", "mnist", *flags, "--projection", "--out",
                         str(tmp_path / "no")]) == 2
        assert "--projection is how the conditional DCGAN's D takes the label: it needs " \
            "--arch dcgan --conditional" in capsys.readouterr().err


def test_arch_dcgan_builds_the_convolutional_gan_and_refuses_toy_data(tmp_path, capsys):
    from minigan.layers import Conv2d, ConvTranspose2d
    from minigan.presets import preset

    root = _mnist_dir()
    out = tmp_path / "dcgan"
    assert cli.main(["train", "--dataset", "mnist", "--arch", "dcgan", "--conditional",
                     "--steps", "2", "--batch-size", "16", "--no-metrics", "--no-figures",
                     "--data-dir", root, "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "DCGAN: G 100+10 -> channels 128-64 -> 1x28x28" in printed.out
    # the conditional DCGAN's own length
    assert f"expect {preset('mnist', arch='dcgan', conditional=True)['steps']} steps" in printed.err
    gan, config, _ = load_checkpoint(out / "checkpoint.npz")
    assert config["arch"] == "dcgan" and config["n_classes"] == 10
    assert any(isinstance(m, ConvTranspose2d) for m in gan.G.modules())
    assert any(isinstance(m, Conv2d) for m in gan.D.modules())
    assert cli.main(["sample", "--checkpoint", str(out / "checkpoint.npz"), "--n", "20",
                     "--out", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (20, 784)
    assert cli.main(["train", "--dataset", "ring8", "--arch", "dcgan",
                     "--out", str(tmp_path / "toy")]) == 2
    assert "--arch dcgan is a convolutional GAN for images" in capsys.readouterr().err


def test_a_dcgan_run_gives_its_threads_to_the_convolutions(tmp_path):
    """--arch dcgan --threads 2: the kernels run each layer's chunks on 2 threads and the
    BLAS runs on one (each chunk thread runs its own products); the next MLP run gives
    the threads back to the BLAS."""
    from minigan import _threads

    root = _mnist_dir()
    before = _threads.blas_thread_count()
    try:
        assert cli.main(["train", "--dataset", "mnist", "--arch", "dcgan", "--steps", "2",
                         "--batch-size", "16", "--no-metrics", "--no-figures", "--threads", "2",
                         "--quiet", "--data-dir", root, "--out", str(tmp_path / "d")]) == 0
        assert _threads.workers(4) == 2
        assert _threads.blas_thread_count() in (None, 1)
        assert cli.main(["train", "--dataset", "ring8", "--steps", "2", "--threads", "2",
                         "--quiet", "--no-figures", "--out", str(tmp_path / "r")]) == 0
        assert _threads.workers(4) == 1
        assert _threads.blas_thread_count() in (None, 2)
    finally:
        _threads.share_threads(before, convolutional=False)


def test_cpu_counters_are_read_from_proc_stat(tmp_path):
    """busy = everything but idle and iowait, summed over the cpuN lines of the CPUs asked
    for (all by default; the aggregate "cpu" line is the host's in a container)."""
    from minigan import _threads

    stat = tmp_path / "stat"
    stat.write_text("cpu  100 5 50 800 20 3 2 10 7 0\ncpu0 50 2 25 400 10 1 1 5 3 0\n"
                    "cpu1 50 3 25 400 10 2 1 5 4 0\ncpu7 1 1 1 97 0 0 0 0\nintr 12345\n")
    assert _threads._cpu_times(str(stat)) == (173, 1090, 3)
    assert _threads._cpu_times(str(stat), cpus={0, 1}) == (170, 990, 2)
    assert _threads._cpu_times(str(stat), cpus={7}) == (3, 100, 1)
    assert _threads._cpu_times(str(stat), cpus={2}) is None   # none of the CPUs asked for
    for text in ("", "intr 1 2 3\n", "cpu  1 2 3 4 5 6 7 8\n", "cpu0 1 2 x 4 5 6 7 8\n",
                 "cpu0 1 2 3\n", "cpux 1 2 3 4 5 6 7 8\n"):
        stat.write_text(text)
        assert _threads._cpu_times(str(stat)) is None, text
    assert _threads._cpu_times(str(tmp_path / "absent")) is None


def test_busy_cpus_is_the_busy_share_of_the_cpu_time_over_the_interval(monkeypatch):
    from minigan import _threads

    asked, slept = [], []

    def counters(readings):
        readings = iter(readings)

        def read(cpus=None):
            asked.append(cpus)
            return next(readings)
        return read

    monkeypatch.setattr(_threads, "_affinity", lambda: {0, 1, 2, 3})
    monkeypatch.setattr(_threads.time, "sleep", slept.append)
    # 150 of 200 ticks busy on 4 CPUs: 3 CPUs' worth of work
    monkeypatch.setattr(_threads, "_cpu_times", counters([(1000, 5000, 4), (1150, 5200, 4)]))
    assert _threads.busy_cpus(0.3) == pytest.approx(3.0)
    assert slept == [0.3] and asked == [{0, 1, 2, 3}] * 2   # only this process's CPUs
    monkeypatch.setattr(_threads, "_cpu_times", counters([(1000, 5000, 4), (1000, 5000, 4)]))
    assert _threads.busy_cpus(0.3) is None                   # the counters did not move
    monkeypatch.setattr(_threads, "_cpu_times", lambda cpus=None: None)
    assert _threads.busy_cpus(0.3) is None                   # no counters


@pytest.mark.parametrize("busy, load, expected", [
    (0.1, 1.9, None),   # the load average remembers the last minute's jobs; the CPUs are free now
    (0.6, 0.0, 1),      # another process on one of the two CPUs now: one thread
    (1.9, 0.0, 1),      # at least one
    (None, 1.2, 1),     # no counters (not Linux): the load average decides
    (None, 0.3, None),
])
def test_an_image_run_takes_fewer_threads_only_when_cpus_are_busy_now(busy, load, expected,
                                                                      monkeypatch):
    from minigan import _threads

    for name in _threads.THREAD_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(_threads, "cpu_count", lambda: 2)
    monkeypatch.setattr(_threads.os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(_threads, "busy_cpus", lambda: busy)
    threads, why = _threads.blas_threads(None, is_image=True)
    assert threads == expected
    assert ("the machine is busy" in why) == (expected is not None)
    if expected is not None:
        assert ("load average" in why) == (busy is None), why
    assert _threads.blas_threads(3, is_image=True) == (3, "")   # --threads wins
    assert _threads.blas_threads(None, is_image=False) == (1, "")   # the toy nets: one


@pytest.mark.parametrize("flags, penalty, weight, every", [
    ([], "r1", "preset", "preset"),                     # the preset's own lazy R1
    (["--penalty", "r1"], "r1", "preset", "preset"),    # the same penalty keeps its weight
    (["--penalty-weight", "3", "--penalty-every", "4"], "r1", 3.0, 4),
    (["--penalty", "none"], "none", None, None),
    (["--loss", "wgan-gp"], "gp", 10.0, None),          # another penalty: its method's weight
    (["--penalty", "gp"], "gp", 10.0, None),
    (["--loss", "bce"], "r1", "preset", "preset"),      # the preset's own loss
    # the preset's R1 is tuned for its loss: another --loss goes without it
    (["--loss", "hinge"], "none", None, None),
    (["--loss", "lsgan"], "none", None, None),
    (["--loss", "wasserstein"], "none", None, None),
    (["--loss", "lsgan", "--penalty", "r1"], "r1", "preset", "preset"),
])
def test_the_dcgan_preset_brings_its_penalty_and_flags_change_it(flags, penalty, weight, every):
    from minigan.presets import DCGAN

    args = cli.build_parser().parse_args(["train", "--dataset", "mnist", "--arch", "dcgan",
                                          *flags])
    config = cli._config_from_args(args)
    weight = DCGAN["penalty_weight"] if weight == "preset" else weight
    every = DCGAN["penalty_every"] if every == "preset" else every
    assert (config["penalty"], config.get("penalty_weight"), config.get("penalty_every")) == \
        (penalty, weight, every)
    assert DCGAN["penalty"] == "r1" and DCGAN["penalty_every"] > 1


def test_a_penalty_turns_off_batch_norm_in_the_dcgan_critic(tmp_path, capsys, monkeypatch):
    from minigan.layers import BatchNorm1d
    from minigan.presets import DCGAN

    # the preset's D has no batch norm now; a D that has it (as in the paper) loses it
    monkeypatch.setitem(DCGAN, "d_batchnorm", True)
    root = _mnist_dir()
    out = tmp_path / "dcgan-r1"
    assert cli.main(["train", "--dataset", "mnist", "--arch", "dcgan", "--penalty", "r1",
                     "--steps", "2", "--batch-size", "16", "--no-metrics", "--no-figures",
                     "--data-dir", root, "--out", str(out)]) == 0
    assert "D runs without batch norm" in capsys.readouterr().err
    gan, config, _ = load_checkpoint(out / "checkpoint.npz")
    assert config["d_batchnorm"] is False and type(gan.regularizer).__name__ == "R1"
    assert not any(isinstance(m, BatchNorm1d) for m in gan.D.modules())  # BatchNorm2d too
    assert any(isinstance(m, BatchNorm1d) for m in gan.G.modules())      # G keeps its own
