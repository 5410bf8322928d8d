"""ConvLSTM2D / ConvLSTM1D: the layer's config, weights and errors; the NumPy reference's gradients by
finite differences and its forward against an LSTM (1x1 kernels on one pixel) and against convolutions
written out per step; torch and jax against the reference in float64 (hypothesis-drawn configs) and in
training; ``.keras`` files exchanged with Keras 3 both ways."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import polykeras as keras
from polykeras import layers
from polykeras.layer_rules import rules_for
from polykeras.trainer import Trainer
from polykeras_numpy.layers import KERNELS

from _fd import (FD_TOLERANCE, build, check_gradients, context, layer_spec, numerical_gradient, random_weights,
                 relative_error)
from backend_parity import check_fit_matches_reference, rel_diff

# float64: one forward/backward pass (or two epochs of SGD) through a few steps of convolutions at unit
# roundoff 1.1e-16 (measured below 1e-14); a swapped gate or an unflipped step shows at 1e-2
FLOAT64_PARITY = 1e-10

# (kind, config, per-sample input shape (time, *spatial, channels))
FD_CASES = [
    ("ConvLSTM2D", {"filters": 2, "kernel_size": [2, 3]}, (3, 4, 4, 2)),
    ("ConvLSTM2D", {"filters": 3, "kernel_size": [3, 3], "strides": [2, 1], "padding": "same",
                    "return_sequences": True, "go_backwards": True}, (3, 4, 3, 1)),
    ("ConvLSTM2D", {"filters": 2, "kernel_size": [2, 2], "dilation_rate": [2, 1], "padding": "same",
                    "dropout": 0.3, "recurrent_dropout": 0.4, "use_bias": False}, (3, 4, 3, 2)),
    ("ConvLSTM2D", {"filters": 2, "kernel_size": [3, 2], "strides": [1, 2], "return_state": True,
                    "return_sequences": True, "activation": "relu", "recurrent_activation": "hard_sigmoid"},
     (2, 4, 5, 2)),
    ("ConvLSTM2D", {"filters": 1, "kernel_size": [2, 2], "return_state": True, "padding": "same"}, (3, 3, 3, 2)),
    ("ConvLSTM1D", {"filters": 2, "kernel_size": 3, "strides": 2, "padding": "same", "return_sequences": True,
                    "dropout": 0.2}, (3, 5, 2)),
    ("ConvLSTM1D", {"filters": 3, "kernel_size": [2], "return_state": True, "go_backwards": True,
                    "recurrent_dropout": 0.3}, (4, 4, 1)),
]


def _case_id(case):
    kind, config, shape = case
    return f"{kind}-{'-'.join(f'{k}={v}' for k, v in config.items())}-{shape}"


# -- the layer ------------------------------------------------------------------------------------------------
def test_weights_shapes_and_config_are_keras_s():
    layer = layers.ConvLSTM2D(3, (2, 3), strides=(1, 2), padding="same", return_sequences=True)
    model = keras.Sequential([layers.Input((4, 5, 6, 2)), layer])
    kernel, recurrent, bias = model.get_weights()
    assert kernel.shape == (2, 3, 2, 12) and recurrent.shape == (2, 3, 3, 12) and bias.shape == (12,)
    np.testing.assert_array_equal(bias, np.r_[np.zeros(3), np.ones(3), np.zeros(6)])  # unit_forget_bias
    assert model.output_shape == (None, 4, 5, 3, 3)
    config = layer.get_config()
    assert config["filters"] == 3 and config["kernel_size"] == (2, 3) and "units" not in config
    again = layers.ConvLSTM2D.from_config(config)
    assert again.get_config() == config
    inp = keras.Input((4, 5, 6, 2))
    out, h, c = layers.ConvLSTM2D(2, 3, return_state=True)(inp)
    assert out.shape == h.shape == c.shape == (None, 3, 4, 2)
    seq, h, _ = layers.ConvLSTM1D(2, 2, strides=2, padding="same", return_state=True, return_sequences=True)(
        keras.Input((4, 5, 3)))
    assert seq.shape == (None, 4, 3, 2) and h.shape == (None, 3, 2)


@pytest.mark.parametrize("make, error, match", [
    (lambda: layers.ConvLSTM2D(2, 3, data_format="channels_first"), NotImplementedError, "channels_first"),
    (lambda: layers.ConvLSTM2D(2, 3, stateful=True), NotImplementedError, "stateful"),
    (lambda: layers.ConvLSTM2D(2, 3, kernel_constraint="non_neg"), NotImplementedError, "kernel_constraint"),
    (lambda: layers.ConvLSTM2D(2, 3, padding="causal"), ValueError, "padding"),
    (lambda: layers.ConvLSTM2D(2, 3, dropout=1.0), ValueError, "dropout"),
])
def test_unsupported_or_bad_arguments_are_refused_by_name(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_masks_and_bad_shapes_are_refused_by_name():
    inp = keras.Input((4, 5, 6, 2))
    state, wrong = keras.Input((3, 4, 2)), keras.Input((3, 4, 3))
    assert layers.ConvLSTM2D(2, 3)(inp, initial_state=[state, state]).shape == (None, 3, 4, 2)
    with pytest.raises(ValueError, match=r"initial state must be a tensor of shape \(None, 3, 4, 2\)"):
        layers.ConvLSTM2D(2, 3)(inp, initial_state=[state, wrong])
    with pytest.raises(ValueError, match="takes 2 initial state"):
        layers.ConvLSTM2D(2, 3)(inp, initial_state=[state])
    with pytest.raises(NotImplementedError, match="mask"):
        layers.ConvLSTM2D(2, 3)(layers.Masking()(inp))
    with pytest.raises(ValueError, match="rank 5"):
        layers.ConvLSTM2D(2, 3)(keras.Input((4, 5, 2)))
    with pytest.raises(ValueError, match="does not fit"):
        layers.ConvLSTM2D(2, 7)(inp)


# -- the reference ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", FD_CASES, ids=[_case_id(c) for c in FD_CASES])
def test_reference_gradients_match_finite_differences(case):
    kind, config, shape = case
    rng = np.random.default_rng(0)
    kernel = build(kind, config, shape)
    x = rng.normal(size=(2,) + shape)
    check_gradients(kernel, random_weights(kernel, rng), x, training=True)


@pytest.mark.parametrize("kind, config, shape", [
    ("ConvLSTM2D", {"filters": 2, "kernel_size": [2, 2], "strides": [2, 1], "padding": "same", "go_backwards": True,
                    "recurrent_dropout": 0.3, "return_state": True}, (3, 4, 3, 2)),
    ("ConvLSTM1D", {"filters": 3, "kernel_size": 2, "return_sequences": True, "dropout": 0.2}, (2, 4, 2)),
])
def test_reference_gradients_into_the_initial_states_match_finite_differences(kind, config, shape):
    rng = np.random.default_rng(4)
    single = layer_spec(kind, config, shape)
    state = rules_for(single).state_shape((None,) + shape)
    spec = dataclasses.replace(single, inbound=("input", "h0", "c0"), input_shapes=(single.input_shape, state, state))
    kernel = KERNELS[kind](spec, np.float64)
    weights = random_weights(kernel, rng)
    inputs = [rng.normal(size=(2,) + shape)] + [rng.normal(size=(2,) + state[1:]) for _ in range(2)]
    y, cache = kernel.forward(weights, inputs, context(True))
    R = rng.normal(size=y.shape)
    grads, _ = kernel.backward(weights, cache, R)

    def loss():
        return float(np.sum(kernel.forward(weights, inputs, context(True))[0] * R))

    for array, grad in zip(inputs, grads):
        assert grad.shape == array.shape
        assert relative_error(grad, numerical_gradient(loss, array)) < FD_TOLERANCE
    zero = [inputs[0]] + [np.zeros_like(s) for s in inputs[1:]]  # zero states: the layer without them
    plain = build(kind, config, shape)
    np.testing.assert_array_equal(kernel.forward(weights, zero, context(True))[0],
                                  plain.forward(weights, inputs[0], context(True))[0])


@pytest.mark.parametrize("case", FD_CASES[:3], ids=[_case_id(c) for c in FD_CASES[:3]])
def test_reference_float32_stays_float32_with_the_rules_shape(case):
    kind, config, shape = case
    rng = np.random.default_rng(1)
    kernel = build(kind, config, shape, dtype=np.float32)
    weights = [w.astype(np.float32) for w in random_weights(kernel, rng)]
    y, cache = kernel.forward(weights, rng.normal(size=(3,) + shape).astype(np.float32), context(True, np.float32))
    dx, dweights = kernel.backward(weights, cache, np.ones_like(y))
    assert y.shape == (3,) + kernel.spec.output_shape[1:]
    assert y.dtype == dx.dtype == np.float32 and all(d.dtype == np.float32 for d in dweights)


@pytest.mark.parametrize("go_backwards", [False, True])
def test_reference_with_1x1_kernels_on_one_pixel_is_the_lstm(go_backwards):
    rng = np.random.default_rng(2)
    conv = build("ConvLSTM2D", {"filters": 3, "kernel_size": [1, 1], "return_sequences": True,
                                "go_backwards": go_backwards}, (4, 1, 1, 2))
    lstm = build("LSTM", {"units": 3, "return_sequences": True, "go_backwards": go_backwards}, (4, 2))
    weights = random_weights(conv, rng)
    x = rng.normal(size=(2, 4, 1, 1, 2))
    y, _ = conv.forward(weights, x, context(False))
    want, _ = lstm.forward([w.reshape(w.shape[-2:]) if w.ndim == 4 else w for w in weights], x[:, :, 0, 0],
                           context(False))
    np.testing.assert_allclose(y[:, :, 0, 0], want, rtol=1e-13, atol=1e-14)


def _conv_same(image, kernel):
    """Stride-1 ``"same"`` cross-correlation written out pixel by pixel (TensorFlow's padding)."""
    kh, kw = kernel.shape[:2]
    top, left = (kh - 1) // 2, (kw - 1) // 2
    padded = np.pad(image, ((0, 0), (top, kh - 1 - top), (left, kw - 1 - left), (0, 0)))
    out = np.zeros(image.shape[:3] + (kernel.shape[-1],))
    for p in range(image.shape[1]):
        for q in range(image.shape[2]):
            out[:, p, q] = np.einsum("bijc,ijcf->bf", padded[:, p:p + kh, q:q + kw], kernel)
    return out


def test_reference_forward_is_keras_s_cell_written_out():
    """Keras's ConvLSTMCell, step by step: the input and recurrent convolutions (both "same" here, even
    kernels: the smaller half of the padding before), gates i, f, c, o, the state carried."""
    rng = np.random.default_rng(3)
    kernel = build("ConvLSTM2D", {"filters": 2, "kernel_size": [2, 3], "padding": "same"}, (3, 3, 4, 2))
    K, U, b = random_weights(kernel, rng)
    x = rng.normal(size=(2, 3, 3, 4, 2))
    h = c = np.zeros((2, 3, 4, 2))
    sigmoid = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    for t in range(3):
        z = _conv_same(x[:, t], K) + b + _conv_same(h, U)
        i, f, g, o = sigmoid(z[..., 0:2]), sigmoid(z[..., 2:4]), np.tanh(z[..., 4:6]), sigmoid(z[..., 6:8])
        c = f * c + i * g
        h = o * np.tanh(c)
    y, _ = kernel.forward([K, U, b], x, context(False))
    np.testing.assert_allclose(y, h, rtol=1e-13, atol=1e-14)


# -- torch and jax against the reference ----------------------------------------------------------------------
@st.composite
def _configs(draw):
    """A small ConvLSTM2D/1D config and a sequence shape it fits: the window rules of Conv2D (dilation at
    stride 1), every option of the layer."""
    rank = draw(st.sampled_from([1, 2]))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    strides = tuple(draw(st.integers(1, 2)) for _ in range(rank))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(rank)) if strides == (1,) * rank else (1,) * rank
    spatial = tuple(k_eff + draw(st.integers(0, 2)) for k_eff in ((k - 1) * d + 1 for k, d in zip(kernel, dilation)))
    rate = st.sampled_from([0.0, 0.0, 0.3])
    config = dict(filters=draw(st.integers(1, 3)), kernel_size=kernel, strides=strides, dilation_rate=dilation,
                  padding=draw(st.sampled_from(["valid", "same"])), use_bias=draw(st.booleans()),
                  activation=draw(st.sampled_from(["tanh", "relu"])),
                  recurrent_activation=draw(st.sampled_from(["sigmoid", "hard_sigmoid"])),
                  return_sequences=draw(st.booleans()), return_state=draw(st.booleans()),
                  go_backwards=draw(st.booleans()), dropout=draw(rate), recurrent_dropout=draw(rate))
    return rank, config, (draw(st.integers(1, 3)),) + spatial + (draw(st.integers(1, 3)),)


