"""SGD and Adam with Keras's update rules (see :mod:`polykeras.optimizers`).

Order of one step, as in Keras: clip the gradients (``clipnorm`` per
gradient, else ``global_clipnorm``, else ``clipvalue``), apply decoupled weight
decay, then update every weight in place. Any other optimizer kind raises
``NotImplementedError`` when the model is compiled, which the core and the
conformance suite report as "not implemented by this backend" (see
:func:`polykeras_example.backend.lookup`).
"""

from __future__ import annotations

import math

import numpy as np


class Optimizer:
    """Holds the TrainingSpec's ``config`` and the per-weight slots."""

    def __init__(self, config: dict):
        self.config = config
        self.learning_rate = float(config["learning_rate"])
        self.iterations = 0  # updates applied so far; Adam's t is the 1-based step
        self.slots: list | None = None

    def apply(self, weights: list[np.ndarray], grads: list[np.ndarray]) -> None:
        if self.slots is None:
            self.slots = [self.create_slots(w) for w in weights]
        grads = self.clip(grads)
        if self.config.get("weight_decay"):
            for w in weights:
                w -= w * (self.config["weight_decay"] * self.learning_rate)
        self.iterations += 1
        for w, g, slots in zip(weights, grads, self.slots):
            self.update(w, g, slots, self.learning_rate)

    def clip(self, grads):
        c = self.config
        if c.get("clipnorm"):
            return [g * (c["clipnorm"] / max(float(np.linalg.norm(g)), c["clipnorm"])) for g in grads]
        if c.get("global_clipnorm"):
            norm = math.sqrt(sum(float(np.sum(g * g)) for g in grads))
            return [g * (c["global_clipnorm"] / max(norm, c["global_clipnorm"])) for g in grads]
        if c.get("clipvalue"):
            return [np.clip(g, -c["clipvalue"], c["clipvalue"]) for g in grads]
        return grads

    def create_slots(self, w: np.ndarray) -> list[np.ndarray]:
        """State arrays kept per weight (subclasses also define ``update(w, g, slots, lr)``)."""
        return []


class SGD(Optimizer):
    """``v = momentum*v - lr*g; w += v`` (nesterov: ``w += momentum*v - lr*g``); ``w -= lr*g`` without momentum."""

    def create_slots(self, w):
        return [np.zeros_like(w)] if self.config["momentum"] else []

    def update(self, w, g, slots, lr):
        if not slots:
            w -= lr * g
            return
        momentum, (v,) = self.config["momentum"], slots
        v *= momentum
        v -= lr * g
        w += momentum * v - lr * g if self.config["nesterov"] else v


class Adam(Optimizer):
    """``m += (g-m)(1-b1); v += (g^2-v)(1-b2); w -= lr*sqrt(1-b2^t)/(1-b1^t) * m/(sqrt(v)+eps)`` --
    epsilon added *after* folding the bias corrections into the step size (Keras, not torch)."""

    def create_slots(self, w):
        return [np.zeros_like(w) for _ in range(3 if self.config["amsgrad"] else 2)]

    def update(self, w, g, slots, lr):
        c, t = self.config, self.iterations
        m, v = slots[:2]
        m += (g - m) * (1 - c["beta_1"])
        v += (g * g - v) * (1 - c["beta_2"])
        if c["amsgrad"]:  # use the largest v seen so far
            v = np.maximum(slots[2], v, out=slots[2])
        alpha = lr * math.sqrt(1 - c["beta_2"] ** t) / (1 - c["beta_1"] ** t)
        w -= alpha * m / (np.sqrt(v) + c["epsilon"])


OPTIMIZERS = {"SGD": SGD, "Adam": Adam}

