"""``ops.cond``, ``ops.while_loop`` and ``ops.fori_loop``: eager on arrays as Keras's NumPy
backend, traced into sub-graphs on symbolic tensors, the reference's hand-written VJPs checked
by finite differences, and a custom layer using them trained on numpy, torch and jax in float64."""

from __future__ import annotations

import numpy as np
import pytest

import polykeras as keras
from polykeras import layers, ops
from polykeras.layers.operation import constant
from polykeras.ops.registry import REGISTRY
from _fd import FD_TOLERANCE, numerical_gradient

# float64: a few Adam steps through a cond and a 3-step loop at unit roundoff 1.1e-16; a wrong
# branch, step count or gradient shows at 1e-6 or above
FLOAT64_PARITY = 1e-12
rng = np.random.default_rng(0)


def test_eager_calls_are_python_control_flow_as_in_keras():
    assert ops.cond(np.array(True), lambda: 1, lambda: 2) == 1
    assert ops.cond(np.array(0.0) > 1, lambda: 1, lambda: 2) == 2
    i, x = ops.while_loop(lambda i, x: i < 3, lambda i, x: (i + 1, x * 2), [0, np.ones(2)])
    assert int(i) == 3 and np.array_equal(x, [8.0, 8.0])
    assert int(ops.while_loop(lambda i: i < 100, lambda i: i + 1, 0, maximum_iterations=5)) == 5
    np.testing.assert_array_equal(ops.fori_loop(1, 4, lambda i, v: v + i, np.zeros(2)), [6.0, 6.0])
    a, b = ops.fori_loop(0, 2, lambda i, v: (v[0] + 1, v[1] * 3), (np.zeros(()), np.ones(())))
    assert (float(a), float(b)) == (2.0, 9.0)


def _traced(fn, *shapes):
    """``fn`` on symbolic inputs of ``shapes`` (after the batch axis) as a model."""
    inputs = [keras.Input(s) for s in shapes]
    return keras.Model(inputs, fn(*inputs))


def _node(model, op):
    return next(layer for layer in model._spec().layers if layer.kind == "Operation"
                and layer.config["op"] == op)


def _fd_check(op_name, config, arrays):
    """The registry's VJP of a control-flow node against central differences, for every float operand."""
    from polykeras.layers.operation import op_params

    op, params = REGISTRY[op_name], op_params(config["params"], "float64")
    y = np.asarray(op.forward(*arrays, **params))
    weights = rng.normal(size=y.shape)
    grads = op.vjp(weights, y, tuple(arrays), **params)
    checked = 0
    for x, g in zip(arrays, grads):
        if isinstance(x, np.ndarray) and x.dtype == np.float64:
            expected = numerical_gradient(lambda: float(np.sum(weights * op.forward(*arrays, **params))), x)
            np.testing.assert_allclose(g, expected, rtol=FD_TOLERANCE, atol=FD_TOLERANCE)
            checked += 1
    return checked


@pytest.mark.parametrize("pred", [True, False])
def test_cond_vjp_is_the_taken_branch_and_matches_finite_differences(pred):
    model = _traced(lambda x, y: ops.cond(constant(pred), lambda: ops.tanh(x) * y, lambda: x - ops.exp(y)),
                    (3,), (3,))
    node = _node(model, "cond")
    x, y = rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    arrays = [np.asarray(pred)] + [x, y]
    assert _fd_check("cond", node.config, arrays) == 2
    expected = np.tanh(x) * y if pred else x - np.exp(y)
    model.compile("sgd", "mse", backend="numpy", dtype="float64")
    np.testing.assert_allclose(model.predict([x, y], verbose=0), expected, rtol=1e-14)


def test_fori_loop_vjp_runs_back_through_the_iterations():
    w = rng.normal(size=(3, 3)) * 0.5

    def fn(x, c):
        return ops.fori_loop(0, 4, lambda i, h: h + 0.1 * ops.tanh(h * c + ops.cast(i, "float32")), x)

    model = _traced(fn, (3,), (3,))
    node = _node(model, "fori_loop")
    x, c = rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    assert _fd_check("fori_loop", node.config, [x, c]) == 2
    h = x
    for i in range(4):
        h = h + 0.1 * np.tanh(h * c + i)
    model.compile("sgd", "mse", backend="numpy", dtype="float64")
    np.testing.assert_allclose(model.predict([x, c], verbose=0), h, rtol=1e-14)
    del w


