"""MultiHeadAttention (traced from polykeras.ops): Keras 3's numbers, float64 training
parity across backends with masks (explicit, causal, and carried by the inputs from
Embedding(mask_zero=True)) and dropout, and a keras.io-style transformer block."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import polykeras as keras
from polykeras import layers, ops

from backend_parity import check_fit_matches_reference

# float64: a few steps through ~30 nodes at unit roundoff 1.1e-16; a wrong gradient shows at 1e-6 or above
FLOAT64_PARITY = 1e-12


def _mha_model(causal: bool, with_mask: bool, dropout: float = 0.0):
    keras.utils.set_random_seed(1)
    query, value = keras.Input((5, 6)), keras.Input((4, 3))
    inputs, kwargs = [query, value], {"use_causal_mask": causal}
    if with_mask:
        mask = keras.Input((5, 4))
        inputs.append(mask)
        kwargs["attention_mask"] = mask
    out = layers.MultiHeadAttention(num_heads=2, key_dim=3, dropout=dropout)(query, value, **kwargs)
    return keras.Model(inputs, out)


def _data(with_mask: bool):
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(6, 5, 6)), rng.normal(size=(6, 4, 3))]
    if with_mask:
        xs.append((rng.random((6, 5, 4)) > 0.3).astype("float64"))
    return xs, rng.normal(size=(6, 5, 6))


KERAS_SCRIPT = """
import os, sys
os.environ["KERAS_BACKEND"] = "jax"
import numpy as np, keras
d = np.load(sys.argv[1])
outputs = {}
for causal in (False, True):
    for with_mask in (False, True):
        mha = keras.layers.MultiHeadAttention(num_heads=2, key_dim=3)
        kwargs = dict(attention_mask=d["mask"] > 0 if with_mask else None, use_causal_mask=causal)
        mha(d["query"], d["value"], **kwargs)
        mha.set_weights([d[f"w{i}"] for i in range(8)])
        outputs[f"{causal}-{with_mask}"] = np.asarray(mha(d["query"], d["value"], **kwargs))
