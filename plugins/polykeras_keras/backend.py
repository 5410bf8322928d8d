"""The keras backends: ``compile`` hands a spec to Keras on one Keras backend.

Where the program runs (see :mod:`.worker`): Keras fixes its backend when it
is imported, so a program normally runs in a worker process that imported
Keras for its backend and dtype. When this process has *already* imported
Keras on the wanted backend with the wanted ``floatx`` (a user who mixes
``import keras`` and polykeras, or a worker of the conformance suite started
with ``KERAS_BACKEND`` set), the program runs right here, with no round trips.
``POLYKERAS_KERAS_WORKER=1`` forces the worker, ``=0`` forbids it (an error
if Keras here is on another backend).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Sequence

import numpy as np

from polykeras.program import Backend, Program
from polykeras.spec import ModelSpec, TrainingSpec

from . import GRAPH_FEATURES, LAYER_KINDS


class KerasBackend(Backend):
    """Keras 3 on ``keras_backend`` (``jax``, ``torch``, ``tensorflow`` or ``numpy``)."""

    layer_kinds = LAYER_KINDS
    graph_features = GRAPH_FEATURES
    # loss_mask: Keras's train step weights a masked output's loss by its mask itself (and its metrics)
    training_features = frozenset({"sample_weight", "per_output_sample_weight", "metric_statistics", "loss_mask"})
    optimizer_kinds = frozenset({"SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Nadam", "Adamax", "Adadelta", "Lion",
                                 "Ftrl"})
    loss_kinds = frozenset({"categorical_crossentropy", "sparse_categorical_crossentropy", "binary_crossentropy",
                            "mean_squared_error", "mean_absolute_error", "mean_absolute_percentage_error",
                            "mean_squared_logarithmic_error", "huber", "log_cosh", "hinge", "squared_hinge",
                            "kl_divergence", "poisson", "cosine_similarity", "function"})

    def __init__(self, keras_backend: str, device: str = "cpu", dtype: str = "float32"):
        super().__init__(device, dtype)
        self.keras_backend = keras_backend
        self.name = f"keras-{keras_backend}"
        if keras_backend == "jax":  # add_loss terms: after fit, evaluate(batch_size=5) on 12 samples (a partial
            # last batch) gave 2.1653 where the reference and Keras 3's own evaluate give 2.1892 (measured,
            # tests/test_added_losses.py's model); cause not found, so keras-jax refuses such models
            self.graph_features = GRAPH_FEATURES - {"added_losses"}

    def in_process(self) -> bool:
        """Whether this process's Keras can run the program itself."""
        force = os.environ.get("POLYKERAS_KERAS_WORKER", "").strip()
        keras = sys.modules.get("keras")
        here = None
        if keras is not None:
            try:
                here = (keras.backend.backend(), keras.config.floatx())
            except AttributeError:  # a half-imported or non-Keras-3 module
                here = None
        matches = here == (self.keras_backend, self.dtype)
        if matches and self.keras_backend == "jax" and self.dtype == "float64":
            import jax

            matches = bool(jax.config.jax_enable_x64)
        if force == "1":
            return False
        if force == "0":
            if not matches:
                raise RuntimeError(f"POLYKERAS_KERAS_WORKER=0, but Keras in this process is "
                                   f"{here or 'not imported'}, not ({self.keras_backend!r}, {self.dtype!r})")
            return True
        return matches

    def compile(self, spec: ModelSpec, weights: Sequence[np.ndarray], training: TrainingSpec | None = None,
                *, parity: bool = False) -> Program:
        _check_framework_limits(self.keras_backend, spec)
        if self.in_process():
            from .runner import KerasRunner

            program = KerasRunner(self.keras_backend, spec, weights, training, self.dtype, parity)
            program.backend = self
            return program
        from .program import WorkerProgram
        from .worker import Worker

        return WorkerProgram(self, Worker.get(self.keras_backend, self.dtype, self.device), spec, weights, training,
                             parity)

    def describe(self) -> str:
        return f"Keras 3 on {self.keras_backend}, {self.device} ({self.dtype})"


def _check_framework_limits(keras_backend: str, spec: ModelSpec) -> None:
    """Refuse, before anything runs, what Keras's framework itself rejects mid-step with an opaque error."""
    if keras_backend != "tensorflow":
        return
    for layer in spec.layers:
        strides = layer.config.get("strides") if layer.kind in ("DepthwiseConv2D", "SeparableConv2D") else None
        if isinstance(strides, (list, tuple)) and len(set(strides)) > 1:
            raise NotImplementedError(
                f"layer {layer.name!r} ({layer.kind}) has strides {tuple(strides)}: TensorFlow's depthwise "
                "convolution takes equal strides in both spatial dimensions only (its DepthwiseConv2dNative kernel "
                "refuses others); run this model on another backend (torch, jax, keras-jax, keras-torch)")


def make(keras_backend: str, device: str, dtype: str) -> KerasBackend:
    """The backend for ``keras_backend``; keras-jax with data parallelism (:mod:`.distributed`)."""
    if keras_backend == "jax":
        from .distributed import KerasJaxBackend

        return KerasJaxBackend(keras_backend, device, dtype)
    return KerasBackend(keras_backend, device, dtype)


def factory(keras_backend: str):
    def create(device: str, dtype: str) -> KerasBackend:
        return make(keras_backend, device, dtype)

    return create


def default_keras_backend() -> str:
    """Keras's own choice, found as Keras finds it (without importing Keras):
    ``KERAS_BACKEND``, else the ``backend`` of ``$KERAS_HOME/keras.json``
    (``~/.keras/keras.json``), else ``tensorflow``."""
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json")) as f:
            return str(json.load(f).get("backend") or "tensorflow")
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def create_default(device: str, dtype: str) -> KerasBackend:
    backend = default_keras_backend()
    if backend not in ("jax", "torch", "tensorflow", "numpy"):
        raise ValueError(f"Keras's configured backend {backend!r} (KERAS_BACKEND or keras.json) is not one "
                         "polykeras knows; use jax, torch, tensorflow or numpy")
    return make(backend, device, dtype)


create_jax, create_torch, create_tensorflow, create_numpy = (factory(b) for b in ("jax", "torch", "tensorflow",
                                                                                   "numpy"))
