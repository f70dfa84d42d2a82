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

Beyond the vanilla GAN, three options change what D sees or what it is trained on:

* ``pack=m`` (PacGAN, Lin et al. 2018): D judges m samples at once. A batch of n
  rows of width d becomes n/m rows of width m*d (consecutive rows side by side),
  real and fake alike, so D's input width is m*d. A generator that collapses onto
  a few modes makes packs whose members look alike, which D can spot although
  each sample alone looks real: packing penalises mode collapse.
* ``n_classes=C`` (conditional GAN, Mirza and Osindero 2014): a one-hot label is
  concatenated to G's noise (width latent_dim + C) and to every sample D sees
  (width d + C per sample, before packing).
* ``loss="lsgan"`` (least squares, Mao et al. 2017): D's raw output is regressed
  onto b = 1 for real and a = 0 for fake, and G pushes D(G(z)) towards c = 1.

``ema_decay`` keeps an exponential moving average of G's parameters, used by
``sample``; ``check_finite`` is the divergence guard a training loop calls.
"""

from __future__ import annotations

import copy
import csv
import math
import numbers
from collections.abc import Mapping

import numpy as np

from minigan import _fused
from minigan import functional as F
from minigan._atomic import atomic_open
from minigan.backend import array_module, backend_of, make_rng, to_device, to_numpy
from minigan.layers import BatchNorm1d, forward_in_eval_mode

G_LOSSES = ("non-saturating", "minimax", "lsgan")
D_LOSSES = ("bce", "lsgan")
LOSSES = ("bce", "lsgan")


class DivergenceError(FloatingPointError):
    """Training produced a NaN or inf loss (or parameter): the run cannot recover."""


def check_finite(record, gan=None):
    """The divergence guard: raise ``DivergenceError`` if a step's losses are not finite.

    ``record`` is the dict ``train_step`` returns. With ``gan``, every parameter
    of G and D is checked too (call it before saving a checkpoint: a step can
    report finite losses, computed before its update, and still leave NaN weights
    behind). Once a NaN is in the weights every later step is NaN too, so a
    training loop should stop, keep its last good checkpoint and say so.
    """
    bad = {k: v for k, v in record.items()
           if k in ("d_loss", "g_loss") and not math.isfinite(float(v))}
    step = record.get("step", "?")
    if bad:
        values = ", ".join(f"{k}={v}" for k, v in bad.items())
        raise DivergenceError(
            f"training diverged at step {step}: {values} (a loss became NaN or inf). "
            "Try a lower learning rate, label smoothing, or check the data for NaN/inf.")
    if gan is not None:
        for who, model in (("G", gan.G), ("D", gan.D)):
            for name, p, _ in model.named_parameters():
                # one reduction per array: sum is NaN/inf as soon as any entry is
                if not math.isfinite(float(p.sum())):
                    raise DivergenceError(
                        f"training diverged at step {step}: {who}'s parameter {name!r} holds "
                        "NaN or inf. Try a lower learning rate.")


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
        with atomic_open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(self))
            writer.writeheader()
            writer.writerows(self.records)

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


def _dense_layers(model):
    """The Dense layers of a model, in forward order (depth first through Sequentials)."""
    from minigan.layers import Dense

    found, stack = [], [model]
    while stack:
        layer = stack.pop()
        if isinstance(layer, Dense):
            found.append(layer)
        stack.extend(reversed(getattr(layer, "layers", [])))
    return found


def _check_widths(G, D, latent_dim, pack, n_classes):
    """Where G and D are built from Dense layers, check the input widths the options imply."""
    g_dense, d_dense = _dense_layers(G), _dense_layers(D)
    if g_dense and g_dense[0].in_features != latent_dim + n_classes:
        extra = f" + n_classes {n_classes}" if n_classes else ""
        raise ValueError(
            f"G's first layer takes {g_dense[0].in_features} inputs but latent_dim "
            f"{latent_dim}{extra} = {latent_dim + n_classes}")
    if g_dense and d_dense:
        data_dim = g_dense[-1].out_features
        want = pack * (data_dim + n_classes)
        if d_dense[0].in_features != want:
            per = f"(data_dim {data_dim} + n_classes {n_classes})" if n_classes else f"data_dim {data_dim}"
            raise ValueError(
                f"D's first layer takes {d_dense[0].in_features} inputs but with pack={pack} "
                f"it sees {pack} x {per} = {want} (build D with that input width)")


def _all_layers(model):
    """Every layer of a model, depth first, in a stable order."""
    out, stack = [], [model]
    while stack:
        layer = stack.pop()
        out.append(layer)
        stack.extend(reversed(getattr(layer, "layers", [])))
    return out


def _sum_of_squares(pairs):
    """sum ||g||^2 over (param, grad) pairs, with one dot product each (no temporaries)."""
    squares = [g.reshape(-1) @ g.reshape(-1) for _, g in pairs]
    if not squares:
        return 0.0
    return float(_to_floats(squares).sum())


def _to_floats(scalars):
    """0-d arrays (on one backend) -> a float64 NumPy vector, in ONE device-to-host
    copy: on a GPU each float(x) would wait for the GPU to finish its queue."""
    return to_numpy(array_module(*scalars).stack(scalars)).astype(np.float64)


def _bce_with_logits(logits, target):
    """functional.bce_with_logits against the same target (a number) for every entry;
    on a GPU in two fused kernels, without an array of targets."""
    if _fused.applies(logits):
        return _fused.bce_with_logits(logits, float(target))
    return F.bce_with_logits(logits, array_module(logits).full_like(logits, target))


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
        device_noise: draw the training noise on the GPU with CuPy's generator
            (seeded from ``rng``) instead of on the host and copying it over:
            faster at large batches, but not the host generator's numbers, and
            a checkpoint does not carry its state. Needs the models on CuPy.
            ``sample`` always uses the host generator.
        track_grad_norms: report the gradient norms of D and G in ``train_step``.
        pack: PacGAN's packing degree m: D sees m samples side by side, so its
            input width is m * data_dim and every batch size must be a multiple of m.
        n_classes: for a conditional GAN, the number of classes C: G's input width
            is latent_dim + C and D's is pack * (data_dim + C); ``train_step`` then
            needs labels. None (or 0) for an unconditional GAN.
        d_loss: "bce" (on logits) or "lsgan" (least squares on raw outputs).
        loss: shorthand for both losses: "bce" (the default pair) or "lsgan"
            (d_loss = g_loss = "lsgan").
        ema_decay: if > 0, keep ``G_ema``, an exponential moving average of G's
            parameters, ema <- beta ema + (1 - beta) theta after every generator
            update with beta = min(ema_decay, (1 + t) / (10 + t)) at update t (the
            ramp stops G's random initial weights from lingering early on).
            ``sample`` uses it. 0 turns it off.
    """

    def __init__(self, generator, discriminator, latent_dim, g_optimizer, d_optimizer,
                 g_loss="non-saturating", d_steps=1, label_smoothing=0.0, rng=None,
                 track_grad_norms=True, pack=1, n_classes=None, d_loss="bce", loss=None,
                 ema_decay=0.0, device_noise=False):
        if loss is not None:
            if loss not in LOSSES:
                raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
            if loss == "lsgan":
                if g_loss not in ("non-saturating", "lsgan") or d_loss not in ("bce", "lsgan"):
                    raise ValueError(f"loss='lsgan' sets both losses; it cannot be combined with "
                                     f"g_loss={g_loss!r}, d_loss={d_loss!r}")
                g_loss = d_loss = "lsgan"
        if g_loss not in G_LOSSES:
            raise ValueError(f"g_loss must be one of {G_LOSSES}, got {g_loss!r}")
        if d_loss not in D_LOSSES:
            raise ValueError(f"d_loss must be one of {D_LOSSES}, got {d_loss!r}")
        if (g_loss == "lsgan") != (d_loss == "lsgan"):
            # BCE reads D's output as a logit, least squares as a score with targets
            # 0 and 1: mixing them trains G against a D output it misreads.
            raise ValueError(f"g_loss={g_loss!r} and d_loss={d_loss!r} do not match: use "
                             "loss='lsgan' for both least-squares losses, or the BCE pair")
        if isinstance(pack, bool) or not isinstance(pack, numbers.Integral) or pack < 1:
            raise ValueError(f"pack must be a positive int (samples per discriminator input), "
                             f"got {pack!r}")
        if n_classes is not None and (isinstance(n_classes, bool)
                                      or not isinstance(n_classes, numbers.Integral)
                                      or n_classes < 0 or n_classes == 1):
            raise ValueError(f"n_classes must be None (unconditional) or an int >= 2, "
                             f"got {n_classes!r}")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) (0 turns the average off), "
                             f"got {ema_decay}")
        if not (isinstance(d_steps, int) and d_steps >= 1):
            raise ValueError(f"d_steps must be a positive int, got {d_steps!r}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.G, self.D = generator, discriminator
        self.latent_dim = int(latent_dim)
        self.g_optimizer, self.d_optimizer = g_optimizer, d_optimizer
        self.g_loss, self.d_steps = g_loss, d_steps
        self.d_loss = d_loss
        self.label_smoothing = float(label_smoothing)
        self.pack = int(pack)
        self.n_classes = int(n_classes or 0)
        _check_widths(generator, discriminator, self.latent_dim, self.pack, self.n_classes)
        self.ema_decay = float(ema_decay)
        self.ema_updates = 0
        self.G_ema = None
        if self.ema_decay > 0:
            generator.clear_cache()
            self.G_ema = copy.deepcopy(generator)
        self.rng = make_rng(rng)
        self.device_noise = bool(device_noise)
        self._device_rng = None
        if self.device_noise and generator.backend != "cupy":
            raise ValueError(f"device_noise=True draws the noise with CuPy on the GPU, but G is "
                             f"on {generator.backend}; move the models with .to('cupy')")
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

    @property
    def conditional(self):
        return self.n_classes > 0

    def one_hot(self, labels, n=None):
        """(n, n_classes) one-hot rows in G's dtype on G's backend, from int labels (n,)."""
        xp = array_module(self.G.parameters()[0][0])
        labels = to_device(labels, self.G.backend) if hasattr(labels, "shape") \
            else xp.asarray(labels)
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise TypeError(f"labels must be a 1-D array of ints (class indices), got "
                            f"{labels.dtype} of shape {tuple(labels.shape)}")
        if n is not None and labels.shape[0] != n:
            raise ValueError(f"got {labels.shape[0]} labels for {n} samples")
        if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= self.n_classes):
            raise ValueError(f"labels must lie in 0..{self.n_classes - 1} (n_classes="
                             f"{self.n_classes}), got values from {int(labels.min())} "
                             f"to {int(labels.max())}")
        out = xp.zeros((labels.shape[0], self.n_classes), dtype=self.dtype)
        out[xp.arange(labels.shape[0]), labels] = 1.0
        return out

    def sample_labels(self, n):
        """n class labels drawn uniformly from the GAN's generator, for fake batches."""
        return to_device(self.rng.integers(0, self.n_classes, n), self.G.backend)

    def _need_labels(self, labels, what):
        if self.conditional and labels is None:
            raise ValueError(f"{what}: this GAN is conditional (n_classes={self.n_classes}) and "
                             "needs labels")
        if not self.conditional and labels is not None:
            raise ValueError(f"{what}: labels given but this GAN is unconditional; build it "
                             "with n_classes=C to condition on them")

    def discriminator_input(self, x, labels=None):
        """What D sees of the samples x (n, d): the labels' one-hot rows appended
        (conditional GAN), then m consecutive rows side by side (packing):
        (n/m, m * (d + C)). For a plain GAN this is x itself."""
        self._need_labels(labels, "discriminator_input")
        if self.conditional:
            xp = array_module(x)
            x = xp.concatenate([x, self.one_hot(labels, len(x))], axis=1)
        if self.pack == 1:
            return x
        n, width = x.shape
        if n % self.pack:
            raise ValueError(f"a batch of {n} samples cannot be packed in groups of "
                             f"pack={self.pack}: use a batch size divisible by {self.pack}")
        # Row-major reshape puts rows k*m .. k*m + m-1 side by side in packed row k.
        return x.reshape(n // self.pack, self.pack * width)

    def sample_gradient(self, dinput):
        """Map dL/d(D's input) back to dL/d(samples) (n, d): undo the packing (a
        reshape, so the gradient is the same numbers reshaped) and drop the label
        columns (labels are constants). The inverse of ``discriminator_input``."""
        if self.pack > 1:
            dinput = dinput.reshape(dinput.shape[0] * self.pack, dinput.shape[1] // self.pack)
        if self.conditional:
            dinput = dinput[:, : dinput.shape[1] - self.n_classes]
        return dinput

    def sample_noise(self, n):
        """z ~ N(0, I) of shape (n, latent_dim), in G's dtype, on G's backend."""
        if self.device_noise:
            if self._device_rng is None:
                import cupy

                self._device_rng = cupy.random.RandomState(int(self.rng.integers(2 ** 63)))
            z = self._device_rng.standard_normal((n, self.latent_dim), dtype=self.dtype)
        else:
            z = self.rng.standard_normal((n, self.latent_dim), dtype=np.float32)
            z = to_device(z.astype(self.dtype, copy=False), self.G.backend)
        self._emit("noise", z=z)
        return z

    def generate(self, z, labels=None):
        """x_fake = G(z) (G([z, onehot(labels)]) when conditional), in training mode;
        G keeps its cache for generator_step."""
        self._need_labels(labels, "generate")
        g_in = z
        if self.conditional:
            xp = array_module(z)
            g_in = xp.concatenate([z, self.one_hot(labels, len(z))], axis=1)
        fake = self.G.forward(g_in)
        self._emit("generate", z=z, fake=fake)
        return fake

    def _d_loss(self, out, target):
        """(mean loss, dL/dout) of D's output against a constant target."""
        if self.d_loss == "lsgan":
            return F.least_squares(out, array_module(out).full_like(out, target))
        return _bce_with_logits(out, target)

    def _d_mean(self, out):
        """Mean of D's opinion (a 0-d array): a probability for BCE, the raw score for
        least squares."""
        if self.d_loss == "lsgan":
            return out.mean()
        return _fused.sigmoid_mean(out) if _fused.applies(out) else F.sigmoid(out).mean()

    def discriminator_step(self, real, fake, real_labels=None, fake_labels=None):
        """One update of D on a real and a fake batch: minimise BCE(D(real), 1) + BCE(D(fake), 0)
        (least squares: 0.5 mean (D(real) - 1)^2 + 0.5 mean D(fake)^2).

        Both batches go through ``discriminator_input`` (labels appended, packed).
        Returns d_loss (the sum of the two means), d_real = mean D(real) and
        d_fake = mean D(fake) (probabilities for BCE, raw scores for least squares),
        and D's gradient norm.
        """
        if real.shape[1:] != fake.shape[1:]:
            raise ValueError(f"real samples have shape {real.shape[1:]} per row but fake "
                             f"ones {fake.shape[1:]}")
        xp = array_module(real, fake)
        real = self.discriminator_input(real, real_labels)
        fake = self.discriminator_input(fake, fake_labels)
        real_target = 1.0 - self.label_smoothing
        self.D.zero_grad()
        if self.joint_d_pass:
            logits = self.D.forward(xp.concatenate([real, fake]))
            logits_real, logits_fake = logits[: len(real)], logits[len(real):]
            loss_real, dreal = self._d_loss(logits_real, real_target)
            loss_fake, dfake = self._d_loss(logits_fake, 0.0)
            self.D.backward(xp.concatenate([dreal, dfake]), input_grad=False)
        else:
            logits_real = self.D.forward(real)
            loss_real, dreal = self._d_loss(logits_real, real_target)
            self.D.backward(dreal, input_grad=False)
            logits_fake = self.D.forward(fake)
            loss_fake, dfake = self._d_loss(logits_fake, 0.0)
            self.D.backward(dfake, input_grad=False)
        grad_norm = math.sqrt(_sum_of_squares(self.D.parameters())) if self.track_grad_norms else float("nan")
        self.d_optimizer.step()
        d_loss, d_real, d_fake = _to_floats(
            [loss_real + loss_fake, self._d_mean(logits_real), self._d_mean(logits_fake)])
        stats = {"d_loss": float(d_loss), "d_real": float(d_real), "d_fake": float(d_fake),
                 "d_grad_norm": grad_norm}
        self._emit("discriminator", real=real, fake=fake, logits_real=logits_real,
                   logits_fake=logits_fake, dlogits_real=dreal, dlogits_fake=dfake)
        return stats

    def generator_loss(self, logits):
        """(loss, dL/dlogits) of the generator's loss on D's logits for fake samples.

        non-saturating: L = -mean log D(G(z)) = mean softplus(-l),  dL/dl = (s(l) - 1) / n
        minimax:        L =  mean log(1 - D(G(z))) = -mean softplus(l),  dL/dl = -s(l) / n
        lsgan:          L =  0.5 mean (l - 1)^2,                       dL/dl = (l - 1) / n
        where s is the sigmoid. When D confidently rejects the fakes (l << 0),
        s(l) ~ 0: the minimax gradient vanishes, the non-saturating one is ~ -1/n,
        and the least-squares one grows with the distance |l - 1| (l is then a raw score).
        """
        xp = array_module(logits)
        if self.g_loss == "lsgan":
            return F.least_squares(logits, xp.ones_like(logits))
        if self.g_loss == "non-saturating":
            return _bce_with_logits(logits, 1.0)
        loss, dlogits = _bce_with_logits(logits, 0.0)
        dlogits *= -1.0
        return -loss, dlogits

    def generator_step(self, fake, labels=None):
        """One update of G through D, from the fake batch of the last ``generate``
        (and its labels, for a conditional GAN).

        D's parameters and gradients are left exactly as they were. D judges
        ``discriminator_input(fake, labels)`` (fake itself for a plain GAN);
        ``sample_gradient`` maps D's input gradient back onto the samples.
        """
        d_input = self.discriminator_input(fake, labels)
        # BEGIN SOLUTION Exercise 4.1: update G through D without touching D's parameters or gradients
        logits = self.D.forward(d_input)
        g_loss, dlogits = self.generator_loss(logits)
        dinput = self.D.backward(dlogits, param_grads=False)
        dfake = self.sample_gradient(dinput)  # dinput itself for a plain GAN
        self.G.zero_grad()
        self.G.backward(dfake, input_grad=False)
        grad_norm = math.sqrt(_sum_of_squares(self.G.parameters())) if self.track_grad_norms else float("nan")
        self.g_optimizer.step()
        # END SOLUTION
        self._emit("generator", fake=fake, logits=logits, dlogits=dlogits, dfake=dfake)
        return {"g_loss": float(g_loss), "g_grad_norm": grad_norm}

    def _split_batches(self, real_batch, labels):
        """[(real, labels)] * d_steps from the forms train_step accepts."""
        def is_pair(b):
            return (isinstance(b, tuple) and len(b) == 2 and hasattr(b[1], "dtype")
                    and b[1].dtype.kind in "iu")

        if not self.conditional:
            if labels is not None:
                self._need_labels(labels, "train_step")
            batches = list(real_batch) if isinstance(real_batch, (list, tuple)) \
                else [real_batch] * self.d_steps
            return [(b, None) for b in batches]
        if labels is not None:
            if isinstance(real_batch, (list, tuple)):
                if not isinstance(labels, (list, tuple)):
                    raise ValueError("train_step: give one label array per real batch")
                return list(zip(real_batch, labels))
            return [(real_batch, labels)] * self.d_steps
        if is_pair(real_batch):
            return [real_batch] * self.d_steps
        if isinstance(real_batch, (list, tuple)) and all(is_pair(b) for b in real_batch):
            return list(real_batch)
        raise ValueError(
            f"this GAN is conditional (n_classes={self.n_classes}): call train_step(real, "
            "labels) or train_step((real, labels)) with integer labels of shape (n,)")

    def train_step(self, real_batch, labels=None):
        """One full step: ``d_steps`` discriminator updates, then one generator update.

        ``real_batch`` is an (n, data_dim) array used for every D update, or a
        sequence of ``d_steps`` such arrays, one per update. Fresh noise is drawn
        for every D update; the generator update reuses the last fake batch
        (G's forward pass is done once per D update, never twice).
        A conditional GAN also needs the real batch's int labels (n,): pass
        ``train_step(real, labels)`` or ``train_step((real, labels))`` (what
        ``Minibatches(x, y)`` yields); fake batches get labels drawn uniformly.
        With ``pack=m``, n must be a multiple of m.
        Returns a dict of Python floats, also appended to ``self.history``.
        """
        batches = self._split_batches(real_batch, labels)
        if len(batches) != self.d_steps:
            raise ValueError(f"got {len(batches)} real batches for d_steps={self.d_steps}")
        for real, real_labels in batches:
            if real.dtype != self.dtype:
                raise TypeError(f"real batch is {real.dtype} but the models are {self.dtype}; "
                                f"convert it with x.astype('{self.dtype}')")
            if backend_of(real) != self.G.backend:
                raise ValueError(f"real batch is on {backend_of(real)} but the models are on "
                                 f"{self.G.backend}; use minigan.to_device(x, '{self.G.backend}')")
            if len(real) % self.pack:
                raise ValueError(f"batch size {len(real)} is not divisible by pack={self.pack}: "
                                 f"D sees packs of {self.pack} samples")
            z = self.sample_noise(len(real))
            fake_labels = self.sample_labels(len(real)) if self.conditional else None
            fake = self.generate(z, fake_labels)
            d_stats = self.discriminator_step(real, fake, real_labels, fake_labels)
        g_stats = self.generator_step(fake, fake_labels)
        if self.G_ema is not None:
            self.update_ema()
        self.step += 1
        record = {"step": self.step, **d_stats, **g_stats}
        self.history.append(record)
        return record

    def update_ema(self):
        """ema <- beta ema + (1 - beta) theta for every parameter of G (in place);
        buffers (batch norm's running statistics) are copied, not averaged."""
        self.ema_updates += 1
        t = self.ema_updates
        beta = min(self.ema_decay, (1.0 + t) / (10.0 + t))
        for (e, _), (p, _) in zip(self.G_ema.parameters(), self.G.parameters()):
            if _fused.applies(p):
                _fused.ema_update(e, p, beta)
                continue
            # beta (e - p) + p = beta e + (1 - beta) p, written in place without a temporary
            e -= p
            e *= beta
            e += p
        for e_layer, layer in zip(_all_layers(self.G_ema), _all_layers(self.G)):
            for k, v in layer.buffers.items():
                e_layer.buffers[k][...] = v

    def sample(self, n, rng=None, labels=None, ema=True):
        """n samples of G in evaluation mode (batch norm uses running statistics).

        With ``ema_decay`` set, the moving-average generator ``G_ema`` is used
        unless ``ema=False``. A conditional GAN takes ``labels``: an int for n
        samples of one class, or an int array (n,); without them the classes
        cycle 0, 1, ..., C-1, 0, ... so that every class gets n/C samples.
        """
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
            raise ValueError(f"n must be a non-negative int, got {n!r}")
        z = self.rng.standard_normal((n, self.latent_dim), dtype=np.float32) if rng is None \
            else make_rng(rng).standard_normal((n, self.latent_dim), dtype=np.float32)
        z = to_device(z.astype(self.dtype, copy=False), self.G.backend)
        if self.conditional:
            if labels is None:
                labels = np.arange(n) % self.n_classes
            elif isinstance(labels, numbers.Integral):
                labels = np.full(n, int(labels))
            xp = array_module(z)
            z = xp.concatenate([z, self.one_hot(labels, n)], axis=1)
        elif labels is not None:
            self._need_labels(labels, "sample")
        G = self.G_ema if (ema and self.G_ema is not None) else self.G
        return forward_in_eval_mode(G, z)

    def discriminate(self, x, labels=None, packed=False):
        """D's opinion of each row of x, in evaluation mode: (n, 1).

        A probability of being real for BCE, the raw score (1 real, 0 fake) for
        least squares. With ``pack=m`` D judges packs: by default each row is
        judged as a pack of m copies of itself (so a decision surface can be
        drawn); ``packed=True`` judges consecutive groups of m rows, (n/m, 1).
        """
        if self.pack > 1 and not packed:
            xp = array_module(x)
            x = xp.repeat(x, self.pack, axis=0)
            if labels is not None:
                labels = np.repeat(to_device(labels, "numpy") if hasattr(labels, "shape")
                                   else np.asarray(labels), self.pack)
        out = forward_in_eval_mode(self.D, self.discriminator_input(x, labels))
        return out if self.d_loss == "lsgan" else F.sigmoid(out)
