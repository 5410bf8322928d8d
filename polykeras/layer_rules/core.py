"""Core layers: Dense, Activation, Dropout, Flatten, Reshape (Keras 3 semantics).

* ``Dense`` contracts the *last* axis of an input of any rank with its
  ``(in, units)`` kernel, adds the bias (``use_bias``) and applies the
  activation.
* ``Dropout`` is the identity at inference and when ``rate == 0``; in training
  it multiplies by the keep mask (0 or ``1 / (1 - rate)``) of
  :meth:`DropoutRules.mask_shape`: the input's shape with ``noise_shape``
  applied (``None`` entries take the input's size, a size-1 entry shares one
  mask value along that axis). ``SpatialDropout1D/2D`` are Dropout with one
  mask value per sample and channel, shared over the steps / pixels
  (:meth:`SpatialDropout2DRules.mask_shape`).
* ``Flatten`` is a C-order reshape to ``(batch, -1)`` of channels_last data;
  ``Reshape`` keeps the batch axis and allows one ``-1`` in ``target_shape``.
"""

from __future__ import annotations

import math

from polykeras.spec import Shape

from .base import LayerRules, SameShape


class DenseRules(LayerRules):
    """``units``, ``activation`` (the config's name, ``"linear"`` by default), ``use_bias``."""

    kind = "Dense"

    def __init__(self, spec, backend="polykeras"):
        super().__init__(spec, backend)
        self.units = int(self.config["units"])
        self.activation = self.config.get("activation", "linear")
        self.use_bias = bool(self.config.get("use_bias", True))

    def output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape[:-1]) + (self.units,)


class ActivationRules(SameShape):
    kind = "Activation"

    def __init__(self, spec, backend="polykeras"):
        super().__init__(spec, backend)
        self.activation = self.config.get("activation", "linear")


class DropoutRules(SameShape):
    """``rate`` in ``[0, 1]`` and ``noise_shape`` (a tuple, or ``None``)."""

    kind = "Dropout"

    def __init__(self, spec, backend="polykeras"):
        super().__init__(spec, backend)
        self.rate = float(self.config.get("rate", 0.0))
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"Dropout layer {self.name!r}: rate must be in [0, 1], got {self.rate}")
        noise_shape = self.config.get("noise_shape")
        self.noise_shape = None if noise_shape is None else tuple(noise_shape)

    def active(self, training: bool) -> bool:
        """Whether the layer drops anything (else it is the identity)."""
        return bool(training) and self.rate != 0.0

    def mask_shape(self, x_shape: tuple) -> tuple:
        """The shape of the mask for an input of ``x_shape`` (batch axis included)."""
        if self.noise_shape is None:
            return tuple(x_shape)
        if len(self.noise_shape) != len(x_shape):
            raise ValueError(
                f"Dropout layer {self.name!r}: noise_shape {self.noise_shape} has "
                f"{len(self.noise_shape)} entries but the input has rank {len(x_shape)}"
            )
        return tuple(d if n is None else int(n) for n, d in zip(self.noise_shape, x_shape))


class SpatialDropout2DRules(DropoutRules):
    """Dropout of whole channels: the mask is ``(batch, 1, ..., 1, channels)``."""

    kind = "SpatialDropout2D"
    rank = 4

    def __init__(self, spec, backend="polykeras"):
        super().__init__(spec, backend)
        self.require_channels_last()
        if len(spec.input_shape) != self.rank:
            raise ValueError(f"{spec.kind} layer {self.name!r} expects input of rank {self.rank} (batch included), "
                             f"got shape {tuple(spec.input_shape)}")

    def mask_shape(self, x_shape: tuple) -> tuple:
        return (x_shape[0],) + (1,) * (len(x_shape) - 2) + (x_shape[-1],)


class SpatialDropout1DRules(SpatialDropout2DRules):
    kind = "SpatialDropout1D"
    rank = 3


class FlattenRules(LayerRules):
    kind = "Flatten"

    def __init__(self, spec, backend="polykeras"):
        super().__init__(spec, backend)
        self.require_channels_last()

    def output_shape(self, input_shape: Shape) -> Shape:
        rest = input_shape[1:]
        return (input_shape[0], None if None in rest else math.prod(rest))


class ReshapeRules(LayerRules):
    """``target_shape`` (a tuple of ints, at most one ``-1``)."""

    kind = "Reshape"

    def __init__(self, spec, backend="polykeras"):
        super().__init__(spec, backend)
        self.target_shape = tuple(int(d) for d in self.config["target_shape"])
        if self.target_shape.count(-1) > 1:
            raise ValueError(f"Reshape layer {self.name!r}: target_shape {self.target_shape} may hold at most one -1")

    def output_shape(self, input_shape: Shape) -> Shape:
        """``(batch, *target_shape)`` with the ``-1`` resolved; ``ValueError``
        when the sizes do not agree."""
        rest = tuple(input_shape[1:])
        if None in rest:
            return (input_shape[0],) + tuple(None if d == -1 else d for d in self.target_shape)
        size = math.prod(rest)
        known = math.prod(d for d in self.target_shape if d != -1)
        if (-1 not in self.target_shape and known != size) or (known == 0 or size % known):
            raise ValueError(
                f"Reshape layer {self.name!r}: cannot reshape an input of shape "
                f"{rest} (excluding batch) to target_shape {self.target_shape}"
            )
        return (input_shape[0],) + tuple(size // known if d == -1 else d for d in self.target_shape)
