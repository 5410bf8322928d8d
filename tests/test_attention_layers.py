"""Attention and AdditiveAttention (traced from polykeras.ops): Keras 3's numbers with the same
weights (masks carried from Embedding(mask_zero=True), the causal mask, every score mode), the
reference's gradients against finite differences, float64 training parity across backends."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import polykeras as keras
from polykeras import layers
from polykeras.trainer import Trainer

from _fd import check_model_gradients
from backend_parity import check_fit_matches_reference

# float64: a few steps through ~15 nodes at unit roundoff 1.1e-16; a wrong gradient shows at 1e-6 or above
FLOAT64_PARITY = 1e-12

CONFIGS = [("Attention", {}, False), ("Attention", {"use_scale": True}, True),
           ("Attention", {"score_mode": "concat"}, False),
           ("Attention", {"use_scale": True, "score_mode": "concat"}, True),
           ("AdditiveAttention", {}, False), ("AdditiveAttention", {"use_scale": False}, True)]
IDS = "Attention-dot Attention-dot-scale-causal Attention-concat Attention-concat-scale-causal Additive " \
      "Additive-noscale-causal".split()

QUERIES = np.array([[3, 7, 2, 0], [1, 2, 0, 0], [5, 5, 5, 5]])
VALUES = np.array([[4, 5, 0, 0, 0], [0, 6, 7, 8, 9], [1, 2, 3, 4, 5]])


def _model(cls: str, config: dict, causal: bool, pooled: bool = False, dropout: float = 0.0):
    """Two id sequences embedded with one masking Embedding, attended (query -> value), either kept as
    the sequence output or pooled (masked mean) into a softmax classifier."""
    keras.utils.set_random_seed(3)
    q_ids, v_ids = keras.Input((None,), dtype="int32"), keras.Input((None,), dtype="int32")
    embed = layers.Embedding(20, 6, mask_zero=True)
    attended = getattr(layers, cls)(dropout=dropout, **config)([embed(q_ids), embed(v_ids)], use_causal_mask=causal)
    if not pooled:
        return keras.Model([q_ids, v_ids], attended)
    out = layers.Dense(3, activation="softmax")(layers.GlobalAveragePooling1D()(attended))
    return keras.Model([q_ids, v_ids], out)


KERAS_SCRIPT = """
import json, os, sys
os.environ["KERAS_BACKEND"] = "jax"
import numpy as np, keras
d = np.load(sys.argv[1])
cls, config, causal = json.loads(sys.argv[2])
q_ids, v_ids = keras.Input((None,), dtype="int32"), keras.Input((None,), dtype="int32")
embed = keras.layers.Embedding(20, 6, mask_zero=True)
attended = getattr(keras.layers, cls)(**config)([embed(q_ids), embed(v_ids)], use_causal_mask=causal)
model = keras.Model([q_ids, v_ids], attended)
model.set_weights([d[f"w{i}"] for i in range(len(d.files) - 2)])
np.save(sys.argv[3], np.asarray(model.predict([d["q"], d["v"]], verbose=0)))
"""


@pytest.mark.parametrize("cls, config, causal", CONFIGS, ids=IDS)
def test_outputs_match_keras_3(tmp_path, cls, config, causal):
    """Keras 3 (jax, float32) with the same weights, in Keras's order: the same masked keys, the
    causal mask, and zeros at masked query steps."""
    import json

    model = _model(cls, config, causal)
    ours = model.predict([QUERIES, VALUES], verbose=0)
    np.savez(tmp_path / "in.npz", q=QUERIES, v=VALUES, **{f"w{i}": w for i, w in enumerate(model.get_weights())})
    run = subprocess.run([sys.executable, "-c", KERAS_SCRIPT, str(tmp_path / "in.npz"),
                          json.dumps([cls, config, causal]), str(tmp_path / "out.npy")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    np.testing.assert_allclose(ours, np.load(tmp_path / "out.npy"), atol=2e-6)
    assert np.all(ours[0, 3] == 0) and np.all(ours[1, 2:] == 0)  # masked query steps


def test_padding_changes_nothing():
    model = _model("AdditiveAttention", {}, False, pooled=True)
    plain = model.predict([np.array([[3, 7, 2]]), np.array([[4, 5, 6]])], verbose=0)
    for q, v in (([[3, 7, 2, 0]], [[0, 4, 5, 6]]), ([[0, 3, 7, 2]], [[4, 5, 0, 6, 0]])):
        np.testing.assert_allclose(model.predict([np.array(q), np.array(v)], verbose=0), plain, rtol=1e-14)


@pytest.mark.parametrize("cls, config, causal", CONFIGS[1::2], ids=IDS[1::2])
def test_reference_gradients_match_finite_differences(cls, config, causal):
    model = _model(cls, config, causal, pooled=True)
    model.compile("sgd", "sparse_categorical_crossentropy", backend="numpy", dtype="float64")
    # no query may have every key masked here: Keras then keeps its softmax of `score - 1e9`, where
    # float64 resolves a score to ulp(1e9) = 1.2e-7 only, and finite differences of step 1e-6 are lost
    values = np.array([[4, 5, 0, 0, 0], [6, 0, 7, 8, 9], [1, 2, 3, 4, 5]])
    x, y = Trainer(model).prepare([QUERIES, values], np.array([0, 2, 1]))
    program = model._get_program(training=True, y_ndim=1)
    check_model_gradients(program, x, y, range(len(program.get_weights()) - 2))  # embedding and attention


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("cls, config, causal", CONFIGS[1::2], ids=IDS[1::2])
def test_training_matches_the_reference_in_float64(backend, cls, config, causal):
    check_fit_matches_reference(lambda: _model(cls, config, causal, pooled=True, dropout=0.3), backend,
                                [QUERIES, VALUES], np.array([0, 2, 1]), "sparse_categorical_crossentropy",
                                FLOAT64_PARITY)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="score_mode"):
        layers.Attention(score_mode="cosine")
    query = keras.Input((4, 6))
    with pytest.raises(ValueError, match=r"\[query, value\]"):
        layers.Attention()(query)
    with pytest.raises(NotImplementedError, match="return_attention_scores"):
        layers.AdditiveAttention()([query, query], return_attention_scores=True)


@pytest.mark.parametrize("cls, config, causal", CONFIGS[1::2], ids=IDS[1::2])
def test_polykeras_files_keep_the_masks(tmp_path, cls, config, causal):
    """A .polykeras file rebuilds the attention's ops one by one: the masks they read (the
    Embedding's, per call) and the mask the output carries into the pooling come back with them."""
    model = _model(cls, config, causal, pooled=True)
    model.compile("adam", "sparse_categorical_crossentropy", backend="numpy", dtype="float64")
    model.save(tmp_path / "m.polykeras")
    loaded = keras.models.load_model(tmp_path / "m.polykeras")
    loaded.compile("adam", "sparse_categorical_crossentropy", backend="numpy", dtype="float64")
    np.testing.assert_array_equal(loaded.predict([QUERIES, VALUES], verbose=0),
                                  model.predict([QUERIES, VALUES], verbose=0))
