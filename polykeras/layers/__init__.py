"""Keras-compatible layers (``from polykeras.layers import Dense``)."""

from polykeras.layers.activation_layers import ELU, LeakyReLU, PReLU, ReLU, Softmax
from polykeras.layers.base import Layer, SymbolicTensor
from polykeras.layers.category_encoding import CategoryEncoding
from polykeras.layers.bidirectional import Bidirectional
from polykeras.layers.conv import (AveragePooling1D, AveragePooling2D, AvgPool1D, AvgPool2D, Conv1D, Conv2D,
                                   Convolution1D, Convolution2D,
                                   GlobalAveragePooling1D, GlobalAveragePooling2D, GlobalAvgPool1D, GlobalAvgPool2D,
                                   GlobalMaxPool1D, GlobalMaxPool2D, GlobalMaxPooling1D, GlobalMaxPooling2D,
                                   MaxPool1D, MaxPool2D, MaxPooling1D, MaxPooling2D)
from polykeras.layers.conv_transpose import (Conv1DTranspose, Conv2DTranspose, Convolution1DTranspose,
                                             Convolution2DTranspose)
from polykeras.layers.conv_lstm import ConvLSTM1D, ConvLSTM2D
from polykeras.layers.core import Activation, Dense, Dropout, Flatten, Reshape, SpatialDropout1D, SpatialDropout2D
from polykeras.layers.depthwise_conv import (DepthwiseConv1D, DepthwiseConv2D, SeparableConv1D, SeparableConv2D,
                                             SeparableConvolution1D, SeparableConvolution2D)
from polykeras.layers.embedding import Embedding
from polykeras.layers.input_layer import Input, InputLayer
from polykeras.layers.lambda_layer import Lambda
from polykeras.layers.masking import Masking
from polykeras.layers.noise import NOISE_LAYERS, ActivityRegularization, GaussianDropout, GaussianNoise
from polykeras.layers.feature_normalization import Normalization
from polykeras.layers.merge import (Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply, Subtract, add, average,
                                    concatenate, dot, maximum, minimum, multiply, subtract)
from polykeras.layers.attention import AdditiveAttention, Attention, MultiHeadAttention
from polykeras.layers.operation import Operation
from polykeras.layers.added_loss import AddLoss
from polykeras.layers.time_distributed import TimeDistributed
from polykeras.layers.variable import Variable
from polykeras.layers.normalization import BatchNormalization, GroupNormalization, LayerNormalization, UnitNormalization
from polykeras.layers.recurrent import GRU, LSTM, SimpleRNN
from polykeras.layers.reshaping import (RESHAPING_LAYERS, Cropping1D, Cropping2D, Identity, Permute, RepeatVector,
                                        Rescaling, UpSampling1D, UpSampling2D, ZeroPadding1D, ZeroPadding2D)

BUILTIN_LAYERS: dict[str, type[Layer]] = {
    cls.kind: cls
    for cls in (InputLayer, Dense, Activation, Dropout, Flatten, Reshape, Conv1D, Conv2D, MaxPooling1D,
                MaxPooling2D, AveragePooling2D, GlobalAveragePooling1D, GlobalAveragePooling2D,
                BatchNormalization, Embedding, SimpleRNN, LSTM, GRU, Add, Subtract, Multiply, Average, Maximum,
                Minimum, Concatenate, Dot, LayerNormalization, Operation, Variable, AddLoss,
                GlobalMaxPooling1D, GlobalMaxPooling2D, *RESHAPING_LAYERS, GroupNormalization, UnitNormalization,
                AveragePooling1D, SpatialDropout1D, SpatialDropout2D, Conv1DTranspose, Conv2DTranspose,
                DepthwiseConv2D, SeparableConv2D, DepthwiseConv1D, SeparableConv1D, Bidirectional, *NOISE_LAYERS,
                Normalization, TimeDistributed, ConvLSTM1D, ConvLSTM2D)
}


#: Keras layers that polykeras writes with ``polykeras.ops``: traced into ops when called, so they are
#: no spec kind, but a Keras config (a ``.keras`` file) names them.
TRACED_LAYERS: dict[str, type[Layer]] = {
    cls.__name__: cls for cls in (MultiHeadAttention, Attention, AdditiveAttention, Masking, CategoryEncoding, Lambda,
                                 ReLU, LeakyReLU, ELU, Softmax, PReLU)
}


def layer_class(kind: str) -> type[Layer]:
    """The layer class for a spec/Keras kind name, built-in (a spec kind, or a layer traced into
    ops) or from a plugin."""
    from polykeras.plugins import plugin_layers

    known = {**BUILTIN_LAYERS, **TRACED_LAYERS, **plugin_layers()}
    if kind not in known:
        raise ValueError(f"unknown layer kind {kind!r}; known kinds: {', '.join(sorted(known))}")
    return known[kind]


MODEL_CLASSES = ("Sequential", "Functional", "Model")


def deserialize(config: dict, custom_objects: dict | None = None) -> Layer:
    """A layer from Keras's ``{"class_name": ..., "config": ...}`` form (a
    nested ``Sequential``/functional model too). A class of the user's is found as Keras finds
    it: in ``custom_objects``, in a ``custom_object_scope`` in force, or registered (by
    ``registered_name``, then class name) -- before the built-in layer of the same name."""
    from polykeras.saving.registration import custom_object_scope, get_registered_object

    name = config["class_name"]
    with custom_object_scope(custom_objects):
        custom = get_registered_object(config.get("registered_name") or name) or get_registered_object(name)
        if isinstance(custom, type):
            return custom.from_config(config["config"])
        if name in MODEL_CLASSES:
            from polykeras import models

            cls = models.Sequential if name == "Sequential" else models.Model
            return cls.from_config(config["config"])
        return layer_class(name).from_config(config["config"])


def serialize(layer) -> dict:
    """Keras's ``layers.serialize``: ``{"module", "class_name", "config", "registered_name"}``."""
    from polykeras.saving.serialization import serialize_keras_object

    return serialize_keras_object(layer)


__all__ = [name for name in dir() if not name.startswith("_")]
