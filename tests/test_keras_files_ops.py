"""Ops applied to a functional model's tensors outside any layer, in Keras 3 ``.keras`` files, both
ways (:mod:`polykeras.saving.keras_ops`): polykeras writes each op node as the Keras operation Keras
writes for the same call (``Mean`` with ``axis``/``keepdims``, ``GetItem`` with its slices, constants
as ``__tensor__``), and reads Keras's operations back as op nodes. One model source, run with
polykeras's names and with Keras's, gives identical float64 predictions on both sides, and training
goes on alike from Keras's file."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import polykeras as keras
from polykeras import layers, ops
from polykeras.saving import keras_ops

# The model, as text: run here with polykeras's `keras`, `layers`, `ops`, and in Keras with its own.
MODEL = '''
def build_model(exact=True):
    # exact: the mean as sum / n. Keras 3.15 computes ops.mean (and var, sin, cos, tanh) through float32 even
    # on float64 tensors (measured 3e-8 off on jax and torch), so the float64 comparisons leave it out.
    x = keras.Input((8,))
    h = layers.Dense(6, name="dense_in")(x)
    mean = ops.sum(h, axis=-1, keepdims=True) / 6.0 if exact else ops.mean(h, axis=-1, keepdims=True)
    a = mean * 2.0 + h                                                      # a constant, a broadcast
    b = ops.sum(h, axis=1, keepdims=True) - 1.5 / (ops.max(h, axis=-1, keepdims=True) ** 2 + 1.0)
    c = ops.concatenate([a[:, 2:], ops.relu(h), ops.sigmoid(b) * h], axis=-1)  # slicing, (None, 16)
    r = ops.transpose(ops.reshape(c, (-1, 4, 4)), (0, 2, 1))
    s = ops.squeeze(ops.expand_dims(r, -1), -1)
    m = ops.matmul(s, np.linspace(-1.0, 1.0, 12).reshape(4, 3))            # a constant array
    g = ops.softmax(ops.log1p(ops.square(m)) + ops.gelu(m, approximate=False), axis=-1) * ops.abs(-m)
    f = layers.Flatten()(ops.exp(ops.clip(g, 0.0, 2.0)) - ops.square(h[:, None, 1:4]))
    out = layers.Dense(2, name="dense_out")(ops.concatenate([f, ops.maximum(b, 0.0), h * h], axis=-1))
    # outputs of 2 and 4 columns: Keras's mse takes its mean through float32 as well, exact only for 1/2^k
    return keras.Model(x, [out, a[:, 2:]])


def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(16, 8)), [rng.normal(size=(16, 2)), rng.normal(size=(16, 4))]
'''
_polykeras_side = {"keras": keras, "layers": layers, "ops": ops, "np": np}
exec(MODEL, _polykeras_side)  # noqa: S102 -- the same source, with polykeras's names
build_model, data = _polykeras_side["build_model"], _polykeras_side["data"]
FIT = {"epochs": 1, "batch_size": 8, "verbose": 0, "shuffle": False}

KERAS = '''
import inspect, json, os, sys
os.environ["KERAS_BACKEND"] = "jax"
os.environ["JAX_ENABLE_X64"] = "1"
import numpy as np, keras
from keras import layers, ops
keras.config.set_floatx("float64")
''' + MODEL

# Keras opens polykeras's float64 and float32 files and predicts; and checks polykeras's table of its operations
# against its own classes (module, class, constructor and call arguments)
KERAS_READS = KERAS + '''
TABLE = json.loads(sys.argv[1])
model = keras.saving.load_model(sys.argv[2])
x, _ = data()
for i, y in enumerate(model.predict(x, verbose=0)):
    np.save(sys.argv[3] + f"_{i}.npy", np.asarray(y))
print("OPERATIONS", sorted(type(op).__name__ for op in model.operations if not isinstance(op, keras.layers.Layer)))
keras.config.set_floatx("float32")
model = keras.saving.load_model(sys.argv[4])
print("OPERATIONS32", sorted(type(op).__name__ for op in model.operations if not isinstance(op, keras.layers.Layer)))
for i, y in enumerate(model.predict(x.astype("float32"), verbose=0)):
    np.save(sys.argv[5] + f"_{i}.npy", np.asarray(y))
import importlib
wrong = []
for op, (module, class_name, ctor, call) in TABLE.items():
    cls = getattr(importlib.import_module("keras.src.ops." + module), class_name, None)
    if cls is None:
        wrong.append(f"{op}: no {module}.{class_name}")
        continue
    init = set(inspect.signature(cls.__init__).parameters) - {"self", "name"}
    call_args = [p for p in inspect.signature(cls.call).parameters if p != "self"]
    if not set(ctor) <= init:
        wrong.append(f"{op}: {class_name}.__init__ takes {sorted(init)}, not {ctor}")
    if call_args[:len(call)] != call and not (call_args and call_args[0].startswith("*")):
        wrong.append(f"{op}: {class_name}.call takes {call_args}, not {call}")
print("WRONG", wrong)
'''

# Keras writes the model trained one epoch (Adam), and its state one epoch later
KERAS_WRITES = KERAS + '''
keras.utils.set_random_seed(2)
model = build_model()
model.compile("adam", ["mse", "mse"])
x, y = data()
model.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
model.save(sys.argv[1])
for i, p in enumerate(model.predict(x, verbose=0)):
    np.save(sys.argv[2] + f"_{i}.npy", np.asarray(p))
model.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
model.save(sys.argv[3])
keras.config.set_floatx("float32")
model = build_model(exact=False)
model.save(sys.argv[4])
for i, p in enumerate(model.predict(x.astype("float32"), verbose=0)):
    np.save(sys.argv[5] + f"_{i}.npy", np.asarray(p))
'''


def _keras(script: str, *args) -> str:
    run = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


def _arrays(path) -> dict[str, np.ndarray]:
    import h5py

    out = {}
    with zipfile.ZipFile(path) as zf, h5py.File(io.BytesIO(zf.read("model.weights.h5")), "r") as h5:
        h5.visititems(lambda name, obj: out.__setitem__(name, np.asarray(obj)) if isinstance(obj, h5py.Dataset)
                      else None)
    return out


def _config(path) -> dict:
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read("config.json"))


@pytest.fixture
def float64():
    before = keras.backend.floatx()
    keras.backend.set_floatx("float64")
    yield
    keras.backend.set_floatx(before)


def _model(backend="numpy", exact=True):
    keras.utils.set_random_seed(1)
    model = build_model(exact)
    model.compile("adam", ["mse", "mse"], backend=backend)
    return model


def _table() -> dict:
    """polykeras's table as the Keras side checks it: op -> (module, class, constructor args, call args)."""
    from polykeras.ops import registry

    out = {}
    for op, spec in keras_ops.KERAS_OPS.items():
        definition = registry.get(op)
        ctor = [p for p in definition.params if p not in spec.call + spec.call_kwargs]
        call = [t.rstrip("*") for t in definition.tensors] + list(spec.call)
        out[op] = (spec.module, spec.class_name, ctor, [] if definition.variadic and op == "einsum" else call)
    return out


