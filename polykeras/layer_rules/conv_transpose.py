"""Transposed convolutions: Conv1DTranspose and Conv2DTranspose (Keras 3 /
TensorFlow semantics, channels_last).

A transposed convolution is the input gradient of a convolution: each input
pixel scatters ``x[p] * kernel[i]`` to output position ``p * stride + i *
dilation``. Along one axis of input size ``n``, with ``k_eff = (k - 1) *
dilation + 1``, that "full" result has ``(n - 1) * stride + k_eff`` positions;
the layer's output is the window ``[crop, crop + out)`` of it (positions past
its end are zeros), by :func:`transpose_amounts`:

* ``output_padding=None`` (the default) means Keras's default ``op``:
  ``max(k_eff, stride) - k_eff`` for ``"valid"`` and ``stride - k_eff % 2`` for
  ``"same"``, so that ``out = (n - 1) * stride + max(k_eff, stride)`` and
  ``out = n * stride`` respectively.
* ``"valid"``: ``out = (n - 1) * stride + k_eff + op``, ``crop = 0``.
* ``"same"``: ``out = (n - 1) * stride + k_eff % 2 + op`` and ``crop =
  max(k_eff - k_eff % 2 - op, 0) // 2``: TensorFlow's ``"same"`` padding of
  the convolution this one transposes (the smaller half before), which is
  also what Keras on jax computes (``lax.conv_transpose`` with Keras's
  padding pairs). For ``strides=2, kernel_size=3`` that is ``crop = 0``.
* ``output_padding``, when given, must be below the stride (TensorFlow's rule).

Kernels are Keras's ``(*kernel_size, filters, in_channels)``: the output
channels come *before* the input channels, the layout of the convolution
being transposed.
"""

from __future__ import annotations

from polykeras.spec import Shape

from .base import LayerRules, as_tuple


def transpose_amounts(size: int, k: int, stride: int, dilation: int, padding: str, output_padding: int | None,
                      layer: str) -> tuple[int, int, int]:
    """``(crop, out, full)`` along one axis: the output is positions ``[crop, crop + out)`` of the
    ``full = (size - 1) * stride + k_eff`` positions of the scattered input (zeros past ``full``)."""
    k_eff = (k - 1) * dilation + 1
    if output_padding is None:
        output_padding = max(k_eff, stride) - k_eff if padding == "valid" else stride - k_eff % 2
    if padding == "valid":
        crop, out = 0, (size - 1) * stride + k_eff + output_padding
    elif padding == "same":
        crop = max(k_eff - k_eff % 2 - output_padding, 0) // 2
        out = (size - 1) * stride + k_eff % 2 + output_padding
    else:
        raise ValueError(f"layer {layer!r}: unknown padding {padding!r}; expected 'valid' or 'same'")
    return crop, out, (size - 1) * stride + k_eff


class ConvTransposeRules(LayerRules):
    """``filters``, ``kernel_size``/``strides``/``dilation_rate`` (tuples of
    ``rank`` ints), ``padding`` (valid, same), ``output_padding`` (``None`` or
    ints below the strides), ``activation``, ``use_bias``."""

    kind = "Conv2DTranspose"
    rank = 2

    def __init__(self, spec, backend="polykeras"):
        super().__init__(spec, backend)
        cfg, name, n = self.config, self.name, self.rank
        self.filters = int(cfg["filters"])
        self.kernel_size = as_tuple(cfg["kernel_size"], n, "kernel_size", name)
        self.strides = as_tuple(cfg.get("strides", 1), n, "strides", name)
        self.dilation_rate = as_tuple(cfg.get("dilation_rate", 1), n, "dilation_rate", name)
        self.padding = str(cfg.get("padding", "valid")).lower()
        if self.padding not in ("valid", "same"):
            raise ValueError(f"{spec.kind} layer {name!r}: padding={self.padding!r}; expected 'valid' or 'same'")
        op = cfg.get("output_padding")
        self.output_padding = None if op is None else as_tuple(op, n, "output_padding", name)
        if self.output_padding is not None and any(not 0 <= p < s for p, s in zip(self.output_padding, self.strides)):
            raise ValueError(f"{spec.kind} layer {name!r}: output_padding={self.output_padding} must be >= 0 and "
                             f"below strides={self.strides}")
        if any(s > 1 for s in self.strides) and any(d > 1 for d in self.dilation_rate):
            raise ValueError(f"{spec.kind} layer {name!r}: strides {self.strides} and dilation_rate "
                             f"{self.dilation_rate} cannot both be above 1 (as in Keras)")
        self.require_channels_last()
        self.activation = cfg.get("activation", "linear")
        self.use_bias = bool(cfg.get("use_bias", True))

    def amounts(self, sizes) -> list[tuple[int, int, int]]:
        """``(crop, out, full)`` for each spatial axis of sizes ``sizes``."""
        ops = self.output_padding or (None,) * self.rank
        return [transpose_amounts(int(n), k, s, d, self.padding, p, self.name)
                for n, k, s, d, p in zip(sizes, self.kernel_size, self.strides, self.dilation_rate, ops)]

    def output_shape(self, input_shape: Shape) -> Shape:
        ops = self.output_padding or (None,) * self.rank
        spatial = tuple(None if n is None else transpose_amounts(n, k, s, d, self.padding, p, self.name)[1]
                        for n, k, s, d, p in zip(input_shape[1:-1], self.kernel_size, self.strides,
                                                 self.dilation_rate, ops))
        return (input_shape[0],) + spatial + (self.filters,)


class Conv2DTransposeRules(ConvTransposeRules):
    kind = "Conv2DTranspose"


class Conv1DTransposeRules(ConvTransposeRules):
    kind = "Conv1DTranspose"
    rank = 1
