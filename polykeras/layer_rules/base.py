"""The base of the layer rules, and the helpers several kinds share."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from polykeras.spec import LayerSpec, Shape


def as_tuple(value, n: int, what: str, layer: str) -> tuple[int, ...]:
    """An int or a length-``n`` list/tuple (a config after JSON) as a tuple of ``n`` ints."""
    if isinstance(value, (int, np.integer)):
        return (int(value),) * n
    values = tuple(int(v) for v in value)
    if len(values) != n:
        raise ValueError(f"layer {layer!r}: {what} must have {n} entries, got {value!r}")
    return values


class LayerRules:
    """The rules of one layer kind, read from one :class:`~polykeras.spec.LayerSpec`.

    The constructor reads and validates the config, raising ``ValueError``
    for a bad value and ``NotImplementedError`` for an option polykeras does
    not implement, each message naming the layer. ``backend`` (e.g. ``"the jax
    backend"``) only words those messages. :meth:`output_shape` maps an input
    shape (batch axis included, ``None`` for unknown sizes) to the output's.

    This base class serves kinds without config rules of their own (the merge
    layers, whose rules are in :mod:`polykeras.layers.merge`, and layer kinds
    added by plugins).
    """

    kind: ClassVar[str] = ""

    def __init__(self, spec: LayerSpec, backend: str = "polykeras") -> None:
        self.spec = spec
        self.name = spec.name
        self.config = spec.config
        self.backend = backend

    def output_shape(self, input_shape: Shape) -> Shape:
        raise NotImplementedError(f"{self.spec.kind} layer {self.name!r}: polykeras.layer_rules has no shape rule "
                                  "for this kind")

    # -- helpers for the subclasses -----------------------------------------------
    def unsupported(self, option: str, hint: str = "") -> NotImplementedError:
        """The error for a config option polykeras does not implement."""
        return NotImplementedError(f"{self.spec.kind} layer {self.name!r}: {option} is not supported by "
                                   f"{self.backend}{hint}")

    def require_channels_last(self) -> None:
        """Refuse ``data_format="channels_first"``: data and weights are canonical channels_last."""
        data_format = self.config.get("data_format") or "channels_last"
        if data_format != "channels_last":
            raise self.unsupported(f"data_format={data_format!r}", "; use 'channels_last' (the canonical layout)")


class SameShape(LayerRules):
    """A layer whose output has its input's shape."""

    def output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)
