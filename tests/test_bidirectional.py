"""Bidirectional (SimpleRNN/LSTM/GRU wrapped; merge modes; ``backward_layer``; masks): the layer's
config, weights and errors, the reference's gradients by finite differences, the wiring against two
plain recurrent layers, torch and jax against the reference in float64, and ``.keras`` files and
numbers exchanged with Keras 3 itself."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import polykeras as keras
from polykeras import layers
from polykeras.trainer import Trainer

from _fd import build, check_gradients, fixed_dropout_mask, random_weights
from backend_parity import check_fit_matches_reference, rel_diff
from polykeras_numpy.layers import ForwardContext

# float64: one forward/backward pass (or two epochs of SGD) through an embedding, two recurrent layers
# and a Dense at unit roundoff 1.1e-16 (measured below 2e-15); a wrong flip or mask shows at 1e-2
FLOAT64_PARITY = 1e-10
RECURRENT = ("SimpleRNN", "LSTM", "GRU")
MERGE_MODES = ("concat", "sum", "mul", "ave")
MASK = np.array([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [1, 0, 1, 1, 0]], bool)  # right, left, middle padding


def _config(kind, merge_mode="concat", return_sequences=True, **options):
    return {"layer": {"class_name": kind, "config": {"units": 3, "return_sequences": return_sequences, **options}},
            "merge_mode": merge_mode}


# -- the layer ------------------------------------------------------------------------------------------------
def test_wrapped_layers_weights_and_config_are_keras_s():
    layer = layers.Bidirectional(layers.LSTM(4, return_sequences=True, name="enc"))
    assert (layer.forward_layer.name, layer.backward_layer.name) == ("forward_enc", "backward_enc")
    assert not layer.forward_layer.go_backwards and layer.backward_layer.go_backwards
    out = layer(keras.Input((5, 3)))
    assert out.shape == (None, 5, 8)
    cell = [f"{d}_enc/lstm_cell/{w}" for d in ("forward", "backward") for w in ("kernel", "recurrent_kernel", "bias")]
    assert [w.path for w in layer.weights] == [f"{layer.name}/{name}" for name in cell]
    assert [w.shape for w in layer.weights] == [(3, 16), (4, 16), (16,)] * 2
    bias = layer.get_weights()[2]
    np.testing.assert_array_equal(bias[4:8], 1.0)  # unit_forget_bias, as the wrapped LSTM's own
    config = layer.get_config()
    assert config["layer"]["config"]["name"] == "forward_enc" and config["backward_layer"]["config"]["go_backwards"]
    again = layers.Bidirectional.from_config(config)
    assert again.get_config()["layer"] == config["layer"]
    assert again.get_config()["backward_layer"] == config["backward_layer"]


def test_wrapped_layers_read_and_write_the_trained_weights():
    layer = layers.Bidirectional(layers.GRU(2, return_sequences=True))
    model = keras.Sequential([keras.Input((4, 3)), layer])
    model.compile("sgd", "mse", backend="numpy")
    model.fit(np.ones((2, 4, 3)), np.ones((2, 4, 4)), verbose=0)
    for got, want in zip(layer.forward_layer.get_weights() + layer.backward_layer.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(got, want)
    layer.forward_layer.set_weights([np.zeros_like(w) for w in layer.forward_layer.get_weights()])
    np.testing.assert_array_equal(model.predict(np.ones((1, 4, 3)), verbose=0)[..., :2], 0.0)
    with pytest.raises(ValueError, match="has 3 weight"):
        layer.backward_layer.set_weights([])


def test_output_shapes_and_masks():
    inp = keras.Input((6,), dtype="int32")
    emb = layers.Embedding(9, 3, mask_zero=True)(inp)
    seq = layers.Bidirectional(layers.GRU(2, return_sequences=True), merge_mode="sum")(emb)
    last = layers.Bidirectional(layers.SimpleRNN(2), backward_layer=layers.SimpleRNN(5, go_backwards=True))(emb)
    assert seq.shape == (None, 6, 2) and last.shape == (None, 7)
    assert seq.mask is emb.mask and last.mask is None and seq.mask_input is emb.mask
    first, second = layers.Bidirectional(layers.LSTM(2, return_sequences=True), merge_mode=None)(emb)
    assert first.shape == second.shape == (None, 6, 2) and first.mask is emb.mask


@pytest.mark.parametrize("make, message", [
    (lambda: layers.Bidirectional(layers.LSTM(2), merge_mode="max"), "merge_mode must be one of"),
    (lambda: layers.Bidirectional(layers.Dense(2)), "recurrent layer .*got Dense layer"),
    (lambda: layers.Bidirectional("lstm"), "recurrent layer .*got 'lstm'"),
    (lambda: layers.Bidirectional(layers.LSTM(2), backward_layer=layers.Conv1D(2, 3)), "backward_layer; got Conv1D"),
    (lambda: layers.Bidirectional(layers.LSTM(2), backward_layer=layers.LSTM(2)), "different go_backwards"),
    (lambda: layers.Bidirectional(layers.LSTM(2, return_sequences=True),
                                  backward_layer=layers.LSTM(2, go_backwards=True)), "same return_sequences"),
    (lambda: layers.Bidirectional(layers.GRU(2), backward_layer=layers.GRU(3, go_backwards=True), merge_mode="sum"),
     "equal units; got 2 and 3"),
])
def test_bad_arguments_are_refused_clearly(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_unsupported_options_are_refused_by_name():
    with pytest.raises(NotImplementedError, match="weights="):
        layers.Bidirectional(layers.LSTM(2), weights=[np.zeros((1, 8))])
    with pytest.raises(ValueError, match="rank 3"):
        layers.Bidirectional(layers.LSTM(2))(keras.Input((4,)))


# -- the reference ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", RECURRENT)
@pytest.mark.parametrize("merge_mode", MERGE_MODES)
@pytest.mark.parametrize("return_sequences", [True, False])
def test_reference_gradients_match_finite_differences(kind, merge_mode, return_sequences):
    rng = np.random.default_rng(0)
    kernel = build("Bidirectional", _config(kind, merge_mode, return_sequences), (4, 2))
    check_gradients(kernel, random_weights(kernel, rng), rng.normal(size=(2, 4, 2)))


@pytest.mark.parametrize("kind", RECURRENT)
def test_reference_gradients_with_dropout_and_a_custom_backward_layer(kind):
    rng = np.random.default_rng(1)
    config = _config(kind, dropout=0.3, recurrent_dropout=0.25)
    config["backward_layer"] = {"class_name": kind, "config": {"units": 2, "return_sequences": True,
                                                               "go_backwards": True, "use_bias": False}}
    kernel = build("Bidirectional", config, (4, 2))
    assert [w.shape[0] for w in kernel.spec.weights][-2:] == [2, 2]  # the backward layer's, no bias
    check_gradients(kernel, random_weights(kernel, rng), rng.normal(size=(2, 4, 2)), training=True)


@pytest.mark.parametrize("kind", RECURRENT)
@pytest.mark.parametrize("merge_mode, return_sequences", [("concat", True), ("mul", True), ("ave", False)])
def test_reference_gradients_with_a_mask(kind, merge_mode, return_sequences, monkeypatch):
    import _fd

    monkeypatch.setattr(_fd, "context", lambda training, dtype=np.float64: ForwardContext(
        training, fixed_dropout_mask(dtype), MASK))
    rng = np.random.default_rng(2)
    kernel = build("Bidirectional", _config(kind, merge_mode, return_sequences), (5, 2))
    check_gradients(kernel, random_weights(kernel, rng), rng.normal(size=(3, 5, 2)))


@pytest.mark.parametrize("kind", RECURRENT)
@pytest.mark.parametrize("return_sequences", [True, False])
def test_is_two_recurrent_layers_the_backward_one_flipped_back(kind, return_sequences):
    """Against the plain recurrent kernels with the same weights: the backward layer reverses the mask
    with the sequence, its outputs are flipped back to input order, and masked steps output zeros
    (Keras's ``zero_output_for_mask``, forced on with ``return_sequences``)."""
    rng = np.random.default_rng(3)
    kernel = build("Bidirectional", _config(kind, "concat", return_sequences), (5, 2))
    weights, x = random_weights(kernel, rng), rng.normal(size=(3, 5, 2))
    y, _ = kernel.forward(weights, x, ForwardContext(False, mask=MASK))
    n = len(weights) // 2
    sub = {"units": 3, "return_sequences": return_sequences}
    forward, _ = build(kind, sub, (5, 2)).forward(weights[:n], x, ForwardContext(False, mask=MASK))
    backward, _ = build(kind, {**sub, "go_backwards": True}, (5, 2)).forward(weights[n:], x,
                                                                              ForwardContext(False, mask=MASK))
    if return_sequences:
        forward, backward = forward * MASK[:, :, None], backward[:, ::-1] * MASK[:, :, None]
    np.testing.assert_array_equal(y, np.concatenate([forward, backward], axis=-1))


# -- torch and jax against the reference --------------------------------------------------------------------------
def _model(kind, merge_mode="concat", return_sequences=True, masked=True, dropout=0.0, backward_units=None):
    keras.utils.set_random_seed(0)
    inp = keras.Input((6,), dtype="int32")
    h = layers.Embedding(9, 3, mask_zero=masked)(inp)
    make = getattr(layers, kind)
    options = dict(return_sequences=return_sequences, dropout=dropout, recurrent_dropout=dropout)
    backward = None if backward_units is None else make(backward_units, go_backwards=True, **options)
    h = layers.Bidirectional(make(3, **options), merge_mode=merge_mode, backward_layer=backward)(h)
    if merge_mode is None:  # the two outputs apart
        h = layers.Subtract()(h)
    if return_sequences:
        h = layers.GlobalAveragePooling1D()(h)
    return keras.Model(inp, layers.Dense(2)(h))


def _ids(rows=4, steps=6, seed=0):
    ids = np.random.default_rng(seed).integers(1, 9, (rows, steps))
    ids[0, 4:], ids[1, :2], ids[2, 3] = 0, 0, 0  # padded right, left and in the middle
    return ids


PARITY_CASES = [
    ("LSTM", "concat", True, True, 0.0, None), ("LSTM", "sum", False, True, 0.0, None),
    ("LSTM", "concat", True, False, 0.3, None), ("GRU", "mul", True, True, 0.0, None),
    ("GRU", "ave", False, False, 0.0, None), ("GRU", "concat", True, True, 0.3, 2),
    ("SimpleRNN", "concat", False, True, 0.0, 4), ("SimpleRNN", "ave", True, True, 0.3, None),
    ("LSTM", None, True, True, 0.0, None),
]


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("kind, merge_mode, return_sequences, masked, dropout, backward_units", PARITY_CASES)
def test_forward_and_gradients_match_the_reference_in_float64(backend, kind, merge_mode, return_sequences, masked,
                                                                dropout, backward_units):
    ids, y = _ids(), np.random.default_rng(1).normal(size=(4, 2))
    runs = {}
    for name in ("numpy", backend):
        model = _model(kind, merge_mode, return_sequences, masked, dropout, backward_units)
        model.compile("sgd", "mse", backend=name, dtype="float64", parity=True)
        xs, ys = Trainer(model).prepare(ids, y)
        program = model._get_program(training=True, y_ndim=ys.ndim)
        grads = program.value_and_grad(xs, ys, 3, training=True)
        runs[name] = [program.predict_step(xs), grads.loss] + [g for g in grads.weights if g is not None]
    assert len(runs[backend]) == len(runs["numpy"])
    for got, want in zip(runs[backend], runs["numpy"]):
        assert rel_diff(got, want) < FLOAT64_PARITY


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_training_matches_the_reference_in_float64(backend):
    def build():
        keras.utils.set_random_seed(0)
        inp = keras.Input((6,), dtype="int32")
        h = layers.Embedding(9, 4, mask_zero=True)(inp)
        h = layers.Bidirectional(layers.LSTM(3, return_sequences=True, dropout=0.2))(h)
        h = layers.Bidirectional(layers.GRU(2))(h)
        return keras.Model(inp, layers.Dense(2, activation="softmax")(h))

    check_fit_matches_reference(build, backend, _ids(8), np.random.default_rng(2).integers(0, 2, 8),
                                "sparse_categorical_crossentropy", FLOAT64_PARITY, epochs=2, batch_size=4)


def test_torch_runs_both_directions_in_one_fused_call_where_it_can(monkeypatch):
    """Without dropout both directions are one bidirectional fused torch call (no time loop, as
    ``nn.LSTM(bidirectional=True)``): unmasked, or over a packed sequence where every row is right-padded
    (the same numbers as the reference's masking: see the float64 cases); other masks take the loop."""
    from polykeras_torch.layers import bidirectional, recurrent

    def no_loop(*args, **kwargs):
        raise AssertionError("the time loop ran")

    packed = []  # per fused call: whether it ran on a packed sequence
    fused_both = bidirectional.Bidirectional._fused_both
    monkeypatch.setattr(bidirectional.Bidirectional, "_fused_both",
                        lambda self, params, x, lengths: packed.append(lengths is not None)
                        or fused_both(self, params, x, lengths))
    right_padded = _ids()
    right_padded[1], right_padded[2] = [3, 4, 5, 0, 0, 0], [2, 5, 7, 1, 6, 0]
    with monkeypatch.context() as patched:
        patched.setattr(recurrent._Recurrent, "_loop", no_loop)
        for kind in RECURRENT:
            for return_sequences in (True, False):
                for masked in (False, True):
                    model = _model(kind, "sum", return_sequences, masked=masked)
                    model.compile("sgd", "mse", backend="torch")
                    model.fit(right_padded, np.zeros((4, 2)), verbose=0)
    assert packed == [False, True] * 6
    packed.clear()
    for model in (_model("LSTM", masked=True), _model("GRU", masked=False, dropout=0.3)):
        model.compile("sgd", "mse", backend="torch")
        model.fit(_ids(), np.zeros((4, 2)), verbose=0)  # left and middle padding; dropout masks
    assert packed == []


@pytest.mark.parametrize("kind", RECURRENT)
@pytest.mark.parametrize("return_sequences", [True, False])
def test_torch_packed_sequences_match_the_reference_in_float64(kind, return_sequences):
    ids, y = _ids(), np.random.default_rng(3).normal(size=(4, 2))
    ids[1], ids[2] = [3, 4, 5, 0, 0, 0], [2, 0, 0, 0, 0, 0]  # right-padded rows only, one of length one
    runs = {}
    for name in ("numpy", "torch"):
        model = _model(kind, "mul", return_sequences, masked=True)
        model.compile("sgd", "mse", backend=name, dtype="float64")
        xs, ys = Trainer(model).prepare(ids, y)
        program = model._get_program(training=True, y_ndim=ys.ndim)
        grads = program.value_and_grad(xs, ys, 3, training=True)
        runs[name] = [program.predict_step(xs), grads.loss] + [g for g in grads.weights if g is not None]
    for got, want in zip(runs["torch"], runs["numpy"]):
        assert rel_diff(got, want) < FLOAT64_PARITY


# -- Keras 3 -------------------------------------------------------------------------------------------------
def _stacked_model():
    keras.utils.set_random_seed(4)
    inp = keras.Input((6,), dtype="int32")
    h = layers.Embedding(9, 3, mask_zero=True)(inp)
    h = layers.Bidirectional(layers.LSTM(3, return_sequences=True, kernel_regularizer=keras.regularizers.l2(0.01),
                                         name="lstm"), name="bi")(h)
    h = layers.Bidirectional(layers.GRU(2), merge_mode="sum",
                             backward_layer=layers.GRU(2, go_backwards=True, use_bias=False, name="bk"))(h)
    h = layers.Bidirectional(layers.SimpleRNN(2), merge_mode="ave")(layers.RepeatVector(3)(h))
    return keras.Model(inp, layers.Dense(2)(h))


KERAS_SCRIPT = """
import os, sys
os.environ["KERAS_BACKEND"] = "jax"
import numpy as np, keras
folder = sys.argv[1]
ids = np.load(folder + "/ids.npy")
model = keras.saving.load_model(folder + "/pk.keras")
assert [w.path for w in model.weights][1:5] == ["bi/forward_lstm/lstm_cell/kernel",
    "bi/forward_lstm/lstm_cell/recurrent_kernel", "bi/forward_lstm/lstm_cell/bias", "bi/backward_lstm/lstm_cell/kernel"]
np.save(folder + "/keras_pred.npy", model.predict(ids, verbose=0))
inp = keras.Input((6,), dtype="int32")
h = keras.layers.Embedding(9, 3, mask_zero=True)(inp)
h = keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True))(h)
h = keras.layers.Bidirectional(keras.layers.GRU(2), merge_mode="mul",
                               backward_layer=keras.layers.GRU(2, go_backwards=True, use_bias=False, name="bk"))(h)
theirs = keras.Model(inp, h)
theirs.compile("adam", "mse")
theirs.fit(ids, np.zeros((4, 2)), verbose=0)
theirs.save(folder + "/keras.keras")
np.save(folder + "/keras_own_pred.npy", theirs.predict(ids, verbose=0))
"""


def test_keras_files_exchange_with_keras_3(tmp_path):
    """polykeras -> Keras (masked, stacked, a custom backward layer, every kind) predicts as polykeras
    does; Keras -> polykeras (masked, with its Adam state) predicts as Keras does. Keras computes in float32."""
    pytest.importorskip("h5py")
    model, ids = _stacked_model(), _ids()
    model.compile("adam", "mse", backend="numpy")
    model.fit(ids, np.zeros((4, 2)), verbose=0)
    model.save(tmp_path / "pk.keras")
    np.save(tmp_path / "ids.npy", ids)
    run = subprocess.run([sys.executable, "-c", KERAS_SCRIPT, str(tmp_path)], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    np.testing.assert_allclose(np.load(tmp_path / "keras_pred.npy"), model.predict(ids, verbose=0), atol=1e-6)
    again = keras.models.load_model(tmp_path / "pk.keras")
    np.testing.assert_array_equal(again.predict(ids, verbose=0), model.predict(ids, verbose=0))
    theirs = keras.models.load_model(tmp_path / "keras.keras")
    assert theirs.compiled and type(theirs.optimizer).__name__ == "Adam"
    np.testing.assert_allclose(theirs.predict(ids, verbose=0), np.load(tmp_path / "keras_own_pred.npy"), atol=1e-6)


SPLIT_SCRIPT = """
import os, sys
os.environ["KERAS_BACKEND"] = "jax"
import numpy as np, keras
folder = sys.argv[1]
x = np.load(folder + "/x.npy")
np.save(folder + "/keras_pred.npy", keras.saving.load_model(folder + "/pk.keras").predict(x, verbose=0)[1])
inp = keras.Input((5, 3))
forward, backward = keras.layers.Bidirectional(keras.layers.GRU(2, return_sequences=True), merge_mode=None)(inp)
theirs = keras.Model(inp, [keras.layers.Dense(1)(forward), backward])
theirs.save(folder + "/keras.keras")
np.save(folder + "/keras_own_pred.npy", np.concatenate(theirs.predict(x, verbose=0), axis=-1))
"""


def test_merge_mode_none_splits_the_concatenation_and_saves_as_polykeras(tmp_path):
    inp = keras.Input((5, 3))
    forward, backward = layers.Bidirectional(layers.LSTM(2, return_sequences=True), merge_mode=None)(inp)
    model = keras.Model(inp, [forward, layers.Dense(1)(backward)])
    x = np.random.default_rng(6).normal(size=(2, 5, 3))
    model.compile("sgd", "mse", backend="numpy", dtype="float64")
    out = model.predict(x, verbose=0)
    concat = keras.Model(inp, layers.Bidirectional(layers.LSTM(2, return_sequences=True))(inp))
    concat.set_weights(model.get_weights()[:6])
    concat.compile("sgd", "mse", backend="numpy", dtype="float64")
    np.testing.assert_array_equal(out[0], concat.predict(x, verbose=0)[..., :2])
    model.save(tmp_path / "m.polykeras")
    loaded = keras.models.load_model(tmp_path / "m.polykeras")  # compiled anew: float32
    np.testing.assert_allclose(loaded.predict(x, verbose=0)[0], out[0], atol=1e-6)


def test_merge_mode_none_exchanges_with_keras_as_its_two_outputs(tmp_path):
    """The halves are written as Keras writes a call of two outputs (``keras_history`` tensor indices 0
    and 1, no split ops), so Keras reads polykeras's file and polykeras Keras's; Keras computes in
    float32 (1e-6 is float32 rounding over a 5-step LSTM and a Dense)."""
    pytest.importorskip("h5py")
    inp = keras.Input((5, 3))
    forward, backward = layers.Bidirectional(layers.LSTM(2, return_sequences=True), merge_mode=None)(inp)
    model = keras.Model(inp, [forward, layers.Dense(1)(backward)])
    x = np.random.default_rng(7).normal(size=(2, 5, 3)).astype("float32")
    model.compile("sgd", "mse", backend="numpy")
    model.save(tmp_path / "pk.keras")
    np.save(tmp_path / "x.npy", x)
    run = subprocess.run([sys.executable, "-c", SPLIT_SCRIPT, str(tmp_path)], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    np.testing.assert_allclose(np.load(tmp_path / "keras_pred.npy"), model.predict(x, verbose=0)[1], atol=1e-6)
    theirs = keras.models.load_model(tmp_path / "keras.keras")
    theirs.compile("sgd", "mse", backend="numpy")
    np.testing.assert_allclose(np.concatenate(theirs.predict(x, verbose=0), axis=-1),
                               np.load(tmp_path / "keras_own_pred.npy"), atol=1e-6)
