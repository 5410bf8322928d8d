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
``einsum``, ``tensordot``, ``normalize``), :mod:`.creation`.
"""

from __future__ import annotations

import numpy as np

from . import creation, elementwise, linalg, reductions, shapes  # noqa: F401  (each registers its ops)
from .registry import REGISTRY, apply, get, make_function

globals().update({name: make_function(op) for name, op in REGISTRY.items()})


def einsum(subscripts, *operands):
    """ops.einsum(subscripts, *operands): Einstein summation."""
    return apply(REGISTRY["einsum"], (list(operands),), {"subscripts": subscripts})


def shape(x) -> tuple:
    """The shape of ``x`` as a tuple (``None`` for a symbolic tensor's unknown sizes)."""
    return tuple(x.shape) if hasattr(x, "shape") else np.shape(x)


def convert_to_numpy(x) -> np.ndarray:
    return np.asarray(x)


convert_to_tensor = convert_to_numpy

__all__ = sorted(REGISTRY) + ["convert_to_numpy", "convert_to_tensor", "get", "shape"]
