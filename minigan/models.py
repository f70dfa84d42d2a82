"""Model builders: multilayer perceptrons and a whole GAN from a plain config dict.

    G = mlp([2, 256, 256, 2], activation="leaky_relu", slope=0.2)
    gan = build_gan({"latent_dim": 2, "data_dim": 2, "g_hidden": [256, 256],
                     "d_hidden": [256, 256]}, seed=0)

The config is a JSON-able dict (numbers, strings, lists): it is what a
checkpoint stores to rebuild the architecture, and what ``minigan.presets``
holds per dataset. Keys ``build_gan`` reads (others, such as "steps" or
"batch_size", are left for the training command):

=================  ================  ==============================================
key                default           meaning
=================  ================  ==============================================
latent_dim         (required)        size of the noise z
data_dim           (required)        size of a sample
g_hidden           (required)        hidden widths of G, e.g. [256, 512, 1024]
d_hidden           (required)        hidden widths of D, e.g. [1024, 512, 256]
activation         "leaky_relu"      hidden activation of both nets ("relu", "tanh")
slope              0.2               negative slope of the leaky ReLUs
g_out              None              G's output activation: "tanh" or None (linear)
g_batchnorm        False             batch norm after G's hidden Dense layers
d_batchnorm        False             batch norm after D's hidden Dense layers
d_dropout          0.0               dropout after D's hidden activations
init               "glorot_uniform"  weight initialiser (a name in minigan.init)
dtype              "float32"         parameter dtype
lr_g, lr_d         2e-4              Adam learning rates
betas              [0.5, 0.999]      Adam betas (both optimisers)
g_loss             "non-saturating"  or "minimax" (or "lsgan" with loss="lsgan")
loss               "bce"             "bce" (on logits) or "lsgan" (least squares)
d_steps            1                 D updates per G update
label_smoothing    0.0               one-sided: real targets become 1 - this
pack               1                 PacGAN: D judges this many samples at once
n_classes          0                 conditional GAN: number of classes (0: off)
ema_decay          0.0               moving average of G's weights, used to sample
data_scale         1.0               G's output is multiplied by it and D's input
                                     divided by it (a fixed ``Scale`` layer), so both
                                     nets work on data of about unit size
lr_decay_start     1.0               fraction of the steps after which both
                                     learning rates decay linearly ...
lr_final           1.0               ... to this fraction of their value at the end
lr_warmup          0.0               fraction of the steps run at ...
lr_warmup_factor   1.0               ... at most this fraction of the learning rates
=================  ================  ==============================================

``lr_factor(step, steps, config)`` is the learning-rate schedule a training
loop applies (the command line does); ``build_gan`` itself knows no steps.
"""

from __future__ import annotations

import math
import numbers

from minigan.backend import get_backend, make_rng
from minigan.layers import (
    BatchNorm1d,
    Dense,
    Dropout,
    Layer,
    LeakyReLU,
    Pack,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
)

__all__ = ["mlp", "Scale", "build_gan", "build_loss", "build_generator", "build_discriminator",
           "CONFIG_DEFAULTS", "complete_config", "lr_factor"]

ACTIVATIONS = ("leaky_relu", "relu", "tanh", "sigmoid")
LOSSES = ("bce", "lsgan")
G_LOSSES = ("non-saturating", "minimax")
OUT_ACTIVATIONS = (None, "tanh", "sigmoid")

CONFIG_DEFAULTS = {
    "activation": "leaky_relu",
    "slope": 0.2,
    "g_out": None,
    "g_batchnorm": False,
    "d_batchnorm": False,
    "d_dropout": 0.0,
    "init": "glorot_uniform",
    "dtype": "float32",
    "lr_g": 2e-4,
    "lr_d": 2e-4,
    "betas": [0.5, 0.999],
    "g_loss": "non-saturating",
    "d_steps": 1,
    "label_smoothing": 0.0,
    "loss": "bce",
    "pack": 1,
    "n_classes": 0,
    "ema_decay": 0.0,
    "data_scale": 1.0,
    "lr_decay_start": 1.0,
    "lr_final": 1.0,
}
REQUIRED_KEYS = ("latent_dim", "data_dim", "g_hidden", "d_hidden")


def _activation(name, slope):
    if name == "leaky_relu":
        return LeakyReLU(slope)
    if name == "relu":
        return ReLU()
    if name == "tanh":
        return Tanh()
    if name == "sigmoid":
        return Sigmoid()
    raise ValueError(f"unknown activation {name!r}: expected one of {ACTIVATIONS}")


