"""Ops on symbolic tensors record ``Operation`` nodes that every backend runs:
float64 training parity with the reference, the config round trip, and the
errors for what a model cannot hold."""

from __future__ import annotations

import numpy as np
import pytest

import polykeras as keras
from polykeras import layers, ops

# float64: 8 steps through ~20 ops and two Dense layers at unit roundoff 1.1e-16; a wrong formula or
# gradient shows at 1e-6 or above
FLOAT64_PARITY = 1e-12


def _model():
    inp = keras.Input((6,))
    h = layers.Dense(8)(inp)
    h = ops.gelu(h) * 0.5 + ops.softmax(h, axis=-1)
    h = ops.concatenate([h, ops.square(inp) / 3.0, -ops.abs(inp)], axis=-1)
    h = ops.where(ops.greater(h, 0.1), h, 0.1 * h)
    h = ops.concatenate([h[:, :4], h[..., ::-1][:, None, :][:, 0]], axis=-1)  # x[...] records getitem nodes
    h = ops.normalize(h, axis=-1) - ops.mean(h, axis=-1, keepdims=True)
    out = layers.Dense(3, activation="softmax")(ops.clip(h, -2.0, 2.0))
    return keras.Model(inp, out)


def _train(model, backend, weights):
    return _train_on(model, backend, weights, 6)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_ops_train_like_the_reference_in_float64(backend):
    model = _model()
    start = model.get_weights()
    ref_loss, ref_weights = _train(model, "numpy", start)
    loss, weights = _train(model, backend, start)
    np.testing.assert_allclose(loss, ref_loss, rtol=FLOAT64_PARITY)
    for a, b in zip(weights, ref_weights):
        np.testing.assert_allclose(a, b, rtol=FLOAT64_PARITY, atol=FLOAT64_PARITY)


def test_ops_nodes_in_the_spec_and_the_config_round_trip():
    model = _model()
    kinds = [layer.kind for layer in model._spec().layers]
    assert kinds.count("Operation") >= 10 and "Add" in kinds  # tensor + tensor stays an Add layer
    config = model.get_config()
    rebuilt = keras.Model.from_config(config)
    assert rebuilt.get_config() == config
    rebuilt.set_weights(model.get_weights())
    x = np.random.default_rng(1).normal(size=(4, 6))
    np.testing.assert_array_equal(rebuilt.predict(x, verbose=0), model.predict(x, verbose=0))


def test_op_shapes_follow_the_batch_and_unknown_sizes():
    seq = keras.Input((None, 4))
    assert ops.mean(seq, axis=1).shape == (None, 4)
    assert ops.transpose(seq, (0, 2, 1)).shape == (None, 4, None)
    assert ops.reshape(keras.Input((2, 6)), (-1, 3, 4)).shape == (None, 3, 4)
    assert ops.argmax(keras.Input((5,)), axis=-1).dtype.startswith("int")
    assert ops.shape(seq) == (None, None, 4)


def test_ops_that_lose_the_batch_axis_are_refused_with_the_reason():
    x = keras.Input((3,))
    with pytest.raises(ValueError, match="without the batch axis first"):
        ops.sum(x)
    with pytest.raises(ValueError, match="without the batch axis first"):
        ops.transpose(keras.Input((3, 2)))
    with pytest.raises(ValueError, match="cannot be applied to tensors of shapes"):
        ops.matmul(x, np.ones((4, 2)))
    with pytest.raises(ValueError, match="too large to record"):
        ops.add(keras.Input((5000,)), np.ones(5000))


def test_backends_without_ops_are_named_before_anything_runs():
    model = _model()
    model.compile("sgd", "mse", backend="example")
    with pytest.raises(NotImplementedError, match="does not implement layer kind.*Operation"):
        model.predict(np.zeros((2, 6)), verbose=0)


def _split_top_k_model():
    """``ops.split`` (getitem nodes) and ``ops.top_k`` (a top_k_indices node, whose values are a
    take_along_axis the gradient flows through) between two Dense layers."""
    keras.utils.set_random_seed(3)
    inp = keras.Input((5,))
    h = layers.Dense(7)(inp)
    first, rest = ops.split(h, [3], axis=-1)
    values, indices = ops.top_k(rest, 2)
    h = ops.concatenate([first, values, ops.cast(indices, "float32") * 0.1], axis=-1)
    return keras.Model(inp, layers.Dense(3, activation="softmax")(h))


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_split_and_top_k_train_like_the_reference_in_float64(backend):
    model = _split_top_k_model()
    start = model.get_weights()
    ref_loss, ref_weights = _train_on(model, "numpy", start, 5)
    loss, weights = _train_on(model, backend, start, 5)
    np.testing.assert_allclose(loss, ref_loss, rtol=FLOAT64_PARITY)
    for a, b in zip(weights, ref_weights):
        np.testing.assert_allclose(a, b, rtol=FLOAT64_PARITY, atol=FLOAT64_PARITY)


def test_split_and_top_k_predict_like_the_reference_on_keras():
    model = _split_top_k_model()
    x = np.random.default_rng(2).normal(size=(6, 5))
    model.compile("sgd", "mse", backend="numpy", dtype="float64")
    expected = model.predict(x, verbose=0)
    model.compile("sgd", "mse", backend="keras-jax", dtype="float64")
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-12)


@pytest.mark.parametrize("backend", ["keras-tensorflow", "keras-torch"])
def test_one_hot_on_an_axis_below_minus_one_predicts_like_the_reference_on_keras(backend):
    """Keras 3.15 refuses ``one_hot(axis=-3)`` on TensorFlow and misplaces the classes on torch; the plugin
    hands it the same axis counted from the front."""
    inp = keras.Input((2, 3, 4))
    model = keras.Model(inp, ops.one_hot(ops.argmax(inp, axis=-1), 4, axis=-3) * ops.transpose(inp, (0, 3, 1, 2)))
    x = np.random.default_rng(3).normal(size=(5, 2, 3, 4))
    model.compile("sgd", "mse", backend="numpy", dtype="float64")
    expected = model.predict(x, verbose=0)
    model.compile("sgd", "mse", backend=backend, dtype="float64")
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-12)


def _train_on(model, backend, weights, features):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, features)), rng.integers(0, 3, 32)
    model.set_weights(weights)
    model.compile("adam", "sparse_categorical_crossentropy", backend=backend, dtype="float64")
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0, shuffle=False)
    return history.history["loss"], model.get_weights()


def test_split_is_refused_on_the_batch_axis_and_on_uneven_sections():
    inp = keras.Input((6, 4))
    with pytest.raises(ValueError, match="batch axis"):
        ops.split(inp, 2)
    with pytest.raises(ValueError, match="do not split into 4 equal sections"):
        ops.split(inp, 4, axis=1)
    assert [t.shape for t in ops.split(inp, [1, 5], axis=-1)] == [(None, 6, 1), (None, 6, 3), (None, 6, 0)]
