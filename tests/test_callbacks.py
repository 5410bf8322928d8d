"""Callbacks, driven through CallbackList by a fake fit loop on a fake model."""

from __future__ import annotations

import math
import os
import re
import warnings

import numpy as np
import pytest

from polykeras import callbacks
from polykeras.callbacks import (Callback, CallbackList, CSVLogger, EarlyStopping, History, LambdaCallback,
                                 LearningRateScheduler, ModelCheckpoint, ProgbarLogger, ReduceLROnPlateau,
                                 TerminateOnNaN)
from polykeras.utils import progbar as progbar_module

ANSI = re.compile(r"\x1b\[[0-9;]*m")


# -- fakes ------------------------------------------------------------------------------------
class FakeOptimizer:
    def __init__(self, learning_rate: float = 0.1):
        self._lr = learning_rate

    @property
    def learning_rate(self) -> float:
        return self._lr

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        self._lr = float(value)


class FakeModel:
    """What callbacks use of a model. Its weights are one array holding the
    number of the epoch that produced them (set by ``fake_fit``)."""

    def __init__(self, learning_rate: float = 0.1):
        self.stop_training = False
        self.history = None
        self.optimizer = FakeOptimizer(learning_rate)
        self.weights = [np.zeros(2)]
        self.saved: list[tuple[str, str]] = []

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self.weights = [np.array(w) for w in weights]

    def save(self, filepath, overwrite=True):
        self._write("model", filepath)

    def save_weights(self, filepath, overwrite=True):
        self._write("weights", filepath)

    def _write(self, kind, filepath):
        with open(filepath, "w") as f:
            f.write(f"{kind} {int(self.weights[0][0])}")
        self.saved.append((kind, os.fspath(filepath)))


class CountingLogs:
    """Lazy batch logs that count how often they are computed."""

    def __init__(self, logs=None):
        self.logs = logs or {"loss": 0.5, "accuracy": 0.75}
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return dict(self.logs)


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture
def clock(monkeypatch):
    c = FakeClock()
    monkeypatch.setattr(progbar_module, "_now", c)
    return c


def fake_fit(model, cbs, epoch_logs, steps=3, verbose=0, batch_logs=None, clock=None, step_time=0.0,
             validation_steps=0):
    """The trainer's call sequence, as in the contract. ``epoch_logs[i]`` are
    the logs of epoch ``i``; the weights of epoch ``i`` are ``[i, i]``."""
    batch_logs = batch_logs or CountingLogs()
    cl = CallbackList(cbs, model=model, add_history=True, add_progbar=verbose != 0, verbose=verbose,
                      epochs=len(epoch_logs), steps=steps)
    model.stop_training = False
    logs = {}
    cl.on_train_begin()
    for epoch, logs in enumerate(epoch_logs):
        logs = dict(logs)
        cl.on_epoch_begin(epoch)
        for step in range(steps):
            if cl.has_train_batch_hooks:
                cl.on_train_batch_begin(step)
            if clock is not None:
                clock.t += step_time
            model.weights = [np.full(2, float(epoch))]
            if cl.has_train_batch_hooks:
                cl.on_train_batch_end(step, batch_logs)
            if model.stop_training:
                break
        if validation_steps:
            cl.on_test_begin()
            for step in range(validation_steps):
                if cl.has_test_batch_hooks:
                    cl.on_test_batch_begin(step)
                    cl.on_test_batch_end(step, batch_logs)
            cl.on_test_end({k[4:]: v for k, v in logs.items() if k.startswith("val_")})
        cl.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    cl.on_train_end(logs)
    return model.history


def val_losses(*values):
    return [{"loss": 1.0, "val_loss": v} for v in values]


