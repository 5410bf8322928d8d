"""Keras's fine-tuning pattern (keras.io/guides/transfer_learning): ``trainable`` set after build,
a frozen BatchNormalization in inference mode, the two-phase program on every backend.

Keras 3 semantics (checked against Keras 3.15 in ``test_fine_tuning_keras.py``):

* ``layer.trainable = False`` after build freezes the weights the layer created trainable; a model's
  flag sets its layers'; ``trainable_weights`` is ``[]`` for a frozen layer or model;
* a ``BatchNormalization`` that is not trainable runs in inference mode in training too;
* ``model(x, training=False)`` recorded in a graph does *not* keep the layers in inference mode in
  ``fit``: Keras 3's functional model passes its own training flag to every layer it runs
  (``keras/src/models/functional.py``, ``operation_fn``), so fit's ``training=True`` wins.
"""

from __future__ import annotations

import numpy as np
import pytest

import polykeras as keras
from polykeras import layers
from polykeras.backends import backend_infos
from polykeras.spec import ModelSpec
from test_numpy_model_gradients import check_model_gradients

BACKENDS = [b for b in ("torch", "jax") if b in backend_infos()]


def _paths(weights) -> list[str]:
    return [w.path for w in weights]


def guide_model(seed: int = 0, dropout: float = 0.25):
    """The guide's program: a base (Dense, BatchNormalization, Dropout) called with training=False, a head."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((5,))
    x = layers.Dense(4, activation="tanh", name="base_dense")(inp)
    x = layers.BatchNormalization(momentum=0.5, name="base_bn")(x)
    base = keras.Model(inp, layers.Dropout(dropout, name="base_dropout")(x), name="base")
    inputs = keras.Input((5,))
    outputs = layers.Dense(2, name="head")(base(inputs, training=False))
    return base, keras.Model(inputs, outputs, name="guide")


def _data(n: int = 24):
    rng = np.random.default_rng(1)
    return rng.normal(1.0, 2.0, (n, 5)), rng.normal(size=(n, 2))


def test_freezing_after_build_lists_weights_as_keras():
    base, model = guide_model()
    names = _paths(model.weights)
    base.trainable = False
    assert _paths(model.trainable_weights) == ["head/kernel", "head/bias"]
    assert _paths(model.non_trainable_weights) == names[:6]
    assert _paths(model.weights) == names  # the order does not follow the flags
    assert base.trainable_weights == [] and _paths(base.non_trainable_weights) == names[:6]
    base.trainable = True  # the moving statistics were created non-trainable: they stay so
    assert _paths(model.trainable_weights) == ["base_dense/kernel", "base_dense/bias", "base_bn/gamma",
                                               "base_bn/beta", "head/kernel", "head/bias"]
    bn = base.get_layer("base_bn")
    bn.trainable = False
    assert bn.trainable_weights == [] and len(bn.non_trainable_weights) == 4
    assert _paths(model.trainable_weights) == ["base_dense/kernel", "base_dense/bias", "head/kernel", "head/bias"]


def test_frozen_batchnorm_is_an_inference_node_of_the_spec():
    base, model = guide_model()
    assert [n.training for n in model._spec().layers] == [None, None, None, None]
    first = model._spec()
    base.get_layer("base_bn").trainable = False
    spec = model._spec()
    assert spec is not first  # a new spec: the next fit compiles a new program
    assert [(n.name, n.training) for n in spec.layers if n.training is not None] == [("base_bn", False)]
    assert "inference_nodes" in spec.features
    assert ModelSpec.from_json(spec.to_json()) == spec
    base.get_layer("base_bn").trainable = True
    assert model._spec() == first
    data = spec.to_dict()
    data["layers"][1]["training"] = True
    with pytest.raises(ValueError, match="training=True"):
        ModelSpec.from_dict(data)


def test_frozen_weights_and_moving_statistics_stay_in_fit():
    base, model = guide_model()
    x, y = _data()
    model.compile(optimizer="adam", loss="mse", dtype="float64")
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    before = base.get_weights()
    head = model.get_layer("head").get_weights()
    base.trainable = False  # no recompile: the next fit sees it, the head's Adam moments carry over
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, base.get_weights()))
    assert not np.allclose(head[0], model.get_layer("head").get_weights()[0])
    base.trainable = True
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse", dtype="float64")
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    after = base.get_weights()
    assert all(not np.array_equal(a, b) for a, b in zip(before, after))  # moving statistics included


def test_unfrozen_batchnorm_runs_in_training_mode_despite_a_training_false_call():
    """Keras 3: fit's training=True overrides a recorded ``base(x, training=False)`` (measured with Keras
    3.15: the moving mean moves); only ``trainable=False`` puts BatchNormalization in inference mode."""
    base, model = guide_model(dropout=0.0)
    x, y = _data()
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, y, batch_size=24, epochs=1, verbose=0)
    assert np.all(base.get_layer("base_bn").get_weights()[2] != 0.0)


def test_frozen_batchnorm_gradients_against_finite_differences():
    """The reference's backward through BatchNormalization in inference mode inside a training step."""
    keras.utils.set_random_seed(3)
    model = keras.Sequential([layers.Dense(4, activation="tanh", input_dim=3),
                              layers.BatchNormalization(momentum=0.5, epsilon=0.1), layers.Dense(2)])
    model.fit  # built
    bn = model.layers[1]
    bn.set_weights([np.array([1.5, 0.5, 2.0, 1.0]), np.array([0.1, -0.2, 0.3, 0.0]),
                    np.array([0.2, -0.1, 0.0, 0.3]), np.array([0.5, 2.0, 1.0, 0.7])])
    bn.trainable = False
    rng = np.random.default_rng(0)
    grads = check_model_gradients(model, rng.normal(size=(6, 3)), rng.normal(size=(6, 2)), "mse")
    assert [g is None for g in grads.weights] == [False, False] + [True] * 4 + [False, False]


