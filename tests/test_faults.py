"""Fault injection: every case of issue 17 ends in a clear error or a correct result,
with nothing lost.

The run directory (symlinks, read-only, concurrent runs, a full disk), the
downloader (a trickling and an endless server on 127.0.0.1), caps and batching
(--frames, sample), bad hyper-parameters and optimiser states, the divergence
guard, crafted checkpoints and bad inputs. A full or read-only file system is a
small tmpfs where the tests run as root (mount needs it) and is skipped, with
the reason, elsewhere.
"""

from __future__ import annotations

import contextlib
import errno
import http.server
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from minigan import cli, rundir
from minigan.checkpoint import (ArchitectureMismatchError, CheckpointError, load_checkpoint,
                                save_checkpoint)
from minigan.data import mnist
from minigan.gan import GAN
from minigan.layers import BatchNorm1d, Dense, LeakyReLU, ReLU, Sequential
from minigan.losses import BCE, BCEWithLogits, SoftmaxCrossEntropy
from minigan.models import build_gan
from minigan.optim import SGD, Adam
from minigan.train import DivergenceError, DivergenceGuard, fit

FAST = ["--no-figures", "--no-metrics", "--quiet"]
SMALL = ["--steps", "6", "--batch-size", "16", "--checkpoint-every", "3"]


def train(out, *args):
    return cli.main(["train", *SMALL, "--out", str(out), *FAST, *args])


@pytest.fixture
def finished_run(tmp_path):
    out = tmp_path / "run"
    assert train(out) == 0
    return out


# ------------------------------------------------------------- tmpfs (root only)


