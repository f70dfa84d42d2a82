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
    # NCHW, as a convolutional generator gives them
    assert clf.predict(x.reshape(-1, 1, 28, 28)[:7]).tolist() == clf.predict(x[:7]).tolist()

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
    with pytest.raises(ValueError, match=r"shape \(N, 784\), \(N, 28, 28\) or "
                                         r"\(N, 1, 28, 28\), got \(3, 10\)"):
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


# ------------------------------------------------- classification accuracy score


@pytest.fixture(scope="module")
def mnist_train():
    """The real MNIST training digits, read once for the CAS tests."""
    from minigan.data import load_mnist

    return load_mnist("train", data_dir=_mnist_root())


def real_digit_sampler(images, labels, place=np.asarray, labelling="right"):
    """A stand-in conditional generator, ``draw(asked, rng)``, that returns real
    training digits: of the asked classes ("right"), of random classes
    ("shuffled": the labels say nothing about the images), or of the next class
    ("shifted": every label names the wrong digit, consistently)."""
    by_class = [np.flatnonzero(labels == c) for c in range(10)]

    def draw(asked, rng):
        asked = np.asarray(asked)
        if labelling == "shuffled":
            return place(images[rng.integers(len(images), size=len(asked))])
        classes = asked if labelling == "right" else (asked + 1) % 10
        idx = np.empty(len(asked), np.int64)
        for c in range(10):
            where = np.flatnonzero(classes == c)
            idx[where] = rng.choice(by_class[c], size=len(where))
        return place(images[idx])

    return draw


def test_cas_of_real_digits_is_close_to_the_real_baseline(mnist_train, dev):
    """A "generator" that draws real digits of the asked class trains the classifier
    as well as real data does: CAS within noise of the baseline. The images go
    through the backend (CuPy images are copied to the host)."""
    images, labels = mnist_train
    out = metrics.classification_accuracy_score(
        real_digit_sampler(images, labels, dev), n=2000, epochs=2, seed=0,
        data_dir=_mnist_root())
    assert out["n"] == 2000 and out["n_test"] == 10000 and out["epochs"] == 2
    assert out["ema"] is None and out["seed"] == 0
    # 30 steps on 2000 digits: 82-85% over seeds 0-7, and CAS within 0.017 of it
    assert out["real_accuracy"] > 0.8, out
    assert abs(out["cas"] - out["real_accuracy"]) < 0.03, out
    assert set(out["seconds"]) == {"sampling", "generated", "real", "total"}
    assert out["seconds"]["total"] >= out["seconds"]["generated"] + out["seconds"]["real"]
    line = metrics.headline(out)
    assert line.startswith(f"CAS {100 * out['cas']:.2f}% trained on 2,000 generated digits vs "
                           f"{100 * out['real_accuracy']:.2f}% trained on 2,000 real digits")


def test_summarize_cas_gives_the_mean_and_spread_of_several_seeds():
    runs = [{"cas": c, "real_accuracy": r, "seed": s, "n": 60000, "n_test": 10000,
             "epochs": 10} for c, r, s in ((0.9585, 0.9836, 0), (0.9616, 0.9848, 1),
                                           (0.9600, 0.9840, 2))]
    out = metrics.summarize_cas(runs)
    assert out["seeds"] == [0, 1, 2] and out["runs"] == runs
    assert out["cas_mean"] == pytest.approx(0.96003333, abs=1e-8)
    assert out["cas_sd"] == pytest.approx(np.std([0.9585, 0.9616, 0.96], ddof=1), rel=1e-12)
    assert (out["cas_min"], out["cas_max"]) == (0.9585, 0.9616)
    assert out["real_accuracy_mean"] == pytest.approx(0.98413333, abs=1e-8)
    assert metrics.headline(out) == (
        "CAS 96.00% on average over seeds 0, 1, 2 (sd 0.16, 95.85-96.16), trained on 60,000 "
        "generated digits vs 98.41% trained on real digits")
    alone = metrics.summarize_cas([{**runs[0], "real_accuracy": None}])
    assert alone["cas_sd"] == 0.0 and alone["real_accuracy_mean"] is None
    assert "vs" not in metrics.headline(alone)
    with pytest.raises(ValueError, match="at least one"):
        metrics.summarize_cas([])


