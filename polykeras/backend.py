"""Keras's ``keras.backend`` helpers that user code calls: floatx, epsilon,
image_data_format, clear_session -- plus :func:`backend`, the name of the
selected polykeras backend.

The default float type comes from ``POLYKERAS_FLOATX`` (``float32`` or
``float64``), like Keras's ``floatx`` setting.
"""

from __future__ import annotations

import os

_FLOAT_TYPES = ("float32", "float64")


def _floatx_from_env() -> str:
    value = os.environ.get("POLYKERAS_FLOATX", "float32")
    if value not in _FLOAT_TYPES:
        raise ValueError(f"POLYKERAS_FLOATX={value!r} is not supported; use one of {', '.join(_FLOAT_TYPES)}")
    return value


_floatx = _floatx_from_env()
_epsilon = 1e-7


def floatx() -> str:
    """The default float type of weights and computation: 'float32' or 'float64'."""
    return _floatx


def set_floatx(value: str) -> None:
    global _floatx
    if value not in _FLOAT_TYPES:
        raise ValueError(f"floatx {value!r} is not supported; use one of {', '.join(_FLOAT_TYPES)}")
    _floatx = value


def epsilon() -> float:
    """The fuzz factor Keras uses in losses (clipping probabilities)."""
    return _epsilon


def set_epsilon(value: float) -> None:
    global _epsilon
    _epsilon = float(value)


def image_data_format() -> str:
    return "channels_last"


def clear_session() -> None:
    """Reset automatic layer names, as Keras does."""
    from polykeras.layers.base import reset_names

    reset_names()


def backend() -> str:
    """The name of the backend that ``compile`` uses by default."""
    from polykeras.backends import selected_backend_name

    return selected_backend_name()
