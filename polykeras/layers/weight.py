"""A built layer's weight as Keras code sees it: ``layer.weights[i]`` or ``layer.kernel``.

polykeras keeps a layer's weights as host arrays (and, once a model runs, in its program), so a
:class:`Weight` is a view that reads the current value and writes through ``set_weights`` -- the
one path that checks the shape and hands the value to a running program.
"""

from __future__ import annotations

import numpy as np


class Weight:
    """One weight of a built layer: ``name``, ``shape``, ``trainable``, ``dtype``, its value
    (``numpy()``, ``value``, ``np.asarray``) and Keras's ``assign``/``assign_add``/``assign_sub``."""

    def __init__(self, layer, index: int):
        self._layer, self._index = layer, index
        spec = layer._weight_specs[index]
        self.name, self.shape, self.trainable = spec.name, spec.shape, spec.trainable

    @property
    def path(self) -> str:
        return f"{self._layer.name}/{self.name}"

    @property
    def dtype(self) -> str:
        return str(self._layer._weight_values[self._index].dtype)

    def numpy(self) -> np.ndarray:
        return self._layer.get_weights()[self._index]

    @property
    def value(self) -> np.ndarray:
        return self.numpy()

    def assign(self, value) -> "Weight":
        """Set the weight (same shape; cast to its dtype), in the layer and in any model running it."""
        weights = self._layer.get_weights()
        weights[self._index] = np.asarray(value)
        self._layer.set_weights(weights)
        return self

    def assign_add(self, delta) -> "Weight":
        return self.assign(self.numpy() + np.asarray(delta))

    def assign_sub(self, delta) -> "Weight":
        return self.assign(self.numpy() - np.asarray(delta))

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.numpy(), dtype=dtype)

    def __repr__(self) -> str:
        return f"<Weight path={self.path} shape={self.shape} dtype={self.dtype}>"


def named_weight(layer, name: str) -> Weight:
    """``layer.<name>`` for a built-in layer's weight (``dense.kernel``, ``bn.moving_mean``), as Keras's
    layers have them as attributes; an ``AttributeError`` for anything else."""
    specs = layer.__dict__.get("_weight_specs") or ()
    for i, spec in enumerate(specs):
        if spec.name == name:
            return Weight(layer, i)
    built = layer.__dict__.get("built")
    hint = "" if built or built is None else " (the layer is not built yet: its weights exist after build)"
    raise AttributeError(f"{type(layer).__name__!r} object has no attribute {name!r}{hint}")