# -- Callback and CallbackList ----------------------------------------------------------------
def test_callback_base_has_every_hook_and_keras2_aliases():
    seen = []

    class Old(Callback):  # a Keras 2 style callback
        def on_batch_begin(self, batch, logs=None):
            seen.append(("begin", batch))

        def on_batch_end(self, batch, logs=None):
            seen.append(("end", batch, logs["loss"]))

    cb = Old()
    cb.on_train_batch_begin(0)
    cb.on_train_batch_end(0, {"loss": 1.0})
    assert seen == [("begin", 0), ("end", 0, 1.0)]
    base = Callback()
    for hook in ("on_epoch_begin", "on_epoch_end", "on_train_batch_begin", "on_train_batch_end",
                 "on_test_batch_begin", "on_test_batch_end", "on_predict_batch_begin", "on_predict_batch_end"):
        assert getattr(base, hook)(0, {}) is None
    for hook in ("on_train_begin", "on_train_end", "on_test_begin", "on_test_end", "on_predict_begin",
                 "on_predict_end"):
        assert getattr(base, hook)({}) is None
    model = FakeModel()
    cl = CallbackList([cb], model=model, verbose=0, epochs=2, steps=5)
    assert cb.model is model and cb.params == {"verbose": 0, "epochs": 2, "steps": 5}
    assert cl.has_train_batch_hooks and not cl.has_test_batch_hooks and not cl.has_predict_batch_hooks


def test_history_is_added_and_becomes_model_history():
    model = FakeModel()
    logs = [{"loss": 1.0, "accuracy": 0.5, "val_loss": 1.2, "val_accuracy": 0.4},
            {"loss": 0.8, "accuracy": 0.6, "val_loss": 1.1, "val_accuracy": 0.45}]
    history = fake_fit(model, None, logs)
    assert isinstance(history, History) and model.history is history
    assert history.epoch == [0, 1]
    assert history.history == {"accuracy": [0.5, 0.6], "loss": [1.0, 0.8], "val_accuracy": [0.4, 0.45],
                               "val_loss": [1.2, 1.1]}
    assert list(history.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]  # Keras 3's order
    assert history.params == {"verbose": 0, "epochs": 2, "steps": 3} and history.model is model
    second = fake_fit(model, None, logs[:1])
    assert second is not history and second.history["loss"] == [1.0]  # a new History per fit, like Keras 3


def test_a_history_passed_to_two_fits_keeps_appending():
    model, history = FakeModel(), History()
    fake_fit(model, [history], val_losses(1.0))
    fake_fit(model, [history], val_losses(0.5))
    assert history.history["val_loss"] == [1.0, 0.5] and history.epoch == [0]


def test_lazy_logs_never_computed_with_only_history():
    logs = CountingLogs()
    cl = CallbackList(None, model=FakeModel(), add_history=True, add_progbar=False, verbose=0, epochs=1, steps=3)
    assert not cl.has_train_batch_hooks and not cl.has_test_batch_hooks and not cl.has_predict_batch_hooks
    cl.on_train_batch_end(0, logs)  # even when called, nobody implements it
    fake_fit(FakeModel(), None, val_losses(1.0, 0.9), batch_logs=logs, validation_steps=2)
    assert logs.calls == 0


def test_verbose_2_needs_no_batch_hooks(capsys):
    logs = CountingLogs()
    cl = CallbackList(None, model=FakeModel(), add_history=True, add_progbar=True, verbose=2, epochs=1, steps=3)
    assert not cl.has_train_batch_hooks
    fake_fit(FakeModel(), None, val_losses(1.0), verbose=2, batch_logs=logs)
    assert logs.calls == 0


def test_lazy_logs_computed_at_most_once_per_batch():
    got = []

    class A(Callback):
        def on_train_batch_end(self, batch, logs=None):
            got.append(("A", batch, logs))

    class B(Callback):
        def on_batch_end(self, batch, logs=None):
            got.append(("B", batch, logs))

    logs = CountingLogs({"loss": np.float32(0.5), "accuracy": 0.75})
    fake_fit(FakeModel(), [A(), B()], val_losses(1.0, 0.9), steps=4, batch_logs=logs)
    assert logs.calls == 8  # 2 epochs x 4 batches, shared by both callbacks
    assert len(got) == 16
    assert got[0][2] == {"accuracy": 0.75, "loss": 0.5} and type(got[0][2]["loss"]) is float


def test_wants_batch_logs_withholds_logs():
    got = []

    class EveryOther(Callback):
        def _wants_batch_logs(self, batch):
            return batch % 2 == 0

        def on_train_batch_end(self, batch, logs=None):
            got.append(logs)

    logs = CountingLogs()
    fake_fit(FakeModel(), [EveryOther()], val_losses(1.0), steps=4, batch_logs=logs)
    assert logs.calls == 2
    assert got[1] == {} and got[2] == {"accuracy": 0.75, "loss": 0.5}


