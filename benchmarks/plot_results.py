"""Draw the speed ratios of ``gan_step.py --json`` runs side by side.

    python benchmarks/plot_results.py before.json after.json --labels "0.1" "0.2" \
        --out docs/benchmarks_gan_step.png

One group of bars per batch size, one bar per run: minigan's median step time
divided by PyTorch's, measured in the same run (so the machine's load cancels
out as far as it can). Below 1, minigan is faster; the dashed line is a tie.
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def load(path):
    with open(path) as f:
        run = json.load(f)
    rows = [r for r in run["results"] if "ratio" in r]
    if not rows:
        raise SystemExit(f"{path}: no minigan/PyTorch ratios (was it run with --no-torch?)")
    return {r["batch"]: r["ratio"] for r in rows}, run.get("machine", {})


def plot(runs, labels, out, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = sorted(set().union(*(ratios for ratios, _ in runs)))
    width = 0.8 / len(runs)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for k, ((ratios, _), label) in enumerate(zip(runs, labels)):
        x = np.arange(len(batches)) + (k - (len(runs) - 1) / 2) * width
        values = [ratios.get(b, np.nan) for b in batches]
        bars = ax.bar(x, values, width, label=label)
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.axhline(1.0, color="k", linestyle="--", linewidth=0.8)
    ax.set_xticks(np.arange(len(batches)), [str(b) for b in batches])
    ax.set_xlabel("batch size")
    ax.set_ylabel("minigan / PyTorch step time")
    ax.set_title(title)
    ax.legend(frameon=False)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="JSON files written by gan_step.py --json")
    p.add_argument("--labels", nargs="+", help="one legend label per run (default: file names)")
    p.add_argument("--out", required=True, help="the PNG to write")
    p.add_argument("--title", default="One GAN training step (CPU), lower is faster")
    args = p.parse_args(argv)
    labels = args.labels or args.runs
    if len(labels) != len(args.runs):
        p.error(f"{len(args.runs)} runs but {len(labels)} labels")
    plot([load(path) for path in args.runs], labels, args.out, args.title)


if __name__ == "__main__":
    main()
