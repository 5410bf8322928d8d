"""``return_state``/``initial_state`` models beyond the reference: keras.io's ``lstm_seq2seq``
encoder-decoder exchanged with Keras 3 through ``.keras`` files both ways (Keras's calls
``initial_state=[...]`` and tensor indices ``[layer, call, index]``), and a tiny one trained on
every backend in float64 parity mode against the NumPy reference (with masked, left- and
right-padded encoder sequences)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import polykeras as keras
from backend_parity import check_fit_matches_reference
from polykeras import backends, layers

KERAS_SEQ2SEQ = """
import os, sys
os.environ["KERAS_BACKEND"] = "jax"
import numpy as np, keras
encoder_inputs, decoder_inputs = keras.Input((None, 4)), keras.Input((None, 3))
_, state_h, state_c = keras.layers.LSTM(5, return_state=True)(encoder_inputs)
decoder_outputs, _, _ = keras.layers.LSTM(5, return_sequences=True, return_state=True)(
    decoder_inputs, initial_state=[state_h, state_c])
model = keras.Model([encoder_inputs, decoder_inputs], keras.layers.Dense(3, activation="softmax")(decoder_outputs))
x = [np.load(sys.argv[2]), np.load(sys.argv[3])]
model.save(sys.argv[1])
np.save(sys.argv[4], model.predict(x, verbose=0))
"""

KERAS_LOAD = """
import os, sys
os.environ["KERAS_BACKEND"] = "jax"
import numpy as np, keras
model = keras.saving.load_model(sys.argv[1])
np.save(sys.argv[4], model.predict([np.load(sys.argv[2]), np.load(sys.argv[3])], verbose=0))
print([type(layer).__name__ for layer in model.layers])
"""


def _data(batch=4, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(batch, 6, 4)).astype("float32"), rng.normal(size=(batch, 3, 3)).astype("float32")]


def _run_keras(script: str, tmp_path, model_path, x) -> np.ndarray:
    paths = [str(tmp_path / "a.npy"), str(tmp_path / "b.npy")]
    for p, v in zip(paths, x):
        np.save(p, v)
    run = subprocess.run([sys.executable, "-c", script, str(model_path), *paths, str(tmp_path / "y.npy")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return np.load(tmp_path / "y.npy")


def seq2seq(units=5, kind="LSTM", masking=False):
    """keras.io's ``lstm_seq2seq`` training model, small."""
    encoder_inputs, decoder_inputs = keras.Input((None, 4)), keras.Input((None, 3))
    x = layers.Masking()(encoder_inputs) if masking else encoder_inputs
    _, *states = getattr(layers, kind)(units, return_state=True)(x)
    decoder_outputs, *_ = getattr(layers, kind)(units, return_sequences=True, return_state=True)(
        decoder_inputs, initial_state=states)
    return keras.Model([encoder_inputs, decoder_inputs], layers.Dense(3, activation="softmax")(decoder_outputs))


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_keras_seq2seq_file_reads_and_predicts_as_keras(tmp_path, backend):
    x = _data()
    path = tmp_path / "keras_seq2seq.keras"
    expected = _run_keras(KERAS_SEQ2SEQ, tmp_path, path, x)
    model = keras.saving.load_model(str(path))
    assert [type(layer).__name__ for layer in model.layers][2:] == ["LSTM", "LSTM", "Dense"]
    model.compile("adam", "categorical_crossentropy", backend=backend)
    got = model.predict(x, verbose=0)
    print(f"{backend}: max |polykeras - keras| = {np.max(np.abs(got - expected)):.1e}")
    np.testing.assert_allclose(got, expected, atol=2e-6)


