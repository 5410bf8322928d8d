"""The workload as a plain JAX user writes it: pure functions of a parameter
list, ``jax.value_and_grad`` + ``optax`` in one jitted step with donated
buffers, dropout keys folded from the step number inside the step, logits into
optax's cross-entropies, a NumPy permutation per epoch and the epoch's losses
fetched once at its end. The LSTM projects its input inside the ``lax.scan``
(projecting all steps up front makes XLA's per-call temporaries larger than
glibc's mmap threshold on the IMDB LSTM; see benchmarks/README.md).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from polykeras_conformance import native

ACTIVATIONS = {"linear": lambda x: x, "relu": jax.nn.relu, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid,
               "softmax": jax.nn.softmax}


def version() -> str:
    return f"jax {jax.__version__}, optax {optax.__version__}"


def _dropout(x, rate, key, shape=None):
    keep = 1.0 - rate
    return jnp.where(jax.random.bernoulli(key, keep, shape or x.shape), x / keep, 0.0)


def _apply(layer: native.Layer, p: dict, x, key, training: bool):
    cfg = layer.config
    if layer.kind == "Dense":
        x = x @ p["kernel"] + p["bias"] if cfg["use_bias"] else x @ p["kernel"]
    elif layer.kind == "Conv2D":
        x = lax.conv_general_dilated(x, p["kernel"], tuple(cfg["strides"]), cfg["padding"].upper(),
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
        x = x + p["bias"] if cfg["use_bias"] else x
    elif layer.kind == "MaxPooling2D":
        window = (1, *cfg["pool_size"], 1)
        x = lax.reduce_window(x, -jnp.inf, lax.max, window, (1, *cfg["strides"], 1), cfg["padding"].upper())
    elif layer.kind == "Dropout":
        x = _dropout(x, cfg["rate"], key) if training else x
    elif layer.kind == "Flatten":
        x = x.reshape(x.shape[0], -1)
    elif layer.kind == "Embedding":
        x = jnp.take(p["embeddings"], x, axis=0)
    else:
        x = _lstm(cfg, p, x, key, training)
    return ACTIVATIONS[cfg.get("activation", "linear")](x) if layer.kind != "LSTM" else x


def _lstm(cfg, p, x, key, training):
    units = cfg["units"]
    k_in, k_rec = jax.random.split(key)
    if training and cfg["dropout"]:  # one mask per sequence, as Keras draws it
        x = _dropout(x, cfg["dropout"], k_in, (x.shape[0], 1, x.shape[2]))
    h_mask = _dropout(jnp.ones((x.shape[0], units), x.dtype), cfg["recurrent_dropout"], k_rec) \
        if training and cfg["recurrent_dropout"] else None

    def cell(carry, x_t):
        h, c = carry
        h_in = h if h_mask is None else h * h_mask
        i, f, g, o = jnp.split(x_t @ p["kernel"] + p["bias"] + h_in @ p["recurrent_kernel"], 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        return (jax.nn.sigmoid(o) * jnp.tanh(c), c), None

    zeros = jnp.zeros((x.shape[0], units), x.dtype)
    (h, _), _ = lax.scan(cell, (zeros, zeros), jnp.swapaxes(x, 0, 1))
    return h


def _optimizer(workload):
    kind, cfg = native.optimizer_config(workload)
    lr = cfg["learning_rate"]
    if kind == "Adam":
        return optax.adam(lr, cfg["beta_1"], cfg["beta_2"], cfg["epsilon"])
    if kind == "RMSprop":
        return optax.rmsprop(lr, cfg["rho"], cfg["epsilon"], centered=cfg["centered"],
                             momentum=cfg["momentum"] or None)
    return optax.sgd(lr, cfg["momentum"] or None, cfg["nesterov"])


class Loop:
    def __init__(self, model, workload, device: str):
        platform, _, index = device.partition(":")
        self.device = jax.devices(platform)[int(index or 0)]
        layers, self.logits = native.chain(model, workload.loss, "jax")
        self.loss_name = workload.loss
        # Committed to the device, so that the NumPy batches passed to the step follow them there
        # (no separate device_put dispatch per batch: on a tiny model that alone doubles a step).
        self.params = jax.device_put([dict(layer.weights) for layer in layers], self.device)
        self.tx = _optimizer(workload)
        self.opt_state = jax.device_put(self.tx.init(self.params), self.device)
        self.key = jax.device_put(jax.random.key(0), self.device)

        def forward(params, x, key, training):
            keys = jax.random.split(key, len(layers))
            for layer, p, k in zip(layers, params, keys):
                x = _apply(layer, p, x, k, training)
            return x

        def loss_fn(params, x, y, key):
            out = forward(params, x, key, True)
            if self.loss_name == "sparse_categorical_crossentropy":
                return optax.softmax_cross_entropy_with_integer_labels(out, y).mean(), (out.argmax(-1) == y).sum()
            if self.loss_name == "categorical_crossentropy":
                return optax.softmax_cross_entropy(out, y).mean(), (out.argmax(-1) == y.argmax(-1)).sum()
            if self.loss_name == "binary_crossentropy":
                return optax.sigmoid_binary_cross_entropy(out, y).mean(), ((out > 0) == (y > 0.5)).sum()
            return jnp.mean((out - y) ** 2), jnp.zeros((), jnp.int32)

        def step(params, opt_state, x, y, step_number):
            key = jax.random.fold_in(self.key, step_number)  # inside the jitted step: no extra dispatch
            (loss, correct), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, y, key)
            updates, opt_state = self.tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss, correct

        self.step = jax.jit(step, donate_argnums=(0, 1))
        self.forward = jax.jit(lambda params, x: forward(params, x, self.key, False))
        self.rng = np.random.default_rng(1)
        self.losses: list[float] = []  # the mean training loss of each epoch

    def arrays(self, x, y):
        x = x.astype(np.int32 if x.dtype.kind == "i" else np.float32)
        y = y.astype(np.int32 if self.loss_name.startswith("sparse") else np.float32)
        if self.loss_name == "binary_crossentropy" and y.ndim == 1:
            y = y[:, None]
        return x, y

    def predict(self, x) -> np.ndarray:
        out = self.forward(self.params, self.arrays(x, np.zeros(len(x)))[0])
        if self.logits:
            out = jax.nn.sigmoid(out) if self.loss_name == "binary_crossentropy" else jax.nn.softmax(out)
        return np.asarray(out)

    def fit_epochs(self, x, y, batch: int, epochs: int) -> list[float]:
        x, y = self.arrays(x, y)
        seconds, step_number = [], 0
        for _ in range(epochs):
            start = time.perf_counter()
            order = self.rng.permutation(len(x))
            xs, ys = x[order], y[order]
            losses = []
            for lo in range(0, len(xs), batch):
                self.params, self.opt_state, loss, _ = self.step(self.params, self.opt_state, xs[lo:lo + batch],
                                                                 ys[lo:lo + batch], step_number)
                losses.append(loss)
                step_number += 1
            self.losses.append(float(jnp.mean(jnp.stack(losses))))  # the epoch's logs: the host sync
            seconds.append(time.perf_counter() - start)
        return seconds
