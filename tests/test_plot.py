"""Every figure: returned as a Figure, saved as a real PNG/GIF, matplotlib imported lazily."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from minigan import plot
from minigan.layers import Dense, LeakyReLU, Sequential

PNG = b"\x89PNG\r\n\x1a\n"
GIF = (b"GIF87a", b"GIF89a")

RNG = np.random.default_rng(0)
ANGLES = 2 * np.pi * np.arange(8) / 8
CENTRES = np.stack([np.cos(ANGLES), np.sin(ANGLES)], 1)
REAL_2D = (CENTRES[RNG.integers(8, size=300)] + 0.02 * RNG.standard_normal((300, 2))).astype(np.float32)
FAKE_2D = (0.5 * RNG.standard_normal((200, 2))).astype(np.float32)
REAL_1D = (4 + 0.5 * RNG.standard_normal((300, 1))).astype(np.float32)
Z_1D = RNG.standard_normal((100, 1)).astype(np.float32)
FAKE_1D = (2 + Z_1D).astype(np.float32)


def ring_probability(points):
    """A stand-in discriminator: probabilities, high near the unit circle."""
    r = np.linalg.norm(points, axis=1)
    return 1 / (1 + np.exp(-20 * (0.2 - np.abs(r - 1))))


def d_model(dim):
    return Sequential(Dense(dim, 16, rng=0), LeakyReLU(0.2), Dense(16, 1, rng=1))


def assert_saved(path, signature):
    data = path.read_bytes()
    assert len(data) > 1000, f"{path} is only {len(data)} bytes"
    signatures = signature if isinstance(signature, tuple) else (signature,)
    assert data.startswith(signatures), f"{path} starts with {data[:8]!r}"
    leftovers = [p.name for p in path.parent.iterdir() if p.name.startswith(".")]
    assert not leftovers, f"temporary files left behind: {leftovers}"


def is_figure(fig):
    from matplotlib.figure import Figure

    return isinstance(fig, Figure)


# ------------------------------------------------------------------------- import


def test_import_does_not_import_matplotlib_and_plots_headless(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        import minigan, minigan.plot, minigan.metrics
        assert "matplotlib" not in sys.modules, "import minigan.plot imported matplotlib"
        import numpy as np
        fig = minigan.plot.plot_image_grid(np.zeros((4, 784), np.float32),
                                           path={str(tmp_path / "x.png")!r})
        import matplotlib
        print(matplotlib.get_backend().lower())
    """)
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "MPLBACKEND")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "agg"
    assert (tmp_path / "x.png").read_bytes().startswith(PNG)


# ------------------------------------------------------------------------- losses


def test_plot_losses(tmp_path):
    n = 300
    history = {"step": np.arange(1, n + 1), "d_loss": 1.4 + 0.1 * RNG.standard_normal(n),
               "g_loss": 0.7 + 0.1 * RNG.standard_normal(n),
               "d_real": np.full(n, 0.6), "d_fake": np.full(n, 0.4)}
    fig = plot.plot_losses(history, path=tmp_path / "new" / "losses.png")
    assert is_figure(fig) and len(fig.axes) == 2
    assert_saved(tmp_path / "new" / "losses.png", PNG)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any("2 log 2" in s for s in labels) and any("log 2" in s for s in labels)
    # train_step records (a list of dicts) work too, and without D outputs: one panel.
    records = [{"d_loss": 1.0, "g_loss": 2.0}, {"d_loss": 1.1, "g_loss": 1.9}]
    assert len(plot.plot_losses(records, smooth=1).axes) == 1


def test_plot_losses_errors():
    with pytest.raises(ValueError, match=r"history lacks \['g_loss'\].*got keys \['d_loss'\]"):
        plot.plot_losses({"d_loss": [1.0, 2.0]})
    with pytest.raises(ValueError, match="different lengths"):
        plot.plot_losses({"d_loss": [1.0, 2.0], "g_loss": [1.0]})


# ------------------------------------------------------------------------- images