def _model(rank, config, shape):
    keras.utils.set_random_seed(0)
    inp = keras.Input(shape)
    out = getattr(layers, f"ConvLSTM{rank}D")(**config)(inp)
    if config["return_state"]:  # all three outputs reach the loss
        out = layers.Concatenate()([layers.Flatten()(t) for t in out])
    return keras.Model(inp, layers.Dense(2)(layers.Flatten()(out)))


def _forward_and_gradients(backend, rank, config, shape):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(3,) + shape), rng.normal(size=(3, 2))
    model = _model(rank, config, shape)
    model.compile("sgd", "mse", backend=backend, dtype="float64", parity=True)
    xs, ys = Trainer(model).prepare(x, y)
    program = model._get_program(training=True, y_ndim=ys.ndim)
    grads = program.value_and_grad(xs, ys, 3, training=True)
    return [program.predict_step(xs), grads.loss] + [g for g in grads.weights if g is not None]


@pytest.mark.parametrize("backend", ["torch", "jax"])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_configs())
def test_forward_and_gradients_match_the_reference_in_float64(backend, case):
    want = _forward_and_gradients("numpy", *case)
    got = _forward_and_gradients(backend, *case)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert rel_diff(a, b) < FLOAT64_PARITY


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_training_matches_the_reference_in_float64(backend):
    def build():
        keras.utils.set_random_seed(0)
        inp = keras.Input((3, 5, 4, 2))
        h = layers.ConvLSTM2D(3, (3, 2), padding="same", return_sequences=True, dropout=0.2,
                              recurrent_dropout=0.2)(inp)
        h = layers.ConvLSTM2D(2, 2, strides=2, go_backwards=True,
                              kernel_regularizer=keras.regularizers.l2(0.01))(h)
        return keras.Model(inp, layers.Dense(2, activation="softmax")(layers.Flatten()(h)))

    rng = np.random.default_rng(2)
    check_fit_matches_reference(build, backend, rng.normal(size=(8, 3, 5, 4, 2)), rng.integers(0, 2, 8),
                                "sparse_categorical_crossentropy", FLOAT64_PARITY, epochs=2, batch_size=4)


