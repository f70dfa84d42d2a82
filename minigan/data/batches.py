"""Minibatches: shuffled batches of one or more arrays, on the training device.

    batches = Minibatches(images, labels, batch_size=64, rng=0)
    for epoch in range(3):
        for x, y in batches:          # a fresh permutation every epoch
            ...
    for step, x in zip(range(10_000), Minibatches(x_all, batch_size=64).forever()):
        ...                            # step-based training, epochs cycled

The arrays are moved to the device once, at construction; each batch is then an
index into them with the data's own array module (NumPy or CuPy), so nothing
crosses the host-device boundary per step except the epoch's permutation.
"""

from __future__ import annotations

import numbers

import numpy as np

from minigan.backend import array_module, get_backend, make_rng, to_device

__all__ = ["Minibatches", "infinite"]


class Minibatches:
    """Iterate over minibatches of ``arrays``, which share their first dimension N.

    batch_size: samples per batch. shuffle: a new permutation each epoch, drawn
    from ``rng`` (None: minigan's default generator, an int seed, or a NumPy
    Generator), so a seed repeats the whole sequence of epochs. drop_last: skip the
    last, smaller batch (keeps every batch the same size, as GAN training wants).
    backend: 'numpy' or 'cupy' (default: the current backend).

    Each batch is a tuple with one array per input, shapes ``(batch_size, ...)``;
    with a single input array, the batch is that array alone. ``len()`` is the
    number of batches per epoch.
    """

    def __init__(self, *arrays, batch_size: int, shuffle: bool = True,
                 drop_last: bool = True, rng=None, backend: str | None = None):
        if not arrays:
            raise ValueError("Minibatches needs at least one array, got none.")
        backend = get_backend() if backend is None else backend
        moved = []
        for i, a in enumerate(arrays):
            if not hasattr(a, "shape"):
                a = np.asarray(a)
            if len(a.shape) == 0:
                raise ValueError(
                    f"array {i} is a scalar (shape ()): expected an array with a first "
                    "dimension of samples, shape (N, ...)."
                )
            moved.append(to_device(a, backend))  # once, here; never per batch
        n = moved[0].shape[0]
        if any(a.shape[0] != n for a in moved):
            shapes = ", ".join(str(tuple(a.shape)) for a in moved)
            raise ValueError(
                f"All arrays must have the same first dimension (number of samples), "
                f"got shapes {shapes}."
            )
        if n == 0:
            raise ValueError("The arrays hold no samples (first dimension 0): nothing to batch.")
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
            raise TypeError(f"batch_size must be a positive int, got {batch_size!r}.")
        batch_size = int(batch_size)
        if batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int, got {batch_size}.")
        if drop_last and batch_size > n:
            raise ValueError(
                f"batch_size={batch_size} is larger than the {n} samples: with "
                "drop_last=True not a single batch would come out. Use a batch_size "
                f"of at most {n}, or drop_last=False."
            )
        self.arrays = tuple(moved)
        self.n_samples = int(n)
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.backend = backend
        self.rng = make_rng(rng)
        self.epoch = 0  # epochs started so far
        self._xp = array_module(*self.arrays)

    def __len__(self) -> int:
        if self.drop_last:
            return self.n_samples // self.batch_size
        return -(-self.n_samples // self.batch_size)  # ceil

    def __iter__(self):
        """One epoch. The permutation is drawn now, when the epoch starts."""
        self.epoch += 1
        order = None
        if self.shuffle:
            # Drawn on the host with NumPy so a seed gives the same order on both
            # backends, then sent to the device once per epoch.
            order = self._xp.asarray(self.rng.permutation(self.n_samples))
        return self._epoch(order)

    def _epoch(self, order):
        single = len(self.arrays) == 1
        for b in range(len(self)):
            start = b * self.batch_size
            stop = min(start + self.batch_size, self.n_samples)
            if order is None:
                batch = tuple(a[start:stop] for a in self.arrays)  # views, no copy
            else:
                idx = order[start:stop]
                batch = tuple(a[idx] for a in self.arrays)
            yield batch[0] if single else batch

    def forever(self):
        """Batches without end, epoch after epoch (each with its own permutation)."""
        return infinite(self)

    def __repr__(self) -> str:
        shapes = ", ".join(str(tuple(a.shape)) for a in self.arrays)
        return (
            f"Minibatches({shapes}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
            f"drop_last={self.drop_last}, backend={self.backend!r}, batches={len(self)})"
        )


def infinite(batches):
    """Cycle a re-iterable of batches (such as ``Minibatches``) forever.

    Each pass calls ``iter(batches)`` again, so a shuffling iterator reshuffles
    every epoch. Raises ValueError if a pass yields nothing (it would spin forever).
    """
    while True:
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty:
            raise ValueError(f"{batches!r} yielded no batches: cannot cycle it forever.")