@pytest.mark.parametrize("shape", [(10, 784), (10, 28, 28), (10, 1, 28, 28)])
def test_plot_image_grid(tmp_path, shape):
    images = RNG.uniform(-1, 1, size=shape).astype(np.float32)
    fig = plot.plot_image_grid(images, nrow=5, title="samples", path=tmp_path / "grid.png")
    assert is_figure(fig)
    assert_saved(tmp_path / "grid.png", PNG)
    mosaic = fig.axes[0].images[0].get_array()
    assert mosaic.shape == (2 * 30 + 2, 5 * 30 + 2)  # 2 rows of 5, 2-pixel gaps
    assert mosaic.min() >= 0 and mosaic.max() <= 1


def test_plot_image_grid_errors():
    with pytest.raises(ValueError, match=r"must be square.*\(N, 784\)"):
        plot.plot_image_grid(np.zeros((3, 780)))
    with pytest.raises(ValueError, match="empty"):
        plot.plot_image_grid(np.zeros((0, 784)))


def test_plot_class_grid(tmp_path):
    images = RNG.uniform(-1, 1, size=(60, 784)).astype(np.float32)
    labels = np.repeat(np.arange(10), 6)
    fig = plot.plot_class_grid(images, labels, n_per_class=4, path=tmp_path / "classes.png")
    assert is_figure(fig)
    assert_saved(tmp_path / "classes.png", PNG)
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert ticks == [str(c) for c in range(10)]
    # Class-major samples of a conditional GAN, with names.
    names = [f"class {c}" for c in range(3)]
    fig = plot.plot_class_grid(images[:12], n_per_class=4, class_names=names)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == names
    with pytest.raises(ValueError, match="do not split into rows"):
        plot.plot_class_grid(images[:10], n_per_class=4)
    with pytest.raises(ValueError, match="pass labels"):
        plot.plot_class_grid(images)


# --------------------------------------------------------------------------- 2-D


def test_plot_2d_with_a_probability_callable(tmp_path):
    fig = plot.plot_2d(REAL_2D, FAKE_2D, discriminator=ring_probability, centres=CENTRES,
                       path=tmp_path / "2d.png", grid_size=40)
    assert is_figure(fig)
    assert len(fig.axes) == 2  # the plot and D's colour bar
    assert_saved(tmp_path / "2d.png", PNG)


def test_plot_2d_with_a_model_gives_the_sigmoid_of_its_logits():
    model = d_model(2).train()
    fig = plot.plot_2d(REAL_2D, FAKE_2D, discriminator=model, lim=2.0, grid_size=20)
    assert is_figure(fig)
    assert model.training, "the model's mode was not restored"
    with pytest.raises(RuntimeError, match="without a matching forward"):
        model.backward(np.ones((1, 1), np.float32))  # the plotting pass left no cache
    # The surface is sigmoid(logits), evaluated exactly where the grid says.
    pts = np.array([[0.0, 0.0], [1.0, -1.0]])
    expected = 1 / (1 + np.exp(-model.forward(pts.astype(np.float32)).ravel()))
    model.clear_cache()
    assert np.allclose(plot._d_probabilities(model, pts), expected, atol=1e-6)


def test_plot_2d_into_given_axes_and_without_d():
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.add_subplot()
    assert plot.plot_2d(REAL_2D, FAKE_2D, ax=ax, lim=(-2, 2, -2, 2)) is fig
    assert ax.get_xlim() == (-2, 2)


def test_plot_2d_errors():
    with pytest.raises(ValueError, match=r"fake must have shape \(N, 2\), got \(5, 3\)"):
        plot.plot_2d(REAL_2D, np.zeros((5, 3)))
    with pytest.raises(ValueError, match="if it returns logits, pass logits=True"):
        plot.plot_2d(REAL_2D, FAKE_2D, discriminator=lambda p: 5 * p[:, 0], grid_size=5)
    with pytest.raises(ValueError, match=r"returned shape \(3,\) for 25 points"):
        plot.plot_2d(REAL_2D, FAKE_2D, discriminator=lambda p: np.zeros(3), grid_size=5)
    # The same callable, declared as returning logits, is fine.
    plot.plot_2d(REAL_2D, FAKE_2D, discriminator=lambda p: 5 * p[:, 0], logits=True, grid_size=5)


