"""Keras's losses in NumPy, value and gradient with respect to the model output.

Each function returns ``(loss, d_loss/d_y_pred)`` for the mean over the batch
(Keras's ``sum_over_batch_size``); with ``sample_weight`` (shape ``(batch,)``,
or ``(batch, T)`` for a sequence output) it is Keras's weighted mean
``sum(w * l) / n`` over the ``n`` per-sample losses ``l``, *not* divided by the
sum of the weights. The definitions, clipping included, are the
ones documented in :mod:`polykeras.losses`; the gradient is zero where a
value was clipped (a probability, ``max(p, eps)``, an inactive hinge), as
automatic differentiation of Keras's formula gives; exactly on a kink it takes
the side the formula's ``<=`` / ``>=`` picks.
"""

from __future__ import annotations

import numpy as np

from polykeras.backend import epsilon


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _clip_with_mask(p: np.ndarray, eps):
    """``clip(p, eps, 1-eps)`` and the mask of entries the clip left alone."""
    lo, hi = p.dtype.type(eps), p.dtype.type(1 - eps)
    return np.clip(p, lo, hi), (p >= lo) & (p <= hi)


def _weighted(per: np.ndarray, grad: np.ndarray, sample_weight):
    """``(mean of per, grad)`` unweighted; else Keras's ``sum(w * per) / n`` and the gradient
    of the mean scaled by each sample's weight (``grad`` is already that of the plain mean)."""
    if sample_weight is None:
        return per.mean(), grad
    w = np.asarray(sample_weight, dtype=per.dtype)
    w = w.reshape(w.shape + (1,) * (per.ndim - w.ndim))
    return (per * w).mean(), grad * w[..., None]


