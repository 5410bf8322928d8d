"""Embedding (Keras 3 semantics): a lookup table indexed by integer ids.

``y[..., :] = embeddings[x[...]]``: the output has the input's shape plus a
trailing ``output_dim`` axis. Non-integer inputs are cast to integers, as
Keras casts them to int32. An id outside ``[0, input_dim)`` is an error here
(TensorFlow on CPU raises too; on GPU it would silently return zeros, which
the reference refuses to specify). ``mask_zero=True`` is not supported.

The ids are not differentiable; the gradient of the table is a scatter-add of
the output gradient into the looked-up rows (repeated ids accumulate).
"""

from __future__ import annotations

import numpy as np

from .base import Kernel


class Embedding(Kernel):
    """Weight ``embeddings (input_dim, output_dim)``."""

    kind = "Embedding"
    differentiable_input = False

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        self.input_dim = int(self.config["input_dim"])
        self.output_dim = int(self.config["output_dim"])
        if self.config.get("mask_zero", False):
            raise NotImplementedError(
                f"Embedding layer {spec.name!r}: mask_zero=True is not supported by the NumPy "
                "reference (masks are not propagated); use mask_zero=False"
            )

    def _ids(self, x: np.ndarray) -> np.ndarray:
        ids = np.asarray(x)
        if not np.issubdtype(ids.dtype, np.integer):
            ids = ids.astype(np.int64)
        if ids.size:
            low, high = int(ids.min()), int(ids.max())
            bad = low if low < 0 else high if high >= self.input_dim else None
            if bad is not None:
                raise ValueError(
                    f"Embedding layer {self.spec.name!r}: index {bad} is out of range for "
                    f"input_dim={self.input_dim} (valid ids are 0..{self.input_dim - 1}); "
                    "raise input_dim or clip the ids (e.g. imdb.load_data(num_words=...))"
                )
        return ids

    def forward(self, weights, x, ctx):
        ids = self._ids(x)
        return weights[0][ids], ids

    def backward(self, weights, cache, dy):
        ids = cache
        dtable = np.zeros_like(weights[0])
        np.add.at(dtable, ids.reshape(-1), dy.reshape(-1, self.output_dim))
        return None, [dtable]
