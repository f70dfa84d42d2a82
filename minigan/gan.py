"""The GAN training loop, one named method per idea.

One training step (Goodfellow et al. 2014, Algorithm 1):

1. ``sample_noise(n)``        z ~ N(0, I), shape (n, latent_dim)
2. ``generate(z)``            x_fake = G(z)  (G caches its forward for step 4)
3. ``discriminator_step``     minimise the loss's D half on a real and a fake
                              batch, over D's parameters; G is not touched
4. ``generator_step``         minimise the loss's G half over G's parameters:
                              D runs forward on x_fake, its backward with
                              ``param_grads=False`` gives dL/dx_fake, and that
                              gradient is fed into G's backward. D's parameters
                              and gradients are not changed.

``train_step(real)`` runs them in order and returns the numbers worth watching.
D ends in a Dense layer (a logit or a score), never in a sigmoid: the loss
object knows how to read it.

Variants are objects, not flags, so the loop above reads the same for all of them:

* the adversarial loss: ``minigan.gan_losses`` (``NonSaturating``, ``Minimax``,
  ``LeastSquares``, ``Wasserstein``, ``Hinge``), passed as ``loss=``;
* packing (PacGAN): a ``Pack(m)`` layer in D (first, or after the DCGAN's reshape);
* a moving average of G's weights to sample from: ``EMA(G, decay)``, passed as ``ema=``;
* a regulariser of D, passed as ``regularizer=``: a gradient penalty,
  ``GradientPenalty`` (WGAN-GP) or ``R1`` of ``minigan.penalty``, whose gradient
  comes from a hand-written double backward through D;
* spectral normalisation of D's layers: ``SpectralNorm(Dense(...))`` inside D;
* conditioning on class labels: ``ConditionalGAN``, below, where the labels ride
  along with the samples as one-hot columns.
"""

from __future__ import annotations

import copy
import csv
import numbers
from collections.abc import Mapping

import numpy as np

from minigan import kernels
from minigan._atomic import atomic_open
from minigan.backend import array_module, backend_of, make_rng, to_device, to_floats
from minigan.gan_losses import NonSaturating
from minigan.layers import BatchNorm1d, Layer, Pack, forward_in_eval_mode

__all__ = ["GAN", "ConditionalGAN", "EMA", "History", "LabelledGenerator"]


class History(Mapping):
    """Per-step records of a training run; ``history["d_loss"]`` is a NumPy array.

    A Mapping from metric name to an array over steps, so plots take it as is.
    ``append`` keeps the record itself (not a copy), so whoever receives the
    record from ``train_step`` may add columns to it (the training run adds
    gradient norms and learning rates).
    """

    def __init__(self, records=None):
        self.records = list(records or [])

    def append(self, record):
        self.records.append(record)

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
        with atomic_open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(self))
            writer.writeheader()
            writer.writerows(self.records)

    @classmethod
    def from_csv(cls, path):
        with open(path, newline="") as f:
            return cls([{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)])


class EMA:
    """An exponential moving average of a generator's weights (Yazici et al. 2019).

    ``EMA(G, decay)`` keeps ``ema.G``, a copy of G; after every update of G,
    ``ema.update(G)`` moves each of its parameters towards G's:
        ema <- beta ema + (1 - beta) theta,   beta = min(decay, (1 + t) / (10 + t))
    at update t = 1, 2, ... The ramp lets the average forget G's random initial
    weights quickly; later beta = decay and the average spans about 1 / (1 - decay)
    updates. Buffers (batch norm's running statistics) are copied, not averaged.
    Samples of the average are often sharper than G's own: it smooths out the
    generator's last oscillations around the equilibrium.
    """

    def __init__(self, model, decay=0.999):
        if not isinstance(model, Layer):
            raise TypeError(f"EMA: expected the generator (a minigan Layer), got "
                            f"{type(model).__name__}")
        decay = float(decay)
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA: decay must be in (0, 1), got {decay}")
        model.clear_cache()  # a copied cache would be a stale one
        self.G = copy.deepcopy(model)
        self.decay = decay
        self.updates = 0

    def update(self, model):
        """One step of the average towards ``model`` (the generator being trained)."""
        self.updates += 1
        t = self.updates
        beta = min(self.decay, (1.0 + t) / (10.0 + t))
        for (e, _), (p, _) in zip(self.G.parameters(), model.parameters()):
            kernels.ema_update(e, p, beta)
        for e_layer, layer in zip(self.G.modules(), model.modules()):
            for k, v in layer.buffers.items():
                e_layer.buffers[k][...] = v

    def __repr__(self):
        return f"EMA(decay={self.decay:g}, updates={self.updates})"


