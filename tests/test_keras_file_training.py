"""Compiled, trained models through ``.keras`` files, both ways with Keras 3 itself: the compile
settings (optimizer with a learning-rate schedule, loss, metrics) and the optimizer's variables
travel, so training continues with the same moments on the other side.

One Keras subprocess (this process stays Keras-free) opens the files polykeras wrote (``pkt_*``),
reports its optimizer variables (with Keras's own variable paths, so the layout is checked against
Keras's names, not against polykeras's table) and predictions, trains one more epoch; and it
writes its own trained files (``kt_*``) with the weights one more epoch gives. Float32, on the
numpy reference backend; the weights after the extra epoch must agree to float32 training
precision, and restarting the moments from zero must not (so the test sees the moments)."""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

if importlib.util.find_spec("keras") is None:  # found, not imported: this process stays Keras-free
    pytest.skip("keras is not installed (pip install 'polykeras[keras,jax]')", allow_module_level=True)
h5py = pytest.importorskip("h5py")

import polykeras as pk  # noqa: E402
from polykeras import backends, layers  # noqa: E402

#: The same optimizers on both sides (``o``: ``keras.optimizers`` or ``polykeras.optimizers``): a schedule and
#: amsgrad's velocity_hat, RMSprop's three slot groups, Nadam's u_product, Ftrl's interleaved slots.
OPTIMIZERS = {
    "adam": "o.Adam(o.schedules.ExponentialDecay(0.01, 3, 0.8), amsgrad=True)",
    "rmsprop": "o.RMSprop(0.01, momentum=0.5, centered=True)",
    "nadam": "o.Nadam(0.01)",
    "ftrl": "o.Ftrl(0.1, l2_regularization_strength=0.01)",
}
#: float32 training on two frameworks, two epochs of four steps: the weights' relative L2 difference (measured
#: 2e-7 to 8e-7; with the moments restarted from zero it is 0.35 to 1.1).
TOLERANCE = 1e-5

KERAS_SIDE = textwrap.dedent("""
    import glob, os, sys
    os.environ["KERAS_BACKEND"] = "{keras_backend}"
    import keras, numpy as np
    folder = sys.argv[1]
    o, L = keras.optimizers, keras.layers
    with np.load(os.path.join(folder, "train.npz")) as f:
        x, y = f["x"], f["y"]
    for path in sorted(glob.glob(os.path.join(folder, "pkt_*.keras"))):  # polykeras's files
        stem = path[:-len(".keras")]
        model = keras.saving.load_model(path)
        variables = model.optimizer.variables
        np.savez(stem + ".vars.npz", paths=np.array([v.path for v in variables]),
                 **{{"v%d" % i: np.asarray(v) for i, v in enumerate(variables)}})
        np.savez(stem + ".pred.npz", model.predict(x, verbose=0))
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        np.savez(stem + ".after.npz", *model.get_weights())
    for name, optimizer in {optimizers}.items():  # Keras's files
        keras.utils.set_random_seed(2)
        model = keras.Sequential([keras.Input((5,)), L.Dense(4, activation="tanh"), L.BatchNormalization(),
                                  L.Dense(3, activation="softmax")])
        model.compile(eval(optimizer), "sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        model.save(os.path.join(folder, "kt_" + name + ".keras"))
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        np.savez(os.path.join(folder, "kt_" + name + ".after.npz"), *model.get_weights())
    with np.load(os.path.join(folder, "graph.npz")) as f:  # graphs: a shared layer, a Sequential called twice
        gx, gy = [f["x0"], f["x1"]], f["y"]
    model = keras.saving.load_model(os.path.join(folder, "pkg_graph.keras"))
    model.fit(gx, gy, batch_size=8, epochs=1, shuffle=False, verbose=0)
    np.savez(os.path.join(folder, "pkg_graph.after.npz"), *model.get_weights())
    keras.utils.set_random_seed(2)
    inner = keras.Sequential([keras.Input((4,)), L.Dense(5, activation="relu"), L.Dense(3)], name="inner")
    shared = L.Dense(4, activation="tanh", name="shared")
    p, q = keras.Input((4,), name="p"), keras.Input((4,), name="q")
    h = L.Concatenate()([inner(shared(L.Dense(4, name="first")(p))), inner(shared(q))])
    model = keras.Model([p, q], L.Dense(2, name="head")(h))
    model.compile(o.Adam(0.01), "mse")
    model.fit(gx, gy, batch_size=8, epochs=1, shuffle=False, verbose=0)
    model.save(os.path.join(folder, "kg_graph.keras"))
    model.fit(gx, gy, batch_size=8, epochs=1, shuffle=False, verbose=0)
    np.savez(os.path.join(folder, "kg_graph.after.npz"), *model.get_weights())
""")