@contextlib.contextmanager
def tmpfs(path, size="64k", read_only=False):
    """A small tmpfs at ``path``; skips the test, saying why, where it cannot mount."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root and mount(8) to mount a small tmpfs (a full or read-only "
                    "file system); run the tests as root to include this case")
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


# ------------------------------------------------------------ the run directory


def test_resume_through_a_symlinked_out_keeps_the_checkpoint(finished_run, tmp_path,
                                                             monkeypatch, capsys):
    """Before: --out <a symlink to D> --overwrite deleted D/checkpoint.npz, the file
    it resumed from (abspath, not realpath). After: nothing is deleted up front."""
    link = tmp_path / "link"
    link.symlink_to(finished_run)
    ckpt = finished_run / "checkpoint.npz"
    before = ckpt.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(ckpt))

    monkeypatch.setattr("minigan.train.fit", disk_full)
    code = cli.main(["train", "--resume", str(ckpt), "--out", str(link), "--overwrite",
                     "--steps", "12", *FAST])
    assert code == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err
    assert ckpt.read_bytes() == before
    assert (finished_run / "history.csv").is_file()


def test_resuming_through_a_symlink_counts_the_checkpoint_as_saved(finished_run, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(finished_run)
    assert cli.main(["train", "--resume", str(finished_run / "checkpoint.npz"), "--out",
                     str(link), "--steps", "9", *FAST]) == 0
    assert load_checkpoint(finished_run / "checkpoint.npz").gan.step == 9


def test_overwrite_keeps_the_old_run_until_the_new_checkpoint_is_saved(finished_run,
                                                                       monkeypatch, capsys):
    """Before: --overwrite deleted the old run's files before training. After: they
    stay until the new checkpoint is on disk; a run that fails first loses nothing."""
    (finished_run / "metrics.json").write_text("{}")  # an output of the old run
    before = {p.name: p.read_bytes() for p in finished_run.iterdir() if p.name != "config.json"}

    def fails(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("minigan.checkpoint.save_checkpoint", fails)
    assert train(finished_run, "--overwrite", "--seed", "5") == 1
    assert "No space left on device" in capsys.readouterr().err
    after = {p.name: p.read_bytes() for p in finished_run.iterdir() if p.name != "config.json"}
    assert after == before


def test_overwrite_removes_the_old_outputs_once_the_new_checkpoint_is_saved(finished_run):
    (finished_run / "samples.png").write_bytes(b"old")
    assert train(finished_run, "--overwrite", "--seed", "5") == 0
    assert not (finished_run / "samples.png").exists()   # not written by this run: stale
    assert load_checkpoint(finished_run / "checkpoint.npz").config["seed"] == 5


def test_a_second_concurrent_run_is_refused_naming_the_other_process(tmp_path, capsys):
    """Before: both runs exited 0, one overwriting the other. After: the second is
    refused before it starts and the first's files are untouched."""
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen(
        ["python3", "-c", "import fcntl, os, sys, time\n"
         f"fd = os.open({str(out / rundir.LOCK_FILE)!r}, os.O_RDWR | os.O_CREAT)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, str(os.getpid()).encode())\n"
         "print('locked', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert train(out, "--overwrite") == 2
        err = capsys.readouterr().err
        assert f"another minigan run (process {holder.pid}) is writing to" in err
        assert not (out / "checkpoint.npz").exists()
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert train(out, "--overwrite") == 0  # the lock died with its process


def test_the_lock_is_released_and_removed_after_a_run(finished_run):
    assert not (finished_run / rundir.LOCK_FILE).exists()
    assert train(finished_run, "--overwrite") == 0


def test_a_read_only_out_is_refused_before_training(tmp_path, capsys):
    """Before: found at the first save (with --checkpoint-every 0, after the whole
    run). After: refused at once, by writing, exit 2."""
    with tmpfs(tmp_path / "ro", read_only=True) as out:
        start = time.perf_counter()
        assert cli.main(["train", "--steps", "100000", "--out", str(out), *FAST]) == 2
        assert time.perf_counter() - start < 20
    err = capsys.readouterr().err
    assert "is not writable" in err and "Read-only file system" in err


def test_a_disk_that_fills_during_the_run_keeps_what_was_saved(tmp_path, capsys):
    with tmpfs(tmp_path / "small", size="12k") as out:
        code = cli.main(["train", "--steps", "6", "--batch-size", "16", "--out", str(out),
                         *FAST])
        left = sorted(os.listdir(out))
    assert code == 1
    err = capsys.readouterr().err
    assert "could not write a file (No space left on device" in err
    assert "Traceback" not in err
    assert not [n for n in left if ".tmp" in n]     # no half-written temporary files
    assert "config.json" in left


def test_a_disk_that_fills_after_training_keeps_the_checkpoint(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"

    def full(path, array):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(cli, "_atomic_npy", full)
    assert train(out) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "checkpoint of step 6 is safe" in err
    assert load_checkpoint(out / "checkpoint.npz").gan.step == 6


def test_a_read_only_classifier_cache_keeps_the_scores(tmp_path, monkeypatch):
    """Before: a read-only cache after a 15-minute run: no metrics.json. After: the
    classifier is used uncached, with a warning."""
    from minigan import metrics

    rng = np.random.default_rng(0)
    images = rng.random((200, 784), dtype=np.float32)
    labels = np.arange(200) % 10

    monkeypatch.setattr("minigan.data.load_mnist", lambda split, data_dir=None: (images, labels))

    def read_only(self, path):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(metrics.MnistClassifier, "save", read_only)
    monkeypatch.setattr(metrics.MnistClassifier, "accuracy", lambda self, x, y: 0.99)
    monkeypatch.setattr(metrics.MnistClassifier, "fit",
                        lambda self, *a, **k: setattr(self, "train_seconds", 0.0) or self)
    with pytest.warns(UserWarning, match="Could not cache the MNIST classifier"):
        clf = metrics.load_classifier(cache_dir=tmp_path / "cache", verbose=False)
    assert clf.predict(images[:5]).shape == (5,)


def test_stale_temporary_files_of_a_killed_run_are_removed(finished_run):
    dead = _dead_pid()
    stale = finished_run / f".checkpoint-{dead}-0123abcd.tmp.npz"
    stale.write_bytes(b"x" * 1000)
    mine = finished_run / f".checkpoint-{os.getpid()}-0123abcd.tmp.npz"  # a live writer's
    mine.write_bytes(b"x")
    assert train(finished_run, "--overwrite") == 0
    assert not stale.exists() and mine.exists()


def test_a_name_at_the_length_limit_is_written(tmp_path):
    """Before: a 254-character name went over the limit with the temporary suffix."""
    from minigan._atomic import atomic_open

    path = tmp_path / ("a" * 250 + ".npz")
    with atomic_open(path) as f:
        f.write(b"data")
    assert path.read_bytes() == b"data"
    assert os.listdir(tmp_path) == [path.name]


def _dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# ------------------------------------------------------------------- downloader

NAME = "t10k-labels-idx1-ubyte.gz"
SIZE = mnist.FILES["mnist"][NAME][0]


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


@contextlib.contextmanager
def serve(handler):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            handler(self)

        def log_message(self, *args):
            pass

    httpd = _Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


def trickle(request):
    """The right Content-Length, then a byte every 0.2 s (40 hours for this file
    at one byte per 5 s)."""
    request.send_response(200)
    request.send_header("Content-Length", str(SIZE))
    request.end_headers()
    with contextlib.suppress(OSError):
        for _ in range(SIZE):
            request.wfile.write(b"\0")
            request.wfile.flush()
            time.sleep(0.2)


def endless(request):
    """No Content-Length, and bytes without end (1.3 GB in 12 s before the fix)."""
    request.send_response(200)
    request.end_headers()
    block = b"\0" * 65536
    with contextlib.suppress(OSError):
        for _ in range(100_000):
            request.wfile.write(block)


def test_a_trickling_server_is_given_up_at_the_deadline(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist, "_DEADLINE_BASE_S", 1.0)
    monkeypatch.setattr(mnist, "_TIMEOUT_S", 2)
    with serve(trickle) as url:
        start = time.perf_counter()
        with pytest.raises(mnist.DownloadError, match="too slow"):
            mnist.fetch_files("mnist", [NAME], data_dir=tmp_path, mirrors=[url],
                              progress=False)
        assert time.perf_counter() - start < 10
    assert os.listdir(tmp_path / "mnist") == []  # no file, no .part


def test_an_endless_server_is_stopped_at_the_expected_size(tmp_path):
    with serve(endless) as url:
        with pytest.raises(mnist.DownloadError, match=f"more than the expected {SIZE} bytes"):
            mnist.fetch_files("mnist", [NAME], data_dir=tmp_path, mirrors=[url],
                              progress=False)
    assert os.listdir(tmp_path / "mnist") == []


def test_part_files_of_killed_downloads_are_removed_on_the_next_start(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    stale = folder / f".{NAME}.{_dead_pid()}.k2j4h5g6.part"
    stale.write_bytes(b"x" * 100)
    live = folder / f".{NAME}.{os.getpid()}.k2j4h5g6.part"
    live.write_bytes(b"x")
    with pytest.raises(mnist.DataNotFoundError):
        mnist.fetch_files("mnist", [NAME], data_dir=tmp_path, download=False)
    assert not stale.exists() and live.exists()


# ---------------------------------------------------------------- caps, batching


def test_frames_are_capped(tmp_path, capsys):
    """Before: --frames had no cap (a frame every step: 513 s, 3.5 GB)."""
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--frames", "100000", "--out", str(tmp_path / "r")])
    assert exc.value.code == 2
    assert f"expected an integer from 0 to {cli.MAX_FRAMES}" in capsys.readouterr().err


def test_sample_is_batched_and_gives_the_same_numbers(finished_run, tmp_path, monkeypatch):
    ckpt = finished_run / "checkpoint.npz"
    monkeypatch.setattr(cli, "SAMPLE_BATCH", 7)
    out = tmp_path / "s.npy"
    assert cli.main(["sample", "--checkpoint", str(ckpt), "--n", "30", "--seed", "4",
                     "--out", str(out), "--quiet"]) == 0
    gan = load_checkpoint(ckpt).gan
    expected = gan.sample(30, rng=np.random.default_rng(4))
    # The same noise, drawn in order; only BLAS may sum a matrix product of 7 rows
    # in another order than one of 30, so the last bits of float32 may differ.
    np.testing.assert_allclose(np.load(out), expected, rtol=1e-5, atol=1e-7)


def test_sample_refuses_sizes_that_cannot_fit(finished_run, tmp_path, capsys):
    """Before: --n 1e8 was a MemoryError (1e7 peaked at 10 GB)."""
    ckpt = str(finished_run / "checkpoint.npz")
    assert cli.main(["sample", "--checkpoint", ckpt, "--n", str(10**13),
                     "--out", str(tmp_path / "s.npy")]) == 2
    err = capsys.readouterr().err
    assert "GiB" in err and "is free there" in err
    assert not (tmp_path / "s.npy").exists()
    assert cli.main(["sample", "--checkpoint", ckpt, "--n", str(10**6),
                     "--out", str(tmp_path / "s.png")]) == 2
    assert "too many samples for a figure" in capsys.readouterr().err


# ------------------------------------------------------- hyper-parameters, optimisers


def _model():
    return Sequential(Dense(2, 3), LeakyReLU(0.2), Dense(3, 1))


@pytest.mark.parametrize("make, message", [
    (lambda ps: Adam(ps, lr=float("nan")), "learning rate must be positive, got nan"),
    (lambda ps: Adam(ps, lr=float("inf")), "learning rate must be positive, got inf"),
    (lambda ps: Adam(ps, lr="0.1"), "the learning rate must be a number, got str"),
    (lambda ps: Adam(ps, betas=(float("nan"), 0.9)), r"betas must be in \[0, 1\)"),
    (lambda ps: Adam(ps, betas=0.9), "betas must be a pair"),
    (lambda ps: Adam(ps, eps=0), r"eps must be a finite number in \(0, inf\)"),
    (lambda ps: Adam(ps, weight_decay=float("nan")), "weight_decay must be a finite number"),
    (lambda ps: SGD(ps, momentum=1.0), r"momentum must be a finite number in \[0, 1\)"),
    (lambda ps: SGD(ps, momentum=float("nan")), "momentum must be a finite number"),
    (lambda ps: SGD(ps, lr=float("nan")), "learning rate must be positive, got nan"),
])
def test_optimiser_hyperparameters_are_checked(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make(_model().parameters())


def test_an_optimiser_built_before_astype_is_refused():
    """Before: the optimiser kept updating the old arrays; the model never trained."""
    G, D = _model(), _model()
    g_opt, d_opt = Adam(G.parameters()), Adam(D.parameters())
    G.astype("float64")
    D.astype("float64")
    with pytest.raises(ValueError, match="Build the optimiser after moving the model"):
        GAN(G, D, 2, g_opt, d_opt)
    G2, D2 = _model(), _model()
    gan = GAN(G2, D2, 2, Adam(G2.parameters()), Adam(D2.parameters()))
    D2.astype("float64")
    with pytest.raises(ValueError, match="does not hold D's parameter"):
        fit(gan, [np.zeros((4, 2))], steps=1)


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("t"), "has no 't'"),
    (lambda s: s.update(t="x"), "'t' must be an integer >= 0"),
    (lambda s: s.update(lr=float("nan")), "learning rate must be positive, got nan"),
    (lambda s: s.update({"m.0": [[0.0]]}), "'m.0' must be an array, got list"),
    (lambda s: s.update({"m.0": np.full((2, 3), np.nan, np.float32)}), "'m.0' holds NaN"),
    (lambda s: s.pop("v.1"), "has no 'v.1'"),
])
def test_bad_optimiser_states_are_refused_and_change_nothing(change, message):
    model = _model()
    opt = Adam(model.parameters(), lr=1e-3)
    state = opt.state_dict()
    change(state)
    with pytest.raises((ValueError, TypeError), match=message):
        opt.load_state_dict(state)
    assert opt.t == 0 and opt.lr == 1e-3 and not opt.m[0].any()
    with pytest.raises(TypeError, match="expects the dict of state_dict"):
        opt.load_state_dict([1, 2])


# ------------------------------------------------------------- divergence guard


def _record(**values):
    return {"step": 3, "d_loss": 0.7, "g_loss": 0.7, "d_grad_norm": 1.0, "g_grad_norm": 1.0,
            **values}


@pytest.mark.parametrize("values, message", [
    ({"g_loss": 3e27}, "g_loss=3e\\+27 \\(a loss exploded"),
    ({"g_grad_norm": float("inf")}, "g_grad_norm=inf \\(a gradient exploded"),
    ({"d_grad_norm": float("nan")}, "d_grad_norm=nan"),
    ({"d_grad_norm": 2e6}, "beyond DivergenceGuard's max_grad_norm=1e\\+06"),
])
def test_the_guard_stops_on_exploding_losses_and_gradients(values, message):
    """Before: only NaN/inf losses stopped a run; lr 1e6 gave g_loss 3e27 and an
    infinite gradient norm and ran on."""
    with pytest.raises(DivergenceError, match=message):
        DivergenceGuard().on_step(None, _record(**values))
    DivergenceGuard(max_loss=None, max_grad_norm=None).on_step(None, _record(g_loss=3e27))


def test_the_guard_computes_the_gradient_norms_when_no_one_did():
    gan = build_gan({"latent_dim": 2, "data_dim": 2, "g_hidden": [8], "d_hidden": [8]}, seed=0)
    for _, g in gan.D.parameters():
        g[...] = np.inf
    with pytest.raises(DivergenceError, match="d_grad_norm=inf"):
        DivergenceGuard().on_step(gan, {"step": 1, "d_loss": 0.5, "g_loss": 0.5})
    with pytest.raises(ValueError, match="max_loss must be a positive finite number"):
        DivergenceGuard(max_loss=float("nan"))


def test_a_huge_learning_rate_stops_the_cli_run(tmp_path, capsys):
    assert cli.main(["train", "--steps", "40", "--batch-size", "16", "--lr", "1e6",
                     "--out", str(tmp_path / "r"), *FAST]) == 1
    assert "training diverged at step" in capsys.readouterr().err


# ------------------------------------------------------------ labels and targets


def test_label_and_target_ranges_are_checked():
    logits = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"class indices in \[0, 4\).*from -1 to 2"):
        SoftmaxCrossEntropy().forward(logits, np.array([0, -1, 2]))
    with pytest.raises(ValueError, match="from 0 to 4"):
        SoftmaxCrossEntropy().forward(logits, np.array([0, 4, 2]))
    z = np.zeros((2, 1), np.float32)
    for loss in (BCEWithLogits(), BCE()):
        with pytest.raises(ValueError, match=r"probabilities in \[0, 1\].*\[2.0\]"):
            loss.forward(z + 0.5, np.array([[1.0], [2.0]], np.float32))
    assert BCEWithLogits().forward(z, np.full((2, 1), 0.9, np.float32)) > 0


def test_a_discriminator_with_two_outputs_is_refused():
    G = Sequential(Dense(2, 4), ReLU(), Dense(4, 2))
    D = Sequential(Dense(2, 4), ReLU(), Dense(4, 2))
    gan = GAN(G, D, 2, Adam(G.parameters()), Adam(D.parameters()), rng=0)
    with pytest.raises(ValueError, match=r"D's output must have shape \(n, 1\)"):
        gan.train_step(np.zeros((4, 2), np.float32))


# ------------------------------------------------------------ crafted checkpoints


def _rewrite(path, out, change_meta=None, change_arrays=None):
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays.pop("__meta__").tobytes().decode())
    if change_meta:
        change_meta(meta)
    if change_arrays:
        change_arrays(arrays)
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(out, **arrays)
    return out


