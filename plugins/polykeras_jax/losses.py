"""Keras's losses in JAX: the formulas of :mod:`polykeras.losses`, written as
the NumPy reference (:mod:`polykeras_numpy.losses`) writes them, so float64
runs agree to rounding. Gradients come from automatic differentiation; where
a probability is clipped the clip's gradient is zero, as in the reference
(they differ only for a value exactly on the boundary).

Each loss maps ``(y_true, y_pred)`` to the mean over the batch (Keras's
``sum_over_batch_size``).
"""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp

from polykeras.backend import epsilon


def _log_softmax(z):
    shifted = z - jnp.max(z, axis=-1, keepdims=True)
    return shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=-1, keepdims=True))


def _clip(p):
    """``clip(p, eps, 1 - eps)``: Keras clips probabilities before taking logs."""
    eps = epsilon()
    return jnp.clip(p, eps, 1.0 - eps)


def _renormalised_log(p):
    """``log`` of the probabilities renormalised to sum to one, then clipped."""
    return jnp.log(_clip(p / jnp.sum(p, axis=-1, keepdims=True)))


def _reduce(per, sample_weight):
    """The batch mean of the per-sample losses, or Keras's weighted ``sum(w * per) / n``."""
    if sample_weight is None:
        return jnp.mean(per)
    return jnp.mean(per * sample_weight.reshape(sample_weight.shape + (1,) * (per.ndim - sample_weight.ndim)))


def categorical_crossentropy(y, p, from_logits=False, label_smoothing=0.0, sample_weight=None):
    if label_smoothing:
        y = y * (1.0 - label_smoothing) + label_smoothing / p.shape[-1]
    log_probs = _log_softmax(p) if from_logits else _renormalised_log(p)
    return _reduce(-jnp.sum(y * log_probs, axis=-1), sample_weight)


def sparse_categorical_crossentropy(y, p, from_logits=False, sample_weight=None):
    """The categorical loss at the label's entry (a gather, not a one-hot product:
    the same value, since the other terms are exact zeros)."""
    log_probs = _log_softmax(p) if from_logits else _renormalised_log(p)
    picked = jnp.take_along_axis(log_probs, y.astype(jnp.int32)[..., None], axis=-1)[..., 0]
    return _reduce(-picked, sample_weight)


def binary_crossentropy(y, p, from_logits=False, label_smoothing=0.0, sample_weight=None):
    if label_smoothing:
        y = y * (1.0 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        per = jnp.maximum(p, 0.0) - p * y + jnp.log1p(jnp.exp(-jnp.abs(p)))
    else:
        pc = _clip(p)
        per = -(y * jnp.log(pc) + (1.0 - y) * jnp.log(1.0 - pc))
    return _reduce(jnp.mean(per, axis=-1), sample_weight)


def mean_squared_error(y, p, sample_weight=None):
    return _reduce(jnp.mean(jnp.square(p - y), axis=-1), sample_weight)


def mean_absolute_error(y, p, sample_weight=None):
    return _reduce(jnp.mean(jnp.abs(p - y), axis=-1), sample_weight)


LOSSES: dict[str, Callable] = {f.__name__: f for f in (
    categorical_crossentropy, sparse_categorical_crossentropy, binary_crossentropy, mean_squared_error,
    mean_absolute_error)}


def get(spec: dict) -> Callable:
    """The loss of a TrainingSpec entry ``{"kind": ..., "config": {...}}`` as ``f(y, p)``."""
    kind, config = spec["kind"], dict(spec.get("config", {}))
    if kind not in LOSSES:
        raise NotImplementedError(f"the jax backend has no loss {kind!r}; it has {', '.join(LOSSES)}")
    fn = LOSSES[kind]
    return lambda y, p, sample_weight=None: fn(y, p, sample_weight=sample_weight, **config)