def mlp(sizes, activation="leaky_relu", slope=0.2, out_activation=None, batchnorm=False,
        dropout=0.0, init="glorot_uniform", dtype="float32", rng=None, backend=None):
    """A multilayer perceptron ``Sequential`` with layer widths ``sizes``.

    ``sizes = [in, h1, ..., hk, out]`` gives k+1 Dense layers; after each hidden
    Dense comes (optionally) BatchNorm1d, the activation, and (optionally)
    Dropout(dropout). The last Dense is followed by ``out_activation`` ("tanh",
    "sigmoid" or None for a linear output, e.g. D's logit).
    """
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(f"mlp needs at least an input and an output size, got sizes={sizes}")
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1:
            raise ValueError(f"mlp sizes must be positive ints, got {sizes}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}: expected one of {ACTIVATIONS}")
    if out_activation not in OUT_ACTIVATIONS:
        raise ValueError(f"unknown out_activation {out_activation!r}: expected one of "
                         f"{OUT_ACTIVATIONS}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    generator = make_rng(rng)
    backend = get_backend() if backend is None else backend
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Dense(int(fan_in), int(fan_out), init=init, dtype=dtype, rng=generator,
                            backend=backend))
        if i == len(sizes) - 2:
            break
        if batchnorm:
            layers.append(BatchNorm1d(int(fan_out), dtype=dtype, backend=backend))
        layers.append(_activation(activation, slope))
        if dropout:
            # The dropout masks get their own stream, derived from the weights' generator.
            layers.append(Dropout(dropout, rng=int(generator.integers(2**63))))
    if out_activation is not None:
        layers.append(_activation(out_activation, slope))
    return Sequential(*layers)


# key: (low, high, what is expected); None leaves a side open. A NaN or an out-of-
# range setting would otherwise train silently to garbage (or never change).
_NUMBER_RANGES = {
    "slope": (0.0, 1.0, "a finite number in [0, 1]"),
    "d_dropout": (0.0, 0.999999, "a number in [0, 1)"),
    "lr_g": (1e-300, None, "a finite number > 0"),
    "lr_d": (1e-300, None, "a finite number > 0"),
    "label_smoothing": (0.0, 0.999999, "a number in [0, 1)"),
    "ema_decay": (0.0, 0.999999999, "a number in [0, 1)"),
    "data_scale": (1e-300, None, "a finite number > 0"),
    "lr_decay_start": (0.0, 1.0, "a fraction in [0, 1]"),
    "lr_final": (0.0, 1.0, "a fraction in [0, 1]"),
}


def _config_number(config, key, low, high, expected):
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"GAN config {key!r} must be {expected}, got {type(value).__name__} "
                        f"{value!r}")
    value = float(value)
    if not (math.isfinite(value) and (low is None or value >= low)
            and (high is None or value <= high)):
        raise ValueError(f"GAN config {key!r} must be {expected}, got {value!r}")
    return value