np.savez(sys.argv[2], **outputs)
"""


def test_outputs_match_keras_3(tmp_path):
    """Keras 3 (on jax, float32) with the same weights: causal and explicit masks, alone and together
    (a query whose keys are all masked attends uniformly, as Keras's default path does)."""
    (xq, xv, xm), _ = _data(True)
    ours = {}
    for causal in (False, True):
        for with_mask in (False, True):
            model = _mha_model(causal, with_mask)
            mha = next(layer for layer in model.layers if isinstance(layer, layers.MultiHeadAttention))
            model.compile("sgd", "mse", backend="numpy", dtype="float64")
            ours[f"{causal}-{with_mask}"] = model.predict([xq, xv] + ([xm] if with_mask else []), verbose=0)
            weights = mha.get_weights()
    # the weights are drawn from the same seed for every model; Keras gets them in its own order
    assert [w.shape for w in weights] == [(6, 2, 3), (2, 3), (3, 2, 3), (2, 3), (3, 2, 3), (2, 3), (2, 3, 6), (6,)]
    np.savez(tmp_path / "in.npz", query=xq, value=xv, mask=xm, **{f"w{i}": w for i, w in enumerate(weights)})
    run = subprocess.run([sys.executable, "-c", KERAS_SCRIPT, str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    theirs = np.load(tmp_path / "out.npz")
    for key, value in ours.items():  # Keras computes in float32: agreement to its rounding
        np.testing.assert_allclose(value, theirs[key], atol=2e-6, err_msg=key)


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("causal, with_mask, dropout", [(False, False, 0.0), (True, True, 0.2)])
def test_training_matches_the_reference_in_float64(backend, causal, with_mask, dropout):
    xs, y = _data(with_mask)
    results = []
    for name in ("numpy", backend):
        model = _mha_model(causal, with_mask, dropout)
        model.compile("adam", "mse", backend=name, dtype="float64", parity=True)
        history = model.fit(xs, y, epochs=2, batch_size=3, verbose=0, shuffle=False)
        results.append((history.history["loss"], model.get_weights()))
    (ref_loss, ref_weights), (loss, weights) = results
    np.testing.assert_allclose(loss, ref_loss, rtol=FLOAT64_PARITY)
    for a, b in zip(weights, ref_weights):
        np.testing.assert_allclose(a, b, rtol=FLOAT64_PARITY, atol=FLOAT64_PARITY)


class TransformerBlock(layers.Layer):
    """keras.io's text-classification transformer block, unchanged but for the import."""

    def __init__(self, embed_dim, num_heads, ff_dim, rate=0.1, **kwargs):
        super().__init__(**kwargs)
        self.att = layers.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
        self.ffn = keras.Sequential([layers.Dense(ff_dim, activation="relu"), layers.Dense(embed_dim)])
        self.layernorm1 = layers.LayerNormalization(epsilon=1e-6)
        self.layernorm2 = layers.LayerNormalization(epsilon=1e-6)
        self.dropout1 = layers.Dropout(rate)
        self.dropout2 = layers.Dropout(rate)

    def call(self, inputs, training=None):
        attn_output = self.dropout1(self.att(inputs, inputs), training=training)
        out1 = self.layernorm1(inputs + attn_output)
        ffn_output = self.dropout2(self.ffn(out1), training=training)
        return self.layernorm2(out1 + ffn_output)


def test_a_transformer_block_classifier_trains_on_every_backend_alike():
    rng = np.random.default_rng(4)
    x, y = rng.integers(1, 30, (24, 10)), rng.integers(0, 2, 24)
    results = {}
    for name in ("numpy", "torch", "jax"):
        keras.utils.set_random_seed(2)
        inputs = keras.Input((10,), dtype="int32")
        h = layers.Embedding(30, 8)(inputs)
        h = TransformerBlock(8, 2, 16)(h)
        h = layers.GlobalAveragePooling1D()(h)
        outputs = layers.Dense(2, activation="softmax")(layers.Dropout(0.1)(h))
        model = keras.Model(inputs, outputs)
        model.compile("adam", "sparse_categorical_crossentropy", backend=name, dtype="float64", parity=True)
        history = model.fit(x, y, epochs=2, batch_size=8, verbose=0, shuffle=False)
        results[name] = (history.history["loss"], model.get_weights())
    for name in ("torch", "jax"):
        np.testing.assert_allclose(results[name][0], results["numpy"][0], rtol=FLOAT64_PARITY)
        for a, b in zip(results[name][1], results["numpy"][1]):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


def _masked_classifier():
    """Embedding(mask_zero) -> self-attention -> residual + LayerNorm -> masked mean -> Dense: the mask
    travels from the ids into the attention (keys and queries) and the pooling."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((None,), dtype="int32")
    x = layers.Embedding(20, 8, mask_zero=True)(inputs)
    attended = layers.MultiHeadAttention(num_heads=2, key_dim=4)(x, x)
    x = layers.LayerNormalization()(layers.Add()([x, attended]))
    return keras.Model(inputs, layers.Dense(3, activation="softmax")(layers.GlobalAveragePooling1D()(x)))


PADDED = np.array([[3, 7, 2, 5, 0, 0], [0, 0, 3, 7, 2, 5], [3, 0, 7, 2, 0, 5], [4, 4, 1, 9, 8, 2]])


def test_masks_carried_by_the_inputs_hide_the_padding():
    model = _masked_classifier()
    model.compile("adam", "sparse_categorical_crossentropy", backend="numpy", dtype="float64")
    ids = keras.Input((None,), dtype="int32")
    x = layers.Embedding(20, 8, mask_zero=True)(ids)
    assert layers.MultiHeadAttention(num_heads=2, key_dim=4)(x, x).mask is x.mask  # the query's, as in Keras
    predictions = model.predict(PADDED, verbose=0)
    # padding anywhere (left, right, inside) changes nothing: each row is [3, 7, 2, 5] once unpadded
    want = model.predict(np.array([[3, 7, 2, 5]]), verbose=0)[0]
    for row in predictions[:3]:
        np.testing.assert_allclose(row, want, rtol=1e-14, atol=1e-15)
    assert np.abs(predictions[3] - want).max() > 1e-3  # a different sequence does change the prediction


KERAS_MASKED_SCRIPT = """
import os, sys
os.environ["KERAS_BACKEND"] = "jax"
import numpy as np, keras
d = np.load(sys.argv[1])
inputs = keras.Input((None,), dtype="int32")
x = keras.layers.Embedding(20, 8, mask_zero=True)(inputs)
attended = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)(x, x)
x = keras.layers.LayerNormalization()(keras.layers.Add()([x, attended]))
model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling1D()(x)))
model.set_weights([d[f"w{i}"] for i in range(len(d.files) - 1)])
np.save(sys.argv[2], np.asarray(model.predict(d["ids"], verbose=0)))
"""


def test_masked_attention_matches_keras_3(tmp_path):
    """The same model in Keras 3 (jax, float32) with the same weights, in Keras's order: Keras masks
    the same keys and queries (its Embedding's mask reaches MultiHeadAttention and the pooling).
    (tests/test_keras_files_masks_and_attention.py exchanges such models through .keras files.)"""
    model = _masked_classifier()
    model.compile("adam", "sparse_categorical_crossentropy", backend="numpy", dtype="float64")
    np.savez(tmp_path / "in.npz", ids=PADDED, **{f"w{i}": w for i, w in enumerate(model.get_weights())})
    run = subprocess.run([sys.executable, "-c", KERAS_MASKED_SCRIPT, str(tmp_path / "in.npz"),
                          str(tmp_path / "out.npy")], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    np.testing.assert_allclose(model.predict(PADDED, verbose=0), np.load(tmp_path / "out.npy"), atol=2e-6)


def test_masked_attention_round_trips_through_polykeras_files(tmp_path):
    model = _masked_classifier()
    model.compile("adam", "sparse_categorical_crossentropy", backend="numpy", dtype="float64")
    model.save(tmp_path / "m.polykeras")
    loaded = keras.models.load_model(tmp_path / "m.polykeras")
    loaded.compile("adam", "sparse_categorical_crossentropy", backend="numpy", dtype="float64")
    np.testing.assert_array_equal(loaded.predict(PADDED, verbose=0), model.predict(PADDED, verbose=0))


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_masked_attention_trains_like_the_reference_in_float64(backend):
    check_fit_matches_reference(_masked_classifier, backend, PADDED, np.array([0, 1, 2, 1]),
                                "sparse_categorical_crossentropy", FLOAT64_PARITY)


def test_unsupported_options_are_named():
    with pytest.raises(NotImplementedError, match="attention_axes"):
        layers.MultiHeadAttention(2, 3, attention_axes=(1, 2))
    query = keras.Input((5, 6))
    with pytest.raises(NotImplementedError, match="return_attention_scores"):
        layers.MultiHeadAttention(2, 3)(query, query, return_attention_scores=True)
    assert ops.shape(layers.MultiHeadAttention(2, 3)(query, query)) == (None, 5, 6)


def _attention_op_model(mask, causal: bool):
    """Dense projections into one ops.dot_product_attention node with a constant mask, so the
    training parity covers the op's gradients into query, key and value."""
    keras.utils.set_random_seed(5)
    x = keras.Input((4, 3))
    q, k, v = (ops.reshape(layers.Dense(4)(x), (-1, 4, 2, 2)) for _ in range(3))
    out = ops.dot_product_attention(q, k, v, mask=mask, is_causal=causal)
    return keras.Model(x, layers.Dense(2)(ops.reshape(out, (-1, 4, 4))))


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("empty_rows, causal", [(False, False), (True, False), (False, True)])
def test_the_attention_op_trains_like_the_reference_in_float64(backend, empty_rows, causal):
    """torch runs the op as scaled_dot_product_attention: with a mask that leaves every query a key
    (its direct path), with queries that have none (mended to attend uniformly, as the reference), and
    causal; the mask is (1, 1, T, S) with query 2 seeing keys 0 and 3 only."""
    mask = np.ones((1, 1, 4, 4), bool)
    mask[0, 0, 2, 1:3] = False
    if empty_rows:
        mask[0, 0, 1] = False
    rng = np.random.default_rng(6)
    check_fit_matches_reference(lambda: _attention_op_model(mask, causal), backend, rng.normal(size=(4, 4, 3)),
                                rng.normal(size=(4, 4, 2)), "mse", FLOAT64_PARITY)
