"""``polykeras.ops``: Keras 3's ``keras.ops``, a closed, documented set.

Each op has Keras's name, arguments and semantics (NumPy broadcasting,
``axis``/``keepdims``) and one entry in :mod:`.registry` holding its NumPy
forward and its hand-written vector-Jacobian product, the reference every
backend's gradient is judged against. On concrete arrays an op computes
eagerly and returns a NumPy array, as Keras's ops do on its NumPy backend::

    import polykeras as keras
    keras.ops.softmax(keras.ops.matmul(x, w), axis=-1)

On symbolic tensors (a functional model under construction) an op records a
graph node instead, which every backend runs (:mod:`polykeras.layers.operation`)::

    inputs = keras.Input((28, 28))
    x = keras.ops.reshape(inputs, (-1, 784)) / 255.0
    outputs = keras.layers.Dense(10, activation="softmax")(keras.ops.relu(x))

The definitions, by family: :mod:`.elementwise` (arithmetic, comparisons,
math, activations, ``where``, ``clip``), :mod:`.reductions`, :mod:`.shapes`
(reshape, transpose, concatenate, gathers, ...), :mod:`.linalg` (``matmul``,
``einsum``, ``tensordot``, ``normalize``), :mod:`.attention` (``dot_product_attention``), :mod:`.creation`,
:mod:`.control_flow` (``cond``, ``while_loop``, ``fori_loop``: branches and loop bodies traced into sub-graphs).
"""

from __future__ import annotations

import builtins

import numpy as np

from . import attention, control_flow, creation, elementwise, linalg, reductions, shapes  # noqa: F401  (each registers its ops)
from .registry import REGISTRY, apply, get, make_function

globals().update({name: make_function(op) for name, op in REGISTRY.items()})
from .control_flow import cond, fori_loop, while_loop  # noqa: E402  (Keras's signatures, not the nodes')


def einsum(subscripts, *operands):
    """ops.einsum(subscripts, *operands): Einstein summation."""
    return apply(REGISTRY["einsum"], (list(operands),), {"subscripts": subscripts})


def dot_product_attention(query, key, value, bias=None, mask=None, scale=None, is_causal=False,
                          flash_attention=None, attn_logits_soft_cap=None):
    """ops.dot_product_attention(query, key, value, bias=None, mask=None, scale=None, is_causal=False): Keras's
    scaled dot-product attention on ``(batch, sequence, heads, features)`` tensors, masked logits replaced by
    -1e9 (:mod:`polykeras.ops.attention`). Each backend picks its kernel (``flash_attention`` may only be
    None or False); not yet: ``bias``, ``attn_logits_soft_cap``."""
    for name, value_ in (("bias", bias), ("attn_logits_soft_cap", attn_logits_soft_cap)):
        if value_ is not None:
            raise NotImplementedError(f"ops.dot_product_attention: {name} is not supported yet (got {value_!r})")
    if flash_attention:
        raise NotImplementedError("ops.dot_product_attention: flash_attention=True is not supported: each backend "
                                  "chooses its kernel; pass None")
    if mask is None:
        mask = np.ones((1, 1, 1, 1), dtype=bool)
    return apply(REGISTRY["dot_product_attention"], (query, key, value, mask),
                 {"scale": None if scale is None else float(scale), "is_causal": bool(is_causal)})


def top_k(x, k, sorted=True):
    """ops.top_k(x, k, sorted=True): ``(values, indices)`` of the k largest entries along the last axis,
    largest first (also for ``sorted=False``, whose order Keras leaves to the backend); among equal entries
    the lower index first. In a model: a ``top_k_indices`` node and a ``take_along_axis`` node, through
    which the values' gradient flows."""
    indices = apply(REGISTRY["top_k_indices"], (x,), {"k": k, "sorted": sorted})
    return apply(REGISTRY["take_along_axis"], (x, indices), {"axis": -1}), indices


def split(x, indices_or_sections, axis=0):
    """ops.split(x, indices_or_sections, axis=0): a list of sub-tensors along ``axis``, as ``np.split``
    (a number of equal sections, or the indices where each part starts). In a model, one ``getitem``
    node per part; the axis must be a static one, not the batch axis."""
    if not hasattr(x, "layer"):  # a concrete array
        return np.split(np.asarray(x), indices_or_sections, axis=axis)
    axis = axis + len(x.shape) if axis < 0 else axis
    if not 0 <= axis < len(x.shape):
        raise ValueError(f"ops.split: axis {axis} is out of range for a tensor of shape {x.shape}")
    if axis == 0 and x.batched:
        raise ValueError("ops.split along axis 0 splits the batch axis, which a model node keeps whole (losses, "
                         "batching and data parallelism read it); split a later axis (axis=1, ..., -1)")
    size = x.shape[axis]
    if size is None:
        raise ValueError(f"ops.split: axis {axis} of shape {x.shape} has no static size to split")
    if isinstance(indices_or_sections, int):
        if size % indices_or_sections:
            raise ValueError(f"ops.split: {size} entries along axis {axis} do not split into {indices_or_sections} "
                             "equal sections; give the split indices instead")
        step = size // indices_or_sections
        bounds = list(range(0, size + 1, step))
    else:
        bounds = [0] + [builtins.min(builtins.max(int(i), 0), size) for i in indices_or_sections] + [size]
    lead = (builtins.slice(None),) * axis  # ``slice``, ``min``, ``max`` here are ops
    return [x[lead + (builtins.slice(a, builtins.max(a, b)),)] for a, b in zip(bounds[:-1], bounds[1:])]


def shape(x) -> tuple:
    """The shape of ``x`` as a tuple (``None`` for a symbolic tensor's unknown sizes)."""
    return tuple(x.shape) if hasattr(x, "shape") else np.shape(x)


def convert_to_numpy(x) -> np.ndarray:
    return np.asarray(x)


convert_to_tensor = convert_to_numpy

__all__ = sorted(REGISTRY) + ["convert_to_numpy", "convert_to_tensor", "get", "shape", "split", "top_k"]