def test_polykeras_seq2seq_file_opens_in_keras_and_round_trips(tmp_path):
    keras.utils.set_random_seed(3)
    model = seq2seq()
    x = _data(seed=1)
    expected = model.predict(x, verbose=0)
    path = tmp_path / "polykeras_seq2seq.keras"
    model.save(str(path))
    got = _run_keras(KERAS_LOAD, tmp_path, path, x)
    print(f"keras: max |keras - polykeras| = {np.max(np.abs(got - expected)):.1e}")
    np.testing.assert_allclose(got, expected, atol=2e-6)
    again = keras.saving.load_model(str(path))
    np.testing.assert_array_equal(again.predict(x, verbose=0), expected)


def _padded_data(n=8, seed=4):
    """Encoder sequences with padded steps (zeros): rows alternately right- and left-padded."""
    rng = np.random.default_rng(seed)
    enc = rng.normal(size=(n, 5, 4))
    for i, length in enumerate(rng.integers(1, 6, n)):
        if i % 2:
            enc[i, length:] = 0.0
        else:
            enc[i, :5 - length] = 0.0
    dec = rng.normal(size=(n, 3, 3))
    y = np.eye(3)[rng.integers(0, 3, (n, 3))]
    return [enc, dec], y


def _trained(kind, masking):
    def build():
        keras.utils.set_random_seed(7)
        return seq2seq(4, kind, masking)
    return build


CASES = [("LSTM", False), ("LSTM", True), ("GRU", True), ("SimpleRNN", False)]


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("kind,masking", CASES, ids=[f"{k}{'-masked' if m else ''}" for k, m in CASES])
def test_encoder_decoder_trains_as_the_reference(backend, kind, masking):
    """Three Adam epochs (float64, parity mode): losses and weights within 1e-10 of the reference."""
    x, y = _padded_data()
    check_fit_matches_reference(_trained(kind, masking), backend, x, y, "categorical_crossentropy", 1e-10,
                                batch_size=4)


def _keras_backends():
    infos = backends.backend_infos()
    return [n for n in ("keras-jax", "keras-torch", "keras-tensorflow") if n in infos and infos[n].installed]


@pytest.mark.slow
@pytest.mark.parametrize("backend", _keras_backends())
def test_encoder_decoder_trains_on_keras_as_the_reference(backend):
    """The masked LSTM encoder-decoder trained by Keras's own LSTM layers, judged at float32 level:
    Keras's float64 mode keeps float32 pieces on jax and torch (see tests/test_keras_backend.py),
    and on keras-tensorflow the per-epoch losses differ from the reference's by 3e-8 relative
    (measured; its L0 case of the same graph without masks and softmax is exact to 1e-15), which
    is left unexplained here."""
    x, y = _padded_data()
    tol = 1e-5
    check_fit_matches_reference(_trained("LSTM", True), backend, x, y, "categorical_crossentropy", tol,
                                batch_size=4)


KERAS_BIDIRECTIONAL_SEQ2SEQ = """
import os, sys
os.environ["KERAS_BACKEND"] = "jax"
import numpy as np, keras
encoder_inputs, decoder_inputs = keras.Input((None, 4)), keras.Input((None, 3))
_, fh, fc, bh, bc = keras.layers.Bidirectional(keras.layers.LSTM(3, return_state=True))(encoder_inputs)
states = [keras.layers.Concatenate()([fh, bh]), keras.layers.Concatenate()([fc, bc])]
decoder_outputs = keras.layers.LSTM(6, return_sequences=True)(decoder_inputs, initial_state=states)
model = keras.Model([encoder_inputs, decoder_inputs], keras.layers.Dense(3, activation="softmax")(decoder_outputs))
x = [np.load(sys.argv[2]), np.load(sys.argv[3])]
model.save(sys.argv[1])
np.save(sys.argv[4], model.predict(x, verbose=0))
"""


