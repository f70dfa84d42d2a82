"""The config-driven builders: the loss, the penalty and spectral norm keys of a GAN
config reach the GAN, are checked with clear errors, and seed their own streams."""

from __future__ import annotations

import numpy as np
import pytest

import minigan.backend as mb
from minigan.gan_losses import Hinge, LeastSquares, Minimax, NonSaturating, Wasserstein
from minigan.layers import Dense, Pack
from minigan.models import (
    PENALTY_WEIGHTS,
    Scale,
    build_discriminator,
    build_gan,
    build_loss,
    check_config,
    complete_config,
)
from minigan.penalty import R1, GradientPenalty, check_penalty
from minigan.spectral import SpectralNorm

TINY = {"latent_dim": 2, "data_dim": 2, "g_hidden": [8], "d_hidden": [8, 8]}


def _real(n=16, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 2)).astype(np.float32)


# ------------------------------------------------------------------------- losses


@pytest.mark.parametrize("settings, kind", [
    ({}, NonSaturating),
    ({"g_loss": "minimax"}, Minimax),
    ({"loss": "lsgan"}, LeastSquares),
    ({"loss": "wasserstein"}, Wasserstein),
    ({"loss": "hinge"}, Hinge),
    ({"loss": "wasserstein", "g_loss": "wasserstein"}, Wasserstein),   # as the CLI records it
    ({"loss": "hinge", "g_loss": "hinge"}, Hinge),
])
def test_the_loss_key_picks_the_loss_object(settings, kind):
    assert type(build_loss({**TINY, **settings})) is kind
    assert type(build_gan({**TINY, **settings}, seed=0).loss) is kind


@pytest.mark.parametrize("settings, message", [
    ({"loss": "hinge", "label_smoothing": 0.1}, "loss 'hinge' has no such target"),
    ({"loss": "wasserstein", "label_smoothing": 0.2}, "label_smoothing=0.2 is one-sided"),
    ({"loss": "wasserstein", "g_loss": "minimax"}, "cannot be combined with g_loss='minimax'"),
    ({"loss": "hinge", "g_loss": "wasserstein"}, "cannot be combined with g_loss='wasserstein'"),
    ({"loss": "lsgan", "g_loss": "minimax"}, "cannot be combined with g_loss='minimax'"),
    ({"loss": "wgan"}, "loss must be one of 'bce', 'lsgan', 'wasserstein', 'hinge', "
                       "got 'wgan'"),
])
def test_loss_settings_that_do_not_fit_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        build_gan({**TINY, **settings}, seed=0)
    with pytest.raises(ValueError, match=message):
        check_config({**TINY, **settings})


# ---------------------------------------------------------------------- penalties


@pytest.mark.parametrize("settings, kind, weight", [
    ({"penalty": "gp"}, GradientPenalty, PENALTY_WEIGHTS["gp"]),
    ({"penalty": "gp", "penalty_weight": 0.5}, GradientPenalty, 0.5),
    ({"penalty": "r1"}, R1, PENALTY_WEIGHTS["r1"]),
    ({"penalty": "r1", "penalty_weight": 2}, R1, 2.0),
    ({"penalty": "r1", "penalty_every": 16}, R1, PENALTY_WEIGHTS["r1"]),
])
def test_the_penalty_reaches_the_gan_with_its_weight(settings, kind, weight):
    gan = build_gan({**TINY, "loss": "wasserstein", **settings}, seed=0)
    assert type(gan.regularizer) is kind
    assert (gan.regularizer.weight if kind is GradientPenalty else gan.regularizer.gamma) == weight
    assert complete_config({**TINY, **settings})["penalty_weight"] == weight
    if kind is R1:
        assert gan.regularizer.every == settings.get("penalty_every", 1)
    record = gan.train_step(_real())
    assert np.isfinite(record["d_penalty"]) and record["d_penalty"] > 0


