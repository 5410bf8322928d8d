"""Tests of the NumPy reference activations: known values, numerical
stability, dtype preservation and finite-difference checks of every backward."""

from __future__ import annotations

import math

import numpy as np
import pytest

from _fd import FD_TOLERANCE, numerical_gradient, relative_error
from polykeras_numpy import activations

ALL = activations.NAMES


def _inputs(name: str, shape=(3, 5), seed=0) -> np.ndarray:
    """Random float64 inputs kept away from each activation's kinks, where a
    central difference straddling the kink would not be the derivative."""
    x = np.random.default_rng(seed).normal(0.0, 2.0, shape)
    if name in ("relu", "elu", "selu"):
        x = np.where(np.abs(x) < 0.05, 0.5, x)
    if name == "hard_sigmoid":
        x = np.where(np.abs(np.abs(x) - 3.0) < 0.05, 1.0, x)
    return x


@pytest.mark.parametrize("name", ALL)
def test_backward_matches_finite_differences(name):
    x = _inputs(name)
    R = np.random.default_rng(1).normal(size=x.shape)
    y = activations.forward(name, x)
    dx = activations.backward(name, x, y, R)
    numeric = numerical_gradient(lambda: float(np.sum(activations.forward(name, x) * R)), x)
    assert relative_error(dx, numeric) < FD_TOLERANCE


@pytest.mark.parametrize("name", ALL)
def test_float32_stays_float32(name):
    x = _inputs(name).astype(np.float32)
    y = activations.forward(name, x)
    dx = activations.backward(name, x, y, np.ones_like(y))
    assert y.dtype == np.float32 and dx.dtype == np.float32
    assert y.shape == x.shape and dx.shape == x.shape


@pytest.mark.parametrize("name", [n for n in ALL if n != "exponential"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_inputs_are_finite(name, dtype):
    x = np.array([[-1e4, -100.0, 0.0, 100.0, 1e4]], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = activations.forward(name, x)
        dx = activations.backward(name, x, y, np.ones_like(y))
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))


def test_known_values():
    x = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    f = activations.forward
    np.testing.assert_allclose(f("relu", x), [0, 0, 0, 1, 2])
    np.testing.assert_allclose(f("linear", x), x)
    np.testing.assert_allclose(f("sigmoid", x), 1 / (1 + np.exp(-x)), rtol=1e-15)
    np.testing.assert_allclose(f("tanh", x), np.tanh(x))
    np.testing.assert_allclose(f("elu", x), np.where(x > 0, x, np.exp(x) - 1), rtol=1e-15)
    selu = 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * (np.exp(x) - 1))
    np.testing.assert_allclose(f("selu", x), selu, rtol=1e-15)
    gelu = [0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x]
    np.testing.assert_allclose(f("gelu", x), gelu, rtol=1e-15)
    np.testing.assert_allclose(f("gelu", np.array([1.0])), [0.8413447460685429], rtol=1e-15)
    np.testing.assert_allclose(f("softplus", x), np.log(1 + np.exp(x)), rtol=1e-14)
    np.testing.assert_allclose(f("swish", x), x / (1 + np.exp(-x)), rtol=1e-15)
    np.testing.assert_allclose(f("silu", x), f("swish", x))
    np.testing.assert_allclose(f("exponential", x), np.exp(x))
    np.testing.assert_allclose(f("hard_sigmoid", np.array([-4.0, -3.0, 0.0, 1.5, 3.0, 4.0])), [0, 0, 0.5, 0.75, 1, 1])


def test_softmax_is_last_axis_and_shift_invariant():
    x = np.random.default_rng(0).normal(size=(2, 3, 4))
    y = activations.forward("softmax", x)
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-15)
    np.testing.assert_allclose(y, np.exp(x) / np.exp(x).sum(-1, keepdims=True), rtol=1e-14)
    big = activations.forward("softmax", np.array([[1000.0, 1000.0, -1000.0]]))
    np.testing.assert_allclose(big, [[0.5, 0.5, 0.0]])


def test_stable_sigmoid_and_softplus_at_large_magnitudes():
    x = np.array([-1000.0, 1000.0], dtype=np.float32)
    with np.errstate(over="raise"):
        np.testing.assert_array_equal(activations.forward("sigmoid", x), [0.0, 1.0])
        np.testing.assert_allclose(activations.forward("softplus", x), [0.0, 1000.0])


def test_none_means_linear():
    x = np.arange(3.0)
    assert activations.forward(None, x) is x


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown activation 'relu7'.*softmax"):
        activations.forward("relu7", np.zeros(2))
    with pytest.raises(ValueError, match="supports"):
        activations.check("Relu")