def test_a_checkpoint_with_nan_weights_is_refused_by_name(finished_run, tmp_path, capsys):
    """Before: it loaded, and sample wrote all-NaN samples with exit 0."""
    def poison(arrays):
        arrays["G/0.W"] = np.full_like(arrays["G/0.W"], np.nan)

    bad = _rewrite(finished_run / "checkpoint.npz", tmp_path / "nan.npz", change_arrays=poison)
    with pytest.raises(CheckpointError, match="G '0.W' holds NaN or inf"):
        load_checkpoint(bad)
    assert cli.main(["sample", "--checkpoint", str(bad), "--out",
                     str(tmp_path / "s.npy")]) == 2
    assert "holds NaN or inf" in capsys.readouterr().err
    assert not (tmp_path / "s.npy").exists()


def test_a_checkpoint_of_another_activation_is_refused(finished_run):
    """Before: a checkpoint of another activation loaded into a same-shaped model."""
    ckpt = load_checkpoint(finished_run / "checkpoint.npz")
    config = dict(ckpt.config, activation="tanh")
    other = build_gan(config, seed=0)
    with pytest.raises(ArchitectureMismatchError,
                       match="G layer '1' is ReLU in the checkpoint but Tanh in the model"):
        load_checkpoint(finished_run / "checkpoint.npz", gan=other)