# --------------------------------------------------------------------------- 1-D


def test_plot_1d(tmp_path):
    d = lambda x: 1 / (1 + np.exp(-(x[:, 0] - 3)))  # noqa: E731
    fig = plot.plot_1d(REAL_1D, FAKE_1D, discriminator=d, z=Z_1D, path=tmp_path / "1d.png")
    assert is_figure(fig)
    assert len(fig.axes) == 2  # densities and D's twin axis
    assert_saved(tmp_path / "1d.png", PNG)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["data density $p_{data}$", "generator density $p_g$", "discriminator D(x)"]
    # 1-D arrays, an exact data density and a minigan model as D work too.
    pdf = lambda x: np.exp(-0.5 * ((x[:, 0] - 4) / 0.5) ** 2) / (0.5 * np.sqrt(2 * np.pi))  # noqa: E731
    fig = plot.plot_1d(REAL_1D[:, 0], FAKE_1D[:, 0], discriminator=d_model(1), data_pdf=pdf)
    assert is_figure(fig)
    with pytest.raises(ValueError, match="z has 3 rows but fake has 100"):
        plot.plot_1d(REAL_1D, FAKE_1D, z=Z_1D[:3])


# ---------------------------------------------------------------------- animations


def test_animate_2d(tmp_path):
    model = d_model(2)
    frames = []
    for step in range(3):
        fake = FAKE_2D * (1 + step)
        frames.append(plot.snapshot_2d(REAL_2D, fake, model, grid_size=15,
                                       info={"step": step * 10, "d_loss": 1.3, "g_loss": 0.8}))
    f = frames[0]
    assert f["step"] == 0 and f["info"]["d_loss"] == 1.3
    assert f["d_grid"].shape == (15, 15) and f["grid_x"].shape == (15,)
    assert f["real"].dtype == np.float32 and not np.shares_memory(f["real"], REAL_2D)
    assert 0 <= f["d_grid"].min() and f["d_grid"].max() <= 1
    fig = plot.animate_2d(frames, tmp_path / "anim" / "training.gif", fps=5, centres=CENTRES)
    assert is_figure(fig)
    assert_saved(tmp_path / "anim" / "training.gif", GIF)
    from PIL import Image

    with Image.open(tmp_path / "anim" / "training.gif") as im:
        assert im.n_frames == 3
    # Frames without D are fine; a non-GIF path and empty frames are refused.
    plot.animate_2d([plot.snapshot_2d(REAL_2D, FAKE_2D)], tmp_path / "plain.gif")
    with pytest.raises(ValueError, match=r"ending in \.gif"):
        plot.animate_2d(frames, tmp_path / "training.mp4")
    with pytest.raises(ValueError, match="frames is empty"):
        plot.animate_2d([], tmp_path / "x.gif")


def test_animate_1d(tmp_path):
    d = lambda x: 1 / (1 + np.exp(-(x[:, 0] - 3)))  # noqa: E731
    frames = [plot.snapshot_1d(REAL_1D, FAKE_1D + step, d, step=step, z=Z_1D, grid_size=50)
              for step in range(3)]
    assert frames[0]["d_grid"].shape == (50,) and frames[0]["z"].shape == (100, 1)
    lo, hi = frames[0]["lim"]
    assert lo < Z_1D.min() and hi > REAL_1D.max()  # z's lines fit in the picture
    fig = plot.animate_1d(frames, tmp_path / "training.gif", fps=4)
    assert is_figure(fig)
    assert_saved(tmp_path / "training.gif", GIF)
    with pytest.raises(ValueError, match="must be a dict with at least 'real' and 'fake'"):
        plot.animate_1d([{"real": REAL_1D}], tmp_path / "x.gif")


