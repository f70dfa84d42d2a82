"""The GAN training loop, one named method per idea.

One training step (Goodfellow et al. 2014, Algorithm 1, with the
non-saturating generator loss they recommend):

1. ``sample_noise(n)``        z ~ N(0, I), shape (n, latent_dim)
2. ``generate(z)``            x_fake = G(z)  (G caches its forward for step 4)
3. ``discriminator_step``     minimise  BCE(D(x_real), 1) + BCE(D(x_fake), 0)
                              over D's parameters; G is not touched
4. ``generator_step``         minimise  BCE(D(G(z)), 1)  over G's parameters:
                              D runs forward on x_fake, its backward with
                              ``param_grads=False`` gives dL/dx_fake, and that
                              gradient is fed into G's backward. D's parameters
                              and gradients are not changed.

``train_step(real)`` runs them in order and returns the numbers worth watching.
Everything is on logits: D ends in a Dense layer, never in a sigmoid.
"""

from __future__ import annotations

import csv
import math
import os
import tempfile
from collections.abc import Mapping

import numpy as np

from minigan import functional as F
from minigan.backend import array_module, backend_of, make_rng, to_device
from minigan.layers import BatchNorm1d

G_LOSSES = ("non-saturating", "minimax")


class History(Mapping):
    """Per-step records of a training run; ``history["d_loss"]`` is a NumPy array.

    A Mapping from metric name to an array over steps, so plots take it as is.
    """

    def __init__(self, records=None):
        self.records = list(records or [])

    def append(self, record):
        self.records.append(dict(record))

    def __getitem__(self, key):
        if not self.records or key not in self.records[0]:
            raise KeyError(key)
        return np.array([r[key] for r in self.records])

    def __iter__(self):
        return iter(self.records[0] if self.records else ())

    def __len__(self):
        return len(self.records[0]) if self.records else 0

    def __repr__(self):
        return f"History({len(self.records)} steps, keys={list(self)})"

    def to_csv(self, path):
        """Write one row per step, atomically (a temporary file renamed into place)."""
        path = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".history-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(self))
                writer.writeheader()
                writer.writerows(self.records)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise

    @classmethod
    def from_csv(cls, path):
        with open(path, newline="") as f:
            return cls([{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)])


def _contains_batchnorm(model):
    stack = [model]
    while stack:
        layer = stack.pop()
        if isinstance(layer, BatchNorm1d):
            return True
        stack.extend(getattr(layer, "layers", []))
    return False


def _sum_of_squares(pairs):
    """sum ||g||^2 over (param, grad) pairs, with one dot product each (no temporaries)."""
    total = 0.0
    for _, g in pairs:
        flat = g.reshape(-1)
        total += float(flat @ flat)
    return total


