"""The example third-party backend (``examples/polykeras-example-backend``).

It is what ``docs/writing-a-backend.md`` promises an outsider can write: found
through its entry point, it passes the conformance suite on everything it
implements, the suite reports the rest as unsupported (not as failures), and
``fit`` on it ends with the reference's weights. Skipped unless the example is
installed: ``pip install -e examples/polykeras-example-backend``.
"""

from __future__ import annotations

import importlib.metadata
from collections import defaultdict

import numpy as np
import pytest

polykeras_example = pytest.importorskip("polykeras_example")
pytest.importorskip("hypothesis")  # the conformance cases are drawn with it

import polykeras as keras
from polykeras import activations, plugins
from polykeras.backends import find_backend
from polykeras_conformance import compare, measure, runner, tolerances

IMPLEMENTED_L0 = {"Dense", "Activation", "Dropout", "Regularizer"}  # and the five losses it has (see below)
UNSUPPORTED_L0 = {"Conv2D", "Conv1D", "Pooling", "GlobalAveragePooling", "BatchNormalization", "Recurrent",
                  "Embedding", "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot",
                  "Masking", "TimeDistributed", "Masking:TimeDistributed",
                  "ReLU/LeakyReLU/ELU/Softmax/PReLU"}  # (layers written with polykeras.ops)
#: graphs: it lacks the merge layers and declares no graph features (several inputs, shared layers)
UNSUPPORTED_GRAPHS = {"Graph:residual", "Graph:shared", "Graph:nested", "Graph:branches"}


def test_found_through_its_entry_point():
    entry_points = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="polykeras")}
    assert entry_points.get("example") == "polykeras_example"
    assert plugins.manager().get_plugin("example") is polykeras_example  # registered under the entry point's name
    info = find_backend("example")
    assert info.plugin == "polykeras_example"
    assert info.layer_kinds == {"Dense", "Activation", "Dropout", "Flatten"}
    assert info.create("cpu", "float64").layer_kinds == info.layer_kinds  # what the core checks before compiling


@pytest.fixture(scope="module")
def runs():
    return runner.run(["example"], dtypes=("float64", "float32"), levels=("L0", "L1"), quick=True, workloads=[],
                      progress=lambda *_: None)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_conformance_passes_what_it_implements_and_marks_the_rest_unsupported(runs, dtype):
    run = next(r for r in runs if r.backend == "example" and r.dtype == dtype)
    assert run.passed, run.verdict()
    statuses = defaultdict(set)
    for check in run.checks:
        statuses[check.level, check.group].add(check.status)
    assert {s for group in statuses.values() for s in group} == {"pass", "unsupported"}, dict(statuses)
    for group in IMPLEMENTED_L0:
        assert statuses["L0", group] == {"pass"}, group
    from polykeras_example.losses import LOSSES

    for check in (c for c in run.checks if c.group == "Loss"):  # "loss:huber(delta=0.5)" -> huber
        assert check.status == ("pass" if check.case[len("loss:"):].split("(")[0] in LOSSES else "unsupported"), check
    for group in UNSUPPORTED_L0 | UNSUPPORTED_GRAPHS:
        assert statuses["L0", group] == {"unsupported"}, group
    for check in run.checks:
        if check.level == "L0" and check.status == "unsupported":
            if check.group == "Loss":
                assert "does not implement loss" in check.detail, check.detail
            elif check.group == "Metric":
                # a metric it lacks, a metric case whose loss it lacks (hinge), or one that sums statistics
                # (RootMeanSquaredError), a feature it does not declare
                assert any(reason in check.detail for reason in (
                    "does not implement metric", "does not implement loss",
                    "need a backend that sums metric statistics")), check.detail
            elif check.group.startswith("Ops: ") or check.group == "ReLU/LeakyReLU/ELU/Softmax/PReLU":
                # the example plugin runs no polykeras.ops (nor graphs), which those layers are made of
                assert ("does not implement layer kind(s) Operation" in check.detail
                        or "does not run models with multiple inputs" in check.detail), check.detail
            elif check.group in UNSUPPORTED_GRAPHS or "does not run models with" in check.detail:
                assert ("does not run models with multiple inputs" in check.detail
                        or "does not run models with masking" in check.detail
                        or "does not run models with inference nodes" in check.detail  # a frozen BatchNormalization
                        or "does not implement layer kind(s)" in check.detail), check.detail
            else:  # "Conv2D#3" or "UnitNormalization:tiny-inputs" names the kind
                kind = check.case.split("#")[0].split(":")[0]
                assert "does not implement layer kind(s)" in check.detail and kind in check.detail, check
    reshaping = [(c.case.split("#")[0], c.status) for c in run.checks if c.group == "Flatten/Reshape"]
    assert ("Reshape", "unsupported") in reshaping
    assert all(status == ("unsupported" if kind == "Reshape" else "pass") for kind, status in reshaping)
    for group in ("SGD", "Adam"):
        assert statuses["L1", group] == {"pass"}, group
    for group in ("AdamW", "RMSprop", "Adagrad", "Nadam", "Adamax", "Adadelta", "Lion", "Ftrl"):
        assert statuses["L1", group] == {"unsupported"}, group


