"""The contract of a NumPy reference layer ("kernel").

Each layer kind of the spec has one :class:`Kernel` subclass here: a forward
pass that returns its output and whatever the backward pass needs (the
*cache*), and a hand-written backward pass. Weights arrive as a list in the
canonical Keras layout and order of ``LayerSpec.weights``; gradients go back in
the same order. Every backward has a finite-difference test beside it
(``tests/test_numpy_layers.py``).

Clear before clever: these are the executable specification every other
backend is judged against. What a layer's config means, its output shape and
its padding are the core's rules (:mod:`polykeras.layer_rules`), read here as
``self.rules`` exactly as every other backend reads them; the kernels write
out the math.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import numpy as np

from polykeras.layer_rules import LayerRules, rules_for
from polykeras.spec import LayerSpec


class ForwardContext:
    """What a forward pass may need beyond its input and weights.

    ``training`` is Keras's ``training`` flag. ``dropout_mask(shape, rate,
    stream)`` returns the parity-mode mask for this layer and step: already
    scaled by ``1 / (1 - rate)``, drawn on the host from the step seed, so
    that every backend drops the same units. ``assign(index, value)`` records a
    new value for a non-trainable weight (BatchNormalization's moving
    statistics); the program applies it after the step. ``mask`` is the input's
    Keras mask for the layers that read one (:mod:`polykeras.layers.masking`).
    ``add_loss(value)`` adds a term to the step's loss (ActivityRegularization's
    penalty); the layer's ``backward`` adds its gradient.
    """

    def __init__(
        self,
        training: bool,
        dropout_mask: Callable[[tuple, float, int], np.ndarray] | None = None,
        mask: np.ndarray | None = None,
    ) -> None:
        self.training = training
        self._dropout_mask = dropout_mask
        #: the boolean ``(batch, T)`` mask of the input's steps, for a node that reads one (``LayerSpec.mask``)
        self.mask = mask
        self.assignments: dict[int, np.ndarray] = {}
        self.losses: list = []

    def dropout_mask(self, shape: tuple, rate: float, stream: int = 0) -> np.ndarray:
        if self._dropout_mask is None:
            raise RuntimeError("this forward pass has no step seed; dropout needs one in training mode")
        return self._dropout_mask(tuple(shape), rate, stream)

    def assign(self, index: int, value: np.ndarray) -> None:
        self.assignments[index] = value

    def add_loss(self, value) -> None:
        self.losses.append(value)


class Kernel:
    """NumPy reference implementation of one layer kind.

    Subclasses set ``kind`` (the Keras class name, e.g. ``"Dense"``) and
    implement :meth:`forward` and :meth:`backward`. ``self.rules`` is the
    layer's :class:`~polykeras.layer_rules.LayerRules` (the config read and
    checked, shapes, padding); ``self.config`` is the raw Keras config (values
    may be lists where Keras has tuples, after a JSON round trip);
    ``self.dtype`` is the compute dtype (float32/float64).
    """

    kind: ClassVar[str] = ""
    #: False for kernels whose input is not differentiable (integer indices).
    differentiable_input: ClassVar[bool] = True
    #: True for kernels of several inputs (merge layers): ``forward`` gets a
    #: list of arrays and ``backward`` returns a list of input gradients.
    multiple_inputs: ClassVar[bool] = False

    def __init__(self, spec: LayerSpec, dtype: np.dtype) -> None:
        self.spec = spec
        self.config = spec.config
        self.dtype = np.dtype(dtype)
        self.rules: LayerRules = rules_for(spec, backend="the NumPy reference")

    def forward(self, weights: list[np.ndarray], x: np.ndarray, ctx: ForwardContext) -> tuple[np.ndarray, Any]:
        """Return ``(y, cache)``. ``x`` has a leading batch dimension."""
        raise NotImplementedError

    def backward(self, weights: list[np.ndarray], cache: Any, dy: np.ndarray) -> tuple[np.ndarray | None, list[np.ndarray | None]]:
        """Return ``(dx, dweights)`` given ``dy = dLoss/dy``.

        ``dx`` is ``None`` when the input is not differentiable;
        ``dweights`` has one entry per weight, ``None`` for non-trainable ones.
        """
        raise NotImplementedError

    def backward_weights(self, weights: list[np.ndarray], cache: Any, dy: np.ndarray) -> list[np.ndarray | None]:
        """Only the ``dweights`` of :meth:`backward`.

        The program calls this instead of :meth:`backward` when nothing needs
        ``dx``: in training, for a layer with no trainable weight upstream of
        it (usually the first). A kernel whose ``dx`` is costly overrides it to
        skip that work; the weight gradients must be the same.
        """
        return self.backward(weights, cache, dy)[1]