class GAN:
    """A generator G, a discriminator D (ending in a logit) and their optimisers.

    Args:
        generator: model mapping (n, latent_dim) noise to (n, data_dim) samples.
        discriminator: model mapping (n, data_dim) samples to (n, 1) logits.
        latent_dim: size of z.
        g_optimizer, d_optimizer: optimisers over G's and D's parameters.
        g_loss: "non-saturating" (maximise log D(G(z))) or "minimax" (minimise
            log(1 - D(G(z))), the saturating loss of the original paper).
        d_steps: discriminator steps per generator step (k of Algorithm 1).
        label_smoothing: one-sided: real targets become 1 - label_smoothing.
        rng: seed or NumPy Generator for the noise (host-side, so NumPy and
            CuPy runs draw the same numbers).
        track_grad_norms: report the gradient norms of D and G in ``train_step``.
    """

    def __init__(self, generator, discriminator, latent_dim, g_optimizer, d_optimizer,
                 g_loss="non-saturating", d_steps=1, label_smoothing=0.0, rng=None,
                 track_grad_norms=True):
        if g_loss not in G_LOSSES:
            raise ValueError(f"g_loss must be one of {G_LOSSES}, got {g_loss!r}")
        if not (isinstance(d_steps, int) and d_steps >= 1):
            raise ValueError(f"d_steps must be a positive int, got {d_steps!r}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.G, self.D = generator, discriminator
        self.latent_dim = int(latent_dim)
        self.g_optimizer, self.d_optimizer = g_optimizer, d_optimizer
        self.g_loss, self.d_steps = g_loss, d_steps
        self.label_smoothing = float(label_smoothing)
        self.rng = make_rng(rng)
        self.track_grad_norms = track_grad_norms
        self.step = 0
        self.history = History()
        self.hooks = []
        # Batch norm computes statistics over the batch, so real and fake must
        # then go through D separately; otherwise one pass of 2n rows is faster.
        self.joint_d_pass = not _contains_batchnorm(discriminator)

    # -- observation ------------------------------------------------------------
    def add_hook(self, fn):
        """Call ``fn(stage, arrays)`` after each named step; stage is one of
        "noise", "generate", "discriminator", "generator". Returns fn (for removal)."""
        self.hooks.append(fn)
        return fn

    def remove_hook(self, fn):
        self.hooks.remove(fn)

    def _emit(self, stage, **arrays):
        for fn in self.hooks:
            fn(stage, arrays)

    # -- the named steps --------------------------------------------------------
    @property
    def dtype(self):
        return self.G.dtype

    def sample_noise(self, n):
        """z ~ N(0, I) of shape (n, latent_dim), in G's dtype, on G's backend."""
        z = self.rng.standard_normal((n, self.latent_dim), dtype=np.float32)
        z = to_device(z.astype(self.dtype, copy=False), self.G.backend)
        self._emit("noise", z=z)
        return z

    def generate(self, z):
        """x_fake = G(z), in training mode; G keeps its cache for generator_step."""
        fake = self.G.forward(z)
        self._emit("generate", z=z, fake=fake)
        return fake

    def discriminator_step(self, real, fake):
        """One update of D on a real and a fake batch: minimise BCE(D(real), 1) + BCE(D(fake), 0).

        Returns d_loss (the sum of the two means), d_real = mean D(real) and
        d_fake = mean D(fake) as probabilities, and D's gradient norm.
        """
        if real.shape[1:] != fake.shape[1:]:
            raise ValueError(f"real samples have shape {real.shape[1:]} per row but fake "
                             f"ones {fake.shape[1:]}")
        xp = array_module(real, fake)
        real_target = 1.0 - self.label_smoothing
        self.D.zero_grad()
        if self.joint_d_pass:
            logits = self.D.forward(xp.concatenate([real, fake]))
            logits_real, logits_fake = logits[: len(real)], logits[len(real):]
            loss_real, dreal = F.bce_with_logits(logits_real, xp.full_like(logits_real, real_target))
            loss_fake, dfake = F.bce_with_logits(logits_fake, xp.zeros_like(logits_fake))
            self.D.backward(xp.concatenate([dreal, dfake]), input_grad=False)
        else:
            logits_real = self.D.forward(real)
            loss_real, dreal = F.bce_with_logits(logits_real, xp.full_like(logits_real, real_target))
            self.D.backward(dreal, input_grad=False)
            logits_fake = self.D.forward(fake)
            loss_fake, dfake = F.bce_with_logits(logits_fake, xp.zeros_like(logits_fake))
            self.D.backward(dfake, input_grad=False)
        grad_norm = math.sqrt(_sum_of_squares(self.D.parameters())) if self.track_grad_norms else float("nan")
        self.d_optimizer.step()
        stats = {
            "d_loss": float(loss_real + loss_fake),
            "d_real": float(F.sigmoid(logits_real).mean()),
            "d_fake": float(F.sigmoid(logits_fake).mean()),
            "d_grad_norm": grad_norm,
        }
        self._emit("discriminator", real=real, fake=fake, logits_real=logits_real,
                   logits_fake=logits_fake, dlogits_real=dreal, dlogits_fake=dfake)
        return stats

    def generator_loss(self, logits):
        """(loss, dL/dlogits) of the generator's loss on D's logits for fake samples.

        non-saturating: L = -mean log D(G(z)) = mean softplus(-l),  dL/dl = (s(l) - 1) / n
        minimax:        L =  mean log(1 - D(G(z))) = -mean softplus(l),  dL/dl = -s(l) / n
        where s is the sigmoid. When D confidently rejects the fakes (l << 0),
        s(l) ~ 0: the minimax gradient vanishes, the non-saturating one is ~ -1/n.
        """
        xp = array_module(logits)
        if self.g_loss == "non-saturating":
            return F.bce_with_logits(logits, xp.ones_like(logits))
        loss, dlogits = F.bce_with_logits(logits, xp.zeros_like(logits))
        dlogits *= -1.0
        return -loss, dlogits

    def generator_step(self, fake):
        """One update of G through D, from the fake batch of the last ``generate``.

        D's parameters and gradients are left exactly as they were.
        """
        # BEGIN SOLUTION Exercise 4.1: update G through D without touching D's parameters or gradients
        logits = self.D.forward(fake)
        g_loss, dlogits = self.generator_loss(logits)
        dfake = self.D.backward(dlogits, param_grads=False)
        self.G.zero_grad()
        self.G.backward(dfake, input_grad=False)
        grad_norm = math.sqrt(_sum_of_squares(self.G.parameters())) if self.track_grad_norms else float("nan")
        self.g_optimizer.step()
        # END SOLUTION
        self._emit("generator", fake=fake, logits=logits, dlogits=dlogits, dfake=dfake)
        return {"g_loss": float(g_loss), "g_grad_norm": grad_norm}

    def train_step(self, real_batch):
        """One full step: ``d_steps`` discriminator updates, then one generator update.

        ``real_batch`` is an (n, data_dim) array used for every D update, or a
        sequence of ``d_steps`` such arrays, one per update. Fresh noise is drawn
        for every D update; the generator update reuses the last fake batch
        (G's forward pass is done once per D update, never twice).
        Returns a dict of Python floats, also appended to ``self.history``.
        """
        batches = list(real_batch) if isinstance(real_batch, (list, tuple)) else [real_batch] * self.d_steps
        if len(batches) != self.d_steps:
            raise ValueError(f"got {len(batches)} real batches for d_steps={self.d_steps}")
        for real in batches:
            if real.dtype != self.dtype:
                raise TypeError(f"real batch is {real.dtype} but the models are {self.dtype}; "
                                f"convert it with x.astype('{self.dtype}')")
            if backend_of(real) != self.G.backend:
                raise ValueError(f"real batch is on {backend_of(real)} but the models are on "
                                 f"{self.G.backend}; use minigan.to_device(x, '{self.G.backend}')")
            z = self.sample_noise(len(real))
            fake = self.generate(z)
            d_stats = self.discriminator_step(real, fake)
        g_stats = self.generator_step(fake)
        self.step += 1
        record = {"step": self.step, **d_stats, **g_stats}
        self.history.append(record)
        return record

    def sample(self, n, rng=None):
        """n samples of G in evaluation mode (batch norm uses running statistics)."""
        z = self.rng.standard_normal((n, self.latent_dim), dtype=np.float32) if rng is None \
            else make_rng(rng).standard_normal((n, self.latent_dim), dtype=np.float32)
        z = to_device(z.astype(self.dtype, copy=False), self.G.backend)
        was_training = self.G.training
        self.G.eval()
        try:
            out = self.G.forward(z)
        finally:
            self.G.clear_cache()  # so a later generator_step cannot use this eval pass
            self.G.train(was_training)
        return out

    def discriminate(self, x):
        """D's probability that each row of x is real, in evaluation mode: (n, 1)."""
        was_training = self.D.training
        self.D.eval()
        try:
            return F.sigmoid(self.D.forward(x))
        finally:
            self.D.clear_cache()
            self.D.train(was_training)
