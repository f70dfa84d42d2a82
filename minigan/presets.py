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
returns a fresh copy to modify.

The toy presets are tuned so that a newcomer's first run works: ring8 (8
modes, std 0.01) finishes in well under a minute on two CPU cores with 8/8
modes and >= 90% high-quality samples. A precise generator needs a large
batch, a learning rate that decays to almost nothing over the second half of
the run, and sampling from a moving average of G's weights (``ema_decay``).
MNIST uses the classic fully connected GAN (Goodfellow et al. 2014 with the
DCGAN optimiser settings of Radford et al. 2016).
"""

from __future__ import annotations

import copy

__all__ = ["PRESETS", "DATASETS", "TOY_DATASETS", "IMAGE_DATASETS", "preset"]

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

PRESETS = {
    "ring8": {
        **_TOY_COMMON,
        "dataset": "ring8",
        "latent_dim": 2,
        "data_dim": 2,
        "g_hidden": [256, 256, 256],
        "d_hidden": [256, 256, 256],
        "lr_g": 1e-3,
        "lr_d": 1e-3,
        "lr_decay_start": 0.3,
        "lr_final": 0.01,
        "ema_decay": 0.99,
        "steps": 2000,
        "batch_size": 256,
        "frames": 40,
    },
    "grid25": {
        **_TOY_COMMON,
        "dataset": "grid25",
        "latent_dim": 2,
        "data_dim": 2,
        "g_hidden": [256, 256, 256],
        "d_hidden": [256, 256, 256],
        "lr_g": 1e-3,
        "lr_d": 1e-3,
        "lr_decay_start": 0.3,
        "lr_final": 0.01,
        "ema_decay": 0.99,
        "steps": 2000,
        "batch_size": 256,
        "frames": 40,
    },
    "gaussian1d": {
        **_TOY_COMMON,
        "dataset": "gaussian1d",
        "latent_dim": 1,
        "data_dim": 1,
        "g_hidden": [32, 32],
        "d_hidden": [32, 32],
        "lr_g": 1e-3,
        "lr_d": 1e-3,
        "lr_decay_start": 0.5,
        "lr_final": 0.05,
        "ema_decay": 0.0,
        "steps": 1500,
        "batch_size": 128,
        "frames": 40,
    },
    "spiral": {
        **_TOY_COMMON,
        "dataset": "spiral",
        "latent_dim": 2,
        "data_dim": 2,
        "g_hidden": [128, 128, 128],
        "d_hidden": [128, 128, 128],
        "lr_g": 1e-3,
        "lr_d": 1e-3,
        "lr_decay_start": 0.5,
        "lr_final": 0.05,
        "ema_decay": 0.99,
        "steps": 2000,
        "batch_size": 256,
        "frames": 40,
    },
    "moons": {
        **_TOY_COMMON,
        "dataset": "moons",
        "latent_dim": 2,
        "data_dim": 2,
        "g_hidden": [128, 128, 128],
        "d_hidden": [128, 128, 128],
        "lr_g": 1e-3,
        "lr_d": 1e-3,
        "lr_decay_start": 0.5,
        "lr_final": 0.05,
        "ema_decay": 0.99,
        "steps": 2000,
        "batch_size": 256,
        "frames": 40,
    },
    # The classic fully connected MNIST GAN: G 100-256-512-1024-784 with a tanh
    # output (images in [-1, 1]), D 784-1024-512-256-1 on logits, LeakyReLU 0.2,
    # BCE on logits, Adam 2e-4 with betas (0.5, 0.999), batch 64.
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
        "lr_decay_start": 1.0,
        "lr_final": 1.0,
        "steps": 20000,
        "batch_size": 64,
        "frames": 0,
    },
}
PRESETS["fashion-mnist"] = {**copy.deepcopy(PRESETS["mnist"]), "dataset": "fashion-mnist"}

TOY_DATASETS = ("ring8", "grid25", "gaussian1d", "spiral", "moons")
IMAGE_DATASETS = ("mnist", "fashion-mnist")
DATASETS = TOY_DATASETS + IMAGE_DATASETS


def preset(name):
    """A fresh (deep) copy of ``PRESETS[name]``; an unknown name lists the known ones."""
    try:
        return copy.deepcopy(PRESETS[name])
    except KeyError:
        raise ValueError(f"no preset for dataset {name!r}: expected one of "
                         f"{', '.join(PRESETS)}") from None
