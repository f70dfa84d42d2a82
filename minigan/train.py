"""The training run: ``fit`` and its callbacks, kept apart from the GAN as CS231n's
Solver is kept apart from its model.

    from minigan.train import fit, ProgressBar, DivergenceGuard, Checkpoints
    batches = Minibatches(images, batch_size=64, rng=0).forever()
    history = fit(gan, batches, steps=10_000, schedule=lambda step: 1 - step / 10_000,
                  callbacks=[ProgressBar(), DivergenceGuard()])

``fit`` calls ``gan.train_step`` on the next real batch until ``gan.step`` reaches
``steps``. ``steps`` counts from the start of training, not from now, so a GAN
loaded from a checkpoint continues to the same end. Everything else a run needs
is a callback: any object with some of these methods (or a ``Callback`` subclass):

    on_start(gan, steps)    before the first step
    on_step(gan, record)    after every step; ``record`` is the dict ``train_step``
                            returned, the very one ``gan.history`` keeps, so a
                            callback may add columns to it
    on_end(gan)             when fit returns or raises, like a ``finally``

Callbacks run in the order given. Here: ``ProgressBar`` (a tqdm bar with an ETA),
``GradNorms`` (the gradient norms of D and G), ``DivergenceGuard`` (stop at the
first NaN, inf or exploding loss or gradient norm), ``Checkpoints`` (save every
N steps, only a state with finite weights), ``Frames`` (snapshots of 1-D/2-D
training for an animation) and ``ImageSnapshots`` (the images G draws from fixed
noise, for ``plot.plot_progress``).

Ctrl-C (SIGINT) never cuts a step in half: ``fit`` holds it until the step ends,
then stops and raises KeyboardInterrupt, with the GAN at a step boundary, ready
to be saved and resumed bit-exactly.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time

import numpy as np

from minigan.backend import to_floats, to_numpy

__all__ = ["fit", "Callback", "ProgressBar", "GradNorms", "DivergenceGuard", "Checkpoints",
           "Frames", "ImageSnapshots", "DivergenceError", "check_finite", "deferred_interrupts",
           "interrupted"]


# ------------------------------------------------------------------------ the loop


def fit(gan, batches, steps, *, schedule=None, callbacks=(), base_lrs=None):
    """Train ``gan`` until ``gan.step == steps`` (or ``batches`` runs out); returns
    ``gan.history``.

    batches: an iterable of what ``gan.train_step`` takes: real batches (for a
        ``ConditionalGAN``, (x, labels) pairs; with d_steps=k, lists of k batches),
        e.g. ``Minibatches(x, batch_size=64).forever()``.
    steps: the step to stop at, counted from the start of training.
    schedule: None, or a function ``step -> factor``: before the step with 0-based
        index ``step``, both learning rates are set to factor times their base rates.
    callbacks: objects with ``on_start``/``on_step``/``on_end`` (see the module).
    base_lrs: (lr_g, lr_d), the rates the schedule multiplies; default the
        optimisers' rates when fit starts. Pass them when resuming a scheduled run:
        its optimisers then hold the last step's scheduled rates, not the base ones.

    Every record gets the learning rates its step used, ``lr_g`` and ``lr_d``.
    """
    _check_ready(gan, steps)
    batches = iter(batches)
    lr_g, lr_d = base_lrs if base_lrs is not None else (gan.g_optimizer.lr, gan.d_optimizer.lr)
    _call(callbacks, "on_start", gan, steps)
    try:
        with deferred_interrupts():
            while gan.step < steps and not interrupted():
                if schedule is not None:
                    factor = schedule(gan.step)
                    gan.g_optimizer.lr, gan.d_optimizer.lr = lr_g * factor, lr_d * factor
                real = next(batches, None)
                if real is None:
                    break
                record = gan.train_step(real)
                record["lr_g"], record["lr_d"] = gan.g_optimizer.lr, gan.d_optimizer.lr
                _call(callbacks, "on_step", gan, record)
            if interrupted():
                raise KeyboardInterrupt(f"stopped at step {gan.step} (Ctrl-C)")
    finally:
        _call(callbacks, "on_end", gan)
    return gan.history


def _check_ready(gan, steps):
    """What can be checked once, before the first step, instead of in every step."""
    import numbers

    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
        raise ValueError(f"fit: steps must be an integer >= 0 (the step to stop at), got "
                         f"{steps!r}")
    from minigan.gan import check_layers_used_once

    # models changed since the GAN was built: a layer reused, a model cast or moved
    check_layers_used_once(gan.G, gan.D)
    for who, opt, model in (("G", gan.g_optimizer, gan.G), ("D", gan.d_optimizer, gan.D)):
        if hasattr(opt, "check_holds"):
            opt.check_holds(model, who)


def _call(callbacks, hook, *args):
    for callback in callbacks:
        method = getattr(callback, hook, None)
        if method is not None:
            method(*args)


class Callback:
    """A callback that does nothing: subclass it and override the hooks you need."""

    def on_start(self, gan, steps):
        pass

    def on_step(self, gan, record):
        pass

    def on_end(self, gan):
        pass


# ------------------------------------------------------------------------- Ctrl-C

_sigint = {"depth": 0, "pending": False, "previous": None}


def _hold(signum, frame):
    _sigint["pending"] = True


@contextlib.contextmanager
def deferred_interrupts():
    """Hold Ctrl-C (SIGINT) until the block ends, then raise KeyboardInterrupt.

    Inside, ``interrupted()`` says whether one came, so a loop can stop at a clean
    point first. Nested blocks share the outermost one's flag. Only the main
    thread receives signals: elsewhere, and where SIGINT is ignored, this does
    nothing.
    """
    active = (threading.current_thread() is threading.main_thread()
              and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN)
    if active:
        if _sigint["depth"] == 0:
            _sigint["pending"] = False
            _sigint["previous"] = signal.signal(signal.SIGINT, _hold)
        _sigint["depth"] += 1
    try:
        yield
    finally:
        if active:
            _sigint["depth"] -= 1
            if _sigint["depth"] == 0:
                previous = _sigint["previous"]
                signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)
    if active and _sigint["depth"] == 0 and _sigint["pending"]:
        _sigint["pending"] = False
        raise KeyboardInterrupt


def interrupted():
    """True when Ctrl-C was pressed inside the current ``deferred_interrupts`` block."""
    return _sigint["pending"]


# --------------------------------------------------------------- divergence guard


class DivergenceError(FloatingPointError):
    """Training produced a NaN, inf or exploding loss, gradient or parameter: the run
    cannot recover."""


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


class DivergenceGuard(Callback):
    """Stops the run with ``DivergenceError`` at the first step that has diverged:

    * a loss (``d_loss``, ``g_loss``, ``d_penalty``) that is NaN or inf, or larger
      in size than ``max_loss`` (default 1e6);
    * a gradient norm of D or G (``d_grad_norm``, ``g_grad_norm``) that is NaN,
      inf, or larger than ``max_grad_norm`` (default 1e6).

    The thresholds are far beyond any healthy run: cross-entropy losses stay
    below about 10 and gradient norms below about 100, and even a Wasserstein
    critic's losses stay in the hundreds; a learning rate of 1e6 reaches losses
    of 1e27 and infinite gradient norms in a few steps, while every loss is still
    finite. Pass ``None`` to turn a threshold off.

    The gradient norms are read from the record when ``GradNorms`` ran before
    (as in the command line); otherwise the guard computes them (one copy to the
    host per step).
    """

    LOSS_KEYS = ("d_loss", "g_loss", "d_penalty")

    def __init__(self, max_loss=1e6, max_grad_norm=1e6):
        for name, value in (("max_loss", max_loss), ("max_grad_norm", max_grad_norm)):
            if value is not None and not (isinstance(value, (int, float))
                                          and not isinstance(value, bool)
                                          and math.isfinite(value) and value > 0):
                raise ValueError(f"DivergenceGuard: {name} must be a positive finite number "
                                 f"or None, got {value!r}")
        self.max_loss, self.max_grad_norm = max_loss, max_grad_norm

    def on_step(self, gan, record):
        check_finite(record)
        if self.max_loss is not None:
            self._check(record, [(k, record[k]) for k in self.LOSS_KEYS if k in record],
                        self.max_loss, "max_loss", "a loss exploded")
        if self.max_grad_norm is not None:
            if "d_grad_norm" in record and "g_grad_norm" in record:
                norms = [record["d_grad_norm"], record["g_grad_norm"]]
            else:
                norms = grad_norms(gan.D, gan.G)
            self._check(record, list(zip(("d_grad_norm", "g_grad_norm"), norms)),
                        self.max_grad_norm, "max_grad_norm", "a gradient exploded")

    @staticmethod
    def _check(record, values, limit, name, what):
        bad = [(k, v) for k, v in values if not abs(float(v)) <= limit]  # NaN fails <= too
        if bad:
            shown = ", ".join(f"{k}={float(v):.3g}" for k, v in bad)
            raise DivergenceError(
                f"training diverged at step {record.get('step', '?')}: {shown} ({what}: "
                f"beyond DivergenceGuard's {name}={limit:g}, or not finite). Try a lower "
                "learning rate, or check the data for NaN/inf.")


# ---------------------------------------------------------------------- callbacks


class ProgressBar(Callback):
    """A tqdm bar with the losses and an ETA, on stderr.

    Where stderr is neither a terminal nor a notebook (a log file, a pipe), a
    line on stdout every ~10% of the run instead, with the time so far and left.
    ``lines=True`` forces those lines, ``lines=False`` the bar.
    """

    KEYS = (("d_loss", "d_loss"), ("g_loss", "g_loss"), ("d_real", "D(x)"),
            ("d_fake", "D(G(z))"))

    def __init__(self, lines=None):
        if lines is None:
            lines = not (sys.stderr.isatty() or "ipykernel" in sys.modules)
        self.lines, self.bar = lines, None

    def on_start(self, gan, steps):
        self.total, self.first = int(steps), gan.step
        self.every = max(1, self.total // 10)
        self.start = time.perf_counter()
        if not self.lines:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, initial=gan.step, unit="step",
                            dynamic_ncols=True, mininterval=0.25, file=sys.stderr)

    def _stats(self, record, sep):
        return sep.join(f"{label} {record[key]:.3f}" for key, label in self.KEYS if key in record)

    def on_step(self, gan, record):
        step = gan.step
        if self.bar is not None:
            self.bar.update(1)
            if step % 10 == 0 or step == self.total:
                self.bar.set_postfix_str(self._stats(record, ", "), refresh=False)
        elif step % self.every == 0 or step == self.total:
            elapsed = time.perf_counter() - self.start
            left = elapsed / (step - self.first) * (self.total - step)
            print(f"step {step:>{len(str(self.total))}}/{self.total}  "
                  f"{self._stats(record, '  ')}  ({elapsed:.1f} s, {left:.{left < 10:d}f} s "
                  "left)", flush=True)

    def on_end(self, gan):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class GradNorms(Callback):
    """Adds ``d_grad_norm`` and ``g_grad_norm`` to every record: the Euclidean norm
    of all of D's and of all of G's parameter gradients, as the step left them
    (D's from its last update, G's from the generator update)."""

    def on_step(self, gan, record):
        record["d_grad_norm"], record["g_grad_norm"] = grad_norms(gan.D, gan.G)


def grad_norms(*models):
    """The gradient norm of each model, as Python floats, with one copy to the host
    (on a GPU each ``float(x)`` would wait for the GPU to finish its queue)."""
    squares = [[g.reshape(-1) @ g.reshape(-1) for _, g in m.parameters()] for m in models]
    flat = [s for per_model in squares for s in per_model]
    if not flat:
        return [0.0] * len(models)
    values = np.asarray(to_floats(flat))
    ends = np.cumsum([len(s) for s in squares])
    return [math.sqrt(float(part.sum())) for part in np.split(values, ends[:-1])]


class Checkpoints(Callback):
    """Saves the run to ``path`` every ``every`` steps, only after ``check_finite`` has
    seen finite losses AND weights: the file on disk is always the last good state.

    config: the dict the checkpoint stores (``load_checkpoint`` rebuilds the GAN
    from it); extra: None or a function returning the dict of extra state to
    store with it (the data iterator's ``state_dict()``, animation frames).
    Writing is atomic (a temporary file renamed into place). ``last_saved`` is
    the step of the newest file, None before the first.
    """

    def __init__(self, path, config, every, extra=None):
        self.path, self.config, self.extra = path, config, extra
        self.every = _every("Checkpoints", every)
        self.last_saved = None

    def on_step(self, gan, record):
        if self.every and gan.step % self.every == 0:
            self.save(gan, record)

    def save(self, gan, record=None):
        """Save now (after checking ``record``'s losses, if given, and the weights)."""
        from minigan.checkpoint import save_checkpoint

        check_finite(record or {"step": gan.step}, gan)
        save_checkpoint(self.path, gan, self.config, self.extra() if self.extra else None)
        self.last_saved = gan.step


def _every(owner, every):
    import numbers

    if isinstance(every, bool) or not isinstance(every, numbers.Integral) or every < 0:
        raise ValueError(f"{owner}: every must be an integer >= 0 (steps between saves; 0: "
                         f"never), got {every!r}")
    return int(every)


class Frames(Callback):
    """Snapshots for an animation of 1-D or 2-D training (``plot.animate_1d/2d``):
    the samples of fixed noise and D's probability on a grid, every ``every`` steps
    (and at step 0). ``state_dict`` turns them into arrays for a checkpoint's
    extra, so a resumed run's animation is complete.
    """

    N_SAMPLES, GRID_SIZE = 500, 60

    def __init__(self, dataset, every, seed=0):
        self.dataset, self.every = dataset, _every("Frames", every)
        self.noise_seed = [seed, 4]
        self.real = dataset.sample(self.N_SAMPLES, np.random.default_rng([seed, 6]))
        self.lim = dataset.plot_lim
        self.frames = []

    def on_start(self, gan, steps):
        if gan.step == 0 and not self.frames:
            self.record(gan, 0)

    def on_step(self, gan, record):
        if self.every and gan.step % self.every == 0:
            self.record(gan, gan.step, record)

    def _noise(self, gan):
        """The noise ``gan.sample`` draws from ``self.noise_seed``: (n, latent_dim)."""
        rng = np.random.default_rng(self.noise_seed)
        return rng.standard_normal((self.N_SAMPLES, gan.latent_dim), dtype=np.float32)

    def record(self, gan, step, record=None):
        from minigan import plot

        fake = to_numpy(gan.sample(self.N_SAMPLES, rng=np.random.default_rng(self.noise_seed)))
        info = {k: record[k] for k in ("d_loss", "g_loss")} if record else None
        if self.dataset.dim == 2:
            frame = plot.snapshot_2d(self.real, fake, discriminator=gan, step=step, info=info,
                                     lim=self.lim, grid_size=self.GRID_SIZE)
        else:
            z = self._noise(gan) if gan.latent_dim == 1 else None
            frame = plot.snapshot_1d(self.real, fake, discriminator=gan, step=step, info=info,
                                     lim=self.lim, z=z)
        self.frames.append(frame)

    def state_dict(self):
        if not self.frames:
            return {}
        f = self.frames
        info = [[(fr.get("info") or {}).get(k, np.nan) for k in ("d_loss", "g_loss")] for fr in f]
        return {"frame_steps": np.asarray([fr["step"] for fr in f], dtype=np.int64),
                "frame_fake": np.stack([fr["fake"] for fr in f]).astype(np.float32),
                "frame_d": np.stack([fr["d_grid"] for fr in f]).astype(np.float32),
                "frame_info": np.asarray(info, dtype=np.float64)}

    def load_state_dict(self, extra, gan):
        """Rebuild the frames from ``state_dict``'s arrays (in a checkpoint's extra)."""
        if "frame_steps" not in extra:
            return
        self.frames = []
        for step, fake, d, info in zip(extra["frame_steps"], extra["frame_fake"],
                                       extra["frame_d"], extra["frame_info"]):
            frame = {"step": int(step), "real": self.real, "fake": fake, "lim": self.lim,
                     "d_grid": d, "grid_x": np.linspace(self.lim[0], self.lim[1], d.shape[-1])}
            if not np.isnan(info).any():
                frame["info"] = {"d_loss": float(info[0]), "g_loss": float(info[1])}
            if self.dataset.dim == 2:
                frame["grid_y"] = np.linspace(self.lim[2], self.lim[3], d.shape[0])
            elif gan.latent_dim == 1:
                frame["z"] = self._noise(gan)
            self.frames.append(frame)


class ImageSnapshots(Callback):
    """The images G draws from the same ``n`` noise vectors at step 0 and every
    ``every`` steps, for ``plot.plot_progress``: column j of that figure follows
    one z_j through training, so what changes along it is G, not the noise.

    ``gan.sample`` draws them, so they come from G's moving average when the GAN
    has one, in evaluation mode (batch norm's running statistics); a
    ``ConditionalGAN``'s sample j has class j % n_classes. Sampling with its own
    generator leaves the GAN's noise stream alone, so a run with snapshots
    trains exactly as one without.

    ``snapshots`` is a list of (step, images) pairs, images a host float32 array
    (n, ...) as G gives it. Memory stays small for any run length: when more
    than ``max_snapshots`` are held, ``every`` doubles and only the snapshots at
    its multiples are kept (and the first and the newest), so the rows stay
    evenly spaced.
    ``state_dict``/``load_state_dict`` turn them into plain arrays for a
    checkpoint's extra, so a resumed run's figure is complete.
    """

    def __init__(self, every, n=10, seed=0, max_snapshots=12):
        import numbers

        self.every = _every("ImageSnapshots", every)
        for name, value, least in (("n", n, 1), ("max_snapshots", max_snapshots, 2)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) \
                    or value < least:
                raise ValueError(f"ImageSnapshots: {name} must be an int >= {least}, got "
                                 f"{value!r}")
        self.n, self.max_snapshots = int(n), int(max_snapshots)
        self.noise_seed = [seed, 8]  # a stream of its own, apart from the CLI's [seed, 3], ...
        self.snapshots = []

    def on_start(self, gan, steps):
        # a new run starts at step 0; a resumed one that brought no snapshots
        # starts its figure where it stands
        if not self.snapshots:
            self.record(gan)

    def on_step(self, gan, record):
        if self.every and gan.step % self.every == 0:
            self.record(gan)

    def on_end(self, gan):
        # the last row is the run's end, also when it stopped between two snapshots
        # (--stop-after, Ctrl-C, a length that is not a multiple of every); not after
        # a divergence, whose images would be NaN
        if self.snapshots and self.snapshots[-1][0] != gan.step:
            self.record(gan)
            if not np.isfinite(self.snapshots[-1][1]).all():
                self.snapshots.pop()

    def record(self, gan):
        """Add G's images of the fixed noise at the GAN's current step."""
        # the same seed each time: the same n vectors z, hence columns that follow one z
        images = gan.sample(self.n, rng=np.random.default_rng(self.noise_seed))
        self.snapshots.append((int(gan.step), np.array(to_numpy(images), dtype=np.float32)))
        while len(self.snapshots) > self.max_snapshots and self.every:
            self._thin()

    def _thin(self):
        """Double ``every`` and keep the snapshots at its multiples, the first and the newest."""
        self.every *= 2
        first, *middle, newest = self.snapshots
        self.snapshots = [first, *(s for s in middle if s[0] % self.every == 0), newest]

    def state_dict(self):
        if not self.snapshots:
            return {}
        return {"snapshot_steps": np.asarray([s for s, _ in self.snapshots], dtype=np.int64),
                "snapshot_images": np.stack([x for _, x in self.snapshots]),
                "snapshot_every": np.asarray(self.every, dtype=np.int64)}

    def load_state_dict(self, extra):
        """Take back ``state_dict``'s arrays (from a checkpoint's extra); nothing there: none."""
        if "snapshot_steps" not in extra:
            return
        steps, images = np.asarray(extra["snapshot_steps"]), np.asarray(extra["snapshot_images"])
        if images.ndim < 2 or len(steps) != len(images) or images.shape[1] != self.n:
            raise ValueError(f"ImageSnapshots: the saved snapshots do not fit: "
                             f"{len(steps)} steps and images of shape {images.shape}, for "
                             f"n={self.n} images a snapshot; pass the n the run was made with")
        # every may have doubled (see the class docstring): keep spacing as it was
        self.every = max(self.every, int(extra.get("snapshot_every", self.every)))
        self.snapshots = [(int(s), np.array(x, dtype=np.float32)) for s, x in zip(steps, images)]
