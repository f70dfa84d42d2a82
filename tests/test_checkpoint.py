"""Checkpoints: one .npz without pickle, bit-identical resume, clear errors."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest

import minigan.backend as mb
from minigan.checkpoint import (
    ArchitectureMismatchError,
    CheckpointError,
    CheckpointVersionError,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)
from minigan.models import build_gan

# Every kind of state: batch norm buffers in G, dropout (its own generator) in D,
# a moving average of G, Adam moments in both optimisers.
CONFIG = {"latent_dim": 3, "data_dim": 2, "g_hidden": [8, 8], "d_hidden": [8, 8],
          "g_batchnorm": True, "d_dropout": 0.2, "ema_decay": 0.9,
          "lr_g": 1e-2, "lr_d": 1e-2, "dataset": "test"}


def _batches(n, size=16, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((size, 2)).astype(np.float32) for _ in range(n)]


def _everything(gan):
    """All state of a GAN as {name: host array or value}, for exact comparisons."""
    out = {}
    for who, model in (("G", gan.G), ("D", gan.D), ("G_ema", gan.ema and gan.ema.G)):
        if model is not None:
            for k, v in model.state_dict().items():
                out[f"{who}/{k}"] = mb.to_numpy(v)
    for who, opt in (("opt_g", gan.g_optimizer), ("opt_d", gan.d_optimizer)):
        for k, v in opt.state_dict().items():
            out[f"{who}/{k}"] = mb.to_numpy(v) if hasattr(v, "shape") else v
    out["step"] = gan.step
    out["ema_updates"] = gan.ema.updates if gan.ema is not None else 0
    out["rng"] = gan.rng.bit_generator.state
    out["history"] = [dict(r) for r in gan.history.records]
    if hasattr(gan.regularizer, "state_dict"):
        out["regularizer"] = gan.regularizer.state_dict()
    return out


def _assert_same(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        if isinstance(a[k], np.ndarray):
            assert a[k].dtype == b[k].dtype, k
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        else:
            assert a[k] == b[k], k


@pytest.fixture
def trained(tmp_path):
    gan = build_gan(CONFIG, backend="numpy", seed=0)
    for real in _batches(3):
        gan.train_step(real)
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, gan, CONFIG, extra={"note": "hello", "data": {"a": [1, 2]},
                                              "frames": np.arange(6.0).reshape(2, 3)})
    return gan, path


def test_round_trip_restores_everything(trained):
    gan, path = trained
    loaded, config, extra = load_checkpoint(path)
    assert config == CONFIG
    assert extra["note"] == "hello" and extra["data"] == {"a": [1, 2]}
    np.testing.assert_array_equal(extra["frames"], np.arange(6.0).reshape(2, 3))
    _assert_same(_everything(gan), _everything(loaded))
    assert loaded.G.dtype == np.float32 and loaded.D.dtype == np.float32
    # the Checkpoint tuple also has names
    ckpt = load_checkpoint(path)
    assert ckpt.config == CONFIG and ckpt.gan.step == 3


def test_the_file_holds_no_pickle_and_one_json_document(trained):
    _, path = trained
    with np.load(path, allow_pickle=False) as npz:
        for name in npz.files:
            assert npz[name].dtype != object, name
        meta = json.loads(npz["__meta__"].tobytes().decode("utf-8"))
    assert meta["format"] == "minigan-checkpoint" and meta["step"] == 3
    assert read_metadata(path)["config"] == CONFIG
    assert not [p for p in os.listdir(path.parent) if p != path.name], "temporary file left"


@pytest.mark.parametrize("n", [1, 4])
def test_resume_is_bit_identical(tmp_path, n):
    batches = _batches(2 * n, seed=1)
    straight = build_gan(CONFIG, backend="numpy", seed=5)
    for real in batches:
        straight.train_step(real)

    first = build_gan(CONFIG, backend="numpy", seed=5)
    for real in batches[:n]:
        first.train_step(real)
    save_checkpoint(tmp_path / "half.npz", first, CONFIG)
    del first
    resumed, _, _ = load_checkpoint(tmp_path / "half.npz")
    for real in batches[n:]:
        resumed.train_step(real)

    _assert_same(_everything(straight), _everything(resumed))
    np.testing.assert_array_equal(straight.sample(7, rng=1), resumed.sample(7, rng=1))


def test_resume_would_differ_without_the_rng_state(tmp_path):
    """The bit-identical test above can fail: losing the noise state changes the run."""
    batches = _batches(4, seed=2)
    straight = build_gan(CONFIG, backend="numpy", seed=6)
    for real in batches:
        straight.train_step(real)
    first = build_gan(CONFIG, backend="numpy", seed=6)
    for real in batches[:2]:
        first.train_step(real)
    save_checkpoint(tmp_path / "half.npz", first, CONFIG)
    resumed, _, _ = load_checkpoint(tmp_path / "half.npz")
    resumed.rng = np.random.default_rng(123)
    for real in batches[2:]:
        resumed.train_step(real)
    assert not np.array_equal(straight.G[0].params["W"], resumed.G[0].params["W"])


def test_load_into_an_existing_gan(trained):
    gan, path = trained
    target = build_gan(CONFIG, backend="numpy", seed=99)
    out = load_checkpoint(path, gan=target)
    assert out.gan is target
    _assert_same(_everything(gan), _everything(target))


def test_save_refuses_a_config_that_is_not_json_and_keeps_the_old_file(trained):
    gan, path = trained
    before = path.read_bytes()
    with pytest.raises(TypeError, match="JSON"):
        save_checkpoint(path, gan, {**CONFIG, "bad": object()})
    assert path.read_bytes() == before
    assert sorted(os.listdir(path.parent)) == [path.name]


# ------------------------------------------------------------------------ errors


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nowhere" / "checkpoint.npz"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_checkpoint(path)


def test_truncated_file(trained):
    _, path = trained
    data = path.read_bytes()
    for keep in (len(data) // 2, len(data) - 10, 100):
        path.write_bytes(data[:keep])
        with pytest.raises(CheckpointError, match="truncated or corrupt"):
            load_checkpoint(path)


def test_corrupt_file(trained):
    _, path = trained
    data = bytearray(path.read_bytes())
    # damage the bytes of the G weights' member, past its local header
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("G/0.W.npy")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 200
    for i in range(start, start + 16):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [b"", b"hello, not a checkpoint\n", b"\x93NUMPY rest"])
def test_not_a_checkpoint(tmp_path, content):
    path = tmp_path / "x.npz"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a minigan checkpoint"):
        load_checkpoint(path)


def test_an_npz_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, weights=np.zeros(3))
    with pytest.raises(CheckpointError, match="no '__meta__' entry.*weights"):
        load_checkpoint(path)


def _rewrite_meta(path, change):
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays["__meta__"].tobytes().decode())
    change(meta)
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_format_version_mismatch(trained):
    _, path = trained
    _rewrite_meta(path, lambda m: m.update(version=99, minigan_version="9.9"))
    with pytest.raises(CheckpointVersionError, match="version 99.*reads version 2"):
        load_checkpoint(path)


def test_a_checkpoint_of_minigan_0_1_is_refused_naming_both_versions(trained):
    """Format 1 (minigan 0.1) numbered a packing D's layers without its Pack layer and
    kept EMA and losses as GAN options: it is refused, with both versions named."""
    _, path = trained
    _rewrite_meta(path, lambda m: m.update(version=1, minigan_version="0.1.0"))
    with pytest.raises(CheckpointVersionError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert "format version 1 (written by minigan 0.1.0)" in message
    assert "reads version 2" in message and "minigan version that wrote it" in message


def test_missing_array_is_reported(trained):
    _, path = trained
    _rewrite_meta(path, lambda m: m["arrays"].append("G/9.W"))
    with pytest.raises(CheckpointError, match="incomplete.*G/9.W"):
        load_checkpoint(path)


def test_another_architecture_names_key_and_shapes(trained):
    _, path = trained
    wider = build_gan({**CONFIG, "g_hidden": [16, 8]}, backend="numpy", seed=0)
    with pytest.raises(ArchitectureMismatchError,
                       match=r"G '0.W' has shape \(3, 8\) in the checkpoint but \(3, 16\)"):
        load_checkpoint(path, gan=wider)


def test_another_depth_names_the_keys(trained):
    _, path = trained
    deeper = build_gan({**CONFIG, "d_hidden": [8, 8, 8]}, backend="numpy", seed=0)
    with pytest.raises(ArchitectureMismatchError, match=r"D has keys \['9.W', '9.b'\] that the checkpoint lacks"):
        load_checkpoint(path, gan=deeper)


def test_ema_presence_must_match(trained):
    _, path = trained
    plain = build_gan({**CONFIG, "ema_decay": 0.0}, backend="numpy", seed=0)
    with pytest.raises(ArchitectureMismatchError, match="G_ema"):
        load_checkpoint(path, gan=plain)


def test_load_onto_a_backend(trained, backend):
    gan, path = trained
    loaded, _, _ = load_checkpoint(path, backend=backend)
    assert loaded.G.backend == backend and loaded.D.backend == backend
    np.testing.assert_array_equal(mb.to_numpy(loaded.G[0].params["W"]), gan.G[0].params["W"])
    loaded.train_step(mb.to_device(_batches(1)[0], backend))


# -------------------------------------------------- penalties and spectral norm

# WGAN-GP (its epsilons come from a generator of its own) and hinge with spectral
# norm (u and v are buffers of D, updated by every training forward).
GP = {"latent_dim": 3, "data_dim": 2, "g_hidden": [8], "d_hidden": [8, 8], "loss": "wasserstein",
      "penalty": "gp", "d_steps": 2, "ema_decay": 0.9, "dataset": "test"}
SN = {"latent_dim": 3, "data_dim": 2, "g_hidden": [8], "d_hidden": [8, 8], "loss": "hinge",
      "spectral_norm": True, "pack": 2, "dataset": "test"}
R1 = {"latent_dim": 3, "data_dim": 2, "g_hidden": [8], "d_hidden": [8], "penalty": "r1",
      "penalty_weight": 0.5, "spectral_norm": True, "dataset": "test"}


def _steps(gan, batches, d_steps):
    for i in range(0, len(batches), d_steps):
        gan.train_step(batches[i:i + d_steps] if d_steps > 1 else batches[i])


@pytest.mark.parametrize("config", [GP, SN, R1], ids=["wgan-gp", "hinge-sn", "r1-sn"])
def test_resume_with_a_penalty_or_spectral_norm_is_bit_identical(tmp_path, config):
    k = config.get("d_steps", 1)
    batches = _batches(6 * k, seed=3)
    straight = build_gan(config, backend="numpy", seed=8)
    _steps(straight, batches, k)

    first = build_gan(config, backend="numpy", seed=8)
    _steps(first, batches[:3 * k], k)
    save_checkpoint(tmp_path / "half.npz", first, config)
    resumed, _, _ = load_checkpoint(tmp_path / "half.npz")
    assert type(resumed.regularizer) is type(straight.regularizer)
    _steps(resumed, batches[3 * k:], k)
    _assert_same(_everything(straight), _everything(resumed))
    if config.get("penalty"):
        assert "d_penalty" in resumed.history.records[-1]


def test_the_file_holds_the_penalty_state_and_spectral_norm_buffers(tmp_path):
    gan = build_gan({**GP, "spectral_norm": True}, backend="numpy", seed=0)
    _steps(gan, _batches(4), 2)
    save_checkpoint(tmp_path / "c.npz", gan, GP)
    meta = read_metadata(tmp_path / "c.npz")
    assert meta["regularizer"] == {"type": "GradientPenalty",
                                   "state": json.loads(json.dumps(gan.regularizer.state_dict()))}
    with np.load(tmp_path / "c.npz", allow_pickle=False) as npz:
        for name in ("D/0.u", "D/0.v", "D/4.u", "D/4.v"):
            np.testing.assert_array_equal(npz[name], gan.D.state_dict()[name[2:]])
    plain = build_gan({k: v for k, v in GP.items() if k != "penalty"}, backend="numpy", seed=0)
    save_checkpoint(tmp_path / "p.npz", plain, GP)
    assert read_metadata(tmp_path / "p.npz")["regularizer"] is None


@pytest.mark.parametrize("lose", ["penalty_rng", "u"])
def test_resume_would_differ_without_the_penalty_or_spectral_state(tmp_path, lose):
    """The bit-identical tests above can fail: losing the epsilons' generator state or
    spectral norm's u changes the run."""
    config = {**GP, "spectral_norm": True}
    batches = _batches(8, seed=4)
    straight = build_gan(config, backend="numpy", seed=9)
    _steps(straight, batches, 2)
    first = build_gan(config, backend="numpy", seed=9)
    _steps(first, batches[:4], 2)
    save_checkpoint(tmp_path / "half.npz", first, config)
    resumed, _, _ = load_checkpoint(tmp_path / "half.npz")
    if lose == "penalty_rng":
        resumed.regularizer.rng = np.random.default_rng(123)
    else:
        resumed.D[0].buffers["u"][...] = build_gan(config, backend="numpy", seed=9).D[0].buffers["u"]
    _steps(resumed, batches[4:], 2)
    assert not np.array_equal(straight.D[0].layer.params["W"], resumed.D[0].layer.params["W"])


