"""Default settings per dataset: what ``python -m minigan train --dataset NAME`` uses.

``PRESETS[name]`` is a plain JSON-able dict: the architecture and optimiser
keys that ``minigan.models.build_gan`` reads (see its table), plus the keys of
the training loop:

=============  ====================================================================
steps          generator updates (each after ``d_steps`` discriminator updates)
batch_size     real samples per discriminator update
frames         snapshots collected for training.gif (1-D and 2-D data; 0: none)
=============  ====================================================================

Command-line options (``--steps``, ``--batch-size``, ``--lr``, ...) override
these; the final dict is stored in the run's checkpoint. ``preset(name)``
returns a fresh copy to modify; ``preset(name, arch="dcgan", conditional=True)``
the settings that ``--arch dcgan --conditional`` start from.

The toy presets are tuned so that a newcomer's first run works: ring8 (8
modes, std 0.01) finishes in well under a minute on two CPU cores with 8/8
modes and >= 90% high-quality samples. A precise generator needs a large
batch, a learning rate that decays to almost nothing over the second half of
the run, and sampling from a moving average of G's weights (``ema_decay``).
MNIST uses the classic fully connected GAN (Goodfellow et al. 2014 with the
DCGAN optimiser settings of Radford et al. 2016).

Methods. ``METHODS[name]`` holds the settings a method of taming D brings with
it, laid over the dataset's preset: "wgan-gp" (Wasserstein loss and gradient
penalty; Arjovsky et al. 2017, Gulrajani et al. 2017), "hinge" (hinge loss and
spectral norm; Lim & Ye 2017, Miyato et al. 2018) and "r1" (R1 penalty;
Mescheder et al. 2018). ``METHOD_OVERRIDES[(dataset, name)]`` changes some of
them for one dataset: the place for tuned numbers, one line per dataset and
method. ``method_settings(name, dataset)`` gives the merged dict. The command
line builds a run's settings in this order, each step overriding the last:

    PRESETS[dataset] -> CONDITIONAL (--conditional, images) -> DCGAN (--arch dcgan)
    -> CONDITIONAL_DCGAN (both) -> method_settings (the method that --loss /
    --penalty select, see ``method_for``) -> the flags

(``preset`` gives the first four merged) so an explicit flag always wins (``--loss
hinge --no-spectral-norm`` is the hinge loss alone). A penalty's weight, unless ``--penalty-weight`` gives it, is
``penalty_weight(penalty, dataset)``: the weight of the method that the penalty
belongs to ("gp": wgan-gp's, "r1": r1's), for that dataset.
"""

from __future__ import annotations

import copy

__all__ = ["PRESETS", "DCGAN", "CONDITIONAL", "CONDITIONAL_DCGAN", "DATASETS", "TOY_DATASETS",
           "IMAGE_DATASETS", "preset", "METHODS", "METHOD_OVERRIDES", "METHOD_LOSSES",
           "method_for", "method_settings", "penalty_weight"]

_TOY_COMMON = {
    "activation": "leaky_relu",
    "slope": 0.2,
    "g_out": None,
    "init": "glorot_uniform",
    "dtype": "float32",
    "betas": [0.5, 0.999],
    "g_loss": "non-saturating",
    "d_steps": 1,
    "label_smoothing": 0.0,
}

# The recipe that makes ring8 work (8/8 modes, ~92% high-quality samples in
# about half a minute on a laptop CPU), found by measuring over seeds:
# * small nets, many steps: G 2-128-128-128-2 and D 128-128 beat 256-wide
#   nets given the same time;
# * pack=2 (PacGAN, Lin et al. 2018): D judges pairs of samples. Without it
#   some seeds collapse onto one point for good (G starts as a tiny blob and
#   never spreads); with it, no seed did;
# * lr 1e-3 for 30% of the steps, then linear decay to 1% of it: the small
#   late steps tighten each mode to its std of 0.01;
# * sampling from G's moving average (ema_decay 0.999) balances the modes.
_RING = {
    **_TOY_COMMON,
    "latent_dim": 2,
    "data_dim": 2,
    "g_hidden": [128, 128, 128],
    "d_hidden": [128, 128],
    "pack": 2,
    "lr_g": 1e-3,
    "lr_d": 1e-3,
    "lr_decay_start": 0.3,
    "lr_final": 0.01,
    "ema_decay": 0.999,
    "steps": 10000,
    "batch_size": 256,
    "frames": 40,
}