def test_batch_logs_given_as_a_dict_are_passed_through():
    got = []
    cl = CallbackList([LambdaCallback(on_train_batch_end=lambda batch, logs: got.append(logs))], model=FakeModel())
    cl.on_train_batch_end(0, {"loss": np.float64(2.0)})
    assert got == [{"loss": 2.0}]


def test_predict_batch_logs_keep_arrays():
    got = []
    cl = CallbackList([LambdaCallback(on_predict_batch_end=lambda batch, logs: got.append(logs))],
                      model=FakeModel(), verbose=0, epochs=1, steps=1)
    assert cl.has_predict_batch_hooks
    out = np.ones((2, 3))
    cl.on_predict_begin()
    cl.on_predict_batch_end(0, {"outputs": out})
    assert got[0]["outputs"] is out


def test_callbacks_must_be_instances():
    with pytest.raises(TypeError, match=r"got the class EarlyStopping; write EarlyStopping\(...\)"):
        CallbackList([EarlyStopping], model=FakeModel())
    with pytest.raises(TypeError, match="polykeras.callbacks.Callback instances"):
        CallbackList([object()], model=FakeModel())
    cl = CallbackList(TerminateOnNaN(), model=FakeModel())  # a single callback is fine
    assert len(cl.callbacks) == 1


def test_a_callback_that_skips_super_init_still_works():
    class NoInit(Callback):
        def __init__(self):
            self.count = 0

        def on_epoch_end(self, epoch, logs=None):
            self.count += 1
            assert self.model is not None

    cb = NoInit()
    fake_fit(FakeModel(), [cb], val_losses(1.0, 0.9))
    assert cb.count == 2


def test_test_end_logs_are_sorted_but_the_callers_dict_is_not_reordered():
    got = []
    cl = CallbackList([LambdaCallback(on_test_end=lambda logs: got.append(list(logs)))], model=FakeModel())
    logs = {"loss": 1.0, "mse": 0.5, "accuracy": 0.25}
    cl.on_test_end(logs)
    assert got == [["accuracy", "loss", "mse"]] and list(logs) == ["loss", "mse", "accuracy"]


def test_user_supplied_history_and_progbar_are_not_duplicated():
    history, bar = History(), ProgbarLogger()
    cl = CallbackList([history, bar], model=FakeModel(), add_history=True, add_progbar=True, verbose=1,
                      epochs=1, steps=1)
    assert cl.callbacks == [history, bar]


def test_append_sets_model_and_params():
    model = FakeModel()
    cl = CallbackList([], model=model, verbose=0, epochs=1, steps=2)
    assert not cl.has_train_batch_hooks
    cb = TerminateOnNaN()
    cl.append(cb)
    assert cb.model is model and cb.params["steps"] == 2 and cl.has_train_batch_hooks


def test_callbacks_see_keys_added_by_earlier_callbacks():
    seen = []
    model = FakeModel()
    fake_fit(model, [ReduceLROnPlateau(), LambdaCallback(on_epoch_end=lambda e, logs: seen.append(dict(logs)))],
             val_losses(1.0))
    assert seen[0]["learning_rate"] == 0.1
    assert model.history.history["learning_rate"] == [0.1]


# -- EarlyStopping ------------------------------------------------------------------------------
def test_early_stopping_patience():
    model = FakeModel()
    es = EarlyStopping(patience=2)
    history = fake_fit(model, [es], val_losses(1.0, 0.9, 0.95, 0.96, 0.97, 0.98))
    assert history.epoch == [0, 1, 2, 3] and es.stopped_epoch == 3
    assert es.best == 0.9 and es.best_epoch == 1 and model.stop_training


def test_early_stopping_patience_0_stops_at_first_non_improvement():
    es = EarlyStopping(monitor="loss")
    history = fake_fit(FakeModel(), [es], [{"loss": 1.0}, {"loss": 0.5}, {"loss": 0.6}, {"loss": 0.4}])
    assert history.epoch == [0, 1, 2]


def test_early_stopping_min_delta():
    values = val_losses(1.0, 0.95, 0.91, 0.88)
    assert fake_fit(FakeModel(), [EarlyStopping(patience=1)], values).epoch == [0, 1, 2, 3]
    es = EarlyStopping(patience=1, min_delta=-0.1)  # the sign is ignored
    assert fake_fit(FakeModel(), [es], values).epoch == [0, 1] and es.stopped_epoch == 1


