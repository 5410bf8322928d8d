"""Named workloads: the models ``polykeras train`` runs and the conformance
suite compares across backends -- defined once, here.

Each is a classic Keras example: a dataset, a preprocessing step, a model
builder and the compile settings. Plugins add more through the
``polykeras_conformance_workloads`` hook.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from polykeras import layers, optimizers
from polykeras.layers import Input
from polykeras.models import Model, Sequential

Data = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Workload:
    """A named training job.

    ``build()`` returns an uncompiled model; ``optimizer()`` a fresh optimizer;
    ``load()`` the preprocessed ``(x_train, y_train), (x_test, y_test)``.
    """

    name: str
    description: str
    dataset: str
    build: Callable[[], Model]
    optimizer: Callable[[], optimizers.Optimizer]
    loss: str
    batch_size: int
    epochs: int
    prepare: Callable[[Data], Data]
    metrics: tuple[str, ...] = ("accuracy",)
    load_kwargs: dict[str, Any] = field(default_factory=dict)

    def load(self) -> Data:
        from polykeras.datasets import load

        return self.prepare(load(self.dataset, **self.load_kwargs))

    def compile(self, model, **kwargs) -> None:
        model.compile(optimizer=self.optimizer(), loss=self.loss, metrics=list(self.metrics), **kwargs)


def _scale_flat(data: Data) -> Data:
    (x, y), (xt, yt) = data
    return (x.reshape(len(x), -1) / 255.0, y), (xt.reshape(len(xt), -1) / 255.0, yt)


def _scale(data: Data) -> Data:
    (x, y), (xt, yt) = data
    return (x / 255.0, y), (xt / 255.0, yt)


def _scale_channel(data: Data) -> Data:
    (x, y), (xt, yt) = _scale(data)
    if x.ndim == 3:  # grayscale: add the channel axis
        x, xt = x[..., None], xt[..., None]
    return (x, y.reshape(-1)), (xt, yt.reshape(-1))


def _halves(data: Data) -> Data:
    """Each image as two inputs: its top and bottom 14 rows, flattened and scaled."""
    (x, y), (xt, yt) = _scale(data)
    return (([x[:, :14].reshape(len(x), -1), x[:, 14:].reshape(len(x), -1)], y),
            ([xt[:, :14].reshape(len(xt), -1), xt[:, 14:].reshape(len(xt), -1)], yt))


IMDB_WORDS, IMDB_MAXLEN = 20000, 80


def _pad_imdb(data: Data) -> Data:
    from polykeras.utils import pad_sequences

    (x, y), (xt, yt) = data
    return (pad_sequences(x, maxlen=IMDB_MAXLEN), y), (pad_sequences(xt, maxlen=IMDB_MAXLEN), yt)


def _mnist_mlp():
    return Sequential([layers.Dense(512, activation="relu", input_shape=(784,)), layers.Dropout(0.2),
                       layers.Dense(512, activation="relu"), layers.Dropout(0.2),
                       layers.Dense(10, activation="softmax")], name="mnist_mlp")


def _small_cnn(input_shape, name):
    return Sequential([layers.Conv2D(32, (3, 3), activation="relu", input_shape=input_shape),
                       layers.Conv2D(64, (3, 3), activation="relu"), layers.MaxPooling2D(pool_size=(2, 2)),
                       layers.Dropout(0.25), layers.Flatten(), layers.Dense(128, activation="relu"),
                       layers.Dropout(0.5), layers.Dense(10, activation="softmax")], name=name)


def _fashion_mlp():
    return Sequential([layers.Flatten(input_shape=(28, 28)), layers.Dense(128, activation="relu"),
                       layers.Dense(10, activation="softmax")], name="fashion_mlp")


def _mnist_residual():
    """A functional MLP with a residual block: the graph's Add, fan-out and dropout on a branch."""
    x = Input(shape=(784,), name="pixels")
    h = layers.Dense(256, activation="relu")(x)
    branch = layers.Dense(256)(layers.Dropout(0.1)(layers.Dense(256, activation="relu")(h)))
    return Model(x, layers.Dense(10, activation="softmax")(layers.Add()([h, branch])), name="mnist_residual")


def _mnist_two_tower():
    """Two inputs (the image's halves) through one shared Dense tower, concatenated."""
    top, bottom = Input(shape=(392,), name="top"), Input(shape=(392,), name="bottom")
    tower = layers.Dense(128, activation="relu", name="tower")
    h = layers.Dropout(0.2)(layers.Concatenate()([tower(top), tower(bottom)]))
    return Model([top, bottom], layers.Dense(10, activation="softmax")(h), name="mnist_two_tower")