# ring8 and grid25 are the mode-collapse benchmarks of VEEGAN and PacGAN; these
# two presets are tuned (benchmarks/quality.py, 10 seeds, results and what
# mattered in benchmarks/RESULTS.md) to capture every mode with >= 98% (ring8)
# and >= 97% (grid25) high-quality samples, in about a minute on one core:
# * ReLU instead of LeakyReLU(0.2): sharper transitions between modes, so fewer
#   samples on the "bridges" between them (ring8 at 6000 steps: 92% HQ vs 80%);
# * narrow nets (64 wide), many steps: a 64-wide step costs a third of a
#   128-wide one and G's transitions sharpen with the number of updates;
# * pack=2, EMA of G's weights, learning rate decaying to a tiny fraction;
# * grid25 spans [-4, 4]^2: data_scale 4 lets G and D work on [-1, 1]^2
#   (D's first ReLU hinges start through the origin and move ~lr per step);
#   an 8-D latent, batch 512 and half the learning rate for the first 30% of
#   the steps keep the 25 modes balanced (reverse KL): once G is sharp, only
#   the few samples between modes can move, so an early imbalance stays.
_BENCHMARK = {
    **_TOY_COMMON,
    "activation": "relu",
    "data_dim": 2,
    "g_hidden": [64, 64, 64],
    "d_hidden": [64, 64],
    "pack": 2,
    "ema_decay": 0.999,
    "frames": 40,
}

PRESETS = {
    "ring8": {
        **_BENCHMARK,
        "dataset": "ring8",
        "latent_dim": 2,
        "lr_g": 1e-3,
        "lr_d": 1e-3,
        "lr_decay_start": 0.0,
        "lr_final": 0.02,
        "steps": 30000,
        "batch_size": 256,
    },
    "grid25": {
        **_BENCHMARK,
        "dataset": "grid25",
        "latent_dim": 8,
        "data_scale": 4.0,
        "lr_g": 2e-3,
        "lr_d": 2e-3,
        "lr_warmup": 0.3,
        "lr_warmup_factor": 0.5,
        "lr_decay_start": 0.5,
        "lr_final": 0.002,
        "steps": 30000,
        "batch_size": 512,
    },
    "spiral": {**_RING, "dataset": "spiral", "steps": 6000},
    "moons": {**_RING, "dataset": "moons", "steps": 6000},
    "gaussian1d": {
        **_TOY_COMMON,
        "dataset": "gaussian1d",
        "latent_dim": 1,
        "data_dim": 1,
        "g_hidden": [32, 32],
        "d_hidden": [32, 32],
        "pack": 2,  # without it G's density comes out about half as wide as the data's
        "lr_g": 1e-3,
        "lr_d": 1e-3,
        "lr_decay_start": 0.5,
        "lr_final": 0.05,
        "ema_decay": 0.0,
        "steps": 1500,
        "batch_size": 128,
        "frames": 40,
    },
    # The classic fully connected MNIST GAN: G 100-256-512-1024-784 with a tanh
    # output (images in [-1, 1]), D 784-1024-512-256-1 on logits, LeakyReLU 0.2,
    # BCE on logits, Adam 2e-4 with betas (0.5, 0.999), batch 64. Plus what made
    # its ten digits equally frequent (benchmarks/RESULTS.md, "MNIST"): D judges
    # pairs (pack 2), 24,000 steps, the learning rate decaying linearly to 0.1 of
    # itself over the second half. Without packing the "easy" digits win (1s and
    # 7s three times as frequent as 0s: KL 0.15 from uniform even at 24,000 steps).
    "mnist": {
        "dataset": "mnist",
        "latent_dim": 100,
        "data_dim": 784,
        "g_hidden": [256, 512, 1024],
        "d_hidden": [1024, 512, 256],
        "activation": "leaky_relu",
        "slope": 0.2,
        "g_out": "tanh",
        "init": "glorot_uniform",
        "dtype": "float32",
        "lr_g": 2e-4,
        "lr_d": 2e-4,
        "betas": [0.5, 0.999],
        "g_loss": "non-saturating",
        "d_steps": 1,
        "label_smoothing": 0.0,
        "ema_decay": 0.999,
        "pack": 2,
        "lr_decay_start": 0.5,
        "lr_final": 0.1,
        # 24,000 steps = 25.6 epochs: about 20 minutes on two idle CPU cores, 4 on a GPU.
        "steps": 24000,
        "batch_size": 64,
        "frames": 0,
    },
}
PRESETS["fashion-mnist"] = {**copy.deepcopy(PRESETS["mnist"]), "dataset": "fashion-mnist"}

