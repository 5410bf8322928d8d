"""Keras's registration of custom classes, for code written against Keras.

``@register_keras_serializable(package, name)`` records a class under
``"package>name"``, as Keras does, and returns it unchanged. polykeras's own
files do not need it: a custom layer or subclassed model is saved as its traced
graph, which loads without the class. The registry serves code that looks
classes up by name (``get_registered_object``, learning-rate schedules in
``custom_objects``).
"""

from __future__ import annotations

_REGISTERED: dict[str, type] = {}


def register_keras_serializable(package: str = "Custom", name: str | None = None):
    def decorator(cls):
        key = f"{package}>{name or cls.__name__}"
        if key in _REGISTERED and _REGISTERED[key] is not cls:
            raise ValueError(f"{key!r} is already registered to {_REGISTERED[key]!r}")
        _REGISTERED[key] = cls
        cls._registered_name = key
        return cls

    return decorator


def get_registered_name(obj) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return getattr(cls, "_registered_name", cls.__name__)


def get_registered_object(name: str, custom_objects: dict | None = None):
    """The class registered (or given in ``custom_objects``) under ``name``, or ``None``."""
    return (custom_objects or {}).get(name) or _REGISTERED.get(name)