def _two_phases(backend: str):
    base, model = guide_model()
    x, y = _data()
    base.trainable = False
    model.compile(optimizer="adam", loss="mse", backend=backend, dtype="float64", parity=True)
    first = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0).history["loss"]
    frozen = base.get_weights()
    base.trainable = True
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse", backend=backend, dtype="float64", parity=True)
    second = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0).history["loss"]
    return np.array(first + second), frozen, model.get_weights()


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_phase_program_matches_the_reference(backend):
    """Phase one (frozen base, its BatchNormalization in inference mode, its Dropout active: Keras 3), then
    phase two (unfrozen, a new Adam): float64 losses and weights as the NumPy reference's."""
    ref_losses, ref_frozen, ref_weights = _two_phases("numpy")
    losses, frozen, weights = _two_phases(backend)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-12)
    for a, b in zip(frozen + weights, ref_frozen + ref_weights):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)
    base, _ = guide_model()
    assert all(np.array_equal(a, b) for a, b in zip(ref_frozen, base.get_weights()))  # phase one froze them


def test_custom_layer_variables_follow_the_flag_in_creation_order():
    class Scale(layers.Layer):
        def build(self, input_shape):
            self.counter = self.add_weight(shape=(), initializer="zeros", trainable=False, name="counter")
            self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="scale")

        def call(self, x):
            return x * self.scale

    inp = keras.Input((3,))
    layer = Scale()
    model = keras.Model(inp, layers.Dense(2)(layer(inp)))
    order = _paths(layer.weights)
    assert [w.trainable for w in layer.weights] == [True, False]
    layer.trainable = False
    assert _paths(layer.weights) == order and layer.trainable_weights == []
    assert len(model.trainable_weights) == 2
    layer.trainable = True
    assert [w.trainable for w in layer.weights] == [True, False]


def test_wrappers_pass_the_flag_to_the_wrapped_layer():
    inp = keras.Input((4, 3))
    td = layers.TimeDistributed(layers.Dense(3))
    bi = layers.Bidirectional(layers.LSTM(2))
    model = keras.Model(inp, bi(td(inp)))
    td.trainable = False
    bi.trainable = False
    assert model.trainable_weights == [] and len(model.weights) == 2 + 6
    assert td.layer.trainable is False and bi.forward_layer.trainable is False
    bi.trainable = True
    assert len(model.trainable_weights) == 6 and td.layer.trainable_weights == []


def test_a_backend_without_inference_nodes_refuses_a_frozen_batchnorm():
    """The example backend (and any that does not declare ``"inference_nodes"``) says so before compiling."""
    from types import SimpleNamespace

    base, model = guide_model()
    stub = SimpleNamespace(name="example", graph_features=frozenset({"masking"}), layer_kinds=frozenset())
    model._check_supported(stub)
    base.trainable = False
    with pytest.raises(NotImplementedError, match="backend 'example' does not run models with inference nodes"):
        model._check_supported(stub)