class Antirectifier(layers.Layer):
    """keras.io's custom-layer example: centre each sample, then concatenate its positive
    and negative parts (twice the features) and mix them back with a learned kernel --
    written with ``polykeras.ops`` and ``add_weight``, traced like any custom layer."""

    def build(self, input_shape):
        features = input_shape[-1]
        self.kernel = self.add_weight(shape=(features * 2, features), initializer="he_normal", name="kernel")

    def call(self, inputs):
        from polykeras import ops

        inputs = inputs - ops.mean(inputs, axis=-1, keepdims=True)
        both = ops.concatenate([ops.relu(inputs), ops.relu(-inputs)], axis=-1)
        return ops.matmul(both, self.kernel)


def _antirectifier_sgd():
    """SGD, not keras.io's RMSprop: centring makes the layer blind to the ones direction, so the
    weights before it get gradients there that are rounding noise; Adam and RMSprop divide by
    their size and turn them into lr-sized steps, so two correct float32 runs part ways (measured:
    Keras 3 on jax and torch 5e-3 from the reference in 20 Adam steps, where float64 agrees to
    2e-9). SGD keeps noise at noise size, so float32 parity stays a test of the math."""
    return optimizers.SGD(learning_rate=0.05, momentum=0.9)


def _mnist_antirectifier():
    return Sequential([Input(shape=(784,)), layers.Dense(256), Antirectifier(), layers.Dense(256), Antirectifier(),
                       layers.Dropout(0.5), layers.Dense(10, activation="softmax")], name="mnist_antirectifier")


def _imdb_lstm():
    return Sequential([layers.Embedding(IMDB_WORDS, 128, input_shape=(IMDB_MAXLEN,)),
                       layers.LSTM(128, dropout=0.2, recurrent_dropout=0.2),
                       layers.Dense(1, activation="sigmoid")], name="imdb_lstm")


BUILTIN: dict[str, Workload] = {w.name: w for w in (
    Workload("mnist-mlp", "MLP 784-512-512-10 with dropout (Keras's mnist_mlp), Adam", "mnist", _mnist_mlp,
             optimizers.Adam, "sparse_categorical_crossentropy", batch_size=128, epochs=3, prepare=_scale_flat),
    Workload("mnist-cnn", "Conv32-Conv64-Pool-Dropout-Dense128-Dropout-Dense10 (Keras's mnist_cnn), RMSprop",
             "mnist", lambda: _small_cnn((28, 28, 1), "mnist_cnn"), optimizers.RMSprop,
             "sparse_categorical_crossentropy", batch_size=128, epochs=1, prepare=_scale_channel),
    Workload("fashion-mlp", "Flatten-Dense128-Dense10 (TensorFlow's basic classification tutorial), Adam",
             "fashion_mnist", _fashion_mlp, optimizers.Adam, "sparse_categorical_crossentropy", batch_size=32,
             epochs=3, prepare=_scale),
    Workload("cifar-cnn", "Conv32-Conv64-Pool-Dropout-Dense128-Dropout-Dense10 on CIFAR-10, RMSprop", "cifar10",
             lambda: _small_cnn((32, 32, 3), "cifar_cnn"), optimizers.RMSprop, "sparse_categorical_crossentropy",
             batch_size=64, epochs=1, prepare=_scale_channel),
    Workload("mnist-residual", "functional MLP 784-256, a residual block 256-256 with dropout, Dense10, Adam",
             "mnist", _mnist_residual, optimizers.Adam, "sparse_categorical_crossentropy", batch_size=128, epochs=2,
             prepare=_scale_flat),
    Workload("mnist-two-tower", "two inputs (image halves) through one shared Dense128 tower, concatenated, "
             "Dropout, Dense10; Adam", "mnist", _mnist_two_tower, optimizers.Adam, "sparse_categorical_crossentropy",
             batch_size=64, epochs=2, prepare=_halves),
    Workload("mnist-antirectifier", "Dense256-Antirectifier-Dense256-Antirectifier-Dropout-Dense10: a custom layer "
             "in polykeras.ops (keras.io's antirectifier example), SGD with momentum", "mnist", _mnist_antirectifier,
             _antirectifier_sgd, "sparse_categorical_crossentropy", batch_size=128, epochs=1, prepare=_scale_flat),
    Workload("imdb-lstm", "Embedding(20000,128)-LSTM(128)-Dense(1) on reviews cut to 80 words (Keras's "
             "imdb_lstm), Adam", "imdb", _imdb_lstm, optimizers.Adam, "binary_crossentropy", batch_size=32,
             epochs=1, prepare=_pad_imdb, load_kwargs={"num_words": IMDB_WORDS}),
)}


def workloads() -> dict[str, Workload]:
    """Built-in workloads plus those contributed by plugins."""
    from polykeras.plugins import plugin_workloads

    return {**BUILTIN, **{w.name: w for w in plugin_workloads()}}


def get(name: str) -> Workload:
    known = workloads()
    if name not in known:
        raise ValueError(f"unknown workload {name!r}; choose one of: {', '.join(known)}")
    return known[name]
