"""TimeDistributed (one layer on every time slice, one set of weights; masks passed through; dropout drawn per
time step): the layer's config, weights and errors, the reference's gradients by finite differences and
against the wrapped kernel run step by step, torch and jax against the reference in float64, the Keras
backends, and ``.keras`` files exchanged with Keras 3 itself."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import polykeras as keras
from polykeras import layers
from polykeras.layer_rules.time_distributed import WRAPPABLE

from _fd import build, check_gradients, fixed_dropout_mask, random_weights
from backend_parity import LayerCase, check_fit_matches_reference, compare_gradients, rel_diff
from polykeras_numpy.layers import KERNELS, ForwardContext

# float64: one forward/backward pass through a wrapped layer (or two epochs of Adam) at unit roundoff
# 1.1e-16 (measured below 2e-15); a wrong fold of the time axis or a mask drawn in another layout shows at 1e-1
FLOAT64_PARITY = 1e-10

#: one configuration per wrappable kind, on one time slice's shape (the input is (batch, 3, *shape))
WRAPPED = {
    "Dense": (lambda: layers.Dense(3, activation="tanh"), (4,)),
    "Activation": (lambda: layers.Activation("softplus"), (2, 3)),
    "Dropout": (lambda: layers.Dropout(0.4), (5,)),
    "SpatialDropout1D": (lambda: layers.SpatialDropout1D(0.5), (4, 3)),
    "SpatialDropout2D": (lambda: layers.SpatialDropout2D(0.3), (3, 2, 4)),
    "Flatten": (lambda: layers.Flatten(), (2, 3, 2)),
    "Reshape": (lambda: layers.Reshape((3, -1)), (2, 3)),
    "Conv1D": (lambda: layers.Conv1D(2, 3, padding="causal"), (5, 2)),
    "Conv2D": (lambda: layers.Conv2D(3, (3, 2), strides=2, padding="same", activation="relu"), (5, 4, 2)),
    "MaxPooling1D": (lambda: layers.MaxPooling1D(2), (5, 2)),
    "MaxPooling2D": (lambda: layers.MaxPooling2D(2, padding="same"), (3, 5, 2)),
    "AveragePooling1D": (lambda: layers.AveragePooling1D(3, strides=1, padding="same"), (4, 2)),
    "AveragePooling2D": (lambda: layers.AveragePooling2D(2), (4, 4, 1)),
    "GlobalAveragePooling2D": (lambda: layers.GlobalAveragePooling2D(), (3, 2, 2)),
    "GlobalMaxPooling1D": (lambda: layers.GlobalMaxPooling1D(), (4, 3)),
    "GlobalMaxPooling2D": (lambda: layers.GlobalMaxPooling2D(keepdims=True), (2, 3, 2)),
    "LayerNormalization": (lambda: layers.LayerNormalization(axis=1), (3, 2)),
    "UnitNormalization": (lambda: layers.UnitNormalization(), (4,)),
}


def test_every_wrappable_kind_has_a_case():
    assert set(WRAPPED) == set(WRAPPABLE)


# -- the layer ------------------------------------------------------------------------------------------------
def test_weights_config_and_shapes_are_keras_s():
    dense = layers.Dense(4, name="proj")
    layer = layers.TimeDistributed(dense)
    assert layer.layer is dense  # the layer given, not a copy, as Keras 3
    out = layer(keras.Input((5, 3)))
    assert out.shape == (None, 5, 4) and layer.compute_output_shape((2, 5, 3)) == (2, 5, 4)
    assert [w.path for w in layer.weights] == [f"{layer.name}/proj/kernel", f"{layer.name}/proj/bias"]
    conv = layers.TimeDistributed(layers.Conv2D(2, 3, strides=2, padding="same"))
    assert conv(keras.Input((4, 7, 6, 3))).shape == (None, 4, 4, 3, 2)
    config = layer.get_config()
    assert config["layer"]["class_name"] == "Dense" and config["layer"]["config"]["units"] == 4
    again = layers.TimeDistributed.from_config(config)
    assert again.get_config() == config and type(again.layer) is layers.Dense


def test_the_wrapped_layer_reads_and_writes_the_trained_weights():
    dense = layers.Dense(2)
    model = keras.Sequential([keras.Input((3, 4)), layers.TimeDistributed(dense)])
    model.compile("sgd", "mse", backend="numpy")
    model.fit(np.ones((2, 3, 4)), np.ones((2, 3, 2)), verbose=0)
    for got, want in zip(dense.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(got, want)
    dense.set_weights([np.zeros((4, 2)), np.full(2, 0.5)])
    np.testing.assert_array_equal(model.predict(np.ones((1, 3, 4)), verbose=0), 0.5)


def test_the_mask_passes_through_to_a_layer_that_reads_it():
    inp = keras.Input((6,), dtype="int32")
    emb = layers.Embedding(9, 3, mask_zero=True)(inp)
    dense = layers.TimeDistributed(layers.Dense(2))(emb)
    rnn = layers.LSTM(2)(dense)
    assert dense.mask is emb.mask and rnn.mask_input is emb.mask
    flat = layers.TimeDistributed(layers.Flatten())(layers.Reshape((6, 3, 1))(emb))
    assert flat.shape == (None, 6, 3)


@pytest.mark.parametrize("make, error, message", [
    (lambda: layers.TimeDistributed("dense"), ValueError, "wraps a layer instance"),
    (lambda: layers.TimeDistributed(layers.BatchNormalization()), NotImplementedError,
     "cannot wrap BatchNormalization .*it wraps Dense, Activation, Dropout"),
    (lambda: layers.TimeDistributed(layers.LSTM(2)), NotImplementedError, "cannot wrap LSTM"),
    (lambda: layers.TimeDistributed(layers.Dense(2))(keras.Input((4,))), ValueError, "rank 3 or more"),
])
def test_bad_arguments_are_refused_clearly(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_the_rules_refuse_what_they_cannot_run():
    with pytest.raises(NotImplementedError, match="noise_shape=\\[1, None\\].*leave its batch entry None"):
        build("TimeDistributed", {"layer": {"class_name": "Dropout", "config": {"rate": 0.5, "noise_shape": [1, None]}}},
              (3, 4))
    with pytest.raises(NotImplementedError, match="wrapping a GRU layer is not supported"):
        build("TimeDistributed", {"layer": {"class_name": "GRU", "config": {"units": 2}}}, (3, 4, 2))


# -- the reference ----------------------------------------------------------------------------------------------
def _config(kind: str) -> dict:
    inner = WRAPPED[kind][0]()
    return {"layer": {"class_name": inner.kind, "config": inner.get_config()}}


@pytest.mark.parametrize("kind", list(WRAPPED))
def test_reference_gradients_match_finite_differences(kind):
    rng = np.random.default_rng(0)
    kernel = build("TimeDistributed", _config(kind), (3, *WRAPPED[kind][1]))
    check_gradients(kernel, random_weights(kernel, rng), rng.normal(size=(2, 3, *WRAPPED[kind][1])), training=True)


@pytest.mark.parametrize("kind", ["Dense", "Conv2D", "Dropout", "SpatialDropout1D", "Flatten"])
def test_is_the_wrapped_kernel_on_each_time_step_with_its_own_dropout_mask(kind):
    """Keras's loop: the wrapped layer on ``x[:, t]`` for each step ``t``; a dropout kind's host-drawn mask is
    one array ``(batch, time, *rest)`` of which step ``t`` uses ``[:, t]`` (the documented layout)."""
    rng = np.random.default_rng(1)
    shape = (4, *WRAPPED[kind][1])
    kernel = build("TimeDistributed", _config(kind), shape)
    weights, x = random_weights(kernel, rng), rng.normal(size=(3, *shape))
    draw = fixed_dropout_mask(np.float64)
    y, _ = kernel.forward(weights, x, ForwardContext(True, draw))
    inner = KERNELS[kind](kernel.rules.inner_spec, np.float64)
    for t in range(shape[0]):
        def step_mask(mask_shape, rate, stream, t=t):
            return draw((mask_shape[0], shape[0], *mask_shape[1:]), rate, stream)[:, t]

        want, _ = inner.forward(weights, x[:, t], ForwardContext(True, step_mask))
        np.testing.assert_array_equal(y[:, t], want)
    if kernel.rules.dropout:  # the steps drop different units
        assert not np.array_equal(y[:, 0] == 0, y[:, 1] == 0)


# -- torch and jax against the reference --------------------------------------------------------------------------
def _case(kind: str) -> LayerCase:
    factory, shape = WRAPPED[kind]

    def model():
        keras.utils.set_random_seed(5)
        return keras.Sequential([keras.Input((3, *shape)), layers.TimeDistributed(factory())])

    return LayerCase(id=kind, build=model, input_shape=(3, *shape))


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("kind", list(WRAPPED))
def test_forward_and_gradients_match_the_reference_in_float64(backend, kind):
    diffs = compare_gradients(backend, _case(kind), "float64", training=True)
    assert "grad[input]" in diffs
    assert max(diffs.values()) < FLOAT64_PARITY, diffs


def _masked_model(dropout=0.3):
    keras.utils.set_random_seed(2)
    inp = keras.Input((6,), dtype="int32")
    h = layers.Embedding(9, 3, mask_zero=True)(inp)
    h = layers.TimeDistributed(layers.Dense(4, activation="tanh"))(h)
    h = layers.TimeDistributed(layers.Dropout(dropout))(h)
    h = layers.LSTM(3, return_sequences=True)(h)
    h = layers.GlobalAveragePooling1D()(h)
    return keras.Model(inp, layers.Dense(2)(h))


def _ids(rows=4, steps=6, seed=0):
    ids = np.random.default_rng(seed).integers(1, 9, (rows, steps))
    ids[0, 4:], ids[1, :2], ids[2, 3] = 0, 0, 0  # padded right, left and in the middle
    return ids


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_masked_model_matches_the_reference_in_float64(backend):
    case = LayerCase(id="masked", build=_masked_model, input_shape=(6,), integer_input=9)
    diffs = compare_gradients(backend, case, "float64", training=True)
    assert max(diffs.values()) < FLOAT64_PARITY, diffs


def _video_model():
    keras.utils.set_random_seed(3)
    inp = keras.Input((4, 6, 5, 2))
    h = layers.TimeDistributed(layers.Conv2D(3, 3, strides=2, padding="same", activation="relu"))(inp)
    h = layers.TimeDistributed(layers.MaxPooling2D())(h)
    h = layers.TimeDistributed(layers.Flatten())(h)
    h = layers.TimeDistributed(layers.Dropout(0.3))(h)
    h = layers.GRU(3)(h)
    return keras.Model(inp, layers.Dense(2, activation="softmax")(h))


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_training_matches_the_reference_in_float64(backend):
    rng = np.random.default_rng(4)
    check_fit_matches_reference(_video_model, backend, rng.normal(size=(6, 4, 6, 5, 2)), rng.integers(0, 2, 6),
                                "sparse_categorical_crossentropy", FLOAT64_PARITY, epochs=2, batch_size=3)


# -- Keras 3 -------------------------------------------------------------------------------------------------
@pytest.mark.slow  # a Keras worker process each (about 25 s); the quick conformance run checks keras-jax too
@pytest.mark.parametrize("backend", ["keras-tensorflow", "keras-jax"])
def test_keras_backends_match_the_reference(backend):
    """keras.layers.TimeDistributed with the fed per-step dropout masks: on tensorflow float64 as tightly as
    torch and jax; on jax Keras's float64 mode keeps float32 pieces (measured 1e-8 to 5e-7, as for every
    layer there), so it is judged at the float32 limit."""
    from polykeras_conformance import tolerances

    limit = FLOAT64_PARITY if backend == "keras-tensorflow" else tolerances.limit("L0", "float32").limit
    for case in (LayerCase(id="video", build=_video_model, input_shape=(4, 6, 5, 2), loss="mse"),
                 LayerCase(id="masked", build=_masked_model, input_shape=(6,), integer_input=9)):
        diffs = compare_gradients(backend, case, "float64", training=True)
        assert max(diffs.values()) < limit, (backend, case.id, diffs)


KERAS_SCRIPT = """
import os, sys
os.environ["KERAS_BACKEND"] = "jax"
import numpy as np, keras
folder = sys.argv[1]
x = np.load(folder + "/x.npy")
model = keras.saving.load_model(folder + "/pk.keras")
assert [w.path for w in model.weights][:2] == ["td/conv/kernel", "td/conv/bias"], [w.path for w in model.weights]
np.save(folder + "/keras_pred.npy", model.predict(x, verbose=0))
sequential = keras.saving.load_model(folder + "/seq.keras")
np.save(folder + "/keras_seq_pred.npy", sequential.predict(np.ones((2, 3, 4)), verbose=0))
inp = keras.Input((4, 6, 5, 2))
h = keras.layers.TimeDistributed(keras.layers.Conv2D(2, 3, padding="same"))(inp)
h = keras.layers.TimeDistributed(keras.layers.AveragePooling2D(2))(h)
h = keras.layers.TimeDistributed(keras.layers.Flatten())(h)
h = keras.layers.TimeDistributed(keras.layers.Dropout(0.2))(h)
theirs = keras.Model(inp, keras.layers.TimeDistributed(keras.layers.Dense(2, activation="tanh"))(h))
theirs.compile("adam", "mse")
theirs.fit(x, np.zeros((3, 4, 2)), verbose=0)
theirs.save(folder + "/keras.keras")
np.save(folder + "/keras_own_pred.npy", theirs.predict(x, verbose=0))
"""


def test_keras_files_exchange_with_keras_3(tmp_path):
    """polykeras -> Keras (a regularized wrapped layer, the wrapped weights under ``layer/vars``; a functional
    model and a Sequential) predicts as polykeras does; Keras -> polykeras (with its Adam state) predicts as Keras does. Keras computes in float32."""
    pytest.importorskip("h5py")
    keras.utils.set_random_seed(6)
    inp = keras.Input((4, 6, 5, 2))
    h = layers.TimeDistributed(layers.Conv2D(3, 2, activation="tanh", name="conv",
                                             kernel_regularizer=keras.regularizers.l2(0.01)), name="td")(inp)
    h = layers.TimeDistributed(layers.Flatten())(h)
    model = keras.Model(inp, layers.LSTM(2)(layers.TimeDistributed(layers.Dropout(0.3))(h)))
    x = np.random.default_rng(7).normal(size=(3, 4, 6, 5, 2)).astype("float32")
    model.compile("adam", "mse", backend="numpy")
    model.fit(x, np.zeros((3, 2)), verbose=0)
    model.save(tmp_path / "pk.keras")
    np.save(tmp_path / "x.npy", x)
    sequential = keras.Sequential([keras.Input((3, 4)), layers.TimeDistributed(layers.Dense(2, activation="tanh"))])
    sequential.save(tmp_path / "seq.keras")
    run = subprocess.run([sys.executable, "-c", KERAS_SCRIPT, str(tmp_path)], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    np.testing.assert_allclose(np.load(tmp_path / "keras_pred.npy"), model.predict(x, verbose=0), atol=1e-6)
    np.testing.assert_allclose(np.load(tmp_path / "keras_seq_pred.npy"),
                               sequential.predict(np.ones((2, 3, 4)), verbose=0), atol=1e-6)
    again = keras.models.load_model(tmp_path / "pk.keras")
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))
    theirs = keras.models.load_model(tmp_path / "keras.keras")
    assert theirs.compiled and type(theirs.optimizer).__name__ == "Adam"
    assert [type(l.layer).__name__ for l in theirs.layers[1:]] == ["Conv2D", "AveragePooling2D", "Flatten", "Dropout",
                                                                   "Dense"]
    np.testing.assert_allclose(theirs.predict(x, verbose=0), np.load(tmp_path / "keras_own_pred.npy"), atol=1e-6)


def test_config_and_polykeras_files_round_trip(tmp_path):
    model = keras.Sequential([keras.Input((3, 4)), layers.TimeDistributed(layers.Dense(2, use_bias=False)),
                              layers.TimeDistributed(layers.Dropout(0.5))])
    again = keras.Sequential.from_config(model.get_config())
    assert again.get_config() == model.get_config()
    x = np.random.default_rng(8).normal(size=(2, 3, 4))
    model.compile("sgd", "mse", backend="numpy")
    model.save(tmp_path / "m.polykeras")
    loaded = keras.models.load_model(tmp_path / "m.polykeras")
    assert loaded.layers[0].layer.use_bias is False
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert rel_diff(loaded.get_weights()[0], model.get_weights()[0]) == 0


def test_a_keras_file_wrapping_a_kind_polykeras_cannot_is_refused_by_name(tmp_path):
    """A Keras 3 file with ``TimeDistributed(BatchNormalization())`` (each step normalised by its own batch
    statistics in Keras) names the wrapper and the kinds polykeras wraps, instead of calling the file damaged."""
    import json
    import zipfile

    from polykeras.saving import ModelFileError

    pytest.importorskip("h5py")
    keras.Sequential([keras.Input((3, 4)), layers.TimeDistributed(layers.Dense(2))]).save(tmp_path / "td.keras")
    with zipfile.ZipFile(tmp_path / "td.keras") as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    config = json.loads(members["config.json"])
    wrapper = next(entry for entry in config["config"]["layers"] if entry["class_name"] == "TimeDistributed")
    wrapper["config"]["layer"] = {"module": "keras.layers", "class_name": "BatchNormalization",
                                  "config": {"name": "bn"}, "registered_name": None}
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(tmp_path / "bn.keras", "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    with pytest.raises(ModelFileError, match="'time_distributed.*' \\(TimeDistributed\\) is not supported by polykeras: "
                                             "TimeDistributed cannot wrap BatchNormalization .*it wraps Dense"):
        keras.models.load_model(tmp_path / "bn.keras")