def data():
    rng = np.random.default_rng(5)
    return rng.normal(size=(32, 5)).astype("float32"), np.arange(32) % 3


def graph_data():
    rng = np.random.default_rng(6)
    return [rng.normal(size=(16, 4)).astype("float32") for _ in range(2)], rng.normal(size=(16, 2)).astype("float32")


def fit_one_epoch(model, data=data):
    x, y = data()
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    return model.get_weights()


def polykeras_graph():
    """A shared layer and a Sequential called twice, which polykeras flattens into its graph and writes as
    Keras functional layers; Keras numbers the optimizer's slots in that file's layer order."""
    pk.utils.set_random_seed(2)
    inner = pk.Sequential([layers.Input((4,)), layers.Dense(5, activation="relu"), layers.Dense(3)])
    shared = layers.Dense(4, activation="tanh")
    p, q = pk.Input((4,)), pk.Input((4,))
    h = layers.Concatenate()([inner(shared(q)), inner(shared(layers.Dense(4)(p)))])
    model = pk.Model([p, q], layers.Dense(2)(h))
    model.compile(pk.optimizers.Adam(0.01), "mse", backend="numpy", dtype="float32")
    fit_one_epoch(model, graph_data)
    return model


def load(path, stem="arr_"):
    with np.load(path) as f:
        return [f[f"{stem}{i}"] for i in range(len([k for k in f.files if k.startswith(stem)]))]


def worst(a, b) -> float:
    return max(float(np.linalg.norm(np.asarray(u, np.float64) - w) / np.linalg.norm(w)) for u, w in zip(a, b))


