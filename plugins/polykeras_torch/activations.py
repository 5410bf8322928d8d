"""Keras 3 activations as torch functions (autograd gives the derivatives).

Each maps to the torch op with the same definition as the NumPy reference
(:mod:`polykeras_numpy.activations`); where torch's op differs, the reference
formula is written out:

* ``softplus``: torch's ``F.softplus`` switches to the identity above a
  threshold. The reference is ``log1p(exp(-|x|)) + max(x, 0)``, which differs
  from ``x`` by ``exp(-x)``; with the threshold at 20 (float32) or 40
  (float64) that difference is below half an ulp of ``x``, so the two agree
  exactly while ``F.softplus`` stays one fused op with the exact sigmoid
  derivative.
* ``hard_sigmoid`` is Keras 3's ``relu6(x + 3) / 6``, written so: torch's
  fused ``F.hardsigmoid`` computes its derivative with a float32 constant
  1/6, which is off by 3e-8 in float64. ``relu6``'s derivative is zero at
  the kinks, as the reference's.
* ``gelu`` is the exact erf form (``approximate="none"``), ``elu`` uses alpha 1
  and ``selu`` torch's constants, which are Keras's.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

Activation = Callable[[torch.Tensor], torch.Tensor]


def _softplus(x: torch.Tensor) -> torch.Tensor:
    return F.softplus(x, beta=1.0, threshold=40.0 if x.dtype == torch.float64 else 20.0)


def _hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    return F.relu6(x + 3.0) / 6.0


def _linear(x: torch.Tensor) -> torch.Tensor:
    return x


ACTIVATIONS: dict[str, Activation] = {
    "linear": _linear,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "softmax": lambda x: torch.softmax(x, dim=-1),
    "elu": F.elu,
    "selu": F.selu,
    "gelu": F.gelu,
    "softplus": _softplus,
    "swish": F.silu,
    "silu": F.silu,
    "exponential": torch.exp,
    "hard_sigmoid": _hard_sigmoid,
}


def get(name: str | None) -> Activation:
    """The torch function for a Keras activation name (``None`` is linear)."""
    key = "linear" if name is None else name
    try:
        return ACTIVATIONS[key]
    except (KeyError, TypeError):
        raise ValueError(f"unknown activation {name!r}; the torch backend supports: {', '.join(ACTIVATIONS)}") from None
