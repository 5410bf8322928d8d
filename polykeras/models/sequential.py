"""``Sequential``: a plain stack of layers, built as soon as its input shape is known."""

from __future__ import annotations

from typing import Any

from polykeras.layers.base import Layer, SymbolicTensor, format_shape, unique_name
from polykeras.layers.input_layer import InputLayer
from polykeras.models.graph import Graph
from polykeras.models.model import Model


class Sequential(Model):
    """``Sequential([layers...])`` or ``.add(layer)``; the input shape comes from
    ``input_shape=``/``input_dim=`` on the first layer, a leading
    ``layers.Input``/``InputLayer``, or the first data the model sees. A model
    in the stack (a ``Sequential`` inside another) contributes its layers."""

    def __init__(self, layers=None, name: str | None = None, **kwargs):
        super().__init__(name=name or unique_name("sequential"), **kwargs)
        self._stack: list[Layer | Model] = []
        self._input_layer: InputLayer | None = None
        for layer in layers or []:
            self.add(layer)

    def add(self, layer) -> None:
        if isinstance(layer, SymbolicTensor):  # Sequential([Input(shape=...), ...]) as in Keras 3
            layer = layer.layer
        if not isinstance(layer, (Layer, Model)):
            raise TypeError(f"Sequential.add() takes a layer or a model, got {layer!r}")
        if isinstance(layer, InputLayer):
            if self._stack or self._input_layer is not None:
                raise ValueError("an Input/InputLayer can only be the first element of a Sequential model")
            self._input_layer = layer
        else:
            if any(l.name == layer.name for l in self._stack):
                raise ValueError(f"a layer named {layer.name!r} is already in model {self.name!r}; names must be unique")
            self._stack.append(layer)
            declared = getattr(layer, "_declared_input_shape", None)
            if isinstance(layer, Model) and layer.built:
                declared = tuple(layer._spec().inputs[0].shape[1:]) if len(layer._spec().inputs) == 1 else None
            if self._input_layer is None and len(self._stack) == 1 and declared is not None:
                self._input_layer = InputLayer(shape=declared, dtype=getattr(layer, "dtype", None))
        if self._input_layer is not None:
            self._build_graph()

    def pop(self) -> Layer:
        if not self._stack:
            raise IndexError("there are no layers to pop")
        layer = self._stack.pop()
        if self._input_layer is not None:
            self._build_graph()
        return layer

    @property
    def layers(self) -> list[Layer | Model]:
        return list(self._stack)

    @property
    def built(self) -> bool:
        return self._input_layer is not None and bool(self._stack)

    def build(self, input_shape=None) -> None:
        """Build for ``input_shape`` (batch dimension included, as in Keras)."""
        if self._input_layer is None:
            if input_shape is None:
                raise ValueError(f"model {self.name!r} has no input shape yet: pass input_shape=... to its first "
                                 "layer, start it with layers.Input(shape=...), or call build((None, ...))")
            self._input_layer = InputLayer(shape=tuple(input_shape)[1:])
        self._build_graph()

    def _build_graph(self) -> None:
        if not self._stack:
            return
        tensor = self._input_layer.output
        for layer in self._stack:
            try:
                tensor = layer(tensor)
            except ValueError as exc:
                raise ValueError(f"cannot add layer {layer.name!r} to model {self.name!r}: {exc}") from None
            if isinstance(tensor, list):  # as Keras: e.g. a recurrent layer with return_state=True
                raise ValueError(f"cannot add layer {layer.name!r} to model {self.name!r}: it returns "
                                 f"{len(tensor)} tensors, and every layer of a Sequential model must return one; "
                                 "use the functional API (polykeras.Model(inputs, outputs)) for layers of several "
                                 "outputs")
        self._set_graph(Graph([self._input_layer.output], [tensor], self.name))

    def _ensure_built(self, x_shape: tuple) -> None:
        """Deferred build from the first data seen (Keras builds on first call)."""
        if not self.built:
            if not self._stack:
                raise ValueError(f"model {self.name!r} has no layers; add some before training")
            self.build((None,) + tuple(x_shape[1:]))

    def _weighted_layers(self) -> list[Layer]:
        """None before the model is built: Keras's ``weights``/``get_weights()`` are then ``[]``."""
        return super()._weighted_layers() if self._graph is not None else []

    def count_params(self) -> int:
        if self._graph is None:
            raise ValueError(f"model {self.name!r} is not built yet, so it has no parameters to count: give the "
                             "first layer an input_shape, start it with layers.Input(shape=...), or call "
                             "build((None, ...))")
        return super().count_params()

    def _spec(self):
        if not self.built:
            raise ValueError(f"model {self.name!r} is not built yet: give the first layer an input_shape, or fit/"
                             "predict on data first")
        return super()._spec()

    def get_config(self) -> dict[str, Any]:
        layers = []
        if self._input_layer is not None:
            layers.append({"class_name": "InputLayer", "config": self._input_layer.get_config()})
        layers += [{"class_name": type(l).__name__, "config": l.get_config()} for l in self._stack]
        return {"name": self.name, "layers": layers}

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: dict | None = None) -> "Sequential":
        """A new model (new weights) from :meth:`get_config`'s or Keras's config; ``custom_objects``
        names the classes of the user's it holds, as in Keras."""
        from polykeras.layers import deserialize

        model = cls(name=config.get("name"))
        for entry in config["layers"]:
            model.add(deserialize(entry, custom_objects))
        return model

    def __repr__(self) -> str:
        shape = format_shape(self.input_shape) if self.built else "unbuilt"
        return f"<Sequential name={self.name}, {len(self._stack)} layers, input {shape}>"