def test_cas_per_class_shows_the_digit_drawn_too_narrowly(mnist_train):
    """A "generator" that draws real digits, but one and the same 3 whenever a 3 is
    asked: the classifier trained on it misses most real 3s, and the per-class
    accuracies (which weight back to the overall one) say it is the 3s."""
    images, labels = mnist_train
    real_draw = real_digit_sampler(images, labels)
    one_three = images[np.flatnonzero(labels == 3)[0]]

    def draw(asked, rng):
        out = real_draw(asked, rng)
        out[np.asarray(asked) == 3] = one_three
        return out

    out = metrics.classification_accuracy_score(draw, n=2000, epochs=2, seed=0,
                                                data_dir=_mnist_root())
    gen, real = np.array(out["cas_per_class"]), np.array(out["real_per_class"])
    assert gen.shape == real.shape == (10,)
    gaps = gen - real
    assert np.argmin(gaps) == 3 and gaps[3] < -0.2, out
    from minigan.data import load_mnist

    _, test_labels = load_mnist("test", data_dir=_mnist_root())
    counts = np.bincount(test_labels, minlength=10)
    assert float(gen @ counts) / counts.sum() == pytest.approx(out["cas"], abs=1e-12)
    assert float(real @ counts) / counts.sum() == pytest.approx(out["real_accuracy"], abs=1e-12)
    line = metrics.per_class_line(out)
    assert f"3 {100 * gen[3]:.1f}/{100 * real[3]:.1f}" in line
    assert line.split("furthest below: ")[1].startswith(f"3 ({100 * gaps[3]:+.1f})")


@pytest.mark.parametrize("labelling, low, high", [
    ("shuffled", 0.0, 0.25),  # labels independent of the images: about chance (10%)
    ("shifted", 0.0, 0.05),   # every label names the next digit: the classifier learns that
])
def test_cas_of_wrongly_labelled_digits(mnist_train, labelling, low, high):
    images, labels = mnist_train
    out = metrics.classification_accuracy_score(
        real_digit_sampler(images, labels, labelling=labelling), n=2000, epochs=2, seed=0,
        data_dir=_mnist_root())
    assert low <= out["cas"] < high, out
    assert out["real_accuracy"] > 0.8, out  # the baseline trains on real labels, not these


def test_cas_is_deterministic_given_the_seed(mnist_train):
    images, labels = mnist_train
    draw = real_digit_sampler(images, labels)

    def accuracies(seed):
        out = metrics.classification_accuracy_score(draw, n=1000, epochs=1, seed=seed,
                                                    data_dir=_mnist_root())
        return out["cas"], out["real_accuracy"]

    first = accuracies(3)
    assert accuracies(3) == first
    other = accuracies(4)  # other noise, initial weights, batches and real subset
    assert other[0] != first[0] and other[1] != first[1]


def _tiny_gan(**config):
    from minigan.models import build_gan

    return build_gan({"latent_dim": 4, "data_dim": 784, "g_hidden": [8], "d_hidden": [8],
                      "g_out": "tanh", **config}, backend="numpy", seed=0)


def _synthetic_mnist(monkeypatch):
    """load_mnist replaced by small synthetic digits: no files needed, nothing to download."""
    import minigan.data

    monkeypatch.setattr(minigan.data, "load_mnist", lambda split="train", data_dir=None, **k:
                        synthetic_digits(1200 if split == "train" else 200, seed=split == "test"))