def test_early_stopping_mode_from_the_metric_name():
    logs = [{"val_accuracy": a} for a in (0.5, 0.6, 0.55, 0.58, 0.7)]
    assert fake_fit(FakeModel(), [EarlyStopping("val_accuracy", patience=1)], logs).epoch == [0, 1, 2]
    # mode="min" on accuracy: 0.6 is worse than 0.5
    assert fake_fit(FakeModel(), [EarlyStopping("val_accuracy", patience=1, mode="min")], logs).epoch == [0, 1]
    for name in ("val_acc", "auc", "val_precision", "sparse_categorical_accuracy"):
        es = EarlyStopping(name)
        fake_fit(FakeModel(), [es], [{name: 1.0}])
        assert es.direction == "max", name
    for name in ("val_mse", "mean_absolute_error", "val_output_loss"):
        es = EarlyStopping(name)
        fake_fit(FakeModel(), [es], [{name: 1.0}])
        assert es.direction == "min", name


def test_early_stopping_unknown_direction_and_mode():
    with pytest.raises(ValueError, match="mode='max'"):
        fake_fit(FakeModel(), [EarlyStopping("val_score")], [{"val_score": 1.0}])
    with pytest.warns(UserWarning, match="mode 'best' is unknown, fallback to auto"):
        es = EarlyStopping(mode="best")
    assert es.mode == "auto"


def test_early_stopping_baseline():
    values = val_losses(0.8, 0.9, 0.9, 0.9)
    # without a baseline epoch 0 is an improvement, so 2 more epochs of patience
    assert fake_fit(FakeModel(), [EarlyStopping(patience=2)], values).epoch == [0, 1, 2]
    # with one, epoch 0 does not reset the wait: stop one epoch earlier
    assert fake_fit(FakeModel(), [EarlyStopping(patience=2, baseline=0.5)], values).epoch == [0, 1]


def test_early_stopping_restore_best_weights_when_stopped(capsys):
    model = FakeModel()
    es = EarlyStopping(patience=1, restore_best_weights=True, verbose=1)
    fake_fit(model, [es], val_losses(1.0, 0.5, 0.7, 0.8))
    assert es.stopped_epoch == 2
    assert model.weights[0][0] == 1  # the weights of epoch 1, the best
    out = capsys.readouterr().out
    assert "Epoch 3: early stopping\n" in out
    assert "Restoring model weights from the end of the best epoch: 2." in out


def test_early_stopping_restores_even_without_stopping_like_keras3():
    model = FakeModel()
    es = EarlyStopping(patience=5, restore_best_weights=True)
    fake_fit(model, [es], val_losses(1.0, 0.5, 0.7))
    assert es.stopped_epoch == 0 and model.weights[0][0] == 1
    model = FakeModel()
    fake_fit(model, [EarlyStopping(patience=5)], val_losses(1.0, 0.5, 0.7))
    assert model.weights[0][0] == 2  # not asked to restore: the last weights


def test_early_stopping_start_from_epoch():
    es = EarlyStopping(patience=0, start_from_epoch=2)
    history = fake_fit(FakeModel(), [es], val_losses(1.0, 2.0, 3.0, 2.5, 2.6))
    assert history.epoch == [0, 1, 2, 3, 4] and es.best == 2.5
    es = EarlyStopping(patience=0, start_from_epoch=2)
    assert fake_fit(FakeModel(), [es], val_losses(1.0, 2.0, 3.0, 4.0)).epoch == [0, 1, 2, 3]


def test_early_stopping_missing_monitor_warns_with_available_keys():
    with pytest.warns(UserWarning, match=r"`val_loss` which is not available. Available metrics are: "
                                         r"accuracy,loss"):
        history = fake_fit(FakeModel(), [EarlyStopping()], [{"loss": 1.0, "accuracy": 0.5}] * 3)
    assert history.epoch == [0, 1, 2]


def test_early_stopping_instance_can_be_reused():
    es = EarlyStopping(patience=1)
    fake_fit(FakeModel(), [es], val_losses(0.1, 0.2, 0.3))
    assert es.stopped_epoch == 1
    history = fake_fit(FakeModel(), [es], val_losses(1.0, 0.9, 0.8))
    assert history.epoch == [0, 1, 2] and es.stopped_epoch == 0


