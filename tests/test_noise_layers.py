"""GaussianNoise, GaussianDropout, ActivityRegularization and Normalization (with adapt): the reference's
math and hand-written gradients (finite differences), the noise's distribution on every backend's fast
path, adapt, configs, the example plugin's refusal and ``.keras`` files both ways with Keras 3.
Backend parity (float64) runs through ``backend_parity.layer_cases`` in the per-backend test files."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import polykeras as pk
from polykeras import backends, layers
from polykeras import random as _random
from polykeras.spec import WeightSpec
from polykeras_numpy.layers import ForwardContext

from _fd import FD_TOLERANCE, build, check_gradients, layer_spec, numerical_gradient, relative_error
from polykeras_numpy.layers import KERNELS


def _host_noise_context(training: bool, step_seed: int = 11) -> ForwardContext:
    return ForwardContext(training, lambda shape, rate, stream: _random.dropout_mask(step_seed, 0, stream, shape,
                                                                                     rate, np.float64))


# -- the reference: math and gradients ---------------------------------------------------------------
@pytest.mark.parametrize("kind, config", [("GaussianNoise", {"stddev": 0.7}), ("GaussianDropout", {"rate": 0.3})])
def test_gaussian_layers_gradients_and_inference_identity(kind, config):
    kernel = build(kind, config, (3, 4))
    x = np.random.default_rng(0).normal(size=(2, 3, 4))
    check_gradients(kernel, [], x, training=True)
    y, cache = kernel.forward([], x, ForwardContext(False))
    assert y is x and kernel.backward([], cache, x)[0] is x  # identity at inference, no noise asked for
    off = build(kind, {k: 0.0 for k in config}, (3, 4))
    assert off.forward([], x, _host_noise_context(True))[0] is x  # stddev / rate 0: the identity in training too


@pytest.mark.parametrize("kind, config, mean, std", [
    ("GaussianNoise", {"stddev": 0.7}, 0.0, 0.7),
    ("GaussianDropout", {"rate": 0.3}, 1.0, np.sqrt(0.3 / 0.7)),  # Keras: N(1, rate / (1 - rate))
])
def test_gaussian_layers_noise_distribution_on_the_reference(kind, config, mean, std):
    """In training ``y - x`` (GaussianNoise) or ``y / x`` (GaussianDropout) has the mean and standard
    deviation Keras's layer draws with; 200,000 draws put the sample moments within 1% (4 standard errors)."""
    x = np.full((1000, 200), 2.0)
    y = build(kind, config, (200,)).forward([], x, _host_noise_context(True))[0]
    noise = y - x if kind == "GaussianNoise" else y / x
    assert abs(noise.mean() - mean) < 4 * std / np.sqrt(noise.size)
    assert abs(noise.std() / std - 1) < 0.01
    again = build(kind, config, (200,)).forward([], x, _host_noise_context(True))[0]
    other_step = build(kind, config, (200,)).forward([], x, _host_noise_context(True, step_seed=12))[0]
    assert np.array_equal(y, again) and not np.allclose(y, other_step)  # a function of the step seed only


