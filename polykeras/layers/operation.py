"""Ops recorded in models: a ``polykeras.ops`` call on symbolic tensors is a
graph node of kind ``"Operation"``, as in Keras 3's functional models.

The node's config names the op, its static arguments (``params``) and where
each tensor argument comes from (``args``): ``{"input": k}`` for the node's
``k``-th inbound tensor, ``{"constant": value}`` for a Python number or
``{"constant": [...], "dtype": ...}`` for a (small) NumPy array. Every backend
reads the same config; the NumPy reference runs the registry's forward and
VJP (:mod:`polykeras.ops.registry`).

Model nodes keep the batch axis first: an op that removes or moves it
(``ops.sum(x)`` over all axes, ``ops.transpose(x)``) is refused with the reason,
since losses, batching and data parallelism read the batch axis there. A loss
or metric function (:mod:`polykeras.functions`) is traced :func:`free_batch_axis`:
there reducing over the batch is the point, and the result simply has no
batch axis.

The output shape is found by *evaluating the op on examples*: the NumPy
forward runs on small arrays whose unknown sizes take two different values;
the sizes that follow the batch size are the batch axis, those that follow
the other unknown sizes are unknown (``None``). No op needs a separate shape
rule that could disagree with its forward.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from polykeras.layers.base import Layer, unique_name
from polykeras.layers.symbolic import COLLECTING, FREE_BATCH_AXIS, SymbolicTensor, format_shape
from polykeras.ops import registry

#: The largest NumPy array an op may take as a constant (entries); bigger ones belong in a weight.
MAX_CONSTANT_SIZE = 4096



@contextlib.contextmanager
def free_batch_axis():
    """Trace ops that may reduce or move the batch axis (a loss function's ``ops.mean(...)``);
    Python's operators then record ops, never merge layers."""
    FREE_BATCH_AXIS.append(True)
    try:
        yield
    finally:
        FREE_BATCH_AXIS.pop()


def jsonable(value):
    """Static arguments as JSON data (tuples become lists)."""
    if isinstance(value, (tuple, list)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.dtype):
        return str(value)
    return value


def tuples(value):
    """The inverse of :func:`jsonable` for NumPy's argument conventions: lists become tuples."""
    if isinstance(value, list):
        return tuple(tuples(v) for v in value)
    return value


def op_params(params: dict, dtype) -> dict:
    """An ``Operation`` node's keyword parameters as a backend runs them (``dtype``: the model's
    compute dtype, a name or a NumPy/torch dtype): lists as tuples, and a float ``dtype``
    parameter (``ops.cast(x, "float32")``, ``ops.one_hot(ids, n, dtype=...)``, written when
    the model was traced) as the compute dtype -- a model computes in the one float dtype
    ``compile(dtype=...)`` gives it."""
    out = {k: tuples(v) for k, v in params.items()}
    if isinstance(out.get("dtype"), str) and np.dtype(out["dtype"]).kind == "f":
        out["dtype"] = np.dtype(str(dtype).removeprefix("torch.")).name
    for k, v in out.items():  # a control-flow op's sub-graphs (polykeras.ops.subgraph) compute in it too
        if isinstance(v, dict) and "nodes" in v:
            out[k] = {**v, "compute_dtype": np.dtype(str(dtype).removeprefix("torch.")).name}
    return out


def constant_arg(value, op: str) -> dict:
    if isinstance(value, (bool, int, float)):
        return {"constant": value}
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"ops.{op}: cannot record an argument of type {type(value).__name__} in a model")
    if array.size > MAX_CONSTANT_SIZE:
        raise ValueError(f"ops.{op}: a constant array of {array.size} entries is too large to record in a model "
                         f"(at most {MAX_CONSTANT_SIZE}); make it a weight of a layer")
    return {"constant": array.tolist(), "dtype": str(array.dtype)}


def resolve_args(args: list[dict], inputs: list) -> list:
    """The op's tensor arguments: inbound values and constants, in order."""
    out = []
    for arg in args:
        if "input" in arg:
            out.append(inputs[arg["input"]])
        elif "dtype" in arg:
            out.append(np.asarray(arg["constant"], dtype=arg["dtype"]))
        else:
            out.append(arg["constant"])
    return out