def _while_model(maximum_iterations):
    def fn(x, c):
        _, h = ops.while_loop(lambda i, h: i < 5, lambda i, h: (i + 1, ops.sin(h) + c), (0, x),
                              maximum_iterations=maximum_iterations)
        return h
    return _traced(fn, (2,), (2,))


def test_while_loop_with_a_bound_differentiates_and_without_one_refuses():
    x, c = rng.normal(size=(2, 2)), rng.normal(size=(2, 2))
    bounded = _node(_while_model(3), "while_loop")  # the bound stops it before cond does
    assert _fd_check("while_loop", bounded.config, [np.asarray(0), x, c]) == 2
    h = x
    for _ in range(3):
        h = np.sin(h) + c
    assert np.allclose(REGISTRY["while_loop"].forward(np.asarray(0), x, c, **bounded.config["params"]), h)
    assert _fd_check("while_loop", _node(_while_model(50), "while_loop").config, [np.asarray(0), x, c]) == 2
    free = _node(_while_model(None), "while_loop")
    with pytest.raises(ValueError, match="without maximum_iterations cannot be differentiated"):
        _fd_check("while_loop", free.config, [np.asarray(0), x, c])


def test_traced_errors_say_what_differs():
    with pytest.raises(ValueError, match=r"tensor 0 of true_fn is \(None, 3\) .*false_fn \(None, 4\)"):
        _traced(lambda x, y: ops.cond(constant(True), lambda: x, lambda: y), (3,), (4,))
    with pytest.raises(ValueError, match="same structure"):
        _traced(lambda x: ops.cond(constant(True), lambda: (x, x), lambda: x), (3,))
    with pytest.raises(ValueError, match="pred must be a scalar"):
        _traced(lambda x: ops.cond(x > 0, lambda: x, lambda: -x), (3,))
    with pytest.raises(ValueError, match=r"body_fun's result is \(None, 3\) float64, of init_val \(None, 3\) float32"):
        _traced(lambda x: ops.fori_loop(0, 2, lambda i, h: ops.cast(h, "float64"), x), (3,))
    with pytest.raises(TypeError, match="polykeras.ops only"):
        _traced(lambda x: ops.fori_loop(0, 2, lambda i, h: layers.Dense(3)(h), x), (3,))
    with pytest.raises(TypeError, match=r"ops.cond\(pred, true_fn, false_fn\)"):
        _traced(lambda x: x if x[:, 0] > 0 else -x, (3,))


class GatedResidual(layers.Layer):
    """A custom layer with value-dependent control flow: a branch chosen by the sign of a weight
    (``training``-independent) and ``steps`` residual updates in a ``fori_loop``."""

    def __init__(self, steps=3, **kwargs):
        super().__init__(**kwargs)
        self.steps = steps

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], input_shape[-1]), initializer="glorot_uniform", name="w")
        self.gate = self.add_weight(shape=(), initializer="zeros", name="gate")

    def call(self, x):
        h = ops.cond(self.gate >= 0.0, lambda: ops.tanh(ops.matmul(x, self.w)) * (1.0 + self.gate),
                     lambda: ops.matmul(x, self.w) - self.gate)
        return ops.fori_loop(0, self.steps, lambda i, h: h + 0.5 * ops.tanh(ops.matmul(h, self.w)), h)

    def get_config(self):
        return {**super().get_config(), "steps": self.steps}


def _train(backend, weights=None):
    keras.utils.set_random_seed(4)
    inp = keras.Input((5,))
    model = keras.Model(inp, layers.Dense(3, activation="softmax")(GatedResidual()(layers.Dense(5)(inp))))
    if weights is not None:
        model.set_weights(weights)
    start = model.get_weights()
    data = np.random.default_rng(1)
    x, y = data.normal(size=(24, 5)), data.integers(0, 3, 24)
    model.compile("adam", "sparse_categorical_crossentropy", backend=backend, dtype="float64")
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0, shuffle=False)
    return start, history.history["loss"], model.get_weights()


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_a_custom_layer_with_cond_and_fori_loop_trains_like_the_reference_in_float64(backend):
    start, ref_loss, ref_weights = _train("numpy")
    gate = next(k for k, w in enumerate(start) if w.shape == ())
    assert ref_weights[gate] != start[gate], "the gate weight must train (the cond's VJP reaches it)"
    _, loss, weights = _train(backend, start)
    np.testing.assert_allclose(loss, ref_loss, rtol=FLOAT64_PARITY)
    for a, b in zip(weights, ref_weights):
        np.testing.assert_allclose(a, b, rtol=FLOAT64_PARITY, atol=FLOAT64_PARITY)


