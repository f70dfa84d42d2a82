#!/usr/bin/env python
"""Memory over a long run: does one GAN training step leak?

    python benchmarks/memory.py                      # 10,000 steps at batch 64
    python benchmarks/memory.py --steps 2000 --json memory.json
    python benchmarks/memory.py --backend cupy       # also CuPy's memory pool

Runs GAN.train_step on the classic MLP GAN (the model of gan_step.py) and samples
the process's resident memory (RSS, from /proc/self/statm; ``resource``'s peak
RSS where there is no /proc) every --every steps after a warm-up. With
--backend cupy it also samples the bytes CuPy's memory pool has handed out
(``used_bytes``) and holds (``total_bytes``).

What counts as growth. ``GAN.history`` keeps one small record (a dict of
floats) per step by design, so a run's RSS grows by that log: the report
gives the log's size (``sys.getsizeof`` of the records and their values)
and the growth of RSS beyond it. ``--drop-history`` empties the log after
every step, to look at the step alone. The verdict "flat" means that the RSS
beyond the log, as a straight line fitted through the samples, grows by
less than --tolerance-mib over the whole run (default 1 MiB: well below one
step's temporaries, about 3 MiB at batch 64, so a leak of any one array per
step, or even per 100 steps, fails it).

Threads: default 1 (BLAS), so that the run takes a few
minutes even on a busy machine; memory does not depend on the thread count.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

SCRIPT = "memory.py"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=10_000, help="measured steps (default 10000)")
    p.add_argument("--warmup", type=int, default=200,
                   help="steps before the first sample: allocator pools settle (default 200)")
    p.add_argument("--every", type=int, default=100, help="sample every N steps (default 100)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--backend", choices=("numpy", "cupy"), default="numpy")
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    p.add_argument("--tolerance-mib", type=float, default=1.0,
                   help="largest fitted growth beyond the history log called flat (default 1)")
    p.add_argument("--drop-history", action="store_true",
                   help="empty GAN.history after every step (isolates the step itself)")
    p.add_argument("--json", metavar="OUT", help="also write the samples to this JSON file")
    args = p.parse_args(argv)
    if args.steps < 1 or args.every < 1 or args.warmup < 0:
        p.error("--steps and --every must be >= 1, --warmup >= 0")
    return args


def rss_bytes():
    """Resident set size now (Linux), else the peak so far (resource, other Unix)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def history_bytes(history):
    """Bytes held by the history's records: each dict, its keys' slots and its values."""
    total = sys.getsizeof(history.records)
    for record in history.records:
        total += sys.getsizeof(record) + sum(sys.getsizeof(v) for v in record.values())
    return total


def slope(xs, ys):
    """Least-squares slope of ys against xs."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0


def main(argv=None):
    args = parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _threads import set_threads

    set_threads(args.threads)
    import numpy as np

    import _common as C  # imports NumPy and minigan: after set_threads

    pool = None
    if args.backend == "cupy":
        cp = C.import_cupy_or_exit(SCRIPT)
        pool = cp.get_default_memory_pool()
        to_device = cp.asarray
    else:
        to_device = np.asarray

    gan = C.minigan_gan(args.backend, seed=0)
    real = to_device(C.real_batch(args.batch, seed=1))
    for _ in range(args.warmup):
        gan.train_step(real)

    samples = []
    t0 = time.perf_counter()

    def sample(step):
        s = {"step": step, "rss": rss_bytes(), "history": history_bytes(gan.history)}
        if pool is not None:
            s["pool_used"] = pool.used_bytes()
            s["pool_total"] = pool.total_bytes()
        samples.append(s)

    sample(0)
    for step in range(1, args.steps + 1):
        gan.train_step(real)
        if args.drop_history:
            gan.history.records.clear()
        if step % args.every == 0 or step == args.steps:
            sample(step)
    elapsed = time.perf_counter() - t0

    mib = 1024.0 ** 2
    first, last = samples[0], samples[-1]
    steps = [s["step"] for s in samples]
    beyond = [s["rss"] - s["history"] for s in samples]
    fitted = slope(steps, beyond) * args.steps  # growth over the run, beyond the log
    report = {
        "steps": args.steps, "batch": args.batch, "backend": args.backend,
        "threads": args.threads, "seconds": elapsed, "load_average": C.loadavg(),
        "rss_first_mib": first["rss"] / mib, "rss_last_mib": last["rss"] / mib,
        "rss_min_mib": min(s["rss"] for s in samples) / mib,
        "rss_max_mib": max(s["rss"] for s in samples) / mib,
        "history_mib": (last["history"] - first["history"]) / mib,
        "history_bytes_per_step": (last["history"] - first["history"]) / args.steps,
        "growth_beyond_history_mib": (beyond[-1] - beyond[0]) / mib,
        "fitted_growth_beyond_history_mib": fitted / mib,
    }
    report["flat"] = abs(report["fitted_growth_beyond_history_mib"]) < args.tolerance_mib
    if pool is not None:
        report["pool_used_first_mib"] = first["pool_used"] / mib
        report["pool_used_last_mib"] = last["pool_used"] / mib
        report["pool_used_max_mib"] = max(s["pool_used"] for s in samples) / mib
        report["pool_total_max_mib"] = max(s["pool_total"] for s in samples) / mib
        pool_growth = slope(steps, [s["pool_used"] for s in samples]) * args.steps / mib
        report["pool_fitted_growth_mib"] = pool_growth
        report["flat"] = report["flat"] and abs(pool_growth) < args.tolerance_mib

    print(f"# {args.steps} steps of GAN.train_step at batch {args.batch} on {args.backend} "
          f"({args.threads} thread(s)), {elapsed:.0f} s, load average {report['load_average']}")
    print(f"resident memory: {report['rss_first_mib']:.1f} MiB after {args.warmup} warm-up steps, "
          f"{report['rss_last_mib']:.1f} MiB at the end (min {report['rss_min_mib']:.1f}, "
          f"max {report['rss_max_mib']:.1f})")
    if args.drop_history:
        print("GAN.history: emptied after every step (--drop-history)")
    else:
        print(f"GAN.history log: {report['history_mib']:.2f} MiB "
              f"({report['history_bytes_per_step']:.0f} bytes per step, kept by design)")
    print(f"growth beyond the log: {report['growth_beyond_history_mib']:+.2f} MiB end to end, "
          f"{report['fitted_growth_beyond_history_mib']:+.2f} MiB fitted over the run")
    if pool is not None:
        print(f"CuPy pool, used: {report['pool_used_first_mib']:.1f} -> "
              f"{report['pool_used_last_mib']:.1f} MiB (max {report['pool_used_max_mib']:.1f}; "
              f"held max {report['pool_total_max_mib']:.1f}), fitted growth "
              f"{report['pool_fitted_growth_mib']:+.2f} MiB")
    print("verdict: " + ("flat" if report["flat"] else
                         f"GROWS (more than {args.tolerance_mib} MiB beyond the history log)"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"report": report, "samples": samples, "args": vars(args)}, f, indent=2)
        print(f"# wrote {args.json}")
    return 0 if report["flat"] else 1


if __name__ == "__main__":
    sys.exit(main())
