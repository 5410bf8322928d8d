"""``Input`` and ``InputLayer``: where a model's data enters."""

from __future__ import annotations

from polykeras import backend as _backend
from polykeras.layers.base import Layer, SymbolicTensor, _as_shape


class InputLayer(Layer):
    """The layer behind :func:`Input`; in a ``Sequential`` list it fixes the input shape."""

    def __init__(self, shape=None, batch_size=None, dtype=None, name=None, batch_shape=None, input_shape=None, **kwargs):
        if shape is None and input_shape is not None:
            shape = input_shape
        if shape is None and batch_shape is not None:
            shape = tuple(batch_shape)[1:]
        if shape is None:
            raise ValueError("Input needs a shape, e.g. Input(shape=(784,)) (the batch dimension is left out)")
        super().__init__(name=name, dtype=dtype, **kwargs)
        self.shape = _as_shape(shape)
        self.batch_size = batch_size
        self.built = True
        self.input_shape = self.output_shape = (None,) + self.shape
        tensor = SymbolicTensor(self.output_shape, dtype or _backend.floatx(), self)
        self._remember(tensor, tensor)  # an input layer's input and output are the one tensor it makes

    def get_config(self):
        return {"name": self.name, "batch_shape": (self.batch_size,) + self.shape, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        batch_shape = config.pop("batch_shape", None) or config.pop("batch_input_shape", None)
        config.pop("sparse", None), config.pop("ragged", None)
        return cls(batch_shape=batch_shape, **config)


def Input(shape=None, batch_size=None, dtype=None, name=None, batch_shape=None) -> SymbolicTensor:
    """A symbolic model input, as ``keras.Input``: ``Input(shape=(784,))``."""
    return InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, name=name, batch_shape=batch_shape).output
