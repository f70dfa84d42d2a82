"""Minibatches: shuffled batches of one or more arrays, on the training device.

    batches = Minibatches(images, labels, batch_size=64, rng=0)
    for epoch in range(3):
        for x, y in batches:          # a fresh permutation every epoch
            ...
    for step, x in zip(range(10_000), Minibatches(x_all, batch_size=64).forever()):
        ...                            # step-based training, epochs cycled
    state = batches.state_dict()      # where it is, mid-epoch included (JSON-able)
    batches.load_state_dict(state)    # ... and back there: the same batches follow

    toy = ToySampler(ring8(), batch_size=256, rng=0)   # fresh toy samples, endlessly
    x = next(toy)

The arrays are moved to the device once, at construction; each batch is then an
index into them with the data's own array module (NumPy or CuPy), so nothing
crosses the host-device boundary per step except the epoch's permutation.
"""

from __future__ import annotations

import copy
import numbers

import numpy as np

from minigan.backend import array_module, get_backend, make_rng, to_device

__all__ = ["Minibatches", "ToySampler", "infinite"]


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

    Resumable: ``state_dict()`` says where the current epoch is (the generator's
    state when its permutation was drawn, and how many of its batches were handed
    out); after ``load_state_dict(state)`` the next ``iter()`` (or ``forever()``)
    continues that epoch with the very batches that would have come next.
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
        # Where the current epoch is: the generator's state before its permutation
        # was drawn, and the batches handed out so far; `_resume` is the order and
        # position an ``iter()`` continues from after ``load_state_dict``.
        self._epoch_rng_state, self._done, self._resume = None, 0, None

    def __len__(self) -> int:
        if self.drop_last:
            return self.n_samples // self.batch_size
        return -(-self.n_samples // self.batch_size)  # ceil

    def __iter__(self):
        """One epoch. The permutation is drawn now, when the epoch starts (after
        ``load_state_dict``: the rest of the epoch that was interrupted)."""
        if self._resume is not None:
            (order, self._done), self._resume = self._resume, None
            return self._epoch(order, self._done)
        self.epoch += 1
        self._epoch_rng_state = copy.deepcopy(self.rng.bit_generator.state)
        self._done = 0
        return self._epoch(self._permutation(), 0)

    def _permutation(self):
        if not self.shuffle:
            return None
        # Drawn on the host with NumPy so a seed gives the same order on both
        # backends, then sent to the device once per epoch.
        return self._xp.asarray(self.rng.permutation(self.n_samples))

    def _epoch(self, order, first):
        single = len(self.arrays) == 1
        for b in range(first, len(self)):
            start = b * self.batch_size
            stop = min(start + self.batch_size, self.n_samples)
            if order is None:
                batch = tuple(a[start:stop] for a in self.arrays)  # views, no copy
            else:
                idx = order[start:stop]
                batch = tuple(a[idx] for a in self.arrays)
            self._done = b + 1  # counted when handed out, so a state taken now skips it
            yield batch[0] if single else batch

    def state_dict(self) -> dict:
        """Where the batches are: a JSON-able dict for ``load_state_dict``."""
        return {"n_samples": self.n_samples, "batch_size": self.batch_size,
                "epoch": self.epoch, "batches_done": self._done,
                "epoch_rng": copy.deepcopy(self._epoch_rng_state),
                "rng": copy.deepcopy(self.rng.bit_generator.state)}

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state_dict()``'s point: the next ``iter()`` yields the rest
        of that epoch, the ones after it the epochs that would have followed.

        The data, batch size and shuffling must be the ones the state was taken with.
        """
        _check_state(state, "Minibatches", ("epoch", "batches_done", "epoch_rng", "rng"))
        for key in ("epoch", "batches_done"):
            value = state[key]
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ValueError(f"Minibatches state: {key!r} must be an integer >= 0, got "
                                 f"{value!r}")
        saved = (state.get("n_samples", self.n_samples), state.get("batch_size", self.batch_size))
        if saved != (self.n_samples, self.batch_size):
            raise ValueError(
                f"this state is of {saved[0]} samples in batches of {saved[1]}, but these "
                f"Minibatches have {self.n_samples} samples in batches of {self.batch_size}")
        if state["batches_done"] > len(self):
            raise ValueError(f"Minibatches state: 'batches_done' is {state['batches_done']} but "
                             f"an epoch has {len(self)} batches")
        _check_rng_state(self.rng, state["rng"], "Minibatches", "rng")
        if state["epoch_rng"] is not None:
            _check_rng_state(self.rng, state["epoch_rng"], "Minibatches", "epoch_rng")
        self.epoch, self._done = int(state["epoch"]), int(state["batches_done"])
        self._epoch_rng_state, self._resume = state["epoch_rng"], None
        if self._epoch_rng_state is not None and self._done < len(self):
            # Replay the interrupted epoch's permutation from its generator state.
            self.rng.bit_generator.state = copy.deepcopy(self._epoch_rng_state)
            self._resume = (self._permutation(), self._done)
        self.rng.bit_generator.state = copy.deepcopy(state["rng"])

    def forever(self):
        """Batches without end, epoch after epoch (each with its own permutation)."""
        return infinite(self)

    def __repr__(self) -> str:
        shapes = ", ".join(str(tuple(a.shape)) for a in self.arrays)
        return (
            f"Minibatches({shapes}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
            f"drop_last={self.drop_last}, backend={self.backend!r}, batches={len(self)})"
        )


class ToySampler:
    """Fresh samples of a toy distribution for every batch, without end; resumable.

        sampler = ToySampler(ring8(), batch_size=256, rng=0)
        x = next(sampler)               # (256, 2) on the current backend
        state = sampler.state_dict()    # its generator's state: all there is to it

    dataset: a ``ToyDataset``; rng: None, a seed or a NumPy Generator (advanced,
    not copied); backend: where the batches go (default: the current backend).
    """

    def __init__(self, dataset, batch_size: int, rng=None, backend: str | None = None,
                 dtype="float32"):
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) \
                or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
        self.dataset, self.batch_size = dataset, int(batch_size)
        self.rng = make_rng(rng)
        self.backend = get_backend() if backend is None else backend
        self.dtype = dtype

    def __iter__(self):
        return self

    def __next__(self):
        x = self.dataset.sample(self.batch_size, self.rng, dtype=self.dtype)
        return to_device(x, self.backend)

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        _check_state(state, "ToySampler", ("rng",))
        _check_rng_state(self.rng, state["rng"], "ToySampler", "rng")
        self.rng.bit_generator.state = copy.deepcopy(state["rng"])

    def __repr__(self) -> str:
        return (f"ToySampler({self.dataset!r}, batch_size={self.batch_size}, "
                f"backend={self.backend!r})")


def _check_state(state, owner, keys):
    if not isinstance(state, dict):
        raise TypeError(f"{owner}.load_state_dict expects the dict of state_dict(), got "
                        f"{type(state).__name__}")
    missing = [k for k in keys if k not in state]
    if missing:
        raise ValueError(f"{owner} state lacks {missing} (expected the dict of state_dict(), "
                         f"with {list(keys)})")


def _check_rng_state(rng, value, owner, key):
    """Try the generator state on a copy first: a bad one changes nothing."""
    probe = copy.deepcopy(rng.bit_generator)
    try:
        probe.state = copy.deepcopy(value)
    except (TypeError, ValueError, KeyError) as err:
        raise ValueError(f"{owner} state: {key!r} is not a state of this "
                         f"{type(rng.bit_generator).__name__} generator ({err})") from None


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
