"""Losses: Keras's definitions, as config for the backends.

Every loss is reduced Keras's default way (``sum_over_batch_size``: the mean
over samples of the per-sample loss). The per-sample definitions, which the
NumPy reference writes out and every backend must follow:

* ``categorical_crossentropy``: probabilities are renormalised to sum to one,
  clipped to ``[eps, 1-eps]`` (eps = ``backend.epsilon()`` = 1e-7) and
  ``-sum(y * log(p))`` taken over the last axis; with ``from_logits`` a
  log-softmax is used instead. ``label_smoothing`` ``ls`` mixes ``y`` with
  uniform: ``y*(1-ls) + ls/C`` over ``C`` classes.
* ``sparse_categorical_crossentropy``: the same with integer labels (no
  ``label_smoothing``, as in Keras); labels are shaped like the output
  without its last axis, e.g. ``(batch,)`` or ``(batch, T)``.
* ``binary_crossentropy``: ``p`` clipped to ``[eps, 1-eps]``, then
  ``-(y log p + (1-y) log(1-p))`` averaged over the last axis; with
  ``from_logits`` the stable ``max(x,0) - x*y + log(1+exp(-|x|))``.
  ``label_smoothing`` ``ls``: ``y*(1-ls) + ls/2``.
* ``mean_squared_error`` / ``mean_absolute_error``: mean over the last axis.
"""

from __future__ import annotations

from typing import Any

KINDS = ("categorical_crossentropy", "sparse_categorical_crossentropy", "binary_crossentropy",
         "mean_squared_error", "mean_absolute_error")

_ALIASES = {"mse": "mean_squared_error", "mae": "mean_absolute_error", "MSE": "mean_squared_error",
            "MAE": "mean_absolute_error", "crossentropy": "categorical_crossentropy"}


class Loss:
    kind = ""
    options: tuple[str, ...] = ()

    def __init__(self, name: str | None = None, reduction: str = "sum_over_batch_size", **config: Any):
        if reduction not in ("sum_over_batch_size", "auto"):
            raise NotImplementedError(f"loss reduction {reduction!r} is not supported; only 'sum_over_batch_size'")
        self.name = name or self.kind
        self.config = config

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "reduction": "sum_over_batch_size", **self.config}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def to_spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "config": dict(self.config)}


class CategoricalCrossentropy(Loss):
    kind = "categorical_crossentropy"

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1, **kwargs):
        if axis != -1:
            raise NotImplementedError("CategoricalCrossentropy supports axis=-1 only")
        super().__init__(from_logits=bool(from_logits), label_smoothing=float(label_smoothing), **kwargs)


class SparseCategoricalCrossentropy(Loss):
    kind = "sparse_categorical_crossentropy"

    def __init__(self, from_logits: bool = False, ignore_class=None, **kwargs):
        if ignore_class is not None:
            raise NotImplementedError("SparseCategoricalCrossentropy(ignore_class=...) is not supported yet")
        super().__init__(from_logits=bool(from_logits), **kwargs)


class BinaryCrossentropy(Loss):
    kind = "binary_crossentropy"

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1, **kwargs):
        if axis != -1:
            raise NotImplementedError("BinaryCrossentropy supports axis=-1 only")
        super().__init__(from_logits=bool(from_logits), label_smoothing=float(label_smoothing), **kwargs)


class MeanSquaredError(Loss):
    kind = "mean_squared_error"


class MeanAbsoluteError(Loss):
    kind = "mean_absolute_error"


_CLASSES = {cls.kind: cls for cls in (CategoricalCrossentropy, SparseCategoricalCrossentropy, BinaryCrossentropy,
                                      MeanSquaredError, MeanAbsoluteError)}


def _function(kind: str):
    def loss(y_true, y_pred):
        raise TypeError(f"polykeras losses are computed by the backend; pass loss={kind!r} to compile()")

    loss.__name__ = kind
    return loss


categorical_crossentropy = _function("categorical_crossentropy")
sparse_categorical_crossentropy = _function("sparse_categorical_crossentropy")
binary_crossentropy = _function("binary_crossentropy")
mean_squared_error = mse = _function("mean_squared_error")
mean_absolute_error = mae = _function("mean_absolute_error")


def get(identifier) -> Loss:
    """Resolve a name (``"mse"``), a loss function, a class, a config dict or an instance."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if callable(identifier) and getattr(identifier, "__name__", None) in _CLASSES:
        identifier = identifier.__name__
    if isinstance(identifier, dict):
        name = identifier.get("class_name", "")
        cls = next((c for c in _CLASSES.values() if c.__name__ == name), None)
        if cls is None:
            raise ValueError(f"unknown loss {name!r}; valid: {', '.join(c.__name__ for c in _CLASSES.values())}")
        return cls.from_config(identifier.get("config", {}))
    if isinstance(identifier, str):
        kind = _ALIASES.get(identifier, identifier)
        if kind not in _CLASSES:
            valid = sorted(set(_CLASSES) | set(_ALIASES))
            raise ValueError(f"unknown loss {identifier!r}; valid names: {', '.join(valid)}")
        return _CLASSES[kind]()
    raise TypeError(
        f"loss {identifier!r} is not supported: polykeras backends implement the named Keras losses "
        f"({', '.join(KINDS)}); custom Python loss functions cannot run on every backend"
    )


def serialize(loss: Loss) -> dict[str, Any]:
    return {"class_name": type(loss).__name__, "config": loss.get_config()}
