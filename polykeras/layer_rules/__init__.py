"""The rules of each layer kind that every backend follows, in one place.

A backend -- the NumPy reference included -- builds one :class:`LayerRules`
per layer of a spec with :func:`rules_for` and reads from it what it needs
besides its own math: the config parsed and validated (units, activation
names, kernel sizes, strides, padding, gate layout; an unsupported option
raises ``NotImplementedError`` naming the layer, a bad value
``ValueError``), output shapes, TensorFlow's padding amounts
(:func:`padding_amounts`), the shape of dropout masks, the positions of
BatchNormalization's weights, Embedding's id check. The rules depend on NumPy
only, so a third-party backend never has to import another backend.

The semantics are written in the module docstrings here (:mod:`.core`,
:mod:`.conv`, :mod:`.normalization`, :mod:`.recurrent`, :mod:`.conv_lstm`, :mod:`.bidirectional`, :mod:`.time_distributed`,
:mod:`.reshaping`); the merge layers' rules are in :mod:`polykeras.layers.merge`. The math itself -- forward and
backward passes -- is the NumPy reference's (``polykeras_numpy.layers``).
"""

from __future__ import annotations

from polykeras.spec import LayerSpec

from .base import LayerRules, SameShape, as_tuple
from .conv import (AveragePooling1DRules, AveragePooling2DRules, Conv1DRules, Conv2DRules, ConvRules,
                   GlobalAveragePooling1DRules,
                   GlobalAveragePooling2DRules, GlobalMaxPooling1DRules, GlobalMaxPooling2DRules, GlobalPoolingRules,
                   MaxPooling1DRules, MaxPooling2DRules, PoolingRules, padding_amounts, window)
from .conv_transpose import (Conv1DTransposeRules, Conv2DTransposeRules, ConvTransposeRules,
                             transpose_amounts)
from .conv_lstm import ConvLSTM1DRules, ConvLSTM2DRules, ConvLSTMRules
from .core import (ActivationRules, DenseRules, DropoutRules, FlattenRules, ReshapeRules, SpatialDropout1DRules,
                   SpatialDropout2DRules)
from .depthwise_conv import DepthwiseConv1DRules, DepthwiseConv2DRules, SeparableConv1DRules, SeparableConv2DRules
from .normalization import (BatchNormalizationRules, EmbeddingRules, GroupNormalizationRules, LayerNormalizationRules,
                            UnitNormalizationRules, layer_norm_axes)
from .bidirectional import BidirectionalRules
from .recurrent import GRURules, LSTMRules, RecurrentRules, SimpleRNNRules
from .reshaping import RESHAPING_RULES
from .time_distributed import TimeDistributedRules
from .noise import NOISE_RULES

#: The rules class of each built-in layer kind with config or shape rules.
RULES: dict[str, type[LayerRules]] = {cls.kind: cls for cls in (
    DenseRules, ActivationRules, DropoutRules, FlattenRules, ReshapeRules, Conv1DRules, Conv2DRules,
    MaxPooling1DRules, MaxPooling2DRules, AveragePooling2DRules, GlobalAveragePooling1DRules,
    GlobalAveragePooling2DRules, BatchNormalizationRules, EmbeddingRules, SimpleRNNRules, LSTMRules, GRURules,
    LayerNormalizationRules, GlobalMaxPooling1DRules, GlobalMaxPooling2DRules, *RESHAPING_RULES,
    GroupNormalizationRules, UnitNormalizationRules, AveragePooling1DRules, SpatialDropout1DRules,
    SpatialDropout2DRules, Conv1DTransposeRules, Conv2DTransposeRules, DepthwiseConv2DRules, SeparableConv2DRules,
    DepthwiseConv1DRules, SeparableConv1DRules, BidirectionalRules, *NOISE_RULES,
    TimeDistributedRules, ConvLSTM1DRules, ConvLSTM2DRules,
)}


def rules_for(spec: LayerSpec, backend: str = "polykeras") -> LayerRules:
    """The rules of ``spec``'s layer, its config read and checked now.

    ``backend`` words the "not supported by ..." messages (e.g. ``"the jax
    backend"``). Kinds without rules of their own here (the merge layers,
    kinds added by plugins) get the plain :class:`LayerRules`.
    """
    return RULES.get(spec.kind, LayerRules)(spec, backend)


__all__ = [
    "RULES", "rules_for", "LayerRules", "SameShape", "as_tuple", "padding_amounts", "window",
    "DenseRules", "ActivationRules", "DropoutRules", "FlattenRules", "ReshapeRules",
    "ConvRules", "Conv1DRules", "Conv2DRules", "PoolingRules", "MaxPooling1DRules", "MaxPooling2DRules",
    "AveragePooling2DRules", "GlobalPoolingRules", "GlobalAveragePooling1DRules", "GlobalAveragePooling2DRules",
    "BatchNormalizationRules", "EmbeddingRules", "RecurrentRules", "SimpleRNNRules", "LSTMRules", "GRURules",
    "LayerNormalizationRules", "layer_norm_axes", "GlobalMaxPooling1DRules", "GlobalMaxPooling2DRules",
    "ConvTransposeRules", "Conv1DTransposeRules", "Conv2DTransposeRules", "transpose_amounts",
    "DepthwiseConv1DRules", "DepthwiseConv2DRules", "SeparableConv1DRules", "SeparableConv2DRules",
    "BidirectionalRules", "TimeDistributedRules", "ConvLSTMRules", "ConvLSTM1DRules", "ConvLSTM2DRules",
]
