"""The command line: ``python -m minigan`` (or the ``minigan`` script).

    python -m minigan train                      # ring8, the preset settings, about a minute
    python -m minigan train --dataset mnist      # the classic MLP GAN on MNIST
    python -m minigan sample --checkpoint runs/ring8-.../checkpoint.npz --n 1000 --out s.png
    python -m minigan gradcheck                  # every layer's and op's backward, checked
    python -m minigan info                       # versions, backends, GPU, data

``python -m minigan COMMAND --help`` lists every option. ``train`` is argparse
and printing around ``minigan.train.fit``, which runs the training itself.
Exit codes: 0 success, 1 a failed check, a diverged run or a file that could not
be written (full disk, read-only folder; what was saved is kept), 2 a usage error
(bad option, existing or busy run directory, missing file), 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import sys
import textwrap
import time

import numpy as np

from minigan._atomic import atomic_open
from minigan import rundir
from minigan.checkpoint import CheckpointError
from minigan.data import DataError
from minigan.presets import (
    DCGAN,
    DATASETS,
    IMAGE_DATASETS,
    METHOD_LOSSES,
    METHODS,
    PRESETS,
    TOY_DATASETS,
    method_for,
    method_settings,
    penalty_weight,
    preset,
)

__all__ = ["main", "build_parser", "train", "CLIError"]

IMAGE_FIGURES = ("progress.png", "interpolation.png")  # image data sets only
RUN_FILES = ("config.json", "checkpoint.npz", "history.csv", "metrics.json", "samples.npy",
             "losses.png", "samples.png", *IMAGE_FIGURES, "training.gif")
TOY_BATCH_LIMIT = 100_000
N_METRIC_SAMPLES_TOY = 2500       # the VEEGAN/PacGAN protocol
N_METRIC_SAMPLES_IMAGES = 10_000
N_SAVED_IMAGES = 1000
PROGRESS_ROWS, PROGRESS_COLUMNS = 10, 10  # progress.png: about 10 steps x 10 fixed z


class CLIError(Exception):
    """A usage problem: printed as 'minigan COMMAND: error: ...', exit code 2."""


# ----------------------------------------------------------------- small helpers


def _argument_type(convert, accept, expected):
    """An argparse type: convert the text, then refuse what ``accept`` rejects, saying what was expected."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value
    return parse


_positive_int = _argument_type(int, lambda v: v >= 1, "a positive integer")
_non_negative_int = _argument_type(int, lambda v: v >= 0, "an integer >= 0")
_positive_float = _argument_type(float, lambda v: math.isfinite(v) and v > 0, "a positive number")
_unit_float = _argument_type(float, lambda v: 0.0 <= v < 1.0, "a number in [0, 1)")
_beta = _argument_type(float, lambda v: 0.0 <= v < 1.0, "a beta in [0, 1)")
# Every frame is kept in memory and in each checkpoint (about 20 KB on a 2-D set)
# and drawn into the GIF: a frame every step made a 13 s run take 513 s and 3.5 GB.
MAX_FRAMES = 200
_frame_count = _argument_type(int, lambda v: 0 <= v <= MAX_FRAMES,
                              f"an integer from 0 to {MAX_FRAMES}")


def _atomic_json(path, obj):
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(obj, indent=2, allow_nan=True) + "\n")


def _atomic_npy(path, array):
    with atomic_open(path) as f:
        np.save(f, array, allow_pickle=False)


def _headless_matplotlib():
    """Use the Agg backend unless the user chose one: the CLI never opens windows."""
    os.environ.setdefault("MPLBACKEND", "Agg")


def _use_backend(name=None):
    """This command's backend: ``--backend NAME``, else $MINIGAN_BACKEND, else numpy.

    One that cannot work (CuPy missing, no GPU, an unknown name) is a CLIError
    that says how to fix it, the same for the option and the variable.
    """
    from minigan import backend as mb

    source = f"--backend {name}"
    if name is None and os.environ.get("MINIGAN_BACKEND"):
        name = os.environ["MINIGAN_BACKEND"]
        source = f"MINIGAN_BACKEND={name}"
    if name is None:
        return mb.get_backend()
    try:
        mb.use(name)
    except (RuntimeError, ValueError) as err:
        raise CLIError(f"{source}: {err}") from None
    return mb.get_backend()


def _is_conditional(gan):
    return hasattr(gan, "n_classes")  # a minigan.gan.ConditionalGAN


# ------------------------------------------------------------------------- data


def _image_files(dataset, data_dir, with_test):
    """Make sure the files a run needs are there (downloading them if need be):
    the training images and labels, and, to score the samples, the test ones."""
    from minigan.data import fetch_files
    from minigan.data.mnist import SPLITS

    names = [*SPLITS["train"], *(SPLITS["test"] if with_test else ())]
    try:
        fetch_files(dataset, names, data_dir=data_dir)
    except DataError as err:
        why = " (training, then scoring the samples)" if with_test else ""
        raise CLIError(f"cannot load {dataset}: {err}\nThis run needs {', '.join(names)}{why}. "
                       f"If you have them elsewhere, pass --data-dir FOLDER, a folder that "
                       f"has {dataset}/ with them.") from None


def _scoring_needs_test_files(dataset, no_metrics):
    """Scoring trains the classifier once (on the training set, tested on the test
    set): without a cached one, the test files are needed too."""
    from minigan import metrics

    return not no_metrics and not metrics.classifier_path(dataset).is_file()


def _training_data(run):
    """(toy dataset or None, resumable batch source: Minibatches or ToySampler)."""
    from minigan.data import Minibatches, ToySampler, load_fashion_mnist, load_mnist, toy_dataset

    config, args = run.config, run.args
    rng = np.random.default_rng([run.seed, 3])  # the data's own stream
    dtype = config.get("dtype", "float32")
    name = config["dataset"]
    if name in TOY_DATASETS:
        dataset = toy_dataset(name)
        _check_numbers(config, None)
        return dataset, ToySampler(dataset, config["batch_size"], rng=rng, backend=run.backend,
                                   dtype=dtype)
    _image_files(name, args.data_dir, _scoring_needs_test_files(name, args.no_metrics))
    load = load_mnist if name == "mnist" else load_fashion_mnist
    try:
        images, labels = load("train", data_dir=args.data_dir)
    except DataError as err:
        raise CLIError(f"cannot load {name}: {err}") from None
    _check_numbers(config, images.shape[0])
    # A conditional GAN trains on (images, labels) pairs.
    arrays = (images.astype(dtype, copy=False), labels)[: 2 if config.get("n_classes") else 1]
    return None, Minibatches(*arrays, batch_size=config["batch_size"], rng=rng,
                             backend=run.backend)


def _batches(stream, d_steps):
    """What ``train_step`` takes, endlessly: a batch, or a list of d_steps batches."""
    source = stream.forever() if hasattr(stream, "forever") else stream
    while True:
        yield next(source) if d_steps == 1 else [next(source) for _ in range(d_steps)]


# ---------------------------------------------------------------- scores, figures

MODE_COVERAGE_NOTE = (
    "  (of 2500 samples: a sample is high quality within 3 std of its nearest mode; a mode "
    "is captured\n   if it is the nearest to at least one such sample; reverse KL compares "
    "their spread over\n   the modes with uniform, 0 is best)")


