"""Image GANs over training: ``train.ImageSnapshots`` (the same noise, recorded every
N steps), ``plot.plot_progress``, ``plot.slerp`` and ``plot.plot_interpolation``, and
the command line's progress.png and interpolation.png."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minigan import cli, plot
from minigan.backend import to_numpy
from minigan.checkpoint import load_checkpoint, save_checkpoint
from minigan.data import FASHION_MNIST_CLASSES, Minibatches
from minigan.models import build_gan
from minigan.train import ImageSnapshots, fit

PNG = b"\x89PNG\r\n\x1a\n"
# An MNIST-shaped GAN, small enough for a few steps in milliseconds.
CONFIG = {"latent_dim": 8, "data_dim": 784, "g_hidden": [16], "d_hidden": [16],
          "g_out": "tanh", "lr_g": 1e-2, "lr_d": 1e-2}
IMAGES = np.random.default_rng(0).uniform(-1, 1, (64, 784)).astype(np.float32)
LABELS = np.arange(64) % 10


def image_gan(backend="numpy", seed=0, **overrides):
    return build_gan({**CONFIG, **overrides}, backend=backend, seed=seed)


def batches(backend="numpy", labels=False):
    arrays = (IMAGES, LABELS) if labels else (IMAGES,)
    return Minibatches(*arrays, batch_size=16, rng=0, backend=backend).forever()


def steps_of(snapshots):
    return [step for step, _ in snapshots.snapshots]


def assert_png(path):
    data = path.read_bytes()
    assert len(data) > 1000 and data.startswith(PNG), f"{path}: {len(data)} bytes, {data[:8]!r}"
    assert not [p.name for p in path.parent.iterdir() if p.name.startswith(".")]


def cell(fig, r, c, size=28, padding=2):
    """The image drawn at row r, column c of a figure's mosaic, in [0, 1]."""
    mosaic = np.asarray(fig.axes[0].images[0].get_array())
    y, x = padding + r * (size + padding), padding + c * (size + padding)
    return mosaic[y:y + size, x:x + size]


def as_cell(image):
    """How the figures draw one image (784,) in [-1, 1]: (28, 28) in [0, 1]."""
    return np.clip((np.asarray(image, dtype=np.float64).reshape(28, 28) + 1) / 2, 0, 1)


# ----------------------------------------------------------------- ImageSnapshots


def test_snapshots_at_step_0_and_every_n_of_the_same_noise(backend):
    gan = image_gan(backend)
    snaps = ImageSnapshots(every=2, n=10, seed=3)
    fit(gan, batches(backend), 6, callbacks=[snaps])
    assert steps_of(snaps) == [0, 2, 4, 6]
    for _, images in snaps.snapshots:
        assert type(images) is np.ndarray and images.dtype == np.float32
        assert images.shape == (10, 784)
    # the newest is what G draws now from the fixed noise ...
    np.testing.assert_array_equal(
        snaps.snapshots[-1][1], to_numpy(gan.sample(10, rng=np.random.default_rng([3, 8]))))
    # ... and the same noise again gives the same images: a column is one z
    snaps.record(gan)
    np.testing.assert_array_equal(snaps.snapshots[-1][1], snaps.snapshots[-2][1])
    # training changed G between the snapshots; the columns are different z
    first, last = snaps.snapshots[0][1], snaps.snapshots[-1][1]
    assert np.abs(first - last).max() > 1e-3
    assert np.abs(first[0] - first[1]).max() > 1e-3


def test_snapshots_do_not_change_the_run():
    """They sample with their own generator: the GAN's noise stream is left alone."""
    plain, watched = image_gan(), image_gan()
    fit(plain, batches(), 5)
    fit(watched, batches(), 5, callbacks=[ImageSnapshots(every=1)])
    for a, b in zip(plain.G.state_dict().values(), watched.G.state_dict().values()):
        np.testing.assert_array_equal(a, b)


