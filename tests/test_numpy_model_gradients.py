"""Whole-model gradients of the reference backend against finite differences.

The per-layer kernels have their own finite-difference tests; these check the
composition: the DAG walk, losses on model outputs, L1/L2 regularization
penalties added to loss and gradients, dropout masks fixed by the step seed,
and BatchNormalization in training mode -- all in float64.
"""

import numpy as np
import pytest

import polykeras as keras
from polykeras import layers, regularizers
from polykeras.trainer import Trainer

# Central differences, h = 1e-6, float64: truncation O(h^2) and rounding
# O(1e-16/h) are both ~1e-10 relative to the loss scale; 1e-5 (with a 1e-8
# floor for near-zero gradients) leaves room for L1's kink-free neighbourhood
# and for losses summed over a few hundred terms.
RTOL, ATOL = 1e-5, 1e-8
SAMPLES_PER_WEIGHT = 12


def check_model_gradients(model, x, y, loss, step_seed=7):
    model.compile(optimizer="sgd", loss=loss, dtype="float64")
    program = model._get_program(training=True, y_ndim=np.ndim(y))
    prepare = Trainer(model)
    x, y = prepare.prepare(x, y)
    grads = program.value_and_grad(x, y, step_seed)
    weights = program.get_weights()
    rng = np.random.default_rng(0)
    checked = 0
    for k, (w, g) in enumerate(zip(weights, grads.weights)):
        if g is None:
            continue
        assert g.shape == w.shape
        flat = rng.choice(w.size, size=min(SAMPLES_PER_WEIGHT, w.size), replace=False)
        for i in flat:
            idx = np.unravel_index(i, w.shape)
            values = []
            for h in (1e-6, -1e-6):
                shifted = [v.copy() for v in weights]
                shifted[k][idx] += h
                program.set_weights(shifted)
                values.append(program.value_and_grad(x, y, step_seed).loss)
            numeric = (values[0] - values[1]) / 2e-6
            assert g[idx] == pytest.approx(numeric, rel=RTOL, abs=ATOL), f"weight {k} at {idx}"
            checked += 1
    program.set_weights(weights)
    assert checked > 0
    return grads


def test_mlp_with_regularizers_dropout_and_softmax_crossentropy():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        layers.Dense(7, activation="tanh", input_dim=5, kernel_regularizer=regularizers.l1_l2(0.01, 0.02),
                     bias_regularizer=regularizers.l2(0.05)),
        layers.Dropout(0.3),
        layers.Dense(4, activation="softmax", kernel_regularizer=regularizers.l1(0.01)),
    ])
    rng = np.random.default_rng(1)
    check_model_gradients(model, rng.normal(size=(9, 5)), rng.integers(0, 4, 9), "sparse_categorical_crossentropy")


def test_cnn_with_batchnorm_pooling_and_categorical_crossentropy():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        layers.Conv2D(3, 3, padding="same", activation="relu", input_shape=(6, 6, 2)),
        layers.BatchNormalization(),
        layers.MaxPooling2D(),
        layers.Conv2D(4, (2, 2), strides=2, activation="elu"),
        layers.Flatten(),
        layers.Dropout(0.25),
        layers.Dense(3, activation="softmax", kernel_regularizer=regularizers.l2(0.01)),
    ])
    rng = np.random.default_rng(2)
    y = keras.utils.to_categorical(rng.integers(0, 3, 4), 3)
    check_model_gradients(model, rng.normal(size=(4, 6, 6, 2)), y, "categorical_crossentropy")


@pytest.mark.parametrize("rnn", [
    lambda: layers.LSTM(5, dropout=0.2, recurrent_dropout=0.3, recurrent_regularizer=regularizers.l2(0.01)),
    lambda: layers.GRU(5, return_sequences=True),
    lambda: layers.SimpleRNN(5, go_backwards=True),
])
def test_embedding_recurrent_binary_crossentropy(rnn):
    keras.utils.set_random_seed(0)
    rec = rnn()
    stack = [layers.Embedding(20, 6, input_shape=(7,)), rec]
    if rec.return_sequences:
        stack.append(layers.GlobalAveragePooling1D())
    model = keras.Sequential(stack + [layers.Dense(1, activation="sigmoid")])
    rng = np.random.default_rng(3)
    check_model_gradients(model, rng.integers(0, 20, (5, 7)), rng.integers(0, 2, 5), "binary_crossentropy")


def test_conv1d_pooling_mse():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([layers.Conv1D(4, 3, padding="causal", activation="swish", input_shape=(8, 3)),
                              layers.MaxPooling1D(), layers.Flatten(), layers.Dense(2)])
    rng = np.random.default_rng(4)
    check_model_gradients(model, rng.normal(size=(3, 8, 3)), rng.normal(size=(3, 2)), "mse")


def test_functional_model_input_gradient():
    keras.utils.set_random_seed(0)
    inp = keras.Input(shape=(4,))
    out = layers.Dense(2, activation="sigmoid")(layers.Dense(3, activation="gelu")(inp))
    model = keras.Model(inp, out)
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(6, 4)), rng.random((6, 2))
    grads = check_model_gradients(model, x, y, "mae")
    program = model._program
    numeric = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += 1e-6
        xm[idx] -= 1e-6
        numeric[idx] = (program.value_and_grad(xp, y).loss - program.value_and_grad(xm, y).loss) / 2e-6
    np.testing.assert_allclose(grads.inputs, numeric, rtol=RTOL, atol=ATOL)


def test_dropout_masks_depend_on_step_seed_only():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([layers.Dense(8, input_dim=3), layers.Dropout(0.5), layers.Dense(1)])
    model.compile("sgd", "mse", dtype="float64")
    program = model._get_program(training=True)
    x, y = np.ones((4, 3)), np.ones((4, 1))
    a, b, c = (program.value_and_grad(x, y, s).loss for s in (1, 1, 2))
    assert a == b != c