def _score(run, samples):
    """(the metrics to store, the headline to print) for the final samples."""
    from minigan import metrics

    name, gan = run.config["dataset"], run.gan
    if run.args.no_metrics:
        return {"skipped": "--no-metrics"}, "metrics skipped (--no-metrics)"
    if name in TOY_DATASETS:
        scores = metrics.toy_scores(samples, run.dataset, run.seed)
        modes = scores.get("mode_coverage", {}).get("n_modes", 0)
        note = "\n" + MODE_COVERAGE_NOTE if modes > 1 else ""
        return scores, metrics.headline(scores) + note
    asked = np.arange(len(samples)) % gan.n_classes if _is_conditional(gan) else None
    try:
        scores = metrics.image_scores(samples, name, labels=asked, data_dir=run.args.data_dir)
    except (DataError, OSError) as err:
        # The run itself is saved; only the score is missing.
        print(f"Could not score the samples: {err}", file=sys.stderr)
        return {"skipped": f"scoring failed: {err}"}, "not scored"
    return scores, metrics.headline(scores)


def _plot_samples(path, gan, name, samples, title):
    """samples.png: see ``minigan.plot.plot_samples``."""
    from minigan import plot
    from minigan.data import FASHION_MNIST_CLASSES, toy_dataset

    dataset = toy_dataset(name) if name in TOY_DATASETS else name
    # gan.sample cycles the labels 0..C-1, so sample i has class i % C
    labels = np.arange(len(samples)) % gan.n_classes if _is_conditional(gan) else None
    names = FASHION_MNIST_CLASSES if name == "fashion-mnist" else None
    plot.plot_samples(samples, dataset, discriminator=None if labels is not None else gan,
                      labels=labels, class_names=names, title=title, path=path)


def _equilibrium_lines(config):
    """plot_losses' reference lines: its defaults are the cross-entropy losses'
    values at D = 1/2; the other losses have other (or no) such values, so none."""
    if config.get("loss", "bce") == "bce":
        return {}
    return {"d_loss_at_equilibrium": None, "g_loss_at_equilibrium": None}


def _figures(run, samples):
    """losses.png, samples.png, (images) progress.png and interpolation.png, and
    (1-D, 2-D) training.gif, each added to ``run.written`` once it is on disk."""
    _headless_matplotlib()
    from minigan import plot

    out, name, gan = run.out, run.config["dataset"], run.gan
    plot.plot_losses(gan.history, path=os.path.join(out, "losses.png"),
                     score_kind=gan.loss, **_equilibrium_lines(run.config))
    run.written.append("losses.png")
    _plot_samples(os.path.join(out, "samples.png"), gan, name, samples,
                  f"{name}, step {gan.step}")
    run.written.append("samples.png")
    if name in IMAGE_DATASETS:
        _image_figures(run, plot)
    if run.frames is not None and run.frames.frames:
        plot.animate(run.frames.frames, run.dataset, os.path.join(out, "training.gif"),
                     title=name, score_kind=gan.loss)
        run.written.append("training.gif")


def _image_figures(run, plot):
    """progress.png (what G drew from fixed noise over the run) and interpolation.png
    (slerp walks in z, from a seed of the run's own, so a rerun draws the same)."""
    from minigan.data import FASHION_MNIST_CLASSES

    out, name, gan = run.out, run.config["dataset"], run.gan
    names = FASHION_MNIST_CLASSES if name == "fashion-mnist" else None
    source = ", G's moving average" if gan.ema is not None else ""
    if run.snapshots is not None and run.snapshots.snapshots:
        # gan.sample cycles the labels 0..C-1: column j has class j % C
        labels = (np.arange(run.snapshots.n) % gan.n_classes if _is_conditional(gan)
                  else None)
        plot.plot_progress(run.snapshots.snapshots, labels=labels, class_names=names,
                           title=f"{name}: the same noise over training{source}",
                           path=os.path.join(out, "progress.png"))
        run.written.append("progress.png")
    fixed = "\neach row keeps its class fixed" if _is_conditional(gan) else ""
    plot.plot_interpolation(gan, seed=[run.seed, 9], class_names=names,
                            title=f"{name}, step {gan.step}{source}: slerp from one z to "
                                  f"another{fixed}",
                            path=os.path.join(out, "interpolation.png"))
    run.written.append("interpolation.png")


# ------------------------------------------------------------------------- train


class _Run:
    """What one ``train`` command works with, filled in as it goes."""

    def __init__(self, args):
        self.args, self.t_start, self.written = args, time.perf_counter(), []
        self.config = self.seed = self.resume = self.backend = self.out = None
        self.gan = self.dataset = self.stream = self.frames = self.checkpoints = None
        self.snapshots = None  # images: train.ImageSnapshots, for progress.png
        self.train_seconds = 0.0
        self.lock = None  # the run directory's lock, held until the command ends
        self.start_step = 0  # the step training starts from (a resumed run's)

    @property
    def checkpoint_path(self):
        return os.path.join(self.out, "checkpoint.npz")

    def extra_state(self):
        """What a checkpoint stores beside the GAN: the data iterator, the frames and
        the image snapshots."""
        extra = {"seed": self.seed, "dataset": self.config["dataset"],
                 "data_state": self.stream.state_dict()}
        for figure in (self.frames, self.snapshots):
            if figure is not None:
                extra.update(figure.state_dict())
        return extra


# The settings a run's checkpoint stores: options on a new run, fixed on --resume.
_SETTINGS = ("batch_size", "lr_g", "lr_d", "g_loss", "d_steps", "label_smoothing", "ema_decay",
             "frames", "pack", "loss", "checkpoint_every", "betas", "penalty", "penalty_weight",
             "penalty_every", "spectral_norm", "arch", "g_dense", "projection")

#: what each loss other than bce sets G's loss to, for the error when --g-loss is given too
_BOTH_LOSSES = {"lsgan": "least squares", "wasserstein": "the Wasserstein critic's",
                "hinge": "the hinge loss (and G's loss -D(G(z)))"}


def _refuse_what_the_data_cannot_have(args):
    """CLIError for a DCGAN on 1-D/2-D points, --g-dense without the DCGAN, a
    conditional GAN on unlabelled data, or --projection without a conditional DCGAN."""
    images = ", ".join(IMAGE_DATASETS)
    if args.arch == "dcgan" and args.dataset not in IMAGE_DATASETS:
        raise CLIError(f"--arch dcgan is a convolutional GAN for images ({images}); "
                       f"{args.dataset} has 1-D/2-D points")
    if args.arch != "dcgan" and args.g_dense is not None:
        raise CLIError("--g-dense adds hidden Dense layers to the DCGAN's G: it needs "
                       "--arch dcgan (the MLP's G is all Dense layers, set by its preset)")
    if args.conditional and args.dataset not in IMAGE_DATASETS:
        raise CLIError(f"--conditional needs labelled data ({images}); "
                       f"{args.dataset} has no labels")
    if args.projection and not (args.arch == "dcgan" and args.conditional):
        raise CLIError("--projection is how the conditional DCGAN's D takes the label: it "
                       "needs --arch dcgan --conditional")


