"""The PyTorch backend plugin.

It registers exactly as a third-party backend would: an entry point in the
``polykeras`` group (``torch = "polykeras_torch"`` in the project's
``pyproject.toml``) pointing at this module, whose :func:`polykeras_backends`
hook declares the backend. Importing this module must stay cheap -- it is
imported whenever polykeras looks for backends -- so torch itself is imported
only inside the callables below (the factory, the device list, the version),
i.e. when someone actually uses or inspects the backend.

The backend compiles a spec into native PyTorch (see :mod:`.backend` and
:mod:`.program`), runs on ``cpu`` and, where present, ``cuda`` and ``mps``, in
float32 and float64, and follows Keras's semantics exactly: in float64 it
agrees with the NumPy reference to rounding error.
"""

from __future__ import annotations

from polykeras.backends import BackendInfo
from polykeras.hookspecs import hookimpl

#: The layer kinds this backend implements (the same set as the reference).
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


def available_devices() -> list[str]:
    """The devices torch can use on this machine, best first (the default is
    the first): every CUDA device, then Apple's MPS, then the CPU."""
    import torch

    devices = []
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    devices.append("cpu")
    return devices


def torch_version() -> str:
    import torch

    return torch.__version__


@hookimpl
def polykeras_backends():
    return [BackendInfo(
        name="torch",
        factory="polykeras_torch.backend:TorchBackend",
        requires=("torch",),
        extra="torch",
        aliases=("pytorch",),
        devices=available_devices,
        version=torch_version,
        summary="PyTorch: the spec compiled to native torch ops, fused recurrent kernels, Keras update rules",
        layer_kinds=LAYER_KINDS,
        plugin="polykeras_torch",
    )]
