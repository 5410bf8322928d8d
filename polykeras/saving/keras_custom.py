"""Custom layers in Keras 3 ``.keras`` files (:mod:`.keras_write`, :mod:`.keras_read`).

A custom layer (a ``Layer`` subclass with ``call()``, traced into ops) is written as Keras
writes one: an entry named by its class, its ``registered_name`` (``"package>name"``, from
:func:`polykeras.saving.register_keras_serializable`), its ``get_config()`` and its calls.
Keras opens the file where a class is registered under the same name in Keras (written with
``keras.ops``); polykeras opens Keras's file where the polykeras class is registered or given
in ``custom_objects``. An unregistered class is refused by name, with what to do.

The weights lie where Keras's ``saving_lib`` puts them (:func:`weight_layout`): below the
layer's group, ``vars`` holds its own variables (trainable first, each kind in ``add_weight``
order); every layer it holds as an attribute follows, under the attribute's name (attributes
in sorted order; a list, tuple or dict of layers numbers them by class, ``<attr>/dense``,
``<attr>/dense_1``), recursively; a layer reached twice is written once, at its first path. A model
it holds (a ``Sequential`` or a functional model) keeps its layers under ``<attr>/layers/``, numbered
by class in Keras's ``model.layers`` order (:func:`model_layers`).
"""

from __future__ import annotations

from polykeras.saving.keras_format import KerasFileError, variable_groups, weight_paths
from polykeras.saving.registration import UnknownObjectError, get_registered_object


def is_custom(layer) -> bool:
    """A user's custom layer: traced (defines ``call``), not one of polykeras's own Keras layers."""
    from polykeras.layers import TRACED_LAYERS, Layer

    return isinstance(layer, Layer) and type(layer)._custom_call() and type(layer) not in TRACED_LAYERS.values()


def registered_name(layer) -> str:
    """The ``"package>name"`` a custom layer's class is registered under, or a :class:`KerasFileError`
    saying how to register it."""
    cls = type(layer)
    name = cls.__dict__.get("_registered_name")  # not inherited: a subclass of a registered class is not
    if name is None:
        raise KerasFileError(
            f"custom layer {layer.name!r}: its class {cls.__name__!r} is not registered, so a .keras file cannot "
            f"name it; decorate the class with @polykeras.saving.register_keras_serializable(package=...) (and, to "
            f"open the file in Keras, register the Keras version of the class under the same name), or save as "
            ".polykeras, which keeps the traced graph and needs no class")
    return name


def keras_entry(layer) -> dict:
    """The ``module``/``class_name``/``registered_name`` of a custom layer's Keras entry."""
    return {"module": type(layer).__module__, "class_name": type(layer).__name__,
            "registered_name": registered_name(layer)}


def custom_class(entry: dict, path):
    """The polykeras class for a Keras entry of a user's class: registered under its
    ``registered_name`` or given in ``custom_objects`` (by that name or the class name)."""
    from polykeras.layers import Layer

    names = [n for n in (entry.get("registered_name"), entry["class_name"]) if n]
    cls = next((found for found in map(get_registered_object, names) if found is not None), None)
    if cls is None:
        raise UnknownObjectError(
            f"{path}: layer {entry.get('name') or entry['config'].get('name')!r} is of the custom class {names[0]!r}, "
            "which is not known here: register the polykeras version of the class (written with polykeras.ops) with "
            f"@polykeras.saving.register_keras_serializable() under that name, or pass custom_objects={{{names[0]!r}: "
            "YourLayer}} to load_model")
    if not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise UnknownObjectError(f"{path}: {names[0]!r} names {cls!r}, not a polykeras layers.Layer subclass; give "
                                 "the polykeras version of the class (written with polykeras.ops)")
    return cls


