"""Model building, weights and configs: the Keras API surface."""

import numpy as np
import pytest

import polykeras as keras
from polykeras import layers
from polykeras.layers import Dense
from polykeras.models import Sequential


def test_sequential_from_list_with_input_shape():
    model = keras.Sequential([layers.Flatten(input_shape=(28, 28)), layers.Dense(128, activation="relu"),
                              layers.Dense(10, activation="softmax")])
    assert model.input_shape == (None, 28, 28)
    assert model.output_shape == (None, 10)
    assert [w.shape for w in model.get_weights()] == [(784, 128), (128,), (128, 10), (10,)]
    assert model.count_params() == 784 * 128 + 128 + 1290


def test_sequential_add_with_input_dim_and_input_layer():
    a = Sequential()
    a.add(Dense(64, input_dim=100, activation="relu"))
    a.add(Dense(10))
    b = Sequential([layers.Input(shape=(100,)), Dense(64), Dense(10)])
    assert a.output_shape == b.output_shape == (None, 10)
    assert len(a.layers) == len(b.layers) == 2


def test_deferred_build_from_data():
    model = Sequential([Dense(4), Dense(2)])
    assert not model.built
    out = model.predict(np.zeros((3, 5)), verbose=0)
    assert out.shape == (3, 2) and model.built


def test_an_unbuilt_sequential_has_no_weights_yet():
    """Keras 3: ``weights`` and ``get_weights()`` are ``[]`` before the build; ``count_params()`` says it is
    not built; after the first call, the weights are there."""
    model = Sequential([Dense(2, activation="relu"), Dense(3)])
    assert model.weights == model.trainable_weights == model.non_trainable_weights == model.get_weights() == []
    with pytest.raises(ValueError, match="not built yet"):
        model.count_params()
    model(np.ones((1, 4), "float32"))
    assert [tuple(w.shape) for w in model.weights] == [(4, 2), (2,), (2, 3), (3,)] and model.count_params() == 19


def test_functional_model():
    inp = keras.Input(shape=(8,))
    h = layers.Dense(16, activation="relu")(inp)
    out = layers.Dense(3, activation="softmax")(h)
    model = keras.Model(inp, out)
    assert model.output_shape == (None, 3)
    assert [type(l).__name__ for l in model.layers] == ["InputLayer", "Dense", "Dense"]
    probs = model.predict(np.ones((2, 8)), verbose=0)
    np.testing.assert_allclose(probs.sum(-1), 1, rtol=1e-5)


def test_layer_names_are_keras_style_and_unique():
    keras.backend.clear_session()
    model = Sequential([Dense(2, input_dim=3), Dense(2), Dense(1)])
    assert [l.name for l in model.layers] == ["dense", "dense_1", "dense_2"]
    with pytest.raises(ValueError, match="already in model"):
        model.add(Dense(1, name="dense"))


def test_get_set_weights_round_trip_and_layer_view():
    keras.utils.set_random_seed(1)
    model = Sequential([Dense(3, input_dim=2), Dense(1)])
    new = [np.full(w.shape, i, dtype="float32") for i, w in enumerate(model.get_weights())]
    model.set_weights(new)
    for got, want in zip(model.get_weights(), new):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(model.layers[1].get_weights()[0], new[2])
    np.testing.assert_array_equal(model.layers[0].weights[0].numpy(), new[0])
    with pytest.raises(ValueError, match="shape"):
        model.set_weights([np.zeros((5, 5))] + new[1:])
    with pytest.raises(ValueError, match="4 weight arrays"):
        model.set_weights(new[:2])


def test_weights_follow_training():
    keras.utils.set_random_seed(0)
    model = Sequential([Dense(1, input_dim=2)])
    model.compile(optimizer="sgd", loss="mse")
    before = model.layers[0].get_weights()[0]
    model.fit(np.ones((8, 2)), np.ones((8, 1)), epochs=1, verbose=0)
    assert not np.allclose(model.layers[0].get_weights()[0], before)


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_weights_as_keras_attributes_read_and_assign_through_a_running_model(backend):
    """``dense.kernel``, ``bn.moving_mean`` and ``layer.weights[i]``: Keras's attribute names, ``dtype``, and
    ``assign``/``assign_add``/``assign_sub`` that reach a model already compiled on a backend."""
    pytest.importorskip({"numpy": "numpy", "torch": "torch", "jax": "jax"}[backend])
    keras.utils.set_random_seed(0)
    dense, bn = Dense(2, input_dim=3), layers.BatchNormalization()
    model = Sequential([dense, bn])
    model.compile(optimizer="sgd", loss="mse", backend=backend, dtype="float64")
    x = np.random.default_rng(0).random((4, 3))
    model.fit(x, np.ones((4, 2)), epochs=1, verbose=0)  # the weights now live in the program
    np.testing.assert_array_equal(dense.kernel.numpy(), model.get_weights()[0])
    assert dense.kernel.shape == (3, 2) and dense.bias.dtype == "float64" and bn.moving_mean.trainable is False
    dense.kernel.assign(np.eye(3, 2))
    dense.bias.assign_add(np.full(2, 0.5))
    dense.bias.assign_sub(np.full(2, 0.25))
    bn.moving_mean.assign(np.zeros(2))
    bn.moving_variance.assign(np.ones(2))
    bn.gamma.assign(np.ones(2))
    bn.beta.assign(np.zeros(2))
    np.testing.assert_allclose(model.predict(x, verbose=0), (x[:, :2] + 0.25) / np.sqrt(1 + 1e-3), rtol=1e-6)
    np.testing.assert_array_equal(model.layers[0].weights[0], np.eye(3, 2))
    with pytest.raises(ValueError, match=r"dense.*/kernel has shape \(3, 2\)"):
        dense.kernel.assign(np.zeros((2, 2)))
    with pytest.raises(AttributeError, match="'Dense' object has no attribute 'gamma'"):
        dense.gamma
    with pytest.raises(AttributeError, match="not built yet"):
        Dense(2).kernel


