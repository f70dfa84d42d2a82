"""The command line: ``python -m minigan`` (or the ``minigan`` script).

    python -m minigan train                      # ring8, the preset settings, about half a minute
    python -m minigan train --dataset mnist      # the classic MLP GAN on MNIST
    python -m minigan sample --checkpoint runs/ring8-.../checkpoint.npz --n 1000 --out s.png
    python -m minigan gradcheck                  # every layer's and op's backward, checked
    python -m minigan info                       # versions, backends, GPU, data

``python -m minigan COMMAND --help`` lists every option. Exit codes: 0 success,
1 a failed check or a diverged run, 2 a usage error (bad option, existing run
directory, missing file).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import math
import os
import platform
import sys
import time

import numpy as np

from minigan._atomic import atomic_open
from minigan.data import DataError
from minigan.presets import CONDITIONAL, DATASETS, IMAGE_DATASETS, PRESETS, TOY_DATASETS, preset

__all__ = ["main", "build_parser", "train", "CLIError"]

RUN_FILES = ("checkpoint.npz", "history.csv", "metrics.json", "samples.npy", "losses.png",
             "samples.png", "training.gif")
TOY_BATCH_LIMIT = 100_000
N_METRIC_SAMPLES_TOY = 2500       # the VEEGAN/PacGAN protocol
N_METRIC_SAMPLES_IMAGES = 10_000
N_SAVED_IMAGES = 1000
N_FRAME_SAMPLES = 500
GRID_SIZE = 60


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


def _atomic_json(path, obj):
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(obj, indent=2, allow_nan=True) + "\n")


def _atomic_npy(path, array):
    with atomic_open(path) as f:
        np.save(f, array, allow_pickle=False)


def _headless_matplotlib():
    """Use the Agg backend unless the user chose one: the CLI never opens windows."""
    os.environ.setdefault("MPLBACKEND", "Agg")


# ------------------------------------------------------------------- BLAS threads


_THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
_SET_THREADS = ("openblas_set_num_threads", "openblas_set_num_threads64_",
                "scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads")


def _blas_threads(requested, is_image):
    """(threads, reason) for this run's BLAS, or (None, "") to leave the library's default.

    --threads wins. The toy networks are too small to gain from a second thread.
    For images, a busy machine (load average near the CPU count) gets fewer
    threads: a BLAS thread that shares its core with another process makes the
    others wait for it at every matrix product, several times slower than one
    thread alone.
    """
    if requested is not None:
        return requested, ""
    if any(k in os.environ for k in _THREAD_ENV):
        return None, ""
    if not is_image:
        return 1, ""
    cpus = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None, ""
    free = max(1, cpus - int(load + 0.5))
    if free < cpus:
        return free, (f"the machine is busy (load average {load:.1f} on {cpus} CPUs; "
                      "choose with --threads)")
    return None, ""


def _limit_blas_threads(n, force=False):
    """Ask the loaded OpenBLAS for ``n`` threads; True if it was done.

    The toy networks multiply matrices of a few hundred rows: a second BLAS
    thread saves nothing there, and on a busy machine its spinning makes every
    step several times slower. Left alone when the user set a thread variable.
    Uses threadpoolctl where installed, else OpenBLAS's own setter (found in
    the libraries this process has loaded); quietly does nothing elsewhere.
    """
    if not force and any(k in os.environ for k in _THREAD_ENV):
        return False
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    if threadpool_limits is not None:
        threadpool_limits(n, user_api="blas")
        return True
    import ctypes

    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if "openblas" in line.lower()}
    except OSError:
        return False
    done = False
    for lib in sorted(libs):
        try:
            handle = ctypes.CDLL(lib)
        except OSError:
            continue
        for name in _SET_THREADS:
            fn = getattr(handle, name, None)
            if fn is not None:
                fn(ctypes.c_int(n))
                done = True
                break
    return done


# ------------------------------------------------------------------------- data


class ToyStream:
    """Fresh samples of a toy distribution for every batch; the state is one generator."""

    def __init__(self, dataset, batch_size, rng, backend, dtype):
        self.dataset, self.batch_size = dataset, int(batch_size)
        self.rng, self.backend, self.dtype = rng, backend, dtype

    def next(self):
        from minigan.backend import to_device

        return to_device(self.dataset.sample(self.batch_size, self.rng, dtype=self.dtype),
                         self.backend)

    def state_dict(self):
        return {"kind": "toy", "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state):
        self.rng.bit_generator.state = state["rng"]


class EpochStream:
    """Shuffled minibatches of a fixed data set (on the device once), epoch after epoch.

    Resumable: the state is the generator's state when the current epoch's
    permutation was drawn, and how many of that epoch's batches were used.
    The last, smaller batch of an epoch is dropped.
    """

    def __init__(self, images, batch_size, rng, backend, labels=None):
        from minigan.backend import to_device

        self.x = to_device(images, backend)
        # With labels (a conditional GAN) every batch is an (images, labels) pair.
        self.y = None if labels is None else to_device(labels, backend)
        self.n, self.batch_size = int(images.shape[0]), int(batch_size)
        self.per_epoch = self.n // self.batch_size
        self.rng = rng
        self.epoch_rng_state, self.order, self.index, self.epoch = None, None, 0, 0

    def _new_epoch(self):
        self.epoch_rng_state = copy.deepcopy(self.rng.bit_generator.state)
        self.order = self.rng.permutation(self.n)
        self.index = 0
        self.epoch += 1

    def next(self):
        from minigan.backend import array_module

        if self.order is None or self.index >= self.per_epoch:
            self._new_epoch()
        idx = self.order[self.index * self.batch_size:(self.index + 1) * self.batch_size]
        self.index += 1
        xp = array_module(self.x)
        idx = xp.asarray(idx)
        return self.x[idx] if self.y is None else (self.x[idx], self.y[idx])

    def state_dict(self):
        return {"kind": "epochs", "epoch_rng": self.epoch_rng_state, "index": self.index,
                "epoch": self.epoch, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state):
        if state.get("epoch_rng") is not None:
            self.rng.bit_generator.state = state["epoch_rng"]
            self._new_epoch()  # the same permutation as before
            self.index = int(state["index"])
            self.epoch = int(state["epoch"])
        self.rng.bit_generator.state = state["rng"]


def _load_images(dataset, data_dir):
    from minigan.data import load_fashion_mnist, load_mnist

    loader = load_mnist if dataset == "mnist" else load_fashion_mnist
    images, labels = loader("train", data_dir=data_dir)
    return images, labels


# ---------------------------------------------------------------------- metrics


def _toy_metrics(dataset, samples, seed):
    from minigan import metrics

    out = {}
    x = np.asarray(samples, dtype=np.float64)
    if dataset.centres is not None:
        cov = metrics.mode_coverage(x, dataset.centres, dataset.std)
        out["mode_coverage"] = cov
    real = dataset.sample(len(x), np.random.default_rng([seed, 7]), dtype="float64")
    out["frechet_distance_to_data"] = float(metrics.frechet_distance(x, real))
    out["sample_mean"] = x.mean(axis=0).tolist()
    out["sample_std"] = x.std(axis=0).tolist()
    out["data_mean"] = real.mean(axis=0).tolist()
    out["data_std"] = real.std(axis=0).tolist()
    return out


def _toy_headline(name, m):
    if "mode_coverage" in m and m["mode_coverage"]["n_modes"] > 1:
        c = m["mode_coverage"]
        return (f"{c['modes_captured']}/{c['n_modes']} modes, "
                f"{100 * c['high_quality_fraction']:.1f}% high quality, "
                f"reverse KL {c['reverse_kl']:.3f}\n"
                "  (of 2500 samples: a sample is high quality within 3 std of its nearest mode; "
                "a mode is captured\n   if it is the nearest to at least one such sample; "
                "reverse KL compares their spread over\n   the modes with uniform, 0 is best)")
    if name == "gaussian1d":
        return (f"sample mean {m['sample_mean'][0]:.3f} (data {m['data_mean'][0]:.3f}), "
                f"std {m['sample_std'][0]:.3f} (data {m['data_std'][0]:.3f})")
    # Compares only the means and covariances of the two sets (lower is better):
    # look at samples.png for the shape itself.
    return (f"Gaussian-fit Fréchet distance to the data {m['frechet_distance_to_data']:.4f} "
            "(means and covariances only; lower is better; see samples.png for the shape)")


def _fashion_classifier(data_dir, verbose=True):
    """An MLP classifier for Fashion-MNIST, like the MNIST one, trained once and cached."""
    from minigan import metrics
    from minigan.data import load_fashion_mnist

    path = metrics.resolve_cache_dir() / "fashion_mnist_classifier_v1.npz"
    if path.exists():
        try:
            return metrics.MnistClassifier.load(path)
        except ValueError as err:
            print(f"Ignoring the cached Fashion-MNIST classifier ({err}); training a new one.",
                  file=sys.stderr)
    images, labels = load_fashion_mnist("train", data_dir=data_dir)
    test_images, test_labels = load_fashion_mnist("test", data_dir=data_dir)
    if verbose:
        print(f"Training the Fashion-MNIST classifier (once; cached in {path})...",
              file=sys.stderr, flush=True)
    clf = metrics.MnistClassifier(seed=0).fit(images, labels, verbose=verbose)
    clf.test_accuracy = clf.accuracy(test_images, test_labels)
    if verbose:
        print(f"Fashion-MNIST classifier: test accuracy {clf.test_accuracy:.4f}.",
              file=sys.stderr, flush=True)
    clf.save(path)
    return clf


def _image_metrics(dataset, samples, data_dir, labels=None):
    from minigan import metrics

    clf = metrics.load_classifier(data_dir=data_dir) if dataset == "mnist" \
        else _fashion_classifier(data_dir)
    scores = metrics.classifier_scores(samples, clf)
    scores["classifier_test_accuracy"] = clf.test_accuracy
    out = {"classifier_scores": scores}
    if labels is not None:
        # A conditional G should make the class it was asked for.
        out["conditional_accuracy"] = float(np.mean(clf.predict(samples) == labels))
    return out


def _image_headline(m):
    if "classifier_scores" not in m:
        return "metrics skipped (--no-metrics)"
    s = m["classifier_scores"]
    cond = (f", {100 * m['conditional_accuracy']:.1f}% of the asked class"
            if "conditional_accuracy" in m else "")
    return (f"{s['classes_covered']}/{s['n_classes']} classes, KL to uniform "
            f"{s['kl_to_uniform']:.3f}, Inception score {s['inception_score']:.2f}{cond}")


# ---------------------------------------------------------------------- figures


def _plot_lim(dataset):
    """The plotted region, the same in every figure and frame: (lo, hi) or a 2-D box."""
    if dataset.dim == 1:
        mean = float(dataset.centres[0, 0])
        return (mean - 6 * dataset.std, mean + 6 * dataset.std)
    if dataset.name == "grid25":
        return (-5.5, 5.5, -5.5, 5.5)
    if dataset.name == "spiral":
        return (-2.2, 2.2, -2.2, 2.2)
    if dataset.name == "moons":
        return (-2.0, 2.0, -1.6, 1.6)
    return (-1.6, 1.6, -1.6, 1.6)


def _centres(dataset):
    return dataset.centres if dataset.centres is not None and dataset.dim == 2 else None


def _latent(gan, n, seed):
    """The noise ``gan.sample(n, rng=np.random.default_rng(seed))`` draws, (n, latent_dim)."""
    return np.random.default_rng(seed).standard_normal((n, gan.latent_dim), dtype=np.float32)


class FrameRecorder:
    """Snapshots for training.gif: generated samples (fixed noise) and D on a grid.

    Frames are ``minigan.plot.snapshot_1d/2d`` dicts; ``state_dict`` turns the
    ones collected so far into arrays, so a resumed run's GIF is complete.
    """

    def __init__(self, gan, dataset, every, seed):
        self.gan, self.dataset, self.every = gan, dataset, int(every)
        self.noise_seed = [seed, 4]
        self.real = dataset.sample(N_FRAME_SAMPLES, np.random.default_rng([seed, 6]))
        self.lim = _plot_lim(dataset)
        self.frames = []

    def maybe_record(self, step, record=None):
        if self.every and step % self.every == 0:
            self.record(step, record)

    def record(self, step, record=None):
        from minigan import plot
        from minigan.backend import to_numpy

        gan = self.gan
        fake = to_numpy(gan.sample(N_FRAME_SAMPLES, rng=np.random.default_rng(self.noise_seed)))
        info = {k: record[k] for k in ("d_loss", "g_loss")} if record else None
        if self.dataset.dim == 2:
            frame = plot.snapshot_2d(self.real, fake, discriminator=gan, step=step, info=info,
                                     lim=self.lim, grid_size=GRID_SIZE)
        else:
            z = _latent(gan, N_FRAME_SAMPLES, self.noise_seed) if gan.latent_dim == 1 else None
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

    def load_state_dict(self, extra):
        if "frame_steps" not in extra:
            return
        self.frames = []
        for step, fake, d, info in zip(extra["frame_steps"], extra["frame_fake"],
                                       extra["frame_d"], extra["frame_info"]):
            frame = {"step": int(step), "real": self.real, "fake": fake, "lim": self.lim,
                     "d_grid": d}
            if not np.isnan(info).any():
                frame["info"] = {"d_loss": float(info[0]), "g_loss": float(info[1])}
            n = d.shape[-1]
            if self.dataset.dim == 2:
                x0, x1, y0, y1 = self.lim
                frame["grid_x"] = np.linspace(x0, x1, n)
                frame["grid_y"] = np.linspace(y0, y1, d.shape[0])
            else:
                frame["grid_x"] = np.linspace(self.lim[0], self.lim[1], n)
                if self.gan.latent_dim == 1:
                    frame["z"] = _latent(self.gan, len(fake), self.noise_seed)
            self.frames.append(frame)


def _figures(out_dir, gan, dataset_name, dataset, samples, frames):
    """losses.png, samples.png and (1-D, 2-D) training.gif; returns the files written."""
    _headless_matplotlib()
    from minigan import plot
    from minigan.data import FASHION_MNIST_CLASSES

    plot.plot_losses(gan.history, path=os.path.join(out_dir, "losses.png"))
    written = ["losses.png"]
    path = os.path.join(out_dir, "samples.png")
    title = f"{dataset_name}, step {gan.step}"
    if dataset_name in IMAGE_DATASETS and gan.conditional:
        # gan.sample cycles the labels 0..C-1, so sample i has class i % C
        labels = np.arange(len(samples)) % gan.n_classes
        names = FASHION_MNIST_CLASSES if dataset_name == "fashion-mnist" else None
        plot.plot_class_grid(samples, labels, n_per_class=10, class_names=names,
                             title=title, path=path)
    elif dataset_name in IMAGE_DATASETS:
        plot.plot_image_grid(samples[:100], nrow=10, title=title, path=path)
    else:
        real = dataset.sample(len(samples), np.random.default_rng(0))
        if dataset.dim == 2:
            plot.plot_2d(real, samples, discriminator=gan, centres=_centres(dataset),
                         lim=_plot_lim(dataset), title=title, path=path)
        else:
            plot.plot_1d(real, samples, discriminator=gan, lim=_plot_lim(dataset),
                         data_pdf=getattr(dataset, "pdf", None), title=title, path=path)
    written.append("samples.png")

    if frames is not None and frames.frames:
        path = os.path.join(out_dir, "training.gif")
        if dataset.dim == 2:
            plot.animate_2d(frames.frames, path, lim=frames.lim, centres=_centres(dataset),
                            title=dataset_name)
        else:
            plot.animate_1d(frames.frames, path, lim=frames.lim,
                            data_pdf=getattr(dataset, "pdf", None), title=dataset_name)
        written.append("training.gif")
    return written


# ---------------------------------------------------------------------- progress


class Progress:
    """A tqdm bar on an interactive terminal, else a line every ~10% (or nothing)."""

    KEYS = (("d_loss", "d_loss"), ("g_loss", "g_loss"), ("d_real", "D(x)"),
            ("d_fake", "D(G(z))"))

    def __init__(self, total, initial, quiet):
        self.total, self.quiet = total, quiet
        self.bar = None
        self.start = time.perf_counter()
        self.every = max(1, total // 10)
        if quiet:
            return
        if sys.stderr.isatty():
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True,
                                mininterval=0.25)

    def update(self, step, record):
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.update(1)
            if step % 10 == 0 or step == self.total:
                self.bar.set_postfix_str(", ".join(
                    f"{label} {record[key]:.3f}" for key, label in self.KEYS), refresh=False)
        elif step % self.every == 0 or step == self.total:
            elapsed = time.perf_counter() - self.start
            stats = "  ".join(f"{label} {record[key]:.3f}" for key, label in self.KEYS)
            print(f"step {step:>{len(str(self.total))}}/{self.total}  {stats}  "
                  f"({elapsed:.1f} s)", flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


# ------------------------------------------------------------------------- train


def _resolve_out_dir(args):
    if args.out is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        base = os.path.join("runs", f"{args.dataset}-{stamp}")
        out, k = base, 2
        while os.path.exists(out):
            out, k = f"{base}-{k}", k + 1
        return out
    return args.out


def _prepare_out_dir(out, overwrite, resume_path=None):
    if os.path.exists(out) and not os.path.isdir(out):
        raise CLIError(f"--out {out!r} exists and is not a directory")
    if os.path.isdir(out) and os.listdir(out):
        resuming_here = resume_path is not None and \
            os.path.dirname(os.path.abspath(resume_path)) == os.path.abspath(out)
        if not overwrite and not resuming_here:
            raise CLIError(f"the run directory {out!r} exists and is not empty; pass --overwrite "
                           "to replace its files, or choose another --out")
        for name in RUN_FILES:
            p = os.path.join(out, name)
            if os.path.isfile(p) and not (resuming_here and name == "checkpoint.npz"):
                os.remove(p)
    os.makedirs(out, exist_ok=True)


def _config_from_args(args):
    config = preset(args.dataset)
    if args.conditional and args.dataset in IMAGE_DATASETS:
        config.update(CONDITIONAL)  # then the options given override these too
    overrides = {
        "steps": args.steps, "batch_size": args.batch_size, "lr_g": args.lr_g,
        "lr_d": args.lr_d, "g_loss": args.g_loss, "d_steps": args.d_steps,
        "label_smoothing": args.label_smoothing, "ema_decay": args.ema_decay,
        "frames": args.frames, "pack": args.pack, "loss": args.loss,
        "checkpoint_every": args.checkpoint_every,
    }
    if args.lr is not None:
        overrides["lr_g"] = overrides["lr_g"] if args.lr_g is not None else args.lr
        overrides["lr_d"] = overrides["lr_d"] if args.lr_d is not None else args.lr
    for k, v in overrides.items():
        if v is not None:
            config[k] = v
    if args.conditional:
        if args.dataset not in IMAGE_DATASETS:
            raise CLIError(f"--conditional needs labelled data ({', '.join(IMAGE_DATASETS)}); "
                           f"{args.dataset} has no labels")
        config["n_classes"] = 10
    if config.get("loss", "bce") == "lsgan":
        if args.g_loss is not None and args.g_loss != "lsgan":
            raise CLIError(f"--loss lsgan sets both losses to least squares; it cannot be "
                           f"combined with --g-loss {args.g_loss}")
        config["g_loss"] = "lsgan"
    return config


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


def train(args):
    """The ``train`` command; returns the exit code."""
    from minigan import backend as mb
    from minigan.checkpoint import load_checkpoint, save_checkpoint
    from minigan.gan import DivergenceError, check_finite
    from minigan.models import build_gan, lr_factor

    t_start = time.perf_counter()
    if args.backend is not None:
        try:
            mb.use(args.backend)
        except RuntimeError as err:
            raise CLIError(str(err)) from None
    backend = mb.get_backend()

    resume = None
    if args.resume is not None:
        try:
            resume = load_checkpoint(args.resume, backend=backend)
        except FileNotFoundError as err:
            raise CLIError(str(err)) from None
        config = dict(resume.config)
        fixed = {"--batch-size": args.batch_size, "--seed": args.seed, "--lr": args.lr,
                 "--lr-g": args.lr_g, "--lr-d": args.lr_d, "--g-loss": args.g_loss,
                 "--d-steps": args.d_steps, "--label-smoothing": args.label_smoothing,
                 "--ema-decay": args.ema_decay, "--frames": args.frames,
                 "--pack": args.pack, "--loss": args.loss,
                 "--conditional": args.conditional or None,
                 "--checkpoint-every": args.checkpoint_every}
        changed = [k for k, v in fixed.items() if v is not None]
        if changed:
            raise CLIError(f"{', '.join(changed)} cannot be changed when resuming: the run "
                           "continues with the settings stored in the checkpoint (only --steps "
                           "and --stop-after apply)")
        if args.dataset_given and args.dataset != config.get("dataset"):
            raise CLIError(f"--dataset {args.dataset} but the checkpoint {args.resume!r} is a "
                           f"{config.get('dataset')} run")
        args.dataset = config["dataset"]
        if args.steps is not None:
            config["steps"] = args.steps
        if resume.gan.step >= config["steps"]:
            raise CLIError(f"the checkpoint is at step {resume.gan.step}, which is not before "
                           f"--steps {config['steps']}: ask for more steps to continue")
        seed = int(resume.extra.get("seed", 0))
    else:
        config = _config_from_args(args)
        seed = 0 if args.seed is None else args.seed
    stop_after = args.stop_after if args.stop_after is not None else config["steps"]
    if args.stop_after is not None and args.stop_after > config["steps"]:
        raise CLIError(f"--stop-after {args.stop_after} is beyond --steps {config['steps']}")

    dataset_name = config["dataset"]
    is_image = dataset_name in IMAGE_DATASETS
    if backend == "numpy":
        threads, why = _blas_threads(args.threads, is_image)
        if threads is not None and _limit_blas_threads(threads, force=args.threads is not None) \
                and why and not args.quiet:
            print(f"Using {threads} BLAS thread{'s' if threads > 1 else ''}: {why}.", flush=True)
    data_rng = np.random.default_rng([seed, 3])
    if is_image:
        try:
            images, labels = _load_images(dataset_name, args.data_dir)
        except Exception as err:

            if isinstance(err, (DataError, FileNotFoundError)):
                raise CLIError(f"cannot load {dataset_name}: {err}") from None
            raise
        _check_numbers(config, images.shape[0])
        dataset = None
        stream = EpochStream(images.astype(config.get("dtype", "float32"), copy=False),
                             config["batch_size"], data_rng, backend,
                             labels=labels if config.get("n_classes") else None)
        del images, labels
    else:
        from minigan.data import toy_dataset

        dataset = toy_dataset(dataset_name)
        _check_numbers(config, None)
        stream = ToyStream(dataset, config["batch_size"], data_rng, backend,
                           config.get("dtype", "float32"))

    out = _resolve_out_dir(args)
    _prepare_out_dir(out, args.overwrite, args.resume)

    if resume is not None:
        gan = resume.gan
        stream.load_state_dict(resume.extra["data_state"])
    else:
        gan = build_gan(config, backend=backend, seed=seed)
    gan.track_grad_norms = True
    steps = int(config["steps"])
    frames = None
    if not is_image and not args.no_gif and config.get("frames", 0):
        frames = FrameRecorder(gan, dataset, max(1, steps // int(config["frames"])), seed)
        if resume is not None:
            frames.load_state_dict(resume.extra)
        elif gan.step == 0:
            frames.record(0)

    lr_g, lr_d = float(config["lr_g"]), float(config["lr_d"])
    d_steps = int(config.get("d_steps", 1))
    start_step = gan.step
    n_params = gan.G.n_params + gan.D.n_params
    if not args.quiet:
        where = f" (resuming {args.resume} at step {start_step})" if resume is not None else ""
        c = int(config.get("n_classes") or 0)
        m = int(config.get("pack", 1))
        g_in = f"{config['latent_dim']}+{c}" if c else f"{config['latent_dim']}"
        d_in = f"{config['data_dim']}+{c}" if c else f"{config['data_dim']}"
        d_in = f"{m}x({d_in})" if m > 1 and c else (f"{m}x{d_in}" if m > 1 else d_in)
        options = "".join([f", conditional on {c} classes" if c else "",
                           f", pack {m}" if m > 1 else "",
                           ", least-squares loss" if config.get("loss") == "lsgan" else ""])
        print(f"Training a GAN on {dataset_name}{where}: {steps} steps, batch "
              f"{config['batch_size']}, G {g_in}-"
              f"{'-'.join(map(str, config['g_hidden']))}-{config['data_dim']}, D "
              f"{d_in}-{'-'.join(map(str, config['d_hidden']))}-1{options} "
              f"({n_params:,} parameters), {backend}, seed {seed}; writing to {out}",
              flush=True)

    def extra_state():
        extra = {"seed": seed, "dataset": dataset_name, "data_state": stream.state_dict()}
        if frames is not None:
            extra.update(frames.state_dict())
        return extra

    # Periodic checkpoints: what a diverged run keeps. Each is saved only after
    # check_finite has seen finite losses AND finite weights (a step reports the
    # losses of its forward pass, before its update could have made NaN weights).
    checkpoint_path = os.path.join(out, "checkpoint.npz")
    every = config.get("checkpoint_every")
    every = max(1, steps // 10) if every is None else int(every)
    last_good = start_step if resume is not None else None
    progress = Progress(stop_after, start_step, args.quiet)
    t_train = time.perf_counter()
    diverged = None
    try:
        for step in range(start_step, stop_after):
            factor = lr_factor(step, steps, config)
            gan.g_optimizer.lr = lr_g * factor
            gan.d_optimizer.lr = lr_d * factor
            real = stream.next() if d_steps == 1 else [stream.next() for _ in range(d_steps)]
            record = gan.train_step(real)
            check_finite(record)
            progress.update(step + 1, record)
            if frames is not None:
                frames.maybe_record(step + 1, record)
            if every and (step + 1) % every == 0 and step + 1 < stop_after:
                check_finite(record, gan)
                save_checkpoint(checkpoint_path, gan, config, extra_state())
                last_good = step + 1
    except DivergenceError as err:
        diverged = err
    except KeyboardInterrupt:
        progress.close()
        print(f"\nInterrupted at step {gan.step}; saving a checkpoint to {out} "
              f"(continue with --resume {os.path.join(out, 'checkpoint.npz')})", file=sys.stderr)
        save_checkpoint(os.path.join(out, "checkpoint.npz"), gan, config, extra_state())
        return 130
    finally:
        progress.close()
    train_seconds = time.perf_counter() - t_train

    if diverged is None:
        try:
            check_finite(gan.history.records[-1] if gan.history.records else {}, gan)
        except DivergenceError as err:
            diverged = err
    if diverged is not None:
        gan.history.to_csv(os.path.join(out, "history.csv"))
        if last_good is not None:
            kept = (f"The last good checkpoint, step {last_good}, is kept in {checkpoint_path} "
                    f"(continue from it with --resume {checkpoint_path}, or start again with "
                    "a lower --lr).")
        else:
            kept = "No checkpoint had been saved yet (see --checkpoint-every)."
        print(f"minigan train: {diverged}\nStopped. {kept} The history up to that step is "
              f"in {os.path.join(out, 'history.csv')}.", file=sys.stderr)
        return 1

    # -- outputs --------------------------------------------------------------
    from minigan.backend import to_numpy

    save_checkpoint(os.path.join(out, "checkpoint.npz"), gan, config, extra_state())
    gan.history.to_csv(os.path.join(out, "history.csv"))
    written = ["checkpoint.npz", "history.csv"]

    eval_rng = np.random.default_rng([seed, 5])
    n_eval = N_METRIC_SAMPLES_IMAGES if is_image else N_METRIC_SAMPLES_TOY
    samples = to_numpy(gan.sample(n_eval, rng=eval_rng))
    saved = samples[:N_SAVED_IMAGES] if is_image else samples
    _atomic_npy(os.path.join(out, "samples.npy"), saved)
    written.append("samples.npy")

    metrics = {"dataset": dataset_name, "steps": int(gan.step), "seed": seed,
               "batch_size": int(config["batch_size"]), "backend": backend,
               "n_samples": int(n_eval), "sampled_from": "G_ema" if gan.G_ema is not None
               else "G"}
    if args.no_metrics:
        metrics["skipped"] = "--no-metrics"
        headline_parts = {}
    elif is_image:
        asked = np.arange(len(samples)) % gan.n_classes if gan.conditional else None
        try:
            headline_parts = _image_metrics(dataset_name, samples, args.data_dir, labels=asked)
        except DataError as err:
            # The run itself is saved; only the score is missing (e.g. no test-set files).
            print(f"Could not score the samples: {err}", file=sys.stderr)
            metrics["skipped"] = f"scoring failed: {err}"
            headline_parts = {}
    else:
        headline_parts = _toy_metrics(dataset, samples, seed)
    metrics.update(headline_parts)
    if is_image:
        headline = _image_headline(headline_parts) if headline_parts else "not scored"
    else:
        headline = _toy_headline(dataset_name, headline_parts) if headline_parts \
            else "metrics skipped (--no-metrics)"
    metrics["headline"] = headline.split("\n")[0]

    if not args.no_figures:
        written += _figures(out, gan, dataset_name, dataset, samples, frames)
    total_seconds = time.perf_counter() - t_start
    metrics["train_seconds"] = round(train_seconds, 3)
    metrics["total_seconds"] = round(total_seconds, 3)
    _atomic_json(os.path.join(out, "metrics.json"), metrics)
    written.append("metrics.json")

    if not args.quiet:
        stopped = f" (stopped after step {gan.step} of {steps}; continue with --resume)" \
            if gan.step < steps else ""
        print(f"Done in {total_seconds:.1f} s (training {train_seconds:.1f} s){stopped}.")
        source = " (samples from the moving average of G's weights)" if gan.G_ema is not None else ""
        print(f"{dataset_name}{source}: {headline}")
        print(f"Wrote {', '.join(sorted(written, key=RUN_FILES.index))} to {out}")
    return 0


# ------------------------------------------------------------------------ sample


def sample(args):
    from minigan.backend import to_numpy
    from minigan.checkpoint import load_checkpoint

    if not (args.out.endswith(".npy") or args.out.endswith(".png")):
        raise CLIError(f"--out must end in .npy (the samples) or .png (a figure), "
                       f"got {args.out!r}")
    if os.path.exists(args.out) and not args.overwrite:
        raise CLIError(f"--out {args.out!r} exists; pass --overwrite to replace it, or "
                       "choose another file")
    try:
        gan, config, extra = load_checkpoint(args.checkpoint)
    except FileNotFoundError as err:
        raise CLIError(str(err)) from None
    rng = np.random.default_rng(args.seed)
    x = to_numpy(gan.sample(args.n, rng=rng, ema=not args.no_ema))
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        raise CLIError(f"the folder of --out {args.out!r} does not exist")
    if args.out.endswith(".npy"):
        _atomic_npy(args.out, x)
    else:
        _headless_matplotlib()
        from minigan import plot

        name = config.get("dataset", extra.get("dataset"))
        title = f"{name}, step {gan.step}"
        if name in IMAGE_DATASETS or x.shape[1] == 784:
            n = min(len(x), 100)
            plot.plot_image_grid(x[:n], title=title, path=args.out)
        elif name in TOY_DATASETS:
            from minigan.data import toy_dataset

            dataset = toy_dataset(name)
            real = dataset.sample(len(x), np.random.default_rng(0))
            if x.shape[1] == 2:
                plot.plot_2d(real, x, discriminator=gan, centres=_centres(dataset),
                             lim=_plot_lim(dataset), title=title, path=args.out)
            else:
                plot.plot_1d(real, x, discriminator=gan, lim=_plot_lim(dataset),
                             data_pdf=getattr(dataset, "pdf", None), title=title, path=args.out)
        else:
            raise CLIError(f"cannot draw samples of width {x.shape[1]} from an unknown data set "
                           f"{name!r}; write them to a .npy file instead")
    if not args.quiet:
        print(f"Wrote {args.n} samples of {config.get('dataset', 'the GAN')} "
              f"(step {gan.step}) to {args.out}")
    return 0


# --------------------------------------------------------------------- gradcheck


def _gradcheck_cases():
    """(name, zero-argument function returning a GradCheckResult) for every op and layer."""
    from minigan import functional as F
    from minigan import gradcheck as gc
    from minigan import layers as L

    rng = np.random.default_rng(0)

    def away_from_zero(shape):
        x = rng.standard_normal(shape)
        return x + np.sign(x) * 0.1  # |x| >= 0.1: no kink of ReLU/LeakyReLU within eps

    x = away_from_zero((5, 4))
    W, b = rng.standard_normal((4, 3)), rng.standard_normal(3)
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    mask = F.dropout_mask((5, 4), 0.5, rng=1, dtype="float64")
    running_mean, running_var = rng.standard_normal(4), rng.uniform(0.5, 2.0, 4)
    logits = rng.standard_normal((6, 1)) * 3
    probs = rng.uniform(0.05, 0.95, (6, 1))
    soft = rng.uniform(0, 1, (6, 1))
    class_logits = rng.standard_normal((6, 5))
    labels = rng.integers(0, 5, 6)

    def layer(lay, inp):
        return lambda: gc.check_layer(lay, inp)

    cases = [
        ("dense_forward/backward", lambda: gc.check_backward(F.dense_forward, [x, W, b])),
        ("relu_forward/backward", lambda: gc.check_backward(F.relu_forward, [x])),
        ("leaky_relu_forward/backward", lambda: gc.check_backward(
            F.leaky_relu_forward, [x], kwargs={"negative_slope": 0.2})),
        ("sigmoid_forward/backward", lambda: gc.check_backward(F.sigmoid_forward, [x])),
        ("tanh_forward/backward", lambda: gc.check_backward(F.tanh_forward, [x])),
        ("dropout_forward/backward", lambda: gc.check_backward(
            F.dropout_forward, [x], kwargs={"p": 0.5, "mask": mask})),
        ("batchnorm_forward/backward (train)", lambda: gc.check_backward(
            F.batchnorm_forward, [x, gamma, beta], kwargs={"train": True})),
        ("batchnorm_forward/backward (eval)", lambda: gc.check_backward(
            F.batchnorm_forward, [x, gamma, beta],
            kwargs={"train": False, "running_mean": running_mean, "running_var": running_var})),
        ("bce_with_logits", lambda: gc.check_loss(F.bce_with_logits, logits, soft)),
        ("bce", lambda: gc.check_loss(F.bce, probs, soft)),
        ("mse", lambda: gc.check_loss(F.mse, logits, soft)),
        ("least_squares", lambda: gc.check_loss(F.least_squares, logits, soft)),
        ("softmax_cross_entropy", lambda: gc.check_loss(
            F.softmax_cross_entropy, class_logits, labels)),
        ("Dense", layer(L.Dense(4, 3, dtype="float64", rng=2), x)),
        ("ReLU", layer(L.ReLU(), x)),
        ("LeakyReLU", layer(L.LeakyReLU(0.2), x)),
        ("Sigmoid", layer(L.Sigmoid(), x)),
        ("Tanh", layer(L.Tanh(), x)),
        ("Dropout", layer(L.Dropout(0.5, rng=3), x)),
        ("BatchNorm1d (train)", layer(L.BatchNorm1d(4, dtype="float64"), x)),
        ("BatchNorm1d (eval)", layer(L.BatchNorm1d(4, dtype="float64").eval(), x)),
        ("Sequential MLP", layer(L.Sequential(
            # batch norm after the activation: right after a Dense it would make that
            # layer's bias gradient exactly 0, which says nothing about the check
            L.Dense(4, 6, dtype="float64", rng=4), L.LeakyReLU(0.2),
            L.BatchNorm1d(6, dtype="float64"), L.Dense(6, 2, dtype="float64", rng=5),
            L.Tanh()), x)),
        ("GAN generator step through D", _gan_generator_check),
    ]
    return cases


def _gan_generator_check():
    """G's parameter gradient of the generator loss, through D, against finite differences."""
    from minigan import gradcheck as gc
    from minigan.models import build_gan

    gan = build_gan({"latent_dim": 3, "data_dim": 2, "g_hidden": [5], "d_hidden": [4],
                     "dtype": "float64", "activation": "tanh"}, backend="numpy", seed=0)
    z = np.random.default_rng(1).standard_normal((6, 3))

    def loss():
        return gan.generator_loss(gan.D.forward(gan.G.forward(z)))[0]

    fake = gan.G.forward(z)
    logits = gan.D.forward(fake)
    _, dlogits = gan.generator_loss(logits)
    dfake = gan.D.backward(dlogits, param_grads=False)
    gan.G.zero_grad()
    gan.G.backward(dfake)
    result = gc.GradCheckResult("generator loss through D w.r.t. G's parameters")
    for name, p, g in gan.G.named_parameters():
        analytic = g.copy()
        numeric = gc.numerical_gradient(lambda: float(loss()), p)
        result.comparisons.append(gc.compare("d" + name, analytic, numeric))
    gan.G.clear_cache()
    gan.D.clear_cache()
    return result