def test_fast_path_noise_distribution_on_torch_and_jax():
    """Without parity each framework draws its own noise (torch's generator, ``jax.random``): the same
    distribution as the host's :class:`polykeras.random.Normal`."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("jax")
    from polykeras_jax.model import KeyNoise, seed_words
    from polykeras_jax.precision import Precision
    from polykeras_torch.layers import StepContext

    normal, n = _random.Normal(1.0, 0.5), 200_000
    like = torch.zeros(1, dtype=torch.float64)
    drawn = {"torch": StepContext(True, generator=torch.Generator().manual_seed(3)).dropout_mask(
        0, 0, (n,), normal, like).numpy()}
    with Precision("float64").scope():
        drawn["jax"] = np.asarray(KeyNoise(seed_words(3), np.float64).mask(0, 0, (n,), normal))
    for name, values in drawn.items():
        assert values.dtype == np.float64, name
        assert abs(values.mean() - 1.0) < 4 * 0.5 / np.sqrt(n), name
        assert abs(values.std() / 0.5 - 1) < 0.01, name


def test_activity_regularization_loss_and_gradient():
    """The penalty Keras 3 adds: ``(l1 * sum|x| + l2 * sum x**2) / batch``; the input gradient of output
    loss plus penalty against central differences."""
    kernel = build("ActivityRegularization", {"l1": 0.3, "l2": 0.2}, (3, 2))
    rng = np.random.default_rng(1)
    x, R = rng.normal(size=(4, 3, 2)), rng.normal(size=(4, 3, 2))
    ctx = ForwardContext(True)
    y, cache = kernel.forward([], x, ctx)
    assert y is x
    np.testing.assert_allclose(ctx.losses, [(0.3 * np.abs(x).sum() + 0.2 * np.square(x).sum()) / 4], rtol=1e-15)

    def loss():
        c = ForwardContext(True)
        return float(np.sum(kernel.forward([], x, c)[0] * R) + sum(c.losses))

    dx, dws = kernel.backward([], cache, R)
    assert dws == [] and relative_error(dx, numerical_gradient(loss, x)) < FD_TOLERANCE


def test_activity_regularization_counts_in_fit_and_evaluate():
    """The model's loss is the compiled loss plus the penalty, in training and in evaluation (as Keras's)."""
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(8, 3)), rng.normal(size=(8, 3))
    model = pk.Sequential([layers.Input((3,)), layers.ActivityRegularization(l1=0.1, l2=0.05)])
    model.compile("sgd", "mse", backend="numpy", dtype="float64")
    expected = np.mean((x - y) ** 2) + (0.1 * np.abs(x).sum() + 0.05 * np.square(x).sum()) / 8
    assert model.evaluate(x, y, batch_size=8, verbose=0) == pytest.approx(expected, rel=1e-14)
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert history.history["loss"][0] == pytest.approx(expected, rel=1e-14)


def _normalization_kernel(config, input_shape):
    spec = layer_spec("Normalization", config, input_shape)
    if config.get("mean") is None:
        rules = KERNELS["Normalization"](spec, np.float64).rules  # the statistics shape of the axes
        spec = dataclasses.replace(spec, weights=(WeightSpec("mean", rules.stats_shape, False),
                                                  WeightSpec("variance", rules.stats_shape, False),
                                                  WeightSpec("count", (), False)))
    return KERNELS["Normalization"](spec, np.float64)


@pytest.mark.parametrize("invert", [False, True])
def test_normalization_formula_and_gradient(invert):
    """``(x - mean) / max(sqrt(variance), 1e-7)`` (inverted: ``mean + x * max(...)``), Keras's epsilon floor
    taking over for a variance of 1e-16; no gradient for the statistics."""
    mean, variance = np.array([0.5, -1.0, 2.0]), np.array([4.0, 0.25, 1e-16])
    kernel = _normalization_kernel({"axis": [-1], "invert": invert}, (2, 3))
    weights = [mean, variance, np.zeros(())]
    x = np.random.default_rng(3).normal(size=(4, 2, 3))
    d = np.array([2.0, 0.5, 1e-7])
    expected = mean + x * d if invert else (x - mean) / d
    np.testing.assert_allclose(kernel.forward(weights, x, ForwardContext(False))[0], expected, rtol=1e-15)
    dx, dws = check_gradients(kernel, weights, x)
    assert dws == [None, None, None]
    constant = _normalization_kernel({"axis": -1, "mean": mean.tolist(), "variance": variance.tolist(),
                                      "invert": invert}, (2, 3))
    assert np.array_equal(constant.forward([], x, ForwardContext(False))[0],
                          kernel.forward(weights, x, ForwardContext(False))[0])


def test_normalization_axes_and_scalar_statistics():
    """``axis=None``: one scalar mean/variance; ``axis=(1, 2)``: statistics over the two kept axes; a mean of
    lower rank aligns with the kept axes from the right, as Keras's build broadcasts it."""
    x = np.random.default_rng(4).normal(size=(3, 2, 4))
    whole = _normalization_kernel({"axis": None, "mean": 1.0, "variance": 4.0}, (2, 4))
    np.testing.assert_allclose(whole.forward([], x, ForwardContext(False))[0], (x - 1.0) / 2.0, rtol=1e-15)
    per_column = _normalization_kernel({"axis": [1, 2], "mean": [1.0, 2.0, 3.0, 4.0], "variance": 1.0}, (2, 4))
    np.testing.assert_allclose(per_column.forward([], x, ForwardContext(False))[0], x - [1.0, 2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match="does not broadcast"):
        _normalization_kernel({"axis": -1, "mean": [1.0, 2.0], "variance": [1.0, 1.0]}, (2, 4))
    with pytest.raises(NotImplementedError, match="batch axis"):
        _normalization_kernel({"axis": 0, "mean": 0.0, "variance": 1.0}, (2, 4))


# -- adapt -------------------------------------------------------------------------------------------
def test_adapt_arrays_and_batches_agree_with_numpy():
    """An array gives NumPy's mean/var over the reduced axes; an iterable of batches (arrays or (x, y)
    tuples, of uneven sizes) gives the same by Keras's streaming formula."""
    data = np.random.default_rng(5).normal(3.0, 2.0, size=(50, 4, 3))
    whole = layers.Normalization(axis=-1, dtype="float64")  # float64 weights: the statistics unrounded
    whole.adapt(data)
    mean, variance, count = whole.get_weights()
    np.testing.assert_allclose(mean, data.mean(axis=(0, 1)), rtol=1e-14)
    np.testing.assert_allclose(variance, data.var(axis=(0, 1)), rtol=1e-14)
    assert count.shape == ()
    batched = layers.Normalization(axis=-1, dtype="float64")
    batched.adapt([(data[:7], None), data[7:30], data[30:]])
    for got, want in zip(batched.get_weights(), whole.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    two_axes = layers.Normalization(axis=(1, 2), dtype="float64")
    two_axes.adapt(iter([data[:25], data[25:]]))
    np.testing.assert_allclose(two_axes.get_weights()[1], data.var(axis=0), rtol=1e-12)


def test_adapt_from_a_py_dataset():
    """A ``polykeras.utils.PyDataset`` of ``(x, y)`` batches adapts as its batches would."""
    data = np.random.default_rng(12).normal(size=(20, 3))

    class Batches(pk.utils.PyDataset):
        def __len__(self):
            return 3

        def __getitem__(self, index):
            rows = data[[0, 5, 12, 20][index]:[0, 5, 12, 20][index + 1]]
            return rows, np.zeros(len(rows))

    layer = layers.Normalization(dtype="float64")
    layer.adapt(Batches())
    np.testing.assert_allclose(layer.get_weights()[0], data.mean(0), rtol=1e-12)
    np.testing.assert_allclose(layer.get_weights()[1], data.var(0), rtol=1e-12)


def test_adapted_layer_in_a_compiled_model_and_errors():
    """adapt() after compile reaches the backend; bad uses say what is wrong."""
    data = np.random.default_rng(6).normal(-1.0, 3.0, size=(40, 3))
    norm = layers.Normalization(dtype="float64")
    model = pk.Sequential([layers.Input((3,)), norm])
    model.compile("sgd", "mse", backend="numpy", dtype="float64")
    norm.adapt(data)
    np.testing.assert_allclose(model.predict(data, verbose=0), (data - data.mean(0)) / data.std(0), rtol=1e-12)
    with pytest.raises(ValueError, match="kept axes"):
        norm.adapt(np.zeros((5, 4)))
    with pytest.raises(ValueError, match="no data"):
        layers.Normalization().adapt([])
    with pytest.raises(ValueError, match="mean and variance"):
        layers.Normalization(mean=[1.0]).adapt(data)
    with pytest.raises(ValueError, match="mean and variance"):
        layers.Normalization(mean=0.0, variance=1.0).adapt(data)
    with pytest.raises(ValueError, match="same shape"):
        layers.Normalization(mean=[0.0, 1.0], variance=[1.0])


# -- training on the backends ------------------------------------------------------------------------
def _four_layer_model():
    pk.utils.set_random_seed(4)
    norm = layers.Normalization(dtype="float64")
    norm.adapt(np.random.default_rng(10).normal(0.5, 2.0, size=(30, 4)))
    return pk.Sequential([layers.Input((4,)), norm, layers.Dense(6, activation="tanh"), layers.GaussianNoise(0.2),
                          layers.ActivityRegularization(l1=0.01, l2=0.02), layers.GaussianDropout(0.3),
                          layers.Dense(2)])


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_training_matches_the_reference_in_float64(backend):
    """Three epochs of Adam in parity mode (the noise host-drawn): per-epoch losses and weights within 1e-10
    of the reference; on jax also with steps_per_execution=2 (the fused steps). Without parity the backend
    draws its own noise and still trains; at inference the layers are the identity (or the fixed statistics),
    so its predictions equal the reference's with the same weights."""
    from backend_parity import check_fit_matches_reference

    rng = np.random.default_rng(11)
    x, y = rng.normal(size=(8, 4)), rng.normal(size=(8, 2))
    check_fit_matches_reference(_four_layer_model, backend, x, y, "mse", 1e-10)
    if backend == "jax":
        runs = []
        for name, per_execution in (("numpy", 1), ("jax", 2)):
            model = _four_layer_model()
            model.compile("adam", "mse", backend=name, dtype="float64", parity=True,
                          steps_per_execution=per_execution)
            runs.append(model.fit(x, y, epochs=2, batch_size=2, shuffle=False, verbose=0).history["loss"])
        np.testing.assert_allclose(runs[1], runs[0], rtol=1e-10)
    fast = _four_layer_model()
    fast.compile("adam", "mse", backend=backend, dtype="float64")
    losses = fast.fit(x, y, epochs=2, batch_size=4, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses))
    reference = _four_layer_model()
    reference.compile("adam", "mse", backend="numpy", dtype="float64")
    reference.set_weights(fast.get_weights())  # the Dense layers' float32 copies of the trained weights: 1e-6
    np.testing.assert_allclose(fast.predict(x, verbose=0), reference.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


# -- config, registry, the example plugin ------------------------------------------------------------
@pytest.mark.parametrize("layer", [
    layers.GaussianNoise(0.2, seed=3), layers.GaussianDropout(0.4), layers.ActivityRegularization(l1=0.01, l2=0.5),
    layers.Normalization(axis=(1, 2), mean=[1.0, 2.0], variance=[3.0, 4.0], invert=True),
    layers.Normalization(axis=None)], ids=lambda layer: layer.kind)
def test_config_round_trip(layer):
    config = layer.get_config()
    again = type(layer).from_config(config)
    assert again.get_config() == config
    model = pk.Sequential([layers.Input((3, 2)), layers.Dense(2), again])
    rebuilt = pk.Sequential.from_config(model.get_config())
    assert rebuilt.layers[-1].get_config() == config


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="stddev"):
        layers.GaussianNoise(-0.1)
    with pytest.raises(ValueError, match="rate"):
        layers.GaussianDropout(1.0)
    with pytest.raises(ValueError, match="l2"):
        layers.ActivityRegularization(l2=-1)


def test_every_backend_declares_the_kinds_and_the_example_refuses_them():
    kinds = {"GaussianNoise", "GaussianDropout", "ActivityRegularization", "Normalization"}
    infos = backends.backend_infos()
    for name in ("numpy", "torch", "jax", "keras-jax"):
        assert kinds <= set(infos[name].layer_kinds), name
    if "example" not in infos or not infos["example"].installed:
        pytest.skip("the example backend plugin is not installed")
    model = pk.Sequential([layers.Input((3,)), layers.Dense(2), layers.GaussianNoise(0.1)])
    with pytest.raises(NotImplementedError, match="GaussianNoise"):
        model.compile("sgd", "mse", backend="example")
        model.fit(np.zeros((2, 3)), np.zeros((2, 2)), verbose=0)


# -- .keras files both ways ----------------------------------------------------------------------------
KERAS_SIDE = textwrap.dedent("""
    import os, sys
    os.environ["KERAS_BACKEND"] = {keras_backend!r}
    import numpy as np
    import keras
    from keras import layers as L

    folder = sys.argv[1]
    with np.load(os.path.join(folder, "data.npz")) as f:
        x, y, adapt = f["x"], f["y"], f["adapt"]

    def results(model, stem):
        loss = model.evaluate(x, y, batch_size=len(x), verbose=0)
        np.savez(os.path.join(folder, stem + ".npz"), y=model.predict(x, verbose=0), loss=loss)

    results(keras.saving.load_model(os.path.join(folder, "pk.keras")), "keras_pk")
    keras.utils.set_random_seed(0)
    norm = L.Normalization(axis=-1)
    norm.adapt(adapt)
    model = keras.Sequential([keras.Input((4,)), norm, L.Dense(5, activation="tanh"), L.GaussianNoise(0.3),
                              L.ActivityRegularization(l1=0.02, l2=0.1), L.GaussianDropout(0.2),
                              L.Normalization(mean=[0.5, -0.5, 0.1, 0.0, 1.0], variance=[1.0, 2.0, 0.5, 4.0, 1e-3],
                                              invert=True), L.Dense(2)])
    model.compile("adam", "mse")
    model.save(os.path.join(folder, "k.keras"))
    results(model, "k")
""")


def _keras_side(folder):
    """One Keras process: it reads polykeras's ``pk.keras``, then writes its own ``k.keras`` (each model's
    predictions and evaluated loss beside it)."""
    infos = backends.backend_infos()
    keras_backend = next((b for b in ("jax", "torch", "tensorflow") if infos[f"keras-{b}"].installed), None)
    if keras_backend is None:
        pytest.skip("no Keras backend installed")
    script = folder / "keras_side.py"
    script.write_text(KERAS_SIDE.format(keras_backend=keras_backend))
    proc = subprocess.run([sys.executable, str(script), str(folder)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _results(model, x, y):
    return model.predict(x, verbose=0), model.evaluate(x, y, batch_size=len(x), verbose=0)


def _polykeras_model(rng):
    pk.utils.set_random_seed(1)
    norm = layers.Normalization(axis=-1)
    model = pk.Sequential([layers.Input((4,)), norm, layers.Dense(3), layers.GaussianDropout(0.3),
                           layers.ActivityRegularization(l1=0.05), layers.GaussianNoise(1.0),
                           layers.Normalization(axis=None, mean=1.0, variance=2.0), layers.Dense(2)])
    model.compile("adam", "mse")
    norm.adapt(rng.normal(-1.0, 0.5, size=(20, 4)))
    return model


def test_keras_file_round_trip_in_polykeras(tmp_path):
    """Written as a .keras file and read back: the same layers, configs and weights (adapted statistics and
    Keras's ``count`` included), the same predictions."""
    model = _polykeras_model(np.random.default_rng(8))
    pk.saving.export_keras(model, tmp_path / "pk.keras")
    again = pk.models.load_model(tmp_path / "pk.keras")
    assert [layer.get_config() for layer in again.layers] == [layer.get_config() for layer in model.layers]
    for a, b in zip(again.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(9).normal(size=(3, 4))
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.slow  # ~20 s: a Keras process
def test_keras_files_both_ways(tmp_path):
    """A polykeras-written model with the four layers (an adapted Normalization, constant statistics) predicts
    and evaluates in Keras as in polykeras -- the evaluation includes ActivityRegularization's penalty -- and
    a Keras-written one (adapted there, constant statistics inverted) does in polykeras."""
    rng = np.random.default_rng(8)
    x = rng.normal(size=(6, 4)).astype("float32")
    y = rng.normal(size=(6, 2)).astype("float32")
    np.savez(tmp_path / "data.npz", x=x, y=y, adapt=rng.normal(2.0, 3.0, size=(30, 4)).astype("float32"))
    model = _polykeras_model(rng)
    pk.saving.export_keras(model, tmp_path / "pk.keras")
    _keras_side(tmp_path)
    with np.load(tmp_path / "keras_pk.npz") as f:
        want_y, want_loss = f["y"], float(f["loss"])
    got_y, got_loss = _results(model, x, y)
    np.testing.assert_allclose(want_y, got_y, rtol=1e-5, atol=1e-6)
    assert want_loss == pytest.approx(got_loss, rel=1e-5)

    loaded = pk.models.load_model(tmp_path / "k.keras")
    assert [layer.kind for layer in loaded.layers] == ["Normalization", "Dense", "GaussianNoise",
                                                       "ActivityRegularization", "GaussianDropout", "Normalization",
                                                       "Dense"]
    with np.load(tmp_path / "k.npz") as f:
        want_y, want_loss = f["y"], float(f["loss"])
    got_y, got_loss = _results(loaded, x, y)
    np.testing.assert_allclose(got_y, want_y, rtol=1e-5, atol=1e-6)
    assert got_loss == pytest.approx(want_loss, rel=1e-5)
