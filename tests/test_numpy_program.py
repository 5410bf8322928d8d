"""The reference program's shortcut: during training a layer with no trainable
weight upstream of it (usually the first) computes only its weight gradients
(``Kernel.backward_weights``), not ``dx``. These tests check that the shortcut
changes nothing but the work done: the same weight gradients bit for bit, the
same weights after training, and ``value_and_grad`` still returns ``dx``."""

import numpy as np
import pytest

import polykeras as keras
from _fd import build, context, random_weights
from polykeras import layers
from polykeras.trainer import Trainer

KERNEL_CASES = [
    ("Dense", {"units": 4, "activation": "relu"}, (5,)),
    ("Dense", {"units": 3, "activation": "softmax", "use_bias": False}, (2, 4)),
    ("Conv2D", {"filters": 3, "kernel_size": [3, 3], "padding": "same", "activation": "relu"}, (5, 6, 2)),
    ("Conv2D", {"filters": 2, "kernel_size": [2, 2], "strides": [2, 1], "use_bias": False}, (5, 4, 1)),
    ("Conv1D", {"filters": 2, "kernel_size": [3], "padding": "causal", "dilation_rate": 2}, (6, 2)),
    ("BatchNormalization", {}, (3,)),  # the default: backward()'s dweights
    ("LSTM", {"units": 2}, (3, 2)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", KERNEL_CASES, ids=lambda c: c[0])
def test_backward_weights_is_backward_without_dx(case, dtype):
    kind, config, shape = case
    kernel = build(kind, config, shape, dtype)
    rng = np.random.default_rng(0)
    weights = random_weights(kernel, rng)
    x = rng.normal(size=(3,) + shape).astype(dtype)
    y, cache = kernel.forward(weights, x, context(True, dtype))
    dy = rng.normal(size=y.shape).astype(dtype)
    _, expected = kernel.backward(weights, cache, dy)
    got = kernel.backward_weights(weights, cache, dy)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert (g is None) == (e is None)
        if e is not None:
            assert g.dtype == e.dtype and np.array_equal(g, e)


def _mlp():
    return keras.Sequential([keras.Input((4, 3)), layers.Flatten(), layers.Dense(8, activation="relu"),
                             layers.Dropout(0.3), layers.Dense(5, activation="softmax")])


def _cnn():
    return keras.Sequential([keras.Input((6, 6, 2)), layers.Conv2D(3, 3, activation="relu"),
                             layers.MaxPooling2D(2), layers.Flatten(), layers.Dense(5, activation="softmax")])


def _frozen_first():
    return keras.Sequential([keras.Input((6,)), layers.Dense(7, activation="tanh", trainable=False),
                             layers.Dense(5, activation="softmax")])


def _batchnorm_first():
    return keras.Sequential([keras.Input((6,)), layers.BatchNormalization(), layers.Dense(5, activation="softmax")])


def _embedding_lstm():
    return keras.Sequential([keras.Input((4,), dtype="int32"), layers.Embedding(9, 3), layers.LSTM(4),
                             layers.Dense(5, activation="softmax")])


MODELS = {"mlp": _mlp, "cnn": _cnn, "frozen-first": _frozen_first, "batchnorm-first": _batchnorm_first,
          "embedding-lstm": _embedding_lstm}


def _program(build_model, optimizer="adam", dtype="float32"):
    keras.set_random_seed(3)
    model = build_model()
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"], dtype=dtype)
    rng = np.random.default_rng(1)
    shape = (16,) + tuple(model.input_shape[1:])
    x = rng.integers(0, 9, shape) if build_model is _embedding_lstm else rng.normal(size=shape)
    y = rng.integers(0, 5, 16)
    trainer = Trainer(model)
    x = trainer._prepare_x(x)
    y = trainer._prepare_y(y, len(x))
    return model._get_program(training=True, y_ndim=y.ndim), x, y


def _every_dx(program):
    """Make ``program`` back-propagate into every layer's input, as if every
    layer had a trainable weight upstream: the computation without the shortcut."""
    program._trainable_upstream = dict.fromkeys(program._trainable_upstream, True)


@pytest.mark.parametrize("name", MODELS)
def test_shortcut_gives_the_same_weight_gradients(name):
    program, x, y = _program(MODELS[name], dtype="float64")
    trainable = [w.trainable for layer in program.spec.layers for w in layer.weights]
    _, _, fast, _, _, _ = program._loss_and_gradients(x, y, True, 5)
    _, _, full, d_input, _, _ = program._loss_and_gradients(x, y, True, 5, input_grad=True)
    fast = [g for gs in fast for g in gs]
    full = [g for gs in full for g in gs]
    assert len(fast) == len(full) == len(trainable)
    for is_trainable, f, g in zip(trainable, fast, full):
        if is_trainable:
            assert np.array_equal(f, g)
    if name != "embedding-lstm":
        assert d_input is not None and d_input.shape == x.shape


@pytest.mark.parametrize("name", MODELS)
def test_training_with_the_shortcut_gives_the_same_weights(name):
    fast, x, y = _program(MODELS[name])
    full, _, _ = _program(MODELS[name])
    _every_dx(full)
    for program in (fast, full):
        for step in range(3):
            program.train_step(x, y, step)
    for a, b in zip(fast.get_weights(), full.get_weights()):
        assert a.dtype == np.float32 and np.array_equal(a, b)
    assert fast.results() == full.results()


def test_first_dense_skips_dx_in_training_but_not_in_value_and_grad():
    program, x, y = _program(_mlp)
    dense = program.kernels[[layer.kind for layer in program.spec.layers].index("Dense")]
    calls = []
    backward, backward_weights = dense.backward, dense.backward_weights
    dense.backward = lambda *a: calls.append("backward") or backward(*a)
    dense.backward_weights = lambda *a: calls.append("backward_weights") or backward_weights(*a)
    program.train_step(x, y, 0)
    assert calls == ["backward_weights"]
    calls.clear()
    grads = program.value_and_grad(x, y, 0)
    assert calls == ["backward"]
    assert grads.inputs is not None and grads.inputs.shape == x.shape
