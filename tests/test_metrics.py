"""Metrics on constructed inputs whose answers are known in closed form.

The MNIST classifier test trains on the real data from $MINIGAN_DATA_DIR (CI:
../shared/data) and skips, saying so, where it is not set.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import pytest

from minigan import metrics
from minigan.metrics import (
    MnistClassifier,
    classifier_scores,
    frechet_distance,
    frechet_distance_from_stats,
    inception_score,
    kl_to_uniform,
    mode_coverage,
    scores_from_probs,
)

K = 8
STD = 0.01
RING = np.stack([np.cos(2 * np.pi * np.arange(K) / K), np.sin(2 * np.pi * np.arange(K) / K)], 1)


def at_centres(modes, per_mode):
    """per_mode samples exactly at each centre in ``modes``."""
    return np.repeat(RING[list(modes)], per_mode, axis=0).astype(np.float32)


# ------------------------------------------------------------------ mode coverage


def test_all_samples_at_the_centres_cover_every_mode(dev):
    out = mode_coverage(dev(at_centres(range(K), 312)), dev(RING), STD)
    assert out["modes_captured"] == K
    assert out["n_modes"] == K
    assert out["n_samples"] == K * 312
    assert out["high_quality_fraction"] == 1.0
    assert out["reverse_kl"] == pytest.approx(0.0, abs=1e-12)
    assert out["counts"] == [312] * K
    assert isinstance(out["modes_captured"], int) and isinstance(out["reverse_kl"], float)


def test_three_modes_give_the_exact_reverse_kl():
    out = mode_coverage(at_centres([0, 3, 5], 100), RING, STD)
    assert out["modes_captured"] == 3
    assert out["high_quality_fraction"] == 1.0
    # p = 1/3 on 3 of 8 modes: sum 1/3 log(1/3 * 8) = log(8/3)
    assert out["reverse_kl"] == pytest.approx(math.log(8 / 3), rel=1e-12)
    assert out["counts"] == [100, 0, 0, 100, 0, 100, 0, 0]


def test_unbalanced_histogram_kl():
    samples = np.concatenate([at_centres([0], 300), at_centres([1], 100)])
    out = mode_coverage(samples, RING, STD)
    p = np.array([0.75, 0.25])
    assert out["reverse_kl"] == pytest.approx(float(np.sum(p * np.log(p * K))), rel=1e-12)


def test_far_samples_are_not_high_quality():
    # 4 std away from a centre (and far from every other one): not high quality.
    offset = np.array([4 * STD, 0.0])
    far = at_centres(range(K), 10) + offset.astype(np.float32)
    out = mode_coverage(far.astype(np.float64), RING, STD)
    assert out["high_quality_fraction"] == 0.0
    assert out["modes_captured"] == 0
    assert out["counts"] == [0] * K
    # The documented convention: no high-quality sample at all scores log K.
    assert out["reverse_kl"] == pytest.approx(math.log(K))
    # 2.9 std away is within 3 std; n_std moves the threshold.
    near = at_centres(range(K), 10).astype(np.float64) + np.array([2.9 * STD, 0.0])
    assert mode_coverage(near, RING, STD)["high_quality_fraction"] == 1.0
    assert mode_coverage(near, RING, STD, n_std=2.0)["high_quality_fraction"] == 0.0


def test_half_good_half_bad_and_the_origin():
    good = at_centres(range(K), 50)
    bad = np.zeros((400, 2), np.float32)  # the origin: distance 1 to every centre
    out = mode_coverage(np.concatenate([good, bad]), RING, STD)
    assert out["high_quality_fraction"] == 0.5
    assert out["modes_captured"] == K
    assert out["reverse_kl"] == pytest.approx(0.0, abs=1e-12)


def test_samples_from_the_mixture_match_the_chi_distribution():
    # In 2-D, |noise| / std is chi with 2 dof: P(r <= 3) = 1 - exp(-9/2) = 0.98889.
    rng = np.random.default_rng(0)
    n = 20000
    x = RING[rng.integers(K, size=n)] + STD * rng.standard_normal((n, 2))
    out = mode_coverage(x, RING, STD)
    assert out["modes_captured"] == K
    assert out["high_quality_fraction"] == pytest.approx(1 - math.exp(-4.5), abs=0.004)
    assert out["reverse_kl"] < 0.002


def test_mode_coverage_options_and_nonfinite_samples():
    x = np.concatenate([at_centres([0], 5), at_centres([1], 1),
                        np.full((3, 2), np.nan), np.full((1, 2), np.inf)])
    out = mode_coverage(x, RING, STD)
    assert out["modes_captured"] == 2 and out["high_quality_fraction"] == 0.6
    assert mode_coverage(x, RING, STD, min_count=2)["modes_captured"] == 1
    # One std per mode.
    stds = np.full(K, STD)
    stds[0] = 1e-9
    shifted = at_centres([0, 1], 1) + np.float32(0.5 * STD)
    assert mode_coverage(shifted, RING, stds)["counts"][:2] == [0, 1]


@pytest.mark.parametrize("kwargs, match", [
    (dict(samples=np.zeros((5, 3))), r"samples have 3 dimensions but centres have 2"),
    (dict(samples=np.zeros(5)), r"samples must be a 2-D array \(N, D\), got shape \(5,\)"),
    (dict(samples=np.zeros((0, 2))), r"samples is empty"),
    (dict(std=0.0), r"std must be finite and > 0"),
    (dict(std=np.ones(3)), r"one value per mode, shape \(8,\); got shape \(3,\)"),
    (dict(n_std=-1), r"n_std must be a finite number > 0"),
])
def test_mode_coverage_errors_say_what_was_expected(kwargs, match):
    args = dict(samples=at_centres(range(K), 1), centres=RING, std=STD) | kwargs
    with pytest.raises(ValueError, match=match):
        mode_coverage(**args)


# --------------------------------------------------------------- Fréchet distance


def with_moments(rng, n, mean, cov):
    """n samples whose sample mean and (unbiased) covariance are exactly mean and cov."""
    f = len(mean)
    x = rng.standard_normal((n, f))
    x -= x.mean(0)
    # Whiten to an identity sample covariance, then colour with cov's Cholesky factor.
    x = x @ np.linalg.inv(np.linalg.cholesky(np.cov(x, rowvar=False))).T
    return x @ np.linalg.cholesky(cov).T + mean


def test_frechet_distance_of_diagonal_gaussians_matches_the_closed_form(dev):
    rng = np.random.default_rng(1)
    mu_a, mu_b = np.array([0.0, 1.0, -2.0]), np.array([0.5, 1.0, 0.0])
    sd_a, sd_b = np.array([1.0, 2.0, 0.5]), np.array([1.5, 0.5, 0.5])
    # Diagonal covariances commute: Tr(Sa + Sb - 2 sqrt(Sa Sb)) = sum (sd_a - sd_b)^2.
    expected = np.sum((mu_a - mu_b) ** 2) + np.sum((sd_a - sd_b) ** 2)
    a = with_moments(rng, 500, mu_a, np.diag(sd_a**2))
    b = with_moments(rng, 300, mu_b, np.diag(sd_b**2))
    assert frechet_distance(dev(a), dev(b)) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(b, a) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance_from_stats(mu_a, np.diag(sd_a**2), mu_b, np.diag(sd_b**2)) \
        == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_of_identical_sets_is_zero():
    x = np.random.default_rng(2).standard_normal((400, 16)).astype(np.float32)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    # A singular covariance (fewer samples than features) is fine too.
    y = x[:10]
    assert frechet_distance(y, y) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_with_non_commuting_covariances():
    rng = np.random.default_rng(3)
    f = 6
    A, B = rng.standard_normal((f, f)), rng.standard_normal((f, f))
    sa, sb = A @ A.T + 0.1 * np.eye(f), B @ B.T + 0.1 * np.eye(f)
    mu_a, mu_b = rng.standard_normal(f), rng.standard_normal(f)
    # An independent route: Sa Sb has real, positive eigenvalues whose square
    # roots sum to Tr (Sa Sb)^{1/2}.
    trace_sqrt = np.sum(np.sqrt(np.linalg.eigvals(sa @ sb).real))
    expected = np.sum((mu_a - mu_b) ** 2) + np.trace(sa) + np.trace(sb) - 2 * trace_sqrt
    assert frechet_distance_from_stats(mu_a, sa, mu_b, sb) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_errors():
    with pytest.raises(ValueError, match=r"different widths: feats_a \(10, 3\), feats_b \(10, 4\)"):
        frechet_distance(np.zeros((10, 3)), np.zeros((10, 4)))
    with pytest.raises(ValueError, match="at least 2 feature vectors"):
        frechet_distance(np.zeros((1, 3)), np.zeros((10, 3)))
    with pytest.raises(ValueError, match="NaN or inf"):
        frechet_distance(np.full((4, 3), np.nan), np.zeros((10, 3)))


# ---------------------------------------------------------- classifier-based scores


def one_hot(labels, c=10, confidence=1.0):
    """Rows with ``confidence`` on the label and the rest spread evenly."""
    p = np.full((len(labels), c), (1 - confidence) / (c - 1))
    p[np.arange(len(labels)), labels] = confidence
    return p


class FixedClassifier:
    """A stand-in classifier whose predictions are given."""

    def __init__(self, probs):
        self.probs = probs

    def predict_proba(self, images):
        assert len(images) == len(self.probs)
        return self.probs


def test_scores_of_perfectly_balanced_confident_predictions():
    probs = one_hot(np.repeat(np.arange(10), 100))
    out = classifier_scores(np.zeros((1000, 784), np.float32), FixedClassifier(probs))
    assert out["classes_covered"] == 10 and out["n_classes"] == 10
    assert out["class_histogram"] == [100] * 10
    assert out["kl_to_uniform"] == pytest.approx(0.0, abs=1e-12)
    assert out["inception_score"] == pytest.approx(10.0, rel=1e-12)


def test_scores_of_a_collapsed_generator():
    out = scores_from_probs(one_hot(np.full(500, 7)))
    assert out["classes_covered"] == 1
    assert out["class_histogram"] == [0] * 7 + [500] + [0, 0]
    assert out["kl_to_uniform"] == pytest.approx(math.log(10))
    assert out["inception_score"] == pytest.approx(1.0)


def test_scores_of_five_classes_and_of_unsure_predictions():
    out = scores_from_probs(one_hot(np.repeat([0, 2, 4, 6, 8], 40)))
    assert out["classes_covered"] == 5
    assert out["kl_to_uniform"] == pytest.approx(math.log(2))
    assert out["inception_score"] == pytest.approx(5.0)
    # Every row uniform: p(y|x) = p(y), so every KL is 0 and IS = 1.
    assert inception_score(np.full((50, 10), 0.1)) == pytest.approx(1.0)
    # Soft but balanced: IS = exp(log 10 - H(row)).
    soft = one_hot(np.repeat(np.arange(10), 10), confidence=0.91)
    h = -(0.91 * math.log(0.91) + 9 * 0.01 * math.log(0.01))
    assert inception_score(soft) == pytest.approx(math.exp(math.log(10) - h), rel=1e-9)


def test_classes_covered_threshold():
    labels = np.concatenate([np.full(995, 1), [3, 3, 3, 3, 9]])
    out = scores_from_probs(one_hot(labels))  # 1% of 1000 = 10 samples needed
    assert out["classes_covered"] == 1
    assert scores_from_probs(one_hot(labels), min_fraction=0.0)["classes_covered"] == 3
    assert scores_from_probs(one_hot(labels), min_fraction=0.004)["classes_covered"] == 2


def test_kl_to_uniform_and_score_errors():
    assert kl_to_uniform([5, 5, 5, 5]) == 0.0
    assert kl_to_uniform([1, 0, 0, 0]) == pytest.approx(math.log(4))
    with pytest.raises(ValueError, match="non-negative histogram"):
        kl_to_uniform([0, 0])
    with pytest.raises(ValueError, match="apply a softmax"):
        inception_score(np.ones((3, 10)))


# ------------------------------------------------------------------- classifier


def synthetic_digits(n, seed=0):
    """Ten well-separated classes in [-1, 1]^784: a class lights up its own band of pixels."""
    rng = np.random.default_rng(seed)
    y = rng.integers(10, size=n)
    x = rng.uniform(-1, -0.6, size=(n, 784)).astype(np.float32)
    for c in range(10):
        x[y == c, c * 78:(c + 1) * 78] = 0.8
    return x, y.astype(np.int64)


def test_classifier_api_save_and_load_without_pickle(tmp_path):
    x, y = synthetic_digits(600)
    clf = MnistClassifier(hidden=(32, 16), seed=3).fit(x, y, epochs=3, batch_size=50)
    assert clf.accuracy(x, y) > 0.95
    proba = clf.predict_proba(x[:7])
    assert proba.shape == (7, 10) and np.allclose(proba.sum(1), 1.0, atol=1e-5)
    assert clf.predict(x[:7]).dtype == np.int64
    assert clf.features(x[:7]).shape == (7, 16)
    assert clf.predict(x.reshape(-1, 28, 28)[:7]).tolist() == clf.predict(x[:7]).tolist()

    path = clf.save(tmp_path / "sub" / "clf.npz")
    assert sorted(p.name for p in path.parent.iterdir()) == ["clf.npz"]  # no temporary left
    with np.load(path, allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)
    again = MnistClassifier.load(path)
    assert np.array_equal(again.logits(x), clf.logits(x))

    # Same seed, same data: the same weights.
    twin = MnistClassifier(hidden=(32, 16), seed=3).fit(x, y, epochs=3, batch_size=50)
    assert np.array_equal(twin.logits(x), clf.logits(x))


def test_classifier_input_errors(tmp_path):
    clf = MnistClassifier(hidden=(8, 8))
    with pytest.raises(ValueError, match=r"shape \(N, 784\) or \(N, 28, 28\), got \(3, 10\)"):
        clf.predict(np.zeros((3, 10), np.float32))
    with pytest.raises(ValueError, match=r"scaled to \[-1, 1\].*got values in \[0, 255\]"):
        clf.predict(np.linspace(0, 255, 2 * 784, dtype=np.float32).reshape(2, 784))
    bad = tmp_path / "broken.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="not a readable .npz"):
        MnistClassifier.load(bad)


def test_a_corrupt_cache_is_replaced(tmp_path, monkeypatch):
    """load_classifier retrains (with a warning) instead of failing on a broken cache file."""
    x, y = synthetic_digits(300)

    def fake_load_mnist(split="train", data_dir=None, **kwargs):
        return synthetic_digits(300 if split == "train" else 100, seed=split == "test")

    import minigan.data
    monkeypatch.setattr(minigan.data, "load_mnist", fake_load_mnist)
    monkeypatch.setattr(MnistClassifier, "fit", lambda self, *a, **k: _quick_fit(self, *a))
    (tmp_path / metrics.CLASSIFIER_FILE).write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="Ignoring the cached MNIST classifier"):
        clf = metrics.load_classifier(cache_dir=tmp_path, verbose=False)
    assert clf.test_accuracy is not None
    # Now cached and valid: loaded without training.
    monkeypatch.setattr(MnistClassifier, "fit", lambda *a, **k: pytest.fail("retrained"))
    again = metrics.load_classifier(cache_dir=tmp_path, verbose=False)
    assert np.array_equal(again.logits(x), clf.logits(x))
    monkeypatch.setenv("MINIGAN_CACHE_DIR", str(tmp_path))
    assert metrics.resolve_cache_dir() == tmp_path.resolve()


_ORIGINAL_FIT = MnistClassifier.fit


def _quick_fit(self, images, labels, *args):
    self.train_seconds = 0.0
    return _ORIGINAL_FIT(self, images, labels, epochs=1, batch_size=100)


def _mnist_root():
    value = os.environ.get("MINIGAN_DATA_DIR")
    if not value:
        pytest.skip("MINIGAN_DATA_DIR is not set: point it at the MNIST files "
                    "(CI uses MINIGAN_DATA_DIR=../shared/data from the repository root)")
    root = Path(value).expanduser().resolve()
    if not (root / "mnist" / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"MINIGAN_DATA_DIR={value!r} resolves to {root}, which has no "
                    "mnist/t10k-images-idx3-ubyte.gz")
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The real classifier, trained once on MNIST into a fresh cache folder."""
    root = _mnist_root()
    cache = tmp_path_factory.mktemp("classifier-cache")
    clf = metrics.load_classifier(data_dir=root, cache_dir=cache, verbose=False)
    return clf, cache, root


