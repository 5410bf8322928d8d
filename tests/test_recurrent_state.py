"""``return_state`` and ``initial_state`` on SimpleRNN / LSTM / GRU (Keras 3 semantics,
:mod:`polykeras.layer_rules.recurrent`): the graph (one node, its output packed, the returned
tensors ``getitem`` parts named ``[layer, call, index]`` in configs), the NumPy reference's
hand-written gradients into initial states and out of returned states (finite differences),
and a tiny keras.io-style encoder-decoder trained on every backend against the reference."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import polykeras as keras
from _fd import FD_TOLERANCE, canonical_weights, context, numerical_gradient, random_weights, relative_error
from polykeras import layers
from polykeras.layer_rules import rules_for
from polykeras.spec import LayerSpec
from polykeras_numpy.layers import KERNELS, ForwardContext

N_STATES = {"SimpleRNN": 1, "LSTM": 2, "GRU": 1}


def _kernel(kind, config, steps, features, initial_state, dtype=np.float64):
    units = config["units"]
    shapes = ((None, steps, features),) + ((None, units),) * (N_STATES[kind] if initial_state else 0)
    spec = LayerSpec(name="rnn", kind=kind, config=dict(config), inbound=tuple(f"in{i}" for i in range(len(shapes))),
                     input_shapes=shapes, output_shape=(None,), weights=canonical_weights(kind, config, (steps, features)),
                     mask="mask")
    spec = dataclasses.replace(spec, output_shape=rules_for(spec).output_shape(spec.input_shapes[0]))
    return KERNELS[kind](spec, dtype)


CASES = [
    ("LSTM", {"units": 3, "return_state": True}, True, None),
    ("LSTM", {"units": 2, "return_state": True, "return_sequences": True, "go_backwards": True}, True, "left"),
    ("LSTM", {"units": 3, "return_sequences": True}, True, "right"),
    ("LSTM", {"units": 2, "return_state": True, "dropout": 0.3, "recurrent_dropout": 0.4}, False, "right"),
    ("GRU", {"units": 3, "return_state": True, "return_sequences": True}, True, "right"),
    ("GRU", {"units": 2, "return_state": True, "reset_after": False, "go_backwards": True}, True, None),
    ("GRU", {"units": 2, "recurrent_dropout": 0.3}, True, "left"),
    ("SimpleRNN", {"units": 3, "return_state": True}, True, "left"),
    ("SimpleRNN", {"units": 2, "return_state": True, "return_sequences": True, "activation": "relu"}, False, None),
]


def _steps_mask(padding, batch, steps):
    if padding is None:
        return None
    lengths = np.array([steps, 2, 1])[:batch]
    valid = np.arange(steps)[None, :] < lengths[:, None]
    return valid if padding == "right" else valid[:, ::-1]


@pytest.mark.parametrize("kind,config,initial_state,padding", CASES,
                         ids=lambda v: v if isinstance(v, str) else None)
def test_gradients_into_initial_states_and_out_of_returned_states_match_finite_differences(
        kind, config, initial_state, padding):
    steps, features, batch = 4, 3, 3
    kernel = _kernel(kind, config, steps, features, initial_state)
    rng = np.random.default_rng(5)
    weights = random_weights(kernel, rng)
    x = [rng.normal(size=(batch, steps, features))]
    if initial_state:
        x += [rng.normal(size=(batch, config["units"])) for _ in range(N_STATES[kind])]
    mask = _steps_mask(padding, batch, steps)
    training = "dropout" in config or "recurrent_dropout" in config

    def ctx():
        c = context(training)
        c.mask = mask
        return c

    def run():
        return kernel.forward(weights, x if initial_state else x[0], ctx())

    y, cache = run()
    R = np.random.default_rng(9).normal(size=y.shape)
    dx, dweights = kernel.backward(weights, cache, R)

    def loss():
        return float(np.sum(run()[0] * R))

    dxs = dx if initial_state else [dx]
    assert len(dxs) == len(x)
    for i, (a, d) in enumerate(zip(x, dxs)):
        err = relative_error(d, numerical_gradient(loss, a))
        assert err < FD_TOLERANCE, f"input {i}: relative error {err:.2e}"
    for ws, w, dw in zip(kernel.spec.weights, weights, dweights):
        err = relative_error(dw, numerical_gradient(loss, w))
        assert err < FD_TOLERANCE, f"d{ws.name}: relative error {err:.2e}"


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
def test_packed_output_is_the_output_then_the_final_states(kind):
    """The returned states are the last processed step's; a masked step carries them over, so
    with left padding they equal the state after the last step, and with ``initial_state`` the
    first step starts from it (a zero-length row keeps its initial state)."""
    units, steps = 3, 4
    plain = _kernel(kind, {"units": units, "return_sequences": True}, steps, 2, True)
    packed = _kernel(kind, {"units": units, "return_sequences": True, "return_state": True}, steps, 2, True)
    rng = np.random.default_rng(2)
    weights = random_weights(plain, rng)
    x = [rng.normal(size=(3, steps, 2))] + [rng.normal(size=(3, units)) for _ in range(N_STATES[kind])]
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]], bool)
    seq, _ = plain.forward(weights, x, ForwardContext(False, mask=mask))
    out, _ = packed.forward(weights, x, ForwardContext(False, mask=mask))
    n = N_STATES[kind]
    np.testing.assert_array_equal(out[:, :steps], seq)
    np.testing.assert_array_equal(out[:, steps], seq[:, -1])  # h: the last (carried) output
    np.testing.assert_array_equal(out[2, steps:steps + n], np.stack(x[1:], axis=0)[:, 2])  # nothing processed
    np.testing.assert_array_equal(out[1, steps], seq[1, 1])


def seq2seq(units=5, enc_features=4, dec_features=3, kind="LSTM", mask_zero=False):
    """keras.io's ``lstm_seq2seq`` training model, small."""
    enc_in, dec_in = keras.Input((None, enc_features)), keras.Input((None, dec_features))
    enc_layer = getattr(layers, kind)(units, return_state=True)
    x = layers.Masking()(enc_in) if mask_zero else enc_in
    _, *states = enc_layer(x)
    dec_out, *_ = getattr(layers, kind)(units, return_sequences=True, return_state=True)(dec_in,
                                                                                         initial_state=states)
    return keras.Model([enc_in, dec_in], layers.Dense(dec_features, activation="softmax")(dec_out))