def test_snapshots_come_from_the_moving_average_of_g():
    gan = image_gan(ema_decay=0.9)
    snaps = ImageSnapshots(every=4, n=5, seed=0)
    fit(gan, batches(), 4, callbacks=[snaps])
    def fixed_noise():  # ImageSnapshots' stream for seed 0
        return np.random.default_rng([0, 8])

    newest = snaps.snapshots[-1][1]
    np.testing.assert_array_equal(newest, gan.sample(5, rng=fixed_noise(), ema=True))
    assert np.abs(newest - gan.sample(5, rng=fixed_noise(), ema=False)).max() > 1e-4


def test_a_conditional_gan_snapshot_cycles_the_classes():
    gan = image_gan(n_classes=10)
    snaps = ImageSnapshots(every=2, n=10, seed=1)
    fit(gan, batches(labels=True), 2, callbacks=[snaps])
    assert steps_of(snaps) == [0, 2]
    labels = np.arange(10)  # gan.sample's default: sample j of class j % 10
    expected = gan.sample(10, labels=labels, rng=np.random.default_rng([1, 8]))
    np.testing.assert_array_equal(snaps.snapshots[-1][1], expected)


def test_snapshots_round_trip_through_a_checkpoint_and_go_on(tmp_path):
    gan = image_gan()
    snaps = ImageSnapshots(every=2, n=4, seed=0)
    fit(gan, batches(), 4, callbacks=[snaps])
    state = snaps.state_dict()
    assert state["snapshot_steps"].dtype == np.int64 and state["snapshot_images"].dtype == np.float32
    save_checkpoint(tmp_path / "c.npz", gan, CONFIG, extra=state)
    gan, _, extra = load_checkpoint(tmp_path / "c.npz")
    again = ImageSnapshots(every=2, n=4, seed=0)
    again.load_state_dict(extra)
    assert steps_of(again) == [0, 2, 4]
    for (_, a), (_, b) in zip(snaps.snapshots, again.snapshots):
        np.testing.assert_array_equal(a, b)
    fit(gan, batches(), 6, callbacks=[again])  # a resumed run: step 0 is not recorded again
    assert steps_of(again) == [0, 2, 4, 6]
    with pytest.raises(ValueError, match="n=5"):
        ImageSnapshots(every=2, n=5).load_state_dict(extra)
    empty = ImageSnapshots(every=2)
    empty.load_state_dict({"seed": 0})  # a checkpoint without snapshots: none
    assert empty.snapshots == [] and empty.state_dict() == {}


def test_memory_stays_bounded_and_the_rows_evenly_spaced():
    gan = image_gan()
    snaps = ImageSnapshots(every=1, n=2, max_snapshots=4)
    held = []

    class Watch:
        def on_step(self, gan, record):
            held.append(len(snaps.snapshots))

    fit(gan, batches(), 10, callbacks=[snaps, Watch()])
    assert max(held) <= 4
    # every doubled twice (1 -> 2 -> 4); the run's last step (10) is the last row
    assert steps_of(snaps) == [0, 4, 8, 10] and snaps.every == 4
    again = ImageSnapshots(every=1, n=2, max_snapshots=4)
    again.load_state_dict(snaps.state_dict())
    assert again.every == 4  # the doubled spacing survives a checkpoint


@pytest.mark.parametrize("kwargs", [{"every": -1}, {"every": 2, "n": 0},
                                    {"every": 2, "max_snapshots": 1}, {"every": 1.5}])
def test_snapshot_settings_are_checked(kwargs):
    with pytest.raises(ValueError, match="ImageSnapshots"):
        ImageSnapshots(**kwargs)


# --------------------------------------------------------------------------- slerp


