"""Tests of the NumPy reference kernels added for modern Keras programs
(LayerNormalization, GlobalMaxPooling, padding/cropping, upsampling,
RepeatVector, Permute, Identity) and of their core rules: finite-difference
gradients in float64, float32 staying float32, forward values against
independent computations, clear errors for unsupported configs."""

from __future__ import annotations

import numpy as np
import pytest

from _fd import build, check_gradients, context, random_weights

# (kind, config, per-sample input shape)
CASES = [
    ("LayerNormalization", {}, (5,)),
    ("LayerNormalization", {"axis": [-2, -1], "epsilon": 0.1}, (3, 4)),
    ("LayerNormalization", {"axis": 1, "center": False}, (3, 4)),
    ("LayerNormalization", {"axis": [1, 3], "scale": False}, (2, 3, 2)),
    ("LayerNormalization", {"center": False, "scale": False}, (2, 4)),
    ("LayerNormalization", {"rms_scaling": True}, (2, 5)),
    ("LayerNormalization", {"rms_scaling": True, "scale": False, "axis": [1, 2]}, (2, 3)),
    ("GlobalMaxPooling2D", {}, (3, 4, 2)),
    ("GlobalMaxPooling2D", {"keepdims": True}, (2, 3, 3)),
    ("GlobalMaxPooling1D", {}, (5, 3)),
    ("GlobalMaxPooling1D", {"keepdims": True}, (1, 2)),
    ("ZeroPadding2D", {"padding": [[1, 2], [0, 1]]}, (2, 3, 2)),
    ("ZeroPadding2D", {"padding": 1}, (2, 2, 1)),
    ("ZeroPadding1D", {"padding": [0, 2]}, (3, 2)),
    ("Cropping2D", {"cropping": [[1, 0], [1, 2]]}, (3, 4, 2)),
    ("Cropping2D", {"cropping": [1, 1]}, (3, 4, 1)),
    ("Cropping1D", {"cropping": [1, 2]}, (5, 2)),
    ("UpSampling2D", {"size": [2, 3]}, (2, 2, 2)),
    ("UpSampling2D", {"size": 2, "interpolation": "bilinear"}, (3, 2, 2)),
    ("UpSampling2D", {"size": [3, 1], "interpolation": "bilinear"}, (2, 3, 1)),
    ("UpSampling1D", {"size": 3}, (3, 2)),
    ("RepeatVector", {"n": 3}, (4,)),
    ("Permute", {"dims": [2, 1]}, (3, 4)),
    ("Permute", {"dims": [3, 1, 2]}, (2, 3, 4)),
    ("Identity", {}, (3, 2)),
    ("GroupNormalization", {"groups": 2}, (3, 4)),
    ("GroupNormalization", {"groups": 3, "center": False, "epsilon": 0.1}, (2, 2, 6)),
    ("GroupNormalization", {"groups": -1, "scale": False}, (4, 3)),
    ("GroupNormalization", {"groups": 1}, (2, 3)),
    ("UnitNormalization", {}, (4,)),
    ("UnitNormalization", {"axis": [1, 2]}, (2, 3)),
    ("UnitNormalization", {"axis": 1}, (3, 2)),
    ("AveragePooling1D", {"pool_size": [2], "strides": None, "padding": "valid"}, (7, 3)),
    ("AveragePooling1D", {"pool_size": 3, "strides": 2, "padding": "same"}, (6, 2)),
    ("Rescaling", {"scale": 1 / 255, "offset": -0.5}, (3, 2)),
    ("Rescaling", {"scale": [0.5, 2.0], "offset": [[1.0, 0.0]]}, (3, 2)),
    ("SpatialDropout1D", {"rate": 0.5}, (4, 3)),
    ("SpatialDropout2D", {"rate": 0.3}, (2, 3, 4)),
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
    kernel64, kernel32 = build(kind, config, shape), build(kind, config, shape, dtype=np.float32)
    weights = random_weights(kernel64, rng)
    x = rng.normal(size=(3,) + shape)
    y, cache = kernel32.forward([w.astype(np.float32) for w in weights], x.astype(np.float32),
                                context(True, np.float32))
    dx, dweights = kernel32.backward([w.astype(np.float32) for w in weights], cache, np.ones_like(y))
    assert y.dtype == dx.dtype == np.float32
    assert all(dw is None or dw.dtype == np.float32 for dw in dweights)
    y64, _ = kernel64.forward(weights, x, context(True))
    np.testing.assert_allclose(y, y64, rtol=1e-5, atol=1e-5 * np.max(np.abs(y64)))
    assert kernel64.rules.output_shape((3,) + shape) == y64.shape


# -- LayerNormalization ---------------------------------------------------------------

def test_layer_normalization_values_and_weight_order():
    rng = np.random.default_rng(2)
    kernel = build("LayerNormalization", {"axis": [1, 2], "epsilon": 1e-3}, (3, 4, 2))
    assert [w.name for w in kernel.spec.weights] == ["gamma", "beta"]
    assert [w.shape for w in kernel.spec.weights] == [(3, 4), (3, 4)]
    gamma, beta = weights = random_weights(kernel, rng)
    x = rng.normal(size=(2, 3, 4, 2))
    y, _ = kernel.forward(weights, x, context(False))
    mean, var = x.mean(axis=(1, 2), keepdims=True), x.var(axis=(1, 2), keepdims=True)
    expected = (x - mean) / np.sqrt(var + 1e-3) * gamma[..., None] + beta[..., None]
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


def test_layer_normalization_rms_scaling_is_keras_variance_scaling():
    rng = np.random.default_rng(3)
    kernel = build("LayerNormalization", {"rms_scaling": True, "center": True}, (5,))
    assert [w.name for w in kernel.spec.weights] == ["gamma"]  # no beta with rms_scaling
    (gamma,) = weights = random_weights(kernel, rng)
    x = rng.normal(size=(3, 5)) + 2.0
    y, _ = kernel.forward(weights, x, context(False))
    np.testing.assert_allclose(y, x / np.sqrt(x.var(axis=-1, keepdims=True) + 1e-3) * gamma, rtol=1e-13)


def test_layer_normalization_api_config_is_keras():
    from polykeras import layers

    layer = layers.LayerNormalization(axis=-1, epsilon=1e-5)
    assert layer.get_config()["axis"] == -1
    layers.Input((3, 4))  # build through a model, as Keras saves it
    from polykeras.models import Sequential

    model = Sequential([layers.Input((3, 4)), layer])
    config = layer.get_config()
    assert config["axis"] == [-1] and config["epsilon"] == 1e-5 and config["rms_scaling"] is False
    assert [w.name for w in layer.weights] == ["gamma", "beta"]
    np.testing.assert_array_equal(layer.get_weights()[0], np.ones(4))
    np.testing.assert_array_equal(layer.get_weights()[1], np.zeros(4))
    assert model.output_shape == (None, 3, 4)


@pytest.mark.parametrize("axis, error, match", [
    (0, ValueError, "batch axis"), (3, ValueError, "out of range"), ([1, 1], ValueError, "twice"),
    ([-1, 1], NotImplementedError, "mixes negative"),
])
def test_layer_normalization_bad_axes_fail_clearly(axis, error, match):
    with pytest.raises(error, match=match):
        build("LayerNormalization", {"axis": axis}, (3, 4))


# -- GlobalMaxPooling -----------------------------------------------------------------

def test_global_max_pooling_values():
    x = np.random.default_rng(4).normal(size=(2, 3, 4, 5))
    y, _ = build("GlobalMaxPooling2D", {"keepdims": True}, (3, 4, 5)).forward([], x, context(False))
    np.testing.assert_array_equal(y, x.max(axis=(1, 2), keepdims=True))
    y1, _ = build("GlobalMaxPooling1D", {}, (4, 5)).forward([], x[:, 0], context(False))
    np.testing.assert_array_equal(y1, x[:, 0].max(axis=1))


def test_global_max_pooling_tie_shares_the_gradient():
    x = np.array([[[1.0, 5.0], [5.0, 5.0]]])[..., None]  # three-way tie, as a max reduction splits it
    kernel = build("GlobalMaxPooling2D", {}, (2, 2, 1))
    y, cache = kernel.forward([], x, context(False))
    dx, _ = kernel.backward([], cache, np.array([[3.0]]))
    np.testing.assert_allclose(dx[0, ..., 0], [[0.0, 1.0], [1.0, 1.0]])


# -- padding, cropping, upsampling, shape layers ----------------------------------------

def test_padding_cropping_upsampling_values():
    x = np.random.default_rng(5).normal(size=(2, 3, 4, 2))
    y, _ = build("ZeroPadding2D", {"padding": [[1, 2], [0, 1]]}, (3, 4, 2)).forward([], x, context(False))
    np.testing.assert_array_equal(y, np.pad(x, ((0, 0), (1, 2), (0, 1), (0, 0))))
    y, _ = build("Cropping2D", {"cropping": [[1, 0], [1, 2]]}, (3, 4, 2)).forward([], x, context(False))
    np.testing.assert_array_equal(y, x[:, 1:, 1:2])
    y, _ = build("UpSampling2D", {"size": [2, 3]}, (3, 4, 2)).forward([], x, context(False))
    assert y.shape == (2, 6, 12, 2)
    np.testing.assert_array_equal(y[:, 5, 11], x[:, 2, 3])
    np.testing.assert_array_equal(y[:, 2:4, 3:6], np.broadcast_to(x[:, 1:2, 1:2], (2, 2, 3, 2)))
    y, _ = build("UpSampling1D", {"size": 2}, (4, 2)).forward([], x[:, 0], context(False))
    np.testing.assert_array_equal(y, np.repeat(x[:, 0], 2, axis=1))


def test_bilinear_upsampling_is_half_pixel_and_clamped():
    # in 1-D, factor 2: outputs sample input positions -0.25 (clamped to 0), 0.25, 0.75, 1.25, ... n - 0.75 (to n-1)
    x = np.arange(3.0).reshape(1, 1, 3, 1) ** 2  # [0, 1, 4] along the width
    y, _ = build("UpSampling2D", {"size": [1, 2], "interpolation": "bilinear"}, (1, 3, 1)).forward(
        [], x, context(False))
    np.testing.assert_allclose(y[0, 0, :, 0], [0.0, 0.25, 0.75, 1.75, 3.25, 4.0])


def test_repeat_vector_and_permute_values():
    x = np.random.default_rng(6).normal(size=(2, 3, 4, 5))
    y, _ = build("Permute", {"dims": [3, 1, 2]}, (3, 4, 5)).forward([], x, context(False))
    np.testing.assert_array_equal(y, x.transpose(0, 3, 1, 2))
    y, _ = build("RepeatVector", {"n": 2}, (5,)).forward([], x[:, 0, 0], context(False))
    np.testing.assert_array_equal(y, np.stack([x[:, 0, 0]] * 2, axis=1))


def test_reshaping_api_configs_are_keras_normal_forms():
    from polykeras import layers

    assert layers.ZeroPadding2D(2).get_config()["padding"] == ((2, 2), (2, 2))
    assert layers.ZeroPadding2D((1, 3)).get_config()["padding"] == ((1, 1), (3, 3))
    assert layers.ZeroPadding1D(2).get_config()["padding"] == (2, 2)
    assert layers.Cropping2D(((1, 0), (2, 3))).get_config()["cropping"] == ((1, 0), (2, 3))
    assert layers.Cropping1D(1).get_config()["cropping"] == (1, 1)
    assert layers.UpSampling2D(3).get_config()["size"] == (3, 3)
    assert layers.Permute((2, 1)).get_config()["dims"] == (2, 1)


@pytest.mark.parametrize("kind, config, shape, error, match", [
    ("UpSampling2D", {"size": 2, "interpolation": "bicubic"}, (2, 2, 1), NotImplementedError,
     "interpolation='bicubic'"),
    ("UpSampling2D", {"size": 2, "data_format": "channels_first"}, (2, 2, 1), NotImplementedError, "channels_first"),
    ("ZeroPadding2D", {"padding": [1, 2, 3]}, (2, 2, 1), ValueError, "padding"),
    ("Cropping2D", {"cropping": [[1, 1], [0, 0]]}, (2, 2, 1), ValueError, "whole axis"),
    ("Cropping1D", {"cropping": [-1, 0]}, (3, 1), ValueError, "negative"),
    ("Permute", {"dims": [1, 3]}, (2, 2), ValueError, "permutation"),
    ("RepeatVector", {"n": 2}, (2, 2), ValueError, "rank 2"),
])
def test_reshaping_bad_configs_fail_clearly(kind, config, shape, error, match):
    with pytest.raises(error, match=match):
        build(kind, config, shape)


# -- GroupNormalization, UnitNormalization -------------------------------------------------

def test_group_normalization_values():
    rng = np.random.default_rng(7)
    kernel = build("GroupNormalization", {"groups": 2}, (3, 4))
    assert [(w.name, w.shape) for w in kernel.spec.weights] == [("gamma", (4,)), ("beta", (4,))]
    gamma, beta = weights = random_weights(kernel, rng)
    x = rng.normal(size=(2, 3, 4))
    y, _ = kernel.forward(weights, x, context(False))
    for g in range(2):
        part = x[..., 2 * g:2 * g + 2]
        mean, var = part.mean(axis=(1, 2), keepdims=True), part.var(axis=(1, 2), keepdims=True)
        expected = (part - mean) / np.sqrt(var + 1e-3) * gamma[2 * g:2 * g + 2] + beta[2 * g:2 * g + 2]
        np.testing.assert_allclose(y[..., 2 * g:2 * g + 2], expected, rtol=1e-12, atol=1e-12)


def test_unit_normalization_values_and_zero_vector():
    x = np.array([[3.0, 4.0], [0.0, 0.0]])
    kernel = build("UnitNormalization", {}, (2,))
    y, cache = kernel.forward([], x, context(False))
    np.testing.assert_allclose(y, [[0.6, 0.8], [0.0, 0.0]])
    dx, _ = kernel.backward([], cache, np.ones_like(x))
    assert np.all(np.isfinite(dx)) and dx[1, 0] == 1e12  # clipped: scale 1/epsilon, a constant


@pytest.mark.parametrize("kind, config, shape, error, match", [
    ("GroupNormalization", {"groups": 3}, (2, 4), ValueError, "divide"),
    ("GroupNormalization", {"groups": 2, "axis": 1}, (2, 4), NotImplementedError, "axis=1"),
    ("UnitNormalization", {"axis": 0}, (3,), ValueError, "batch axis"),
])
def test_normalization_bad_configs_fail_clearly(kind, config, shape, error, match):
    with pytest.raises(error, match=match):
        build(kind, config, shape)


def test_average_pooling1d_counts_only_real_steps():
    x = np.arange(6.0).reshape(1, 6, 1)  # in 6, pool 3, stride 2, same: out 3, padding (0, 1)
    y, _ = build("AveragePooling1D", {"pool_size": 3, "strides": 2, "padding": "same"}, (6, 1)).forward(
        [], x, context(False))
    np.testing.assert_allclose(y[0, :, 0], [1.0, 3.0, 4.5])  # the last window holds 4, 5 and padding


def test_rescaling_values_and_bad_shape():
    x = np.random.default_rng(8).normal(size=(2, 3, 2))
    y, _ = build("Rescaling", {"scale": [0.5, 2.0], "offset": 1.0}, (3, 2)).forward([], x, context(False))
    np.testing.assert_allclose(y, x * [0.5, 2.0] + 1.0)
    with pytest.raises(ValueError, match="broadcast"):
        build("Rescaling", {"scale": [1.0, 2.0, 3.0]}, (3, 2))


def test_spatial_dropout_drops_whole_channels():
    from _fd import fixed_dropout_mask
    from polykeras_numpy.layers import ForwardContext

    x = np.random.default_rng(9).normal(size=(3, 4, 5, 6))
    requests = []

    def masks(shape, rate, stream):
        requests.append((shape, rate, stream))
        return fixed_dropout_mask(np.float64)(shape, rate, stream)

    y, _ = build("SpatialDropout2D", {"rate": 0.5}, (4, 5, 6)).forward([], x, ForwardContext(True, masks))
    assert requests == [((3, 1, 1, 6), 0.5, 0)]
    dropped = (y == 0).all(axis=(1, 2))  # a channel is dropped everywhere or nowhere
    np.testing.assert_array_equal(dropped, (y == 0).any(axis=(1, 2)))
    y, _ = build("SpatialDropout1D", {"rate": 0.5}, (5, 6)).forward([], x[:, 0], context(False))
    assert y is x[:, 0] or np.array_equal(y, x[:, 0])  # identity at inference
