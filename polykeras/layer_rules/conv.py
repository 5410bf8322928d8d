"""Convolutions and pooling (Keras 3 / TensorFlow semantics, channels_last).

* Convolution is cross-correlation, as Keras and TensorFlow compute it (the
  kernel is *not* flipped); kernels are ``(*kernel_size, in, filters)``.
  ``dilation_rate`` is supported. With ``groups`` (Keras's grouped
  convolution), the input channels and the filters are split into
  ``groups`` contiguous blocks, block ``g`` of the filters seeing only
  block ``g`` of the channels: kernels ``(*kernel_size, in // groups, filters)``.
* Padding is TensorFlow's (:func:`padding_amounts`): ``"same"`` gives
  ``out = ceil(in / stride)`` and splits the total padding
  ``max((out - 1) * stride + k_eff - in, 0)`` with the smaller half *before*
  (top/left) and the rest after, where ``k_eff = (k - 1) * dilation + 1``;
  ``"causal"`` (Conv1D only) pads ``k_eff - 1`` on the left only.
* Pooling: ``strides`` defaults to ``pool_size``; padding ``valid`` or
  ``same`` as above. Max pooling pads with ``-inf`` (padding never wins);
  average pooling divides each window's sum by the number of *real*
  (non-padded) elements in it (:meth:`PoolingRules.real_counts`), as
  ``tf.nn.avg_pool`` does.
* Global average pooling is the mean over the spatial axes, global max
  pooling the maximum; ``keepdims`` keeps them with size 1. A tie for a
  global maximum shares the gradient equally among the tied elements, as the
  gradient of a max reduction does in TensorFlow, torch (``amax``) and jax --
  unlike windowed max pooling, whose gradient goes to one element.
"""

from __future__ import annotations

import itertools
from typing import ClassVar

import numpy as np

from polykeras.spec import Shape

from .base import LayerRules, as_tuple


