"""Padding, cropping, upsampling and shape layers (Keras 3 semantics, channels_last).

* ``ZeroPadding1D/2D`` add zeros before and after each spatial axis and
  ``Cropping1D/2D`` remove rows there: ``padding``/``cropping`` is an int
  (the same amount everywhere), one int per axis (before = after), or one
  ``(before, after)`` pair per axis (:func:`amounts`). Cropping at least a
  whole axis is an error, as in Keras.
* ``UpSampling1D/2D`` repeat each step / pixel ``size`` times along each
  spatial axis (``interpolation="nearest"``, Keras's ``ops.repeat``; the
  gradient sums each block). ``UpSampling2D(interpolation="bilinear")`` is
  ``tf.image.resize``'s half-pixel bilinear interpolation, which for an
  integer upscale samples input position ``(o + 0.5) / size - 0.5`` clamped
  to the edges: a fixed linear map per axis (:meth:`UpSamplingRules.bilinear_matrix`).
  Other interpolations are not supported.
* ``RepeatVector(n)``: ``(batch, features) -> (batch, n, features)``.
* ``Permute(dims)``: ``dims`` is a permutation of ``1..rank-1`` (the batch
  axis stays first): output axis ``i`` is input axis ``dims[i-1]``.
* ``Identity`` returns its input; ``Rescaling(scale, offset)`` returns
  ``x * scale + offset`` (each a number, or an array broadcasting against the
  per-sample shape NumPy-style without enlarging it).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from polykeras.spec import Shape

from .base import LayerRules, SameShape


def amounts(value, rank: int, what: str, layer: str) -> tuple[tuple[int, int], ...]:
    """Keras's forms of ``padding``/``cropping`` as one ``(before, after)`` pair
    per spatial axis: an int, ``rank`` ints, or ``rank`` pairs (a 1-D layer's
    pair is its one axis's ``(before, after)``)."""
    def pair(v) -> tuple[int, int]:
        if isinstance(v, (int, np.integer)):
            return int(v), int(v)
        v = tuple(int(a) for a in v)
        if len(v) != 2:
            raise ValueError(f"layer {layer!r}: {what} {value!r} must give (before, after) pairs of 2 ints")
        return v

    if isinstance(value, (int, np.integer)):
        out = (pair(value),) * rank
    elif rank == 1:
        out = (pair(value),)
    else:
        value = list(value)
        if len(value) != rank:
            raise ValueError(f"layer {layer!r}: {what} must be an int, {rank} ints or {rank} (before, after) "
                             f"pairs, got {value!r}")
        out = tuple(pair(v) for v in value)
    if any(a < 0 for p in out for a in p):
        raise ValueError(f"layer {layer!r}: {what} must not be negative, got {value!r}")
    return out


class _Spatial(LayerRules):
    """A layer over ``rank`` spatial axes (axes ``1..rank``) of channels_last data."""

    rank: ClassVar[int] = 2

    def __init__(self, spec, backend="polykeras"):
        super().__init__(spec, backend)
        self.require_channels_last()


class ZeroPadding2DRules(_Spatial):
    """``pads``: ``((top, bottom), (left, right))`` (one pair per spatial axis)."""

    kind = "ZeroPadding2D"

    def __init__(self, spec, backend="polykeras"):
        super().__init__(spec, backend)
        self.pads = amounts(self.config.get("padding", 1), self.rank, "padding", self.name)

    def output_shape(self, input_shape: Shape) -> Shape:
        spatial = tuple(None if n is None else n + b + a for n, (b, a) in zip(input_shape[1:-1], self.pads))
        return (input_shape[0],) + spatial + (input_shape[-1],)


class ZeroPadding1DRules(ZeroPadding2DRules):
    kind = "ZeroPadding1D"
    rank = 1


class Cropping2DRules(_Spatial):
    """``crops``: ``((top, bottom), (left, right))``; :meth:`slices` indexes the kept part."""

    kind = "Cropping2D"

    def __init__(self, spec, backend="polykeras"):
        super().__init__(spec, backend)
        self.crops = amounts(self.config.get("cropping", 0), self.rank, "cropping", self.name)

    def output_shape(self, input_shape: Shape) -> Shape:
        spatial = []
        for n, (b, a) in zip(input_shape[1:-1], self.crops):
            if n is not None and b + a >= n:
                raise ValueError(f"Cropping layer {self.name!r}: cropping {self.crops} removes a whole axis of "
                                 f"input shape {tuple(input_shape)}; Keras requires it to be smaller")
            spatial.append(None if n is None else n - b - a)
        return (input_shape[0],) + tuple(spatial) + (input_shape[-1],)

    def slices(self, input_shape) -> tuple[slice, ...]:
        """The index of the kept part of an input of ``input_shape`` (batch included)."""
        return (slice(None),) + tuple(slice(b, n - a) for n, (b, a) in zip(input_shape[1:-1], self.crops))


class Cropping1DRules(Cropping2DRules):
    kind = "Cropping1D"
    rank = 1


class UpSampling2DRules(_Spatial):
    """``size`` (one factor per spatial axis) and ``interpolation``."""

    kind = "UpSampling2D"
    interpolations: ClassVar[tuple[str, ...]] = ("nearest", "bilinear")

    def __init__(self, spec, backend="polykeras"):
        super().__init__(spec, backend)
        size = self.config.get("size", 2)
        self.size = (int(size),) * self.rank if isinstance(size, (int, np.integer)) else tuple(int(s) for s in size)
        if len(self.size) != self.rank or min(self.size) < 1:
            raise ValueError(f"{spec.kind} layer {self.name!r}: size must be {self.rank} positive int(s), got {size!r}")
        self.interpolation = str(self.config.get("interpolation", "nearest")).lower()
        if self.interpolation not in self.interpolations:
            raise self.unsupported(f"interpolation={self.interpolation!r}",
                                   f"; supported: {', '.join(self.interpolations)}")

    def output_shape(self, input_shape: Shape) -> Shape:
        spatial = tuple(None if n is None else n * s for n, s in zip(input_shape[1:-1], self.size))
        return (input_shape[0],) + spatial + (input_shape[-1],)

    @staticmethod
    def bilinear_matrix(size: int, factor: int, dtype=np.float64) -> np.ndarray:
        """``(size * factor, size)``: row ``o`` interpolates output position ``o``
        from the input, half-pixel centres, clamped at the edges (``tf.image.resize``)."""
        out = np.arange(size * factor)
        src = np.clip((out + 0.5) / factor - 0.5, 0.0, size - 1)
        low = np.floor(src).astype(int)
        high = np.minimum(low + 1, size - 1)
        frac = src - low
        m = np.zeros((size * factor, size), dtype=np.float64)
        np.add.at(m, (out, low), 1.0 - frac)
        np.add.at(m, (out, high), frac)
        return m.astype(dtype)


class UpSampling1DRules(UpSampling2DRules):
    kind = "UpSampling1D"
    rank = 1
    interpolations = ("nearest",)

    def __init__(self, spec, backend="polykeras"):
        LayerRules.__init__(self, spec, backend)  # Keras's UpSampling1D has no data_format
        size = self.config.get("size", 2)
        if not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"UpSampling1D layer {self.name!r}: size must be a positive int, got {size!r}")
        self.size, self.interpolation = (int(size),), "nearest"


