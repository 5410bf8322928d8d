"""Reference losses and metrics: gradients against central finite differences
(float64), values against the Keras formulas written out per sample."""

import numpy as np
import pytest

from polykeras.spec import MetricSpec
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
    *[(kind, y, p, config) for kind, y, p, config in [
        # errors 0.05..3 on both sides of delta (none within the FD step of the kink)
        ("huber", np.zeros((2, 4)), np.array([[0.3, -0.7, 1.6, -2.4], [0.05, 3.0, -0.2, -1.3]]), {}),
        ("huber", np.zeros((2, 4)), np.array([[0.3, -0.7, 1.6, -2.4], [0.05, 3.0, -0.2, -1.3]]), {"delta": 0.5}),
        ("log_cosh", rng.normal(size=(3, 4)), np.array([[0.1, -2.0, 40.0, -40.0]] * 3), {}),  # |e| = 40: no overflow
        # margins 1 - y*p of both signs; labels 0/1 become -1/1, labels -1/1 are kept
        ("hinge", BINARY_Y, np.array([[0.5, -1.5, 2.0]] * 5), {}),
        ("hinge", 2 * BINARY_Y - 1, np.array([[0.5, -1.5, 2.0]] * 5), {}),
        ("squared_hinge", BINARY_Y, np.array([[0.5, -1.5, 2.0]] * 5), {}),
        ("kl_divergence", softmax(rng.normal(size=(5, 4))), PROBS, {}),
        # y entries of 0 (clipped to eps) and p entries clipped on both sides: below eps and above 1
        ("kl_divergence", ONEHOT, np.array([[0.7, -0.3, 1.4, 0.2]] * 5), {}),
        ("poisson", rng.poisson(2.0, size=(5, 3)).astype(float), np.exp(rng.normal(size=(5, 3))), {}),
        ("mean_squared_logarithmic_error", np.abs(rng.normal(size=(3, 4))),
         np.array([[0.4, 2.5, -0.5, 1e-3]] * 3), {}),  # a negative p: max(p, eps) is flat there
        ("mean_absolute_percentage_error", rng.uniform(0.5, 2, size=(5, 3)) * np.sign(rng.normal(size=(5, 3))),
         rng.normal(size=(5, 3)), {}),
        ("cosine_similarity", rng.normal(size=(5, 3)), rng.normal(size=(5, 3)), {}),
        ("cosine_similarity", rng.normal(size=(2, 4, 3)), rng.normal(size=(2, 4, 3)), {}),
    ]],
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


def _metric(kind):
    return metrics.get(MetricSpec(kind, kind))


def test_metrics_values():
    assert _metric("sparse_categorical_accuracy")(LABELS, PROBS) == np.mean(PROBS.argmax(-1) == LABELS)
    assert _metric("categorical_accuracy")(ONEHOT, PROBS) == np.mean(PROBS.argmax(-1) == LABELS)
    p = np.array([[0.2], [0.7], [0.5], [0.9]])
    y = np.array([[0.0], [1.0], [1.0], [0.0]])
    assert _metric("binary_accuracy")(y, p) == 0.5  # 0.5 is not > 0.5, as in Keras


NEW_LOSS_CASES = [c for c in CASES if c[0] in ("huber", "log_cosh", "hinge", "squared_hinge", "kl_divergence",
                                                 "poisson", "mean_squared_logarithmic_error",
                                                 "mean_absolute_percentage_error", "cosine_similarity")]


@pytest.mark.parametrize("kind,y,p,config", NEW_LOSS_CASES, ids=lambda v: str(v) if isinstance(v, (str, dict)) else "")
def test_weighted_loss_gradient_matches_finite_differences(kind, y, p, config):
    fn = losses.get({"kind": kind, "config": config})
    w = np.linspace(0.5, 2.0, p.shape[0])
    loss, grad = fn(y, p.copy(), sample_weight=w)
    per = [fn(y[i:i + 1], p[i:i + 1].copy())[0] for i in range(p.shape[0])]  # each sample's own mean
    assert loss == pytest.approx(np.mean(w * np.array(per)), rel=1e-12)
    numeric = fd_grad(lambda q: fn(y, q, sample_weight=w)[0], p.copy())
    np.testing.assert_allclose(grad, numeric, rtol=FD_RTOL, atol=1e-9)


@pytest.mark.parametrize("kind,y,p,config", NEW_LOSS_CASES, ids=lambda v: str(v) if isinstance(v, (str, dict)) else "")
def test_new_losses_keep_float32(kind, y, p, config):
    loss, grad = losses.get({"kind": kind, "config": config})(y.astype(np.float32), p.astype(np.float32))
    assert np.asarray(loss).dtype == np.float32 and grad.dtype == np.float32