@pytest.mark.parametrize("change, message", [
    (lambda m: m.pop("optimizers"), "has no 'optimizers' entry"),
    (lambda m: m.update(step="7"), "'step' must be an integer, got str"),
    (lambda m: m.update(step=-1), "'step' must be an integer >= 0"),
    (lambda m: m.update(config=[1]), "'config' must be a dict, got list"),
    (lambda m: m["optimizers"].update(g=3), "'optimizers.g' must be a dict"),
    (lambda m: m["dropout_rng"].pop("D"), "'dropout_rng.D' must be a dict"),
    (lambda m: m["history_keys"].append("nonsense"), r"arrays \['history/nonsense'\]"),
    (lambda m: m["optimizers"]["g"]["state"].update(t=None), "'t' must be an integer >= 0"),
    (lambda m: m.update(noise_rng={"bit_generator": "PCG64", "state": 5}),
     "'noise_rng' or 'dropout_rng'\\) is damaged"),
])
def test_crafted_checkpoint_metadata_is_refused_by_entry(finished_run, tmp_path, change,
                                                        message):
    """Before: KeyError, TypeError, AttributeError from inside the loader."""
    bad = _rewrite(finished_run / "checkpoint.npz", tmp_path / "bad.npz", change_meta=change)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(bad)


def test_a_crafted_integer_weight_array_is_refused(finished_run, tmp_path):
    def ints(arrays):
        arrays["D/1.b"] = arrays["D/1.b"].astype(np.int64)

    bad = _rewrite(finished_run / "checkpoint.npz", tmp_path / "int.npz", change_arrays=ints)
    with pytest.raises(CheckpointError, match="D '1.b' must hold floating-point numbers"):
        load_checkpoint(bad)


