"""Custom layers (``Layer`` subclasses with ``build``/``add_weight``/``call`` in
``polykeras.ops``): traced into graph nodes, trained by every backend with
float64 parity to the reference, weights owned like Keras's, and the errors
tracing gives for what it cannot record."""

from __future__ import annotations

import numpy as np
import pytest

import polykeras as keras
from polykeras import layers, ops
from polykeras.trainer import Trainer

from _fd import FD_TOLERANCE, numerical_gradient

# float64: 8 Adam steps through ~20 nodes at unit roundoff 1.1e-16; a wrong gradient shows at 1e-6 or above
FLOAT64_PARITY = 1e-12


class Linear(layers.Layer):
    def __init__(self, units=4, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="random_normal", name="w")
        self.b = self.add_weight(shape=(self.units,), initializer="random_normal", name="b")

    def call(self, inputs):
        return ops.matmul(inputs, self.w) + self.b


class Block(layers.Layer):
    """A custom layer holding a custom layer and a built-in one, with a scalar weight and a frozen one."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.linear = Linear(6)
        self.dense = layers.Dense(6, activation="tanh")

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(), initializer="ones", name="scale")
        self.offset = self.add_weight(shape=(6,), initializer="random_normal", name="offset", trainable=False)

    def call(self, x, training=None):
        h = ops.relu(self.linear(x)) * self.scale + self.offset
        return self.dense(h) + h


def _model():
    keras.utils.set_random_seed(3)
    inp = keras.Input((10,))
    block = Block(name="block")
    shared = layers.Concatenate()([block(layers.Dense(5)(inp)), block(layers.Dense(5)(inp))])  # called twice
    return keras.Model(inp, layers.Dense(3, activation="softmax")(shared)), block


def _data(n=32):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 10)), rng.integers(0, 3, n)


def _train(model, backend, weights):
    model.set_weights(weights)
    model.compile("adam", "sparse_categorical_crossentropy", backend=backend, dtype="float64")
    history = model.fit(*_data(), epochs=2, batch_size=8, verbose=0, shuffle=False)
    return history.history["loss"], model.get_weights()


@pytest.fixture(scope="module")
def reference():
    model, _ = _model()
    start = model.get_weights()
    return start, _train(model, "numpy", start)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_custom_layers_train_like_the_reference_in_float64(backend, reference):
    start, (ref_loss, ref_weights) = reference
    model, _ = _model()
    loss, weights = _train(model, backend, start)
    np.testing.assert_allclose(loss, ref_loss, rtol=FLOAT64_PARITY)
    for a, b in zip(weights, ref_weights):
        np.testing.assert_allclose(a, b, rtol=FLOAT64_PARITY, atol=FLOAT64_PARITY)


def test_reference_gradients_of_variables_read_twice_match_finite_differences():
    model, _ = _model()
    x, y = _data(6)
    model.compile("sgd", "sparse_categorical_crossentropy", backend="numpy", dtype="float64", parity=True)
    xx, yy = Trainer(model).prepare(x, y)
    program = model._get_program(training=True, y_ndim=yy.ndim)
    grads = program.value_and_grad(xx, yy, 7, training=True).weights
    weights = [w.astype(np.float64) for w in program.get_weights()]
    names = [f"{layer.name}.{w.name}" for layer, w in model._spec().weight_specs]
    checked = 0
    for k, name in enumerate(names):
        if "/" not in name.split(".")[0] or grads[k] is None:  # the custom layers' variables
            continue

        def loss():
            program.set_weights(weights)
            return program.value_and_grad(xx, yy, 7, training=True).loss
        np.testing.assert_allclose(grads[k], numerical_gradient(loss, weights[k]), rtol=FD_TOLERANCE,
                                   atol=FD_TOLERANCE, err_msg=name)
        checked += 1
    assert checked == 3  # linear/w, linear/b, block/scale; block/offset is frozen


def test_a_custom_layer_owns_its_weights_like_keras():
    model, block = _model()
    # own variables (trainable, then frozen), then the nested layers' in assignment order
    assert [w.shape for w in block.get_weights()] == [(), (6,), (5, 6), (6,), (6, 6), (6,)]
    assert block.count_params() == 1 + 6 + 36 + 42
    assert [w.trainable for w in block.weights] == [True, False, True, True, True, True]
    assert block.scale.shape == () and block.linear.w.path == f"{block.linear.name}/w"
    new = [np.full(w.shape, 0.5) for w in block.get_weights()]
    block.set_weights(new)
    assert float(block.scale.numpy()) == 0.5 and np.all(block.linear.w.numpy() == 0.5)
    block.scale.assign(2.0)
    assert float(np.asarray(block.scale)) == 2.0
    assert len(model.get_weights()) == 2 * 2 + 6 + 2


def test_variables_work_eagerly_outside_a_trace():
    layer = Linear(3)
    layer.build((None, 2))
    x = np.ones((1, 2))
    np.testing.assert_allclose(ops.matmul(x, layer.w) + layer.b, x @ layer.w.numpy() + layer.b.numpy())


def test_value_dependent_control_flow_is_refused_with_the_reason():
    class Branchy(layers.Layer):
        def call(self, x):
            if ops.mean(x, axis=-1, keepdims=True):  # a tensor's value: unknown while tracing
                return x
            return -x

    with pytest.raises(TypeError, match="traces call\\(\\) once.*ops.where"):
        Branchy()(keras.Input((3,)))


def test_static_control_flow_and_the_training_flag_are_fine():
    class Static(layers.Layer):
        def __init__(self, double=False, **kwargs):
            super().__init__(**kwargs)
            self.double = double
            self.dropout = layers.Dropout(0.5)

        def call(self, x, training=None):
            x = self.dropout(x, training=training)
            return x * 2.0 if self.double and x.shape[-1] == 3 else x

    out = Static(double=True)(keras.Input((3,)))
    assert out.layer.kind == "Operation" and out.shape == (None, 3)


def test_bad_custom_layers_get_clear_errors():
    class ReturnsWeight(layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(3,), name="w")

        def call(self, x):
            return self.w

    with pytest.raises(TypeError, match="returned a variable"):
        ReturnsWeight()(keras.Input((3,)))

    class OldStyle(layers.Layer):
        def build(self, input_shape):
            self.add_weight("w", (3,))

        def call(self, x):
            return x

    with pytest.raises(TypeError, match="takes the shape first"):
        OldStyle()(keras.Input((3,)))


def test_models_with_custom_layers_save_and_load_without_the_class(tmp_path):
    """The traced graph is in the file: loading needs no custom_objects (the custom layer's name is
    kept in its variables' and nodes' names, not its class)."""
    model, _ = _model()
    x, _ = _data(8)
    model.save(tmp_path / "m.polykeras")
    loaded = keras.saving.load_model(tmp_path / "m.polykeras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    with pytest.raises(keras.saving.KerasFileError, match="class 'Block' is not registered.*polykeras"):
        model.save(tmp_path / "m.keras")  # a Keras file names the class (tests/test_keras_files_custom_layers.py)


class Classifier(keras.Model):
    """A subclassed model: layers in __init__, a call() mixing them with ops and a custom layer."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.block = Block()
        self.drop = layers.Dropout(0.25)
        self.head = layers.Dense(3, activation="softmax")

    def call(self, x, training=None):
        return self.head(self.drop(self.block(ops.tanh(x)), training=training))