@pytest.mark.slow
def test_mnist_classifier_reaches_98_percent(trained):
    from minigan.data import load_mnist

    clf, cache, root = trained
    images, labels = load_mnist("test", data_dir=root)
    accuracy = clf.accuracy(images, labels)
    assert accuracy >= 0.98, f"test accuracy {accuracy:.4f} < 0.98"
    assert clf.test_accuracy == pytest.approx(accuracy)

    # Cached: the second call loads the same weights, without training.
    again = metrics.load_classifier(data_dir=root, cache_dir=cache, verbose=False)
    assert np.array_equal(again.logits(images[:100]), clf.logits(images[:100]))

    # Real test digits score as real digits should.
    scores = classifier_scores(images[:2000], clf)
    assert scores["classes_covered"] == 10
    assert scores["kl_to_uniform"] < 0.01
    assert scores["inception_score"] > 9.0
    # Fréchet distance in classifier features: small between two halves of the
    # test set, large for a "generator" that draws only ones.
    fd_real = metrics.frechet_to_mnist(images[:5000], clf, real_images=images[5000:])
    fd_ones = metrics.frechet_to_mnist(images[labels == 1], clf, real_images=images[5000:])
    assert fd_real < 0.1 * fd_ones


# ------------------------------------------------------------- a run's scores


