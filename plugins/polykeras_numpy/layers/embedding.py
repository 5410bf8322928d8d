"""Embedding (Keras 3 semantics): a lookup table indexed by integer ids.

``y[..., :] = embeddings[x[...]]``: the output has the input's shape plus a
trailing ``output_dim`` axis. Non-integer inputs are cast to integers, as
Keras casts them to int32. An id outside ``[0, input_dim)`` is an error here
(TensorFlow on CPU raises too; on GPU it would silently return zeros, which
the reference refuses to specify). ``mask_zero=True`` is not supported.

The config and the id check are the core's rules,
:mod:`polykeras.layer_rules.normalization`. The ids are not differentiable;
the gradient of the table is a scatter-add of the output gradient into the
looked-up rows (repeated ids accumulate).
"""

from __future__ import annotations

import numpy as np

from .base import Kernel


class Embedding(Kernel):
    """Weight ``embeddings (input_dim, output_dim)``."""

    kind = "Embedding"
    differentiable_input = False

    def forward(self, weights, x, ctx):
        ids = self.rules.ids(x)  # integer ids, checked against input_dim
        return weights[0][ids], ids

    def backward(self, weights, cache, dy):
        ids = cache
        dtable = np.zeros_like(weights[0])
        np.add.at(dtable, ids.reshape(-1), dy.reshape(-1, self.rules.output_dim))
        return None, [dtable]