# --------------------------------------------------------------------- bad inputs


def _gan(G=None, D=None):
    G = G or _model_g()
    D = D or _model()
    return GAN(G, D, 2, Adam(G.parameters()), Adam(D.parameters()), rng=0)


def _model_g():
    return Sequential(Dense(2, 3), LeakyReLU(0.2), Dense(3, 2))


def test_a_nan_batch_does_not_poison_batch_norm():
    bn = BatchNorm1d(3)
    x = np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32)
    bn(x)
    mean, var = bn.running_mean.copy(), bn.running_var.copy()
    x[2, 1] = np.nan
    bn(x)
    assert np.isfinite(bn.running_mean).all() and np.isfinite(bn.running_var).all()
    assert bn.running_mean[1] == mean[1] and bn.running_var[1] == var[1]  # kept
    assert bn.running_mean[0] != mean[0]                                 # updated
    with pytest.raises(ValueError, match="needs at least 2 samples per batch"):
        bn(x[:1])


def test_empty_batches_and_lists_are_refused():
    gan = _gan()
    with pytest.raises(ValueError, match="the real batch is empty"):
        gan.train_step(np.zeros((0, 2), np.float32))
    with pytest.raises(TypeError, match="got a Python list; convert it with np.asarray"):
        gan.train_step([[0.0, 1.0], [1.0, 0.0]])


