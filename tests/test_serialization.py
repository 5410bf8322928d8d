"""Keras's serialization helpers: ``layers.serialize``/``deserialize``, ``saving.serialize_keras_object``/
``deserialize_keras_object`` (in Keras 3's form, read by Keras 3 and read from it), ``custom_objects`` in
``Sequential.from_config`` and ``model_from_json``, and ``models.clone_model``."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import polykeras as keras
from polykeras import layers, ops
from polykeras.saving import deserialize_keras_object, serialize_keras_object


class Scale(layers.Layer):
    """A custom layer with a weight and a config (not registered: found through custom_objects)."""

    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="random_normal")

    def call(self, x):
        return x * self.w * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


@keras.saving.register_keras_serializable(package="test_serialization")
class Shift(layers.Layer):
    def __init__(self, by=1.0, **kwargs):
        super().__init__(**kwargs)
        self.by = by

    def call(self, x):
        return ops.add(x, self.by)

    def get_config(self):
        return {**super().get_config(), "by": self.by}


def test_layers_serialize_and_deserialize_as_keras():
    layer = layers.Dense(3, activation="relu", name="d")
    entry = layers.serialize(layer)
    assert entry["module"] == "keras.layers" and entry["class_name"] == "Dense" and entry["registered_name"] is None
    json.dumps(entry)
    assert layers.deserialize(entry).get_config() == layer.get_config()
    relu = layers.deserialize(layers.serialize(layers.ReLU(max_value=6.0)))
    assert type(relu) is layers.ReLU and relu.max_value == 6.0
    model = keras.Sequential([keras.Input((4,)), layers.Dense(2)])
    clone = layers.deserialize(layers.serialize(model))
    assert type(clone) is keras.Sequential and clone.output_shape == (None, 2)


def test_custom_layers_resolve_through_custom_objects_scopes_and_the_registry():
    entry = layers.serialize(Scale(3.0, name="s"))
    assert entry["module"] == __name__ and entry["registered_name"] == "Scale"
    with pytest.raises(ValueError, match="unknown layer kind 'Scale'"):
        layers.deserialize(entry)
    assert layers.deserialize(entry, custom_objects={"Scale": Scale}).factor == 3.0
    with keras.saving.custom_object_scope({"Scale": Scale}):
        assert deserialize_keras_object(entry).factor == 3.0
    shift = layers.serialize(Shift(0.5))
    assert shift["registered_name"] == "test_serialization>Shift"
    assert type(layers.deserialize(shift)) is Shift and deserialize_keras_object(shift).by == 0.5


@pytest.mark.parametrize("obj, check", [
    (keras.optimizers.Adam(0.01), lambda o: type(o).__name__ == "Adam" and o.get_config()["learning_rate"] == 0.01),
    (keras.losses.Huber(0.5), lambda o: type(o).__name__ == "Huber" and o.get_config()["delta"] == 0.5),
    (keras.initializers.GlorotUniform(seed=3), lambda o: o.get_config() == {"seed": 3}),
    (keras.regularizers.L2(0.1), lambda o: type(o).__name__ == "L2" and abs(o.l2 - 0.1) < 1e-12),
    (keras.metrics.AUC(num_thresholds=50), lambda o: type(o).__name__ == "AUC"),
    (keras.activations.relu, lambda o: o is keras.activations.relu),
    (keras.activations.leaky_relu, lambda o: o is keras.activations.leaky_relu),
    (np.arange(4.0).reshape(2, 2), lambda o: o.dtype == np.float64 and o.tolist() == [[0.0, 1.0], [2.0, 3.0]]),
    ((1, "a", None), lambda o: o == (1, "a", None)),
    ("adam", lambda o: o == "adam"),
], ids=["optimizer", "loss", "initializer", "regularizer", "metric", "activation", "activation-function-only",
        "array", "tuple", "name"])
def test_objects_round_trip_through_json(obj, check):
    data = json.loads(json.dumps(serialize_keras_object(obj)))
    assert check(deserialize_keras_object(data))


def test_unknown_objects_are_refused_with_what_to_do():
    with pytest.raises(keras.saving.UnknownObjectError, match="custom_objects"):
        deserialize_keras_object({"module": "my_project", "class_name": "Mystery", "config": {}})
    with pytest.raises(keras.saving.UnknownObjectError, match="register"):
        deserialize_keras_object({"class_name": "function", "config": "my_activation"})
    with pytest.raises(TypeError, match="lambda"):
        serialize_keras_object(lambda x: x)


KERAS_SIDE = """
import inspect, json, os, sys
os.environ["KERAS_BACKEND"] = "jax"
import keras
ours = json.loads(open(sys.argv[1]).read())
read = [keras.saving.deserialize_keras_object(e) for e in ours]
print(json.dumps([[o.__name__ if inspect.isfunction(o) else type(o).__name__,
                   {**o.get_config(), **getattr(o, "_fn_kwargs", {})} if hasattr(o, "get_config") else None]
                  for o in read], default=str))
theirs = [keras.optimizers.Adam(0.01), keras.layers.Dense(3, activation="relu"), keras.losses.Huber(0.5),
          keras.layers.LeakyReLU(0.2), keras.activations.relu, keras.initializers.GlorotUniform(seed=3)]