def padding_amounts(size: int, k: int, stride: int, dilation: int, padding: str, layer: str) -> tuple[int, int, int]:
    """TensorFlow's ``(pad_before, pad_after, out_size)`` along one spatial axis."""
    k_eff = (k - 1) * dilation + 1
    if padding == "valid":
        before = after = 0
        out = (size - k_eff) // stride + 1
    elif padding == "same":
        out = -(-size // stride)  # ceil
        total = max((out - 1) * stride + k_eff - size, 0)
        before, after = total // 2, total - total // 2
    elif padding == "causal":
        before, after = k_eff - 1, 0
        out = (size + before - k_eff) // stride + 1
    else:
        raise ValueError(f"layer {layer!r}: unknown padding {padding!r}; expected 'valid', 'same' or 'causal'")
    if out <= 0:
        raise ValueError(
            f"layer {layer!r}: input size {size} is too small for a window of {k_eff} "
            f"with padding={padding!r}"
        )
    return before, after, out


def window(i0: int, j0: int, out_h: int, out_w: int, sh: int, sw: int) -> tuple[slice, ...]:
    """Index of the ``(batch, out_h, out_w, C)`` strided view that window
    position ``(i0, j0)`` (already multiplied by the dilation) sees on a padded
    NHWC array."""
    return (
        slice(None),
        slice(i0, i0 + (out_h - 1) * sh + 1, sh),
        slice(j0, j0 + (out_w - 1) * sw + 1, sw),
    )


class _Windowed(LayerRules):
    """What convolutions and pooling share: a window sliding over ``rank``
    spatial axes with ``strides``, ``dilation_rate`` and ``padding``."""

    rank: ClassVar[int] = 2
    paddings: ClassVar[tuple[str, ...]] = ("valid", "same")
    expected_padding: ClassVar[str] = "'valid' or 'same'"
    window_size: tuple[int, ...]
    strides: tuple[int, ...]
    dilation_rate: tuple[int, ...]

    def _read_padding(self) -> str:
        padding = str(self.config.get("padding", "valid")).lower()
        if padding not in self.paddings:
            raise ValueError(f"{self.spec.kind} layer {self.name!r}: padding={padding!r}; expected "
                             f"{self.expected_padding}")
        return padding

    def padding_amounts(self, sizes) -> list[tuple[int, int, int]]:
        """``(before, after, out)`` for each spatial axis of sizes ``sizes``."""
        return [padding_amounts(int(size), k, s, d, self.padding, self.name)
                for size, k, s, d in zip(sizes, self.window_size, self.strides, self.dilation_rate)]

    def _spatial_output(self, input_shape: Shape) -> tuple:
        sizes = input_shape[1:-1]
        if None in sizes:  # unknown lengths: only the rule, not the sizes
            return tuple(None if n is None else padding_amounts(n, k, s, d, self.padding, self.name)[2]
                         for n, k, s, d in zip(sizes, self.window_size, self.strides, self.dilation_rate))
        return tuple(out for _, _, out in self.padding_amounts(sizes))


class ConvRules(_Windowed):
    """``filters``, ``kernel_size``/``strides``/``dilation_rate`` (tuples of
    ``rank`` ints), ``padding``, ``groups`` (dividing the input channels and
    the filters), ``activation``, ``use_bias``."""

    expected_padding = "one of ('valid', 'same')"

    def __init__(self, spec, backend="polykeras"):
        super().__init__(spec, backend)
        cfg, name, n = self.config, self.name, self.rank
        self.filters = int(cfg["filters"])
        self.kernel_size = as_tuple(cfg["kernel_size"], n, "kernel_size", name)
        self.strides = as_tuple(cfg.get("strides", 1), n, "strides", name)
        self.dilation_rate = as_tuple(cfg.get("dilation_rate", 1), n, "dilation_rate", name)
        self.window_size = self.kernel_size
        self.padding = self._read_padding()
        self.require_channels_last()
        self.groups = int(cfg.get("groups", 1) or 1)
        channels = spec.input_shapes[0][-1] if spec.input_shapes else None  # (a ConvLSTM's states may follow)
        if self.groups <= 0 or self.filters % self.groups or (channels is not None and channels % self.groups):
            raise ValueError(f"{self.spec.kind} layer {name!r}: groups={self.groups} must be positive and divide "
                             f"both filters={self.filters} and the input channels ({channels})")
        self.activation = cfg.get("activation", "linear")
        self.use_bias = bool(cfg.get("use_bias", True))

    def output_shape(self, input_shape: Shape) -> Shape:
        return (input_shape[0],) + self._spatial_output(input_shape) + (self.filters,)


class Conv2DRules(ConvRules):
    kind = "Conv2D"


class Conv1DRules(ConvRules):
    kind = "Conv1D"
    rank = 1
    paddings = ("valid", "same", "causal")
    expected_padding = "one of ('valid', 'same', 'causal')"


class PoolingRules(_Windowed):
    """``pool_size`` and ``strides`` (tuples of ``rank`` ints; ``strides``
    defaults to ``pool_size``), ``padding``, and ``pad_value``: what padding
    holds (``-inf`` for max pooling)."""

    pad_value: ClassVar[float] = 0.0

    def __init__(self, spec, backend="polykeras"):
        super().__init__(spec, backend)
        cfg, name, n = self.config, self.name, self.rank
        self.pool_size = as_tuple(cfg.get("pool_size", 2), n, "pool_size", name)
        strides = cfg.get("strides")
        self.strides = self.pool_size if strides is None else as_tuple(strides, n, "strides", name)
        self.dilation_rate = (1,) * n
        self.window_size = self.pool_size
        self.padding = self._read_padding()
        self.require_channels_last()

    def output_shape(self, input_shape: Shape) -> Shape:
        return (input_shape[0],) + self._spatial_output(input_shape) + (input_shape[-1],)

    def real_counts(self, sizes, dtype=np.float64) -> np.ndarray:
        """How many real (non-padding) elements each output window covers, for
        spatial ``sizes``, shaped ``(1, *out_sizes, 1)`` to broadcast over
        batch and channels."""
        amounts = self.padding_amounts(sizes)
        real = np.zeros((1, *(b + int(n) + a for (b, a, _), n in zip(amounts, sizes)), 1), dtype=dtype)
        real[(slice(None), *(slice(b, b + int(n)) for (b, _, _), n in zip(amounts, sizes)))] = 1.0
        counts = 0
        for offsets in itertools.product(*(range(p) for p in self.pool_size)):
            counts = counts + real[(slice(None), *(slice(o, o + (out - 1) * s + 1, s) for o, (_, _, out), s
                                                   in zip(offsets, amounts, self.strides)))]
        return counts


class MaxPooling2DRules(PoolingRules):
    kind = "MaxPooling2D"
    pad_value = -np.inf


class MaxPooling1DRules(MaxPooling2DRules):
    kind = "MaxPooling1D"
    rank = 1


class AveragePooling2DRules(PoolingRules):
    kind = "AveragePooling2D"


class AveragePooling1DRules(AveragePooling2DRules):
    kind = "AveragePooling1D"
    rank = 1


class GlobalPoolingRules(LayerRules):
    """``axes`` (the spatial axes reduced over) and ``keepdims``."""

    axes: ClassVar[tuple[int, ...]] = (1, 2)

    def __init__(self, spec, backend="polykeras"):
        super().__init__(spec, backend)
        self.keepdims = bool(self.config.get("keepdims", False))
        self.require_channels_last()

    def output_shape(self, input_shape: Shape) -> Shape:
        if self.keepdims:
            return tuple(1 if a in self.axes else d for a, d in enumerate(input_shape))
        return tuple(d for a, d in enumerate(input_shape) if a not in self.axes)


class GlobalAveragePooling2DRules(GlobalPoolingRules):
    kind = "GlobalAveragePooling2D"


class GlobalAveragePooling1DRules(GlobalPoolingRules):
    kind = "GlobalAveragePooling1D"
    axes = (1,)


class GlobalMaxPooling2DRules(GlobalPoolingRules):
    kind = "GlobalMaxPooling2D"


class GlobalMaxPooling1DRules(GlobalPoolingRules):
    kind = "GlobalMaxPooling1D"
    axes = (1,)
