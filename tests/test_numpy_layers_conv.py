"""Tests of the NumPy reference's transposed, depthwise and separable
convolutions and of their core rules: finite-difference gradients in float64,
float32 staying float32, forward values against independent computations,
clear errors for unsupported configs."""

from __future__ import annotations

import numpy as np
import pytest

from _fd import build, check_gradients, context, random_weights

# (kind, config, per-sample input shape)
CASES = [
    ("Conv2DTranspose", {"filters": 2, "kernel_size": [3, 3], "strides": [2, 2], "padding": "same"}, (3, 2, 2)),
    ("Conv2DTranspose", {"filters": 3, "kernel_size": [2, 3], "strides": [2, 1], "padding": "valid",
                         "activation": "tanh"}, (2, 3, 1)),
    ("Conv2DTranspose", {"filters": 1, "kernel_size": [1, 2], "strides": [3, 2], "padding": "valid",
                         "use_bias": False}, (2, 2, 2)),
    ("Conv2DTranspose", {"filters": 2, "kernel_size": [4, 2], "strides": [2, 3], "padding": "same"}, (2, 3, 1)),
    ("Conv2DTranspose", {"filters": 2, "kernel_size": [2, 3], "dilation_rate": [2, 1], "padding": "same"}, (3, 3, 2)),
    ("Conv2DTranspose", {"filters": 2, "kernel_size": [3, 3], "strides": [2, 3], "padding": "same",
                         "output_padding": [1, 0]}, (2, 2, 1)),
    ("Conv1DTranspose", {"filters": 2, "kernel_size": 3, "strides": 2, "padding": "same"}, (4, 3)),
    ("Conv1DTranspose", {"filters": 3, "kernel_size": [4], "strides": [3], "padding": "valid",
                         "output_padding": 2, "activation": "relu"}, (3, 2)),
    ("DepthwiseConv2D", {"kernel_size": [3, 2], "padding": "valid", "activation": "tanh"}, (4, 3, 2)),
    ("DepthwiseConv2D", {"kernel_size": [3, 3], "strides": [2, 1], "padding": "same", "depth_multiplier": 3},
     (5, 3, 2)),
    ("DepthwiseConv2D", {"kernel_size": [2, 2], "dilation_rate": [2, 1], "padding": "same", "depth_multiplier": 2,
                         "use_bias": False}, (4, 4, 1)),
    ("SeparableConv2D", {"filters": 3, "kernel_size": [3, 3], "padding": "same", "strides": [2, 2]}, (4, 5, 2)),
    ("SeparableConv2D", {"filters": 2, "kernel_size": [2, 3], "depth_multiplier": 2, "activation": "relu",
                         "use_bias": False}, (3, 4, 3)),
    ("DepthwiseConv1D", {"kernel_size": 3, "strides": 2, "padding": "same", "depth_multiplier": 2}, (5, 3)),
    ("SeparableConv1D", {"filters": 3, "kernel_size": [2], "dilation_rate": 2, "depth_multiplier": 2,
                         "activation": "tanh"}, (6, 2)),
    ("Conv2D", {"filters": 4, "kernel_size": [2, 3], "strides": [2, 1], "padding": "same", "groups": 2,
                "activation": "tanh"}, (4, 5, 6)),
    ("Conv1D", {"filters": 3, "kernel_size": [3], "padding": "causal", "groups": 3, "use_bias": False}, (5, 3)),
]


def _case_id(case):
    kind, config, shape = case
    return f"{kind}-{config}-{shape}"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_gradients_match_finite_differences(case):
    kind, config, shape = case
    rng = np.random.default_rng(0)
    kernel = build(kind, config, shape)
    x = rng.normal(size=(2,) + shape) * 1.5 + 0.5
    check_gradients(kernel, random_weights(kernel, rng), x, training=True)


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_float32_in_float32_out_and_rules_shape(case):
    kind, config, shape = case
    rng = np.random.default_rng(1)
    kernel = build(kind, config, shape, dtype=np.float32)
    weights = [w.astype(np.float32) for w in random_weights(kernel, rng)]
    y, cache = kernel.forward(weights, rng.normal(size=(3,) + shape).astype(np.float32), context(True, np.float32))
    dx, dweights = kernel.backward(weights, cache, np.ones_like(y))
    assert y.shape == (3,) + kernel.spec.output_shape[1:]
    assert y.dtype == dx.dtype == np.float32 and all(d.dtype == np.float32 for d in dweights)


# -- transposed convolutions: the adjoint of the convolution they transpose ------------------------

