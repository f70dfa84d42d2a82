"""Sample quality of the plain command-line run on the mode-collapse benchmarks.

Runs ``python -m minigan train --dataset D --seed S`` (the CLI defaults, nothing
tuned here) for ring8 and grid25 over 10 seeds each, two runs at a time with one
BLAS thread each, and prints the table of VEEGAN (Srivastava et al. 2017) and
PacGAN (Lin et al. 2018) with minigan's rows added: mean +- standard error over
the seeds of

* modes captured (a mode is captured if it is the nearest centre of at least one
  high-quality sample),
* the high-quality fraction (samples within 3 std of their nearest centre),
* the reverse KL between the histogram of high-quality samples over the modes
  and the uniform distribution,

all computed here again from each run's ``samples.npy`` (2500 samples, the
protocol) with ``minigan.metrics.mode_coverage``, and checked against the
run's own ``metrics.json``. Each run's wall time and CPU time are reported.

    python benchmarks/quality.py                       # 2 x 10 runs, two at a time
    python benchmarks/quality.py --seeds 3 --datasets ring8
    python benchmarks/quality.py --mnist-run runs/mnist --mnist-run runs/mnist-cond
    python benchmarks/quality.py --collect runs/quality  # only re-read finished runs

Runs go to ``--out`` (default ``runs/quality``); ``quality.json`` there holds
every number. Extra arguments after ``--`` are passed to every ``train`` call
(e.g. ``-- --pack 1`` to show what packing buys).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

# Published rows (means over runs), as in the issue: PacGAN paper tables 2/3 and VEEGAN's.
PUBLISHED = [
    ("GAN (PacGAN table)", (6.3, 98.2, 0.45), (17.3, 94.8, 0.70)),
    ("VEEGAN (VEEGAN table)", (8, 52.9, None), (24.6, 40.0, None)),
    ("PacGAN2", (7.9, 95.6, 0.07), (23.8, 91.3, 0.13)),
    ("PacGAN4", (7.8, 95.9, 0.07), (24.8, 93.6, 0.04)),
]
GOALS = {"ring8": (8.0, 0.98, 0.02), "grid25": (25.0, 0.97, 0.02)}
TIME_LIMIT_S = 120.0


def run_one(dataset, seed, out_dir, extra):
    """One CLI training run in a child process (one BLAS thread); returns its record."""
    run_dir = os.path.join(out_dir, f"{dataset}-seed{seed}")
    cmd = [sys.executable, "-m", "minigan", "train", "--dataset", dataset, "--seed", str(seed),
           "--out", run_dir, "--overwrite", "--quiet", *extra]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        # wait4 gives this child's own CPU time, even with other runs in parallel.
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    record = {"dataset": dataset, "seed": seed, "run_dir": run_dir, "returncode": proc.returncode,
              "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime}
    if proc.returncode != 0:
        record["error"] = stderr.strip().splitlines()[-1] if stderr.strip() else "failed"
        return record
    record.update(score(dataset, run_dir))
    return record


def score(dataset, run_dir):
    """Mode coverage recomputed from the run's samples.npy, and the run's own numbers."""
    from minigan.data import toy_dataset
    from minigan.metrics import mode_coverage

    ds = toy_dataset(dataset)
    samples = np.load(os.path.join(run_dir, "samples.npy"), allow_pickle=False)
    cov = mode_coverage(samples, ds.centres, ds.std)
    with open(os.path.join(run_dir, "metrics.json")) as f:
        own = json.load(f)
    own_cov = own.get("mode_coverage", {})
    if own_cov and (own_cov["modes_captured"] != cov["modes_captured"]
                    or not math.isclose(own_cov["high_quality_fraction"],
                                        cov["high_quality_fraction"], abs_tol=1e-12)):
        raise RuntimeError(f"{run_dir}: metrics.json disagrees with its samples.npy "
                           f"({own_cov} vs {cov})")
    return {"n_samples": int(samples.shape[0]), "modes": cov["modes_captured"],
            "hq": cov["high_quality_fraction"], "reverse_kl": cov["reverse_kl"],
            "train_s": own.get("train_seconds"), "total_s": own.get("total_seconds")}


def mean_se(values):
    v = np.asarray(values, dtype=np.float64)
    se = v.std(ddof=1) / math.sqrt(len(v)) if len(v) > 1 else float("nan")
    return float(v.mean()), float(se)


def summarise(records):
    out = {}
    for dataset in sorted({r["dataset"] for r in records}):
        rs = [r for r in records if r["dataset"] == dataset]
        ok = [r for r in rs if r["returncode"] == 0]
        s = {"runs": len(rs), "failed": len(rs) - len(ok)}
        if ok:
            for key in ("modes", "hq", "reverse_kl", "wall_s", "cpu_s", "total_s"):
                vals = [r[key] for r in ok if r.get(key) is not None]
                if vals:
                    s[key] = mean_se(vals)
            s["max_wall_s"] = max(r["wall_s"] for r in ok)
            s["max_cpu_s"] = max(r["cpu_s"] for r in ok)
            s["min_modes"] = min(r["modes"] for r in ok)
            s["min_hq"] = min(r["hq"] for r in ok)
            s["max_reverse_kl"] = max(r["reverse_kl"] for r in ok)
        out[dataset] = s
    return out


def _fmt(x, se, pct=False, digits=2):
    if pct:
        return f"{100 * x:.1f}% ± {100 * se:.1f}"
    return f"{x:.{digits}f} ± {se:.{digits}f}"


def table(summary, label):
    lines = ["| method | ring modes | ring HQ | ring rev-KL | grid modes | grid HQ | grid rev-KL |",
             "|---|---|---|---|---|---|---|"]
    for name, ring, grid in PUBLISHED:
        cells = []
        for vals in (ring, grid):
            modes, hq, kl = vals
            cells += [f"{modes:g}", f"{hq:g}%", "—" if kl is None else f"{kl:g}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    cells = []
    for dataset in ("ring8", "grid25"):
        s = summary.get(dataset)
        if not s or "modes" not in s:
            cells += ["—"] * 3
            continue
        cells += [_fmt(*s["modes"]), _fmt(*s["hq"], pct=True), _fmt(*s["reverse_kl"], digits=4)]
    lines.append(f"| **{label}** | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goal_lines(summary):
    lines = []
    for dataset, (modes, hq, kl) in GOALS.items():
        s = summary.get(dataset)
        if not s or "modes" not in s:
            continue
        checks = [s["modes"][0] >= modes, s["hq"][0] >= hq, s["reverse_kl"][0] <= kl,
                  s["max_wall_s"] <= TIME_LIMIT_S, s["failed"] == 0]
        lines.append(
            f"{dataset}: {s['runs']} runs, {s['failed']} failed; modes {s['modes'][0]:.2f} "
            f"(min {s['min_modes']}), HQ {100 * s['hq'][0]:.2f}% (min {100 * s['min_hq']:.1f}%), "
            f"rev-KL {s['reverse_kl'][0]:.4f} (max {s['max_reverse_kl']:.4f}); wall "
            f"{s['wall_s'][0]:.1f} s (max {s['max_wall_s']:.1f}), CPU {s['cpu_s'][0]:.1f} s "
            f"(max {s['max_cpu_s']:.1f}) per run -> goal "
            f"{'met' if all(checks) else 'NOT met'} (>= {modes:g} modes, >= {100 * hq:g}% HQ, "
            f"rev-KL <= {kl:g}, <= {TIME_LIMIT_S:g} s)")
    return lines


def mnist_scores(run_dir):
    """Classifier scores a CLI image run wrote to metrics.json, recomputed where possible."""
    with open(os.path.join(run_dir, "metrics.json")) as f:
        m = json.load(f)
    keys = ("classes_covered", "kl_to_uniform", "inception_score", "frechet_distance")
    found = {}
    for k, v in m.items():
        if isinstance(v, dict):
            found.update({kk: vv for kk, vv in v.items() if kk in keys})
        elif k in keys:
            found[k] = v
    return {"run_dir": run_dir, "dataset": m.get("dataset"), "steps": m.get("steps"),
            "conditional": "conditional_accuracy" in m,
            "conditional_accuracy": m.get("conditional_accuracy"),
            "train_s": m.get("train_seconds"), **found, "headline": m.get("headline")}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["ring8", "grid25"],
                   choices=["ring8", "grid25"])
    p.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 per dataset")
    p.add_argument("--jobs", type=int, default=2, help="runs at a time (one BLAS thread each)")
    p.add_argument("--out", default=os.path.join("runs", "quality"))
    p.add_argument("--label", default=None, help="the row's name in the table")
    p.add_argument("--collect", action="store_true",
                   help="do not train: score the runs already in --out")
    p.add_argument("--mnist-run", action="append", default=[], metavar="DIR",
                   help="a finished 'train --dataset mnist' run directory (repeatable)")
    args = p.parse_args(argv)
    if args.seeds < 1 or args.jobs < 1:
        p.error("--seeds and --jobs must be >= 1")
    os.makedirs(args.out, exist_ok=True)

    jobs = [(d, s) for d in args.datasets for s in range(args.seeds)]
    records = []
    t0 = time.perf_counter()
    if args.collect:
        for d, s in jobs:
            run_dir = os.path.join(args.out, f"{d}-seed{s}")
            rec = {"dataset": d, "seed": s, "run_dir": run_dir, "returncode": 0,
                   "wall_s": float("nan"), "cpu_s": float("nan")}
            rec.update(score(d, run_dir))
            rec["wall_s"] = rec.get("total_s") or float("nan")
            records.append(rec)
    else:
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            futures = {pool.submit(run_one, d, s, args.out, extra): (d, s) for d, s in jobs}
            for fut in concurrent.futures.as_completed(futures):
                r = fut.result()
                records.append(r)
                if "error" in r:
                    print(f"  {r['dataset']} seed {r['seed']}: FAILED ({r['error']})", flush=True)
                else:
                    print(f"  {r['dataset']} seed {r['seed']}: {r['modes']} modes, "
                          f"HQ {100 * r['hq']:.1f}%, rev-KL {r['reverse_kl']:.4f}, "
                          f"{r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU", flush=True)
    records.sort(key=lambda r: (r["dataset"], r["seed"]))
    summary = summarise(records)
    label = args.label or ("minigan (CLI defaults" + (f", {' '.join(extra)}" if extra else "")
                           + f", {args.seeds} seeds)")
    print()
    print(table(summary, label))
    print()
    for line in goal_lines(summary):
        print(line)
    mnist = [mnist_scores(d) for d in args.mnist_run]
    for m in mnist:
        print(f"{m['dataset']} run {m['run_dir']}: {m.get('headline') or m}")
    result = {"label": label, "extra_args": extra, "records": records, "summary": summary,
              "mnist": mnist, "elapsed_s": time.perf_counter() - t0,
              "machine": {"python": platform.python_version(), "platform": platform.platform(),
                          "cpus": os.cpu_count(), "jobs": args.jobs}}
    path = os.path.join(args.out, "quality.json")
    fd, tmp = tempfile.mkstemp(dir=args.out, prefix=".quality-", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(result, f, indent=1, default=float)
    os.replace(tmp, path)
    print(f"\nAll numbers in {path}")
    return 0 if all(r["returncode"] == 0 for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
