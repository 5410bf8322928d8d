"""L3's native yardsticks (plain PyTorch, plain JAX + optax, Keras fit): they
train the same model as the backends, and the runner reports each backend's
speed as a ratio to them."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import polykeras as keras
from polykeras import workloads
from polykeras_conformance import measure, native, report, runner

BUILTIN = list(workloads.BUILTIN)
# float32 forward passes of the same weights through different kernels (summation order, fused
# gates): rounding of ~1e3-term sums lands near 1e-6 relative (measured <= 6e-7); a wrong
# weight layout (an untransposed kernel, Flatten rows in NCHW order) is O(1).
FORWARD_RTOL = 1e-5


def _reference_and_native(side: str, name: str):
    workload, model = measure.speed_model(name)
    x, _ = measure.speed_data(workload, model, 1)
    x = x[:16]
    loop = native.SIDES[side].load().Loop(model, workload, "cpu")
    model.compile(optimizer="sgd", loss=workload.loss, backend="numpy", dtype="float32")
    return model.predict(x, verbose=0), loop.predict(x)


def _rel_or_unsupported(side: str, name: str):
    try:
        return _rel(*_reference_and_native(side, name)[::-1])
    except measure.Unsupported as exc:
        return f"unsupported: {exc}"


def _rel(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


def _is_chain(name: str) -> bool:
    """One input, each layer reading the one before: what the plain loops are assembled from (native.chain)."""
    spec = workloads.get(name).build()._spec()
    names = [inp.name for inp in spec.inputs] + [layer.name for layer in spec.layers]
    return len(spec.inputs) == 1 and all(layer.inbound == (before,) for layer, before in zip(spec.layers, names))


#: The functional workloads have no native yardstick yet: L3 reports them as unsupported.
CHAINS = [n for n in BUILTIN if _is_chain(n)]
GRAPHS = [n for n in BUILTIN if n not in CHAINS]


@pytest.mark.parametrize("name", CHAINS)
@pytest.mark.parametrize("side", ["plain-torch", "plain-jax"])
def test_the_plain_loops_compute_the_workloads_model(side, name):
    pytest.importorskip(native.SIDES[side].needs[0])
    reference, mine = _reference_and_native(side, name)
    assert mine.shape == reference.shape
    assert _rel(mine, reference) <= FORWARD_RTOL


@pytest.mark.parametrize("name", GRAPHS)
@pytest.mark.parametrize("side", ["plain-torch", "plain-jax"])
def test_the_plain_loops_refuse_graphs_by_name(side, name):
    pytest.importorskip(native.SIDES[side].needs[0])
    with pytest.raises(measure.Unsupported, match="takes one input|covers chains"):
        _reference_and_native(side, name)


def test_keras_fit_gets_the_workloads_model():
    """Keras fit on jax, in a process of its own (Keras fixes its backend at import)."""
    pytest.importorskip("keras")
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from test_conformance_native import "
            "_rel_or_unsupported, BUILTIN; "
            "print(json.dumps({n: _rel_or_unsupported('keras-fit-jax', n) for n in BUILTIN}))")
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    proc = subprocess.run([sys.executable, "-c", code, os.path.dirname(__file__)], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    # a custom layer whose class is registered on neither side cannot go through a .keras file: reported, not failed
    assert "is not registered, so a .keras file cannot name it" in results.pop("mnist-antirectifier")
    for name, rel in results.items():
        assert rel <= FORWARD_RTOL, f"{name}: {rel:.1e}"


@pytest.mark.parametrize("side", ["plain-torch", "plain-jax"])
def test_the_plain_loops_train(side):
    """Every epoch is timed, and training changes the model."""
    pytest.importorskip(native.SIDES[side].needs[0])
    workload, model = measure.speed_model("mnist-mlp")
    x, y = measure.speed_data(workload, model, 3)
    loop = native.SIDES[side].load().Loop(model, workload, "cpu")
    before = loop.predict(x[:8])
    seconds = loop.fit_epochs(x, y, workload.batch_size, epochs=2)
    assert len(seconds) == 2 and all(s > 0 for s in seconds)
    assert _rel(loop.predict(x[:8]), before) > 1e-3


def test_what_the_plain_loops_do_not_cover_is_unsupported_and_named():
    keras.backend.clear_session()
    model = keras.Sequential([keras.layers.Input((5, 3)), keras.layers.GRU(4), keras.layers.Dense(2)])
    with pytest.raises(measure.Unsupported, match="not layer kind GRU"):
        native.chain(model, "mse", "torch")
    model = keras.Sequential([keras.layers.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    with pytest.raises(measure.Unsupported, match="'softmax' with 'hinge'"):
        native.chain(model, "hinge", "jax")


def test_softmax_and_sigmoid_heads_fold_into_the_loss():
    _, model = measure.speed_model("imdb-lstm")
    layers, fused = native.chain(model, "binary_crossentropy", "torch")
    assert fused and layers[-1].config["activation"] == "linear"
    assert model._spec().layers[-1].config["activation"] == "sigmoid"  # the model itself is untouched


def test_each_backend_is_timed_beside_its_native_counterparts(tmp_path):
    pytest.importorskip("torch")
    messages = []
    runs = runner.run(["torch"], dtypes=("float32",), levels=("L3",), quick=True, workloads=["fashion-mlp"],
                      progress=messages.append, natives=["plain-torch"], auto=False)
    by_label = {r.label: r for r in runs}
    torch_run = by_label["torch / cpu / float32"]
    native_run = by_label["plain PyTorch (native) / cpu / float32"]
    assert native_run.native and not native_run.error
    native_ms = next(c.value for c in native_run.checks if c.quantity == "ms/step")
    torch_ms = next(c.value for c in torch_run.checks if c.quantity == "ms/step")
    ratio = next(c for c in torch_run.checks if c.quantity == "speed vs plain PyTorch")
    assert ratio.value == pytest.approx(native_ms / torch_ms) and ratio.status == "info"
    text = report.write(runs, tmp_path, ("L3",), quick=True).read_text()
    assert "### Native yardsticks" in text and "vs plain PyTorch" in text
    assert "plain PyTorch (native)" not in text.split("## Tolerances")[0]  # not a backend: no verdict row


def test_natives_default_to_each_backends_own_framework():
    assert native.sides_for(["numpy", "torch", "keras-tensorflow"]) == ["plain-torch", "keras-fit-torch",
                                                                         "keras-fit-tensorflow"]
    assert native.sides_for(["numpy", "example"]) == []
