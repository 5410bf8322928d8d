"""Keras's activation layers -- ``ReLU``, ``LeakyReLU``, ``ELU``, ``Softmax``, ``PReLU`` -- written as Keras 3
writes them: ``call`` applies the matching :mod:`polykeras.activations` function, which is made of
``polykeras.ops``. So they are traced into op nodes (no spec kind, no per-backend code: every
backend that runs the ops runs them, the NumPy reference included), and a ``.keras`` file names
them as the Keras layer classes they are (:data:`polykeras.layers.TRACED_LAYERS`).

They pass an input's mask on (Keras's ``supports_masking``); ``Softmax`` also reads it, as Keras's
does: masked positions get probability 0.
"""

from __future__ import annotations

import warnings

from polykeras import activations
from polykeras.layers.base import Layer


def _non_negative(layer: str, name: str, value) -> float:
    if value is None or float(value) < 0.0:
        raise ValueError(f"{name} of a {layer} layer cannot be None or a negative value; got {name}={value!r}")
    return float(value)


class ReLU(Layer):
    """``ReLU(max_value=None, negative_slope=0.0, threshold=0.0)``: ``x`` above ``threshold`` (else 0),
    at most ``max_value``, ``negative_slope * (x - threshold)`` below the threshold."""

    supports_masking = True

    def __init__(self, max_value: float | None = None, negative_slope: float = 0.0, threshold: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if max_value is not None and float(max_value) < 0.0:
            raise ValueError(f"max_value of a ReLU layer cannot be a negative value; got max_value={max_value!r}")
        self.max_value = None if max_value is None else float(max_value)
        self.negative_slope = _non_negative("ReLU", "negative_slope", negative_slope)
        self.threshold = _non_negative("ReLU", "threshold", threshold)

    def call(self, inputs):
        return activations.relu(inputs, negative_slope=self.negative_slope, max_value=self.max_value,
                                threshold=self.threshold)

    def get_config(self):
        return {**super().get_config(), "max_value": self.max_value, "negative_slope": self.negative_slope,
                "threshold": self.threshold}


class LeakyReLU(Layer):
    """``LeakyReLU(negative_slope=0.3)``: ``x`` where ``x >= 0``, else ``negative_slope * x``
    (Keras 2's ``alpha=`` is accepted with Keras 3's deprecation warning)."""

    supports_masking = True

    def __init__(self, negative_slope: float = 0.3, **kwargs):
        if "alpha" in kwargs:
            negative_slope = kwargs.pop("alpha")
            warnings.warn("Argument `alpha` is deprecated. Use `negative_slope` instead.", stacklevel=2)
        super().__init__(**kwargs)
        self.negative_slope = _non_negative("LeakyReLU", "negative_slope", negative_slope)

    def call(self, inputs):
        return activations.leaky_relu(inputs, negative_slope=self.negative_slope)

    def get_config(self):
        return {**super().get_config(), "negative_slope": self.negative_slope}


class ELU(Layer):
    """``ELU(alpha=1.0)``: ``x`` where ``x > 0``, else ``alpha * (exp(x) - 1)``."""

    supports_masking = True

    def __init__(self, alpha: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = float(alpha)

    def call(self, inputs):
        return activations.elu(inputs, alpha=self.alpha)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


def _large_negative_number(dtype: str) -> float:
    return -3e4 if dtype == "float16" else -1e9


class Softmax(Layer):
    """``Softmax(axis=-1)``; with a mask (the input's, or ``mask=``, broadcastable to the input),
    masked positions score ``-1e9`` before the softmax and are 0 after it, as in Keras."""

    supports_masking = True

    def __init__(self, axis: int | tuple[int, ...] = -1, **kwargs):
        super().__init__(**kwargs)
        self.axis = list(axis) if isinstance(axis, (list, tuple)) else int(axis)

    def call(self, inputs, mask=None):
        from polykeras import ops

        if mask is not None:
            if len(mask.shape) > len(inputs.shape) or any(
                    m is not None and i is not None and m not in (1, i)
                    for m, i in zip(tuple(mask.shape)[::-1], tuple(inputs.shape)[::-1])):
                raise ValueError(f"Softmax layer {self.name!r}: the mask must be broadcastable to the inputs; got "
                                 f"inputs.shape={tuple(inputs.shape)}, mask.shape={tuple(mask.shape)}")
            if str(mask.dtype) != "bool":
                mask = ops.greater(mask, 0.5)
            inputs = ops.where(mask, inputs, _large_negative_number(str(inputs.dtype)))
        axis = self.axis
        if isinstance(axis, list) and len(axis) > 1:
            outputs = ops.exp(ops.subtract(inputs, ops.logsumexp(inputs, axis=tuple(axis), keepdims=True)))
        else:
            outputs = activations.softmax(inputs, axis=axis[0] if isinstance(axis, list) else axis)
        if mask is not None:
            outputs = ops.where(mask, outputs, 0.0)
        return outputs

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


class PReLU(Layer):
    """``PReLU(alpha_initializer="Zeros", alpha_regularizer=None, alpha_constraint=None, shared_axes=None)``:
    ``x`` where ``x >= 0``, else ``alpha * x``, with ``alpha`` a weight of the input's shape (batch axis
    excluded; size 1 along ``shared_axes``). Constraints are refused, as ``add_weight`` refuses them."""

    supports_masking = True

    def __init__(self, alpha_initializer="Zeros", alpha_regularizer=None, alpha_constraint=None, shared_axes=None,
                 **kwargs):
        from polykeras import initializers, regularizers

        super().__init__(**kwargs)
        if alpha_constraint is not None:
            raise NotImplementedError(f"PReLU layer {self.name!r}: alpha_constraint is not supported (weight "
                                      "constraints are not implemented)")
        self.alpha_initializer = initializers.get(alpha_initializer)
        self.alpha_regularizer = regularizers.get(alpha_regularizer)
        if shared_axes is None:
            self.shared_axes = None
        else:
            self.shared_axes = [int(a) for a in (shared_axes if isinstance(shared_axes, (list, tuple))
                                                 else [shared_axes])]

    def build(self, input_shape):
        shape = list(input_shape[1:])
        for axis in self.shared_axes or []:
            if not 1 <= axis <= len(shape):
                raise ValueError(f"PReLU layer {self.name!r}: shared_axes holds {axis}, but the input "
                                 f"{tuple(input_shape)} has axes 1..{len(shape)} (axis 0 is the batch)")
            shape[axis - 1] = 1
        if any(d is None for d in shape):
            raise ValueError(f"PReLU layer {self.name!r}: alpha needs a known size on every axis it does not share; "
                             f"input shape {tuple(input_shape)} (share the unknown axes with shared_axes=...)")
        self.alpha = self.add_weight(shape=tuple(shape), name="alpha", initializer=self.alpha_initializer,
                                     regularizer=self.alpha_regularizer)

    def call(self, inputs):
        from polykeras import ops

        return ops.subtract(activations.relu(inputs),
                            ops.multiply(self.alpha, activations.relu(ops.negative(inputs))))

    def get_config(self):
        from polykeras import initializers
        from polykeras.layers.base import serialize_regularizer

        return {**super().get_config(), "alpha_initializer": initializers.serialize(self.alpha_initializer),
                "alpha_regularizer": serialize_regularizer(self.alpha_regularizer), "alpha_constraint": None,
                "shared_axes": self.shared_axes}


ACTIVATION_LAYERS = (ReLU, LeakyReLU, ELU, Softmax, PReLU)
