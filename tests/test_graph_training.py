"""The Keras functional guide's patterns train the same on every backend: a
residual block, a two-input/two-output model with ``loss_weights`` and dict
data, an embedding shared by two inputs, a ``Sequential`` inside a
functional model -- each 50 parity-mode steps in float64 against the
reference, per-step loss and final weights (the L2 bound, 1e-8: rounding
differences of ~1e-16 per op stay many orders below it; a wrong gradient
path shows at 1e-3 or above).

The Keras backends run them too (each in its Keras worker process; the
two-output pattern by default, the rest ``slow``). Keras's float64 mode keeps
float32 pieces, so where a Keras run misses 1e-8 it is judged against the
float32-level bound instead and becomes an ``xfail`` that names the measured
difference and the reason (as ``tests/test_keras_backend.py`` pins them); it
still fails above that bound unless a known Keras divergence explains it."""

from __future__ import annotations

import numpy as np
import pytest

import polykeras as keras
from polykeras import layers
from polykeras import model_data as data
from polykeras.backends import backend_infos
from polykeras.trainer import Trainer
from backend_parity import rel_diff

STEPS, BATCH, TOL = 50, 8, 1e-8
KERAS_BACKENDS = ("keras-jax", "keras-torch", "keras-tensorflow")
#: The float32-level bound a Keras float64 run is held to (the L0 float32 limit of
#: polykeras_conformance.tolerances, as tests/test_keras_backend.py's ``judge``): Keras's float32 pieces
#: leave 2e-8 to 1e-5 here, a wrong gradient path 1e-3 or more.
KERAS_FLOAT32_LEVEL = 1e-4
#: Why Keras's float64 runs miss 1e-8 (measured on Keras 3.15.1; per-step loss / final weights).
KERAS_FLOAT64 = {
    "keras-jax": "Keras's float64 mode keeps float32 pieces: Keras's losses on jax differ by ~1e-8 from the first "
                 "step, before any update (2e-8 to 3e-8 per step, 4e-8 to 2e-7 in the weights; nested_sequential "
                 "meets 1e-8)",
    "keras-torch": "Keras's float64 mode keeps float32 pieces (its losses, and Dense's products on torch, ~1e-7): "
                   "5e-8 to 2e-7 per step, 6e-8 to 2e-6 in the weights",
    "keras-tensorflow": "Keras on TensorFlow turns Adam's beta_1/beta_2 into float32 before casting them to float64, "
                        "so every float64 step's size is off by 6.7e-6 (the losses of step 0 agree to 2e-16, and "
                        "with SGD the whole run of two_in_two_out agrees to 4e-16): 1.5e-6 to 2.6e-6 per step, "
                        "6e-6 to 1.1e-5 in the weights",
}
#: (pattern, backend) -> a known Keras divergence beyond the float32-level bound.
KERAS_BUGS = {
    ("shared_embedding", "keras-tensorflow"): "Keras on TensorFlow updates an Embedding from its sparse gradient as "
                                              "if a repeated id's rows were separate, which Adam (not linear in the "
                                              "gradient) turns into a different step; the shared Embedding's two "
                                              "calls repeat ids (with SGD this run agrees to 1e-14; "
                                              "tests/test_keras_backend.py::test_embedding_updates_with_repeated_ids)",
}


def _installed(name: str) -> bool:
    info = backend_infos().get(name)
    return info is not None and info.installed


def _cases():
    """(pattern, backend) pairs: torch and jax for every pattern; the Keras backends
    for the two-output pattern by default, the others ``slow`` (a Keras worker's run
    takes seconds)."""
    for pattern in PATTERNS:
        for backend in ("torch", "jax") + KERAS_BACKENDS:
            marks = [pytest.mark.skipif(not _installed(backend), reason=f"{backend} is not installed")]
            if backend in KERAS_BACKENDS and pattern != "two_in_two_out":
                marks.append(pytest.mark.slow)
            yield pytest.param(pattern, backend, marks=marks, id=f"{pattern}-{backend}")


def residual():
    x = keras.Input((6,))
    h = layers.Dense(8, activation="relu")(x)
    h = layers.Add()([h, layers.Dense(8)(layers.Dropout(0.2)(layers.Dense(8, activation="tanh")(h)))])
    return keras.Model(x, layers.Dense(3, activation="softmax")(h)), "sparse_categorical_crossentropy", None


def two_in_two_out():
    title, body = keras.Input((5,), name="title"), keras.Input((7,), name="body")
    h = layers.Concatenate()([layers.Dense(4, activation="relu")(title), layers.Dense(6, activation="tanh")(body)])
    priority = layers.Dense(1, activation="sigmoid", name="priority")(h)
    department = layers.Dense(3, activation="softmax", name="department")(layers.Dropout(0.3)(h))
    model = keras.Model({"title": title, "body": body}, {"priority": priority, "department": department})
    return model, {"priority": "binary_crossentropy", "department": "sparse_categorical_crossentropy"}, \
        {"priority": 1.0, "department": 0.2}


def shared_embedding():
    a, b = keras.Input((6,), dtype="int32"), keras.Input((4,), dtype="int32")
    embed, pool = layers.Embedding(30, 5), layers.GlobalAveragePooling1D()
    h = layers.Concatenate()([pool(embed(a)), pool(embed(b))])
    return keras.Model([a, b], layers.Dense(1, activation="sigmoid")(h)), "binary_crossentropy", None


def nested_sequential():
    inner = keras.Sequential([layers.Dense(8, activation="relu"), layers.Dropout(0.25), layers.Dense(6)])
    x = keras.Input((6,))
    return keras.Model(x, layers.Dense(2, activation="softmax")(inner(x) - x)), "sparse_categorical_crossentropy", None


