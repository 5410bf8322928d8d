"""Normalization: feature-wise standardization with statistics given or learned by ``adapt`` (Keras 3
semantics; the rules are :class:`polykeras.layer_rules.noise.NormalizationRules`).

Given ``mean`` and ``variance`` the layer has no weights (the config carries them, as Keras's does);
otherwise it has Keras's three non-trainable weights ``mean``, ``variance`` (the kept axes' shape) and
``count`` (a scalar Keras keeps for old files, unused), which :meth:`Normalization.adapt` sets.
"""

from __future__ import annotations

import math

import numpy as np

from polykeras.layers.base import Layer


class Normalization(Layer):
    """``(x - mean) / max(sqrt(variance), 1e-7)``, or with ``invert`` ``mean + x * max(sqrt(variance), 1e-7)``."""

    supports_masking = True

    def __init__(self, axis=-1, mean=None, variance=None, invert: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.axis = () if axis is None else (int(axis),) if isinstance(axis, (int, np.integer)) else tuple(
            int(a) for a in axis)
        if (mean is None) != (variance is None):
            raise ValueError(f"Normalization {self.name!r}: give both mean and variance, or neither (to adapt); got "
                             f"mean={mean!r}, variance={variance!r}")
        if mean is not None and np.shape(mean) != np.shape(variance):
            raise ValueError(f"Normalization {self.name!r}: mean and variance must have the same shape, got "
                             f"{np.shape(mean)} and {np.shape(variance)}")
        self.mean, self.variance = _plain(mean), _plain(variance)
        self.invert = bool(invert)

    def _rules(self, input_shape):
        from polykeras.layers.reshaping import _rules

        return _rules(self, input_shape)

    def build(self, input_shape):
        rules = self._rules(input_shape)  # checks the axes (and the constants against them)
        if self.mean is None:
            self._add_weight("mean", rules.stats_shape, "zeros", trainable=False)
            self._add_weight("variance", rules.stats_shape, "ones", trainable=False)
            self._add_weight("count", (), "zeros", trainable=False)

    def adapt(self, data) -> None:
        """Set ``mean`` and ``variance`` to the data's, per position of the kept axes: ``data`` is a
        NumPy array (all of it, batch axis first), or an iterable of batches (arrays, or ``(x, ...)``
        tuples whose first entry is taken, as Keras does), combined with Keras's streaming formula."""
        if self.mean is not None:
            raise ValueError(f"Normalization {self.name!r} was given mean and variance; adapt() would not change "
                             "them (Keras ignores them too); build it without them to adapt")
        if isinstance(data, np.ndarray) or hasattr(data, "__array__") and not hasattr(data, "__iter__"):
            batches, whole = iter([np.asarray(data)]), True
        elif hasattr(data, "__len__") and hasattr(data, "__getitem__") and not isinstance(data, (list, tuple)):
            batches, whole = (data[i] for i in range(len(data))), False  # a PyDataset
        elif hasattr(data, "__iter__"):
            batches, whole = iter(data), False
        else:
            raise TypeError(f"Normalization.adapt takes a NumPy array or an iterable of batches, got "
                            f"{type(data).__name__}")
        total_mean = total_var = rules = None
        total = 0
        for batch in batches:
            batch = np.asarray(batch[0] if isinstance(batch, (tuple, list)) else batch, dtype=np.float64)
            if not self.built:
                self.build_for((None,) + batch.shape[1:])
            rules = rules or self._rules(self.input_shape)
            if batch.ndim != len(self.input_shape) or any(batch.shape[a] != n
                                                          for a, n in zip(rules.keep, rules.stats_shape)):
                raise ValueError(f"Normalization {self.name!r}: adapt() got a batch of shape {batch.shape}; the layer "
                                 f"is built for {self.input_shape}, whose kept axes {rules.keep} have sizes "
                                 f"{rules.stats_shape}")
            reduce = tuple(d for d in range(batch.ndim) if d not in rules.keep)
            mean, var = batch.mean(axis=reduce), batch.var(axis=reduce)
            if whole:
                total_mean, total_var = mean, var
                break
            count = math.prod(batch.shape[d] for d in reduce)
            if count == 0:
                continue
            total += count
            new_weight = count / total
            old_weight = 1.0 - new_weight
            if total_mean is None:
                total_mean, total_var = np.zeros_like(mean), np.zeros_like(var)
            new_mean = total_mean * old_weight + mean * new_weight
            total_var = ((total_var + (total_mean - new_mean) ** 2) * old_weight
                         + (var + (mean - new_mean) ** 2) * new_weight)
            total_mean = new_mean
        if total_mean is None:
            raise ValueError(f"Normalization {self.name!r}: adapt() got no data (an empty iterable or batches)")
        count = self.get_weights()[2]
        self.set_weights([total_mean, total_var, count])

    def get_config(self):
        return {**super().get_config(), "axis": list(self.axis), "invert": self.invert, "mean": self.mean,
                "variance": self.variance}


def _plain(value):
    """A number as a float, an array as nested lists (JSON-able, as Keras's config has them); None stays."""
    if value is None:
        return None
    value = np.asarray(value, dtype=np.float64)
    return float(value) if value.ndim == 0 else value.tolist()
