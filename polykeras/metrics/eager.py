"""Metric objects used by hand, on arrays: ``update_state`` / ``result`` / ``reset_state``
(Keras's stateful metric API, in custom loops and callbacks), and the :class:`Mean` /
:class:`Sum` trackers.

A built-in metric's batch statistics come from the NumPy reference backend's code of
that metric (the one every backend is checked against; found through its plugin's
:class:`~polykeras.backends.BackendInfo`, ``eager_metrics``): every ``update_state`` is
treated as a ``weighted_metrics`` entry (Keras's ``MeanMetricWrapper`` honours
``sample_weight`` when called by hand), its statistics are summed, and
:func:`polykeras.metrics.statistics.value` turns the sums into the result -- the same
path as a compiled metric's. Inputs are cast to the metric's ``dtype`` (``floatx()`` by
default), as Keras casts them, and sums are kept in it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from polykeras import backend as _backend
from polykeras.metrics.statistics import MEAN_KINDS
from polykeras.spec import MetricSpec

#: The backend whose metric code runs eager metrics.
REFERENCE = "numpy"
#: Kinds whose values Keras computes per element before its ``Mean`` reduces each sample (a vector's
#: elements are samples); the other mean kinds reduce the last axis first.
_ELEMENTWISE = ("binary_accuracy", "root_mean_squared_error")


def to_numpy(x) -> np.ndarray:
    """An array from a NumPy array, a list, or a framework tensor (detached, on the host)."""
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def dtype_of(metric) -> np.dtype:
    return np.dtype(getattr(metric, "dtype", None) or _backend.floatx())


def _statistics_function(spec: MetricSpec):
    from polykeras.backends import _resolve, find_backend

    info = find_backend(REFERENCE)
    if info.eager_metrics is None:
        raise NotImplementedError(f"backend {REFERENCE!r} declares no eager metric code (BackendInfo.eager_metrics)")
    return _resolve(info.eager_metrics)(spec)


def update(metric, y_true, y_pred, sample_weight=None) -> None:
    """Add one batch's statistics to a built-in metric's state."""
    dtype = dtype_of(metric)
    spec = metric.to_spec(weighted=True)
    state = getattr(metric, "_eager", None)
    if state is None or state[0] != spec:
        state = (spec, None, None)
    spec, fn, sums = state
    fn = fn or _statistics_function(spec)  # (dropped when the object is pickled: Metric.__getstate__)
    y, p = to_numpy(y_true), to_numpy(y_pred).astype(dtype)
    if y.dtype.kind in "fb":
        y = y.astype(dtype)
    w = None if sample_weight is None else to_numpy(sample_weight).astype(dtype)
    if p.ndim == 1 and spec.kind in _ELEMENTWISE:  # vectors, as Keras reduces them: each element a sample
        y, p = y[:, None], p[:, None]
    elif p.ndim == 1 and spec.kind in MEAN_KINDS:  # the whole vector one sample (Keras's last-axis means)
        y, p = y[None], p[None]
        w = None if w is None else w.reshape(1, -1).mean(axis=1)
    stats = np.asarray(fn(y, p, w), dtype=dtype)
    metric._eager = (spec, fn, stats if sums is None else sums + stats)


def result(metric):
    """The metric's value over the batches since the last reset (Keras's value with no batch: 0)."""
    from polykeras.metrics.statistics import statistics_shape, value

    dtype = dtype_of(metric)
    state = getattr(metric, "_eager", None)
    if state is None or state[2] is None:
        spec = metric.to_spec(weighted=True)
        return dtype.type(value(spec, np.zeros(statistics_shape(spec))))
    return dtype.type(value(state[0], state[2]))


class MetricVariable:
    """A metric's state variable (``Metric.add_variable``): a NumPy value with Keras's ``assign``,
    ``assign_add`` and ``value``."""

    def __init__(self, value: np.ndarray, name: str | None = None):
        self._initial = np.array(value)
        self._value = np.array(value)
        self.name = name

    @property
    def value(self) -> np.ndarray:
        return self._value

    @property
    def shape(self) -> tuple:
        return self._value.shape

    @property
    def dtype(self) -> str:
        return str(self._value.dtype)

    def numpy(self) -> np.ndarray:
        return self._value.copy()

    def assign(self, value) -> None:
        self._value = np.asarray(to_numpy(value), dtype=self._value.dtype).reshape(self._value.shape).copy()

    def assign_add(self, value) -> None:
        self.assign(self._value + to_numpy(value))

    def assign_sub(self, value) -> None:
        self.assign(self._value - to_numpy(value))

    def reset(self) -> None:
        self._value = self._initial.copy()

    def __array__(self, dtype=None, copy=None):
        return self._value if dtype is None else self._value.astype(dtype)

    def __float__(self) -> float:
        return float(self._value)

    def __repr__(self) -> str:
        return f"<MetricVariable {self.name} value={self._value!r}>"

    def __add__(self, other):
        return self._value + np.asarray(other)

    def __sub__(self, other):
        return self._value - np.asarray(other)

    def __mul__(self, other):
        return self._value * np.asarray(other)

    def __truediv__(self, other):
        return self._value / np.asarray(other)

    def __radd__(self, other):
        return np.asarray(other) + self._value

    def __rsub__(self, other):
        return np.asarray(other) - self._value

    def __rmul__(self, other):
        return np.asarray(other) * self._value

    def __rtruediv__(self, other):
        return np.asarray(other) / self._value


def make_variable(metric, shape, initializer="zeros", dtype=None, name: str | None = None) -> MetricVariable:
    """``Metric.add_variable``: a variable of ``shape`` from a Keras initializer (name or object)."""
    from polykeras import initializers

    dtype = str(np.dtype(dtype or dtype_of(metric)))
    shape = tuple(shape or ())
    init = initializers.get(initializer) if isinstance(initializer, (str, dict)) else initializer
    value = np.asarray(init(shape, dtype=dtype) if callable(init) else init, dtype=dtype).reshape(shape)
    variable = MetricVariable(value, name)
    metric.__dict__.setdefault("_variables", []).append(variable)
    return variable


class _Reduction:
    """Keras's ``Mean``/``Sum`` state: ``reduce_to_samplewise_values`` in NumPy."""

    default_name = ""

    def __init__(self, name: str | None = None, dtype=None):
        self.name = name or self.default_name
        self.dtype = dtype
        self.reset_state()

    def _samplewise(self, values, sample_weight, reduce):
        dtype = dtype_of(self)
        values = to_numpy(values).astype(dtype)
        w = None
        if sample_weight is not None:
            w = to_numpy(sample_weight).astype(dtype)
            if values.ndim == w.ndim + 1 and values.shape[-1] == 1:  # squeeze_or_expand_to_same_rank
                w, values = (w[..., None], values) if w.ndim == 1 else (w, values[..., 0])
            elif w.ndim == values.ndim + 1 and w.shape[-1] == 1:
                values, w = (values[..., None], w) if values.ndim == 1 else (values, w[..., 0])
            if values.ndim > w.ndim:
                values = reduce(values, axis=tuple(range(w.ndim, values.ndim)))
            w = np.broadcast_to(w, values.shape)
            values = values * w
            if w.ndim > 1:
                w = reduce(w, axis=tuple(range(1, w.ndim)))
        if values.ndim > 1:
            values = reduce(values, axis=tuple(range(1, values.ndim)))
        return values, w

    def __call__(self, *args, **kwargs):
        self.update_state(*args, **kwargs)
        return self.result()

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def reset_states(self) -> None:
        self.reset_state()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name}>"


