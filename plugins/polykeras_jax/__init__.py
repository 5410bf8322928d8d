"""The JAX backend plugin: a polykeras spec compiled into pure, jitted JAX functions.

It registers exactly as a third-party backend would: an entry point in the
``polykeras`` group (``jax = "polykeras_jax"`` in the project's
``pyproject.toml``) pointing at this module, whose :func:`polykeras_backends`
hook declares the backend. Importing this module does **not** import JAX:
the factory is a ``"module:attr"`` string and the device and version
callables import JAX only when someone asks (``polykeras backends``, or the
first ``compile``).

Layout of the plugin, one concept per module:

* :mod:`.backend` -- the :class:`~polykeras.program.Backend`: device choice;
* :mod:`.precision` -- float32/float64 and JAX's process-wide x64 switch;
* :mod:`.program` -- the :class:`~polykeras.program.Program`: live state and
  the jitted train/test/predict steps;
* :mod:`.model` -- the spec's forward pass as one pure function, weights
  split into trainable and non-trainable, dropout noise;
* :mod:`.layers` -- one pure function per layer kind (Keras's math, as the
  NumPy reference writes it out);
* :mod:`.losses`, :mod:`.metrics`, :mod:`.optimizers`, :mod:`.activations`.
"""

from __future__ import annotations

from polykeras.backends import BackendInfo
from polykeras.hookspecs import hookimpl

#: The layer kinds this backend implements (checked by the core before compiling).
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

#: Accelerator platforms first: the first available device is the default.
PLATFORMS = ("tpu", "gpu", "cpu")


def available_devices() -> list[str]:
    """The JAX platforms that really have a device here, best first
    (e.g. ``["gpu", "cpu"]``). Imports JAX, which initialises its backends."""
    import jax

    found = []
    for platform in PLATFORMS:
        try:
            if jax.devices(platform):
                found.append(platform)
        except RuntimeError:  # "Unknown backend": no such platform in this jaxlib
            continue
    return found


def jax_version() -> str:
    import jax

    return jax.__version__


@hookimpl
def polykeras_backends():
    return [BackendInfo(
        name="jax",
        factory="polykeras_jax.backend:JaxBackend",
        requires=("jax", "optax"),
        extra="jax",
        devices=available_devices,
        version=jax_version,
        summary="the whole train step as one jitted XLA function (lax.scan for steps_per_execution and RNNs)",
        layer_kinds=LAYER_KINDS,
        plugin="polykeras_jax",
    )]
