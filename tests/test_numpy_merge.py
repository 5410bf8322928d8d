"""The NumPy reference's merge kernels (``polykeras_numpy.layers.merge``):
forward values against direct NumPy expressions, every input's gradient
against central finite differences in float64, on hand-picked and
hypothesis-drawn shapes (broadcasting across ranks and size-1 axes)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _fd import FD_STEP, FD_TOLERANCE
from polykeras.spec import LayerSpec
from polykeras_numpy.layers import KERNELS, ForwardContext


def kernel(kind: str, config: dict, shapes: list[tuple]):
    spec = LayerSpec(name=kind.lower(), kind=kind, config=dict(config), inbound=tuple(f"in{i}" for i in range(len(shapes))),
                     input_shapes=tuple((None,) + s for s in shapes), output_shape=(None,))
    return KERNELS[kind](spec, np.float64)


def numeric_grads(k, xs: list[np.ndarray], dy: np.ndarray) -> list[np.ndarray]:
    """Central differences of ``sum(forward(xs) * dy)`` with respect to each input."""
    def f():
        return float(np.sum(k.forward([], xs, ForwardContext(False))[0] * dy))

    out = []
    for x in xs:
        g = np.zeros_like(x)
        for i in np.ndindex(x.shape):
            old = x[i]
            x[i] = old + FD_STEP
            up = f()
            x[i] = old - FD_STEP
            down = f()
            x[i] = old
            g[i] = (up - down) / (2 * FD_STEP)
        out.append(g)
    return out


def check(kind: str, config: dict, shapes: list[tuple], batch: int = 3, seed: int = 0, ties: bool = False):
    rng = np.random.default_rng(seed)
    xs = [rng.normal(size=(batch,) + s) for s in shapes]
    if ties:  # equal values in two inputs: Maximum/Minimum split the gradient
        xs[1] = xs[0].copy()
    k = kernel(kind, config, shapes)
    y, cache = k.forward([], [x.copy() for x in xs], ForwardContext(False))
    dy = rng.normal(size=y.shape)
    dxs, dws = k.backward([], cache, dy)
    assert dws == [] and len(dxs) == len(xs)
    for dx, x in zip(dxs, xs):
        assert dx.shape == x.shape
    if not ties:  # finite differences cannot see a tie's split
        for i, (dx, fd) in enumerate(zip(dxs, numeric_grads(k, xs, dy))):
            err = np.max(np.abs(dx - fd)) / max(1.0, np.max(np.abs(fd)))
            assert err <= FD_TOLERANCE, f"{kind} input {i}: gradient off by {err:.1e}"
    return xs, y, dxs, dy


def expand1(x, rank):
    """Keras's rule: insert size-1 axes at axis 1 up to ``rank``."""
    return x.reshape(x.shape[:1] + (1,) * (rank - x.ndim) + x.shape[1:])


@pytest.mark.parametrize("kind, reduce", [
    ("Add", lambda xs: sum(xs)),
    ("Subtract", lambda xs: xs[0] - xs[1]),
    ("Multiply", lambda xs: np.prod(np.broadcast_arrays(*xs), axis=0)),
    ("Average", lambda xs: sum(xs) / len(xs)),
    ("Maximum", lambda xs: np.max(np.broadcast_arrays(*xs), axis=0)),
    ("Minimum", lambda xs: np.min(np.broadcast_arrays(*xs), axis=0)),
])
@pytest.mark.parametrize("shapes", [[(4,), (4,)], [(2, 4), (4,)], [(3, 1), (1, 5), (3, 5)], [(2, 3, 4), (3, 1)]],
                         ids=["same", "rank-2-vs-1", "three-size-1", "rank-3-vs-2"])
def test_elementwise_merges(kind, reduce, shapes):
    if kind == "Subtract" and len(shapes) != 2:
        shapes = shapes[:2]
    xs, y, _, _ = check(kind, {}, shapes)
    rank = max(x.ndim for x in xs)
    np.testing.assert_allclose(y, reduce([expand1(x, rank) for x in xs]), rtol=1e-14)


