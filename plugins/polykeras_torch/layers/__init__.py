"""Torch layers, one class per layer kind.

``LAYERS`` maps each Keras layer class name (a spec's ``kind``) to the
:class:`~.base.TorchLayer` subclass that implements it.
"""

from __future__ import annotations

from .base import StepContext, TorchLayer
from .bidirectional import Bidirectional
from .conv import (
    AveragePooling1D,
    AveragePooling2D,
    Conv1D,
    Conv2D,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    MaxPooling1D,
    MaxPooling2D,
)
from .conv_lstm import ConvLSTM1D, ConvLSTM2D
from .conv_transpose import Conv1DTranspose, Conv2DTranspose
from .core import (Activation, BatchNormalization, Dense, Dropout, Embedding, Flatten, Reshape, SpatialDropout1D,
                   SpatialDropout2D)
from .depthwise_conv import DepthwiseConv1D, DepthwiseConv2D, SeparableConv1D, SeparableConv2D
from .merge import MERGE_LAYERS
from .normalization import GroupNormalization, LayerNormalization, UnitNormalization
from .operation import Op
from .variable import Variable
from .recurrent import GRU, LSTM, SimpleRNN
from .reshaping import RESHAPING_LAYERS
from .noise import NOISE_LAYERS
from .time_distributed import TimeDistributed

LAYERS: dict[str, type[TorchLayer]] = {
    cls.kind: cls
    for cls in (
        Dense, Activation, Dropout, Flatten, Reshape, Conv1D, Conv2D, MaxPooling1D, MaxPooling2D, AveragePooling2D,
        GlobalAveragePooling1D, GlobalAveragePooling2D, BatchNormalization, Embedding, SimpleRNN, LSTM, GRU,
        GlobalMaxPooling1D, GlobalMaxPooling2D, *RESHAPING_LAYERS,
        GroupNormalization, UnitNormalization, AveragePooling1D, SpatialDropout1D, SpatialDropout2D,
        LayerNormalization, Op, Variable, *MERGE_LAYERS,
        Conv1DTranspose, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D, DepthwiseConv1D, SeparableConv1D,
        Bidirectional, TimeDistributed,
        ConvLSTM1D, ConvLSTM2D,
    )
}
LAYERS.update({cls.kind: cls for cls in NOISE_LAYERS})

__all__ = ["LAYERS", "StepContext", "TorchLayer", "MERGE_LAYERS"]
