"""BackupAndRestore: a run killed with SIGKILL in the middle of an epoch, restarted, ends with the
weights of a run that was never stopped -- bit for bit: the backup holds the weights, the
optimizer's moments and where the fit stood (epoch, step, data-order seed), in one atomically
written file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

import polykeras as keras
from polykeras import layers
from polykeras.backends import backend_infos

STEPS_PER_EPOCH = 5  # 40 samples, batch 8


def run(backup_dir, seed=7, kill_at=None, backend="numpy", save_freq=3):
    """Three epochs of a model with dropout (so step seeds matter), shuffled (so the data order does)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([layers.Input((5,)), layers.Dense(6, activation="relu"), layers.Dropout(0.3),
                              layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", backend=backend, dtype="float64")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 5)), rng.integers(0, 3, 40)
    callbacks = [keras.callbacks.BackupAndRestore(backup_dir, save_freq=save_freq)]
    if kill_at is not None:
        def kill(batch, logs):
            if model.optimizer.iterations == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        callbacks.append(keras.callbacks.LambdaCallback(on_train_batch_end=kill))
    keras.utils.set_random_seed(seed)
    model.fit(x, y, batch_size=8, epochs=3, callbacks=callbacks, verbose=0)
    return model.get_weights()


def killed(backup_dir, kill_at, backend="numpy", save_freq=3, backed_up=True):
    code = (f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); from test_backup_and_restore import run; "
            f"run({str(backup_dir)!r}, kill_at={kill_at}, backend={backend!r}, save_freq={save_freq!r})")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert (backup_dir / "backup.polykeras").exists() == backed_up


@pytest.mark.parametrize("backend", ["numpy", pytest.param("torch", marks=pytest.mark.skipif(
    not backend_infos()["torch"].installed, reason="torch is not installed"))])
def test_a_run_killed_mid_epoch_finishes_as_if_never_stopped(tmp_path, backend):
    expected = run(tmp_path / "never-stopped", backend=backend)
    killed(tmp_path / "killed", kill_at=2 * STEPS_PER_EPOCH - 1, backend=backend)  # in epoch 2; backup at step 6
    # the restarted process seeds differently: only the backup's own seed gives the same data order
    resumed = run(tmp_path / "killed", seed=99, backend=backend)
    for a, b in zip(resumed, expected):
        np.testing.assert_array_equal(a, b)
    assert not (tmp_path / "killed" / "backup.polykeras").exists()  # removed once the fit ends


@pytest.mark.slow
def test_ten_kills_at_random_steps_all_finish_as_if_never_stopped(tmp_path):
    """The issue's bar: 10 runs out of 10, each killed at a random step (every third step is backed up) and
    restarted, end with the uninterrupted run's weights; no backup is left behind."""
    expected = run(tmp_path / "never-stopped")
    steps = np.random.default_rng(11).integers(1, 3 * STEPS_PER_EPOCH, 10)
    for k, step in enumerate(steps):
        folder = tmp_path / f"killed-{k}"
        killed(folder, kill_at=int(step), backed_up=step >= 3)  # killed before the first backup: starts afresh
        for a, b in zip(run(folder), expected):  # the same script, restarted
            np.testing.assert_array_equal(a, b)
        assert not (folder / "backup.polykeras").exists()


def test_epoch_backups_resume_at_the_next_epoch(tmp_path):
    expected = run(tmp_path / "a", save_freq="epoch")
    killed(tmp_path / "b", kill_at=STEPS_PER_EPOCH + 2, save_freq="epoch")
    for a, b in zip(run(tmp_path / "b", seed=99, save_freq="epoch"), expected):
        np.testing.assert_array_equal(a, b)


def test_bad_save_freq_is_refused():
    with pytest.raises(ValueError, match="save_freq must be"):
        keras.callbacks.BackupAndRestore("somewhere", save_freq=0)
    with pytest.raises(ValueError, match="save_freq must be"):
        keras.callbacks.BackupAndRestore("somewhere", save_freq=True)
