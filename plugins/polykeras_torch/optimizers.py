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
* **Nadam, Adamax, Adadelta, Lion, Ftrl** have no torch.optim counterpart
  with Keras's rule (torch's NAdam uses a different momentum schedule and
  epsilon; Adadelta's epsilon placement and Lion/Ftrl are absent).
* Gradient clipping (``clipnorm`` per weight, ``global_clipnorm``,
  ``clipvalue``) belongs to the optimizer in Keras.

Each update is a handful of ``_foreach`` calls over all weights at once (one
Python dispatch per operation, not per weight), all in place: the gradients
belong to the optimizer (fresh from ``torch.autograd.grad``) and serve as
scratch space, and the optimizers that need more keep scratch buffers, so a
step allocates nothing weight-sized. On CUDA each ``_foreach`` call is one
multi-tensor kernel; on the CPU torch runs it as a C++ loop of the per-tensor
op (torch.profiler lists one ``lerp_`` per weight under ``_foreach_lerp_``),
and an update costs its passes over memory -- so where a scratch buffer is
filled from a slot (Adam's ``sqrt(v)``, RMSprop's ``velocity + eps``),
:meth:`TorchOptimizer._into` writes a large weight's in one pass there.
Scalars that change per step (the Adam step size) are computed on the host in
the weights' dtype -- as the reference computes them -- and passed as Python
numbers, so nothing waits on the device.
"""

from __future__ import annotations

import numpy as np
import torch

_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


#: where :meth:`TorchOptimizer._into` fills a buffer per tensor with ``out=`` (see there): the
#: devices, and the smallest weight (elements) for which one Python call beats a pass of copying
ONE_PASS_DEVICES = {"cpu"}
ONE_PASS_MIN = 1 << 16


class TorchOptimizer:
    def __init__(self, config: dict, params: list[torch.Tensor]):
        self.config = config
        self.learning_rate = float(config["learning_rate"])
        self.iterations = 0
        self.np_dtype = _NUMPY_DTYPES[params[0].dtype] if params else np.float32
        one_pass = bool(params) and params[0].device.type in ONE_PASS_DEVICES
        self._one_pass = [i for i, w in enumerate(params) if one_pass and w.numel() >= ONE_PASS_MIN]
        rest = [i for i in range(len(params)) if i not in self._one_pass]
        self._multi = None if len(rest) == len(params) else rest  # None: every weight
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

    def _into(self, out: list[torch.Tensor], name: str, first: list[torch.Tensor], *args, **kwargs) -> None:
        """``out[i] = torch.<name>(first[i], *args, **kwargs)`` into the existing buffers ``out`` (lists
        aligned with the weights; list arguments are taken weight by weight). No ``_foreach`` op
        writes into other tensors in one pass (``_foreach_sqrt.out`` computes fresh tensors and copies
        them), so the multi-tensor form is a copy and the in-place op: two kernels on CUDA, two passes
        over memory. On the CPU a ``_foreach`` op is a C++ loop of per-tensor ops anyway, so a large
        weight gets the per-tensor ``out=`` op instead (one pass, one Python call); the small ones,
        whose copy costs less than that call, stay in the multi-tensor form. Both are the same
        elementwise operation, bit for bit."""
        if self._one_pass:
            fn = getattr(torch, name)
            for i in self._one_pass:
                fn(first[i], *(x[i] if isinstance(x, list) else x for x in args), out=out[i], **kwargs)
            if not self._multi:
                return
        if self._multi is not None:
            pick = self._multi
            out, first = [out[i] for i in pick], [first[i] for i in pick]
            args = tuple([x[i] for i in pick] if isinstance(x, list) else x for x in args)
        torch._foreach_copy_(out, first)
        getattr(torch, f"_foreach_{name}_")(out, *args, **kwargs)

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
        self._into(denominator, "sqrt", v)
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
        if average is None:
            self._into(denominator, "add", velocity, eps)
        else:
            torch._foreach_mul_(average, rho)
            torch._foreach_add_(average, grads, alpha=self._scalar(1 - rho))
            self._into(denominator, "addcmul", velocity, average, average, value=-1.0)
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
        self._into(denominator, "add", accumulator, self._scalar(self.config["epsilon"]))
        torch._foreach_sqrt_(denominator)
        torch._foreach_addcdiv_(params, grads, denominator, value=-lr)


def _zeros(params):
    return [torch.zeros_like(w) for w in params]


class Nadam(TorchOptimizer):
    """Keras's scalar ``u_product`` is computed on the host, as the reference computes it (kept
    with its step; recomputed from step 0 when the count went back, e.g. after a restore)."""

    slot_keys = {"momentum": "m", "velocity": "v"}

    def create_slots(self, params):
        self._u_product = (0, self.np_dtype(1))
        return {"m": _zeros(params), "v": _zeros(params), "scratch": [torch.empty_like(w) for w in params]}

    def u_product(self, t: int):
        dt = self.np_dtype
        step, value = self._u_product
        if step > t:
            step, value = 0, dt(1)
        b1, decay, half, one = dt(self.config["beta_1"]), dt(0.96), dt(0.5), dt(1)
        while step < t:
            step += 1
            value = value * b1 * (one - half * decay ** dt(step))
        self._u_product = (step, value)
        return value

    def update(self, params, grads, lr):
        c, dt, t = self.config, self.np_dtype, self.iterations
        one, half, decay = dt(1), dt(0.5), dt(0.96)
        b1, b2 = dt(c["beta_1"]), dt(c["beta_2"])
        u_t, u_next = b1 * (one - half * decay ** dt(t)), b1 * (one - half * decay ** dt(t + 1))
        u_product = self.u_product(t)
        m, v, scratch = self.slots["m"], self.slots["v"], self.slots["scratch"]
        torch._foreach_lerp_(m, grads, float(one - b1))
        self._into(scratch, "mul", grads, grads)
        torch._foreach_lerp_(v, scratch, float(one - b2))
        torch._foreach_mul_(grads, float((one - u_t) / (one - u_product)))  # g becomes m_hat
        torch._foreach_add_(grads, m, alpha=float(u_next / (one - u_product * u_next)))
        self._into(scratch, "div", v, float(one - b2 ** dt(t)))  # sqrt(v / (1 - b2^t)) + eps
        torch._foreach_sqrt_(scratch)
        torch._foreach_add_(scratch, self._scalar(c["epsilon"]))
        torch._foreach_addcdiv_(params, grads, scratch, value=-lr)


class Adamax(TorchOptimizer):
    slot_keys = {"momentum": "m", "norm": "u"}

    def create_slots(self, params):
        return {"m": _zeros(params), "u": _zeros(params)}

    def update(self, params, grads, lr):
        c, dt = self.config, self.np_dtype
        one, b1 = dt(1), dt(c["beta_1"])
        m, u = self.slots["m"], self.slots["u"]
        torch._foreach_lerp_(m, grads, float(one - b1))
        torch._foreach_mul_(u, self._scalar(c["beta_2"]))
        torch._foreach_abs_(grads)
        torch._foreach_maximum_(u, grads)
        self._into(grads, "add", u, self._scalar(c["epsilon"]))  # g becomes u + eps
        torch._foreach_addcdiv_(params, m, grads, value=-float(dt(lr) / (one - b1 ** dt(self.iterations))))


class Adadelta(TorchOptimizer):
    slot_keys = {"accumulated_grad": "grad_sq", "accumulated_delta_var": "delta_sq"}

    def create_slots(self, params):
        return {"grad_sq": _zeros(params), "delta_sq": _zeros(params), "scratch": [torch.empty_like(w) for w in params]}

    def update(self, params, grads, lr):
        rho, eps = self._scalar(self.config["rho"]), self._scalar(self.config["epsilon"])
        grad_sq, delta_sq, scratch = self.slots["grad_sq"], self.slots["delta_sq"], self.slots["scratch"]
        torch._foreach_mul_(grad_sq, rho)
        torch._foreach_addcmul_(grad_sq, grads, grads, value=self._scalar(1 - self.np_dtype(rho)))
        self._into(scratch, "add", delta_sq, eps)  # g becomes -delta = sqrt(s + eps) g / sqrt(a + eps)
        torch._foreach_sqrt_(scratch)
        torch._foreach_mul_(grads, scratch)
        self._into(scratch, "add", grad_sq, eps)
        torch._foreach_sqrt_(scratch)
        torch._foreach_div_(grads, scratch)
        torch._foreach_mul_(delta_sq, rho)
        torch._foreach_addcmul_(delta_sq, grads, grads, value=self._scalar(1 - self.np_dtype(rho)))
        torch._foreach_add_(params, grads, alpha=-lr)


class Lion(TorchOptimizer):
    slot_keys = {"momentum": "m"}

    def create_slots(self, params):
        return {"m": _zeros(params), "scratch": [torch.empty_like(w) for w in params]}

    def update(self, params, grads, lr):
        dt, m, direction = self.np_dtype, self.slots["m"], self.slots["scratch"]
        one, b1, b2 = dt(1), dt(self.config["beta_1"]), dt(self.config["beta_2"])
        self._into(direction, "mul", m, float(b1))
        torch._foreach_add_(direction, grads, alpha=float(one - b1))
        torch._foreach_sign_(direction)
        torch._foreach_add_(params, direction, alpha=-lr)
        torch._foreach_mul_(m, float(b2))
        torch._foreach_add_(m, grads, alpha=float(one - b2))


class Ftrl(TorchOptimizer):
    slot_keys = {"accumulator": "accumulator", "linear": "linear"}

    def create_slots(self, params):
        return {"accumulator": [torch.full_like(w, self.config["initial_accumulator_value"]) for w in params],
                "linear": _zeros(params), "old": [torch.empty_like(w) for w in params],
                "new": [torch.empty_like(w) for w in params]}

    def update(self, params, grads, lr):
        c, dt = self.config, self.np_dtype
        power = float(dt(-c["learning_rate_power"]))
        l1 = self._scalar(c["l1_regularization_strength"])
        l2 = float(dt(c["l2_regularization_strength"]) + dt(c["beta"]) / (dt(2) * dt(lr)))
        accumulator, linear, old, new = (self.slots[k] for k in ("accumulator", "linear", "old", "new"))
        self._into(old, "pow", accumulator, power)  # n^-p
        torch._foreach_addcmul_(accumulator, grads, grads)
        self._into(new, "pow", accumulator, power)  # n'^-p
        torch._foreach_sub_(old, new)  # old becomes -(n'^-p - n^-p) / lr * w
        torch._foreach_div_(old, lr)
        torch._foreach_mul_(old, params)
        if c["l2_shrinkage_regularization_strength"]:
            torch._foreach_add_(grads, params, alpha=self._scalar(2 * c["l2_shrinkage_regularization_strength"]))
        torch._foreach_add_(grads, old)
        torch._foreach_add_(linear, grads)
        torch._foreach_div_(new, lr)  # new becomes the quadratic
        torch._foreach_add_(new, float(dt(2) * dt(l2)))
        self._into(params, "clamp_min", linear, -l1)
        torch._foreach_clamp_max_(params, l1)
        torch._foreach_sub_(params, linear)
        torch._foreach_div_(params, new)


OPTIMIZERS = {"SGD": SGD, "Adam": Adam, "AdamW": Adam, "RMSprop": RMSprop, "Adagrad": Adagrad, "Nadam": Nadam,
              "Adamax": Adamax, "Adadelta": Adadelta, "Lion": Lion, "Ftrl": Ftrl}


def create(spec: dict, params: list[torch.Tensor]) -> TorchOptimizer:
    kind = spec["kind"]
    if kind not in OPTIMIZERS:
        raise NotImplementedError(f"the torch backend has no optimizer {kind!r}; it has {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[kind](spec["config"], params)
