"""Keras's activation layers (ReLU, LeakyReLU, ELU, Softmax, PReLU) and ``polykeras.activations`` as functions:
written with ``polykeras.ops``, so the NumPy reference's gradients are the ops' (checked here against
finite differences away from the kinks), every backend trains them as the reference does, and a
``.keras`` file carries them to Keras 3 and back as Keras's own layer classes."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

import polykeras as keras
from polykeras import activations, layers
from polykeras.trainer import Trainer

from _fd import check_model_gradients
from backend_parity import check_fit_matches_reference

FLOAT64_PARITY = 1e-12

LAYERS = [("ReLU", {}), ("ReLU", {"max_value": 0.6, "negative_slope": 0.1, "threshold": 0.2}),
          ("ReLU", {"max_value": 6.0}), ("ReLU", {"negative_slope": 0.05}), ("LeakyReLU", {}),
          ("LeakyReLU", {"negative_slope": 0.01}), ("ELU", {}), ("ELU", {"alpha": 2.0}), ("Softmax", {}),
          ("Softmax", {"axis": 1}), ("PReLU", {"alpha_initializer": "random_uniform"}),
          ("PReLU", {"alpha_initializer": "random_normal", "shared_axes": [1], "alpha_regularizer": "l2"})]
IDS = [f"{cls}{config or ''}" for cls, config in LAYERS]
KINKS = {"ReLU": lambda c: [c.get("threshold", 0.0), 0.0] + ([c["max_value"]] if c.get("max_value") else []),
         "LeakyReLU": lambda c: [0.0], "ELU": lambda c: [0.0], "Softmax": lambda c: [], "PReLU": lambda c: [0.0]}

X = np.random.default_rng(0).normal(size=(6, 4))
Y = np.random.default_rng(1).normal(size=(6, 3))


def _model(cls: str, config: dict):
    keras.utils.set_random_seed(4)
    inp = keras.Input((4,))
    hidden = layers.Dense(6)(inp)
    if cls in ("Softmax", "PReLU"):  # an axis of a rank-2 feature map; alpha shared along one
        hidden = layers.Reshape((2, 3))(hidden)
    out = getattr(layers, cls)(**config)(hidden)
    return keras.Model(inp, layers.Dense(3)(layers.Flatten()(out)))


def _expected(cls: str, config: dict, x: np.ndarray, alpha=None) -> np.ndarray:
    """The layers' math written out in NumPy (Keras 3's definitions)."""
    if cls == "ReLU":
        slope, top, threshold = config.get("negative_slope", 0.0), config.get("max_value"), config.get("threshold", 0.0)
        y = np.where(x > threshold, x, 0.0) if threshold else np.maximum(x, 0.0)
        y = np.minimum(y, top) if top is not None else y
        return y - slope * np.maximum(threshold - x, 0.0) if (top is not None or threshold) else (
            np.where(x >= 0, x, slope * x))
    if cls == "LeakyReLU":
        return np.where(x >= 0, x, config.get("negative_slope", 0.3) * x)
    if cls == "ELU":
        return np.where(x > 0, x, config.get("alpha", 1.0) * (np.exp(np.minimum(x, 0)) - 1))
    if cls == "PReLU":
        return np.where(x >= 0, x, alpha * x)
    e = np.exp(x - x.max(axis=config.get("axis", -1), keepdims=True))
    return e / e.sum(axis=config.get("axis", -1), keepdims=True)


@pytest.mark.parametrize("cls, config", LAYERS, ids=IDS)
def test_forward_is_keras_math_on_arrays_and_in_a_model(cls, config):
    x = np.random.default_rng(2).normal(size=(5, 2, 3)) * 2
    inp = keras.Input((2, 3))
    model = keras.Model(inp, getattr(layers, cls)(**config)(inp))
    model.compile("sgd", "mse", backend="numpy", dtype="float64")
    alpha = model.get_weights()[0] if cls == "PReLU" else None
    if cls == "PReLU":
        assert alpha.shape == ((1, 3) if config.get("shared_axes") else (2, 3)) and np.all(alpha != 0)
    else:  # (an eager call builds a new layer: new weights)
        got = getattr(layers, cls)(**config)(x)
        np.testing.assert_allclose(got, _expected(cls, config, x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(model.predict(x, verbose=0), _expected(cls, config, x, alpha), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("cls, config", LAYERS, ids=IDS)
def test_reference_gradients_match_finite_differences(cls, config):
    model = _model(cls, config)
    model.compile("sgd", "mse", backend="numpy", dtype="float64")
    pre = X @ model.get_weights()[0] + model.get_weights()[1]  # the activation's input
    gap = min([np.abs(pre - k).min() for k in KINKS[cls](config)], default=np.inf)
    assert gap > 1e-4, f"a pre-activation sits {gap:.1e} from a kink: finite differences would straddle it"
    x, y = Trainer(model).prepare(X, Y)
    program = model._get_program(training=True, y_ndim=2)
    # the first Dense's gradients pass through the activation (and PReLU's alpha is the third weight)
    check_model_gradients(program, x, y, range(5 if cls == "PReLU" else 4))


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("cls, config", LAYERS[1::2], ids=IDS[1::2])
def test_training_matches_the_reference_in_float64(backend, cls, config):
    check_fit_matches_reference(lambda: _model(cls, config), backend, X, Y, "mse", FLOAT64_PARITY)


@pytest.mark.parametrize("cls, config", LAYERS[1::2], ids=IDS[1::2])
def test_keras_jax_trains_them_as_the_reference_in_float32(cls, config):
    """Keras's float64 runs differ from the reference by ~5e-8 for a model without these layers too
    (a plain Dense/tanh model, measured), so the Keras backend is held to float32 rounding here. PReLU's
    alpha_regularizer reaches Keras through the variable's add_weight(regularizer=...) (it was dropped:
    loss 1.0 on keras-jax against the reference's 2.5 for one L2(0.5) weight of ones)."""
    results = []
    for backend in ("numpy", "keras-jax"):
        model = _model(cls, config)
        model.compile("adam", "mse", backend=backend)
        predicted = model.predict(X, verbose=0)
        losses = model.fit(X, Y, epochs=3, batch_size=2, verbose=0, shuffle=False).history["loss"]
        results.append((predicted, losses, model.get_weights()))
    (ref_pred, ref_loss, ref_w), (pred, loss, w) = results
    np.testing.assert_allclose(pred, ref_pred, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    for a, b in zip(w, ref_w):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_config_and_bad_arguments():
    layer = layers.ReLU(max_value=6.0, negative_slope=0.1, threshold=0.5, name="r")
    assert layers.ReLU.from_config(layer.get_config()).get_config() == layer.get_config()
    assert {k: layer.get_config()[k] for k in ("max_value", "negative_slope", "threshold")} == {
        "max_value": 6.0, "negative_slope": 0.1, "threshold": 0.5}
    assert layers.LeakyReLU().negative_slope == 0.3 and layers.ELU().alpha == 1.0 and layers.Softmax().axis == -1
    prelu = layers.PReLU(shared_axes=1, alpha_regularizer="l2")
    assert prelu.get_config()["shared_axes"] == [1] and prelu.get_config()["alpha_initializer"]["class_name"] == "Zeros"
    assert layers.PReLU.from_config(prelu.get_config()).alpha_regularizer.l2 == prelu.alpha_regularizer.l2
    with pytest.raises(NotImplementedError, match="alpha_constraint"):
        layers.PReLU(alpha_constraint="non_neg")
    with pytest.raises(ValueError, match="shared_axes"):
        layers.PReLU(shared_axes=[3])(keras.Input((2, 3)))
    with pytest.raises(ValueError, match="max_value"):
        layers.ReLU(max_value=-1.0)
    with pytest.raises(ValueError, match="negative_slope"):
        layers.LeakyReLU(negative_slope=-0.1)
    with pytest.raises(ValueError, match="threshold"):
        layers.ReLU(threshold=None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert layers.LeakyReLU(alpha=0.2).negative_slope == 0.2  # Keras 2's name, deprecated in Keras 3
    assert any("alpha" in str(w.message) for w in caught)


def test_softmax_with_a_mask_gives_masked_positions_zero():
    scores, keep = keras.Input((3, 4)), keras.Input((3, 4), dtype="bool")
    model = keras.Model([scores, keep], layers.Softmax()(scores, mask=keep))
    x = np.random.default_rng(3).normal(size=(2, 3, 4))
    m = np.random.default_rng(4).random((2, 3, 4)) > 0.4
    m[0, 0] = False  # a row with every position masked: all zeros, as in Keras
    model.compile("sgd", "mse", backend="numpy", dtype="float64")
    e = np.where(m, np.exp(x), 0.0)
    want = np.divide(e, e.sum(-1, keepdims=True), out=np.zeros_like(e), where=m.any(-1, keepdims=True))
    np.testing.assert_allclose(model.predict([x, m], verbose=0), want, rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="broadcastable"):
        layers.Softmax()(scores, mask=keras.Input((5,), dtype="bool"))


# -- activations as functions ---------------------------------------------------------------------------------------
FUNCTIONS = {"relu": lambda x: np.maximum(x, 0), "leaky_relu": lambda x: np.where(x >= 0, x, 0.2 * x),
             "relu6": lambda x: np.clip(x, 0, 6), "elu": lambda x: np.where(x > 0, x, np.exp(np.minimum(x, 0)) - 1),
             "selu": lambda x: activations.SELU_SCALE * np.where(x > 0, x, activations.SELU_ALPHA * np.expm1(x)),
             "sigmoid": lambda x: 1 / (1 + np.exp(-x)), "tanh": np.tanh, "softplus": lambda x: np.log1p(np.exp(x)),
             "silu": lambda x: x / (1 + np.exp(-x)), "swish": lambda x: x / (1 + np.exp(-x)),
             "exponential": np.exp, "hard_sigmoid": lambda x: np.clip(x / 6 + 0.5, 0, 1), "linear": lambda x: x,
             "mish": lambda x: x * np.tanh(np.log1p(np.exp(x))), "hard_silu": lambda x: x * np.clip(x / 6 + 0.5, 0, 1),
             "softmax": lambda x: np.exp(x) / np.exp(x).sum(-1, keepdims=True),
             "log_softmax": lambda x: x - np.log(np.exp(x).sum(-1, keepdims=True))}


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_activation_functions_compute_on_arrays(name):
    x = np.linspace(-8, 8, 24).reshape(3, 8)
    np.testing.assert_allclose(getattr(activations, name)(x), FUNCTIONS[name](x), rtol=1e-12, atol=1e-15)


def test_gelu_is_exact_by_default_as_keras_activations():
    from math import erf

    x = np.linspace(-3, 3, 7)
    exact = np.array([0.5 * v * (1 + erf(v / np.sqrt(2))) for v in x])
    np.testing.assert_allclose(activations.gelu(x), exact, rtol=1e-12)
    assert np.abs(activations.gelu(x, approximate=True) - exact).max() > 1e-5


def test_activation_functions_trace_in_a_custom_layer_and_still_name_a_layers_activation():
    class Gate(layers.Layer):
        def call(self, x):
            return activations.relu(x, max_value=1.0) * activations.sigmoid(x) + activations.elu(-x, alpha=0.5)

    inp = keras.Input((4,))
    model = keras.Model(inp, Gate()(layers.Dense(4, activation=activations.relu)(inp)))
    assert model.layers[1].get_config()["activation"] == "relu"
    model.compile("sgd", "mse", backend="numpy", dtype="float64")
    x = np.random.default_rng(5).normal(size=(3, 4))
    kernel, bias = model.get_weights()
    h = np.maximum(x @ kernel + bias, 0)
    want = np.clip(h, 0, 1) / (1 + np.exp(-h)) + np.where(-h > 0, -h, 0.5 * (np.exp(np.minimum(-h, 0)) - 1))
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-12)
    assert activations.get(activations.swish) == "swish" and activations.deserialize("relu") is activations.relu
    with pytest.raises(TypeError, match="named activations only"):
        layers.Dense(2, activation=activations.leaky_relu)


# -- Keras 3 ------------------------------------------------------------------------------------------------------
KERAS_ROUND_TRIP = """
import os, sys
os.environ["KERAS_BACKEND"] = "jax"
import numpy as np, keras
model = keras.models.load_model(sys.argv[1])
print(",".join(type(l).__name__ for l in model.layers))
np.save(sys.argv[3], np.asarray(model.predict(np.load(sys.argv[2]), verbose=0)))
model.save(sys.argv[4])
"""


def test_keras_3_reads_them_as_its_layers_and_polykeras_reads_them_back(tmp_path):
    keras.utils.set_random_seed(6)
    model = keras.Sequential([keras.Input((5,)), layers.Dense(6), layers.ReLU(max_value=0.6, negative_slope=0.1,
                                                                              threshold=0.2),
                              layers.Dense(6), layers.LeakyReLU(negative_slope=0.2), layers.Dense(6),
                              layers.ELU(alpha=0.5), layers.Dense(4),
                              layers.PReLU(alpha_initializer="random_uniform", alpha_regularizer="l2"),
                              layers.Softmax()])
    x = np.random.default_rng(7).normal(size=(8, 5)).astype("float32")
    want = model.predict(x, verbose=0)
    model.save(tmp_path / "ours.keras")
    np.save(tmp_path / "x.npy", x)
    run = subprocess.run([sys.executable, "-c", KERAS_ROUND_TRIP, str(tmp_path / "ours.keras"), str(tmp_path / "x.npy"),
                          str(tmp_path / "y.npy"), str(tmp_path / "theirs.keras")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split()[-1] == "Dense,ReLU,Dense,LeakyReLU,Dense,ELU,Dense,PReLU,Softmax"
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), want, atol=2e-6)  # Keras computes in float32
    back = keras.models.load_model(tmp_path / "theirs.keras")
    assert [type(layer).__name__ for layer in back.layers] == [type(layer).__name__ for layer in model.layers]
    assert back.layers[1].get_config()["threshold"] == 0.2 and back.layers[5].alpha == 0.5
    np.testing.assert_array_equal(back.layers[7].get_weights()[0], model.layers[7].get_weights()[0])  # PReLU's alpha
    assert back.layers[7].alpha_regularizer.l2 == model.layers[7].alpha_regularizer.l2
    for backend in ("numpy", "torch", "jax"):
        back.compile("sgd", "mse", backend=backend)
        np.testing.assert_allclose(back.predict(x, verbose=0), want, atol=2e-6, err_msg=backend)
