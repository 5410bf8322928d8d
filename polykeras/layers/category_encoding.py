"""Keras's ``CategoryEncoding``: integer ids as one-hot, multi-hot or count vectors,
written with :mod:`polykeras.ops` and traced (every backend runs it; no weights, no
gradient to the ids)."""

from __future__ import annotations

from polykeras import ops
from polykeras.layers.base import Layer

MODES = ("one_hot", "multi_hot", "count")


class CategoryEncoding(Layer):
    """``CategoryEncoding(num_tokens, output_mode="multi_hot")`` on ids ``(batch,)`` or
    ``(batch, k)``: ``one_hot`` gives a vector per id (a trailing axis of 1 is squeezed, as
    Keras does), ``multi_hot`` marks the ids present in each row, ``count`` counts them;
    every id must be in ``[0, num_tokens)``. Not yet: ``sparse=True``, ``count_weights``."""

    def __init__(self, num_tokens=None, output_mode: str = "multi_hot", sparse: bool = False, **kwargs):
        super().__init__(**kwargs)
        output_mode = "multi_hot" if output_mode == "binary" else output_mode
        if output_mode not in MODES:
            raise ValueError(f"CategoryEncoding layer {self.name!r}: output_mode must be one of "
                             f"{', '.join(map(repr, MODES))}; got {output_mode!r}")
        if num_tokens is None or int(num_tokens) < 1:
            raise ValueError(f"CategoryEncoding layer {self.name!r}: num_tokens must be set to a positive number of "
                             f"ids; got {num_tokens!r}")
        if sparse:
            raise NotImplementedError(f"CategoryEncoding layer {self.name!r}: sparse=True is not supported; the "
                                      "output is dense")
        self.num_tokens, self.output_mode, self.sparse = int(num_tokens), output_mode, False

    def call(self, inputs, count_weights=None):
        if count_weights is not None:
            raise NotImplementedError(f"CategoryEncoding layer {self.name!r}: count_weights is not supported yet")
        rank = len(inputs.shape)
        if self.output_mode == "one_hot":
            if rank > 1 and inputs.shape[-1] == 1:
                inputs = ops.squeeze(inputs, axis=-1)
            return ops.one_hot(inputs, self.num_tokens, dtype=self.dtype or "float32")
        encoded = ops.one_hot(inputs if rank > 1 else ops.expand_dims(inputs, -1), self.num_tokens,
                              dtype=self.dtype or "float32")
        return ops.max(encoded, axis=-2) if self.output_mode == "multi_hot" else ops.sum(encoded, axis=-2)

    def get_config(self):
        return {**super().get_config(), "num_tokens": self.num_tokens, "output_mode": self.output_mode,
                "sparse": self.sparse}
