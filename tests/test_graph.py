"""Models as graphs: the functional API (several inputs, merge layers,
operators, shared layers, nested models), the spec it produces, its config
round trip, its errors, and the reference's gradients through it."""

from __future__ import annotations

import json

import numpy as np
import pytest

import polykeras as keras
from polykeras import layers
from polykeras.spec import ModelSpec
from test_numpy_model_gradients import check_model_gradients


def two_tower(shared: bool = True):
    """Two inputs through one shared Dense (or two), concatenated, a residual block, softmax."""
    keras.backend.clear_session()  # automatic names from 0
    keras.utils.set_random_seed(0)
    a, b = keras.Input((4,), name="left"), keras.Input((4,), name="right")
    tower = layers.Dense(3, activation="tanh", name="tower")
    other = tower if shared else layers.Dense(3, activation="tanh", name="tower_b")
    h = layers.Concatenate(name="join")([tower(a), other(b)])
    h = h + layers.Dense(6, activation="relu", name="block")(h)
    return keras.Model([a, b], layers.Dense(2, activation="softmax", name="head")(h), name="two_tower")


def data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=(n, 4)), rng.normal(size=(n, 4))
    return x1, x2, (x1.sum(1) > x2.sum(1)).astype(int)


def test_graph_spec_has_one_node_per_call_and_weights_once():
    model = two_tower()
    spec = model._spec()
    assert [l.name for l in spec.layers] == ["tower", "tower@1", "join", "block", "add", "head"]
    assert spec.layer("tower@1").weights_of == "tower" and spec.layer("tower@1").weights == ()
    assert spec.layer("join").inbound == ("tower", "tower@1")
    assert spec.layer("add").inbound == ("join", "block")
    assert spec.features == {"multiple_inputs", "shared_layers"}
    assert [w.shape for w in model.get_weights()] == [(4, 3), (3,), (6, 6), (6,), (6, 2), (2,)]
    assert [l.name for l in model.layers] == ["left", "right", "tower", "join", "block", "add", "head"]
    assert ModelSpec.from_json(spec.to_json()) == spec


def test_spec_of_the_first_format_still_loads():
    spec = keras.Sequential([layers.Dense(2, input_dim=3)])._spec().to_dict()
    spec["format"] = "polykeras.model/1"
    for layer in spec["layers"]:
        del layer["weights_of"]
    assert ModelSpec.from_dict(spec).layers[0].weights_of is None


@pytest.mark.parametrize("fault, message", [
    (lambda d: d["layers"].reverse(), "not an input or an earlier node"),
    (lambda d: d["layers"][0].update(inbound=["head"]), "not an input or an earlier node"),
    (lambda d: d["layers"][1].update(weights_of="join"), "not an earlier Dense node owning weights"),
    (lambda d: d.update(outputs=["nowhere"]), "name no input or node"),
])
def test_broken_specs_are_refused_naming_the_node(fault, message):
    d = json.loads(two_tower()._spec().to_json())
    fault(d)
    with pytest.raises(ValueError, match=message):
        ModelSpec.from_dict(d)


def test_reference_gradients_of_a_graph_with_shared_weights_and_fan_out():
    x1, x2, y = data()
    grads = check_model_gradients(two_tower(), [x1, x2], y, "sparse_categorical_crossentropy")
    assert isinstance(grads.inputs, tuple) and [g.shape for g in grads.inputs] == [(16, 4), (16, 4)]


def test_input_gradients_of_a_two_input_graph_match_finite_differences():
    model = two_tower()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", dtype="float64")
    x1, x2, y = data(4)
    from polykeras.trainer import Trainer

    x, y = Trainer(model).prepare([x1, x2], y)
    program = model._get_program(training=True, y_ndim=1)
    grads = program.value_and_grad(x, y).inputs
    for k in range(2):
        for idx in [(0, 0), (3, 2)]:
            shifted = [list(map(np.copy, x)) for _ in range(2)]
            shifted[0][k][idx] += 1e-6
            shifted[1][k][idx] -= 1e-6
            up, down = (program.value_and_grad(tuple(s), y).loss for s in shifted)
            assert grads[k][idx] == pytest.approx((up - down) / 2e-6, rel=1e-5, abs=1e-9)


