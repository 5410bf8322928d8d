"""Learning-rate schedules (``polykeras.optimizers.schedules``): Keras's formulas,
each step's rate reaching every backend, and schedules in saved models.

The values were also compared with Keras 3's own schedules over steps 0..59: equal to
float64 rounding where Keras computes in float64, within 2e-6 relative for the cosine
schedules, which Keras evaluates partly in float32."""

from __future__ import annotations

import math

import numpy as np
import pytest

import polykeras as keras
from polykeras import layers
from polykeras.backends import backend_infos
from polykeras.optimizers import schedules


@pytest.mark.parametrize("schedule, expected", [
    (schedules.ExponentialDecay(0.1, 7, 0.5), lambda t: 0.1 * 0.5 ** (t / 7)),
    (schedules.ExponentialDecay(0.1, 7, 0.5, staircase=True), lambda t: 0.1 * 0.5 ** (t // 7)),
    (schedules.PiecewiseConstantDecay([5, 12], [0.1, 0.05, 0.01]),
     lambda t: 0.1 if t <= 5 else 0.05 if t <= 12 else 0.01),
    (schedules.PolynomialDecay(0.1, 10, 0.01, power=2.0), lambda t: 0.09 * (1 - min(t, 10) / 10) ** 2 + 0.01),
    (schedules.PolynomialDecay(0.1, 10, 0.0, power=1.0, cycle=True),
     lambda t: 0.1 * (1 - t / (10 * max(1, math.ceil(t / 10))))),
    (schedules.InverseTimeDecay(0.1, 5, 0.3), lambda t: 0.1 / (1 + 0.3 * t / 5)),
    (schedules.CosineDecay(0.1, 20, alpha=0.1),
     lambda t: 0.1 * (0.9 * 0.5 * (1 + math.cos(math.pi * min(t, 20) / 20)) + 0.1)),
    (schedules.CosineDecay(0.0, 20, warmup_target=0.2, warmup_steps=6),
     lambda t: 0.2 * t / 6 if t < 6 else 0.2 * 0.5 * (1 + math.cos(math.pi * min(t - 6, 20) / 20))),
    (schedules.CosineDecayRestarts(0.1, 4, t_mul=1.0), lambda t: 0.1 * 0.5 * (1 + math.cos(math.pi * (t % 4) / 4))),
], ids=lambda v: type(v).__name__ if isinstance(v, schedules.LearningRateSchedule) else "")
def test_schedules_follow_keras_formulas(schedule, expected):
    for step in range(40):
        assert schedule(step) == pytest.approx(expected(step), rel=1e-12, abs=1e-15), step


def test_cosine_restarts_lengthen_and_lower_each_period():
    s = schedules.CosineDecayRestarts(1.0, 4, t_mul=2.0, m_mul=0.5)
    assert s(0) == 1.0 and s(4) == pytest.approx(0.5) and s(12) == pytest.approx(0.25)  # periods 4, 8, 16
    assert s(8) == pytest.approx(0.5 * 0.5 * (1 + math.cos(math.pi * 4 / 8)))


def model_and_data():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([layers.Input((5,)), layers.Dense(4, activation="tanh"), layers.Dense(2)])
    rng = np.random.default_rng(0)
    return model, rng.normal(size=(48, 5)), rng.normal(size=(48, 2))


def test_each_step_uses_the_schedules_rate_for_its_iteration():
    """The same run as setting the rate by hand before each update: step t (0 first) gets schedule(t)."""
    schedule = schedules.PiecewiseConstantDecay([1, 3], [0.5, 0.1, 0.02])
    runs = []
    for by_hand in (False, True):
        model, x, y = model_and_data()
        optimizer = keras.optimizers.SGD(0.5 if by_hand else schedule)
        model.compile(optimizer=optimizer, loss="mse", dtype="float64")
        for t in range(6):
            if by_hand:
                optimizer.learning_rate = schedule(t)
            model.train_on_batch(x[t * 8:(t + 1) * 8], y[t * 8:(t + 1) * 8])
        runs.append(model.get_weights())
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("backend", [pytest.param(b, marks=pytest.mark.skipif(
    not backend_infos()[b].installed, reason=f"{b} is not installed")) for b in ("torch", "jax")])
def test_backends_follow_the_schedule_as_the_reference(backend):
    weights = {}
    for name in ("numpy", backend):
        model, x, y = model_and_data()
        model.compile(optimizer=keras.optimizers.Adam(schedules.ExponentialDecay(0.05, 3, 0.5)), loss="mse",
                      backend=name, dtype="float64")
        keras.utils.set_random_seed(1)
        model.fit(x, y, batch_size=8, epochs=2, verbose=0)
        assert model.optimizer.iterations == 12
        assert model.optimizer.learning_rate == pytest.approx(0.05 * 0.5 ** (11 / 3))
        weights[name] = model.get_weights()
    for a, b in zip(weights[backend], weights["numpy"]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_steps_per_execution_with_a_schedule_is_the_same_run():
    runs = []
    for n in (1, 4):
        model, x, y = model_and_data()
        model.compile(optimizer=keras.optimizers.SGD(schedules.InverseTimeDecay(0.1, 2, 1.0)), loss="mse",
                      steps_per_execution=n)
        keras.utils.set_random_seed(1)
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)
        runs.append(model.get_weights())
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_a_scheduled_rate_cannot_be_set_and_bad_rates_are_refused():
    optimizer = keras.optimizers.Adam(schedules.CosineDecay(0.1, 10))
    with pytest.raises(TypeError, match="follows the schedule"):
        optimizer.learning_rate = 0.01
    with pytest.raises(TypeError, match="float or a polykeras.optimizers.schedules"):
        keras.optimizers.Adam(lambda: 0.1)
    with pytest.raises(ValueError, match="decay_steps must be > 0"):
        schedules.ExponentialDecay(0.1, 0, 0.5)
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'Warmup'"):
        schedules.deserialize({"class_name": "Warmup", "config": {}})


def test_schedules_are_saved_with_the_model(tmp_path):
    model, x, y = model_and_data()
    schedule = schedules.CosineDecay(0.0, 20, warmup_target=0.1, warmup_steps=3)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="mse")
    config = model.optimizer.get_config()["learning_rate"]
    assert config["class_name"] == "CosineDecay" and config["module"] == "keras.optimizers.schedules"
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.optimizer.schedule.get_config() == schedule.get_config()
    assert keras.optimizers.get(keras.optimizers.serialize(model.optimizer)).schedule.get_config() == \
        schedule.get_config()
