#!/usr/bin/env python
"""Score generated MNIST digits (or Fashion-MNIST garments) with a classifier minigan
did not make: a small convolutional network in PyTorch, trained here on the training
set of the runs' data set.

    python benchmarks/independent_score.py runs/A/checkpoint.npz runs/B/checkpoint.npz
    python benchmarks/independent_score.py --epochs 3 --threads 2 RUN/checkpoint.npz

``python -m minigan train`` scores its samples with minigan's own classifier
(``minigan.metrics.load_classifier``: a NumPy network the same library trained).
A second opinion guards against a generator that happens to suit that one network:
here the classifier is PyTorch's (two 3x3 convolutions with max pooling, then two
dense layers, Adam, ``--epochs`` passes over the 60,000 training images; 98.4%
on the MNIST test set), and the scores are the same formulas (``minigan.metrics.
scores_from_probs``: classes covered, KL of the predicted classes to uniform,
Inception score), with how many images it puts in each class.

Each checkpoint of an unconditional MNIST or Fashion-MNIST run (all of one data set)
is sampled exactly as ``train`` sampled it for ``metrics.json``: 10,000 images from
G's moving average with the generator ``numpy.random.default_rng([seed, 5])`` of the
run's seed, so the two classifiers judge the same images. The real test images are
scored too, as the ceiling. Needs PyTorch (not a dependency of minigan) and the data
set's files (``MINIGAN_DATA_DIR`` or ``--data-dir``).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

N_SAMPLES = 10_000  # as minigan.cli.N_METRIC_SAMPLES_IMAGES
DATASETS = ("mnist", "fashion-mnist")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+",
                   help="checkpoint.npz files of unconditional runs of one data set (MNIST or "
                        "Fashion-MNIST)")
    p.add_argument("--epochs", type=int, default=2, help="passes over the training set (default 2)")
    p.add_argument("--n-train", type=int, default=60_000,
                   help="training images, the first N (default all 60,000; fewer for a quick check)")
    p.add_argument("--seed", type=int, default=0, help="the classifier's weights and batches")
    p.add_argument("--threads", type=int, default=None, help="PyTorch's threads (default: its own)")
    p.add_argument("--data-dir", default=None, help="where the data set's files are")
    return p.parse_args(argv)


def classifier(torch):
    """The network: 1x28x28 -> conv 32 -> pool -> conv 64 -> pool -> 128 -> 10 logits."""
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),      # 32 x 13 x 13
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),     # 64 x 5 x 5
        nn.Flatten(), nn.Linear(64 * 5 * 5, 128), nn.ReLU(), nn.Dropout(0.25),
        nn.Linear(128, 10))


def train_classifier(torch, images, labels, epochs, seed):
    """The network trained on (images (N, 784) in [-1, 1], labels), in evaluation mode."""
    torch.manual_seed(seed)
    net = classifier(torch)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.from_numpy(images.reshape(-1, 1, 28, 28))
    y = torch.from_numpy(labels)
    order = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=order).split(128):
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(net(x[batch]), y[batch]).backward()
            opt.step()
    return net.eval()


def probabilities(torch, net, images):
    """Softmax class probabilities (N, 10) of images (N, 784) in [-1, 1], as float64."""
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32).reshape(-1, 1, 28, 28))
        return torch.cat([torch.softmax(net(part), dim=1) for part in x.split(1000)]).double().numpy()


def run_samples(path):
    """(the run's data set, its seed, the 10,000 images ``train`` scored) of a checkpoint."""
    from minigan.backend import to_numpy
    from minigan.checkpoint import load_checkpoint

    gan, config, _ = load_checkpoint(path, backend="numpy")
    if config.get("dataset") not in DATASETS or getattr(gan, "n_classes", None):
        raise SystemExit(f"{path}: expected an unconditional MNIST or Fashion-MNIST run, got "
                         f"{'a conditional ' if getattr(gan, 'n_classes', None) else ''}"
                         f"{config.get('dataset')!r}")
    seed = int(config["seed"])
    return (config["dataset"], seed,
            to_numpy(gan.sample(N_SAMPLES, rng=np.random.default_rng([seed, 5]))))


def row(name, scores):
    counts = " ".join(f"{n:>5}" for n in scores["class_histogram"])
    return (f"{name:<44} {scores['classes_covered']:>2}/10 {scores['kl_to_uniform']:>8.4f} "
            f"{scores['inception_score']:>7.3f}   {counts}")


def main(argv=None):
    args = parse_args(argv)
    try:
        import torch
    except ImportError:
        sys.exit("independent_score.py needs PyTorch (pip install torch): it is the "
                 "independent classifier")
    if args.threads:
        torch.set_num_threads(args.threads)
    from minigan.data import load_fashion_mnist, load_mnist
    from minigan.metrics import scores_from_probs

    runs = [(path, *run_samples(path)) for path in args.checkpoints]
    datasets = sorted({dataset for _, dataset, _, _ in runs})
    if len(datasets) > 1:
        sys.exit(f"the checkpoints are of {' and '.join(datasets)}: one classifier judges "
                 "one data set, so score them apart")
    dataset = datasets[0]
    load = load_mnist if dataset == "mnist" else load_fashion_mnist
    train_x, train_y = load("train", data_dir=args.data_dir, download=False)
    test_x, test_y = load("test", data_dir=args.data_dir, download=False)
    if not 1 <= args.n_train <= len(train_x):
        sys.exit(f"--n-train must be in 1..{len(train_x)}, got {args.n_train}")
    net = train_classifier(torch, train_x[:args.n_train], train_y[:args.n_train], args.epochs,
                           args.seed)
    test_probs = probabilities(torch, net, test_x)
    accuracy = float(np.mean(test_probs.argmax(axis=1) == test_y))
    print(f"# independent classifier: PyTorch CNN, {args.n_train:,} training images, "
          f"{args.epochs} epoch(s), seed {args.seed}: {accuracy:.2%} on the {dataset} test set")
    print(f"{'samples':<44} classes      KL       IS   predicted 0, 1, ..., 9")
    print(row("the real test images", scores_from_probs(test_probs)), flush=True)
    for path, _, seed, images in runs:
        name = f"{os.path.basename(os.path.dirname(os.path.abspath(path)))} (seed {seed})"
        print(row(name, scores_from_probs(probabilities(torch, net, images))), flush=True)


if __name__ == "__main__":
    main()
