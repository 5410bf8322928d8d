"""model.save / load_model / save_weights: portable, atomic, never executes code."""

import io
import json
import zipfile

import numpy as np
import pytest

import polykeras as keras
from polykeras import layers
from polykeras.saving import ModelFileError


def trained_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([layers.Dense(8, activation="relu", input_dim=4,
                                           kernel_regularizer=keras.regularizers.l2(1e-3)),
                              layers.Dropout(0.2), layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.RMSprop(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = np.arange(64) % 3
    model.fit(x, y, epochs=1, verbose=0)
    return model, x, y


@pytest.mark.parametrize("name", ["model.keras", "model.h5", "model.polykeras"])
def test_save_and_load_model_round_trip(tmp_path, name):
    model, x, y = trained_model()
    path = tmp_path / name
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert isinstance(loaded.optimizer, keras.optimizers.RMSprop) and loaded.optimizer.learning_rate == 0.01
    assert loaded.evaluate(x, y, verbose=0) == pytest.approx(model.evaluate(x, y, verbose=0))
    assert loaded.layers[0].kernel_regularizer.l2 == 1e-3
    assert list(tmp_path.iterdir()) == [path]  # no temporary files left behind


def test_save_weights_and_load_weights(tmp_path):
    model, x, _ = trained_model()
    model.save_weights(tmp_path / "w.weights.h5")
    other = keras.Sequential.from_config(model.get_config())
    other.load_weights(tmp_path / "w.weights.h5")
    np.testing.assert_array_equal(other.predict(x, verbose=0), model.predict(x, verbose=0))


def test_saved_file_holds_json_and_npy_only(tmp_path):
    model, _, _ = trained_model()
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as zf:
        assert sorted(zf.namelist()) == ["optimizer.npz", "polykeras.json", "weights.npz"]  # it has trained
        config = json.loads(zf.read("polykeras.json"))
        with np.load(io.BytesIO(zf.read("optimizer.npz")), allow_pickle=False) as npz:
            assert int(npz["iterations"]) == model.optimizer.iterations > 0
    assert config["model_config"]["class_name"] == "Sequential"
    assert config["spec"]["layers"][0]["weights"][0]["regularizer"] == {"l1": 0.0, "l2": 1e-3}


def test_truncated_file_is_reported(tmp_path):
    model, _, _ = trained_model()
    path = tmp_path / "m.keras"
    model.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="corrupt or truncated"):
        keras.models.load_model(path)


def test_garbage_and_foreign_files_are_reported(tmp_path):
    (tmp_path / "junk.keras").write_bytes(b"not a model at all")
    with pytest.raises(ModelFileError, match="not a polykeras model file"):
        keras.models.load_model(tmp_path / "junk.keras")
    (tmp_path / "old.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(ModelFileError, match="HDF5"):
        keras.models.load_model(tmp_path / "old.h5")
    with pytest.raises(FileNotFoundError):
        keras.models.load_model(tmp_path / "missing.keras")


def test_pickled_arrays_are_refused(tmp_path):
    model, _, _ = trained_model()
    path = tmp_path / "m.keras"
    model.save(path)
    with zipfile.ZipFile(path) as zf:
        config = json.loads(zf.read("polykeras.json"))
    del config["weights_sha256"]  # as a file without the checksum: the arrays themselves must be refused
    config = json.dumps(config)
    import io

    buf = io.BytesIO()
    objects = {f"{l.name}/{w.name}": np.array([object()] * 1, dtype=object) for l, w in model._spec().weight_specs}
    np.savez(buf, **objects)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("polykeras.json", config)
        zf.writestr("weights.npz", buf.getvalue())
    with pytest.raises(ModelFileError, match="corrupt"):
        keras.models.load_model(path)


def test_weights_from_another_model_are_refused(tmp_path):
    model, _, _ = trained_model()
    model.save_weights(tmp_path / "w.npz")
    other = keras.Sequential([layers.Dense(5, input_dim=4)])
    with pytest.raises(ModelFileError, match="no weight"):
        other.load_weights(tmp_path / "w.npz")


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    model, _, _ = trained_model()
    path = tmp_path / "m.keras"
    model.save(path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("os.fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]


def test_functional_model_round_trips_through_a_keras_file(tmp_path):
    """A functional model -- two inputs, a shared layer, merge layers and operators, a Sequential used as
    a layer, two outputs -- written as a Keras 3 .keras file and read back (no Keras involved; the files
    against Keras itself are checked in test_keras_backend.py)."""
    pytest.importorskip("h5py")
    keras.utils.set_random_seed(4)
    a, b = keras.Input(shape=(4,)), keras.Input(shape=(4,))
    shared = layers.Dense(3, activation="tanh")
    inner = keras.Sequential([layers.Dense(5, activation="relu", input_shape=(3,)), layers.Dense(3)])
    sa, sb = shared(a), shared(b)
    h = layers.Concatenate()([inner(sa) + sb, layers.Maximum()([sa, inner(sb)])])
    model = keras.Model([a, b], [layers.Dense(2, activation="softmax")(h), layers.Dot(axes=1)([sa, sb])])
    rng = np.random.default_rng(0)
    model.set_weights([w + rng.normal(scale=0.1, size=w.shape).astype(w.dtype) for w in model.get_weights()])
    path = tmp_path / "graph.keras"
    keras.saving.export_keras(model, path)
    with zipfile.ZipFile(path) as zf:
        config = json.loads(zf.read("config.json"))
    assert config["class_name"] == "Functional" and len(config["config"]["output_layers"]) == 2
    entry = next(e for e in config["config"]["layers"] if e["name"] == shared.name)
    assert len(entry["inbound_nodes"]) == 2  # one per call
    loaded = keras.models.load_model(path)
    assert loaded._spec().features == model._spec().features == {"multiple_inputs", "multiple_outputs",
                                                                  "shared_layers"}
    x = [rng.normal(size=(6, 4)).astype("float32"), rng.normal(size=(6, 4)).astype("float32")]
    for got, expected in zip(loaded.predict(x, verbose=0), model.predict(x, verbose=0)):
        np.testing.assert_array_equal(got, expected)