def _while_model_trained(backend, maximum_iterations, weights=None):
    """A ``while_loop`` over ``(counter, h)`` whose body reads a Dense layer's output (a capture)."""
    keras.utils.set_random_seed(6)
    inp = keras.Input((4,))
    c = layers.Dense(4)(inp)
    _, h = ops.while_loop(lambda i, h: i < 3, lambda i, h: (i + 1, ops.tanh(h * c) + 0.5 * h),
                          (0, layers.Dense(4)(inp)), maximum_iterations=maximum_iterations)
    model = keras.Model(inp, layers.Dense(3, activation="softmax")(h))
    if weights is not None:
        model.set_weights(weights)
    start = model.get_weights()
    data = np.random.default_rng(2)
    x, y = data.normal(size=(16, 4)), data.integers(0, 3, 16)
    model.compile("adam", "sparse_categorical_crossentropy", backend=backend, dtype="float64")
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0, shuffle=False)
    return start, history.history["loss"], model.get_weights()


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_a_bounded_while_loop_trains_like_the_reference_in_float64(backend):
    start, ref_loss, ref_weights = _while_model_trained("numpy", 8)
    _, loss, weights = _while_model_trained(backend, 8, start)
    np.testing.assert_allclose(loss, ref_loss, rtol=FLOAT64_PARITY)
    for a, b in zip(weights, ref_weights):
        np.testing.assert_allclose(a, b, rtol=FLOAT64_PARITY, atol=FLOAT64_PARITY)


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_training_through_an_unbounded_while_loop_is_refused(backend):
    match = "Reverse-mode differentiation does not work" if backend == "jax" else "without maximum_iterations"
    with pytest.raises(ValueError, match=match):
        _while_model_trained(backend, None)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_an_unbounded_while_loop_predicts_like_the_reference(backend):
    inp = keras.Input((3,))
    _, h = ops.while_loop(lambda i, h: i < 4, lambda i, h: (i + 1, ops.sin(h) + 0.5 * h), (0, inp))
    model = keras.Model(inp, h)
    x = np.random.default_rng(3).normal(size=(5, 3))
    model.compile("sgd", "mse", backend="numpy", dtype="float64")
    expected = model.predict(x, verbose=0)
    ref = x
    for _ in range(4):
        ref = np.sin(ref) + 0.5 * ref
    np.testing.assert_allclose(expected, ref, rtol=1e-14)
    model.compile("sgd", "mse", backend=backend, dtype="float64")
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-14)


def test_control_flow_nodes_survive_the_config_round_trip():
    inp = keras.Input((3,))
    h = ops.fori_loop(0, 2, lambda i, h: h * 0.5 + ops.cast(i, "float32"), inp)
    model = keras.Model(inp, ops.cond(constant(False), lambda: h, lambda: -h))
    config = model.get_config()
    rebuilt = keras.Model.from_config(config)
    assert rebuilt.get_config() == config
    x = np.random.default_rng(1).normal(size=(4, 3))
    np.testing.assert_array_equal(rebuilt.predict(x, verbose=0), model.predict(x, verbose=0))
    np.testing.assert_allclose(model.predict(x, verbose=0), -(x * 0.25 + 1.0), rtol=1e-6)  # h = x, x/2 + 0, x/4 + 1


def _all_three(backend, weights=None):
    """cond (on a variable's sign, in a custom layer), a bounded while_loop and a fori_loop, polynomials only
    (Keras's own sin/tanh on JAX differ from NumPy's by ~3e-8 in float64)."""
    keras.utils.set_random_seed(7)
    inp = keras.Input((4,))
    c = layers.Dense(4)(inp)
    _, h = ops.while_loop(lambda i, h: i < 2, lambda i, h: (i + 1, h * c * 0.5 + c), (0, inp), maximum_iterations=5)
    h = ops.fori_loop(1, 3, lambda i, h: h - 0.1 * ops.square(h) * ops.cast(i, "float32"), h)
    model = keras.Model(inp, layers.Dense(3, activation="softmax")(Signed()(h)))
    if weights is not None:
        model.set_weights(weights)
    start = model.get_weights()
    data = np.random.default_rng(5)
    x, y = data.normal(size=(16, 4)), data.integers(0, 3, 16)
    model.compile("sgd", "sparse_categorical_crossentropy", backend=backend, dtype="float64")
    predicted = model.predict(x, verbose=0)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    return start, predicted, model.get_weights()


