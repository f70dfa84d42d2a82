"""Adversarial losses as objects, so the GAN loop reads the same for all of them.

Every loss has two halves, one for each player, and each returns its gradient
with respect to D's raw outputs (logits for the cross-entropy losses, scores for
least squares) so that D's backward can take it from there:

    loss.discriminator(real_out, fake_out) -> (loss, d_real_out, d_fake_out)
    loss.generator(fake_out)               -> (loss, d_fake_out)
    loss.score(out)                        -> what D's output says about "real",
                                              as a number to watch (a probability
                                              for cross-entropy, the raw score for
                                              least squares, Wasserstein and hinge)

Losses are means over the batch, so a gradient carries a factor 1/n: with n
rows in ``real_out``, dL/d(real_out_i) is (per-row derivative) / n. The real and
the fake term are means over their own batches, and the D loss is their sum.

The losses: ``NonSaturating``, ``Minimax``, ``LeastSquares``, ``Wasserstein``,
``Hinge``. The regularisers of D's step (``GAN(..., regularizer=...)``),
``GradientPenalty`` and ``R1``, are defined in ``minigan.penalty`` and can be
imported from here too.

Notation: D(x) = s(l) is D's probability of "real" for a logit l, s the sigmoid,
softplus(l) = log(1 + exp(l)), so -log s(l) = softplus(-l) and
-log(1 - s(l)) = softplus(l).
"""

from __future__ import annotations

from minigan import functional as F
from minigan import kernels
from minigan.backend import array_module

# The discriminator's regularisers live in minigan.penalty (their double backward
# is long); they are objects of the same family, so they can be imported from here.
from minigan.penalty import R1, GradientPenalty, input_gradient_penalty

__all__ = ["NonSaturating", "Minimax", "LeastSquares", "Wasserstein", "Hinge"]


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

    #: what ``score`` gives, for plots: D's probability that a sample is real
    score_kind = "probability"

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

    #: with targets 1 and 0 the best D is p_data / (p_data + p_g): a probability too
    score_kind = "probability"

    def score(self, out):
        return out

    def __repr__(self):
        return "LeastSquares()"


class Wasserstein:
    """The Wasserstein GAN's critic loss (Arjovsky et al. 2017), on D's raw score o.

    D (the critic) estimates the Wasserstein-1 distance between the data and G's
    distribution as mean(D(real)) - mean(D(fake)); it maximises that estimate,
    so it minimises its negative. G minimises the critic's score of its fakes:
        L_D = mean_j o_j^fake - mean_i o_i^real
        dL_D/do_i^real = -1 / n_real,   dL_D/do_j^fake = 1 / n_fake
        L_G = -mean_j o_j,              dL_G/do_j = -1 / n
    The gradients do not depend on the scores at all: every sample is pushed
    equally hard, however sure D is, so nothing saturates. The estimate means
    something only while D is (about) 1-Lipschitz, which this loss does not
    enforce: pair it with ``GradientPenalty`` (WGAN-GP, Gulrajani et al. 2017)
    or spectral normalisation. Without a constraint D's scores grow without bound.
    """

    def discriminator(self, real_out, fake_out):
        _check_outputs(real_out, "discriminator loss")
        _check_outputs(fake_out, "discriminator loss")
        xp = array_module(real_out, fake_out)
        loss = fake_out.mean() - real_out.mean()
        d_real = xp.full_like(real_out, -1.0 / real_out.shape[0])
        d_fake = xp.full_like(fake_out, 1.0 / fake_out.shape[0])
        return loss, d_real, d_fake

    def generator(self, fake_out):
        _check_outputs(fake_out, "generator loss")
        xp = array_module(fake_out)
        return -fake_out.mean(), xp.full_like(fake_out, -1.0 / fake_out.shape[0])

    #: an unbounded critic value, higher for samples it finds more real
    score_kind = "critic"

    def score(self, out):
        return out

    def __repr__(self):
        return "Wasserstein()"


class Hinge(Wasserstein):
    """The hinge loss of geometric GAN and SAGAN (Lim & Ye 2017; Miyato et al. 2018).

    D wants real scores above +1 and fake scores below -1, and is indifferent
    beyond those margins; G minimises the critic's score of its fakes, as in WGAN:
        L_D = mean_i relu(1 - o_i^real) + mean_j relu(1 + o_j^fake)
        dL_D/do_i^real = -[o_i^real < 1] / n_real
        dL_D/do_j^fake = +[o_j^fake > -1] / n_fake
        L_G = -mean_j o_j,   dL_G/do_j = -1 / n
    ([c] is 1 when c holds, else 0; at the kinks o = +-1 the gradient taken is 0,
    as relu's is at 0.) A sample already past its margin gives D no gradient, so
    D stops pushing scores it is sure of, and stays bounded without a penalty;
    it is usually paired with spectral normalisation.
    """

    def discriminator(self, real_out, fake_out):
        _check_outputs(real_out, "discriminator loss")
        _check_outputs(fake_out, "discriminator loss")
        xp = array_module(real_out, fake_out)
        margin_real = 1.0 - real_out          # relu(1 - o) is active where this is > 0
        margin_fake = 1.0 + fake_out
        loss = xp.maximum(margin_real, 0).mean() + xp.maximum(margin_fake, 0).mean()
        d_real = (margin_real > 0).astype(real_out.dtype)
        d_real *= -1.0 / real_out.shape[0]
        d_fake = (margin_fake > 0).astype(fake_out.dtype)
        d_fake *= 1.0 / fake_out.shape[0]
        return loss, d_real, d_fake

    # generator and score: Wasserstein's

    def __repr__(self):
        return "Hinge()"
