"""minigan: generative adversarial networks from scratch, with hand-written backprop.

Only NumPy is imported here; matplotlib, CuPy and tqdm are imported by the
functions that need them.
"""

__version__ = "0.2.0"

from minigan.backend import (
    array_module,
    get_backend,
    rng,
    seed,
    to_device,
    to_numpy,
    use,
)
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
from minigan.losses import BCE, MSE, BCEWithLogits, SoftmaxCrossEntropy
from minigan.optim import SGD, Adam
from minigan.spectral import SpectralNorm

__all__ = [
    "__version__",
    "array_module", "get_backend", "rng", "seed", "to_device", "to_numpy", "use",
    "Layer", "Dense", "Conv2d", "ConvTranspose2d", "ReLU", "LeakyReLU", "Sigmoid", "Tanh",
    "Dropout", "BatchNorm1d", "BatchNorm2d", "Flatten", "Reshape", "Pack", "Sequential",
    "SpectralNorm",
    "BCE", "BCEWithLogits", "MSE", "SoftmaxCrossEntropy",
    "SGD", "Adam",
]
