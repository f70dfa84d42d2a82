"""Loss objects: ``forward(pred, target) -> float``, ``backward() -> dL/dpred``.

Each wraps a function of ``minigan.functional`` and returns the gradient of the
MEAN loss over every entry (over the batch for SoftmaxCrossEntropy). Targets
may be soft (label smoothing: 0.9 instead of 1). Like layers, a backward needs
its own forward before it.
"""

from __future__ import annotations

from minigan import functional as F
from minigan.backend import check_array, to_numpy


def _check_probabilities(owner, target):
    """Binary cross-entropy targets are probabilities: outside [0, 1] the loss
    can go negative and training pushes the wrong way, without any error."""
    inside = (target >= 0) & (target <= 1)  # NaN is outside too
    if target.size and not bool(inside.all()):
        bad = to_numpy(target[~inside]).ravel()[:3].tolist()
        raise ValueError(f"{owner}: targets must be probabilities in [0, 1] (1 real, 0 fake, "
                         f"or smoothed such as 0.9), got values such as {bad}")


class Loss:
    """Base class: validates inputs, keeps the gradient for ``backward``."""

    _fn = None

    def __init__(self):
        self._grad = None

    def forward(self, pred, target):
        """The mean loss as a Python float; the gradient is kept for ``backward``."""
        loss, self._grad = self.value_and_grad(pred, target)
        return float(loss)

    __call__ = forward

    def value_and_grad(self, pred, target):
        """(loss as a 0-d array on pred's backend, dL/dpred): no device-to-host copy."""
        check_array(pred, f"{type(self).__name__} predictions")
        if pred.size == 0:  # the mean over no entries: 0/0
            raise ValueError(f"{type(self).__name__}: the batch is empty (predictions of shape "
                             f"{tuple(pred.shape)}); a loss is a mean over at least one sample")
        self._check_target(pred, target)
        return type(self)._fn(pred, target)

    def _check_target(self, pred, target):
        check_array(target, f"{type(self).__name__} targets")
        if target.dtype != pred.dtype:
            raise TypeError(
                f"{type(self).__name__}: targets are {target.dtype} but predictions are "
                f"{pred.dtype}; use targets of the same dtype.")

    def backward(self):
        """dL/dpred of the last forward (the gradient of the mean loss)."""
        if self._grad is None:
            raise RuntimeError(f"{type(self).__name__}.backward() was called before forward().")
        grad, self._grad = self._grad, None
        return grad

    def __repr__(self):
        return f"{type(self).__name__}()"


class BCEWithLogits(Loss):
    """Binary cross-entropy on logits: stable for any logit, never clipped. What GANs use."""
    _fn = staticmethod(F.bce_with_logits)

    def _check_target(self, pred, target):
        super()._check_target(pred, target)
        _check_probabilities(type(self).__name__, target)


class BCE(Loss):
    """Binary cross-entropy on probabilities (after a sigmoid). For teaching: see ``functional.bce``."""
    _fn = staticmethod(F.bce)

    def _check_target(self, pred, target):
        super()._check_target(pred, target)
        _check_probabilities(type(self).__name__, target)


class MSE(Loss):
    """Mean squared error."""
    _fn = staticmethod(F.mse)


class LeastSquares(Loss):
    """LSGAN's 0.5 * mean((D(x) - target)^2) on raw discriminator outputs."""
    _fn = staticmethod(F.least_squares)


class SoftmaxCrossEntropy(Loss):
    """Cross-entropy of softmax(logits) (N, C) against int labels (N,) or probabilities (N, C)."""
    _fn = staticmethod(F.softmax_cross_entropy)

    def _check_target(self, pred, target):
        if getattr(target, "ndim", None) == 1:  # class labels: functional checks dtype and length
            self._check_labels(pred, target)
            return
        super()._check_target(pred, target)  # soft targets: any weights, as functional allows

    @staticmethod
    def _check_labels(pred, labels):
        # NumPy indexing takes -1 as the last class: a label outside [0, C) would
        # be scored against the wrong class without any error
        if labels.dtype.kind not in "iu" or not labels.size:
            return  # functional's own checks say what is wrong
        n_classes = pred.shape[-1]
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= n_classes:
            raise ValueError(f"SoftmaxCrossEntropy: labels must be class indices in "
                             f"[0, {n_classes}) for {n_classes} classes, got labels from {low} "
                             f"to {high}")
