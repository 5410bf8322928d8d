"""Models inside custom layers: a functional ``keras.Model`` and a ``Sequential`` held as attributes of a
custom layer and called in its ``call()``, and a functional model (with ops of its own) used as a layer of
another functional model, twice. Traced into one graph, trained by every backend with float64 parity to the
reference, saved and loaded (``.polykeras``; ``.keras`` with Keras 3, where the class is registered on both
sides, the held models' weights where Keras's saving_lib puts them: ``<attr>/layers/<class numbering>``,
a functional model's input layer included)."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import polykeras as keras
from polykeras import layers, ops

# float64: 2 Adam epochs through ~25 nodes at unit roundoff 1.1e-16; a wrong gradient shows at 1e-6 or above
FLOAT64_PARITY = 1e-12

# The classes, as text: run here with polykeras's `keras`, `layers`, `ops`, and in Keras with its own.
CLASSES = '''
@keras.saving.register_keras_serializable(package="PkNestedModels")
class Encoder(layers.Layer):
    """A functional model (ops of its own inside) and a Sequential as attributes, and a variable."""

    def __init__(self, units=5, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        i = keras.Input((8,))
        h = layers.Dense(units)(i)
        self.encoder = keras.Model(i, layers.Dense(3, activation="relu")(ops.relu(h) * 2.0 + layers.Dense(units)(h)))
        self.head = keras.Sequential([layers.Dense(4, activation="sigmoid"), layers.Dense(3)])

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(3,), initializer="random_normal", name="scale")

    def call(self, x):
        z = self.encoder(x)
        return self.head(z) * self.scale + z

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def build_model():
    inp = keras.Input((8,))
    z = Encoder(name="enc")(inp)
    sub_in = keras.Input((3,))
    sub = keras.Model(sub_in, layers.Dense(2)(ops.sigmoid(layers.Dense(4)(sub_in)) - 0.5), name="sub")
    return keras.Model(inp, layers.Dense(2)(sub(z) + sub(z * 0.5)))   # a model used as a layer, twice


def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(16, 8)), rng.normal(size=(16, 2))
'''
_polykeras_side = {"keras": keras, "layers": layers, "ops": ops, "np": np}
exec(CLASSES, _polykeras_side)  # noqa: S102 -- the same source, with polykeras's names
Encoder, build_model, data = (_polykeras_side[k] for k in ("Encoder", "build_model", "data"))
FIT = {"epochs": 1, "batch_size": 8, "verbose": 0, "shuffle": False}

KERAS = '''
import os, sys, warnings
os.environ["KERAS_BACKEND"] = "jax"
os.environ["JAX_ENABLE_X64"] = "1"
import numpy as np, keras
from keras import layers, ops
keras.config.set_floatx("float64")
''' + CLASSES

# Keras opens polykeras's file, predicts, trains one more epoch (warnings are errors: no skipped variables)
KERAS_READS = KERAS + '''
with warnings.catch_warnings():
    warnings.filterwarnings("error", message=".*(skip|mismatch).*")
    model = keras.saving.load_model(sys.argv[1])
x, y = data()
np.save(sys.argv[2], np.asarray(model.predict(x, verbose=0)))
model.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
model.save(sys.argv[3])
'''

# Keras writes a trained model, and its state one epoch later
KERAS_WRITES = KERAS + '''
keras.utils.set_random_seed(2)
model = build_model()
model.compile("adam", "mse")
x, y = data()
model.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
model.save(sys.argv[1])
np.save(sys.argv[2], np.asarray(model.predict(x, verbose=0)))
model.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
model.save(sys.argv[3])
'''


def _keras(script: str, *args) -> str:
    run = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


def _arrays(path) -> dict[str, np.ndarray]:
    """Every array of a .keras file's weights (the optimizer's too), by HDF5 path."""
    import h5py

    out = {}
    with zipfile.ZipFile(path) as zf, h5py.File(io.BytesIO(zf.read("model.weights.h5")), "r") as h5:
        h5.visititems(lambda name, obj: out.__setitem__(name, np.asarray(obj)) if isinstance(obj, h5py.Dataset)
                      else None)
    return out


@pytest.fixture
def float64():
    before = keras.backend.floatx()
    keras.backend.set_floatx("float64")
    yield
    keras.backend.set_floatx(before)


def _model():
    keras.utils.set_random_seed(1)
    return build_model()


def _train(model, backend, weights):
    model.set_weights(weights)
    model.compile("adam", "mse", backend=backend, dtype="float64")
    history = model.fit(*data(), epochs=2, batch_size=8, verbose=0, shuffle=False)
    return history.history["loss"], model.get_weights()


@pytest.fixture(scope="module")
def reference():
    model = _model()
    start = model.get_weights()
    return start, _train(model, "numpy", start)


def test_models_inside_a_custom_layer_own_their_weights_like_keras():
    model = _model()
    enc = model.get_layer("enc")
    # its own variable, then its layers' as assigned: the functional encoder's, the Sequential's
    assert [w.shape for w in enc.get_weights()] == [(3,), (8, 5), (5,), (5, 5), (5,), (5, 3), (3,), (3, 4), (4,),
                                                   (4, 3), (3,)]
    model.compile("sgd", "mse", backend="numpy")
    x = data()[0]
    z = enc.encoder.predict(x, verbose=0)
    scale = enc.scale.numpy()
    np.testing.assert_allclose(keras.Model(model.inputs, enc.output).predict(x, verbose=0),
                               enc.head.predict(z, verbose=0) * scale + z, rtol=1e-6)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_models_inside_custom_layers_train_like_the_reference_in_float64(backend, reference):
    start, (ref_loss, ref_weights) = reference
    loss, weights = _train(_model(), backend, start)
    np.testing.assert_allclose(loss, ref_loss, rtol=FLOAT64_PARITY)
    for a, b in zip(weights, ref_weights):
        np.testing.assert_allclose(a, b, rtol=FLOAT64_PARITY, atol=FLOAT64_PARITY)


@pytest.mark.parametrize("suffix", [".polykeras", ".keras"])
def test_models_inside_custom_layers_round_trip(tmp_path, suffix, float64):
    model = _model()
    model.compile("adam", "mse", backend="numpy")
    x, y = data()
    model.fit(x, y, **FIT)
    model.save(tmp_path / f"m{suffix}")
    if suffix == ".keras":  # Keras's places: <attr>/layers/<class numbering>, the encoder's input layer included
        import h5py

        arrays = _arrays(tmp_path / "m.keras")
        enc = model.get_layer("enc")
        assert {k.rsplit("/", 2)[0] for k in arrays if k.startswith("layers/encoder/")} == {
            "layers/encoder", "layers/encoder/encoder/layers/dense", "layers/encoder/encoder/layers/dense_1",
            "layers/encoder/encoder/layers/dense_2", "layers/encoder/head/layers/dense",
            "layers/encoder/head/layers/dense_1"}
        np.testing.assert_array_equal(arrays["layers/encoder/encoder/layers/dense_2/vars/0"],
                                      enc.encoder.layers[-1].get_weights()[0])
        with zipfile.ZipFile(tmp_path / "m.keras") as zf, h5py.File(io.BytesIO(zf.read("model.weights.h5"))) as h5:
            assert "layers/encoder/encoder/layers/input_layer/vars" in h5
    loaded = keras.saving.load_model(tmp_path / f"m{suffix}")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.fit(x, y, **FIT).history["loss"] == model.fit(x, y, **FIT).history["loss"]


@pytest.mark.slow  # a Keras process: 15 to 25 s
def test_keras_opens_models_inside_custom_layers_and_trains_on_alike(tmp_path, float64):
    model = _model()
    model.compile("adam", "mse", backend="numpy")
    x, y = data()
    model.fit(x, y, **FIT)
    model.save(tmp_path / "p.keras")
    _keras(KERAS_READS, tmp_path / "p.keras", tmp_path / "y.npy", tmp_path / "k.keras")
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), model.predict(x, verbose=0), rtol=1e-13, atol=1e-15)
    model.fit(x, y, **FIT)
    model.save(tmp_path / "p2.keras")
    keras_state, ours = _arrays(tmp_path / "k.keras"), _arrays(tmp_path / "p2.keras")
    assert set(keras_state) == set(ours)  # weights and the optimizer's variables, path for path
    for name, value in ours.items():
        np.testing.assert_allclose(keras_state[name], value, rtol=1e-12, atol=1e-14, err_msg=name)


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("keras_nested_models")
    _keras(KERAS_WRITES, d / "trained.keras", d / "trained.npy", d / "later.keras")
    return d


@pytest.mark.slow  # the Keras process that writes the files: 15 to 25 s
@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_polykeras_opens_keras_models_inside_custom_layers(keras_files, tmp_path, backend, float64, monkeypatch):
    monkeypatch.setenv("POLYKERAS_BACKEND", backend)  # the backend the file's compile settings compile on
    x, y = data()
    model = keras.saving.load_model(keras_files / "trained.keras")  # compiled from the file, Adam's state too
    assert type(model.get_layer("enc")) is Encoder
    np.testing.assert_allclose(model.predict(x, verbose=0), np.load(keras_files / "trained.npy"), rtol=1e-13,
                               atol=1e-15)
    assert model.backend.name == backend
    model.fit(x, y, **FIT)
    # Keras keeps `sub` as a nested model (layers/functional/...), polykeras flattens it into the graph: the
    # files differ in places, so the states are compared as models: weights now, and after one more epoch on
    # each side from Keras's file of the same point (equal only if the optimizer's state came over alike)
    later = keras.saving.load_model(keras_files / "later.keras")
    for _ in range(2):
        for a, b in zip(model.get_weights(), later.get_weights(), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
        model.fit(x, y, **FIT)
        later.fit(x, y, **FIT)
