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
arch               "mlp"             "mlp" (Dense layers) or "dcgan" (convolutions,
                                     ``build_dcgan_generator``/``_discriminator``)
latent_dim         (required)        size of the noise z
data_dim           (required, mlp)   size of a sample (dcgan: C H W, filled in)
g_hidden           (required, mlp)   hidden widths of G, e.g. [256, 512, 1024]
d_hidden           (required, mlp)   hidden widths of D, e.g. [1024, 512, 256]
image_shape        (required, dcgan) [C, H, W] of an image, e.g. [1, 28, 28]
g_channels         (required, dcgan) G's channels, widest first, one per doubling
                                     of the image, e.g. [128, 64] (7 -> 14 -> 28)
d_channels         (required, dcgan) D's channels, one per halving, e.g. [64, 128]
g_dense            [] (dcgan)        widths of hidden Dense layers in G before its
                                     projection to the first channels, e.g. [256]
projection         False (dcgan)     conditional D: the label as an inner product with
                                     D's features (``ProjectionDiscriminator``, Miyato
                                     and Koyama 2018) instead of input planes
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
g_loss             "non-saturating"  or "minimax"; with any loss but "bce" only the
                                     loss's own name (or this default) fits
loss               "bce"             "bce" (cross-entropy on logits), "lsgan" (least
                                     squares), "wasserstein" (the WGAN critic) or
                                     "hinge" (geometric GAN / SAGAN)
penalty            "none"            gradient penalty in D's step: "gp" (WGAN-GP, at
                                     interpolates) or "r1" (at the real batch)
penalty_weight     None              GradientPenalty's weight (lambda) or R1's gamma;
                                     None: the usual value, 10 for both (see
                                     ``PENALTY_WEIGHTS``); only with a penalty
penalty_every      1                 lazy R1 (StyleGAN2): the penalty on every k-th D
                                     step only, k times as strong; r1 only
spectral_norm      False             wrap every Dense and Conv2d of D in ``SpectralNorm``
d_steps            1                 D updates per G update
label_smoothing    0.0               one-sided: real targets become 1 - this (bce only)
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

The methods that tame D (the command line's ``--loss wgan-gp``, ``--loss hinge``,
``--penalty r1``) are combinations of these keys:

* WGAN-GP (Gulrajani et al. 2017): loss "wasserstein", penalty "gp"
  (``build_regularizer`` gives ``GradientPenalty(weight)``, whose epsilons come
  from a generator of their own, seeded like the noise);
* hinge + spectral norm (Lim & Ye 2017; Miyato et al. 2018): loss "hinge",
  spectral_norm true. ``SpectralNorm`` names the wrapped Dense's parameters as
  the Dense did ("0.W", "0.b") and adds the buffers "0.u" and "0.v", which state
  dicts and checkpoints carry; its u and v start from a stream drawn after D's
  weights, so the weights are the same with and without it;
* R1 (Mescheder et al. 2018): penalty "r1", with any loss.

