"""fit / evaluate / predict: Keras semantics, data order, errors."""

import math

import numpy as np
import pytest

import polykeras as keras
from polykeras import layers
from polykeras.models import Sequential


def blobs(n=200, d=4, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3, size=(classes, d))
    y = rng.integers(0, classes, n)
    return (centers[y] + rng.normal(size=(n, d))).astype("float32"), y


def classifier(d=4, classes=3, **compile_kwargs):
    model = Sequential([layers.Dense(16, activation="relu", input_dim=d), layers.Dense(classes, activation="softmax")])
    model.compile(**{"optimizer": "adam", "loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"],
                     **compile_kwargs})
    return model


def test_fit_learns_and_history_has_keras_keys():
    keras.utils.set_random_seed(0)
    x, y = blobs()
    model = classifier(optimizer=keras.optimizers.Adam(0.05))
    history = model.fit(x, y, epochs=8, batch_size=32, validation_split=0.2, verbose=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(history.history["loss"]) == 8 and history.epoch == list(range(8))
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.history["accuracy"][-1] > 0.9
    loss, acc = model.evaluate(x, y, verbose=0)
    assert acc > 0.9 and loss < 0.5
    assert model.evaluate(x, y, verbose=0, return_dict=True).keys() == {"loss", "accuracy"}


def test_same_seed_same_run():
    runs = []
    for _ in range(2):
        keras.utils.set_random_seed(3)
        x, y = blobs()
        model = classifier()
        model.fit(x, y, epochs=2, verbose=0)
        runs.append(model.get_weights())
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_epoch_loss_is_sample_weighted_mean_of_batches():
    """The logged loss is the mean over samples of per-batch losses (Keras's
    Mean metric weighted by batch size), here checked with a zero learning rate."""
    keras.utils.set_random_seed(0)
    x, y = blobs(n=70)
    model = classifier(optimizer=keras.optimizers.SGD(0.0), metrics=[])
    history = model.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)
    batch_losses = [model.test_on_batch(x[i:i + 32], y[i:i + 32]) for i in range(0, 70, 32)]
    expected = (32 * batch_losses[0] + 32 * batch_losses[1] + 6 * batch_losses[2]) / 70
    assert history.history["loss"][0] == pytest.approx(expected, rel=1e-6)


def test_evaluate_return_forms_and_predict():
    x, y = blobs(n=50)
    model = classifier(metrics=[])
    assert isinstance(model.evaluate(x, y, verbose=0), float)
    model = classifier()
    assert len(model.evaluate(x, y, verbose=0)) == 2
    out = model.predict(x, batch_size=7, verbose=0)
    assert out.shape == (50, 3) and out.dtype == np.float32
    np.testing.assert_allclose(model.predict_on_batch(x[:5]), out[:5], rtol=1e-6)
    np.testing.assert_allclose(model(x[:5]), out[:5], rtol=1e-6)


def test_train_and_test_on_batch():
    x, y = blobs(n=32)
    model = classifier()
    loss, acc = model.train_on_batch(x, y)
    assert math.isfinite(loss) and 0 <= acc <= 1
    assert set(model.test_on_batch(x, y, return_dict=True)) == {"loss", "accuracy"}


def test_validation_data_and_initial_epoch():
    x, y = blobs()
    model = classifier()
    history = model.fit(x, y, epochs=3, initial_epoch=1, validation_data=(x[:20], y[:20]), verbose=0)
    assert history.epoch == [1, 2] and "val_accuracy" in history.history


def test_accuracy_resolution_like_keras():
    x, y = blobs(n=40, classes=2)
    binary = Sequential([layers.Dense(1, activation="sigmoid", input_dim=4)])
    binary.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    binary.fit(x, y, epochs=1, verbose=0)
    assert [(m.name, m.kind) for m in binary._program.training.metrics] == [("accuracy", "binary_accuracy")]
    onehot = Sequential([layers.Dense(2, activation="softmax", input_dim=4)])
    onehot.compile("adam", "categorical_crossentropy", metrics=["acc"])
    h = onehot.fit(x, keras.utils.to_categorical(y, 2), epochs=1, verbose=0)
    assert [(m.name, m.kind) for m in onehot._program.training.metrics] == [("acc", "categorical_accuracy")]
    assert "acc" in h.history


