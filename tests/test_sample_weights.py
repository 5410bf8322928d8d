"""Sample and class weights, as Keras defines them: each sample's loss times its weight,
summed and divided by the number of per-sample losses (not by the sum of the weights);
metrics unweighted; ``class_weight`` picks a sample's weight by its label. Checked in the
reference (formula and finite differences), against torch and jax, and through streams.
(Against Keras 3 itself, once: a weighted evaluate agreed to float32 rounding, 0.4127796
on both.)"""

from __future__ import annotations

import numpy as np
import pytest

import polykeras as keras
from polykeras import layers
from polykeras.backends import backend_infos
from polykeras_numpy import losses

LOSS_CASES = [
    ("sparse_categorical_crossentropy", "labels"), ("categorical_crossentropy", "onehot"),
    ("binary_crossentropy", "binary"), ("mean_squared_error", "real"), ("mean_absolute_error", "real"),
]


def targets(kind, rng, shape):
    labels = rng.integers(0, shape[-1], shape[:-1])
    return {"labels": labels, "onehot": np.eye(shape[-1])[labels], "binary": (rng.random(shape) > 0.5) * 1.0,
            "real": rng.normal(size=shape)}[kind]


@pytest.mark.parametrize("name, target", LOSS_CASES)
@pytest.mark.parametrize("shape", [(6, 3), (4, 5, 3)], ids=["batch", "sequence"])
def test_weighted_losses_are_keras_weighted_means_with_exact_gradients(name, target, shape):
    rng = np.random.default_rng(0)
    p = rng.random(shape) * 0.8 + 0.1
    if name.startswith(("sparse", "categorical")):
        p /= p.sum(-1, keepdims=True)
    y = targets(target, rng, shape)
    w = rng.random(shape[:1])
    fn = losses.LOSSES[name]
    loss, grad = fn(y, p, sample_weight=w)
    per_sample = [fn(y[i:i + 1], p[i:i + 1])[0] for i in range(shape[0])]  # each sample's own mean loss
    assert loss == pytest.approx(float(np.dot(w, per_sample)) / shape[0], rel=1e-12)
    for idx in [(0,) * len(shape), tuple(d - 1 for d in shape)]:
        up, down = p.copy(), p.copy()
        up[idx] += 1e-6
        down[idx] -= 1e-6
        numeric = (fn(y, up, sample_weight=w)[0] - fn(y, down, sample_weight=w)[0]) / 2e-6
        assert grad[idx] == pytest.approx(numeric, rel=1e-5, abs=1e-9)
    unweighted = fn(y, p)
    weighted_by_ones = fn(y, p, sample_weight=np.ones(shape[0]))
    assert weighted_by_ones[0] == pytest.approx(unweighted[0], rel=1e-15)


def model(backend="numpy"):
    keras.utils.set_random_seed(0)
    m = keras.Sequential([layers.Input((5,)), layers.Dense(4, activation="tanh"), layers.Dropout(0.2),
                          layers.Dense(3, activation="softmax")])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"], backend=backend,
              dtype="float64", parity=True)
    return m


def data(n=32):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 5)), rng.integers(0, 3, n), rng.random(n)


def train(backend, **weights):
    m = model(backend)
    x, y, _ = data()
    keras.utils.set_random_seed(1)
    history = m.fit(x, y, batch_size=8, epochs=2, verbose=0, **weights)
    return m, history.history


@pytest.mark.parametrize("backend", [pytest.param(b, marks=pytest.mark.skipif(
    not backend_infos()[b].installed, reason=f"{b} is not installed")) for b in ("torch", "jax")])
def test_backends_weight_samples_as_the_reference(backend):
    _, _, w = data()
    for weights in ({"sample_weight": w}, {"class_weight": {0: 0.5, 2: 3.0}}):
        ref, ref_logs = train("numpy", **weights)
        got, logs = train(backend, **weights)
        for a, b in zip(got.get_weights(), ref.get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
        assert logs["loss"] == pytest.approx(ref_logs["loss"], rel=1e-12)


def test_class_weight_is_sample_weight_by_label_and_metrics_stay_unweighted():
    x, y, _ = data()
    by_class, _ = train("numpy", class_weight={0: 0.5, 2: 3.0})
    by_sample, _ = train("numpy", sample_weight=np.array([{0: 0.5, 2: 3.0}.get(int(c), 1.0) for c in y]))
    for a, b in zip(by_class.get_weights(), by_sample.get_weights()):
        np.testing.assert_array_equal(a, b)
    m = model()
    plain = m.evaluate(x, y, verbose=0, return_dict=True)
    heavy = m.evaluate(x, y, sample_weight=np.full(len(y), 2.0), verbose=0, return_dict=True)
    assert heavy["loss"] == pytest.approx(2 * plain["loss"], rel=1e-12)  # divided by n, not by sum(w)
    assert heavy["accuracy"] == plain["accuracy"]


def test_weighted_batches_from_a_stream_train_as_weighted_arrays():
    x, y, w = data()
    arrays, _ = train("numpy", sample_weight=w, shuffle=False)
    m = model()
    keras.utils.set_random_seed(1)
    m.fit(iter([(x[i:i + 8], y[i:i + 8], w[i:i + 8]) for i in range(0, 32, 8)] * 2), steps_per_epoch=4, epochs=2,
          verbose=0)
    for a, b in zip(m.get_weights(), arrays.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_bad_weights_are_explained():
    m = model()
    x, y, w = data()
    with pytest.raises(ValueError, match="not both"):
        m.fit(x, y, sample_weight=w, class_weight={0: 2.0}, verbose=0)
    with pytest.raises(ValueError, match=r"sample_weight of shape \(31,\) does not fit 32 samples"):
        m.fit(x, y, sample_weight=w[:-1], verbose=0)
    with pytest.raises(ValueError, match="negative, NaN or infinite"):
        m.fit(x, y, sample_weight=-w, verbose=0)
    with pytest.raises(TypeError, match="class_weight must be a dict"):
        m.fit(x, y, class_weight=[1.0, 2.0], verbose=0)


def test_a_backend_without_sample_weights_says_so():
    pytest.importorskip("polykeras_example")
    m = model("example")
    x, y, w = data()
    with pytest.raises(NotImplementedError, match="backend 'example' does not support sample weights"):
        m.fit(x, y, sample_weight=w, verbose=0)


KERAS = [pytest.param(b, marks=pytest.mark.skipif(not backend_infos()[b].installed, reason=f"{b} is not installed"))
         for b in ("keras-jax", "keras-torch", "keras-tensorflow")]


@pytest.mark.parametrize("backend", KERAS)
def test_keras_backends_weight_samples_as_the_reference(backend):
    """Through Keras's own train step with (x, y, sample_weight) batches. float32 (Keras's float64 keeps
    float32 pieces, see test_keras_backend.py): 8 updates of a 6-5-4-3 MLP land within ~1e-6 of the
    float64 reference; a weighting by the sum of the weights, or none, is off by > 1e-2."""
    _, _, w = data()
    ref, ref_logs = train("numpy", sample_weight=w)
    m = model(backend)
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"], backend=backend,
              dtype="float32", parity=True)
    x, y, _ = data()
    keras.utils.set_random_seed(1)
    logs = m.fit(x, y, sample_weight=w, batch_size=8, epochs=2, verbose=0).history
    worst = max(float(np.abs(a - b).max() / np.abs(b).max()) for a, b in zip(m.get_weights(), ref.get_weights()))
    assert worst <= 1e-4, worst
    assert logs["loss"] == pytest.approx(ref_logs["loss"], rel=1e-4)