A penalty needs a D that treats each sample on its own: with d_batchnorm or
d_dropout it is refused when the GAN is built (``check_config`` says so without
building the GAN), with the reason ``minigan.penalty`` gives.
"""

from __future__ import annotations

import json
import math
import numbers

import numpy as np

from minigan import functional as F
from minigan.backend import array_module, get_backend, make_rng, to_device
from minigan.init import get_initialiser
from minigan.layers import (
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    ConvTranspose2d,
    Dense,
    Dropout,
    Flatten,
    Layer,
    LeakyReLU,
    Pack,
    ReLU,
    Reshape,
    Sequential,
    Sigmoid,
    Tanh,
)

__all__ = ["mlp", "Scale", "LabelPlanes", "ProjectionDiscriminator", "build_dcgan_generator",
           "build_dcgan_discriminator", "dcgan_config", "build_gan", "build_loss", "build_regularizer", "build_generator",
           "build_discriminator", "CONFIG_DEFAULTS", "PENALTY_WEIGHTS", "complete_config",
           "check_config", "lr_factor"]

ACTIVATIONS = ("leaky_relu", "relu", "tanh", "sigmoid")
LOSSES = ("bce", "lsgan", "wasserstein", "hinge")
G_LOSSES = ("non-saturating", "minimax")
PENALTIES = ("none", "gp", "r1")
OUT_ACTIVATIONS = (None, "tanh", "sigmoid")

#: penalty_weight when the config leaves it None: WGAN-GP's lambda = 10 (Gulrajani
#: et al. 2017, used for every data set there) and R1's gamma = 10 (Mescheder et al.
#: 2018, their image experiments). Data of about unit size, such as the toy sets,
#: usually want smaller weights: ``minigan.presets.METHOD_OVERRIDES`` gives theirs.
PENALTY_WEIGHTS = {"gp": 10.0, "r1": 10.0}

ARCHS = ("mlp", "dcgan")

CONFIG_DEFAULTS = {
    "arch": "mlp",
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
    "penalty": "none",
    "penalty_weight": None,
    "penalty_every": 1,
    "spectral_norm": False,
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
    arch = config.get("arch", "mlp")
    if arch not in ARCHS:
        raise ValueError(f"GAN config 'arch' must be one of {', '.join(map(repr, ARCHS))}, "
                         f"got {arch!r}")
    required = REQUIRED_KEYS if arch == "mlp" else DCGAN_REQUIRED_KEYS
    missing = [k for k in required if k not in config]
    if missing:
        raise ValueError(f"GAN config is missing {missing} (required with arch {arch!r}: "
                         f"{list(required)})")
    full = {**CONFIG_DEFAULTS, **config}
    if arch == "dcgan":
        full = dcgan_config(full)   # checks image_shape and the channels, pack, d_dropout
        C, H, W = full["image_shape"]
        full["data_dim"] = C * H * W   # a sample is a flat image, as for the MLP
    else:
        if full.get("projection"):
            raise ValueError("GAN config: projection (the label's inner product with D's "
                             "features) is built for the DCGAN's D: set arch 'dcgan'")
        full["g_hidden"] = [int(h) for h in full["g_hidden"]]
        full["d_hidden"] = [int(h) for h in full["d_hidden"]]
    full["betas"] = _betas(full["betas"])
    full["n_classes"] = int(full["n_classes"] or 0)
    for key, (low, high, expected) in _NUMBER_RANGES.items():
        full[key] = _config_number(full, key, low, high, expected)
    if full["data_scale"] != 1.0 and full["n_classes"]:
        # D's Scale would shrink the one-hot label columns too
        raise ValueError("data_scale is for unconditional GANs (toy sets); use 1.0 with n_classes")
    _check_choice(full, "loss", LOSSES)
    _check_choice(full, "penalty", PENALTIES)
    if not isinstance(full["spectral_norm"], bool):
        raise TypeError(f"GAN config 'spectral_norm' must be true or false, got "
                        f"{full['spectral_norm']!r}")
    full["penalty_weight"] = _penalty_weight(full)
    full["penalty_every"] = _penalty_every(full)
    return full


def _check_choice(config, key, choices):
    if config[key] not in choices:
        raise ValueError(f"GAN config: {key} must be one of {', '.join(map(repr, choices))}, "
                         f"got {config[key]!r}")


def _betas(value):
    """Adam's (beta1, beta2) as a list of two floats in [0, 1), or a clear error."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2 \
            or not all(isinstance(b, numbers.Real) and not isinstance(b, bool) for b in value):
        raise TypeError(f"GAN config 'betas' must be a pair [beta1, beta2] of numbers, got "
                        f"{value!r}")
    betas = [float(b) for b in value]
    if not all(0.0 <= b < 1.0 for b in betas):   # NaN fails too
        raise ValueError(f"GAN config 'betas' must be two numbers in [0, 1) (Adam's moment "
                         f"decays), got {value!r}")
    return betas


def _penalty_weight(config):
    """penalty_weight checked, with None filled in by the penalty's usual value."""
    penalty, weight = config["penalty"], config["penalty_weight"]
    if penalty == "none":
        if weight is not None:
            lazy = " (and 'penalty_every')" if config.get("penalty_every", 1) != 1 else ""
            raise ValueError(f"GAN config 'penalty_weight' is {weight!r} but 'penalty' is "
                             f"'none': choose a penalty ('gp' or 'r1') or drop the weight{lazy}")
        return None
    if weight is None:
        return PENALTY_WEIGHTS[penalty]
    return _config_number(config, "penalty_weight", 1e-300, None, "a finite number > 0")


