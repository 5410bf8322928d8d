"""Training from data pipelines: generators, PyDataset, torch DataLoader, tf.data and
iterables of NumPy batches train exactly as the same batches given as arrays (the core
still draws every step seed, so even dropout agrees), are prefetched on a thread, and
fail clearly."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import polykeras as keras
from polykeras import layers
from polykeras.backends import backend_infos

BATCH = 8


def model(dropout=0.3):
    keras.utils.set_random_seed(0)
    m = keras.Sequential([layers.Input((6,)), layers.Dense(8, activation="relu"), layers.Dropout(dropout),
                          layers.Dense(3, activation="softmax")])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def arrays(n=48, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6)).astype("float32"), rng.integers(0, 3, n)


def batches(x, y):
    return [(x[i:i + BATCH], y[i:i + BATCH]) for i in range(0, len(x), BATCH)]


def trained_on_arrays(epochs=2):
    x, y = arrays()
    m = model()
    keras.utils.set_random_seed(7)
    history = m.fit(x, y, batch_size=BATCH, epochs=epochs, shuffle=False, verbose=0)
    return m.get_weights(), history.history


def assert_same_run(m, history, expected):
    weights, logs = expected
    for a, b in zip(m.get_weights(), weights):
        np.testing.assert_array_equal(a, b)
    assert history.history == logs


def test_a_generator_with_steps_per_epoch_trains_as_the_arrays():
    x, y = arrays()

    def forever():
        while True:
            yield from batches(x, y)

    m = model()
    keras.utils.set_random_seed(7)
    history = m.fit(forever(), steps_per_epoch=len(x) // BATCH, epochs=2, verbose=0)
    assert_same_run(m, history, trained_on_arrays())


class Batches(keras.utils.PyDataset):
    def __init__(self, x, y, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.epochs_ended, self.threads = x, y, 0, set()

    def __len__(self):
        return len(self.x) // BATCH

    def __getitem__(self, i):
        self.threads.add(threading.current_thread().name)
        return self.x[i * BATCH:(i + 1) * BATCH], self.y[i * BATCH:(i + 1) * BATCH]

    def on_epoch_end(self):
        self.epochs_ended += 1


@pytest.mark.parametrize("workers", [1, 3])
def test_a_py_dataset_trains_as_the_arrays_off_the_training_thread(workers):
    x, y = arrays()
    dataset = Batches(x, y, workers=workers)
    m = model()
    keras.utils.set_random_seed(7)
    history = m.fit(dataset, epochs=2, verbose=0)
    assert_same_run(m, history, trained_on_arrays())
    assert dataset.epochs_ended == 2
    # after the first batch (which builds nothing here but is read on the caller's thread), batches come from
    # the prefetching thread, or from its worker pool
    assert any(name.startswith(("polykeras-batches", "ThreadPoolExecutor")) for name in dataset.threads)


def test_an_iterable_of_numpy_batches_is_iterated_again_each_epoch():
    x, y = arrays()
    m = model()
    keras.utils.set_random_seed(7)
    history = m.fit(_Reiterable(batches(x, y)), epochs=2, verbose=0)
    assert_same_run(m, history, trained_on_arrays())


class _Reiterable:
    """A JAX-style loader: a fresh iterator of NumPy batches per epoch, no length."""

    def __init__(self, items):
        self.items = items

    def __iter__(self):
        return iter(self.items)


@pytest.mark.skipif(not backend_infos()["torch"].installed, reason="torch is not installed")
def test_a_torch_data_loader_trains_as_the_arrays():
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    x, y = arrays()
    loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=BATCH, shuffle=False)
    m = model()
    keras.utils.set_random_seed(7)
    history = m.fit(loader, epochs=2, verbose=0, validation_data=loader)
    weights, logs = trained_on_arrays()
    for a, b in zip(m.get_weights(), weights):
        np.testing.assert_array_equal(a, b)
    assert history.history["loss"] == logs["loss"] and "val_loss" in history.history
    assert m.evaluate(loader, verbose=0) == pytest.approx(m.evaluate(x, y, batch_size=BATCH, verbose=0))
    np.testing.assert_array_equal(m.predict(loader, verbose=0), m.predict(x, batch_size=BATCH, verbose=0))


@pytest.mark.slow
@pytest.mark.skipif(not backend_infos()["keras-tensorflow"].installed, reason="tensorflow is not installed")
def test_a_tf_data_dataset_trains_as_the_arrays(tmp_path):
    """In a child process: importing TensorFlow into the test process would slow every other test."""
    script = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(tmp_path)!r})
        import numpy as np, tensorflow as tf
        sys.path.insert(0, "tests")
        from test_data_sources import arrays, model, trained_on_arrays, BATCH
        import polykeras as keras
        x, y = arrays()
        m = model(); keras.utils.set_random_seed(7)
        m.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH), epochs=2, verbose=0)
        assert all(np.array_equal(a, b) for a, b in zip(m.get_weights(), trained_on_arrays()[0]))
        print("same weights")
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert "same weights" in run.stdout, run.stderr[-2000:]


def test_a_generator_that_runs_out_stops_training_with_a_warning():
    x, y = arrays()
    m = model()
    with pytest.warns(RuntimeWarning, match="ran out in epoch 2"):
        history = m.fit(iter(batches(x, y)), epochs=3, verbose=0)
    assert len(history.history["loss"]) == 1


def test_bad_batches_and_arguments_are_explained():
    x, y = arrays()
    m = model()
    with pytest.raises(ValueError, match=r"must be a tuple \(x, y\)"):
        m.fit(iter([x[:8]]), verbose=0)
    with pytest.raises(ValueError, match="sample weights come in its"):
        m.fit(iter(batches(x, y)), sample_weight=np.ones(len(x)), verbose=0)
    with pytest.raises(ValueError, match="pass y=None"):
        m.fit(iter(batches(x, y)), y, verbose=0)
    with pytest.raises(ValueError, match="input data does not match"):
        m.fit(iter([(x[:8, :4], y[:8])]), verbose=0)

    def broken():
        yield x[:8], y[:8]
        raise OSError("disk gone")

    m = model(dropout=0.0)
    with pytest.raises(OSError, match="disk gone") as raised:  # raised in the training thread, not lost
        m.fit(broken(), epochs=1, verbose=0)
    assert "batch 2 of epoch 1" in " ".join(raised.value.__notes__)
    one_step = model(dropout=0.0)
    one_step.fit(iter([(x[:8], y[:8])]), epochs=1, verbose=0)
    for kept, expected in zip(m.get_weights(), one_step.get_weights()):  # the weights of the step before
        np.testing.assert_array_equal(kept, expected)
    with pytest.raises(NotImplementedError, match="use_multiprocessing"):
        m.fit(Batches(x, y, use_multiprocessing=True), verbose=0)


def test_predict_takes_batches_of_x_alone():
    x, _ = arrays()
    m = model()
    np.testing.assert_array_equal(m.predict(iter([x[:8], x[8:16]]), verbose=0), m.predict(x[:16], batch_size=8,
                                                                                             verbose=0))