def gradcheck(args):
    cases = _gradcheck_cases()
    failures = 0
    width = max(len(name) for name, _ in cases)
    print(f"{'check':<{width}}  {'max rel. error':>14}  result")
    print("-" * (width + 26))
    for name, fn in cases:
        result = None
        try:
            result = fn()
            ok, err = result.ok, result.max_rel_error
            status = "ok" if ok else "FAILED: " + ", ".join(result.wrong())
        except Exception as exc:  # a crash in a backward is a failed check, not a traceback
            ok, err, status = False, float("nan"), f"ERROR: {type(exc).__name__}: {exc}"
        failures += not ok
        print(f"{name:<{width}}  {err:14.2e}  {status}")
        if not ok and args.verbose and result is not None:
            print(result)
    print("-" * (width + 26))
    print(f"{len(cases) - failures}/{len(cases)} gradient checks passed (float64, central "
          "differences, random upstream gradient)")
    return 0 if failures == 0 else 1


# -------------------------------------------------------------------------- info


def _version(module_name):
    try:
        module = __import__(module_name)
    except Exception:
        return "not installed"
    return getattr(module, "__version__", "installed")


def _blas_info():
    try:
        config = np.show_config(mode="dicts")
        blas = config.get("Build Dependencies", {}).get("blas", {})
        text = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:
        text = "unknown"
    threads = [f"{k}={os.environ[k]}" for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                                 "MKL_NUM_THREADS") if k in os.environ]
    return text + (f" ({', '.join(threads)})" if threads else "")


