"""NumPy reference kernels, one per layer kind.

``KERNELS`` maps each Keras layer class name (a spec's ``kind``) to the
:class:`~.base.Kernel` subclass that implements it.
"""

from __future__ import annotations

from .base import ForwardContext, Kernel
from .bidirectional import Bidirectional
from .conv import Conv1D, Conv2D
from .conv_lstm import ConvLSTM1D, ConvLSTM2D
from .conv_transpose import Conv1DTranspose, Conv2DTranspose
from .core import Activation, Dense, Dropout, Flatten, Reshape, SpatialDropout1D, SpatialDropout2D
from .depthwise_conv import DepthwiseConv1D, DepthwiseConv2D, SeparableConv1D, SeparableConv2D
from .embedding import Embedding
from .merge import Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply, Subtract
from .normalization import BatchNormalization, GroupNormalization, LayerNormalization, UnitNormalization
from .operation import Op
from .variable import Variable
from .pooling import (
    AveragePooling1D,
    AveragePooling2D,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    MaxPooling1D,
    MaxPooling2D,
)
from .recurrent import GRU, LSTM, SimpleRNN
from .reshaping import RESHAPING_KERNELS
from .noise import NOISE_KERNELS
from .time_distributed import TimeDistributed

KERNELS: dict[str, type[Kernel]] = {
    cls.kind: cls
    for cls in (
        Dense,
        Activation,
        Dropout,
        Flatten,
        Reshape,
        Conv1D,
        Conv2D,
        MaxPooling1D,
        MaxPooling2D,
        AveragePooling2D,
        GlobalAveragePooling1D,
        GlobalAveragePooling2D,
        BatchNormalization,
        Embedding,
        SimpleRNN,
        LSTM,
        GRU,
        Add,
        Subtract,
        Multiply,
        Average,
        Maximum,
        Minimum,
        Concatenate,
        Op,
        Variable,
        Dot,
        LayerNormalization,
        GlobalMaxPooling1D,
        GlobalMaxPooling2D,
        *RESHAPING_KERNELS,
        GroupNormalization,
        UnitNormalization,
        AveragePooling1D,
        SpatialDropout1D,
        SpatialDropout2D,
        Conv1DTranspose,
        Conv2DTranspose,
        DepthwiseConv2D,
        SeparableConv2D,
        DepthwiseConv1D,
        SeparableConv1D,
        Bidirectional,
        TimeDistributed,
        ConvLSTM1D,
        ConvLSTM2D,
    )
}
KERNELS.update({cls.kind: cls for cls in NOISE_KERNELS})

__all__ = ["KERNELS", "ForwardContext", "Kernel", *KERNELS]
