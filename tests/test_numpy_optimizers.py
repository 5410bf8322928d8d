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

    def nadam(state, w, g, t):  # keras/src/optimizers/nadam.py
        b1, b2, eps = cfg["beta_1"], cfg["beta_2"], cfg["epsilon"]
        u_product = 1.0
        for k in range(1, t + 1):  # Keras's u_product variable, advanced once per step
            u_product = u_product * b1 * (1.0 - 0.5 * 0.96 ** k)
        u_t, u_t_1 = b1 * (1.0 - 0.5 * 0.96 ** t), b1 * (1.0 - 0.5 * 0.96 ** (t + 1))
        m = state.get("m", 0.0) + (g - state.get("m", 0.0)) * (1 - b1)
        v = state.get("v", 0.0) + (g * g - state.get("v", 0.0)) * (1 - b2)
        state["m"], state["v"] = m, v
        m_hat = u_t_1 * m / (1 - u_product * u_t_1) + (1 - u_t) * g / (1 - u_product)
        v_hat = v / (1 - b2 ** t)
        return w - m_hat * lr / (math.sqrt(v_hat) + eps)

    def adamax(state, w, g, t):  # adamax.py
        b1, b2, eps = cfg["beta_1"], cfg["beta_2"], cfg["epsilon"]
        m = state.get("m", 0.0) + (g - state.get("m", 0.0)) * (1 - b1)
        u = max(b2 * state.get("u", 0.0), abs(g))
        state["m"], state["u"] = m, u
        return w - lr * m / ((1 - b1 ** t) * (u + eps))

    def adadelta(state, w, g, t):  # adadelta.py
        rho, eps = cfg["rho"], cfg["epsilon"]
        acc_grad = rho * state.get("ag", 0.0) + (1 - rho) * g * g
        delta = -math.sqrt(state.get("ad", 0.0) + eps) * g / math.sqrt(acc_grad + eps)
        state["ag"], state["ad"] = acc_grad, rho * state.get("ad", 0.0) + (1 - rho) * delta * delta
        return w + lr * delta

    def lion(state, w, g, t):  # lion.py
        b1, b2, m = cfg["beta_1"], cfg["beta_2"], state.get("m", 0.0)
        c = m * b1 + g * (1 - b1)
        state["m"] = m * b2 + g * (1 - b2)
        return w - lr * (1.0 if c > 0 else -1.0 if c < 0 else 0.0)

    def ftrl(state, w, g, t):  # ftrl.py
        p = cfg["learning_rate_power"]
        l2 = cfg["l2_regularization_strength"] + cfg["beta"] / (2 * lr)
        accum, linear = state.get("n", cfg["initial_accumulator_value"]), state.get("z", 0.0)
        grad = g + 2 * cfg["l2_shrinkage_regularization_strength"] * w
        new_accum = accum + g * g
        linear += grad - (new_accum ** -p - accum ** -p) / lr * w
        quadratic = new_accum ** -p / lr + 2 * l2
        l1 = cfg["l1_regularization_strength"]
        state["n"], state["z"] = new_accum, linear
        return (min(max(linear, -l1), l1) - linear) / quadratic

    return {"SGD": sgd, "Adam": adam, "AdamW": adam, "RMSprop": rmsprop, "Adagrad": adagrad, "Nadam": nadam,
            "Adamax": adamax, "Adadelta": adadelta, "Lion": lion, "Ftrl": ftrl}[kind]


CASES = [
    api.SGD(0.1), api.SGD(0.1, momentum=0.9), api.SGD(0.05, momentum=0.8, nesterov=True),
    api.Adam(0.01), api.Adam(0.01, amsgrad=True), api.Adam(0.003, beta_1=0.8, beta_2=0.99, epsilon=1e-3),
    api.AdamW(0.01, weight_decay=0.1), api.RMSprop(0.01), api.RMSprop(0.01, momentum=0.5),
    api.RMSprop(0.01, centered=True, rho=0.8), api.Adagrad(0.1), api.Adagrad(0.1, initial_accumulator_value=0.5),
    api.SGD(0.1, clipnorm=0.5), api.Adam(0.01, global_clipnorm=0.3), api.RMSprop(0.01, clipvalue=0.05),
    api.Nadam(0.01), api.Nadam(0.003, beta_1=0.8, beta_2=0.99, epsilon=1e-3, weight_decay=0.1),
    api.Adamax(0.01), api.Adamax(0.02, beta_1=0.7, beta_2=0.9, epsilon=1e-2, clipnorm=0.5),
    api.Adadelta(1.0), api.Adadelta(0.5, rho=0.8, epsilon=1e-3),
    api.Lion(0.01), api.Lion(0.003, beta_1=0.5, beta_2=0.9, weight_decay=0.2),
    api.Ftrl(0.1), api.Ftrl(0.05, learning_rate_power=-0.7, initial_accumulator_value=0.3,
                            l1_regularization_strength=0.01, l2_regularization_strength=0.02,
                            l2_shrinkage_regularization_strength=0.05, beta=0.1, clipvalue=0.8),
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


@pytest.mark.parametrize("make, bad", [(api.Lion, {"beta_1": 0.0}), (api.Lion, {"beta_1": 1.5}),
                                       (api.Ftrl, {"learning_rate_power": 0.5}),
                                       (api.Ftrl, {"initial_accumulator_value": -1.0}),
                                       (api.Ftrl, {"l1_regularization_strength": -0.1})])
def test_keras_argument_checks(make, bad):
    with pytest.raises(ValueError):
        make(**bad)


def test_new_optimizers_by_name_and_config():
    for name, cls in (("nadam", api.Nadam), ("adamax", api.Adamax), ("adadelta", api.Adadelta), ("lion", api.Lion),
                      ("ftrl", api.Ftrl)):
        optimizer = api.get(name)
        assert type(optimizer) is cls
        assert type(api.get(api.serialize(optimizer))) is cls
    assert api.Ftrl().get_config()["learning_rate_power"] == -0.5
    assert api.Adadelta().get_config()["rho"] == 0.95 and api.Lion().get_config()["beta_2"] == 0.99
    assert api.slot_names(api.Nadam().to_spec()) == ["momentum", "velocity"]
    assert api.slot_names(api.Adamax().to_spec()) == ["momentum", "norm"]
    assert api.slot_names(api.Adadelta().to_spec()) == ["accumulated_grad", "accumulated_delta_var"]
    assert api.slot_names(api.Lion().to_spec()) == ["momentum"]
    assert api.slot_names(api.Ftrl().to_spec()) == ["accumulator", "linear"]


def test_nadam_u_product_follows_the_step_count():
    """Keras's scalar u_product is not saved: after the step count is set back (as
    set_optimizer_state does), the reference recomputes it and continues bit for bit."""
    rng = np.random.default_rng(0)
    grads = [[rng.normal(size=(3,))] for _ in range(6)]
    one = [np.ones(3)]
    straight = optimizers.create(api.Nadam(0.01).to_spec(), one)
    for g in grads:
        straight.apply(one, [g[0].copy()])
    two = [np.ones(3)]
    first = optimizers.create(api.Nadam(0.01).to_spec(), two)
    for g in grads[:3]:
        first.apply(two, [g[0].copy()])
    second = optimizers.create(api.Nadam(0.01).to_spec(), two)
    second.set_slots(first.get_slots())
    second.iterations = first.iterations
    for g in grads[3:]:
        second.apply(two, [g[0].copy()])
    np.testing.assert_array_equal(two[0], one[0])