# The DCGAN (Radford et al. 2016) at MNIST size, laid over an image preset by
# --arch dcgan (after --conditional's settings, so its schedule and packing hold for
# the conditional DCGAN too, except what CONDITIONAL_DCGAN below sets; the method's
# settings and the flags come after it):
# G  z -> Dense 128 -> Dense 128x7x7 -> ConvT 64x14x14 -> ConvT 1x28x28 -> tanh,
# batch norm and ReLU; D  1x28x28 -> Conv 64x14x14 -> Conv 128x7x7 -> logit,
# LeakyReLU(0.2); 4x4 kernels with stride 2, N(0, 0.02) weights. The paper's G has no
# hidden Dense layer, and it trains with Adam betas (0.5, 0.999) at batch 64. What
# measuring changed (benchmarks/RESULTS.md, "The default DCGAN run"), each on the same
# seed:
# * the paper's settings as they are (batch norm in D, no packing, lr 2e-4, 6,000
#   steps) gave all ten digits but unevenly: KL 0.12 from uniform (0s and 9s three
#   times as frequent as 4s);
# * pack 2 (D judges two images stacked as channels, PacGAN): KL 0.04-0.05;
# * no batch norm in D as well (D's real and fake batches were normalised apart,
#   which the samples' statistics could hide behind): KL 0.013;
# * lr 4e-4 and 12,000 steps (12.8 epochs), decaying to 0.1 of it over the
#   second half, sampling from the moving average of G: KL 0.017-0.030 on 3 seeds;
# * lazy R1 (gamma 1 on D's real images, applied every 16th D step with 16 times
#   the weight, Karras et al. 2020; 5% more time per step): KL 0.007-0.010, Inception
#   score 7.5-7.6 on 3 seeds. Gamma 10 gave KL 0.008 and a score of 7.45 on seed 0;
# * Adam without momentum, betas (0, 0.99), as R1's authors and StyleGAN2 train: KL
#   0.007-0.009, Inception score 7.61-7.80 on the same 3 seeds, higher on each. A
#   decay to 0.01 of the rate from 30% of the run gave 7.51, G twice as wide (256-128)
#   costs 2.2 times the products per step, over the 20-minute budget;
# * a hidden Dense layer in G (InfoGAN's MNIST G has one): without it the map from z
#   to the first feature maps is linear, and the samples between two digits in z's
#   space are strokes that are neither. One of 256 raised the score to 8.25-8.39, but
#   KL to 0.009-0.016 (batch 64, 12,000 steps). One of 128 with twice the batch,
#   128, for 7,000 steps (15 epochs, 1.1 times the time of 12,000 steps of 64): KL
#   0.003-0.009 and scores 8.31 / 8.46 / 8.29 on 3 seeds, against the MLP GAN's 8.31 /
#   8.33 / 8.25 (issue 8): above it on two seeds, level on one; above on each against
#   the MLP GAN rerun on 2026-12-07's code (8.30 / 8.27 / 8.26) and, by 0.3-0.7, by a
#   second classifier (benchmarks/independent_score.py).
#   A weaker R1 with it (gamma 0.3 or 0.1) let the digits drift out of balance again:
#   KL 0.014-0.015 and a score of 8.24 on seed 0;
# * cheaper runs, to fit 20 minutes on a slow 2-core machine (where 7,000 steps take
#   23.5 minutes): 5,600 steps, or D's channels 48-96, each drew uneven digits on a
#   seed (KL 0.014, 0.016; RESULTS.md, "A shorter run, a narrower D").
DCGAN = {"arch": "dcgan", "image_shape": [1, 28, 28], "g_dense": [128], "g_channels": [128, 64],
         "d_channels": [64, 128], "g_batchnorm": True, "d_batchnorm": False, "init": "normal",
         "pack": 2, "lr_g": 4e-4, "lr_d": 4e-4, "batch_size": 128, "steps": 7000,
         "lr_decay_start": 0.5, "lr_final": 0.1, "ema_decay": 0.999,
         "penalty": "r1", "penalty_weight": 1.0, "penalty_every": 16, "betas": [0.0, 0.99]}

# A conditional GAN (--conditional) is told which digit to draw, so its classes
# are balanced by construction and it needs no packing: the plain classic
# settings (12,000 steps, constant learning rate) give 10/10 classes, KL 0.000
# from uniform and 97% of the asked class (seeds 0 and 1, benchmarks/RESULTS.md).
# --arch dcgan is laid over these, so the conditional DCGAN has the DCGAN's learning
# rates and decay (with its own D, batch, length and packing: CONDITIONAL_DCGAN).
CONDITIONAL = {"pack": 1, "steps": 12000, "lr_decay_start": 1.0, "lr_final": 1.0}