def test_cas_samples_a_conditional_gan_balanced_and_seeded(monkeypatch):
    """Through ConditionalGAN.sample: n/10 of each class, in batches from one
    noise generator seeded by ``seed``, from the EMA generator unless ema=False."""
    _synthetic_mnist(monkeypatch)
    gan = _tiny_gan(n_classes=10, ema_decay=0.9)
    calls = []
    original = gan.sample

    def spy(n, labels=None, rng=None, ema=True):
        calls.append((n, np.asarray(labels).copy(), rng, ema))
        return original(n, labels=labels, rng=rng, ema=ema)

    monkeypatch.setattr(gan, "sample", spy)
    monkeypatch.setattr(metrics, "_CAS_SAMPLE_BATCH", 400)
    out = metrics.classification_accuracy_score(gan, n=1000, epochs=1, seed=5)
    assert [c[0] for c in calls] == [400, 400, 200]
    asked = np.concatenate([c[1] for c in calls])
    assert np.bincount(asked, minlength=10).tolist() == [100] * 10
    assert all(c[2] is calls[0][2] for c in calls)  # one noise stream across batches
    assert all(c[3] is True for c in calls) and out["ema"] is True
    assert out["real_accuracy"] is not None and 0.0 <= out["cas"] <= 1.0

    calls.clear()
    again = metrics.classification_accuracy_score(gan, n=1000, epochs=1, seed=5)
    assert again["cas"] == out["cas"] and again["real_accuracy"] == out["real_accuracy"]
    alone = metrics.classification_accuracy_score(gan, n=1000, epochs=1, seed=5, ema=False,
                                                  baseline=False)
    assert all(c[3] is False for c in calls[3:]) and len(calls) == 6
    assert alone["real_accuracy"] is None and "real" not in alone["seconds"]
    assert alone["ema"] is False
    # ema=True without an EMA: G itself drew them, and the record says so
    no_ema = metrics.classification_accuracy_score(_tiny_gan(n_classes=10), n=1000, epochs=1,
                                                   baseline=False)
    assert no_ema["ema"] is False
    assert metrics.headline(alone).startswith(
        f"CAS {100 * alone['cas']:.2f}% trained on 1,000 generated digits (1 epoch; "
        "tested on the 200 real test digits)")


def test_cas_needs_a_conditional_generator(monkeypatch):
    _synthetic_mnist(monkeypatch)
    with pytest.raises(ValueError, match=r"CAS needs a conditional generator: train with "
                                         r"--conditional \(got an unconditional GAN"):
        metrics.classification_accuracy_score(_tiny_gan(), n=1000)
    with pytest.raises(ValueError, match=r"the 10 digit classes, got a ConditionalGAN with "
                                         r"n_classes=3"):
        metrics.classification_accuracy_score(_tiny_gan(n_classes=3), n=1000)
    with pytest.raises(TypeError, match=r"ConditionalGAN or a function \(labels, rng\)"):
        metrics.classification_accuracy_score("mnist", n=1000)


def _constant_draw(value=0.0, shape=(784,), count=None):
    def draw(asked, rng):
        return np.full((len(asked) if count is None else count, *shape), value, np.float32)
    return draw


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(n=1005), ValueError, r"multiple of 10 \(n/10 samples of each digit\), got 1005; "
                               r"try 1000"),
    (dict(n=990), ValueError, r"n must be an int >= 1000 \(100 digits of each class"),
    (dict(n=1000.0), ValueError, r"n must be an int >= 1000"),
    (dict(n=2000), ValueError, r"n=2000 is more than the 1200 MNIST training digits the real "
                               r"baseline trains on: pass n <= 1200, or baseline=False"),
    (dict(epochs=0), ValueError, r"epochs must be an int >= 1, got 0"),
    (dict(generator=_constant_draw(shape=(10,))), ValueError,
     r"generated images must have shape \(N, 784\), \(N, 28, 28\) or \(N, 1, 28, 28\), "
     r"got \(1000, 10\)"),
    (dict(generator=_constant_draw(255.0)), ValueError,
     r"generated images must be scaled to \[-1, 1\].*got values in \[255, 255\]"),
    (dict(generator=_constant_draw(np.nan)), ValueError, r"generated images contain NaN"),
    (dict(generator=_constant_draw(count=7)), ValueError,
     r"asked the generator for 1000 images, got 7"),
])
def test_cas_errors_say_what_was_expected(monkeypatch, kwargs, error, match):
    _synthetic_mnist(monkeypatch)
    args = dict(generator=_constant_draw(), n=1000, epochs=1) | kwargs
    with pytest.raises(error, match=match):
        metrics.classification_accuracy_score(**args)


def test_cas_without_the_mnist_files_says_how_to_get_them(tmp_path, monkeypatch):
    """The loader's own message, before any sampling; nothing is downloaded."""
    from minigan.data import DataNotFoundError, mnist

    monkeypatch.setitem(mnist.MIRRORS, "mnist", [])

    def draw(asked, rng):
        pytest.fail("sampled before the test files were found")

    with pytest.raises(DataNotFoundError, match=r"mnist files not found in .*"
                                                r"t10k-images-idx3-ubyte\.gz"):
        metrics.classification_accuracy_score(draw, n=1000, data_dir=tmp_path)


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
