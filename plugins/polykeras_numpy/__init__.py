"""The NumPy reference backend plugin.

It registers like any third-party backend would: an entry point in the
``polykeras`` group (see the project's ``pyproject.toml``) pointing at this
module, whose :func:`polykeras_backends` hook declares the backend. Nothing
heavy happens at import: the kernels load when the backend is first created.
"""

from __future__ import annotations

from polykeras.backends import BackendInfo
from polykeras.hookspecs import hookimpl

LAYER_KINDS = frozenset({
    "Dense", "Activation", "Dropout", "Flatten", "Reshape", "Conv1D", "Conv2D", "MaxPooling1D", "MaxPooling2D",
    "AveragePooling2D", "GlobalAveragePooling1D", "GlobalAveragePooling2D", "BatchNormalization", "Embedding",
    "SimpleRNN", "LSTM", "GRU", "Bidirectional", "TimeDistributed",
    "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot",
    "LayerNormalization", "Operation", "Variable",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D",
    "ZeroPadding1D", "ZeroPadding2D", "Cropping1D", "Cropping2D", "UpSampling1D", "UpSampling2D", "RepeatVector",
    "Permute", "Identity", "GroupNormalization", "UnitNormalization",
    "AveragePooling1D", "Rescaling", "SpatialDropout1D", "SpatialDropout2D",
    "Conv1DTranspose", "Conv2DTranspose", "DepthwiseConv2D", "SeparableConv2D", "DepthwiseConv1D",
    "SeparableConv1D",
    "GaussianNoise", "GaussianDropout", "ActivityRegularization", "AddLoss", "Normalization",
    "ConvLSTM1D", "ConvLSTM2D",
})


def _numpy_version() -> str:
    import numpy

    return numpy.__version__


@hookimpl
def polykeras_backends():
    return [BackendInfo(
        name="numpy",
        factory="polykeras_numpy.backend:NumpyBackend",
        requires=("numpy",),
        aliases=("reference",),
        version=_numpy_version,
        summary="pure-NumPy reference: hand-written forward and backward, the executable specification",
        layer_kinds=LAYER_KINDS,
        plugin="polykeras_numpy",
        eager_metrics="polykeras_numpy.metrics:get_statistics",
    )]
