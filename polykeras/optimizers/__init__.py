"""Optimizers: Keras's hyper-parameters and update-rule semantics, as config.

The core owns what an optimizer *means*; each backend implements the update
natively. The rules (Keras 3, which every backend must follow exactly, and
which the NumPy reference writes out) are, for gradient ``g`` of weight ``w``
at step ``t`` (1-based), after gradient clipping and decoupled weight decay
(``w -= w * weight_decay * lr``, applied before the update):

* ``SGD``: ``v = momentum*v - lr*g``; ``w += v`` (or ``w += momentum*v - lr*g``
  with ``nesterov``); plain ``w -= lr*g`` when momentum is 0.
* ``Adam``/``AdamW``: ``m += (g-m)(1-b1)``; ``v += (g^2-v)(1-b2)``;
  ``w -= lr*sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps)`` -- epsilon is added
  to ``sqrt(v)`` *after* folding the bias corrections into the step size
  ("epsilon hat"), unlike torch.optim.Adam.
* ``RMSprop``: ``a = rho*a + (1-rho)g^2``; ``w -= lr*g/sqrt(a + eps)`` --
  epsilon *inside* the square root, unlike torch.optim.RMSprop
  (centered: ``sqrt(a - mg^2 + eps)``; momentum: ``m = momentum*m + step``).
* ``Adagrad``: ``a += g^2`` (``a`` starts at ``initial_accumulator_value``);
  ``w -= lr*g/sqrt(a + eps)``.
* ``Nadam``: ``m``, ``v`` as Adam's; ``u_t = b1(1 - 0.5*0.96^t)``, ``u_{t+1}``
  likewise, and ``U_t = U_{t-1}*b1*(1 - 0.5*0.96^t)`` (Keras's scalar
  ``u_product``, ``U_0 = 1``); ``m_hat = u_{t+1}*m/(1 - U_t*u_{t+1}) +
  (1-u_t)*g/(1 - U_t)``; ``w -= lr*m_hat/(sqrt(v/(1-b2^t)) + eps)``. ``U_t`` is
  a function of ``t`` alone, so it is not part of the saved state: a backend
  recomputes it (the same products in the same order) from ``iterations``.
* ``Adamax``: ``m += (g-m)(1-b1)``; ``u = max(b2*u, |g|)``;
  ``w -= lr*m/((1-b1^t)(u + eps))``.
* ``Adadelta``: ``a = rho*a + (1-rho)g^2``;
  ``d = -sqrt(s + eps)*g/sqrt(a + eps)``; ``s = rho*s + (1-rho)d^2``;
  ``w += lr*d``.
* ``Lion``: ``w -= lr*sign(b1*m + (1-b1)g)``; then ``m = b2*m + (1-b2)g``.
* ``Ftrl`` (``p = learning_rate_power``, accumulator ``n`` starting at
  ``initial_accumulator_value``, linear ``z`` at 0): ``g' = g + 2*l2_shrinkage*w``;
  ``n' = n + g^2``; ``z += g' - (n'^-p - n^-p)/lr * w``;
  ``w = (clip(z, -l1, l1) - z)/(n'^-p/lr + 2*(l2 + beta/(2*lr)))``; ``n = n'``.

Clipping (Keras order: ``clipnorm`` per gradient, else ``global_clipnorm``,
else ``clipvalue``) scales ``g`` by ``clip/max(norm, clip)``.

``learning_rate`` may be a :mod:`~polykeras.optimizers.schedules` object: the
trainer then sets each step's rate from ``schedule(iterations)``.
"""

from __future__ import annotations

import weakref
from typing import Any

from polykeras.optimizers import schedules
from polykeras.optimizers.schedules import LearningRateSchedule


