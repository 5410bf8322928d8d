"""Deliberately broken backends: the conformance suite must catch and name each.

Loaded into the suite's worker processes through ``POLYKERAS_PLUGINS`` (see
``tests/test_conformance.py``). Each backend is the NumPy reference with one
classic mistake planted -- the kind a real port makes.
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np

from polykeras.backends import BackendInfo
from polykeras.hookspecs import hookimpl
from polykeras.ops import registry as ops_registry
from polykeras_numpy import activations, optimizers
from polykeras_numpy.backend import NumpyBackend
from polykeras_numpy.layers import KERNELS


def _swap_if(w: np.ndarray, units: int) -> np.ndarray:
    """Swap the input and forget gate blocks of an LSTM weight (last axis)."""
    i, f = w[..., :units].copy(), w[..., units:2 * units].copy()
    out = w.copy()
    out[..., :units], out[..., units:2 * units] = f, i
    return out


class LSTMGatesSwapped(KERNELS["LSTM"]):
    """Reads Keras's i, f, c, o blocks as f, i, c, o (torch's order confusion)."""

    def _swap(self, weights):
        return [_swap_if(w, self.config["units"]) for w in weights]

    def forward(self, weights, x, ctx):
        return super().forward(self._swap(weights), x, ctx)

    def backward(self, weights, cache, dy):
        dx, dws = super().backward(self._swap(weights), cache, dy)
        return dx, [None if g is None else _swap_if(g, self.config["units"]) for g in dws]

    def backward_weights(self, weights, cache, dy):
        return self.backward(weights, cache, dy)[1]


class ConvKernelFlipped(KERNELS["Conv2D"]):
    """Convolution instead of cross-correlation: the kernel is flipped in space."""

    def forward(self, weights, x, ctx):
        return super().forward([weights[0][::-1, ::-1], *weights[1:]], x, ctx)

    def backward(self, weights, cache, dy):
        dx, dws = super().backward([weights[0][::-1, ::-1], *weights[1:]], cache, dy)
        return dx, [dws[0][::-1, ::-1], *dws[1:]]

    def backward_weights(self, weights, cache, dy):
        return self.backward(weights, cache, dy)[1]


class DropoutUnscaled(KERNELS["Dropout"]):
    """Drops units but forgets the 1/(1 - rate) scaling of inverted dropout."""

    def forward(self, weights, x, ctx):
        y, cache = super().forward(weights, x, ctx)
        if ctx.training and self.config["rate"]:
            return y * (1 - self.config["rate"]), cache
        return y, cache


class BatchNormBatchStatsAtInference(KERNELS["BatchNormalization"]):
    """Normalises with the batch's statistics at inference too (train/eval mix-up)."""

    def forward(self, weights, x, ctx):
        if not ctx.training:
            ctx.training = True
            y, cache = super().forward(weights, x, ctx)
            ctx.training, ctx.assignments = False, {}
            return y, cache
        return super().forward(weights, x, ctx)


class SoftmaxWithoutMaxSubtraction(KERNELS["Activation"]):
    """``exp(x) / sum(exp(x))`` as written on paper: overflows for large logits."""

    def forward(self, weights, x, ctx):
        if self.config["activation"] != "softmax":
            return super().forward(weights, x, ctx)
        with np.errstate(over="ignore", invalid="ignore"):
            e = np.exp(x)
            y = e / e.sum(axis=-1, keepdims=True)
        return y, (x, y)

    def backward(self, weights, cache, dy):
        if self.config["activation"] != "softmax":
            return super().backward(weights, cache, dy)
        x, y = cache
        return activations.backward("softmax", x, y, dy), []


class AverageGradientUnscaled(KERNELS["Average"]):
    """The forward divides by the number of inputs; the backward forgets to."""

    def input_grads(self, dy, n):
        return [dy] * n


class SubtractGradientSign(KERNELS["Subtract"]):
    """``d(a - b)/db`` taken as ``+1``: the sign of the second input's gradient lost."""

    def input_grads(self, dy, n):
        return [dy, dy]


class AdamEpsilonInsideSqrt(optimizers.Adam):
    """``sqrt(v + eps)`` instead of Keras's ``sqrt(v) + eps``."""

    def update(self, i, w, g, lr):
        c, t, one = self.config, self.iterations, w.dtype.type(1)
        b1, b2, eps = (w.dtype.type(c[k]) for k in ("beta_1", "beta_2", "epsilon"))
        alpha = lr * np.sqrt(one - b2 ** w.dtype.type(t)) / (one - b1 ** w.dtype.type(t))
        m, v = self.slots[i][:2]
        m += (g - m) * (one - b1)
        v += (g * g - v) * (one - b2)
        w -= alpha * m / np.sqrt(v + eps)