def _case(layers, input_shape):
    return {"id": "case", "group": "extra", "layers": layers, "input_shape": input_shape, "vocab": None,
            "loss": "mse", "target": "real", "training": True}


# The quick L0 cases draw only a few activations and no Flatten; check every one here.
EXTRA_CASES = [
    *[(f"Dense({name})", _case([{"class_name": "Dense", "config": {"units": 3, "activation": name}}], [4]))
      for name in activations.NAMES],
    ("Flatten-Dense", _case([{"class_name": "Flatten", "config": {}},
                             {"class_name": "Dense", "config": {"units": 2, "activation": "tanh"}}], [3, 2])),
    ("Dropout(noise_shape)", _case([{"class_name": "Dropout", "config": {"rate": 0.5, "noise_shape": [None, 1, 3]}}],
                                   [4, 3])),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name, case", EXTRA_CASES, ids=[name for name, _ in EXTRA_CASES])
def test_every_activation_and_flatten_match_the_reference(name, case, dtype):
    reference = measure.layer_case(case, "numpy", "cpu", dtype)
    got = measure.layer_case(case, "example", "cpu", dtype)
    assert got.keys() == reference.keys()
    limit = tolerances.limit("L0", dtype).limit
    for quantity, value in reference.items():
        assert compare.rel_diff(got[quantity], value) <= limit, quantity


def _train(backend: str, optimizer):
    keras.backend.clear_session()
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.layers.Input(shape=(4, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(16, activation="relu", kernel_regularizer=keras.regularizers.l2(1e-3)),
                              keras.layers.Dropout(0.3), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.get(optimizer), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], backend=backend, dtype="float64", parity=True)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(80, 4, 3)), rng.integers(0, 3, 80)
    history = model.fit(x, y, batch_size=16, epochs=3, validation_split=0.2, verbose=0)
    return model.get_weights(), history.history, model.predict(x, verbose=0)


@pytest.mark.parametrize("optimizer", [
    {"class_name": "Adam", "config": {"learning_rate": 0.01}},
    {"class_name": "SGD", "config": {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True}},
], ids=["Adam", "SGD"])
def test_fit_ends_with_the_reference_weights(optimizer):
    weights, history, predictions = _train("example", optimizer)
    ref_weights, ref_history, ref_predictions = _train("numpy", optimizer)
    for w, ref in zip(weights, ref_weights, strict=True):
        np.testing.assert_allclose(w, ref, rtol=1e-10, atol=1e-12)
    assert history.keys() == ref_history.keys() == {"loss", "accuracy", "val_loss", "val_accuracy"}
    for key in history:
        np.testing.assert_allclose(history[key], ref_history[key], rtol=1e-10)
    np.testing.assert_allclose(predictions, ref_predictions, rtol=1e-10, atol=1e-12)


def test_what_it_lacks_is_refused_at_compile_with_a_clear_error():
    model = keras.Sequential([keras.layers.Input(shape=(4, 4, 1)), keras.layers.Conv2D(2, 3), keras.layers.Flatten()])
    model.compile(optimizer="sgd", loss="mse", backend="example")
    with pytest.raises(NotImplementedError, match=r"does not implement layer kind\(s\) Conv2D.*numpy"):
        model.predict(np.zeros((1, 4, 4, 1)), verbose=0)
    model = keras.Sequential([keras.layers.Input(shape=(3,)), keras.layers.Dense(1)])
    model.compile(optimizer="rmsprop", loss="mse", backend="example")
    with pytest.raises(NotImplementedError, match="optimizer 'RMSprop'; it has SGD, Adam"):
        model.fit(np.zeros((2, 3)), np.zeros((2, 1)), verbose=0)


def test_pytest_plugin_runs_the_suite_against_an_installed_backend(tmp_path):
    """What a third party runs without this repository: ``pytest --polykeras-backend NAME``."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--polykeras-backend",
                             "example", "-k", "(float32 and L2 and mnist-mlp) or (float64 and L0 and Conv2D)"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600)
    summary = result.stdout.strip().splitlines()[-1]
    assert result.returncode == 0, result.stdout[-3000:]
    assert "1 passed" in summary and "xfailed" in summary, summary  # mnist-mlp trains; Conv2D is unsupported


def test_workloads_no_backend_of_the_run_can_train_are_skipped_for_the_reference_too():
    said = []
    kept = runner.trainable_workloads(["mnist-mlp", "imdb-lstm", "mnist-residual"], ["example"], said.append)
    assert kept == ["mnist-mlp"]
    assert any("imdb-lstm" in line and "Embedding, LSTM" in line for line in said)
    assert runner.trainable_workloads(["imdb-lstm"], ["numpy"], said.append) == ["imdb-lstm"]


def test_a_wrapper_of_a_kind_it_has_is_refused_by_the_wrapper_s_name():
    """TimeDistributed(Dense): the example has Dense but not the wrapper; compiling names the wrapper and the
    backends that have it."""
    model = keras.Sequential([keras.layers.Input(shape=(3, 4)), keras.layers.TimeDistributed(keras.layers.Dense(2))])
    model.compile("sgd", "mse", backend="example")
    with pytest.raises(NotImplementedError, match="does not implement layer kind.*TimeDistributed.*numpy"):
        model.predict(np.ones((1, 3, 4)), verbose=0)