def test_the_example_backend_refuses_it_by_name():
    model = keras.Sequential([layers.Input((2, 3, 3, 1)), layers.ConvLSTM2D(1, 2), layers.Flatten()])
    model.compile("sgd", "mse", backend="example")
    with pytest.raises(NotImplementedError, match=r"does not implement layer kind\(s\) ConvLSTM2D.*numpy"):
        model.predict(np.zeros((1, 2, 3, 3, 1)), verbose=0)


# -- Keras 3 -------------------------------------------------------------------------------------------------
def _polykeras_model():
    keras.utils.set_random_seed(4)
    inp = keras.Input((3, 5, 4, 2))
    h = layers.ConvLSTM2D(3, (3, 2), padding="same", return_sequences=True, go_backwards=True,
                          kernel_regularizer=keras.regularizers.l2(0.01), name="clstm")(inp)
    out, h_state, c_state = layers.ConvLSTM2D(2, 2, strides=(2, 1), activation="relu", return_state=True,
                                              dropout=0.2)(h)
    seq = layers.ConvLSTM1D(2, 2, return_sequences=True)(layers.Reshape((3, 4, 1))(c_state))
    decoder_in = keras.Input((2, 2, 3, 1))  # a decoder started from the encoder's states
    decoded = layers.ConvLSTM2D(2, 2, padding="same", recurrent_dropout=0.2)(decoder_in,
                                                                            initial_state=[h_state, c_state])
    merged = layers.Concatenate()([layers.Flatten()(t) for t in (out, h_state, seq, decoded)])
    return keras.Model([inp, decoder_in], layers.Dense(2)(merged))


