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
* ``mean_absolute_percentage_error``: ``100 * mean(|y - p| / max(|y|, eps))``.
* ``mean_squared_logarithmic_error``:
  ``mean((log(max(p, eps) + 1) - log(max(y, eps) + 1))**2)``.
* ``huber`` (``delta``, default 1): with ``e = p - y``, ``e**2 / 2`` where
  ``|e| <= delta``, else ``delta*|e| - delta**2 / 2``; mean over the last axis.
* ``log_cosh``: ``mean(e + softplus(-2e) - log 2)``, ``log(cosh(e))`` written
  so that it does not overflow for large ``|e|``.
* ``hinge`` / ``squared_hinge``: ``mean(max(1 - y*p, 0))`` and the mean of its
  square; when every label of the batch is 0 or 1 they are first mapped to
  -1 / 1 (``2y - 1``), as Keras does.
* ``kl_divergence``: ``y`` and ``p`` clipped to ``[eps, 1]``, then
  ``sum(y * log(y / p))`` over the last axis (a sum, not a mean).
* ``poisson``: ``mean(p - y * log(p + eps))``.
* ``cosine_similarity`` (``axis=-1`` only): both vectors l2-normalised as
  Keras's ``normalize`` does, ``x * min(1/sqrt(sum(x**2)), 1/eps)``, then
  ``-sum(y_n * p_n)`` (-1 when aligned, 0 when orthogonal or either is zero).
  Backends write the factor ``rsqrt(max(sum(x**2), eps**2))``: the same value,
  and a finite gradient at a zero vector, where Keras's own gradient is NaN.

A loss *function* of your own, ``fn(y_true, y_pred)`` written with
:mod:`polykeras.ops` (or a :class:`Loss` subclass with a ``call(y_true, y_pred)``
method), is traced into an op graph that every backend runs: kind ``"function"``,
see :mod:`polykeras.functions` for its semantics.
"""

from __future__ import annotations

from typing import Any

from polykeras.functions import TracedFunction
from polykeras.saving.registration import get_registered_name, get_registered_object, require_registered

KINDS = ("categorical_crossentropy", "sparse_categorical_crossentropy", "binary_crossentropy",
         "mean_squared_error", "mean_absolute_error", "mean_absolute_percentage_error",
         "mean_squared_logarithmic_error", "huber", "log_cosh", "hinge", "squared_hinge", "kl_divergence", "poisson",
         "cosine_similarity")

_ALIASES = {"mse": "mean_squared_error", "mae": "mean_absolute_error", "MSE": "mean_squared_error",
            "MAE": "mean_absolute_error", "crossentropy": "categorical_crossentropy",
            "bce": "binary_crossentropy", "BCE": "binary_crossentropy", "mape": "mean_absolute_percentage_error",
            "MAPE": "mean_absolute_percentage_error", "msle": "mean_squared_logarithmic_error",
            "MSLE": "mean_squared_logarithmic_error", "kld": "kl_divergence", "KLD": "kl_divergence",
            "kullback_leibler_divergence": "kl_divergence", "logcosh": "log_cosh"}


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

    def to_spec(self, output_shape: tuple | None = None, y_ndim: int | None = None) -> dict[str, Any]:
        """The backend-facing ``{"kind", "config"}``; a traced loss needs the model's output shape and the
        targets' rank."""
        if self.kind:
            return {"kind": self.kind, "config": dict(self.config)}
        if not callable(getattr(self, "call", None)):
            raise NotImplementedError(f"{type(self).__name__} subclasses Loss without a call(y_true, y_pred) method; "
                                      "write call() with polykeras.ops")
        if output_shape is None or y_ndim is None:
            raise ValueError(f"loss {self.name!r} is traced for a model's output shape and target rank; compile a "
                             "model with it")
        if not hasattr(self, "_traced"):
            self._traced = TracedFunction(self.call, "loss")
            self._traced.name = self.name or self._traced.name
        return {"kind": "function", "config": {"name": self.name or self._traced.name,
                                               "graph": self._traced.graph(output_shape, y_ndim)}}


class LossFunctionWrapper(Loss):
    """Keras's wrapper of a loss function ``fn(y_true, y_pred)``, written with :mod:`polykeras.ops`
    (what ``compile(loss=fn)`` makes of a function)."""

    def __init__(self, fn, reduction: str = "sum_over_batch_size", name: str | None = None, **kwargs):
        self._traced = TracedFunction(fn, "loss")
        self.fn = fn
        super().__init__(name=name or self._traced.name, reduction=reduction, **kwargs)

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "reduction": "sum_over_batch_size", "fn": get_registered_name(self.fn)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(require_registered(config.pop("fn"), "loss function"), **config)


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