def test_ops_on_a_models_tensors_go_through_a_keras_file_as_keras_operations(tmp_path, float64):
    model = _model(exact=False)
    x, y = data()
    model.fit(x, y, **FIT)
    model.save(tmp_path / "m.keras")
    entries = {e["name"]: e for e in _config(tmp_path / "m.keras")["config"]["layers"]}
    mean = next(e for e in entries.values() if e["class_name"] == "Mean")
    assert mean["module"] == "keras.src.ops.numpy" and mean["config"]["axis"] == -1 and mean["config"]["keepdims"]
    item = next(e for e in entries.values() if e["class_name"] == "GetItem")["inbound_nodes"][0]["args"][1]
    assert item == [{"class_name": "__slice__", "config": {"start": None, "stop": None, "step": None}},
                    {"class_name": "__slice__", "config": {"start": 2, "stop": None, "step": None}}]
    matmul = next(e for e in entries.values() if e["class_name"] == "Matmul")["inbound_nodes"][0]["args"][1]
    assert matmul["class_name"] == "__tensor__" and np.shape(matmul["config"]["value"]) == (4, 3)
    weights = _arrays(tmp_path / "m.keras")
    assert {k.split("/")[1] for k in weights if k.startswith("layers/")} == {"dense", "dense_1"}  # ops hold none
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    for a, b in zip(loaded.predict(x, verbose=0), model.predict(x, verbose=0)):
        np.testing.assert_array_equal(a, b)
    loss = model.fit(x, y, **FIT).history["loss"]  # the optimizer's state came along
    assert loaded.fit(x, y, **FIT).history["loss"] == loss