def _config_from_args(args):
    """The run's settings: the preset (``presets.preset``: the dataset's, with the
    conditional and DCGAN settings laid over it), then the settings of the method
    --loss/--penalty select (``presets.method_settings``), then the flags."""
    _refuse_what_the_data_cannot_have(args)
    config = preset(args.dataset, arch=args.arch or "mlp", conditional=args.conditional)
    # the preset's own penalty (the DCGAN's lazy R1) keeps its weight unless a flag or
    # a method changes the penalty; it is tuned for the preset's loss, so another
    # --loss drops it (a comparison of losses should not carry R1 along unseen)
    own_penalty = {k: config[k] for k in ("penalty", "penalty_weight") if k in config}
    if args.loss not in (None, "bce") and args.penalty is None:
        config["penalty"] = "none"
    method = method_for(args.loss, args.penalty)
    if method is not None:
        settings = method_settings(method, args.dataset)
        settings.pop("penalty_weight", None)   # set below, once the penalty is known
        config.update(settings)
    config.update({k: getattr(args, k) for k in ("steps", *_SETTINGS)
                   if k != "loss" and getattr(args, k) is not None})
    if args.loss is not None:
        config["loss"] = METHOD_LOSSES[args.loss]   # wgan-gp: the Wasserstein loss (+ gp)
    for k in ("lr_g", "lr_d"):
        if args.lr is not None and getattr(args, k) is None:
            config[k] = args.lr
    if args.conditional:
        config["n_classes"] = 10
    _loss_settings(config, args)
    _penalty_settings(config, args, own_penalty)
    if config.get("arch") == "dcgan" and config.get("penalty", "none") != "none":
        # a penalty needs each D(x_i) to depend on x_i alone; batch norm mixes the batch
        # (the WGAN-GP paper drops it from the critic): _notes says so
        config["d_batchnorm"] = False
    config["seed"] = 0 if args.seed is None else args.seed
    # The learning-rate schedule spans the steps asked for now, also when a later
    # --resume asks for more.
    config["schedule_steps"] = config["steps"]
    _check_settings(config)
    return config


def _loss_settings(config, args):
    """Any loss but bce sets G's loss itself (recorded as g_loss = the loss's name)
    and has no target to smooth: --g-loss and --label-smoothing then do not apply."""
    loss = config.get("loss", "bce")
    if loss == "bce":
        return
    flag = f"--loss {args.loss}" if args.loss is not None else f"the preset's loss {loss!r}"
    if args.g_loss is not None:
        raise CLIError(f"{flag} sets both losses to {_BOTH_LOSSES[loss]}; it cannot be "
                       f"combined with --g-loss {args.g_loss} (a choice of --loss bce)")
    if args.label_smoothing:
        raise CLIError(f"{flag} has no real target to smooth: --label-smoothing is one-sided "
                       f"smoothing of the cross-entropy's target (--loss bce)")
    config["g_loss"] = loss


def _penalty_settings(config, args, own_penalty):
    """penalty_weight: --penalty-weight, else the preset's weight if the penalty is the
    preset's own (``own_penalty``), else the weight METHODS gives the penalty for this
    dataset (``presets.penalty_weight``); none without a penalty. penalty_every (lazy
    R1) only with R1."""
    penalty = config.get("penalty", "none")
    if penalty == "none":
        if args.penalty_weight is not None:
            raise CLIError("--penalty-weight needs a penalty: add --penalty gp or --penalty r1 "
                           "(or use --loss wgan-gp)")
        config.pop("penalty_weight", None)
    elif args.penalty_weight is None:
        same = own_penalty.get("penalty") == penalty and "penalty_weight" in own_penalty
        config["penalty_weight"] = (own_penalty["penalty_weight"] if same
                                    else penalty_weight(penalty, args.dataset))
    if penalty != "r1":
        if args.penalty_every is not None:
            raise CLIError(f"--penalty-every is lazy R1: it needs --penalty r1 (the penalty "
                           f"here is {penalty!r})")
        config.pop("penalty_every", None)


def _check_settings(config):
    """What build_gan would refuse (a penalty on a D with batch norm, ...), as a usage
    error before the run directory is made."""
    from minigan.models import check_config

    try:
        check_config(config)
    except (TypeError, ValueError) as err:
        raise CLIError(f"these settings cannot be used together: {err}") from None


def _resume_config(args, backend):
    """(the checkpoint, its config with --steps applied): the run continues with the
    settings it was started with."""
    from minigan.checkpoint import load_checkpoint

    changed = [f"--{k.replace('_', '-')}" for k in ("seed", "lr", *_SETTINGS)
               if getattr(args, k) is not None] + (["--conditional"] if args.conditional else [])
    if changed:
        raise CLIError(f"{', '.join(changed)} cannot be changed when resuming: the run "
                       "continues with the settings stored in the checkpoint (only --steps "
                       "and --stop-after apply)")
    try:
        resume = load_checkpoint(args.resume, backend=backend)
    except FileNotFoundError as err:
        raise CLIError(str(err)) from None
    config = dict(resume.config)
    if args.dataset_given and args.dataset != config.get("dataset"):
        raise CLIError(f"--dataset {args.dataset} but the checkpoint {args.resume!r} is a "
                       f"{config.get('dataset')} run")
    args.dataset = config["dataset"]
    config.setdefault("seed", int(resume.extra.get("seed", 0)))
    config.setdefault("schedule_steps", config["steps"])
    if args.steps is not None:
        config["steps"] = args.steps
    if resume.gan.step >= config["steps"]:
        raise CLIError(f"the checkpoint is at step {resume.gan.step}, which is not before "
                       f"--steps {config['steps']}: ask for more steps to continue")
    return resume, config


def _check_numbers(config, n_data):
    b = config["batch_size"]
    if n_data is not None and b > n_data:
        raise CLIError(f"--batch-size {b} is larger than the data set ({n_data} images); "
                       f"use at most {n_data}")
    if n_data is None and b > TOY_BATCH_LIMIT:
        raise CLIError(f"--batch-size {b} is unreasonably large for a toy set (at most "
                       f"{TOY_BATCH_LIMIT})")
    pack = int(config.get("pack", 1))
    if b % pack:
        raise CLIError(f"--batch-size {b} must be a multiple of pack={pack}")


def _notes(run):
    """Warnings about settings that work against each other, before the run starts."""
    from minigan.models import lr_factor

    config, args, notes = run.config, run.args, []
    if run.resume is None and args.steps is not None:   # a resumed run keeps its length
        tuned = preset(config["dataset"], arch=config.get("arch", "mlp"),
                       conditional=bool(config.get("n_classes")))["steps"]
        if args.steps < tuned:
            notes.append(f"warning: the {config['dataset']} preset's settings (learning-rate "
                         f"schedule, batch size, moving average) expect {tuned} steps; with "
                         f"--steps {args.steps} the result will be worse than the README's.")
    span, steps = int(config["schedule_steps"]), int(config["steps"])
    if steps != span:
        final = lr_factor(span - 1, span, config)
        rates = f"lr_g {config['lr_g'] * final:.3g}, lr_d {config['lr_d'] * final:.3g}"
        what = (f"steps {span} to {steps} continue at its final rates ({rates})" if steps > span
                else f"this run stops at step {steps}, before the schedule ends")
        notes.append(f"note: the learning-rate schedule keeps the length of the run as it "
                     f"was started, {span} steps (stored in its config): {what}. To spread "
                     f"the schedule over {steps} steps, start a new run with --steps {steps}.")
    if config.get("loss") == "wasserstein" and config.get("penalty", "none") == "none" \
            and not config.get("spectral_norm"):
        notes.append("note: the Wasserstein loss without a penalty or spectral norm leaves the "
                     "critic unconstrained: its estimate of the Wasserstein distance holds only "
                     "for a Lipschitz D, and its scores can grow without bound. The original "
                     "WGAN (Arjovsky et al. 2017) clipped D's weights; minigan has no clipping. "
                     "Use --loss wgan-gp (the gradient penalty of Gulrajani et al. 2017), "
                     "--penalty gp or --spectral-norm.")
    if config.get("arch") == "dcgan" and config.get("penalty", "none") != "none" \
            and DCGAN["d_batchnorm"]:
        notes.append("note: the DCGAN's D runs without batch norm here: a gradient penalty "
                     "needs each D(x_i) to depend on x_i alone, and batch norm mixes the "
                     "samples of a batch (Gulrajani et al. 2017 drop it from the critic).")
    return notes


