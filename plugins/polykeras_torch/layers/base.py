"""The contract of a torch layer, and the per-step context it runs in.

A :class:`TorchLayer` is the torch implementation of one layer kind. It
differs from the NumPy reference kernel in two ways only:

* the math is written with torch ops and differentiated by autograd (no
  hand-written backward), and
* its weights may live in a *native* layout (e.g. Conv2D kernels as OIHW,
  LSTM kernels transposed for ``torch.lstm``). :meth:`TorchLayer.to_native`
  and :meth:`TorchLayer.to_canonical` convert one layer's weight list at the
  boundary; both are pure permutations/transposes, so the same conversion
  serves gradients, and L1/L2 penalties (sums over elements) are unaffected.

Configuration, shapes and padding come from the core's rules
(:mod:`polykeras.layer_rules`, ``self.rules``), the same rules every backend
reads, so all backends read a config identically and reject the same options.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from polykeras import random as _random
from polykeras.layer_rules import LayerRules, rules_for
from polykeras.spec import LayerSpec


class StepContext:
    """What one forward pass needs beyond its input and weights.

    ``training`` is Keras's flag. :meth:`dropout_mask` gives a scaled keep
    mask: in parity mode (``parity_seed`` set) the core's host-drawn mask,
    identical on every backend; otherwise one drawn with torch's RNG from
    ``generator`` (fast, same semantics). Layers with non-trainable state
    (BatchNormalization) record its new values with :meth:`assign`; the
    program applies them after the step.
    """

    def __init__(self, training: bool, parity_seed: int | None = None, generator: torch.Generator | None = None,
                 replica: tuple[int, int] | None = None):
        self.training = training
        self.parity_seed = parity_seed
        self.generator = generator
        #: (replicas, this replica) of a data-parallel step: masks are drawn for the global
        #: batch and this replica keeps its rows, so N replicas drop what one device drops
        self.replica = replica
        #: the boolean ``(batch, T)`` mask of the current node's input, if it reads one (``LayerSpec.mask``)
        self.mask: torch.Tensor | None = None
        self.assignments: list[tuple[torch.Tensor, torch.Tensor]] = []
        #: terms the layers add to the step's loss (ActivityRegularization's penalty)
        self.losses: list[torch.Tensor] = []

    def dropout_mask(self, layer_index: int, stream: int, shape: tuple, rate: float,
                     like: torch.Tensor) -> torch.Tensor:
        """Inverted-dropout mask (0 or ``1/(1-rate)``) of ``shape``, in
        ``like``'s dtype and device; for ``rate`` a :class:`polykeras.random.Normal`,
        that Gaussian noise (GaussianNoise, GaussianDropout)."""
        shape, rows = tuple(shape), None
        if self.replica is not None and shape and shape[0] == like.shape[0]:  # per sample, not shared
            replicas, index = self.replica
            rows = slice(index * shape[0], (index + 1) * shape[0])
            shape = (shape[0] * replicas, *shape[1:])
        if self.parity_seed is not None:
            mask = torch.from_numpy(_random.dropout_mask(self.parity_seed, layer_index, stream, shape, rate,
                                                         _NUMPY_DTYPES[like.dtype])).to(like.device)
        elif isinstance(rate, _random.Normal):
            mask = torch.empty(shape, dtype=like.dtype, device=like.device)
            mask = mask.normal_(rate.mean, rate.stddev, generator=self.generator)
        else:
            keep = 1.0 - rate
            mask = torch.empty(shape, dtype=like.dtype, device=like.device)
            mask = mask.bernoulli_(keep, generator=self.generator).div_(keep)
        return mask if rows is None else mask[rows]

    def add_loss(self, value: torch.Tensor) -> None:
        self.losses.append(value)

    def assign(self, variable: torch.Tensor, value: torch.Tensor) -> None:
        self.assignments.append((variable, value.detach()))

    def apply_assignments(self) -> None:
        with torch.no_grad():
            for variable, value in self.assignments:
                variable.copy_(value)
        self.assignments.clear()


_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


class TorchLayer:
    """Torch implementation of one layer kind.

    Subclasses set ``kind`` and implement :meth:`forward`; layers whose
    native weight layout is not the canonical one override the two
    conversions. ``self.rules`` is the layer's
    :class:`~polykeras.layer_rules.LayerRules` (config read and checked at
    construction); ``self.ref`` is the same object, under its older name.
    """

    kind: ClassVar[str] = ""
    #: False where the input is integer ids (Embedding): no input gradient.
    differentiable_input: ClassVar[bool] = True
    #: True for layers of several inputs (merge layers): ``forward`` gets a list.
    multiple_inputs: ClassVar[bool] = False

    def __init__(self, spec: LayerSpec, index: int, dtype: torch.dtype, device: torch.device) -> None:
        self.spec = spec
        self.index = index  # position in spec.layers: selects the parity dropout masks
        self.dtype = dtype
        self.device = device
        self.rules: LayerRules = rules_for(spec, backend="the torch backend")

    @property
    def ref(self):
        """``self.rules`` (the name from when a NumPy reference kernel parsed the config)."""
        return self.rules

    def to_native(self, weights: list[np.ndarray]) -> list[np.ndarray]:
        """Canonical (Keras) layout -> the layout :meth:`forward` uses."""
        return list(weights)

    def to_canonical(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Inverse of :meth:`to_native` (also applied to gradients)."""
        return list(arrays)

    def forward(self, params: list[torch.Tensor], x: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        raise NotImplementedError

    def constant(self, array: np.ndarray) -> torch.Tensor:
        """A fixed tensor (padding counts, zero biases) on this layer's device."""
        return torch.as_tensor(np.asarray(array), dtype=self.dtype, device=self.device)
