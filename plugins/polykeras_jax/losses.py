"""Keras's losses in JAX: the formulas of :mod:`polykeras.losses`, written as
the NumPy reference (:mod:`polykeras_numpy.losses`) writes them, so float64
runs agree to rounding. Gradients come from automatic differentiation; where
a probability is clipped the clip's gradient is zero, as in the reference
(they differ only for a value exactly on the boundary).

Each loss maps ``(y_true, y_pred)`` to the mean over the batch (Keras's
``sum_over_batch_size``).
"""

from __future__ import annotations

import math
from typing import Callable

import jax.numpy as jnp
from jax import lax

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


def mean_absolute_percentage_error(y, p, sample_weight=None):
    scale = jnp.maximum(jnp.abs(y), epsilon())
    return _reduce(100.0 * jnp.mean(jnp.abs((y - p) / scale), axis=-1), sample_weight)


def mean_squared_logarithmic_error(y, p, sample_weight=None):
    eps = epsilon()
    diff = jnp.log(jnp.maximum(p, eps) + 1.0) - jnp.log(jnp.maximum(y, eps) + 1.0)
    return _reduce(jnp.mean(jnp.square(diff), axis=-1), sample_weight)


def huber(y, p, delta=1.0, sample_weight=None):
    err = p - y
    abs_err = jnp.abs(err)
    per = jnp.where(abs_err <= delta, 0.5 * jnp.square(err), delta * abs_err - 0.5 * delta ** 2)
    return _reduce(jnp.mean(per, axis=-1), sample_weight)


def log_cosh(y, p, sample_weight=None):
    z = -2.0 * (p - y)
    softplus = jnp.maximum(z, 0.0) + jnp.log1p(jnp.exp(-jnp.abs(z)))
    return _reduce(jnp.mean((p - y) + softplus - math.log(2.0), axis=-1), sample_weight)


def _hinge_labels(y):
    """0/1 labels become -1/1 when all of them are 0 or 1 (Keras's ``convert_binary_labels_to_hinge``)."""
    return jnp.where(jnp.all((y == 0) | (y == 1)), 2.0 * y - 1.0, y)


def hinge(y, p, sample_weight=None):
    return _reduce(jnp.mean(jnp.maximum(1.0 - _hinge_labels(y) * p, 0.0), axis=-1), sample_weight)


def squared_hinge(y, p, sample_weight=None):
    return _reduce(jnp.mean(jnp.square(jnp.maximum(1.0 - _hinge_labels(y) * p, 0.0)), axis=-1), sample_weight)


def kl_divergence(y, p, sample_weight=None):
    eps = epsilon()
    yc, pc = jnp.clip(y, eps, 1.0), jnp.clip(p, eps, 1.0)
    return _reduce(jnp.sum(yc * jnp.log(yc / pc), axis=-1), sample_weight)


def poisson(y, p, sample_weight=None):
    return _reduce(jnp.mean(p - y * jnp.log(p + epsilon()), axis=-1), sample_weight)


def _l2_normalize(x):
    """Keras's ``normalize``, ``x * min(rsqrt(sum(x**2)), 1/eps)``, as the reference writes it:
    ``x * rsqrt(max(sum(x**2), eps**2))``, the same value with a finite gradient at a zero vector."""
    return x * lax.rsqrt(jnp.maximum(jnp.sum(jnp.square(x), axis=-1, keepdims=True), epsilon() ** 2))


def cosine_similarity(y, p, axis=-1, sample_weight=None):
    if axis != -1:
        raise NotImplementedError(f"cosine_similarity supports axis=-1 only, got axis={axis!r}")
    return _reduce(-jnp.sum(_l2_normalize(y) * _l2_normalize(p), axis=-1), sample_weight)


LOSSES: dict[str, Callable] = {f.__name__: f for f in (
    categorical_crossentropy, sparse_categorical_crossentropy, binary_crossentropy, mean_squared_error,
    mean_absolute_error, mean_absolute_percentage_error, mean_squared_logarithmic_error, huber, log_cosh, hinge,
    squared_hinge, kl_divergence, poisson, cosine_similarity)}


def get(spec: dict) -> Callable:
    """The loss of a TrainingSpec entry ``{"kind": ..., "config": {...}}`` as ``f(y, p)``."""
    kind, config = spec["kind"], dict(spec.get("config", {}))
    if kind == "function":  # a traced function of the user's (polykeras.functions)
        from polykeras_jax.functions import GraphFunction

        fn = GraphFunction(config["graph"])
        return lambda y, p, sample_weight=None: _reduce(fn(y, p), sample_weight)
    if kind not in LOSSES:
        raise NotImplementedError(f"the jax backend has no loss {kind!r}; it has {', '.join(LOSSES)}")
    fn = LOSSES[kind]
    return lambda y, p, sample_weight=None: fn(y, p, sample_weight=sample_weight, **config)
