"""Keras's ``clone_model``: the same architecture with new layers, so new (freshly initialized) weights,
and no compile state -- Keras 3's default (``clone_function`` rebuilds each layer from its config)."""

from __future__ import annotations

from polykeras.layers.base import Layer
from polykeras.models.model import Model
from polykeras.models.sequential import Sequential


def _clone_layer(layer):
    return type(layer).from_config(layer.get_config())


def clone_model(model: Model, input_tensors=None, clone_function=None, call_function=None, recursive: bool = False,
                **kwargs) -> Model:
    """A new model of ``model``'s architecture with new weights (copy them with
    ``clone.set_weights(model.get_weights())``). A ``Sequential`` model's layers go through
    ``clone_function(layer)`` (default: a new layer from the layer's config); a functional model is
    rebuilt from its config; a subclassed one from its own ``get_config()``, as Keras does."""
    if not isinstance(model, Model):
        raise TypeError(f"clone_model takes a model, got {type(model).__name__}")
    unsupported = [name for name, value in (("input_tensors", input_tensors), ("call_function", call_function),
                                            ("recursive", recursive or None), *kwargs.items()) if value is not None]
    if unsupported:
        raise NotImplementedError(f"clone_model: {', '.join(unsupported)} not supported by polykeras; clone with the "
                                  "defaults, or rebuild the model with the functional API")
    if isinstance(model, Sequential):
        clone = Sequential(name=model.name)
        if model._input_layer is not None:
            clone.add(_clone_layer(model._input_layer))
        for layer in model.layers:
            new = (clone_function or _clone_layer)(layer)
            if not isinstance(new, (Layer, Model)):
                raise TypeError(f"clone_function returned {type(new).__name__} for layer {layer.name!r}, not a layer")
            clone.add(new)
        return clone
    if clone_function is not None:
        raise NotImplementedError("clone_model: clone_function is supported for Sequential models only in polykeras")
    if type(model) is Model:
        config = model.get_config()
        owners = sorted({e["config"].get("owner") for e in config["layers"] if e["class_name"] == "Variable"})
        if owners:
            raise NotImplementedError(f"clone_model: the custom layer(s) {', '.join(map(repr, owners))} of model "
                                      f"{model.name!r} are traced into their variables and ops, whose initializers "
                                      "the config does not keep, so they cannot be re-initialized; build the model "
                                      "again from its code")
        return Model.from_config(config)
    if type(model).get_config is Model.get_config:
        raise NotImplementedError(f"clone_model: the subclassed model {type(model).__name__} needs a get_config() "
                                  "returning its constructor arguments (Keras clones it as cls(**get_config()))")
    return type(model)(**model.get_config())
