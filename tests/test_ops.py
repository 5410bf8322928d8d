"""polykeras.ops: every op's NumPy forward against NumPy/Keras semantics, and
every differentiable op's hand-written VJP against central finite differences
(float64; tolerance and its reason in tests/_fd.py), on hand-picked and
hypothesis-drawn arguments."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import polykeras as keras
from polykeras import ops
from polykeras.ops.registry import REGISTRY
from _fd import FD_TOLERANCE, numerical_gradient

rng = np.random.default_rng(0)


def _r(*shape, low=-2.0, high=2.0):
    return rng.uniform(low, high, shape)


def _distinct(*shape):
    """Values far apart from each other: max/min/sort-like ops have no near-ties."""
    return rng.permutation(np.arange(int(np.prod(shape)), dtype=np.float64)).reshape(shape) * 0.37 - 3.0


# (op, tensor arguments, static arguments); tensor arguments that are float arrays are differentiated
CASES = [
    ("add", [_r(3, 4), _r(4)], {}), ("add", [_r(2, 1, 3), _r(4, 1)], {}), ("add", [_r(3), 2.5], {}),
    ("subtract", [_r(3, 1), _r(1, 5)], {}), ("multiply", [_r(2, 3), _r(2, 1)], {}),
    ("divide", [_r(2, 3), _r(3, low=0.5, high=2.0)], {}), ("power", [_r(4, low=0.5, high=2.0), _r(4)], {}),
    ("maximum", [_r(3, 4), _r(4)], {}), ("minimum", [_r(3, 1), _r(3, 4)], {}),
    ("negative", [_r(3)], {}), ("abs", [_r(2, 3)], {}), ("exp", [_r(2, 3)], {}),
    ("log", [_r(4, low=0.2, high=3)], {}), ("log1p", [_r(4, low=-0.5, high=3)], {}),
    ("sqrt", [_r(4, low=0.2, high=3)], {}), ("square", [_r(4)], {}), ("reciprocal", [_r(4, low=0.5, high=2)], {}),
    ("sin", [_r(4)], {}), ("cos", [_r(4)], {}), ("tanh", [_r(2, 3)], {}), ("sigmoid", [_r(2, 3)], {}),
    ("relu", [_r(2, 5)], {}), ("softplus", [_r(4)], {}), ("silu", [_r(4)], {}), ("gelu", [_r(4)], {}),
    ("gelu", [_r(4)], {"approximate": False}), ("softmax", [_r(3, 4)], {}), ("softmax", [_r(3, 4)], {"axis": 0}),
    ("log_softmax", [_r(3, 4)], {"axis": -1}), ("clip", [_r(3, 4)], {"x_min": -1.0, "x_max": 0.5}),
    ("where", [_r(3, 4) > 0, _r(3, 4), _r(4)], {}),
    ("sum", [_r(2, 3, 4)], {"axis": 1}), ("sum", [_r(2, 3, 4)], {"axis": (0, 2), "keepdims": True}),
    ("sum", [_r(2, 3)], {}), ("mean", [_r(2, 3, 4)], {"axis": -1}), ("mean", [_r(2, 3)], {}),
    ("max", [_distinct(3, 4)], {"axis": 1}), ("min", [_distinct(3, 4)], {"axis": 0, "keepdims": True}),
    ("max", [_distinct(2, 3)], {}), ("prod", [_r(2, 3, 2)], {"axis": (0, 2)}), ("prod", [_r(3, 4)], {"axis": 1}),
    ("var", [_r(3, 4)], {"axis": 1}), ("std", [_r(3, 4)], {"axis": 0, "keepdims": True}),
    ("logsumexp", [_r(3, 4)], {"axis": -1}), ("logsumexp", [_r(3, 4)], {}),
    ("cumsum", [_r(3, 4)], {"axis": 1}), ("cumsum", [_r(2, 3)], {}),
    ("reshape", [_r(2, 6)], {"newshape": (3, -1)}), ("expand_dims", [_r(2, 3)], {"axis": 1}),
    ("squeeze", [_r(2, 1, 3)], {"axis": 1}), ("transpose", [_r(2, 3, 4)], {"axes": (2, 0, 1)}),
    ("transpose", [_r(2, 3)], {}), ("concatenate", [[_r(2, 3), _r(2, 1)]], {"axis": -1}),
    ("stack", [[_r(2, 3), _r(2, 3), _r(2, 3)]], {"axis": 1}), ("broadcast_to", [_r(3, 1)], {"shape": (2, 3, 4)}),
    ("flip", [_r(3, 4)], {"axis": 1}), ("tile", [_r(2, 3)], {"repeats": (2, 1, 3)}),
    ("repeat", [_r(2, 3)], {"repeats": 2, "axis": 1}), ("repeat", [_r(2, 3)], {"repeats": 2}),
    ("pad", [_r(2, 3)], {"pad_width": ((1, 0), (2, 1))}),
    ("take", [_r(5, 3), np.array([[0, 4], [4, 1]])], {"axis": 0}), ("take", [_r(2, 5), np.array([3, 3, 0])], {"axis": 1}),
    ("take", [_r(2, 3), np.array([5, 0, 5])], {}),
    ("take_along_axis", [_r(3, 4), np.array([[0, 0], [3, 1], [2, 2]])], {"axis": 1}),
    ("slice", [_r(4, 5)], {"start_indices": (1, 2), "shape": (2, 3)}),
    ("getitem", [_r(3, 4, 5)], {"key": [{"slice": [None, None, None]}, 1, {"slice": [None, None, -2]}]}),
    ("getitem", [_r(3, 4)], {"key": ["...", "newaxis", {"slice": [1, 3, None]}]}),
    ("convert_to_tensor", [_r(3)], {}), ("tril", [_r(4, 4)], {"k": -1}), ("triu", [_r(3, 4)], {}), ("cast", [_r(3)], {"dtype": "float64"}),
    ("matmul", [_r(3, 4), _r(4, 2)], {}), ("matmul", [_r(2, 1, 3, 4), _r(5, 4, 2)], {}),
    ("matmul", [_r(4), _r(2, 4, 3)], {}), ("matmul", [_r(3, 4), _r(4)], {}),
    ("tensordot", [_r(2, 3, 4), _r(3, 4, 5)], {"axes": 2}), ("tensordot", [_r(2, 3), _r(4, 2)], {"axes": ([0], [1])}),
    ("normalize", [_r(3, 4)], {"axis": -1}), ("sign", [_r(4)], {}),
    # the first row's norm (0.22) is below epsilon: divided by the floor, which does not depend on x
    ("normalize", [np.array([[0.1, -0.2], [0.6, 0.8]])], {"axis": 1, "epsilon": 0.5}),
    # (batch, length, heads, features); the mask hides every key of query 1 (uniform rows)
    ("dot_product_attention", [_r(2, 4, 2, 3), _r(2, 5, 2, 3), _r(2, 5, 2, 2),
                               (rng.random((2, 1, 4, 5)) > 0.4) & (np.arange(4) != 1)[:, None]], {}),
    ("dot_product_attention", [_r(2, 4, 2, 3), _r(2, 3, 2, 3), _r(2, 3, 2, 4), rng.random((2, 2, 4, 3)) > 0.3],
     {"is_causal": True, "scale": 0.7}),
    ("dot_product_attention", [_r(1, 3, 1, 2), _r(1, 3, 1, 2), _r(1, 3, 1, 2), np.ones((1, 1, 1, 1), bool)], {}),
]

EINSUM_CASES = [("ij,jk->ik", [(2, 3), (3, 4)]), ("bqhd,bkhd->bhqk", [(2, 3, 2, 4), (2, 5, 2, 4)]),
                ("...ij,...jk", [(2, 3, 4), (4, 5)]), ("ij->j", [(3, 4)]), ("ij,k->ik", [(2, 3), (4,)]),
                ("i,i->", [(5,), (5,)])]


def _check_vjp(name, tensors, params):
    op = REGISTRY[name]
    y = np.asarray(op.forward(*tensors, **params))
    weights = rng.normal(size=y.shape)  # the loss sum(weights * y) has cotangent `weights`
    grads = op.vjp(weights, y, tuple(tensors), **params)
    assert len(grads) == len(tensors), f"{name}: one cotangent per tensor argument"
    checked = 0
    for i, (x, g) in enumerate(zip(tensors, grads)):
        if not (isinstance(x, np.ndarray) and x.dtype == np.float64):
            continue
        def loss():
            return float(np.sum(weights * op.forward(*tensors, **params)))
        expected = numerical_gradient(loss, x)
        assert g is not None and g.shape == x.shape, f"{name}: cotangent {i} has shape {np.shape(g)}, not {x.shape}"
        np.testing.assert_allclose(g, expected, rtol=FD_TOLERANCE, atol=FD_TOLERANCE, err_msg=f"{name} argument {i}")
        checked += 1
    return checked


@pytest.mark.parametrize("name,tensors,params", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_vjp_matches_finite_differences(name, tensors, params):
    tensors = [list(t) if isinstance(t, list) else t for t in tensors]
    if REGISTRY[name].variadic:
        tensors = tensors[0]
    assert _check_vjp(name, tensors, params) >= 1


@pytest.mark.parametrize("subscripts,shapes", EINSUM_CASES)
def test_einsum_forward_and_vjp(subscripts, shapes):
    operands = [_r(*s) for s in shapes]
    np.testing.assert_allclose(ops.einsum(subscripts, *operands), np.einsum(subscripts, *operands), rtol=1e-14)
    assert _check_vjp("einsum", operands, {"subscripts": subscripts}) == len(operands)


def test_every_differentiable_op_is_checked():
    checked = {c[0] for c in CASES} | {"einsum", "stop_gradient"}
    checked |= {"cond", "while_loop", "fori_loop"}  # traced sub-graphs: tests/test_ops_control_flow.py
    missing = sorted(n for n, op in REGISTRY.items() if op.differentiable and n not in checked)
    assert not missing, f"differentiable ops without a finite-difference case: {missing}"


_broadcastable = st.integers(1, 3).flatmap(lambda rank: st.tuples(
    st.lists(st.integers(1, 3), min_size=rank, max_size=rank),
    st.lists(st.booleans(), min_size=rank, max_size=rank), st.integers(0, rank)))


@settings(max_examples=25, deadline=None, derandomize=True)
@given(_broadcastable, st.sampled_from(["add", "subtract", "multiply", "divide", "maximum", "minimum"]))
def test_binary_ops_broadcast_like_numpy(drawn, name):
    """Drawn shape pairs: the second operand drops leading axes and shrinks some axes to 1."""
    full, ones, drop = drawn
    a = _r(*full, low=0.5, high=2.0)
    b = _r(*[1 if o else n for n, o in zip(full, ones)][drop:], low=0.5, high=2.0)
    np.testing.assert_array_equal(getattr(ops, name)(a, b), getattr(np, name if name != "divide" else "true_divide")(a, b))
    _check_vjp(name, [a, b], {})


def test_stop_gradient_passes_values_and_blocks_gradients():
    x = _r(3)
    y = ops.stop_gradient(x)
    np.testing.assert_array_equal(y, x)
    assert not REGISTRY["stop_gradient"].vjp(np.ones(3), y, (x,))[0].any()


def test_forward_semantics_match_keras_definitions():
    x = np.array([[1.0, -2.0, 3.0], [0.5, 0.5, -1.0]])
    np.testing.assert_allclose(ops.var(x, axis=1), x.var(axis=1))  # population variance, as Keras
    assert ops.sum(x, axis=[0, 1]).shape == ()
    # axes as a list, as a model node's params hold a tuple
    assert ops.any(x > 2, axis=[0, 1]) and ops.all(x > -1.5, axis=[1]).tolist() == [False, True]
    assert ops.argmax(np.array([1.0, 3.0, 3.0])) == 1  # the first of tied maxima
    np.testing.assert_allclose(ops.normalize(np.array([3.0, 4.0])), [0.6, 0.8])
    assert ops.one_hot(np.array([0, 2]), 3).tolist() == [[1, 0, 0], [0, 0, 1]]
    assert ops.arange(3).dtype == np.int32 and ops.zeros((2,)).dtype == np.float32
    assert ops.add(np.ones(2, np.float32), 2.0).dtype == np.float32  # Python scalars are weakly typed
    assert ops.shape(np.zeros((2, 3))) == (2, 3)
    assert keras.ops is ops


def test_bad_calls_get_clear_errors():
    with pytest.raises(TypeError, match="unexpected argument 'axes'"):
        ops.sum(np.ones(3), axes=0)
    with pytest.raises(TypeError, match="missing its argument"):
        ops.add(np.ones(3))
    with pytest.raises(ValueError, match="unknown op 'nope'"):
        ops.get("nope")
    with pytest.raises(NotImplementedError, match="only mode='constant'"):
        ops.pad(np.ones(3), [(1, 1)], mode="reflect")


def test_dot_product_attention_is_keras_definition():
    """Masked logits are replaced (a query with no key left attends uniformly), causal is top-left
    aligned, scale defaults to 1/sqrt(features); the options not supported are named."""
    q, k, v = _r(2, 3, 2, 4), _r(2, 5, 2, 4), _r(2, 5, 2, 3)
    logits = np.einsum("btnh,bsnh->bnts", q, k) / 2.0
    causal = np.tril(np.ones((3, 5), bool))
    weights = np.where(causal, np.exp(logits), 0.0)
    want = np.einsum("bnts,bsnh->btnh", weights / weights.sum(-1, keepdims=True), v)
    np.testing.assert_allclose(ops.dot_product_attention(q, k, v, is_causal=True), want, rtol=1e-13)
    mask = np.ones((2, 1, 3, 5), bool)
    mask[1, 0, 2] = False
    out = ops.dot_product_attention(q, k, v, mask=mask)
    np.testing.assert_allclose(out[1, 2], v[1].mean(0), rtol=1e-13)  # no key: the mean of the values
    np.testing.assert_allclose(out[0], ops.dot_product_attention(q, k, v)[0], rtol=1e-14)
    with pytest.raises(NotImplementedError, match="bias is not supported"):
        ops.dot_product_attention(q, k, v, bias=np.zeros((1, 1, 3, 5)))
    with pytest.raises(ValueError, match="must be 4-D"):
        ops.dot_product_attention(q[:, :, 0], k[:, :, 0], v[:, :, 0])


def test_top_k_and_split_compute_eagerly_as_numpy():
    x = _r(3, 6)
    values, indices = ops.top_k(x, 3)
    np.testing.assert_array_equal(values, -np.sort(-x, axis=-1)[:, :3])
    np.testing.assert_array_equal(np.take_along_axis(x, indices, axis=-1), values)
    _, tied = ops.top_k(np.array([[1.0, 3.0, 3.0, 0.0, 3.0]]), 2)
    np.testing.assert_array_equal(tied, [[1, 2]])  # equal entries: the lower index first, as jax.lax.top_k
    with pytest.raises(ValueError, match="k=7 must be between 1 and the last axis' size, 6"):
        ops.top_k(x, 7)
    for part, expected in zip(ops.split(x, [1, 4], axis=1), np.split(x, [1, 4], axis=1)):
        np.testing.assert_array_equal(part, expected)