def _subclassed(backend, weights=None):
    keras.utils.set_random_seed(5)
    model = Classifier()
    model.compile("adam", "sparse_categorical_crossentropy", backend=backend, dtype="float64", parity=True)
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(24, 5)), rng.integers(0, 3, 24)
    model.build((None, 5))
    if weights is not None:
        model.set_weights(weights)
    start = model.get_weights()
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0, shuffle=False)
    return start, history.history["loss"], model.get_weights()


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_subclassed_models_train_like_the_reference_in_float64(backend):
    start, ref_loss, ref_weights = _subclassed("numpy")
    _, loss, weights = _subclassed(backend, start)
    np.testing.assert_allclose(loss, ref_loss, rtol=FLOAT64_PARITY)
    for a, b in zip(weights, ref_weights):
        np.testing.assert_allclose(a, b, rtol=FLOAT64_PARITY, atol=FLOAT64_PARITY)


def test_subclassed_models_build_on_first_data_or_call_and_list_their_layers():
    model = Classifier()
    assert not model.built
    with pytest.raises(ValueError, match="not built yet.*build\\(input_shape\\)"):
        model.summary()
    model.predict(np.zeros((2, 5)), verbose=0)  # built from the data's shape
    assert model.built and model.output_shape == (None, 3)
    assert [type(layer).__name__ for layer in model.layers] == ["InputLayer", "Operation", "Block", "Dropout", "Dense"]
    inner = Classifier()
    inp = keras.Input((5,))
    assert keras.Model(inp, inner(inp)).output_shape == (None, 3)  # used as a layer: traced on the tensor
    with pytest.raises(TypeError, match="needs inputs and outputs"):
        keras.Model()


def test_keras_registration_and_custom_objects_are_accepted(tmp_path):
    @keras.saving.register_keras_serializable(package="Tests")
    class Scale(layers.Layer):
        def build(self, input_shape):
            self.s = self.add_weight(shape=(), initializer="ones", name="s")

        def call(self, x):
            return x * self.s

    assert keras.saving.get_registered_object("Tests>Scale") is Scale
    assert keras.saving.get_registered_name(Scale) == "Tests>Scale"
    inp = keras.Input((2,))
    model = keras.Model(inp, Scale()(inp))
    model.save(tmp_path / "m.polykeras")
    loaded = keras.models.load_model(tmp_path / "m.polykeras", custom_objects={"Scale": Scale})
    np.testing.assert_array_equal(loaded.predict(np.ones((1, 2)), verbose=0), [[1.0, 1.0]])


