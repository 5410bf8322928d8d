"""Reading a Keras 3 ``.keras`` file (:mod:`.keras_format`) into a polykeras model.

Keras's layer configs pass to polykeras's layers after :func:`.keras_format.plain` drops
what polykeras has no use for (``module``, ``registered_name``, the keys in
:data:`.keras_format.IGNORABLE` at their harmless values); a layer polykeras lacks, or an
option it does not support, is refused by name. Needs ``h5py``, imported
when a file is read.

A functional model is rebuilt as Keras rebuilds it: each layer's calls
(``inbound_nodes``) replayed in order as soon as the tensors they read exist,
so a shared layer is one polykeras layer called several times. A model used
as a layer (a ``Sequential`` or functional model inside a functional model
or a ``Sequential``) becomes a polykeras model called as a layer, which
flattens its layers into the outer graph; a nested layer whose name an outer
one took already is renamed ``<name>_<k>``. Keras's *operations* on tensors
(``keras.ops.mean(h)``, ``h * 2.0``, ``x[:, 1:]``) become polykeras op nodes
(:mod:`.keras_ops`; an operation polykeras lacks is refused by name), except
that ``+``, ``-``, ``*`` between two tensors of one shape stay the
``Add``/``Subtract``/``Multiply`` layers polykeras's own operators record.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np

from polykeras.saving import keras_custom, keras_ops, keras_training
from polykeras.saving.keras_calls import entry_name, flatten, is_operation, mask_plumbing
from polykeras.saving.keras_custom import is_custom_entry
from polykeras.saving.keras_format import KerasFileError, read_vars, to_snake_case, weight_paths
from polykeras.saving.keras_format import keras_layer_config as _layer_config
from polykeras.saving.keras_format import plain as _plain
from polykeras.saving.registration import UnknownObjectError

#: Keras's model classes: a model may be a layer of a functional model (or of a Sequential).
MODEL_CLASSES = ("Sequential", "Functional", "Model")


def _unsupported(entries: list[dict], pk_layers) -> set[str]:
    """The layers (and operations) of a model, nested models included, that polykeras lacks."""
    out = set()
    masks = mask_plumbing(entries)
    for entry in entries:
        class_name = entry["class_name"]
        if class_name in MODEL_CLASSES:
            out |= _unsupported(entry["config"]["layers"], pk_layers)
        elif is_operation(entry) and entry_name(entry) in masks:
            continue
        elif is_operation(entry):
            try:
                keras_ops.op_of(entry)
            except KerasFileError:
                out.add(f"{class_name} (a Keras operation)")
        elif class_name != "InputLayer" and not is_custom_entry(entry) and not _has_layer(pk_layers, class_name):
            out.add(class_name)
    return out


def _triples(value) -> list:
    """``input_layers``/``output_layers``: one ``[layer, node, tensor]``, a list of them, or a dict (Keras
    flattens a dict in sorted key order)."""
    if isinstance(value, dict):
        return [t for k in sorted(value) for t in _triples(value[k])]
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], str):
        return [value]
    return [t for v in value for t in _triples(v)]


def read_model(path, compile: bool = True):
    """A polykeras model from a Keras 3 ``.keras`` file (architecture, weights
    and, where polykeras has them, the optimizer, loss and metrics).

    Sequential and functional models are read, with several inputs and
    outputs, merge layers (and Keras's ``+``, ``-``, ``*`` operations on
    tensors of one rank), shared layers and models used as layers (their
    layers flattened into the polykeras model)."""
    import h5py

    from polykeras import layers as pk_layers

    path = Path(path)
    with zipfile.ZipFile(path) as zf:
        config = json.loads(zf.read("config.json"))
        weights_bytes = zf.read("model.weights.h5")
        meta = json.loads(zf.read("metadata.json")) if "metadata.json" in zf.namelist() else {}
    expected = (meta.get("polykeras") or {}).get("weights_sha256") if isinstance(meta, dict) else None
    if expected is not None and hashlib.sha256(weights_bytes).hexdigest() != expected:  # written by polykeras
        raise KerasFileError(f"{path}: the weights do not match their checksum (the file was damaged after it was "
                             "written); save the model again")
    model_class = config.get("class_name")
    if model_class not in MODEL_CLASSES:
        raise KerasFileError(f"{path}: a Keras {model_class!r} model; polykeras reads Sequential and functional models")
    unsupported = sorted(_unsupported(config["config"]["layers"], pk_layers))
    if unsupported:
        raise KerasFileError(f"{path} uses layer(s) polykeras does not support: {', '.join(unsupported)}")
    with h5py.File(io.BytesIO(weights_bytes), "r") as h5:
        reader = _Reader(path, h5, pk_layers)
        model = reader.model(config, "")
        custom = {}  # a custom layer's arrays, by id() of the variable or layer they belong to
        for layer, group in reader.customs:  # built (and so laid out) by now
            custom.update(keras_custom.read_weights(h5, layer, group, path))
        optimizer_vars = h5.get("optimizer/vars")
        optimizer_vars = [] if optimizer_vars is None else [np.asarray(optimizer_vars[str(i)])
                                                            for i in range(len(optimizer_vars))]
    flat, traced = [], {}  # traced: a traced layer's arrays, handed to its variables in (Keras's) order
    for node, layer_spec in zip(model._graph.nodes, model._spec().layers):
        if layer_spec.weights_of is not None:  # a later call of a shared layer: its weights are the owner's
            continue
        if id(node.layer) in custom:
            flat += custom.pop(id(node.layer))
            continue
        if layer_spec.kind == "Variable":
            owner = layer_spec.name.rsplit("/", 1)[0]  # a variable is named "<its layer>/<its name>"
            queue = traced.setdefault(owner, list(reader.arrays.get(owner, [])))
            if not queue:
                raise KerasFileError(f"{path}: layer {owner!r} has fewer weight arrays in the file than polykeras "
                                     "expects")
            flat.append(queue.pop(0))
            continue
        values = reader.arrays.get(layer_spec.name, [])
        if len(values) != len(layer_spec.weights):
            raise KerasFileError(f"{path}: layer {layer_spec.name!r} has {len(values)} weight arrays in the file, "
                                 f"polykeras expects {len(layer_spec.weights)}")
        flat += values
    extra = [owner for owner, queue in traced.items() if queue]
    if extra:
        raise KerasFileError(f"{path}: layer(s) {', '.join(map(repr, extra))} have more weight arrays in the file "
                             "than polykeras expects")
    model.set_weights(flat)
    if all(v.dtype == np.float64 for v in flat):  # float64 training resumes from float64 weights
        values = iter(flat)
        for layer in model._weighted_layers():
            layer._weight_values[:] = [np.array(next(values)) for _ in layer._weight_values]
    if compile and config.get("compile_config"):
        _compile(model, config["compile_config"], path)
        if model.compiled:
            order = keras_training.trainable_order(model, list(reader.arrays))
            keras_training.read_optimizer_variables(model, optimizer_vars, order, path)
    return model


class _Reader:
    """Builds the polykeras models of one file, nested ones included, and
    collects each layer's weight arrays (``arrays``, by polykeras layer name)."""

    def __init__(self, path, h5, pk_layers):
        self.path, self.h5, self.pk_layers = path, h5, pk_layers
        self.arrays: dict[str, list[np.ndarray]] = {}
        self.names: set[str] = set()  # layer names given out so far: unique across nested models
        self.masks: set[str] = set()  # operations that only compute masks (:func:`mask_plumbing`): left out
        self.customs: list[tuple] = []  # (custom layer, its weights group): read once the model is built

    def model(self, entry: dict, prefix: str):
        """The model of a config entry; its weights are under ``prefix + "layers/..."``."""
        config = entry["config"]
        entries = config["layers"]
        groups = iter(weight_paths([e["class_name"] for e in entries
                                    if not is_operation(e) and not (entry["class_name"] == "Sequential"
                                                                     and e["class_name"] == "InputLayer")]))
        built = {}
        self.masks |= mask_plumbing(entries)
        for e in entries:
            if is_operation(e) and entry_name(e) in self.masks:
                continue
            if is_operation(e):
                built[e["name"]] = self._operation(e)
            elif entry["class_name"] == "Sequential" and e["class_name"] == "InputLayer":
                built[e["config"]["name"]] = self._layer(e, None)
            else:
                built[e.get("name") or e["config"]["name"]] = self._layer(e, prefix + next(groups))
        if entry["class_name"] == "Sequential":
            from polykeras.models import Sequential

            return Sequential(list(built.values()), name=config.get("name"))
        return self._functional(config, built)

    def _layer(self, entry: dict, group: str | None):
        """A layer (or a nested model) and its weights, read from ``group``."""
        class_name = entry["class_name"]
        if class_name in MODEL_CLASSES:
            return self.model(entry, group + "/")
        _, config = _layer_config(entry)
        name = str(config.get("name") or entry.get("name") or to_snake_case(class_name))
        if class_name != "InputLayer":
            config["name"] = self._unique(name)
        if is_custom_entry(entry):  # a user's class, found by its registered name
            layer = keras_custom.make_layer(entry, config, self.path)
            self.customs.append((layer, group))
            self.arrays[layer.name] = []  # (its place in Keras's layer order; its arrays: read_weights)
            return layer
        layer = _make_layer(self.pk_layers, class_name, config, self.path)
        if group is not None and class_name != "InputLayer":
            self.arrays[layer.name] = read_vars(self.h5, group, class_name, self.path, entry["config"])
        return layer

    def _operation(self, entry: dict):
        """A Keras operation: made into a node when it is called (:func:`.keras_ops.call`)."""
        return _Operation(entry, self._unique(entry["name"]))

    def _unique(self, name: str) -> str:
        """``name``, or ``name_<k>`` if a layer of another (nested) model took it already."""
        out, k = name, 1
        while out in self.names:
            out, k = f"{name}_{k}", k + 1
        self.names.add(out)
        return out

    def _functional(self, config: dict, built: dict):
        """Replay the layer calls (Keras's ``functional_from_config``): each
        layer's calls in order, as soon as the tensors they read exist."""
        from polykeras.layers import InputLayer
        from polykeras.models import Model, Sequential

        tensors: dict[tuple[str, int], list] = {}  # (layer, call) -> its output tensors
        calls = {name: 0 for name in built}
        pending = {}
        for e in config["layers"]:
            name = e.get("name") or e["config"]["name"]
            if name not in built:  # mask plumbing
                continue
            if isinstance(built[name], InputLayer):
                tensors[(name, 0)] = [built[name].output]
            else:
                pending[name] = list(e.get("inbound_nodes") or [])
        while any(pending.values()):
            progress = False
            for name, nodes in pending.items():
                while nodes:
                    operation = isinstance(built[name], _Operation)
                    refs = keras_ops.tensor_refs(nodes[0]) if operation else self._node_refs(name, nodes[0],
                                                                                              built[name])
                    if not all((r[0], r[1]) in tensors for r in refs):
                        break
                    if operation:
                        node_name = built[name].name if calls[name] == 0 else self._unique(built[name].name)
                        tensors[(name, calls[name])] = [keras_ops.call(built[name].entry, nodes[0], tensors, self.path,
                                                                      node_name)]
                    elif _traced(built[name]):
                        tensors[(name, calls[name])] = [self._call_traced(built[name], nodes[0], tensors)]
                    else:
                        args = [tensors[(r[0], r[1])][r[2]] for r in refs]
                        tensors[(name, calls[name])] = self._call(name, built[name], args)
                    calls[name] += 1
                    nodes.pop(0)
                    progress = True
            if not progress:
                stuck = ", ".join(f"{n} <- {[r[0] for r in self._node_refs(n, nodes[0], built[n])]}"
                                  for n, nodes in pending.items() if nodes)
                raise KerasFileError(f"{self.path}: cannot rebuild model {config.get('name')!r}: these layer calls "
                                     f"read layers that are unknown or form a cycle: {stuck}")

        def tensor(triple):
            name, node, index = str(triple[0]), int(triple[1]), int(triple[2]) if len(triple) > 2 else 0
            if isinstance(built.get(name), Model) and not isinstance(built[name], Sequential):
                node -= 1  # Keras counts a nested functional model's own node first
            if (name, node) not in tensors:
                raise KerasFileError(f"{self.path}: model {config.get('name')!r} names output/input "
                                     f"{list(triple)}, which no layer call made")
            return tensors[(name, node)][index]

        inputs = [tensor(t) for t in _triples(config["input_layers"])]
        outputs = [tensor(t) for t in _triples(config["output_layers"])]
        names = sorted(config["output_layers"]) if isinstance(config["output_layers"], dict) else None
        return Model(inputs, dict(zip(names, outputs)) if names else outputs, name=config.get("name"))

    def _node_refs(self, name: str, node, layer=None) -> list[tuple[str, int, int]]:
        """The ``(layer, call, tensor index)`` of each tensor one call reads, in order."""
        if isinstance(node, list):  # Keras 2's form: [[layer, node, tensor, kwargs], ...]
            return [(str(r[0]), int(r[1]), int(r[2])) for r in node]
        kwargs = self._call_kwargs(name, node)
        if set(kwargs) == {"initial_state"} and hasattr(layer, "n_states"):  # a recurrent layer's states: read
            pass  # after its sequence, as the node's further inbound
        elif kwargs and not _traced(layer):
            raise KerasFileError(f"{self.path}: layer {name!r} is called with {', '.join(sorted(kwargs))}=...; "
                                 "polykeras reads layer calls on tensors alone")
        refs = []
        leaves = flatten(node.get("args", [])) + [leaf for v in kwargs.values() for leaf in flatten(v)
                                                     if isinstance(leaf, dict)]
        for leaf in leaves:
            if not (isinstance(leaf, dict) and leaf.get("class_name") == "__keras_tensor__"):
                raise KerasFileError(f"{self.path}: layer {name!r} is called with {leaf!r}, not a tensor; polykeras "
                                     "reads layer calls on tensors alone")
            history = leaf["config"]["keras_history"]
            refs.append((str(history[0]), int(history[1]), int(history[2])))
        return refs

    def _call_kwargs(self, name: str, node: dict) -> dict:
        """A call's keyword arguments that matter. Keras records the training flag of a symbolic call
        (``training=False``), which a model's own training mode overrides when it runs, and the masks
        it passes on (:func:`mask_plumbing`), which polykeras's layers pass on themselves."""
        kwargs = {k: v for k, v in (node.get("kwargs") or {}).items() if v is not None and k != "training"}
        mask = kwargs.pop("mask", None)
        if mask is not None and not all(isinstance(leaf, dict) and leaf.get("class_name") == "__keras_tensor__"
                                        and str(leaf["config"]["keras_history"][0]) in self.masks
                                        for leaf in flatten(mask)):
            raise KerasFileError(f"{self.path}: layer {name!r} is called with an explicit mask=...; polykeras "
                                 "reads the masks its layers make (Embedding(mask_zero=True), Masking) only")
        return kwargs

    def _call_traced(self, layer, node: dict, tensors: dict):
        """Call a layer written with polykeras.ops (MultiHeadAttention, Attention, ...) as Keras
        called it: its arguments' structure, tensors in place, and its call options."""
        def value(v):
            if isinstance(v, dict) and v.get("class_name") == "__keras_tensor__":
                history = v["config"]["keras_history"]
                return tensors[(str(history[0]), int(history[1]))][int(history[2])]
            return [value(x) for x in v] if isinstance(v, list) else v

        kwargs = {k: value(v) for k, v in self._call_kwargs(type(layer).__name__, node).items()}
        return layer(*[value(a) for a in node.get("args", [])], **kwargs)

    def _call(self, name: str, layer, args: list) -> list:
        """Call a layer, a merge layer (on the list) or a nested model; its outputs as a list."""
        from polykeras.models import Model
        from polykeras.models.graph import call_layer

        if isinstance(layer, Model):
            out = layer(args if len(args) > 1 else args[0])
            return list(out) if isinstance(out, (list, tuple)) else [out]
        if getattr(layer, "multiple_inputs", False):
            return [layer(args)]
        if len(args) != 1 and not hasattr(layer, "n_states"):
            raise KerasFileError(f"{self.path}: layer {name!r} ({type(layer).__name__}) is called on {len(args)} "
                                 "tensors; it takes one")
        out = call_layer(layer, args)  # a recurrent layer: its initial states follow the sequence
        return out if isinstance(out, list) else [out]  # return_state: [output, h(, c)]


