"""``Layer.add_loss`` and ``layer.losses`` (Keras's "Making new layers and models via subclassing"):
a term a custom layer's (or a subclassed model's) ``call()`` adds is part of the loss in ``fit`` and
``evaluate`` on the numpy, torch and jax backends, its gradient the reference's (finite differences);
float64 parity between them; ``layer.losses`` after an eager call; the refusals (outside ``call()``, a
non-tensor, a value computed across the batch used elsewhere, backends without ``added_losses``);
``.keras`` files. Keras 3's own numbers for the same program: ``test_added_losses_keras.py``."""

from __future__ import annotations

import numpy as np
import pytest

import polykeras as pk
from polykeras import backends, layers, ops

from test_numpy_model_gradients import check_model_gradients


@pk.saving.register_keras_serializable(package="test_added_losses")
class ActivityRegularizationLayer(layers.Layer):
    """The guide's layer: ``rate * mean(inputs)`` (over the batch too) added to the loss."""

    def __init__(self, rate=1e-2, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate

    def call(self, inputs):
        self.add_loss(self.rate * ops.mean(inputs))
        return inputs

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}


@pk.saving.register_keras_serializable(package="test_added_losses")
class SquaresLayer(layers.Layer):
    """Two terms, one not a scalar (Keras's compute_loss sums it): ``0.05 * sum(x**2, axis=-1)`` per sample."""

    def call(self, inputs):
        self.add_loss(ops.sum(ops.square(inputs), axis=-1) * 0.05)
        self.add_loss(ops.mean(ops.abs(inputs)) * 0.1)
        return ops.tanh(inputs)


def _model(seed=0):
    pk.utils.set_random_seed(seed)
    inp = pk.Input(shape=(5,))
    h = layers.Dense(6, activation="tanh")(inp)
    h = ActivityRegularizationLayer(0.5)(h)
    h = SquaresLayer()(h)
    return pk.Model(inp, layers.Dense(2)(h))


def _data():
    rng = np.random.default_rng(3)
    return rng.normal(size=(12, 5)), rng.normal(size=(12, 2))


def _added(model, x) -> float:
    """The three terms for a batch ``x``, computed by hand from the model's weights."""
    k1, b1, k2, b2 = model.get_weights()
    h = np.tanh(x @ k1 + b1)
    return 0.5 * h.mean() + 0.05 * np.sum(h ** 2) + 0.1 * np.abs(h).mean()


def test_reference_kernel_adds_the_terms_with_gradient_one():
    """The NumPy ``AddLoss`` kernel: its first input passes through, the others go to ``ctx.losses``; the
    gradient of (output . R + the terms) against central differences."""
    from polykeras.spec import LayerSpec
    from polykeras_numpy.layers import KERNELS, ForwardContext

    from _fd import FD_TOLERANCE, numerical_gradient, relative_error

    spec = LayerSpec("add_loss", "AddLoss", {}, ("x", "a", "b"), ((None, 3), (), ()), (None, 3))
    kernel = KERNELS["AddLoss"](spec, np.float64)
    rng = np.random.default_rng(4)
    xs = [rng.normal(size=(2, 3)), np.array(0.7), np.array(-1.3)]
    R = rng.normal(size=(2, 3))
    ctx = ForwardContext(True)
    y, cache = kernel.forward([], xs, ctx)
    assert y is xs[0] and len(ctx.losses) == 2 and ctx.losses[0] is xs[1] and ctx.losses[1] is xs[2]
    dxs, dws = kernel.backward([], cache, R)
    assert dws == []
    for i, x in enumerate(xs):
        def loss():
            c = ForwardContext(True)
            return float(np.sum(kernel.forward([], xs, c)[0] * R) + sum(c.losses))
        assert relative_error(dxs[i], numerical_gradient(loss, x)) < FD_TOLERANCE


def test_added_losses_count_in_fit_and_evaluate_on_the_reference():
    """evaluate's loss (and fit's first loss: one batch, so the weights it is logged at) is the compiled loss
    plus the terms, as in Keras 3 (``compute_loss`` sums ``model.losses`` in training and evaluation)."""
    x, y = _data()
    model = _model()
    model.compile("sgd", "mse", backend="numpy", dtype="float64")
    k1, b1, k2, b2 = model.get_weights()
    out = np.tanh(np.tanh(x @ k1 + b1)) @ k2 + b2
    expected = np.mean((out - y) ** 2) + _added(model, x)
    assert model.evaluate(x, y, batch_size=12, verbose=0) == pytest.approx(expected, rel=1e-13)
    assert model.fit(x, y, batch_size=12, epochs=1, verbose=0).history["loss"][0] == pytest.approx(expected, rel=1e-13)
    assert model.evaluate(x, y, batch_size=12, verbose=0) != pytest.approx(expected, rel=1e-6)  # it trained


