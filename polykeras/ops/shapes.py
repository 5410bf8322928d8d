"""Ops that move entries without computing new values: reshape, transpose,
expand_dims, squeeze, concatenate, stack, broadcast_to, flip, tile, repeat,
pad (constant), take, take_along_axis, slice, tril, triu, cast, one_hot.

Each VJP routes the cotangent back to where the entries came from: a
transpose by the inverse permutation, a concatenation by splitting, a
broadcast or ``tile``/``repeat``/``take`` by *summing* the copies (``np.add.at``
for gathers, so repeated indices add up).
"""

from __future__ import annotations

import numpy as np

from .registry import register, unbroadcast


def _reshaped_back(g, y, arrays, **params):
    return (g.reshape(np.shape(arrays[0])),)


register("reshape", ("x",), lambda x, newshape=None: np.reshape(x, newshape), _reshaped_back,
         "x with a new shape (one -1 allowed), C order", newshape=None)
register("expand_dims", ("x",), lambda x, axis=None: np.expand_dims(x, axis), _reshaped_back,
         "x with a size-1 axis inserted at axis", axis=None)
register("squeeze", ("x",), lambda x, axis=None: np.squeeze(x, axis=None if axis is None else axis), _reshaped_back,
         "x without its size-1 axes (or the ones named by axis)", axis=None)


def _transpose(x, axes=None):
    return np.transpose(x, axes)


def _transpose_vjp(g, y, arrays, axes=None):
    return (np.transpose(g, None if axes is None else np.argsort(axes)),)


register("transpose", ("x",), _transpose, _transpose_vjp, "x with its axes permuted (reversed when axes is None)",
         axes=None)


def _concatenate(*xs, axis=0):
    return np.concatenate(xs, axis=axis)


def _concatenate_vjp(g, y, arrays, axis=0):
    bounds = np.cumsum([np.shape(x)[axis] for x in arrays])[:-1]
    return tuple(np.split(g, bounds, axis=axis))


register("concatenate", ("xs*",), _concatenate, _concatenate_vjp, "xs joined along an existing axis", axis=0)


def _stack(*xs, axis=0):
    return np.stack(xs, axis=axis)


def _stack_vjp(g, y, arrays, axis=0):
    return tuple(np.take(g, i, axis=axis) for i in range(len(arrays)))


register("stack", ("x*",), _stack, _stack_vjp, "x's tensors joined along a new axis", axis=0)
register("broadcast_to", ("x",), lambda x, shape=None: np.broadcast_to(x, tuple(shape)).copy(),
         lambda g, y, arrays, shape=None: (unbroadcast(g, np.shape(arrays[0])),),
         "x broadcast to shape", shape=None)


def _flip(x, axis=None):
    return np.flip(x, axis=axis)


register("flip", ("x",), _flip, lambda g, y, arrays, axis=None: (np.flip(g, axis=axis),),
         "x with the order of entries reversed along axis (all axes when None)", axis=None)


def _tile_vjp(g, y, arrays, repeats=None):
    x = np.asarray(arrays[0])
    reps = (1,) * (g.ndim - len(np.atleast_1d(repeats))) + tuple(np.atleast_1d(repeats))
    shape = (1,) * (g.ndim - x.ndim) + x.shape
    # split every axis into (repeat, size) and sum the repeats
    split = [d for pair in zip(reps, shape) for d in pair]
    summed = g.reshape(split).sum(axis=tuple(range(0, 2 * g.ndim, 2)))
    return (summed.reshape(x.shape),)


register("tile", ("x",), lambda x, repeats=None: np.tile(x, repeats), _tile_vjp,
         "x repeated `repeats` times along each axis", repeats=None)


def _repeat(x, repeats=None, axis=None):
    return np.repeat(x, repeats, axis=axis)


def _repeat_vjp(g, y, arrays, repeats=None, axis=None):
    x = np.asarray(arrays[0])
    if axis is None:
        flat_size = x.size
        axis_, g = 0, g.reshape(-1)
    else:
        axis_, flat_size = axis % x.ndim, x.shape[axis]
    counts = np.broadcast_to(np.asarray(repeats), (flat_size,))
    owner = np.repeat(np.arange(flat_size), counts)
    out = np.zeros(g.shape[:axis_] + (flat_size,) + g.shape[axis_ + 1:], dtype=g.dtype)
    np.add.at(np.moveaxis(out, axis_, 0), owner, np.moveaxis(g, axis_, 0))
    return (out.reshape(x.shape),)


register("repeat", ("x",), _repeat, _repeat_vjp, "each entry repeated `repeats` times along axis (of the "
         "flattened x when None)", repeats=None, axis=None)


def _pad(x, pad_width=None, mode="constant", constant_values=None):
    if mode != "constant":
        raise NotImplementedError(f"ops.pad(mode={mode!r}) is not supported; only mode='constant'")
    return np.pad(x, pad_width, mode="constant", constant_values=constant_values or 0)


def _pad_vjp(g, y, arrays, pad_width=None, mode="constant", constant_values=None):
    widths = np.broadcast_to(np.asarray(pad_width), (g.ndim, 2))
    return (g[tuple(slice(int(lo), g.shape[i] - int(hi)) for i, (lo, hi) in enumerate(widths))],)


register("pad", ("x",), _pad, _pad_vjp, "x padded with constant_values (0 by default)", pad_width=None,
         mode="constant", constant_values=None)


def _take(x, indices, axis=None):
    return np.take(x, np.asarray(indices).astype(np.intp), axis=axis)