class Optimizer:
    """Base class: hyper-parameters plus a mutable ``learning_rate``.

    A compiled program registers itself with :meth:`_bind`; assigning
    ``optimizer.learning_rate = x`` (as ``ReduceLROnPlateau`` does) reaches
    every bound program before its next step.
    """

    kind = ""
    defaults: dict[str, Any] = {}

    def __init__(self, learning_rate: float = 0.001, weight_decay: float | None = None, clipnorm: float | None = None,
                 clipvalue: float | None = None, global_clipnorm: float | None = None, name: str | None = None,
                 **kwargs: Any):
        unknown = set(kwargs) - set(self.defaults) - {"use_ema", "ema_momentum", "ema_overwrite_frequency",
                                                        "loss_scale_factor", "gradient_accumulation_steps", "decay"}
        if unknown:
            raise TypeError(f"{type(self).__name__}() got unexpected keyword argument(s): {', '.join(sorted(unknown))}")
        if kwargs.get("use_ema") or kwargs.get("gradient_accumulation_steps"):
            raise NotImplementedError(f"{type(self).__name__}: use_ema and gradient_accumulation_steps are not supported yet")
        if isinstance(learning_rate, dict):  # a serialised schedule
            learning_rate = schedules.deserialize(learning_rate)
        self.schedule: LearningRateSchedule | None = None
        if isinstance(learning_rate, LearningRateSchedule):
            self.schedule = learning_rate
            learning_rate = self.schedule(0)
        elif callable(learning_rate):
            raise TypeError(f"learning_rate must be a float or a polykeras.optimizers.schedules."
                            f"LearningRateSchedule, got {learning_rate!r}")
        learning_rate = float(learning_rate)
        if sum(x is not None for x in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError("set at most one of clipnorm, clipvalue and global_clipnorm")
        self._learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.clipnorm, self.clipvalue, self.global_clipnorm = clipnorm, clipvalue, global_clipnorm
        self.name = name or type(self).__name__.lower()
        self.hyper: dict[str, Any] = {k: kwargs.get(k, v) for k, v in self.defaults.items()}
        self._programs: list[weakref.ReferenceType] = []

    def __getattr__(self, name: str):
        hyper = self.__dict__.get("hyper", {})
        if name in hyper:
            return hyper[name]
        raise AttributeError(f"{type(self).__name__!r} has no attribute {name!r}")

    # -- learning rate --------------------------------------------------------
    @property
    def learning_rate(self) -> float:
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        if self.schedule is not None:
            raise TypeError(f"this optimizer's learning rate follows the schedule {self.schedule!r}, so it cannot "
                            "be set (as in Keras); create the optimizer with a float to set it from a callback")
        self._set_rate(value)

    def _set_rate(self, value: float) -> None:
        """The rate every bound program uses from its next step (the trainer calls it for a schedule)."""
        self._learning_rate = float(value)
        for ref in self._programs:
            program = ref()
            if program is not None:
                program.set_learning_rate(self._learning_rate)

    lr = learning_rate  # Keras 2 spelling

    def _bind(self, program) -> None:
        self._programs = [r for r in self._programs if r() is not None] + [weakref.ref(program)]

    @property
    def iterations(self) -> int:
        for ref in reversed(self._programs):
            program = ref()
            if program is not None:
                return program.iterations
        return 0

    # -- config -----------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        rate = self._learning_rate if self.schedule is None else schedules.serialize(self.schedule)
        return {"name": self.name, "learning_rate": rate, "weight_decay": self.weight_decay,
                "clipnorm": self.clipnorm, "clipvalue": self.clipvalue, "global_clipnorm": self.global_clipnorm,
                **self.hyper}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Optimizer":
        config = {k: v for k, v in config.items() if k in cls.defaults or k in (
            "name", "learning_rate", "weight_decay", "clipnorm", "clipvalue", "global_clipnorm")}
        return cls(**config)

    def to_spec(self) -> dict[str, Any]:
        """The backend-facing form: ``{"kind": ..., "config": ...}``; with a schedule,
        ``learning_rate`` is its value at step 0 (the trainer sets the others)."""
        config = self.get_config()
        config.pop("name")
        if self.schedule is not None:
            config["learning_rate"] = self.schedule(0)
        return {"kind": self.kind, "config": config}


class SGD(Optimizer):
    kind = "SGD"
    defaults = {"momentum": 0.0, "nesterov": False}

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0, nesterov: bool = False, **kwargs):
        if not 0 <= float(momentum) <= 1:
            raise ValueError(f"SGD momentum must be in [0, 1], got {momentum!r}")
        super().__init__(learning_rate, momentum=float(momentum), nesterov=bool(nesterov), **kwargs)