def categorical_crossentropy(y, p, from_logits=False, label_smoothing=0.0, sample_weight=None):
    n = p.size // p.shape[-1]  # number of per-sample losses averaged
    if label_smoothing:
        y = y * p.dtype.type(1 - label_smoothing) + p.dtype.type(label_smoothing / p.shape[-1])
    if from_logits:
        shifted = p - p.max(axis=-1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
        per = -(y * log_probs).sum(axis=-1)
        grad = (np.exp(log_probs) * y.sum(axis=-1, keepdims=True) - y) / p.dtype.type(n)
        return _weighted(per, grad, sample_weight)
    total = p.sum(axis=-1, keepdims=True)
    q = p / total
    qc, keep = _clip_with_mask(q, epsilon())
    per = -(y * np.log(qc)).sum(axis=-1)
    dq = np.where(keep, -y / qc, 0).astype(p.dtype) / p.dtype.type(n)
    # through q = p / sum(p):  dp_j = (dq_j - sum_i dq_i q_i) / sum(p)
    grad = (dq - (dq * q).sum(axis=-1, keepdims=True)) / total
    return _weighted(per, grad, sample_weight)


def sparse_categorical_crossentropy(y, p, from_logits=False, sample_weight=None):
    onehot = np.zeros_like(p)
    np.put_along_axis(onehot, y.astype(np.intp)[..., None], 1, axis=-1)
    return categorical_crossentropy(onehot, p, from_logits=from_logits, sample_weight=sample_weight)


def binary_crossentropy(y, p, from_logits=False, label_smoothing=0.0, sample_weight=None):
    n = p.dtype.type(p.size)
    if label_smoothing:
        y = y * p.dtype.type(1 - label_smoothing) + p.dtype.type(0.5 * label_smoothing)
    if from_logits:
        per = np.maximum(p, 0) - p * y + np.log1p(np.exp(-np.abs(p)))
        sig = np.exp(-np.logaddexp(0, -p))  # sigmoid(p), stable for large |p|
        return _weighted(per.mean(axis=-1), (sig - y) / n, sample_weight)
    pc, keep = _clip_with_mask(p, epsilon())
    one = p.dtype.type(1)
    per = -(y * np.log(pc) + (one - y) * np.log(one - pc))
    grad = np.where(keep, -(y / pc - (one - y) / (one - pc)), 0).astype(p.dtype) / n
    return _weighted(per.mean(axis=-1), grad, sample_weight)


def mean_squared_error(y, p, sample_weight=None):
    diff = p - y
    return _weighted(np.square(diff).mean(axis=-1), 2 * diff / p.dtype.type(p.size), sample_weight)


def mean_absolute_error(y, p, sample_weight=None):
    diff = p - y
    return _weighted(np.abs(diff).mean(axis=-1), np.sign(diff) / p.dtype.type(p.size), sample_weight)


def mean_absolute_percentage_error(y, p, sample_weight=None):
    scale = np.maximum(np.abs(y), p.dtype.type(epsilon()))
    per = p.dtype.type(100) * np.abs((y - p) / scale).mean(axis=-1)
    return _weighted(per, p.dtype.type(100) * np.sign(p - y) / scale / p.dtype.type(p.size), sample_weight)


def mean_squared_logarithmic_error(y, p, sample_weight=None):
    eps = p.dtype.type(epsilon())
    one = p.dtype.type(1)
    diff = np.log(np.maximum(p, eps) + one) - np.log(np.maximum(y, eps) + one)
    # d/dp of log(max(p, eps) + 1): zero where p < eps, the clip's flat side
    grad = np.where(p >= eps, 2 * diff / (np.maximum(p, eps) + one), 0).astype(p.dtype)
    return _weighted(np.square(diff).mean(axis=-1), grad / p.dtype.type(p.size), sample_weight)


def huber(y, p, delta=1.0, sample_weight=None):
    err = p - y
    delta, half = p.dtype.type(delta), p.dtype.type(0.5)
    inside = np.abs(err) <= delta
    per = np.where(inside, half * np.square(err), delta * np.abs(err) - half * np.square(delta))
    grad = np.where(inside, err, delta * np.sign(err)) / p.dtype.type(p.size)
    return _weighted(per.mean(axis=-1), grad, sample_weight)


def _softplus(x):
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def log_cosh(y, p, sample_weight=None):
    err = p - y
    per = (err + _softplus(-2 * err) - p.dtype.type(np.log(2))).mean(axis=-1)
    return _weighted(per, np.tanh(err) / p.dtype.type(p.size), sample_weight)  # d log(cosh(e))/de = tanh(e)


def _hinge_labels(y, dtype):
    """Keras's ``convert_binary_labels_to_hinge``: 0/1 labels become -1/1 when *all* of them are 0 or 1."""
    y = np.asarray(y, dtype=dtype)
    return 2 * y - 1 if np.all((y == 0) | (y == 1)) else y


def hinge(y, p, sample_weight=None):
    y = _hinge_labels(y, p.dtype)
    margin = 1 - y * p
    grad = np.where(margin > 0, -y, 0).astype(p.dtype) / p.dtype.type(p.size)
    return _weighted(np.maximum(margin, 0).mean(axis=-1), grad, sample_weight)


def squared_hinge(y, p, sample_weight=None):
    y = _hinge_labels(y, p.dtype)
    slack = np.maximum(1 - y * p, 0)
    return _weighted(np.square(slack).mean(axis=-1), -2 * y * slack / p.dtype.type(p.size), sample_weight)


def kl_divergence(y, p, sample_weight=None):
    eps, one = p.dtype.type(epsilon()), p.dtype.type(1)
    yc = np.clip(y, eps, one)
    pc = np.clip(p, eps, one)
    n = p.size // p.shape[-1]  # a sum over the last axis, averaged over the n samples
    grad = np.where((p >= eps) & (p <= one), -yc / pc, 0).astype(p.dtype) / p.dtype.type(n)
    return _weighted((yc * np.log(yc / pc)).sum(axis=-1), grad, sample_weight)


def poisson(y, p, sample_weight=None):
    eps = p.dtype.type(epsilon())
    per = (p - y * np.log(p + eps)).mean(axis=-1)
    return _weighted(per, (1 - y / (p + eps)) / p.dtype.type(p.size), sample_weight)


def _l2_normalize(x):
    """Keras's ``normalize``, ``x * min(rsqrt(sum(x**2)), 1/eps)``, written ``x * rsqrt(max(sum(x**2), eps**2))``:
    the same value, but a zero vector gets the cap's gradient where automatic differentiation of Keras's
    form gives ``0 * inf = NaN``. Returns ``x_n``, the factor ``r`` and where the cap was taken."""
    s = np.square(x).sum(axis=-1, keepdims=True)
    floor = x.dtype.type(epsilon() ** 2)
    r = 1 / np.sqrt(np.maximum(s, floor))
    return x * r, r, s < floor


def cosine_similarity(y, p, axis=-1, sample_weight=None):
    if axis != -1:
        raise NotImplementedError(f"cosine_similarity supports axis=-1 only, got axis={axis!r}")
    yn, _, _ = _l2_normalize(np.asarray(y, dtype=p.dtype))
    pn, r, capped = _l2_normalize(p)
    n = p.size // p.shape[-1]
    # p_n = p * r with r = |p|^-1: the gradient of -yn . p_n is -r (yn - (yn . p_n) p_n);
    # with the cap, r = 1/eps is a constant and it is -r yn
    along = np.where(capped, 0, (yn * pn).sum(axis=-1, keepdims=True))
    grad = -r * (yn - along * pn) / p.dtype.type(n)
    return _weighted(-(yn * pn).sum(axis=-1), grad, sample_weight)


LOSSES = {f.__name__: f for f in (categorical_crossentropy, sparse_categorical_crossentropy, binary_crossentropy,
                                  mean_squared_error, mean_absolute_error, mean_absolute_percentage_error,
                                  mean_squared_logarithmic_error, huber, log_cosh, hinge, squared_hinge,
                                  kl_divergence, poisson, cosine_similarity)}


def get(spec: dict):
    """``spec`` is a TrainingSpec loss entry: ``{"kind": ..., "config": {...}}``."""
    kind, config = spec["kind"], spec.get("config", {})
    if kind == "function":  # a traced function of the user's (polykeras.functions)
        from polykeras_numpy.functions import function_loss

        return function_loss(config["graph"])
    if kind not in LOSSES:
        raise NotImplementedError(f"the numpy backend has no loss {kind!r}; it has {', '.join(LOSSES)}")
    fn = LOSSES[kind]
    return lambda y, p, sample_weight=None: fn(y, p, sample_weight=sample_weight, **config)