class MeanAbsolutePercentageError(Loss):
    kind = "mean_absolute_percentage_error"


class MeanSquaredLogarithmicError(Loss):
    kind = "mean_squared_logarithmic_error"


class Huber(Loss):
    kind = "huber"

    def __init__(self, delta: float = 1.0, name: str | None = "huber_loss", **kwargs):
        delta = float(delta)
        if not 0 < delta < float("inf"):
            raise ValueError(f"Huber(delta=...) must be a positive number (the error size where the loss turns "
                             f"from quadratic to linear), got {delta!r}")
        super().__init__(name=name, delta=delta, **kwargs)


class LogCosh(Loss):
    kind = "log_cosh"


class Hinge(Loss):
    kind = "hinge"


class SquaredHinge(Loss):
    kind = "squared_hinge"


class KLDivergence(Loss):
    kind = "kl_divergence"


class Poisson(Loss):
    kind = "poisson"


class CosineSimilarity(Loss):
    kind = "cosine_similarity"

    def __init__(self, axis: int = -1, **kwargs):
        if axis != -1:
            raise NotImplementedError(f"CosineSimilarity supports axis=-1 only (the last axis), got axis={axis!r}")
        super().__init__(axis=-1, **kwargs)


_CLASSES = {cls.kind: cls for cls in (CategoricalCrossentropy, SparseCategoricalCrossentropy, BinaryCrossentropy,
                                      MeanSquaredError, MeanAbsoluteError, MeanAbsolutePercentageError,
                                      MeanSquaredLogarithmicError, Huber, LogCosh, Hinge, SquaredHinge, KLDivergence,
                                      Poisson, CosineSimilarity)}
_BY_CLASS_NAME = {cls.__name__: cls for cls in _CLASSES.values()}


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
mean_absolute_percentage_error = mape = _function("mean_absolute_percentage_error")
mean_squared_logarithmic_error = msle = _function("mean_squared_logarithmic_error")
huber = _function("huber")
log_cosh = logcosh = _function("log_cosh")
hinge = _function("hinge")
squared_hinge = _function("squared_hinge")
kl_divergence = kld = _function("kl_divergence")
poisson = _function("poisson")
cosine_similarity = _function("cosine_similarity")


def get(identifier) -> Loss:
    """Resolve a name (``"mse"``, ``"huber"``, or a class name as Keras accepts it, ``"Huber"``), a loss
    function, a class, a config dict or an instance."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if callable(identifier) and getattr(identifier, "__name__", None) in _CLASSES:
        identifier = identifier.__name__
    if isinstance(identifier, dict):
        name = identifier.get("class_name", "")
        cls = _BY_CLASS_NAME.get(name) or get_registered_object(name)
        if name == "function":  # a function of the user's, saved by name (``serialize``)
            return LossFunctionWrapper(require_registered(identifier["config"], "loss function"))
        if not (isinstance(cls, type) and issubclass(cls, Loss)):
            raise ValueError(f"unknown loss {name!r}; valid: {', '.join(_BY_CLASS_NAME)}, or a Loss subclass "
                             "registered with @register_keras_serializable or given in custom_objects")
        return cls.from_config(identifier.get("config", {}))
    if isinstance(identifier, str):
        if identifier in _BY_CLASS_NAME:
            return _BY_CLASS_NAME[identifier]()
        kind = _ALIASES.get(identifier, identifier)
        if kind not in _CLASSES:
            registered = get_registered_object(identifier)
            if registered is not None:
                return get(registered)
            valid = sorted(set(_CLASSES) | set(_ALIASES))
            raise ValueError(f"unknown loss {identifier!r}; valid names: {', '.join(valid)}; a function of your own "
                             "is found by name when registered with @register_keras_serializable or given in "
                             "load_model(custom_objects=...)")
        return _CLASSES[kind]()
    if callable(identifier) and not isinstance(identifier, type):
        return LossFunctionWrapper(identifier)
    raise TypeError(f"cannot interpret {identifier!r} as a loss: give a name ({', '.join(KINDS)}), a Loss object, or "
                    "a function fn(y_true, y_pred) written with polykeras.ops")


def serialize(loss: Loss) -> dict[str, Any]:
    """``{"class_name", "config"}``; a loss function as ``{"class_name": "function", "config": its
    (registered) name}``, as Keras writes one."""
    if isinstance(loss, LossFunctionWrapper):
        return {"class_name": "function", "config": get_registered_name(loss.fn)}
    return {"class_name": get_registered_name(loss) if not loss.kind else type(loss).__name__,
            "config": loss.get_config()}
