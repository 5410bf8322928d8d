"""Padding, cropping, upsampling and shape layers (Keras 3 semantics,
channels_last; the rules are :mod:`polykeras.layer_rules.reshaping`, the math
the NumPy reference's): ``jnp.pad``, slices, ``jnp.repeat``,
``broadcast_to``, ``transpose``; bilinear upsampling is two small matrix
products with the rules' interpolation matrices (constants XLA folds)."""

from __future__ import annotations

import jax.numpy as jnp

from .base import Layer


class ZeroPadding2D(Layer):
    kind = "ZeroPadding2D"

    def __call__(self, weights, x, ctx):
        return jnp.pad(x, ((0, 0), *self.rules.pads, (0, 0)))


class ZeroPadding1D(ZeroPadding2D):
    kind = "ZeroPadding1D"


class Cropping2D(Layer):
    kind = "Cropping2D"

    def __call__(self, weights, x, ctx):
        return x[self.rules.slices(x.shape)]


class Cropping1D(Cropping2D):
    kind = "Cropping1D"


class UpSampling2D(Layer):
    kind = "UpSampling2D"

    def __call__(self, weights, x, ctx):
        rules = self.rules
        if rules.interpolation == "bilinear":
            a_h, a_w = (rules.bilinear_matrix(int(n), s, x.dtype) for n, s in zip(x.shape[1:-1], rules.size))
            return jnp.einsum("oh,bhwc,pw->bopc", a_h, x, a_w)
        for axis, s in enumerate(rules.size, start=1):
            x = jnp.repeat(x, s, axis=axis)
        return x


class UpSampling1D(UpSampling2D):
    kind = "UpSampling1D"


class RepeatVector(Layer):
    kind = "RepeatVector"

    def __call__(self, weights, x, ctx):
        return jnp.broadcast_to(x[:, None, :], (x.shape[0], self.rules.n, x.shape[1]))


class Permute(Layer):
    kind = "Permute"

    def __call__(self, weights, x, ctx):
        return jnp.transpose(x, self.rules.axes)


class Identity(Layer):
    kind = "Identity"

    def __call__(self, weights, x, ctx):
        return x


class Rescaling(Layer):
    kind = "Rescaling"

    def __call__(self, weights, x, ctx):
        scale, offset = self.rules.values(x.dtype)
        return x * scale + offset


RESHAPING_LAYERS = (ZeroPadding1D, ZeroPadding2D, Cropping1D, Cropping2D, UpSampling1D, UpSampling2D, RepeatVector,
                    Permute, Identity, Rescaling)
