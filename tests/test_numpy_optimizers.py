"""The reference optimizers against Keras's update rules, written out here a
second time as plain per-element Python (float64), step by step."""

import math

import numpy as np
import pytest

from polykeras import optimizers as api
from polykeras_numpy import optimizers

STEPS = 5


def keras_rule(kind, cfg):
    """A per-element reference: state dict -> (w, g) -> new w."""
    lr = cfg["learning_rate"]

    def sgd(state, w, g, t):
        mom = cfg["momentum"]
        if not mom:
            return w - lr * g
        v = state.get("v", 0.0) * mom - lr * g
        state["v"] = v
        return w + (mom * v - lr * g if cfg["nesterov"] else v)

    def adam(state, w, g, t):
        b1, b2, eps = cfg["beta_1"], cfg["beta_2"], cfg["epsilon"]
        m = state.get("m", 0.0) + (g - state.get("m", 0.0)) * (1 - b1)
        v = state.get("v", 0.0) + (g * g - state.get("v", 0.0)) * (1 - b2)
        state["m"], state["v"] = m, v
        if cfg["amsgrad"]:
            state["vhat"] = max(state.get("vhat", 0.0), v)
            v = state["vhat"]
        alpha = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        return w - alpha * m / (math.sqrt(v) + eps)

    def rmsprop(state, w, g, t):
        rho, eps = cfg["rho"], cfg["epsilon"]
        a = rho * state.get("a", 0.0) + (1 - rho) * g * g
        state["a"] = a
        if cfg["centered"]:
            mg = rho * state.get("mg", 0.0) + (1 - rho) * g
            state["mg"] = mg
            step = lr * g / math.sqrt(a - mg * mg + eps)
        else:
            step = lr * g / math.sqrt(a + eps)
        if cfg["momentum"] > 0:
            state["mom"] = cfg["momentum"] * state.get("mom", 0.0) + step
            return w - state["mom"]
        return w - step

    def adagrad(state, w, g, t):
        acc = state.get("acc", cfg["initial_accumulator_value"]) + g * g
        state["acc"] = acc
        return w - lr * g / math.sqrt(acc + cfg["epsilon"])

    return {"SGD": sgd, "Adam": adam, "AdamW": adam, "RMSprop": rmsprop, "Adagrad": adagrad}[kind]


CASES = [
    api.SGD(0.1), api.SGD(0.1, momentum=0.9), api.SGD(0.05, momentum=0.8, nesterov=True),
    api.Adam(0.01), api.Adam(0.01, amsgrad=True), api.Adam(0.003, beta_1=0.8, beta_2=0.99, epsilon=1e-3),
    api.AdamW(0.01, weight_decay=0.1), api.RMSprop(0.01), api.RMSprop(0.01, momentum=0.5),
    api.RMSprop(0.01, centered=True, rho=0.8), api.Adagrad(0.1), api.Adagrad(0.1, initial_accumulator_value=0.5),
    api.SGD(0.1, clipnorm=0.5), api.Adam(0.01, global_clipnorm=0.3), api.RMSprop(0.01, clipvalue=0.05),
]


def clip_and_decay(cfg, grads):
    """Keras's order: clip (clipnorm, else global_clipnorm, else clipvalue)."""
    if cfg["clipnorm"]:
        return [g * cfg["clipnorm"] / max(np.linalg.norm(g), cfg["clipnorm"]) for g in grads]
    if cfg["global_clipnorm"]:
        norm = math.sqrt(sum((g ** 2).sum() for g in grads))
        return [g * cfg["global_clipnorm"] / max(norm, cfg["global_clipnorm"]) for g in grads]
    if cfg["clipvalue"]:
        return [np.clip(g, -cfg["clipvalue"], cfg["clipvalue"]) for g in grads]
    return grads


@pytest.mark.parametrize("optimizer", CASES, ids=lambda o: f"{o.kind}-{sorted(o.get_config().items())}")
def test_reference_optimizer_follows_keras_rules(optimizer):
    spec = optimizer.to_spec()
    cfg = spec["config"]
    rng = np.random.default_rng(0)
    initial = [rng.normal(size=(3, 4)), rng.normal(size=(4,))]
    gradients = [[rng.normal(size=w.shape) for w in initial] for _ in range(STEPS)]

    # the rules, element by element
    rule = keras_rule(spec["kind"], cfg)
    expected = [w.copy() for w in initial]
    states = [[{} for _ in range(w.size)] for w in initial]
    for t, grads in enumerate(gradients, start=1):
        grads = clip_and_decay(cfg, grads)
        for k, (w, g, st) in enumerate(zip(expected, grads, states)):
            flat = w.ravel().copy()
            if cfg["weight_decay"]:
                flat = flat - flat * cfg["weight_decay"] * cfg["learning_rate"]
            expected[k] = np.array([rule(s, wi, gi, t) for s, wi, gi in zip(st, flat, g.ravel())]).reshape(w.shape)

    # the implementation
    params = [w.copy() for w in initial]
    opt = optimizers.create(spec, params)
    for grads in gradients:
        opt.apply(params, [g.copy() for g in grads])
    for got, want in zip(params, expected):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    assert opt.iterations == STEPS


def test_float32_updates_stay_float32():
    params = [np.ones((2, 2), np.float32)]
    opt = optimizers.create(api.Adam().to_spec(), params)
    opt.apply(params, [np.full((2, 2), 0.5, np.float32)])
    assert params[0].dtype == np.float32


def test_learning_rate_change_applies_to_next_step():
    params = [np.zeros(1)]
    opt = optimizers.create(api.SGD(0.1).to_spec(), params)
    opt.apply(params, [np.ones(1)])
    opt.learning_rate = 0.01
    opt.apply(params, [np.ones(1)])
    np.testing.assert_allclose(params[0], [-0.11])