def make_data(name, n, rng):
    if name == "two_in_two_out":
        return ({"title": rng.normal(size=(n, 5)), "body": rng.normal(size=(n, 7))},
                {"priority": rng.integers(0, 2, n), "department": rng.integers(0, 3, n)})
    if name == "shared_embedding":
        return [rng.integers(0, 30, (n, 6)), rng.integers(0, 30, (n, 4))], rng.integers(0, 2, n)
    return rng.normal(size=(n, 6)), rng.integers(0, 3 if name == "residual" else 2, n)


PATTERNS = {f.__name__: f for f in (residual, two_in_two_out, shared_embedding, nested_sequential)}
_reference: dict[str, tuple] = {}


def run(pattern: str, backend: str):
    """Per-step losses and final weights of STEPS parity-mode Adam steps."""
    keras.utils.set_random_seed(0)
    model, loss, loss_weights = PATTERNS[pattern]()
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss, loss_weights=loss_weights, backend=backend,
                  dtype="float64", parity=True)
    x, y = Trainer(model).prepare(*make_data(pattern, STEPS * BATCH, np.random.default_rng(1)))
    program = model._get_program(training=True, y_ndim=data.ndims(y))
    initial = program.get_weights()
    losses = []
    for step in range(STEPS):
        program.reset_metrics()
        lo = step * BATCH
        program.train_step(data.rows(x, lo, lo + BATCH), data.rows(y, lo, lo + BATCH), step_seed=100 + step)
        losses.append(program.results()["loss"])
    weights = program.get_weights()
    assert max(rel_diff(w, w0) for w, w0 in zip(weights, initial)) > 1e-3  # the steps moved the weights
    return np.array(losses), weights


def reference(pattern: str):
    if pattern not in _reference:
        _reference[pattern] = run(pattern, "numpy")
    return _reference[pattern]


@pytest.mark.parametrize("pattern, backend", list(_cases()))
def test_functional_patterns_train_as_the_reference(pattern, backend):
    ref_losses, ref_weights = reference(pattern)
    losses, weights = run(pattern, backend)
    per_step = np.max(np.abs(losses - ref_losses) / np.abs(ref_losses))
    final = max(rel_diff(a, b) for a, b in zip(weights, ref_weights))
    measured = f"per-step loss {per_step:.1e}, final weights {final:.1e}"
    print(f"{pattern} on {backend}: {measured} (limit {TOL:.0e})")
    if per_step <= TOL and final <= TOL:
        return
    if (pattern, backend) in KERAS_BUGS:
        pytest.xfail(f"{backend} float64 {pattern}: {measured} > {TOL:.0e}: {KERAS_BUGS[pattern, backend]}")
    if backend in KERAS_FLOAT64 and max(per_step, final) <= KERAS_FLOAT32_LEVEL:
        pytest.xfail(f"{backend} float64 {pattern}: {measured} > {TOL:.0e}, within the float32-level "
                     f"{KERAS_FLOAT32_LEVEL:.0e}: {KERAS_FLOAT64[backend]}")
    raise AssertionError(f"{pattern} on {backend}: {measured} > {TOL:.0e}")


def test_two_outputs_log_keras_names_and_weight_the_loss():
    keras.utils.set_random_seed(0)
    model, loss, loss_weights = two_in_two_out()
    model.compile(optimizer="sgd", loss=loss, loss_weights=loss_weights, metrics={"department": ["accuracy"]},
                  dtype="float64")
    x, y = make_data("two_in_two_out", 16, np.random.default_rng(2))
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert list(logs) == model.metrics_names == ["loss", "priority_loss", "department_loss", "department_accuracy"]
    assert logs["loss"] == pytest.approx(logs["priority_loss"] + 0.2 * logs["department_loss"], rel=1e-12)
    as_list = model.evaluate([x["title"], x["body"]], [y["priority"], y["department"]], verbose=0)
    assert as_list == pytest.approx(list(logs.values()), rel=1e-12)
    history = model.fit(x, y, epochs=1, batch_size=4, verbose=0).history
    assert set(history) == {"loss", "priority_loss", "department_loss", "department_accuracy"}


def test_per_output_arguments_are_checked():
    model, loss, _ = two_in_two_out()
    with pytest.raises(ValueError, match=r"key\(s\) \['dept'\] that name no output"):
        model.compile(optimizer="sgd", loss={"priority": "mse", "dept": "mse"})
    with pytest.raises(ValueError, match="gives output 'department' no loss"):
        model.compile(optimizer="sgd", loss={"priority": "mse"})
    with pytest.raises(ValueError, match="loss_weights has 3 entries for 2 outputs"):
        model.compile(optimizer="sgd", loss="mse", loss_weights=[1, 2, 3])
    model.compile(optimizer="sgd", loss=loss)
    x, y = make_data("two_in_two_out", 4, np.random.default_rng(0))
    with pytest.raises(ValueError, match="missing \\['department'\\]"):
        model.fit(x, {"priority": y["priority"]}, verbose=0)
    with pytest.raises(ValueError, match="for output 'department'"):
        model.fit(x, {"priority": y["priority"], "department": np.full(4, 7)}, verbose=0)


def test_a_compiled_model_of_two_outputs_saves_and_loads(tmp_path):
    keras.utils.set_random_seed(0)
    model, loss, loss_weights = two_in_two_out()
    model.compile(optimizer="adam", loss=loss, loss_weights=loss_weights, metrics={"department": ["accuracy"]})
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.metrics_names == model.metrics_names
    x, y = make_data("two_in_two_out", 8, np.random.default_rng(3))
    assert loaded.evaluate(x, y, verbose=0) == pytest.approx(model.evaluate(x, y, verbose=0), rel=1e-6)
