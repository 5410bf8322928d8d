"""The Keras 3 backend plugin: a polykeras spec compiled into a real
``keras.Model`` and trained by Keras, on each of Keras's own backends.

Backends (``polykeras backends`` lists them):

* ``keras-jax``, ``keras-torch``, ``keras-tensorflow`` -- Keras 3 on that framework;
* ``keras`` -- Keras's own default: ``KERAS_BACKEND``, else ``keras.json``, else ``tensorflow``;
* ``keras-numpy`` -- Keras's NumPy backend: it predicts and evaluates but
  *cannot train* (no autodiff); training asks for another backend.

It registers exactly as a third-party backend would (``keras = "polykeras_keras"``
in the ``polykeras`` entry-point group). Importing this module imports neither
Keras nor any framework: versions come from package metadata, and Keras is
imported only inside the process that runs a program (:mod:`.worker`).

Layout: :mod:`.backend` (the Backend, and where a program runs),
:mod:`.worker` (one process per Keras backend and dtype) and :mod:`.program`
(the user-side proxy), then, inside the Keras process, :mod:`.runner` (the
Program), :mod:`.model` (spec -> ``keras.Model``, parity-mode dropout) and
:mod:`.engines` (Keras's step on each framework, autodiff for gradients).
Exchange of model files with Keras (``.keras``) is not here but in the core,
:mod:`polykeras.saving`, which needs only ``h5py``.
"""

from __future__ import annotations

from importlib import metadata

from polykeras.backends import BackendInfo
from polykeras.hookspecs import hookimpl

#: The layer kinds this backend runs (Keras has them all; the parity graph feeds their dropout masks).
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
#: Graph features beyond a chain: the spec's graph is built as a Keras functional model.
GRAPH_FEATURES = frozenset({"multiple_inputs", "multiple_outputs", "shared_layers", "masking",
                            "inference_nodes", "added_losses"})

NUMPY_CANNOT_TRAIN = ("Keras's numpy backend cannot train (it has no automatic differentiation); it can only predict "
                      "and evaluate. Train with keras-jax, keras-torch or keras-tensorflow")

#: Keras backend -> (modules it needs, pip extra, the framework's distribution name).
FRAMEWORKS = {
    "jax": (("keras", "jax"), "keras,jax", "jax"),
    "torch": (("keras", "torch"), "keras,torch", "torch"),
    "tensorflow": (("keras", "tensorflow"), "tensorflow", "tensorflow-cpu"),
    "numpy": (("keras",), "keras", None),
}


def _version(framework: str | None):
    def version() -> str:
        keras = metadata.version("keras")
        if framework is None:
            return f"keras {keras}"
        for dist in (framework, framework.replace("-cpu", "")):
            try:
                return f"keras {keras}, {framework.replace('-cpu', '')} {metadata.version(dist)}"
            except metadata.PackageNotFoundError:
                continue
        return f"keras {keras}"

    return version


def _info(name: str, keras_backend: str, factory: str, summary: str) -> BackendInfo:
    requires, extra, framework = FRAMEWORKS[keras_backend]
    # not an "auto" candidate unless named: a worker process importing Keras costs seconds before its first step
    return BackendInfo(name=name, factory=factory, requires=requires, extra=extra, version=_version(framework),
                       summary=summary, layer_kinds=LAYER_KINDS, plugin="polykeras_keras", auto_candidate=False)


def _default_info() -> BackendInfo:
    from .backend import default_keras_backend

    keras_backend = default_keras_backend()
    known = keras_backend if keras_backend in FRAMEWORKS else "numpy"  # create() explains a bad value
    return _info("keras", known, "polykeras_keras.backend:create_default",
                 f"Keras 3 on Keras's own default backend (KERAS_BACKEND, else keras.json, else tensorflow: "
                 f"now {keras_backend}); a worker process")


@hookimpl
def polykeras_backends():
    return [
        _default_info(),
        _info("keras-jax", "jax", "polykeras_keras.backend:create_jax",
              "Keras 3 on JAX: Keras's jitted train step, in a worker process"),
        _info("keras-torch", "torch", "polykeras_keras.backend:create_torch",
              "Keras 3 on PyTorch: Keras's eager train step, in a worker process"),
        _info("keras-tensorflow", "tensorflow", "polykeras_keras.backend:create_tensorflow",
              "Keras 3 on TensorFlow: Keras's train step as a tf.function, in a worker process"),
        _info("keras-numpy", "numpy", "polykeras_keras.backend:create_numpy",
              "Keras 3 on NumPy: predict and evaluate only -- Keras's numpy backend CANNOT TRAIN"),
    ]
