#!/usr/bin/env python
"""Where one training step's time goes, and how much of it PyTorch leaves for Adam.

    python benchmarks/breakdown.py                  # batch 64, 128, 256; 2 threads
    python benchmarks/breakdown.py --no-torch --batch-sizes 64

The same classic MLP GAN step as ``gan_step.py``, taken apart on the CPU:

1. minigan's whole step (``GAN.train_step``);
2. its optimiser updates (both Adam steps) and ``zero_grad`` calls, timed inside
   the whole step;
3. the step with those switched off: forward and backward passes only (the
   matrix products, activations, losses). The weights then stay fixed, which
   does not change the work of a pass;
4. with PyTorch installed: PyTorch's whole step and its two Adam steps alone
   (2 threads: every elementwise operation is split over the cores).

``budget`` = PyTorch's whole step minus (3): the time minigan's two Adam steps
and its gradient clearing may take for the two libraries to tie. The
measurements run one after the other, not interleaved: for the ratio itself,
under load, use ``gan_step.py``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-sizes", default="64,128,256", help="comma-separated (default 64,128,256)")
    p.add_argument("--steps", type=int, default=40, help="timed steps per measurement (default 40)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (default 5)")
    p.add_argument("--threads", type=int, default=None,
                   help="BLAS/OpenMP threads for both libraries (default: the cores available)")
    p.add_argument("--no-torch", action="store_true", help="minigan alone")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        p.error("--steps must be >= 1 and --warmup >= 0")
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b]
    return args


def median_ms(fn, steps, warmup):
    """Median wall time of ``fn()`` in milliseconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


class PhaseTimer:
    """Adds up the time spent in chosen bound methods, per label, per call of ``run``."""

    def __init__(self):
        self.total = {}

    def wrap(self, obj, method, label):
        inner = getattr(obj, method)

        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.total[label] = self.total.get(label, 0.0) + time.perf_counter() - t
        setattr(obj, method, timed)  # an instance attribute: the class stays as it was

    def per_call_ms(self, fn, steps, warmup):
        """Median of fn() and the mean per call of each wrapped label (ms)."""
        for _ in range(warmup):
            fn()
        self.total.clear()
        whole = median_ms(fn, steps, 0)
        return whole, {k: 1e3 * v / steps for k, v in self.total.items()}


def minigan_breakdown(C, batch, args):
    import numpy as np

    real = np.random.default_rng(args.seed + 7).uniform(-1, 1, (batch, C.D_SIZES[0]))
    real = real.astype(np.float32)
    gan = C.minigan_gan("numpy", seed=args.seed)
    timer = PhaseTimer()
    for opt in (gan.d_optimizer, gan.g_optimizer):
        timer.wrap(opt, "step", "adam")
    for net in (gan.D, gan.G):
        timer.wrap(net, "zero_grad", "zero_grad")
    whole, phases = timer.per_call_ms(lambda: gan.train_step(real), args.steps, args.warmup)

    for opt in (gan.d_optimizer, gan.g_optimizer):
        opt.step = lambda: None
    for net in (gan.D, gan.G):
        net.zero_grad = lambda: None
    passes = median_ms(lambda: gan.train_step(real), args.steps, args.warmup)
    return gan, real, {"whole": whole, "adam": phases.get("adam", 0.0),
                       "zero_grad": phases.get("zero_grad", 0.0), "passes_only": passes}


def torch_breakdown(C, torch, gan, real, args):
    G, D = C.torch_models(torch, gan)
    step = C.torch_step_fn(torch, G, D, len(real), torch.from_numpy(real))
    whole = median_ms(step, args.steps, args.warmup)
    # Adam alone on gradients of the right shapes: what PyTorch's step spends updating
    params = list(G.parameters()) + list(D.parameters())
    for p in params:
        p.grad = torch.randn_like(p)
    opt_g = torch.optim.Adam(G.parameters(), lr=C.LR, betas=C.BETAS)
    opt_d = torch.optim.Adam(D.parameters(), lr=C.LR, betas=C.BETAS)
    adam = median_ms(lambda: (opt_d.step(), opt_g.step()), args.steps, args.warmup)
    return {"whole": whole, "adam": adam}


def main(argv=None):
    args = parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _threads import default_threads, set_threads

    threads = args.threads or default_threads()
    set_threads(threads)
    import _common as C  # imports NumPy: after set_threads

    torch = None if args.no_torch else C.import_torch()
    if torch is not None:
        torch.set_num_threads(threads)
    info = C.machine_info(threads, torch)
    print(f"# {info['cpu']}, {info['cores']} cores, {threads} threads; NumPy {info['numpy']}"
          + (f"; PyTorch {info['torch']}" if torch else "; no PyTorch")
          + f"; load average {C.loadavg()}")
    print("# median ms per step; 'passes' = the step without Adam and zero_grad")
    head = f"{'batch':>5} {'minigan':>8} {'Adam':>6} {'zero_grad':>9} {'passes':>7}"
    if torch is not None:
        head += f" {'PyTorch':>8} {'PT Adam':>8} {'budget':>7}"
    print(head)
    for batch in args.batch_sizes:
        gan, real, m = minigan_breakdown(C, batch, args)
        line = (f"{batch:>5} {m['whole']:>8.1f} {m['adam']:>6.1f} {m['zero_grad']:>9.1f} "
                f"{m['passes_only']:>7.1f}")
        if torch is not None:
            t = torch_breakdown(C, torch, gan, real, args)
            line += f" {t['whole']:>8.1f} {t['adam']:>8.1f} {t['whole'] - m['passes_only']:>7.1f}"
        print(line, flush=True)
    print(f"# load average {C.loadavg()}")


if __name__ == "__main__":
    main()