@pytest.mark.parametrize("kind", ["Maximum", "Minimum"])
def test_ties_split_the_gradient_equally(kind):
    """As jnp.maximum and torch.maximum do (TensorFlow gives all of it to the first input)."""
    xs, _, dxs, dy = check(kind, {}, [(4,), (4,)], ties=True)
    np.testing.assert_allclose(dxs[0], dy / 2)
    np.testing.assert_allclose(dxs[1], dy / 2)


@pytest.mark.parametrize("config, shapes", [
    ({"axis": -1}, [(3,), (2,), (4,)]),
    ({"axis": 1}, [(2, 3), (4, 3)]),
    ({"axis": -2}, [(2, 3, 2), (2, 1, 2)]),
])
def test_concatenate(config, shapes):
    xs, y, _, _ = check("Concatenate", config, shapes)
    np.testing.assert_array_equal(y, np.concatenate(xs, axis=config["axis"]))


@pytest.mark.parametrize("config, shapes, expected", [
    ({"axes": 1}, [(4,), (4,)], lambda a, b: np.sum(a * b, axis=1, keepdims=True)),
    ({"axes": [2, 2]}, [(3, 4), (5, 4)], lambda a, b: np.einsum("bik,bjk->bij", a, b)),
    ({"axes": [1, 2]}, [(3,), (5, 3)], lambda a, b: np.einsum("bk,bjk->bj", a, b)),
    ({"axes": -1}, [(2, 3), (3,)], lambda a, b: np.einsum("bik,bk->bi", a, b)),
    ({"axes": 1, "normalize": True}, [(4,), (4,)],
     lambda a, b: np.sum(a / np.linalg.norm(a, axis=1, keepdims=True) * b / np.linalg.norm(b, axis=1, keepdims=True),
                         axis=1, keepdims=True)),
    ({"axes": [1, 1], "normalize": True}, [(3, 2), (3, 4)],
     lambda a, b: np.einsum("bki,bkj->bij", a / np.linalg.norm(a, axis=1, keepdims=True),
                            b / np.linalg.norm(b, axis=1, keepdims=True))),
])
def test_dot(config, shapes, expected):
    xs, y, _, _ = check("Dot", config, shapes)
    np.testing.assert_allclose(y, expected(*xs), rtol=1e-12)


def test_dot_normalize_clips_tiny_norms_as_keras():
    """Below a norm of 1e-7 Keras's normalize multiplies by 1/epsilon instead of dividing by the norm."""
    k = kernel("Dot", {"axes": 1, "normalize": True}, [(2,), (2,)])
    a, b = np.array([[1e-9, 0.0]]), np.array([[1.0, 0.0]])
    y, cache = k.forward([], [a, b], ForwardContext(False))
    np.testing.assert_allclose(y, [[1e-9 * 1e7]])
    (da, db), _ = k.backward([], cache, np.ones_like(y))
    np.testing.assert_allclose(da, [[1e7, 0.0]])  # a constant factor there: d/da (a * 1e7) . b_hat


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_broadcasting_gradients_on_drawn_shapes(data):
    """Any shapes that broadcast under Keras's rule (lower ranks expanded at axis 1, sizes equal or 1)."""
    rank = data.draw(st.integers(1, 3), label="rank")
    full = data.draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank), label="full")
    n = data.draw(st.integers(2, 3), label="inputs")
    shapes = []
    for _ in range(n):
        r = data.draw(st.integers(1, rank))
        shapes.append(tuple(d if data.draw(st.booleans()) else 1 for d in full[rank - r:]))
    kind = data.draw(st.sampled_from(["Add", "Multiply", "Average", "Maximum", "Minimum"]), label="kind")
    check(kind, {}, shapes, seed=data.draw(st.integers(0, 100)))