@pytest.mark.parametrize("kernel_size, strides, padding, dilation, size", [
    ((3, 3), (2, 2), "same", (1, 1), (3, 4)),   # keras#22876's case: placement of the odd kernel
    ((4, 2), (2, 3), "same", (1, 1), (3, 2)),   # an even kernel: the smaller half of the padding before
    ((1, 2), (3, 2), "same", (1, 1), (2, 3)),   # kernels smaller than the strides
    ((3, 2), (2, 1), "valid", (1, 1), (2, 3)),
    ((1, 2), (3, 2), "valid", (1, 1), (2, 2)),  # out = (n - 1) * s + max(k, s): zeros at the end
    ((2, 3), (1, 1), "same", (2, 2), (3, 4)),
])
def test_conv2d_transpose_is_the_adjoint_of_conv2d(kernel_size, strides, padding, dilation, size):
    """TensorFlow defines conv2d_transpose as the input gradient of conv2d with the same kernel, strides and
    padding: ``<conv_transpose(x), y> = <x, conv2d(y)>`` for every ``x`` and ``y``, checked against the
    reference's Conv2D (an independent kernel) with the kernel's in/out axes swapped."""
    rng = np.random.default_rng(3)
    config = {"filters": 3, "kernel_size": list(kernel_size), "strides": list(strides), "padding": padding,
              "dilation_rate": list(dilation), "use_bias": False}
    transpose = build("Conv2DTranspose", config, size + (2,))
    out_size = transpose.spec.output_shape[1:3]
    conv = build("Conv2D", {**config, "filters": 2}, tuple(out_size) + (3,))
    assert conv.spec.output_shape[1:3] == size
    kernel = rng.normal(size=kernel_size + (3, 2))  # (kh, kw, filters, in) of the transpose
    x, y = rng.normal(size=(2,) + size + (2,)), rng.normal(size=(2,) + tuple(out_size) + (3,))
    tx, _ = transpose.forward([kernel], x, context(False))
    cy, _ = conv.forward([kernel], y, context(False))  # Conv2D's (kh, kw, in=3, out=2): the same array
    np.testing.assert_allclose(np.sum(tx * y), np.sum(x * cy), rtol=1e-12)


def test_conv2d_transpose_same_stride2_places_like_tensorflow():
    """One pixel, kernel 3, strides 2, "same": TensorFlow (and Keras on jax) crop nothing from the
    full result, so kernel[:2, :2] is the 2x2 output (out = 2 * n); keras#22876 was Keras on torch cropping
    one pixel at the start here."""
    kernel = build("Conv2DTranspose", {"filters": 1, "kernel_size": [3, 3], "strides": [2, 2], "padding": "same",
                                       "use_bias": False}, (1, 1, 1))
    w = np.arange(9.0).reshape(3, 3, 1, 1)
    y, _ = kernel.forward([w], np.ones((1, 1, 1, 1)), context(False))
    np.testing.assert_array_equal(y[0, :, :, 0], w[:2, :2, 0, 0])


@pytest.mark.parametrize("kind, config, shape, error, match", [
    ("Conv2DTranspose", {"filters": 1, "kernel_size": [2, 2], "padding": "causal"}, (3, 3, 1), ValueError, "causal"),
    ("Conv2DTranspose", {"filters": 1, "kernel_size": [2, 2], "strides": [2, 2], "output_padding": [2, 0]},
     (3, 3, 1), ValueError, "below strides"),
    ("Conv2DTranspose", {"filters": 1, "kernel_size": [2, 2], "strides": [2, 2], "dilation_rate": [2, 2]},
     (3, 3, 1), ValueError, "cannot both"),
    ("Conv2DTranspose", {"filters": 1, "kernel_size": [2, 2], "data_format": "channels_first"}, (3, 3, 1),
     NotImplementedError, "channels_first"),
])
def test_bad_configs_fail_clearly(kind, config, shape, error, match):
    with pytest.raises(error, match=match):
        build(kind, config, shape)


# -- depthwise and separable convolutions: a Conv2D per channel, then a 1x1 Conv2D --------------------

@pytest.mark.parametrize("config", [
    {"kernel_size": [3, 2], "strides": [2, 1], "padding": "same", "depth_multiplier": 3},
    {"kernel_size": [2, 2], "dilation_rate": [1, 2], "padding": "valid", "depth_multiplier": 2},
])
def test_depthwise_and_separable_are_per_channel_convolutions(config):
    """DepthwiseConv2D's output channel ``c * depth_multiplier + m`` is the reference's Conv2D of input channel
    ``c`` alone with kernel ``[:, :, c, m]`` (TensorFlow's channel order); SeparableConv2D is that followed by a
    1x1 Conv2D with the pointwise kernel, then the bias."""
    rng = np.random.default_rng(5)
    shape, m = (5, 6, 3), config["depth_multiplier"]
    x = rng.normal(size=(2,) + shape)
    depthwise = build("DepthwiseConv2D", {**config, "use_bias": False}, shape)
    kernel = rng.normal(size=tuple(config["kernel_size"]) + (3, m))
    y, _ = depthwise.forward([kernel], x, context(False))
    conv = build("Conv2D", {**{k: v for k, v in config.items() if k != "depth_multiplier"}, "filters": m,
                            "use_bias": False}, shape[:2] + (1,))
    per_channel = [conv.forward([kernel[:, :, c:c + 1, :]], x[..., c:c + 1], context(False))[0] for c in range(3)]
    np.testing.assert_allclose(y, np.concatenate(per_channel, axis=-1), rtol=1e-12, atol=1e-12)
    separable = build("SeparableConv2D", {**config, "filters": 4}, shape)
    pointwise, bias = rng.normal(size=(1, 1, 3 * m, 4)), rng.normal(size=4)
    z, _ = separable.forward([kernel, pointwise, bias], x, context(False))
    one_by_one = build("Conv2D", {"filters": 4, "kernel_size": [1, 1]}, y.shape[1:])
    np.testing.assert_allclose(z, one_by_one.forward([pointwise, bias], y, context(False))[0], rtol=1e-12,
                               atol=1e-12)