def test_a_layer_used_twice_is_refused():
    """Before: a misleading "backward without forward" at the first step."""
    shared = Dense(3, 3)
    with pytest.raises(ValueError, match="the same Dense object is at '1' and at '3'"):
        Sequential(Dense(2, 3), shared, LeakyReLU(0.2), shared, Dense(3, 2))
    G = Sequential(Dense(2, 3), shared, LeakyReLU(0.2), Dense(3, 2))
    G.layers.append(shared)  # reused after building: the GAN still finds it
    with pytest.raises(ValueError, match="the same Dense object is used twice: as G layer '1' "
                                         "and as G layer '4'"):
        _gan(G=G)
    act = LeakyReLU(0.2)
    G = Sequential(Dense(2, 3), act, Dense(3, 2))
    D = Sequential(Dense(2, 3), act, Dense(3, 1))
    with pytest.raises(ValueError, match="as G layer '1' and as D layer '1'"):
        _gan(G=G, D=D)
    model = _model()
    with pytest.raises(ValueError, match="are the same object"):
        GAN(model, model, 2, Adam(model.parameters()), Adam(model.parameters()))


def test_bad_fit_arguments_are_refused():
    with pytest.raises(ValueError, match="steps must be an integer >= 0"):
        fit(_gan(), [], steps=2.5)


