"""Custom layers (and Lambda) in Keras 3 ``.keras`` files, both ways: a class registered under the
same name on both sides (``register_keras_serializable``; Keras's written with ``keras.ops``,
polykeras's with ``polykeras.ops``, from one source text) carries the model across with identical
float64 predictions, its weights where Keras's saving_lib puts them (own variables in ``vars``,
trainable first; nested layers under their attribute names, lists numbered by class; a nested
Sequential's under ``layers/``), and the optimizer's state, so training continues alike."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import polykeras as keras
from polykeras import layers, ops

# The classes, as text: run here with polykeras's `keras`, `layers`, `ops`, and in Keras with its own.
CLASSES = '''
@keras.saving.register_keras_serializable(package="PkFileTests")
class Linear(layers.Layer):
    def __init__(self, units=4, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="random_normal", name="w")
        self.b = self.add_weight(shape=(self.units,), initializer="random_normal", name="b")

    def call(self, x):
        return ops.matmul(x, self.w) + self.b

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="PkFileTests")
class Block(layers.Layer):
    """Own variables created non-trainable first (Keras lists trainable first), a nested custom layer
    named to sort last, a built-in layer, a nested Sequential, and a list of layers."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.zlinear = Linear(6)
        self.dense = layers.Dense(6, activation="relu")
        self.seq = keras.Sequential([layers.Dense(6), layers.Dense(6)])
        self.items = [layers.Dense(6), Linear(6)]

    def build(self, input_shape):
        self.offset = self.add_weight(shape=(6,), initializer="random_normal", name="offset", trainable=False)
        self.scale = self.add_weight(shape=(), initializer="random_normal", name="scale")

    def call(self, x, training=None):
        h = ops.relu(self.zlinear(x)) * self.scale + self.offset
        h = self.items[1](self.items[0](self.seq(h)))
        return self.dense(h) + h


@keras.saving.register_keras_serializable(package="PkFileTests")
def square(x):
    return ops.square(x)


def build_model():
    inp = keras.Input((10,))
    hidden = layers.Lambda(square)(Block(name="block")(layers.Dense(5)(inp)))
    return keras.Model(inp, layers.Dense(2)(hidden))


def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(16, 10)), rng.normal(size=(16, 2))
'''
_polykeras_side = {"keras": keras, "layers": layers, "ops": ops, "np": np}
exec(CLASSES, _polykeras_side)  # noqa: S102 -- the same source, with polykeras's names
Linear, Block, build_model, data = (_polykeras_side[k] for k in ("Linear", "Block", "build_model", "data"))
FIT = {"epochs": 1, "batch_size": 8, "verbose": 0, "shuffle": False}

# Keras in float64 on jax (x64 on; Keras's Dense(activation="tanh") rounds through float32 there, so the
# classes use relu, whose results are exact)
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
print("PATHS", [w.path for w in model.weights])
model.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
model.save(sys.argv[3])
'''

# Keras writes: a trained model (and its state one epoch later), a model whose class polykeras gets only by
# custom_objects, and a Lambda holding a Python lambda (bytecode)
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

@keras.saving.register_keras_serializable(package="Other")
class Scale(layers.Layer):
    def build(self, input_shape):
        self.gain = self.add_weight(shape=(input_shape[-1],), initializer="random_normal", name="gain")

    def call(self, x):
        return x * self.gain

inp = keras.Input((10,))
other = keras.Model(inp, Scale(name="scale")(inp))
other.save(sys.argv[4])
np.save(sys.argv[5], np.asarray(other.predict(x, verbose=0)))
inp = keras.Input((10,))
lam = keras.Model(inp, layers.Lambda(lambda t: ops.relu(t) * 3.0 + 1.0)(layers.Dense(4)(inp)))
lam.save(sys.argv[6])
np.save(sys.argv[7], np.asarray(lam.predict(x, verbose=0)))
seq = keras.Sequential([keras.Input((10,)), Linear(5, name="lin"), Block(name="block"), layers.Dense(2)])
seq.save(sys.argv[8])
np.save(sys.argv[9], np.asarray(seq.predict(x, verbose=0)))
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


@pytest.fixture(autouse=True)
def float64():
    """floatx float64 here, as in the Keras scripts: weights, files and loaded models in float64."""
    before = keras.backend.floatx()
    keras.backend.set_floatx("float64")
    yield
    keras.backend.set_floatx(before)


def _float64_model():
    keras.utils.set_random_seed(1)
    model = build_model()
    model.compile("adam", "mse", backend="numpy")
    return model


