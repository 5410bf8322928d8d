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


LOSSES = {f.__name__: f for f in (categorical_crossentropy, sparse_categorical_crossentropy, binary_crossentropy,
                                  mean_squared_error, mean_absolute_error)}


def get(spec: dict) -> Loss:
    """``spec`` is a TrainingSpec loss entry: ``{"kind": ..., "config": {...}}``."""
    kind, config = spec["kind"], spec.get("config", {})
    if kind not in LOSSES:
        raise NotImplementedError(f"the torch backend has no loss {kind!r}; it has {', '.join(LOSSES)}")
    fn = LOSSES[kind]
    return lambda y, p, sample_weight=None: fn(y, p, sample_weight=sample_weight, **config)