def test_slerp_ends_exactly_at_z0_and_z1_in_float32(backend, dev):
    rng = np.random.default_rng(0)
    z0, z1 = dev(rng.standard_normal((3, 100), dtype=np.float32)), \
        dev(rng.standard_normal((3, 100), dtype=np.float32))
    path = plot.slerp(z0, z1, np.array([0.0, 0.3, 1.0]))
    assert path.shape == (3, 3, 100) and path.dtype == np.float32
    assert type(path) is type(z0)
    np.testing.assert_array_equal(to_numpy(path[:, 0]), to_numpy(z0))
    np.testing.assert_array_equal(to_numpy(path[:, -1]), to_numpy(z1))
    assert plot.slerp(z0[0], z1[0], 0.5).shape == (100,)
    assert plot.slerp(z0[0], z1[0], np.linspace(0, 1, 4)).shape == (4, 100)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), d=st.integers(2, 12),
       scale=st.floats(0.05, 20.0))
def test_slerp_turns_at_constant_speed_and_its_norm_moves_linearly(seed, d, scale):
    rng = np.random.default_rng(seed)
    z0, z1 = rng.standard_normal(d), scale * rng.standard_normal(d)
    n0, n1 = np.linalg.norm(z0), np.linalg.norm(z1)
    omega = math.acos(np.clip(z0 @ z1 / (n0 * n1), -1, 1))
    t = np.linspace(0, 1, 9)
    path = plot.slerp(z0, z1, t)
    norms = np.linalg.norm(path, axis=1)
    np.testing.assert_allclose(norms, (1 - t) * n0 + t * n1, rtol=1e-9)
    # the direction turns from z0's to z1's at a constant angular speed
    cos_to_z0 = np.clip(path @ z0 / (norms * n0), -1, 1)
    np.testing.assert_allclose(np.arccos(cos_to_z0), t * omega, atol=1e-6)


def test_slerp_of_unit_vectors_stays_on_the_sphere(backend, dev):
    rng = np.random.default_rng(1)
    u = rng.standard_normal((5, 6))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    v = rng.standard_normal((5, 6))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    path = to_numpy(plot.slerp(dev(u), dev(v), np.linspace(-0.5, 1.5, 21)))  # beyond too
    np.testing.assert_allclose(np.linalg.norm(path, axis=-1), 1.0, atol=1e-12)


def test_slerp_keeps_gaussian_latents_at_their_usual_norm_where_lerp_does_not():
    """White 2016: a Gaussian's mass lies near ||z|| = sqrt(d); the straight line's
    midpoint has norm about sqrt(d / 2), where G rarely saw a z."""
    rng = np.random.default_rng(2)
    d = 100
    z0, z1 = rng.standard_normal((2, 500, d), dtype=np.float32)
    middle = np.linalg.norm(plot.slerp(z0, z1, 0.5), axis=1)
    straight = np.linalg.norm((z0 + z1) / 2, axis=1)
    assert abs(middle.mean() - math.sqrt(d)) < 0.3
    assert abs(straight.mean() - math.sqrt(d / 2)) < 0.3


def test_slerp_parallel_and_zero_vectors_fall_back_to_the_straight_line(backend, dev):
    z = np.random.default_rng(3).standard_normal(7)
    t = np.linspace(0, 1, 5)
    for z0, z1 in ((z, 3 * z), (z, z), (0 * z, z), (z, 0 * z), (z, z * (1 + 1e-12))):
        path = to_numpy(plot.slerp(dev(z0), dev(z1), t))
        assert np.all(np.isfinite(path))
        np.testing.assert_allclose(path, (1 - t[:, None]) * z0 + t[:, None] * z1,
                                   rtol=1e-10, atol=1e-12)


def test_slerp_of_opposite_vectors_goes_round_not_through_zero(backend, dev):
    z0 = np.random.default_rng(4).standard_normal(6)
    t = np.linspace(0, 1, 9)
    path = to_numpy(plot.slerp(dev(z0), dev(-2 * z0), t))
    norm0 = np.linalg.norm(z0)
    np.testing.assert_allclose(np.linalg.norm(path, axis=1), (1 + t) * norm0, rtol=1e-12)
    assert abs(path[4] @ z0) < 1e-9 * norm0 ** 2  # half way: perpendicular to z0
    np.testing.assert_array_equal(path[-1], -2 * z0)
    # in 1-D there is no way round: the line through 0 is the only path
    np.testing.assert_allclose(plot.slerp(np.array([2.0]), np.array([-1.0]), t)[:, 0],
                               2 - 3 * t, atol=1e-15)