@pytest.mark.parametrize("penalty", ["gp", "r1"])
def test_a_conditional_gans_penalty_leaves_the_label_out(penalty):
    """A conditional D reads [x, one-hot y]: the penalty's norm is over x's data_dim
    numbers (features), not over the label columns; unconditional: over all."""
    plain = build_gan({**TINY, "penalty": penalty}, seed=0).regularizer
    conditional = build_gan({**TINY, "penalty": penalty, "n_classes": 3}, seed=0).regularizer
    assert plain.features is None and conditional.features == TINY["data_dim"]


def test_no_penalty_no_regulariser_and_no_weight():
    gan = build_gan(TINY, seed=0)
    assert gan.regularizer is None and "d_penalty" not in gan.train_step(_real())
    assert complete_config(TINY)["penalty"] == "none"
    assert complete_config(TINY)["penalty_weight"] is None
    assert PENALTY_WEIGHTS == {"gp": 10.0, "r1": 10.0}


@pytest.mark.parametrize("settings, error, message", [
    ({"penalty": "l2"}, ValueError, "penalty must be one of 'none', 'gp', 'r1', got 'l2'"),
    ({"penalty_weight": 3.0}, ValueError, "'penalty_weight' is 3.0 but 'penalty' is 'none'"),
    ({"penalty": "gp", "penalty_weight": 0}, ValueError, "'penalty_weight' must be a finite "
                                                        "number > 0, got 0.0"),
    ({"penalty": "r1", "penalty_weight": float("nan")}, ValueError, "'penalty_weight' must be"),
    ({"penalty": "gp", "penalty_weight": "10"}, TypeError, "'penalty_weight' must be a finite"),
    ({"spectral_norm": "yes"}, TypeError, "'spectral_norm' must be true or false, got 'yes'"),
    ({"betas": [0.5]}, TypeError, r"'betas' must be a pair \[beta1, beta2\]"),
    ({"betas": [0.5, 1.0]}, ValueError, r"'betas' must be two numbers in \[0, 1\)"),
    ({"penalty": "r1", "penalty_every": 0}, ValueError, "'penalty_every' must be an integer >= 1"),
    ({"penalty": "r1", "penalty_every": 2.5}, ValueError, "'penalty_every' must be an integer"),
    ({"penalty": "gp", "penalty_every": 4}, ValueError,
     "'penalty_every' is 4 but 'penalty' is 'gp': lazy regularisation is for 'r1'"),
    ({"penalty": "gp", "penalty_weight": 1.0, "penalty_every": 4}, ValueError,
     r"check 'penalty_weight' \(1.0 here; gp's usual weight is 10.0\)"),
    ({"penalty": "r1", "penalty_every": float("nan")}, ValueError,
     "'penalty_every' must be an integer >= 1 .* got nan"),
    ({"penalty": "r1", "penalty_every": float("inf")}, ValueError,
     "'penalty_every' must be an integer >= 1 .* got inf"),
    ({"penalty_weight": 1.0, "penalty_every": 16}, ValueError,
     r"drop the weight \(and 'penalty_every'\)"),
])
def test_penalty_and_spectral_norm_keys_are_checked(settings, error, message):
    with pytest.raises(error, match=message):
        build_gan({**TINY, **settings}, seed=0)


@pytest.mark.parametrize("penalty", ["gp", "r1"])
@pytest.mark.parametrize("settings, why", [
    ({"d_batchnorm": True}, "batch normalisation mixes the samples of a batch"),
    ({"d_dropout": 0.25}, "dropout makes D random"),
])
def test_a_penalty_on_a_d_it_cannot_go_through_fails_when_built(penalty, settings, why):
    config = {**TINY, "penalty": penalty, **settings}
    for build in (lambda: build_gan(config, seed=0), lambda: check_config(config)):
        with pytest.raises(ValueError) as err:
            build()
        message = str(err.value)
        assert f"penalty {penalty!r} cannot be used with this D" in message
        assert why in message                   # minigan.penalty's own reason
        assert "Set d_batchnorm false and d_dropout 0" in message
    # the same D without the penalty is fine
    build_gan({**TINY, **settings}, seed=0)


