"""Hidden checks: run by ``grade``, never by ``check``, and left out of every release.

They test what the visible checks do not show the student: other shapes,
edge cases and the less-travelled options. Same framework as ``checks.py``,
which the grader loads first under the name ``_minigan_classroom_checks``.
"""

from __future__ import annotations

import numpy as np

from _minigan_classroom_checks import (  # noqa: I001 - loaded by path, see checks.py
    Check,
    Fail,
    _GeneratorStepCheck,
    _OptimizerCheck,
    _bce_fixture,
    _bce_problems,
    _dense_out,
    gradient_problems,
    gradient_fixture,
    _leaky_out,
    _off_kinks,
    check,
    compare,
    expect,
    unpack,
)


@check("minigan.functional.dense_forward",
       "a batch of one and a wider layer; the cache is what dense_backward needs", hidden=True)
class DenseForwardCache(Check):
    uses = ("minigan.functional.dense_backward",)

    def prepare(self, ref, rng):
        fx = gradient_fixture(ref, rng, _dense_out, {"x": (1, 7), "W": (7, 9), "b": (9,)},
                          ("dx", "dW", "db"))
        fx["out"] = _dense_out(ref, fx["x"].copy(), fx["W"].copy(), fx["b"].copy())
        return fx

    def run(self, stu, fx):
        F = stu.functional
        out, cache = unpack(F.dense_forward(fx["x"].copy(), fx["W"].copy(), fx["b"].copy()),
                            ("out", "cache"), "dense_forward")
        expect([compare("out", out, fx["out"], 1e-10)])
        try:
            got = F.dense_backward(fx["dout"].copy(), cache)
        except NotImplementedError:
            raise
        except Exception as err:  # the reference backward cannot read the student's cache
            raise Fail(f"dense_backward could not use the cache returned by dense_forward "
                       f"({type(err).__name__}: {err}); the cache must be (x, W)") from None
        expect(gradient_problems("dense_backward (with your cache)", got, ("dx", "dW", "db"), fx))


@check("minigan.functional.dense_backward", "square W and a batch of one (float64)", hidden=True)
class DenseBackwardSquare(Check):
    uses = ("minigan.functional.dense_forward",)

    def prepare(self, ref, rng):
        return gradient_fixture(ref, rng, _dense_out, {"x": (1, 4), "W": (4, 4), "b": (4,)},
                            ("dx", "dW", "db"))

    def run(self, stu, fx):
        F = stu.functional
        _, cache = F.dense_forward(fx["x"].copy(), fx["W"].copy(), fx["b"].copy())
        got = F.dense_backward(fx["dout"].copy(), cache)
        expect(gradient_problems("dense_backward", got, ("dx", "dW", "db"), fx))


@check("minigan.functional.dense_backward",
       "need_dx=False and need_param_grads=False return None for what they skip", hidden=True)
class DenseBackwardFlags(Check):
    uses = ("minigan.functional.dense_forward",)

    def prepare(self, ref, rng):
        return gradient_fixture(ref, rng, _dense_out, {"x": (3, 2), "W": (2, 5), "b": (5,)},
                            ("dx", "dW", "db"))

    def run(self, stu, fx):
        F = stu.functional
        _, cache = F.dense_forward(fx["x"].copy(), fx["W"].copy(), fx["b"].copy())
        dx, dW, db = unpack(F.dense_backward(fx["dout"].copy(), cache, need_param_grads=False),
                            ("dx", "dW", "db"), "dense_backward")
        problems = [compare("dx (need_param_grads=False)", dx, fx["num_dx"], 1e-6)]
        if dW is not None or db is not None:
            problems.append("with need_param_grads=False, dW and db must be None")
        dx, dW, db = unpack(F.dense_backward(fx["dout"].copy(), cache, need_dx=False),
                            ("dx", "dW", "db"), "dense_backward")
        if dx is not None:
            problems.append("with need_dx=False, dx must be None")
        problems += [compare("dW (need_dx=False)", dW, fx["num_dW"], 1e-6),
                     compare("db (need_dx=False)", db, fx["num_db"], 1e-6)]
        expect(problems)


@check("minigan.functional.leaky_relu_backward", "3-D input, slopes 0 and 1.5 (float64)", hidden=True)
class LeakyReluOther(Check):
    def prepare(self, ref, rng):
        fx = {}
        for slope in (0.0, 1.5):
            part = gradient_fixture(ref, rng, _leaky_out(slope), {"x": (2, 3, 4)}, ("dx",),
                                make=lambda n, s: _off_kinks(rng, s))
            fx.update({f"{k}_{slope}": v for k, v in part.items()})
        return fx

    def run(self, stu, fx):
        F = stu.functional
        problems = []
        for slope in (0.0, 1.5):
            _, cache = F.leaky_relu_forward(fx[f"x_{slope}"].copy(), slope)
            got = F.leaky_relu_backward(fx[f"dout_{slope}"].copy(), cache)
            msg = compare(f"dx (slope {slope})", got, fx[f"num_dx_{slope}"], 1e-6)
            problems.append(msg)
        expect(problems)


