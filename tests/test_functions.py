"""Loss and metric functions written with ``polykeras.ops`` (``compile(loss=fn,
metrics=[fn])``): traced once into op graphs that every backend runs. The reference's
gradient is checked by finite differences; the backends train like the reference in
float64; a function that re-writes a built-in loss trains exactly like it; saved models
find their functions by name, as in Keras."""

from __future__ import annotations

import numpy as np
import pytest

import polykeras as keras
from polykeras import layers, ops
from polykeras.functions import trace
from polykeras.saving.registration import UnknownObjectError
from polykeras_numpy.functions import function_loss, function_values

from _fd import FD_STEP, FD_TOLERANCE

# float64: 8 steps of Adam through a few ops and two Dense layers, at unit roundoff 1.1e-16;
# a wrong op, gradient or reduction shows at 1e-6 or above
FLOAT64_PARITY = 1e-12


def huber_written_out(y_true, y_pred):
    error = y_pred - y_true
    size = ops.abs(error)
    return ops.mean(ops.where(size <= 1.0, 0.5 * ops.square(error), size - 0.5), axis=-1)


def mean_of_everything(y_true, y_pred):
    """Reduces over the batch axis too: a scalar, which Keras's reduction leaves as it is."""
    return ops.mean(ops.square(y_pred - y_true)) + 0.1 * ops.sum(ops.abs(y_pred), axis=0)[0]


def sparse_log_loss(y_true, y_pred):
    """Integer labels arrive as floats (Keras converts them); cast back to index with them."""
    picked = ops.take_along_axis(y_pred, ops.expand_dims(ops.cast(y_true, "int32"), -1), axis=-1)
    return -ops.log(ops.squeeze(picked, -1) + 1e-7)


def absolute_error(y_true, y_pred):
    return ops.mean(ops.abs(y_true - y_pred), axis=-1)


def within_one(y_true, y_pred):
    return ops.abs(y_true - y_pred) < 1.0  # booleans: the metric counts them as 0/1


def _data(n=48, sparse=False):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 6))
    y = rng.integers(0, 3, n) if sparse else rng.normal(size=(n, 3)) * 2
    return x, y, rng.uniform(0.2, 2.0, n)


def _model(activation=None):
    keras.utils.set_random_seed(3)
    return keras.Sequential([keras.Input((6,)), layers.Dense(8, activation="tanh"),
                             layers.Dense(3, activation=activation)])


def _fit(backend, loss, metrics=(), weighted_metrics=None, sparse=False, activation=None):
    x, y, w = _data(sparse=sparse)
    model = _model(activation)
    model.compile("adam", loss=loss, metrics=list(metrics), weighted_metrics=weighted_metrics, backend=backend,
                  dtype="float64")
    history = model.fit(x, y, sample_weight=w, batch_size=12, epochs=2, shuffle=False, verbose=0)
    return history.history, model.get_weights()


def _max_difference(a, b) -> float:
    return max(float(np.max(np.abs(u - v))) for u, v in zip(a, b))


# -- the reference ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fn, sparse", [(huber_written_out, False), (mean_of_everything, False),
                                        (sparse_log_loss, True)])
@pytest.mark.parametrize("weighted", [False, True])
def test_reference_gradient_matches_finite_differences(fn, sparse, weighted):
    rng = np.random.default_rng(1)
    p = rng.uniform(0.05, 1.0, size=(5, 3))
    y = rng.integers(0, 3, 5).astype(np.float64) if sparse else rng.normal(size=(5, 3))
    w = rng.uniform(0.2, 2.0, 5) if weighted else None
    loss = function_loss(trace(fn, (None, 3), y.ndim).to_dict())
    _, grad = loss(y, p, w)
    numeric = np.zeros_like(p)
    for i in np.ndindex(p.shape):
        step = np.zeros_like(p)
        step[i] = FD_STEP
        numeric[i] = (loss(y, p + step, w)[0] - loss(y, p - step, w)[0]) / (2 * FD_STEP)
    np.testing.assert_allclose(grad, numeric, rtol=FD_TOLERANCE, atol=FD_TOLERANCE)


def test_a_scalar_loss_takes_the_mean_sample_weight_as_keras_does():
    rng = np.random.default_rng(2)
    p, y, w = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), rng.uniform(size=4)
    loss = function_loss(trace(mean_of_everything, (None, 3), 2).to_dict())
    unweighted = loss(y, p)[0]
    assert loss(y, p, w)[0] == pytest.approx(unweighted * w.mean(), rel=1e-14)


def test_a_loss_written_with_ops_trains_exactly_like_the_builtin_one():
    mine, builtin = _fit("numpy", huber_written_out, ["mae"]), _fit("numpy", "huber", ["mae"])
    np.testing.assert_allclose(mine[0]["loss"], builtin[0]["loss"], rtol=FLOAT64_PARITY)
    assert _max_difference(mine[1], builtin[1]) < FLOAT64_PARITY


