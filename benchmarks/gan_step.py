#!/usr/bin/env python
"""Time one full training step of a GAN: minigan against PyTorch.

    python benchmarks/gan_step.py                         # CPU, batch 64, 128, 256
    python benchmarks/gan_step.py --arch dcgan            # the MNIST DCGAN
    python benchmarks/gan_step.py --json results.json
    python benchmarks/gan_step.py --backend cupy          # GPU: adds batch 1024, 4096

``--arch mlp`` (the default) is the classic MLP GAN, ``--arch dcgan`` the DCGAN
of Radford et al. 2016 at MNIST size (``_common.DCGAN_CONFIG``: transposed
convolutions and batch norm in G, strided convolutions in D, built by
minigan.models' DCGAN builders). The step is GAN.train_step: noise, G forward,
D step on the real and the fake batch (BCE on logits, Adam 2e-4, betas (0.5,
0.999)), then the G step (non-saturating loss) through the updated D. The real
batch is MNIST-shaped random data in [-1, 1] (the time does not depend on the
pixel values).

Where PyTorch is installed, the identical step in PyTorch eager runs in the
same process on the same weights (``_common.torch_copy`` builds the same
layers in torch.nn; see ``_common.torch_step_fn`` for exactly what the step
does), and the two are timed INTERLEAVED: blocks of steps of one,
then the other, alternating which goes first, so that load from other
processes hits both alike. Each block starts with one untimed step (the other
library's idle threads and caches are gone by then). The reported time is the
median over all timed steps; ratio = minigan / PyTorch (below 1: minigan is
faster). "CPU ratio" is the same ratio of the median CPU time per step (the
process's, all its threads together): with --threads 1 on a busy machine it
shows what each step costs without the time the process spent waiting for a
core (with more threads it also counts BLAS threads spinning). Before
timing, one step of each from the same z is compared, to show that the two
compute the same thing.

Threads: ``--threads`` (default: the cores this process may use) goes to
OpenBLAS/MKL/OpenMP through OPENBLAS_NUM_THREADS, MKL_NUM_THREADS and
OMP_NUM_THREADS (set before NumPy is imported, which is the only time BLAS
reads them) and to torch.set_num_threads. With --arch dcgan minigan then
uses them as its training command does: the convolutions cut each layer into
chunks of samples and run them on that many threads of their own, one BLAS
thread each (``minigan._threads.share_threads``). With threadpoolctl installed
the script reports what the loaded BLAS libraries actually use.

GFLOP/s counts only the matrix products the maths needs (``_common.step_flops``
over ``_common.layer_macs``: for a convolution, one kernel dot product per
output value), divided by the median step time; "% GEMM" is that rate as a
share of the machine's large-matrix float32 GEMM rate measured here (an
n x n x n product, n = --gemm-size): the share of the step that the products
would take at that rate.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

SCRIPT = "gan_step.py"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", choices=("mlp", "dcgan"), default="mlp",
                   help="the classic MLP GAN (default) or the MNIST DCGAN")
    p.add_argument("--g-dense", type=int, nargs="*", default=None, metavar="W",
                   help="--arch dcgan: widths of hidden Dense layers in G before its projection "
                        "(default: the preset's, --g-dense alone: none), as the training "
                        "command's --g-dense")
    p.add_argument("--batch-sizes", default=None,
                   help="comma-separated (default 64,128,256; with --backend cupy also 1024,4096)")
    p.add_argument("--steps", type=int, default=100,
                   help="timed steps per library and batch size (default 100)")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first (default 10)")
    p.add_argument("--block", type=int, default=10,
                   help="timed steps per interleaved block (default 10)")
    p.add_argument("--backend", choices=("numpy", "cupy"), default="numpy")
    p.add_argument("--threads", type=int, default=None,
                   help="BLAS/OpenMP threads for both libraries (default: the cores available)")
    p.add_argument("--torch-variants", default="frozen",
                   help="comma-separated PyTorch steps to time: 'frozen' (the reference: D's "
                        "requires_grad off in the G step) and/or 'unfrozen' (the DCGAN example "
                        "as written, which also computes D's unused weight gradients)")
    p.add_argument("--no-torch", action="store_true", help="time minigan alone")
    p.add_argument("--host-noise", action="store_true",
                   help="with --backend cupy: draw z on the host and copy it over, as "
                        "GAN's default does (default here: on the GPU, like torch.randn on "
                        "CUDA in the PyTorch step)")
    p.add_argument("--gemm-size", type=int, default=None,
                   help="n of the n x n x n GEMM-rate probe (default 2048 CPU, 8192 GPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="OUT", help="also write every number to this JSON file")
    args = p.parse_args(argv)
    if args.g_dense is not None and args.arch != "dcgan":
        p.error("--g-dense is for --arch dcgan")
    if args.g_dense is not None and any(w < 1 for w in args.g_dense):
        p.error(f"--g-dense widths must be >= 1, got {args.g_dense}")
    if args.steps < 1 or args.block < 1 or args.warmup < 0:
        p.error("--steps and --block must be >= 1 and --warmup >= 0")
    default = "64,128,256" + (",1024,4096" if args.backend == "cupy" else "")
    args.batch_sizes = [int(b) for b in (args.batch_sizes or default).split(",") if b]
    args.torch_variants = [v.strip() for v in args.torch_variants.split(",") if v.strip()]
    for v in args.torch_variants:
        if v not in ("frozen", "unfrozen"):
            p.error(f"unknown --torch-variants entry {v!r}: use frozen and/or unfrozen")
    return args


def summary(times):
    """Median and spread of per-step times, in milliseconds."""
    ms = sorted(t * 1e3 for t in times)
    q = statistics.quantiles(ms, n=10) if len(ms) >= 2 else [ms[0]] * 9
    return {"median_ms": statistics.median(ms), "p10_ms": q[0], "p90_ms": q[-1],
            "min_ms": ms[0], "n": len(ms)}


def check_identical(np, torch, gan, torch_step, batch, real_np, device, to_device):
    """One step of each on the same z: (|d_loss diff|, |g_loss diff|), relative."""
    z = np.random.default_rng(12345).standard_normal((batch, gan.latent_dim), dtype=np.float32)
    fake = gan.generate(to_device(z))
    d = gan.discriminator_step(to_device(real_np), fake)
    g = gan.generator_step(fake)
    t = torch_step(torch.from_numpy(z).to(device))
    rel = lambda a, b: abs(a - b) / max(abs(b), 1e-12)  # noqa: E731
    return {"d_loss_minigan": d["d_loss"], "d_loss_torch": t["d_loss"],
            "g_loss_minigan": g["g_loss"], "g_loss_torch": t["g_loss"],
            "d_loss_rel_diff": rel(d["d_loss"], t["d_loss"]),
            "g_loss_rel_diff": rel(g["g_loss"], t["g_loss"])}


def main(argv=None):
    args = parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _threads import default_threads, set_threads

    threads = args.threads or default_threads()
    if "numpy" in sys.modules:
        print("note: NumPy was imported before the thread variables were set; "
              "they may not apply", file=sys.stderr)
    set_threads(threads)
    import numpy as np

    import _common as C  # imports NumPy and minigan: after set_threads

    import minigan as mg

    torch = None if args.no_torch else C.import_torch()
    device = "cpu"
    if args.backend == "cupy":
        cp = C.import_cupy_or_exit(SCRIPT)
        mg.use("cupy")
        to_device = cp.asarray

        def sync():
            cp.cuda.get_current_stream().synchronize()
        if torch is not None and not torch.cuda.is_available():
            print("PyTorch has no CUDA here: minigan is timed alone.", file=sys.stderr)
            torch = None
        device = "cuda"
        xp = cp
    else:
        to_device = np.asarray
        xp = np

        def sync():
            pass
    if torch is not None:
        torch.set_num_threads(threads)
        if device == "cuda":
            # strict float32 on both sides: no TF32 tensor-core shortcuts
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False

            def torch_sync():
                torch.cuda.synchronize()
        else:
            def torch_sync():
                pass

    info = C.machine_info(threads, torch)
    info["backend"] = args.backend
    info["arch"] = args.arch
    if args.arch == "dcgan":
        info["g_dense"] = list(C.dcgan_config(args.g_dense)["g_dense"])
    if args.backend == "cupy":
        dev = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
        info["gpu"] = dev["name"].decode() if isinstance(dev["name"], bytes) else dev["name"]
        info["cupy"] = cp.__version__
    print(f"# {args.arch} GAN step; {info['cpu']}, {info['cores']} cores, {threads} threads; "
          f"NumPy {info['numpy']} ({info['numpy_blas']})" + (f"; PyTorch {info['torch']}" if torch else "; no PyTorch"))
    if info.get("g_dense"):
        print(f"# G's hidden Dense layers (g_dense): {info['g_dense']}")
    if info.get("gpu"):
        noise = "host (copied over)" if args.host_noise else "drawn on the GPU"
        print(f"# GPU: {info['gpu']}, CuPy {info['cupy']}; minigan's noise: {noise}")
    if info["blas_threads"]:
        print(f"# BLAS threads in use: {info['blas_threads']}")

    n_gemm = args.gemm_size or (8192 if args.backend == "cupy" else 2048)
    peak = C.gemm_rate(xp, n_gemm, sync=sync)
    torch_peak = C.torch_gemm_rate(torch, n_gemm, device=device) if torch else None
    print(f"# float32 GEMM {n_gemm}^3: {peak:.1f} GFLOP/s ({args.backend})"
          + (f", {torch_peak:.1f} GFLOP/s (PyTorch)" if torch_peak else "")
          + f"; load average {C.loadavg()}")
    shared = C.share_threads(args.arch, threads, args.backend)  # after the GEMM rate: BLAS's own
    if shared:
        print(shared)

    results = []
    header = (f"{'batch':>6} {'minigan ms':>11} " + "".join(
        f"{'PyTorch ms' if v == 'frozen' else 'PT unfrozen':>12} " for v in args.torch_variants
        if torch) + (f"{'ratio':>6} {'CPU ratio':>9} " if torch else "")
        + f"{'GFLOP/s':>8} {'% GEMM':>7}  load (1, 5, 15 min)")
    print(header)
    for batch in args.batch_sizes:
        # the PyTorch copy and the FLOP count are read off this model, g_dense included
        gan = C.build_gan(args.arch, args.backend, seed=args.seed, g_dense=args.g_dense,
                          device_noise=args.backend == "cupy" and not args.host_noise)
        real_np = C.real_batch(batch, seed=args.seed + 7)
        real = to_device(real_np)

        def mg_step(gan=gan, real=real):
            gan.train_step(real)
            sync()

        runners = {"minigan": mg_step}
        check = None
        if torch is not None:
            real_t = torch.from_numpy(real_np).to(device)
            for variant in args.torch_variants:
                G_t, D_t = C.torch_models(torch, gan, device)
                step_t = C.torch_step_fn(torch, G_t, D_t, batch, real_t, device,
                                         freeze_d=(variant == "frozen"),
                                         latent=gan.latent_dim)
                if check is None:  # same weights, same z: the same numbers
                    check = check_identical(np, torch, gan, step_t, batch, real_np, device,
                                            to_device)

                def t_step(step_t=step_t):
                    step_t()
                    torch_sync()
                runners[f"torch_{variant}"] = t_step

        load_before = C.loadavg()
        for run in runners.values():
            for _ in range(args.warmup):
                run()
        times = {k: [] for k in runners}
        cpu = {k: [] for k in runners}
        names = list(runners)
        done = 0
        rnd = 0
        while done < args.steps:
            k = min(args.block, args.steps - done)
            order = names if rnd % 2 == 0 else names[::-1]
            for name in order:
                run = runners[name]
                run()  # untimed: the other library's threads go idle, caches refill
                for _ in range(k):
                    t, c = time.perf_counter(), time.process_time()
                    run()
                    times[name].append(time.perf_counter() - t)
                    cpu[name].append(time.process_time() - c)
            done += k
            rnd += 1
        load_after = C.loadavg()

        flops = C.step_flops(batch, *C.gan_macs(gan, real_np.shape[1:]))
        row = {"batch": batch, "arch": args.arch, "gemm_gflop_per_step": flops / 1e9,
               "load_before": load_before, "load_after": load_after}
        for name, ts in times.items():
            row[name] = summary(ts)
            row[name]["cpu_median_ms"] = statistics.median(cpu[name]) * 1e3
        m = row["minigan"]["median_ms"]
        row["minigan_gflops"] = flops / (m / 1e3) / 1e9
        row["minigan_pct_of_gemm_peak"] = 100.0 * row["minigan_gflops"] / peak
        line = f"{batch:>6} {m:>11.1f} "
        if torch is not None:
            for v in args.torch_variants:
                line += f"{row['torch_' + v]['median_ms']:>12.1f} "
            ref = "torch_frozen" if "frozen" in args.torch_variants else f"torch_{args.torch_variants[0]}"
            row["ratio"] = m / row[ref]["median_ms"]
            row["ratio_against"] = ref
            row["cpu_ratio"] = row["minigan"]["cpu_median_ms"] / row[ref]["cpu_median_ms"]
            row["identical_step_check"] = check
            line += f"{row['ratio']:>6.2f} {row['cpu_ratio']:>9.2f} "
        line += (f"{row['minigan_gflops']:>8.1f} {row['minigan_pct_of_gemm_peak']:>6.0f}%  "
                 f"{load_before} -> {load_after}")
        print(line, flush=True)
        results.append(row)

    if torch is not None and results and results[0].get("identical_step_check"):
        worst = max(max(r["identical_step_check"]["d_loss_rel_diff"],
                        r["identical_step_check"]["g_loss_rel_diff"]) for r in results)
        print(f"# identical-step check (same weights and z, one step each): losses agree to "
              f"{worst:.1e} relative")
    if args.json:
        out = {"machine": info, "gemm_size": n_gemm, "gemm_gflops": peak,
               "torch_gemm_gflops": torch_peak, "args": vars(args), "results": results,
               "command": " ".join([os.path.basename(sys.executable)] + sys.argv)}
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
        print(f"# wrote {args.json}")
    return results


if __name__ == "__main__":
    main()
