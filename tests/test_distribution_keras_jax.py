"""keras-jax trains data-parallel with Keras's own ``keras.distribution.DataParallel`` in its
worker process, and equals its 1-device run.

The test process needs no ``XLA_FLAGS``: asked for 2 replicas on a CPU, the backend moves the
program to a worker whose JAX has 2 host devices. Keras replicates the variables and splits
each batch along its first axis (rows ``[i*B/2, (i+1)*B/2)`` on device ``i``); its jitted step
computes the mean loss over the global batch, so in float64 the one difference from one device
is the all-reduce's summation order -- L4's 1e-10 (measured 1.8e-16 in the weights after 20 Adam
steps of a small MLP with dropout, and 0 in the logs)."""

import numpy as np
import pytest

import polykeras
from polykeras import distribution as dist
from polykeras.backends import backend_infos
from polykeras.layers import Dense, Dropout

pytestmark = pytest.mark.skipif(not backend_infos()["keras-jax"].installed, reason="keras-jax is not installed")
TOLERANCE = 1e-10  # L4's float64 bound


def relative(a, b) -> float:
    return max(float(np.max(np.abs(u - v)) / np.max(np.abs(u))) for u, v in zip(a, b))


def train(distribution):
    polykeras.utils.set_random_seed(0)
    model = polykeras.models.Sequential([polykeras.Input((8,)), Dense(16, activation="relu"), Dropout(0.3),
                                         Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  backend="keras-jax", dtype="float64", parity=True, distribution=distribution)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 8))
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5).astype(int)
    initial = model.get_weights()
    polykeras.utils.set_random_seed(3)
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0, validation_data=(x[:32], y[:32]))
    logs = model.evaluate(x[:64], y[:64], batch_size=32, verbose=0, return_dict=True)
    return {"weights": model.get_weights(), "moved": relative(model.get_weights(), initial),
            "history": history.history, "eval": logs, "predict": model.predict(x[:32], batch_size=16, verbose=0),
            "replicas": model._program.num_replicas, "devices": model._program.replica_devices()}


@pytest.fixture(scope="module")
def runs():
    """Two workers start (1 device, 2 host devices) and compile Keras's steps: ~25 s quiet, 75 s under load."""
    mp = pytest.MonkeyPatch()
    mp.setenv("POLYKERAS_KERAS_WORKER", "1")  # Keras imported in the test process must not run it here
    try:
        yield train(None), train(dist.DataParallel(num_replicas=2))
    finally:
        mp.undo()


@pytest.mark.slow
def test_two_devices_are_really_used(runs):
    one, two = runs
    assert (one["replicas"], one["devices"]) == (1, 1)
    assert (two["replicas"], two["devices"]) == (2, 2)  # the weights replicated on both host devices


@pytest.mark.slow
def test_keras_data_parallel_equals_one_device(runs):
    one, two = runs
    assert one["moved"] > 1e-3
    assert relative(one["weights"], two["weights"]) <= TOLERANCE, relative(one["weights"], two["weights"])
    for name, values in one["history"].items():
        np.testing.assert_allclose(two["history"][name], values, rtol=TOLERANCE, err_msg=name)
    for name, value in one["eval"].items():
        assert abs(two["eval"][name] - value) <= TOLERANCE * max(abs(value), 1.0), name
    np.testing.assert_allclose(two["predict"], one["predict"], rtol=TOLERANCE, atol=1e-15)


def test_only_keras_jax_distributes():
    """Keras 3's distribution runs on JAX only: the other Keras backends have no ``distribute``, so the
    core refuses them by name (``polykeras.distribution.distribute``)."""
    from polykeras_keras.backend import make

    assert callable(getattr(make("jax", "cpu", "float64"), "distribute", None))
    for name in ("torch", "tensorflow", "numpy"):
        assert getattr(make(name, "cpu", "float64"), "distribute", None) is None, name