def test_snapshots_of_a_gan_leave_its_training_untouched(tmp_path):
    from minigan.gan import GAN
    from minigan.optim import Adam

    G = Sequential(Dense(2, 16, rng=2), LeakyReLU(0.2), Dense(16, 2, rng=3))
    D = d_model(2)
    gan = GAN(G, D, latent_dim=2, g_optimizer=Adam(G.parameters(), lr=1e-3),
              d_optimizer=Adam(D.parameters(), lr=1e-3), rng=0)
    frames = []
    for _ in range(2):
        record = gan.train_step(REAL_2D[:64])
        before = {k: v.copy() for k, v in D.state_dict().items()}
        frames.append(plot.snapshot_2d(REAL_2D, gan.sample(50), gan, info=record, grid_size=10))
        assert all(np.array_equal(before[k], v) for k, v in D.state_dict().items())
    assert [f["step"] for f in frames] == [1, 2]
    # D's surface is what gan.discriminate says on the grid.
    f = frames[-1]
    xx, yy = np.meshgrid(f["grid_x"], f["grid_y"])
    pts = np.stack([xx.ravel(), yy.ravel()], 1).astype(np.float32)
    assert np.allclose(f["d_grid"].ravel(), np.asarray(gan.discriminate(pts)).ravel(), atol=1e-6)
    fig = plot.plot_2d(REAL_2D, gan.sample(50), gan, grid_size=10, path=tmp_path / "gan.png")
    assert is_figure(fig)
    plot.animate_2d(frames, tmp_path / "gan.gif")
    assert_saved(tmp_path / "gan.gif", GIF)


def test_a_least_squares_gan_shows_its_clipped_score():
    from minigan.gan import GAN
    from minigan.gan_losses import LeastSquares
    from minigan.optim import Adam

    G = Sequential(Dense(2, 8, rng=2), LeakyReLU(0.2), Dense(8, 2, rng=3))
    D = Sequential(Dense(2, 8, rng=4), LeakyReLU(0.2), Dense(8, 1, rng=5))
    D.layers[-1].params["b"][...] = 0.7
    gan = GAN(G, D, 2, Adam(G.parameters()), Adam(D.parameters()), loss=LeastSquares())
    pts = np.array([[0.0, 0.0], [1.0, -1.0], [50.0, 50.0]])
    raw = np.asarray(gan.discriminate(pts.astype(np.float32))).ravel()
    np.testing.assert_allclose(plot._d_probabilities(gan, pts), np.clip(raw, 0, 1), atol=1e-6)


# ------------------------------------------------------------------ by data set


def test_plot_samples_picks_the_figure_for_the_data(tmp_path):
    from minigan.data import gaussian1d, ring8

    fig = plot.plot_samples(FAKE_2D, ring8(), discriminator=d_model(2), title="ring8",
                            path=tmp_path / "r.png")
    assert is_figure(fig) and fig.axes[0].get_xlim() == (-1.6, 1.6)
    assert_saved(tmp_path / "r.png", PNG)
    fig = plot.plot_samples(FAKE_1D, gaussian1d(), path=tmp_path / "g.png")
    assert fig.axes[0].get_xlim() == (1.0, 7.0)
    images = np.tanh(RNG.standard_normal((30, 784))).astype(np.float32)
    assert is_figure(plot.plot_samples(images, "mnist", path=tmp_path / "m.png"))
    fig = plot.plot_samples(images, "mnist", labels=np.arange(30) % 10,
                            path=tmp_path / "c.png")
    assert_saved(tmp_path / "c.png", PNG)


def test_animate_a_toy_data_set(tmp_path):
    from minigan.data import ring8

    frames = [plot.snapshot_2d(REAL_2D, FAKE_2D + 0.1 * k, d_model(2), step=k,
                               lim=ring8().plot_lim, grid_size=10) for k in range(3)]
    plot.animate(frames, ring8(), tmp_path / "a.gif", title="ring8")
    assert_saved(tmp_path / "a.gif", GIF)


# ---------------------------------------------------------------------- critics


