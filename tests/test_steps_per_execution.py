"""``compile(steps_per_execution="auto")``: the choice from timings (injected, never measured
here), and the same run as one step at a time on every backend (float64)."""

import itertools
import re

import numpy as np
import pytest

import polykeras as keras
from polykeras import backends, layers
from polykeras import steps_per_execution as spe
from polykeras.models import Sequential

BACKENDS = [pytest.param(name, marks=pytest.mark.skipif(not backends.find_backend(name).installed,
                                                        reason=f"{name} is not installed"))
            for name in ("numpy", "torch", "jax")]


# -- the setting ----------------------------------------------------------------------------------
@pytest.mark.parametrize("value, expected", [(1, 1), (7, 7), (np.int64(3), 3), (4.0, 4), ("auto", "auto")])
def test_check_accepts_positive_integers_and_auto(value, expected):
    assert spe.check(value) == expected


@pytest.mark.parametrize("value", ["fast", "Auto", "3", 0, -2, 2.5, True, None, float("inf")])
def test_compile_refuses_other_values_saying_what_is_accepted(value):
    model = Sequential([layers.Dense(1, input_dim=2)])
    with pytest.raises(ValueError, match=r"positive integer .*'auto'.*got " + re.escape(repr(value))):
        model.compile("sgd", "mse", steps_per_execution=value)


def test_auto_is_kept_in_the_compile_config():
    model = Sequential([layers.Dense(1, input_dim=2)])
    model.compile("sgd", "mse", steps_per_execution="auto")
    assert model.get_compile_config()["steps_per_execution"] == "auto"
    from polykeras.saving.keras_training import keras_compile_config
    assert keras_compile_config(model)["steps_per_execution"] == 1  # Keras 3 takes integers only


# -- the choice -----------------------------------------------------------------------------------
@pytest.mark.parametrize("single, chunked, largest, expected", [
    (1.0, 0.99, 64, 1),    # 1% faster in chunks: below MIN_GAIN, not worth it
    (1.0, 1.20, 64, 1),    # slower in chunks
    (1.0, 0.95, 64, 8),    # host 5.7%: N = 3 would do, the probe length (8) is already compiled
    (1.0, 0.80, 64, 16),   # host 23%, compute 77%: N >= 14.5
    (1.0, 0.50, 64, 64),   # host 57%: N >= 65, capped
    (1.0, 0.50, 20, 16),   # ... at the largest power of two allowed
    (1.0, 0.13, 64, 64),   # host is all of it
])
def test_choose_keeps_the_host_share_under_two_percent(single, chunked, largest, expected):
    assert spe.choose(single, chunked, 8, largest) == expected