def _saturated(kind):
    @check(f"minigan.functional.{kind}_backward", "saturated inputs (|x| up to 40): finite and exact",
           hidden=True)
    class Saturated(Check):
        def prepare(self, ref, rng):
            x = np.array([[-40.0, -15.0, -0.5, 0.0, 0.5, 15.0, 40.0]])
            out = lambda ref, x: getattr(ref.functional, f"{kind}_forward")(x)[0]  # noqa: E731
            return gradient_fixture(ref, rng, out, {"x": x.shape}, ("dx",), make=lambda n, s: x.copy())

        def run(self, stu, fx):
            F = stu.functional
            _, cache = getattr(F, f"{kind}_forward")(fx["x"].copy())
            got = getattr(F, f"{kind}_backward")(fx["dout"].copy(), cache)
            expect(gradient_problems(f"{kind}_backward", got, ("dx",), fx))


_saturated("sigmoid")
_saturated("tanh")


@check("minigan.functional.batchnorm_backward",
       "evaluation mode (running statistics) and a batch of two", hidden=True)
class BatchNormOther(Check):
    def prepare(self, ref, rng):
        mean, var = rng.standard_normal(3), rng.uniform(0.5, 2.0, size=3)

        def eval_out(ref, x, gamma, beta):
            return ref.functional.batchnorm_forward(x, gamma, beta, train=False,
                                                    running_mean=mean, running_var=var)[0]

        def train_out(ref, x, gamma, beta):
            return ref.functional.batchnorm_forward(x, gamma, beta, train=True)[0]

        shapes = {"x": (5, 3), "gamma": (3,), "beta": (3,)}
        fx = {"rm": mean, "rv": var}
        names = ("dx", "dgamma", "dbeta")
        fx.update({k + "_eval": v for k, v in gradient_fixture(ref, rng, eval_out, shapes, names).items()})
        shapes2 = {"x": (2, 3), "gamma": (3,), "beta": (3,)}
        fx.update({k + "_two": v for k, v in gradient_fixture(ref, rng, train_out, shapes2, names).items()})
        return fx

    def run(self, stu, fx):
        F = stu.functional
        names = ("dx", "dgamma", "dbeta")
        _, cache = F.batchnorm_forward(fx["x_eval"].copy(), fx["gamma_eval"].copy(),
                                       fx["beta_eval"].copy(), train=False,
                                       running_mean=fx["rm"].copy(), running_var=fx["rv"].copy())
        got = unpack(F.batchnorm_backward(fx["dout_eval"].copy(), cache), names, "batchnorm_backward")
        problems = [compare(f"{n} (evaluation mode)", g, fx[f"num_{n}_eval"], 1e-6)
                    for n, g in zip(names, got)]
        _, cache = F.batchnorm_forward(fx["x_two"].copy(), fx["gamma_two"].copy(),
                                       fx["beta_two"].copy(), train=True)
        got = unpack(F.batchnorm_backward(fx["dout_two"].copy(), cache), names, "batchnorm_backward")
        problems += [compare(f"{n} (batch of two)", g, fx[f"num_{n}_two"], 1e-6)
                     for n, g in zip(names, got)]
        expect(problems)


@check("minigan.functional.bce_with_logits", "soft targets (0.1 / 0.9) and 1-D logits", hidden=True)
class BCESoft(Check):
    def prepare(self, ref, rng):
        logits = rng.uniform(-6, 6, size=(11,))
        targets = rng.choice([0.1, 0.9], size=(11,))
        return _bce_fixture(ref, logits, targets)

    def run(self, stu, fx):
        loss, dlogits = unpack(stu.functional.bce_with_logits(fx["logits"].copy(), fx["targets"].copy()),
                               ("loss", "dlogits"), "bce_with_logits")
        expect(_bce_problems(fx, loss, dlogits, 1e-7))


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

    def run(self, stu, fx):
        stats, G, D, g_opt, d_opt = self.outcome(stu, fx)
        problems = self.g_problems(stats, G, g_opt, fx, 1e-8)
        if problems and any("gradient" in p for p in problems):
            problems.append("(G's gradients held stale values before the step: zero them first, "
                            "and use the GAN's own loss object, self.loss, so that Minimax() works)")
        expect(problems)
