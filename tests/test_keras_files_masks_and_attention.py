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