class Adam(Optimizer):
    kind = "Adam"
    defaults = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "amsgrad": False}

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, amsgrad: bool = False, **kwargs):
        super().__init__(learning_rate, beta_1=float(beta_1), beta_2=float(beta_2), epsilon=float(epsilon),
                         amsgrad=bool(amsgrad), **kwargs)


class AdamW(Adam):
    kind = "AdamW"

    def __init__(self, learning_rate: float = 0.001, weight_decay: float = 0.004, **kwargs):
        super().__init__(learning_rate, weight_decay=weight_decay, **kwargs)


class RMSprop(Optimizer):
    kind = "RMSprop"
    defaults = {"rho": 0.9, "momentum": 0.0, "epsilon": 1e-7, "centered": False}

    def __init__(self, learning_rate: float = 0.001, rho: float = 0.9, momentum: float = 0.0, epsilon: float = 1e-7,
                 centered: bool = False, **kwargs):
        super().__init__(learning_rate, rho=float(rho), momentum=float(momentum), epsilon=float(epsilon),
                         centered=bool(centered), **kwargs)


class Adagrad(Optimizer):
    kind = "Adagrad"
    defaults = {"initial_accumulator_value": 0.1, "epsilon": 1e-7}

    def __init__(self, learning_rate: float = 0.001, initial_accumulator_value: float = 0.1, epsilon: float = 1e-7,
                 **kwargs):
        super().__init__(learning_rate, initial_accumulator_value=float(initial_accumulator_value),
                         epsilon=float(epsilon), **kwargs)


class Nadam(Optimizer):
    kind = "Nadam"
    defaults = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, **kwargs):
        super().__init__(learning_rate, beta_1=float(beta_1), beta_2=float(beta_2), epsilon=float(epsilon), **kwargs)


class Adamax(Optimizer):
    kind = "Adamax"
    defaults = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, **kwargs):
        super().__init__(learning_rate, beta_1=float(beta_1), beta_2=float(beta_2), epsilon=float(epsilon), **kwargs)


class Adadelta(Optimizer):
    kind = "Adadelta"
    defaults = {"rho": 0.95, "epsilon": 1e-7}

    def __init__(self, learning_rate: float = 0.001, rho: float = 0.95, epsilon: float = 1e-7, **kwargs):
        super().__init__(learning_rate, rho=float(rho), epsilon=float(epsilon), **kwargs)


class Lion(Optimizer):
    kind = "Lion"
    defaults = {"beta_1": 0.9, "beta_2": 0.99}

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.99, **kwargs):
        if not 0 < float(beta_1) <= 1:
            raise ValueError("Argument `beta_1` must be in the [0, 1] range. Otherwise, the optimizer degenerates "
                             f"to SignSGD. Received: beta_1={beta_1}.")
        super().__init__(learning_rate, beta_1=float(beta_1), beta_2=float(beta_2), **kwargs)


