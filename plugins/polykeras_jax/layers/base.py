"""The contract of a JAX layer: a pure function of its weights and input.

Each layer kind of the spec has one :class:`Layer` subclass. Configuration is
read once, in ``__init__``, by the core's rules (:mod:`polykeras.layer_rules`,
``self.rules``), so a bad config fails at compile time with the layer's name
and every backend reads it the same way; :meth:`Layer.__call__` is traced by
``jax.jit`` and must be pure JAX. Gradients come from automatic differentiation -- no
backward passes are written here.

Randomness and state go through :class:`LayerContext`:

* ``ctx.dropout_mask(stream, shape, rate)`` -- the inverted-dropout mask
  (``0`` or ``1/(1-rate)``) for this layer and step. In parity mode it is an
  argument of the jitted step, drawn on the host by
  :func:`polykeras.random.dropout_mask`; otherwise it is drawn inside the
  jitted function from a key derived from the step seed.
* ``ctx.assign(j, value)`` -- a new value for non-trainable weight ``j``
  (BatchNormalization's moving statistics), returned from the step.

Parity mode learns which masks a step needs (layer, stream, shape, rate) by
tracing the forward pass once with ``jax.eval_shape`` (see :mod:`..model`), so
a layer only ever asks for its masks where it uses them.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import numpy as np

from polykeras.layer_rules import LayerRules, rules_for
from polykeras.spec import LayerSpec


class LayerContext:
    """What one layer's forward pass may need beyond its input and weights."""

    def __init__(self, training: bool, dropout_mask: Callable[[int, tuple, float], Any] | None, mask=None) -> None:
        self.training = training
        self._dropout_mask = dropout_mask
        #: the boolean ``(batch, T)`` mask of the input, for a node that reads one (``LayerSpec.mask``)
        self.mask = mask
        self.assignments: dict[int, Any] = {}
        #: terms the layer adds to the loss (ActivityRegularization's penalty)
        self.losses: list = []

    def dropout_mask(self, stream: int, shape: tuple, rate: float):
        if self._dropout_mask is None:
            raise RuntimeError("this forward pass has no randomness; dropout in training mode needs a step seed")
        return self._dropout_mask(stream, tuple(shape), rate)

    def assign(self, index: int, value) -> None:
        self.assignments[index] = value

    def add_loss(self, value) -> None:
        self.losses.append(value)


class Layer:
    """JAX implementation of one layer kind (subclasses set ``kind``)."""

    kind: ClassVar[str] = ""
    #: False for layers whose input is not differentiable (integer ids).
    differentiable_input: ClassVar[bool] = True
    #: True for layers of several inputs (merge layers): ``__call__`` gets a list.
    multiple_inputs: ClassVar[bool] = False

    def __init__(self, spec: LayerSpec, dtype: np.dtype) -> None:
        self.spec = spec
        self.config = spec.config
        self.dtype = np.dtype(dtype)
        self.rules: LayerRules = rules_for(spec, backend="the jax backend")

    def __call__(self, weights: list, x, ctx: LayerContext):
        """The layer's output for input ``x`` (leading batch axis)."""
        raise NotImplementedError