class Sum(_Reduction):
    """Keras's ``Sum``: the (weighted) sum of the values given to ``update_state``."""

    default_name = "sum"

    def reset_state(self) -> None:
        self.total = dtype_of(self).type(0)

    def update_state(self, values, sample_weight=None) -> None:
        values, _ = self._samplewise(values, sample_weight, np.sum)
        self.total = dtype_of(self).type(self.total + np.sum(values))

    def result(self):
        return dtype_of(self).type(self.total)


class Mean(_Reduction):
    """Keras's ``Mean``: the (weighted) mean of the values given to ``update_state`` -- a loss
    tracker in a custom loop. Each sample's values are averaged first (over the axes its weight
    lacks); 0 before any update."""

    default_name = "mean"

    def reset_state(self) -> None:
        self.total = self.count = dtype_of(self).type(0)

    def update_state(self, values, sample_weight=None) -> None:
        values, w = self._samplewise(values, sample_weight, np.mean)
        dtype = dtype_of(self)
        self.total = dtype.type(self.total + np.sum(values))
        count = np.sum(w) if w is not None else (values.shape[0] if values.ndim >= 1 else 1)
        self.count = dtype.type(self.count + count)

    def result(self):
        return dtype_of(self).type(self.total / self.count if self.count != 0 else 0.0)
