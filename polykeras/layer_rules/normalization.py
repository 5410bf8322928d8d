"""BatchNormalization and Embedding (Keras 3 semantics).

* ``BatchNormalization`` normalises over every axis but the last (the feature
  axis; other axes are not supported). Training uses the batch mean and
  *biased* variance and moves the non-trainable statistics
  ``moving = moving * momentum + batch * (1 - momentum)``; inference uses the
  moving statistics. Weights, in Keras's order: ``gamma`` (if ``scale``),
  ``beta`` (if ``center``), ``moving_mean``, ``moving_variance``; their
  positions are :attr:`BatchNormalizationRules.gamma_index` and so on.
* ``Embedding`` looks rows up by integer id: the output is the ids' shape plus
  ``output_dim``. Non-integer ids are cast to integers, as Keras casts them to
  int32; an id outside ``[0, input_dim)`` is an error
  (:meth:`EmbeddingRules.ids`; TensorFlow on CPU raises too, on GPU it would
  silently return zeros). ``mask_zero=True`` is not supported.
* ``LayerNormalization`` normalises each sample over ``axis`` (an int or a
  list; :func:`layer_norm_axes`) with the *biased* variance, in Keras's
  order of operations: ``inv = rsqrt(var + epsilon) * gamma``,
  ``y = x * inv + (beta - mean * inv)``. ``rms_scaling=True`` is Keras's
  (deprecated) variant ``y = x * rsqrt(var + epsilon) * gamma``: the variance
  still subtracts the mean, the output does not, and there is no ``beta``.
  Weights, in Keras's order: ``gamma`` (if ``scale`` or ``rms_scaling``),
  ``beta`` (if ``center`` and not ``rms_scaling``), both shaped as the
  normalised axes' sizes in sorted-axis order.
"""

from __future__ import annotations

import numpy as np

from polykeras.spec import Shape

from .base import LayerRules, SameShape


class BatchNormalizationRules(SameShape):
    """``momentum``, ``epsilon``, ``scale``, ``center`` and the weight
    positions ``gamma_index``/``beta_index`` (``None`` when absent),
    ``mean_index``, ``variance_index``."""

    kind = "BatchNormalization"

    def __init__(self, spec, backend="polykeras"):
        super().__init__(spec, backend)
        cfg = self.config
        axis = cfg.get("axis", -1)
        if isinstance(axis, (list, tuple)):
            axis = axis[0] if len(axis) == 1 else axis
        rank = len(spec.input_shape) if spec.input_shapes else None
        if not (axis == -1 or (rank is not None and axis == rank - 1)):
            raise self.unsupported(f"axis={cfg.get('axis')!r}", "; only the last axis (axis=-1, channels_last) is")
        self.momentum = float(cfg.get("momentum", 0.99))
        self.epsilon = float(cfg.get("epsilon", 1e-3))
        self.scale = bool(cfg.get("scale", True))
        self.center = bool(cfg.get("center", True))
        position = 0
        self.gamma_index: int | None = None
        self.beta_index: int | None = None
        if self.scale:
            self.gamma_index, position = position, position + 1
        if self.center:
            self.beta_index, position = position, position + 1
        self.mean_index, self.variance_index = position, position + 1


class EmbeddingRules(LayerRules):
    """``input_dim``, ``output_dim``; :meth:`ids` checks a batch of ids."""

    kind = "Embedding"

    def __init__(self, spec, backend="polykeras"):
        super().__init__(spec, backend)
        self.input_dim = int(self.config["input_dim"])
        self.output_dim = int(self.config["output_dim"])
        # mask_zero: the mask is a node of its own (an op), so the layer computes the same either way

    def output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape) + (self.output_dim,)

    def ids(self, x) -> np.ndarray:
        """``x`` as an integer array (cast if needed), after checking that every
        id indexes the table: ``ValueError`` naming the layer and the id otherwise."""
        ids = np.asarray(x)
        if not np.issubdtype(ids.dtype, np.integer):
            ids = ids.astype(np.int64)
        if ids.size:
            low, high = int(ids.min()), int(ids.max())
            bad = low if low < 0 else high if high >= self.input_dim else None
            if bad is not None:
                raise ValueError(
                    f"Embedding layer {self.name!r}: index {bad} is out of range for "
                    f"input_dim={self.input_dim} (valid ids are 0..{self.input_dim - 1}); "
                    "raise input_dim or clip the ids (e.g. imdb.load_data(num_words=...))"
                )
        return ids