class RepeatVectorRules(LayerRules):
    """``n``: how many times the ``(batch, features)`` input is repeated."""

    kind = "RepeatVector"

    def __init__(self, spec, backend="polykeras"):
        super().__init__(spec, backend)
        self.n = int(self.config["n"])
        if self.n < 1:
            raise ValueError(f"RepeatVector layer {self.name!r}: n must be a positive int, got {self.n}")

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 2:
            raise ValueError(f"RepeatVector layer {self.name!r} expects input of rank 2 (batch, features), "
                             f"got shape {tuple(input_shape)}")
        return (input_shape[0], self.n, input_shape[1])


class PermuteRules(LayerRules):
    """``dims`` (1-based) and ``axes``: the full permutation, batch axis first."""

    kind = "Permute"

    def __init__(self, spec, backend="polykeras"):
        super().__init__(spec, backend)
        self.dims = tuple(int(d) for d in self.config["dims"])
        if sorted(self.dims) != list(range(1, len(self.dims) + 1)):
            raise ValueError(f"Permute layer {self.name!r}: dims must be a permutation of 1..{len(self.dims)} "
                             f"(the batch axis is not permuted), got {self.dims}")
        self.axes = (0,) + self.dims
        self.inverse = tuple(int(a) for a in np.argsort(self.axes))

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != len(self.axes):
            raise ValueError(f"Permute layer {self.name!r}: dims {self.dims} need an input of rank "
                             f"{len(self.axes)}, got shape {tuple(input_shape)}")
        return tuple(input_shape[a] for a in self.axes)


class IdentityRules(SameShape):
    kind = "Identity"


class RescalingRules(SameShape):
    """``scale`` and ``offset`` as float64 arrays (:meth:`values` in another dtype)."""

    kind = "Rescaling"

    def __init__(self, spec, backend="polykeras"):
        super().__init__(spec, backend)
        self.scale = np.asarray(self.config["scale"], dtype=np.float64)
        self.offset = np.asarray(self.config.get("offset", 0.0), dtype=np.float64)
        sample = tuple(spec.input_shape[1:])
        for what, value in (("scale", self.scale), ("offset", self.offset)):
            if value.ndim > len(sample) or any(v not in (1, n) and n is not None
                                               for v, n in zip(value.shape[::-1], sample[::-1])):
                raise ValueError(f"Rescaling layer {self.name!r}: {what} of shape {value.shape} does not broadcast "
                                 f"against inputs of shape {sample} (batch excluded) without enlarging them")

    def values(self, dtype) -> tuple[np.ndarray, np.ndarray]:
        """``(scale, offset)`` in ``dtype``."""
        return self.scale.astype(dtype), self.offset.astype(dtype)


RESHAPING_RULES = (ZeroPadding1DRules, ZeroPadding2DRules, Cropping1DRules, Cropping2DRules, UpSampling1DRules,
                   UpSampling2DRules, RepeatVectorRules, PermuteRules, IdentityRules, RescalingRules)
