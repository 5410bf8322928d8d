"""Masking, as Keras defines it: which time steps of a sequence are padding.

A *mask* is a boolean tensor ``(batch, T)`` that travels with a symbolic tensor
(:attr:`~polykeras.layers.symbolic.SymbolicTensor.mask`, Keras's ``_keras_mask``):

* made by ``Embedding(mask_zero=True)`` (``ids != 0``) or :class:`Masking`
  (``any(x != mask_value, axis=-1)``) -- recorded as ``polykeras.ops`` nodes, so the
  mask is an ordinary graph value that every backend computes;
* passed on unchanged by layers that ``supports_masking`` (Dense, Activation, Dropout,
  the normalizations, ...); merged with ``logical_and`` by the merge layers; dropped by
  the others (Flatten, convolutions, ...), as in Keras 3;
* read by the layers that ``reads_mask``: SimpleRNN/LSTM/GRU skip masked steps -- the
  state (``h``, and LSTM's ``c``) is carried over them unchanged and the output at a
  masked step is the carried ``h`` (Keras's ``zero_output_for_mask=False``); with
  ``go_backwards`` the mask is reversed with the sequence; a recurrent layer's output
  keeps the mask with ``return_sequences`` and has none without. Bidirectional hands the
  mask to both its layers (the backward one reverses it with the sequence) and, with
  ``return_sequences``, outputs zeros at masked steps (Keras forces
  ``zero_output_for_mask`` there; :mod:`polykeras.layer_rules.bidirectional`). GlobalAveragePooling1D
  averages the unmasked steps only (``sum(x * m) / sum(m)``); MultiHeadAttention attends
  only from unmasked queries to unmasked keys and passes the query's mask on.

In the spec, a node that reads a mask names the node that computes it in
``LayerSpec.mask``; the graph feature ``"masking"`` tells backends without it apart.

A masked output's loss and mean metrics are weighted by its mask as Keras weights them
(:mod:`polykeras.loss_masks`).
"""

from __future__ import annotations

from polykeras.layers.base import Layer


class Masking(Layer):
    """Keras's ``Masking(mask_value=0.0)``: steps whose features all equal ``mask_value`` are
    masked (and zeroed). Written with ``polykeras.ops``, so every backend runs it as ops."""

    supports_masking = True

    def __init__(self, mask_value: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.mask_value = float(mask_value)

    def call(self, inputs):
        from polykeras import ops

        return inputs * ops.cast(self.compute_mask(inputs), inputs.dtype)[..., None]

    def compute_mask(self, inputs, mask=None):
        from polykeras import ops

        return ops.any(ops.not_equal(inputs, self.mask_value), axis=-1)

    def get_config(self):
        return {**super().get_config(), "mask_value": self.mask_value}


def combined(masks: list):
    """The merge layers' output mask: the ``logical_and`` of the inputs' masks (``None`` for none)."""
    from polykeras import ops

    present = [m for m in masks if m is not None]
    if not present:
        return None
    out = present[0]
    for m in present[1:]:
        out = out if m is out else ops.logical_and(out, m)
    return out