@pytest.fixture(scope="module")
def exchange(tmp_path_factory):
    """polykeras's trained files written, Keras run once over them (and writing its own); returns the
    folder and, per optimizer, polykeras's state, predictions and weights after one more epoch."""
    folder = tmp_path_factory.mktemp("keras-training")
    x, y = data()
    np.savez(folder / "train.npz", x=x, y=y)
    ours = {}
    for name, optimizer in OPTIMIZERS.items():
        pk.utils.set_random_seed(2)
        model = pk.Sequential([layers.Input((5,)), layers.Dense(4, activation="tanh"), layers.BatchNormalization(),
                               layers.Dense(3, activation="softmax")])
        model.compile(eval(optimizer, {"o": pk.optimizers}), "sparse_categorical_crossentropy", metrics=["accuracy"],
                      backend="numpy", dtype="float32")
        fit_one_epoch(model)
        model.save(folder / f"pkt_{name}.keras")
        state, prediction = model._optimizer_state(), model.predict(x, verbose=0)
        ours[name] = state, prediction, fit_one_epoch(model)
    (gx0, gx1), gy = graph_data()
    np.savez(folder / "graph.npz", x0=gx0, x1=gx1, y=gy)
    graph = polykeras_graph()
    graph.save(folder / "pkg_graph.keras")
    ours["graph"] = fit_one_epoch(graph, graph_data)
    infos = backends.backend_infos()
    keras_backend = next(b for b in ("jax", "torch", "tensorflow") if infos[f"keras-{b}"].installed)
    script = folder / "keras_side.py"
    script.write_text(KERAS_SIDE.format(keras_backend=keras_backend, optimizers=OPTIMIZERS))
    proc = subprocess.run([sys.executable, str(script), str(folder)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return folder, ours


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_a_polykeras_file_opens_in_keras_with_its_optimizer_state(exchange, name):
    folder, ours = exchange
    state, prediction, after = ours[name]
    with np.load(folder / f"pkt_{name}.pred.npz") as f:
        print(f"{name}: Keras's predictions vs polykeras's, largest difference {np.abs(f['arr_0'] - prediction).max():.1e}")
        np.testing.assert_allclose(f["arr_0"], prediction, rtol=1e-5, atol=1e-6)
    with np.load(folder / f"pkt_{name}.vars.npz") as f:
        paths = [str(p) for p in f["paths"]]
        values = [f[f"v{i}"] for i in range(len(paths))]
    # Keras names its variables <optimizer>/<model variable>_<slot>: match each to polykeras's slot by name,
    # and to the trainable weight by its position among that slot's variables
    seen = {slot: 0 for slot in state.slots}
    assert paths[0].endswith("/iteration") and int(values[0]) == state.iterations == 4
    for path, value in zip(paths[1:], values[1:]):
        slot = max((s for s in state.slots if path.endswith("_" + s)), key=len, default=None)
        if slot is None:
            assert path.endswith("/learning_rate") or name == "nadam", path  # Nadam's u_product: recomputed
            continue
        np.testing.assert_array_equal(value, state.slots[slot][seen[slot]], err_msg=path)
        seen[slot] += 1
    assert set(seen.values()) == {6}, seen  # every slot of every trainable weight (2 Dense x 2, BN gamma, beta)
    measured = worst(load(folder / f"pkt_{name}.after.npz"), after)
    print(f"{name}: Keras's epoch 2 vs polykeras's, relative L2 {measured:.1e}")
    assert measured <= TOLERANCE


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_a_keras_file_continues_with_keras_moments(exchange, name):
    folder, _ = exchange
    path = folder / f"kt_{name}.keras"
    model = pk.models.load_model(path)
    expected = type(eval(OPTIMIZERS[name], {"o": pk.optimizers}))
    assert type(model.optimizer) is expected and model._metric_ids == ["accuracy"]
    assert model._pending_optimizer_state.iterations == 4
    keras_after = load(folder / f"kt_{name}.after.npz")
    model._compile_config.update(backend="numpy", dtype="float32")
    measured = worst(fit_one_epoch(model), keras_after)
    restarted = pk.models.load_model(path)
    restarted._pending_optimizer_state = None  # the moments (and the iteration count) from zero
    without = worst(fit_one_epoch(restarted), keras_after)
    print(f"{name}: polykeras's epoch 2 vs Keras's, relative L2 {measured:.1e} (moments restarted: {without:.1e})")
    assert measured <= TOLERANCE < without


def test_the_optimizer_variables_are_where_keras_keeps_them(exchange):
    """The HDF5 layout of polykeras's file is Keras's: the same groups and datasets, shapes and order."""
    folder, _ = exchange

    def layout(path):
        with zipfile.ZipFile(path) as zf, h5py.File(io.BytesIO(zf.read("model.weights.h5"))) as h5:
            out = []
            h5.visititems(lambda key, obj: out.append((key, getattr(obj, "shape", None))))
            return sorted(out)

    for name in OPTIMIZERS:
        assert layout(folder / f"pkt_{name}.keras") == layout(folder / f"kt_{name}.keras"), name


def test_graphs_continue_across_keras_and_polykeras(exchange):
    """A functional model with a shared layer and a Sequential called twice: written by polykeras and
    continued by Keras, and written by Keras (its nested model's slots inside its own order) and
    continued by polykeras."""
    folder, ours = exchange
    assert worst(load(folder / "pkg_graph.after.npz"), ours["graph"]) <= TOLERANCE
    model = pk.models.load_model(folder / "kg_graph.keras")
    model._compile_config.update(backend="numpy", dtype="float32")
    assert model._pending_optimizer_state.iterations == 2
    measured = worst(fit_one_epoch(model, graph_data), load(folder / "kg_graph.after.npz"))
    print(f"graph: polykeras's epoch 2 vs Keras's, relative L2 {measured:.1e}")
    assert measured <= TOLERANCE
