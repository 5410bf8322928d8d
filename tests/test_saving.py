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


@pytest.mark.parametrize("name", ["model.keras", "model.polykeras", "MODEL.Keras"])
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


@pytest.mark.parametrize("name, message", [("model.h5", "legacy HDF5 .*not supported.*\\.keras"),
                                           ("model.hdf5", "legacy HDF5"), ("model", "invalid file name extension"),
                                           ("model.zip", "add .keras .*or .polykeras")])
def test_other_suffixes_are_refused_as_keras_refuses_them(tmp_path, name, message):
    model, _, _ = trained_model()
    with pytest.raises(ValueError, match=message):
        model.save(tmp_path / name)
    with pytest.raises(ValueError, match=message):
        keras.models.save_model(model, tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_a_keras_file_is_keras_3s_format(tmp_path):
    """``.keras`` means Keras 3's zip: config.json (with compile_config), model.weights.h5 (layers and the
    optimizer's variables: iteration, learning_rate, then RMSprop's velocities), metadata.json."""
    import h5py

    model, _, _ = trained_model()
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as zf:
        assert sorted(zf.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
        config = json.loads(zf.read("config.json"))
        meta = json.loads(zf.read("metadata.json"))
        with h5py.File(io.BytesIO(zf.read("model.weights.h5"))) as h5:
            names = sorted(h5["layers"])
            opt = [np.asarray(h5[f"optimizer/vars/{i}"]) for i in range(len(h5["optimizer/vars"]))]
    assert config["class_name"] == "Sequential" and names == ["dense", "dense_1", "dropout"]
    compile_config = config["compile_config"]
    assert compile_config["optimizer"]["module"] == "keras.optimizers"
    assert compile_config["optimizer"]["class_name"] == "RMSprop"
    assert compile_config["optimizer"]["config"]["learning_rate"] == 0.01
    assert compile_config["loss"]["class_name"] == "SparseCategoricalCrossentropy"
    assert compile_config["metrics"] == ["accuracy"]
    assert "keras_version" in meta and "polykeras" in meta
    state = model._optimizer_state()
    assert int(opt[0]) == model.optimizer.iterations == state.iterations > 0 and float(opt[1]) == np.float32(0.01)
    assert len(opt) == 2 + 4
    for got, expected in zip(opt[2:], state.slots["velocity"]):  # RMSprop: one velocity per trainable weight
        np.testing.assert_array_equal(got, expected)


def test_an_optimizer_state_the_backend_keeps_to_itself_is_not_written_as_zeros(tmp_path, monkeypatch):
    """A model trained on a backend without "optimizer_state" (Keras's): the .keras file holds the true
    iteration count and no slots, which Keras and polykeras then skip with a warning -- not zero moments
    passed off as the state."""
    import h5py

    model, _, _ = trained_model()
    monkeypatch.setattr(type(model), "_optimizer_state", lambda self: None)
    model.save(tmp_path / "m.keras")
    monkeypatch.undo()
    with zipfile.ZipFile(tmp_path / "m.keras") as zf, h5py.File(io.BytesIO(zf.read("model.weights.h5"))) as h5:
        assert len(h5["optimizer/vars"]) == 2 and int(np.asarray(h5["optimizer/vars/0"])) == 2
    with pytest.warns(RuntimeWarning, match="holds 0; its state is not restored"):
        loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded._pending_optimizer_state is None


def test_save_weights_and_load_weights(tmp_path):
    model, x, _ = trained_model()
    model.save_weights(tmp_path / "w.weights.h5")
    other = keras.Sequential.from_config(model.get_config())
    other.load_weights(tmp_path / "w.weights.h5")
    np.testing.assert_array_equal(other.predict(x, verbose=0), model.predict(x, verbose=0))


def test_saved_file_holds_json_and_npy_only(tmp_path):
    model, _, _ = trained_model()
    model.save(tmp_path / "m.polykeras")
    with zipfile.ZipFile(tmp_path / "m.polykeras") as zf:
        assert sorted(zf.namelist()) == ["optimizer.npz", "polykeras.json", "weights.npz"]  # it has trained
        config = json.loads(zf.read("polykeras.json"))
        with np.load(io.BytesIO(zf.read("optimizer.npz")), allow_pickle=False) as npz:
            assert int(npz["iterations"]) == model.optimizer.iterations > 0
    assert config["model_config"]["class_name"] == "Sequential"
    assert config["spec"]["layers"][0]["weights"][0]["regularizer"] == {"l1": 0.0, "l2": 1e-3}


@pytest.mark.parametrize("name", ["m.keras", "m.polykeras"])
def test_truncated_file_is_reported(tmp_path, name):
    model, _, _ = trained_model()
    path = tmp_path / name
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
    path = tmp_path / "m.polykeras"
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


@pytest.mark.parametrize("name", ["m.keras", "m.polykeras"])
def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch, name):
    model, _, _ = trained_model()
    path = tmp_path / name
    model.save(path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("os.fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


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