def test_graph_records_one_node_per_call_and_keras_style_references():
    model = seq2seq()
    spec = model._spec()
    kinds = [(layer.kind, len(layer.inbound)) for layer in spec.layers]
    assert kinds[0] == ("LSTM", 1) and ("LSTM", 3) in kinds
    assert [type(layer).__name__ for layer in model.layers][2:] == ["LSTM", "LSTM", "Dense"]
    encoder, decoder_layer = model.layers[2], model.layers[3]
    config = model.get_config()
    decoder = next(e for e in config["layers"] if e["config"]["name"] == decoder_layer.name)
    assert decoder["inbound_nodes"] == [[[model.inputs[1].layer.name, 0], [encoder.name, 0, 1], [encoder.name, 0, 2]]]
    assert [e["class_name"] for e in config["layers"]].count("Operation") == 0
    rebuilt = keras.Model.from_config(config)
    rebuilt.set_weights(model.get_weights())
    x = [np.random.default_rng(0).normal(size=(2, 6, 4)), np.random.default_rng(1).normal(size=(2, 3, 3))]
    np.testing.assert_allclose(rebuilt.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    enc = model.layers[2]
    assert len(enc.output) == 3 and [tuple(t.shape) for t in enc.output] == [(None, 5)] * 3


def test_nested_model_with_states_is_flattened_into_the_outer_graph():
    inner = seq2seq()
    a, b = keras.Input((None, 4)), keras.Input((None, 3))
    outer = keras.Model([a, b], inner([a, b]))
    outer.set_weights(inner.get_weights())
    x = [np.random.default_rng(0).normal(size=(2, 6, 4)), np.random.default_rng(1).normal(size=(2, 3, 3))]
    np.testing.assert_allclose(outer.predict(x, verbose=0), inner.predict(x, verbose=0), rtol=1e-6)


def test_bad_calls_fail_clearly():
    x = keras.Input((5, 3))
    h = layers.Dense(4)(keras.Input((4,)))
    with pytest.raises(ValueError, match="2 initial state"):
        layers.LSTM(4)(x, initial_state=[h])
    with pytest.raises(ValueError, match=r"shape \(batch, 3\)"):
        layers.GRU(3)(x, initial_state=[h])
    with pytest.raises(NotImplementedError, match="stateful"):
        layers.LSTM(3, stateful=True)


def test_eager_calls_sequential_models_and_polykeras_files(tmp_path):
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
    out, h, c = layers.LSTM(4, return_state=True)(x)  # eager: arrays, the output being h
    assert out.shape == h.shape == c.shape == (2, 4)
    np.testing.assert_array_equal(out, h)
    with pytest.raises(ValueError, match="returns 3 tensors.*functional API"):
        keras.Sequential([keras.Input((5, 3)), layers.LSTM(4, return_state=True), layers.Dense(2)])
    model = seq2seq()
    model.save(str(tmp_path / "m.polykeras"))
    again = keras.saving.load_model(str(tmp_path / "m.polykeras"))
    xs = [np.random.default_rng(0).normal(size=(2, 6, 4)), np.random.default_rng(1).normal(size=(2, 3, 3))]
    np.testing.assert_array_equal(again.predict(xs, verbose=0), model.predict(xs, verbose=0))


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_keras_io_inference_models_reuse_the_trained_layers(backend):
    """keras.io's ``lstm_seq2seq`` sampling: an encoder model of the trained encoder's states and a
    decoder model that calls the trained decoder LSTM again on state Inputs, returning its states; one
    decoding step of the two equals the training model's first decoder step."""
    keras.utils.set_random_seed(2)
    model = seq2seq()
    encoder_model = keras.Model(model.input[0], model.layers[2].output[1:])
    state_inputs = [keras.Input((5,)), keras.Input((5,))]
    decoder_inputs = keras.Input((None, 3))
    decoder_lstm, decoder_dense = model.layers[3], model.layers[4]
    sequence, h, c = decoder_lstm(decoder_inputs, initial_state=state_inputs)
    decoder_model = keras.Model([decoder_inputs] + state_inputs, [decoder_dense(sequence), h, c])
    for m in (model, encoder_model, decoder_model):
        m.compile("adam", "mse", backend=backend, dtype="float64")
    rng = np.random.default_rng(3)
    enc, dec = rng.normal(size=(2, 6, 4)), rng.normal(size=(2, 1, 3))
    states = encoder_model.predict(enc, verbose=0)
    probs, h1, c1 = decoder_model.predict([dec] + list(states), verbose=0)
    np.testing.assert_allclose(probs, model.predict([enc, dec], verbose=0), rtol=1e-12)
    assert h1.shape == c1.shape == (2, 5)


# -- Bidirectional(return_state=True): [output, *forward states, *backward states] ---------------------------
BIDIRECTIONAL_MASK = np.array([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [1, 1, 1, 1, 1]], bool)


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
@pytest.mark.parametrize("merge_mode,return_sequences,masked", [("concat", True, True), ("sum", False, True),
                                                                 ("mul", True, False), ("ave", False, False)])
def test_bidirectional_states_gradients_match_finite_differences(kind, merge_mode, return_sequences, masked,
                                                                  monkeypatch):
    import _fd

    mask = BIDIRECTIONAL_MASK if masked else None
    monkeypatch.setattr(_fd, "context", lambda training, dtype=np.float64: ForwardContext(
        training, _fd.fixed_dropout_mask(dtype), mask))
    config = {"layer": {"class_name": kind, "config": {"units": 3, "return_sequences": return_sequences,
                                                       "return_state": True, "dropout": 0.3}},
              "merge_mode": merge_mode}
    if merge_mode == "concat":  # a backward layer of other units: its states are padded in the packed output
        config["backward_layer"] = {"class_name": kind, "config": {"units": 2, "return_sequences": return_sequences,
                                                                   "return_state": True, "go_backwards": True}}
    kernel = _fd.build("Bidirectional", config, (5, 2))
    rng = np.random.default_rng(4)
    _fd.check_gradients(kernel, random_weights(kernel, rng), rng.normal(size=(3, 5, 2)), training=True)


def test_bidirectional_states_are_each_directions_final_states():
    """As Keras orders them: the forward layer's then the backward layer's, each the state its own
    layer returns (the backward one after its last processed step, the sequence's first)."""
    keras.utils.set_random_seed(1)
    x = keras.Input((5, 3))
    wrapper = layers.Bidirectional(layers.LSTM(3, return_state=True), backward_layer=layers.LSTM(
        2, return_state=True, go_backwards=True))
    out, fh, fc, bh, bc = wrapper(x)
    assert [tuple(t.shape) for t in (out, fh, fc, bh, bc)] == [(None, 5), (None, 3), (None, 3), (None, 2), (None, 2)]
    model = keras.Model(x, [out, fh, fc, bh, bc])
    forward = keras.Model(x, wrapper.forward_layer.__class__.from_config(
        {**wrapper.forward_layer.get_config(), "name": "f"})(x))
    forward.set_weights(wrapper.get_weights()[:3])
    data = np.random.default_rng(0).normal(size=(2, 5, 3))
    got = model.predict(data, verbose=0)
    f_out, f_h, f_c = forward.predict(data, verbose=0)
    np.testing.assert_allclose(got[1], f_h, rtol=1e-6)
    np.testing.assert_allclose(got[2], f_c, rtol=1e-6)
    np.testing.assert_allclose(got[0][:, :3], f_h, rtol=1e-6)
    with pytest.raises(NotImplementedError, match="merge_mode=None"):
        layers.Bidirectional(layers.GRU(2, return_state=True), merge_mode=None)
    with pytest.raises(ValueError, match="takes 2 initial states, split in half"):
        layers.Bidirectional(layers.GRU(2))(x, initial_state=[fh])


# -- Bidirectional(initial_state=[...]): the first half starts the forward layer, the second the backward ------
@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
@pytest.mark.parametrize("merge_mode,return_sequences,return_state,masked", [
    ("concat", True, True, True), ("sum", False, False, True), ("mul", True, False, False),
    ("ave", False, True, False)])
def test_bidirectional_initial_states_gradients_match_finite_differences(kind, merge_mode, return_sequences,
                                                                           return_state, masked, monkeypatch):
    """Gradients into the sequence, both directions' initial states and the weights (dropout on, a backward
    layer of other units with concat, masks with left and right padding)."""
    import _fd

    mask = BIDIRECTIONAL_MASK if masked else None
    monkeypatch.setattr(_fd, "context", lambda training, dtype=np.float64: ForwardContext(
        training, _fd.fixed_dropout_mask(dtype), mask))
    units = (3, 2 if merge_mode == "concat" else 3)
    config = {"layer": {"class_name": kind, "config": {"units": units[0], "return_sequences": return_sequences,
                                                       "return_state": return_state, "dropout": 0.3,
                                                       "recurrent_dropout": 0.2}},
              "merge_mode": merge_mode,
              "backward_layer": {"class_name": kind, "config": {"units": units[1], "go_backwards": True,
                                                                "return_sequences": return_sequences,
                                                                "return_state": return_state}}}
    n = N_STATES[kind]
    spec = _fd.layer_spec("Bidirectional", config, (5, 2))
    shapes = spec.input_shapes + ((None, units[0]),) * n + ((None, units[1]),) * n
    spec = dataclasses.replace(spec, inbound=tuple(f"in{i}" for i in range(len(shapes))), input_shapes=shapes)
    kernel = KERNELS["Bidirectional"](spec, np.float64)
    assert kernel.multiple_inputs
    rng = np.random.default_rng(4)
    weights = random_weights(kernel, rng)
    x = [rng.normal(size=(3, 5, 2))] + [rng.normal(size=(3, u)) for u in [units[0]] * n + [units[1]] * n]
    y, cache = kernel.forward(weights, x, _fd.context(True))
    R = np.random.default_rng(9).normal(size=y.shape)
    dx, dweights = kernel.backward(weights, cache, R)

    def loss():
        return float(np.sum(kernel.forward(weights, x, _fd.context(True))[0] * R))

    assert len(dx) == len(x)
    for i, (a, d) in enumerate(zip(x, dx)):
        err = relative_error(d, numerical_gradient(loss, a))
        assert err < FD_TOLERANCE, f"input {i}: relative error {err:.2e}"
        assert np.abs(d).max() > 0, f"input {i}: no gradient reaches it"
    for ws, w, dw in zip(kernel.spec.weights, weights, dweights):
        err = relative_error(dw, numerical_gradient(loss, w))
        assert err < FD_TOLERANCE, f"d{ws.name}: relative error {err:.2e}"


def _bidirectional_with_states(kind="LSTM", merge_mode="concat", return_state=False, backward_units=3):
    """A model whose Bidirectional starts from states computed from a second input (Dense layers)."""
    keras.utils.set_random_seed(2)
    x, context_ = keras.Input((5, 3)), keras.Input((4,))
    n = N_STATES[kind]
    states = [layers.Dense(3, activation="tanh")(context_) for _ in range(n)]
    states += [layers.Dense(backward_units, activation="tanh")(context_) for _ in range(n)]
    wrapper = layers.Bidirectional(getattr(layers, kind)(3, return_sequences=True, return_state=return_state),
                                   merge_mode=merge_mode, backward_layer=getattr(layers, kind)(
                                       backward_units, return_sequences=True, return_state=return_state,
                                       go_backwards=True))
    out = wrapper(x, initial_state=states)
    outputs = out[0] if return_state else out
    return keras.Model([x, context_], layers.Dense(2)(outputs)), wrapper


def test_bidirectional_initial_states_start_each_direction():
    """The first half of the list starts the forward layer, the second the backward layer (each checked
    against its own layer called alone with its states), and a wrong list is refused by name."""
    keras.utils.set_random_seed(1)
    x = keras.Input((5, 3))
    h0, c0, h1, c1 = (keras.Input((u,)) for u in (3, 3, 2, 2))
    wrapper = layers.Bidirectional(layers.LSTM(3, return_sequences=True), backward_layer=layers.LSTM(
        2, return_sequences=True, go_backwards=True))
    model = keras.Model([x, h0, c0, h1, c1], wrapper(x, initial_state=[h0, c0, h1, c1]))
    assert len(model._spec().layers[-1].inbound) == 5
    forward, backward = (type(sub).from_config({**sub.get_config(), "name": name})
                         for sub, name in ((wrapper.forward_layer, "f"), (wrapper.backward_layer, "b")))
    alone = keras.Model([x, h0, c0, h1, c1], [forward(x, initial_state=[h0, c0]), backward(x, initial_state=[h1, c1])])
    alone.set_weights(wrapper.get_weights())
    rng = np.random.default_rng(0)
    data = [rng.normal(size=(2, 5, 3))] + [rng.normal(size=(2, u)) for u in (3, 3, 2, 2)]
    got = model.predict(data, verbose=0)
    f, b = alone.predict(data, verbose=0)
    np.testing.assert_allclose(got[..., :3], f, rtol=1e-12)
    np.testing.assert_allclose(got[..., 3:], b[:, ::-1], rtol=1e-12)
    zeros = keras.Model(x, wrapper(x)).predict(data[0], verbose=0)
    assert np.abs(zeros - got).max() > 1e-3  # the states matter
    with pytest.raises(ValueError, match="takes 4 initial states"):
        wrapper(x, initial_state=[h0, c0])
    with pytest.raises(ValueError, match=r"shapes \[\(None, 3\), \(None, 3\), \(None, 2\), \(None, 2\)\]"):
        wrapper(x, initial_state=[h0, c0, h0, c0])


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("kind,merge_mode,return_state", [("LSTM", "concat", True), ("GRU", "sum", False),
                                                          ("SimpleRNN", "ave", True)])
def test_bidirectional_with_initial_states_trains_as_the_reference(backend, kind, merge_mode, return_state):
    from backend_parity import check_fit_matches_reference

    rng = np.random.default_rng(3)
    x, context_ = rng.normal(size=(6, 5, 3)), rng.normal(size=(6, 4))
    units = 2 if merge_mode == "concat" else 3
    check_fit_matches_reference(lambda: _bidirectional_with_states(kind, merge_mode, return_state, units)[0],
                                backend, [x, context_], rng.normal(size=(6, 5, 2)), "mse", 1e-10,
                                epochs=2, batch_size=3)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_compiled_model_with_state_outputs_reloads_from_its_polykeras_file(tmp_path, bidirectional):
    """States as model outputs: the names that key the saved losses stay the same when the model is
    rebuilt (the parts are named by their layer, with their index where two would share it), and each
    output reads its own part of the packed call."""
    inp = keras.Input((5, 3))
    rnn = layers.LSTM(2, return_sequences=True, return_state=True)
    outs = (layers.Bidirectional(rnn) if bidirectional else rnn)(inp)
    dense = layers.Dense(1)
    model = keras.Model(inp, [outs[0], dense(outs[1]), outs[-1]])
    model.compile("sgd", "mse", backend="numpy", dtype="float64")
    layer = model.layers[1].name
    assert model.output_names == [f"{layer}_0", dense.name, f"{layer}_{len(outs) - 1}"]
    x = np.random.default_rng(8).normal(size=(2, 5, 3))
    expected = model.predict(x, verbose=0)
    model.save(tmp_path / "m.polykeras")
    loaded = keras.models.load_model(tmp_path / "m.polykeras")
    assert loaded.output_names == model.output_names
    loaded.compile("sgd", "mse", backend="numpy", dtype="float64")
    for got, want in zip(loaded.predict(x, verbose=0), expected):
        np.testing.assert_array_equal(got, want)
