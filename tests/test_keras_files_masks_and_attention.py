"""Keras 3 files with masks and attention read into polykeras: Keras writes the masks its layers
pass on as operations read through mask= arguments (left out: polykeras's layers make the same
masks), and MultiHeadAttention/Attention/AdditiveAttention, Masking and CategoryEncoding as layers
that polykeras traces into ops, their weights from Keras's places. Predictions are Keras's to
float32 rounding on numpy, torch and jax."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import polykeras as keras

HEADER = """
import os, sys
os.environ["KERAS_BACKEND"] = "jax"
import numpy as np, keras
"""

ATTENTION = HEADER + """
inputs = keras.Input((None,), dtype="int32")
x = keras.layers.Embedding(20, 8, mask_zero=True)(inputs)
a = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)(x, x)
b = keras.layers.Attention(use_scale=True)([x, a])
c = keras.layers.AdditiveAttention()([b, x], use_causal_mask=True)
d = keras.layers.LSTM(5, return_sequences=True)(c)
model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling1D()(d)))
"""

MASKING = HEADER + """
sequence, ids = keras.Input((None, 3)), keras.Input((2,), dtype="int32")
x = keras.layers.GRU(4)(keras.layers.Masking(mask_value=-1.0)(sequence))
counts = keras.layers.CategoryEncoding(6, output_mode="count")(ids)
model = keras.Model([sequence, ids], keras.layers.Dense(2)(keras.layers.Concatenate()([x, counts])))
"""

EXPLICIT_MASK = HEADER + """
sequence, mask = keras.Input((None, 3)), keras.Input((None,), dtype="bool")
model = keras.Model([sequence, mask], keras.layers.LSTM(2)(sequence, mask=mask))
"""

SAVE = """
inputs = [np.load(f) for f in sys.argv[3:]]
model.save(sys.argv[1])
np.save(sys.argv[2], np.asarray(model.predict(inputs if len(inputs) > 1 else inputs[0], verbose=0)))
"""


def _keras_file(tmp_path, script: str, inputs: list[np.ndarray]):
    paths = []
    for i, x in enumerate(inputs):
        paths.append(str(tmp_path / f"x{i}.npy"))
        np.save(paths[-1], x)
    run = subprocess.run([sys.executable, "-c", script + SAVE, str(tmp_path / "m.keras"), str(tmp_path / "y.npy"),
                          *paths], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return tmp_path / "m.keras", np.load(tmp_path / "y.npy")


def _sequences():
    x = np.random.default_rng(0).normal(size=(3, 5, 3))
    x[0, 3:] = x[2, 1] = -1.0  # padding at the end and inside
    return x


CASES = {"attention": (ATTENTION, lambda: [np.array([[3, 7, 2, 5, 0, 0], [4, 4, 1, 9, 8, 2], [1, 0, 0, 0, 0, 0]])],
                       ["MultiHeadAttention", "Attention", "AdditiveAttention", "LSTM"]),
         "masking": (MASKING, lambda: [_sequences(), np.array([[1, 1], [5, 0], [2, 3]])],
                     ["Masking", "GRU", "CategoryEncoding"])}


@pytest.mark.parametrize("case", list(CASES))
def test_keras_files_with_masks_and_attention_predict_as_keras_does(tmp_path, case):
    script, make_inputs, expected_layers = CASES[case]
    inputs = make_inputs()
    path, want = _keras_file(tmp_path, script, inputs)
    model = keras.models.load_model(path)
    assert set(expected_layers) <= {type(layer).__name__ for layer in model.layers}
    for backend in ("numpy", "torch", "jax"):
        model.compile("adam", "mse", backend=backend)
        got = model.predict(inputs if len(inputs) > 1 else inputs[0], verbose=0)
        np.testing.assert_allclose(got, want, atol=2e-6, err_msg=backend)  # Keras computes in float32


def test_an_explicit_mask_is_refused_by_name(tmp_path):
    path, _ = _keras_file(tmp_path, EXPLICIT_MASK, [_sequences(), np.ones((3, 5), bool)])
    with pytest.raises(keras.saving.ModelFileError, match="explicit mask"):
        keras.models.load_model(path)


# -- written by polykeras -----------------------------------------------------------------------------------------
LOAD = HEADER + """
model = keras.models.load_model(sys.argv[1])
inputs = [np.load(f) for f in sys.argv[3:]]
np.save(sys.argv[2], np.asarray(model.predict(inputs if len(inputs) > 1 else inputs[0], verbose=0)))
"""


def _attention_model(value_reused: bool = False):
    """MultiHeadAttention, then Attention and AdditiveAttention on its output (and, with
    ``value_reused``, on its value: see the divergence pinned below)."""
    keras.utils.set_random_seed(3)
    q_ids, v_ids = keras.Input((None,), dtype="int32"), keras.Input((None,), dtype="int32")
    embed = keras.layers.Embedding(20, 8, mask_zero=True)
    q, v = embed(q_ids), embed(v_ids)
    attended = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)(q, v)
    x = keras.layers.Attention(use_scale=True)([attended, v if value_reused else attended])
    x = keras.layers.AdditiveAttention()([x, x], use_causal_mask=True)
    return keras.Model([q_ids, v_ids], keras.layers.Dense(3)(keras.layers.GlobalAveragePooling1D()(x)))


def _masking_model():
    keras.utils.set_random_seed(2)
    return keras.Sequential([keras.Input((None, 3)), keras.layers.Masking(-1.0), keras.layers.GRU(3),
                             keras.layers.Dense(2)])


# the first key is never masked: a causal query with every key masked keeps Keras's softmax of `score - 1e9`,
# which float32 (Keras) rounds to a uniform row and float64 (the model here) does not
def _ids():
    return [np.array([[3, 7, 2, 0], [1, 2, 0, 0]]), np.array([[4, 5, 0, 0, 0], [6, 0, 7, 8, 9]])]


WRITTEN = {"attention": (_attention_model, _ids), "masking": (_masking_model, lambda: [_sequences()]),
           "attention-on-the-value": (lambda: _attention_model(value_reused=True), _ids)}


KERAS_STRIPS_MASKS = pytest.mark.xfail(
    strict=True, reason="Keras's MultiHeadAttention takes the masks off its input tensors when the model runs "
    "(set_keras_mask(value, None)), so an Attention later called on the same value tensor attends to its padding "
    "in Keras (measured here: predictions up to 2.6e-2 apart) -- but not when Keras builds the model; polykeras keeps the masks")


@pytest.mark.parametrize("case", [c if c != "attention-on-the-value" else pytest.param(c, marks=KERAS_STRIPS_MASKS)
                                  for c in WRITTEN])
def test_models_with_masks_and_attention_written_by_polykeras_open_in_keras(tmp_path, case):
    """Keras predicts as polykeras does from the file (float32); the file read back gives the same model,
    optimizer state included (one more step lands on the same weights)."""
    build, make_inputs = WRITTEN[case]
    inputs = make_inputs()
    x = inputs if len(inputs) > 1 else inputs[0]
    y = np.zeros((len(inputs[0]),) + build().output_shape[1:])
    model = build()
    model.compile("adam", "mse", backend="numpy", dtype="float64")
    model.fit(x, y, epochs=1, batch_size=2, verbose=0)
    model.save(tmp_path / "m.keras")
    paths = []
    for i, value in enumerate(inputs):
        paths.append(str(tmp_path / f"x{i}.npy"))
        np.save(paths[-1], value)
    run = subprocess.run([sys.executable, "-c", LOAD, str(tmp_path / "m.keras"), str(tmp_path / "y.npy"), *paths],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), model.predict(x, verbose=0), atol=2e-6)
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded._pending_optimizer_state.iterations == -(-len(inputs[0]) // 2)  # one epoch in batches of 2
    loaded._compile_config.update(backend="numpy", dtype="float64")  # keeps the optimizer state read
    for m in (model, loaded):
        m.fit(x, y, epochs=1, batch_size=2, verbose=0, shuffle=False)
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
