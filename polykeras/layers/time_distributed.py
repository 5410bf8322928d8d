"""Keras's ``TimeDistributed`` wrapper: one layer applied to every time slice of a
``(batch, time, ...)`` input, with one set of weights.

As in Keras 3 the wrapper uses the layer it is given (no copy): the layer is
built for one slice, ``(batch, *input_shape[2:])``, and its weights are the
wrapper's, named by their path below the wrapper (``dense/kernel``), as Keras
names them (``time_distributed/dense/kernel``). The wrapped layer's
``get_weights``/``set_weights`` read and write the weights the model trains.
The semantics -- the kinds it wraps, masks, dropout per time step -- are
:mod:`polykeras.layer_rules.time_distributed`.
"""

from __future__ import annotations

from polykeras.layer_rules.time_distributed import WRAPPABLE, slice_shape
from polykeras.layers.base import Layer
from polykeras.spec import WeightSpec


def _wrapped(value) -> Layer:
    """``value`` (a layer, or its ``{"class_name", "config"}`` from a config) as a layer TimeDistributed wraps."""
    if isinstance(value, dict) and "class_name" in value:
        from polykeras.layers import deserialize

        value = deserialize(value)
    if not isinstance(value, Layer):
        raise ValueError(f"TimeDistributed wraps a layer instance (e.g. TimeDistributed(Dense(8))); got {value!r}")
    if value.kind not in WRAPPABLE:
        raise NotImplementedError(f"TimeDistributed cannot wrap {value.kind} layer {value.name!r} yet; it wraps "
                                  f"{', '.join(WRAPPABLE)}")
    return value


class TimeDistributed(Layer):
    """``TimeDistributed(layer)``, as Keras's."""

    supports_masking = True  # the output's mask is the input's; the wrapped kinds read none

    def __init__(self, layer, **kwargs):
        layer = _wrapped(layer)
        super().__init__(**kwargs)
        self.layer = layer

    def _check_input_shape(self, input_shape):
        slice_shape(input_shape, self.name)

    def build(self, input_shape):
        inner = self.layer
        inner.build_for(slice_shape(input_shape, self.name))
        for spec, value, created in zip(inner._weight_specs, inner._weight_values, inner._created_trainable):
            self._record_weight(WeightSpec(f"{inner.name}/{spec.name}", spec.shape,
                                           spec.trainable and self.trainable, spec.regularizer), created)
            self._weight_values.append(value)
        self._share_weights()

    def _sublayers(self) -> list:
        return [self.layer]

    def _share_weights(self) -> None:
        """``layer.get_weights()``/``set_weights()`` read and write this layer's weights (the ones the model
        trains): in Keras the wrapped layer owns them."""
        self.layer.get_weights, self.layer.set_weights = self.get_weights, self.set_weights

    def compute_output_shape(self, input_shape):
        out = self.layer.compute_output_shape(slice_shape(input_shape, self.name))
        return (out[0], input_shape[1], *out[1:])

    def get_config(self):
        return {**super().get_config(), "layer": {"class_name": self.layer.kind, "config": self.layer.get_config()}}

    def to_spec(self, *args, **kwargs):
        """The wrapped layer's config in the spec carries what the math needs, as a layer's own does."""
        spec = super().to_spec(*args, **kwargs)
        entry = spec.config["layer"]
        spec.config["layer"] = {"class_name": entry["class_name"], "config": {
            k: v for k, v in entry["config"].items() if k not in ("trainable", "dtype", "batch_input_shape")
            and not k.endswith(("_initializer", "_regularizer", "_constraint"))}}
        return spec