def critic_gan(loss, dim=2):
    """A GAN with a random critic whose scores run well outside [0, 1]."""
    from minigan.gan import GAN
    from minigan.optim import Adam

    G = Sequential(Dense(dim, 8, rng=2), LeakyReLU(0.2), Dense(8, dim, rng=3))
    D = Sequential(Dense(dim, 16, rng=4), LeakyReLU(0.2), Dense(16, 1, rng=5))
    D.layers[-1].params["W"][...] *= 20.0
    D.layers[-1].params["b"][...] = 3.0
    return GAN(G, D, dim, Adam(G.parameters()), Adam(D.parameters()), loss=loss)


def raw_scores(gan, pts):
    return np.asarray(gan.discriminate(pts.astype(np.float32)), dtype=np.float64).ravel()


def filled_contours(ax):
    from matplotlib.contour import ContourSet

    return [c for c in ax.collections if isinstance(c, ContourSet) and c.filled]


def test_the_score_kind_comes_from_the_loss():
    from minigan.gan_losses import Hinge, LeastSquares, Minimax, NonSaturating, Wasserstein

    for loss in (Wasserstein(), Hinge()):
        assert plot._score_kind(loss) == "critic", loss
    for loss in (NonSaturating(), Minimax(), LeastSquares()):
        assert plot._score_kind(loss) == "probability", loss
    assert plot._score_kind(critic_gan(Hinge())) == "critic"      # a GAN: its loss's
    assert plot._score_kind(None) is None and plot._score_kind("critic") == "critic"

    class Declared(NonSaturating):  # a loss that says what its score is wins over its class
        score_kind = "critic"

    assert plot._score_kind(Declared()) == "critic"
    with pytest.raises(ValueError, match="score_kind must be 'probability'.*got 'logit'"):
        plot._score_kind("logit")
    with pytest.raises(TypeError, match="a loss object.*got int"):
        plot._score_kind(3)


def test_plot_losses_of_a_critic_shows_its_scores_unclipped_and_their_gap():
    from minigan.gan_losses import Wasserstein

    n = 200
    d_real = 5.0 + 0.3 * RNG.standard_normal(n)
    d_fake = -3.0 + 0.3 * RNG.standard_normal(n)
    history = {"d_loss": d_fake - d_real, "g_loss": -d_fake, "d_real": d_real, "d_fake": d_fake}
    for kind in ("critic", Wasserstein()):
        fig = plot.plot_losses(history, smooth=1, score_kind=kind)
        assert len(fig.axes) == 3
        top, scores, gap = fig.axes
        # no cross-entropy equilibrium lines, although their defaults were left on
        labels = [t.get_text() for t in top.get_legend().get_texts()]
        assert labels == ["D loss", "G loss"]
        assert "critic score" in scores.get_ylabel() and "probability" not in scores.get_ylabel()
        lo, hi = scores.get_ylim()
        assert lo < d_fake.min() and hi > d_real.max()  # the axis is the scores', not [0, 1]
        drawn = {line.get_label(): line.get_ydata() for line in scores.get_lines()}
        np.testing.assert_array_equal(drawn["mean critic score D(x), real"], d_real)
        np.testing.assert_array_equal(drawn["mean critic score D(G(z)), fake"], d_fake)
        assert "Wasserstein" in gap.get_ylabel()
        gap_line = next(ln for ln in gap.get_lines() if ln.get_label().startswith("gap: mean"))
        np.testing.assert_allclose(gap_line.get_ydata(), d_real - d_fake)
    # One column of scores: no gap panel.
    fig = plot.plot_losses({k: history[k] for k in ("d_loss", "g_loss", "d_real")},
                           score_kind="critic")
    assert len(fig.axes) == 2 and "critic score" in fig.axes[1].get_ylabel()