# -- ModelCheckpoint ----------------------------------------------------------------------------
def test_checkpoint_every_epoch_with_formatted_names(tmp_path):
    model = FakeModel()
    path = tmp_path / "deep" / "ckpt" / "model-{epoch:02d}-{val_loss:.2f}.keras"
    fake_fit(model, [ModelCheckpoint(path)], val_losses(0.912, 0.8, 0.85))
    names = sorted(os.listdir(tmp_path / "deep" / "ckpt"))
    assert names == ["model-01-0.91.keras", "model-02-0.80.keras", "model-03-0.85.keras"]
    assert (tmp_path / "deep" / "ckpt" / "model-02-0.80.keras").read_text() == "model 1"


def test_checkpoint_save_best_only_overwrites_with_the_best(tmp_path, capsys):
    model = FakeModel()
    path = tmp_path / "best.keras"
    cp = ModelCheckpoint(path, save_best_only=True, verbose=1)
    fake_fit(model, [cp], val_losses(1.0, 0.5, 0.7, 0.4, 0.45))
    assert [epoch for epoch, (kind, p) in enumerate(model.saved)] == [0, 1, 2]
    assert path.read_text() == "model 3" and cp.best == 0.4
    out = capsys.readouterr().out
    assert f"Epoch 1: val_loss improved from None to 1.00000, saving model to {path}" in out
    assert "Epoch 3: val_loss did not improve from 0.50000" in out


def test_checkpoint_best_only_max_mode_and_weights_only(tmp_path):
    model = FakeModel()
    path = tmp_path / "w-{epoch}.weights.h5"
    logs = [{"val_accuracy": a} for a in (0.5, 0.4, 0.6)]
    fake_fit(model, [ModelCheckpoint(path, "val_accuracy", save_best_only=True, save_weights_only=True)], logs)
    assert model.saved == [("weights", str(tmp_path / "w-1.weights.h5")), ("weights", str(tmp_path / "w-3.weights.h5"))]


def test_checkpoint_initial_value_threshold(tmp_path):
    model = FakeModel()
    cp = ModelCheckpoint(tmp_path / "m.keras", save_best_only=True, initial_value_threshold=0.6)
    fake_fit(model, [cp], val_losses(1.0, 0.7, 0.5))
    assert len(model.saved) == 1 and (tmp_path / "m.keras").read_text() == "model 2"


def test_checkpoint_missing_format_key_lists_available_keys(tmp_path):
    cp = ModelCheckpoint(tmp_path / "m-{val_acc:.2f}.keras")
    with pytest.raises(KeyError, match=r"Reason: val_acc is not in the logs. Available keys: loss, val_loss, epoch"):
        fake_fit(FakeModel(), [cp], val_losses(1.0))


def test_checkpoint_missing_monitor_saves_with_a_warning(tmp_path):
    model = FakeModel()
    with pytest.warns(UserWarning, match="Can save best model only with val_loss available"):
        fake_fit(model, [ModelCheckpoint(tmp_path / "m.keras", save_best_only=True)], [{"loss": 1.0}])
    assert len(model.saved) == 1


def test_checkpoint_save_freq_in_batches(tmp_path):
    model = FakeModel()
    logs = CountingLogs()
    path = tmp_path / "e{epoch}-b{batch}.keras"
    cp = ModelCheckpoint(path, save_freq=2)
    fake_fit(model, [cp], val_losses(1.0, 0.9), steps=3, batch_logs=logs)
    # 6 batches over two epochs: saved after the 2nd, 4th and 6th
    assert sorted(os.listdir(tmp_path)) == ["e1-b2.keras", "e2-b1.keras", "e2-b3.keras"]
    assert logs.calls == 3  # batch logs only fetched on saving batches


def test_checkpoint_epoch_freq_needs_no_batch_hooks(tmp_path):
    cl = CallbackList([ModelCheckpoint(tmp_path / "m.keras")], model=FakeModel(), verbose=0, epochs=1, steps=1)
    assert not cl.has_train_batch_hooks


def test_checkpoint_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="Unrecognized save_freq"):
        ModelCheckpoint(tmp_path / "m.keras", save_freq="batch")
    with pytest.warns(UserWarning, match="fallback to auto"):
        ModelCheckpoint(tmp_path / "m.keras", mode="lowest")
    with pytest.raises(ValueError, match="must end in `.keras`.*or `.polykeras`"):
        ModelCheckpoint(tmp_path / "m-{epoch}.h5")
    ModelCheckpoint(tmp_path / "m-{epoch}.polykeras")
    ModelCheckpoint(tmp_path / "w-{epoch}.npz", save_weights_only=True)  # weights: any name (an .npz archive)
    (tmp_path / "dir.keras").mkdir()
    with pytest.raises(IsADirectoryError, match="existing directory"):
        fake_fit(FakeModel(), [ModelCheckpoint(tmp_path / "dir.keras")], val_losses(1.0))