def test_added_loss_gradients_match_finite_differences():
    """The reference starts its backward at each term with gradient 1: central differences agree."""
    x, y = _data()
    grads = check_model_gradients(_model(), x, y, "mse")
    plain = pk.Sequential([pk.Input((5,)), layers.Dense(6, activation="tanh"), layers.Activation("tanh"),
                           layers.Dense(2)])
    plain.compile("sgd", "mse", backend="numpy", dtype="float64")
    model = _model()
    plain.set_weights(model.get_weights())
    without = check_model_gradients(plain, x, y, "mse")
    assert not np.allclose(grads.weights[0], without.weights[0])  # the terms reach the first kernel


class PenalizedScale(layers.Layer):
    """A term of the layer's own weight alone (its output path carries none of it): ``0.3 * sum(w**2)``."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones")

    def call(self, inputs):
        self.add_loss(0.3 * ops.sum(ops.square(self.w)))
        return inputs * self.w


def test_a_term_of_a_weight_alone_reaches_its_gradient():
    """The reference's backward reaches a term whose tensor depends on a weight only (finite differences),
    and torch and jax give the same gradients (float64, 1e-12)."""
    def build():
        pk.utils.set_random_seed(2)
        return pk.Sequential([pk.Input((5,)), PenalizedScale(), layers.Dense(2)])

    x, y = _data()
    reference = check_model_gradients(build(), x, y, "mse")
    for name in ("torch", "jax"):
        if not backends.backend_infos()[name].installed:
            continue
        model = build()
        model.compile("sgd", "mse", backend=name, dtype="float64")
        got = model._get_program(training=True, y_ndim=2).value_and_grad(x, y, 7)
        assert got.loss == pytest.approx(reference.loss, rel=1e-12)
        for a, b in zip(got.weights, reference.weights):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_training_matches_the_reference_in_float64(backend):
    """Two epochs of Adam, float64: per-epoch losses and final weights of torch and jax within 1e-12 of the
    reference's (measured ~1e-15)."""
    if not backends.backend_infos()[backend].installed:
        pytest.skip(f"{backend} is not installed")
    from backend_parity import check_fit_matches_reference

    x, y = _data()
    check_fit_matches_reference(_model, backend, x, y, "mse", 1e-12, epochs=2, batch_size=4)
    model = _model()
    model.compile("adam", "mse", backend=backend, dtype="float64")
    reference = _model()
    reference.compile("adam", "mse", backend="numpy", dtype="float64")
    assert model.evaluate(x, y, batch_size=5, verbose=0) == pytest.approx(
        reference.evaluate(x, y, batch_size=5, verbose=0), rel=1e-12)


def test_subclassed_model_add_loss():
    """A subclassed model's own ``self.add_loss`` in ``call()`` (the guide's VAE adds its KL term so)."""
    class Regularized(pk.Model):
        def __init__(self):
            super().__init__()
            self.dense = layers.Dense(2)

        def call(self, inputs):
            out = self.dense(inputs)
            self.add_loss(0.25 * ops.mean(ops.square(out)))
            return out

    x, y = _data()
    model = Regularized()
    model.compile("sgd", "mse", backend="numpy", dtype="float64")
    model.build((None, 5))
    k, b = model.get_weights()
    out = x @ k + b
    expected = np.mean((out - y) ** 2) + 0.25 * np.mean(out ** 2)
    assert model.evaluate(x, y, batch_size=12, verbose=0) == pytest.approx(expected, rel=1e-13)


def test_layer_losses_after_an_eager_call():
    """The guide's nested layers: ``losses`` is empty before a call and lists this call's values after
    each (not accumulated), on the outer layer and on the inner one that added them."""
    class OuterLayer(layers.Layer):
        def __init__(self):
            super().__init__()
            self.activity_reg = ActivityRegularizationLayer(1e-2)

        def call(self, inputs):
            return self.activity_reg(inputs)

    layer = OuterLayer()
    assert layer.losses == []
    x = np.arange(6, dtype="float32").reshape(2, 3)
    np.testing.assert_allclose(layer(x), x)
    assert layer.losses == pytest.approx([1e-2 * x.mean()], rel=1e-6)
    assert layer.activity_reg.losses == pytest.approx([1e-2 * x.mean()], rel=1e-6)
    layer(np.ones((2, 3), "float32"))
    assert layer.losses == pytest.approx([1e-2], rel=1e-6)
    squares = SquaresLayer()
    squares(x)
    assert squares.losses == pytest.approx([0.05 * np.sum(x ** 2), 0.1 * np.abs(x).mean()], rel=1e-6)
    assert layers.Dense(2).losses == []