# The conditional DCGAN (--arch dcgan --conditional), as measured best for its
# classification accuracy score (benchmarks/RESULTS.md, seed 0): the projection
# discriminator (CAS 95.58% against 95.25% with label planes, pairs packed), one sample
# per D output (95.85%: each label has its own output), 16,000 steps (96.23%, against
# 98.36% for real digits; about 1.9 times the time of 12,000 steps with pairs); a batch
# of 64 (128 for half the steps: 94.70%) and no hidden Dense layer in G (one of 128
# raised the Inception score and lowered CAS to 94.58%: fewer ways of drawing each digit).
CONDITIONAL_DCGAN = {"g_dense": [], "batch_size": 64, "steps": 16000, "pack": 1,
                     "projection": True}

TOY_DATASETS = ("ring8", "grid25", "gaussian1d", "spiral", "moons")
IMAGE_DATASETS = ("mnist", "fashion-mnist")
DATASETS = TOY_DATASETS + IMAGE_DATASETS


# ----------------------------------------------------------------------- methods
#
# METHODS holds values from the papers (or their reference code). The ring8 and
# grid25 lines of METHOD_OVERRIDES are tuned on minigan's presets without packing
# (benchmarks/RESULTS.md, "Taming instability": R1 meets the goal on 10 of 10
# seeds); the other datasets' lines are still the papers' values, untuned.
METHODS = {
    # WGAN-GP, Algorithm 1 of Gulrajani et al. 2017: lambda 10, n_critic 5, Adam
    # lr 1e-4 with betas (0, 0.9); their toy code uses betas (0.5, 0.9).
    "wgan-gp": {"loss": "wasserstein", "penalty": "gp", "penalty_weight": 10.0, "d_steps": 5,
                "lr_g": 1e-4, "lr_d": 1e-4, "betas": [0.5, 0.9]},
    # Hinge loss with spectral norm in D, Miyato et al. 2018's standard setting:
    # lr 2e-4, betas (0.5, 0.999), one D update per G update.
    "hinge": {"loss": "hinge", "spectral_norm": True, "d_steps": 1,
              "lr_g": 2e-4, "lr_d": 2e-4, "betas": [0.5, 0.999]},
    # R1 of Mescheder et al. 2018, with the loss the preset has (non-saturating):
    # gamma 10 for their images.
    "r1": {"penalty": "r1", "penalty_weight": 10.0},
}

#: (dataset, method) -> the settings of that method that differ for that dataset.
#: Tuned numbers go here, one line each (see above for which are tuned).
METHOD_OVERRIDES = {
    # Data of about unit size want smaller penalties: WGAN-GP's reference code for
    # its toy sets uses lambda 0.1 ("smaller lambda seems to help for toy tasks").
    # ring8 and grid25 (benchmarks/RESULTS.md): neither the toy code's lambda 0.1
    # nor 1 kept the modes sharp; lambda 10 with 2 critic steps per G step, the
    # preset's learning rate and a decay over the second half did best of what
    # was tried, and still fails some seeds.
    ("ring8", "wgan-gp"): {"penalty_weight": 10.0, "pack": 1, "d_steps": 2, "lr_g": 1e-3,
                           "lr_d": 1e-3, "lr_decay_start": 0.5, "steps": 10000},
    ("grid25", "wgan-gp"): {"penalty_weight": 10.0, "pack": 1, "d_steps": 2, "lr_g": 2e-3,
                            "lr_d": 2e-3, "lr_decay_start": 0.5, "lr_warmup": 0.0,
                            "steps": 15000},
    # Tuned (benchmarks/RESULTS.md, "Taming instability"): R1 with gamma 1 on D's
    # unit-size input replaces packing. ring8: 8/8 modes on every seed in 10,000
    # steps. grid25: 25/25 modes with >= 93% high quality on 10 of 10 seeds, with
    # Adam's beta1 at 0 (no momentum: D's gradient field changes fast around a
    # mode) and no gentle warm phase (the penalty keeps the start balanced).
    ("ring8", "r1"): {"penalty_weight": 1.0, "pack": 1, "steps": 10000, "betas": [0.0, 0.99]},
    ("grid25", "r1"): {"penalty_weight": 1.0, "pack": 1, "steps": 15000, "lr_warmup": 0.0,
                       "betas": [0.0, 0.99]},
    ("gaussian1d", "wgan-gp"): {"penalty_weight": 0.1},
    ("gaussian1d", "r1"): {"penalty_weight": 0.1},
    ("spiral", "wgan-gp"): {"penalty_weight": 0.1},
    ("spiral", "r1"): {"penalty_weight": 0.1},
    ("moons", "wgan-gp"): {"penalty_weight": 0.1},
    ("moons", "r1"): {"penalty_weight": 0.1},
    # hinge + spectral norm: Adam without momentum and 2 D steps per G step turned
    # failing runs (0-1 of 8 ring8 modes) into working ones on most seeds.
    ("ring8", "hinge"): {"pack": 1, "betas": [0.0, 0.9], "d_steps": 2, "lr_g": 1e-3,
                         "lr_d": 1e-3, "lr_decay_start": 0.5, "steps": 10000},
    ("grid25", "hinge"): {"pack": 1, "betas": [0.0, 0.9], "d_steps": 2, "lr_g": 2e-3,
                          "lr_d": 2e-3, "lr_decay_start": 0.5, "lr_warmup": 0.0,
                          "steps": 15000},
    ("mnist", "wgan-gp"): {},
    ("mnist", "hinge"): {},
    ("mnist", "r1"): {},
}