def test_plot_losses_of_probabilities_is_unchanged():
    from minigan.gan_losses import LeastSquares, NonSaturating

    n = 50
    history = {"d_loss": np.full(n, 1.3), "g_loss": np.full(n, 0.8),
               "d_real": np.full(n, 0.6), "d_fake": np.full(n, 0.4)}
    for kind in (None, "probability", NonSaturating(), LeastSquares()):
        fig = plot.plot_losses(history, score_kind=kind)
        assert len(fig.axes) == 2
        assert fig.axes[1].get_ylabel() == "D output (probability of real)"
        assert fig.axes[1].get_ylim() == (-0.02, 1.02)
        labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        assert any("2 log 2" in s for s in labels)


def test_plot_2d_of_a_critic_gan_draws_its_unclipped_score_around_the_median(tmp_path):
    from minigan.gan_losses import Hinge, Wasserstein

    for loss in (Wasserstein(), Hinge()):
        gan = critic_gan(loss)
        fig = plot.plot_2d(REAL_2D, FAKE_2D, discriminator=gan, centres=CENTRES, lim=2.0,
                           grid_size=30, path=tmp_path / "critic.png")
        assert_saved(tmp_path / "critic.png", PNG)
        ax, cbar = fig.axes
        assert cbar.get_ylabel().startswith("critic score D(x)")
        assert "probability" not in cbar.get_ylabel()
        _, _, pts = plot._grid_2d((-2.0, 2.0, -2.0, 2.0), 30)
        raw = raw_scores(gan, pts)
        assert raw.min() < 0 or raw.max() > 1, "the test's critic should leave [0, 1]"
        (cs,) = filled_contours(ax)
        levels = np.asarray(cs.levels)
        assert levels[0] <= raw.min() and levels[-1] >= raw.max()     # nothing clipped
        # white at the median, and the scale reaches exactly the farthest score from it
        centre, half = (levels[0] + levels[-1]) / 2, (levels[-1] - levels[0]) / 2
        np.testing.assert_allclose(centre, np.median(raw), rtol=1e-9)
        np.testing.assert_allclose(half, np.abs(raw - np.median(raw)).max(), rtol=1e-6)
        assert cs.cmap.name == plot.D_CMAP


def test_the_surface_of_a_probability_is_unchanged():
    from minigan.gan_losses import NonSaturating

    for d, kw in ((ring_probability, {}), (critic_gan(NonSaturating()), {}),
                  (d_model(2), {"score_kind": "probability"})):
        fig = plot.plot_2d(REAL_2D, FAKE_2D, discriminator=d, lim=2.0, grid_size=20, **kw)
        ax, cbar = fig.axes
        assert cbar.get_ylabel() == "D(x): probability of real (dashed: D = 1/2)"
        (cs,) = filled_contours(ax)
        np.testing.assert_array_equal(cs.levels, np.linspace(0.0, 1.0, 21))


def test_a_critic_model_or_callable_is_drawn_as_it_comes():
    model = d_model(2)
    fig = plot.plot_2d(REAL_2D, FAKE_2D, discriminator=model, lim=2.0, grid_size=15,
                       score_kind="critic")
    _, _, pts = plot._grid_2d((-2.0, 2.0, -2.0, 2.0), 15)
    logits = model.forward(pts.astype(np.float32)).ravel()
    model.clear_cache()
    (cs,) = filled_contours(fig.axes[0])
    half = np.abs(logits - np.median(logits)).max()   # the logits' own scale: no sigmoid
    np.testing.assert_allclose([cs.levels[0], cs.levels[-1]],
                               np.median(logits) + np.array([-half, half]), rtol=1e-5, atol=1e-6)
    d, kind = plot._d_values(lambda p: 7 * p[:, 0], pts, score_kind="critic")
    assert kind == "critic" and d.max() > 1  # a critic callable is not range-checked
    with pytest.raises(ValueError, match="logits=True asks for a sigmoid"):
        plot.plot_2d(REAL_2D, FAKE_2D, discriminator=model, logits=True, score_kind="critic")