def test_a_version_2_file_from_before_the_regularizer_entry_still_loads(trained):
    gan, path = trained
    _rewrite_meta(path, lambda m: m.pop("regularizer"))
    loaded, _, _ = load_checkpoint(path)
    _assert_same(_everything(gan), _everything(loaded))
    assert loaded.regularizer is None


def test_the_regularizer_must_match_when_loading_into_a_gan(tmp_path):
    gan = build_gan(GP, backend="numpy", seed=0)
    save_checkpoint(tmp_path / "gp.npz", gan, GP)
    plain = build_gan({k: v for k, v in GP.items() if k != "penalty"}, backend="numpy", seed=0)
    with pytest.raises(ArchitectureMismatchError, match="regularizer GradientPenalty but this "
                                                        "GAN's is None"):
        load_checkpoint(tmp_path / "gp.npz", gan=plain)
    r1 = build_gan({**GP, "penalty": "r1"}, backend="numpy", seed=0)
    with pytest.raises(ArchitectureMismatchError, match=r"GAN's is R1\(gamma=10\)"):
        load_checkpoint(tmp_path / "gp.npz", gan=r1)
    assert load_checkpoint(tmp_path / "gp.npz", gan=build_gan(GP, seed=5)).gan.regularizer \
        .rng.bit_generator.state == gan.regularizer.rng.bit_generator.state


