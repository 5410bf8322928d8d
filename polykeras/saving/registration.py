"""Keras's registration of custom classes, for code written against Keras.

``@register_keras_serializable(package, name)`` records a class under
``"package>name"``, as Keras does, and returns it unchanged. polykeras's own
files do not need it: a custom layer or subclassed model is saved as its traced
graph, which loads without the class. The registry serves code that looks
classes up by name (``get_registered_object``, learning-rate schedules in
``custom_objects``).
"""

from __future__ import annotations

import contextlib
import inspect

_REGISTERED: dict[str, type] = {}


class UnknownObjectError(ValueError):
    """A saved model names a function or class of the user's that is neither registered nor given."""


def require_registered(name: str, what: str):
    """The object :func:`get_registered_object` finds under ``name``, or :class:`UnknownObjectError`
    saying how to make it known."""
    found = get_registered_object(name)
    if found is None:
        raise UnknownObjectError(f"the {what} {name!r} is not known here: register it with "
                                 "@polykeras.saving.register_keras_serializable() or pass custom_objects={"
                                 f"{name!r}: ...}} to load_model (or load with compile=False)")
    return found
_SCOPES: list[dict] = []  # custom_object_scope()s in force, innermost last
_SAFE_MODE: list[bool] = []  # safe_mode_scope()s in force, innermost last


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
    """``"package>name"`` for a registered class (or instance of one) or function, else its plain name."""
    if getattr(obj, "_registered_name", None):
        return obj._registered_name
    if isinstance(obj, type) or inspect.isroutine(obj):
        return obj.__name__
    return type(obj).__name__


def get_registered_object(name: str, custom_objects: dict | None = None):
    """The class or function given in ``custom_objects``, in a :func:`custom_object_scope` in force, or
    registered under ``name``; else ``None``."""
    for scope in [custom_objects or {}, *reversed(_SCOPES)]:
        if name in scope:
            return scope[name]
    return _REGISTERED.get(name)


@contextlib.contextmanager
def safe_mode_scope(safe_mode: bool = True):
    """Keras's ``SafeModeScope``: while ``load_model(safe_mode=False)`` reads a file, code stored in it
    (a ``Lambda``'s Python lambda, as bytecode) may be loaded; otherwise it is refused."""
    _SAFE_MODE.append(bool(safe_mode))
    try:
        yield
    finally:
        _SAFE_MODE.pop()


def in_safe_mode() -> bool:
    return _SAFE_MODE[-1] if _SAFE_MODE else True


@contextlib.contextmanager
def custom_object_scope(custom_objects: dict | None):
    """Keras's scope: within it, names in ``custom_objects`` resolve (a loss function saved with a
    model, a layer class) as if registered; ``load_model(custom_objects=...)`` uses one."""
    _SCOPES.append(dict(custom_objects or {}))
    try:
        yield
    finally:
        _SCOPES.pop()