def complete_config(config):
    """A copy of ``config`` with every default filled in; checks the required keys."""
    if not isinstance(config, dict):
        raise TypeError(f"a GAN config must be a dict, got {type(config).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in config]
    if missing:
        raise ValueError(f"GAN config is missing {missing} (required: {list(REQUIRED_KEYS)})")
    full = {**CONFIG_DEFAULTS, **config}
    full["g_hidden"] = [int(h) for h in full["g_hidden"]]
    full["d_hidden"] = [int(h) for h in full["d_hidden"]]
    full["betas"] = [float(b) for b in full["betas"]]
    full["n_classes"] = int(full["n_classes"] or 0)
    for key, (low, high, expected) in _NUMBER_RANGES.items():
        full[key] = _config_number(full, key, low, high, expected)
    if full["data_scale"] != 1.0 and full["n_classes"]:
        # D's Scale would shrink the one-hot label columns too
        raise ValueError("data_scale is for unconditional GANs (toy sets); use 1.0 with n_classes")
    return full


class Scale(Layer):
    """A fixed factor: ``out = factor * x``, ``dL/dx = factor * dout``; no parameters.

    Why: a toy set such as grid25 spans [-4, 4]^2 while the modes are 0.05 wide.
    D's first layer starts with zero biases, so its ReLU hinges all pass through
    the origin, and Adam moves a bias by about lr per step: reaching hinges at
    +-1 and +-3 takes thousands of steps. Dividing D's input by 4 (and
    multiplying G's output by 4) is the same as training on data in [-1, 1]^2,
    and the samples still come out in the data's units.
    """

    def __init__(self, factor):
        super().__init__()
        factor = float(factor)
        if not (math.isfinite(factor) and factor > 0):
            raise ValueError(f"Scale: factor must be a finite number > 0, got {factor}")
        self.factor = factor

    def forward(self, x):
        self._check_input(x)
        out = x * self.factor  # a Python float keeps float32 float32
        self._save_cache(None, out)
        return out

    def backward(self, dout, param_grads=True, input_grad=True):
        self._pop_cache(dout)
        return dout * self.factor if input_grad else None

    def short_repr(self):
        return f"Scale({self.factor:g})"


def build_generator(config, backend=None, rng=None):
    """G: latent_dim -> g_hidden... -> data_dim, output activation config["g_out"],
    then ``Scale(data_scale)`` when data_scale is not 1."""
    c = complete_config(config)
    G = mlp([c["latent_dim"] + c["n_classes"], *c["g_hidden"], c["data_dim"]], activation=c["activation"],
               slope=c["slope"], out_activation=c["g_out"], batchnorm=c["g_batchnorm"],
               init=c["init"], dtype=c["dtype"], rng=rng, backend=backend)
    if c["data_scale"] != 1.0:
        G = Sequential(*G.layers, Scale(c["data_scale"]))
    return G


def build_discriminator(config, backend=None, rng=None):
    """D: [Scale(1 / data_scale)] -> [Pack(pack)] -> pack * (data_dim + n_classes)
    -> d_hidden... -> 1 logit (no sigmoid: losses work on logits)."""
    c = complete_config(config)
    D = mlp([c["pack"] * (c["data_dim"] + c["n_classes"]), *c["d_hidden"], 1], activation=c["activation"],
               slope=c["slope"], out_activation=None, batchnorm=c["d_batchnorm"],
               dropout=c["d_dropout"], init=c["init"], dtype=c["dtype"], rng=rng,
               backend=backend)
    front = []
    if c["data_scale"] != 1.0:
        front.append(Scale(1.0 / c["data_scale"]))
    if c["pack"] != 1:
        front.append(Pack(c["pack"]))  # PacGAN: D judges `pack` samples side by side
    return Sequential(*front, *D.layers) if front else D


def build_loss(config):
    """The loss object a config names: ``loss`` "lsgan" gives ``LeastSquares()``;
    with the default "bce", ``g_loss`` picks ``NonSaturating`` or ``Minimax``
    (both with the config's one-sided ``label_smoothing``)."""
    from minigan.gan_losses import LeastSquares, Minimax, NonSaturating

    c = complete_config(config)
    if c["loss"] not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {c['loss']!r}")
    if c["loss"] == "lsgan":
        if c["g_loss"] not in ("non-saturating", "lsgan") or c["label_smoothing"]:
            raise ValueError(f"loss 'lsgan' sets both players' losses to least squares; it "
                             f"cannot be combined with g_loss={c['g_loss']!r} or label_smoothing")
        return LeastSquares()
    if c["g_loss"] not in G_LOSSES:
        raise ValueError(f"g_loss must be one of {G_LOSSES} with loss 'bce', got {c['g_loss']!r}")
    kind = Minimax if c["g_loss"] == "minimax" else NonSaturating
    return kind(label_smoothing=c["label_smoothing"])


def build_gan(config, backend=None, seed=None):
    """A ``GAN`` (a ``ConditionalGAN`` when n_classes > 0) with G, D and two Adam
    optimisers built from a config dict, its loss and, with ema_decay > 0, an ``EMA``.

    ``seed`` (an int, None for minigan's default generator) seeds G's weights,
    D's weights and the noise generator with three independent streams, so the
    same seed gives the same run.
    """
    import numpy as np

    from minigan.gan import EMA, GAN, ConditionalGAN
    from minigan.optim import Adam

    c = complete_config(config)
    backend = get_backend() if backend is None else backend
    if seed is None:
        base = make_rng(None)
        g_rng, d_rng, noise_rng = (int(base.integers(2**63)) for _ in range(3))
    else:
        g_rng, d_rng, noise_rng = ((int(seed), k) for k in range(3))
    G = build_generator(c, backend=backend, rng=np.random.default_rng(g_rng))
    D = build_discriminator(c, backend=backend, rng=np.random.default_rng(d_rng))
    betas = tuple(c["betas"])
    g_opt = Adam(G.parameters(), lr=c["lr_g"], betas=betas)
    d_opt = Adam(D.parameters(), lr=c["lr_d"], betas=betas)
    options = {"loss": build_loss(c), "d_steps": int(c["d_steps"]),
               "rng": np.random.default_rng(noise_rng),
               "ema": EMA(G, c["ema_decay"]) if c["ema_decay"] else None}
    if c["n_classes"]:
        return ConditionalGAN(G, D, c["latent_dim"], c["n_classes"], g_opt, d_opt, **options)
    return GAN(G, D, c["latent_dim"], g_opt, d_opt, **options)


def lr_factor(step, steps, config):
    """The factor on the learning rates at 0-based ``step`` of a run of ``steps`` steps.

    1 until ``lr_decay_start * steps``, then linear down to ``lr_final`` at the
    last step (reached at step ``steps - 1``). With the defaults (1.0, 1.0): always 1.
    During the first ``lr_warmup * steps`` steps the factor is at most
    ``lr_warmup_factor`` (defaults 0.0 and 1.0: no such phase). Why: on grid25 a
    generator that sharpens before its modes are balanced keeps the imbalance
    (only samples between modes can move to another mode); a gentler start lets
    D even out the masses first.
    """
    start_frac = float(config.get("lr_decay_start", 1.0))
    final = float(config.get("lr_final", 1.0))
    start = int(round(start_frac * steps))
    if step < start or steps - 1 <= start:
        factor = 1.0
    else:
        progress = min((step - start) / (steps - 1 - start), 1.0)
        factor = 1.0 - (1.0 - final) * progress
    if step < float(config.get("lr_warmup", 0.0)) * steps:
        factor = min(factor, float(config.get("lr_warmup_factor", 1.0)))
    return factor