def test_bidirectional_encoder_states_exchange_with_keras_both_ways(tmp_path):
    """A bidirectional encoder (Keras's order: forward states, then backward states) whose joined
    states start a decoder: Keras's file read and predicted as Keras, and written back for Keras."""
    x = _data(seed=2)
    path = tmp_path / "keras_bidirectional.keras"
    expected = _run_keras(KERAS_BIDIRECTIONAL_SEQ2SEQ, tmp_path, path, x)
    model = keras.saving.load_model(str(path))
    got = model.predict(x, verbose=0)
    print(f"read: max |polykeras - keras| = {np.max(np.abs(got - expected)):.1e}")
    np.testing.assert_allclose(got, expected, atol=2e-6)
    again = tmp_path / "polykeras_bidirectional.keras"
    model.save(str(again))
    back = _run_keras(KERAS_LOAD, tmp_path, again, x)
    print(f"written: max |keras - polykeras| = {np.max(np.abs(back - got)):.1e}")
    np.testing.assert_allclose(back, got, atol=2e-6)


KERAS_BIDIRECTIONAL_DECODER = """
import os, sys
os.environ["KERAS_BACKEND"] = "jax"
import numpy as np, keras
encoder_inputs, decoder_inputs = keras.Input((None, 4)), keras.Input((None, 3))
_, *states = keras.layers.Bidirectional(keras.layers.LSTM(3, return_state=True))(encoder_inputs)
decoder = keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True), merge_mode="sum")
decoder_outputs = decoder(decoder_inputs, initial_state=states)
model = keras.Model([encoder_inputs, decoder_inputs], keras.layers.Dense(3, activation="softmax")(decoder_outputs))
x = [np.load(sys.argv[2]), np.load(sys.argv[3])]
model.save(sys.argv[1])
np.save(sys.argv[4], model.predict(x, verbose=0))
"""


def test_bidirectional_decoder_initial_states_exchange_with_keras_both_ways(tmp_path):
    """A bidirectional decoder started from a bidirectional encoder's four states (Keras's
    ``initial_state=[fh, fc, bh, bc]``: the first half forward, the second backward): Keras's file
    read and predicted as Keras, and written back for Keras."""
    x = _data(seed=3)
    path = tmp_path / "keras_bidirectional_decoder.keras"
    expected = _run_keras(KERAS_BIDIRECTIONAL_DECODER, tmp_path, path, x)
    model = keras.saving.load_model(str(path))
    decoder = [layer for layer in model.layers if type(layer).__name__ == "Bidirectional"][-1]
    assert len(model._spec().layers[[s.name for s in model._spec().layers].index(decoder.name)].inbound) == 5
    got = model.predict(x, verbose=0)
    print(f"read: max |polykeras - keras| = {np.max(np.abs(got - expected)):.1e}")
    np.testing.assert_allclose(got, expected, atol=2e-6)
    again = tmp_path / "polykeras_bidirectional_decoder.keras"
    model.save(str(again))
    back = _run_keras(KERAS_LOAD, tmp_path, again, x)
    print(f"written: max |keras - polykeras| = {np.max(np.abs(back - got)):.1e}")
    np.testing.assert_allclose(back, got, atol=2e-6)
    loaded = keras.saving.load_model(str(again))  # and back into polykeras
    np.testing.assert_allclose(loaded.predict(x, verbose=0), got, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("backend", ["keras-jax", "keras-torch"])
def test_bidirectional_initial_states_train_on_keras_as_the_reference(backend):
    """Keras's own Bidirectional called with initial_state=[...] (the keras-jax backend) trained against the
    reference; judged at float32 level, as the encoder-decoder above (Keras's float64 keeps float32 pieces)."""
    from test_recurrent_state import _bidirectional_with_states

    rng = np.random.default_rng(3)
    x, context_ = rng.normal(size=(6, 5, 3)), rng.normal(size=(6, 4))
    check_fit_matches_reference(lambda: _bidirectional_with_states("LSTM", "concat", True, 3)[0], backend,
                                [x, context_], rng.normal(size=(6, 5, 2)), "mse", 1e-5, epochs=2, batch_size=3)