def test_depthwise_and_separable_weights_are_keras_s():
    assert [(w.name, w.shape) for w in build("DepthwiseConv2D", {"kernel_size": [3, 2], "depth_multiplier": 2},
                                             (5, 4, 3)).spec.weights] == [("kernel", (3, 2, 3, 2)), ("bias", (6,))]
    assert [(w.name, w.shape) for w in build("SeparableConv2D", {"filters": 5, "kernel_size": 3,
                                                                 "depth_multiplier": 2}, (5, 4, 3)).spec.weights] == [
        ("depthwise_kernel", (3, 3, 3, 2)), ("pointwise_kernel", (1, 1, 6, 5)), ("bias", (5,))]


@pytest.mark.parametrize("kind, config, shape, error, match", [
    ("DepthwiseConv2D", {"kernel_size": [2, 2], "padding": "causal"}, (3, 3, 1), ValueError, "causal"),
    ("DepthwiseConv2D", {"kernel_size": [2, 2], "depth_multiplier": 0}, (3, 3, 1), ValueError, "depth_multiplier"),
    ("SeparableConv2D", {"filters": 2, "kernel_size": [4, 4]}, (3, 3, 1), ValueError, "too small"),
    ("SeparableConv2D", {"filters": 2, "kernel_size": 2, "data_format": "channels_first"}, (3, 3, 1),
     NotImplementedError, "channels_first"),
])
def test_depthwise_bad_configs_fail_clearly(kind, config, shape, error, match):
    with pytest.raises(error, match=match):
        build(kind, config, shape)


# -- grouped convolutions: an ungrouped one with a block-diagonal kernel -----------------------------

@pytest.mark.parametrize("kind, config, shape", [
    ("Conv2D", {"filters": 6, "kernel_size": [3, 2], "strides": [1, 2], "padding": "same", "groups": 3}, (5, 4, 6)),
    ("Conv1D", {"filters": 4, "kernel_size": [2], "dilation_rate": [2], "padding": "causal", "groups": 2}, (6, 4)),
])
def test_grouped_convolution_is_a_block_diagonal_one(kind, config, shape):
    """Keras's grouped convolution: filters block ``g`` sees only channels block ``g`` -- the same as the
    ungrouped convolution whose kernel ``(*k, in, filters)`` is zero outside the diagonal blocks."""
    rng = np.random.default_rng(8)
    groups, filters, channels = config["groups"], config["filters"], shape[-1]
    grouped = build(kind, config, shape)
    kernel, bias = rng.normal(size=grouped.spec.weights[0].shape), rng.normal(size=filters)
    assert kernel.shape[-2:] == (channels // groups, filters)
    full = np.zeros(kernel.shape[:-2] + (channels, filters))
    c, f = channels // groups, filters // groups
    for g in range(groups):
        full[..., g * c:(g + 1) * c, g * f:(g + 1) * f] = kernel[..., g * f:(g + 1) * f]
    x = rng.normal(size=(2,) + shape)
    y, _ = grouped.forward([kernel, bias], x, context(False))
    expected, _ = build(kind, {**config, "groups": 1}, shape).forward([full, bias], x, context(False))
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


def test_depthwise_and_separable_1d_are_the_2d_layers_on_a_height_1_image():
    rng = np.random.default_rng(9)
    config = {"kernel_size": [3], "strides": [2], "padding": "same", "depth_multiplier": 2, "filters": 3}
    x = rng.normal(size=(2, 7, 2))
    sep1, sep2 = build("SeparableConv1D", config, (7, 2)), build("SeparableConv2D", {
        **config, "kernel_size": [1, 3], "strides": [1, 2]}, (1, 7, 2))
    weights = random_weights(sep1, rng)
    y1, _ = sep1.forward(weights, x, context(False))
    y2, _ = sep2.forward([weights[0][None], weights[1][None], weights[2]], x[:, None], context(False))
    np.testing.assert_allclose(y1, y2[:, 0], rtol=1e-12, atol=1e-12)