class Signed(layers.Layer):
    def build(self, input_shape):
        self.s = self.add_weight(shape=(), initializer="ones", name="s")

    def call(self, x):
        return ops.cond(self.s > 0.0, lambda: x * self.s, lambda: x - self.s)


def test_keras_jax_runs_the_three_as_keras_ops():
    start, ref_predicted, ref_weights = _all_three("numpy")
    _, predicted, weights = _all_three("keras-jax", start)
    np.testing.assert_allclose(predicted, ref_predicted, rtol=1e-12)
    for a, b in zip(weights, ref_weights):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_torch_keeps_an_integer_loop_counter_integer_as_the_reference():
    """``i + 1`` on an int32 counter: the constant 1 takes the counter's dtype on torch (as NumPy's weak
    scalar does in the reference), not the compute dtype, which made the counter float64 after one step."""
    torch = pytest.importorskip("torch")
    from polykeras.layers.operation import op_params
    from polykeras.ops import subgraph
    from polykeras_torch.layers.control_flow import run_graph

    inp = keras.Input((3,))
    _, h = ops.while_loop(lambda i, h: i < 3, lambda i, h: (i + 1, h * 2.0), (0, inp))
    body = op_params(_node(keras.Model(inp, h), "while_loop").config["params"], "float64")["body"]
    ref = subgraph.evaluate(body, [np.int32(0), np.ones((2, 3))])[0]
    out = run_graph(body, [torch.tensor(0, dtype=torch.int32), torch.ones(2, 3, dtype=torch.float64)])
    assert [str(o.dtype).removeprefix("torch.") for o in out] == [np.asarray(r).dtype.name for r in ref]
    assert int(out[0]) == 1


def test_plus_between_ranks_in_a_loop_body_is_refused_not_reinterpreted():
    """Outside a loop ``a + b`` on ranks 3 and 2 is the Add layer (``b`` expanded at axis 1); the body's op
    ``add`` would broadcast it NumPy-style instead -- other numbers for a batch of 3, an error for others --
    so the trace refuses it and says how to make the ranks agree."""
    a, b = keras.Input((3, 3)), keras.Input((3,))
    with pytest.raises(ValueError, match=r"add \(\+\) between tensors of ranks 3 and 2.*ops.expand_dims"):
        ops.fori_loop(0, 1, lambda i, h: h + b, a)
    x3, x2 = rng.normal(size=(3, 3, 3)), rng.normal(size=(3, 3))
    outside = keras.Model([a, b], a + b)
    inside = keras.Model([a, b], ops.fori_loop(0, 1, lambda i, h: h + ops.expand_dims(b, 1), a))
    for model in (outside, inside):
        model.compile("sgd", "mse", backend="numpy", dtype="float64")
        np.testing.assert_allclose(model.predict([x3, x2], verbose=0), x3 + x2[:, None], rtol=1e-15)


def test_torch_runs_a_loop_counter_in_its_traced_integer_dtype(monkeypatch):
    """In a model the counter's start is a constant operand, which torch's Operation node makes in the
    compute dtype: the loop casts it back to the traced integer dtype, so the body sees what it was traced on."""
    pytest.importorskip("torch")
    import polykeras_torch.layers.control_flow as torch_control_flow

    seen, run = [], torch_control_flow.run_graph

    def spy(graph, inputs):
        out = run(graph, inputs)
        if len(out) == 2:  # the body: (counter, h)
            seen.append((str(inputs[0].dtype), str(out[0].dtype)))
        return out

    monkeypatch.setattr(torch_control_flow, "run_graph", spy)
    inp = keras.Input((3,))
    _, h = ops.while_loop(lambda i, h: i < 2, lambda i, h: (i + 1, h * 2.0), (0, inp))
    model = keras.Model(inp, h)
    traced = _node(model, "while_loop").config["params"]["body"]["output_specs"][0]["dtype"]
    model.compile("sgd", "mse", backend="torch", dtype="float64")
    np.testing.assert_array_equal(model.predict(np.ones((2, 3)), verbose=0), np.full((2, 3), 4.0))
    assert seen == [(f"torch.{traced}", f"torch.{traced}")] * 2