def test_a_lazy_r1_resumes_only_into_the_same_period(tmp_path):
    lazy = {**R1, "penalty_every": 4}
    gan = build_gan(lazy, backend="numpy", seed=0)
    _steps(gan, _batches(5, seed=1), 1)
    save_checkpoint(tmp_path / "r1.npz", gan, lazy)
    other = build_gan({**R1, "penalty_every": 2}, backend="numpy", seed=0)
    with pytest.raises(ArchitectureMismatchError, match=r"R1 penalised every 4 D steps, but "
                                                        r"this GAN's is R1\(gamma=0.5, every=2"):
        load_checkpoint(tmp_path / "r1.npz", gan=other)
    same = load_checkpoint(tmp_path / "r1.npz", gan=build_gan(lazy, seed=0)).gan.regularizer
    assert (same.calls, same.every) == (5, 4)


@pytest.mark.parametrize("value", [[1, 2], {"state": {}}, {"type": "GradientPenalty", "state": 3}])
def test_a_damaged_regularizer_entry_is_named(tmp_path, value):
    gan = build_gan(GP, backend="numpy", seed=0)
    save_checkpoint(tmp_path / "gp.npz", gan, GP)
    _rewrite_meta(tmp_path / "gp.npz", lambda m: m.update(regularizer=value))
    with pytest.raises(CheckpointError, match="metadata entry 'regularizer'"):
        load_checkpoint(tmp_path / "gp.npz")


def test_a_damaged_penalty_generator_state_is_a_checkpoint_error(tmp_path):
    gan = build_gan(GP, backend="numpy", seed=0)
    save_checkpoint(tmp_path / "gp.npz", gan, GP)
    _rewrite_meta(tmp_path / "gp.npz",
                  lambda m: m["regularizer"].update(state={"rng": {"bit_generator": "nope"}}))
    with pytest.raises(CheckpointError, match="regularizer \\('regularizer'\\) is damaged"):
        load_checkpoint(tmp_path / "gp.npz")
