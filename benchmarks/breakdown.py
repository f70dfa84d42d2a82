#!/usr/bin/env python
"""Where one training step's time goes, and how much of it PyTorch leaves for Adam.

    python benchmarks/breakdown.py                  # batch 64, 128, 256; 2 threads
    python benchmarks/breakdown.py --no-torch --batch-sizes 64
    python benchmarks/breakdown.py --arch dcgan --threads 1   # by layer type

The same classic MLP GAN step as ``gan_step.py``, on the CPU, timed step by
step, with the time spent in the optimiser's ``step()`` (both Adam updates)
and in ``zero_grad`` measured inside each step:

- minigan: the whole step (``GAN.train_step``), Adam, zero_grad, and the
  rest (whole - Adam - zero_grad: noise, forward and backward passes, losses);
- PyTorch (where installed): the whole step, Adam (timed inside the step with
  optimiser hooks; 2 threads split every large elementwise operation over the
  cores), and the rest; its ``zero_grad(set_to_none=True)`` costs nothing.

Each column is the median over the timed steps of that quantity.
``budget`` = PyTorch's whole step minus minigan's rest: what minigan's two Adam
updates and its gradient clearing may take for the two libraries to tie.

With ``--arch dcgan`` (the MNIST DCGAN of ``gan_step.py --arch dcgan``) the
step is taken apart by layer type instead: for each library, the forward and
the backward time of every Dense, Conv2d, ConvTranspose2d, batch norm,
activation and reshape layer of G and D, summed by type over the whole step
(D runs three times: on the real batch, on the fake batch, and in the G step),
the optimisers' steps, minigan's zero_grad, and the rest (noise, losses,
Python between the layers). minigan's layers are timed by wrapping their
forward and backward; PyTorch's by module hooks (forward pre/post hooks and
full backward pre/post hooks; the hooks cost PyTorch a little, so its whole
step here is a little slower than in ``gan_step.py``). Each part is the
median over the timed steps, so the parts need not add up exactly.

The two libraries are timed one after the other, not interleaved, and there
is no identical-step check: for the ratio itself, and under load, use
``gan_step.py``.
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
    p.add_argument("--arch", choices=("mlp", "dcgan"), default="mlp",
                   help="the classic MLP GAN (default: Adam and the rest) or the MNIST "
                        "DCGAN (by layer type)")
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


class PhaseTimer:
    """Times chosen parts of a step, separately for every step.

    ``wrap(obj, "method", label)`` times each call of ``obj.method`` (an instance
    attribute is set: the class is not changed); ``start(label)``/``stop(label)``
    time anything else (PyTorch's optimiser hooks use them).
    """

    def __init__(self, labels):
        self.labels = list(labels)
        self.current = dict.fromkeys(self.labels, 0.0)
        self._started = {}

    def start(self, label):
        self._started[label] = time.perf_counter()

    def stop(self, label):
        self.current[label] += time.perf_counter() - self._started.pop(label)

    def wrap(self, obj, method, label):
        inner = getattr(obj, method)

        def timed(*args, **kwargs):
            self.start(label)
            try:
                return inner(*args, **kwargs)
            finally:
                self.stop(label)
        setattr(obj, method, timed)

    def measure(self, step, steps, warmup):
        """{"whole", each label, "rest"}: medians over ``steps`` timed calls of
        step(), in ms; rest = whole - the labelled parts, per step."""
        for _ in range(warmup):
            step()
        rows = []
        for _ in range(steps):
            self.current = dict.fromkeys(self.labels, 0.0)
            t = time.perf_counter()
            step()
            whole = time.perf_counter() - t
            rows.append({"whole": whole, **self.current,
                         "rest": whole - sum(self.current.values())})
        return {k: 1e3 * statistics.median(r[k] for r in rows) for k in rows[0]}


def minigan_breakdown(gan, real, args):
    """PhaseTimer.measure of ``gan.train_step(real)``, its optimisers' steps and
    its networks' zero_grad timed inside."""
    timer = PhaseTimer(["adam", "zero_grad"])
    for opt in (gan.d_optimizer, gan.g_optimizer):
        timer.wrap(opt, "step", "adam")
    for net in (gan.D, gan.G):
        timer.wrap(net, "zero_grad", "zero_grad")
    return timer.measure(lambda: gan.train_step(real), args.steps, args.warmup)


def torch_breakdown(C, torch, gan, real, args):
    """The PyTorch step on a copy of ``gan``'s weights; Adam timed by global optimiser
    hooks, removed again before returning."""
    G, D = C.torch_models(torch, gan)
    step = C.torch_step_fn(torch, G, D, len(real), torch.from_numpy(real))
    from torch.optim.optimizer import (register_optimizer_step_post_hook,
                                       register_optimizer_step_pre_hook)

    timer = PhaseTimer(["adam"])
    hooks = [register_optimizer_step_pre_hook(lambda *_: timer.start("adam")),
             register_optimizer_step_post_hook(lambda *_: timer.stop("adam"))]
    try:
        return timer.measure(step, args.steps, args.warmup)
    finally:
        for hook in hooks:
            hook.remove()


# ---------------------------------------------------------------- by layer type

#: the parts of a DCGAN step, in the order printed
KINDS = ("Dense", "Conv2d", "ConvTranspose2d", "batch norm", "activations", "reshapes")


def layer_kind(layer):
    """The row a minigan or torch.nn layer is counted in (by class name)."""
    name = type(layer).__name__
    if name in ("Dense", "Linear"):
        return "Dense"
    if name in ("Conv2d", "ConvTranspose2d"):
        return name
    if name.startswith("BatchNorm"):
        return "batch norm"
    if name in ("ReLU", "LeakyReLU", "Tanh", "Sigmoid"):
        return "activations"
    if name in ("Reshape", "Flatten", "Unflatten", "LabelPlanes", "Pack"):
        return "reshapes"
    raise TypeError(f"breakdown: no row for a {name} layer")


def layer_labels():
    labels = [f"{kind} {way}" for kind in KINDS for way in ("fwd", "bwd")]
    return labels + ["adam", "zero_grad"]


def minigan_layer_breakdown(gan, real, args):
    """PhaseTimer.measure of ``gan.train_step(real)`` with every leaf layer's forward
    and backward, the optimisers' steps and zero_grad timed inside."""
    timer = PhaseTimer(layer_labels())
    for net in (gan.G, gan.D):
        for layer in net.modules():
            if layer.children():
                continue  # a container: its leaves are timed
            kind = layer_kind(layer)
            timer.wrap(layer, "forward", f"{kind} fwd")
            timer.wrap(layer, "backward", f"{kind} bwd")
        timer.wrap(net, "zero_grad", "zero_grad")
    for opt in (gan.d_optimizer, gan.g_optimizer):
        timer.wrap(opt, "step", "adam")
    return timer.measure(lambda: gan.train_step(real), args.steps, args.warmup)


class SliceTimer:
    """Cuts a step into consecutive slices of time, each counted under a label.

    ``switch(label)`` ends the current slice and starts one under ``label``; what
    is not inside a labelled slice counts as "rest". Made for PyTorch's module
    hooks: autograd runs one node at a time on the CPU, so a backward hook that
    fires when a module's output gradient is ready starts that module's slice,
    and the slice runs until the next hook, whatever PyTorch does meanwhile
    (its input gradient, its weight gradients, adding them into .grad).
    """

    def __init__(self, labels):
        self.labels = list(labels) + ["rest"]
        self.current = dict.fromkeys(self.labels, 0.0)
        self.label, self.t0 = "rest", time.perf_counter()

    def switch(self, label):
        now = time.perf_counter()
        self.current[self.label] += now - self.t0
        self.label, self.t0 = label, now

    def measure(self, step, steps, warmup):
        """{"whole", each label, "rest"}: medians over ``steps`` timed calls of step(), in ms."""
        for _ in range(warmup):
            step()
        rows = []
        for _ in range(steps):
            self.current = dict.fromkeys(self.labels, 0.0)
            t = self.t0 = time.perf_counter()
            self.label = "rest"
            step()
            self.switch("rest")
            rows.append({"whole": time.perf_counter() - t, **self.current})
        return {k: 1e3 * statistics.median(r[k] for r in rows) for k in rows[0]}


def torch_layer_breakdown(C, torch, gan, real, args):
    """The PyTorch step on a copy of ``gan``'s weights, cut into slices by module hooks
    and global optimiser hooks (all removed again before returning).

    Forward: a module's pre-hook starts its slice, its post-hook returns to "rest".
    Backward: the full backward pre-hook starts the module's slice and its full
    backward hook returns to "rest", except where the module's input needs no
    gradient (G's first Linear, D's first convolution in the D step): there PyTorch
    calls that hook before the weight gradients are computed (it says so in a
    warning, silenced here), so the slice runs on until the next hook.
    """
    import warnings

    G, D = C.torch_models(torch, gan)
    step = C.torch_step_fn(torch, G, D, len(real), torch.from_numpy(real),
                           latent=gan.latent_dim)
    from torch.optim.optimizer import (register_optimizer_step_post_hook,
                                       register_optimizer_step_pre_hook)

    timer = SliceTimer(layer_labels())

    def after_backward(module, grad_input, grad_output):
        if any(g is not None for g in grad_input):
            timer.switch("rest")

    hooks = [register_optimizer_step_pre_hook(lambda *_: timer.switch("adam")),
             register_optimizer_step_post_hook(lambda *_: timer.switch("rest"))]
    for net in (G, D):
        for module in net.modules():
            if list(module.children()):
                continue
            kind = layer_kind(module)
            fwd, bwd = f"{kind} fwd", f"{kind} bwd"
            hooks += [
                module.register_forward_pre_hook(lambda *_, label=fwd: timer.switch(label)),
                module.register_forward_hook(lambda *_: timer.switch("rest")),
                module.register_full_backward_pre_hook(
                    lambda *_, label=bwd: timer.switch(label)),
                module.register_full_backward_hook(after_backward)]
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            return timer.measure(step, args.steps, args.warmup)
    finally:
        for hook in hooks:
            hook.remove()


def print_layer_breakdown(batch, m, t):
    """One table: a row per part, minigan's ms, PyTorch's ms and their ratio."""
    print(f"\nbatch {batch}: median ms per step")
    print(f"{'part':<22} {'minigan':>8}" + (f" {'PyTorch':>8} {'ratio':>6}" if t else ""))
    rows = [(label, label) for label in layer_labels()] + [("rest", "rest"), ("whole step", "whole")]
    for name, key in rows:
        line = f"{name:<22} {m[key]:>8.2f}"
        if t:
            ratio = m[key] / t[key] if t[key] > 0.005 else float("nan")
            line += f" {t[key]:>8.2f} {ratio:>6.2f}"
        print(line)


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
    if args.arch == "dcgan":
        print(C.share_threads(args.arch, threads))
        for batch in args.batch_sizes:
            real = C.real_batch(batch, seed=args.seed + 7)
            m = minigan_layer_breakdown(C.minigan_dcgan("numpy", seed=args.seed), real, args)
            t = None if torch is None else torch_layer_breakdown(
                C, torch, C.minigan_dcgan("numpy", seed=args.seed), real, args)
            print_layer_breakdown(batch, m, t)
        print(f"# load average {C.loadavg()}")
        return
    print("# median ms per step; rest = whole - Adam - zero_grad; "
          "budget = PyTorch whole - minigan rest")
    head = f"{'batch':>5} {'minigan':>8} {'Adam':>6} {'zero_grad':>9} {'rest':>6}"
    if torch is not None:
        head += f" {'PyTorch':>8} {'PT Adam':>8} {'PT rest':>8} {'budget':>7}"
    print(head)
    for batch in args.batch_sizes:
        real = C.real_batch(batch, seed=args.seed + 7)
        m = minigan_breakdown(C.minigan_gan("numpy", seed=args.seed), real, args)
        line = (f"{batch:>5} {m['whole']:>8.1f} {m['adam']:>6.1f} {m['zero_grad']:>9.1f} "
                f"{m['rest']:>6.1f}")
        if torch is not None:
            # a fresh GAN for the weights: the same start as minigan's
            t = torch_breakdown(C, torch, C.minigan_gan("numpy", seed=args.seed), real, args)
            line += (f" {t['whole']:>8.1f} {t['adam']:>8.1f} {t['rest']:>8.1f} "
                     f"{t['whole'] - m['rest']:>7.1f}")
        print(line, flush=True)
    print(f"# load average {C.loadavg()}")


if __name__ == "__main__":
    main()