def test_snapshots_and_animation_of_a_critic(tmp_path):
    from minigan.gan_losses import Wasserstein

    gan = critic_gan(Wasserstein())
    frames = [plot.snapshot_2d(REAL_2D, gan.sample(50), gan, step=k, grid_size=12, lim=2.0)
              for k in range(2)]
    f = frames[0]
    assert f["d_kind"] == "critic"
    xx, yy = np.meshgrid(f["grid_x"], f["grid_y"])
    raw = raw_scores(gan, np.stack([xx.ravel(), yy.ravel()], 1))
    np.testing.assert_allclose(f["d_grid"].ravel(), raw, rtol=1e-6)   # not clipped
    assert f["d_grid"].min() < 0 or f["d_grid"].max() > 1
    fig = plot.animate_2d(frames, tmp_path / "critic.gif", centres=CENTRES)
    assert_saved(tmp_path / "critic.gif", GIF)
    ax, cbar = fig.axes
    assert cbar.get_ylabel().startswith("critic score D(x)")
    # The colour bar shows the last frame's scale, the one its surface was drawn on.
    (cs,) = filled_contours(ax)
    lo, hi = cbar.get_ylim()
    np.testing.assert_allclose([lo, hi], [cs.levels[0], cs.levels[-1]], rtol=1e-9)
    # Frames restored from a checkpoint carry no d_kind: score_kind says what they are.
    bare = [{k: v for k, v in fr.items() if k != "d_kind"} for fr in frames]
    fig = plot.animate_2d(bare, tmp_path / "bare.gif", score_kind=gan.loss)
    assert fig.axes[1].get_ylabel().startswith("critic score D(x)")
    fig = plot.animate_2d(frames[:1], tmp_path / "forced.gif", score_kind="probability")
    assert "probability" in fig.axes[1].get_ylabel()


def test_plot_1d_and_animate_1d_of_a_critic(tmp_path):
    from minigan.gan_losses import Wasserstein

    gan = critic_gan(Wasserstein(), dim=1)
    fig = plot.plot_1d(REAL_1D, FAKE_1D, discriminator=gan, z=Z_1D, lim=(0, 8),
                       path=tmp_path / "critic1d.png")
    assert_saved(tmp_path / "critic1d.png", PNG)
    ax, dax = fig.axes
    assert "critic score" in dax.get_ylabel()
    (line,) = [ln for ln in dax.get_lines() if ln.get_label() == "critic score D(x)"]
    x, d = line.get_xdata(), line.get_ydata()
    np.testing.assert_allclose(d, raw_scores(gan, x[:, None]), rtol=1e-6)
    assert d.min() < 0 or d.max() > 1
    lo, hi = dax.get_ylim()
    assert lo <= d.min() and hi >= d.max()            # the whole curve is on the axis
    # ... and above the density's zero, where the z lines are not
    zero_at = -ax.get_ylim()[0] / np.ptp(ax.get_ylim())
    np.testing.assert_allclose((d.min() - lo) / (hi - lo), zero_at, rtol=1e-9)
    frames = [plot.snapshot_1d(REAL_1D, FAKE_1D + k, gan, step=k, z=Z_1D, grid_size=40)
              for k in range(2)]
    assert frames[0]["d_kind"] == "critic"
    fig = plot.animate_1d(frames, tmp_path / "critic1d.gif")
    assert_saved(tmp_path / "critic1d.gif", GIF)
    assert "critic score" in fig.axes[1].get_ylabel()


def test_plot_samples_and_animate_of_a_critic_gan(tmp_path):
    from minigan.data import ring8
    from minigan.gan_losses import Hinge

    gan = critic_gan(Hinge())
    fig = plot.plot_samples(gan.sample(100), ring8(), discriminator=gan,
                            path=tmp_path / "s.png")
    assert fig.axes[1].get_ylabel().startswith("critic score D(x)")
    frames = [plot.snapshot_2d(REAL_2D, gan.sample(50), gan, lim=ring8().plot_lim,
                               grid_size=10)]
    fig = plot.animate(frames, ring8(), tmp_path / "a.gif")
    assert fig.axes[1].get_ylabel().startswith("critic score D(x)")