def test_a_custom_layer_goes_through_a_keras_file_and_back_with_its_weights_in_keras_places(tmp_path):
    model = _float64_model()
    x, y = data()
    model.fit(x, y, **FIT)
    model.save(tmp_path / "m.keras")
    arrays = _arrays(tmp_path / "m.keras")
    block = model.get_layer("block")
    own = [block.scale, block.offset]  # trainable first, each kind in add_weight order
    np.testing.assert_array_equal(arrays["layers/block/vars/0"], own[0].numpy())
    np.testing.assert_array_equal(arrays["layers/block/vars/1"], own[1].numpy())
    for where, layer in [("zlinear", block.zlinear), ("dense", block.dense), ("items/dense", block.items[0]),
                         ("items/linear", block.items[1]), ("seq/layers/dense_1", block.seq.layers[1])]:
        for i, value in enumerate(layer.get_weights()):
            np.testing.assert_array_equal(arrays[f"layers/block/{where}/vars/{i}"], value, err_msg=where)

    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert type(loaded.get_layer("block")) is Block
    assert loaded.compiled
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    loss = model.fit(x, y, **FIT).history["loss"]  # the optimizer's state came along: training goes on alike
    assert loaded.fit(x, y, **FIT).history["loss"] == loss
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow  # a Keras process: 15 to 25 s
def test_keras_opens_polykeras_custom_layers_and_trains_on_alike(tmp_path):
    model = _float64_model()
    x, y = data()
    model.fit(x, y, **FIT)
    model.save(tmp_path / "p.keras")
    out = _keras(KERAS_READS, tmp_path / "p.keras", tmp_path / "y.npy", tmp_path / "k.keras")
    assert "'block/linear/w'" in out  # Keras rebuilt the custom layers from its own registered classes
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), model.predict(x, verbose=0), rtol=1e-13, atol=1e-15)
    model.fit(x, y, **FIT)
    model.save(tmp_path / "p2.keras")
    keras_state, ours = _arrays(tmp_path / "k.keras"), _arrays(tmp_path / "p2.keras")
    assert set(keras_state) == set(ours)  # weights and the optimizer's variables, path for path
    for name, value in ours.items():
        np.testing.assert_allclose(keras_state[name], value, rtol=1e-12, atol=1e-14, err_msg=name)


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("keras_writes")
    names = ["trained.keras", "trained.npy", "later.keras", "other.keras", "other.npy", "lambda.keras", "lambda.npy",
             "seq.keras", "seq.npy"]
    _keras(KERAS_WRITES, *[d / n for n in names])
    return {n: d / n for n in names}


@pytest.mark.slow  # the Keras process that writes the files: 15 to 25 s
def test_polykeras_opens_keras_custom_layers_with_identical_predictions_and_training(keras_files, tmp_path):
    x, y = data()
    model = keras.saving.load_model(keras_files["trained.keras"])
    assert type(model.get_layer("block")) is Block
    want = np.load(keras_files["trained.npy"])
    for backend in ("numpy", "torch", "jax"):
        model.compile(model.optimizer, "mse", backend=backend)
        np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-13, atol=1e-15, err_msg=backend)
    model = keras.saving.load_model(keras_files["trained.keras"])  # compiled from the file, Adam's state too
    model.fit(x, y, **FIT)
    model.save(tmp_path / "p.keras")
    keras_state, ours = _arrays(keras_files["later.keras"]), _arrays(tmp_path / "p.keras")
    assert set(keras_state) == set(ours)
    for name, value in ours.items():
        np.testing.assert_allclose(value, keras_state[name], rtol=1e-12, atol=1e-14, err_msg=name)


@pytest.mark.slow  # the Keras process that writes the files: 15 to 25 s
def test_a_keras_sequential_of_custom_layers_loads_with_identical_predictions(keras_files):
    model = keras.saving.load_model(keras_files["seq.keras"])
    assert isinstance(model, keras.Sequential)
    assert [type(layer).__name__ for layer in model.layers] == ["Linear", "Block", "Dense"]
    model.compile("sgd", "mse", backend="numpy")
    np.testing.assert_allclose(model.predict(data()[0], verbose=0), np.load(keras_files["seq.npy"]), rtol=1e-13,
                               atol=1e-15)


@pytest.mark.slow  # the Keras process that writes the files: 15 to 25 s
def test_a_class_known_only_by_custom_objects_loads_and_an_unknown_one_is_named(keras_files):
    class Scale(layers.Layer):  # not registered here
        def build(self, input_shape):
            self.gain = self.add_weight(shape=(input_shape[-1],), initializer="zeros", name="gain")

        def call(self, x):
            return x * self.gain

    with pytest.raises(keras.saving.UnknownObjectError, match=r"custom class 'Other>Scale'.*custom_objects"):
        keras.saving.load_model(keras_files["other.keras"])
    model = keras.saving.load_model(keras_files["other.keras"], custom_objects={"Other>Scale": Scale})
    model.compile("sgd", "mse", backend="numpy")
    np.testing.assert_allclose(model.predict(data()[0], verbose=0), np.load(keras_files["other.npy"]), rtol=1e-14)
    model = keras.saving.load_model(keras_files["other.keras"], custom_objects={"Scale": Scale})  # by class name
    assert type(model.get_layer("scale")) is Scale


