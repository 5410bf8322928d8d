"""Per-output sample weights, as Keras 3 has them: for a model of several outputs
``sample_weight`` may be a list (output order) or a dict (output names) of arrays, ``None`` for
an unweighted output. Each output's loss takes its own weights (``sum(w * l) / n``), the loss is
the ``loss_weights``-weighted sum of those, and the weighted metrics of output ``i`` take output
``i``'s weights. Checked against Keras 3 itself (a subprocess on its torch backend, float64),
across the numpy, torch and jax backends (float64, through ``fit``, ``steps_per_execution``
included), through streams, and for the errors."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

import polykeras as keras
from polykeras import layers
from polykeras.backends import backend_infos

N = 40
RNG = np.random.default_rng(11)
X = RNG.normal(size=(N, 4))
Y = {"cls": RNG.integers(0, 3, N), "reg": RNG.normal(size=(N, 1))}
W = {"cls": RNG.uniform(0.1, 2.0, N), "reg": RNG.uniform(0.1, 2.0, N)}


def installed(names):
    return [pytest.param(b, marks=pytest.mark.skipif(not backend_infos()[b].installed, reason=f"{b} is not installed"))
            for b in names]


def two_outputs(backend="numpy", steps_per_execution=1, seed=0):
    """A functional model of two outputs ("cls": 3 classes, "reg": one value), each with a weighted metric."""
    keras.utils.set_random_seed(seed)
    x = layers.Input((4,), name="x")
    h = layers.Dense(5, activation="tanh")(x)
    model = keras.Model(x, {"cls": layers.Dense(3, activation="softmax", name="cls")(h),
                            "reg": layers.Dense(1, name="reg")(h)})
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"},
                  loss_weights={"cls": 1.0, "reg": 0.5}, weighted_metrics={"cls": ["accuracy"], "reg": ["mae"]},
                  backend=backend, dtype="float64", steps_per_execution=steps_per_execution)
    return model


def train(backend="numpy", sample_weight=None, steps_per_execution=1, shuffle=True, epochs=2):
    model = two_outputs(backend, steps_per_execution)
    keras.utils.set_random_seed(1)
    history = model.fit(X, Y, batch_size=8, epochs=epochs, verbose=0, shuffle=shuffle, sample_weight=sample_weight)
    return model, history.history


# -- Keras 3 itself ------------------------------------------------------------------------------
KERAS_SCRIPT = r"""
import json, pickle, sys
import numpy as np
import keras
keras.config.set_floatx("float64")
weights, x, y, fit_weights, eval_weights = pickle.load(open(sys.argv[1], "rb"))
inp = keras.Input((4,), name="x")
h = keras.layers.Dense(5, activation="tanh")(inp)
model = keras.Model(inp, {"cls": keras.layers.Dense(3, activation="softmax", name="cls")(h),
                          "reg": keras.layers.Dense(1, name="reg")(h)})
model.compile(optimizer=keras.optimizers.SGD(0.1), loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"},
              loss_weights={"cls": 1.0, "reg": 0.5}, weighted_metrics={"cls": ["accuracy"], "reg": ["mae"]})
model.set_weights(weights)
history = model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False, sample_weight=fit_weights).history
logs = model.evaluate(x, y, batch_size=8, verbose=0, return_dict=True, sample_weight=eval_weights)
pickle.dump((history, logs, model.get_weights()), open(sys.argv[1], "wb"))
"""


@pytest.fixture(scope="module")
def keras_run(tmp_path_factory):
    """Keras 3's fit (dict weights) and evaluate (a None entry) of the model, from polykeras's initial weights."""
    pytest.importorskip("keras")
    path = tmp_path_factory.mktemp("keras") / "run.pkl"
    initial = two_outputs().get_weights()
    path.write_bytes(pickle.dumps((initial, X, Y, W, {"cls": W["cls"], "reg": None})))
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    done = subprocess.run([sys.executable, "-c", KERAS_SCRIPT, str(path)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return pickle.loads(path.read_bytes())


def test_the_reference_trains_and_logs_as_keras(keras_run):
    """Keras's float64 torch run keeps float32 pieces (its metric results): agreement to ~1e-7; a
    shared weight for both outputs, or the other output's weights, moves the logs by > 1e-2."""
    history, logs, weights = keras_run
    model, got = train(sample_weight=W, shuffle=False)
    assert sorted(got) == sorted(history) == ["cls_accuracy", "cls_loss", "loss", "reg_loss", "reg_mae"]
    for key, values in history.items():
        assert got[key] == pytest.approx(values, rel=1e-6), key
    for a, b in zip(model.get_weights(), weights):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
    evaluated = model.evaluate(X, Y, batch_size=8, verbose=0, return_dict=True,
                               sample_weight={"cls": W["cls"], "reg": None})
    assert list(evaluated) == ["loss", "cls_loss", "reg_loss", "cls_accuracy", "reg_mae"]
    for key, value in logs.items():
        assert evaluated[key] == pytest.approx(value, rel=1e-6), key
    swapped, _ = train(sample_weight={"cls": W["reg"], "reg": W["cls"]}, shuffle=False)
    wrong = swapped.evaluate(X, Y, batch_size=8, verbose=0, return_dict=True, sample_weight=[W["cls"], None])
    assert abs(wrong["loss"] - logs["loss"]) > 1e-2