def _setup(run):
    """Everything before the first step: settings, data, run directory, GAN, callbacks."""
    from minigan import _memory, _threads
    from minigan.models import build_gan

    args = run.args
    run.backend = _use_backend(args.backend)
    if args.resume is not None:
        run.resume, run.config = _resume_config(args, run.backend)
    else:
        run.config = _config_from_args(args)
    run.seed = int(run.config["seed"])
    if args.stop_after is not None and args.stop_after > run.config["steps"]:
        raise CLIError(f"--stop-after {args.stop_after} is beyond --steps {run.config['steps']}")
    if run.backend == "numpy":
        threads, why = _threads.blas_threads(args.threads, run.config["dataset"] in IMAGE_DATASETS)
        if run.config.get("arch") == "dcgan":  # the kernels share the layers' chunks out
            threads = threads or _threads.blas_thread_count() or _threads.cpu_count()
            done = _threads.share_threads(threads, convolutional=True)
        else:
            done = _threads.share_threads(threads, convolutional=False,
                                          force=args.threads is not None)
        if done and why and not args.quiet:
            print(f"Using {threads} thread{'s' if threads > 1 else ''}: {why}.", flush=True)
        _memory.keep_freed_memory()  # each step reuses the last one's pages (see _memory)
    run.dataset, run.stream = _training_data(run)
    run.out = args.out if args.out is not None else rundir.new_name(args.dataset)
    run.lock = rundir.claim(run.out, args.overwrite, args.resume)
    if run.resume is not None:
        run.gan = run.resume.gan
        try:
            run.stream.load_state_dict(run.resume.extra["data_state"])
        except (KeyError, TypeError, ValueError) as err:
            raise CLIError(f"the checkpoint {args.resume!r} cannot continue its data order: its "
                           f"extra 'data_state' is missing or damaged ({err}). Use a checkpoint "
                           "written by 'minigan train'.") from None
    else:
        run.gan = build_gan(run.config, backend=run.backend, seed=run.seed)
    run.start_step = run.gan.step
    _write_config_json(run)
    return run


def _write_config_json(run):
    """config.json: every setting of the run, defaults included, readable."""
    from minigan.models import complete_config

    settings = {"lr_warmup": 0.0, "lr_warmup_factor": 1.0, "checkpoint_every": None,
                **complete_config(run.config), "backend": run.backend}
    _atomic_json(os.path.join(run.out, "config.json"), dict(sorted(settings.items())))
    run.written.append("config.json")


