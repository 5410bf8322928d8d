"""Tests of the NumPy reference kernels (``polykeras_numpy.layers``) and of
the core's layer rules they read (``polykeras.layer_rules``).

Every kind gets central finite-difference checks of its input and weight
gradients in float64 on several configurations, forward values are compared
with straightforward independent computations (naive loops, one step of a
cell by hand), and float32 runs must stay float32.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

from _fd import build, check_gradients, context, fixed_dropout_mask, layer_spec, random_weights
from polykeras.layer_rules import RULES, LayerRules, padding_amounts, rules_for
from polykeras_numpy import activations
from polykeras_numpy.layers import KERNELS, ForwardContext

sigmoid = activations.sigmoid

# (kind, config, per-sample input shape, training) -- each one is checked by
# finite differences in float64 and run once in float32.
CASES = [
    ("Dense", {"units": 4, "activation": "tanh"}, (5,), False),
    ("Dense", {"units": 3, "activation": "softmax", "use_bias": False}, (4,), False),
    ("Dense", {"units": 3, "activation": "relu"}, (2, 4), False),  # 3-D input: last axis
    ("Activation", {"activation": "gelu"}, (3, 2), False),
    ("Activation", {"activation": "softmax"}, (5,), False),
    ("Dropout", {"rate": 0.4}, (6,), True),
    ("Dropout", {"rate": 0.5, "noise_shape": [None, 1, None]}, (3, 4), True),
    ("Dropout", {"rate": 0.5}, (6,), False),
    ("Flatten", {}, (2, 3, 2), False),
    ("Reshape", {"target_shape": [3, -1]}, (2, 3), False),
    ("Conv2D", {"filters": 3, "kernel_size": [3, 3], "padding": "valid", "activation": "relu"}, (5, 6, 2), False),
    ("Conv2D", {"filters": 2, "kernel_size": (3, 2), "strides": (2, 2), "padding": "same"}, (5, 4, 2), False),
    ("Conv2D", {"filters": 2, "kernel_size": [2, 2], "strides": [2, 1], "padding": "valid", "use_bias": False}, (5, 4, 1), False),
    ("Conv2D", {"filters": 2, "kernel_size": [2, 2], "dilation_rate": [2, 2], "padding": "same"}, (5, 5, 2), False),
    ("Conv1D", {"filters": 3, "kernel_size": [3], "padding": "valid", "activation": "tanh"}, (7, 2), False),
    ("Conv1D", {"filters": 2, "kernel_size": 4, "strides": 2, "padding": "same"}, (7, 3), False),
    ("Conv1D", {"filters": 2, "kernel_size": [3], "padding": "causal", "dilation_rate": 2}, (6, 2), False),
    ("MaxPooling2D", {"pool_size": [2, 2], "strides": None, "padding": "valid"}, (5, 4, 2), False),
    ("MaxPooling2D", {"pool_size": [3, 3], "strides": [2, 2], "padding": "same"}, (5, 6, 2), False),
    ("MaxPooling1D", {"pool_size": [2], "strides": None, "padding": "valid"}, (7, 3), False),
    ("MaxPooling1D", {"pool_size": 3, "strides": 1, "padding": "same"}, (5, 2), False),
    ("AveragePooling2D", {"pool_size": [2, 2], "strides": None, "padding": "valid"}, (4, 5, 2), False),
    ("AveragePooling2D", {"pool_size": [3, 2], "strides": [2, 2], "padding": "same"}, (5, 5, 2), False),
    ("GlobalAveragePooling2D", {}, (3, 4, 2), False),
    ("GlobalAveragePooling2D", {"keepdims": True}, (3, 2, 2), False),
    ("GlobalAveragePooling1D", {}, (5, 3), False),
    ("BatchNormalization", {}, (3,), True),
    ("BatchNormalization", {"momentum": 0.9}, (3, 2, 4), True),
    ("BatchNormalization", {"center": False}, (2, 3), True),
    ("BatchNormalization", {"scale": False}, (3,), False),
    ("Embedding", {"input_dim": 7, "output_dim": 3}, (5,), False),
    ("SimpleRNN", {"units": 3}, (4, 2), False),
    ("SimpleRNN", {"units": 3, "return_sequences": True, "go_backwards": True, "activation": "relu"}, (4, 2), False),
    ("SimpleRNN", {"units": 2, "dropout": 0.3, "recurrent_dropout": 0.4, "return_sequences": True}, (4, 3), True),
    ("LSTM", {"units": 3}, (4, 2), False),
    ("LSTM", {"units": 2, "return_sequences": True, "go_backwards": True}, (5, 3), False),
    ("LSTM", {"units": 3, "use_bias": False, "unit_forget_bias": True}, (3, 2), False),
    ("LSTM", {"units": 3, "dropout": 0.3, "recurrent_dropout": 0.4, "return_sequences": True}, (4, 2), True),
    ("GRU", {"units": 3}, (4, 2), False),
    ("GRU", {"units": 3, "reset_after": False, "return_sequences": True}, (4, 2), False),
    ("GRU", {"units": 2, "go_backwards": True, "return_sequences": True, "use_bias": False}, (4, 3), False),
    ("GRU", {"units": 2, "reset_after": False, "go_backwards": True}, (3, 2), False),
    ("GRU", {"units": 3, "dropout": 0.3, "recurrent_dropout": 0.4}, (4, 2), True),
    ("GRU", {"units": 3, "reset_after": False, "dropout": 0.3, "recurrent_dropout": 0.4}, (4, 2), True),
]


def _input(kind, shape, rng, dtype=np.float64, batch=2):
    if kind == "Embedding":
        return rng.integers(0, 7, (batch,) + shape)
    x = rng.normal(size=(batch,) + shape).astype(dtype)
    if kind == "BatchNormalization":
        x = x * 2.0 + 1.0
    return x


def _case_id(case):
    kind, config, shape, training = case
    return f"{kind}-{config}-{shape}-{'train' if training else 'infer'}"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_gradients_match_finite_differences(case):
    kind, config, shape, training = case
    rng = np.random.default_rng(0)
    kernel = build(kind, config, shape)
    batch = 4 if kind == "BatchNormalization" and len(shape) == 1 else 2
    check_gradients(kernel, random_weights(kernel, rng), _input(kind, shape, rng, batch=batch), training)


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_float32_in_float32_out(case):
    kind, config, shape, training = case
    rng = np.random.default_rng(0)
    kernel64, kernel32 = build(kind, config, shape), build(kind, config, shape, dtype=np.float32)
    weights64 = random_weights(kernel64, rng)
    x64 = _input(kind, shape, rng, batch=3)
    weights32 = [w.astype(np.float32) for w in weights64]
    x32 = x64 if kind == "Embedding" else x64.astype(np.float32)
    ctx = context(training, np.float32)
    y, cache = kernel32.forward(weights32, x32, ctx)
    dx, dweights = kernel32.backward(weights32, cache, np.ones_like(y))
    assert y.dtype == np.float32
    assert dx is None or dx.dtype == np.float32
    assert all(dw is None or dw.dtype == np.float32 for dw in dweights)
    assert all(v.dtype == np.float32 for v in ctx.assignments.values())
    # and float32 agrees with float64 to float32 precision
    y64, _ = kernel64.forward(weights64, x64, context(training))
    np.testing.assert_allclose(y, y64, rtol=1e-5, atol=1e-5 * np.max(np.abs(y64)))


# -- forward values against independent computations --------------------------

def naive_conv2d(x, kernel, strides, pads, dilation=(1, 1)):
    """Cross-correlation by explicit loops; ``pads = (top, bottom, left, right)``."""
    top, bottom, left, right = pads
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    kh, kw, cin, filters = kernel.shape
    (sh, sw), (dh, dw) = strides, dilation
    oh = (xp.shape[1] - (kh - 1) * dh - 1) // sh + 1
    ow = (xp.shape[2] - (kw - 1) * dw - 1) // sw + 1
    y = np.zeros((x.shape[0], oh, ow, filters))
    for n in range(x.shape[0]):
        for p in range(oh):
            for q in range(ow):
                for f in range(filters):
                    total = 0.0
                    for i in range(kh):
                        for j in range(kw):
                            for c in range(cin):
                                total += xp[n, p * sh + i * dh, q * sw + j * dw, c] * kernel[i, j, c, f]
                    y[n, p, q, f] = total
    return y


# (config, input HxW, TF "same"/"valid" padding worked out by hand: top, bottom, left, right)
CONV2D_VALUES = [
    ({"kernel_size": [3, 3], "strides": [1, 1], "padding": "valid"}, (5, 4), (0, 0, 0, 0)),
    ({"kernel_size": [3, 3], "strides": [1, 1], "padding": "same"}, (5, 4), (1, 1, 1, 1)),
    # in 5, k 3, s 2: out 3, total 2 -> 1/1.  in 4, k 3, s 2: out 2, total 1 -> 0/1 (extra after)
    ({"kernel_size": [3, 3], "strides": [2, 2], "padding": "same"}, (5, 4), (1, 1, 0, 1)),
    # in 6, k 2, s 1: total 1 -> 0/1.   in 5, k 4, s 3: out 2, total 2 -> 1/1
    ({"kernel_size": [2, 4], "strides": [1, 3], "padding": "same"}, (6, 5), (0, 1, 1, 1)),
]


@pytest.mark.parametrize("config, hw, pads", CONV2D_VALUES)
def test_conv2d_matches_naive_cross_correlation(config, hw, pads):
    rng = np.random.default_rng(3)
    kernel = build("Conv2D", {"filters": 2, **config}, hw + (3,))
    weights = random_weights(kernel, rng)
    x = rng.normal(size=(2,) + hw + (3,))
    y, _ = kernel.forward(weights, x, context(False))
    expected = naive_conv2d(x, weights[0], config["strides"], pads) + weights[1]
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


def test_conv2d_dilation_matches_naive():
    rng = np.random.default_rng(4)
    kernel = build("Conv2D", {"filters": 2, "kernel_size": [2, 3], "dilation_rate": [2, 1], "use_bias": False}, (6, 5, 2))
    weights = random_weights(kernel, rng)
    x = rng.normal(size=(2, 6, 5, 2))
    y, _ = kernel.forward(weights, x, context(False))
    np.testing.assert_allclose(y, naive_conv2d(x, weights[0], (1, 1), (0, 0, 0, 0), (2, 1)), rtol=1e-12)


@pytest.mark.parametrize(
    "config, pads",
    [
        ({"kernel_size": [3], "strides": [1], "padding": "valid"}, (0, 0)),
        ({"kernel_size": [3], "strides": [2], "padding": "same"}, (1, 1)),  # in 7: out 4, total 2
        ({"kernel_size": [3], "strides": [1], "padding": "causal", "dilation_rate": [2]}, (4, 0)),
    ],
)
def test_conv1d_matches_naive(config, pads):
    rng = np.random.default_rng(5)
    kernel = build("Conv1D", {"filters": 2, "use_bias": False, **config}, (7, 3))
    weights = random_weights(kernel, rng)
    x = rng.normal(size=(2, 7, 3))
    y, _ = kernel.forward(weights, x, context(False))
    d = config.get("dilation_rate", [1])[0]
    expected = naive_conv2d(x[:, None], weights[0][None], (1, config["strides"][0]), (0, 0) + pads, (1, d))[:, 0]
    np.testing.assert_allclose(y, expected, rtol=1e-12)


def naive_pool2d(x, pool, strides, pads, reduce):
    """Pool by explicit loops over output positions, using only real
    (non-padded) elements of each window."""
    top, bottom, left, right = pads
    h, w = x.shape[1:3]
    oh = (h + top + bottom - pool[0]) // strides[0] + 1
    ow = (w + left + right - pool[1]) // strides[1] + 1
    y = np.zeros((x.shape[0], oh, ow, x.shape[3]))
    for p in range(oh):
        for q in range(ow):
            r0, c0 = p * strides[0] - top, q * strides[1] - left
            rows = slice(max(r0, 0), min(r0 + pool[0], h))
            cols = slice(max(c0, 0), min(c0 + pool[1], w))
            y[:, p, q] = reduce(x[:, rows, cols].reshape(x.shape[0], -1, x.shape[3]), axis=1)
    return y


POOL_VALUES = [
    ({"pool_size": [2, 2], "strides": None, "padding": "valid"}, (5, 4), (2, 2), (0, 0, 0, 0)),
    ({"pool_size": [2, 2], "strides": None, "padding": "same"}, (5, 5), (2, 2), (0, 1, 0, 1)),
    ({"pool_size": [3, 3], "strides": [2, 1], "padding": "same"}, (5, 4), (2, 1), (1, 1, 1, 1)),
    ({"pool_size": [3, 2], "strides": [1, 2], "padding": "valid"}, (4, 5), (1, 2), (0, 0, 0, 0)),
]


@pytest.mark.parametrize("kind, reduce", [("MaxPooling2D", np.max), ("AveragePooling2D", np.mean)])
@pytest.mark.parametrize("config, hw, strides, pads", POOL_VALUES)
def test_pooling2d_matches_naive(kind, reduce, config, hw, strides, pads):
    x = np.random.default_rng(6).normal(size=(2,) + hw + (3,))
    y, _ = build(kind, config, hw + (3,)).forward([], x, context(False))
    np.testing.assert_allclose(y, naive_pool2d(x, config["pool_size"], strides, pads, reduce), rtol=1e-14)


def test_maxpooling1d_matches_naive():
    x = np.random.default_rng(7).normal(size=(2, 7, 3))
    y, _ = build("MaxPooling1D", {"pool_size": [3], "strides": [2], "padding": "same"}, (7, 3)).forward([], x, context(False))
    # in 7, p 3, s 2: out 4, total 2 -> pad 1 each side
    expected = naive_pool2d(x[:, None], (1, 3), (1, 2), (0, 0, 1, 1), np.max)[:, 0]
    np.testing.assert_allclose(y, expected)


def test_maxpool_gradient_goes_to_first_maximum_of_a_tie():
    x = np.array([[[1.0, 5.0], [5.0, 5.0]]])[..., None]  # one 2x2 window, three-way tie
    kernel = build("MaxPooling2D", {"pool_size": [2, 2]}, (2, 2, 1))
    y, cache = kernel.forward([], x, context(False))
    dx, _ = kernel.backward([], cache, np.array([[[[2.0]]]]))
    np.testing.assert_array_equal(dx[0, ..., 0], [[0.0, 2.0], [0.0, 0.0]])


def test_global_average_pooling_values():
    x = np.random.default_rng(8).normal(size=(2, 3, 4, 5))
    y, _ = build("GlobalAveragePooling2D", {"keepdims": True}, (3, 4, 5)).forward([], x, context(False))
    np.testing.assert_allclose(y, x.mean(axis=(1, 2), keepdims=True))
    y1, _ = build("GlobalAveragePooling1D", {}, (4, 5)).forward([], x[:, 0], context(False))
    np.testing.assert_allclose(y1, x[:, 0].mean(axis=1))


def test_dense_on_3d_input_works_on_last_axis():
    rng = np.random.default_rng(9)
    kernel = build("Dense", {"units": 3}, (4, 5))
    weights = random_weights(kernel, rng)
    x = rng.normal(size=(2, 4, 5))
    y, _ = kernel.forward(weights, x, context(False))
    np.testing.assert_allclose(y[:, 2], x[:, 2] @ weights[0] + weights[1])


def test_flatten_and_reshape_values():
    x = np.arange(24.0).reshape(2, 3, 4)
    y, _ = build("Flatten", {}, (3, 4)).forward([], x, context(False))
    np.testing.assert_array_equal(y, x.reshape(2, 12))
    y, _ = build("Reshape", {"target_shape": (-1, 2)}, (3, 4)).forward([], x, context(False))
    np.testing.assert_array_equal(y, x.reshape(2, 6, 2))
    with pytest.raises(ValueError, match="target_shape"):
        build("Reshape", {"target_shape": [5]}, (3, 4))


# -- recurrent layers by hand ---------------------------------------------------

def _rnn_setup(kind, config, steps=3, features=2, seed=10):
    rng = np.random.default_rng(seed)
    kernel = build(kind, config, (steps, features))
    weights = random_weights(kernel, rng)
    x = rng.normal(size=(2, steps, features))
    return kernel, weights, x


def test_simple_rnn_by_hand():
    kernel, (W, U, b), x = _rnn_setup("SimpleRNN", {"units": 3, "return_sequences": True})
    y, _ = kernel.forward([W, U, b], x, context(False))
    h = np.zeros((2, 3))
    for t in range(3):
        h = np.tanh(x[:, t] @ W + h @ U + b)
        np.testing.assert_allclose(y[:, t], h, rtol=1e-13)


def test_lstm_one_step_by_hand():
    kernel, (W, U, b), x = _rnn_setup("LSTM", {"units": 3}, steps=1)
    y, _ = kernel.forward([W, U, b], x, context(False))
    z = x[:, 0] @ W + b  # h_0 = 0, so the recurrent term vanishes
    i, g, o = sigmoid(z[:, 0:3]), np.tanh(z[:, 6:9]), sigmoid(z[:, 9:12])  # gates i, f, c, o
    c = i * g  # c_0 = 0, so the forget gate does not matter yet
    np.testing.assert_allclose(y, o * np.tanh(c), rtol=1e-13)


def test_lstm_two_steps_by_hand():
    kernel, (W, U, b), x = _rnn_setup("LSTM", {"units": 2, "return_sequences": True}, steps=2)
    y, _ = kernel.forward([W, U, b], x, context(False))
    h = c = np.zeros((2, 2))
    for t in range(2):
        z = x[:, t] @ W + h @ U + b
        i, f, g, o = sigmoid(z[:, :2]), sigmoid(z[:, 2:4]), np.tanh(z[:, 4:6]), sigmoid(z[:, 6:])
        c = f * c + i * g
        h = o * np.tanh(c)
        np.testing.assert_allclose(y[:, t], h, rtol=1e-13)


@pytest.mark.parametrize("reset_after", [True, False])
def test_gru_by_hand(reset_after):
    kernel, (W, U, b), x = _rnn_setup("GRU", {"units": 2, "reset_after": reset_after, "return_sequences": True})
    y, _ = kernel.forward([W, U, b], x, context(False))
    h = np.zeros((2, 2))
    for t in range(3):
        if reset_after:
            xz, xr, xh = np.split(x[:, t] @ W + b[0], 3, axis=1)
            rz, rr, rh = np.split(h @ U + b[1], 3, axis=1)
            z, r = sigmoid(xz + rz), sigmoid(xr + rr)
            hh = np.tanh(xh + r * rh)
        else:
            xz, xr, xh = np.split(x[:, t] @ W + b, 3, axis=1)
            z = sigmoid(xz + h @ U[:, :2])
            r = sigmoid(xr + h @ U[:, 2:4])
            hh = np.tanh(xh + (r * h) @ U[:, 4:])
        h = z * h + (1 - z) * hh
        np.testing.assert_allclose(y[:, t], h, rtol=1e-13)


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_go_backwards_processes_reversed_time_and_keeps_processing_order(kind, return_sequences):
    config = {"units": 2, "return_sequences": return_sequences}
    forward, weights, x = _rnn_setup(kind, config, steps=4)
    backward = build(kind, {**config, "go_backwards": True}, (4, 2))
    y_back, _ = backward.forward(weights, x, context(False))
    y_reversed_input, _ = forward.forward(weights, x[:, ::-1].copy(), context(False))
    np.testing.assert_allclose(y_back, y_reversed_input, rtol=1e-14)


class RecordingMasks:
    """A dropout-mask source that records what it was asked for."""

    def __init__(self):
        self.requests, self.source = [], fixed_dropout_mask(np.float64)

    def __call__(self, shape, rate, stream):
        self.requests.append((shape, rate, stream))
        return self.source(shape, rate, stream)


def test_recurrent_dropout_masks_requested_once_with_keras_shapes():
    kernel, weights, x = _rnn_setup("LSTM", {"units": 3, "dropout": 0.25, "recurrent_dropout": 0.5}, steps=4)
    masks = RecordingMasks()
    kernel.forward(weights, x, ForwardContext(True, masks))
    assert masks.requests == [((2, 2), 0.25, 0), ((2, 3), 0.5, 1)]
    # inference: no masks at all (and no step seed needed)
    kernel.forward(weights, x, ForwardContext(False))


def test_simple_rnn_dropout_by_hand():
    config = {"units": 3, "dropout": 0.5, "recurrent_dropout": 0.5, "return_sequences": True}
    kernel, (W, U, b), x = _rnn_setup("SimpleRNN", config)
    y, _ = kernel.forward([W, U, b], x, context(True))
    mx = fixed_dropout_mask(np.float64)((2, 2), 0.5, 0)
    mh = fixed_dropout_mask(np.float64)((2, 3), 0.5, 1)
    h = np.zeros((2, 3))
    for t in range(3):
        h = np.tanh((x[:, t] * mx) @ W + (h * mh) @ U + b)
        np.testing.assert_allclose(y[:, t], h, rtol=1e-13)


def test_gru_recurrent_dropout_leaves_the_carried_state_unmasked():
    config = {"units": 2, "recurrent_dropout": 0.5, "return_sequences": True}
    kernel, (W, U, b), x = _rnn_setup("GRU", config)
    y, _ = kernel.forward([W, U, b], x, context(True))
    mh = fixed_dropout_mask(np.float64)((2, 2), 0.5, 1)
    h = np.zeros((2, 2))
    for t in range(3):
        xz, xr, xh = np.split(x[:, t] @ W + b[0], 3, axis=1)
        rz, rr, rh = np.split((h * mh) @ U + b[1], 3, axis=1)
        z, r = sigmoid(xz + rz), sigmoid(xr + rr)
        h = z * h + (1 - z) * np.tanh(xh + r * rh)
        np.testing.assert_allclose(y[:, t], h, rtol=1e-13)


# -- BatchNormalization, Dropout, Embedding ------------------------------------

@pytest.mark.parametrize("center, scale", [(True, True), (False, True), (True, False)])
def test_batchnorm_training_assigns_moving_stats_with_momentum(center, scale):
    rng = np.random.default_rng(11)
    kernel = build("BatchNormalization", {"momentum": 0.9, "epsilon": 1e-3, "center": center, "scale": scale}, (3, 4))
    weights = random_weights(kernel, rng)
    x = rng.normal(1.0, 2.0, size=(5, 3, 4))
    ctx = context(True)
    y, _ = kernel.forward(weights, x, ctx)
    mean, var = x.mean(axis=(0, 1)), x.var(axis=(0, 1))
    moving_mean, moving_var = weights[-2], weights[-1]
    assert sorted(ctx.assignments) == [len(weights) - 2, len(weights) - 1]
    np.testing.assert_allclose(ctx.assignments[len(weights) - 2], 0.9 * moving_mean + 0.1 * mean, rtol=1e-14)
    np.testing.assert_allclose(ctx.assignments[len(weights) - 1], 0.9 * moving_var + 0.1 * var, rtol=1e-14)
    gamma = weights[0] if scale else 1.0
    beta = weights[int(scale)] if center else 0.0
    np.testing.assert_allclose(y, gamma * (x - mean) / np.sqrt(var + 1e-3) + beta, rtol=1e-12)


def test_batchnorm_inference_uses_moving_stats_and_assigns_nothing():
    rng = np.random.default_rng(12)
    kernel = build("BatchNormalization", {}, (4,))
    gamma, beta, mm, mv = weights = random_weights(kernel, rng)
    x = rng.normal(size=(3, 4))
    ctx = context(False)
    y, _ = kernel.forward(weights, x, ctx)
    assert ctx.assignments == {}
    np.testing.assert_allclose(y, gamma * (x - mm) / np.sqrt(mv + 1e-3) + beta, rtol=1e-13)


def test_dropout_identity_at_inference_and_rate_zero():
    x = np.random.default_rng(13).normal(size=(4, 5))
    kernel = build("Dropout", {"rate": 0.5}, (5,))
    y, cache = kernel.forward([], x, ForwardContext(False))  # no mask source needed
    assert y is x
    assert kernel.backward([], cache, x)[0] is x
    y, _ = build("Dropout", {"rate": 0.0}, (5,)).forward([], x, ForwardContext(True))
    assert y is x


def test_dropout_training_multiplies_by_broadcast_mask():
    x = np.random.default_rng(14).normal(size=(2, 3, 4))
    kernel = build("Dropout", {"rate": 0.5, "noise_shape": [None, 1, None], "seed": 3}, (3, 4))
    masks = RecordingMasks()
    y, _ = kernel.forward([], x, ForwardContext(True, masks))
    assert masks.requests == [((2, 1, 4), 0.5, 0)]
    mask = fixed_dropout_mask(np.float64)((2, 1, 4), 0.5, 0)
    np.testing.assert_array_equal(y, x * mask)
    assert set(np.unique(mask)) <= {0.0, 2.0}


def test_embedding_lookup_and_scatter_add_gradient():
    kernel = build("Embedding", {"input_dim": 5, "output_dim": 2}, (3,))
    table = np.arange(10.0).reshape(5, 2)
    ids = np.array([[1, 4, 1], [0, 1, 3]])
    y, cache = kernel.forward([table], ids, context(False))
    np.testing.assert_array_equal(y, table[ids])
    dy = np.ones((2, 3, 2))
    dx, (dtable,) = kernel.backward([table], cache, dy)
    assert dx is None
    np.testing.assert_array_equal(dtable[:, 0], [1, 3, 0, 1, 1])  # id 1 appears three times
    # float ids (as from a float dataset) are cast like Keras does
    y_float, _ = kernel.forward([table], ids.astype(np.float32), context(False))
    np.testing.assert_array_equal(y_float, y)


@pytest.mark.parametrize("bad", [5, -1])
def test_embedding_out_of_range_names_layer_value_and_input_dim(bad):
    kernel = build("Embedding", {"input_dim": 5, "output_dim": 2}, (2,))
    with pytest.raises(ValueError, match=rf"'embedding'.*index {bad}.*input_dim=5"):
        kernel.forward([np.zeros((5, 2))], np.array([[0, bad]]), context(False))


# -- registry and unsupported configurations -----------------------------------

def test_kernels_registry_covers_every_kind():
    expected = {
        "Dense", "Activation", "Dropout", "Flatten", "Reshape", "Conv1D", "Conv2D", "MaxPooling1D",
        "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
        "BatchNormalization", "Embedding", "SimpleRNN", "LSTM", "GRU",
        "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot",
        "LayerNormalization", "GlobalMaxPooling1D", "GlobalMaxPooling2D",
        "ZeroPadding1D", "ZeroPadding2D", "Cropping1D", "Cropping2D", "UpSampling1D", "UpSampling2D", "RepeatVector",
        "Permute", "Identity", "Operation", "GroupNormalization", "UnitNormalization",
        "AveragePooling1D", "Rescaling", "SpatialDropout1D", "SpatialDropout2D", "Variable",
        "Conv1DTranspose", "Conv2DTranspose", "DepthwiseConv2D", "SeparableConv2D", "DepthwiseConv1D",
        "SeparableConv1D", "Bidirectional", "TimeDistributed", "ConvLSTM1D", "ConvLSTM2D",
    }
    expected |= {"GaussianNoise", "GaussianDropout", "ActivityRegularization", "Normalization", "AddLoss"}
    assert set(KERNELS) == expected
    assert all(cls.kind == kind for kind, cls in KERNELS.items())
    assert [k for k, c in KERNELS.items() if not c.differentiable_input] == ["Embedding"]


@pytest.mark.parametrize(
    "kind, config, shape, error, match",
    [
        ("Conv2D", {"filters": 1, "kernel_size": [2, 2], "data_format": "channels_first"}, (4, 4, 1), NotImplementedError, "channels_first"),
        ("Conv2D", {"filters": 3, "kernel_size": [2, 2], "groups": 2}, (4, 4, 2), ValueError, "groups=2"),
        ("Conv1D", {"filters": 2, "kernel_size": [2], "groups": 2}, (4, 3), ValueError, "groups=2"),
        ("Conv2D", {"filters": 1, "kernel_size": [2, 2], "padding": "causal"}, (4, 4, 1), ValueError, "causal"),
        ("Conv2D", {"filters": 1, "kernel_size": [5, 5]}, (4, 4, 1), ValueError, "too small"),
        ("MaxPooling2D", {"pool_size": [2, 2], "data_format": "channels_first"}, (4, 4, 1), NotImplementedError, "channels_first"),
        ("BatchNormalization", {"axis": 1}, (3, 4), NotImplementedError, "axis=1"),
        ("Dense", {"units": 2, "activation": "relu7"}, (3,), ValueError, "unknown activation"),
        ("LSTM", {"units": 2, "stateful": True}, (3, 2), NotImplementedError, "stateful"),
    ],
)
def test_unsupported_configurations_fail_clearly(kind, config, shape, error, match):
    with pytest.raises(error, match=match):
        build(kind, config, shape)


# -- the core's layer rules (polykeras.layer_rules), which every backend reads ----

@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_rules_output_shape_is_the_kernels(case):
    kind, config, shape, training = case
    rng = np.random.default_rng(0)
    kernel = build(kind, config, shape)
    y, _ = kernel.forward(random_weights(kernel, rng), _input(kind, shape, rng, batch=3), context(training))
    assert kernel.rules.output_shape((3,) + shape) == y.shape
    assert kernel.spec.output_shape == (None,) + y.shape[1:]


def test_rules_cover_every_kernel_but_the_merge_layers():
    merge = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot"}
    # Operation nodes (polykeras.ops in models) are ruled by the op registry, not by layer rules, and
    # Variable nodes (a custom layer's weights) and AddLoss nodes (a traced add_loss) have no config
    assert set(RULES) == set(KERNELS) - merge - {"Operation", "Variable", "AddLoss"}
    assert all(cls.kind == kind for kind, cls in RULES.items())
    spec = layer_spec("Dense", {"units": 2}, (3,))
    assert type(rules_for(dataclasses.replace(spec, kind="Add"))) is LayerRules  # no config rules of its own


def test_rules_import_only_numpy():
    code = ("import sys, polykeras.layer_rules; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'polykeras_numpy', 'torch', 'jax', 'keras'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("size, k, stride, dilation, padding, expected", [
    (5, 3, 2, 1, "same", (1, 1, 3)),     # total 2: split evenly
    (6, 3, 2, 1, "same", (0, 1, 3)),     # total 1: the odd one after (TensorFlow)
    (7, 4, 1, 1, "same", (1, 2, 7)),
    (5, 2, 1, 2, "same", (1, 1, 5)),     # k_eff = 3
    (6, 3, 1, 2, "causal", (4, 0, 6)),   # (k - 1) * dilation, left only
    (7, 2, 2, 1, "causal", (1, 0, 4)),
    (7, 3, 2, 1, "valid", (0, 0, 3)),
])
def test_padding_amounts_are_tensorflows(size, k, stride, dilation, padding, expected):
    assert padding_amounts(size, k, stride, dilation, padding, "c") == expected


def test_rules_read_configs_once_for_every_backend():
    conv = rules_for(layer_spec("Conv1D", {"filters": 2, "kernel_size": [3], "strides": 2, "padding": "CAUSAL"},
                                (9, 2)))
    assert (conv.kernel_size, conv.strides, conv.dilation_rate, conv.padding) == ((3,), (2,), (1,), "causal")
    assert conv.output_shape((None, 9, 2)) == (None, 5, 2)
    assert conv.output_shape((None, None, 2)) == (None, None, 2)  # unknown length: unknown output length
    pool = rules_for(layer_spec("MaxPooling2D", {"pool_size": [3, 2], "strides": None}, (6, 5, 1)))
    assert (pool.pool_size, pool.strides, pool.pad_value) == ((3, 2), (3, 2), -np.inf)
    bn = rules_for(layer_spec("BatchNormalization", {"scale": False}, (3,)))
    assert (bn.gamma_index, bn.beta_index, bn.mean_index, bn.variance_index) == (None, 0, 1, 2)
    gru = rules_for(layer_spec("GRU", {"units": 2}, (4, 3)))
    assert gru.gate_order == ("z", "r", "h")
    input_bias, recurrent_bias = gru.split_bias(np.arange(12).reshape(2, 6))  # reset_after: the (2, 3u) rows
    assert input_bias.tolist() == [0, 1, 2, 3, 4, 5] and recurrent_bias.tolist() == [6, 7, 8, 9, 10, 11]
    assert rules_for(layer_spec("LSTM", {"units": 2}, (4, 3))).gate_order == ("i", "f", "c", "o")
    drop = rules_for(layer_spec("Dropout", {"rate": 0.5, "noise_shape": [None, 1, None]}, (3, 4)))
    assert drop.mask_shape((2, 3, 4)) == (2, 1, 4) and drop.active(True) and not drop.active(False)
    reshape = rules_for(layer_spec("Reshape", {"target_shape": [-1, 2]}, (3, 4)))
    assert reshape.output_shape((5, 3, 4)) == (5, 6, 2)


def test_average_pooling_counts_only_real_elements():
    pool = rules_for(layer_spec("AveragePooling2D", {"pool_size": [3, 3], "strides": [2, 2], "padding": "same"},
                                (5, 6, 1)))
    counts = pool.real_counts((5, 6))
    assert counts.shape == (1, 3, 3, 1)
    # rows: padding (1, 1) -> windows cover 2, 3, 2 real rows; columns: padding (0, 1) -> 3, 3, 2
    np.testing.assert_array_equal(counts[0, :, :, 0], np.outer([2, 3, 2], [3, 3, 2]))


@pytest.mark.parametrize("backend", ["the jax backend", "polykeras"])
def test_rules_errors_name_the_layer_and_the_backend(backend):
    spec = layer_spec("Dense", {"units": 2}, (3,))
    spec = dataclasses.replace(spec, kind="MaxPooling2D", name="words", input_shapes=((None, 4, 4, 1),),
                               config={"pool_size": [2, 2], "data_format": "channels_first"})
    message = f"MaxPooling2D layer 'words': data_format='channels_first' is not supported by {backend}"
    with pytest.raises(NotImplementedError, match=message):
        rules_for(spec, backend=backend)
    with pytest.raises(ValueError, match="Dropout layer 'dropout': rate must be in"):
        rules_for(layer_spec("Dropout", {"rate": 1.5}, (3,)))
    with pytest.raises(ValueError, match="at most one -1"):
        rules_for(layer_spec("Reshape", {"target_shape": [-1, -1]}, (4,)))
