"""What the DCGAN preset's lazy R1 penalty costs: minigan's training step with and
without it, timed in interleaved blocks in one run.

    python benchmarks/lazy_r1.py                     # the preset's batch, 6 blocks of 160 steps
    python benchmarks/lazy_r1.py --threads 1 --every 1,16

The GANs are ``minigan.models.build_gan`` of ``presets.preset("mnist", arch="dcgan")``
(what ``python -m minigan train --dataset mnist --arch dcgan`` trains), once with
``penalty`` "none" and once per period k of ``--every`` with R1 (gamma 1) penalising
every k-th D step. A block is a whole number of periods, so each block pays its share
of penalties. Reported: each variant's median and minimum ms per step over the blocks
and its ratio to the step without R1 (medians). No PyTorch: this is minigan against
itself; ``gan_step.py --arch dcgan`` compares the step without the penalty with PyTorch.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def _config(every):
    """The preset's config with R1 every ``every`` D steps, or without R1 (None)."""
    from minigan.presets import preset   # after set_threads: minigan imports NumPy

    config = preset("mnist", arch="dcgan")
    if every is None:
        for key in ("penalty_weight", "penalty_every"):
            config.pop(key)
        config["penalty"] = "none"
    else:
        config.update(penalty="r1", penalty_every=every)
    return config


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=None, help="default: the preset's")
    p.add_argument("--every", default="16", help="R1's periods to time, comma-separated")
    p.add_argument("--blocks", type=int, default=6)
    p.add_argument("--block", type=int, default=160, help="steps per block (a multiple of "
                   "every period, so each block pays its share)")
    p.add_argument("--warmup", type=int, default=32)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    periods = [int(k) for k in args.every.split(",")]
    if any(args.block % k for k in periods):
        p.error(f"--block {args.block} is not a multiple of every period in {periods}")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _threads import default_threads, set_threads

    threads = args.threads or default_threads()
    set_threads(threads)                # before NumPy is imported
    import _common
    from minigan.models import build_gan

    print(_common.machine_info(threads))
    print(_common.share_threads("dcgan", threads))

    variants = {"no penalty": None, **{f"R1 every {k}": k for k in periods}}
    gans = {name: build_gan(_config(k), seed=0) for name, k in variants.items()}
    args.batch = args.batch or _config(None)["batch_size"]
    batches = [_common.real_batch(args.batch, seed) for seed in range(8)]
    for gan in gans.values():
        for i in range(args.warmup):
            gan.train_step(batches[i % len(batches)])
    times = {name: [] for name in gans}
    for _ in range(args.blocks):
        for name, gan in gans.items():      # interleaved: the machine's drift hits all alike
            start = time.perf_counter()
            for i in range(args.block):
                gan.train_step(batches[i % len(batches)])
            times[name].append((time.perf_counter() - start) / args.block * 1e3)
    base = statistics.median(times["no penalty"])
    print(f"batch {args.batch}, {args.blocks} blocks of {args.block} steps")
    print("| variant | median ms/step | min ms/step | ratio to no penalty |")
    print("|---|---|---|---|")
    for name, ts in times.items():
        print(f"| {name} | {statistics.median(ts):.1f} | {min(ts):.1f} | "
              f"{statistics.median(ts) / base:.3f} |")


if __name__ == "__main__":
    main()