def test_bad_numbers_on_the_command_line(tmp_path, capsys):
    for args, message in ((["--lr", "inf"], "expected a positive number"),
                          (["--ema-decay", "nan"], "expected a number in [0, 1)"),
                          (["--frames", "-1"], "expected an integer from 0 to")):
        with pytest.raises(SystemExit):
            cli.main(["train", "--out", str(tmp_path / "r"), *args])
        assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_checkpoint_written_next_to_a_long_name(tmp_path):
    gan = _gan()
    path = tmp_path / ("c" * 240 + ".npz")
    save_checkpoint(path, gan, {"latent_dim": 2})
    assert path.is_file()


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("rng"), r"state lacks \['rng'\]"),
    (lambda s: s.update(epoch=-1), "'epoch' must be an integer >= 0"),
    (lambda s: s.update(batches_done="2"), "'batches_done' must be an integer >= 0"),
    (lambda s: s.update(batches_done=99), "an epoch has 4 batches"),
    (lambda s: s.update(rng={"bit_generator": "MT19937"}), "'rng' is not a state of this"),
])
def test_bad_data_iterator_states_are_refused(change, message):
    from minigan.data import Minibatches

    batches = Minibatches(np.zeros((8, 2), np.float32), batch_size=2, rng=0)
    state = batches.state_dict()
    change(state)
    with pytest.raises(ValueError, match=message):
        batches.load_state_dict(state)


def test_a_checkpoint_with_a_damaged_data_state_is_a_clear_cli_error(finished_run, tmp_path,
                                                                     capsys):
    def damage(meta):
        meta["extra"]["data_state"] = {"rng": 5}

    bad = _rewrite(finished_run / "checkpoint.npz", tmp_path / "bad.npz", change_meta=damage)
    assert cli.main(["train", "--resume", str(bad), "--out", str(tmp_path / "new"), "--steps",
                     "9", *FAST]) == 2
    assert "cannot continue its data order" in capsys.readouterr().err
    assert load_checkpoint(finished_run / "checkpoint.npz").gan.step == 6


