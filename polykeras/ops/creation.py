"""Ops that make arrays from static facts: ``arange``, ``zeros``, ``ones``,
``full``, ``eye``, ``zeros_like``, ``ones_like``, ``full_like``; and ``shape``.

Their dtype defaults follow Keras: ``floatx()`` for ``zeros``/``ones``/``eye``
and for ``full`` of a float, ``int32`` for ``arange`` of ints. None has a
gradient (the ``*_like`` ops take only the shape and dtype of their input).
"""

from __future__ import annotations

import numpy as np

from polykeras import backend

from .registry import register


def _float(dtype):
    return dtype or backend.floatx()


def _arange(start=0, stop=None, step=1, dtype=None):
    if stop is None:
        start, stop = 0, start
    if dtype is None:
        dtype = "int32" if all(isinstance(v, (int, np.integer)) for v in (start, stop, step)) else backend.floatx()
    return np.arange(start, stop, step, dtype=dtype)


register("arange", (), _arange, None, "evenly spaced values in [start, stop)", start=0, stop=None, step=1, dtype=None)
register("zeros", (), lambda shape=None, dtype=None: np.zeros(shape, _float(dtype)), None, "zeros of shape",
         shape=None, dtype=None)
register("ones", (), lambda shape=None, dtype=None: np.ones(shape, _float(dtype)), None, "ones of shape",
         shape=None, dtype=None)
register("full", (), lambda shape=None, fill_value=None, dtype=None: np.full(shape, fill_value, _float(dtype)), None,
         "shape filled with fill_value", shape=None, fill_value=None, dtype=None)
register("eye", (), lambda N=None, M=None, k=0, dtype=None: np.eye(N, M, k, dtype=_float(dtype)), None,
         "the N x M identity (ones on the k-th diagonal)", N=None, M=None, k=0, dtype=None)
register("zeros_like", ("x",), lambda x, dtype=None: np.zeros_like(x, dtype=dtype), None, "zeros shaped like x",
         dtype=None)
register("ones_like", ("x",), lambda x, dtype=None: np.ones_like(x, dtype=dtype), None, "ones shaped like x",
         dtype=None)
register("full_like", ("x",), lambda x, fill_value=None, dtype=None: np.full_like(x, fill_value, dtype=dtype), None,
         "x's shape filled with fill_value", fill_value=None, dtype=None)
