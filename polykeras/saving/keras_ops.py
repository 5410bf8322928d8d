"""Ops on a functional model's tensors in Keras 3 ``.keras`` files, both ways.

Keras 3 writes each op that a functional model applies to its tensors outside any layer
(``keras.ops.mean(h, axis=-1)``, ``h * 2.0``, ``x[:, 1:]``) as an entry of its own, like a
layer's: ``module`` ``keras.src.ops.<numpy|nn|math|core>``, the op's class (``Mean``), its
constructor arguments as ``config`` (``{"name", "axis", "keepdims"}``) and one inbound node
holding the call's arguments -- tensors as ``__keras_tensor__``, Python numbers as they are,
arrays as ``__tensor__`` (value and dtype), a slice as ``__slice__``. Such an entry has no
weights and takes no part in the ``layers/<name>`` numbering of the weights file.

polykeras records the same calls as ``Operation`` nodes (:mod:`polykeras.layers.operation`),
whose ops have Keras's names and arguments, so the exchange is a table (:data:`KERAS_OPS`): per
op, the Keras class and which of polykeras's static arguments Keras passes to the *call* rather
than to the constructor (``GetItem``'s key, ``Pad``'s ``constant_values``, ``FullLike``'s
``fill_value``). ``tests/test_keras_files_ops.py`` checks the table against Keras's own classes.
Ops without a Keras counterpart that a functional model can hold are refused by name
(:data:`NOT_EXCHANGED`, with the reason).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from polykeras.saving.keras_format import KerasFileError


@dataclasses.dataclass(frozen=True)
class KerasOp:
    """A Keras operation class: ``keras.src.ops.<module>.<class_name>``; ``call`` names polykeras's
    static arguments that Keras passes to the call after the tensors, positionally (``GetItem``'s
    ``key``), ``call_kwargs`` those it passes by keyword (``Pad``'s ``constant_values``)."""

    module: str
    class_name: str
    call: tuple[str, ...] = ()
    call_kwargs: tuple[str, ...] = ()


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


_BY_MODULE = {
    "numpy": "abs add all any argmax argmin clip concatenate cos cumsum divide einsum equal exp expand_dims flip "
             "greater greater_equal less less_equal log log1p logical_and logical_not logical_or matmul max "
             "maximum mean min minimum multiply negative not_equal ones_like power prod reciprocal repeat reshape "
             "sign sin sqrt square squeeze stack std subtract sum take take_along_axis tanh tensordot tile "
             "transpose tril triu var where zeros_like",
    "nn": "gelu log_softmax normalize one_hot relu sigmoid silu softmax softplus",
    "math": "logsumexp",
    "core": "cast stop_gradient",
}
#: polykeras op -> the Keras operation that writes and reads it
KERAS_OPS: dict[str, KerasOp] = {op: KerasOp(module, _camel(op)) for module, names in _BY_MODULE.items()
                                 for op in names.split()}
KERAS_OPS.update({
    "abs": KerasOp("numpy", "Absolute"),  # what abs(x) and ops.abs write (ops.abs is ops.absolute)
    "getitem": KerasOp("numpy", "GetItem", call=("key",)),
    "pad": KerasOp("numpy", "Pad", call_kwargs=("constant_values",)),
    "full_like": KerasOp("numpy", "FullLike", call=("fill_value",)),
})
#: Keras operation classes that are polykeras ops under another class name (read only)
KERAS_ALIASES = {"TrueDivide": "divide", "Abs": "abs"}
#: Keras operations read as the polykeras merge layers when both inputs are tensors of one shape (as
#: polykeras's operators ``+ - *`` record them); otherwise as op nodes (NumPy broadcasting)
MERGE_LAYERS = ("Add", "Subtract", "Multiply")
#: polykeras ops a functional model can hold that are not exchanged, and why
NOT_EXCHANGED = {
    "top_k_indices": "Keras's TopK returns values and indices as one call of two outputs; polykeras records two "
                     "nodes",
    "dot_product_attention": "Keras's own op is not the same function on every Keras backend (on torch it adds "
                             "-1e9 to masked logits), and polykeras's always carries a mask",
    "convert_to_tensor": "a constant node without inputs, which a Keras functional graph cannot hold",
}

_BY_CLASS = {(spec.module, spec.class_name): op for op, spec in KERAS_OPS.items()}
_BY_CLASS.update({("numpy", alias): op for alias, op in KERAS_ALIASES.items()})


def is_exchanged(op: str) -> bool:
    return op in KERAS_OPS


def refusal(op: str, node: str) -> str:
    """Why op node ``node`` cannot go into a ``.keras`` file, and what to do."""
    why = NOT_EXCHANGED.get(op, "Keras has no operation polykeras writes it as")
    return (f"ops.{op} ({node!r}) cannot be written to a Keras 3 .keras file: {why}; put it in a registered "
            "custom layer, or save the model as .polykeras (polykeras's own format, which keeps every op)")


# -- writing ------------------------------------------------------------------------------------------------

def keras_key(key: list) -> list:
    """A ``getitem`` key (:func:`polykeras.ops.shapes.encode_key`) as Keras serialises an index tuple."""
    out = []
    for k in key:
        if isinstance(k, dict):
            start, stop, step = k["slice"]
            out.append({"class_name": "__slice__", "config": {"start": start, "stop": stop, "step": step}})
        elif k == "newaxis":
            out.append(None)
        elif k == "...":
            out.append({"class_name": "__ellipsis__", "config": {}})
        else:
            out.append(int(k))
    return out


def _constant(arg: dict):
    if "dtype" not in arg:
        return arg["constant"]  # a Python number: weakly typed on both sides
    return {"class_name": "__tensor__", "config": {"value": arg["constant"], "dtype": arg["dtype"]}}


def keras_entry(config: dict, calls: list[list]) -> dict:
    """Keras's entry for an ``Operation`` node of config ``config`` (``{"name", "op", "args", "params"}``)
    whose calls (one; several where a model holding it was used as a layer more than once) read the
    inbound tensors ``calls``, serialised (``__keras_tensor__``)."""
    op, name, params = config["op"], config["name"], dict(config.get("params") or {})
    if op not in KERAS_OPS:
        raise KerasFileError(refusal(op, name))
    spec = KERAS_OPS[op]
    if op == "getitem":
        params["key"] = keras_key(params.get("key") or [])
    call_args = [params.pop(p) for p in spec.call]
    kwargs = {p: params.pop(p) for p in spec.call_kwargs if params.get(p) is not None}
    for p in spec.call_kwargs:
        params.pop(p, None)
    nodes = []
    for tensors in calls:
        values = [tensors[a["input"]] if "input" in a else _constant(a) for a in config["args"]]
        nodes.append({"args": [values] if op in ("concatenate", "stack") else values + call_args, "kwargs": kwargs})
    return {"module": f"keras.src.ops.{spec.module}", "class_name": spec.class_name,
            "config": {"name": name, **params}, "registered_name": spec.class_name, "name": name,
            "inbound_nodes": nodes}


# -- reading ------------------------------------------------------------------------------------------------

def op_of(entry: dict) -> str:
    """The polykeras op of a Keras operation entry; refused by name if polykeras has none."""
    module = str(entry.get("module") or "").removeprefix("keras.src.ops.")
    op = _BY_CLASS.get((module, entry["class_name"]))
    if op is None:
        raise KerasFileError(f"Keras operation {entry['class_name']!r} ({entry.get('name')!r}, "
                             f"{entry.get('module')}) has no polykeras op")
    return op


def tensor_refs(node: dict) -> list[tuple[str, int, int]]:
    """The ``(layer, call, tensor index)`` of the Keras tensors one operation call reads."""
    out = []

    def visit(value):
        if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
            h = value["config"]["keras_history"]
            out.append((str(h[0]), int(h[1]), int(h[2])))
        elif isinstance(value, dict):
            for v in value.values():
                visit(v)
        elif isinstance(value, list):
            for v in value:
                visit(v)

    visit([node.get("args", []), node.get("kwargs") or {}])
    return out


def value(item, tensors: dict):
    """A call argument: a Keras tensor as the symbolic tensor made for it, an array, a slice, a number."""
    if isinstance(item, dict) and item.get("class_name") == "__keras_tensor__":
        h = item["config"]["keras_history"]
        return tensors[(str(h[0]), int(h[1]))][int(h[2])]
    if isinstance(item, dict) and item.get("class_name") in ("__tensor__", "__numpy__"):
        return np.asarray(item["config"]["value"], dtype=item["config"]["dtype"])
    if isinstance(item, dict) and item.get("class_name") == "__slice__":
        c = item["config"]
        return {"slice": [c.get("start"), c.get("stop"), c.get("step")]}
    if isinstance(item, dict) and item.get("class_name") == "__ellipsis__":
        return "..."
    if isinstance(item, list):
        return [value(v, tensors) for v in item]
    return item


def _key(value) -> list:
    """Keras's serialised index (one entry or a list of them) as a ``getitem`` key."""
    items = value if isinstance(value, list) else [value]
    return ["newaxis" if k is None else k for k in items]


def call(entry: dict, node: dict, tensors: dict, path, name: str):
    """Record the node ``name`` for one call of a Keras operation entry: ``+ - *`` between two tensors of
    one shape as the merge layer polykeras's operators record, anything else as an op node."""
    from polykeras.layers import layer_class
    from polykeras.layers.operation import Operation, constant_arg
    from polykeras.layers.symbolic import SymbolicTensor
    from polykeras.ops import registry

    op = op_of(entry)
    spec, definition = KERAS_OPS[op], registry.get(op)
    args = [value(a, tensors) for a in node.get("args", [])]
    if (entry["class_name"] in MERGE_LAYERS and spec.module == "numpy" and len(args) == 2
            and all(isinstance(a, SymbolicTensor) and a.batched for a in args) and args[0].shape == args[1].shape):
        return layer_class(entry["class_name"])(name=name)(args)
    kwargs = {k: value(v, tensors) for k, v in (node.get("kwargs") or {}).items()}
    if op in ("concatenate", "stack"):
        values, rest = list(args[0]), args[1:]
    elif definition.variadic:  # einsum: the operands one by one
        values, rest = args, []
    else:
        n = len(definition.tensors)
        values, rest = args[:n], args[n:]
        for t in definition.tensors[len(values):]:
            if t in kwargs:
                values.append(kwargs.pop(t))
    params = dict(zip(spec.call, rest))
    params.update({k: kwargs.pop(k) for k in spec.call_kwargs if k in kwargs})
    if len(values) != len(definition.tensors) and not definition.variadic or kwargs or len(rest) > len(spec.call):
        raise KerasFileError(f"{path}: Keras operation {name!r} ({entry['class_name']}) is called with arguments "
                             "polykeras does not read")
    for key, setting in entry.get("config", {}).items():
        if key == "name":
            continue
        if key in definition.params:
            params[key] = setting
        elif setting is not None and setting is not False:
            raise KerasFileError(f"{path}: Keras operation {name!r} ({entry['class_name']}) sets {key}={setting!r}, "
                                 f"which ops.{op} does not take")
    if op == "getitem":
        params["key"] = _key(params.get("key", []))
    inputs, op_args = [], []
    for v in values:
        if isinstance(v, SymbolicTensor):
            op_args.append({"input": len(inputs)})
            inputs.append(v)
        else:
            op_args.append(constant_arg(v, op))
    if not inputs:
        raise KerasFileError(f"{path}: Keras operation {name!r} ({entry['class_name']}) reads no tensor of the model")
    try:
        return Operation(op, op_args, params, name=name)(inputs)
    except ValueError as exc:  # e.g. it reduces the batch axis, which a polykeras model node keeps
        raise KerasFileError(f"{path}: Keras operation {name!r}: {exc}") from None
