"""Data for minigan: toy 1-D/2-D sets, MNIST and Fashion-MNIST, and minibatches.

    from minigan.data import ring8, load_mnist, Minibatches
    x = ring8().sample(10_000, rng=0)                    # (10000, 2) float32
    images, labels = load_mnist("train")                 # (60000, 784) in [-1, 1]
    for batch in Minibatches(x, batch_size=128, rng=0):  # on the current backend
        ...
    toy = ToySampler(ring8(), batch_size=256, rng=0)     # fresh samples, endlessly

Only NumPy and the standard library are imported here; urllib and tqdm are
imported when a download happens.
"""

from minigan.data.batches import Minibatches, ToySampler, infinite
from minigan.data.mnist import (
    FASHION_MNIST_CLASSES,
    ChecksumError,
    DataError,
    DataNotFoundError,
    DownloadError,
    IDXFormatError,
    fetch_files,
    load_fashion_mnist,
    load_mnist,
    read_idx,
    resolve_data_dir,
    verify_file,
)
from minigan.data.toy import (
    TOY_DATASETS,
    GaussianMixture,
    Moons,
    Spiral,
    ToyDataset,
    gaussian1d,
    grid25,
    moons,
    ring8,
    spiral,
    toy_dataset,
)

__all__ = [
    # toy sets
    "ToyDataset", "GaussianMixture", "Spiral", "Moons",
    "ring8", "grid25", "gaussian1d", "spiral", "moons",
    "TOY_DATASETS", "toy_dataset",
    # MNIST / Fashion-MNIST
    "load_mnist", "load_fashion_mnist", "read_idx", "fetch_files", "verify_file",
    "resolve_data_dir", "FASHION_MNIST_CLASSES",
    "DataError", "DataNotFoundError", "ChecksumError", "DownloadError", "IDXFormatError",
    # minibatches and resumable streams
    "Minibatches", "ToySampler", "infinite",
]
