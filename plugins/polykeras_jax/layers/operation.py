"""``Operation`` nodes in JAX: each op of :mod:`polykeras.ops` written with ``jax.numpy``
/ ``jax.nn`` under Keras's argument names, differentiated by autodiff inside
the one jitted step. Where autodiff and the reference could pick different
sides of a kink the op is written so they agree: ``clip`` passes the gradient
on the closed interval (``jnp.clip`` halves it at the bounds)."""

from __future__ import annotations

import jax
import numpy as np
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from polykeras.backend import epsilon
from polykeras.layers.operation import op_params, resolve_args
from polykeras.ops.shapes import decode_key

from . import control_flow
from .base import Layer


def _clip(x, x_min=None, x_max=None):
    clipped = jnp.clip(x, x_min, x_max)
    return jnp.where((x >= x_min) & (x <= x_max), x, jax.lax.stop_gradient(clipped))


def _normalize(x, axis=-1, order=2, epsilon_=None):
    eps = epsilon() if epsilon_ is None else epsilon_
    return x / jnp.maximum(jnp.sqrt(jnp.sum(x * x, axis=axis, keepdims=True)), eps)


def _slice(x, start_indices=None, shape=None):
    return x[tuple(slice(int(s), int(s) + int(n)) for s, n in zip(start_indices, shape))]


def _pad(x, pad_width=None, mode="constant", constant_values=None):
    return jnp.pad(x, pad_width, mode="constant", constant_values=constant_values or 0)


def _one_hot(x, num_classes=None, axis=-1, dtype=None, sparse=False):
    return jax.nn.one_hot(x, int(num_classes), axis=axis, dtype=dtype or "float32")


def _dot_product_attention(query, key, value, mask, scale=None, is_causal=False):
    """``ops.dot_product_attention`` as the reference writes it. ``jax.nn.dot_product_attention`` is the
    same function on the CPU (XLA, masked logits replaced, so an all-masked row attends uniformly) but
    takes its softmax in float32 whatever the dtype, which a float64 model cannot have."""
    scale = 1.0 / np.sqrt(key.shape[-1]) if scale is None else scale
    logits = jnp.einsum("btnh,bsnh->bnts", query, key) * jnp.asarray(scale, query.dtype)
    if is_causal:
        mask = jnp.logical_and(mask, jnp.tril(jnp.ones(logits.shape[-2:], dtype=bool)))
    logits = jnp.where(mask, logits, -1e9)
    return jnp.einsum("bnts,bsnh->btnh", jax.nn.softmax(logits, axis=-1), value)


#: Ops whose Keras signature differs from ``jax.numpy``'s; the others are ``jnp.<name>``.
OPS = {
    "relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid, "softplus": jax.nn.softplus, "silu": jax.nn.silu,
    "gelu": lambda x, approximate=True: jax.nn.gelu(x, approximate=approximate),
    "softmax": lambda x, axis=-1: jax.nn.softmax(x, axis=axis),
    "log_softmax": lambda x, axis=-1: jax.nn.log_softmax(x, axis=axis),
    "clip": _clip, "stop_gradient": jax.lax.stop_gradient,
    "logsumexp": lambda x, axis=None, keepdims=False: logsumexp(x, axis=axis, keepdims=keepdims),
    "reshape": lambda x, newshape=None: jnp.reshape(x, newshape),
    "concatenate": lambda *xs, axis=0: jnp.concatenate(xs, axis=axis),
    "stack": lambda *xs, axis=0: jnp.stack(xs, axis=axis),
    "tile": lambda x, repeats=None: jnp.tile(x, repeats),
    "pad": _pad, "slice": _slice, "one_hot": _one_hot,
    "cast": lambda x, dtype=None: x.astype(dtype),
    "einsum": lambda *xs, subscripts=None: jnp.einsum(subscripts, *xs),
    "dot_product_attention": _dot_product_attention,
    "normalize": lambda x, axis=-1, order=2, epsilon=None: _normalize(x, axis, order, epsilon),
    "getitem": lambda x, key=(): x[decode_key(key)],
    "convert_to_tensor": lambda x, dtype=None: jnp.asarray(x, dtype=dtype),
    # lax.top_k: largest first, ties to the lower index, as the reference
    "top_k_indices": lambda x, k=None, sorted=True: jax.lax.top_k(x, int(k))[1],
}
OPS.update(control_flow.OPS)  # cond, while_loop, fori_loop: their sub-graphs run with the ops above


def function(name: str):
    return OPS.get(name) or getattr(jnp, name)


class Op(Layer):
    kind = "Operation"
    multiple_inputs = True

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        self.fn = function(self.config["op"])
        self.args = self.config["args"]
        self.params = op_params(self.config.get("params", {}), dtype)

    def __call__(self, weights, xs, ctx):
        arrays = [a.astype(self.dtype) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a
                  for a in resolve_args(self.args, list(xs))]
        return self.fn(*arrays, **self.params)
