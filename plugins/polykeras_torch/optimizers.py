"""Keras's optimizer update rules in torch, written with ``torch._foreach_*``.

Why not ``torch.optim``: its update rules are not Keras's where it matters
for step-by-step parity (the rules are documented in
:mod:`polykeras.optimizers` and executed by :mod:`polykeras_numpy.optimizers`):

* **Adam/AdamW**: Keras folds both bias corrections into the step size and
  adds epsilon to ``sqrt(v)`` ("epsilon hat"):
  ``w -= lr*sqrt(1-b2^t)/(1-b1^t) * m/(sqrt(v) + eps)``; torch.optim.Adam
  adds epsilon to ``sqrt(v)/sqrt(1-b2^t)``, i.e. a different epsilon every
  step. AdamW's decay in Keras is ``w -= w*wd*lr`` before the update, for
  every weight.
* **RMSprop**: Keras puts epsilon *inside* the square root,
  ``g/sqrt(a + eps)``; torch.optim.RMSprop uses ``g/(sqrt(a) + eps)``.
* **SGD**: Keras's momentum is ``v = m*v - lr*g; w += v`` (nesterov:
  ``w += m*v - lr*g``); torch.optim.SGD keeps ``v = m*v + g`` and scales by
  lr afterwards (different when the learning rate changes) and has dampening.
* **Adagrad**: Keras's accumulator starts at ``initial_accumulator_value``
  (0.1) and epsilon sits inside the square root.
* Gradient clipping (``clipnorm`` per weight, ``global_clipnorm``,
  ``clipvalue``) belongs to the optimizer in Keras.

Each update is a handful of ``_foreach`` calls over all weights at once (one
Python dispatch per operation, not per weight), all in place: the gradients
belong to the optimizer (fresh from ``torch.autograd.grad``) and serve as
scratch space, and RMSprop/Adagrad keep one scratch buffer per weight.
Allocating weight-sized temporaries every step is what makes a naive
version slow -- for the IMDB LSTM's 2.5M-entry embedding, fresh buffers cost
more than the arithmetic. Scalars that change per step (the Adam step size)
are computed on the host in the weights' dtype -- as the reference computes
them -- and passed as Python numbers, so nothing waits on the device.
"""

from __future__ import annotations

import numpy as np
import torch

_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