def info(args):
    import minigan
    from minigan import backend as mb

    lines = [
        ("minigan", f"{minigan.__version__} ({os.path.dirname(minigan.__file__)})"),
        ("Python", f"{platform.python_version()} ({sys.executable})"),
        ("platform", f"{platform.platform()}, {os.cpu_count()} CPUs"),
        ("NumPy", np.__version__),
        ("BLAS", _blas_info()),
        ("matplotlib", _version("matplotlib")),
        ("tqdm", _version("tqdm")),
        ("CuPy", _version("cupy")),
    ]
    gpu = "none"
    try:
        cupy = mb._import_cupy()
        props = cupy.cuda.runtime.getDeviceProperties(0)
        name = props["name"]
        gpu = name.decode() if isinstance(name, bytes) else str(name)
        gpu += f" ({props['totalGlobalMem'] / 2**30:.1f} GiB)"
        backends = "numpy, cupy"
    except RuntimeError as err:
        backends = "numpy (cupy unavailable: " + str(err).split(". ")[0] + ")"
    lines += [("backends", backends), ("GPU", gpu), ("current backend", mb.get_backend())]
    from minigan.data.mnist import FILES, resolve_data_dir

    data_dir = resolve_data_dir()
    env = os.environ.get("MINIGAN_DATA_DIR")
    lines.append(("data dir", f"{data_dir}" + (" (from MINIGAN_DATA_DIR)" if env else "")))
    for name in ("mnist", "fashion-mnist"):
        files = FILES[name]
        present = sum((data_dir / name / f).is_file() for f in files)
        lines.append((f"  {name}", f"{present}/{len(files)} files present"
                      + ("" if present == len(files) else
                         " (downloaded on first use, or put them there by hand)")))
    from minigan import metrics

    cache = metrics.resolve_cache_dir()
    clf = cache / metrics.CLASSIFIER_FILE
    lines.append(("cache dir", str(cache)))
    lines.append(("  MNIST classifier", "cached" if clf.is_file() else
                  "not trained yet (trained once, ~30 s, on the first MNIST run)"))
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


