"""A masked SimpleRNN / LSTM / GRU on torch keeps its fused op where each row of the mask is valid for
one run of steps -- right padding, left padding (``pad_sequences``'s default), both in one batch, and
either under ``go_backwards`` -- by running the runs packed (:mod:`polykeras_torch.layers.recurrent`);
a mask with holes or an all-masked row takes the time loop. Either way the numbers are the NumPy
reference's in float64: outputs at masked steps (the carried ``h``), final states, ``initial_state``,
and the gradients of weights, inputs and initial states."""

from __future__ import annotations

import numpy as np
import pytest

import polykeras as keras
from polykeras import layers
from polykeras.trainer import Trainer

from backend_parity import rel_diff

# float64: one forward and backward pass through a 6-step recurrence and two small layers, at unit
# roundoff 1.1e-16 (measured below 1e-14); an output at a masked step taken from the wrong step, or a
# state not carried, differs by 1e-2 or more
FLOAT64_PARITY = 1e-10
RECURRENT = ("SimpleRNN", "LSTM", "GRU")
N_STATES = {"SimpleRNN": 1, "LSTM": 2, "GRU": 1}
STEPS, FEATURES, UNITS = 6, 3, 4

#: per padding: each row's valid steps (the rest are zeros, which ``Masking`` masks)
PADDINGS = {
    "right": [range(0, 6), range(0, 3), range(0, 1), range(0, 5)],
    "left": [range(0, 6), range(3, 6), range(5, 6), range(1, 6)],
    "mixed": [range(0, 4), range(2, 6), range(1, 4), range(0, 6)],  # right, left, a run in the middle
    "holey": [range(0, 6), [0, 1, 4, 5], range(5, 6), range(0, 2)],  # a hole: the loop
    "empty-row": [range(0, 6), [], range(2, 6), range(0, 3)],  # an all-masked row: the loop
}
FUSED = ("right", "left", "mixed")

#: (return_sequences, return_state, go_backwards, initial_state)
CONFIGS = [(False, False, False, False), (True, True, True, True), (True, False, False, True),
           (False, True, True, False)]


def _data(padding, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(4, STEPS, FEATURES))
    for row, valid in enumerate(PADDINGS[padding]):
        keep = np.zeros(STEPS, bool)
        keep[list(valid)] = True
        x[row, ~keep] = 0.0
    return x, rng


def _model(kind, return_sequences, return_state, go_backwards, initial_state):
    keras.utils.set_random_seed(0)
    x = keras.Input((STEPS, FEATURES))
    inputs = [x] + ([keras.Input((UNITS,)) for _ in range(N_STATES[kind])] if initial_state else [])
    layer = getattr(layers, kind)(UNITS, return_sequences=return_sequences, return_state=return_state,
                                  go_backwards=go_backwards)
    masked = layers.Masking()(x)
    out = layer(masked, initial_state=inputs[1:]) if initial_state else layer(masked)
    parts = list(out) if return_state else [out]
    parts = [layers.Flatten()(p) if len(p.shape) == 3 else p for p in parts]  # every step's output counts
    h = layers.Concatenate()(parts) if len(parts) > 1 else parts[0]
    return keras.Model(inputs if initial_state else x, layers.Dense(2, activation="tanh")(h))


def _runs(kind, padding, config, backends=("numpy", "torch")):
    x, rng = _data(padding)
    xs = [x] + [rng.normal(size=(4, UNITS)) for _ in range(N_STATES[kind])] if config[3] else x
    y = rng.normal(size=(4, 2))
    runs = {}
    for name in backends:
        model = _model(kind, *config)
        model.compile("sgd", "mse", backend=name, dtype="float64")
        inputs, ys = Trainer(model).prepare(xs, y)
        program = model._get_program(training=True, y_ndim=ys.ndim)
        grads = program.value_and_grad(inputs, ys, 3, training=True)
        got = grads.inputs if isinstance(grads.inputs, tuple) else (grads.inputs,)
        runs[name] = [program.predict_step(inputs), grads.loss] + [g for g in grads.weights if g is not None] + \
            [g for g in got if g is not None]
    return runs


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(
    n for n, on in zip(("seq", "state", "back", "init"), c) if on) or "plain")
@pytest.mark.parametrize("padding", list(PADDINGS))
@pytest.mark.parametrize("kind", RECURRENT)
def test_torch_matches_the_reference_in_float64(kind, padding, config):
    runs = _runs(kind, padding, config)
    assert len(runs["torch"]) == len(runs["numpy"]) >= 5  # output, loss, 5 weights or more, input gradients
    for i, (got, want) in enumerate(zip(runs["torch"], runs["numpy"])):
        assert rel_diff(got, want) < FLOAT64_PARITY, f"item {i}"