# -- ReduceLROnPlateau / LearningRateScheduler ------------------------------------------------
def test_reduce_lr_factor_and_patience(capsys):
    model = FakeModel(learning_rate=0.1)
    history = fake_fit(model, [ReduceLROnPlateau(factor=0.5, patience=2, verbose=1)], val_losses(1, 1, 1, 1, 1))
    assert history.history["learning_rate"] == [0.1, 0.1, 0.1, 0.05, 0.05]
    assert model.optimizer.learning_rate == pytest.approx(0.025)
    assert "Epoch 3: ReduceLROnPlateau reducing learning rate to 0.05." in capsys.readouterr().out


def test_reduce_lr_min_delta():
    model = FakeModel(learning_rate=0.1)
    fake_fit(model, [ReduceLROnPlateau(factor=0.5, patience=1, min_delta=0.1)], val_losses(1.0, 0.95))
    assert model.optimizer.learning_rate == 0.05  # 0.05 lower is not an improvement of 0.1


def test_reduce_lr_cooldown():
    model = FakeModel(learning_rate=0.1)
    history = fake_fit(model, [ReduceLROnPlateau(factor=0.5, patience=1, cooldown=2)], val_losses(1, 1, 1, 1, 1))
    assert history.history["learning_rate"] == [0.1, 0.1, 0.05, 0.05, 0.025]


def test_reduce_lr_min_lr():
    model = FakeModel(learning_rate=0.1)
    fake_fit(model, [ReduceLROnPlateau(factor=0.1, patience=1, min_lr=0.05)], val_losses(1, 1, 1, 1))
    assert model.optimizer.learning_rate == 0.05


def test_reduce_lr_max_mode_from_name():
    model = FakeModel(learning_rate=0.1)
    logs = [{"val_accuracy": a} for a in (0.5, 0.6, 0.7)]
    fake_fit(model, [ReduceLROnPlateau("val_accuracy", patience=1)], logs)
    assert model.optimizer.learning_rate == 0.1


def test_reduce_lr_arguments():
    with pytest.raises(ValueError, match="factor >= 1.0"):
        ReduceLROnPlateau(factor=1.5)
    with pytest.raises(TypeError, match="patiance"):
        ReduceLROnPlateau(patiance=3)
    assert ReduceLROnPlateau(epsilon=0.01).min_delta == 0.01
    with pytest.warns(UserWarning, match="Learning rate reduction is conditioned on metric `val_loss`"):
        fake_fit(FakeModel(), [ReduceLROnPlateau()], [{"loss": 1.0}])


def test_learning_rate_scheduler():
    model = FakeModel(learning_rate=0.1)
    history = fake_fit(model, [LearningRateScheduler(lambda epoch, lr: lr * 0.5)], val_losses(1, 1, 1))
    assert history.history["learning_rate"] == [0.05, 0.025, 0.0125]
    fake_fit(model, [LearningRateScheduler(lambda epoch: 0.01 * (epoch + 1))], val_losses(1, 1))  # old form
    assert model.optimizer.learning_rate == 0.02
    with pytest.raises(ValueError, match="should be a float"):
        fake_fit(model, [LearningRateScheduler(lambda epoch, lr: "fast")], val_losses(1))


# -- TerminateOnNaN ---------------------------------------------------------------------------------
def test_terminate_on_nan(capsys):
    class Logs:
        def __init__(self):
            self.batch = -1

        def __call__(self):
            self.batch += 1
            return {"loss": math.nan if self.batch == 1 else 1.0}

    model = FakeModel()
    history = fake_fit(model, [TerminateOnNaN()], val_losses(1, 1), steps=5, batch_logs=Logs())
    assert model.stop_training and history.epoch == [0]
    assert capsys.readouterr().out == "Batch 1: Invalid loss, terminating training\n"


