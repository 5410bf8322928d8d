"""Keras's object (de)serialization: ``serialize_keras_object`` / ``deserialize_keras_object``, which
``keras.layers.serialize``/``deserialize`` and code written against Keras use.

An object is written as Keras 3 writes it -- ``{"module", "class_name", "config", "registered_name"}``
(a built-in's module is Keras's: ``"keras.layers"``, ``"keras.optimizers"``, ...); a function as
``{"class_name": "function", "config": its (registered) name}``; NumPy arrays and tuples as Keras's
``__numpy__`` / ``__tuple__``. Reading resolves a class in this order: ``custom_objects`` and the
:func:`~.registration.custom_object_scope` in force and the registry (by ``registered_name``, then
class name), then the family the module names (or, for polykeras's own ``{"class_name", "config"}``
form, the first family that knows the class name). Each family's own ``get``/``serialize`` does the
work, so a layer, optimizer, loss, metric, initializer or regularizer reads back as it would from a
model's config.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from polykeras.saving.keras_format import IGNORABLE, plain
from polykeras.saving.registration import (UnknownObjectError, custom_object_scope, get_registered_name,
                                          get_registered_object)

_FAMILIES = ("layers", "optimizers", "losses", "metrics", "initializers", "regularizers")


def _family(obj) -> str | None:
    """The Keras module family (``"layers"``, ...) of a polykeras object, or ``None``."""
    from polykeras import initializers, losses, metrics, optimizers, regularizers
    from polykeras.layers import Layer
    from polykeras.models import Model
    from polykeras.optimizers.schedules import LearningRateSchedule

    for family, base in (("models", Model), ("layers", Layer), ("optimizers.schedules", LearningRateSchedule),
                         ("optimizers", optimizers.Optimizer), ("losses", losses.Loss),
                         ("metrics", metrics.Metric), ("initializers", initializers.Initializer),
                         ("regularizers", regularizers.Regularizer)):
        if isinstance(obj, base):
            return family
    return None


def _serialize_family(family: str, obj) -> dict:
    from polykeras import initializers, losses, metrics, optimizers
    from polykeras.optimizers import schedules

    if family == "models":
        name = "Sequential" if type(obj).__name__ == "Sequential" else "Functional"
        return {"class_name": name, "config": obj.get_config()}
    writers = {"optimizers": optimizers.serialize, "losses": losses.serialize, "metrics": metrics.serialize,
               "initializers": initializers.serialize, "optimizers.schedules": schedules.serialize}
    if family in writers:
        return writers[family](obj)
    return {"class_name": type(obj).__name__, "config": obj.get_config()}


def serialize_keras_object(obj) -> Any:
    """``obj`` as JSON-able data, in Keras 3's form (see the module docstring)."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return {"class_name": "__numpy__", "config": {"value": obj.tolist(), "dtype": str(obj.dtype)}}
    if isinstance(obj, tuple):
        return {"class_name": "__tuple__", "config": {"value": [serialize_keras_object(v) for v in obj]}}
    if isinstance(obj, list):
        return [serialize_keras_object(v) for v in obj]
    if isinstance(obj, dict):
        return {k: serialize_keras_object(v) for k, v in obj.items()}
    if inspect.isroutine(obj):
        if obj.__name__ == "<lambda>":
            raise TypeError("a lambda cannot be serialized by name: define a named function and register it with "
                            "@polykeras.saving.register_keras_serializable()")
        module = "keras.activations" if obj.__module__ == "polykeras.activations" else obj.__module__
        name = get_registered_name(obj)
        return {"module": module, "class_name": "function", "config": name, "registered_name": name}
    family = _family(obj)
    builtin = type(obj).__module__.startswith("polykeras.")
    if family is None and not hasattr(obj, "get_config"):
        raise TypeError(f"cannot serialize {obj!r}: it is not a layer, model, optimizer, loss, metric, initializer "
                        "or regularizer, and has no get_config()")
    entry = _serialize_family(family, obj) if family else {"class_name": type(obj).__name__,
                                                           "config": obj.get_config()}
    if family == "models" and builtin:
        module = "keras"
    elif builtin:
        module = "keras." + (family or type(obj).__module__.split(".")[1])
    else:
        module = type(obj).__module__
    return {"module": module, **entry, "registered_name": None if builtin else get_registered_name(obj)}