def test_run_directories_are_compared_after_resolving_symlinks(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    assert rundir.same_file(tmp_path / "link" / "checkpoint.npz", real / "checkpoint.npz")
    assert not rundir.same_file(tmp_path / "link", tmp_path)


@pytest.mark.parametrize("key, value, message", [
    ("lr_g", float("nan"), "'lr_g' must be a finite number > 0, got nan"),
    ("ema_decay", 1.0, r"'ema_decay' must be a number in \[0, 1\)"),
    ("slope", float("inf"), "'slope' must be a finite number"),
    ("lr_final", "0.1", "'lr_final' must be a fraction in \\[0, 1\\], got str"),
])
def test_numbers_in_a_gan_config_are_checked(key, value, message):
    config = {"latent_dim": 2, "data_dim": 2, "g_hidden": [8], "d_hidden": [8], key: value}
    with pytest.raises((ValueError, TypeError), match=message):
        build_gan(config, seed=0)


def test_a_diverged_overwrite_leaves_no_outputs_of_the_old_run(finished_run, capsys):
    (finished_run / "metrics.json").write_text('{"old": true}')
    assert train(finished_run, "--overwrite", "--lr", "1e6", "--steps", "40",
                 "--checkpoint-every", "1") == 1
    err = capsys.readouterr().err
    assert "training diverged" in err and "is kept in" in err
    assert not (finished_run / "metrics.json").exists()
    assert load_checkpoint(finished_run / "checkpoint.npz").config["lr_g"] == 1e6


@pytest.mark.parametrize("loss", [BCEWithLogits(), BCE(), SoftmaxCrossEntropy()],
                         ids=lambda loss: type(loss).__name__)
def test_an_empty_batch_in_a_loss_is_a_clear_error(loss):
    """Before: ZeroDivisionError (the mean over no entries)."""
    with pytest.raises(ValueError, match="the batch is empty"):
        loss.forward(np.zeros((0, 1), np.float32), np.zeros((0, 1), np.float32))


def test_sample_into_a_read_only_folder_is_one_clear_line(finished_run, tmp_path, capsys):
    with tmpfs(tmp_path / "ro", read_only=True) as folder:
        code = cli.main(["sample", "--checkpoint", str(finished_run / "checkpoint.npz"),
                         "--out", str(folder / "s.npy")])
    assert code == 1
    err = capsys.readouterr().err
    assert "could not write a file (Read-only file system" in err and "Traceback" not in err


def test_callback_intervals_are_checked(tmp_path):
    from minigan.train import Checkpoints

    with pytest.raises(ValueError, match="every must be an integer >= 0"):
        Checkpoints(tmp_path / "c.npz", {}, every=-1)
    with pytest.raises(ValueError, match="every must be an integer >= 0"):
        Checkpoints(tmp_path / "c.npz", {}, every=2.5)


def test_batched_samples_of_a_conditional_gan_keep_cycling_the_labels(tmp_path, monkeypatch):
    config = {"latent_dim": 2, "data_dim": 3, "g_hidden": [4], "d_hidden": [4], "n_classes": 3}
    gan = build_gan(config, seed=0)
    save_checkpoint(tmp_path / "c.npz", gan, config)
    monkeypatch.setattr(cli, "SAMPLE_BATCH", 4)
    assert cli.main(["sample", "--checkpoint", str(tmp_path / "c.npz"), "--n", "10",
                     "--out", str(tmp_path / "s.npy"), "--quiet"]) == 0
    expected = gan.sample(10, rng=np.random.default_rng(0))  # labels 0, 1, 2, 0, ...
    np.testing.assert_allclose(np.load(tmp_path / "s.npy"), expected, rtol=1e-5, atol=1e-7)