def test_steps_per_execution_gives_the_same_weights():
    x, y = blobs(n=100)
    results = []
    for n in (1, 4):
        keras.utils.set_random_seed(5)
        model = classifier(steps_per_execution=n)
        model.fit(x, y, epochs=2, batch_size=16, verbose=0)
        results.append(model.get_weights())
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_reduce_learning_rate_reaches_the_program():
    x, y = blobs(n=40)
    model = classifier(optimizer=keras.optimizers.SGD(0.1))
    model.fit(x, y, epochs=1, verbose=0)
    model.optimizer.learning_rate = 0.0
    before = model.get_weights()
    model.fit(x, y, epochs=1, verbose=0)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_float64_end_to_end():
    x, y = blobs(n=40)
    model = classifier(dtype="float64")
    model.fit(x, y, epochs=1, verbose=0)
    assert model.predict(x, verbose=0).dtype == np.float64
    assert all(w.dtype == np.float64 for w in model._program.get_weights())


# -- errors ------------------------------------------------------------------------------------
def test_fit_before_compile():
    model = Sequential([layers.Dense(1, input_dim=2)])
    with pytest.raises(RuntimeError, match="must be compiled"):
        model.fit(np.ones((4, 2)), np.ones(4))


def test_wrong_input_shape_names_layer_and_shapes():
    model = classifier()
    with pytest.raises(ValueError, match=r"first layer 'dense.*' \(Dense\) expects shape \(None, 4\), got an array of shape \(10, 2, 2\).*Flatten"):
        model.fit(np.ones((10, 2, 2)), np.zeros(10), verbose=0)


def test_mismatched_lengths():
    with pytest.raises(ValueError, match="different numbers of samples: 10 and 9"):
        classifier().fit(np.ones((10, 4)), np.zeros(9), verbose=0)


def test_integer_labels_with_categorical_crossentropy():
    model = classifier(loss="categorical_crossentropy")
    with pytest.raises(ValueError, match="sparse_categorical_crossentropy.*to_categorical"):
        model.fit(np.ones((10, 4)), np.zeros(10), verbose=0)


def test_labels_out_of_range():
    with pytest.raises(ValueError, match=r"class labels must be in \[0, 2\]"):
        classifier().fit(np.ones((4, 4)), np.array([0, 1, 2, 3]), verbose=0)


@pytest.mark.parametrize("kwargs,match", [
    ({"optimizer": "adamm"}, "unknown optimizer 'adamm'.*adam"),
    ({"loss": "crossentropy_x"}, "unknown loss 'crossentropy_x'"),
    ({"metrics": ["accuracyy"]}, "unknown metric 'accuracyy'"),
])
def test_unknown_names_in_compile(kwargs, match):
    with pytest.raises(ValueError, match=match):
        classifier(**kwargs)


def test_nan_loss_warns_and_terminate_on_nan_stops(recwarn):
    x, y = blobs(n=64)
    x[5, 0] = np.nan
    model = classifier()
    history = model.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0,
                        callbacks=[keras.callbacks.TerminateOnNaN()])
    assert len(history.history["loss"]) == 1  # stopped during the first epoch, which History kept
    model2 = classifier()
    with pytest.warns(RuntimeWarning, match="diverged"):
        model2.fit(x, y, epochs=1, verbose=0)


def test_callbacks_with_a_real_model(tmp_path):
    """EarlyStopping, ModelCheckpoint, CSVLogger and ReduceLROnPlateau driving a real fit."""
    keras.utils.set_random_seed(0)
    x, y = blobs(n=120)
    model = classifier(optimizer=keras.optimizers.SGD(0.0))  # nothing improves: every patience runs out
    checkpoint = tmp_path / "best-{epoch:02d}.keras"
    history = model.fit(x, y, epochs=20, validation_split=0.25, verbose=0, callbacks=[
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True),
        keras.callbacks.ModelCheckpoint(str(checkpoint), save_best_only=True),
        keras.callbacks.CSVLogger(str(tmp_path / "log.csv")),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", patience=1, factor=0.5),
    ])
    assert len(history.epoch) == 3  # epoch 1 sets the best, two more without improvement
    assert (tmp_path / "best-01.keras").exists()
    loaded = keras.models.load_model(tmp_path / "best-01.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    rows = (tmp_path / "log.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,") and len(rows) == 4
    assert model.optimizer.learning_rate == 0.0 and "learning_rate" in history.history


def test_progress_bar_output(capsys):
    x, y = blobs(n=64)
    classifier().fit(x, y, epochs=2, batch_size=32, verbose=2)
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out
    assert out.count("2/2 - ") == 2 and "accuracy:" in out and "loss:" in out
