"""Contractions: ``matmul`` (NumPy's rules: 1-D operands promoted and the
added axis dropped, batch axes broadcast), ``einsum`` (explicit or implicit
output, ``...`` allowed) and ``tensordot``; and ``normalize`` (x over its
L2 norm along ``axis``, the norm floored at ``epsilon``, ``backend.epsilon()``
when None; Keras writes it ``x * min(rsqrt(sum(x**2)), 1/epsilon)``, the same
function up to rounding).

The VJP of an einsum with respect to one operand is another einsum: the
output's cotangent contracted with the other operands onto that operand's
subscripts. Letters only that operand has (summed out on the way forward) come
back by broadcasting; an operand repeating a letter (a diagonal) is refused.
"""

from __future__ import annotations

import string

import numpy as np

from .registry import register, unbroadcast


def _matmul_vjp(g, y, arrays):
    a, b = (np.asarray(v) for v in arrays)
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    g2 = g
    if a.ndim == 1:
        g2 = np.expand_dims(g2, -2)
    if b.ndim == 1:
        g2 = np.expand_dims(g2, -1)
    ga = g2 @ np.swapaxes(b2, -1, -2)
    gb = np.swapaxes(a2, -1, -2) @ g2
    ga = unbroadcast(ga, a2.shape).reshape(a.shape)
    gb = unbroadcast(gb, b2.shape).reshape(b.shape)
    return ga, gb


register("matmul", ("x1", "x2"), np.matmul, _matmul_vjp, "the matrix product (NumPy's rules)")


def _parse(subscripts: str, shapes) -> tuple[list[str], str]:
    """Explicit input and output subscripts, ``...`` replaced by letters not otherwise used."""
    subscripts = subscripts.replace(" ", "")
    inputs, arrow, output = subscripts.partition("->")
    terms = inputs.split(",")
    if len(terms) != len(shapes):
        raise ValueError(f"ops.einsum: {subscripts!r} names {len(terms)} operands, got {len(shapes)}")
    spare = [c for c in string.ascii_letters if c not in subscripts]
    ell_rank = max((len(s) - len(t.replace("...", "")) for t, s in zip(terms, shapes) if "..." in t), default=0)
    ell = "".join(spare[:ell_rank])
    explicit = []
    for t, s in zip(terms, shapes):
        if "..." in t:
            n = len(s) - len(t.replace("...", ""))
            t = t.replace("...", ell[ell_rank - n:])
        explicit.append(t)
    if arrow:
        out = output.replace("...", ell)
    else:
        letters = "".join(explicit)
        out = ell + "".join(sorted(c for c in set(letters) if letters.count(c) == 1 and c not in ell))
    return explicit, out


def _einsum(subscripts, *operands):
    return np.einsum(subscripts, *operands)


def _einsum_vjp(g, y, arrays, subscripts=None):
    terms, out = _parse(subscripts, [np.shape(a) for a in arrays])
    grads = []
    for i, (term, x) in enumerate(zip(terms, arrays)):
        if len(set(term)) != len(term):
            raise NotImplementedError(f"ops.einsum {subscripts!r}: the gradient of an operand that repeats a "
                                      "subscript (a diagonal) is not supported")
        others = [(t, a) for j, (t, a) in enumerate(zip(terms, arrays)) if j != i]
        available = set(out).union(*(set(t) for t, _ in others))
        kept = "".join(c for c in term if c in available)
        spec = ",".join([out] + [t for t, _ in others]) + "->" + kept
        partial = np.einsum(spec, g, *(a for _, a in others))
        # letters only this operand has were summed out: broadcast the cotangent back over them
        # (``kept`` is in the operand's own order, so only the summed-out letters are missing)
        shape = tuple(np.shape(x)[term.index(c)] if c in kept else 1 for c in term)
        grads.append(np.broadcast_to(partial.reshape(shape), np.shape(x)).copy())
    return tuple(grads)


def _einsum_forward(*operands, subscripts=None):
    return np.einsum(subscripts, *operands)


register("einsum", ("operands*",), _einsum_forward, _einsum_vjp,
         "Einstein summation (called as ops.einsum(subscripts, *operands))", subscripts=None)


def _tensordot_subscripts(shape_a, shape_b, axes) -> str:
    if isinstance(axes, (int, np.integer)):
        axes_a = list(range(len(shape_a) - int(axes), len(shape_a)))
        axes_b = list(range(int(axes)))
    else:
        axes_a, axes_b = ([a] if isinstance(a, (int, np.integer)) else list(a) for a in axes)
    axes_a = [a % len(shape_a) for a in axes_a]
    axes_b = [b % len(shape_b) for b in axes_b]
    letters = iter(string.ascii_letters)
    ta = [next(letters) for _ in shape_a]
    tb = [next(letters) for _ in shape_b]
    for a, b in zip(axes_a, axes_b):
        tb[b] = ta[a]
    out = [c for i, c in enumerate(ta) if i not in axes_a] + [c for i, c in enumerate(tb) if i not in axes_b]
    return "".join(ta) + "," + "".join(tb) + "->" + "".join(out)


def _tensordot(x1, x2, axes=2):
    return np.tensordot(x1, x2, axes)


def _tensordot_vjp(g, y, arrays, axes=2):
    return _einsum_vjp(g, y, arrays, subscripts=_tensordot_subscripts(np.shape(arrays[0]), np.shape(arrays[1]), axes))


register("tensordot", ("x1", "x2"), _tensordot, _tensordot_vjp, "the sum of products over `axes`", axes=2)


def _normalize_parts(x, axis, order, epsilon):
    if order != 2:
        raise NotImplementedError(f"ops.normalize(order={order!r}) is not supported; only order=2")
    from polykeras.backend import epsilon as default_epsilon

    eps = default_epsilon() if epsilon is None else epsilon
    norm = np.sqrt(np.sum(np.square(x), axis=axis, keepdims=True))
    return norm, np.maximum(norm, eps)


def _normalize(x, axis=-1, order=2, epsilon=None):
    return x / _normalize_parts(x, axis, order, epsilon)[1]


def _normalize_vjp(g, y, arrays, axis=-1, order=2, epsilon=None):
    x = arrays[0]
    norm, floored = _normalize_parts(x, axis, order, epsilon)
    gx = g / floored
    # where the norm is above the floor it depends on x: d(x/|x|) = (g - y * <g, y>) / |x|
    inside = norm >= floored
    return (np.where(inside, gx - y * np.sum(g * y, axis=axis, keepdims=True) / floored, gx),)


register("normalize", ("x",), _normalize, _normalize_vjp,
         "x divided by its L2 norm along axis, the norm floored at epsilon (backend.epsilon() by default)",
         axis=-1, order=2, epsilon=None)