def test_summary_shows_a_custom_layer_as_one_row_connected_like_keras():
    model, _ = _model()
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "block (Block)" in text and "(Operation)" not in text and "(Variable)" not in text
    assert "(Concatenate)" in text and "block[0][0]" in text  # layer names are numbered per session


class TokenAndPositionEmbedding(layers.Layer):
    """keras.io's transformer example: an Embedding called on ops.arange inside call()."""

    def __init__(self, maxlen, vocab_size, embed_dim, **kwargs):
        super().__init__(**kwargs)
        self.token_emb = layers.Embedding(input_dim=vocab_size, output_dim=embed_dim)
        self.pos_emb = layers.Embedding(input_dim=maxlen, output_dim=embed_dim)

    def call(self, x):
        positions = self.pos_emb(ops.arange(start=0, stop=ops.shape(x)[-1], step=1))  # a constant node
        return self.token_emb(x) + positions  # broadcast over the batch: an op, not a merge layer


def _positions_model():
    keras.utils.set_random_seed(9)
    inp = keras.Input((12,), dtype="int32")
    h = layers.GlobalAveragePooling1D()(TokenAndPositionEmbedding(12, 50, 8)(inp))
    return keras.Model(inp, layers.Dense(2, activation="softmax")(h))


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_layers_called_on_constants_inside_call_train_like_the_reference(backend):
    rng = np.random.default_rng(2)
    x, y = rng.integers(0, 50, (32, 12)), rng.integers(0, 2, 32)
    results = []
    for name in ("numpy", backend):
        model = _positions_model()
        model.compile("adam", "sparse_categorical_crossentropy", backend=name, dtype="float64")
        before = model.get_weights()
        model.fit(x, y, epochs=2, batch_size=8, verbose=0, shuffle=False)
        results.append(model.get_weights())
    pos_table = [l for l in model._spec().layers if l.kind == "Embedding"][1]
    assert pos_table.input_shapes == ((12,),)  # the positions: no batch axis
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=FLOAT64_PARITY, atol=FLOAT64_PARITY)
    assert not np.allclose(results[0][1], before[1])  # the position table trains


class _MaskReader(layers.Layer):
    """Zeroes the masked steps of its input, with the mask Keras passes to a ``call(..., mask=None)``."""

    def __init__(self):
        super().__init__()
        self.supports_masking = True
        self.masks = []

    def call(self, inputs, mask=None):
        self.masks.append(mask)
        return inputs if mask is None else inputs * ops.expand_dims(ops.cast(mask, inputs.dtype), -1)


@pytest.mark.parametrize("mask_zero", [True, False])
def test_a_call_with_a_mask_argument_gets_the_mask_its_input_carries(mask_zero):
    keras.utils.set_random_seed(0)
    reader = _MaskReader()
    inputs = layers.Input((4,), dtype="int32")
    hidden = reader(layers.Embedding(10, 3, mask_zero=mask_zero)(inputs))
    model = keras.Model(inputs, hidden)
    assert (reader.masks[0] is not None) == mask_zero
    assert (hidden.mask is not None) == mask_zero  # supports_masking: the mask goes on to the next layer
    ids = np.array([[0, 0, 1, 2], [3, 4, 5, 6]])
    out = model.predict(ids, verbose=0)
    assert np.all(out[1] != 0)
    assert np.all(out[0, :2] == 0) == mask_zero and np.all(out[0, 2:] != 0)


class _TokenAndPositionEmbedding(layers.Layer):
    """keras.io's (text_classification_with_transformer), with a padding mask: a layer called on
    ``ops.arange`` (a constant node) and an ``Embedding(mask_zero=True)`` inside ``call()``."""

    def __init__(self, maxlen, vocab_size, embed_dim):
        super().__init__()
        self.token_emb = layers.Embedding(input_dim=vocab_size, output_dim=embed_dim, mask_zero=True)
        self.pos_emb = layers.Embedding(input_dim=maxlen, output_dim=embed_dim)

    def call(self, x):
        positions = self.pos_emb(ops.arange(start=0, stop=ops.shape(x)[-1], step=1))
        return self.token_emb(x) + positions

    def compute_mask(self, inputs, mask=None):
        return ops.not_equal(inputs, 0)


def test_a_model_with_constants_and_masks_inside_custom_layers_saves_and_loads(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = layers.Input((6,))
    hidden = _MaskReader()(_TokenAndPositionEmbedding(6, 20, 4)(inputs))
    model = keras.Model(inputs, layers.GlobalAveragePooling1D()(hidden))
    ids = np.array([[0, 0, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6]])
    expected = model.predict(ids, verbose=0)
    model.save(tmp_path / "m.polykeras")
    loaded = keras.models.load_model(tmp_path / "m.polykeras")
    np.testing.assert_array_equal(loaded.predict(ids, verbose=0), expected)
    tables = {w.shape: w for w in loaded.get_weights()}
    hidden = tables[(20, 4)][ids] + tables[(6, 4)][None]
    valid = (ids != 0)[..., None]
    np.testing.assert_allclose(expected, (hidden * valid).sum(1) / valid.sum(1), rtol=1e-6)  # the padding left out
