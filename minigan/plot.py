"""Figures and animations for watching a GAN learn.

    from minigan import plot
    plot.plot_losses(gan.history, path="losses.png")
    plot.plot_image_grid(gan.sample(64), path="samples.png")
    plot.plot_progress(snapshots.snapshots, path="progress.png")   # train.ImageSnapshots
    plot.plot_interpolation(gan, seed=0, path="interpolation.png")  # along slerp(z0, z1, t)
    plot.plot_2d(real, fake, discriminator=gan, centres=data.centres)
    plot.plot_1d(real, fake, discriminator=gan)              # Figure 1 of Goodfellow et al.
    frames.append(plot.snapshot_2d(real, gan.sample(500), gan, info=record))  # while training
    plot.animate_2d(frames, "training.gif")

matplotlib is imported by the functions, never by ``import minigan.plot``; where
no display is available (Linux without $DISPLAY or $WAYLAND_DISPLAY) and no
backend was chosen ($MPLBACKEND, or pyplot already imported), the "Agg" backend
is selected, so everything works on a headless server.

Every function returns a matplotlib ``Figure`` and, given ``path=``, saves it
there (parent folders are created; the format follows the suffix: .png, .pdf,
.svg; animations: .gif). The figures are detached from pyplot (closed) before
they are returned: nothing accumulates in a long training loop, and a notebook
shows a figure once, as the value of the cell (use ``display(fig)`` elsewhere).
Functions that take ``ax=`` draw into the caller's axes instead and leave its
figure open.

Arrays may be NumPy or CuPy; they are copied to the host with
``minigan.to_numpy``. Images are in [-1, 1] (the range of a tanh generator).

Discriminators
    ``discriminator=`` (plot_1d, plot_2d, snapshot_1d, snapshot_2d) accepts
    - a ``minigan.gan.GAN``: its ``discriminate`` gives probabilities (for an
      LSGAN, scores aiming at 1 for real and 0 for fake, clipped to [0, 1]), or,
      for a critic (see below), the critic's score;
    - a minigan model (a ``Layer``, e.g. the ``Sequential`` D): its forward gives
      logits, turned into probabilities with a sigmoid; it is run in evaluation
      mode, its mode restored and its cache cleared afterwards;
    - any other callable mapping a float32 NumPy array (K, dim) to (K,) or (K, 1)
      probabilities of "real"; pass ``logits=True`` if it returns logits.

Critics
    The Wasserstein and hinge losses (``minigan.gan_losses``) make D a critic: its
    score D(x) is a real number, higher for "more real", with no scale of its
    own (WGAN's loss does not change when a constant is added to every score).
    Drawing it as a probability would clip it to [0, 1] and hide it, so these
    figures draw it as a score: ``score_kind="critic"`` (``plot_1d``, ``plot_2d``,
    the snapshots, ``plot_losses``, the animations, ``plot_samples``), or the
    loss object itself (``score_kind=gan.loss``), whose kind is read from it.
    A GAN passed as ``discriminator=`` says so by its loss. For a critic
    - the D surface (2-D) is a diverging colour map centred (white, dashed) at
      the critic's median on the drawn region, spread to its largest deviation
      from that median, with a colour bar labelled "critic score D(x)"; 1-D
      draws the score on its own, unclipped, axis;
    - ``plot_losses``' lower panels show the mean score of real and of fake
      samples, and their gap mean D(x) - mean D(G(z)): for WGAN's critic this
      is its estimate of the Wasserstein-1 distance, which goes to 0 as G
      catches up; no cross-entropy equilibrium lines are drawn.
    The logits of a critic mean nothing as probabilities, so a minigan model or
    a callable given with ``score_kind="critic"`` is drawn as it comes, without
    a sigmoid.

Animation frames
    ``animate_1d`` and ``animate_2d`` take a list of frames, each a dict of plain
    arrays and numbers (no callables, so collecting one costs one D evaluation on
    a small grid and a copy of the samples). ``snapshot_1d`` / ``snapshot_2d``
    build them:

    =========  =====================================================================
    step       int or None: the training step, shown in the title
    real       (N, dim) float32 data samples (the same array every frame is fine)
    fake       (M, dim) float32 generated samples
    z          (M, 1) float32 latent codes of ``fake`` (1-D only, optional): drawn
               as the lines z -> x = G(z) of Goodfellow et al.'s Figure 1
    lim        (lo, hi) for 1-D, (xmin, xmax, ymin, ymax) for 2-D: the plotted region
    grid_x     (G,) float64 x coordinates where D was evaluated (optional)
    grid_y     (H,) float64 y coordinates (2-D only)
    d_grid     D's probability of "real" on the grid: (G,) for 1-D; (H, G) for 2-D,
               with d_grid[i, j] = D(grid_x[j], grid_y[i]) (meshgrid's "xy" order);
               a critic's score for a critic
    d_kind     "critic" when d_grid holds a critic's scores (absent for probabilities)
    info       dict of floats (optional): e.g. the record of ``gan.train_step``;
               d_loss and g_loss are shown in the title
    =========  =====================================================================
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from minigan._atomic import atomic_path
from minigan.backend import array_module, to_numpy

__all__ = [
    "plot_losses",
    "plot_image_grid",
    "plot_class_grid",
    "plot_progress",
    "plot_interpolation",
    "slerp",
    "plot_2d",
    "plot_1d",
    "snapshot_1d",
    "snapshot_2d",
    "animate_1d",
    "animate_2d",
    "plot_samples",
    "animate",
]

# Colours used throughout, so that real/fake/D mean the same thing in every figure.
REAL_COLOUR = "black"
FAKE_COLOUR = "tab:green"       # Goodfellow et al.: the generator's density is green
D_COLOUR = "tab:blue"           # ... and the discriminator's curve blue, dashed
D_CMAP = "RdBu"                 # 2-D: red where D says "fake" (0), blue where "real" (1)
GAP_COLOUR = "tab:purple"       # a critic's mean D(x) - mean D(G(z))

LOG2 = math.log(2.0)

# What D's output (``loss.score``) is: the two ways these figures draw it.
PROBABILITY, CRITIC = "probability", "critic"
# The critics' losses, recognised by class until the losses declare a ``score_kind``.
_CRITIC_LOSSES = frozenset({"Wasserstein", "Hinge"})
_CRITIC_LABEL = "critic score D(x), higher = more real (dashed: its median)"


# ------------------------------------------------------------------ matplotlib setup


def _headless() -> bool:
    if sys.platform.startswith(("win", "darwin")):
        return False
    return not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _pyplot():
    """Import pyplot, choosing "Agg" first when there is no display and no backend was chosen."""
    import matplotlib

    if ("matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND")
            and _headless()):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _new_figure(**kwargs):
    return _pyplot().figure(**kwargs)


def _finish(fig, path, own, dpi=100):
    """Save ``fig`` to ``path`` (if given) and detach it from pyplot if we created it."""
    if path is not None:
        _save_figure(fig, path, dpi=dpi)
    if own:
        _pyplot().close(fig)
    return fig


def _prepare_path(path, suffixes=None):
    path = Path(os.fspath(path)).expanduser()
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise ValueError(f"{path}: expected a file name ending in {' or '.join(suffixes)}, "
                         f"got suffix {path.suffix!r}.")
    if not path.suffix:
        raise ValueError(f"{path}: add a suffix naming the format, e.g. '.png'.")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _atomic(path, write):
    """Call ``write(tmp)`` with a temporary file name beside ``path``, then rename it into place."""
    with atomic_path(path) as tmp:
        write(str(tmp))


def _save_figure(fig, path, dpi=100):
    path = _prepare_path(path)
    fmt = path.suffix[1:].lower()
    _atomic(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format=fmt, bbox_inches="tight"))
    return path


# ------------------------------------------------------------------------- helpers


def _points(x, name, dim=None):
    """(N, dim) float64 host array from NumPy/CuPy; (N,) is taken as (N, 1)."""
    a = to_numpy(x)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or (dim is not None and a.shape[1] != dim):
        want = f"(N, {dim})" if dim is not None else "(N, D)"
        raise ValueError(f"{name} must have shape {want}"
                         + (" or (N,)" if dim == 1 else "") + f", got {a.shape}.")
    return a.astype(np.float64, copy=False)


def _sigmoid(z):
    z = np.asarray(z, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # = 1 / (1 + exp(-z)), never overflows


def _is_gan(obj):
    return hasattr(obj, "discriminate") and hasattr(obj, "D")


def _score_kind(spec):
    """"probability" or "critic" (None for None) from that word, a loss object or a GAN.

    A loss may say what its ``score`` is by a ``score_kind`` attribute; a loss
    without one is recognised by class: ``Wasserstein`` and ``Hinge`` (and their
    subclasses) are critics, every other loss gives a probability. (Least
    squares' score aims at 1 for real and 0 for fake, and its optimal D is
    p_data / (p_data + p_g), the same probability as the cross-entropy's D.)
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec not in (PROBABILITY, CRITIC):
            raise ValueError(f"score_kind must be {PROBABILITY!r} (D's output is a probability "
                             f"of real) or {CRITIC!r} (an unbounded critic score), or the loss "
                             f"object; got {spec!r}.")
        return spec
    loss = getattr(spec, "loss", None) if _is_gan(spec) else spec
    if loss is None:  # a GAN-like object without a loss object: its discriminate's probability
        return PROBABILITY
    if not callable(getattr(loss, "score", None)):
        raise TypeError(f"score_kind must be {PROBABILITY!r}, {CRITIC!r}, a loss object (from "
                        f"minigan.gan_losses, with a score method) or a GAN; got "
                        f"{type(spec).__name__}.")
    declared = getattr(loss, "score_kind", None)
    if declared is not None:
        return _score_kind(str(declared))
    names = {cls.__name__ for cls in type(loss).__mro__}
    return CRITIC if names & _CRITIC_LOSSES else PROBABILITY


def _d_values(discriminator, points, logits=None, score_kind=None):
    """D at ``points`` (K, dim) float64, as the figures draw it: ((K,) float64, kind).

    kind is ``score_kind`` when given, else the GAN's loss's, else "probability".
    Probabilities are ``_d_probabilities``'; a critic's scores are D's output
    as it comes (no sigmoid, no clipping).
    """
    kind = _score_kind(score_kind)
    if kind is None:
        kind = _score_kind(discriminator) if _is_gan(discriminator) else PROBABILITY
    if kind == PROBABILITY:
        return _d_probabilities(discriminator, points, logits), kind
    if logits:
        raise ValueError("logits=True asks for a sigmoid, which turns D's output into a "
                         "probability, but score_kind says D is a critic whose score is drawn "
                         "as it is; drop logits=True, or pass score_kind='probability'.")
    out, _, _ = _d_output(discriminator, points, logits)
    return out, kind


def _d_probabilities(discriminator, points, logits=None):
    """D's probability of "real" at ``points`` (K, dim) float64 -> (K,) float64 in [0, 1]."""
    out, is_logits, is_score = _d_output(discriminator, points, logits)
    if is_logits:
        return _sigmoid(out)
    if is_score:
        return np.clip(out, 0.0, 1.0)
    finite = out[np.isfinite(out)]
    if finite.size and (finite.min() < -1e-6 or finite.max() > 1 + 1e-6):
        raise ValueError(
            f"the discriminator returned values in [{finite.min():.3g}, {finite.max():.3g}], "
            "not probabilities in [0, 1]; if it returns logits, pass logits=True.")
    return np.clip(out, 0.0, 1.0)


def _d_output(discriminator, points, logits=None):
    """D's raw output at ``points`` (K, dim): ((K,) float64, is_logits, is_score)."""
    from minigan.layers import Layer, forward_in_eval_mode

    k = points.shape[0]
    if _is_gan(discriminator):
        # A minigan GAN: discriminate() gives the loss's score in eval mode (and
        # repeats each point into a pack when D judges packs): a probability for
        # the cross-entropy losses; least squares' raw score, aiming at 1 (real)
        # and 0 (fake), is clipped to [0, 1] by _d_probabilities to share the
        # colour scale; a critic's score is left as it is (_d_values).
        out = discriminator.discriminate(_to_model(points, discriminator.D))
        is_logits, is_score = False, True
    elif isinstance(discriminator, Layer):
        out = forward_in_eval_mode(discriminator, _to_model(points, discriminator))
        is_logits, is_score = (True if logits is None else bool(logits)), False
    elif callable(discriminator):
        out = discriminator(points.astype(np.float32))
        is_logits, is_score = bool(logits), False
    else:
        raise TypeError(f"discriminator must be a minigan GAN, a minigan model or a callable, "
                        f"got {type(discriminator).__name__}.")
    out = np.asarray(to_numpy(out), dtype=np.float64)
    if out.size != k:
        raise ValueError(f"the discriminator returned shape {out.shape} for {k} points; "
                         f"expected ({k},) or ({k}, 1).")
    return out.reshape(k), is_logits, is_score


def _to_model(points, model):
    """``points`` in the model's dtype and on its backend."""
    from minigan.backend import to_device

    dtype = model.dtype or np.float32
    backend = model.backend or "numpy"
    return to_device(points.astype(dtype), backend)


def _robust_range(a, q=1.0):
    """[q, 100-q] percentile range of a 1-D array's finite values, or None."""
    a = a[np.isfinite(a)]
    if a.size == 0:
        return None
    return float(np.percentile(a, q)), float(np.percentile(a, 100 - q))


def _auto_lim_1d(*arrays, margin=0.15):
    """(lo, hi) covering the arrays (robustly: outliers from a diverging G are ignored)."""
    ranges = [r for a in arrays if a is not None for r in [_robust_range(np.ravel(a), 0.5)] if r]
    if not ranges:
        return (-1.0, 1.0)
    lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
    width = max(hi - lo, 1e-3 * max(1.0, abs(lo), abs(hi)))
    return (lo - margin * width, hi + margin * width)


def _auto_lim_2d(*arrays, margin=0.15):
    """(xmin, xmax, ymin, ymax) covering (N, 2) arrays, with the same span on both axes."""
    arrays = [a for a in arrays if a is not None and len(a)]
    xs = _auto_lim_1d(*[a[:, 0] for a in arrays], margin=margin)
    ys = _auto_lim_1d(*[a[:, 1] for a in arrays], margin=margin)
    half = max(xs[1] - xs[0], ys[1] - ys[0]) / 2
    cx, cy = (xs[0] + xs[1]) / 2, (ys[0] + ys[1]) / 2
    return (cx - half, cx + half, cy - half, cy + half)


def _check_lim(lim, dim):
    if lim is None:
        return None
    if np.isscalar(lim):
        lim = float(lim)
        return (-lim, lim) if dim == 1 else (-lim, lim, -lim, lim)
    lim = tuple(float(v) for v in lim)
    if dim == 2 and len(lim) == 2:
        lim = lim + lim
    if len(lim) != 2 * dim or any(lim[2 * i] >= lim[2 * i + 1] for i in range(dim)):
        want = "(lo, hi)" if dim == 1 else "(xmin, xmax, ymin, ymax) or (lo, hi)"
        raise ValueError(f"lim must be a number L (meaning -L..L) or {want} with lo < hi, "
                         f"got {lim}.")
    return lim


def _kde(samples, grid, max_points=2000):
    """Gaussian kernel density estimate of 1-D ``samples`` on ``grid`` (Silverman's bandwidth).

    bandwidth h = 0.9 min(std, IQR / 1.34) n^(-1/5); a collapsed generator (all
    samples equal) gets a narrow spike of width 1/200 of the grid instead of 0.
    """
    s = samples[np.isfinite(samples)]
    if s.size == 0:
        return np.zeros_like(grid)
    if s.size > max_points:  # evenly spaced order statistics: deterministic, same shape
        s = np.sort(s)[np.linspace(0, s.size - 1, max_points).astype(int)]
    spread = min(np.std(s), (np.percentile(s, 75) - np.percentile(s, 25)) / 1.34)
    if spread <= 0:
        spread = np.std(s)
    h = 0.9 * spread * s.size ** (-0.2)
    h = max(h, (grid[-1] - grid[0]) / 200)
    u = (grid[:, None] - s[None, :]) / h
    return np.exp(-0.5 * u * u).sum(axis=1) / (s.size * h * math.sqrt(2 * math.pi))


def _moving_average(y, window):
    """Centred moving average that ignores NaN and shrinks its window at the ends."""
    if window <= 1:
        return y
    ok = np.isfinite(y)
    kernel = np.ones(window)
    total = np.convolve(np.where(ok, y, 0.0), kernel, mode="same")
    count = np.convolve(ok.astype(float), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


# ------------------------------------------------------------------------- losses


def _history_columns(history):
    """A dict of 1-D float arrays from a Mapping of sequences or a sequence of dicts."""
    if isinstance(history, Mapping):
        cols = {k: np.asarray(to_numpy(history[k]), dtype=np.float64).ravel() for k in history}
    else:
        records = list(history)
        if records and not all(isinstance(r, Mapping) for r in records):
            raise TypeError("history must be a mapping of name -> sequence (gan.history) "
                            "or a list of dicts (train_step records).")
        keys = list(records[0]) if records else []
        cols = {k: np.array([r.get(k, np.nan) for r in records], dtype=np.float64) for k in keys}
    missing = [k for k in ("d_loss", "g_loss") if k not in cols]
    if missing:
        raise ValueError(f"history lacks {missing}: expected at least 'd_loss' and 'g_loss' "
                         f"(optionally 'd_real', 'd_fake', 'step'), got keys {sorted(cols)}.")
    lengths = {k: len(v) for k, v in cols.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"history columns have different lengths: {lengths}.")
    return cols


def plot_losses(history, path=None, smooth=None, d_loss_at_equilibrium=2 * LOG2,
                g_loss_at_equilibrium=LOG2, title=None, score_kind=None):
    """Loss curves (top) and mean D outputs (bottom) over training.

    history: a mapping of name -> sequence (``gan.history``, a dict of lists)
    or a list of ``train_step`` records. Needs d_loss and g_loss; d_real and
    d_fake (mean D(x) and mean D(G(z)), as probabilities) add the lower panel;
    "step" gives the x axis (default 1, 2, ...).
    smooth: moving-average window in steps, drawn over the faint raw curve;
    None picks about n / 50 for long runs, 1 turns it off.
    d_loss_at_equilibrium, g_loss_at_equilibrium: reference lines for the
    values at the game's equilibrium, where D = 1/2 everywhere. With d_loss the
    SUM of the real and fake BCE terms (as ``gan.train_step`` reports it) that
    is -log(1/2) - log(1 - 1/2) = 2 log 2 = 1.386 (log 2 if your d_loss is their
    mean); the non-saturating g_loss -log D(G(z)) is log 2 = 0.693 there (pass
    -log 2 for the minimax loss). None hides a line.
    score_kind: what d_real and d_fake are: "probability" (the default) or
    "critic", or the loss object (``gan.loss``), whose kind is read from it
    (see "Critics" in the module docstring). For a critic they are mean
    scores, drawn on an axis of their own range, with a third panel for their
    gap mean D(x) - mean D(G(z)) (WGAN: the critic's estimate of the
    Wasserstein-1 distance), and the equilibrium lines, which are the
    cross-entropy's, are not drawn.
    """
    critic = (_score_kind(score_kind) or PROBABILITY) == CRITIC
    cols = _history_columns(history)
    n = len(cols["d_loss"])
    steps = cols["step"] if "step" in cols else np.arange(1, n + 1, dtype=float)
    if smooth is None:
        smooth = max(1, n // 50) if n > 100 else 1
    smooth = int(smooth)
    if smooth < 1:
        raise ValueError(f"smooth must be a window of >= 1 steps, got {smooth}.")
    has_d = "d_real" in cols or "d_fake" in cols
    has_gap = critic and "d_real" in cols and "d_fake" in cols
    n_panels = 1 + has_d + has_gap

    fig = _new_figure(figsize=(8, {1: 3.6, 2: 6.2, 3: 8.4}[n_panels]))
    axes = fig.subplots(n_panels, 1, sharex=True, squeeze=False)[:, 0]

    def curve(ax, key, colour, label):
        y = cols[key]
        if smooth > 1:
            ax.plot(steps, y, color=colour, alpha=0.25, lw=0.8)
            ax.plot(steps, _moving_average(y, smooth), color=colour, lw=1.6,
                    label=f"{label} ({smooth}-step mean)")
        else:
            ax.plot(steps, y, color=colour, lw=1.4, label=label)

    ax = axes[0]
    curve(ax, "d_loss", "tab:blue", "D loss")
    curve(ax, "g_loss", "tab:orange", "G loss")
    if critic:  # the lines below are the cross-entropy's values at D = 1/2: not a critic's
        d_loss_at_equilibrium = g_loss_at_equilibrium = None
    _equilibrium_lines(ax, d_loss_at_equilibrium, g_loss_at_equilibrium)
    ax.set_ylabel("loss")
    ax.set_title(title or "GAN training")
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)

    if has_d and critic:
        _critic_panels(axes[1:], cols, curve)
    elif has_d:
        _probability_panel(axes[1], cols, curve)
    axes[-1].set_xlabel("step")
    fig.tight_layout()
    return _finish(fig, path, own=True)


def _equilibrium_lines(ax, d_loss_at_equilibrium, g_loss_at_equilibrium):
    """The cross-entropy losses' values at D = 1/2 as dotted lines (None: no line)."""
    if d_loss_at_equilibrium is not None:
        why = " = 2 log 2 (real + fake BCE)" if math.isclose(d_loss_at_equilibrium, 2 * LOG2) else ""
        ax.axhline(d_loss_at_equilibrium, color="tab:blue", ls=":", lw=1.2,
                   label=f"D loss at equilibrium (D = 1/2): {d_loss_at_equilibrium:.3f}{why}")
    if g_loss_at_equilibrium is not None:
        why = {LOG2: " = log 2 (non-saturating)", -LOG2: " = -log 2 (minimax)"}.get(
            g_loss_at_equilibrium, "")
        ax.axhline(g_loss_at_equilibrium, color="tab:orange", ls=":", lw=1.2,
                   label=f"G loss at equilibrium (D = 1/2): {g_loss_at_equilibrium:.3f}{why}")


def _probability_panel(ax, cols, curve):
    """Mean D(x) and D(G(z)) as probabilities, on [0, 1] with the equilibrium at 1/2."""
    if "d_real" in cols:
        curve(ax, "d_real", REAL_COLOUR, "mean D(x), real")
    if "d_fake" in cols:
        curve(ax, "d_fake", FAKE_COLOUR, "mean D(G(z)), fake")
    ax.axhline(0.5, color="grey", ls="--", lw=1.2, label="equilibrium: D = 1/2")
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("D output (probability of real)")
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)


def _critic_panels(axes, cols, curve):
    """plot_losses' lower panels for a critic: its mean scores, then (if both) their gap.

    The scores have no fixed range (WGAN's loss is unchanged by adding a
    constant to every score, so they may drift together), so the axes take
    the curves' own range; the gap is what the critic measures, and goes to 0
    when it cannot tell real from fake.
    """
    ax = axes[0]
    if "d_real" in cols:
        curve(ax, "d_real", REAL_COLOUR, "mean critic score D(x), real")
    if "d_fake" in cols:
        curve(ax, "d_fake", FAKE_COLOUR, "mean critic score D(G(z)), fake")
    ax.set_ylabel("critic score D\n(unbounded, higher = more real)")
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    if len(axes) > 1:
        ax = axes[1]
        cols["d_gap"] = cols["d_real"] - cols["d_fake"]
        curve(ax, "d_gap", GAP_COLOUR, "gap: mean D(x) - mean D(G(z))")
        ax.axhline(0.0, color="grey", ls="--", lw=1.2,
                   label="gap 0: the critic cannot tell real from fake")
        ax.set_ylabel("critic gap\n(WGAN: Wasserstein-1 estimate)")
        ax.legend(fontsize=8, loc="best")
        ax.grid(alpha=0.3)


# ------------------------------------------------------------------------- images


def _image_stack(images, name="images"):
    """(N, H, W) float64 in [0, 1] from (N, H*W) square, (N, H, W) or (N, 1, H, W) in [-1, 1]."""
    x = to_numpy(images)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim == 2:
        side = math.isqrt(x.shape[1])
        if side * side != x.shape[1]:
            raise ValueError(f"{name} of shape {x.shape}: flattened images must be square "
                             "(N, H*W), e.g. (N, 784); or pass (N, H, W).")
        x = x.reshape(x.shape[0], side, side)
    if x.ndim != 3:
        raise ValueError(f"{name} must have shape (N, 784), (N, 28, 28) or (N, 1, 28, 28), "
                         f"got {x.shape}.")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty: nothing to draw.")
    # [-1, 1] -> [0, 1]: the inverse of load_mnist's x / 127.5 - 1, up to the 255.
    return np.clip((x.astype(np.float64) + 1.0) / 2.0, 0.0, 1.0)


def _mosaic(cells, n_rows, n_cols, h, w, pad, fill=1.0):
    """One (rows*(h+pad)+pad, cols*(w+pad)+pad) image; cells: {(r, c): (h, w) image}."""
    out = np.full((n_rows * (h + pad) + pad, n_cols * (w + pad) + pad), fill)
    for (r, c), img in cells.items():
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        out[y:y + h, x:x + w] = img
    return out


def plot_image_grid(images, nrow=None, title=None, path=None, padding=2):
    """A grid of greyscale images (N, 784), (N, 28, 28) or (N, 1, 28, 28) in [-1, 1].

    nrow: images per row (as torchvision's make_grid); default ceil(sqrt(N)).
    -1 is drawn black, 1 white; cells are separated by ``padding`` white pixels.
    """
    x = _image_stack(images)
    n, h, w = x.shape
    ncol = int(nrow) if nrow is not None else math.ceil(math.sqrt(n))
    if ncol < 1:
        raise ValueError(f"nrow (images per row) must be >= 1, got {nrow}.")
    nrows = math.ceil(n / ncol)
    mosaic = _mosaic({(i // ncol, i % ncol): x[i] for i in range(n)}, nrows, ncol, h, w, padding)
    scale = min(0.5, 9.0 / max(ncol, nrows))  # inches per cell, at most 9 inches across
    fig = _new_figure(figsize=(max(2.0, ncol * scale), max(2.0, nrows * scale) + (0.4 if title else 0)))
    ax = fig.add_axes((0, 0, 1, 0.92 if title else 1))
    ax.imshow(mosaic, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_axis_off()
    if title:
        fig.suptitle(title)
    return _finish(fig, path, own=True)


def plot_class_grid(images, labels=None, n_per_class=None, class_names=None, title=None,
                    path=None, padding=2):
    """One row per class: samples of a conditional GAN, or real images sorted by label.

    Either ``labels`` (N,) ints: row c shows the first ``n_per_class`` images
    labelled c (default: as many as the most frequent class has, at most 10);
    or no labels and ``n_per_class``: the images are class-major, images[c *
    n_per_class + j] being sample j of class c (what sampling each class in turn
    gives), so N must be a multiple of n_per_class.
    class_names: row labels (default 0, 1, ...), e.g. data.FASHION_MNIST_CLASSES.
    """
    x = _image_stack(images)
    n, h, w = x.shape
    cells = {}
    if labels is not None:
        y = to_numpy(labels).ravel()
        if y.shape[0] != n or y.dtype.kind not in "iu":
            raise ValueError(f"labels must be (N,) integers for {n} images, got {y.dtype}{y.shape}.")
        if y.size and y.min() < 0:
            raise ValueError(f"labels must be >= 0, got {y.min()}.")
        n_classes = max(int(y.max()) + 1, len(class_names) if class_names else 0)
        counts = np.bincount(y, minlength=n_classes)
        if n_per_class is None:
            n_per_class = int(min(counts.max(), 10))
        for c in range(n_classes):
            for j, i in enumerate(np.flatnonzero(y == c)[:n_per_class]):
                cells[(c, j)] = x[i]
    else:
        if n_per_class is None:
            raise ValueError("pass labels (N,) or n_per_class (images class-major: "
                             "images[c * n_per_class + j] is sample j of class c).")
        if n_per_class < 1 or n % n_per_class:
            raise ValueError(f"{n} images do not split into rows of n_per_class={n_per_class}.")
        n_classes = n // n_per_class
        for i in range(n):
            cells[(i // n_per_class, i % n_per_class)] = x[i]
    n_per_class = int(n_per_class)
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be >= 1, got {n_per_class}.")
    if class_names is not None and len(class_names) < n_classes:
        raise ValueError(f"got {len(class_names)} class names for {n_classes} classes.")
    names = [str(c) for c in (class_names or range(n_classes))][:n_classes]
    return _labelled_grid(cells, (n_classes, n_per_class), (h, w), names, title=title,
                          path=path, padding=padding)


def _labelled_grid(cells, grid, cell, row_names, col_names=None, xlabel=None, title=None,
                   path=None, padding=2):
    """A ``_mosaic`` of ``cells`` ({(r, c): (h, w) image in [0, 1]}) on a ``grid`` of
    (rows, cols), with a name left of each row and, optionally, under each column."""
    (n_rows, n_cols), (h, w) = grid, cell
    mosaic = _mosaic(cells, n_rows, n_cols, h, w, padding)
    scale = min(0.5, 8.0 / max(n_rows, n_cols))  # inches per cell, at most 8 inches across
    label_width = 0.12 * max(len(s) for s in row_names) + 0.3
    below = (0.12 * max(len(s) for s in col_names) + 0.2 if col_names else 0) \
        + (0.3 if xlabel else 0)
    fig = _new_figure(figsize=(n_cols * scale + label_width,
                               n_rows * scale + below + (0.4 if title else 0)))
    ax = fig.add_subplot()
    ax.imshow(mosaic, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")

    def centres(k, size):
        return [padding + i * (size + padding) + size / 2 for i in range(k)]

    ax.set_yticks(centres(n_rows, h), row_names)
    if col_names:
        # names longer than a cell is wide stand upright
        upright = max(len(s) for s in col_names) * 0.09 > scale
        ax.set_xticks(centres(n_cols, w), col_names, rotation=90 if upright else 0)
    else:
        ax.set_xticks([])
    ax.tick_params(length=0)
    if xlabel:
        ax.set_xlabel(xlabel)
    for side in ax.spines.values():
        side.set_visible(False)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _finish(fig, path, own=True)


def _class_names(labels, class_names):
    """A name per label: ``class_names[y]``, or the number itself."""
    if class_names is not None and any(not 0 <= y < len(class_names) for y in labels):
        raise ValueError(f"got {len(class_names)} class names for labels from {min(labels)} "
                         f"to {max(labels)}: pass a name for every class.")
    return [str(class_names[y]) if class_names is not None else str(y) for y in labels]


def plot_progress(snapshots, labels=None, class_names=None, title=None, path=None,
                  padding=2):
    """What G draws from the same noise as training goes on: a row per recorded
    step (labelled with it), a column per fixed noise vector z_j, so that reading
    down a column shows G(z_j) change while z_j stays put.

    snapshots: (step, images) pairs, images (n, 784), (n, 28, 28) or (n, 1, 28, 28)
        in [-1, 1], the same n every step: ``ImageSnapshots(...).snapshots``
        (from ``minigan.train``), or a dict {step: images}.
    labels: (n,) ints, the class of each column for a conditional GAN (with
        ``ImageSnapshots``, sample j has class j % n_classes), written under it,
        as ``class_names[label]`` if given (e.g. ``data.FASHION_MNIST_CLASSES``).
    """
    pairs = list(snapshots.items() if isinstance(snapshots, Mapping) else snapshots)
    if not pairs:
        raise ValueError("snapshots is empty: record some during training with "
                         "minigan.train.ImageSnapshots(every) as a callback of fit.")
    if not all(isinstance(p, (tuple, list)) and len(p) == 2 for p in pairs):
        raise ValueError("snapshots must be (step, images) pairs (ImageSnapshots.snapshots) "
                         f"or a dict {{step: images}}, got {type(pairs[0]).__name__} items.")
    stacks = [_image_stack(images, f"the images of step {step}") for step, images in pairs]
    n, h, w = stacks[0].shape
    if any(x.shape != (n, h, w) for x in stacks):
        raise ValueError("every snapshot must hold the same number of images of one size (a "
                         "column is one noise vector); got "
                         f"{sorted({x.shape for x in stacks})}.")
    col_names = None
    if labels is not None:
        labels = [int(y) for y in np.asarray(to_numpy(labels)).ravel()]
        if len(labels) != n:
            raise ValueError(f"got {len(labels)} labels for {n} columns: pass one class per "
                             "image of a snapshot.")
        col_names = _class_names(labels, class_names)
    cells = {(r, c): x[c] for r, x in enumerate(stacks) for c in range(n)}
    rows = [f"step {int(step)}" for step, _ in pairs]
    return _labelled_grid(cells, (len(pairs), n), (h, w), rows, col_names=col_names,
                          xlabel="each column: one fixed noise vector z", title=title,
                          path=path, padding=padding)


def plot_interpolation(generator, n_rows=None, n_steps=10, seed=0, labels=None,
                       class_names=None, latent_dim=None, ema=True, title=None, path=None,
                       padding=2):
    """Walks through the latent space: each row goes from G(z0) to G(z1) in
    ``n_steps`` images, along ``slerp(z0, z1, t)``, t = 0, 1/(n_steps-1), ..., 1,
    with z0 and z1 drawn from N(0, I). A G that has learnt a smooth map morphs
    one image into the other; one that has memorised jumps between them.

    generator: a GAN (its moving-average G when it has one, unless ema=False),
        or a minigan generator model (a ``Layer``) with ``latent_dim`` given.
    n_rows: default 8, or one per class for a ``ConditionalGAN``.
    seed: an int, a list of ints or a Generator: the same seed, the same picture
        (z0, then z1: two float32 draws ``standard_normal((n_rows, latent_dim))``).
    labels: for a ``ConditionalGAN``, the class of each row (default row r:
        class r % n_classes). A row keeps its label fixed while z moves, so it
        morphs the style within one class; ``class_names`` names the rows.
    G runs in evaluation mode, on all n_rows * n_steps latent vectors at once.
    """
    from minigan.backend import make_rng

    from minigan.gan import ConditionalGAN, LabelledGenerator

    if isinstance(generator, LabelledGenerator):
        raise TypeError("plot_interpolation: a conditional G needs its labels; pass the "
                        "ConditionalGAN itself (it knows how to attach them), not its G.")
    conditional = isinstance(generator, ConditionalGAN)
    if latent_dim is None:
        latent_dim = getattr(generator, "latent_dim", None)
    if latent_dim is None:
        raise ValueError("plot_interpolation needs the size of z: pass a GAN, or "
                         "latent_dim= with a generator model.")
    if n_rows is None:
        n_rows = generator.n_classes if conditional else 8
    n_rows, n_steps = int(n_rows), int(n_steps)
    if n_rows < 1 or n_steps < 2:
        raise ValueError(f"need n_rows >= 1 and n_steps >= 2 (the two ends), got n_rows="
                         f"{n_rows}, n_steps={n_steps}.")
    rng = make_rng(seed)
    z0, z1 = (rng.standard_normal((n_rows, int(latent_dim)), dtype=np.float32)
              for _ in range(2))
    z = slerp(z0, z1, np.linspace(0.0, 1.0, n_steps))  # (n_rows, n_steps, latent_dim)
    row_labels = None
    if conditional:
        row_labels = (np.arange(n_rows) % generator.n_classes if labels is None
                      else np.asarray(to_numpy(labels)).astype(np.int64).ravel())
        if row_labels.shape != (n_rows,):
            raise ValueError(f"got {row_labels.size} labels for {n_rows} rows: pass one "
                             "class per row.")
    elif labels is not None:
        raise ValueError("labels are for a ConditionalGAN (a class per row); this "
                         f"{type(generator).__name__} takes none.")
    images = _generate_from(generator, z.reshape(n_rows * n_steps, -1),
                            None if row_labels is None else np.repeat(row_labels, n_steps), ema)
    x = _image_stack(images, "the generated images")
    cells = {(i // n_steps, i % n_steps): x[i] for i in range(len(x))}
    rows = _class_names(row_labels, class_names) if conditional else [""] * n_rows
    if title is None:
        title = "latent interpolation (slerp): each row walks from one z to another"
        if conditional:
            title += "\nwith its class fixed"
    return _labelled_grid(cells, (n_rows, n_steps), x.shape[1:], rows,
                          xlabel=f"z0  \u2192  z1 in {n_steps} steps", title=title, path=path,
                          padding=padding)


def _generate_from(generator, z, labels=None, ema=True):
    """G(z) in evaluation mode for host latents z (n, latent_dim) float32: a GAN's
    (moving-average) G, with ``labels`` (n,) for a conditional one, or a G model."""
    from minigan.layers import Layer, forward_in_eval_mode

    if isinstance(generator, Layer):
        return forward_in_eval_mode(generator, _to_model(z, generator))
    if not hasattr(generator, "G"):
        raise TypeError("generator must be a minigan GAN or a generator model (a Layer), "
                        f"got {type(generator).__name__}.")
    gan = generator
    G = gan.ema.G if ema and getattr(gan, "ema", None) is not None else gan.G
    z = _to_model(z, G)
    if labels is None:
        return forward_in_eval_mode(G, z)
    # a ConditionalGAN's G is a LabelledGenerator, which hands the labels on after
    # the images; its net is the generator proper, from [z, onehot(y)] to x
    return forward_in_eval_mode(G.net, gan.with_labels(z, labels))


# ------------------------------------------------------------------- latent space


def slerp(z0, z1, t):
    """Spherical linear interpolation between latent vectors (Shoemake 1985; for
    GANs, White 2016, "Sampling Generative Networks").

    z0, z1: (d,) or (n, d) float arrays, NumPy or CuPy (row i walks from z0[i]
        to z1[i]). t: a number, giving an array of z0's shape, or (k,) numbers,
        giving (k, d) or (n, k, d). t = 0 gives z0 and t = 1 gives z1 exactly.
    Returns z0's dtype (float32 stays float32), on z0's backend.

    Why not the straight line (1-t) z0 + t z1: under a Gaussian prior in d
    dimensions nearly all of the mass lies in a thin shell, ||z|| = sqrt(d)
    +- about 0.7. Two independent draws are nearly orthogonal, so their midpoint
    has norm about sqrt(d/2): for d = 100 that is 7.1, about six standard
    deviations inside the shell, where G was almost never trained, and the
    middle images of a linear path come out faded and alike. The great circle
    stays on the shell. With the angle Omega between z0 and z1,

        slerp(z0, z1, t) = sin((1-t) Omega) / sin(Omega) z0 + sin(t Omega) / sin(Omega) z1

    moves the direction at a constant angular speed. Here the norm is, in
    addition, interpolated linearly, ||z(t)|| = (1-t) ||z0|| + t ||z1||: for
    equal norms this is the formula above; for unequal ones it keeps the
    norm between the two ends (the formula alone can overshoot far beyond
    them when the angle is wide).

    Degenerate angles: where z0 and z1 point the same way (or one is 0), the
    circle shrinks to a point and the formula's limit, the straight line, is
    used. Where they point opposite ways every half great circle is as short:
    one through a direction perpendicular to z0, picked deterministically, is
    used (in 1-D there is none, and the line through 0 is the only path).
    """
    from minigan.backend import check_array

    check_array(z0, "z0")
    check_array(z1, "z1")
    xp = array_module(z0, z1)
    if z0.shape != z1.shape or z0.ndim not in (1, 2):
        raise ValueError(f"z0 and z1 must both be (d,) or both (n, d), got {tuple(z0.shape)} "
                         f"and {tuple(z1.shape)}.")
    t = xp.asarray(to_numpy(t), dtype=np.float64)
    if t.ndim > 1:
        raise ValueError(f"t must be a number or a 1-D array of them, got shape {t.shape}.")
    a, b = z0.astype(np.float64), z1.astype(np.float64)
    if t.ndim == 1:  # a path of k points per row: (..., k, d)
        a, b, t = a[..., None, :], b[..., None, :], t[:, None]
    na = xp.linalg.norm(a, axis=-1, keepdims=True)
    nb = xp.linalg.norm(b, axis=-1, keepdims=True)
    ua, ub = a / xp.where(na > 0, na, 1.0), b / xp.where(nb > 0, nb, 1.0)
    # the angle between the directions, accurate near 0 and pi too (arccos of
    # the dot product is not: its slope is infinite there)
    omega = 2.0 * xp.arctan2(xp.linalg.norm(ua - ub, axis=-1, keepdims=True),
                             xp.linalg.norm(ua + ub, axis=-1, keepdims=True))
    sin_omega = xp.sin(omega)
    tiny = 1e-7
    norm = (1.0 - t) * na + t * nb
    s = xp.where(sin_omega > tiny, sin_omega, 1.0)
    out = (xp.sin((1.0 - t) * omega) / s * norm / xp.where(na > 0, na, 1.0) * a
           + xp.sin(t * omega) / s * norm / xp.where(nb > 0, nb, 1.0) * b)
    same_way = (sin_omega <= tiny) & (omega < 1.0)
    same_way = same_way | (na == 0) | (nb == 0)
    out = xp.where(same_way, (1.0 - t) * a + t * b, out)
    d = a.shape[-1]
    opposite = (sin_omega <= tiny) & (omega > 1.0) & ~same_way
    if d > 1 and bool(opposite.any()):
        # a unit u perpendicular to z0: the axis z0 has least of, minus its part along z0
        axis = xp.argmin(xp.abs(ua), axis=-1)[..., None]
        u = (xp.arange(d) == axis).astype(np.float64)
        u = u - xp.sum(u * ua, axis=-1, keepdims=True) * ua
        u = u / xp.linalg.norm(u, axis=-1, keepdims=True)
        half_turn = norm * (xp.cos(np.pi * t) * ua + xp.sin(np.pi * t) * u)
        out = xp.where(opposite, half_turn, out)
    elif d == 1:
        out = xp.where(opposite, (1.0 - t) * a + t * b, out)
    # the ends exactly, whichever formula drew the path between them
    out = xp.where(t == 0, a, xp.where(t == 1, b, out))
    return out.astype(z0.dtype, copy=False)


# --------------------------------------------------------------------------- 2-D


def _grid_2d(lim, grid_size):
    gx = np.linspace(lim[0], lim[1], grid_size)
    gy = np.linspace(lim[2], lim[3], grid_size)
    xx, yy = np.meshgrid(gx, gy)  # "xy": xx[i, j] = gx[j], yy[i, j] = gy[i]
    return gx, gy, np.stack([xx.ravel(), yy.ravel()], axis=1)


def _critic_scale(d):
    """(centre, half_width) of a critic's colour scale: its median and largest deviation from it.

    The median of the drawn region is white, so blue reads "scored above the
    typical point here" (more real) and red "below" (more fake) whatever the
    scores' offset; the half width covers every finite score, so none is clipped.
    """
    finite = np.asarray(d, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return 0.0, 1.0
    centre = float(np.median(finite))
    # 1 + 1e-9: the extreme scores fall inside the end levels after rounding too
    half = float(np.max(np.abs(finite - centre))) * (1.0 + 1e-9)
    # A flat critic still needs increasing contour levels around its one value.
    return centre, max(half, 1e-6 * max(1.0, abs(centre)))


def _critic_colorbar(fig, cs, **where):
    """The colour bar of a critic's surface ``cs`` (``where``: ax=... or cax=...)."""
    from matplotlib.ticker import MaxNLocator

    # round ticks: the contour levels themselves are arbitrary numbers
    cb = fig.colorbar(cs, ticks=MaxNLocator(8), **where)
    cb.set_label(_CRITIC_LABEL)
    return cb


def _draw_critic_2d(ax, gx, gy, d, colorbar=True):
    """A critic's surface: a diverging map centred at its median, with no clipping.

    Returns the filled contour set (for a colour bar drawn elsewhere).
    """
    centre, half = _critic_scale(d)
    levels = np.linspace(centre - half, centre + half, 21)
    cs = ax.contourf(gx, gy, d, levels=levels, cmap=D_CMAP, vmin=levels[0], vmax=levels[-1],
                     alpha=0.6)
    if np.nanmin(d) < centre < np.nanmax(d):
        ax.contour(gx, gy, d, levels=[centre], colors="0.25", linewidths=1.0, linestyles="--")
    if colorbar:
        _critic_colorbar(ax.figure, cs, ax=ax, fraction=0.046, pad=0.03)
    return cs


def _draw_2d(ax, real, fake, lim, grid=None, centres=None, title=None, colorbar=True,
             legend=True, kind=PROBABILITY):
    """Draw D's surface (if grid = (gx, gy, d) is given), samples and centres into ax.

    kind: what d holds, "probability" (drawn on the fixed [0, 1] scale) or
    "critic" (see ``_draw_critic_2d``). Returns a critic's contour set, else None.
    """
    surface = None
    if grid is not None and kind == CRITIC:
        surface = _draw_critic_2d(ax, *grid, colorbar=colorbar)
    elif grid is not None:
        gx, gy, d = grid
        levels = np.linspace(0.0, 1.0, 21)
        cs = ax.contourf(gx, gy, d, levels=levels, cmap=D_CMAP, vmin=0.0, vmax=1.0, alpha=0.6)
        if np.nanmin(d) < 0.5 < np.nanmax(d):
            ax.contour(gx, gy, d, levels=[0.5], colors="0.25", linewidths=1.0, linestyles="--")
        if colorbar:
            cb = ax.figure.colorbar(cs, ax=ax, fraction=0.046, pad=0.03, ticks=[0, 0.25, 0.5, 0.75, 1])
            cb.set_label("D(x): probability of real (dashed: D = 1/2)")
    if real is not None and len(real):
        ax.scatter(real[:, 0], real[:, 1], s=4, c=REAL_COLOUR, alpha=0.6, lw=0,
                   label="real data", zorder=2)
    if fake is not None and len(fake):
        ax.scatter(fake[:, 0], fake[:, 1], s=5, c=FAKE_COLOUR, alpha=0.7, lw=0,
                   label="generated G(z)", zorder=3)
    if centres is not None:
        # Small crosses behind the points: a ring8 mode (std 0.01) is smaller than any
        # marker, so anything bigger would hide the very samples that hit it.
        ax.scatter(centres[:, 0], centres[:, 1], s=25, marker="+", c="tab:orange",
                   lw=0.8, label="mode centres", zorder=1)
    ax.set_xlim(lim[0], lim[1])
    ax.set_ylim(lim[2], lim[3])
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    if legend:
        leg = ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
        for handle in leg.legend_handles:  # same-size markers in the legend, whatever s was
            handle.set_sizes([25.0])
    return surface


def plot_2d(real, fake, discriminator=None, centres=None, path=None, ax=None, lim=None,
            title=None, logits=None, grid_size=120, score_kind=None):
    """Real (N, 2) vs generated (M, 2) samples, over D's decision surface.

    discriminator: optional; a GAN, a minigan model (logits) or a callable
    returning probabilities (see the module docstring); its probability of
    "real" is drawn as filled contours (blue = real, red = fake) on a
    ``grid_size`` x ``grid_size`` grid, with D = 1/2 dashed.
    score_kind: "critic" (or a critic's loss object) draws D's output as a
    critic's score instead, centred at its median (see "Critics" in the module
    docstring); default: the GAN's loss says, else "probability".
    centres: (K, 2) mode centres to mark. lim: L, (lo, hi) or (xmin, xmax,
    ymin, ymax); default the samples' extent (ignoring far outliers) plus 15%.
    ax: draw into these axes (no new figure).
    """
    real = _points(real, "real", 2)
    fake = _points(fake, "fake", 2)
    centres = None if centres is None else _points(centres, "centres", 2)
    lim = _check_lim(lim, 2) or _auto_lim_2d(real, fake, centres)
    grid, kind = None, PROBABILITY
    if discriminator is not None:
        gx, gy, pts = _grid_2d(lim, int(grid_size))
        d, kind = _d_values(discriminator, pts, logits, score_kind)
        grid = (gx, gy, d.reshape(len(gy), len(gx)))
    own = ax is None
    if own:
        fig = _new_figure(figsize=(6.4 if grid is not None else 5.4, 5.2))
        ax = fig.add_subplot()
    _draw_2d(ax, real, fake, lim, grid=grid, centres=centres, title=title, kind=kind)
    if own:
        ax.figure.tight_layout()
    return _finish(ax.figure, path, own=own)


# --------------------------------------------------------------------------- 1-D


def _draw_1d(ax, real, fake, lim, d_curve=None, z=None, data_pdf=None, title=None,
             ytop=None, curves=None, legend=True, kind=PROBABILITY):
    """Figure 1 of Goodfellow et al.: p_data dotted black, p_g solid green, D dashed blue.

    Returns the twin axes holding D (or None). ``curves`` may hold precomputed
    (grid, p_data, p_g) so that an animation does not redo the densities.
    kind: what d_curve's values are, "probability" (drawn on [0, 1]) or
    "critic" (drawn on the range of its scores).
    """
    if curves is None:
        curves = _densities_1d(real, fake, lim, data_pdf)
    grid, p_data, p_g = curves
    top = ytop or 1.15 * max(np.max(p_data), np.max(p_g), 1e-12)
    ax.plot(grid, p_data, color=REAL_COLOUR, ls=":", lw=2.0, label="data density $p_{data}$")
    ax.plot(grid, p_g, color=FAKE_COLOUR, lw=2.0, label="generator density $p_g$")
    # The data samples themselves, as a rug of black dots on the x line.
    rug = real[:: max(1, len(real) // 300), 0]
    ax.plot(rug, np.zeros_like(rug), "|", color=REAL_COLOUR, ms=6, alpha=0.4)
    bottom = 0.0
    if z is not None:
        # The mapping x = G(z): z on a lower line, x on the upper (y = 0) one.
        zc = z[:, 0]
        order = np.argsort(zc)
        pick = order[np.linspace(0, len(order) - 1, min(25, len(order))).astype(int)]
        z_line = -0.3 * top
        for i in pick:
            ax.plot([zc[i], fake[i, 0]], [z_line, 0.0], color=FAKE_COLOUR, lw=0.7, alpha=0.6)
        ax.axhline(z_line, color="0.3", lw=0.8)
        ax.text(lim[0], z_line, " z", va="bottom", ha="left", fontsize=9)
        ax.text(lim[0], 0.0, " x", va="bottom", ha="left", fontsize=9)
        bottom = 1.4 * z_line
    ax.axhline(0.0, color="0.3", lw=0.8)
    ax.set_xlim(*lim)
    ax.set_ylim(bottom if z is not None else -0.03 * top, top)
    ax.set_ylabel("density")
    ax.set_xlabel("x")
    handles, labels = ax.get_legend_handles_labels()
    dax = None
    if d_curve is not None and kind == CRITIC:
        dax = _draw_critic_1d(ax, *d_curve)
        h2, l2 = dax.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    elif d_curve is not None:
        dgrid, d = d_curve
        dax = ax.twinx()
        dax.plot(dgrid, d, color=D_COLOUR, ls="--", lw=2.0, label="discriminator D(x)")
        dax.axhline(0.5, color=D_COLOUR, ls=":", lw=0.8, alpha=0.6)
        # Align D's 0 with the density's 0, whatever lies below it (the z line).
        lo, hi = ax.get_ylim()
        dax.set_ylim(lo / hi * 1.05, 1.05)
        dax.set_yticks([0, 0.5, 1])
        dax.set_ylabel("D(x)", color=D_COLOUR)
        dax.tick_params(axis="y", colors=D_COLOUR)
        h2, l2 = dax.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    if legend:
        ax.legend(handles, labels, loc="upper left", fontsize=8, framealpha=0.8)
    if title:
        ax.set_title(title)
    return dax


def _draw_critic_1d(ax, dgrid, d):
    """A critic's scores on a twin axis of their own range; returns that axis.

    The scores' range is stretched over the densities' [0, 0.95 * top], so the
    curve stays above the z line (where there is one), as a probability does.
    """
    dax = ax.twinx()
    dax.plot(dgrid, d, color=D_COLOUR, ls="--", lw=2.0, label="critic score D(x)")
    centre, half = _critic_scale(d)
    dax.axhline(centre, color=D_COLOUR, ls=":", lw=0.8, alpha=0.6)
    finite = d[np.isfinite(d)]
    d_lo, d_hi = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 1.0)
    if not d_hi > d_lo:
        d_lo, d_hi = d_lo - half, d_hi + half
    lo, hi = ax.get_ylim()
    at_zero, at_top = -lo / (hi - lo), 0.95  # where d_lo and d_hi sit, as fractions of the axis
    span = (d_hi - d_lo) / (at_top - at_zero)
    dax.set_ylim(d_lo - at_zero * span, d_lo + (1.0 - at_zero) * span)
    dax.set_ylabel("critic score D(x) (dotted: its median)", color=D_COLOUR)
    dax.tick_params(axis="y", colors=D_COLOUR)
    return dax


def _densities_1d(real, fake, lim, data_pdf=None, n_grid=400):
    grid = np.linspace(lim[0], lim[1], n_grid)
    if data_pdf is not None:
        p_data = np.asarray(to_numpy(data_pdf(grid[:, None])), dtype=np.float64).reshape(n_grid)
    else:
        p_data = _kde(real[:, 0], grid)
    return grid, p_data, _kde(fake[:, 0], grid)


def plot_1d(real, fake, discriminator=None, path=None, ax=None, lim=None, z=None,
            data_pdf=None, title=None, logits=None, score_kind=None):
    """1-D data and generator densities with D's curve, as in Goodfellow et al. 2014, Fig. 1.

    real (N, 1) or (N,), fake (M, 1) or (M,): densities are kernel estimates
    (black dotted: data, green solid: generator); data_pdf: the exact data
    density instead, a callable (G, 1) -> (G,) such as ``gaussian1d().pdf``.
    discriminator: optional (see the module docstring); its probability of
    "real" is the blue dashed curve, on the right-hand axis (at the
    equilibrium it is flat at 1/2). z: (M, 1) latent codes of ``fake``: lines
    from z (lower line) to x = G(z) (upper line) show how G maps noise to data.
    lim: (lo, hi); default the extent of the samples (and z) plus 15%.
    score_kind: "critic" (or a critic's loss object) draws D's output as a
    critic's score, on an axis of its own range (see "Critics" in the module
    docstring); default: the GAN's loss says, else "probability".
    """
    real = _points(real, "real", 1)
    fake = _points(fake, "fake", 1)
    if z is not None:
        z = _points(z, "z", 1)
        if len(z) != len(fake):
            raise ValueError(f"z has {len(z)} rows but fake has {len(fake)}: z[i] must be "
                             "the latent code of fake[i].")
    lim = _check_lim(lim, 1) or _auto_lim_1d(real, fake, z)
    d_curve, kind = None, PROBABILITY
    if discriminator is not None:
        dgrid = np.linspace(lim[0], lim[1], 300)
        d, kind = _d_values(discriminator, dgrid[:, None], logits, score_kind)
        d_curve = (dgrid, d)
    own = ax is None
    if own:
        fig = _new_figure(figsize=(7.5, 4.2))
        ax = fig.add_subplot()
    _draw_1d(ax, real, fake, lim, d_curve=d_curve, z=z, data_pdf=data_pdf, title=title,
             kind=kind)
    if own:
        ax.figure.tight_layout()
    return _finish(ax.figure, path, own=own)


# ----------------------------------------------------------------- animation frames


def _host_copy(x, name, dim):
    # A float32 copy: the training loop may reuse or overwrite its buffers later.
    return np.array(_points(x, name, dim), dtype=np.float32)


def _info(info, step):
    info = {} if info is None else {k: float(v) for k, v in dict(info).items()
                                    if np.ndim(v) == 0 and isinstance(v, (int, float, np.number))}
    if step is None and "step" in info:
        step = int(info["step"])
    return info, (None if step is None else int(step))


def snapshot_1d(real, fake, discriminator=None, step=None, info=None, lim=None, z=None,
                grid_size=200, logits=None, score_kind=None):
    """One frame for ``animate_1d``: copies of the samples and D on a grid of x values.

    real (N, 1), fake (M, 1); z (M, 1): optional latent codes of fake.
    discriminator: see the module docstring; score_kind: as ``plot_1d``'s (a
    critic's frame is marked d_kind="critic"). info: e.g. the dict returned by
    ``gan.train_step`` (its "step" is used when step is None). lim: (lo, hi),
    default the real samples' extent widened 3 times, the same every frame as
    long as ``real`` is; fix it when the generator starts far from the data.
    """
    real = _host_copy(real, "real", 1)
    fake = _host_copy(fake, "fake", 1)
    z = None if z is None else _host_copy(z, "z", 1)
    lim = _check_lim(lim, 1)
    if lim is None:
        lo, hi = _auto_lim_1d(real, margin=0.0)
        mid, half = (lo + hi) / 2, max(hi - lo, 1e-3) / 2
        lo, hi = mid - 3 * half, mid + 3 * half
        if z is not None:  # z's distribution is fixed, so this too is the same every frame
            zlo, zhi = _auto_lim_1d(z, margin=0.1)
            lo, hi = min(lo, zlo), max(hi, zhi)
        lim = (lo, hi)
    info, step = _info(info, step)
    frame = {"step": step, "real": real, "fake": fake, "lim": lim, "info": info}
    if z is not None:
        if len(z) != len(fake):
            raise ValueError(f"z has {len(z)} rows but fake has {len(fake)}: z[i] must be "
                             "the latent code of fake[i].")
        frame["z"] = z
    if discriminator is not None:
        gx = np.linspace(lim[0], lim[1], int(grid_size))
        frame["grid_x"] = gx
        frame["d_grid"], kind = _d_values(discriminator, gx[:, None], logits, score_kind)
        if kind == CRITIC:
            frame["d_kind"] = CRITIC
    return frame


def snapshot_2d(real, fake, discriminator=None, step=None, info=None, lim=None,
                grid_size=60, logits=None, score_kind=None):
    """One frame for ``animate_2d``: copies of the samples and D on a grid_size^2 grid.

    real (N, 2), fake (M, 2); discriminator: see the module docstring (one
    forward pass over grid_size^2 points: cheap); score_kind: as ``plot_2d``'s
    (a critic's frame is marked d_kind="critic"). info: e.g. the dict returned
    by ``gan.train_step``. lim: (xmin, xmax, ymin, ymax); default the real
    samples' extent widened 1.6 times, the same every frame as long as ``real`` is.
    """
    real = _host_copy(real, "real", 2)
    fake = _host_copy(fake, "fake", 2)
    lim = _check_lim(lim, 2)
    if lim is None:
        x0, x1, y0, y1 = _auto_lim_2d(real, margin=0.0)
        cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 0.8 * max(x1 - x0, 1e-3)
        lim = (cx - half, cx + half, cy - half, cy + half)
    info, step = _info(info, step)
    frame = {"step": step, "real": real, "fake": fake, "lim": lim, "info": info}
    if discriminator is not None:
        gx, gy, pts = _grid_2d(lim, int(grid_size))
        frame["grid_x"], frame["grid_y"] = gx, gy
        d, kind = _d_values(discriminator, pts, logits, score_kind)
        frame["d_grid"] = d.reshape(len(gy), len(gx))
        if kind == CRITIC:
            frame["d_kind"] = CRITIC
    return frame


def _frame_title(frame, title):
    parts = [title] if title else []
    if frame.get("step") is not None:
        parts.append(f"step {frame['step']}")
    info = frame.get("info") or {}
    parts += [f"{k} {info[k]:.3f}" for k in ("d_loss", "g_loss") if k in info]
    return "  ·  ".join(parts)


def _check_frames(frames, dim):
    frames = list(frames)
    if not frames:
        raise ValueError("frames is empty: collect at least one with snapshot_"
                         f"{dim}d(...) during training.")
    for i, f in enumerate(frames):
        if not isinstance(f, Mapping) or "real" not in f or "fake" not in f:
            raise ValueError(f"frame {i} must be a dict with at least 'real' and 'fake' "
                             f"(see snapshot_{dim}d), got {type(f).__name__}"
                             + (f" with keys {sorted(f)}" if isinstance(f, Mapping) else "") + ".")
    return frames


def _write_gif(fig, path, frames, draw, fps, dpi):
    from matplotlib.animation import PillowWriter

    path = _prepare_path(path, suffixes=(".gif",))
    fps = float(fps)
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}.")

    def write(tmp):
        writer = PillowWriter(fps=fps)
        writer.setup(fig, tmp, dpi=dpi)
        for i, frame in enumerate(frames):
            draw(frame)
            if i == 0:
                fig.tight_layout()  # once: the layout then stays put between frames
            writer.grab_frame()
        writer.finish()

    _atomic(path, write)


def _frames_kind(frames, score_kind):
    """What the frames' d_grid holds: ``score_kind`` if given, else "critic" if any
    frame is marked so (frames restored from a checkpoint may not be), else "probability"."""
    kind = _score_kind(score_kind)
    if kind is not None:
        return kind
    return CRITIC if any(f.get("d_kind") == CRITIC for f in frames) else PROBABILITY


def animate_2d(frames, path, fps=10, lim=None, centres=None, title=None, dpi=80,
               score_kind=None):
    """Save 2-D training frames (from ``snapshot_2d``) as an animated GIF; returns the Figure.

    lim: default the first frame's; centres: (K, 2) mode centres to mark.
    score_kind: what the frames' d_grid holds (see "Critics" in the module
    docstring); default "critic" if a frame is marked so, else "probability".
    A critic's colour scale is each frame's own (its scores drift during
    training), and the colour bar follows it. The figure shows the last frame.
    """
    frames = _check_frames(frames, 2)
    kind = _frames_kind(frames, score_kind)
    centres = None if centres is None else _points(centres, "centres", 2)
    lim = _check_lim(lim, 2) or (_check_lim(frames[0]["lim"], 2) if frames[0].get("lim")
                                 else _auto_lim_2d(_points(frames[0]["real"], "real", 2)))
    has_d = any("d_grid" in f for f in frames)
    fig = _new_figure(figsize=(6.4 if has_d else 5.4, 5.4))
    ax = fig.add_subplot()
    cax = None
    if has_d and kind == CRITIC:  # its place; each frame redraws it on that frame's scale
        import matplotlib as mpl

        sm = mpl.cm.ScalarMappable(norm=mpl.colors.Normalize(-1, 1), cmap=D_CMAP)
        cax = _critic_colorbar(fig, sm, ax=ax, fraction=0.046, pad=0.03).ax
    elif has_d:  # one colour bar for the whole animation: D's range is always [0, 1]
        import matplotlib as mpl

        sm = mpl.cm.ScalarMappable(norm=mpl.colors.Normalize(0, 1), cmap=D_CMAP)
        cb = fig.colorbar(sm, ax=ax, fraction=0.046, pad=0.03, ticks=[0, 0.25, 0.5, 0.75, 1],
                          alpha=0.6)  # the surface's alpha, so the colours match
        cb.set_label("D(x): probability of real (dashed: D = 1/2)")

    def draw(frame):
        ax.clear()
        grid = None
        if "d_grid" in frame:
            grid = (np.asarray(frame["grid_x"]), np.asarray(frame["grid_y"]),
                    np.asarray(frame["d_grid"]))
        surface = _draw_2d(ax, _points(frame["real"], "real", 2),
                           _points(frame["fake"], "fake", 2), lim, grid=grid, centres=centres,
                           title=_frame_title(frame, title), colorbar=False, kind=kind)
        if surface is not None:  # a critic's: its colour bar, on this frame's scale
            cax.clear()
            _critic_colorbar(fig, surface, cax=cax)

    _write_gif(fig, path, frames, draw, fps, dpi)
    return _finish(fig, None, own=True)


def animate_1d(frames, path, fps=10, lim=None, data_pdf=None, title=None, dpi=80,
               score_kind=None):
    """Save 1-D training frames (from ``snapshot_1d``) as an animated GIF; returns the Figure.

    Each frame is drawn as ``plot_1d`` draws it, with the axes fixed over the
    whole animation (but a critic's score axis, which is each frame's own).
    data_pdf: exact data density, as in ``plot_1d``. score_kind: as ``animate_2d``'s.
    """
    frames = _check_frames(frames, 1)
    kind = _frames_kind(frames, score_kind)
    lim = _check_lim(lim, 1) or (_check_lim(frames[0]["lim"], 1) if frames[0].get("lim")
                                 else _auto_lim_1d(_points(frames[0]["real"], "real", 1)))
    data = [(_points(f["real"], "real", 1), _points(f["fake"], "fake", 1)) for f in frames]
    curves = [_densities_1d(r, g, lim, data_pdf) for r, g in data]
    # One y scale for the whole animation; a collapsing generator's spike may be
    # cut off at 3 times the data density's peak rather than flatten everything else.
    peak_data = max(float(np.max(c[1])) for c in curves)
    peak_g = max(float(np.max(c[2])) for c in curves)
    ytop = 1.15 * max(peak_data, min(peak_g, 3 * peak_data), 1e-12)
    fig = _new_figure(figsize=(7.5, 4.2))
    ax = fig.add_subplot()
    state = {"dax": None}

    def draw(i):
        frame = frames[i]
        ax.clear()
        if state["dax"] is not None:
            state["dax"].remove()
        real, fake = data[i]
        d_curve = (np.asarray(frame["grid_x"]), np.asarray(frame["d_grid"])) \
            if "d_grid" in frame else None
        z = _points(frame["z"], "z", 1) if frame.get("z") is not None else None
        state["dax"] = _draw_1d(ax, real, fake, lim, d_curve=d_curve, z=z, ytop=ytop,
                                curves=curves[i], title=_frame_title(frame, title), kind=kind)

    _write_gif(fig, path, range(len(frames)), draw, fps, dpi)
    return _finish(fig, None, own=True)


# ------------------------------------------------------------- by data set


def plot_samples(samples, dataset, discriminator=None, labels=None, class_names=None,
                 title=None, path=None, score_kind=None):
    """The usual picture of generated ``samples`` for ``dataset`` (a ``ToyDataset``
    or the name of an image set): for images a grid of 100 (one row per class,
    when ``labels`` gives each sample's class); for 1-D and 2-D data the samples
    over as many real ones, D's probability (or a critic's score: see
    ``score_kind`` in ``plot_2d``) and the mode centres, in the data set's fixed
    ``plot_lim``. Returns the Figure."""
    if not hasattr(dataset, "sample"):  # images
        if labels is not None:
            return plot_class_grid(samples, labels, n_per_class=10, class_names=class_names,
                                   title=title, path=path)
        return plot_image_grid(samples[:100], nrow=10, title=title, path=path)
    real = dataset.sample(len(samples), np.random.default_rng(0))
    if dataset.dim == 2:
        return plot_2d(real, samples, discriminator=discriminator,
                       centres=dataset.plot_centres, lim=dataset.plot_lim, title=title,
                       path=path, score_kind=score_kind)
    return plot_1d(real, samples, discriminator=discriminator, lim=dataset.plot_lim,
                   data_pdf=getattr(dataset, "pdf", None), title=title, path=path,
                   score_kind=score_kind)


def animate(frames, dataset, path, title=None, score_kind=None):
    """``animate_2d`` or ``animate_1d`` of a toy ``dataset``'s training frames, in its
    ``plot_lim``, with its mode centres (2-D) or density (1-D). score_kind: see
    ``animate_2d``."""
    if dataset.dim == 2:
        return animate_2d(frames, path, lim=dataset.plot_lim, centres=dataset.plot_centres,
                          title=title, score_kind=score_kind)
    return animate_1d(frames, path, lim=dataset.plot_lim, data_pdf=getattr(dataset, "pdf", None),
                      title=title, score_kind=score_kind)
