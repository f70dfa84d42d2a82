"""Adversarial losses as objects, so the GAN loop reads the same for all of them.

Every loss has two halves, one for each player, and each returns its gradient
with respect to D's raw outputs (logits for the cross-entropy losses, scores for
least squares) so that D's backward can take it from there:

    loss.discriminator(real_out, fake_out) -> (loss, d_real_out, d_fake_out)
    loss.generator(fake_out)               -> (loss, d_fake_out)
    loss.score(out)                        -> what D's output says about "real",
                                              as a number to watch (a probability
                                              for cross-entropy, the raw score for
                                              least squares)

Losses are means over the batch, so a gradient carries a factor 1/n: with n
rows in ``real_out``, dL/d(real_out_i) is (per-row derivative) / n. The real and
the fake term are means over their own batches, and the D loss is their sum.

Notation: D(x) = s(l) is D's probability of "real" for a logit l, s the sigmoid,
softplus(l) = log(1 + exp(l)), so -log s(l) = softplus(-l) and
-log(1 - s(l)) = softplus(l).
"""

from __future__ import annotations

from minigan import functional as F
from minigan import kernels
from minigan.backend import array_module

__all__ = ["NonSaturating", "Minimax", "LeastSquares"]


def _check_outputs(out, who):
    """D must give one number per sample: (n, 1) or (n,)."""
    if out.ndim not in (1, 2) or (out.ndim == 2 and out.shape[1] != 1):
        raise ValueError(f"{who}: D's output must have shape (n, 1), one number per sample, "
                         f"got {tuple(out.shape)}; end D in a Dense(..., 1) layer")


class NonSaturating:
    """The GAN loss of Goodfellow et al. (2014) with the generator loss they recommend.

    D (binary cross-entropy, real -> 1, fake -> 0), with y = 1 - label_smoothing:
        L_D = mean_i BCE(l_i^real, y) + mean_j BCE(l_j^fake, 0)
        dL_D/dl_i^real = (s(l_i^real) - y) / n,   dL_D/dl_j^fake = s(l_j^fake) / n
    G (maximise log D(G(z)) instead of minimising log(1 - D(G(z)))):
        L_G = -mean_j log s(l_j) = mean_j softplus(-l_j)
        dL_G/dl_j = (s(l_j) - 1) / n
    When D confidently rejects the fakes (l << 0), s(l) ~ 0 and G's gradient is
    still about -1/n: G learns even while it is losing badly.

    ``label_smoothing`` is one-sided (Salimans et al. 2016): only the real target
    moves, to 1 - label_smoothing, so D is never rewarded for certainty about
    real data. Smoothing the fake target too would reward G for where it is.
    """

    def __init__(self, label_smoothing=0.0):
        label_smoothing = float(label_smoothing)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1) (the real target becomes "
                             f"1 - label_smoothing), got {label_smoothing}")
        self.label_smoothing = label_smoothing

    def discriminator(self, real_out, fake_out):
        _check_outputs(real_out, "discriminator loss")
        loss_real, d_real = kernels.bce_with_logits(real_out, 1.0 - self.label_smoothing)
        loss_fake, d_fake = kernels.bce_with_logits(fake_out, 0.0)
        return loss_real + loss_fake, d_real, d_fake

    def generator(self, fake_out):
        _check_outputs(fake_out, "generator loss")
        return kernels.bce_with_logits(fake_out, 1.0)

    def score(self, out):
        return kernels.sigmoid(out)

    def __repr__(self):
        ls = f"label_smoothing={self.label_smoothing:g}" if self.label_smoothing else ""
        return f"{type(self).__name__}({ls})"


class Minimax(NonSaturating):
    """The saturating generator loss of the minimax game itself (Goodfellow et al. 2014).

    D's loss is NonSaturating's. G minimises log(1 - D(G(z))):
        L_G = mean_j log(1 - s(l_j)) = -mean_j softplus(l_j) = -mean_j BCE(l_j, 0)
        dL_G/dl_j = -s(l_j) / n
    When D confidently rejects the fakes (l << 0, early in training), s(l) ~ 0
    and the gradient vanishes: G stops learning exactly when it most needs to.
    That is why the paper recommends the non-saturating loss in practice.
    """

    def generator(self, fake_out):
        _check_outputs(fake_out, "generator loss")
        loss, d_fake = kernels.bce_with_logits(fake_out, 0.0)
        d_fake *= -1.0
        return -loss, d_fake


class LeastSquares:
    """Least-squares GAN (Mao et al. 2017), on D's raw output (a score, no sigmoid).

    D regresses real onto b = 1 and fake onto a = 0; G pushes its fakes to c = 1:
        L_D = 0.5 mean_i (o_i^real - 1)^2 + 0.5 mean_j (o_j^fake)^2
        dL_D/do_i^real = (o_i^real - 1) / n,   dL_D/do_j^fake = o_j^fake / n
        L_G = 0.5 mean_j (o_j - 1)^2,          dL_G/do_j = (o_j - 1) / n
    Unlike the sigmoid's, this gradient grows with the distance from the target:
    fakes that D scores far from "real" are pulled hardest, even when D is sure.
    """

    def discriminator(self, real_out, fake_out):
        _check_outputs(real_out, "discriminator loss")
        xp = array_module(real_out)
        loss_real, d_real = F.least_squares(real_out, xp.ones_like(real_out))
        loss_fake, d_fake = F.least_squares(fake_out, xp.zeros_like(fake_out))
        return loss_real + loss_fake, d_real, d_fake

    def generator(self, fake_out):
        _check_outputs(fake_out, "generator loss")
        return F.least_squares(fake_out, array_module(fake_out).ones_like(fake_out))

    def score(self, out):
        return out

    def __repr__(self):
        return "LeastSquares()"