#: the command line's --loss choices -> the config's loss (wgan-gp is a method:
#: the Wasserstein loss with the gradient penalty)
METHOD_LOSSES = {"bce": "bce", "lsgan": "lsgan", "wgan-gp": "wasserstein",
                 "wasserstein": "wasserstein", "hinge": "hinge"}

#: the method whose settings a penalty's weight comes from
_PENALTY_METHODS = {"gp": "wgan-gp", "r1": "r1"}


def method_for(loss=None, penalty=None):
    """The METHODS entry that a --loss / --penalty choice selects, or None.

    --loss wgan-gp (or wasserstein with --penalty gp) selects "wgan-gp", --loss
    hinge "hinge", --penalty r1 with the cross-entropy loss (or no --loss) "r1".
    Anything else (bce, lsgan, wasserstein alone, a gp on bce) selects none: the
    preset's settings stay, with only what the flags say changed.
    """
    if loss == "wgan-gp" or (loss == "wasserstein" and penalty == "gp"):
        return "wgan-gp"
    if loss == "hinge":
        return "hinge"
    if penalty == "r1" and loss in (None, "bce"):
        return "r1"
    return None


def method_settings(method, dataset):
    """METHODS[method] with METHOD_OVERRIDES[(dataset, method)] applied (a fresh copy)."""
    if method not in METHODS:
        raise ValueError(f"no method {method!r}: expected one of {', '.join(METHODS)}")
    return copy.deepcopy({**METHODS[method], **METHOD_OVERRIDES.get((dataset, method), {})})


def penalty_weight(penalty, dataset):
    """The weight of ``penalty`` ("gp" or "r1") for ``dataset`` when no flag gives it:
    that of the method it belongs to, with the dataset's override."""
    if penalty not in _PENALTY_METHODS:
        raise ValueError(f"no weight for penalty {penalty!r}: expected one of "
                         f"{', '.join(_PENALTY_METHODS)}")
    return float(method_settings(_PENALTY_METHODS[penalty], dataset)["penalty_weight"])


def preset(name, *, arch="mlp", conditional=False):
    """The settings ``python -m minigan train --dataset NAME`` starts from, a fresh
    (deep) copy: ``PRESETS[name]``, then ``CONDITIONAL`` (``conditional``), ``DCGAN``
    (``arch="dcgan"``) and ``CONDITIONAL_DCGAN`` (both) laid over it in that order,
    before a method's settings and the flags. An unknown name lists the known ones."""
    if name not in PRESETS:
        raise ValueError(f"no preset for dataset {name!r}: expected one of "
                         f"{', '.join(PRESETS)}")
    if arch not in ("mlp", "dcgan"):
        raise ValueError(f"no architecture {arch!r}: expected 'mlp' or 'dcgan'")
    images = ", ".join(IMAGE_DATASETS)
    if arch == "dcgan" and name not in IMAGE_DATASETS:
        raise ValueError(f"the DCGAN is for images ({images}); {name!r} has 1-D/2-D points")
    if conditional and name not in IMAGE_DATASETS:
        raise ValueError(f"a conditional GAN needs labelled images ({images}); {name!r} has "
                         f"unlabelled 1-D/2-D points")
    config = copy.deepcopy(PRESETS[name])
    for overlay, applies in ((CONDITIONAL, conditional), (DCGAN, arch == "dcgan"),
                             (CONDITIONAL_DCGAN, conditional and arch == "dcgan")):
        if applies:
            config.update(copy.deepcopy(overlay))
    return config