def test_sharing_sums_the_gradient_of_each_call():
    """The shared tower's gradient is the sum of what two separate towers with its weights get."""
    x1, x2, y = data()
    runs = []
    reference = two_tower(True)
    for shared in (True, False):
        model = two_tower(shared)
        for layer in ("tower", "block", "head"):  # the same weights in both
            model.get_layer(layer).set_weights(reference.get_layer(layer).get_weights())
        if not shared:
            model.get_layer("tower_b").set_weights(reference.get_layer("tower").get_weights())
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", dtype="float64")
        from polykeras.trainer import Trainer

        x, yy = Trainer(model).prepare([x1, x2], y)
        runs.append(model._get_program(training=True, y_ndim=1).value_and_grad(x, yy).weights)
    shared, separate = runs
    for j in (0, 1):  # tower kernel and bias: the sum over the two calls
        np.testing.assert_allclose(shared[j], separate[j] + separate[j + 2], rtol=1e-12)
    for a, b in zip(shared[2:], separate[4:]):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_fit_takes_lists_and_dicts_and_predict_several_outputs():
    x1, x2, y = data(32)
    model = two_tower()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    a = model.fit([x1, x2], y, epochs=2, batch_size=8, verbose=0, validation_split=0.25).history
    b = model.fit({"left": x1, "right": x2}, y, epochs=1, batch_size=8, verbose=0,
                  validation_data=({"right": x2, "left": x1}, y)).history
    assert set(a) == {"loss", "accuracy", "val_loss", "val_accuracy"} and "val_loss" in b
    assert model.predict([x1, x2], verbose=0).shape == (32, 2)
    inp = keras.Input((3,))
    double = keras.Model(inp, {"sum": layers.Dense(1)(inp), "feat": layers.Dense(2)(inp)})
    out = double.predict(np.ones((5, 3)), verbose=0)
    assert set(out) == {"sum", "feat"} and out["feat"].shape == (5, 2)
    double.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match=r"2 outputs \(sum, feat\): pass y as a list"):
        double.fit(np.ones((5, 3)), np.ones((5, 1)), verbose=0)


def test_steps_per_execution_on_two_inputs_is_the_same_run():
    x1, x2, y = data(32)
    weights = []
    for n in (1, 4):
        model = two_tower()
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", steps_per_execution=n)
        keras.utils.set_random_seed(5)
        model.fit([x1, x2], y, epochs=2, batch_size=4, verbose=0)
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


def test_nested_sequential_shares_its_weights_with_the_outer_model():
    keras.utils.set_random_seed(1)
    inner = keras.Sequential([layers.Dense(5, activation="relu"), layers.Dense(4)], name="inner")
    x = keras.Input((4,))
    outer = keras.Model(x, layers.Dense(1)(layers.Subtract()([inner(x), x])))
    assert [w.shape for w in outer.get_weights()] == [(4, 5), (5,), (5, 4), (4,), (4, 1), (1,)]
    outer.compile(optimizer="sgd", loss="mse")
    rng = np.random.default_rng(0)
    data_x = rng.normal(size=(16, 4))
    outer.fit(data_x, data_x[:, :1], epochs=2, verbose=0)
    for a, b in zip(inner.get_weights(), outer.get_weights()[:4]):  # the inner model sees the trained weights
        np.testing.assert_array_equal(a, b)
    k1, b1, k2, b2 = inner.get_weights()
    np.testing.assert_allclose(inner.predict(data_x, verbose=0), np.maximum(data_x @ k1 + b1, 0) @ k2 + b2, rtol=1e-5)
    inner.compile(optimizer="sgd", loss="mse")
    inner.fit(data_x, data_x, epochs=1, verbose=0)  # and the outer model sees what the inner one learned
    for a, b in zip(inner.get_weights(), outer.get_weights()[:4]):
        np.testing.assert_array_equal(a, b)


def test_sequential_inside_sequential():
    keras.utils.set_random_seed(2)
    inner = keras.Sequential([layers.Dense(3, activation="relu")])
    model = keras.Sequential([layers.Input((5,)), inner, layers.Dense(2)])
    assert model.output_shape == (None, 2) and len(model.get_weights()) == 4
    clone = keras.Sequential.from_config(model.get_config())
    assert [w.shape for w in clone.get_weights()] == [w.shape for w in model.get_weights()]


def test_config_round_trip_keeps_shared_layers_and_predictions():
    x1, x2, _ = data(4)
    model = two_tower()
    clone = keras.Model.from_config(json.loads(json.dumps(model.get_config())))
    clone.set_weights(model.get_weights())
    assert clone._spec().to_dict() == model._spec().to_dict() | {"name": clone.name}
    np.testing.assert_allclose(clone.predict([x1, x2], verbose=0), model.predict([x1, x2], verbose=0))


def test_save_and_load_a_graph(tmp_path):
    x1, x2, _ = data(4)
    model = two_tower()
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded.predict([x1, x2], verbose=0), model.predict([x1, x2], verbose=0))


def test_operators_record_merge_layers():
    a, b = keras.Input((3,)), keras.Input((3,))
    out = (a + b) * a - b
    kinds = [l.kind for l in keras.Model([a, b], out)._spec().layers]
    assert kinds == ["Add", "Multiply", "Subtract"]
    constant = a + 1.0  # with a constant: an op node (tests/test_ops_in_models.py)
    assert constant.layer.kind == "Operation" and constant.layer.get_config()["args"][1] == {"constant": 1.0}


# -- errors a user can act on ----------------------------------------------------------------
def test_mismatched_merge_shapes_name_the_layer_and_shapes():
    a, b = keras.Input((3,)), keras.Input((4,))
    with pytest.raises(ValueError, match=r"add_me.*\(None, 3\), \(None, 4\).*do not broadcast"):
        layers.Add(name="add_me")([a, b])
    with pytest.raises(ValueError, match=r"Concatenate layer 'cat'.*agree except along the axis"):
        layers.Concatenate(axis=1, name="cat")([keras.Input((2, 3)), keras.Input((2, 4))])
    with pytest.raises(ValueError, match="exactly 2"):
        layers.Subtract()([a, a, a])
    with pytest.raises(ValueError, match="must be called on a list"):
        layers.Add()(a)
    with pytest.raises(ValueError, match="takes one input tensor"):
        layers.Dense(2)([a, b])