def test_terminate_on_inf_can_raise():
    with pytest.raises(RuntimeError, match="NaN or Inf loss encountered at batch 0"):
        fake_fit(FakeModel(), [TerminateOnNaN(raise_error=True)], val_losses(1),
                 batch_logs=CountingLogs({"loss": math.inf}))


# -- CSVLogger ----------------------------------------------------------------------------------------
def test_csv_logger_contents_and_flush_each_epoch(tmp_path):
    path = tmp_path / "log.csv"
    seen_on_disk = []
    logger = CSVLogger(path)
    peek = LambdaCallback(on_epoch_end=lambda epoch, logs: seen_on_disk.append(path.read_text().count("\n")))
    logs = [{"loss": 1.0, "accuracy": 0.5, "val_loss": 1.5, "val_accuracy": 0.25},
            {"loss": 0.5, "accuracy": 0.75, "val_loss": 1.25, "val_accuracy": 0.5}]
    fake_fit(FakeModel(), [logger, peek], logs)
    assert seen_on_disk == [2, 3]  # header + one row per epoch, on disk before the epoch ends
    assert path.read_text().splitlines() == ["epoch,accuracy,loss,val_accuracy,val_loss",
                                             "0,0.5,1.0,0.25,1.5", "1,0.75,0.5,0.5,1.25"]
    assert logger.csv_file.closed


def test_csv_logger_without_validation_adds_na_columns_and_separator(tmp_path):
    path = tmp_path / "log.tsv"
    fake_fit(FakeModel(), [CSVLogger(path, separator="\t")], [{"loss": 1.0}])
    assert path.read_text().splitlines() == ["epoch\tloss\tval_loss", "0\t1.0\tNA"]


def test_csv_logger_append(tmp_path):
    path = tmp_path / "log.csv"
    fake_fit(FakeModel(), [CSVLogger(path)], val_losses(1.0))
    fake_fit(FakeModel(), [CSVLogger(path, append=True)], val_losses(0.5))
    assert path.read_text().splitlines() == ["epoch,loss,val_loss", "0,1.0,1.0", "0,1.0,0.5"]
    fake_fit(FakeModel(), [CSVLogger(path)], val_losses(0.25))  # append=False overwrites
    assert path.read_text().splitlines() == ["epoch,loss,val_loss", "0,1.0,0.25"]


# -- LambdaCallback -------------------------------------------------------------------------------
def test_lambda_callback_hooks():
    events = []
    cb = LambdaCallback(on_epoch_begin=lambda epoch, logs: events.append(("epoch_begin", epoch)),
                        on_epoch_end=lambda epoch, logs: events.append(("epoch_end", epoch, logs["val_loss"])),
                        on_train_begin=lambda logs: events.append("train_begin"),
                        on_train_end=lambda logs: events.append("train_end"),
                        on_train_batch_begin=lambda batch, logs: events.append(("batch_begin", batch)),
                        on_train_batch_end=lambda batch, logs: events.append(("batch_end", batch, logs["loss"])),
                        on_test_end=lambda logs: events.append(("test_end", logs["loss"])))
    fake_fit(FakeModel(), [cb], val_losses(0.7), steps=2, validation_steps=1)
    assert events == ["train_begin", ("epoch_begin", 0), ("batch_begin", 0), ("batch_end", 0, 0.5),
                      ("batch_begin", 1), ("batch_end", 1, 0.5), ("test_end", 0.7), ("epoch_end", 0, 0.7),
                      "train_end"]


def test_lambda_callback_without_batch_functions_needs_no_batch_hooks():
    cl = CallbackList([LambdaCallback(on_epoch_end=lambda e, l: None)], model=FakeModel())
    assert not cl.has_train_batch_hooks


# -- ProgbarLogger --------------------------------------------------------------------------------
def plain(text: str) -> str:
    return ANSI.sub("", text)


def test_progbar_logger_static_output(clock, capsys):
    logs = CountingLogs()
    epochs = [{"loss": 0.34512, "accuracy": 0.90123, "val_loss": 0.4, "val_accuracy": 0.88},
              {"loss": 0.3, "accuracy": 0.91, "val_loss": 0.39, "val_accuracy": 0.8801}]
    fake_fit(FakeModel(), [ProgbarLogger(dynamic_display=False)], epochs, steps=4, verbose=1, batch_logs=logs,
             clock=clock, step_time=0.006, validation_steps=2)
    bar = "━" * 20
    assert capsys.readouterr().out == (
        "Epoch 1/2\n"
        f"4/4 {bar} 0s 6ms/step - accuracy: 0.9012 - loss: 0.3451 - val_accuracy: 0.8800 - val_loss: 0.4000\n"
        "Epoch 2/2\n"
        f"4/4 {bar} 0s 6ms/step - accuracy: 0.9100 - loss: 0.3000 - val_accuracy: 0.8801 - val_loss: 0.3900\n")
    assert logs.calls == 0  # a static display never needs batch logs