@pytest.mark.parametrize("single, chunked", [(1.0, 0.80), (1.0, 0.6), (1.0, 0.9)])
def test_the_chosen_length_meets_the_target_unless_capped(single, chunked):
    n = spe.choose(single, chunked, 8, 1024)
    host = (single - chunked) * 8 / 7
    compute = single - host
    assert (host / n) / (host / n + compute) <= spe.HOST_SHARE
    assert n == 8 or (host / (n // 2)) / (host / (n // 2) + compute) > spe.HOST_SHARE  # the smallest such


def simulate(tuner, host, compute, steps_per_epoch=1000, epochs=3, compile_seconds=0.0):
    """Drive ``tuner`` as the trainer does, on a device where an execution of k steps takes
    ``host + k * compute`` seconds, the first ``compile_seconds`` more; returns the sizes of the
    executions."""
    now = [0.0]
    sizes = []
    spe_clock, spe.clock = spe.clock, lambda: now[0]
    try:
        for _ in range(epochs):
            tuner.epoch_begin()
            step = 0
            while step < steps_per_epoch:
                k = tuner.size(steps_per_epoch - step)
                now[0] += host + k * compute
                if sizes == []:
                    now[0] += compile_seconds
                sizes.append(k)
                tuner.executed(k, lambda: None)
                step += k
    finally:
        spe.clock = spe_clock
    return sizes


def test_the_tuner_measures_single_steps_and_chunks_then_keeps_its_choice():
    tuner = spe.AutoStepsPerExecution(largest=64, max_window_steps=16)
    sizes = simulate(tuner, host=1e-3, compute=1e-4)
    # 1, P, 1, P windows, each after one untimed lead-in execution, then the choice
    assert [s for s, _ in tuner.timings] == [1, 8, 1, 8]
    assert tuner.timings[0][1] == pytest.approx(1.1e-3) and tuner.timings[1][1] == pytest.approx(1e-3 / 8 + 1e-4)
    assert tuner.chosen == spe.choose(1.1e-3, 1e-3 / 8 + 1e-4, 8, 64) == 64
    first = sizes.index(64)
    assert sum(sizes[:first]) < 1000  # decided within the first epoch
    assert set(sizes[first:]) == {64, 1}  # an epoch's rest that does not fill a chunk: single steps
    assert sizes[first:first + 14] == [64] * 14 and sizes[first + 14] == 1  # 82 steps probed, 14 x 64, 22 x 1


def test_the_tuner_keeps_single_steps_where_chunks_do_not_pay():
    tuner = spe.AutoStepsPerExecution(largest=64, max_window_steps=16)
    sizes = simulate(tuner, host=0.0, compute=1e-3)
    assert tuner.chosen == 1
    assert set(sizes[-500:]) == {1}


def test_a_fit_too_short_to_repay_compiling_chunks_keeps_single_steps():
    """The first execution (compiling the step) took 1 s: timing chunks would compile one more
    length, and saving a quarter of 1.1 ms steps over the fit's 900 other steps is only 0.25 s."""
    tuner = spe.AutoStepsPerExecution(largest=64, max_window_steps=16, steps_left=3 * 300)
    sizes = simulate(tuner, host=1e-3, compute=1e-4, steps_per_epoch=300, compile_seconds=1.0)
    assert tuner.chosen == 1 and not tuner.measured and set(sizes) == {1}
    assert tuner.compile_seconds == pytest.approx(1.0 + 1.1e-3)


def test_a_longer_chunk_is_compiled_only_if_the_rest_of_the_fit_repays_it():
    # 64 would save 1e-3/8 - 1e-3/64 = 1.1e-4 s a step over the probe's 8; compiling costs 0.09 s,
    # repaid by 1118 steps (0.12 s) but not by 718 (0.078 s)
    for steps, expected in ((400, 8), (600, 64)):  # 718 or 1118 steps left after the probe (82)
        tuner = spe.AutoStepsPerExecution(largest=64, max_window_steps=16, steps_left=2 * steps)
        simulate(tuner, host=1e-3, compute=1e-4, steps_per_epoch=steps, epochs=2, compile_seconds=0.09)
        assert tuner.measured and tuner.chosen == expected, steps


def test_a_window_never_spans_an_epoch_end():
    """An epoch too short for a window: timing restarts every epoch, so no choice is made and the
    (untimed) time between epochs never counts."""
    tuner = spe.AutoStepsPerExecution(largest=64, max_window_steps=1000)
    simulate(tuner, host=1e-3, compute=1e-4, steps_per_epoch=30, epochs=5)
    assert tuner.chosen is None and len(tuner.timings) == 0


def test_largest_size_is_bounded_by_epoch_and_memory():
    assert spe.largest_size(steps=10_000, batch_bytes=1000) == spe.MAX_SIZE
    assert spe.largest_size(steps=40, batch_bytes=1000) == 10
    assert spe.largest_size(steps=10_000, batch_bytes=spe.MAX_CHUNK_BYTES // 5) == 5
    assert spe.largest_size(steps=3, batch_bytes=1) == 1
    assert spe.AutoStepsPerExecution(largest=1).chosen == 1


# -- through fit: the same run as one step at a time ------------------------------------------------
@pytest.fixture
def host_bound_clock(monkeypatch):
    """A clock that ticks once per reading: every execution looks equally long, whatever its
    number of steps, so the tuner sees all-host steps and picks the longest chunk allowed."""
    ticks = itertools.count()
    monkeypatch.setattr(spe, "clock", lambda: float(next(ticks)))


def _model(backend, steps_per_execution):
    model = Sequential([layers.Dense(12, activation="relu", input_dim=5), layers.Dropout(0.3),
                        layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"], backend=backend,
                  dtype="float64", steps_per_execution=steps_per_execution)
    return model


def _data(n=8 * 80 + 3):  # 80 full batches of 8 and a partial one
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 5)), rng.integers(0, 3, n)


def _executions(model, monkeypatch):
    """The sizes of the executions the model's program runs from now on."""
    program, sizes, inside = model._get_program(training=True, y_ndim=1), [], []
    single, many = program.train_step, program.train_steps

    def train_step(*args, **kwargs):
        if not inside:  # not a step of a chunk run as a loop (the default train_steps)
            sizes.append(1)
        return single(*args, **kwargs)

    def train_steps(xs, *args, **kwargs):
        sizes.append(len(xs))
        inside.append(True)
        try:
            return many(xs, *args, **kwargs)
        finally:
            inside.pop()
    monkeypatch.setattr(program, "train_step", train_step)
    monkeypatch.setattr(program, "train_steps", train_steps)
    return sizes


def _fit(backend, steps_per_execution, monkeypatch=None, **kwargs):
    x, y = _data()
    keras.utils.set_random_seed(4)  # the same initial weights
    model = _model(backend, steps_per_execution)
    sizes = _executions(model, monkeypatch) if monkeypatch else None
    keras.utils.set_random_seed(5)  # the same fit seed: the same shuffles and dropout
    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0, validation_split=0.1, **kwargs)
    return model, history.history, sizes


@pytest.mark.parametrize("backend", BACKENDS)
def test_auto_trains_the_same_weights_as_single_steps(backend, host_bound_clock, monkeypatch):
    reference, logs, _ = _fit(backend, 1)
    model, auto_logs, sizes = _fit(backend, "auto", monkeypatch)
    chosen = model._auto_steps_per_execution["chosen"]
    assert chosen == 16  # 72 full batches a epoch: a quarter is 18, the largest power of two under it 16
    assert sizes.count(8) == 4 and sizes.count(16) == 9  # the probe's chunks (2 lead-ins, 2 timed), the chosen
    assert sum(sizes) == 3 * 73
    for a, b in zip(reference.get_weights(), model.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14)
    for key in logs:
        assert auto_logs[key] == pytest.approx(logs[key], rel=1e-12), key


def test_auto_with_the_real_clock_trains_the_same_weights():
    """Whatever the timings of this machine make it choose."""
    reference, _, _ = _fit("numpy", 1)
    model, _, _ = _fit("numpy", "auto")
    for a, b in zip(reference.get_weights(), model.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14)


def test_a_later_fit_keeps_the_choice(host_bound_clock, monkeypatch):
    x, y = _data()
    model = _model("numpy", "auto")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    sizes = _executions(model, monkeypatch)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert sizes[:5] == [16] * 5  # no new probe


def test_a_later_short_fit_remembers_what_compiling_cost(monkeypatch):
    """The first fit's first step compiled (here: 10 s of an injected clock); a later fit's first step
    does not, so it keeps the first fit's estimate and does not time chunks in a fit too short."""
    now = [0.0]
    monkeypatch.setattr(spe, "clock", lambda: now[0])
    x, y = _data()
    model = _model("numpy", "auto")
    program = model._get_program(training=True, y_ndim=1)
    single = program.train_step

    def train_step(*args, **kwargs):
        now[0] += 10.0 if program.iterations == 0 else 1e-3
        return single(*args, **kwargs)
    monkeypatch.setattr(program, "train_step", train_step)
    for _ in range(2):
        model.fit(x, y, batch_size=8, epochs=2, verbose=0)
        assert model._auto_steps_per_execution["compile_seconds"] == pytest.approx(10.0)
        assert model._auto_steps_per_execution["chosen"] is None


def test_callbacks_with_batch_hooks_see_every_batch(host_bound_clock, monkeypatch):
    seen = []
    callback = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append(batch))
    _, _, sizes = _fit("numpy", "auto", monkeypatch, callbacks=[callback])
    assert set(sizes) == {1}
    assert seen == list(range(73)) * 3


def test_a_progress_bar_alone_does_not_stop_chunks(host_bound_clock, monkeypatch, capsys):
    x, y = _data()
    model = _model("numpy", "auto")
    sizes = _executions(model, monkeypatch)
    model.fit(x, y, batch_size=8, epochs=2, verbose=1)
    assert 16 in sizes
    assert "81/81" in capsys.readouterr().out


def test_a_schedule_keeps_single_steps(host_bound_clock, monkeypatch):
    schedule = keras.optimizers.schedules.ExponentialDecay(0.01, decay_steps=10, decay_rate=0.9)
    x, y = _data()
    model = _model("numpy", "auto")
    model.compile(keras.optimizers.Adam(schedule), "sparse_categorical_crossentropy", backend="numpy",
                  dtype="float64", steps_per_execution="auto")
    sizes = _executions(model, monkeypatch)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert set(sizes) == {1}