print(json.dumps([keras.saving.serialize_keras_object(o) for o in theirs]))
"""


def test_keras_3_reads_what_polykeras_writes_and_the_other_way(tmp_path):
    ours = [keras.optimizers.Adam(0.01), layers.Dense(3, activation="relu"), keras.losses.Huber(0.5),
            layers.LeakyReLU(0.2), keras.activations.relu, keras.initializers.GlorotUniform(seed=3)]
    (tmp_path / "ours.json").write_text(json.dumps([serialize_keras_object(o) for o in ours]))
    run = subprocess.run([sys.executable, "-c", KERAS_SIDE, str(tmp_path / "ours.json")], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    read_by_keras, theirs = (json.loads(line) for line in run.stdout.strip().splitlines()[-2:])
    assert [name for name, _ in read_by_keras] == ["Adam", "Dense", "Huber", "LeakyReLU", "relu", "GlorotUniform"]
    assert read_by_keras[0][1]["learning_rate"] == pytest.approx(0.01) and read_by_keras[1][1]["units"] == 3
    assert read_by_keras[2][1]["delta"] == 0.5 and read_by_keras[3][1]["negative_slope"] == 0.2
    ours_from_keras = [deserialize_keras_object(e) for e in theirs]
    assert [type(o).__name__ for o in ours_from_keras[:4]] == ["Adam", "Dense", "Huber", "LeakyReLU"]
    assert ours_from_keras[0].get_config()["learning_rate"] == pytest.approx(0.01)
    assert ours_from_keras[1].get_config()["activation"] == "relu" and ours_from_keras[3].negative_slope == 0.2
    # (Keras's Huber leaves its delta out of get_config(), so none comes back from it)
    assert ours_from_keras[4] is keras.activations.relu and ours_from_keras[5].get_config() == {"seed": 3}


# -- configs with custom objects ---------------------------------------------------------------------------------
def test_sequential_from_config_and_model_from_json_take_custom_objects():
    model = keras.Sequential([keras.Input((3,)), Scale(2.0), layers.Dense(2)])
    with pytest.raises(ValueError, match="Scale"):
        keras.Sequential.from_config(model.get_config())
    clone = keras.Sequential.from_config(model.get_config(), custom_objects={"Scale": Scale})
    assert type(clone.layers[0]) is Scale and clone.layers[0].factor == 2.0
    rebuilt = keras.models.model_from_json(model.to_json(), custom_objects={"Scale": Scale})
    assert type(rebuilt.layers[0]) is Scale and rebuilt.output_shape == (None, 2)


# -- clone_model --------------------------------------------------------------------------------------------------
def _same_architecture_new_weights(model, clone, x):
    assert clone is not model and [type(l) for l in clone.layers] == [type(l) for l in model.layers]
    assert [w.shape for w in clone.get_weights()] == [w.shape for w in model.get_weights()]
    assert any(not np.array_equal(a, b) for a, b in zip(clone.get_weights(), model.get_weights()))  # re-initialized
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


def test_clone_model_sequential_with_a_custom_layer():
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((3,)), layers.Dense(4), Scale(2.0), layers.ReLU(), layers.Dense(2)])
    model.compile("adam", "mse")
    clone = keras.models.clone_model(model)
    assert clone.optimizer is None  # not compiled, as in Keras
    _same_architecture_new_weights(model, clone, np.random.default_rng(0).normal(size=(5, 3)))
    renamed = keras.models.clone_model(model, clone_function=lambda layer: type(layer).from_config(
        {**layer.get_config(), "name": "new_" + layer.name}))
    assert [l.name for l in renamed.layers] == ["new_" + l.name for l in model.layers]


def test_clone_model_functional_and_subclassed():
    keras.utils.set_random_seed(2)
    inp = keras.Input((3,))
    model = keras.Model(inp, layers.Dense(2)(layers.Concatenate()([layers.Dense(4)(inp), inp])))
    _same_architecture_new_weights(model, keras.models.clone_model(model), np.ones((2, 3)))

    class Net(keras.Model):
        def __init__(self, units=3, **kwargs):
            super().__init__(**kwargs)
            self.units, self.dense = units, layers.Dense(units)

        def call(self, x):
            return self.dense(x)

        def get_config(self):
            return {"units": self.units}

    net = Net(4)
    net(np.ones((1, 2), "float32"))
    clone = keras.models.clone_model(net)
    assert type(clone) is Net and clone.units == 4


def test_clone_model_refuses_what_it_cannot_reinitialize():
    inp = keras.Input((3,))
    model = keras.Model(inp, Scale()(inp))
    with pytest.raises(NotImplementedError, match="'scale"):
        keras.models.clone_model(model)
    with pytest.raises(NotImplementedError, match="input_tensors"):
        keras.models.clone_model(keras.Model(inp, layers.Dense(2)(inp)), input_tensors=[inp])


def test_functional_from_config_takes_custom_objects():
    """Keras's functional API guide calls ``keras.Model.from_config(config, custom_objects={...})`` on a model
    holding its own layer class. polykeras's config records such a layer's call as the ops and variables it
    traced to (docs/ops-and-custom-layers.md), so the config rebuilds that graph with or without the class; the
    argument is taken (it was a TypeError) and applies to the rebuild, as Keras's scope does."""

    class Scale(keras.layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones")

        def call(self, x):
            return x * self.w * 3.0

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(Scale()(inputs)))
    x = np.random.default_rng(0).random((4, 3))
    for custom_objects in (None, {"Scale": Scale}):
        clone = keras.Model.from_config(model.get_config(), custom_objects=custom_objects)
        clone.set_weights(model.get_weights())
        np.testing.assert_allclose(clone.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