def _callbacks(run):
    """Gradient norms, the divergence guard, progress, animation frames or image
    snapshots, checkpoints, in this order (a checkpoint then holds the step's frame)."""
    from minigan import train as T

    config, args = run.config, run.args
    callbacks = [T.GradNorms(), T.DivergenceGuard()]
    if not args.quiet:
        callbacks.append(T.ProgressBar())
    if run.dataset is not None and not args.no_gif and config.get("frames", 0):
        # at most MAX_FRAMES over the run, also for a checkpoint written before the cap
        frames = min(int(config["frames"]), MAX_FRAMES)
        every = max(1, -(-int(config["schedule_steps"]) // frames))
        run.frames = T.Frames(run.dataset, every, run.seed)
        if run.resume is not None:
            run.frames.load_state_dict(run.resume.extra, run.gan)
        callbacks.append(run.frames)
    if run.dataset is None:
        # images: about PROGRESS_ROWS snapshots over the run's schedule, as for the
        # frames; kept even with --no-figures (10 small images each), so that the
        # checkpoint always holds them and a resumed run's progress.png is complete
        every = max(1, -(-int(config["schedule_steps"]) // PROGRESS_ROWS))
        run.snapshots = T.ImageSnapshots(every, n=PROGRESS_COLUMNS, seed=run.seed)
        if run.resume is not None:
            run.snapshots.load_state_dict(run.resume.extra)
        callbacks.append(run.snapshots)
    every = config.get("checkpoint_every")
    every = max(1, int(config["steps"]) // 10) if every is None else int(every)
    run.checkpoints = T.Checkpoints(run.checkpoint_path, config, every, extra=run.extra_state)
    if run.resume is not None and rundir.same_file(args.resume, run.checkpoint_path):
        run.checkpoints.last_saved = run.gan.step  # the file we resumed from
    return callbacks + [run.checkpoints]


def _describe(run):
    config, gan = run.config, run.gan
    where = f" (resuming {run.args.resume} at step {gan.step})" if run.resume is not None else ""
    c, m = int(config.get("n_classes") or 0), int(config.get("pack", 1))
    g_in = f"{config['latent_dim']}+{c}" if c else f"{config['latent_dim']}"
    d_in = f"{config['data_dim']}+{c}" if c else f"{config['data_dim']}"
    d_in = f"{m}x({d_in})" if m > 1 and c else (f"{m}x{d_in}" if m > 1 else d_in)
    options = "".join([f", conditional on {c} classes" if c else "",
                       f", pack {m}" if m > 1 else "", _describe_method(config)])
    n_params = gan.G.n_params + gan.D.n_params
    if config.get("arch") == "dcgan":
        shape = "x".join(map(str, config["image_shape"]))
        dense = "".join(f" -> {h}" for h in config.get("g_dense") or [])
        projection = bool(c and config.get("projection"))
        nets = (f"DCGAN: G {g_in}{dense} -> channels {'-'.join(map(str, config['g_channels']))} -> "
                f"{shape}, D {shape}{f'+{c}' if c and not projection else ''} -> channels "
                f"{'-'.join(map(str, config['d_channels']))} -> 1"
                f"{' + projection of the label' if projection else ''}")
    else:
        nets = (f"G {g_in}-{'-'.join(map(str, config['g_hidden']))}-{config['data_dim']}, "
                f"D {d_in}-{'-'.join(map(str, config['d_hidden']))}-1")
    return (f"Training a GAN on {config['dataset']}{where}: {config['steps']} steps, batch "
            f"{config['batch_size']}, {nets}{options} ({n_params:,} parameters), "
            f"{run.backend}, seed {run.seed}; writing to {run.out}")


_LOSS_WORDS = {"lsgan": "least-squares loss", "wasserstein": "Wasserstein loss",
               "hinge": "hinge loss"}


def _describe_method(config):
    """', Wasserstein loss, gradient penalty 10, 5 D steps per G step', or '' for the
    plain cross-entropy GAN."""
    from minigan.models import complete_config

    config = complete_config(config)   # a config saved by hand may leave the weight to its default
    words = [_LOSS_WORDS[config["loss"]]] if config["loss"] in _LOSS_WORDS else []
    weight, penalty = config["penalty_weight"], config["penalty"]
    if penalty == "gp":
        words.append(f"gradient penalty {weight:g}")
    elif penalty == "r1":
        every = config["penalty_every"]
        lazy = f", every {every} D steps" if every > 1 else ""
        words.append(f"R1 penalty (gamma {weight:g}{lazy})")
    if config.get("spectral_norm"):
        words.append("spectral norm in D")
    if int(config.get("d_steps", 1)) > 1:
        words.append(f"{config['d_steps']} D steps per G step")
    return "".join(", " + w for w in words)


def train(args):
    """The ``train`` command: set up, ``minigan.train.fit``, write the run directory.
    Returns the exit code. A write that fails late (a full disk, a folder made
    read-only) keeps what was saved and ends with one message and exit code 1."""
    run = _Run(args)
    try:
        return _train(run)
    except OSError as err:
        return _write_failed(run, err)
    finally:
        rundir.release(run.lock)


def _write_failed(run, err):
    what = f"{err.strerror or err}" + (f": {err.filename}" if err.filename else "")
    saved = ""
    if run.checkpoints is not None and run.checkpoints.last_saved is not None:
        saved = (f" The checkpoint of step {run.checkpoints.last_saved} is safe in "
                 f"{run.checkpoint_path}; continue with: {_resume_hint(run)}")
    where = f" in {run.out}" if run.out else ""
    print(f"minigan train: error: could not write a file ({what}). Nothing already saved "
          f"was lost: {_listing(run)}{where}.{saved} Free some space or make the folder "
          "writable, then run again.", file=sys.stderr)
    return 1


def _train(run):
    from minigan.models import lr_factor
    from minigan.train import DivergenceError, check_finite, deferred_interrupts, fit

    args = run.args
    _setup(run)
    callbacks = _callbacks(run)
    config, gan = run.config, run.gan
    span = int(config["schedule_steps"])
    stop = args.stop_after if args.stop_after is not None else int(config["steps"])
    t_train = time.perf_counter()
    try:
        with deferred_interrupts():  # Ctrl-C from here on stops at a step boundary
            if not args.quiet:
                for note in _notes(run):
                    print(note, file=sys.stderr)
                print(_describe(run), flush=True)
            fit(gan, _batches(run.stream, int(config.get("d_steps", 1))), stop,
                schedule=lambda step: lr_factor(step, span, config), callbacks=callbacks,
                base_lrs=(float(config["lr_g"]), float(config["lr_d"])))
            # a step reports the losses of its forward pass: check the weights it left
            check_finite(gan.history.records[-1] if gan.history.records else {}, gan)
            _save_state(run)  # still held: Ctrl-C never comes between the end and the save
    except KeyboardInterrupt:
        return _interrupted(run)
    except DivergenceError as err:
        return _diverged(run, err)
    finally:
        run.train_seconds = time.perf_counter() - t_train
    try:
        return _outputs(run)
    except KeyboardInterrupt:
        print(f"\nInterrupted while writing the outputs; {_listing(run)} in {run.out}.",
              file=sys.stderr)
        return 130


def _listing(run):
    names = sorted(set(run.written), key=RUN_FILES.index)
    return (", ".join(names) + (" were" if len(names) > 1 else " was") + " written") if names \
        else "nothing was written"


def _save_state(run):
    """The checkpoint (unless the last periodic one is of this step) and history.csv,
    held together against Ctrl-C."""
    from minigan.train import deferred_interrupts

    with deferred_interrupts():
        if run.checkpoints.last_saved != run.gan.step:
            record = run.gan.history.records[-1] if run.gan.history.records else None
            run.checkpoints.save(run.gan, record)
        run.written.append("checkpoint.npz")
        run.gan.history.to_csv(os.path.join(run.out, "history.csv"))
        run.written.append("history.csv")
    rundir.remove_stale_outputs(run.out, RUN_FILES, run.written)


def _resume_hint(run):
    args = run.args
    words = ["python", "-m", "minigan", "train", "--resume", run.checkpoint_path,
             "--out", run.out]
    for flag in ("no_metrics", "no_figures", "no_gif", "quiet"):
        if getattr(args, flag):
            words.append("--" + flag.replace("_", "-"))
    for option in ("data_dir", "backend", "threads"):
        if getattr(args, option) is not None:
            words += ["--" + option.replace("_", "-"), str(getattr(args, option))]
    return " ".join(shlex.quote(w) for w in words)


def _interrupted(run):
    """Ctrl-C: save what a bit-exact resume needs, the history and the loss curves."""
    from minigan.train import DivergenceError

    gan = run.gan
    print(f"\nInterrupted at step {gan.step} of {run.config['steps']}; saving the run.",
          file=sys.stderr, flush=True)
    try:
        _save_state(run)
    except DivergenceError as err:
        return _diverged(run, err)
    try:
        if not run.args.no_figures and gan.history.records:
            _headless_matplotlib()
            from minigan import plot

            plot.plot_losses(gan.history, path=os.path.join(run.out, "losses.png"),
                             score_kind=gan.loss, **_equilibrium_lines(run.config))
            run.written.append("losses.png")
    except KeyboardInterrupt:
        pass
    then = (f"Continue with: {_resume_hint(run)}" if gan.step < run.config["steps"] else
            "Training had reached its last step; the samples, scores and figures were not "
            "made (resume with more --steps to continue).")
    print(f"Stopped at step {gan.step}: {_listing(run)} in {run.out}.\n{then}", file=sys.stderr)
    return 130


def _diverged(run, err):
    path = run.checkpoint_path
    run.gan.history.to_csv(os.path.join(run.out, "history.csv"))
    run.written.append("history.csv")
    last = run.checkpoints.last_saved
    if last is not None and last > run.start_step:  # this run saved: the old outputs are stale
        run.written.append("checkpoint.npz")
        rundir.remove_stale_outputs(run.out, RUN_FILES, run.written)
    if last is not None:
        kept = (f"The last good checkpoint, step {last}, is kept in {path} "
                f"(continue from it with --resume {path}, or start again with a lower --lr).")
    else:
        kept = "No checkpoint had been saved yet (see --checkpoint-every)."
        if os.path.isfile(path):
            kept += f" The {path} there is the previous run's, untouched."
    print(f"minigan train: {err}\nStopped. {kept} The history up to that step is "
          f"in {os.path.join(run.out, 'history.csv')}.", file=sys.stderr)
    return 1


def _outputs(run):
    """The finished run's other files: samples, scores, figures."""
    from minigan.backend import to_numpy

    gan, config, args = run.gan, run.config, run.args
    name = config["dataset"]
    is_image = name in IMAGE_DATASETS
    n_eval = N_METRIC_SAMPLES_IMAGES if is_image else N_METRIC_SAMPLES_TOY
    samples = to_numpy(gan.sample(n_eval, rng=np.random.default_rng([run.seed, 5])))
    _atomic_npy(os.path.join(run.out, "samples.npy"), samples[:N_SAVED_IMAGES] if is_image
                else samples)
    run.written.append("samples.npy")
    metrics = {"dataset": name, "steps": int(gan.step), "seed": run.seed,
               "batch_size": int(config["batch_size"]), "backend": run.backend,
               "n_samples": int(n_eval), "sampled_from": "G_ema" if gan.ema is not None else "G",
               "train_seconds": round(run.train_seconds, 3)}
    parts, headline = _score(run, samples)
    metrics.update(parts)
    metrics["headline"] = headline.split("\n")[0]
    path = os.path.join(run.out, "metrics.json")
    _atomic_json(path, metrics)
    run.written.append("metrics.json")
    if not args.no_figures:
        _figures(run, samples)
    total_seconds = time.perf_counter() - run.t_start
    _atomic_json(path, {**metrics, "total_seconds": round(total_seconds, 3)})
    if not args.quiet:
        steps = int(config["steps"])
        stopped = f" (stopped after step {gan.step} of {steps}; continue with --resume)" \
            if gan.step < steps else ""
        print(f"Done in {total_seconds:.1f} s (training {run.train_seconds:.1f} s){stopped}.")
        source = " (samples from the moving average of G's weights)" if gan.ema is not None \
            else ""
        print(f"{name}{source}: {headline}")
        print(f"Wrote {', '.join(sorted(set(run.written), key=RUN_FILES.index))} to {run.out}")
    return 0


# ------------------------------------------------------------------------ sample


SAMPLE_BATCH = 10_000  # samples generated at a time: memory stays flat for any --n
MAX_FIGURE_SAMPLES = 100_000  # a .png draws every sample: more is unreadable and slow


def _sample_batches(gan, n, seed, ema):
    """gan.sample's n samples, SAMPLE_BATCH at a time, as NumPy arrays: the same
    numbers as one call (one noise generator, drawn in order; a conditional GAN's
    labels keep cycling 0..C-1 across batches)."""
    from minigan.backend import to_numpy

    rng = np.random.default_rng(seed)
    for start in range(0, n, SAMPLE_BATCH):
        k = min(SAMPLE_BATCH, n - start)
        if _is_conditional(gan):
            labels = np.arange(start, start + k) % gan.n_classes
            yield start, to_numpy(gan.sample(k, labels=labels, rng=rng, ema=ema))
        else:
            yield start, to_numpy(gan.sample(k, rng=rng, ema=ema))


def _check_room(args, needed):
    """Refuse a --n whose samples cannot fit, before generating any."""
    import shutil

    if args.out.endswith(".png"):
        if args.n > MAX_FIGURE_SAMPLES:
            raise CLIError(f"--n {args.n} is too many samples for a figure (at most "
                           f"{MAX_FIGURE_SAMPLES:,}); write them to a .npy file instead")
        return
    free = shutil.disk_usage(os.path.dirname(os.path.abspath(args.out))).free
    if needed > free:
        raise CLIError(f"--n {args.n} samples need {needed / 2**30:.2f} GiB in {args.out!r}, "
                       f"but only {free / 2**30:.2f} GiB is free there; ask for fewer samples "
                       "or write elsewhere")


def sample(args):
    from minigan._atomic import atomic_path
    from minigan.checkpoint import load_checkpoint

    if not (args.out.endswith(".npy") or args.out.endswith(".png")):
        raise CLIError(f"--out must end in .npy (the samples) or .png (a figure), "
                       f"got {args.out!r}")
    if os.path.exists(args.out) and not args.overwrite:
        raise CLIError(f"--out {args.out!r} exists; pass --overwrite to replace it, or "
                       "choose another file")
    if not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
        raise CLIError(f"the folder of --out {args.out!r} does not exist")
    try:
        gan, config, extra = load_checkpoint(args.checkpoint)
    except FileNotFoundError as err:
        raise CLIError(str(err)) from None
    width = int(config["data_dim"])
    _check_room(args, args.n * width * np.dtype(gan.dtype).itemsize)
    name = config.get("dataset", extra.get("dataset"))
    ema = not args.no_ema
    if args.out.endswith(".npy"):
        # written straight into the file as they come: flat memory for any --n
        with atomic_path(args.out) as tmp:
            x = np.lib.format.open_memmap(tmp, mode="w+", dtype=gan.dtype, shape=(args.n, width))
            for start, part in _sample_batches(gan, args.n, args.seed, ema):
                x[start:start + len(part)] = part
            x.flush()
            del x
    elif name in DATASETS or width == 784:
        x = np.concatenate([part for _, part in _sample_batches(gan, args.n, args.seed, ema)])
        _headless_matplotlib()
        _plot_samples(args.out, gan, name if name in DATASETS else "mnist", x,
                      f"{name}, step {gan.step}")
    else:
        raise CLIError(f"cannot draw samples of width {width} from an unknown data set "
                       f"{name!r}; write them to a .npy file instead")
    if not args.quiet:
        print(f"Wrote {args.n} samples of {config.get('dataset', 'the GAN')} "
              f"(step {gan.step}) to {args.out}")
    return 0


# ---------------------------------------------------------------------- evaluate


def evaluate(args):
    """Scores of a trained generator that take more than the run's metrics.json:
    the Classification Accuracy Score of a conditional MNIST generator."""
    from minigan import metrics
    from minigan.checkpoint import load_checkpoint

    if args.out is not None and os.path.exists(args.out) and not args.overwrite:
        raise CLIError(f"--out {args.out!r} exists; pass --overwrite to replace it, or "
                       "choose another file")
    try:
        gan, config, extra = load_checkpoint(args.checkpoint)
    except FileNotFoundError as err:
        raise CLIError(str(err)) from None
    name = config.get("dataset", extra.get("dataset"))
    if name != "mnist":
        raise CLIError(f"--cas scores MNIST generators (the classifier is tested on the real "
                       f"MNIST test digits); {args.checkpoint!r} was trained on {name!r}")
    epochs = args.epochs or metrics.CLASSIFIER_EPOCHS
    if len(set(args.seed)) != len(args.seed):
        raise CLIError(f"--seed {' '.join(map(str, args.seed))}: give each seed once (the "
                       "same seed gives the same score)")
    results = []
    for seed in args.seed:
        try:  # checks the GAN and --n before reading (or downloading) MNIST
            result = metrics.classification_accuracy_score(
                gan, n=args.n, epochs=epochs, seed=seed, data_dir=args.data_dir,
                ema=not args.no_ema, baseline=not args.no_baseline, verbose=not args.quiet)
        except ValueError as err:  # an unconditional GAN, a bad --n, images out of range
            raise CLIError(str(err)) from None
        except DataError as err:
            raise CLIError(f"cannot load mnist: {err}") from None
        prefix = f"seed {seed}: " if len(args.seed) > 1 else ""
        print(prefix + metrics.headline(result))
        print(metrics.per_class_line(result), flush=True)
        results.append(result)
    # one seed: its result; several: their mean and spread, each result inside
    result = results[0] if len(results) == 1 else metrics.summarize_cas(results)
    result.update(checkpoint=os.path.abspath(args.checkpoint), step=int(gan.step))
    if args.out is not None:
        _atomic_json(args.out, result)
    if len(results) > 1:
        print(metrics.headline(result))
    return 0


# --------------------------------------------------------------------- gradcheck


def gradcheck(args):
    from minigan.gradcheck import run_checks

    return 0 if run_checks(verbose=args.verbose) == 0 else 1


# -------------------------------------------------------------------------- info


def _version(module_name):
    try:
        module = __import__(module_name)
    except Exception:
        return "not installed"
    return getattr(module, "__version__", "installed")


def _gpu_lines():
    from minigan import backend as mb

    try:
        cupy = mb._import_cupy()
    except RuntimeError as err:
        return [("backends", "numpy (cupy unavailable: " + str(err).split(". ")[0] + ")"),
                ("GPU", "none")]
    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"]
    gpu = name.decode() if isinstance(name, bytes) else str(name)
    return [("backends", "numpy, cupy"),
            ("GPU", f"{gpu} ({props['totalGlobalMem'] / 2**30:.1f} GiB)")]


def _data_lines():
    from minigan import metrics
    from minigan.data.mnist import FILES, resolve_data_dir

    data_dir = resolve_data_dir()
    env = os.environ.get("MINIGAN_DATA_DIR")
    lines = [("data dir", f"{data_dir}" + (" (from MINIGAN_DATA_DIR)" if env else ""))]
    for name in ("mnist", "fashion-mnist"):
        files = FILES[name]
        present = sum((data_dir / name / f).is_file() for f in files)
        lines.append((f"  {name}", f"{present}/{len(files)} files present"
                      + ("" if present == len(files) else
                         " (downloaded on first use, or put them there by hand)")))
    lines.append(("cache dir", str(metrics.resolve_cache_dir())))
    lines.append(("  MNIST classifier", "cached" if metrics.classifier_path("mnist").is_file()
                  else "not trained yet (trained once, ~30 s, on the first MNIST run)"))
    return lines


def info(args):
    import minigan
    from minigan import _threads
    from minigan import backend as mb

    lines = [
        ("minigan", f"{minigan.__version__} ({os.path.dirname(minigan.__file__)})"),
        ("Python", f"{platform.python_version()} ({sys.executable})"),
        ("platform", f"{platform.platform()}, {os.cpu_count()} CPUs"),
        ("NumPy", np.__version__),
        ("BLAS", _threads.blas_info()),
        ("matplotlib", _version("matplotlib")),
        ("tqdm", _version("tqdm")),
        ("CuPy", _version("cupy")),
        *_gpu_lines(),
        ("current backend", mb.get_backend()),
        *_data_lines(),
    ]
    width = max(len(k) for k, _ in lines)
    for k, v in lines:
        print(f"{k:<{width}}  {v}")
    return 0


# ------------------------------------------------------------------------ parser


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Shows a default only where it says something (not None or False) and the help
    text does not already describe it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default is None or action.default is False \
                or action.default == argparse.SUPPRESS:
            return text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return text + " (default: %(default)s)"
        return text


def _add_model_options(p):
    """The options a run's checkpoint stores (fixed once it has started)."""
    p.add_argument("--dataset", choices=DATASETS, default="ring8", help="what to learn")
    p.add_argument("--steps", type=_positive_int, default=None,
                   help="generator updates (default: the preset's)")
    p.add_argument("--batch-size", type=_positive_int, default=None,
                   help="real samples per discriminator update (default: the preset's)")
    p.add_argument("--seed", type=_non_negative_int, default=None,
                   help="seeds the weights, the noise and the data order (default 0)")
    p.add_argument("--lr", type=_positive_float, default=None,
                   help="learning rate of both G and D (default: the preset's)")
    p.add_argument("--lr-g", type=_positive_float, default=None, help="G's learning rate")
    p.add_argument("--lr-d", type=_positive_float, default=None, help="D's learning rate")
    p.add_argument("--g-loss", choices=("non-saturating", "minimax"), default=None,
                   help="generator loss (default: the preset's, non-saturating)")
    p.add_argument("--d-steps", type=_positive_int, default=None,
                   help="discriminator updates per generator update (k of Algorithm 1)")
    p.add_argument("--label-smoothing", type=_unit_float, default=None,
                   help="one-sided label smoothing: real targets become 1 - this")
    p.add_argument("--ema-decay", type=_unit_float, default=None,
                   help="moving average of G's weights used for sampling (0: off)")
    p.add_argument("--frames", type=_frame_count, default=None,
                   help=f"snapshots in training.gif (1-D/2-D data; at most {MAX_FRAMES}; "
                        "default: the preset's)")
    p.add_argument("--pack", type=_positive_int, default=None, metavar="M",
                   help="PacGAN (Lin et al. 2018): D judges M samples at once, which "
                        "penalises mode collapse; the batch size must be a multiple of M "
                        "(default: the preset's)")
    p.add_argument("--loss", choices=tuple(METHOD_LOSSES), default=None,
                   help="bce: cross-entropy on D's logits; lsgan: least squares on D's raw "
                        "output, targets 0 (fake) and 1 (real) (Mao et al. 2017); "
                        "wasserstein: the WGAN critic's loss mean D(fake) - mean D(real) "
                        "(Arjovsky et al. 2017), with no constraint on D unless --penalty or "
                        "--spectral-norm adds one; wgan-gp: wasserstein with the gradient "
                        "penalty (WGAN-GP, Gulrajani et al. 2017); hinge: the hinge loss "
                        "(Lim & Ye 2017) with spectral norm in D (Miyato et al. 2018). "
                        "wgan-gp and hinge bring their method's settings (see below)")
    p.add_argument("--penalty", choices=("none", "gp", "r1"), default=None,
                   help="a gradient penalty in D's step, through a hand-written double "
                        "backward: gp pulls ||dD/dx|| to 1 at random interpolates between "
                        "real and fake samples (Gulrajani et al. 2017); r1 pulls it to 0 at "
                        "the real samples (Mescheder et al. 2018); r1 with --loss bce brings "
                        "its method's settings (see below)")
    p.add_argument("--penalty-weight", type=_positive_float, default=None, metavar="W",
                   help="the penalty's weight: gp's lambda, r1's gamma (default: the "
                        "preset's own weight for its own penalty, as the DCGAN's R1 gamma "
                        "1; else the method's value for the dataset, see below)")
    p.add_argument("--penalty-every", type=_positive_int, default=None, metavar="K",
                   help="lazy R1 (Karras et al. 2020): the penalty on every K-th D step "
                        "only, K times as strong, for about a K-th of its cost "
                        "(default: the preset's, 1 = every step)")
    p.add_argument("--spectral-norm", action=argparse.BooleanOptionalAction, default=None,
                   help="spectral normalisation of every Dense and Conv2d layer of D: W / sigma(W) by "
                        "power iteration (Miyato et al. 2018) (default: on with --loss "
                        "hinge, else off)")
    p.add_argument("--betas", type=_beta, nargs=2, default=None, metavar=("B1", "B2"),
                   help="Adam's betas for both optimisers (default: the preset's, or the "
                        "method's)")
    p.add_argument("--arch", choices=("mlp", "dcgan"), default=None,
                   help="mlp: fully connected G and D; dcgan (mnist/fashion-mnist): the "
                        "convolutional GAN of Radford et al. 2016 (default: mlp)")
    p.add_argument("--g-dense", type=_positive_int, nargs="*", default=None, metavar="W",
                   help="--arch dcgan: widths of hidden Dense layers in G between z and "
                        "its projection to the first feature maps; the flag alone: none "
                        "(default: the preset's)")
    p.add_argument("--projection", action=argparse.BooleanOptionalAction, default=None,
                   help="--arch dcgan --conditional: D takes the label by an inner product "
                        "with its features, y^T V phi(x) (the projection discriminator, "
                        "Miyato and Koyama 2018), not as input planes (default: the preset's)")
    p.add_argument("--conditional", action="store_true",
                   help="mnist/fashion-mnist: condition G and D on the class label (Mirza "
                        "and Osindero 2014); samples.png then shows one row per class")
    p.add_argument("--checkpoint-every", type=_non_negative_int, default=None, metavar="N",
                   help="save checkpoint.npz every N steps (default: every tenth of the run; "
                        "0: only at the end); a run that diverges (a NaN or inf loss, or a "
                        "loss or gradient norm beyond 1e6) stops and keeps the last good one")


def _add_run_options(p):
    """Where and how this invocation runs: files, resuming, output, threads."""
    p.add_argument("--backend", choices=("numpy", "cupy"), default=None,
                   help="where to compute (default: $MINIGAN_BACKEND or numpy)")
    p.add_argument("--out", default=None,
                   help="run directory (default: runs/<dataset>-<date>-<time>)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the files of an existing run directory")
    p.add_argument("--data-dir", default=None,
                   help="where the MNIST files are (default: $MINIGAN_DATA_DIR or "
                        "~/.cache/minigan)")
    p.add_argument("--no-metrics", action="store_true",
                   help="skip the scores in metrics.json (for images: no classifier is "
                        "trained or loaded, and the test files are not needed)")
    p.add_argument("--no-figures", action="store_true", help="write no .png/.gif files")
    p.add_argument("--no-gif", action="store_true", help="skip training.gif")
    p.add_argument("--resume", default=None, metavar="CHECKPOINT",
                   help="continue the run saved in CHECKPOINT (its settings, data order, "
                        "RNG states and learning-rate schedule) up to --steps")
    p.add_argument("--stop-after", type=_positive_int, default=None, metavar="STEP",
                   help="stop after this step (the learning-rate schedule still spans "
                        "--steps) and save; continue later with --resume")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="CPU threads: the BLAS's, or for --arch dcgan (up to 4) the "
                        "convolutions' own, each with one BLAS thread (default: 1 for the toy "
                        "sets; for images the BLAS library's default, fewer when the machine "
                        "is busy)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")


def _add_train_parser(sub):
    toy = ", ".join(TOY_DATASETS)
    p = sub.add_parser(
        "train", formatter_class=_Formatter, help="train a GAN and write a run directory",
        description="Train a GAN with the dataset's preset settings (override them below) and "
                    "write config.json, checkpoint.npz, history.csv, metrics.json, "
                    "samples.npy, losses.png, samples.png and, for images, progress.png and "
                    "interpolation.png (for 1-D/2-D data, training.gif) into --out. Ctrl-C "
                    "stops at the end of a step and saves the run, to continue with --resume.",
        epilog=_train_epilog(toy))
    _add_model_options(p)
    _add_run_options(p)
    p.set_defaults(func=train)


def _train_epilog(toy):
    """The data, the presets, and how --loss / --penalty choose a method's settings."""
    def value(v):
        if isinstance(v, bool):
            return "on" if v else "off"
        return " ".join(map(str, v)) if isinstance(v, list) else str(v)

    def settings(name):
        return ", ".join(f"{k.replace('_', '-')} {value(v)}" for k, v in METHODS[name].items())

    def steps_and_batch(name):
        run = f"{name}: {PRESETS[name]['steps']} steps, batch {PRESETS[name]['batch_size']}"
        if name not in IMAGE_DATASETS:
            return run
        variants = (("--conditional", {"conditional": True}), ("--arch dcgan", {"arch": "dcgan"}),
                    ("--arch dcgan --conditional", {"arch": "dcgan", "conditional": True}))
        parts = []
        for flags, kw in variants:
            merged = preset(name, **kw)
            parts.append(f"{flags} {merged['steps']} and {merged['batch_size']}")
        return f"{run} ({', '.join(parts)})"

    data = (f"Toy sets ({toy}) are generated on the fly; MNIST and Fashion-MNIST are read "
            "from $MINIGAN_DATA_DIR (or ~/.cache/minigan, downloaded when missing). Presets: "
            + "; ".join(map(steps_and_batch, PRESETS)) + ".")
    methods = ("Methods: --loss wgan-gp (or wasserstein with --penalty gp), --loss hinge and "
               "--penalty r1 (with bce) lay their method's settings over the preset, and the "
               "flags given then override those: preset, then method, then flags. "
               + "; ".join(f"{name}: {settings(name)}" for name in METHODS)
               + ". Some differ per dataset (a smaller penalty weight for the toy sets): see "
               "minigan/presets.py, METHODS and METHOD_OVERRIDES; config.json shows what a "
               "run used.")
    return "\n\n".join(textwrap.fill(text, width=79, break_on_hyphens=False)
                       for text in (data, methods))


def _add_other_parsers(sub):
    p = sub.add_parser("sample", formatter_class=_Formatter,
                       help="draw samples from a checkpoint",
                       description="Draw samples from a trained generator: a .npy array "
                                   "or a .png figure (image grid, scatter or density).")
    p.add_argument("--checkpoint", required=True, help="a checkpoint.npz from 'train'")
    p.add_argument("--n", type=_positive_int, default=64, help="how many samples")
    p.add_argument("--out", required=True, help="FILE.npy (the array) or FILE.png (a figure)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--seed", type=_non_negative_int, default=0, help="seeds the noise")
    p.add_argument("--no-ema", action="store_true",
                   help="sample from G itself, not its moving average")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=sample)

    p = sub.add_parser("evaluate", formatter_class=_Formatter,
                       help="score a trained generator: the classification accuracy score",
                       description="--cas: the Classification Accuracy Score (Ravuri and "
                                   "Vinyals 2019) of a conditional MNIST generator: minigan's "
                                   "MNIST classifier trained on --n generated digits (balanced "
                                   "over the classes) and tested on the real test set, beside "
                                   "the same classifier trained on --n real digits.")
    p.add_argument("--checkpoint", required=True,
                   help="a checkpoint.npz of 'train --dataset mnist --conditional'")
    p.add_argument("--cas", action="store_true", required=True,
                   help="compute the classification accuracy score")
    p.add_argument("--n", type=_positive_int, default=60000,
                   help="generated (and real) training digits, a multiple of 10, at least 1000")
    p.add_argument("--epochs", type=_positive_int, default=None,
                   help="classifier training epochs (default: the library classifier's own)")
    p.add_argument("--seed", type=_non_negative_int, nargs="+", default=[0], metavar="S",
                   help="seeds the noise, the real subset and the classifier; several (--seed "
                        "0 1 2) repeat the score with each and print the mean and spread, "
                        "since one classifier's accuracy moves by a few tenths of a point "
                        "with its seed")
    p.add_argument("--data-dir", default=None,
                   help="where the MNIST files are (default: $MINIGAN_DATA_DIR or "
                        "~/.cache/minigan)")
    p.add_argument("--no-ema", action="store_true",
                   help="sample from G itself, not its moving average")
    p.add_argument("--no-baseline", action="store_true",
                   help="skip the classifier trained on real digits")
    p.add_argument("--out", default=None, help="also write every number to this JSON file")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--quiet", action="store_true", help="print only the result")
    p.set_defaults(func=evaluate)

    p = sub.add_parser("gradcheck", formatter_class=_Formatter,
                       help="check every layer's and op's backward pass numerically",
                       description="Compare every hand-written backward pass (functional ops, "
                                   "losses, layers, the generator step through D) with central "
                                   "differences in float64. Exit code 1 if any check fails.")
    p.add_argument("--verbose", action="store_true", help="print the full table of a failure")
    p.set_defaults(func=gradcheck)

    p = sub.add_parser("info", formatter_class=_Formatter,
                       help="versions, backends, GPU, BLAS and data",
                       description="Print the versions of minigan, Python, NumPy and "
                                   "matplotlib, the available backends and GPU, the BLAS "
                                   "library, and where data and caches live.")
    p.set_defaults(func=info)


def build_parser():
    import minigan

    parser = argparse.ArgumentParser(
        prog="minigan", formatter_class=_Formatter,
        description="minigan: GANs from scratch in NumPy/CuPy. Train one, sample from a "
                    "checkpoint, check every gradient, or show the setup.",
        epilog="Run 'python -m minigan COMMAND --help' for the options of a command.")
    parser.add_argument("--version", action="version", version=f"minigan {minigan.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train_parser(sub)
    _add_other_parsers(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "train":
        args.dataset_given = any(a == "--dataset" or a.startswith("--dataset=") for a in argv)
    try:
        if args.command != "train":  # train chooses its backend itself, after its checks
            _use_backend()
        return args.func(args)
    except BrokenPipeError:
        # The reader of our output went away (`minigan gradcheck | head`): not our
        # error. Point stdout at /dev/null so that Python's final flush is quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print(f"\nminigan {args.command}: interrupted", file=sys.stderr)
        return 130
    except (CLIError, CheckpointError, rundir.RunDirectoryError) as err:
        print(f"minigan {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        # a file that could not be written (full disk, read-only or forbidden folder):
        # one line that names it, not a traceback (train says more itself)
        where = f": {err.filename}" if err.filename else ""
        print(f"minigan {args.command}: error: could not write a file ({err.strerror or err}"
              f"{where}); free some space or choose a writable place", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
