"""Weight regularizers, Keras semantics: the penalty ``l1 * sum(|w|) +
l2 * sum(w**2)`` is added to the training loss of every step (and reported in
it), once per regularised weight, unscaled by the batch size.

They are configuration only; each backend applies the penalty natively.
"""

from __future__ import annotations

from typing import Any


class Regularizer:
    def get_config(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class L1L2(Regularizer):
    def __init__(self, l1: float = 0.0, l2: float = 0.0):
        self.l1 = float(l1)
        self.l2 = float(l2)

    def __call__(self, x):
        import numpy as np

        return self.l1 * np.sum(np.abs(x)) + self.l2 * np.sum(np.square(x))

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class L1(L1L2):
    def __init__(self, l1: float = 0.01):
        super().__init__(l1=l1)

    def get_config(self):
        return {"l1": self.l1}


class L2(L1L2):
    def __init__(self, l2: float = 0.01):
        super().__init__(l2=l2)

    def get_config(self):
        return {"l2": self.l2}


def l1(l1: float = 0.01) -> L1:
    return L1(l1)


def l2(l2: float = 0.01) -> L2:
    return L2(l2)


def l1_l2(l1: float = 0.01, l2: float = 0.01) -> L1L2:
    return L1L2(l1, l2)


_BY_NAME = {"l1": L1, "l2": L2, "l1_l2": L1L2, "L1": L1, "L2": L2, "L1L2": L1L2}


def get(identifier) -> Regularizer | None:
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, str):
        if identifier not in _BY_NAME:
            raise ValueError(f"unknown regularizer {identifier!r}; known: l1, l2, l1_l2")
        return _BY_NAME[identifier]()
    if isinstance(identifier, dict):
        cls = _BY_NAME.get(identifier.get("class_name"))
        if cls is None:
            raise ValueError(f"unknown regularizer {identifier.get('class_name')!r}; known: L1, L2, L1L2")
        return cls.from_config(identifier.get("config", {}))
    raise TypeError(f"cannot interpret {identifier!r} as a regularizer")


def to_spec(reg: Regularizer | None) -> dict[str, float] | None:
    """The spec form every backend reads: ``{"l1": a, "l2": b}`` or None."""
    if reg is None:
        return None
    if not isinstance(reg, L1L2):
        raise TypeError(f"backends understand L1/L2 regularizers only, got {type(reg).__name__}")
    return {"l1": reg.l1, "l2": reg.l2}
