"""Reductions over ``axis`` (an int, a tuple, or ``None`` for all axes), with
``keepdims`` -- Keras's ``sum``, ``mean``, ``max``, ``min``, ``prod``, ``var``,
``std``, ``logsumexp``, ``argmax``, ``argmin``, ``any``, ``all``, and ``cumsum``.

``var`` and ``std`` are the population statistics (divided by ``n``, as
Keras's). ``max`` and ``min`` share a tie's gradient equally among the tied
entries (torch's ``amax`` and JAX do the same). ``argmax``/``argmin`` return
the first index of the extreme value and have no gradient.
"""

from __future__ import annotations

import numpy as np

from .registry import register


def _axes(ndim: int, axis) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    return tuple(sorted(int(a) % ndim for a in axes)) if ndim else ()


def _count(x, axis) -> int:
    return int(np.prod([x.shape[a] for a in _axes(x.ndim, axis)], dtype=np.int64))


def _keep(g, x, axis, keepdims):
    """``g`` (the reduced output's cotangent) with the reduced axes restored as size 1."""
    if keepdims:
        return g
    return np.expand_dims(g, _axes(x.ndim, axis)) if x.ndim else g


def _reduction(name, forward, grad, doc):
    def vjp(g, y, arrays, axis=None, keepdims=False):
        x = arrays[0]
        return (grad(_keep(g, x, axis, keepdims), _keep(y, x, axis, keepdims), x, axis),)

    register(name, ("x",), forward, vjp, doc, axis=None, keepdims=False)


def _tuple_axis(axis):
    return tuple(axis) if isinstance(axis, list) else axis


def _sum(x, axis=None, keepdims=False):
    return np.sum(x, axis=_tuple_axis(axis), keepdims=keepdims)


def _mean(x, axis=None, keepdims=False):
    return np.mean(x, axis=_tuple_axis(axis), keepdims=keepdims)


def _max(x, axis=None, keepdims=False):
    return np.max(x, axis=_tuple_axis(axis), keepdims=keepdims)


def _min(x, axis=None, keepdims=False):
    return np.min(x, axis=_tuple_axis(axis), keepdims=keepdims)


def _extreme_grad(g, y, x, axis):
    hit = x == y
    return g * hit / hit.sum(axis=_axes(x.ndim, axis), keepdims=True)


def _var(x, axis=None, keepdims=False):
    return np.var(x, axis=_tuple_axis(axis), keepdims=keepdims)


def _std(x, axis=None, keepdims=False):
    return np.std(x, axis=_tuple_axis(axis), keepdims=keepdims)


def _centered(x, axis):
    return x - np.mean(x, axis=_axes(x.ndim, axis), keepdims=True)


def _logsumexp(x, axis=None, keepdims=False):
    axes = _axes(x.ndim, axis)
    top = np.max(x, axis=axes, keepdims=True)
    top = np.where(np.isfinite(top), top, 0)
    out = np.log(np.sum(np.exp(x - top), axis=axes, keepdims=True)) + top
    return out if keepdims else np.squeeze(out, axis=axes)


def _prod(x, axis=None, keepdims=False):
    return np.prod(x, axis=_tuple_axis(axis), keepdims=keepdims)


def _prod_grad(g, y, x, axis):
    """The product of the *other* entries of each reduced group (exact with zeros):
    exclusive cumulative products from both ends over the flattened reduced axes."""
    axes = _axes(x.ndim, axis)
    kept = [a for a in range(x.ndim) if a not in axes]
    moved = np.transpose(x, kept + list(axes))
    flat = moved.reshape(moved.shape[:len(kept)] + (-1,))
    ones = np.ones(flat.shape[:-1] + (1,), dtype=x.dtype)
    left = np.cumprod(np.concatenate([ones, flat[..., :-1]], axis=-1), axis=-1)
    right = np.cumprod(np.concatenate([ones, flat[..., :0:-1]], axis=-1), axis=-1)[..., ::-1]
    others = (left * right).reshape(moved.shape)
    return g * np.transpose(others, np.argsort(kept + list(axes)))


_reduction("sum", _sum, lambda g, y, x, axis: np.broadcast_to(g, x.shape).copy(), "the sum over axis")
_reduction("mean", _mean, lambda g, y, x, axis: np.broadcast_to(g / _count(x, axis), x.shape).copy(),
           "the mean over axis")
_reduction("max", _max, _extreme_grad, "the largest entry over axis (ties share the gradient)")
_reduction("min", _min, _extreme_grad, "the smallest entry over axis (ties share the gradient)")
_reduction("prod", _prod, _prod_grad, "the product over axis")
_reduction("var", _var, lambda g, y, x, axis: g * 2 * _centered(x, axis) / _count(x, axis),
           "the population variance over axis")
_reduction("std", _std, lambda g, y, x, axis: g * _centered(x, axis) / (_count(x, axis) * y),
           "the population standard deviation over axis")
_reduction("logsumexp", _logsumexp, lambda g, y, x, axis: g * np.exp(x - y), "log(sum(exp(x))) over axis, stable")

register("argmax", ("x",), lambda x, axis=None, keepdims=False: np.argmax(x, axis=axis, keepdims=keepdims), None,
         "the index of the first largest entry along axis (all axes flattened when None)", axis=None, keepdims=False)
register("argmin", ("x",), lambda x, axis=None, keepdims=False: np.argmin(x, axis=axis, keepdims=keepdims), None,
         "the index of the first smallest entry along axis (all axes flattened when None)", axis=None, keepdims=False)


def _top_k_indices(x, k=None, sorted=True):
    if not 1 <= int(k) <= np.shape(x)[-1]:
        raise ValueError(f"ops.top_k: k={k} must be between 1 and the last axis' size, {np.shape(x)[-1]}")
    # stable on the negated values: among equal entries the lower index comes first, as jax.lax.top_k
    return np.argsort(-np.asarray(x), axis=-1, kind="stable")[..., :int(k)]


register("top_k_indices", ("x",), _top_k_indices, None,
         "the indices of the k largest entries along the last axis, largest first (ties: lower index first); "
         "ops.top_k's indices, and with take_along_axis its values", k=None, sorted=True)
# a tuple of axes arrives as a list (a model node's JSON params, or the user's), which np.any/np.all refuse
register("any", ("x",), lambda x, axis=None, keepdims=False: np.any(x, axis=_tuple_axis(axis), keepdims=keepdims),
         None, "whether any entry along axis is true (non-zero)", axis=None, keepdims=False)
register("all", ("x",), lambda x, axis=None, keepdims=False: np.all(x, axis=_tuple_axis(axis), keepdims=keepdims),
         None, "whether every entry along axis is true (non-zero)", axis=None, keepdims=False)


def _cumsum(x, axis=None):
    return np.cumsum(x, axis=axis)


def _cumsum_grad(g, y, arrays, axis=None):
    x = arrays[0]
    if axis is None:
        return (np.flip(np.cumsum(np.flip(g)))[...].reshape(x.shape),)
    return (np.flip(np.cumsum(np.flip(g, axis), axis=axis), axis),)


register("cumsum", ("x",), _cumsum, _cumsum_grad, "running sums along axis (of the flattened x when None)",
         axis=None)
