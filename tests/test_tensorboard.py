"""The TensorBoard callback writes event files TensorBoard reads: read back here record by record
(TFRecord framing, tensorboardX's Event protobuf), so the test needs no TensorFlow."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

import polykeras as keras
from polykeras import layers

pytest.importorskip("tensorboardX")
from tensorboardX.proto import event_pb2  # noqa: E402


def events(run_dir: Path) -> list:
    out = []
    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        at = 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at:at + 8])
            out.append(event_pb2.Event.FromString(data[at + 12:at + 12 + length]))
            at += 12 + length + 4
    return out


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    found: dict[str, list] = {}
    for event in events(run_dir):
        for value in event.summary.value:
            if value.HasField("simple_value"):
                found.setdefault(value.tag, []).append((event.step, value.simple_value))
    return found


def test_epoch_and_batch_scalars_and_histograms(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([layers.Input((4,)), layers.Dense(3, activation="softmax", name="head")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 4)), rng.integers(0, 3, 32)
    board = keras.callbacks.TensorBoard(tmp_path / "logs", histogram_freq=1, update_freq=2)
    history = model.fit(x, y, batch_size=8, epochs=2, validation_split=0.25, callbacks=[board], verbose=0).history
    train, validation = scalars(tmp_path / "logs" / "train"), scalars(tmp_path / "logs" / "validation")
    assert [v for _, v in train["epoch_loss"]] == pytest.approx(history["loss"], rel=1e-6)
    assert [s for s, _ in train["epoch_loss"]] == [0, 1]
    assert [v for _, v in validation["epoch_accuracy"]] == pytest.approx(history["val_accuracy"], rel=1e-6)
    assert [v for _, v in train["epoch_learning_rate"]] == pytest.approx([0.001, 0.001])
    assert [s for s, _ in train["batch_loss"]] == [2, 4, 6]  # every 2nd of 3 batches per epoch, counted across
    tags = {v.tag for e in events(tmp_path / "logs" / "train") for v in e.summary.value if v.HasField("histo")}
    assert tags == {"head/kernel", "head/bias"}


def test_bad_update_freq_is_refused():
    with pytest.raises(ValueError, match="update_freq must be"):
        keras.callbacks.TensorBoard("logs", update_freq=0)


def test_without_tensorboardx_the_error_says_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # makes `import tensorboardX` fail
    with pytest.raises(ImportError, match=r"pip install tensorboardX \(or pip install 'polykeras\[tensorboard\]'\)"):
        keras.callbacks.TensorBoard("logs")