def test_layer_losses_list_weight_penalties():
    """As Keras's: after the added losses, the penalty of each regularized trainable weight (sublayers'
    too) at its current value; none for a frozen layer."""
    class OuterLayerWithKernelRegularizer(layers.Layer):
        def __init__(self):
            super().__init__()
            self.dense = layers.Dense(4, kernel_regularizer=pk.regularizers.l2(1e-3))

        def call(self, inputs):
            self.add_loss(ops.sum(inputs) * 0.5)
            return self.dense(inputs)

    layer = OuterLayerWithKernelRegularizer()
    assert layer.losses == []
    layer(np.ones((2, 3), "float32"))
    kernel = layer.dense.get_weights()[0]
    assert layer.losses == pytest.approx([3.0, 1e-3 * np.sum(kernel.astype(np.float64) ** 2)], rel=1e-6)
    dense = layers.Dense(3, kernel_regularizer="l1", bias_regularizer=pk.regularizers.l2(0.1))
    dense.build((None, 2))
    dense.set_weights([np.full((2, 3), -2.0), np.ones(3)])
    assert dense.losses == pytest.approx([0.01 * 12.0, 0.1 * 3.0])
    dense.trainable = False
    assert dense.losses == []


def test_refusals():
    """add_loss outside call(), of a non-tensor, or of an integer; a value computed across the batch used
    anywhere but in add_loss (ops keep axis 0 as the batch axis); the backends without ``added_losses``."""
    with pytest.raises(RuntimeError, match=r"add_loss\(\) can only be called inside call\(\)"):
        ActivityRegularizationLayer().add_loss(np.float32(1.0))

    class Constant(layers.Layer):
        def call(self, inputs):
            self.add_loss(0.5)
            return inputs

    with pytest.raises(ValueError, match="add_loss.. takes a tensor"):
        Constant()(pk.Input((3,)))

    class Centered(layers.Layer):
        def call(self, inputs):
            return inputs - ops.mean(inputs)

    with pytest.raises(ValueError, match="mixes a value computed across the batch"):
        Centered()(pk.Input((3,)))

    class Total(layers.Layer):
        def call(self, inputs):
            return ops.mean(inputs)

    with pytest.raises(ValueError, match="computed across the batch"):
        Total()(pk.Input((3,)))
    with pytest.raises(ValueError, match="batch axis first"):  # outside a call(), as before
        ops.mean(pk.Input((3,)))

    model = _model()
    assert "added_losses" in model._spec().features
    infos = backends.backend_infos()
    lacking = [name for name in ("keras-jax", "example") if name in infos and infos[name].installed]
    # keras-jax: a partial evaluation batch after fit came out 1% off (polykeras_keras.backend), so it refuses
    for name in lacking:  # they do not declare the graph feature: refused before compiling, naming it
        model.compile("sgd", "mse", backend=name)
        with pytest.raises(NotImplementedError, match=f"backend '{name}' does not run models with added losses"):
            model.fit(*_data(), epochs=1, verbose=0)


@pytest.mark.parametrize("suffix", [".keras", ".polykeras"])
def test_saved_model_loads_and_trains(tmp_path, suffix):
    """The layer is custom code (registered for .keras; .polykeras keeps the traced graph): the file loads,
    predicts alike, the terms count in the loaded model's loss, and one more epoch trains alike."""
    x, y = _data()
    model = _model()
    model.compile("adam", "mse", backend="numpy", dtype="float64")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    path = tmp_path / f"added{suffix}"
    model.save(path)
    loaded = pk.models.load_model(path)
    loaded.compile("adam", "mse", backend="numpy", dtype="float64")
    loaded.set_weights(model.get_weights())
    assert "added_losses" in loaded._spec().features
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-12)
    assert loaded.evaluate(x, y, verbose=0) == pytest.approx(model.evaluate(x, y, verbose=0), rel=1e-12)
    model.compile("adam", "mse", backend="numpy", dtype="float64")  # a fresh Adam on both
    again = [m.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False).history["loss"][0] for m in (model, loaded)]
    assert again[1] == pytest.approx(again[0], rel=1e-10)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["keras-torch", "keras-tensorflow"])
def test_keras_backends_match_the_reference(backend):
    """Keras's own ``add_loss`` (an ``AddLoss`` node is a Keras layer calling it): two epochs of Adam with
    validation, then evaluate with a partial last batch, float64: losses within 1e-6 of the reference
    (measured 7e-8 on keras-torch, 6e-8 on keras-tensorflow: Keras logs through a float32 metric), weights
    within 1e-7 (measured 8e-10, 4e-8). A Keras worker process each (~15 s)."""
    if not backends.backend_infos()[backend].installed:
        pytest.skip(f"{backend} is not installed")
    x, y = _data()
    runs = []
    for name in ("numpy", backend):
        model = _model()
        model.compile("adam", "mse", backend=name, dtype="float64")
        history = model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0, validation_data=(x, y)).history
        runs.append((history["loss"] + history["val_loss"] + [model.evaluate(x, y, batch_size=5, verbose=0)],
                     model.get_weights()))
    np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=1e-6)
    for a, b in zip(runs[1][1], runs[0][1]):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-7)