def layer_norm_axes(axis, rank: int, layer: str) -> tuple[int, ...]:
    """LayerNormalization's ``axis`` (int or list) as non-negative axes of a
    rank-``rank`` input (batch included), in Keras's order (the config's
    values sorted). ``ValueError`` for the batch axis or one out of range;
    ``NotImplementedError`` for a mix of negative and non-negative axes whose
    sorted order is not the axes' order, where Keras reshapes (not
    transposes) ``gamma``/``beta`` into place."""
    raw = sorted(int(a) for a in (axis if isinstance(axis, (list, tuple)) else [axis]))
    if not raw:
        raise ValueError(f"LayerNormalization layer {layer!r}: axis must name at least one axis")
    for a in raw:
        if not -rank <= a < rank or a % rank == 0:
            raise ValueError(f"LayerNormalization layer {layer!r}: axis {a} is out of range (or the batch axis) "
                             f"for an input of rank {rank}")
    axes = tuple(a % rank for a in raw)
    if len(set(axes)) != len(axes):
        raise ValueError(f"LayerNormalization layer {layer!r}: axis {axis!r} names an axis twice")
    if list(axes) != sorted(axes):
        raise NotImplementedError(f"LayerNormalization layer {layer!r}: axis={axis!r} mixes negative and "
                                  "non-negative axes out of order, where Keras reshapes gamma/beta into the "
                                  "wrong place; write the axes all non-negative or all negative")
    return axes


class LayerNormalizationRules(SameShape):
    """``axes`` (non-negative, sorted), ``epsilon``, ``center``, ``scale``,
    ``rms_scaling``, the weight positions ``gamma_index``/``beta_index``
    (``None`` when absent) and :meth:`weight_shape`: where the weights
    broadcast against the input."""

    kind = "LayerNormalization"

    def __init__(self, spec, backend="polykeras"):
        super().__init__(spec, backend)
        cfg = self.config
        self.rank = len(spec.input_shape)
        self.axes = layer_norm_axes(cfg.get("axis", -1), self.rank, self.name)
        self.epsilon = float(cfg.get("epsilon", 1e-3))
        self.rms_scaling = bool(cfg.get("rms_scaling", False))
        self.scale = bool(cfg.get("scale", True)) or self.rms_scaling
        self.center = bool(cfg.get("center", True)) and not self.rms_scaling
        self.gamma_index = 0 if self.scale else None
        self.beta_index = int(self.scale) if self.center else None
        #: the axes the statistics are *not* taken over (batch included): weight gradients sum over them
        self.other_axes = tuple(a for a in range(self.rank) if a not in self.axes)

    def weight_shape(self, input_shape) -> tuple[int, ...]:
        """``gamma``/``beta`` reshaped to broadcast over an input of ``input_shape``."""
        return tuple(int(d) if a in self.axes else 1 for a, d in enumerate(input_shape))


class GroupNormalizationRules(SameShape):
    """``groups`` (``-1``: one per channel), ``epsilon``, ``center``, ``scale``, the
    weight positions, and :meth:`grouped_shape`. The channel axis must be the last
    (``axis=-1``, channels_last). Keras's order of operations, per sample and group
    over every non-batch axis: ``inv = rsqrt(var + eps) * gamma``,
    ``y = x * inv + (beta - mean * inv)``; ``gamma``/``beta`` are per channel."""

    kind = "GroupNormalization"

    def __init__(self, spec, backend="polykeras"):
        super().__init__(spec, backend)
        cfg = self.config
        rank = len(spec.input_shape)
        axis = cfg.get("axis", -1)
        if axis not in (-1, rank - 1):
            raise self.unsupported(f"axis={axis!r}", "; only the last axis (axis=-1, channels_last) is")
        channels = spec.input_shape[-1]
        groups = int(cfg.get("groups", 32))
        self.groups = int(channels) if groups == -1 else groups
        if self.groups <= 0 or channels is None or channels % self.groups:
            raise ValueError(f"GroupNormalization layer {self.name!r}: groups={groups} must divide the "
                             f"{channels} channels (or be -1: one group per channel)")
        self.epsilon = float(cfg.get("epsilon", 1e-3))
        self.scale = bool(cfg.get("scale", True))
        self.center = bool(cfg.get("center", True))
        self.gamma_index = 0 if self.scale else None
        self.beta_index = int(self.scale) if self.center else None

    def grouped_shape(self, shape) -> tuple[int, ...]:
        """``shape`` with its channel axis split into ``(groups, channels // groups)``."""
        return tuple(shape[:-1]) + (self.groups, int(shape[-1]) // self.groups)

    def reduced_axes(self, rank: int) -> tuple[int, ...]:
        """The axes of a grouped array of ``rank`` (input rank + 1) that the statistics are taken over."""
        return tuple(range(1, rank - 2)) + (rank - 1,)


class UnitNormalizationRules(SameShape):
    """``axes`` (non-negative) and ``epsilon`` (1e-12, Keras's fixed value):
    ``y = x * min(1 / sqrt(sum(x^2)), 1 / epsilon)`` over the axes (``ops.normalize``)."""

    kind = "UnitNormalization"
    epsilon = 1e-12

    def __init__(self, spec, backend="polykeras"):
        super().__init__(spec, backend)
        rank = len(spec.input_shape)
        axis = self.config.get("axis", -1)
        axes = [axis] if isinstance(axis, int) else list(axis)
        for a in axes:
            if not -rank <= a < rank or a % rank == 0:
                raise ValueError(f"UnitNormalization layer {self.name!r}: axis {a} is out of range (or the batch "
                                 f"axis) for an input of rank {rank}")
        self.axes = tuple(sorted({a % rank for a in axes}))