def test_the_penalty_epsilons_have_a_seeded_stream_of_their_own():
    config = {**TINY, "loss": "wasserstein", "penalty": "gp"}
    a, b, c = (build_gan(config, seed=s) for s in (4, 4, 5))
    eps = [g.regularizer.rng.random(6) for g in (a, b, c)]
    np.testing.assert_array_equal(eps[0], eps[1])
    assert not np.array_equal(eps[0], eps[2])
    # not the noise's stream, nor the command line's data stream [seed, 3]
    assert not np.array_equal(eps[0], np.random.default_rng((4, 2)).random(6))
    assert not np.array_equal(eps[0], np.random.default_rng([4, 3]).random(6))
    # adding the penalty changes neither the weights nor the noise
    plain = build_gan({**TINY, "loss": "wasserstein"}, seed=4)
    for k, v in plain.D.state_dict().items():
        np.testing.assert_array_equal(v, b.D.state_dict()[k], err_msg=k)
    np.testing.assert_array_equal(plain.sample_noise(3), b.sample_noise(3))


def test_an_unseeded_gan_with_a_penalty_trains():
    gan = build_gan({**TINY, "penalty": "gp"}, seed=None)
    assert np.isfinite(gan.train_step(_real())["d_penalty"])


# -------------------------------------------------------------------- spectral norm


def test_spectral_norm_wraps_every_dense_of_d_and_keeps_the_names():
    config = {**TINY, "d_hidden": [8, 6], "pack": 2, "data_scale": 4.0}
    plain = build_discriminator(config, rng=3)
    D = build_discriminator({**config, "spectral_norm": True}, rng=3)
    kinds = [type(layer) for layer in D.layers]
    assert kinds[:2] == [Scale, Pack]
    assert sum(k is SpectralNorm for k in kinds) == 3 and Dense not in kinds
    assert [type(layer.layer) for layer in D.layers if isinstance(layer, SpectralNorm)] == \
        [Dense] * 3
    # the parameters keep the Dense's names and values; u and v are buffers beside them
    assert [n for n, _, _ in D.named_parameters()] == [n for n, _, _ in plain.named_parameters()]
    for (name, p, _), (_, q, _) in zip(D.named_parameters(), plain.named_parameters()):
        np.testing.assert_array_equal(p, q, err_msg=name)
    extra = sorted(set(D.state_dict()) - set(plain.state_dict()))
    assert extra == ["2.u", "2.v", "4.u", "4.v", "6.u", "6.v"]
    assert D.state_dict()["2.u"].shape == (8,) and D.state_dict()["2.v"].shape == (4,)
    # the generator is not normalised
    gan = build_gan({**config, "spectral_norm": True}, seed=0)
    assert not any(isinstance(m, SpectralNorm) for m in gan.G.modules())
    assert sum(isinstance(m, SpectralNorm) for m in gan.D.modules()) == 3


def test_spectral_norm_state_dict_round_trip_and_ema():
    config = {**TINY, "loss": "hinge", "spectral_norm": True, "ema_decay": 0.9}
    gan = build_gan(config, seed=1)
    for i in range(3):
        gan.train_step(_real(seed=i))
    state = gan.D.state_dict()
    other = build_gan(config, seed=2)
    other.D.load_state_dict(state)
    for k, v in other.D.state_dict().items():
        np.testing.assert_array_equal(v, state[k], err_msg=k)
    assert not np.array_equal(state["0.u"], build_gan(config, seed=1).D.state_dict()["0.u"])
    assert gan.ema.updates == 3 and gan.sample(4).shape == (4, 2)


def test_a_built_d_with_scale_pack_and_spectral_norm_takes_the_penalty_exactly():
    """The penalty's parameter gradients through the D that build_gan makes (Scale for
    data_scale, Pack, spectral norm around every Dense) against central differences."""
    config = {**TINY, "activation": "tanh", "data_scale": 4.0, "pack": 2,
              "spectral_norm": True, "penalty": "gp"}
    gan = build_gan(config, seed=7)
    x = mb.to_device(np.random.default_rng(8).normal(0, 2, (6, 2)).astype(np.float32), "numpy")
    result = check_penalty(gan.D, x, weight=10.0, center=1.0)
    assert result.ok, str(result)
    r1 = check_penalty(gan.D, x, weight=0.5, center=0.0)
    assert r1.ok, str(r1)
