"""Reference losses and metrics: gradients against central finite differences
(float64), values against the Keras formulas written out per sample."""

import numpy as np
import pytest

from polykeras_numpy import losses, metrics

# Central differences with h = 1e-6 in float64: truncation O(h^2) ~ 1e-12 and
# rounding O(eps/h) ~ 1e-10 relative -- 1e-6 leaves a wide margin while still
# catching any real error in a hand-written gradient (those are O(1)).
FD_RTOL = 1e-6


def fd_grad(f, p, h=1e-6):
    g = np.zeros_like(p)
    for i in np.ndindex(p.shape):
        old = p[i]
        p[i] = old + h
        up = f(p)
        p[i] = old - h
        down = f(p)
        p[i] = old
        g[i] = (up - down) / (2 * h)
    return g


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


rng = np.random.default_rng(0)
PROBS = softmax(rng.normal(size=(5, 4)))
LABELS = np.array([0, 3, 1, 2, 3])
ONEHOT = np.eye(4)[LABELS]
SIGMOID_P = 1 / (1 + np.exp(-rng.normal(size=(5, 3))))
BINARY_Y = (rng.random((5, 3)) > 0.5).astype(float)

CASES = [
    ("categorical_crossentropy", ONEHOT, PROBS, {}),
    ("categorical_crossentropy", ONEHOT, rng.normal(size=(5, 4)), {"from_logits": True}),
    ("categorical_crossentropy", ONEHOT, PROBS, {"label_smoothing": 0.1}),
    ("categorical_crossentropy", ONEHOT, rng.normal(size=(5, 4)), {"from_logits": True, "label_smoothing": 0.2}),
    ("sparse_categorical_crossentropy", LABELS, PROBS, {}),
    ("sparse_categorical_crossentropy", LABELS, rng.normal(size=(5, 4)), {"from_logits": True}),
    ("binary_crossentropy", BINARY_Y, SIGMOID_P, {}),
    ("binary_crossentropy", BINARY_Y, rng.normal(size=(5, 3)), {"from_logits": True}),
    ("binary_crossentropy", BINARY_Y, SIGMOID_P, {"label_smoothing": 0.1}),
    ("mean_squared_error", rng.normal(size=(5, 3)), rng.normal(size=(5, 3)), {}),
    ("mean_absolute_error", rng.normal(size=(5, 3)), rng.normal(size=(5, 3)), {}),
    ("mean_squared_error", rng.normal(size=(2, 4, 3)), rng.normal(size=(2, 4, 3)), {}),
]


@pytest.mark.parametrize("kind,y,p,config", CASES, ids=lambda v: str(v) if isinstance(v, (str, dict)) else "")
def test_loss_gradient_matches_finite_differences(kind, y, p, config):
    fn = losses.get({"kind": kind, "config": config})
    _, grad = fn(y, p.copy())
    numeric = fd_grad(lambda q: fn(y, q)[0], p.copy())
    np.testing.assert_allclose(grad, numeric, rtol=FD_RTOL, atol=1e-9)


def test_categorical_crossentropy_value_is_keras_formula():
    loss, _ = losses.categorical_crossentropy(ONEHOT, PROBS)
    assert loss == pytest.approx(np.mean([-np.log(PROBS[i, LABELS[i]]) for i in range(5)]), rel=1e-12)


def test_crossentropy_clips_probabilities_like_keras():
    p = np.array([[1.0, 0.0]])
    loss, grad = losses.categorical_crossentropy(np.array([[0.0, 1.0]]), p)
    assert loss == pytest.approx(-np.log(1e-7), rel=1e-9)  # p clipped to eps, not log(0)
    assert np.all(np.isfinite(grad))
    loss, _ = losses.binary_crossentropy(np.array([[1.0]]), np.array([[0.0]]))
    assert loss == pytest.approx(-np.log(1e-7), rel=1e-9)


def test_sparse_equals_categorical_on_onehot():
    a, ga = losses.sparse_categorical_crossentropy(LABELS, PROBS)
    b, gb = losses.categorical_crossentropy(ONEHOT, PROBS)
    assert a == b
    np.testing.assert_array_equal(ga, gb)


def test_binary_from_logits_is_stable_for_large_logits():
    loss, grad = losses.binary_crossentropy(np.array([[1.0, 0.0]]), np.array([[800.0, -800.0]]), from_logits=True)
    assert loss == 0.0 and np.all(np.isfinite(grad))


def test_float32_in_float32_out():
    p32, y32 = PROBS.astype(np.float32), ONEHOT.astype(np.float32)
    loss, grad = losses.categorical_crossentropy(y32, p32)
    assert np.asarray(loss).dtype == np.float32 and grad.dtype == np.float32


def test_metrics_values():
    assert metrics.sparse_categorical_accuracy(LABELS, PROBS) == np.mean(PROBS.argmax(-1) == LABELS)
    assert metrics.categorical_accuracy(ONEHOT, PROBS) == np.mean(PROBS.argmax(-1) == LABELS)
    p = np.array([[0.2], [0.7], [0.5], [0.9]])
    y = np.array([[0.0], [1.0], [1.0], [0.0]])
    assert metrics.binary_accuracy(y, p) == 0.5  # 0.5 is not > 0.5, as in Keras
