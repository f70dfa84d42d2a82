"""Hidden checks: run by ``grade``, never by ``check``, and left out of every release.

They test what the visible checks do not show the student: other shapes,
edge cases and the less-travelled options. Same framework as ``checks.py``.
Like every check, they run in the grader's process only: the sandboxed runner
receives a probe name and input arrays, never this file, its names or its
expected values.
"""

from __future__ import annotations

import numpy as np

from minigan.classroom.checks import (
    BN_NAMES,
    CONV_NAMES,
    _ActivationCheck,
    _bce_fixture,
    _bce_problems,
    _BCECheck,
    _BatchNormCheck,
    _Col2imCheck,
    _ConvCheck,
    _dense_out,
    _DenseCheck,
    _GeneratorStepCheck,
    _leaky_out,
    _off_kinks,
    _OptimizerCheck,
    check,
    compare,
    expect,
    gradient_fixture,
    gradient_problems,
    unpack,
)


@check("minigan.functional.dense_forward",
       "a batch of one and a wider layer; the cache is what dense_backward needs", hidden=True)
class DenseForwardCache(_DenseCheck):
    uses = ("minigan.functional.dense_backward",)
    backward = ({},)

    def prepare(self, ref, rng):
        fx = gradient_fixture(ref, rng, _dense_out, {"x": (1, 7), "W": (7, 9), "b": (9,)},
                              ("dx", "dW", "db"))
        fx["out"] = _dense_out(ref, fx["x"].copy(), fx["W"].copy(), fx["b"].copy())
        return fx

    def judge(self, fx, out):
        expect([compare("out", self.forward_out(out), fx["out"], 1e-10)])
        expect(gradient_problems("dense_backward (with your cache)", self.backward_out(out),
                                 ("dx", "dW", "db"), fx))


@check("minigan.functional.dense_backward", "square W and a batch of one (float64)", hidden=True)
class DenseBackwardSquare(_DenseCheck):
    uses = ("minigan.functional.dense_forward",)
    backward = ({},)

    def prepare(self, ref, rng):
        return gradient_fixture(ref, rng, _dense_out, {"x": (1, 4), "W": (4, 4), "b": (4,)},
                                ("dx", "dW", "db"))

    def judge(self, fx, out):
        expect(gradient_problems("dense_backward", self.backward_out(out), ("dx", "dW", "db"), fx))


@check("minigan.functional.dense_backward",
       "need_dx=False and need_param_grads=False return None for what they skip", hidden=True)
class DenseBackwardFlags(_DenseCheck):
    uses = ("minigan.functional.dense_forward",)
    backward = ({"need_param_grads": False}, {"need_dx": False})

    def prepare(self, ref, rng):
        return gradient_fixture(ref, rng, _dense_out, {"x": (3, 2), "W": (2, 5), "b": (5,)},
                                ("dx", "dW", "db"))

    def judge(self, fx, out):
        dx, dW, db = unpack(self.backward_out(out, 0), ("dx", "dW", "db"), "dense_backward")
        problems = [compare("dx (need_param_grads=False)", dx, fx["num_dx"], 1e-6)]
        if dW is not None or db is not None:
            problems.append("with need_param_grads=False, dW and db must be None")
        dx, dW, db = unpack(self.backward_out(out, 1), ("dx", "dW", "db"), "dense_backward")
        if dx is not None:
            problems.append("with need_dx=False, dx must be None")
        problems += [compare("dW (need_dx=False)", dW, fx["num_dW"], 1e-6),
                     compare("db (need_dx=False)", db, fx["num_db"], 1e-6)]
        expect(problems)


@check("minigan.functional.leaky_relu_backward", "3-D input, slopes 0 and 1.5 (float64)", hidden=True)
class LeakyReluOther(_ActivationCheck):
    SLOPES = (0.0, 1.5)

    def cases(self):
        return [(f"@{i}", {"kind": "leaky_relu", "slope": s}) for i, s in enumerate(self.SLOPES)]

    def prepare(self, ref, rng):
        fx = {}
        for i, slope in enumerate(self.SLOPES):
            part = gradient_fixture(ref, rng, _leaky_out(slope), {"x": (2, 3, 4)}, ("dx",),
                                    make=lambda n, s: _off_kinks(rng, s))
            fx.update({f"{k}@{i}": v for k, v in part.items()})
        return fx

    def judge_cases(self, fx, outs):
        expect([compare(f"dx (slope {s})", outs[f"@{i}"].get("dx"), fx[f"num_dx@{i}"], 1e-6)
                for i, s in enumerate(self.SLOPES)])


def _saturated(kind):
    @check(f"minigan.functional.{kind}_backward", "saturated inputs (|x| up to 40): finite and exact",
           hidden=True)
    class Saturated(_ActivationCheck):
        def prepare(self, ref, rng):
            x = np.array([[-40.0, -15.0, -0.5, 0.0, 0.5, 15.0, 40.0]])
            x = x * rng.uniform(0.95, 1.05, size=x.shape)
            out = lambda ref, x: getattr(ref.functional, f"{kind}_forward")(x)[0]  # noqa: E731
            return gradient_fixture(ref, rng, out, {"x": x.shape}, ("dx",), make=lambda n, s: x.copy())

    Saturated.kind = kind


_saturated("sigmoid")
_saturated("tanh")


@check("minigan.functional.batchnorm_backward",
       "evaluation mode (running statistics) and a batch of two", hidden=True)