def _penalty_every(config):
    """penalty_every checked: an integer >= 1, above 1 only for the R1 penalty."""
    every = config["penalty_every"]
    if isinstance(every, bool) or not isinstance(every, numbers.Real) \
            or not math.isfinite(every) or every != int(every) or every < 1:
        raise ValueError(f"GAN config 'penalty_every' must be an integer >= 1 (1: every D "
                         f"step), got {every!r}")
    penalty = config["penalty"]
    if every != 1 and penalty != "r1":
        # a config laid over a preset with lazy R1 keeps R1's weight too: say so
        weight = (f", and check 'penalty_weight' ({config['penalty_weight']!r} here; "
                  f"{penalty}'s usual weight is {PENALTY_WEIGHTS[penalty]!r})"
                  if penalty in PENALTY_WEIGHTS else "")
        raise ValueError(f"GAN config 'penalty_every' is {every!r} but 'penalty' is "
                         f"{penalty!r}: lazy regularisation is for 'r1' (its points are the "
                         "data, which G does not move; gp's interpolates move with G at "
                         "every step); set 'penalty_every' to 1 to penalise every D "
                         f"step{weight}")
    return int(every)


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
    then ``Scale(data_scale)`` when data_scale is not 1. With arch "dcgan":
    ``build_dcgan_generator``."""
    c = complete_config(config)
    if c["arch"] == "dcgan":
        return build_dcgan_generator(c, backend=backend, rng=rng)
    G = mlp([c["latent_dim"] + c["n_classes"], *c["g_hidden"], c["data_dim"]], activation=c["activation"],
               slope=c["slope"], out_activation=c["g_out"], batchnorm=c["g_batchnorm"],
               init=c["init"], dtype=c["dtype"], rng=rng, backend=backend)
    if c["data_scale"] != 1.0:
        G = Sequential(*G.layers, Scale(c["data_scale"]))
    return G


def build_discriminator(config, backend=None, rng=None):
    """D: [Scale(1 / data_scale)] -> [Pack(pack)] -> pack * (data_dim + n_classes)
    -> d_hidden... -> 1 logit (no sigmoid: losses work on logits).

    With spectral_norm every Dense is wrapped in ``SpectralNorm``; u and v start
    from a stream drawn from ``rng`` after the weights, so the weights are the
    same with and without it. With arch "dcgan": ``build_dcgan_discriminator``."""

    c = complete_config(config)
    if c["arch"] == "dcgan":
        return build_dcgan_discriminator(c, backend=backend, rng=rng)
    generator = make_rng(rng)
    D = mlp([c["pack"] * (c["data_dim"] + c["n_classes"]), *c["d_hidden"], 1], activation=c["activation"],
               slope=c["slope"], out_activation=None, batchnorm=c["d_batchnorm"],
               dropout=c["d_dropout"], init=c["init"], dtype=c["dtype"], rng=generator,
               backend=backend)
    layers = D.layers
    if c["spectral_norm"]:
        from minigan.spectral import SpectralNorm

        sn_rng = np.random.default_rng(int(generator.integers(2**63)))
        layers = [SpectralNorm(layer, rng=sn_rng) if isinstance(layer, Dense) else layer
                  for layer in layers]
    front = []
    if c["data_scale"] != 1.0:
        front.append(Scale(1.0 / c["data_scale"]))
    if c["pack"] != 1:
        front.append(Pack(c["pack"]))  # PacGAN: D judges `pack` samples side by side
    return D if not front and layers is D.layers else Sequential(*front, *layers)


#: what each loss of the config is (for the errors below)
_LOSS_NAMES = {"lsgan": "least squares", "wasserstein": "the Wasserstein critic's loss",
               "hinge": "the hinge loss"}


def build_loss(config):
    """The loss object a config names: ``loss`` "lsgan" gives ``LeastSquares()``,
    "wasserstein" ``Wasserstein()``, "hinge" ``Hinge()``; with the default "bce",
    ``g_loss`` picks ``NonSaturating`` or ``Minimax`` (both with the config's
    one-sided ``label_smoothing``). g_loss and label_smoothing are choices of the
    cross-entropy loss: any other loss sets G's loss itself and has no targets
    to smooth, so it refuses them."""
    from minigan.gan_losses import Hinge, LeastSquares, Minimax, NonSaturating, Wasserstein

    c = complete_config(config)
    loss = c["loss"]
    if loss != "bce":
        if c["g_loss"] not in ("non-saturating", loss):
            raise ValueError(f"loss {loss!r} sets both players' losses ({_LOSS_NAMES[loss]}); "
                             f"it cannot be combined with g_loss={c['g_loss']!r} (drop g_loss, "
                             f"or use loss 'bce')")
        if c["label_smoothing"]:
            raise ValueError(f"label_smoothing={c['label_smoothing']:g} is one-sided smoothing of "
                             f"the cross-entropy's real target (loss 'bce'); loss {loss!r} has no "
                             "such target: use label_smoothing 0")
        return {"lsgan": LeastSquares, "wasserstein": Wasserstein, "hinge": Hinge}[loss]()
    if c["g_loss"] not in G_LOSSES:
        raise ValueError(f"g_loss must be one of {G_LOSSES} with loss 'bce', got {c['g_loss']!r}")
    kind = Minimax if c["g_loss"] == "minimax" else NonSaturating
    return kind(label_smoothing=c["label_smoothing"])


def build_regularizer(config, rng=None):
    """The regulariser of D's step a config names: None for penalty "none",
    ``GradientPenalty(penalty_weight, rng=rng)`` for "gp" (``rng``, a seed or
    generator, draws its interpolation epsilons), ``R1(penalty_weight, every=penalty_every)``
    for "r1". With n_classes > 0 either one's norm is over the data_dim numbers of x
    only (``features``), not over the label columns."""
    from minigan.penalty import R1, GradientPenalty

    c = complete_config(config)
    # a conditional D reads [x, y]: the penalty is on its slope in x, not in the label
    features = c["data_dim"] if c["n_classes"] else None
    if c["penalty"] == "gp":
        return GradientPenalty(weight=c["penalty_weight"], rng=rng, features=features)
    if c["penalty"] == "r1":
        return R1(gamma=c["penalty_weight"], every=c["penalty_every"], features=features)
    return None


def _check_penalty_fits(config, D):
    """Refuse a gradient penalty on a D it cannot go through (batch norm, dropout),
    now rather than at the first training step, with ``minigan.penalty``'s reason."""
    # _chain is the penalty's own walk over D: it raises for a layer without a
    # second-order rule before computing anything
    from minigan.penalty import _chain

    try:
        _chain(D)
    except TypeError as err:
        keys = [f"{k} {json.dumps(config[k])}" for k in ("d_batchnorm", "d_dropout")
                if config[k]]
        why = f" (the config has {' and '.join(keys)})" if keys else ""
        raise ValueError(
            f"GAN config: penalty {config['penalty']!r} cannot be used with this D{why}. "
            f"{err} Set d_batchnorm false and d_dropout 0, or use penalty 'none' "
            "(spectral_norm constrains D without a gradient penalty).") from None


def check_config(config):
    """Check everything ``build_gan`` would refuse, without training anything:
    the keys and numbers, the loss, and whether a penalty fits D (for which D is
    built once). Returns the completed config; raises ValueError or TypeError."""
    c = complete_config(config)
    build_loss(c)
    if c["penalty"] != "none":
        _check_penalty_fits(c, build_discriminator(c, backend="numpy", rng=0))
    return c