def test_initializers_are_seeded_and_keras_shaped():
    keras.utils.set_random_seed(42)
    a = Sequential([layers.LSTM(4, input_shape=(5, 3))]).get_weights()
    keras.utils.set_random_seed(42)
    b = Sequential([layers.LSTM(4, input_shape=(5, 3))]).get_weights()
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    kernel, recurrent, bias = a
    assert kernel.shape == (3, 16) and recurrent.shape == (4, 16) and bias.shape == (16,)
    np.testing.assert_allclose(recurrent @ recurrent.T, np.eye(4), atol=1e-6)  # orthogonal rows
    np.testing.assert_array_equal(bias, np.r_[np.zeros(4), np.ones(4), np.zeros(8)])  # unit_forget_bias
    limit = np.sqrt(6 / (3 + 16))
    assert np.abs(kernel).max() <= limit


def test_config_round_trip_sequential_and_functional():
    model = Sequential([layers.Conv2D(4, 3, padding="same", input_shape=(8, 8, 1)), layers.MaxPooling2D(),
                        layers.Flatten(), layers.Dropout(0.5), Dense(2, kernel_regularizer=keras.regularizers.l2(0.01))])
    clone = Sequential.from_config(model.get_config())
    assert clone.output_shape == model.output_shape
    assert [type(l) for l in clone.layers] == [type(l) for l in model.layers]
    assert clone.layers[-1].kernel_regularizer.l2 == 0.01
    inp = keras.Input(shape=(6,))
    fmodel = keras.Model(inp, Dense(2)(Dense(4)(inp)))
    fclone = keras.Model.from_config(fmodel.get_config())
    assert fclone.output_shape == (None, 2)


def test_summary(capsys):
    model = Sequential([Dense(4, input_dim=3, name="hidden"), Dense(1, name="out")], name="tiny")
    model.summary()
    text = capsys.readouterr().out
    assert 'Model: "tiny"' in text and "hidden (Dense)" in text and "(None, 4)" in text
    assert "Total params: 21" in text


def test_spec_is_json_round_trippable():
    from polykeras.spec import ModelSpec

    model = Sequential([layers.Embedding(50, 8, input_shape=(10,)), layers.LSTM(4), Dense(1, activation="sigmoid")])
    spec = model._spec()
    assert spec.inputs[0].dtype == "int32"
    again = ModelSpec.from_json(spec.to_json())
    assert again.to_dict() == spec.to_dict()
    assert [l.kind for l in spec.layers] == ["Embedding", "LSTM", "Dense"]
    assert spec.layers[1].weights[1].name == "recurrent_kernel"


@pytest.mark.parametrize("make,match", [
    (lambda: Dense(0), "positive"),
    (lambda: Dense(3, activation="relux"), "unknown activation 'relux'"),
    (lambda: layers.Dropout(1.5), r"\[0, 1\)"),
    (lambda: layers.Conv2D(2, 3, padding="full"), "padding"),
    (lambda: Dense(3, kernel_initializer="glorot"), "unknown initializer"),
    (lambda: Dense(3, unitz=3), "unexpected keyword"),
    (lambda: keras.layers.layer_class("Dense2"), "unknown layer kind 'Dense2'"),
])
def test_bad_layer_arguments_fail_clearly(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_incompatible_layer_stack_names_layer():
    with pytest.raises(ValueError, match="conv2d.*rank 4"):
        Sequential([Dense(3, input_dim=4), layers.Conv2D(2, 3, name="conv2d")])


def test_an_overridden_step_method_is_refused_not_ignored():
    """Keras's "customizing what happens in fit()" overrides train_step/test_step/predict_step (or compute_loss):
    polykeras runs the core's loop and would never call them, so each entry that would use one refuses it by
    name, while the entries that do not use it still run."""

    class CustomTrain(keras.Model):
        def train_step(self, data):
            raise AssertionError("never called")

    class CustomLoss(keras.Sequential):
        def compute_loss(self, *args, **kwargs):
            raise AssertionError("never called")

    class CustomPredict(keras.Model):
        def predict_step(self, data):
            raise AssertionError("never called")

    x, y = np.random.default_rng(0).random((8, 3)), np.arange(8) % 2
    inputs = keras.Input((3,))
    outputs = layers.Dense(2, activation="softmax")(inputs)
    train = CustomTrain(inputs, outputs)
    loss = CustomLoss([keras.Input((3,)), layers.Dense(2, activation="softmax")])
    predict = CustomPredict(inputs, outputs)
    for model in (train, loss, predict):
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(NotImplementedError, match=r"CustomTrain overrides train_step\(\), which fit\(\) would not call"):
        train.fit(x, y, verbose=0)
    with pytest.raises(NotImplementedError, match=r"train_step\(\), which train_on_batch\(\)"):
        train.train_on_batch(x, y)
    assert train.predict(x, verbose=0).shape == (8, 2) and np.isfinite(train.evaluate(x, y, verbose=0))
    for call in (lambda: loss.fit(x, y, verbose=0), lambda: loss.evaluate(x, y, verbose=0)):
        with pytest.raises(NotImplementedError, match=r"CustomLoss overrides compute_loss\(\).*remove the"):
            call()
    with pytest.raises(NotImplementedError, match=r"predict_step\(\), which predict\(\)"):
        predict.predict(x, verbose=0)
    predict.fit(x, y, verbose=0)