def test_progbar_logger_one_epoch_has_no_epoch_line(clock, capsys):
    fake_fit(FakeModel(), [ProgbarLogger(dynamic_display=False)], [{"loss": 2e-4}], steps=2, verbose=1)
    assert capsys.readouterr().out == f"2/2 {'━' * 20} 0s 0s/step - loss: 2.0000e-04\n"


def test_progbar_logger_verbose_2(clock, capsys):
    fake_fit(FakeModel(), [], [{"loss": 0.5, "accuracy": 0.25}] * 2, steps=469, verbose=2, clock=clock,
             step_time=0.0064)
    assert capsys.readouterr().out == ("Epoch 1/2\n469/469 - 3s - 6ms/step - accuracy: 0.2500 - loss: 0.5000\n"
                                       "Epoch 2/2\n469/469 - 3s - 6ms/step - accuracy: 0.2500 - loss: 0.5000\n")


def test_progbar_logger_dynamic_fetches_logs_only_to_redraw(clock, capsys):
    logs = CountingLogs()
    # 100 steps of 2 ms: redraws at step 1, every 50 ms, and on the last step
    fake_fit(FakeModel(), [ProgbarLogger(dynamic_display=True)], [{"loss": 0.25, "accuracy": 0.8, "val_loss": 0.5}],
             steps=100, verbose=1, batch_logs=logs, clock=clock, step_time=0.002, validation_steps=3)
    out = capsys.readouterr().out
    assert 4 <= logs.calls <= 6
    frames = out.split("\r")[1:]
    assert len(frames) == logs.calls + 1  # plus the final line
    assert plain(frames[0]).startswith("  1/100 ") and "loss: 0.5000" in frames[0]
    assert plain(frames[-1]) == ("100/100 " + "━" * 20 + " 0s 2ms/step"
                                 " - accuracy: 0.8000 - loss: 0.2500 - val_loss: 0.5000\n")
    assert out.endswith("\n")


def test_progbar_logger_evaluate_and_predict(clock, capsys):
    model = FakeModel()
    logs = CountingLogs({"loss": 0.25})
    cl = CallbackList(None, model=model, add_progbar=True, verbose=1, epochs=1, steps=3)
    cl._progbar.dynamic_display = False
    cl.on_test_begin()
    for step in range(3):
        if cl.has_test_batch_hooks:
            cl.on_test_batch_end(step, logs)
    cl.on_test_end({"loss": 0.25, "accuracy": 0.5})
    assert capsys.readouterr().out == f"3/3 {'━' * 20} 0s 0s/step - accuracy: 0.5000 - loss: 0.2500\n"
    cl = CallbackList(None, model=model, add_progbar=True, verbose=1, epochs=1, steps=2)
    cl._progbar.dynamic_display = False
    cl.on_predict_begin()
    for step in range(2):
        cl.on_predict_batch_end(step, {"outputs": np.zeros(3)})
    cl.on_predict_end()
    assert capsys.readouterr().out == f"2/2 {'━' * 20} 0s 0s/step\n"


def test_progbar_logger_is_silent_during_validation_in_fit(clock):
    cl = CallbackList([ProgbarLogger(dynamic_display=True)], model=FakeModel(), verbose=1, epochs=1, steps=2)
    assert cl.has_test_batch_hooks  # evaluate shows a bar
    cl.on_train_begin()
    assert not cl.has_test_batch_hooks  # validation inside fit does not
    cl.on_train_end()
    assert cl.has_test_batch_hooks


def test_exports():
    for name in ("Callback", "CallbackList", "History", "ProgbarLogger", "EarlyStopping", "ModelCheckpoint",
                 "ReduceLROnPlateau", "LearningRateScheduler", "TerminateOnNaN", "CSVLogger", "LambdaCallback"):
        assert hasattr(callbacks, name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        import polykeras as keras

        assert keras.callbacks.EarlyStopping is EarlyStopping
