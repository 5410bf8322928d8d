"""``polykeras.models``: Model, Sequential, load_model, save_model, clone_model, model_from_json."""

from polykeras.models.model import Model
from polykeras.models.sequential import Sequential
from polykeras.models.cloning import clone_model


def load_model(filepath, custom_objects=None, compile: bool = True):
    """Load a model written by ``model.save`` or by Keras 3 (a ``.keras`` file), or a polykeras
    ``.polykeras`` file; any backend can load it."""
    from polykeras.saving import load_model as _load

    return _load(filepath, custom_objects=custom_objects, compile=compile)


def save_model(model, filepath, overwrite: bool = True, **kwargs) -> None:
    model.save(filepath, overwrite=overwrite)


def model_from_json(json_string: str, custom_objects=None) -> Model:
    import json

    from polykeras.saving import custom_object_scope, model_from_config

    with custom_object_scope(custom_objects):
        return model_from_config(json.loads(json_string))


__all__ = ["Model", "Sequential", "clone_model", "load_model", "save_model", "model_from_json"]