def test_toy_scores_and_their_headline():
    from minigan.data import gaussian1d, ring8, spiral

    samples = ring8().sample(2500, rng=1)
    scores = metrics.toy_scores(samples, ring8(), seed=0)
    assert scores["mode_coverage"]["modes_captured"] == 8
    assert scores["frechet_distance_to_data"] < 1e-2
    assert metrics.headline(scores).startswith("8/8 modes, ")
    one = metrics.toy_scores(gaussian1d().sample(500, rng=0), gaussian1d())
    assert re.match(r"sample mean 3\.9\d\d \(data 4\.0\d\d\), std 0\.5", metrics.headline(one))
    line = metrics.headline(metrics.toy_scores(spiral().sample(500, rng=0), spiral()))
    assert line.startswith("Gaussian-fit Fréchet distance to the data 0.0")


def test_image_scores_use_the_data_sets_classifier(tmp_path, monkeypatch):
    """Fashion-MNIST gets its own cached classifier, trained from load_fashion_mnist."""
    import minigan.data

    def fake_load(split="train", data_dir=None, **kwargs):
        return synthetic_digits(300 if split == "train" else 100, seed=split == "test")

    monkeypatch.setattr(minigan.data, "load_fashion_mnist", fake_load)
    monkeypatch.setattr(minigan.data, "load_mnist", lambda *a, **k: pytest.fail("MNIST"))
    monkeypatch.setattr(MnistClassifier, "fit", lambda self, *a, **k: _quick_fit(self, *a))
    monkeypatch.setenv("MINIGAN_CACHE_DIR", str(tmp_path))
    path = metrics.classifier_path("fashion-mnist")
    assert path == tmp_path.resolve() / "fashion_mnist_classifier_v1.npz" and not path.exists()
    x, y = synthetic_digits(200, seed=3)
    scores = metrics.image_scores(x, "fashion-mnist", labels=y)
    assert path.is_file()
    assert 0 <= scores["conditional_accuracy"] <= 1
    assert scores["classifier_scores"]["classifier_test_accuracy"] is not None
    assert metrics.headline(scores).startswith(
        f"{scores['classifier_scores']['classes_covered']}/10 classes, KL to uniform ")
    with pytest.raises(ValueError, match="no classifier for 'cifar10'"):
        metrics.classifier_path("cifar10")
