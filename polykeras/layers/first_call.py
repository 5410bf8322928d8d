"""Keras's ``layer.input`` and ``layer.output``: the symbolic tensors of a layer's first call.

As in Keras 3, a layer called several times (a shared layer) answers with its first call; a layer
never called on symbolic tensors has neither, and says so. The usual use is a feature extractor::

    features = keras.Model(model.inputs, model.get_layer("dense").output)
"""

from __future__ import annotations


class FirstCall:
    """The mixin :class:`polykeras.layers.base.Layer` gets ``input`` and ``output`` from."""

    #: (the call's input tensor or list of them, its output tensor), for the first symbolic call
    _first_call: tuple | None = None

    def _remember(self, inputs, output):
        """Record a symbolic call (the first one counts); return its ``output``."""
        if self._first_call is None:
            self._first_call = (inputs, output)
        return output

    def _first(self, what: str) -> tuple:
        if self._first_call is None:
            raise AttributeError(f"layer {self.name!r} has never been called on symbolic tensors and thus has no "
                                 f"defined {what}; call it on Input(...) or inside a model first")
        return self._first_call

    @property
    def input(self):
        """The input tensor (a list for a layer of several inputs) of the layer's first call."""
        return self._first("input")[0]

    @property
    def output(self):
        """The output tensor of the layer's first call."""
        return self._first("output")[1]