def test_slerp_refuses_what_it_cannot_interpolate():
    z = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="both"):
        plot.slerp(z, z[:, :2], 0.5)
    with pytest.raises(TypeError, match="floating"):
        plot.slerp(z.astype(int), z, 0.5)
    with pytest.raises(ValueError, match="1-D"):
        plot.slerp(z, z, np.zeros((2, 2)))


# ------------------------------------------------------------------------- figures


def test_plot_progress_draws_a_row_per_step_and_a_column_per_z(tmp_path):
    gan = image_gan()
    snaps = ImageSnapshots(every=3, n=6)
    fit(gan, batches(), 6, callbacks=[snaps])
    fig = plot.plot_progress(snaps.snapshots, title="progress", path=tmp_path / "p.png")
    assert_png(tmp_path / "p.png")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["step 0", "step 3", "step 6"]
    assert ax.get_title() == "progress"
    for r, (_, images) in enumerate(snaps.snapshots):
        for c in (0, 5):
            np.testing.assert_allclose(cell(fig, r, c), as_cell(images[c]), atol=1e-7)
    # a dict {step: images} works too; snapshots of different sizes do not
    plot.plot_progress(dict(snaps.snapshots))
    with pytest.raises(ValueError, match="same number of images"):
        plot.plot_progress([(0, IMAGES[:6]), (1, IMAGES[:5])])
    with pytest.raises(ValueError, match="ImageSnapshots"):
        plot.plot_progress([])


def test_plot_progress_of_a_conditional_gan_names_each_column_s_class(tmp_path):
    gan = image_gan(n_classes=10)
    snaps = ImageSnapshots(every=2, n=10)
    fit(gan, batches(labels=True), 2, callbacks=[snaps])
    fig = plot.plot_progress(snaps.snapshots, labels=np.arange(10),
                             class_names=FASHION_MNIST_CLASSES, path=tmp_path / "p.png")
    assert_png(tmp_path / "p.png")
    names = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert names == list(FASHION_MNIST_CLASSES)
    with pytest.raises(ValueError, match="10 columns"):
        plot.plot_progress(snaps.snapshots, labels=np.arange(3))


def _path_images(G, z0, z1, n_steps, labels=None, gan=None):
    """What each row of the interpolation should show: G along slerp(z0, z1, t)."""
    from minigan.layers import forward_in_eval_mode

    z = plot.slerp(z0, z1, np.linspace(0, 1, n_steps)).reshape(len(z0) * n_steps, -1)
    if labels is None:
        return to_numpy(forward_in_eval_mode(G, z))
    return to_numpy(forward_in_eval_mode(G, gan.with_labels(z, np.repeat(labels, n_steps))))


def test_plot_interpolation_rows_walk_from_one_z_to_another(tmp_path):
    gan = image_gan(ema_decay=0.9)
    fit(gan, batches(), 4)
    fig = plot.plot_interpolation(gan, n_rows=3, n_steps=5, seed=[7, 9],
                                  path=tmp_path / "i.png")
    assert_png(tmp_path / "i.png")
    rng = np.random.default_rng([7, 9])  # the documented draws: z0, then z1
    z0, z1 = (rng.standard_normal((3, CONFIG["latent_dim"]), dtype=np.float32) for _ in "01")
    expected = _path_images(gan.ema.G, z0, z1, 5).reshape(3, 5, 784)  # the moving average
    for r in range(3):
        for c in range(5):
            np.testing.assert_allclose(cell(fig, r, c), as_cell(expected[r, c]), atol=1e-6)
    assert "slerp" in fig.axes[0].get_title()
    # the same seed, the same picture; another seed, another one
    again = plot.plot_interpolation(gan, n_rows=3, n_steps=5, seed=[7, 9])
    other = plot.plot_interpolation(gan, n_rows=3, n_steps=5, seed=[7, 10])
    drawn = [np.asarray(f.axes[0].images[0].get_array()) for f in (fig, again, other)]
    np.testing.assert_array_equal(drawn[0], drawn[1])
    assert np.abs(drawn[0] - drawn[2]).max() > 1e-3