def deserialize_keras_object(config, custom_objects: dict | None = None, safe_mode: bool = True, **kwargs) -> Any:
    """The object :func:`serialize_keras_object` (or Keras 3) wrote; a name (``"adam"``) or a plain value
    is returned as it is, as Keras returns it."""
    if isinstance(config, list):
        return [deserialize_keras_object(v, custom_objects) for v in config]
    if not isinstance(config, dict) or "class_name" not in config:
        return config
    name, inner = config["class_name"], config.get("config")
    if name == "__numpy__":
        return np.array(inner["value"], dtype=inner["dtype"])
    if name == "__tuple__":
        return tuple(deserialize_keras_object(v, custom_objects) for v in inner["value"])
    with custom_object_scope(custom_objects):
        if name == "function":
            return _function(config)
        custom = get_registered_object(config.get("registered_name") or name) or get_registered_object(name)
        if isinstance(custom, type):
            return custom.from_config(inner or {}) if hasattr(custom, "from_config") else custom(**(inner or {}))
        module = str(config.get("module") or "")
        family = module.split(".", 1)[1] if module.startswith("keras.") else None
        if module == "keras" and name in ("Functional", "Sequential", "Model"):
            family = "layers"  # layers.deserialize reads models too
        if family not in (None, *_FAMILIES, "optimizers.schedules"):
            raise UnknownObjectError(f"cannot deserialize {name!r} from module {module!r}: register the class with "
                                     f"@polykeras.saving.register_keras_serializable() or pass custom_objects={{"
                                     f"{name!r}: ...}}")
        entry = {"class_name": name, "config": inner or {}}
        if module.startswith("keras") and family == "layers":  # Keras's layer options polykeras ignores, as a
            entry = plain(entry)                                   # .keras file's, and dtype policies as names
        elif module.startswith("keras") and isinstance(inner, dict):  # the same, but an initializer's seed kept
            entry["config"] = {k: plain(v) for k, v in inner.items() if k == "seed" or not (
                k in IGNORABLE and (IGNORABLE[k] is None or v in IGNORABLE[k]))}
        tried = []
        for candidate in ([family] if family else _FAMILIES):
            try:
                return _get(candidate, entry)
            except (ValueError, TypeError) as exc:
                tried.append(f"{candidate}: {str(exc).splitlines()[0]}")
                if family:
                    raise
    raise UnknownObjectError(f"cannot deserialize {name!r}: no layer, optimizer, loss, metric, initializer or "
                             f"regularizer of that name ({'; '.join(tried)}); register a class of your own with "
                             f"@polykeras.saving.register_keras_serializable() or pass custom_objects")


def _get(family: str, entry: dict):
    import importlib

    if family == "layers":
        from polykeras.layers import deserialize

        return deserialize(entry)
    if family == "optimizers.schedules":
        from polykeras.optimizers import schedules

        return schedules.deserialize(entry)
    return importlib.import_module(f"polykeras.{family}").get(entry)


def _function(config: dict):
    """A function saved by name: yours (registered or in ``custom_objects``), or Keras's activation or loss."""
    from polykeras import activations, losses

    name = config.get("registered_name") or config.get("config")
    found = get_registered_object(name) or get_registered_object(str(config.get("config")))
    if found is not None:
        return found
    short = str(config.get("config"))
    if str(config.get("module", "")).endswith("activations") or short in activations.NAMES:
        return activations.deserialize(short)
    if callable(getattr(losses, short, None)):
        return getattr(losses, short)
    raise UnknownObjectError(f"the function {name!r} is not known here: register it with "
                             f"@polykeras.saving.register_keras_serializable() or pass custom_objects={{{name!r}: ...}}")
