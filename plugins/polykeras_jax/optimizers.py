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
                                          "Adagrad": Adagrad}


def create(spec: dict) -> Optimizer:
    """The optimizer of a TrainingSpec entry ``{"kind": ..., "config": {...}}``."""
    kind = spec["kind"]
    if kind not in OPTIMIZERS:
        raise NotImplementedError(f"the jax backend has no optimizer {kind!r}; it has {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[kind](dict(spec["config"]))