def test_huber_is_quadratic_inside_delta_and_linear_outside():
    err = np.array([[0.5, -0.5, 2.0, -3.0]])
    loss, grad = losses.huber(np.zeros_like(err), err, delta=1.0)
    assert loss == pytest.approx(np.mean([0.125, 0.125, 2.0 - 0.5, 3.0 - 0.5]), rel=1e-15)
    np.testing.assert_array_equal(grad, np.array([[0.5, -0.5, 1.0, -1.0]]) / 4)
    loss, _ = losses.huber(np.zeros((1, 1)), np.array([[1.0]]), delta=1.0)  # |e| == delta: the quadratic side
    assert loss == 0.5


def test_log_cosh_value_and_no_overflow():
    err = np.array([[0.3, -1.2, 800.0]])
    loss, grad = losses.log_cosh(np.zeros_like(err), err)
    expected = np.mean([np.log(np.cosh(0.3)), np.log(np.cosh(1.2)), 800.0 - np.log(2)])
    assert loss == pytest.approx(expected, rel=1e-14) and np.all(np.isfinite(grad))


def test_hinge_converts_binary_labels_only_when_all_are_binary():
    p = np.array([[0.3, -0.4]])
    assert losses.hinge(np.array([[1.0, 0.0]]), p)[0] == pytest.approx(np.mean([1 - 0.3, 1 - 0.4]), rel=1e-15)
    # a -1 label: nothing is converted, so the 0 label multiplies p by zero (margin 1)
    assert losses.hinge(np.array([[-1.0, 0.0]]), p)[0] == pytest.approx(np.mean([1 + 0.3, 1.0]), rel=1e-15)
    loss, _ = losses.squared_hinge(np.array([[1.0, 0.0]]), p)
    assert loss == pytest.approx(np.mean([0.7 ** 2, 0.6 ** 2]), rel=1e-15)


def test_kl_divergence_is_a_sum_over_classes_with_both_sides_clipped():
    y, p = np.array([[0.25, 0.75, 0.0]]), np.array([[0.5, 0.5, 0.0]])
    loss, grad = losses.kl_divergence(y, p)
    eps = 1e-7
    assert loss == pytest.approx(0.25 * np.log(0.5) + 0.75 * np.log(1.5) + eps * np.log(eps / eps), rel=1e-12)
    assert grad[0, 2] == 0  # p = 0 was clipped to eps


def test_poisson_and_percentage_errors_use_keras_epsilon():
    loss, _ = losses.poisson(np.array([[2.0, 0.0]]), np.array([[0.5, 3.0]]))
    assert loss == pytest.approx(np.mean([0.5 - 2 * np.log(0.5 + 1e-7), 3.0]), rel=1e-14)
    loss, _ = losses.mean_absolute_percentage_error(np.array([[0.0, 2.0]]), np.array([[1e-3, 1.0]]))
    assert loss == pytest.approx(100 * np.mean([1e-3 / 1e-7, 0.5]), rel=1e-14)  # |y| < eps: divided by eps
    loss, _ = losses.mean_squared_logarithmic_error(np.array([[1.0, -4.0]]), np.array([[-2.0, 3.0]]))
    assert loss == pytest.approx(np.mean([(np.log1p(1e-7) - np.log(2)) ** 2, (np.log(4) - np.log1p(1e-7)) ** 2]),
                                 rel=1e-12)


def test_cosine_similarity_value_and_the_epsilon_cap():
    y, p = np.array([[1.0, 0.0, 0.0], [1.0, 2.0, 2.0]]), np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    loss, _ = losses.cosine_similarity(y, p)
    assert loss == pytest.approx(np.mean([-1.0, -2 / 3]), rel=1e-15)
    # a zero vector scores 0 with a finite gradient; a vector of norm below eps is scaled by 1/eps, linearly
    loss, grad = losses.cosine_similarity(np.array([[1.0, 0.0]]), np.array([[0.0, 0.0]]))
    assert loss == 0 and np.all(np.isfinite(grad))
    y, p = np.array([[0.6, 0.8]]), np.array([[3e-9, -4e-9]])
    fn = lambda q: losses.cosine_similarity(y, q)[0]  # noqa: E731
    loss, grad = losses.cosine_similarity(y, p)
    assert loss == pytest.approx(-(0.6 * 3e-9 - 0.8 * 4e-9) / 1e-7, rel=1e-12)
    np.testing.assert_allclose(grad, fd_grad(fn, p.copy(), h=1e-11), rtol=1e-6)
    np.testing.assert_allclose(grad, -y / 1e-7, rtol=1e-12)


def test_bad_loss_options_are_refused_with_the_value():
    from polykeras import losses as api

    with pytest.raises(ValueError, match="positive number.*-1.0"):
        api.Huber(delta=-1)
    with pytest.raises(NotImplementedError, match="axis=-1 only.*axis=1"):
        api.CosineSimilarity(axis=1)