@pytest.mark.slow  # the Keras process that writes the files: 15 to 25 s
def test_a_keras_lambda_loads_from_bytecode_with_safe_mode_false_only(keras_files):
    with pytest.raises(keras.saving.ModelFileError, match="Python lambda stored as bytecode.*safe_mode=False"):
        keras.saving.load_model(keras_files["lambda.keras"])
    model = keras.saving.load_model(keras_files["lambda.keras"], safe_mode=False)  # traced with polykeras.ops
    model.compile("sgd", "mse", backend="numpy")
    np.testing.assert_allclose(model.predict(data()[0], verbose=0), np.load(keras_files["lambda.npy"]), rtol=1e-14)


def test_custom_objects_come_before_the_registry_and_an_unknown_class_is_named(tmp_path):
    class Other(layers.Layer):  # not registered: given by custom_objects under the file's name for Linear
        def __init__(self, units=4, **kwargs):
            super().__init__(**kwargs)
            self.units = units

        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1], self.units), name="w")
            self.b = self.add_weight(shape=(self.units,), name="b")

        def call(self, x):
            return ops.matmul(x, self.w) - self.b

    keras.utils.set_random_seed(4)
    inp = keras.Input((3,))
    model = keras.Model(inp, Linear(2, name="lin")(inp))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", custom_objects={"PkFileTests>Linear": Other})
    assert type(loaded.get_layer("lin")) is Other
    x = data()[0][:, :3]
    w, b = model.get_layer("lin").get_weights()
    loaded.compile("sgd", "mse", backend="numpy")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), x @ w - b, rtol=1e-13)
    with zipfile.ZipFile(tmp_path / "m.keras") as zf:  # the same file naming a class nobody registered
        members = {name: zf.read(name) for name in zf.namelist()}
    members["config.json"] = members["config.json"].replace(b"PkFileTests>Linear", b"Nowhere>Linear")
    with zipfile.ZipFile(tmp_path / "n.keras", "w") as zf:
        for name, data_ in members.items():
            zf.writestr(name, data_)
    with pytest.raises(keras.saving.UnknownObjectError, match=r"layer 'lin' is of the custom class 'Nowhere>Linear'"
                       r".*register_keras_serializable.*custom_objects"):
        keras.saving.load_model(tmp_path / "n.keras")


def test_what_a_keras_file_cannot_name_is_refused_with_what_to_do(tmp_path):
    class Unregistered(layers.Layer):
        def call(self, x):
            return ops.relu(x)

    inp = keras.Input((3,))
    with pytest.raises(keras.saving.KerasFileError, match=r"class 'Unregistered' is not registered.*"
                       r"register_keras_serializable.*\.polykeras"):
        keras.Model(inp, Unregistered(name="u")(inp)).save(tmp_path / "u.keras")
    with pytest.raises(keras.saving.KerasFileError, match="Python lambda.*named function.*register"):
        keras.Model(inp, layers.Lambda(lambda t: ops.relu(t))(inp)).save(tmp_path / "l.keras")
    keras.Model(inp, Unregistered(name="u")(inp)).save(tmp_path / "u.polykeras")  # the traced graph needs no class


def test_a_sequential_and_a_subclassed_model_with_custom_layers_round_trip(tmp_path):
    class Classifier(keras.Model):
        def __init__(self):
            super().__init__()
            self.block, self.head = Block(), layers.Dense(2)

        def call(self, x, training=None):
            return self.head(self.block(x))

    x = data()[0]
    for model in (keras.Sequential([keras.Input((10,)), Linear(3, name="lin"), Block()]), Classifier()):
        model.compile("sgd", "mse", backend="numpy")
        want = model.predict(x, verbose=0)
        model.save(tmp_path / "m.keras")
        np.testing.assert_array_equal(keras.saving.load_model(tmp_path / "m.keras").predict(x, verbose=0), want)


def test_a_run_with_custom_layers_resumes_from_a_keras_backup(tmp_path):
    """restore_training (BackupAndRestore's reader) finds a custom layer's weights at Keras's places too."""
    x, y = data()
    model = _float64_model()
    model.fit(x, y, **FIT)
    keras.saving.save_model(model, tmp_path / "backup.keras", training_state={"epoch": 1})
    resumed = _float64_model()  # the same architecture, fresh weights
    assert keras.saving.restore_training(resumed, tmp_path / "backup.keras") == {"epoch": 1}
    for a, b in zip(resumed.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert resumed.fit(x, y, **FIT).history["loss"] == model.fit(x, y, **FIT).history["loss"]