class OpBug(KERNELS["Operation"]):
    """An ``Operation`` kernel with one op's definition replaced (``BUGGY``: op name -> forward, vjp)."""

    BUGGY: dict = {}

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        if self.op.name in self.BUGGY:
            forward, vjp = self.BUGGY[self.op.name]
            self.op = dataclasses.replace(self.op, forward=forward or self.op.forward, vjp=vjp or self.op.vjp)


def _softmax_vjp_without_the_sum(g, y, arrays, axis=-1):
    """``y * g``: the softmax's Jacobian taken as its diagonal (the ``- y * sum(g * y)`` term lost)."""
    return (y * g,)


def _unbiased_var(x, axis=None, keepdims=False):
    """torch.var's default (divided by n - 1) where Keras divides by n."""
    return np.var(x, axis=tuple(axis) if isinstance(axis, (list, tuple)) else axis, keepdims=keepdims, ddof=1)


def _unbiased_var_vjp(g, y, arrays, axis=None, keepdims=False):
    (dx,) = ops_registry.get("var").vjp(g, y, arrays, axis=axis, keepdims=keepdims)
    x = arrays[0]
    n = x.size // np.size(y)
    return (dx * n / (n - 1),)


def _einsum_vjp_transposed(g, y, arrays, subscripts=None):
    """The second operand's gradient with its axes reversed (an output-subscript mix-up)."""
    grads = list(ops_registry.get("einsum").vjp(g, y, arrays, subscripts=subscripts))
    grads[-1] = np.transpose(grads[-1]).reshape(grads[-1].shape)
    return tuple(grads)


def _greater_inclusive(x1, x2):
    """``>=`` for ``>`` (a porting slip that only ties show)."""
    return np.greater_equal(x1, x2)


def _op_bug(**buggy):
    return type("OpBug", (OpBug,), {"BUGGY": buggy})


def _broken(name: str, **overrides):
    backend_class = type(f"Broken_{name}", (NumpyBackend,), {"name": name, **overrides})
    return BackendInfo(name=name, factory=lambda device, dtype: backend_class(device, dtype),
                       layer_kinds=NumpyBackend.layer_kinds, plugin=__name__)


PLANTED = {
    # backend name: (overrides, the level that must catch it, the case group it must name)
    "bug-lstm-gates": ({"kernel_overrides": {"LSTM": LSTMGatesSwapped}}, "L0", "Recurrent"),
    "bug-adam-epsilon": ({"optimizer_overrides": {"Adam": AdamEpsilonInsideSqrt}}, "L1", "Adam"),
    "bug-conv-flip": ({"kernel_overrides": {"Conv2D": ConvKernelFlipped}}, "L0", "Conv2D"),
    "bug-softmax-overflow": ({"kernel_overrides": {"Activation": SoftmaxWithoutMaxSubtraction}}, "L0", "Activation"),
    "bug-dropout-unscaled": ({"kernel_overrides": {"Dropout": DropoutUnscaled}}, "L0", "Dropout"),
    "bug-bn-inference": ({"kernel_overrides": {"BatchNormalization": BatchNormBatchStatsAtInference}}, "L0",
                         "BatchNormalization"),
    "bug-average-grad": ({"kernel_overrides": {"Average": AverageGradientUnscaled}}, "L0", "Average"),
    "bug-subtract-grad": ({"kernel_overrides": {"Subtract": SubtractGradientSign}}, "L0", "Subtract"),
    "bug-op-softmax-vjp": ({"kernel_overrides": {"Operation": _op_bug(softmax=(None, _softmax_vjp_without_the_sum))}},
                           "L0", "Ops: element-wise"),
    "bug-op-unbiased-var": ({"kernel_overrides": {"Operation": _op_bug(var=(_unbiased_var, _unbiased_var_vjp))}},
                            "L0", "Ops: reductions"),
    "bug-op-einsum-vjp": ({"kernel_overrides": {"Operation": _op_bug(einsum=(None, _einsum_vjp_transposed))}},
                          "L0", "Ops: contractions"),
    "bug-op-greater-inclusive": ({"kernel_overrides": {"Operation": _op_bug(greater=(_greater_inclusive, None))}},
                                 "L0", "Ops: comparisons"),
}


class _Crash(NumpyBackend):
    name = "bug-crash"

    def compile(self, *args, **kwargs):
        os._exit(3)  # a segfaulting native extension, as far as the parent can tell


class _Hang(NumpyBackend):
    name = "bug-hang"

    def compile(self, *args, **kwargs):
        time.sleep(3600)


@hookimpl
def polykeras_backends():
    infos = [_broken(name, **overrides) for name, (overrides, _, _) in PLANTED.items()]
    infos += [BackendInfo(name=cls.name, factory=lambda d, t, cls=cls: cls(d, t), layer_kinds=NumpyBackend.layer_kinds,
                          plugin=__name__) for cls in (_Crash, _Hang)]
    return infos