class Operation(Layer):
    """One op in a model. Built by :func:`record`, not by users."""

    kind = "Operation"
    multiple_inputs = True
    takes_across_batch = True

    def __init__(self, op: str, args: list[dict], params: dict[str, Any] | None = None, **kwargs):
        self.op = registry.get(op)
        kwargs.setdefault("name", unique_name(op))
        super().__init__(**kwargs)
        self.args = [dict(a) for a in args]
        self.params = {k: jsonable(v) for k, v in (params or {}).items()}

    def get_config(self) -> dict:
        return {"name": self.name, "op": self.op.name, "args": self.args, "params": self.params}

    @classmethod
    def from_config(cls, config: dict) -> "Operation":
        return cls(**config)

    def _check_input_shape(self, input_shape) -> None:
        pass

    def _call_symbolically(self, tensors, several):
        self._input_dtypes = [t.dtype for t in tensors]
        self._input_batched = [t.batched for t in tensors]
        out = super()._call_symbolically(tensors, several)
        out.dtype = self._output_dtype
        out.batched = self._output_batched
        out.across_batch = out.across_batch or (not out.batched and any(self._input_batched) and not FREE_BATCH_AXIS)
        return out

    def compute_output_shape(self, input_shapes) -> tuple:
        if self.op.infer is not None:  # a control-flow op: its traced sub-graph says
            shape, self._output_dtype, self._output_batched = self.op.infer(self.params)
            return shape
        shape, self._output_dtype, self._output_batched = infer_output(
            self.op, self.args, tuples(self.params), input_shapes, self.name, getattr(self, "_input_dtypes", None),
            getattr(self, "_input_batched", None))
        return shape


def _example(shape, batch: int, free: int, dtype, batched: bool = True) -> np.ndarray:
    sizes = [batch if i == 0 and batched else (free if d is None else d) for i, d in enumerate(shape)]
    # ones keep log/sqrt/divide finite; integer inputs are indices, and index 0 always exists
    return (np.zeros if np.dtype(dtype).kind in "iub" else np.ones)(sizes, dtype=dtype)


def infer_output(op, args, params, input_shapes, name, dtypes=None, batched=None) -> tuple[tuple, str, bool]:
    """``(output shape, dtype, whether it has a batch axis)`` of ``op`` by evaluation on examples
    (module docstring). Inputs without a batch axis (``batched`` false: a custom layer's variables)
    keep their shapes, and an op on such inputs alone has no batch axis either."""
    dtypes = dtypes or ["float64"] * len(input_shapes)
    batched = batched or [True] * len(input_shapes)
    results = {}
    with np.errstate(all="ignore"):
        for batch, free in ((2, 5), (3, 5), (2, 7)):
            inputs = [_example(s, batch, free, d, b) for s, d, b in zip(input_shapes, dtypes, batched)]
            arrays = resolve_args(args, inputs)
            try:
                results[(batch, free)] = np.asarray(op.forward(*arrays, **params))
            except (ValueError, TypeError, IndexError) as exc:
                shapes = ", ".join(format_shape(s) for s in input_shapes)
                raise ValueError(f"ops.{op.name} ({name!r}) cannot be applied to tensors of shapes {shapes} with "
                                 f"{params}: {exc}") from None
    a, b, c = results[(2, 5)], results[(3, 5)], results[(2, 7)]
    if not any(batched):
        return tuple(a.shape), str(a.dtype), False
    if a.ndim == 0 or a.shape[0] != 2 or b.shape[0] != 3 or a.shape[1:] != b.shape[1:]:
        if (FREE_BATCH_AXIS or COLLECTING) and a.ndim == b.ndim == c.ndim:  # (COLLECTING: a value for add_loss)  # no batch axis: the sizes that vary are unknown
            return tuple(None if m != n or m != k else m for m, n, k in zip(a.shape, b.shape, c.shape)), \
                str(a.dtype), False
        raise ValueError(
            f"ops.{op.name} ({name!r}) on shapes {', '.join(format_shape(s) for s in input_shapes)} gives a result "
            "without the batch axis first (it reduces, moves or mixes the batch axis); inside a model, ops keep "
            "axis 0 as the batch axis -- e.g. reduce over axis=-1 or axis=(1, 2), not over all axes")
    shape = (None,) + tuple(None if m != n else m for m, n in zip(a.shape[1:], c.shape[1:]))
    return shape, str(a.dtype), True


def constant(value) -> SymbolicTensor:
    """An array used inside a traced ``call()`` where a tensor is expected (a layer called on
    ``ops.arange(...)``): a node without inputs or batch axis whose output is the array."""
    layer = Operation("convert_to_tensor", [constant_arg(np.asarray(value), "convert_to_tensor")], {})
    return layer._call_symbolically([], several=True)


def record(op, tensors: list, params: dict) -> SymbolicTensor:
    """An op called on at least one symbolic tensor: a new graph node."""
    inputs, args = [], []
    for t in tensors:
        if isinstance(t, SymbolicTensor):
            args.append({"input": len(inputs)})
            inputs.append(t)
        else:
            args.append(constant_arg(t, op.name))
    layer = Operation(op.name, args, params)
    return layer(inputs)