def _pack_degree(model):
    """m of the first ``Pack(m)`` layer in the model (1 when D does not pack)."""
    for layer in model.modules():
        if isinstance(layer, Pack):
            return layer.m
    return 1


def check_layers_used_once(generator, discriminator):
    """Refuse a layer object that appears twice in G and D together.

    A layer keeps one forward cache: used twice in one pass, its second forward
    overwrites the first's cache, and the backward computes wrong gradients (or
    stops with a misleading "backward without forward"). Build a new layer for
    each place instead.
    """
    seen = {}
    for who, model in (("G", generator), ("D", discriminator)):
        for name, layer in model.named_modules():
            first = seen.setdefault(id(layer), (who, name or "(the whole model)"))
            if first != (who, name or "(the whole model)"):
                raise ValueError(
                    f"the same {type(layer).__name__} object is used twice: as {first[0]} "
                    f"layer {first[1]!r} and as {who} layer {name!r}. A layer keeps the cache of "
                    "one forward pass, so each place needs its own layer: build a new one "
                    "(or copy.deepcopy it).")


class GAN:
    """A generator G, a discriminator D and their optimisers: the training loop.

    Args:
        generator: model mapping (n, latent_dim) noise to (n, ...) samples.
        discriminator: model mapping (n, ...) samples to (n, 1) raw outputs
            (logits for the cross-entropy losses, scores for least squares).
        latent_dim: size of z.
        g_optimizer, d_optimizer: optimisers over G's and D's parameters.
        loss: a loss object of ``minigan.gan_losses`` (default ``NonSaturating()``).
        d_steps: discriminator updates per generator update (k of Algorithm 1).
        regularizer: None, or a callable ``regularizer(D, real, fake) -> loss``
            that adds the gradient of a penalty on D into D's grads (a gradient
            penalty); its value is reported as ``d_penalty``.
        rng: seed or generator for the noise. A NumPy Generator (the default)
            draws on the host, so NumPy and CuPy runs get the same numbers; a CuPy
            generator draws on the GPU (faster at large batches, but a
            checkpoint cannot carry its state).
        ema: None, or an ``EMA(generator, decay)``: updated after every G step
            and used by ``sample``.
    """

    def __init__(self, generator, discriminator, latent_dim, g_optimizer, d_optimizer,
                 loss=None, d_steps=1, regularizer=None, rng=None, ema=None):
        for name, model in (("generator", generator), ("discriminator", discriminator)):
            if not isinstance(model, Layer):
                raise TypeError(f"{name} must be a minigan Layer (e.g. a Sequential), got "
                                f"{type(model).__name__}")
        if generator is discriminator:
            raise ValueError("the generator and the discriminator are the same object; "
                             "build two networks")
        if isinstance(d_steps, bool) or not isinstance(d_steps, numbers.Integral) or d_steps < 1:
            raise ValueError(f"d_steps must be a positive int, got {d_steps!r}")
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, numbers.Integral) \
                or latent_dim < 1:
            raise ValueError(f"latent_dim must be a positive int, got {latent_dim!r}")
        check_layers_used_once(generator, discriminator)
        for who, opt, model in (("G", g_optimizer, generator), ("D", d_optimizer, discriminator)):
            if hasattr(opt, "check_holds"):
                opt.check_holds(model, who)
        if ema is not None and not isinstance(ema, EMA):
            raise TypeError(f"ema must be None or an EMA(generator, decay), got {ema!r}")
        self.G, self.D = generator, discriminator
        self.latent_dim = int(latent_dim)
        self.g_optimizer, self.d_optimizer = g_optimizer, d_optimizer
        self.loss = NonSaturating() if loss is None else loss
        self.d_steps = int(d_steps)
        self.regularizer = regularizer
        self.rng = rng if hasattr(rng, "standard_normal") else make_rng(rng)
        self.ema = ema
        self.step = 0
        self.history = History()
        # what the discriminator step needs to know of D's layers, looked up once
        self._d_pack = _pack_degree(discriminator)
        self._d_batchnorm = any(isinstance(m, BatchNorm1d) for m in discriminator.modules())

    def __repr__(self):
        parts = [f"latent_dim={self.latent_dim}", f"loss={self.loss!r}"]
        if self.d_steps != 1:
            parts.append(f"d_steps={self.d_steps}")
        if self.regularizer is not None:
            parts.append(f"regularizer={self.regularizer!r}")
        if self.ema is not None:
            parts.append(f"ema={self.ema!r}")
        return f"{type(self).__name__}({', '.join(parts)}, step={self.step})"

    @property
    def dtype(self):
        return self.G.dtype

    # -- the named steps --------------------------------------------------------
    def sample_noise(self, n):
        """z ~ N(0, I) of shape (n, latent_dim), in G's dtype, on G's backend."""
        z = self.rng.standard_normal((n, self.latent_dim), dtype=np.float32)
        return to_device(z.astype(self.dtype, copy=False), self.G.backend)

    def generate(self, z):
        """x_fake = G(z), in training mode; G keeps its cache for ``generator_step``."""
        return self.G.forward(z)

    def discriminator_step(self, real, fake):
        """One update of D on a real and a fake batch, minimising ``loss.discriminator``.

        Returns d_loss, and d_real / d_fake: the mean of ``loss.score`` over each
        batch (D's mean probability of "real" for the cross-entropy losses).
        """
        self.D.zero_grad()
        # D judges both batches; its backward adds dL_D/dtheta_D into D's grads
        d_loss, real_out, fake_out = self._d_forward_backward(real, fake)
        watch = {"d_loss": d_loss, "d_real": self.loss.score(real_out).mean(),
                 "d_fake": self.loss.score(fake_out).mean()}
        if self.regularizer is not None:
            # e.g. a gradient penalty: it adds its own gradient into D's grads
            watch["d_penalty"] = self.regularizer(self.D, real, fake)
        self.d_optimizer.step()
        return dict(zip(watch, to_floats(list(watch.values()))))

    def _d_forward_backward(self, real, fake):
        """(loss, D(real), D(fake)), with D's parameter gradients of the loss added.

        One pass over 2n rows is faster than two passes of n. Batch norm, though,
        normalises with the statistics of its batch, so a D with batch norm must
        see real and fake apart (else each batch would be normalised with the
        other's statistics too). Then, as each layer holds one cache at a time,
        the real batch's caches are set aside while the fake batch goes through.
        """
        xp = array_module(real, fake)
        m = self._d_pack  # D gives one output per pack of m samples
        if not self._d_batchnorm and len(real) % m == 0 and len(fake) % m == 0:  # no pack mixes the two
            out = self.D.forward(xp.concatenate([real, fake]))
            real_out, fake_out = out[: len(real) // m], out[len(real) // m:]
            loss, d_real, d_fake = self.loss.discriminator(real_out, fake_out)
            self.D.backward(xp.concatenate([d_real, d_fake]), input_grad=False)
            return loss, real_out, fake_out
        real_out = self.D.forward(real)
        real_caches = [m._cache for m in self.D.modules()]
        fake_out = self.D.forward(fake)
        loss, d_real, d_fake = self.loss.discriminator(real_out, fake_out)
        self.D.backward(d_fake, input_grad=False)
        for m, cache in zip(self.D.modules(), real_caches):
            m._cache = cache
        self.D.backward(d_real, input_grad=False)
        return loss, real_out, fake_out

    def generator_step(self, fake):
        """One update of G through D, from the fake batch of the last ``generate``.

        D's parameters and gradients are left exactly as they were.
        """
        # BEGIN SOLUTION Exercise 4.1: update G through D without touching D's parameters or gradients
        # D judges the fakes; the loss says which way each of D's outputs should move
        fake_out = self.D.forward(fake)
        g_loss, d_fake_out = self.loss.generator(fake_out)
        # D's backward carries that to the samples: dL/dfake. D is only a
        # messenger here, so its own parameter gradients are not computed
        dfake = self.D.backward(d_fake_out, param_grads=False)
        # G's backward (G cached its forward in generate) gives dL/dtheta_G
        self.G.zero_grad()
        self.G.backward(dfake, input_grad=False)
        self.g_optimizer.step()
        # END SOLUTION
        return {"g_loss": float(g_loss)}

    def train_step(self, real):
        """One full step: ``d_steps`` discriminator updates, then one generator update.

        ``real`` is a batch of real samples used for every D update, or a list
        of ``d_steps`` batches, one per update. Fresh noise is drawn for every D
        update; the generator update reuses the last fake batch (G runs forward
        once per D update, never twice). Returns a dict of Python floats (and
        the step), which is also appended to ``self.history``.
        """
        batches = real if isinstance(real, list) else [real] * self.d_steps
        if isinstance(real, list) and not all(hasattr(b, "shape") for b in real):
            raise TypeError(
                "a real batch must be an array (n, ...), got a Python list; convert it with "
                f"np.asarray(x, dtype='{self.dtype}'). (A list is for d_steps > 1: one "
                "array per discriminator update.)")
        if len(batches) != self.d_steps:
            raise ValueError(f"got {len(batches)} real batches for d_steps={self.d_steps}")
        for real in batches:
            self._check_batch(real)
            fake = self.generate(self.sample_noise(len(real)))
            d_stats = self.discriminator_step(real, fake)
        g_stats = self.generator_step(fake)
        if self.ema is not None:
            self.ema.update(self.G)
        self.step += 1
        record = {"step": self.step, **d_stats, **g_stats}
        self.history.append(record)
        return record

    def _check_batch(self, real):
        if not hasattr(real, "dtype") or not hasattr(real, "shape"):
            raise TypeError(f"a real batch must be an array (n, ...), got {type(real).__name__}")
        if real.dtype != self.dtype:
            raise TypeError(f"real batch is {real.dtype} but the models are {self.dtype}; "
                            f"convert it with x.astype('{self.dtype}')")
        if backend_of(real) != self.G.backend:
            raise ValueError(f"real batch is on {backend_of(real)} but the models are on "
                             f"{self.G.backend}; use minigan.to_device(x, '{self.G.backend}')")
        if len(real) == 0:
            raise ValueError("the real batch is empty (0 samples)")

    # -- using the trained models ------------------------------------------------
    def sample(self, n, rng=None, ema=True):
        """n samples of G in evaluation mode (batch norm uses running statistics).

        With an ``EMA``, the moving-average generator is used unless ``ema=False``.
        ``rng`` (a seed or generator) draws the noise instead of the GAN's own.
        """
        return forward_in_eval_mode(self._sampler(ema), self._noise_for_sampling(n, rng))

    def _noise_for_sampling(self, n, rng):
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
            raise ValueError(f"n must be a non-negative int, got {n!r}")
        rng = self.rng if rng is None else make_rng(rng)
        z = rng.standard_normal((int(n), self.latent_dim), dtype=np.float32)
        return to_device(z.astype(self.dtype, copy=False), self.G.backend)

    def _sampler(self, ema):
        return self.ema.G if (ema and self.ema is not None) else self.G

    def discriminate(self, x, packed=False):
        """D's opinion of each row of x in evaluation mode, ``loss.score``: (n, 1).

        A probability of "real" for the cross-entropy losses, the raw score for
        least squares. When D packs m samples (``Pack(m)``), each row is judged
        as a pack of m copies of itself, so a decision surface can be drawn;
        ``packed=True`` judges consecutive groups of m rows instead, (n/m, 1).
        """
        m = self._d_pack
        if m > 1 and not packed:
            x = array_module(x).repeat(x, m, axis=0)
        return self.loss.score(forward_in_eval_mode(self.D, x))


# ------------------------------------------------------------------- conditional


class LabelledGenerator(Layer):
    """A conditional generator that hands its labels on: [z, y] -> [G([z, y]), y].

    y is the one-hot label block, the last ``n_classes`` columns of the input.
    With it, a fake sample leaves G with its label attached, exactly as a real
    sample is shown to D, and the GAN loop needs no change at all.
    Backward: the output's label columns are a copy of the input's, so their
    gradient flows straight back to the input's label columns (labels are
    constants to the optimiser; the gradient is there for gradient checks):
        dL/d[z, y] = G.backward(dL/dx) + [0, dL/dy]
    """

    def __init__(self, generator, n_classes):
        super().__init__()
        self.net, self.n_classes = generator, int(n_classes)

    def named_children(self):
        return [("", self.net)]  # "": parameter names are the generator's own

    def forward(self, z):
        labels = z[:, z.shape[1] - self.n_classes:]
        x = self.net.forward(z)
        out = array_module(x).concatenate([x, labels], axis=1)
        self._save_cache(None, out)
        return out

    def backward(self, dout, param_grads=True, input_grad=True):
        self._pop_cache(dout)
        dx, dlabels = dout[:, : dout.shape[1] - self.n_classes], dout[:, dout.shape[1] - self.n_classes:]
        dz = self.net.backward(dx, param_grads=param_grads, input_grad=input_grad)
        if input_grad:
            dz[:, dz.shape[1] - self.n_classes:] += dlabels
        return dz

    def short_repr(self):
        return f"LabelledGenerator({self.net.short_repr()}, n_classes={self.n_classes})"


class ConditionalGAN(GAN):
    """A conditional GAN (Mirza and Osindero 2014): G and D both see a class label.

    G gets [z, onehot(y)] (width latent_dim + n_classes) and D gets
    [x, onehot(y)] (width data_dim + n_classes per sample, before any packing).
    Everything conditional happens here, in one place: a sample carries its
    label as one-hot columns, G is wrapped in a ``LabelledGenerator`` that
    passes them on, and the loop of ``GAN`` runs unchanged.

    ``train_step((x, labels))`` takes a real batch with its int labels (n,)
    (what ``Minibatches(x, y)`` yields); fake batches get labels drawn
    uniformly. ``sample(n, labels)`` draws the classes you ask for. A gradient
    penalty or R1 given as ``regularizer`` with ``features=None`` gets
    ``features = data_dim`` at the first step: its norm is over x, not the label.
    ``gan.G`` is the wrapper; ``gan.G.net`` is the generator you built.
    """

    def __init__(self, generator, discriminator, latent_dim, n_classes, g_optimizer,
                 d_optimizer, **kwargs):
        if isinstance(n_classes, bool) or not isinstance(n_classes, numbers.Integral) \
                or n_classes < 2:
            raise ValueError(f"n_classes must be an int >= 2, got {n_classes!r}")
        self.n_classes = int(n_classes)
        super().__init__(LabelledGenerator(generator, n_classes), discriminator, latent_dim,
                         g_optimizer, d_optimizer, **kwargs)
        if self.ema is not None and not isinstance(self.ema.G, LabelledGenerator):
            # the average follows G layer for layer, wrapper included
            self.ema.G = LabelledGenerator(self.ema.G, n_classes)

    def one_hot(self, labels):
        """(n, n_classes) one-hot rows in G's dtype on G's backend, from int labels (n,)."""
        xp = array_module(self.G.parameters()[0][0])
        labels = to_device(labels, self.G.backend) if hasattr(labels, "shape") \
            else xp.asarray(labels)
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise TypeError(f"labels must be a 1-D array of ints (class indices), got "
                            f"{labels.dtype} of shape {tuple(labels.shape)}")
        if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= self.n_classes):
            raise ValueError(f"labels must lie in 0..{self.n_classes - 1} (n_classes="
                             f"{self.n_classes}), got values from {int(labels.min())} "
                             f"to {int(labels.max())}")
        out = xp.zeros((labels.shape[0], self.n_classes), dtype=self.dtype)
        out[xp.arange(labels.shape[0]), labels] = 1.0
        return out

    def with_labels(self, x, labels):
        """[x, onehot(labels)]: a sample as D sees it."""
        if len(labels) != len(x):
            raise ValueError(f"got {len(labels)} labels for {len(x)} samples")
        return array_module(x).concatenate([x, self.one_hot(labels)], axis=1)

    def sample_noise(self, n, labels=None):
        """G's input [z, onehot(y)], with labels drawn uniformly unless given."""
        if labels is None:
            labels = self.rng.integers(0, self.n_classes, n)
        return self.with_labels(super().sample_noise(n), labels)

    def train_step(self, real, labels=None):
        """``train_step((x, labels))`` or ``train_step(x, labels)``; with d_steps=k, a
        list of k (x, labels) pairs."""
        if labels is not None:
            real = (real, labels)
        pairs = real if isinstance(real, list) else [real]
        if not all(isinstance(p, tuple) and len(p) == 2 for p in pairs):
            raise ValueError(f"this GAN is conditional (n_classes={self.n_classes}): call "
                             "train_step((x, labels)) with integer labels of shape (n,)")
        batches = [self.with_labels(x, y) for x, y in pairs]
        if getattr(self.regularizer, "features", False) is None:
            # a penalty on D's slope in the label columns would teach D to ignore the
            # label: the norm runs over the sample's own numbers (features = data_dim)
            self.regularizer.features = int(pairs[0][0].shape[1])
        return super().train_step(batches if isinstance(real, list) else batches[0])

    def sample(self, n, labels=None, rng=None, ema=True):
        """n samples (n, data_dim) of the classes in ``labels``: an int for n samples
        of one class, an int array (n,), or None to cycle 0, 1, ..., C-1, 0, ...
        so that every class gets n/C samples."""
        z = self._noise_for_sampling(n, rng)
        if labels is None:
            labels = np.arange(n) % self.n_classes
        elif isinstance(labels, numbers.Integral):
            labels = np.full(n, int(labels))
        return forward_in_eval_mode(self._sampler(ema).net, self.with_labels(z, labels))

    def discriminate(self, x, labels=None, packed=False):
        """D's opinion of samples x of the classes ``labels`` (see ``GAN.discriminate``)."""
        if labels is None:
            raise ValueError("a conditional D judges a sample with its label: pass labels")
        if isinstance(labels, numbers.Integral):
            labels = np.full(len(x), int(labels))
        return super().discriminate(self.with_labels(x, labels), packed=packed)