class TorchOptimizer:
    def __init__(self, config: dict, params: list[torch.Tensor]):
        self.config = config
        self.learning_rate = float(config["learning_rate"])
        self.iterations = 0
        self.np_dtype = _NUMPY_DTYPES[params[0].dtype] if params else np.float32
        self.slots = self.create_slots(params)

    def create_slots(self, params: list[torch.Tensor]):
        return None

    #: canonical slot name (polykeras.optimizers.slot_names) -> key in ``self.slots``
    #: (``None``: ``self.slots`` is that slot's list)
    slot_keys: dict[str, str | None] = {}

    def get_slots(self) -> dict[str, list[torch.Tensor]]:
        """The live slot tensors by canonical name, in the params' native layout."""
        out = {}
        for name, key in self.slot_keys.items():
            tensors = self.slots if key is None else (self.slots or {}).get(key)
            if tensors is not None:
                out[name] = tensors
        return out

    @torch.no_grad()
    def apply(self, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        """Clip, decay, update -- Keras's order. ``grads`` may be modified."""
        if not params:
            self.iterations += 1
            return
        grads = self._clip(list(grads))
        wd = self.config.get("weight_decay")
        if wd:
            torch._foreach_add_(params, params, alpha=-self._scalar(wd * self.learning_rate))
        self.iterations += 1
        self.update(params, grads, self._scalar(self.learning_rate))

    def update(self, params, grads, lr: float) -> None:
        raise NotImplementedError

    def _scalar(self, value) -> float:
        """``value`` rounded to the weights' dtype, as the reference rounds it."""
        return float(self.np_dtype(value))

    def _clip(self, grads: list[torch.Tensor]) -> list[torch.Tensor]:
        c = self.config
        if c.get("clipnorm"):
            clip = c["clipnorm"]
            norms = torch._foreach_norm(grads)
            scales = torch._foreach_div(torch._foreach_clamp_min(norms, clip), clip)
            torch._foreach_div_(grads, scales)
        elif c.get("global_clipnorm"):
            clip = c["global_clipnorm"]
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
            torch._foreach_mul_(grads, clip / torch.clamp_min(norm, clip))
        elif c.get("clipvalue"):
            torch._foreach_clamp_min_(grads, -c["clipvalue"])
            torch._foreach_clamp_max_(grads, c["clipvalue"])
        return grads


class SGD(TorchOptimizer):
    slot_keys = {"momentum": None}

    def create_slots(self, params):
        return [torch.zeros_like(w) for w in params] if self.config["momentum"] else None

    def update(self, params, grads, lr):
        if self.slots is None:
            torch._foreach_add_(params, grads, alpha=-lr)
            return
        momentum = self._scalar(self.config["momentum"])
        torch._foreach_mul_(self.slots, momentum)
        torch._foreach_add_(self.slots, grads, alpha=-lr)
        if self.config["nesterov"]:
            torch._foreach_add_(params, self.slots, alpha=momentum)
            torch._foreach_add_(params, grads, alpha=-lr)
        else:
            torch._foreach_add_(params, self.slots)


class Adam(TorchOptimizer):
    """Adam and AdamW (the decay is done in :meth:`TorchOptimizer.apply`)."""

    slot_keys = {"momentum": "m", "velocity": "v", "velocity_hat": "v_hat"}

    def create_slots(self, params):
        slots = {"m": [torch.zeros_like(w) for w in params], "v": [torch.zeros_like(w) for w in params]}
        if self.config["amsgrad"]:
            slots["v_hat"] = [torch.zeros_like(w) for w in params]
        return slots

    def update(self, params, grads, lr):
        c, dt = self.config, self.np_dtype
        one, t = dt(1), dt(self.iterations)
        b1, b2 = dt(c["beta_1"]), dt(c["beta_2"])
        alpha = float(dt(lr) * np.sqrt(one - b2 ** t) / (one - b1 ** t))
        m, v = self.slots["m"], self.slots["v"]
        torch._foreach_lerp_(m, grads, float(one - b1))  # m += (g - m)(1 - b1)
        torch._foreach_mul_(grads, grads)  # g is ours: from here on it holds g^2 ...
        torch._foreach_lerp_(v, grads, float(one - b2))  # v += (g^2 - v)(1 - b2)
        if c["amsgrad"]:
            torch._foreach_maximum_(self.slots["v_hat"], v)
            v = self.slots["v_hat"]
        denominator = grads  # ... and then sqrt(v) + eps
        torch._foreach_copy_(denominator, v)
        torch._foreach_sqrt_(denominator)
        torch._foreach_add_(denominator, self._scalar(c["epsilon"]))
        torch._foreach_addcdiv_(params, m, denominator, value=-alpha)


class RMSprop(TorchOptimizer):
    slot_keys = {"velocity": "velocity", "momentum": "momentum", "average_gradient": "average"}

    def create_slots(self, params):
        c = self.config
        return {"velocity": [torch.zeros_like(w) for w in params],
                "momentum": [torch.zeros_like(w) for w in params] if c["momentum"] > 0 else None,
                "average": [torch.zeros_like(w) for w in params] if c["centered"] else None,
                "scratch": [torch.empty_like(w) for w in params]}

    def update(self, params, grads, lr):
        c = self.config
        rho, eps = self._scalar(c["rho"]), self._scalar(c["epsilon"])
        velocity, momentum, average = self.slots["velocity"], self.slots["momentum"], self.slots["average"]
        torch._foreach_mul_(velocity, rho)
        torch._foreach_addcmul_(velocity, grads, grads, value=self._scalar(1 - rho))
        denominator = self.slots["scratch"]
        torch._foreach_copy_(denominator, velocity)
        if average is not None:
            torch._foreach_mul_(average, rho)
            torch._foreach_add_(average, grads, alpha=self._scalar(1 - rho))
            torch._foreach_addcmul_(denominator, average, average, value=-1.0)
        torch._foreach_add_(denominator, eps)
        torch._foreach_sqrt_(denominator)
        if momentum is None:
            torch._foreach_addcdiv_(params, grads, denominator, value=-lr)
            return
        torch._foreach_mul_(momentum, self._scalar(c["momentum"]))
        torch._foreach_addcdiv_(momentum, grads, denominator, value=lr)
        torch._foreach_sub_(params, momentum)


class Adagrad(TorchOptimizer):
    slot_keys = {"accumulator": "accumulator"}

    def create_slots(self, params):
        return {"accumulator": [torch.full_like(w, self.config["initial_accumulator_value"]) for w in params],
                "scratch": [torch.empty_like(w) for w in params]}

    def update(self, params, grads, lr):
        accumulator, denominator = self.slots["accumulator"], self.slots["scratch"]
        torch._foreach_addcmul_(accumulator, grads, grads)
        torch._foreach_copy_(denominator, accumulator)
        torch._foreach_add_(denominator, self._scalar(self.config["epsilon"]))
        torch._foreach_sqrt_(denominator)
        torch._foreach_addcdiv_(params, grads, denominator, value=-lr)


OPTIMIZERS = {"SGD": SGD, "Adam": Adam, "AdamW": Adam, "RMSprop": RMSprop, "Adagrad": Adagrad}


def create(spec: dict, params: list[torch.Tensor]) -> TorchOptimizer:
    kind = spec["kind"]
    if kind not in OPTIMIZERS:
        raise NotImplementedError(f"the torch backend has no optimizer {kind!r}; it has {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[kind](spec["config"], params)