def _take_vjp(g, y, arrays, axis=None):
    x, indices = np.asarray(arrays[0]), np.asarray(arrays[1]).astype(np.intp)
    out = np.zeros(x.size if axis is None else x.shape, dtype=g.dtype)
    if axis is None:
        np.add.at(out, indices % x.size, g)
        return out.reshape(x.shape), None
    axis %= x.ndim
    # g has x's axes before `axis`, then indices' axes, then x's axes after it
    moved = np.moveaxis(g.reshape(g.shape[:axis] + (-1,) + g.shape[axis + indices.ndim:]), axis, 0)
    np.add.at(np.moveaxis(out, axis, 0), indices.reshape(-1) % x.shape[axis], moved)
    return out, None


register("take", ("x", "indices"), _take, _take_vjp, "entries of x at integer indices along axis (of the "
         "flattened x when None); repeated indices add their gradients", axis=None)


def _take_along_axis(x, indices, axis=None):
    return np.take_along_axis(x, np.asarray(indices).astype(np.intp), axis=axis)


def _take_along_axis_vjp(g, y, arrays, axis=None):
    x, indices = np.asarray(arrays[0]), np.asarray(arrays[1]).astype(np.intp)
    if axis is None:
        out = np.zeros(x.size, dtype=g.dtype)
        np.add.at(out, indices.reshape(-1), g.reshape(-1))
        return out.reshape(x.shape), None
    axis %= x.ndim
    out = np.zeros(x.shape, dtype=g.dtype)
    idx = np.broadcast_to(indices, g.shape)
    grid = list(np.indices(g.shape, sparse=True))
    grid[axis] = idx
    np.add.at(out, tuple(grid), g)
    return out, None


register("take_along_axis", ("x", "indices"), _take_along_axis, _take_along_axis_vjp,
         "x's entries at indices along axis, indices shaped like x (repeated indices add their gradients)",
         axis=None)


def _slice(inputs, start_indices=None, shape=None):
    return inputs[tuple(slice(int(s), int(s) + int(n)) for s, n in zip(start_indices, shape))]


def _slice_vjp(g, y, arrays, start_indices=None, shape=None):
    out = np.zeros(np.shape(arrays[0]), dtype=g.dtype)
    out[tuple(slice(int(s), int(s) + int(n)) for s, n in zip(start_indices, shape))] = g
    return (out,)


register("slice", ("inputs",), _slice, _slice_vjp, "the block of `shape` starting at start_indices",
         start_indices=None, shape=None)
register("tril", ("x",), lambda x, k=0: np.tril(x, k), lambda g, y, arrays, k=0: (np.tril(g, k),),
         "x with the entries above the k-th diagonal zeroed", k=0)
register("triu", ("x",), lambda x, k=0: np.triu(x, k), lambda g, y, arrays, k=0: (np.triu(g, k),),
         "x with the entries below the k-th diagonal zeroed", k=0)


def _cast(x, dtype=None):
    return np.asarray(x).astype(dtype)


def _cast_vjp(g, y, arrays, dtype=None):
    x = np.asarray(arrays[0])
    return (g.astype(x.dtype),) if np.issubdtype(x.dtype, np.floating) else (None,)


register("cast", ("x",), _cast, _cast_vjp, "x converted to dtype", dtype=None)
register("convert_to_tensor", ("x",), lambda x, dtype=None: np.asarray(x, dtype=dtype),
         lambda g, y, arrays, dtype=None: (g,), "x as an array (in a model: a constant)", dtype=None)


def _one_hot(x, num_classes=None, axis=-1, dtype=None, sparse=False):
    if sparse:
        raise NotImplementedError("ops.one_hot(sparse=True) is not supported")
    x = np.asarray(x).astype(np.intp)
    out = (x[..., None] == np.arange(int(num_classes))).astype(dtype or "float32")
    return np.moveaxis(out, -1, axis)


register("one_hot", ("x",), _one_hot, None, "integer x as one-hot vectors of num_classes along axis",
         num_classes=None, axis=-1, dtype=None, sparse=False)


def encode_key(key) -> list:
    """A basic-indexing key (ints, slices, ``None``, ``...``) as JSON data, for ``x[key]`` in a model."""
    key = key if isinstance(key, tuple) else (key,)
    out = []
    for k in key:
        if isinstance(k, slice):
            out.append({"slice": [k.start, k.stop, k.step]})
        elif k is None:
            out.append("newaxis")
        elif k is Ellipsis:
            out.append("...")
        elif isinstance(k, (int, np.integer)) and not isinstance(k, bool):
            out.append(int(k))
        else:
            raise TypeError(f"x[{k!r}]: symbolic tensors take basic indexing only (ints, slices, None, ...); use "
                            "ops.take or ops.take_along_axis to gather by an array of indices")
    return out


def decode_key(key) -> tuple:
    def one(k):
        if isinstance(k, dict):
            return slice(*k["slice"])
        return {"newaxis": None, "...": Ellipsis}.get(k, k) if isinstance(k, str) else int(k)
    return tuple(one(k) for k in key)


def _getitem(x, key=()):
    return x[decode_key(key)]


def _getitem_vjp(g, y, arrays, key=()):
    out = np.zeros(np.shape(arrays[0]), dtype=g.dtype)
    out[decode_key(key)] = g  # basic indexing selects each entry at most once
    return (out,)


register("getitem", ("x",), _getitem, _getitem_vjp, "x[key] with basic indexing (what x[...] records in a model)",
         key=())
