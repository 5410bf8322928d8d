"""Keras's losses in torch: the batch mean (``sum_over_batch_size``), written
with the reference's exact formulas (:mod:`polykeras_numpy.losses`), so that
float64 results agree to rounding error. In particular, with
``from_logits=False`` the probabilities are renormalised and clipped to
``[eps, 1 - eps]`` before the log -- *not* a fused ``log_softmax`` /
``F.cross_entropy``, which would differ wherever a probability is clipped
(there Keras's gradient is zero). ``torch.clamp``'s gradient passes on the
closed interval, exactly the reference's mask.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from polykeras.backend import epsilon

Loss = Callable[..., torch.Tensor]


def _reduce(per: torch.Tensor, sample_weight) -> torch.Tensor:
    """The batch mean of the per-sample losses, or Keras's weighted ``sum(w * per) / n``."""
    if sample_weight is None:
        return per.mean()
    return (per * sample_weight.reshape(sample_weight.shape + (1,) * (per.dim() - sample_weight.dim()))).mean()


def _renormalised_clipped(p: torch.Tensor) -> torch.Tensor:
    eps = epsilon()
    return (p / p.sum(dim=-1, keepdim=True)).clamp(eps, 1.0 - eps)


def categorical_crossentropy(y, p, from_logits=False, label_smoothing=0.0, sample_weight=None):
    if label_smoothing:
        y = y * (1.0 - label_smoothing) + label_smoothing / p.shape[-1]
    log_probs = torch.log_softmax(p, dim=-1) if from_logits else torch.log(_renormalised_clipped(p))
    return _reduce(-(y * log_probs).sum(dim=-1), sample_weight)


def sparse_categorical_crossentropy(y, p, from_logits=False, sample_weight=None):
    """The reference takes a one-hot ``y`` through the categorical loss;
    ``F.nll_loss`` (``-mean`` of the labelled log-probability, ``y`` int64) is
    the same sum without the zero terms, in one op."""
    log_probs = torch.log_softmax(p, dim=-1) if from_logits else torch.log(_renormalised_clipped(p))
    if log_probs.dim() != 2 or sample_weight is not None:  # nll_loss wants classes on axis 1, no weights
        return _reduce(-log_probs.gather(-1, y.long().unsqueeze(-1)).squeeze(-1), sample_weight)
    return F.nll_loss(log_probs, y.long())


def binary_crossentropy(y, p, from_logits=False, label_smoothing=0.0, sample_weight=None):
    if label_smoothing:
        y = y * (1.0 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        # torch's op is the stable max(x,0) - x*y + log1p(exp(-|x|)) with the
        # exact derivative sigmoid(x) - y.
        return _reduce(F.binary_cross_entropy_with_logits(p, y, reduction="none").mean(dim=-1), sample_weight)
    eps = epsilon()
    pc = p.clamp(eps, 1.0 - eps)
    return _reduce((-(y * torch.log(pc) + (1.0 - y) * torch.log(1.0 - pc))).mean(dim=-1), sample_weight)


def mean_squared_error(y, p, sample_weight=None):
    return _reduce(torch.square(p - y).mean(dim=-1), sample_weight)


def mean_absolute_error(y, p, sample_weight=None):
    return _reduce(torch.abs(p - y).mean(dim=-1), sample_weight)


def mean_absolute_percentage_error(y, p, sample_weight=None):
    scale = torch.clamp(torch.abs(y), min=epsilon())
    return _reduce(100.0 * torch.abs((y - p) / scale).mean(dim=-1), sample_weight)


def mean_squared_logarithmic_error(y, p, sample_weight=None):
    eps = epsilon()
    diff = torch.log(torch.clamp(p, min=eps) + 1.0) - torch.log(torch.clamp(y, min=eps) + 1.0)
    return _reduce(torch.square(diff).mean(dim=-1), sample_weight)


def huber(y, p, delta=1.0, sample_weight=None):
    err = p - y
    abs_err = torch.abs(err)
    per = torch.where(abs_err <= delta, 0.5 * torch.square(err), delta * abs_err - 0.5 * delta ** 2)
    return _reduce(per.mean(dim=-1), sample_weight)


def log_cosh(y, p, sample_weight=None):
    """``e + softplus(-2e) - log 2``; softplus as the reference writes it (``F.softplus``
    switches to the identity above 20, a 2e-9 difference)."""
    z = -2.0 * (p - y)
    softplus = torch.clamp(z, min=0.0) + torch.log1p(torch.exp(-torch.abs(z)))
    return _reduce(((p - y) + softplus - math.log(2.0)).mean(dim=-1), sample_weight)


def _hinge_labels(y):
    """0/1 labels become -1/1 when all of them are 0 or 1 (Keras's ``convert_binary_labels_to_hinge``)."""
    return torch.where(((y == 0) | (y == 1)).all(), 2.0 * y - 1.0, y)


def hinge(y, p, sample_weight=None):
    return _reduce(torch.clamp(1.0 - _hinge_labels(y) * p, min=0.0).mean(dim=-1), sample_weight)


def squared_hinge(y, p, sample_weight=None):
    return _reduce(torch.square(torch.clamp(1.0 - _hinge_labels(y) * p, min=0.0)).mean(dim=-1), sample_weight)


def kl_divergence(y, p, sample_weight=None):
    eps = epsilon()
    yc, pc = y.clamp(eps, 1.0), p.clamp(eps, 1.0)
    return _reduce((yc * torch.log(yc / pc)).sum(dim=-1), sample_weight)


def poisson(y, p, sample_weight=None):
    return _reduce((p - y * torch.log(p + epsilon())).mean(dim=-1), sample_weight)


def _l2_normalize(x):
    """Keras's ``normalize``, ``x * min(rsqrt(sum(x**2)), 1/eps)``, as the reference writes it:
    ``x * rsqrt(max(sum(x**2), eps**2))``, the same value with a finite gradient at a zero vector."""
    return x * torch.rsqrt(torch.clamp(torch.square(x).sum(dim=-1, keepdim=True), min=epsilon() ** 2))


def cosine_similarity(y, p, axis=-1, sample_weight=None):
    if axis != -1:
        raise NotImplementedError(f"cosine_similarity supports axis=-1 only, got axis={axis!r}")
    return _reduce(-(_l2_normalize(y) * _l2_normalize(p)).sum(dim=-1), sample_weight)


LOSSES = {f.__name__: f for f in (categorical_crossentropy, sparse_categorical_crossentropy, binary_crossentropy,
                                  mean_squared_error, mean_absolute_error, mean_absolute_percentage_error,
                                  mean_squared_logarithmic_error, huber, log_cosh, hinge, squared_hinge,
                                  kl_divergence, poisson, cosine_similarity)}


def get(spec: dict) -> Loss:
    """``spec`` is a TrainingSpec loss entry: ``{"kind": ..., "config": {...}}``."""
    kind, config = spec["kind"], spec.get("config", {})
    if kind == "function":  # a traced function of the user's (polykeras.functions)
        from polykeras_torch.functions import GraphFunction

        fn = GraphFunction(config["graph"])
        return lambda y, p, sample_weight=None: _reduce(fn(y, p), sample_weight)
    if kind not in LOSSES:
        raise NotImplementedError(f"the torch backend has no loss {kind!r}; it has {', '.join(LOSSES)}")
    fn = LOSSES[kind]
    return lambda y, p, sample_weight=None: fn(y, p, sample_weight=sample_weight, **config)