class Ftrl(Optimizer):
    kind = "Ftrl"
    defaults = {"learning_rate_power": -0.5, "initial_accumulator_value": 0.1, "l1_regularization_strength": 0.0,
                "l2_regularization_strength": 0.0, "l2_shrinkage_regularization_strength": 0.0, "beta": 0.0}

    def __init__(self, learning_rate: float = 0.001, learning_rate_power: float = -0.5,
                 initial_accumulator_value: float = 0.1, l1_regularization_strength: float = 0.0,
                 l2_regularization_strength: float = 0.0, l2_shrinkage_regularization_strength: float = 0.0,
                 beta: float = 0.0, **kwargs):
        if initial_accumulator_value < 0:
            raise ValueError("`initial_accumulator_value` needs to be positive or zero. "
                             f"Received: initial_accumulator_value={initial_accumulator_value}.")
        if learning_rate_power > 0:
            raise ValueError("`learning_rate_power` needs to be negative or zero. "
                             f"Received: learning_rate_power={learning_rate_power}.")
        for name, value in (("l1_regularization_strength", l1_regularization_strength),
                            ("l2_regularization_strength", l2_regularization_strength),
                            ("l2_shrinkage_regularization_strength", l2_shrinkage_regularization_strength)):
            if value < 0:
                raise ValueError(f"`{name}` needs to be positive or zero. Received: {name}={value}.")
        super().__init__(learning_rate, learning_rate_power=float(learning_rate_power),
                         initial_accumulator_value=float(initial_accumulator_value),
                         l1_regularization_strength=float(l1_regularization_strength),
                         l2_regularization_strength=float(l2_regularization_strength),
                         l2_shrinkage_regularization_strength=float(l2_shrinkage_regularization_strength),
                         beta=float(beta), **kwargs)


#: Per-weight slot names of the optimizers whose slots do not depend on the config.
_FIXED_SLOTS = {"Adagrad": ["accumulator"], "Nadam": ["momentum", "velocity"], "Adamax": ["momentum", "norm"],
                "Adadelta": ["accumulated_grad", "accumulated_delta_var"], "Lion": ["momentum"],
                "Ftrl": ["accumulator", "linear"]}


def slot_names(spec: dict[str, Any]) -> list[str]:
    """The optimizer's per-weight state variables, named and ordered as Keras 3 names them: what
    :meth:`polykeras.program.Program.get_optimizer_state` returns for an optimizer ``spec``
    (``{"kind", "config"}``). RMSprop's ``momentum`` is the accumulated step Keras subtracts.
    Nadam's scalar ``u_product`` is not a slot: it follows from the iteration count."""
    kind, c = spec["kind"], spec["config"]
    if kind == "SGD":
        return ["momentum"] if c.get("momentum") else []
    if kind in ("Adam", "AdamW"):
        return ["momentum", "velocity"] + (["velocity_hat"] if c.get("amsgrad") else [])
    if kind == "RMSprop":
        return ["velocity"] + (["momentum"] if c.get("momentum", 0) > 0 else []) + (
            ["average_gradient"] if c.get("centered") else [])
    if kind in _FIXED_SLOTS:
        return list(_FIXED_SLOTS[kind])
    raise NotImplementedError(f"no optimizer state layout for {kind!r}")


_BY_NAME: dict[str, type[Optimizer]] = {
    "sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop, "adagrad": Adagrad, "nadam": Nadam,
    "adamax": Adamax, "adadelta": Adadelta, "lion": Lion, "ftrl": Ftrl,
}


def get(identifier) -> Optimizer:
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Optimizer):
        return identifier()
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.lower())
        if cls is None:
            raise ValueError(f"unknown optimizer {identifier!r}; valid names: {', '.join(sorted(_BY_NAME))}")
        return cls()
    if isinstance(identifier, dict):
        cls = _BY_NAME.get(str(identifier.get("class_name", "")).lower())
        if cls is None:
            raise ValueError(f"unknown optimizer {identifier.get('class_name')!r}; valid: {', '.join(sorted(_BY_NAME))}")
        return cls.from_config(identifier.get("config", {}))
    raise TypeError(f"cannot interpret {identifier!r} as an optimizer; pass a name such as 'adam' or an instance")


def serialize(optimizer: Optimizer) -> dict[str, Any]:
    return {"class_name": type(optimizer).__name__, "config": optimizer.get_config()}
