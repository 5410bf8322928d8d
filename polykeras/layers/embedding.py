"""Embedding: integer indices to dense vectors, table ``(input_dim, output_dim)``; with
``mask_zero`` id 0 is padding and the output carries the mask ``ids != 0``
(:mod:`polykeras.layers.masking`)."""

from __future__ import annotations

from polykeras import initializers, regularizers
from polykeras.layers.base import Layer, serialize_regularizer


class Embedding(Layer):
    def __init__(self, input_dim: int, output_dim: int, embeddings_initializer="uniform",
                 embeddings_regularizer=None, mask_zero: bool = False, input_length=None, **kwargs):
        if input_length is not None and "input_shape" not in kwargs:
            kwargs["input_shape"] = (input_length,)  # Keras 2's way of fixing the sequence length
        super().__init__(**kwargs)
        self.input_dim, self.output_dim = int(input_dim), int(output_dim)
        self.mask_zero = bool(mask_zero)
        self.embeddings_initializer = initializers.get(embeddings_initializer)
        self.embeddings_regularizer = regularizers.get(embeddings_regularizer)

    def build(self, input_shape):
        self._add_weight("embeddings", (self.input_dim, self.output_dim), self.embeddings_initializer,
                        self.embeddings_regularizer)

    def compute_mask(self, inputs, mask=None):
        """With ``mask_zero``, id 0 is padding: the mask ``ids != 0`` (recorded as an op)."""
        if not self.mask_zero:
            return None
        from polykeras import ops

        return ops.not_equal(inputs, 0)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def get_config(self):
        return {**super().get_config(), "input_dim": self.input_dim, "output_dim": self.output_dim,
                "embeddings_initializer": initializers.serialize(self.embeddings_initializer),
                "embeddings_regularizer": serialize_regularizer(self.embeddings_regularizer),
                "mask_zero": self.mask_zero}