def build_parser():
    import minigan

    parser = argparse.ArgumentParser(
        prog="minigan", formatter_class=_Formatter,
        description="minigan: GANs from scratch in NumPy/CuPy. Train one, sample from a "
                    "checkpoint, check every gradient, or show the setup.",
        epilog="Run 'python -m minigan COMMAND --help' for the options of a command.")
    parser.add_argument("--version", action="version", version=f"minigan {minigan.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    toy = ", ".join(TOY_DATASETS)
    p = sub.add_parser(
        "train", formatter_class=_Formatter, help="train a GAN and write a run directory",
        description="Train a GAN with the dataset's preset settings (override them below) and "
                    "write checkpoint.npz, history.csv, metrics.json, samples.npy, losses.png, "
                    "samples.png and, for 1-D/2-D data, training.gif into --out.",
        epilog=f"Toy sets ({toy}) are generated on the fly; MNIST and Fashion-MNIST are read "
               "from $MINIGAN_DATA_DIR (or ~/.cache/minigan, downloaded when missing). "
               "Presets: " + "; ".join(
                   f"{k}: {v['steps']} steps, batch {v['batch_size']}" for k, v in PRESETS.items()))
    p.add_argument("--dataset", choices=DATASETS, default="ring8", help="what to learn")
    p.add_argument("--steps", type=_positive_int, default=None,
                   help="generator updates (default: the preset's)")
    p.add_argument("--batch-size", type=_positive_int, default=None,
                   help="real samples per discriminator update (default: the preset's)")
    p.add_argument("--seed", type=_non_negative_int, default=None,
                   help="seeds the weights, the noise and the data order (default 0)")
    p.add_argument("--backend", choices=("numpy", "cupy"), default=None,
                   help="where to compute (default: $MINIGAN_BACKEND or numpy)")
    p.add_argument("--out", default=None,
                   help="run directory (default: runs/<dataset>-<date>-<time>)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the files of an existing run directory")
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
    p.add_argument("--frames", type=_non_negative_int, default=None,
                   help="snapshots in training.gif (1-D/2-D data; default: the preset's)")
    p.add_argument("--pack", type=_positive_int, default=None, metavar="M",
                   help="PacGAN (Lin et al. 2018): D judges M samples at once, which "
                        "penalises mode collapse; the batch size must be a multiple of M "
                        "(default: the preset's)")
    p.add_argument("--loss", choices=("bce", "lsgan"), default=None,
                   help="bce: cross-entropy on D's logits; lsgan: least squares on D's raw "
                        "output, targets 0 (fake) and 1 (real) (Mao et al. 2017)")
    p.add_argument("--conditional", action="store_true",
                   help="mnist/fashion-mnist: condition G and D on the class label (Mirza "
                        "and Osindero 2014); samples.png then shows one row per class")
    p.add_argument("--checkpoint-every", type=_non_negative_int, default=None, metavar="N",
                   help="save checkpoint.npz every N steps (default: every tenth of the run; "
                        "0: only at the end); a run that diverges (NaN/inf losses) stops "
                        "and keeps the last good one")
    p.add_argument("--data-dir", default=None,
                   help="where the MNIST files are (default: $MINIGAN_DATA_DIR or "
                        "~/.cache/minigan)")
    p.add_argument("--no-metrics", action="store_true",
                   help="skip the scores in metrics.json (for images: no classifier is "
                        "trained or loaded)")
    p.add_argument("--no-figures", action="store_true", help="write no .png/.gif files")
    p.add_argument("--no-gif", action="store_true", help="skip training.gif")
    p.add_argument("--resume", default=None, metavar="CHECKPOINT",
                   help="continue the run saved in CHECKPOINT (its settings, data order and "
                        "RNG states) up to --steps")
    p.add_argument("--stop-after", type=_positive_int, default=None, metavar="STEP",
                   help="stop after this step (the learning-rate schedule still spans "
                        "--steps) and save; continue later with --resume")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="BLAS threads (default: 1 for the toy sets; for images the library's "
                        "default, fewer when the machine is busy)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=train)

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
        return args.func(args)
    except BrokenPipeError:
        # The reader of our output went away (`minigan gradcheck | head`): not our
        # error. Point stdout at /dev/null so that Python's final flush is quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except CLIError as err:
        print(f"minigan {args.command}: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        from minigan.checkpoint import CheckpointError

        if isinstance(err, CheckpointError):
            print(f"minigan {args.command}: error: {err}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
