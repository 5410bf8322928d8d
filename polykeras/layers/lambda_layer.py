"""Keras's ``Lambda``: a function of :mod:`polykeras.ops` as a layer, traced like any
custom layer (so every backend runs it, and the op registry's hand-written VJPs are
its reference). A function that is not written with ``polykeras.ops`` fails at the
call with the custom-layer error that says so.

A ``.polykeras`` file keeps the traced ops, so it loads without the function. The
config names the function (``{"class_name": "function", "config": name}``, Keras's
form for a named function); :meth:`Lambda.from_config` finds it where the saving
registry finds loss functions (``register_keras_serializable``, ``custom_objects``).
Python ``lambda`` expressions cannot be found by name: Keras stores their bytecode
(and loads it only with ``safe_mode=False``). polykeras does the same when it reads a
Keras file with ``safe_mode=False`` (the lambda's global names ``ops``/``keras`` resolve
to polykeras's); it never writes bytecode, and refuses a lambda in a ``.keras`` file it
writes (:mod:`polykeras.saving.keras_write`) with what to do.
"""

from __future__ import annotations

import functools
import inspect

from polykeras.layers.base import Layer
from polykeras.saving.registration import get_registered_name, in_safe_mode, require_registered


def _function_config(fn) -> dict:
    if getattr(fn, "__name__", "") == "<lambda>":
        return {"class_name": "__lambda__", "config": None}
    return {"class_name": "function", "config": get_registered_name(fn)}


def _function_from_config(config, what: str):
    if not isinstance(config, dict):
        return config
    if config.get("class_name") == "__lambda__":
        stored = config.get("config")
        if not (isinstance(stored, dict) and stored.get("code")):
            raise ValueError(f"Lambda's {what} was a Python lambda, which a config cannot restore: define it as a "
                             "named function, and register it (@polykeras.saving.register_keras_serializable()) or "
                             "pass it in custom_objects")
        if in_safe_mode():
            raise ValueError(f"Lambda's {what} is a Python lambda stored as bytecode (Keras's form); loading it runs "
                             "code from the file, so it is refused in safe mode, as Keras refuses it. If you trust the "
                             "file, load it with safe_mode=False; better, define the function by name and register "
                             "it (@polykeras.saving.register_keras_serializable()) on both sides")
        return _function_from_bytecode(stored, what)
    return require_registered(config["config"], f"Lambda {what}")


def _function_from_bytecode(stored: dict, what: str):
    """Keras's ``func_load``: a lambda from its marshalled code, defaults and closure. Its global names
    resolve to polykeras (``ops``, ``keras``): the lambda runs on symbolic tensors, so it must be
    written with ``ops``; the bytecode loads only on the Python version that wrote it."""
    import base64
    import builtins
    import marshal
    import types

    import polykeras
    from polykeras import ops

    try:
        code = marshal.loads(base64.b64decode(stored["code"].encode("ascii")))
    except (ValueError, EOFError, TypeError) as exc:
        raise ValueError(f"Lambda's {what}: its stored bytecode cannot be loaded by this Python ({exc}); it was "
                         "written by another Python version. Define the function by name and register it") from None
    closure = stored.get("closure")
    cells = tuple(types.CellType(v) for v in closure) if closure else None
    defaults = tuple(stored["defaults"]) if stored.get("defaults") else None
    function = types.FunctionType(code, {"__builtins__": builtins, "ops": ops, "keras": polykeras}, code.co_name,
                                  defaults, cells)

    @functools.wraps(function)
    def loaded(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except NameError as exc:
            raise NameError(f"Lambda's {what}, loaded from bytecode: {exc}; a stored lambda knows only Python's "
                            "builtins, its closure and the globals ops and keras (polykeras's) -- not the module it "
                            "was written in (Keras's own loader has the same limit)") from None
    return loaded


class Lambda(Layer):
    """``Lambda(function, output_shape=None, mask=None, arguments=None)``, as Keras's:
    ``function(inputs, **arguments)`` (with ``mask``/``training`` where it takes them); the
    output's mask is ``mask(inputs, input_mask)`` for a callable ``mask``, else none.
    ``output_shape`` is accepted for Keras's sake: the traced output has its shape."""

    def __init__(self, function, output_shape=None, mask=None, arguments=None, **kwargs):
        super().__init__(**kwargs)
        self.function = _function_from_config(function, "function")
        if not callable(self.function):
            raise TypeError(f"Lambda layer {self.name!r}: function must be callable; got {function!r}")
        self.mask = _function_from_config(mask, "mask") if isinstance(mask, dict) else mask
        if self.mask is not None and not callable(self.mask):
            raise NotImplementedError(f"Lambda layer {self.name!r}: a fixed mask tensor is not supported; give a "
                                      "function mask(inputs, mask)")
        self.supports_masking = self.mask is not None
        self.output_shape_arg, self.arguments = output_shape, dict(arguments or {})
        parameters = inspect.signature(self.function).parameters
        self._takes = {name for name in ("mask", "training") if name in parameters}

    def call(self, inputs, mask=None, training=None):
        kwargs = dict(self.arguments)
        if "mask" in self._takes:
            kwargs["mask"] = mask if mask is not None else getattr(inputs, "mask", None)
        if "training" in self._takes:
            kwargs["training"] = training
        return self.function(inputs, **kwargs)

    def compute_mask(self, inputs, mask=None):
        return self.mask(inputs, mask) if self.mask is not None else None

    def get_config(self):
        config = {**super().get_config(), "function": _function_config(self.function), "arguments": self.arguments}
        if self.output_shape_arg is not None:
            config["output_shape"] = self.output_shape_arg
        if self.mask is not None:
            config["mask"] = _function_config(self.mask)
        return config