# -- the semantics, in the reference -----------------------------------------------------------------
def test_each_output_loss_and_weighted_metric_takes_its_own_weights():
    model = two_outputs()
    plain = model.evaluate(X, Y, verbose=0, return_dict=True)
    doubled = model.evaluate(X, Y, verbose=0, return_dict=True, sample_weight={"cls": np.full(N, 2.0)})
    assert doubled["cls_loss"] == pytest.approx(2 * plain["cls_loss"], rel=1e-14)  # sum(w * l) / n
    assert doubled["reg_loss"] == plain["reg_loss"]
    assert doubled["loss"] == pytest.approx(doubled["cls_loss"] + 0.5 * doubled["reg_loss"], rel=1e-14)
    assert doubled["cls_accuracy"] == pytest.approx(plain["cls_accuracy"], rel=1e-14)  # sum(w v) / sum(w)
    weighted = model.evaluate(X, Y, verbose=0, return_dict=True, sample_weight=W)
    out = model.predict(X, verbose=0)
    hits = (out["cls"].argmax(-1) == Y["cls"]).astype(float)
    assert weighted["cls_accuracy"] == pytest.approx(np.dot(W["cls"], hits) / W["cls"].sum(), rel=1e-12)
    mae = np.abs(out["reg"] - Y["reg"])[:, 0]
    assert weighted["reg_mae"] == pytest.approx(np.dot(W["reg"], mae) / W["reg"].sum(), rel=1e-12)