def test_an_input_not_connected_to_the_outputs_is_named():
    a, b = keras.Input((3,), name="used"), keras.Input((3,), name="unused")
    with pytest.raises(ValueError, match="'unused' are not connected"):
        keras.Model([a, b], layers.Dense(1)(a))


def test_an_output_from_an_input_not_given_is_named():
    a, b = keras.Input((3,), name="a"), keras.Input((3,), name="forgotten")
    with pytest.raises(ValueError, match="input 'forgotten', which is not among the model's inputs"):
        keras.Model(a, a + b)


def test_a_dict_key_that_names_no_input_is_named():
    model = two_tower()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x1, x2, y = data(4)
    with pytest.raises(ValueError, match=r"key\(s\) \['lefty'\] that name no input.*\['left', 'right'\]"):
        model.fit({"lefty": x1, "right": x2}, y, verbose=0)
    with pytest.raises(ValueError, match="2 inputs"):
        model.fit(x1, y, verbose=0)
    with pytest.raises(ValueError, match="input 'right' expects shape"):
        model.predict([x1, x2[:, :3]], verbose=0)


def test_a_cycle_in_a_config_is_refused():
    config = two_tower().get_config()
    head = next(e for e in config["layers"] if e["config"]["name"] == "tower")
    head["inbound_nodes"] = [[["head", 0]], head["inbound_nodes"][1]]
    with pytest.raises(ValueError, match="unknown or form a cycle"):
        keras.Model.from_config(config)


def test_a_backend_without_shared_layers_says_so():
    pytest.importorskip("polykeras_example")
    model = two_tower()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", backend="example")
    x1, x2, y = data(4)
    with pytest.raises(NotImplementedError, match="'example' does not run models with multiple inputs, shared layers"):
        model.fit([x1, x2], y, verbose=0)


def test_a_shared_layer_takes_other_shapes_its_weights_fit():
    """As in Keras: one Embedding or LSTM over sequences of two lengths; a Dense whose kernel
    would change is refused, and the check leaves the random stream where it was."""
    short, long = keras.Input((4,), dtype="int32"), keras.Input((7,), dtype="int32")
    embed, lstm = layers.Embedding(20, 3), layers.LSTM(2)
    merged = layers.Concatenate()([lstm(embed(short)), lstm(embed(long))])
    assert merged.shape == (None, 4)
    dense = layers.Dense(2)
    dense(keras.Input((3,)))
    state = keras.random.generator().bit_generator.state
    with pytest.raises(ValueError, match=r"built for input shape \(None, 3\) and cannot be called on shape \(None, 5\)"):
        dense(keras.Input((5,)))
    assert keras.random.generator().bit_generator.state == state


def test_summary_shows_what_each_call_is_connected_to():
    lines = []
    two_tower().summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "Connected to" in text
    tower = next(i for i, line in enumerate(lines) if line.startswith("tower (Dense)"))
    assert lines[tower].endswith("left[0][0]") and lines[tower + 1].strip() == "right[0][0]"
    assert "join[0][0]" in text and "Total params: 71" in text


def test_layer_input_and_output_make_feature_extractors_as_in_keras(tmp_path):
    """``layer.output`` is its first call's tensor (Keras 3's rule for a shared layer too), so
    ``Model(model.input, layer.output)`` computes the model's inner activations, also after loading."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([layers.Input((4,)), layers.Dense(3, activation="relu", name="hidden"),
                              layers.Dense(2, name="head")])
    model.compile("sgd", "mse", backend="numpy", dtype="float64")
    x = np.random.default_rng(0).normal(size=(5, 4))
    kernel, bias = model.get_layer("hidden").get_weights()
    expected = np.maximum(x @ kernel + bias, 0)
    model.save(tmp_path / "m.keras")
    for source in (model, keras.models.load_model(tmp_path / "m.keras")):
        hidden = source.get_layer("hidden")
        assert hidden.input is source.input and source.output is source.get_layer("head").output
        every = keras.Model(source.input, [layer.output for layer in source.layers])
        every.compile("sgd", "mse", backend="numpy", dtype="float64")
        features, out = every.predict(x, verbose=0)
        np.testing.assert_allclose(features, expected, rtol=1e-14)
        np.testing.assert_allclose(out, model.predict(x, verbose=0), rtol=1e-14)

    a, b = keras.Input((3,)), keras.Input((3,))
    shared = layers.Dense(2)
    first, _ = shared(a), shared(b)
    assert shared.input is a and shared.output is first
    two = keras.Model([a, b], [first, layers.Add()([first, shared(b)])])
    assert two.input == [a, b] and len(two.output) == 2
    with pytest.raises(AttributeError, match="has never been called on symbolic tensors"):
        layers.Dense(2).output
