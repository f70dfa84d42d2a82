"""Toy data sets: the literature's specifications, shapes, dtypes, statistics, seeds."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigan.backend as backend
from minigan.data import (
    TOY_DATASETS,
    GaussianMixture,
    ToyDataset,
    gaussian1d,
    grid25,
    moons,
    ring8,
    spiral,
    toy_dataset,
)

NAMES = ["ring8", "grid25", "gaussian1d", "spiral", "moons"]
DIMS = {"ring8": 2, "grid25": 2, "gaussian1d": 1, "spiral": 2, "moons": 2}


# ----------------------------------------------------------------- specifications


def test_ring8_spec():
    ds = ring8()
    assert ds.name == "ring8"
    assert ds.n_modes == 8 and ds.dim == 2
    assert ds.std == 0.01
    assert ds.centres.dtype == np.float64 and ds.centres.shape == (8, 2)
    k = np.arange(8)
    expected = np.stack([np.cos(2 * np.pi * k / 8), np.sin(2 * np.pi * k / 8)], axis=1)
    np.testing.assert_array_equal(ds.centres, expected)
    np.testing.assert_allclose(np.linalg.norm(ds.centres, axis=1), 1.0, rtol=0, atol=1e-15)
    # Spot values: mode 0 at (1, 0), mode 2 at (0, 1), mode 4 at (-1, 0).
    np.testing.assert_allclose(ds.centres[[0, 2, 4, 6]],
                               [[1, 0], [0, 1], [-1, 0], [0, -1]], atol=1e-15)


def test_grid25_spec():
    ds = grid25()
    assert ds.name == "grid25"
    assert ds.n_modes == 25 and ds.dim == 2
    assert ds.std == 0.05
    assert ds.centres.dtype == np.float64
    axis = [-4.0, -2.0, 0.0, 2.0, 4.0]
    expected = {(a, b) for a in axis for b in axis}
    assert {tuple(c) for c in ds.centres.tolist()} == expected
    assert len(expected) == 25


def test_gaussian1d_spec():
    ds = gaussian1d()
    assert isinstance(ds, GaussianMixture)
    assert ds.name == "gaussian1d"
    assert ds.n_modes == 1 and ds.dim == 1
    np.testing.assert_array_equal(ds.centres, [[4.0]])
    assert ds.std == 0.5


@pytest.mark.parametrize("factory", [spiral, moons])
def test_non_mixtures_have_no_centres(factory):
    ds = factory()
    assert ds.centres is None and ds.std is None
    assert ds.dim == 2
    assert ds.name == factory.__name__


def test_centres_are_read_only():
    ds = ring8()
    with pytest.raises(ValueError):
        ds.centres[0, 0] = 5.0
    # and a fresh factory call is unaffected either way
    assert ring8().centres[0, 0] == 1.0


# ------------------------------------------------------------------------ registry


def test_registry_names_and_factories():
    assert sorted(TOY_DATASETS) == sorted(NAMES)
    for name in NAMES:
        ds = toy_dataset(name)
        assert ds.name == name
        assert ds.dim == DIMS[name]


def test_unknown_toy_dataset_lists_known_names():
    with pytest.raises(ValueError) as info:
        toy_dataset("ring9")
    message = str(info.value)
    assert "'ring9'" in message
    for name in NAMES:
        assert name in message


# ------------------------------------------------------------- samples: shape, dtype


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(NAMES), n=st.integers(0, 300),
       dtype=st.sampled_from(["float32", "float64", np.float32]),
       seed=st.integers(0, 2**32 - 1))
def test_sample_shape_dtype_and_repeat(name, n, dtype, seed):
    ds = toy_dataset(name)
    x = ds.sample(n, rng=seed, dtype=dtype)
    assert isinstance(x, np.ndarray)
    assert x.shape == (n, DIMS[name])
    assert x.dtype == np.dtype(dtype)
    assert np.all(np.isfinite(x))
    np.testing.assert_array_equal(x, ds.sample(n, rng=seed, dtype=dtype))


@pytest.mark.parametrize("name", NAMES)
def test_float32_and_float64_draw_the_same_points(name):
    ds = toy_dataset(name)
    x32 = ds.sample(500, rng=3, dtype="float32")
    x64 = ds.sample(500, rng=3, dtype="float64")
    np.testing.assert_array_equal(x32, x64.astype(np.float32))


def test_default_dtype_is_float32():
    assert ring8().sample(4, rng=0).dtype == np.float32


@pytest.mark.parametrize("name", NAMES)
def test_seeds_repeat_and_differ(name):
    ds = toy_dataset(name)
    a = ds.sample(200, rng=7)
    np.testing.assert_array_equal(a, ds.sample(200, rng=np.random.default_rng(7)))
    assert not np.array_equal(a, ds.sample(200, rng=8))


def test_generator_is_advanced_not_copied():
    g = np.random.default_rng(0)
    a = ring8().sample(50, rng=g)
    b = ring8().sample(50, rng=g)
    assert not np.array_equal(a, b)
    g2 = np.random.default_rng(0)
    np.testing.assert_array_equal(np.concatenate([a, b]),
                                  np.concatenate([ring8().sample(50, rng=g2),
                                                  ring8().sample(50, rng=g2)]))


def test_rng_none_uses_minigans_default_generator():
    backend.seed(123)
    a = grid25().sample(100)
    backend.seed(123)
    b = grid25().sample(100)
    np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------- sample statistics


def _nearest_mode(x, centres):
    return np.argmin(((x[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)


@pytest.mark.parametrize("factory", [ring8, grid25])
def test_mixture_per_mode_statistics(factory):
    ds = factory()
    n = 50 * 1000
    x = ds.sample(n, rng=2024, dtype="float64")
    modes = _nearest_mode(x, ds.centres)  # modes are >= 15 std apart: no ambiguity
    counts = np.bincount(modes, minlength=ds.n_modes)
    expected = n / ds.n_modes
    # Uniform mode choice: every count within 5 binomial std of n/K.
    sd = np.sqrt(n * (1 / ds.n_modes) * (1 - 1 / ds.n_modes))
    assert np.all(np.abs(counts - expected) < 5 * sd), counts
    for k in range(ds.n_modes):
        xk = x[modes == k]
        # Per-mode mean within 5 standard errors, per-axis std within 8 %.
        np.testing.assert_allclose(xk.mean(0), ds.centres[k], atol=5 * ds.std / np.sqrt(len(xk)))
        np.testing.assert_allclose(xk.std(0, ddof=1), ds.std, rtol=0.08)
    # Every sample is within 6 std of its centre: noise is isotropic Gaussian, not wider.
    dist = np.linalg.norm(x - ds.centres[modes], axis=1)
    assert dist.max() < 6 * ds.std


def test_gaussian1d_statistics():
    x = gaussian1d().sample(40_000, rng=5, dtype="float64")[:, 0]
    assert abs(x.mean() - 4.0) < 5 * 0.5 / np.sqrt(len(x))
    assert abs(x.std(ddof=1) - 0.5) < 0.01
    # Gaussian, not uniform: about 68.3 % within one std.
    assert abs(np.mean(np.abs(x - 4.0) < 0.5) - 0.6827) < 0.01


def test_mixture_pdf_matches_gaussian_formula():
    ds = gaussian1d()
    x = np.array([[4.0], [4.5], [3.0]])
    expected = np.exp(-0.5 * ((x[:, 0] - 4.0) / 0.5) ** 2) / (0.5 * np.sqrt(2 * np.pi))
    np.testing.assert_allclose(ds.pdf(x), expected, rtol=1e-12)
    np.testing.assert_allclose(ds.pdf(x[:, 0]), expected, rtol=1e-12)
    # ring8: at a centre, 1/8 of a 2-D Gaussian's peak (others are far away).
    r = ring8()
    np.testing.assert_allclose(r.pdf(r.centres[:1]), 1 / 8 / (2 * np.pi * 0.01**2), rtol=1e-12)


def test_spiral_lies_on_its_curve():
    ds = spiral(noise=0.0)
    x = ds.sample(2000, rng=0, dtype="float64")
    r = np.linalg.norm(x, axis=1)
    t = r * ds.SCALE  # the angle parameter, since radius = t / SCALE
    assert t.min() >= ds.T_MIN - 1e-9 and t.max() <= ds.T_MAX + 1e-9
    # the polar angle agrees with t modulo 2*pi
    diff = np.angle(np.exp(1j * (np.arctan2(x[:, 1], x[:, 0]) - t)))
    np.testing.assert_allclose(diff, 0.0, atol=1e-9)


def test_moons_lie_on_two_half_circles():
    ds = moons(noise=0.0)
    x = ds.sample(2000, rng=0, dtype="float64")
    d_upper = np.linalg.norm(x - ds.MOON_CENTRES[0], axis=1)
    d_lower = np.linalg.norm(x - ds.MOON_CENTRES[1], axis=1)
    upper = np.isclose(d_upper, 1.0) & (x[:, 1] >= ds.MOON_CENTRES[0, 1] - 1e-12)
    lower = np.isclose(d_lower, 1.0) & (x[:, 1] <= ds.MOON_CENTRES[1, 1] + 1e-12)
    assert np.all(upper | lower)
    # both moons used, about equally
    assert 0.45 < upper.mean() < 0.55


@pytest.mark.parametrize("factory", [ring8, spiral, moons])
def test_two_d_sets_share_a_scale(factory):
    x = factory().sample(20_000, rng=1, dtype="float64")
    assert np.abs(x).max() < 2.3
    assert np.mean(np.all(np.abs(x) <= 2.0, axis=1)) > 0.99
    # not collapsed either: spread over at least [-0.7, 0.7] on each axis
    assert np.all(x.max(0) > 0.7) and np.all(x.min(0) < -0.7)


def test_noise_controls_spread():
    tight = moons(noise=0.0).sample(5000, rng=0, dtype="float64")
    loose = moons(noise=0.2).sample(5000, rng=0, dtype="float64")
    assert (loose - tight).std() == pytest.approx(0.2, rel=0.05)


# ---------------------------------------------------------------------- plotting


def test_plot_limits_of_the_built_in_sets():
    assert ring8().plot_lim == (-1.6, 1.6, -1.6, 1.6)
    assert grid25().plot_lim == (-5.5, 5.5, -5.5, 5.5)
    assert gaussian1d().plot_lim == (1.0, 7.0)          # mean 4 +- 6 std
    assert spiral().plot_lim == (-2.2, 2.2, -2.2, 2.2)
    assert moons().plot_lim == (-2.0, 2.0, -1.6, 1.6)


@pytest.mark.parametrize("name", NAMES)
def test_plot_limits_hold_nearly_every_sample(name):
    ds = toy_dataset(name)
    x = ds.sample(20_000, rng=0, dtype="float64")
    lim = np.asarray(ds.plot_lim).reshape(ds.dim, 2)
    inside = np.all((x >= lim[:, 0]) & (x <= lim[:, 1]), axis=1)
    assert inside.mean() > 0.999


def test_plot_limits_of_a_custom_set_come_from_its_samples():
    class Square(ToyDataset):
        name = "square"

        def _sample(self, n, rng):
            return rng.uniform(-3.0, 1.0, size=(n, 2))

    x0, x1, y0, y1 = Square().plot_lim
    assert -4.0 < x0 < -3.0 and 1.0 < x1 < 2.0 and -4.0 < y0 < -3.0 and 1.0 < y1 < 2.0
    assert GaussianMixture("3-D", np.zeros((1, 3)), 1.0).plot_lim is None


def test_plot_centres_only_for_2d_mixtures():
    assert ring8().plot_centres.shape == (8, 2)
    assert gaussian1d().plot_centres is None and spiral().plot_centres is None


# -------------------------------------------------------------------------- errors


@pytest.mark.parametrize("n, err", [(-1, ValueError), (2.5, TypeError), (True, TypeError)])
def test_bad_sample_count(n, err):
    with pytest.raises(err, match="n must be a non-negative int"):
        ring8().sample(n)


def test_integer_dtype_refused():
    with pytest.raises(TypeError, match="floating dtype.*int32"):
        ring8().sample(3, dtype="int32")


@pytest.mark.parametrize("centres, std, match", [
    (np.zeros(3), 0.1, r"\(K, D\).*shape \(3,\)"),
    (np.zeros((0, 2)), 0.1, r"K >= 1"),
    ([[0.0, np.nan]], 0.1, "finite"),
    ([[0.0, 0.0]], 0.0, "std must be"),
    ([[0.0, 0.0]], -1.0, "std must be"),
])
def test_gaussian_mixture_validates(centres, std, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture("bad", centres, std)


def test_negative_noise_refused():
    with pytest.raises(ValueError, match="noise must be"):
        spiral(noise=-0.1)


def test_custom_mixture_samples_its_modes():
    ds = GaussianMixture("two", [[0.0, 0.0, 0.0], [10.0, 10.0, 10.0]], 0.1)
    x = ds.sample(1000, rng=0)
    assert x.shape == (1000, 3)
    modes = _nearest_mode(x.astype(np.float64), ds.centres)
    assert set(np.unique(modes)) == {0, 1}
