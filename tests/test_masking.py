"""Keras masking (``Embedding(mask_zero=True)``, ``Masking``): how masks flow through a
graph, what the layers that read one compute (recurrent layers skip masked steps,
GlobalAveragePooling1D averages the others), the reference's gradients by finite
differences, and torch and jax against the reference in float64."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import polykeras as keras
from polykeras import layers

from _fd import check_model_gradients
from backend_parity import check_fit_matches_reference

# float64: two epochs of Adam through an embedding, a recurrent layer and two Dense layers at unit
# roundoff 1.1e-16 (measured 7e-15 at worst); a step that is not skipped shows at 1e-3 or above
FLOAT64_PARITY = 1e-12
RECURRENT = ("SimpleRNN", "LSTM", "GRU")


def _ids(n=16, steps=7, seed=0):
    """Ids with padding (id 0) on the right, on the left, in the middle, and a row of padding only
    but for one step."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, 9, (n, steps))
    ids[: n // 4, steps - 3:] = 0
    ids[n // 4: n // 2, :3] = 0
    ids[n // 2, 2] = 0
    ids[n // 2 + 1, :-1] = 0
    return ids


def _model(kind="LSTM", return_sequences=False, go_backwards=False, dropout=0.0, steps=7):
    keras.utils.set_random_seed(0)
    inp = keras.Input((steps,), dtype="int32")
    h = layers.Embedding(10, 5, mask_zero=True)(inp)
    h = getattr(layers, kind)(4, return_sequences=return_sequences, go_backwards=go_backwards, dropout=dropout,
                              recurrent_dropout=dropout)(h)
    if return_sequences:
        h = layers.GlobalAveragePooling1D()(layers.Dense(6, activation="tanh")(h))
    return keras.Model(inp, layers.Dense(3, activation="softmax")(h))


# -- the graph ---------------------------------------------------------------------------------------------
def test_masks_flow_as_in_keras():
    inp = keras.Input((6,), dtype="int32")
    e = layers.Embedding(10, 4, mask_zero=True)(inp)
    assert e.mask is not None and e.mask.shape == (None, 6) and e.mask.dtype == "bool"
    d = layers.Dense(3)(layers.Dropout(0.1)(e))
    assert d.mask is e.mask  # passed on unchanged
    lstm, gru = layers.LSTM(3, return_sequences=True), layers.GRU(2)
    seq = lstm(d)
    last = gru(seq)
    assert seq.mask is e.mask and last.mask is None and seq.mask_input is e.mask
    assert layers.Flatten()(d).mask is None  # dropped, as in Keras 3
    other = layers.Embedding(10, 4, mask_zero=True)(inp)
    both = layers.Concatenate()([e, other])
    assert both.mask is not None and both.mask.layer.op.name == "logical_and"
    model = keras.Model(inp, [last, both])
    spec = model._spec()
    assert "masking" in spec.features
    masks = {layer.name: layer.mask for layer in spec.layers if layer.mask}
    assert set(masks) == {lstm.name, gru.name} and masks[lstm.name] == masks[gru.name]
    assert spec.layer(masks[lstm.name]).config["op"] == "not_equal"
    # the mask ops are part of the Embedding, as in Keras: not layers of the model or of its config
    assert all(layer.kind != "Operation" or layer.op.name == "logical_and" for layer in model.layers)
    rebuilt = keras.Model.from_config(model.get_config())
    assert [layer.mask is not None for layer in rebuilt._spec().layers] == [
        layer.mask is not None for layer in spec.layers]


def test_a_backend_without_masking_is_refused_by_name():
    model = _model()
    model.compile("sgd", "sparse_categorical_crossentropy", backend="example")
    with pytest.raises(NotImplementedError, match="masking"):
        model.fit(_ids(), np.zeros(16, int), epochs=1, verbose=0)


# -- what the layers compute (the reference) -----------------------------------------------------------------
@pytest.mark.parametrize("kind", RECURRENT)
@pytest.mark.parametrize("go_backwards", [False, True])
def test_padding_changes_nothing(kind, go_backwards):
    """A masked step is skipped: a sequence padded with zeros on the left or the right (or in the middle)
    gives the recurrent layer the output of the sequence without them."""
    keras.utils.set_random_seed(1)
    rnn = getattr(layers, kind)(3, go_backwards=go_backwards)
    inp = keras.Input((None,), dtype="int32")
    model = keras.Model(inp, rnn(layers.Embedding(10, 4, mask_zero=True)(inp)))
    model.compile("sgd", "mse", backend="numpy", dtype="float64")
    tokens = np.array([[3, 7, 2, 5]])
    plain = model.predict(tokens, verbose=0)
    for padded in ([[0, 0, 3, 7, 2, 5]], [[3, 7, 2, 5, 0, 0]], [[3, 0, 7, 2, 0, 5]]):
        np.testing.assert_allclose(model.predict(np.array(padded), verbose=0), plain, rtol=1e-14, atol=1e-15)


def test_masked_global_average_pooling_averages_the_unmasked_steps():
    inp = keras.Input((5,), dtype="int32")
    emb = layers.Embedding(10, 3, mask_zero=True)
    model = keras.Model(inp, layers.GlobalAveragePooling1D()(emb(inp)))
    model.compile("sgd", "mse", backend="numpy", dtype="float64")
    ids = np.array([[4, 0, 2, 0, 0]])
    table = model.get_weights()[0].astype(np.float64)
    np.testing.assert_allclose(model.predict(ids, verbose=0)[0], (table[4] + table[2]) / 2, rtol=1e-14)


def test_masking_layer_masks_steps_whose_features_all_equal_the_value():
    keras.utils.set_random_seed(2)
    inp = keras.Input((None, 2))
    model = keras.Model(inp, layers.SimpleRNN(3)(layers.Masking(mask_value=-1.0)(inp)))
    model.compile("sgd", "mse", backend="numpy", dtype="float64")
    x = np.random.default_rng(0).normal(size=(1, 3, 2))
    padded = np.concatenate([x[:, :1], -np.ones((1, 2, 2)), x[:, 1:]], axis=1)
    padded[0, 1, 0] = 0.5  # one feature differs: this step is not masked
    half = np.concatenate([x[:, :1], padded[:, 1:2], x[:, 1:]], axis=1)
    np.testing.assert_allclose(model.predict(padded, verbose=0), model.predict(half, verbose=0), rtol=1e-14)


def test_a_masking_layer_keeps_its_mask_through_a_polykeras_file(tmp_path):
    """Masking is traced into ops; its output's mask is written with them, so the recurrent layer
    after it still skips the masked step once the file is loaded (it did not before)."""
    keras.utils.set_random_seed(2)
    inp = keras.Input((None, 2))
    model = keras.Model(inp, layers.SimpleRNN(3)(layers.Masking(mask_value=-1.0)(inp)))
    model.compile("sgd", "mse", backend="numpy", dtype="float64")
    x = np.random.default_rng(0).normal(size=(2, 4, 2))
    x[0, 1] = x[1, 3] = -1.0
    model.save(tmp_path / "m.polykeras")
    loaded = keras.models.load_model(tmp_path / "m.polykeras")
    loaded.compile("sgd", "mse", backend="numpy", dtype="float64")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.parametrize("kind", RECURRENT)
@pytest.mark.parametrize("return_sequences, go_backwards", [(False, False), (True, True)])
def test_reference_gradients_match_finite_differences(kind, return_sequences, go_backwards):
    model = _model(kind, return_sequences, go_backwards, steps=5)
    model.compile("sgd", "sparse_categorical_crossentropy", backend="numpy", dtype="float64")
    ids, y = _ids(6, 5), np.random.default_rng(3).integers(0, 3, 6)
    program = model._get_program(training=True, y_ndim=1)
    check_model_gradients(program, ids, y, (1, 2, 3))  # the recurrent layer's kernel, recurrent kernel and bias


# -- every backend ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("kind", RECURRENT)
@pytest.mark.parametrize("return_sequences, go_backwards, dropout", [(False, False, 0.0), (True, True, 0.3)])
def test_backends_train_masked_models_like_the_reference(backend, kind, return_sequences, go_backwards, dropout):
    check_fit_matches_reference(lambda: _model(kind, return_sequences, go_backwards, dropout), backend, _ids(),
                                np.random.default_rng(4).integers(0, 3, 16), "sparse_categorical_crossentropy",
                                FLOAT64_PARITY, epochs=2, batch_size=8)


def test_masked_models_round_trip_through_keras_files(tmp_path):
    model = _model("GRU", return_sequences=True)
    model.compile("adam", "sparse_categorical_crossentropy", backend="numpy")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded._spec().features == model._spec().features
    ids = _ids()
    np.testing.assert_array_equal(loaded.predict(ids, verbose=0), model.predict(ids, verbose=0))