def build_gan(config, backend=None, seed=None):
    """A ``GAN`` (a ``ConditionalGAN`` when n_classes > 0) with G, D and two Adam
    optimisers built from a config dict, its loss and, with ema_decay > 0, an ``EMA``.

    ``seed`` (an int, None for minigan's default generator) seeds G's weights,
    D's weights, the noise generator and the gradient penalty's epsilons with
    four independent streams, so the same seed gives the same run. (The
    penalty's stream is keyed (seed, 2, 1), a child of the noise's (seed, 2):
    the command line keys its own streams [seed, 3], [seed, 4], ...)
    A penalty with a D it cannot go through raises here (see ``check_config``).
    """

    from minigan.gan import EMA, GAN, ConditionalGAN
    from minigan.optim import Adam

    c = complete_config(config)
    loss = build_loss(c)
    backend = get_backend() if backend is None else backend
    if seed is None:
        base = make_rng(None)
        g_rng, d_rng, noise_rng = (int(base.integers(2**63)) for _ in range(3))
        # drawn only when needed, so a GAN without a penalty draws what it always drew
        penalty_rng = int(base.integers(2**63)) if c["penalty"] == "gp" else None
    else:
        g_rng, d_rng, noise_rng = ((int(seed), k) for k in range(3))
        penalty_rng = (int(seed), 2, 1)
    G = build_generator(c, backend=backend, rng=np.random.default_rng(g_rng))
    D = build_discriminator(c, backend=backend, rng=np.random.default_rng(d_rng))
    regularizer = build_regularizer(
        c, rng=None if penalty_rng is None else np.random.default_rng(penalty_rng))
    if regularizer is not None:
        _check_penalty_fits(c, D)
    betas = tuple(c["betas"])
    g_opt = Adam(G.parameters(), lr=c["lr_g"], betas=betas)
    d_opt = Adam(D.parameters(), lr=c["lr_d"], betas=betas)
    options = {"loss": loss, "d_steps": int(c["d_steps"]), "regularizer": regularizer,
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


# ---------------------------------------------------------------------------- DCGAN
#
# The convolutional GAN of Radford et al. 2016 at MNIST size, built from the same
# kind of config dict.

#: Keys the DCGAN builders read besides the shared ones (slope, init, dtype,
#: n_classes, g_batchnorm, d_batchnorm, spectral_norm, pack): image_shape, g_channels
#: and d_channels are required.
DCGAN_REQUIRED_KEYS = ("latent_dim", "image_shape", "g_channels", "d_channels")

#: Every up- and downsampling layer of the DCGAN: a 4x4 kernel with stride 2 and
#: padding 1, which maps H to 2H (transposed) and H to floor(H / 2) (Conv2d),
#: with every output pixel covered by the same number of kernel taps (a kernel
#: size divisible by the stride avoids the transposed convolution's checkerboard).
_DCGAN_CONV = {"kernel_size": 4, "stride": 2, "padding": 1}


class LabelPlanes(Layer):
    """[x, y] -> the image x with its one-hot label y as K extra constant channels.

    How a convolutional D is conditioned (as in most conditional DCGANs): the K
    label columns of a sample become K planes of size H x W, plane k filled with
    y_k (1 for the sample's class, 0 for the others), stacked after the image's
    C channels, so that the first convolution sees the label at every position.
    With x the flat image (C H W columns, row-major (c, h, w)) and y (K,):
        out[n, c, h, w]     = x[n, c H W + h W + w]        c < C
        out[n, C + k, h, w] = y[n, k]                       k < K
    shapes (N, C H W + K) -> (N, C + K, H, W). ConditionalGAN shows D
    [x, onehot(label)], exactly this input.

    Linear and parameter-free. Backward, with G = dL/dout (N, C + K, H, W):
        dL/dx[n, c H W + h W + w] = G[n, c, h, w]           (the reshape undone)
        dL/dy[n, k] = sum_{h, w} G[n, C + k, h, w]          (y[n, k] was copied to
                                                             every one of the H W positions)
    """

    def __init__(self, image_shape, n_classes):
        super().__init__()
        shape = tuple(image_shape) if isinstance(image_shape, (tuple, list)) else ()
        if len(shape) != 3 or not all(_is_positive_int(d) for d in shape):
            raise ValueError(f"LabelPlanes: image_shape must be (C, H, W), three positive ints, "
                             f"got {image_shape!r}")
        if not _is_positive_int(n_classes):
            raise ValueError(f"LabelPlanes: n_classes must be a positive int, got {n_classes!r}")
        self.image_shape = tuple(int(d) for d in shape)
        self.n_classes = int(n_classes)

    def forward(self, x):
        self._check_input(x)
        C, H, W = self.image_shape
        d = C * H * W
        if x.ndim != 2 or x.shape[1] != d + self.n_classes:
            raise ValueError(
                f"{self.short_repr()} expected input of shape (N, {d + self.n_classes}): "
                f"{d} image columns ({C}x{H}x{W}) then {self.n_classes} one-hot label "
                f"columns, as ConditionalGAN passes [x, onehot(y)]; got {tuple(x.shape)}.")
        out = self.planes(x)
        self._save_cache(None, out)
        return out

    def backward(self, dout, param_grads=True, input_grad=True):
        self._pop_cache(dout)
        return self.planes_adjoint(dout) if input_grad else None

    # The map and its adjoint as plain functions of an array (no cache): the layer's
    # two passes, and what a gradient penalty's double backward needs of a linear layer.
    def planes(self, x):
        """(N, C H W + K) -> (N, C + K, H, W), the forward's map."""
        C, H, W = self.image_shape
        d, n = C * H * W, x.shape[0]
        out = array_module(x).empty((n, C + self.n_classes, H, W), dtype=x.dtype)
        out[:, :C] = x[:, :d].reshape(n, C, H, W)
        out[:, C:] = x[:, d:, None, None]   # broadcast over (H, W): one plane per label
        return out

    def planes_adjoint(self, g):
        """(N, C + K, H, W) -> (N, C H W + K), the backward's map (the transpose of ``planes``)."""
        C, H, W = self.image_shape
        d, n = C * H * W, g.shape[0]
        dx = array_module(g).empty((n, d + self.n_classes), dtype=g.dtype)
        dx[:, :d] = g[:, :C].reshape(n, d)
        dx[:, d:] = g[:, C:].sum(axis=(2, 3))   # each label column fed H W positions
        return dx

    def short_repr(self):
        C, H, W = self.image_shape
        return f"LabelPlanes({C}x{H}x{W} + {self.n_classes} labels)"


class ProjectionDiscriminator(Layer):
    """[x, y] -> D's logit with the label taken in by an inner product at the end
    (the projection discriminator of Miyato and Koyama 2018):

        f(x, y) = psi(phi(x)) + y^T V phi(x)

    phi = ``body`` maps the image alone to F features (N, F); psi = ``psi`` is a
    Dense(F -> 1), the logit of an unconditional D; V (K, F) holds one row per
    class, so y^T V = V[class] for a one-hot y, and the label asks "do these
    features look like this class?" where LabelPlanes hands it to the first
    convolution as K constant planes. Why this form: the best D of the
    cross-entropy loss has the logit log(q(x, y) / p(x, y)) for the data's q and
    G's p, = log(q(y | x) / p(y | x)) + log(q(x) / p(x)); with each conditional a
    softmax over linear functions of phi(x), the first term is y^T V phi(x) plus
    a function of x alone, which psi takes with the second. Miyato and Koyama
    found it draws better class-conditional images than concatenating the label.

    When the body packs m samples (``Pack(m)``, PacGAN), one output judges m
    samples, so it takes the m labels side by side, y (N/m, m K), and V has m K rows:
    a class row per place in the pack.

    Shapes, with d = C H W: input (N, d + K) ([x, onehot(y)], as ConditionalGAN
    shows D); phi (N/m, F); out (N/m, 1). Write v_i = w + y_i V (F,), the weight
    psi's w plus the row of V for sample i's label(s): out_i = phi_i . v_i + b.
    Backward, with g = dL/dout (N/m, 1):
        dphi = g v                      (N/m, F)   (then through the body: dx)
        dw   = phi^T g                  (F, 1)     db = sum_i g_i
        dV   = y^T (g phi)              (m K, F)   (row k: the g-weighted phi of
                                                    the samples of class k)
        dy   = (g phi) V^T              (N/m, m K) -> (N, K)
    """

    def __init__(self, body, psi, n_classes, image_dim, pack=1, V=None, init="glorot_uniform",
                 dtype="float32", rng=None, backend=None):
        super().__init__()
        for name, value in (("n_classes", n_classes), ("image_dim", image_dim), ("pack", pack)):
            if not _is_positive_int(value):
                raise ValueError(f"ProjectionDiscriminator: {name} must be a positive int, "
                                 f"got {value!r}")
        if not isinstance(body, Layer):
            raise TypeError(f"ProjectionDiscriminator: body must be a Layer (the image -> "
                            f"features map phi), got {type(body).__name__}")
        from minigan.spectral import SpectralNorm

        # exactly a Dense, or one in SpectralNorm: the penalty's rule for psi is _Affine's
        dense = psi.layer if type(psi) is SpectralNorm else psi
        if type(dense) is not Dense or dense.out_features != 1:
            got = psi.short_repr() if isinstance(psi, Layer) else type(psi).__name__
            raise TypeError(f"ProjectionDiscriminator: psi must be a Dense(F -> 1) (or one in "
                            f"SpectralNorm), D's unconditional logit, got {got}")
        self.body, self.psi = body, psi
        self.features, self.n_classes = dense.in_features, int(n_classes)
        self.image_dim, self.pack = int(image_dim), int(pack)
        shape = (self.pack * self.n_classes, self.features)
        if V is None:   # else V is given (the DCGAN builder draws it before spectral norm's u, v)
            V = projection_init(init, self.pack * self.n_classes, self.features, make_rng(rng),
                                dtype)
        elif tuple(V.shape) != shape:
            raise ValueError(f"ProjectionDiscriminator: V must have shape {shape} (pack x "
                             f"n_classes rows, one per class and place in a pack; F = "
                             f"{self.features} columns), got {tuple(V.shape)}")
        # a copy, in psi's dtype (minigan never mixes dtypes) on the backend asked for
        backend = get_backend() if backend is None else backend
        self._add_param("V", to_device(V, backend).astype(dense.params["W"].dtype))

    def named_children(self):
        return [("body", self.body), ("psi", self.psi)]

    def split(self, inp):
        """[x, onehot(y)] (N, d + K) -> (x (N, d), y (N/m, m K)): the image columns and
        the labels of each pack side by side, in the order Pack stacks its images."""
        d, K = self.image_dim, self.n_classes
        if inp.ndim != 2 or inp.shape[1] != d + K:
            raise ValueError(
                f"{self.short_repr()} expected input of shape (N, {d + K}): {d} image columns "
                f"then {K} one-hot label columns, as ConditionalGAN passes [x, onehot(y)]; "
                f"got {tuple(inp.shape)}.")
        if inp.shape[0] % self.pack:
            raise ValueError(f"{self.short_repr()} packs {self.pack} samples per output: the "
                             f"batch ({inp.shape[0]}) must be a multiple of {self.pack}")
        return inp[:, :d], inp[:, d:].reshape(inp.shape[0] // self.pack, self.pack * K)

    def forward(self, inp):
        self._check_input(inp)
        x, y = self.split(inp)
        phi = self.body.forward(x)
        if phi.ndim != 2 or phi.shape != (y.shape[0], self.features):
            raise ValueError(f"{self.short_repr()}: the body gave features of shape "
                             f"{tuple(phi.shape)}, expected ({y.shape[0]}, {self.features})")
        yV = y @ self.params["V"]                       # (N/m, F): each sample's class row
        out = self.psi.forward(phi)
        out += (phi * yV).sum(axis=1, keepdims=True)    # + y^T V phi
        self._save_cache((phi, y, yV, inp.shape[0]), out)
        return out

    def backward(self, dout, param_grads=True, input_grad=True):
        phi, y, yV, n = self._pop_cache(dout)
        g_phi = dout * phi                              # (N/m, F)
        if param_grads:
            self.grads["V"] += y.T @ g_phi
        dphi = self.psi.backward(dout, param_grads=param_grads)
        dphi += dout * yV
        dx = self.body.backward(dphi, param_grads=param_grads, input_grad=input_grad)
        if not input_grad:
            return None
        dy = (g_phi @ self.params["V"].T).reshape(n, self.n_classes)
        return array_module(dx).concatenate([dx, dy], axis=1)

    def short_repr(self):
        K, m = self.n_classes, self.pack
        packs = f", pack {m}" if m != 1 else ""
        return (f"ProjectionDiscriminator({self.body.short_repr()} -> {self.features} "
                f"features; psi + y^T V, {K} classes{packs})")

    def __repr__(self):
        """phi's layers one per line, then psi and V: what print(gan.D) shows."""
        body = "\n".join(f"    {line}" for line in repr(self.body).splitlines())
        return (f"ProjectionDiscriminator(\n  body (phi, the image -> {self.features} "
                f"features):\n{body}\n  psi: {self.psi.short_repr()}\n  V: "
                f"{tuple(self.params['V'].shape)}, a row per class"
                f"{' and place in a pack' if self.pack > 1 else ''}\n)")


def projection_init(init, rows, features, rng, dtype):
    """V (rows, features) drawn by the initialiser ``init`` with psi's fans: each row
    multiplies phi (F features) as psi's weight (F, 1) does, so it is drawn as an
    (F, rows) weight and transposed (He's and LeCun's scale follow fan_in = F, not
    the number of classes)."""
    return np.ascontiguousarray(get_initialiser(init)((features, rows), rng, dtype=dtype).T)


def _is_positive_int(value):
    return not isinstance(value, bool) and isinstance(value, numbers.Integral) and value >= 1


def _int_list(config, key, length=None, may_be_empty=False):
    """config[key] as a list of positive ints (``length`` of them when given; with
    ``may_be_empty`` none at all, or a missing key or None, is []), or a ValueError
    saying what was expected and what arrived."""
    value = config.get(key)
    if may_be_empty and value is None:
        return []
    if length:
        want = f"{length} positive ints"
    else:
        want = "a list of positive ints (or [])" if may_be_empty else \
            "a non-empty list of positive ints"
    if not isinstance(value, (list, tuple)) or (not value and not may_be_empty) \
            or (length and len(value) != length) or not all(_is_positive_int(v) for v in value):
        raise ValueError(f"DCGAN config {key!r} must be {want}, got {value!r}")
    return [int(v) for v in value]


def dcgan_config(config):
    """A copy of a DCGAN ``config`` with every default filled in, checked.

    Required: latent_dim, image_shape ([C, H, W]), g_channels (G's channel counts,
    widest first, one per doubling of the image: [128, 64] for 7x7 -> 14x14 ->
    28x28) and d_channels (D's, narrowest first: [64, 128]). Read besides, with
    ``CONFIG_DEFAULTS``' defaults: n_classes, g_batchnorm, d_batchnorm, slope,
    init, dtype, pack, and spectral_norm (default False); g_dense (default [],
    no hidden Dense layers in G); projection (default False: a conditional D takes
    the label as LabelPlanes; True: as a ``ProjectionDiscriminator``). Keys of the
    MLP GAN that the DCGAN cannot honour raise instead of being ignored: d_dropout,
    data_scale other than 1, a data_dim other than C H W.
    """
    if not isinstance(config, dict):
        raise TypeError(f"a GAN config must be a dict, got {type(config).__name__}")
    missing = [k for k in DCGAN_REQUIRED_KEYS if k not in config]
    if missing:
        raise ValueError(f"DCGAN config is missing {missing} (required: "
                         f"{list(DCGAN_REQUIRED_KEYS)}, e.g. image_shape [1, 28, 28], "
                         f"g_channels [128, 64], d_channels [64, 128])")
    c = {**CONFIG_DEFAULTS, **config}
    if not _is_positive_int(c["latent_dim"]):
        raise ValueError(f"DCGAN config 'latent_dim' must be a positive int, got "
                         f"{c['latent_dim']!r}")
    c["image_shape"] = _int_list(c, "image_shape", 3)
    c["g_channels"] = _int_list(c, "g_channels")
    c["d_channels"] = _int_list(c, "d_channels")
    c["g_dense"] = _int_list(c, "g_dense", may_be_empty=True)
    n_classes = c["n_classes"] or 0
    if isinstance(n_classes, bool) or not isinstance(n_classes, numbers.Integral) \
            or n_classes < 0:
        raise ValueError(f"DCGAN config 'n_classes' must be an int >= 0 (0: unconditional), "
                         f"got {c['n_classes']!r}")
    c["n_classes"] = int(n_classes)
    c.setdefault("projection", False)   # a DCGAN key: not in the MLP's CONFIG_DEFAULTS
    for key in ("g_batchnorm", "d_batchnorm", "spectral_norm", "projection"):
        if not isinstance(c[key], bool):
            raise TypeError(f"DCGAN config {key!r} must be true or false, got {c[key]!r}")
    if c["projection"] and not c["n_classes"]:
        raise ValueError("DCGAN config: projection (the label's inner product with D's "
                         "features) needs a conditional GAN: set n_classes (--conditional)")
    c["slope"] = _config_number(c, "slope", *_NUMBER_RANGES["slope"])
    C, H, W = c["image_shape"]
    if c.get("data_dim") is not None and c["data_dim"] != C * H * W:
        raise ValueError(f"DCGAN config: data_dim {c['data_dim']!r} does not match image_shape "
                         f"{c['image_shape']} (C H W = {C * H * W}); drop data_dim or fix it")
    if not _is_positive_int(c["pack"]):
        raise ValueError(f"DCGAN config 'pack' must be a positive int, got {c['pack']!r}")
    if c["d_dropout"]:
        raise ValueError(f"DCGAN config: d_dropout={c['d_dropout']!r} is not supported by "
                         "the convolutional D; use 0")
    if c["data_scale"] != 1.0:
        raise ValueError(f"DCGAN config: data_scale={c['data_scale']!r} is for the toy data "
                         "sets; images in [-1, 1] need 1.0")
    _dcgan_sizes(c)
    return c


def _dcgan_sizes(c):
    """(C, H, W, h0, w0, d_sizes): the image, G's starting size and D's (H, W) after each
    convolution. G doubles the size once per entry of g_channels, so H and W must be
    divisible by 2^len(g_channels); D halves it (rounding down) per entry of d_channels."""
    C, H, W = c["image_shape"]
    ups = len(c["g_channels"])
    if H % 2**ups or W % 2**ups:
        raise ValueError(
            f"DCGAN: image_shape {list(c['image_shape'])} cannot be reached from a whole "
            f"starting size: G doubles H and W once per entry of g_channels "
            f"({c['g_channels']}: {ups} times), so H and W must be divisible by {2**ups}; "
            f"use fewer g_channels or another image size")
    sizes, (h, w) = [], (H, W)
    for _ in c["d_channels"]:
        try:  # a 4x4 kernel with padding 1 needs at least 2x2 pixels
            h, w = F.conv2d_output_shape((h, w), **_DCGAN_CONV)
        except ValueError:
            h = w = 0
        if h < 1 or w < 1:
            raise ValueError(
                f"DCGAN: D's {len(c['d_channels'])} stride-2 convolutions (d_channels "
                f"{c['d_channels']}) shrink a {H}x{W} image below one pixel (each halves "
                f"H and W, rounding down, and needs at least 2x2); use fewer d_channels")
        sizes.append((h, w))
    return C, H, W, H // 2**ups, W // 2**ups, sizes


def build_dcgan_generator(config, backend=None, rng=None):
    """The DCGAN generator (Radford et al. 2016) for images ``image_shape`` = [C, H, W]:

        [z, y] (N, latent_dim + n_classes)
        -> per entry h of g_dense: Dense(-> h) [BatchNorm1d] ReLU
        -> Dense -> (N, g_channels[0] h0 w0) [BatchNorm1d] ReLU -> Reshape(g_channels[0], h0, w0)
        -> per further entry c of g_channels: ConvTranspose2d(-> c, 4, stride 2, padding 1)
           [BatchNorm2d] ReLU                                  (each doubles H and W)
        -> ConvTranspose2d(-> C, 4, 2, 1) -> Tanh -> Flatten    (N, C H W) in [-1, 1]

    with h0 = H / 2^k, w0 = W / 2^k for k = len(g_channels): [128, 64] on 28x28 gives
    128 x 7 x 7 -> 64 x 14 x 14 -> 1 x 28 x 28. The output is a flat image, as the MLP
    G's, so the data, D's input, ConditionalGAN and the plots need no change.
    g_dense puts hidden Dense layers before the projection, as InfoGAN's MNIST G (Chen
    et al. 2016, one of 1024): without one, the map from z to the first feature maps
    is linear, and the ReLU after it is all G has to draw the borders between digits
    in z's space (samples on those borders are strokes that are not quite one digit).
    [...] is there with g_batchnorm; a transposed convolution followed by batch norm
    has no bias (batch norm subtracts the mean, so a bias there would get a gradient
    of exactly 0; the Dense keeps its own, which then stays at its initial 0).
    """
    c = dcgan_config(config)
    C, _, _, h0, w0, _ = _dcgan_sizes(c)
    ch, bn = c["g_channels"], c["g_batchnorm"]
    generator = make_rng(rng)
    backend = get_backend() if backend is None else backend
    kw = {"init": c["init"], "dtype": c["dtype"], "rng": generator, "backend": backend}
    bn_kw = {"dtype": c["dtype"], "backend": backend}
    # the hidden Dense layers, then the projection to the first feature maps, each
    # with [batch norm and] ReLU (a Dense before batch norm keeps its bias, stuck at 0)
    layers, widths = [], [c["latent_dim"] + c["n_classes"], *c["g_dense"], ch[0] * h0 * w0]
    for n_in, n_out in zip(widths, widths[1:]):
        layers.append(Dense(n_in, n_out, **kw))
        if bn:
            layers.append(BatchNorm1d(n_out, **bn_kw))
        layers.append(ReLU())
    layers.append(Reshape(ch[0], h0, w0))
    for c_in, c_out in zip(ch, ch[1:]):
        layers.append(ConvTranspose2d(c_in, c_out, **_DCGAN_CONV, bias=not bn, **kw))
        if bn:
            layers.append(BatchNorm2d(c_out, **bn_kw))
        layers.append(ReLU())
    layers += [ConvTranspose2d(ch[-1], C, **_DCGAN_CONV, **kw), Tanh(), Flatten()]
    return Sequential(*layers)


def build_dcgan_discriminator(config, backend=None, rng=None):
    """The DCGAN discriminator (Radford et al. 2016) for images ``image_shape`` = [C, H, W]:

        x (N, C H W), or [x, y] (N, C H W + K) when n_classes = K > 0
        -> Reshape(C, H, W), or LabelPlanes (the label as K constant planes; with
           projection, x alone is reshaped and the label waits for the end)
        -> [Pack(m)]  (N/m, m (C + K), H, W): m images stacked along the channels
           (m C channels with projection)
        -> Conv2d(-> d_channels[0], 4, stride 2, padding 1) LeakyReLU(slope)
        -> per further entry c of d_channels: Conv2d(-> c, 4, 2, 1) [BatchNorm2d] LeakyReLU
                                                            (each halves H and W)
        -> Flatten -> Dense(-> 1)       one logit per sample (per pack of m samples)
           with projection: ProjectionDiscriminator(phi = the layers up to Flatten,
           psi = that Dense), whose logit adds y^T V phi(x)

    [64, 128] on 28x28 gives 64 x 14 x 14 -> 128 x 7 x 7 -> 1. Batch norm (d_batchnorm)
    is never on the first layer, as in the paper (it would normalise the data itself);
    a convolution followed by batch norm has no bias. With pack = m > 1 (PacGAN, Lin et
    al. 2018, who stack a DCGAN's images the same way) D judges m images at once as one
    image of m (C + K) channels (m C with projection). With spectral_norm every Conv2d
    and the Dense are wrapped in ``SpectralNorm``; a projection's V is not (Miyato and
    Koyama's code normalises it too: with V unnormalised, spectral norm bounds D's slope
    through psi but not through y^T V phi). u and v start from a stream of their own,
    so the weights are the same with and without it.
    """
    c = dcgan_config(config)
    C, H, W, _, _, sizes = _dcgan_sizes(c)
    ch, bn, K = c["d_channels"], c["d_batchnorm"], c["n_classes"]
    generator = make_rng(rng)
    backend = get_backend() if backend is None else backend
    kw = {"init": c["init"], "dtype": c["dtype"], "rng": generator, "backend": backend}
    m, projection = c["pack"], c["projection"]
    planes = K if not projection else 0        # label channels into the first convolution
    layers = [LabelPlanes((C, H, W), K) if planes else Reshape(C, H, W)]
    if m != 1:
        layers.append(Pack(m))  # PacGAN: D judges m images, stacked along the channels
    layers += [Conv2d(m * (C + planes), ch[0], **_DCGAN_CONV, **kw), LeakyReLU(c["slope"])]
    for c_in, c_out in zip(ch, ch[1:]):
        layers.append(Conv2d(c_in, c_out, **_DCGAN_CONV, bias=not bn, **kw))
        if bn:
            layers.append(BatchNorm2d(c_out, dtype=c["dtype"], backend=backend))
        layers.append(LeakyReLU(c["slope"]))
    h, w = sizes[-1]
    layers += [Flatten(), Dense(ch[-1] * h * w, 1, **kw)]
    # a projection's V drawn after the weights, before spectral norm's u and v
    V = projection_init(c["init"], m * K, ch[-1] * h * w, generator, c["dtype"]) \
        if projection else None
    if c["spectral_norm"]:
        from minigan.spectral import SpectralNorm

        sn_rng = np.random.default_rng(int(generator.integers(2**63)))
        layers = [SpectralNorm(layer, rng=sn_rng) if isinstance(layer, (Conv2d, Dense))
                  else layer for layer in layers]
    if not projection:
        return Sequential(*layers)
    # phi: every layer up to the features; psi: the last Dense, D's unconditional logit
    return ProjectionDiscriminator(Sequential(*layers[:-1]), layers[-1], K, C * H * W, pack=m,
                                   V=V, dtype=c["dtype"], backend=backend)