KERAS_SCRIPT = """
import os, sys
os.environ["KERAS_BACKEND"] = "jax"
import numpy as np, keras
folder = sys.argv[1]
x = [np.load(folder + "/x.npy"), np.load(folder + "/x2.npy")]
model = keras.saving.load_model(folder + "/pk.keras")
assert [w.path for w in model.weights][:3] == ["clstm/conv_lstm_cell/kernel", "clstm/conv_lstm_cell/recurrent_kernel",
                                               "clstm/conv_lstm_cell/bias"], [w.path for w in model.weights]
np.save(folder + "/keras_pred.npy", model.predict(x, verbose=0))
inp, decoder_in = keras.Input((3, 5, 4, 2)), keras.Input((2, 5, 2, 1))
seq, h, c = keras.layers.ConvLSTM2D(2, (2, 3), strides=(1, 2), padding="same", return_sequences=True,
                                    return_state=True, recurrent_activation="hard_sigmoid")(inp)
last = keras.layers.ConvLSTM1D(3, 2, dilation_rate=2, go_backwards=True, unit_forget_bias=False,
                               use_bias=False)(keras.layers.Reshape((3, 5, 4))(seq))
decoded = keras.layers.ConvLSTM2D(2, 3, padding="same", return_sequences=True)(decoder_in, initial_state=[h, c])
merged = keras.layers.Concatenate()([keras.layers.Flatten()(t) for t in (last, h, c, decoded)])
theirs = keras.Model([inp, decoder_in], keras.layers.Dense(2)(merged))
theirs.compile("adam", "mse")
theirs.fit([x[0], np.load(folder + "/x3.npy")], np.zeros((4, 2)), verbose=0)
theirs.save(folder + "/keras.keras")
np.save(folder + "/keras_own_pred.npy", theirs.predict([x[0], np.load(folder + "/x3.npy")], verbose=0))
"""


