"""Lambda and CategoryEncoding (traced from polykeras.ops): Keras 3's numbers, every backend
alike in float64, configs and files, and clear errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import polykeras as keras
from polykeras import layers, ops

from backend_parity import check_fit_matches_reference

# float64: a few steps through a handful of nodes at unit roundoff 1.1e-16
FLOAT64_PARITY = 1e-12

ENCODINGS = [("one_hot", [[3], [0], [4]]), ("one_hot", [3, 0, 4]), ("multi_hot", [[0, 1, 1], [4, 4, 2], [3, 0, 0]]),
             ("count", [[0, 1, 1], [4, 4, 2], [3, 0, 0]])]

KERAS_SCRIPT = """
import json, os, sys
os.environ["KERAS_BACKEND"] = "jax"
import numpy as np, keras
out = {}
for i, (mode, ids) in enumerate(json.loads(sys.argv[1])):
    out[str(i)] = np.asarray(keras.layers.CategoryEncoding(5, output_mode=mode)(np.array(ids)))
np.savez(sys.argv[2], **out)
"""


def _encoded(mode, ids, backend="numpy"):
    ids = np.array(ids)
    inp = keras.Input(ids.shape[1:], dtype="int32")
    model = keras.Model(inp, layers.CategoryEncoding(5, output_mode=mode)(inp))
    model.compile("sgd", "mse", backend=backend, dtype="float64")
    return model.predict(ids, verbose=0)


def test_category_encoding_matches_keras_3(tmp_path):
    import json

    run = subprocess.run([sys.executable, "-c", KERAS_SCRIPT, json.dumps(ENCODINGS), str(tmp_path / "out.npz")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    theirs = np.load(tmp_path / "out.npz")
    for i, (mode, ids) in enumerate(ENCODINGS):
        for backend in ("numpy", "torch", "jax"):
            np.testing.assert_array_equal(_encoded(mode, ids, backend), theirs[str(i)], err_msg=f"{mode} {backend}")


def test_category_encoding_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="output_mode"):
        layers.CategoryEncoding(4, output_mode="tf_idf")
    with pytest.raises(ValueError, match="num_tokens"):
        layers.CategoryEncoding()
    with pytest.raises(NotImplementedError, match="sparse"):
        layers.CategoryEncoding(4, sparse=True)


def _scaled_square(x, factor=1.0):
    return ops.square(x) * factor


def _lambda_model():
    keras.utils.set_random_seed(4)
    inp = keras.Input((6,))
    h = layers.Dense(5)(inp)
    h = layers.Lambda(_scaled_square, arguments={"factor": 0.5})(h)
    h = layers.Lambda(lambda t: ops.tanh(t) - ops.mean(t, axis=-1, keepdims=True))(h)
    return keras.Model(inp, layers.Dense(2)(h))


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_lambda_layers_train_like_the_reference_in_float64(backend):
    rng = np.random.default_rng(0)
    check_fit_matches_reference(_lambda_model, backend, rng.normal(size=(8, 6)), rng.normal(size=(8, 2)), "mse",
                                FLOAT64_PARITY, batch_size=4)


def test_a_lambda_model_loads_from_its_file_without_the_function(tmp_path):
    model = _lambda_model()
    model.compile("adam", "mse", backend="numpy", dtype="float64")
    x = np.random.default_rng(1).normal(size=(3, 6))
    model.save(tmp_path / "m.polykeras")
    loaded = keras.models.load_model(tmp_path / "m.polykeras")
    loaded.compile("adam", "mse", backend="numpy", dtype="float64")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_lambda_configs_name_their_function():
    layer = layers.Lambda(_scaled_square, arguments={"factor": 2.0})
    config = layer.get_config()
    assert config["function"] == {"class_name": "function", "config": "_scaled_square"}
    with keras.saving.custom_object_scope({"_scaled_square": _scaled_square}):
        assert layers.Lambda.from_config(config).function is _scaled_square
    with pytest.raises(keras.saving.UnknownObjectError, match="_scaled_square"):
        layers.Lambda.from_config(config)
    with pytest.raises(ValueError, match="named function"):
        layers.Lambda.from_config(layers.Lambda(lambda t: t).get_config())


def test_lambda_masks_and_errors():
    ids = keras.Input((4,), dtype="int32")
    embedded = layers.Embedding(10, 3, mask_zero=True)(ids)
    assert layers.Lambda(lambda t: t * 2.0)(embedded).mask is None  # Keras: no mask function, no mask
    kept = layers.Lambda(lambda t: t * 2.0, mask=lambda inputs, mask: mask)(embedded)
    assert kept.mask is embedded.mask
    with pytest.raises(TypeError, match="polykeras.ops"):
        layers.Lambda(lambda t: np.tanh(np.ones((2, 3))))(keras.Input((3,)))
    with pytest.raises(TypeError, match="callable"):
        layers.Lambda("tanh")