def test_an_op_keras_cannot_hold_is_refused_by_name(tmp_path):
    inp = keras.Input((5,))
    values, _ = ops.top_k(layers.Dense(5)(inp), 2)
    with pytest.raises(keras.saving.KerasFileError, match=r"ops.top_k_indices .*TopK.*\.polykeras"):
        keras.Model(inp, values).save(tmp_path / "t.keras")
    keras.Model(inp, values).save(tmp_path / "t.polykeras")


@pytest.mark.slow  # a Keras process: 15 to 25 s
def test_keras_opens_polykeras_ops_with_the_same_predictions(tmp_path, float64):
    model = _model()
    x, y = data()
    model.fit(x, y, **FIT)
    model.save(tmp_path / "p64.keras")
    want64 = model.predict(x, verbose=0)
    keras.backend.set_floatx("float32")
    model32 = _model(exact=False)
    model32.save(tmp_path / "p32.keras")
    out = _keras(KERAS_READS, json.dumps(_table()), tmp_path / "p64.keras", tmp_path / "y64", tmp_path / "p32.keras",
                 tmp_path / "y32")
    assert "WRONG []" in out, out  # every op of the table is Keras's class, with Keras's arguments
    assert "'GetItem'" in out and "'Mean'" in out.split("OPERATIONS32")[1]  # rebuilt as Keras's operations
    for i, want in enumerate(want64):  # float64: the same arithmetic, to rounding
        np.testing.assert_allclose(np.load(tmp_path / f"y64_{i}.npy"), want, rtol=1e-13, atol=1e-15)
    # float32: ~25 ops of unit roundoff 6e-8 each, summed in other orders by XLA and NumPy: 1e-5 holds
    for i, want in enumerate(model32.predict(x.astype("float32"), verbose=0)):
        np.testing.assert_allclose(np.load(tmp_path / f"y32_{i}.npy"), want, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("keras_ops")
    _keras(KERAS_WRITES, d / "trained.keras", d / "trained", d / "later.keras", d / "f32.keras", d / "f32")
    return d


@pytest.mark.slow  # the Keras process that writes the files: 15 to 25 s
@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_polykeras_opens_keras_operations_with_the_same_predictions_and_trains_on(keras_files, tmp_path, backend,
                                                                                   float64, monkeypatch):
    monkeypatch.setenv("POLYKERAS_BACKEND", backend)  # the backend the file's compile settings compile on
    x, y = data()
    model = keras.saving.load_model(keras_files / "trained.keras")  # compiled from the file, Adam's state too
    assert {type(layer).__name__ for layer in model.layers} >= {"Operation", "Dense", "Flatten"}
    for i, got in enumerate(model.predict(x, verbose=0)):
        np.testing.assert_allclose(got, np.load(keras_files / f"trained_{i}.npy"), rtol=1e-13, atol=1e-15)
    assert model.backend.name == backend
    model.fit(x, y, **FIT)
    model.save(tmp_path / "p.keras")
    keras_state, ours = _arrays(keras_files / "later.keras"), _arrays(tmp_path / "p.keras")
    assert set(keras_state) == set(ours)  # weights and the optimizer's variables, path for path
    for name, value in ours.items():
        np.testing.assert_allclose(value, keras_state[name], rtol=1e-12, atol=1e-14, err_msg=name)


@pytest.mark.slow  # the Keras process that writes the files: 15 to 25 s
def test_polykeras_opens_keras_operations_in_float32(keras_files):
    x, _ = data()
    model = keras.saving.load_model(keras_files / "f32.keras")
    assert "mean" in [layer.name for layer in model.layers]
    model.compile("sgd", ["mse", "mse"], backend="numpy", dtype="float32")
    # float32: ~25 ops of unit roundoff 6e-8 each, summed in other orders by XLA and NumPy: 1e-5 holds
    for i, got in enumerate(model.predict(x.astype("float32"), verbose=0)):
        np.testing.assert_allclose(got, np.load(keras_files / f"f32_{i}.npy"), rtol=1e-5, atol=1e-6)