@pytest.mark.slow  # ~24 s (Keras 3 on jax in a subprocess); the default run keeps keras-tensorflow's parity case
def test_keras_files_exchange_with_keras_3(tmp_path):
    """polykeras -> Keras (stacked, return_state, initial_state, ConvLSTM1D, a regularizer) predicts as
    polykeras does; Keras -> polykeras (return_state, initial_state, go_backwards, no bias; with its Adam
    state) predicts as Keras does. Keras computes in float32."""
    pytest.importorskip("h5py")
    model = _polykeras_model()
    rng = np.random.default_rng(5)
    x = [rng.normal(size=(4, 3, 5, 4, 2)), rng.normal(size=(4, 2, 2, 3, 1))]
    x3 = rng.normal(size=(4, 2, 5, 2, 1))
    model.compile("adam", "mse", backend="numpy")
    model.fit(x, np.zeros((4, 2)), verbose=0)
    model.save(tmp_path / "pk.keras")
    for name, array in (("x", x[0]), ("x2", x[1]), ("x3", x3)):
        np.save(tmp_path / f"{name}.npy", array)
    run = subprocess.run([sys.executable, "-c", KERAS_SCRIPT, str(tmp_path)], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    np.testing.assert_allclose(np.load(tmp_path / "keras_pred.npy"), model.predict(x, verbose=0), atol=1e-6)
    again = keras.models.load_model(tmp_path / "pk.keras")
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))
    theirs = keras.models.load_model(tmp_path / "keras.keras")
    assert theirs.compiled and type(theirs.optimizer).__name__ == "Adam"
    np.testing.assert_allclose(theirs.predict([x[0], x3], verbose=0), np.load(tmp_path / "keras_own_pred.npy"),
                               atol=1e-6)
    theirs.fit([x[0], x3], np.zeros((4, 2)), verbose=0)  # and trains on (Adam's slots found at Keras's places)