@pytest.mark.parametrize("kind", RECURRENT)
def test_fused_op_runs_for_runs_of_steps_and_the_loop_for_holes(kind, monkeypatch):
    """Counts the fused calls over a mask, the packed ones among them (an LSTM returning its states: its
    ``c`` at each row's last valid step) and the time loops, in one forward and backward pass per padding."""
    from polykeras_torch.layers import recurrent

    calls = []

    def counted(owner, name, label):
        original = getattr(owner, name)
        monkeypatch.setattr(owner, name, lambda *a, **k: calls.append(label) or original(*a, **k))

    counted(recurrent._Recurrent, "_fused_segments", "fused")
    counted(recurrent, "packed_fused_call", "packed")
    counted(recurrent._Recurrent, "_loop", "loop")
    for padding in PADDINGS:
        for config in CONFIGS[:2]:  # the second returns the states
            calls.clear()
            _runs(kind, padding, config, backends=("torch",))
            packed = kind == "LSTM" and config[1]
            expected = ({"fused", "packed"} if packed else {"fused"}) if padding in FUSED else {"loop"}
            assert calls and set(calls) == expected, (padding, config, calls)


def test_recurrent_dropout_in_training_takes_the_loop(monkeypatch):
    from polykeras_torch.layers import recurrent

    calls = []
    loop = recurrent._Recurrent._loop
    monkeypatch.setattr(recurrent._Recurrent, "_fused_segments", lambda *a, **k: calls.append("fused"))
    monkeypatch.setattr(recurrent._Recurrent, "_loop", lambda *a, **k: calls.append("loop") or loop(*a, **k))
    keras.utils.set_random_seed(0)
    x = keras.Input((STEPS, FEATURES))
    model = keras.Model(x, layers.LSTM(UNITS, recurrent_dropout=0.3)(layers.Masking()(x)))
    model.compile("sgd", "mse", backend="torch")
    model.fit(_data("left")[0], np.zeros((4, UNITS)), verbose=0)
    assert calls == ["loop"]


def test_mask_segments_reads_runs_of_steps():
    import torch

    from polykeras_torch.layers.recurrent import mask_segments

    def segments(rows):
        found = mask_segments(torch.tensor(rows, dtype=torch.bool))
        return None if found is None else (found[0].tolist(), found[1].tolist(), found[2])

    assert segments([[1, 1, 0], [1, 0, 0]]) == ([0, 0], [2, 1], False)
    assert segments([[0, 1, 1], [1, 1, 1], [0, 1, 0]]) == ([1, 0, 1], [2, 3, 1], True)
    assert segments([[1, 0, 1], [1, 1, 1]]) is None  # a hole
    assert segments([[0, 0, 0], [1, 1, 1]]) is None  # an all-masked row


@pytest.mark.parametrize("kind", RECURRENT)
def test_bidirectional_over_left_padding_runs_each_direction_fused(kind, monkeypatch):
    """Bidirectional's one fused call takes right padding only; over left padding each layer takes its
    own path, which for a run of steps is now the fused op -- the forward one over left padding, the
    backward one (``go_backwards``) over the reversed mask: right padding. Float64 as the reference."""
    from polykeras_torch.layers import recurrent

    calls = []
    loop, fused = recurrent._Recurrent._loop, recurrent._Recurrent._fused_segments
    monkeypatch.setattr(recurrent._Recurrent, "_loop", lambda *a, **k: calls.append("loop") or loop(*a, **k))
    monkeypatch.setattr(recurrent._Recurrent, "_fused_segments",
                        lambda *a, **k: calls.append("fused") or fused(*a, **k))
    x, rng = _data("left")
    y = rng.normal(size=(4, 2))
    runs = {}
    for name in ("numpy", "torch"):
        keras.utils.set_random_seed(0)
        inp = keras.Input((STEPS, FEATURES))
        h = layers.Bidirectional(getattr(layers, kind)(UNITS, return_sequences=True))(layers.Masking()(inp))
        model = keras.Model(inp, layers.Dense(2)(layers.Flatten()(h)))
        model.compile("sgd", "mse", backend=name, dtype="float64")
        xs, ys = Trainer(model).prepare(x, y)
        program = model._get_program(training=True, y_ndim=ys.ndim)
        grads = program.value_and_grad(xs, ys, 3, training=True)
        runs[name] = [program.predict_step(xs), grads.loss, grads.inputs] + [g for g in grads.weights if g is not None]
    for i, (got, want) in enumerate(zip(runs["torch"], runs["numpy"])):
        assert rel_diff(got, want) < FLOAT64_PARITY, f"item {i}"
    assert calls and set(calls) == {"fused"}