def make_layer(entry: dict, config: dict, path):
    """The polykeras custom layer of a Keras entry: its class (:func:`custom_class`) from the config."""
    cls = custom_class(entry, path)
    try:
        return cls.from_config(config)
    except TypeError as exc:
        raise KerasFileError(f"{path}: custom layer {config.get('name')!r} ({cls.__name__}) cannot be made from the "
                             f"config in the file ({exc}); give the class the get_config/from_config that its Keras "
                             "twin has") from None


def is_custom_entry(entry: dict) -> bool:
    """A Keras config entry of a user's class: Keras names it (``registered_name``, ``"package>Name"`` or
    the class name) and its module is not Keras's (Keras's own layers have ``registered_name`` None)."""
    return bool(entry.get("registered_name")) and not str(entry.get("module") or "").startswith("keras")


def weight_layout(layer, group: str) -> list[tuple[str, object, int | None]]:
    """Where a custom layer's weights lie in Keras's weights file: ``(h5 group, holder, count)``, where a
    holder is a polykeras layer or variable whose ``get_weights()`` are (the first ``count`` of, ``None``:
    the rest) the group's arrays; a group may take a holder's arrays in parts (a ``Bidirectional``)."""
    out: list = []
    _walk(layer, group, out, set())
    return out


def _walk(layer, group: str, out: list, visited: set) -> None:
    from polykeras.models import Model

    if id(layer) in visited:
        return
    visited.add(id(layer))
    if isinstance(layer, Model):
        out.append((f"{group}/vars", None, 0))
        inner = model_layers(layer)
        for sub, where in zip(inner, weight_paths([keras_class(l) for l in inner])):
            if isinstance(sub, str):  # a functional model's input layer: an empty vars group
                out.append((f"{group}/{where}/vars", None, 0))
            else:
                _walk(sub, f"{group}/{where}", out, visited)
        return
    if not is_custom(layer) and not layer.get_weights():  # no weights (a merge layer that is an op in Keras):
        out.append((f"{group}/vars", None, 0))  # an empty group, none needed to read
        return
    if not is_custom(layer):  # a built-in layer: Keras's groups for its class
        out.extend((f"{group}/{where}", layer, count)
                   for where, count in variable_groups(type(layer).__name__, layer.get_config()))
        return
    own = sorted(layer._variables, key=lambda v: (not v.created_trainable, v.created))
    out.extend((f"{group}/vars", v, 1) for v in own)
    if not own:
        out.append((f"{group}/vars", None, 0))
    for attr in sorted(_attributes(layer)):
        value = getattr(layer, attr)
        if _is_layer(value):
            _walk(value, f"{group}/{attr}", out, visited)
        else:
            items = [v for v in (value.values() if isinstance(value, dict) else value) if _is_layer(v)]
            for item, where in zip(items, weight_paths([type(v).__name__ for v in items])):
                _walk(item, f"{group}/{attr}/{where.split('/', 1)[1]}", out, visited)


