"""Ties, which random test inputs never produce: where several elements share a
global maximum, every backend shares the gradient among them as the NumPy
reference does (the gradient of a max reduction in TensorFlow, torch and jax)."""

from __future__ import annotations

import numpy as np
import pytest

import polykeras as pk
from polykeras import backends, layers

BACKENDS = [pytest.param(name, marks=pytest.mark.skipif(not backends.find_backend(name).installed,
                                                        reason=f"{name} is not installed"))
            for name in ("torch", "jax", "keras-jax", "keras-torch", "keras-tensorflow")]
#: Keras's float64 mode keeps float32 pieces (see test_keras_backend.py): its shares agree to float32.
TOL = {"torch": 1e-12, "jax": 1e-12}


def _input_gradient(backend, kind, x):
    model = pk.Sequential([layers.Input(x.shape[1:]), getattr(layers, kind)()])
    model.compile("sgd", "mse", backend=backend, dtype="float64", parity=True)
    y = np.zeros((x.shape[0], x.shape[-1]))
    return model._get_program(training=True, y_ndim=2).value_and_grad(x, y).inputs


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind, x", [
    ("GlobalMaxPooling2D", np.array([[[[1.0, 2.0], [5.0, 2.0]], [[5.0, -1.0], [5.0, 2.0]]]])),
    ("GlobalMaxPooling1D", np.array([[[3.0, 1.0], [3.0, 1.0], [0.0, 1.0]]])),
])
def test_global_max_pooling_tie_is_shared_like_the_reference(backend, kind, x):
    ref, got = _input_gradient("numpy", kind, x), _input_gradient(backend, kind, x)
    winners = (x == x.max(axis=tuple(range(1, x.ndim - 1)), keepdims=True))
    assert np.all((ref != 0) == winners)  # every tied element gets a share
    np.testing.assert_allclose(got, ref, rtol=TOL.get(backend, 1e-6), atol=1e-12)
