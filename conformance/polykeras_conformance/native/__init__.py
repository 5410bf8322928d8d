"""L3's yardsticks: each workload written natively -- a plain PyTorch loop, a
plain JAX + optax loop, and Keras 3 ``fit`` -- and timed like the backends.

A *side* is one such native implementation. Each runs in a worker process of
its own (Keras fixes its backend at import), on the same seeded synthetic data
and with the same protocol as :func:`polykeras_conformance.measure.speed`:
``steps`` batches per epoch, one warm-up epoch, the median of ``epochs``
timed epochs, each from its first batch to its end-of-epoch host sync. The
runner divides their ms/step by each backend's into "speed vs ..." ratios.

The plain loops are what a competent user of the framework writes for the
workload's model: the framework's standard modules or ``lax`` ops, logits fed
to the framework's fused cross-entropy (the idiomatic spelling of
softmax/sigmoid + cross-entropy), its optimizer with Keras's hyper-parameters,
a reshuffle per epoch, loss and accuracy accumulated on the device. They are
assembled from the workload's spec (:func:`chain`), so a plugin's workload
gets native yardsticks too when it uses the layer kinds they cover (Dense,
Dropout, Flatten, Conv2D, MaxPooling2D, Embedding, LSTM); anything else is
reported as unsupported. They start from the model's initial weights, so they
compute the same function (``tests/test_conformance_native.py`` checks the
forward passes against the reference). Keras ``fit`` gets the model itself,
through :func:`polykeras.saving.export_keras`.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field

import numpy as np

from polykeras_conformance import measure


@dataclass(frozen=True)
class Side:
    name: str
    label: str  # how the report names it
    module: str  # the module with ``Loop`` and ``version()``
    needs: tuple[str, ...]  # importable modules it needs
    env: dict[str, str] = field(default_factory=dict)  # the worker's environment

    def installed(self) -> bool:
        return all(importlib.util.find_spec(m) is not None for m in self.needs)

    def load(self):
        return importlib.import_module(self.module)


SIDES: dict[str, Side] = {s.name: s for s in (
    Side("plain-torch", "plain PyTorch", "polykeras_conformance.native.torch_loop", ("torch",)),
    Side("plain-jax", "plain JAX + optax", "polykeras_conformance.native.jax_loop", ("jax", "optax")),
    *(Side(f"keras-fit-{b}", f"Keras fit on {b}", "polykeras_conformance.native.keras_fit",
           ("keras", "h5py", b), {"KERAS_BACKEND": b}) for b in ("jax", "torch", "tensorflow")),
)}

#: The yardsticks each backend is measured against by default: its own framework written natively.
COUNTERPARTS = {
    "torch": ("plain-torch", "keras-fit-torch"),
    "jax": ("plain-jax", "keras-fit-jax"),
    "keras-jax": ("keras-fit-jax",),
    "keras-torch": ("keras-fit-torch",),
    "keras-tensorflow": ("keras-fit-tensorflow",),
}


def sides_for(backends: list[str]) -> list[str]:
    """The native sides the given backends are measured against, in a stable order."""
    wanted = {s for b in backends for s in COUNTERPARTS.get(b, ())}
    return [name for name in SIDES if name in wanted]


def speed(side: str, workload_name: str, device: str, steps: int, epochs: int) -> dict[str, np.ndarray]:
    """ms/step and samples/s of ``side`` on one workload, float32 (as users run them)."""
    workload, model = measure.speed_model(workload_name)
    x, y = measure.speed_data(workload, model, steps)
    loop = SIDES[side].load().Loop(model, workload, device)
    seconds = loop.fit_epochs(x, y, workload.batch_size, epochs + 1)
    return measure.speed_summary(seconds[1:], steps, workload.batch_size)


# -- what the plain loops are assembled from ---------------------------------------------------------
SUPPORTED = ("Dense", "Dropout", "Flatten", "Conv2D", "MaxPooling2D", "Embedding", "LSTM")
FUSED_HEADS = {("softmax", "sparse_categorical_crossentropy"), ("softmax", "categorical_crossentropy"),
               ("sigmoid", "binary_crossentropy")}


@dataclass(frozen=True)
class Layer:
    kind: str
    config: dict
    input_shape: tuple  # without the batch dimension
    weights: dict[str, np.ndarray]


def chain(model, loss: str, framework: str) -> tuple[list[Layer], bool]:
    """The model as a chain of layers with their initial weights, and whether
    its last activation folds into the loss (then the chain's last Dense gives
    logits: its ``activation`` is replaced by ``"linear"``).

    Raises :class:`measure.Unsupported` for what the native loops do not cover.
    """
    spec = model._spec()
    weights = iter(model.get_weights())
    layers, previous = [], spec.inputs[0].name
    if len(spec.inputs) != 1:
        raise measure.Unsupported(f"the native {framework} loop takes one input; the model has {len(spec.inputs)}")
    for layer in spec.layers:
        if layer.kind not in SUPPORTED or layer.inbound != (previous,):
            what = f"layer kind {layer.kind}" if layer.kind not in SUPPORTED else "a model that is not a chain"
            raise measure.Unsupported(f"the native {framework} loop covers chains of {', '.join(SUPPORTED)}; "
                                      f"not {what}")
        config = dict(layer.config)
        if layer.kind == "LSTM" and (config.get("return_sequences") or config.get("go_backwards")
                                     or config.get("activation") != "tanh"
                                     or config.get("recurrent_activation") != "sigmoid"):
            raise measure.Unsupported(f"the native {framework} loop covers the default LSTM only")
        if layer.kind in ("Conv2D", "MaxPooling2D") and config.get("data_format", "channels_last") != "channels_last":
            raise measure.Unsupported(f"the native {framework} loop covers channels_last only")
        if layer.kind == "Conv2D" and (tuple(config["dilation_rate"]) != (1, 1) or config["groups"] != 1):
            raise measure.Unsupported(f"the native {framework} loop covers undilated, ungrouped Conv2D only")
        layers.append(Layer(layer.kind, config, tuple(layer.input_shape[1:]),
                            {w.name: next(weights) for w in layer.weights}))
        previous = layer.name
    last = layers[-1]
    fused = last.kind == "Dense" and (last.config["activation"], loss) in FUSED_HEADS
    if fused:
        layers[-1] = Layer(last.kind, {**last.config, "activation": "linear"}, last.input_shape, last.weights)
    elif loss not in ("mse", "mean_squared_error"):
        raise measure.Unsupported(f"the native {framework} loop covers softmax/sigmoid heads with cross-entropy, "
                                  f"and mse; not {last.config.get('activation')!r} with {loss!r}")
    return layers, fused


def optimizer_config(workload) -> tuple[str, dict]:
    """The workload's optimizer as (kind, Keras config), for the native loops to translate."""
    spec = workload.optimizer().to_spec()
    config = spec["config"]
    if any(config.get(k) for k in ("weight_decay", "clipnorm", "clipvalue", "global_clipnorm")) or \
            config.get("amsgrad") or spec["kind"] not in ("Adam", "RMSprop", "SGD"):
        raise measure.Unsupported(f"the native loops cover plain Adam, RMSprop and SGD; not {spec}")
    return spec["kind"], config