def model_layers(model) -> list:
    """A model's layers as Keras's ``model.layers`` lists them, whose class names number its weights groups
    (``layers/dense``, ``layers/dense_1``): a ``Sequential``'s without its input layer; a functional model's in
    Keras's order (:func:`.keras_format.functional_layer_order`), its input layers (given as the string
    ``"InputLayer"``) included, its operations (ops on its tensors) left out."""
    from polykeras.models import Sequential
    from polykeras.saving.keras_write import keras_layout

    if isinstance(model, Sequential):
        return [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    config, _ = keras_layout(model)
    by_name = {layer.name: layer for layer in model.layers}
    out = []
    for entry in config["config"]["layers"]:
        if entry["class_name"] == "InputLayer":
            out.append("InputLayer")
        elif not str(entry.get("module") or "").startswith("keras.src.ops"):
            out.append(by_name[entry["name"]])
    return out


def keras_class(layer) -> str:
    return layer if isinstance(layer, str) else type(layer).__name__


def keras_weight_order(layer) -> list[tuple[str, str]]:
    """A custom layer's weights in Keras's ``layer.weights`` order, as ``(spec layer, weight)`` names: its
    own variables (trainable first), then its layers' in the order they were assigned (a ``Sequential``'s
    too, which polykeras's ``layer.weights`` leaves out), each once."""
    from polykeras.models import Model

    out: list = []
    seen: set = set()

    def visit(holder):
        if id(holder) in seen:
            return
        seen.add(id(holder))
        if isinstance(holder, Model):
            for sub in model_layers(holder):
                if not isinstance(sub, str):
                    visit(sub)
        elif is_custom(holder):
            out.extend((v.name, v.variable_name)
                       for v in sorted(holder._variables, key=lambda v: (not v.created_trainable, v.created)))
            for value in vars(holder).values():
                for sub in _layers_in(value):
                    visit(sub)
        else:
            out.extend((holder.name, w.name) for w in holder._weight_specs)

    visit(layer)
    return out


def _layers_in(value) -> list:
    if _is_layer(value):
        return [value]
    if isinstance(value, (list, tuple)):
        return [v for v in value if _is_layer(v)]
    if isinstance(value, dict):
        return [v for v in value.values() if _is_layer(v)]
    return []


def _is_layer(value) -> bool:
    from polykeras.layers import Layer, Variable
    from polykeras.models import Model

    return isinstance(value, (Layer, Model)) and not isinstance(value, Variable)


def _attributes(layer) -> list[str]:
    """The attributes Keras walks for a layer's weights: the user's, holding a layer or a container
    of layers (Keras skips those every ``Layer`` has)."""
    from polykeras.layers import Layer

    base = set(vars(Layer(name="_probe")))
    return [k for k, v in vars(layer).items() if k not in base and (
        _is_layer(v) or (isinstance(v, (list, tuple, dict)) and any(
            _is_layer(x) for x in (v.values() if isinstance(v, dict) else v))))]


def write_weights(h5, layer, group: str) -> None:
    """A custom layer's weights into Keras's groups below ``group`` (:func:`weight_layout`)."""
    import numpy as np

    left: dict[int, list] = {}
    for where, holder, count in weight_layout(layer, group):
        vars_ = h5.require_group(where)
        if holder is None:
            continue
        vars_.attrs["name"] = getattr(holder, "owner_name", None) or holder.name  # Keras's: the layer's name
        values = left.setdefault(id(holder), list(holder.get_weights()))
        n = len(values) if count is None else count
        for value in values[:n]:
            vars_.create_dataset(str(len(vars_)), data=np.asarray(value))
        del values[:n]


def read_weights(h5, layer, group: str, path) -> dict[int, list]:
    """A custom layer's arrays from Keras's groups below ``group``, by ``id()`` of the polykeras layer or
    variable whose weights they are."""
    import numpy as np

    taken: dict[str, int] = {}
    out: dict[int, list] = {}
    for where, holder, count in weight_layout(layer, group):
        if holder is None:
            continue
        if where not in h5:
            raise KerasFileError(f"{path}: no weights at {where!r} for custom layer {layer.name!r} "
                                 f"({type(layer).__name__}); is its class the same as the one that wrote the file?")
        vars_, start = h5[where], taken.get(where, 0)
        n = len(vars_) - start if count is None else count
        if start + n > len(vars_):
            raise KerasFileError(f"{path}: {where!r} holds {len(vars_)} arrays; custom layer {layer.name!r} "
                                 f"({type(layer).__name__}) expects more")
        out.setdefault(id(holder), []).extend(np.asarray(vars_[str(i)]) for i in range(start, start + n))
        taken[where] = start + n
    extra = [where for where, n in taken.items() if len(h5[where]) > n]
    if extra:
        raise KerasFileError(f"{path}: {', '.join(map(repr, extra))} hold more arrays than custom layer {layer.name!r} "
                             f"({type(layer).__name__}) has weights; is its class the same as the one that wrote the "
                             "file?")
    return out
