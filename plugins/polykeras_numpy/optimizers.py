"""Keras's optimizer update rules in NumPy -- the reference every backend's
optimizer is compared with. The rules are documented in
:mod:`polykeras.optimizers`; the code below is that documentation, executed,
in the order Keras applies it: clip gradients, decay weights, update.
Everything is computed in the weights' dtype, in place.
"""

from __future__ import annotations

import math

import numpy as np


class NumpyOptimizer:
    def __init__(self, config: dict, params: list[np.ndarray]):
        self.config = config
        self.learning_rate = float(config["learning_rate"])
        self.iterations = 0
        self.slots = self.create_slots(params)

    def create_slots(self, params):
        return []

    #: The slot names (polykeras.optimizers.slot_names) in the order of a weight's slot tuple;
    #: one name: the weight's slot is a single array.
    layout: tuple[str, ...] = ()

    def get_slots(self) -> dict[str, list[np.ndarray]]:
        """Copies of the slots by canonical name (absent ones, e.g. momentum 0, left out)."""
        out = {}
        for pos, name in enumerate(self.layout):
            arrays = [s if len(self.layout) == 1 else (s[pos] if pos < len(s) else None) for s in self.slots]
            if arrays and all(a is not None for a in arrays):
                out[name] = [a.copy() for a in arrays]
        return out

    def set_slots(self, slots: dict[str, list[np.ndarray]]) -> None:
        for name, values in slots.items():
            pos = self.layout.index(name)
            for s, value in zip(self.slots, values):
                (s if len(self.layout) == 1 else s[pos])[...] = value

    def apply(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        grads = self._clip(grads)
        wd = self.config.get("weight_decay")
        if wd:
            for w in params:
                w -= w * w.dtype.type(wd * self.learning_rate)
        self.iterations += 1
        for i, (w, g) in enumerate(zip(params, grads)):
            self.update(i, w, g.astype(w.dtype, copy=False), w.dtype.type(self.learning_rate))

    def update(self, i: int, w: np.ndarray, g: np.ndarray, lr) -> None:
        raise NotImplementedError

    def _clip(self, grads):
        c = self.config
        if c.get("clipnorm"):
            return [g * (g.dtype.type(c["clipnorm"]) / max(np.sqrt(np.sum(g * g)), g.dtype.type(c["clipnorm"])))
                    for g in grads]
        if c.get("global_clipnorm"):
            norm = math.sqrt(sum(float(np.sum(g * g)) for g in grads))
            scale = c["global_clipnorm"] / max(norm, c["global_clipnorm"])
            return [g * g.dtype.type(scale) for g in grads]
        if c.get("clipvalue"):
            return [np.clip(g, -c["clipvalue"], c["clipvalue"]) for g in grads]
        return grads


class SGD(NumpyOptimizer):
    layout = ("momentum",)

    def create_slots(self, params):
        return [np.zeros_like(w) for w in params] if self.config["momentum"] else []

    def update(self, i, w, g, lr):
        momentum = w.dtype.type(self.config["momentum"])
        if not self.slots:
            w -= lr * g
            return
        v = self.slots[i]
        v *= momentum
        v -= lr * g
        if self.config["nesterov"]:
            w += momentum * v - lr * g
        else:
            w += v


class Adam(NumpyOptimizer):
    layout = ("momentum", "velocity", "velocity_hat")

    def create_slots(self, params):
        slots = [(np.zeros_like(w), np.zeros_like(w)) for w in params]
        if self.config["amsgrad"]:
            slots = [(m, v, np.zeros_like(v)) for m, v in slots]
        return slots

    def update(self, i, w, g, lr):
        c, t = self.config, self.iterations
        one = w.dtype.type(1)
        b1, b2, eps = (w.dtype.type(c[k]) for k in ("beta_1", "beta_2", "epsilon"))
        alpha = lr * np.sqrt(one - b2 ** w.dtype.type(t)) / (one - b1 ** w.dtype.type(t))
        m, v = self.slots[i][:2]
        m += (g - m) * (one - b1)
        v += (g * g - v) * (one - b2)
        if c["amsgrad"]:
            v_hat = self.slots[i][2]
            np.maximum(v_hat, v, out=v_hat)
            v = v_hat
        w -= alpha * m / (np.sqrt(v) + eps)


class RMSprop(NumpyOptimizer):
    layout = ("velocity", "momentum", "average_gradient")

    def create_slots(self, params):
        c = self.config
        return [(np.zeros_like(w),
                 np.zeros_like(w) if c["momentum"] > 0 else None,
                 np.zeros_like(w) if c["centered"] else None) for w in params]

    def update(self, i, w, g, lr):
        c = self.config
        rho, eps, one = w.dtype.type(c["rho"]), w.dtype.type(c["epsilon"]), w.dtype.type(1)
        velocity, momentum, average = self.slots[i]
        velocity *= rho
        velocity += (one - rho) * g * g
        if average is not None:
            average *= rho
            average += (one - rho) * g
            denominator = velocity - average * average + eps
        else:
            denominator = velocity + eps
        increment = lr * g / np.sqrt(denominator)
        if momentum is not None:
            momentum *= w.dtype.type(c["momentum"])
            momentum += increment
            w -= momentum
        else:
            w -= increment


class Adagrad(NumpyOptimizer):
    layout = ("accumulator",)

    def create_slots(self, params):
        return [np.full_like(w, self.config["initial_accumulator_value"]) for w in params]

    def update(self, i, w, g, lr):
        accumulator = self.slots[i]
        accumulator += g * g
        w -= lr * g / np.sqrt(accumulator + w.dtype.type(self.config["epsilon"]))


class Nadam(NumpyOptimizer):
    """Keras's scalar ``u_product`` is a function of the step count alone: it is kept with the step
    it belongs to and advanced (the same products in the same order as Keras's) or recomputed from
    step 0 when the count went back, e.g. in ``set_optimizer_state`` -- so a restored run continues
    bit for bit without it being saved."""

    layout = ("momentum", "velocity")

    def create_slots(self, params):
        self._u_product = (0, None)  # (step, value)
        return [(np.zeros_like(w), np.zeros_like(w)) for w in params]

    def u_product(self, dtype, t: int):
        step, value = self._u_product
        if step > t or value is None or value.dtype != dtype:
            step, value = 0, dtype.type(1)
        b1, decay, half, one = dtype.type(self.config["beta_1"]), dtype.type(0.96), dtype.type(0.5), dtype.type(1)
        while step < t:
            step += 1
            value = value * b1 * (one - half * decay ** dtype.type(step))
        self._u_product = (step, value)
        return value

    def update(self, i, w, g, lr):
        c, dt, t = self.config, w.dtype.type, self.iterations
        one, half, decay = dt(1), dt(0.5), dt(0.96)
        b1, b2, eps = dt(c["beta_1"]), dt(c["beta_2"]), dt(c["epsilon"])
        u_t, u_next = b1 * (one - half * decay ** dt(t)), b1 * (one - half * decay ** dt(t + 1))
        u_product = self.u_product(w.dtype, t)
        m, v = self.slots[i]
        m += (g - m) * (one - b1)
        v += (g * g - v) * (one - b2)
        m_hat = u_next * m / (one - u_product * u_next) + (one - u_t) * g / (one - u_product)
        v_hat = v / (one - b2 ** dt(t))
        w -= m_hat * lr / (np.sqrt(v_hat) + eps)


class Adamax(NumpyOptimizer):
    layout = ("momentum", "norm")

    def create_slots(self, params):
        return [(np.zeros_like(w), np.zeros_like(w)) for w in params]

    def update(self, i, w, g, lr):
        c, dt = self.config, w.dtype.type
        one, b1, b2, eps = dt(1), dt(c["beta_1"]), dt(c["beta_2"]), dt(c["epsilon"])
        m, u = self.slots[i]
        m += (g - m) * (one - b1)
        np.maximum(b2 * u, np.abs(g), out=u)
        w -= lr * m / ((one - b1 ** dt(self.iterations)) * (u + eps))


class Adadelta(NumpyOptimizer):
    layout = ("accumulated_grad", "accumulated_delta_var")

    def create_slots(self, params):
        return [(np.zeros_like(w), np.zeros_like(w)) for w in params]

    def update(self, i, w, g, lr):
        dt = w.dtype.type
        rho, eps, one = dt(self.config["rho"]), dt(self.config["epsilon"]), dt(1)
        grad_sq, delta_sq = self.slots[i]
        grad_sq *= rho
        grad_sq += (one - rho) * (g * g)
        delta = -(np.sqrt(delta_sq + eps) * g) / np.sqrt(grad_sq + eps)
        delta_sq *= rho
        delta_sq += (one - rho) * (delta * delta)
        w += lr * delta


class Lion(NumpyOptimizer):
    layout = ("momentum",)

    def create_slots(self, params):
        return [np.zeros_like(w) for w in params]

    def update(self, i, w, g, lr):
        dt, m = w.dtype.type, self.slots[i]
        one, b1, b2 = dt(1), dt(self.config["beta_1"]), dt(self.config["beta_2"])
        w -= lr * np.sign(m * b1 + g * (one - b1))
        m *= b2
        m += g * (one - b2)


class Ftrl(NumpyOptimizer):
    layout = ("accumulator", "linear")

    def create_slots(self, params):
        return [(np.full_like(w, self.config["initial_accumulator_value"]), np.zeros_like(w)) for w in params]

    def update(self, i, w, g, lr):
        c, dt = self.config, w.dtype.type
        power = dt(-c["learning_rate_power"])
        l1 = dt(c["l1_regularization_strength"])
        l2 = dt(c["l2_regularization_strength"]) + dt(c["beta"]) / (dt(2) * lr)
        accumulator, linear = self.slots[i]
        grad = g + dt(2 * c["l2_shrinkage_regularization_strength"]) * w
        new_accumulator = accumulator + g * g
        linear += grad - (new_accumulator ** power - accumulator ** power) / lr * w
        quadratic = new_accumulator ** power / lr + dt(2) * l2
        w[...] = (np.clip(linear, -l1, l1) - linear) / quadratic
        accumulator[...] = new_accumulator


OPTIMIZERS = {"SGD": SGD, "Adam": Adam, "AdamW": Adam, "RMSprop": RMSprop, "Adagrad": Adagrad, "Nadam": Nadam,
              "Adamax": Adamax, "Adadelta": Adadelta, "Lion": Lion, "Ftrl": Ftrl}


def create(spec: dict, params: list[np.ndarray], overrides: dict | None = None) -> NumpyOptimizer:
    kind = spec["kind"]
    table = {**OPTIMIZERS, **(overrides or {})}
    if kind not in table:
        raise NotImplementedError(f"the numpy backend has no optimizer {kind!r}; it has {', '.join(OPTIMIZERS)}")
    return table[kind](spec["config"], params)