class _Operation:
    """A Keras operation entry of a functional config, and the name its node takes."""

    def __init__(self, entry: dict, name: str):
        self.entry, self.name = entry, name


def _traced(layer) -> bool:
    """A layer written with polykeras.ops (traced when called, not a spec kind): a built-in one
    (MultiHeadAttention, ...), a ``Lambda`` or a user's custom layer."""
    from polykeras.layers import Layer

    return isinstance(layer, Layer) and type(layer)._custom_call()


def _has_layer(pk_layers, class_name: str) -> bool:
    try:
        pk_layers.layer_class(class_name)
        return True
    except (ValueError, KeyError, AttributeError):
        return False


def _make_layer(pk_layers, class_name: str, config: dict, path):
    config = dict(config)
    while True:
        try:
            return pk_layers.deserialize({"class_name": class_name, "config": config})
        except TypeError as exc:
            match = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
            if not match or match.group(1) not in config:
                raise
            key = match.group(1)
            if config[key] not in (None, False):
                raise KerasFileError(f"{path}: layer {config.get('name')!r} ({class_name}) sets {key}="
                                     f"{config[key]!r}, which polykeras does not support") from None
            del config[key]
        except NotImplementedError as exc:  # an option or a wrapped kind polykeras lacks: not damage
            raise KerasFileError(f"{path}: layer {config.get('name')!r} ({class_name}) is not supported by "
                                 f"polykeras: {exc}") from None
        except UnknownObjectError:  # a function of the user's, not given
            raise
        except ValueError as exc:
            if class_name != "Lambda":
                raise
            raise KerasFileError(f"{path}: layer {config.get('name')!r}: {exc}") from None  # a lambda, safe mode


def _compile(model, compile_config: dict, path) -> None:
    import warnings

    try:
        keras_training.compile_from_keras(model, _plain(compile_config))
    except UnknownObjectError:  # the user's function, not given: as Keras, say how to give it
        raise
    except (ValueError, TypeError, NotImplementedError, KeyError, AttributeError, IndexError) as exc:
        warnings.warn(f"{path}: the model's compile settings are not supported by polykeras ({exc}); the model "
                      "is loaded uncompiled", stacklevel=3)
