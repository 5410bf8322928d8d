"""TimeDistributed: one layer applied to every time slice of a ``(batch, time, ...)``
input, with one set of weights (Keras 3 semantics).

* The config holds the wrapped layer as Keras serialises it, ``layer``: a
  ``{"class_name", "config"}`` of one of :data:`WRAPPABLE` -- kinds whose math
  treats each sample alone, so that running them once on the batch and time axes
  folded together (``(batch * time, ...)``) is Keras's loop over the slices.
  BatchNormalization is refused (Keras normalises each slice by its own batch
  statistics and moves the moving statistics once per slice); so are recurrent
  layers, layers that read or make a mask, merge layers and nested wrappers.
* Weights: the wrapped layer's, in its canonical order; the spec names them by
  their path below the wrapper (``dense/kernel``), as Keras does.
* Output shape: the wrapped layer's on a slice ``(batch, *input[2:])``, with the
  time axis put back at position 1.
* Masks pass through: the output's mask is the input's (Keras's
  ``compute_mask`` of a layer that ``supports_masking``); the wrapped kinds
  read none.
* Dropout (``Dropout``, ``SpatialDropout1D/2D`` wrapped): Keras calls the
  wrapped layer once per time step, so each step draws a mask of its own. In
  parity mode the host draws them all at once, as one mask of shape
  :meth:`TimeDistributedRules.mask_shape`: the slice's mask shape ``S`` with the
  time axis inserted after the batch axis, ``(S[0], time, *S[1:])``, stream 0 of
  the wrapper's node. A ``noise_shape`` must leave the batch axis ``None``.
"""

from __future__ import annotations

import dataclasses

from polykeras.spec import LayerSpec, Shape

from .base import LayerRules
from .core import DropoutRules

#: The kinds TimeDistributed wraps: per-sample math, no state, no masks.
WRAPPABLE = ("Dense", "Activation", "Dropout", "SpatialDropout1D", "SpatialDropout2D", "Flatten", "Reshape",
             "Conv1D", "Conv2D", "MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D",
             "GlobalAveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "LayerNormalization",
             "UnitNormalization")


def slice_shape(input_shape: Shape, layer: str) -> Shape:
    """One time slice's shape ``(batch, *input[2:])``; ``ValueError`` below rank 3."""
    if len(input_shape) < 3:
        raise ValueError(f"TimeDistributed layer {layer!r} expects input of rank 3 or more (batch, time, ...), got "
                         f"shape {tuple(input_shape)}")
    return (input_shape[0], *input_shape[2:])


class TimeDistributedRules(LayerRules):
    """:attr:`inner`, the wrapped layer's rules, read from :attr:`inner_spec` (a spec of its own on one time
    slice, carrying the wrapper's weights); :attr:`dropout`, whether the wrapped layer is a dropout kind."""

    kind = "TimeDistributed"

    def __init__(self, spec, backend="polykeras"):
        super().__init__(spec, backend)
        from . import RULES

        entry = self.config.get("layer")
        kind = entry.get("class_name") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
            raise ValueError(f"TimeDistributed layer {self.name!r}: layer must be a layer config "
                             f"{{'class_name', 'config'}}; got {entry!r}")
        if kind not in WRAPPABLE:
            raise self.unsupported(f"wrapping a {kind} layer", f"; TimeDistributed wraps {', '.join(WRAPPABLE)}")
        config = entry["config"]
        shape = tuple(spec.input_shapes[0]) if spec.input_shapes else (None, None, None)
        inner = LayerSpec(name=f"{spec.name}/{config.get('name', kind.lower())}", kind=kind, config=config,
                          inbound=spec.inbound, input_shapes=(slice_shape(shape, self.name),), output_shape=(None,),
                          weights=spec.weights)
        self.inner: LayerRules = RULES[kind](inner, backend)
        self.inner_spec = dataclasses.replace(inner, output_shape=self.inner.output_shape(inner.input_shape))
        self.inner.spec = self.inner_spec
        self.dropout = isinstance(self.inner, DropoutRules)
        noise = config.get("noise_shape") if self.dropout else None
        if noise is not None and noise[0] is not None:
            raise self.unsupported(f"a wrapped {kind} with noise_shape={list(noise)}",
                                   "; leave its batch entry None (each time step draws its own mask)")

    def output_shape(self, input_shape: Shape) -> Shape:
        out = self.inner.output_shape(slice_shape(input_shape, self.name))
        return (out[0], input_shape[1], *out[1:])

    def mask_shape(self, x_shape: tuple) -> tuple:
        """The parity-mode dropout mask of a wrapped dropout kind for an input of ``x_shape``: the slice's
        mask shape with the time axis inserted, ``(S[0], time, *S[1:])`` (one mask per time step)."""
        inner = self.inner.mask_shape(slice_shape(x_shape, self.name))
        return (inner[0], x_shape[1], *inner[1:])