def test_none_and_left_out_outputs_are_unweighted_and_one_array_weights_every_output():
    ones = np.ones(N)
    by_ones, logs_ones = train(sample_weight={"cls": W["cls"], "reg": ones})
    for weights in ([W["cls"], None], {"cls": W["cls"], "reg": None}, {"cls": W["cls"]}):
        model, logs = train(sample_weight=weights)
        for a, b in zip(model.get_weights(), by_ones.get_weights()):
            np.testing.assert_array_equal(a, b)
        assert logs == logs_ones
    shared, shared_logs = train(sample_weight=W["reg"])
    listed, listed_logs = train(sample_weight=(W["reg"], W["reg"]))
    for a, b in zip(shared.get_weights(), listed.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert shared_logs == listed_logs
    _, unweighted = train()
    _, all_none = train(sample_weight=[None, None])
    assert all_none == unweighted


def test_a_model_of_one_output_takes_its_weights_alone_in_a_list_or_dict():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([layers.Input((4,)), layers.Dense(1, name="out")])
    model.compile(optimizer="sgd", loss="mse", dtype="float64")
    y = Y["reg"]
    expected = model.evaluate(X, y, sample_weight=W["reg"], verbose=0)
    assert model.evaluate(X, y, sample_weight=[W["reg"]], verbose=0) == expected
    assert model.evaluate(X, y, sample_weight={"out": W["reg"]}, verbose=0) == expected


# -- backends ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", installed(["torch", "jax"]))
@pytest.mark.parametrize("weights, steps", [(W, 1), ({"cls": W["cls"], "reg": None}, 3)],
                         ids=["dict", "none_entry_steps_per_execution_3"])
def test_backends_weight_each_output_as_the_reference(backend, weights, steps):
    """float64, 2 epochs of 5 shuffled batches: torch and jax (jitted steps, and lax.scan over 3
    batches with an unweighted output's empty leaf) land within float64 rounding of the reference."""
    ref, ref_logs = train("numpy", weights)
    got, logs = train(backend, weights, steps_per_execution=steps)
    worst = max(float(np.abs(a - b).max()) for a, b in zip(got.get_weights(), ref.get_weights()))
    assert worst <= 1e-12
    assert sorted(logs) == sorted(ref_logs)
    for key, values in ref_logs.items():
        assert logs[key] == pytest.approx(values, rel=1e-12, abs=1e-14), key
    evaluated = got.evaluate(X, Y, verbose=0, return_dict=True, sample_weight=[None, W["reg"]])
    expected = ref.evaluate(X, Y, verbose=0, return_dict=True, sample_weight=[None, W["reg"]])
    for key, value in expected.items():
        assert evaluated[key] == pytest.approx(value, rel=1e-12, abs=1e-14), key


@pytest.mark.parametrize("backend", installed(["keras-jax", "keras-tensorflow"]))
def test_keras_backend_weights_each_output_as_the_reference(backend):
    """Through Keras's own train step with a list of per-output weights (float32 pieces: ~1e-7)."""
    weights = {"cls": W["cls"], "reg": None}
    ref, ref_logs = train("numpy", weights)
    got, logs = train(backend, weights)
    for a, b in zip(got.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    for key, values in ref_logs.items():
        assert logs[key] == pytest.approx(values, rel=1e-5), key


def test_a_backend_without_per_output_weights_says_so(monkeypatch):
    from polykeras_numpy.backend import NumpyBackend

    monkeypatch.setattr(NumpyBackend, "training_features", frozenset({"sample_weight", "metric_statistics"}))
    model = two_outputs()
    model.fit(X, Y, sample_weight=W["cls"], epochs=1, verbose=0)  # one array for every output still works
    with pytest.raises(NotImplementedError, match="does not support per output sample weights.*"
                                                  "'per_output_sample_weight'"):
        model.fit(X, Y, sample_weight=W, epochs=1, verbose=0)


# -- data paths -----------------------------------------------------------------------------------------
def test_streams_validation_and_single_batches_carry_per_output_weights():
    weights = {"cls": W["cls"], "reg": None}
    arrays, array_logs = train(sample_weight=weights, shuffle=False)
    batches = [(X[i:i + 8], {k: v[i:i + 8] for k, v in Y.items()}, [W["cls"][i:i + 8], None])
               for i in range(0, N, 8)]
    streamed = two_outputs()
    keras.utils.set_random_seed(1)
    logs = streamed.fit(iter(batches * 2), steps_per_epoch=5, epochs=2, verbose=0).history
    for a, b in zip(streamed.get_weights(), arrays.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert logs == array_logs

    model = two_outputs()
    history = model.fit(X, Y, batch_size=8, epochs=1, verbose=0, validation_split=0.25, sample_weight=W).history
    tail = {k: v[30:] for k, v in W.items()}
    expected = model.evaluate(X[30:], {k: v[30:] for k, v in Y.items()}, batch_size=8, verbose=0,
                              return_dict=True, sample_weight=tail)
    for key, value in expected.items():
        assert history["val_" + key][-1] == pytest.approx(value, rel=1e-12), key

    model = two_outputs()
    first = model.test_on_batch(X, Y, sample_weight=W, return_dict=True)
    assert first == model.evaluate(X, Y, batch_size=N, verbose=0, return_dict=True, sample_weight=W)
    assert model.train_on_batch(X, Y, sample_weight=W, return_dict=True) == pytest.approx(first, rel=1e-14)


# -- errors -----------------------------------------------------------------------------------------
def test_bad_per_output_weights_are_explained():
    model = two_outputs()
    with pytest.raises(ValueError, match=r"sample_weight has key\(s\) \['rg'\] that name no output .* "
                                         r"\['cls', 'reg'\]"):
        model.fit(X, Y, sample_weight={"cls": W["cls"], "rg": W["reg"]}, verbose=0)
    with pytest.raises(ValueError, match=r"sample_weight for output 'reg' of shape \(39,\) does not fit 40 samples"):
        model.fit(X, Y, sample_weight={"cls": W["cls"], "reg": W["reg"][:-1]}, verbose=0)
    with pytest.raises(ValueError, match=r"sample_weight for output 'cls' of shape \(40, 2\) does not fit"):
        model.evaluate(X, Y, sample_weight=[np.ones((N, 2)), None], verbose=0)
    with pytest.raises(ValueError, match="one entry per output, in that order .* got 3"):
        model.fit(X, Y, sample_weight=[W["cls"], W["reg"], W["reg"]], verbose=0)
    with pytest.raises(ValueError, match="sample_weight for output 'reg' must be an array of one weight per "
                                         "sample .* got a scalar"):
        model.fit(X, Y, sample_weight=[W["cls"], 2.0], verbose=0)
    with pytest.raises(ValueError, match="sample_weight for output 'cls' holds negative"):
        model.train_on_batch(X, Y, sample_weight={"cls": -W["cls"]})
    with pytest.raises(ValueError, match="class_weight is only supported for models of one output"):
        model.fit(X, Y, class_weight={0: 2.0}, verbose=0)
    with pytest.raises(ValueError, match="not both"):
        model.fit(X, Y, sample_weight=W, class_weight={0: 2.0}, verbose=0)
    with pytest.raises(ValueError, match=r"sample_weight for output 'cls' of shape \(8,\) does not fit 7 samples"):
        model.fit(iter([(X[:7], {k: v[:7] for k, v in Y.items()}, {"cls": W["cls"][:8]})]), verbose=0)