def test_metric_functions_equal_the_builtin_metric_plain_and_weighted():
    history, _ = _fit("numpy", "mse", [absolute_error, "mae", within_one], weighted_metrics=[absolute_error, "mae"])
    np.testing.assert_allclose(history["absolute_error"], history["mae"], rtol=FLOAT64_PARITY)
    np.testing.assert_allclose(history["weighted_absolute_error"], history["weighted_mae"], rtol=FLOAT64_PARITY)
    x, y, _ = _data()
    assert 0 < history["within_one"][-1] < 1
    values = function_values(trace(within_one, (None, 3), 2, "metric").to_dict())(y, y + 0.5 * np.sign(x[:, :3]))
    assert values.dtype == np.float64 and values.mean() == 1.0


# -- every backend -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("loss, sparse, activation", [(huber_written_out, False, None),
                                                      (mean_of_everything, False, None),
                                                      (sparse_log_loss, True, "softmax")])
def test_backends_train_like_the_reference_in_float64(backend, loss, sparse, activation):
    metrics = [sparse_log_loss] if sparse else [absolute_error, within_one]
    reference = _fit("numpy", loss, metrics, metrics[:1], sparse, activation)
    history, weights = _fit(backend, loss, metrics, metrics[:1], sparse, activation)
    assert history.keys() == reference[0].keys()
    for name, values in reference[0].items():
        np.testing.assert_allclose(history[name], values, rtol=FLOAT64_PARITY, err_msg=name)
    assert _max_difference(weights, reference[1]) < FLOAT64_PARITY


def test_a_loss_subclass_with_call_is_traced_like_a_function():
    class ScaledHuber(keras.losses.Loss):
        def __init__(self, scale=2.0, **kwargs):
            super().__init__(**kwargs)
            self.scale = scale

        def call(self, y_true, y_pred):
            return self.scale * huber_written_out(y_true, y_pred)

    x, y, w = _data()
    losses = []
    for loss in (ScaledHuber(name="scaled"), "huber"):
        model = _model()
        model.compile("sgd", loss=loss, backend="numpy", dtype="float64")
        losses.append(model.evaluate(x, y, sample_weight=w, verbose=0))
    assert losses[0] == pytest.approx(2 * losses[1], rel=1e-14)


def test_training_twice_reuses_the_traced_function_and_the_program():
    x, y, _ = _data()
    model = _model()
    model.compile("sgd", loss=huber_written_out, metrics=[absolute_error], backend="numpy")
    model.fit(x, y, epochs=1, verbose=0)
    program = model._program
    model.fit(x, y, epochs=1, verbose=0)
    model.evaluate(x, y, verbose=0)
    assert model._program is program


# -- errors ----------------------------------------------------------------------------------------------------
def test_value_dependent_control_flow_is_explained():
    def branchy(y_true, y_pred):
        return ops.square(y_pred) if ops.mean(y_pred) > 0 else y_true

    model = _model()
    model.compile("sgd", loss=branchy, backend="numpy")
    x, y, _ = _data()
    with pytest.raises(TypeError, match="ops.where"):
        model.fit(x, y, epochs=1, verbose=0)


@pytest.mark.parametrize("fn, message", [
    (lambda y_true, y_pred: layers.Dense(2)(y_pred), "polykeras.ops only"),
    (lambda y_true, y_pred: 0.5, "returned float"),
    (lambda y_true, y_pred: y_pred, "unchanged"),
    (lambda y_true, y_pred: ops.argmax(y_pred, axis=-1), "float tensor"),
])
def test_what_a_loss_function_cannot_be_is_named(fn, message):
    with pytest.raises(TypeError, match=message):
        trace(fn, (None, 3), 2)


def test_an_unknown_loss_name_points_to_registration():
    with pytest.raises(ValueError, match="register_keras_serializable"):
        keras.losses.get("no_such_loss")


# -- saving -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".keras", ".polykeras"])
def test_saved_models_find_their_functions_by_name(tmp_path, suffix):
    x, y, _ = _data()
    model = _model()
    model.compile("adam", loss=huber_written_out, metrics=[absolute_error], backend="numpy")
    model.fit(x, y, epochs=1, batch_size=12, verbose=0, shuffle=False)
    path = tmp_path / f"m{suffix}"
    model.save(path)
    with pytest.raises(UnknownObjectError, match="custom_objects"):  # not a damaged file: a function to give
        keras.models.load_model(path)
    assert keras.models.load_model(path, compile=False).predict(x, verbose=0).shape == (48, 3)
    loaded = keras.models.load_model(path, custom_objects={"huber_written_out": huber_written_out,
                                                           "absolute_error": absolute_error})
    expected = model.evaluate(x, y, verbose=0, return_dict=True)
    got = loaded.evaluate(x, y, verbose=0, return_dict=True)
    assert got.keys() == expected.keys()
    for name in expected:  # the same float32 weights, ops and backend: the same numbers
        assert got[name] == expected[name]


def test_registered_functions_load_without_custom_objects(tmp_path):
    @keras.saving.register_keras_serializable(package="test_functions")
    def registered_huber(y_true, y_pred):
        return huber_written_out(y_true, y_pred)

    model = _model()
    model.compile("sgd", loss=registered_huber, backend="numpy")
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.loss.fn is registered_huber
