"""``Operation`` nodes in torch: each op of :mod:`polykeras.ops` under Keras's
argument names (``axis``/``keepdims`` for torch's ``dim``/``keepdim``),
differentiated by autograd. Constants become tensors in the compute dtype
(integer ones stay integer: indices). Where autograd and the reference could
pick different sides of a kink they agree by construction: ``torch.maximum``,
``amax`` and ``amin`` split ties equally, ``clamp`` passes the gradient on the
closed interval, ``abs`` and ``relu`` have gradient 0 at 0."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from polykeras.backend import epsilon
from polykeras.layers.operation import op_params, resolve_args
from polykeras.ops import registry
from polykeras.ops.shapes import decode_key

from . import control_flow
from .base import TorchLayer


def _dims(x, axis):
    if axis is None:
        return tuple(range(x.dim()))
    return (axis,) if isinstance(axis, int) else tuple(axis)


def _reduction(fn):
    return lambda x, axis=None, keepdims=False: fn(x, dim=_dims(x, axis), keepdim=keepdims)


def _var(x, axis=None, keepdims=False):
    return torch.var(x, dim=_dims(x, axis), keepdim=keepdims, correction=0)


def _std(x, axis=None, keepdims=False):
    return torch.std(x, dim=_dims(x, axis), keepdim=keepdims, correction=0)


def _prod(x, axis=None, keepdims=False):
    for d in sorted((d % x.dim() for d in _dims(x, axis)), reverse=True):
        x = torch.prod(x, dim=d, keepdim=keepdims)
    return x


def _arg(fn):
    def arg(x, axis=None, keepdims=False):
        if axis is None:
            out = fn(x.reshape(-1))
            return out.reshape((1,) * x.dim()) if keepdims else out
        return fn(x, dim=axis, keepdim=keepdims)
    return arg


def _cumsum(x, axis=None):
    return torch.cumsum(x.reshape(-1), 0) if axis is None else torch.cumsum(x, dim=axis)


def _gelu(x, approximate=True):
    return F.gelu(x, approximate="tanh" if approximate else "none")


def _transpose(x, axes=None):
    return x.permute(*(axes if axes is not None else reversed(range(x.dim()))))


def _squeeze(x, axis=None):
    return torch.squeeze(x) if axis is None else torch.squeeze(x, dim=axis)


def _expand_dims(x, axis=None):
    for a in sorted((axis,) if isinstance(axis, int) else axis):
        x = torch.unsqueeze(x, a if a >= 0 else a + x.dim() + 1)
    return x


def _flip(x, axis=None):
    return torch.flip(x, dims=_dims(x, axis))


def _repeat(x, repeats=None, axis=None):
    if axis is None:
        return torch.repeat_interleave(x.reshape(-1), repeats)
    return torch.repeat_interleave(x, repeats, dim=axis)


def _pad(x, pad_width=None, mode="constant", constant_values=None):
    widths = np.broadcast_to(np.asarray(pad_width), (x.dim(), 2))
    flat = [int(v) for lo_hi in reversed(widths.tolist()) for v in lo_hi]  # torch: last axis first
    return F.pad(x, flat, value=float(constant_values or 0))


def _take(x, indices, axis=None):
    if axis is None:
        indices = indices.long()
        return torch.take(x, indices % x.numel())
    indices = indices.long()
    return torch.index_select(x, axis, (indices % x.shape[axis]).reshape(-1)).reshape(
        x.shape[:axis % x.dim()] + indices.shape + x.shape[axis % x.dim() + 1:])


def _take_along_axis(x, indices, axis=None):
    if axis is None:
        return torch.take(x, indices)
    axis %= x.dim()
    # NumPy broadcasts the other axes of x and indices; torch.gather wants them expanded
    sizes = [max(a, b) for a, b in zip(x.shape, indices.shape)]
    x = x.expand(*[n if d != axis else -1 for d, n in enumerate(sizes)])
    return torch.gather(x, axis, indices.expand(*[n if d != axis else -1 for d, n in enumerate(sizes)]))


def _slice(x, start_indices=None, shape=None):
    return x[tuple(slice(int(s), int(s) + int(n)) for s, n in zip(start_indices, shape))]


def _getitem(x, key: tuple):
    """``x[key]`` (basic indexing); torch slices take no negative step, so those axes are kept
    whole by the slicing and gathered in reverse order afterwards."""
    key = list(key)
    if Ellipsis in key:
        i = key.index(Ellipsis)
        key[i:i + 1] = [slice(None)] * (x.dim() - sum(k is not None and k is not Ellipsis for k in key))
    reversed_axes, position, axis = [], 0, 0  # (output position, indices); axis walks x's axes
    for i, k in enumerate(key):
        if k is None:
            position += 1
            continue
        if isinstance(k, slice):
            if k.step is not None and k.step < 0:
                reversed_axes.append((position, range(*k.indices(x.shape[axis]))))
                key[i] = slice(None)
            position += 1
        axis += 1
    out = x[tuple(key)]
    for position, indices in reversed_axes:
        out = torch.index_select(out, position, torch.as_tensor(list(indices), dtype=torch.long, device=x.device))
    return out


def _clip(x, x_min=None, x_max=None):
    return torch.clamp(x, x_min, x_max)


def _normalize(x, axis=-1, order=2, epsilon_=None):
    eps = epsilon() if epsilon_ is None else epsilon_
    return x / torch.clamp(torch.sqrt(torch.sum(x * x, dim=axis, keepdim=True)), min=eps)


def _one_hot(x, num_classes=None, axis=-1, dtype=None, sparse=False):
    out = F.one_hot(x.long(), int(num_classes)).to(getattr(torch, dtype or "float32"))
    return torch.movedim(out, -1, axis)


def _dot_product_attention(query, key, value, mask, scale=None, is_causal=False):
    """``ops.dot_product_attention`` by ``scaled_dot_product_attention``. Keras's definition replaces
    masked logits by -1e9, so a query whose keys are all masked attends uniformly (the mean of the
    values), where the kernel would give no weights at all: such rows are given every key (so the
    kernel sees no empty row) and their output is replaced by the mean of the values -- the same
    function and gradients (none to the query and key from those rows). Causal attention leaves no
    row empty (key 0 is always there) and goes to the kernel's own causal path when no other mask
    is given. On the CPU a mask that leaves every row a key (the usual padding mask) skips the mending:
    the check is one reduction over the mask and a host read, cheap there (on a GPU it would wait
    for the device)."""
    q, k, v = (t.transpose(1, 2) for t in (query, key, value))  # (B, N, T, H): the kernel's layout
    mask = mask.to(torch.bool)
    if mask.numel() == 1:  # no mask (ops.dot_product_attention's constant): only is_causal, or nothing
        out = F.scaled_dot_product_attention(q, k, v, is_causal=bool(is_causal), scale=scale)
        return torch.where(mask.reshape(()), out, v.mean(-2, keepdim=True)).transpose(1, 2)
    if is_causal:
        mask = mask & torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=mask.device).tril()
    attends = mask.any(-1, keepdim=True)  # (..., T, 1): rows with at least one key
    if mask.device.type == "cpu" and bool(attends.all()):  # no empty row (padding): nothing to mend
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale).transpose(1, 2)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask | ~attends, scale=scale)
    return torch.where(attends, out, v.mean(-2, keepdim=True)).transpose(1, 2)


def _cast(x, dtype=None):
    return x.to(getattr(torch, str(dtype)))


def _like(fn):
    return lambda x, *args, dtype=None, **kwargs: fn(x, *args, dtype=None if dtype is None else getattr(torch, dtype))


OPS = {
    "add": torch.add, "subtract": torch.sub, "multiply": torch.mul, "divide": torch.div, "power": torch.pow,
    "maximum": torch.maximum, "minimum": torch.minimum, "equal": torch.eq, "not_equal": torch.ne,
    "greater": torch.gt, "greater_equal": torch.ge, "less": torch.lt, "less_equal": torch.le,
    "logical_and": torch.logical_and, "logical_or": torch.logical_or, "logical_not": torch.logical_not,
    "negative": torch.neg, "abs": torch.abs, "exp": torch.exp, "log": torch.log, "log1p": torch.log1p,
    "sqrt": torch.sqrt, "square": torch.square, "reciprocal": torch.reciprocal, "sin": torch.sin, "cos": torch.cos,
    "tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu, "softplus": F.softplus, "silu": F.silu,
    "gelu": _gelu, "sign": torch.sign, "softmax": lambda x, axis=-1: torch.softmax(x, dim=axis),
    "log_softmax": lambda x, axis=-1: torch.log_softmax(x, dim=axis), "clip": _clip,
    "where": torch.where, "stop_gradient": torch.Tensor.detach,
    "sum": _reduction(torch.sum), "mean": _reduction(torch.mean), "max": _reduction(torch.amax),
    "min": _reduction(torch.amin), "prod": _prod, "var": _var, "std": _std, "logsumexp": _reduction(torch.logsumexp),
    "argmax": _arg(torch.argmax), "argmin": _arg(torch.argmin), "cumsum": _cumsum,
    "any": _reduction(torch.any), "all": _reduction(torch.all),
    "reshape": lambda x, newshape=None: torch.reshape(x, newshape), "expand_dims": _expand_dims,
    "squeeze": _squeeze, "transpose": _transpose, "concatenate": lambda *xs, axis=0: torch.cat(xs, dim=axis),
    "stack": lambda *xs, axis=0: torch.stack(xs, dim=axis),
    "broadcast_to": lambda x, shape=None: torch.broadcast_to(x, shape), "flip": _flip,
    "tile": lambda x, repeats=None: torch.tile(x, tuple(np.atleast_1d(repeats).tolist())), "repeat": _repeat,
    "pad": _pad, "take": _take, "take_along_axis": _take_along_axis, "slice": _slice,
    "tril": lambda x, k=0: torch.tril(x, k), "triu": lambda x, k=0: torch.triu(x, k), "cast": _cast,
    "one_hot": _one_hot, "matmul": torch.matmul, "einsum": lambda *xs, subscripts=None: torch.einsum(subscripts, *xs),
    "dot_product_attention": _dot_product_attention,
    "tensordot": lambda a, b, axes=2: torch.tensordot(a, b, dims=axes),
    "normalize": lambda x, axis=-1, order=2, epsilon=None: _normalize(x, axis, order, epsilon),
    "getitem": lambda x, key=(): _getitem(x, decode_key(key)),
    # torch.topk: largest first; among equal entries its order is not documented (the reference: lower index first)
    "top_k_indices": lambda x, k=None, sorted=True: torch.topk(x, int(k), dim=-1, sorted=True).indices,
    "convert_to_tensor": lambda x, dtype=None: x if dtype is None else _cast(x, dtype),
    "zeros_like": _like(torch.zeros_like), "ones_like": _like(torch.ones_like),
    "full_like": lambda x, fill_value=None, dtype=None: torch.full_like(
        x, fill_value, dtype=None if dtype is None else getattr(torch, dtype)),
}
OPS.update(control_flow.OPS)  # cond, while_loop, fori_loop: their sub-graphs run with the ops above


class Op(TorchLayer):
    kind = "Operation"
    multiple_inputs = True

    def __init__(self, spec, index, dtype, device):
        super().__init__(spec, index, dtype, device)
        name = spec.config["op"]
        if name not in OPS:
            raise NotImplementedError(f"the torch backend has no op {name!r} (layer {spec.name!r})")
        self.fn = OPS[name]
        self.args = spec.config["args"]
        self.params = op_params(spec.config.get("params", {}), dtype)
        names = [t.rstrip("*") for t in registry.get(name).tensors]
        self.arg_names = names * len(self.args) if registry.get(name).variadic else names

    def forward(self, params, xs, ctx):
        arrays = resolve_args(self.args, list(xs))
        arrays = [a if isinstance(a, torch.Tensor) else control_flow.constant_tensor(a, name, self.dtype, self.device)
                  for a, name in zip(arrays, self.arg_names)]
        return self.fn(*arrays, **self.params)

