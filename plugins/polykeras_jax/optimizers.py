"""Keras's optimizers in JAX: the update rules of :mod:`polykeras.optimizers`,
in Keras's order -- clip the gradients, decay the weights
(``w -= w * weight_decay * lr``), then update.

optax is used where its rule *is* Keras's, and the rule is written out here
where it is not:

* ``RMSprop``: ``optax.scale_by_rms`` (``eps_in_sqrt=True``: ``g / sqrt(a + eps)``)
  or ``optax.scale_by_stddev`` (centered), then ``-lr``, then ``optax.trace``
  for momentum -- exactly Keras's ``m = momentum * m + lr * g / sqrt(...)``.
* ``Adagrad``: ``optax.scale_by_rss`` (accumulator starts at
  ``initial_accumulator_value``; ``g / sqrt(a + eps)``), then ``-lr``.
* ``global_clipnorm``: ``optax.clip_by_global_norm``; ``clipvalue``: ``optax.clip``.
* ``Adam``/``AdamW`` are our own: ``optax.adam`` divides the *bias-corrected*
  moments, ``m_hat / (sqrt(v_hat) + eps)``, while Keras folds the corrections
  into the step size and adds epsilon to the uncorrected ``sqrt(v)``
  ("epsilon hat") -- a different update whenever ``eps`` matters.
* ``SGD`` momentum is our own: Keras keeps ``v = momentum * v - lr * g``
  (learning rate inside the velocity) where ``optax.sgd`` traces raw gradients
  and scales afterwards; they differ as soon as the learning rate changes
  between steps (``ReduceLROnPlateau``).
* ``clipnorm`` (each gradient to its own norm) has no optax counterpart.
* ``Nadam``, ``Adamax``, ``Adadelta``, ``Lion`` and ``Ftrl`` are our own:
  optax's ``nadam`` has no momentum schedule (Keras's ``u_t``), its
  ``adamax``/``adadelta``/``lion``/``ftrl``-like rules place epsilon, the bias
  correction or the update order differently (Lion: Keras updates the weight
  with the *old* momentum first), and optax has no FTRL.

Hyper-parameters are cast to the weights' dtype before any arithmetic, as the
NumPy reference does: in float32, ``1 - float32(0.999)`` is ``0.001`` only to
1.3e-5, and Adam's step size and second moment must see the *same* rounded
``beta_2`` for the rounding to cancel as it does in the reference.

The learning rate is a traced argument of the step (not a constant baked into
the compiled function), so changing it never recompiles: the optax
transformations that need it are built inside the traced step with the traced
value. The step count ``t`` (Keras's ``iterations``) lives in the state.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
import optax


class OptimizerState(NamedTuple):
    iterations: Any  # int32 scalar: updates applied so far
    slots: Any  # the rule's own state (a pytree)


class Optimizer:
    """One Keras optimizer: ``init(params)`` and ``update(grads, state, params, lr)``."""

    def __init__(self, config: dict) -> None:
        self.config = config

    # -- what each rule defines ------------------------------------------------------
    def init_slots(self, params: list) -> Any:
        return ()

    def canonical_slots(self, slots: Any) -> dict[str, list]:
        """The slots by canonical name (polykeras.optimizers.slot_names), one array per param."""
        return {}

    def from_canonical(self, slots: Any, canonical: dict[str, list]) -> Any:
        """``slots`` with the values of ``canonical`` (the inverse of :meth:`canonical_slots`)."""
        return slots

    def at_step(self, slots: Any, iterations: int) -> Any:
        """``slots`` with any state that follows from the step count alone (Nadam's ``u_product``)
        set for ``iterations`` -- after :meth:`from_canonical`, on restoring a state."""
        return slots

    def apply(self, grads: list, slots: Any, params: list, lr, t) -> tuple[list, Any]:
        """New ``(params, slots)`` given clipped gradients and the 1-based step ``t``."""
        raise NotImplementedError

    # -- shared -----------------------------------------------------------------------
    def init(self, params: list) -> OptimizerState:
        return OptimizerState(jnp.zeros((), jnp.int32), self.init_slots(params))

    def update(self, grads: list, state: OptimizerState, params: list, lr) -> tuple[list, OptimizerState]:
        grads = self._clip(grads)
        wd = self.config.get("weight_decay")
        if wd:
            params = [w - w * (wd * lr) for w in params]
        iterations = state.iterations + 1
        t = iterations.astype(lr.dtype)
        params, slots = self.apply(grads, state.slots, params, lr, t)
        return params, OptimizerState(iterations, slots)

    def hyper(self, name: str, like):
        """Hyper-parameter ``name`` as a scalar of ``like``'s dtype."""
        return jnp.asarray(self.config[name], like.dtype)

    def _clip(self, grads: list) -> list:
        c = self.config
        if c.get("clipnorm"):
            clip = c["clipnorm"]
            return [g * (clip / jnp.maximum(jnp.sqrt(jnp.sum(g * g)), clip)) for g in grads]
        if c.get("global_clipnorm"):
            return optax.clip_by_global_norm(c["global_clipnorm"]).update(grads, optax.EmptyState())[0]
        if c.get("clipvalue"):
            return optax.clip(c["clipvalue"]).update(grads, optax.EmptyState())[0]
        return grads


class SGD(Optimizer):
    def init_slots(self, params):
        return [jnp.zeros_like(w) for w in params] if self.config["momentum"] else ()

    def canonical_slots(self, slots):
        return {"momentum": list(slots)} if self.config["momentum"] else {}

    def from_canonical(self, slots, canonical):
        return canonical["momentum"] if self.config["momentum"] else slots

    def apply(self, grads, slots, params, lr, t):
        if not self.config["momentum"]:
            return [w - lr * g for w, g in zip(params, grads)], slots
        momentum = self.hyper("momentum", lr)
        velocities = [momentum * v - lr * g for v, g in zip(slots, grads)]
        if self.config["nesterov"]:
            params = [w + momentum * v - lr * g for w, v, g in zip(params, velocities, grads)]
        else:
            params = [w + v for w, v in zip(params, velocities)]
        return params, velocities


class Adam(Optimizer):
    def init_slots(self, params):
        zeros = lambda: [jnp.zeros_like(w) for w in params]  # noqa: E731
        return (zeros(), zeros(), zeros()) if self.config["amsgrad"] else (zeros(), zeros())

    NAMES = ("momentum", "velocity", "velocity_hat")

    def canonical_slots(self, slots):
        return dict(zip(self.NAMES, map(list, slots)))

    def from_canonical(self, slots, canonical):
        return tuple(canonical[name] for name in self.NAMES[:len(slots)])

    def apply(self, grads, slots, params, lr, t):
        c = self.config
        one, b1, b2, eps = jnp.ones((), lr.dtype), self.hyper("beta_1", lr), self.hyper("beta_2", lr), \
            self.hyper("epsilon", lr)
        alpha = lr * jnp.sqrt(one - b2 ** t) / (one - b1 ** t)
        ms = [m + (g - m) * (one - b1) for m, g in zip(slots[0], grads)]
        vs = [v + (g * g - v) * (one - b2) for v, g in zip(slots[1], grads)]
        denominators = vs
        if c["amsgrad"]:
            denominators = [jnp.maximum(vh, v) for vh, v in zip(slots[2], vs)]
        params = [w - alpha * m / (jnp.sqrt(v) + eps) for w, m, v in zip(params, ms, denominators)]
        return params, ((ms, vs, denominators) if c["amsgrad"] else (ms, vs))


class Nadam(Optimizer):
    """State: ``(momentums, velocities, u_product)``, the last Keras's scalar variable (not a
    canonical slot: :meth:`at_step` recomputes it from the step count, as the reference does)."""

    def init_slots(self, params):
        return ([jnp.zeros_like(w) for w in params], [jnp.zeros_like(w) for w in params],
                jnp.ones((), params[0].dtype if params else jnp.float32))

    def canonical_slots(self, slots):
        return {"momentum": list(slots[0]), "velocity": list(slots[1])}

    def from_canonical(self, slots, canonical):
        return canonical["momentum"], canonical["velocity"], slots[2]

    def at_step(self, slots, iterations):
        dt = np.dtype(slots[2].dtype).type
        value, b1, decay, half, one = dt(1), dt(self.config["beta_1"]), dt(0.96), dt(0.5), dt(1)
        for step in range(1, iterations + 1):
            value = value * b1 * (one - half * decay ** dt(step))
        return slots[0], slots[1], np.asarray(value)

    def apply(self, grads, slots, params, lr, t):
        one, half, decay = jnp.ones((), lr.dtype), jnp.asarray(0.5, lr.dtype), jnp.asarray(0.96, lr.dtype)
        b1, b2, eps = self.hyper("beta_1", lr), self.hyper("beta_2", lr), self.hyper("epsilon", lr)
        u_t, u_next = b1 * (one - half * decay ** t), b1 * (one - half * decay ** (t + one))
        u_product = slots[2].astype(lr.dtype) * b1 * (one - half * decay ** t)
        ms = [m + (g - m) * (one - b1) for m, g in zip(slots[0], grads)]
        vs = [v + (g * g - v) * (one - b2) for v, g in zip(slots[1], grads)]
        params = [w - (u_next * m / (one - u_product * u_next) + (one - u_t) * g / (one - u_product)) * lr
                  / (jnp.sqrt(v / (one - b2 ** t)) + eps) for w, m, v, g in zip(params, ms, vs, grads)]
        return params, (ms, vs, u_product.astype(slots[2].dtype))


class Adamax(Optimizer):
    def init_slots(self, params):
        return [jnp.zeros_like(w) for w in params], [jnp.zeros_like(w) for w in params]

    def canonical_slots(self, slots):
        return {"momentum": list(slots[0]), "norm": list(slots[1])}

    def from_canonical(self, slots, canonical):
        return canonical["momentum"], canonical["norm"]

    def apply(self, grads, slots, params, lr, t):
        one, b1, b2, eps = jnp.ones((), lr.dtype), self.hyper("beta_1", lr), self.hyper("beta_2", lr), \
            self.hyper("epsilon", lr)
        ms = [m + (g - m) * (one - b1) for m, g in zip(slots[0], grads)]
        us = [jnp.maximum(b2 * u, jnp.abs(g)) for u, g in zip(slots[1], grads)]
        params = [w - lr * m / ((one - b1 ** t) * (u + eps)) for w, m, u in zip(params, ms, us)]
        return params, (ms, us)


class Adadelta(Optimizer):
    def init_slots(self, params):
        return [jnp.zeros_like(w) for w in params], [jnp.zeros_like(w) for w in params]

    def canonical_slots(self, slots):
        return {"accumulated_grad": list(slots[0]), "accumulated_delta_var": list(slots[1])}

    def from_canonical(self, slots, canonical):
        return canonical["accumulated_grad"], canonical["accumulated_delta_var"]

    def apply(self, grads, slots, params, lr, t):
        one, rho, eps = jnp.ones((), lr.dtype), self.hyper("rho", lr), self.hyper("epsilon", lr)
        grad_sqs = [rho * a + (one - rho) * (g * g) for a, g in zip(slots[0], grads)]
        deltas = [-(jnp.sqrt(s + eps) * g) / jnp.sqrt(a + eps) for s, a, g in zip(slots[1], grad_sqs, grads)]
        delta_sqs = [rho * s + (one - rho) * (d * d) for s, d in zip(slots[1], deltas)]
        return [w + lr * d for w, d in zip(params, deltas)], (grad_sqs, delta_sqs)


class Lion(Optimizer):
    def init_slots(self, params):
        return [jnp.zeros_like(w) for w in params]

    def canonical_slots(self, slots):
        return {"momentum": list(slots)}

    def from_canonical(self, slots, canonical):
        return canonical["momentum"]

    def apply(self, grads, slots, params, lr, t):
        one, b1, b2 = jnp.ones((), lr.dtype), self.hyper("beta_1", lr), self.hyper("beta_2", lr)
        params = [w - lr * jnp.sign(m * b1 + g * (one - b1)) for w, m, g in zip(params, slots, grads)]
        return params, [m * b2 + g * (one - b2) for m, g in zip(slots, grads)]


class Ftrl(Optimizer):
    def init_slots(self, params):
        value = self.config["initial_accumulator_value"]
        return [jnp.full_like(w, value) for w in params], [jnp.zeros_like(w) for w in params]

    def canonical_slots(self, slots):
        return {"accumulator": list(slots[0]), "linear": list(slots[1])}

    def from_canonical(self, slots, canonical):
        return canonical["accumulator"], canonical["linear"]

    def apply(self, grads, slots, params, lr, t):
        c, two = self.config, jnp.asarray(2, lr.dtype)
        power = jnp.asarray(-c["learning_rate_power"], lr.dtype)
        l1 = self.hyper("l1_regularization_strength", lr)
        l2 = self.hyper("l2_regularization_strength", lr) + self.hyper("beta", lr) / (two * lr)
        shrinkage = jnp.asarray(2 * c["l2_shrinkage_regularization_strength"], lr.dtype)
        new_params, accumulators, linears = [], [], []
        for w, g, n, z in zip(params, grads, *slots):
            new_n = n + g * g
            z = z + ((g + shrinkage * w) - (new_n ** power - n ** power) / lr * w)
            quadratic = new_n ** power / lr + two * l2
            new_params.append((jnp.clip(z, -l1, l1) - z) / quadratic)
            accumulators.append(new_n)
            linears.append(z)
        return new_params, (accumulators, linears)


class _OptaxRule(Optimizer):
    """A rule that is an optax chain scaled by ``-lr``: ``w += transform(g)``."""

    def transform(self, lr) -> optax.GradientTransformation:
        raise NotImplementedError

    def init_slots(self, params):
        return self.transform(1.0).init(params)

    def apply(self, grads, slots, params, lr, t):
        updates, slots = self.transform(lr).update(grads, slots, params)
        return optax.apply_updates(params, updates), slots


class RMSprop(_OptaxRule):
    """State: ``(scale_by_rms: nu | scale_by_stddev: mu, nu, EmptyState, trace | EmptyState)``; optax's
    trace accumulates the *negative* step, Keras's momentum the step."""

    def canonical_slots(self, slots):
        scale, _, trace = slots
        out = {"velocity": list(scale.nu)}
        if self.config["momentum"] > 0:
            out["momentum"] = [-t for t in trace.trace]
        if self.config["centered"]:
            out["average_gradient"] = list(scale.mu)
        return out

    def from_canonical(self, slots, canonical):
        scale, empty, trace = slots
        scale = scale._replace(nu=canonical["velocity"])
        if self.config["centered"]:
            scale = scale._replace(mu=canonical["average_gradient"])
        if self.config["momentum"] > 0:
            trace = trace._replace(trace=[-m for m in canonical["momentum"]])
        return scale, empty, trace

    def transform(self, lr):
        c, lr = self.config, jnp.asarray(lr)
        rho, eps = self.hyper("rho", lr), self.hyper("epsilon", lr)
        if c["centered"]:
            scale = optax.scale_by_stddev(decay=rho, eps=eps, eps_in_sqrt=True)
        else:
            scale = optax.scale_by_rms(decay=rho, eps=eps, eps_in_sqrt=True)
        momentum = optax.trace(decay=self.hyper("momentum", lr)) if c["momentum"] > 0 else optax.identity()
        return optax.chain(scale, optax.scale(-lr), momentum)


class Adagrad(_OptaxRule):
    """State: ``(scale_by_rss: sum_of_squares, EmptyState)``."""

    def canonical_slots(self, slots):
        return {"accumulator": list(slots[0].sum_of_squares)}

    def from_canonical(self, slots, canonical):
        return slots[0]._replace(sum_of_squares=canonical["accumulator"]), slots[1]

    def transform(self, lr):
        lr = jnp.asarray(lr)
        return optax.chain(optax.scale_by_rss(self.config["initial_accumulator_value"], self.hyper("epsilon", lr)),
                           optax.scale(-lr))


OPTIMIZERS: dict[str, type[Optimizer]] = {"SGD": SGD, "Adam": Adam, "AdamW": Adam, "RMSprop": RMSprop,
                                          "Adagrad": Adagrad, "Nadam": Nadam, "Adamax": Adamax,
                                          "Adadelta": Adadelta, "Lion": Lion, "Ftrl": Ftrl}


def create(spec: dict) -> Optimizer:
    """The optimizer of a TrainingSpec entry ``{"kind": ..., "config": {...}}``."""
    kind = spec["kind"]
    if kind not in OPTIMIZERS:
        raise NotImplementedError(f"the jax backend has no optimizer {kind!r}; it has {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[kind](dict(spec["config"]))