class BatchNormOther(_BatchNormCheck):
    def cases(self):
        return [("@eval", {"train": False}), ("@two", {"train": True})]

    def prepare(self, ref, rng):
        mean, var = rng.standard_normal(3), rng.uniform(0.5, 2.0, size=3)

        def eval_out(ref, x, gamma, beta):
            return ref.functional.batchnorm_forward(x, gamma, beta, train=False,
                                                    running_mean=mean, running_var=var)[0]

        def train_out(ref, x, gamma, beta):
            return ref.functional.batchnorm_forward(x, gamma, beta, train=True)[0]

        fx = {"rm@eval": mean, "rv@eval": var}
        shapes = {"x": (5, 3), "gamma": (3,), "beta": (3,)}
        evaluation = gradient_fixture(ref, rng, eval_out, shapes, BN_NAMES)
        fx.update({k + "@eval": v for k, v in evaluation.items()})
        shapes2 = {"x": (2, 3), "gamma": (3,), "beta": (3,)}
        two = gradient_fixture(ref, rng, train_out, shapes2, BN_NAMES)
        fx.update({k + "@two": v for k, v in two.items()})
        return fx

    def judge_cases(self, fx, outs):
        problems = []
        # With a batch of two, dx nearly cancels: central differences carry ~1e-6 of noise.
        for case, label, tol in (("@eval", "evaluation mode", 1e-6), ("@two", "batch of two", 1e-4)):
            got = unpack(outs[case].get("grads"), BN_NAMES, "batchnorm_backward")
            problems += [compare(f"{n} ({label})", g, fx[f"num_{n}{case}"], tol)
                         for n, g in zip(BN_NAMES, got)]
        expect(problems)


@check("minigan.functional.bce_with_logits", "soft targets (0.1 / 0.9) and 1-D logits", hidden=True)
class BCESoft(_BCECheck):
    def prepare(self, ref, rng):
        logits = rng.uniform(-6, 6, size=(11,))
        targets = rng.choice([0.1, 0.9], size=(11,))
        return _bce_fixture(ref, logits, targets)

    def judge(self, fx, out):
        expect(_bce_problems(fx, out.get("ret"), 1e-7))


@check("minigan.optim.SGD", "Nesterov momentum with weight decay: matches the reference", hidden=True)
class SGDNesterov(_OptimizerCheck):
    cls, steps = "SGD", 4
    kwargs = {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.1}


@check("minigan.optim.SGD", "weight decay without momentum: matches the reference", hidden=True)
class SGDWeightDecay(_OptimizerCheck):
    cls, steps = "SGD", 3
    kwargs = {"lr": 0.05, "weight_decay": 0.3}


@check("minigan.optim.Adam", "weight decay and a large eps (added after the square root)", hidden=True)
class AdamWeightDecayEps(_OptimizerCheck):
    cls, steps = "Adam", 6
    kwargs = {"lr": 0.01, "betas": (0.8, 0.99), "eps": 0.5, "weight_decay": 0.2}

    def hint(self, t, ratio):
        return (" (with weight decay g = grad + weight_decay * p; eps is added to "
                "sqrt(v_hat), not inside the square root)")


@check("minigan.gan.GAN.generator_step",
       "minimax loss, and G's stale gradients are cleared before backward", hidden=True)
class GeneratorStepMinimax(_GeneratorStepCheck):
    g_loss, stale_g_grads = "minimax", True

    def judge(self, fx, out):
        problems = self.g_problems(out, fx, 1e-8)
        if problems and any("gradient" in p for p in problems):
            problems.append("(G's gradients held stale values before the step: zero them first, "
                            "and use the GAN's own loss object, self.loss, so that Minimax() works)")
        expect(problems)


@check("minigan.functional.col2im",
       "non-square: a 3x2 kernel, stride (2, 1), padding (1, 0), 7x4 images of 2 channels",
       hidden=True)
class Col2imNonSquare(_Col2imCheck):
    x_shape, kernel, stride, padding = (3, 2, 7, 4), (3, 2), (2, 1), (1, 0)


@check("minigan.functional.col2im",
       "stride 3 over a 2x2 kernel (pixels no window covers stay 0), without padding",
       hidden=True)
class Col2imGaps(_Col2imCheck):
    x_shape, kernel, stride, padding, ones = (2, 1, 7, 8), (2, 2), 3, 0, True


@check("minigan.functional.col2im", "one window as large as the image, padding 2", hidden=True)
class Col2imOneWindow(_Col2imCheck):
    x_shape, kernel, stride, padding = (2, 2, 3, 2), (7, 6), 1, 2


@check("minigan.functional.conv2d_backward",
       "non-square images and kernel, stride (2, 1), padding (0, 1), no bias: db is None",
       hidden=True)
class ConvBackwardNoBias(_ConvCheck):
    x_shape, W_shape, stride, padding, bias = (3, 2, 7, 5), (2, 2, 3, 2), (2, 1), (0, 1), False


@check("minigan.functional.conv2d_backward",
       "need_dx=False and need_param_grads=False return None for what they skip", hidden=True)
class ConvBackwardFlags(_ConvCheck):
    x_shape, W_shape, stride, padding = (2, 1, 5, 5), (2, 1, 3, 3), 2, 1
    backward = ({"need_param_grads": False}, {"need_dx": False})

    def judge(self, fx, out):
        dx, dW, db = unpack(self.backward_out(out, 0), CONV_NAMES, "conv2d_backward")
        problems = [compare("dx (need_param_grads=False)", dx, fx["num_dx"], 1e-6)]
        if dW is not None or db is not None:
            problems.append("with need_param_grads=False, dW and db must be None")
        dx, dW, db = unpack(self.backward_out(out, 1), CONV_NAMES, "conv2d_backward")
        if dx is not None:
            problems.append("with need_dx=False, dx must be None")
        problems += [compare("dW (need_dx=False)", dW, fx["num_dW"], 1e-6),
                     compare("db (need_dx=False)", db, fx["num_db"], 1e-6)]
        expect(problems)
