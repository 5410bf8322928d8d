"""Helpers for testing NumPy reference kernels: hand-built specs (output shapes
from the core's layer rules), canonical weight shapes, deterministic dropout
masks and central finite differences."""

from __future__ import annotations

import dataclasses
import numpy as np

from polykeras.layer_rules import rules_for
from polykeras.random import Normal, dropout_mask
from polykeras.spec import LayerSpec, WeightSpec
from polykeras_numpy.layers import KERNELS, ForwardContext

# Central differences: truncation error O(h^2 * f''') ~ 1e-12 and rounding
# error O(eps * |loss| / h) ~ 1e-16 * 10 / 1e-6 = 1e-9 in float64, so a
# correct gradient agrees to ~1e-8 relative; a wrong one is off by O(1).
FD_STEP = 1e-6
FD_TOLERANCE = 1e-6


def canonical_weights(kind: str, config: dict, input_shape: tuple) -> tuple[WeightSpec, ...]:
    """The weights Keras would create for this layer, in Keras's order."""
    features = input_shape[-1]
    bias = config.get("use_bias", True)
    if kind == "Dense":
        shapes = [("kernel", (features, config["units"]))] + ([("bias", (config["units"],))] if bias else [])
    elif kind in ("Conv1D", "Conv2D"):
        ks = config["kernel_size"]
        ks = (ks,) if isinstance(ks, int) else tuple(ks)
        f = config["filters"]
        shapes = [("kernel", ks + (features // config.get("groups", 1), f))] + ([("bias", (f,))] if bias else [])
    elif kind == "BatchNormalization":
        shapes = [("gamma", (features,))] if config.get("scale", True) else []
        shapes += [("beta", (features,))] if config.get("center", True) else []
        return tuple(WeightSpec(n, s) for n, s in shapes) + (
            WeightSpec("moving_mean", (features,), trainable=False),
            WeightSpec("moving_variance", (features,), trainable=False),
        )
    elif kind == "Embedding":
        shapes = [("embeddings", (config["input_dim"], config["output_dim"]))]
    elif kind in ("SimpleRNN", "LSTM", "GRU"):
        u = config["units"]
        g = {"SimpleRNN": 1, "LSTM": 4, "GRU": 3}[kind]
        shapes = [("kernel", (features, g * u)), ("recurrent_kernel", (u, g * u))]
        if bias:
            two_biases = kind == "GRU" and config.get("reset_after", True)
            shapes.append(("bias", (2, g * u) if two_biases else (g * u,)))
    else:  # the other kinds: the weights the polykeras layer itself creates (none if it refuses the
        # config: the rules then raise their own error)
        from polykeras.layers import layer_class

        try:
            layer = layer_class(kind).from_config(dict(config))
            layer.build((None,) + tuple(input_shape))
        except (ValueError, TypeError, NotImplementedError):
            return ()
        return tuple(WeightSpec(w.name, w.shape, w.trainable) for w in layer._weight_specs)
    return tuple(WeightSpec(n, tuple(s)) for n, s in shapes)


def layer_spec(kind: str, config: dict, input_shape: tuple) -> LayerSpec:
    """A hand-built :class:`LayerSpec` for ``kind`` on inputs of ``(batch,) +
    input_shape``, its output shape given by the core's rules
    (:func:`polykeras.layer_rules.rules_for`)."""
    spec = LayerSpec(
        name=kind.lower(),
        kind=kind,
        config=dict(config),
        inbound=("input",),
        input_shapes=((None,) + tuple(input_shape),),
        output_shape=(None,),
        weights=canonical_weights(kind, config, input_shape),
    )
    return dataclasses.replace(spec, output_shape=rules_for(spec).output_shape(spec.input_shape))


def build(kind: str, config: dict, input_shape: tuple, dtype=np.float64):
    """The NumPy kernel for ``kind`` on a :func:`layer_spec`."""
    return KERNELS[kind](layer_spec(kind, config, input_shape), dtype)


def random_weights(kernel, rng: np.random.Generator, scale: float = 0.5) -> list[np.ndarray]:
    """Random weights for ``kernel``; variances are kept positive."""
    weights = []
    for ws in kernel.spec.weights:
        if ws.name == "moving_variance":
            w = rng.uniform(0.5, 1.5, ws.shape)
        else:
            w = rng.normal(0.0, scale, ws.shape)
        weights.append(w.astype(kernel.dtype))
    return weights


def fixed_dropout_mask(dtype):
    """A deterministic stand-in for the host's parity-mode masks: the same
    ``(shape, rate, stream)`` always gives the same scaled keep mask."""

    def mask(shape, rate, stream):
        if isinstance(rate, Normal):  # GaussianNoise / GaussianDropout: the host's Gaussian noise, fixed
            return dropout_mask(0, 0, stream, shape, rate, dtype)
        rng = np.random.default_rng([stream, *shape, int(rate * 1000)])
        keep = rng.random(shape) >= rate
        return (keep / (1.0 - rate)).astype(dtype)

    return mask


def context(training: bool, dtype=np.float64) -> ForwardContext:
    return ForwardContext(training, fixed_dropout_mask(dtype))


def numerical_gradient(loss, array: np.ndarray, h: float = FD_STEP) -> np.ndarray:
    """Central differences of ``loss()`` with respect to ``array`` (perturbed
    in place, restored afterwards)."""
    grad = np.zeros(array.shape, dtype=np.float64)
    flat, gflat = array.reshape(-1), grad.reshape(-1)
    for k in range(flat.size):
        original = flat[k]
        flat[k] = original + h
        up = loss()
        flat[k] = original - h
        down = loss()
        flat[k] = original
        gflat[k] = (up - down) / (2 * h)
    return grad


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """Largest absolute difference relative to the largest gradient entry."""
    scale = max(np.max(np.abs(analytic), initial=0.0), np.max(np.abs(numeric), initial=0.0), 1e-12)
    return float(np.max(np.abs(analytic - numeric), initial=0.0) / scale)


def check_gradients(kernel, weights, x, training: bool = False, seed: int = 0, tol: float = FD_TOLERANCE):
    """Compare ``kernel.backward`` with finite differences of
    ``loss = sum(y * R)`` for the input (if differentiable) and every
    trainable weight. Returns the analytic ``(dx, dweights)``."""
    ctx = context(training, kernel.dtype)
    y, cache = kernel.forward(weights, x, ctx)
    R = np.random.default_rng(seed + 1000).normal(size=y.shape).astype(kernel.dtype)
    dx, dweights = kernel.backward(weights, cache, R)

    def loss():
        return float(np.sum(kernel.forward(weights, x, context(training, kernel.dtype))[0] * R))

    assert len(dweights) == len(weights)
    if kernel.differentiable_input:
        assert dx.shape == x.shape
        err = relative_error(dx, numerical_gradient(loss, x))
        assert err < tol, f"{kernel.kind}: input gradient relative error {err:.2e}"
    else:
        assert dx is None
    for ws, w, dw in zip(kernel.spec.weights, weights, dweights):
        if not ws.trainable:
            assert dw is None, f"{kernel.kind}: non-trainable {ws.name} got a gradient"
            continue
        assert dw.shape == w.shape, f"{kernel.kind}: d{ws.name} has shape {dw.shape}, want {w.shape}"
        err = relative_error(dw, numerical_gradient(loss, w))
        assert err < tol, f"{kernel.kind}: d{ws.name} relative error {err:.2e}"
    return dx, dweights


def check_model_gradients(program, x, y, indices) -> None:
    """A numpy program's weight gradients (``value_and_grad``) against central differences of its
    loss, for the weights at ``indices`` (of ``program.get_weights()``)."""
    weights = program.get_weights()
    grads = program.value_and_grad(x, y, training=False).weights

    def loss():
        program.set_weights(weights)
        return program.value_and_grad(x, y, training=False).loss

    try:
        for index in indices:
            numeric = numerical_gradient(loss, weights[index])
            np.testing.assert_allclose(grads[index], numeric, rtol=FD_TOLERANCE, atol=FD_TOLERANCE)
    finally:
        program.set_weights(weights)