def test_plot_interpolation_of_a_conditional_gan_keeps_each_row_s_class(tmp_path):
    gan = image_gan(n_classes=10)
    fit(gan, batches(labels=True), 2)
    fig = plot.plot_interpolation(gan, n_steps=4, seed=5, class_names=FASHION_MNIST_CLASSES,
                                  path=tmp_path / "i.png")
    assert_png(tmp_path / "i.png")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(FASHION_MNIST_CLASSES)
    assert "class fixed" in ax.get_title()
    rng = np.random.default_rng(5)
    z0, z1 = (rng.standard_normal((10, CONFIG["latent_dim"]), dtype=np.float32) for _ in "01")
    expected = _path_images(gan.G.net, z0, z1, 4, labels=np.arange(10), gan=gan)
    expected = expected.reshape(10, 4, 784)
    for r in (0, 3, 9):
        for c in range(4):
            np.testing.assert_allclose(cell(fig, r, c), as_cell(expected[r, c]), atol=1e-6)
    with pytest.raises(ValueError, match="one class per row"):
        plot.plot_interpolation(gan, n_rows=2, labels=[1, 2, 3])


def test_plot_interpolation_of_a_generator_model_needs_its_latent_dim():
    gan = image_gan()
    fig = plot.plot_interpolation(gan.G, latent_dim=CONFIG["latent_dim"], n_rows=2,
                                  n_steps=3)
    assert len(fig.axes[0].get_yticks()) == 2
    with pytest.raises(ValueError, match="latent_dim"):
        plot.plot_interpolation(gan.G)
    with pytest.raises(ValueError, match="n_steps >= 2"):
        plot.plot_interpolation(gan, n_steps=1)
    with pytest.raises(ValueError, match="ConditionalGAN"):
        plot.plot_interpolation(gan, labels=[0])


# --------------------------------------------------------------------- command line


def _mnist_dir():
    root = os.environ.get("MINIGAN_DATA_DIR")
    if not root:
        pytest.skip("MINIGAN_DATA_DIR is not set (e.g. MINIGAN_DATA_DIR=../shared/data)")
    if not (Path(root) / "mnist" / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"no MNIST files in {Path(root) / 'mnist'}")
    return root


def test_an_image_run_writes_progress_and_interpolation_and_resume_keeps_the_snapshots(
        tmp_path):
    root = _mnist_dir()
    out = tmp_path / "cgan"
    quick = ["--no-metrics", "--quiet", "--threads", "1", "--data-dir", root, "--out", str(out)]
    assert cli.main(["train", "--dataset", "mnist", "--conditional", "--steps", "4",
                     "--batch-size", "16", "--stop-after", "2", *quick]) == 0
    for name in cli.IMAGE_FIGURES:
        assert_png(out / name)
    _, _, before = load_checkpoint(out / "checkpoint.npz")
    assert before["snapshot_steps"].tolist() == [0, 1, 2]  # every ceil(4 / 10) = 1 step
    assert before["snapshot_images"].shape == (3, 10, 784)

    (out / "progress.png").unlink()
    assert cli.main(["train", "--resume", str(out / "checkpoint.npz"), *quick]) == 0
    assert_png(out / "progress.png")
    _, _, after = load_checkpoint(out / "checkpoint.npz")
    assert after["snapshot_steps"].tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(after["snapshot_images"][:3], before["snapshot_images"])
