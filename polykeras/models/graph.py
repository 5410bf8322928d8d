"""The graph of a functional model: which layer calls lead from its inputs to
its outputs, in which order, and how they become a :class:`~polykeras.spec.ModelSpec`.

Every call of a layer on symbolic tensors is a node (the
:class:`~polykeras.layers.base.SymbolicTensor` it returns). A :class:`Graph`
collects the nodes that lead from the model's inputs to its outputs and orders
them as Keras orders a functional model's layers: by decreasing depth (the
longest path to an output), ties in depth-first order. That order is
topological, and it fixes the order of the weights: each layer's weights belong
to its first node; a shared layer's later nodes name that node in
``weights_of``.
"""

from __future__ import annotations

import numpy as np

from polykeras import backend as _keras_backend
from polykeras.layers.added_loss import check_outputs
from polykeras.layers.base import Layer, SymbolicTensor, format_shape
from polykeras.layers.input_layer import InputLayer
from polykeras.layers.symbolic import COLLECTING
from polykeras.spec import InputSpec, ModelSpec


class Graph:
    """The nodes from ``inputs`` to ``outputs``, checked and ordered."""

    def __init__(self, inputs: list[SymbolicTensor], outputs: list[SymbolicTensor], model_name: str):
        self.inputs, self.outputs, self.model_name = list(inputs), list(outputs), model_name
        check_outputs(f"model {model_name!r}", self.outputs)
        for t in self.inputs:
            if not isinstance(t.layer, InputLayer):
                raise ValueError(f"model {model_name!r}: its inputs must be tensors from polykeras.Input(...); "
                                 f"got the output of layer {t.layer.name!r} ({type(t.layer).__name__})")
        names = [t.layer.name for t in self.inputs]
        if len(set(names)) != len(names):
            raise ValueError(f"model {model_name!r}: an input is listed twice ({', '.join(names)})")
        self.nodes = self._ordered_nodes()
        reached = {id(p) for n in self.nodes for p in n.sources} | {id(t) for t in self.outputs}
        unused = [t.layer.name for t in self.inputs if id(t) not in reached]
        if unused:
            raise ValueError(f"model {model_name!r}: input(s) {', '.join(map(repr, unused))} are not connected to "
                             "the outputs; remove them from the inputs or use them")
        # node names: a layer's first call is named after the layer, later calls get "@k"
        self.names: dict[int, str] = {id(t): t.layer.name for t in self.inputs}
        self.call_index: dict[int, int] = {}
        calls: dict[int, int] = {}
        for node in self.nodes:
            k = calls.get(id(node.layer), 0)
            calls[id(node.layer)] = k + 1
            self.call_index[id(node)] = k
            self.names[id(node)] = node.layer.name if k == 0 else f"{node.layer.name}@{k}"
        self.layers: list[Layer] = list({id(n.layer): n.layer for n in self.nodes}.values())
        taken: dict[str, Layer] = {}
        for layer in [t.layer for t in self.inputs] + self.layers:
            if taken.setdefault(layer.name, layer) is not layer:
                raise ValueError(f"model {model_name!r}: two different layers are named {layer.name!r}; layer "
                                 "names must be unique within a model")

    def _ordered_nodes(self) -> list[SymbolicTensor]:
        """Non-input nodes by decreasing depth, ties in depth-first (post-)order."""
        order: list[SymbolicTensor] = []
        index: dict[int, int] = {}
        model_inputs = {id(t) for t in self.inputs}
        for out in self.outputs:
            stack = [(out, False)]
            while stack:  # iterative depth-first search: deep models do not hit Python's recursion limit
                t, expanded = stack.pop()
                if id(t) in index:
                    continue
                if expanded:
                    index[id(t)] = len(order)
                    order.append(t)
                    continue
                if not t.inputs and id(t) not in model_inputs and t.batched:  # (variables and constants are
                    # sources without a batch axis)
                    raise ValueError(f"model {self.model_name!r}: the outputs depend on input {t.layer.name!r}, "
                                     "which is not among the model's inputs; add it to Model(inputs=...)")
                stack.append((t, True))
                stack.extend((p, False) for p in reversed(t.sources) if id(p) not in index)
        depth = {id(t): 0 for t in order}
        for t in reversed(order):
            for p in t.sources:
                depth[id(p)] = max(depth[id(p)], depth[id(t)] + 1)
        nodes = [t for t in order if id(t) not in model_inputs]
        return _variables_in_keras_order(sorted(nodes, key=lambda t: (-depth[id(t)], index[id(t)])))

    @property
    def public_layers(self) -> list[Layer]:
        """The layers a user sees (``model.layers``, after the inputs): a custom layer in place of
        the nodes its traced ``call()`` made, each layer once, in node order."""
        return list({id(layer): layer for layer in (n.owner or _layer_of(n) for n in self.nodes)}.values())

    @property
    def config_layers(self) -> list[Layer]:
        """The layers of the model's config: without the nodes a layer's ``compute_mask`` recorded."""
        masks = {id(n.layer) for n in self.nodes if n.mask_of is not None or n.part_of is not None}
        return [layer for layer in self.layers if id(layer) not in masks]

    @property
    def mask_node_names(self) -> set[str]:
        return {self.names[id(n)] for n in self.nodes if n.mask_of is not None}

    @property
    def part_node_names(self) -> set[str]:
        """The ``getitem`` nodes that take the parts of a call of several outputs (``return_state``):
        a config names them ``[layer, call, tensor index]``, as Keras does."""
        return {self.names[id(n)] for n in self.nodes if n.part_of is not None}

    def owns_weights(self, node: SymbolicTensor) -> bool:
        return self.call_index[id(node)] == 0

    def spec(self) -> ModelSpec:
        """The graph as plain data."""
        inputs = tuple(InputSpec(t.layer.name, t.shape, self._input_dtype(t)) for t in self.inputs)
        layers = []
        for node in self.nodes:
            owner = None if self.owns_weights(node) else node.layer.name
            mask = None if node.mask_input is None else self.names[id(node.mask_input)]
            layers.append(node.layer.to_spec(self.names[id(node)], tuple(self.names[id(p)] for p in node.inputs),
                                             tuple(p.shape for p in node.inputs), node.shape, weights_of=owner,
                                             mask=mask))
        return ModelSpec(self.model_name, inputs, tuple(layers), tuple(self.names[id(t)] for t in self.outputs))

    def _input_dtype(self, tensor: SymbolicTensor) -> str:
        """Integer for an input read by an Embedding (ids), else the float type."""
        readers = [n.layer for n in self.nodes if any(p is tensor for p in n.inputs)]
        dtype = tensor.dtype
        if any(layer.kind == "Embedding" for layer in readers):
            return dtype if np.dtype(dtype).kind in "iu" else "int32"
        return _keras_backend.floatx() if np.dtype(dtype).kind not in "iu" else dtype

    # -- Keras-style config ----------------------------------------------------------------
    def inbound_nodes(self, layer: Layer) -> list[list[list]]:
        """``[[[layer name, call index], ...] per call]`` of ``layer`` (Keras's inbound_nodes, simplified).
        A mask read as a value (an attention layer's ops read their inputs' masks) is named as the mask
        of the call that made it, ``[layer name, call index, "mask"]``: the config leaves out the nodes
        a ``compute_mask`` records, and rebuilding the graph records them again."""
        return [[self._config_ref(p) for p in n.inputs] for n in self.nodes if n.layer is layer]

    def output_masks(self, layer: Layer) -> list | None:
        """Per call of ``layer``, the config reference of the mask its output carries where a traced
        layer's ``compute_mask`` gave it (``Masking``'s, an attention layer's), else ``None``: replaying
        the traced layer's nodes one by one would not give those masks again."""
        refs = [self._config_ref(n.mask) if n.owner is not None and n.mask is not None else None
                for n in self.nodes if n.layer is layer]
        return refs if any(r is not None for r in refs) else None

    def _config_ref(self, p: SymbolicTensor) -> list:
        if p.part_of is not None:
            node, index = p.part_of
            return [node.layer.name, self.call_index.get(id(node), 0), index]
        if p.mask_of is not None and p.carrier is not None and id(p.carrier) in self.call_index:
            return [p.carrier.layer.name, self.call_index[id(p.carrier)], "mask"]
        return [p.layer.name, self.call_index.get(id(p), 0)]

    def public_inbound(self, layer: Layer) -> list[list[list]]:
        """:meth:`inbound_nodes` for what ``model.layers`` lists, as ``[layer, call, tensor index]``: a
        custom layer's inputs are the tensors from outside it that its traced nodes read (one entry for
        all its calls)."""
        def ref(p: SymbolicTensor) -> list:
            if p.owner is not None:
                return [p.owner.name, 0, 0]
            if p.part_of is not None:  # one of several outputs (return_state)
                return self._config_ref(p)
            return [p.layer.name, self.call_index.get(id(p), 0), 0]

        if any(n.layer is layer for n in self.nodes):
            return [[ref(p) for p in n.inputs] for n in self.nodes if n.layer is layer]
        refs: list[list] = []
        for node in self.nodes:
            if node.owner is layer:
                for p in node.inputs:
                    if (p.owner or p.layer) is not layer and ref(p) not in refs:
                        refs.append(ref(p))
        return [refs] if refs else []

    def tensor_ref(self, tensor: SymbolicTensor) -> list:
        if tensor.part_of is not None:
            return self._config_ref(tensor)
        return [tensor.layer.name, self.call_index.get(id(tensor), 0)]


def _layer_of(node: SymbolicTensor):
    """The layer a user sees for a node: a call's own, or for a part of a call of several outputs, that call's."""
    return node.part_of[0].layer if node.part_of is not None else node.layer


def call_layer(layer: Layer, args: list):
    """Call ``layer`` on a node's inbound tensors: a list for a merge layer; a recurrent layer's
    sequence and, after it, its initial states; else the one tensor."""
    if layer.multiple_inputs:
        return layer(args)
    if len(args) > 1 and hasattr(layer, "n_states"):
        return layer(args[0], initial_state=list(args[1:]))
    return layer(args[0])


def replay(layers: dict[str, Layer], entries: list[tuple[str, list]], tensors: dict[tuple[str, int], SymbolicTensor],
           model_name: str, output_masks: dict[str, list] | None = None) -> None:
    """Call each layer on its recorded inbound nodes, in whatever order their
    inputs become available (Keras's ``from_config``): ``entries`` holds
    ``(layer name, inbound_nodes)``; ``tensors`` maps ``(layer name, call
    index)`` to tensors and is filled in; ``output_masks`` gives the masks some
    calls' outputs carry (:meth:`Graph.output_masks`). Raises on a cycle or an
    unknown name."""
    COLLECTING.append((None, []))  # a traced add_loss term may reduce the batch axis (its ops, replayed)
    try:
        _replay(layers, entries, tensors, model_name, output_masks)
    finally:
        COLLECTING.pop()


def _replay(layers, entries, tensors, model_name, output_masks) -> None:
    masks = output_masks or {}
    pending = [(name, k, refs, (masks.get(name) or [None] * (k + 1))[k])
               for name, nodes in entries for k, refs in enumerate(nodes)]

    def key(r):
        return str(r[0]), int(r[1]) if len(r) > 1 else 0

    def resolve(r):
        value = tensors[key(r)]
        if len(r) > 2 and r[2] == "mask":
            value = value[0] if isinstance(value, list) else value
            return value.mask
        if isinstance(value, list):  # a call of several outputs (return_state, merge_mode=None): [layer, call, index]
            # without an index: the call's own node, which the split ops of a file written before
            # Bidirectional(merge_mode=None)'s halves were parts of it read
            return value[int(r[2])] if len(r) > 2 else value[0].part_of[0]
        return value

    while pending:
        progress, waiting = False, []
        for name, k, refs, mask in pending:
            if mask is not None and key(mask) == (name, k):  # the call's own mask (an Embedding's inside a
                mask = None  # custom layer): the layer makes it again
            needed = [key(r) for r in refs + ([mask] if mask is not None else [])]
            if all(n in tensors for n in needed) and (k == 0 or (name, k - 1) in tensors):
                layer = layers[name]
                args = [resolve(r) for r in refs]
                if not refs:  # a constant a custom layer's call() used (ops.arange(...)): a node without inputs
                    out = layer._call_symbolically([], several=True)
                else:
                    out = call_layer(layer, args)
                if mask is not None:
                    out.mask = resolve(mask)
                tensors[(name, k)] = out
                progress = True
            else:
                waiting.append((name, k, refs, mask))
        if not progress:
            stuck = ", ".join(f"{n}#{k} <- {[r[0] for r in refs]}" for n, k, refs, _ in waiting)
            raise ValueError(f"model {model_name!r}: cannot rebuild the graph, these layer calls read layers that are "
                             f"unknown or form a cycle: {stuck}")
        pending = waiting


def check_call_inputs(model_name: str, expected: list[SymbolicTensor], given: list[SymbolicTensor]) -> None:
    """A model called as a layer: the tensors must match its inputs in number and shape."""
    if len(given) != len(expected):
        raise ValueError(f"model {model_name!r} takes {len(expected)} input(s), got {len(given)}")
    for e, g in zip(expected, given):
        if len(e.shape) != len(g.shape) or any(a is not None and b is not None and a != b
                                               for a, b in zip(e.shape[1:], g.shape[1:])):
            raise ValueError(f"model {model_name!r} called on a tensor of shape {format_shape(g.shape)}; its input "
                             f"{e.layer.name!r} has shape {format_shape(e.shape)}")


def _variables_in_keras_order(nodes: list[SymbolicTensor]) -> list[SymbolicTensor]:
    """The variables of each custom layer together, in Keras's order (trainable first, each kind in
    creation order), where the first of them was: the order of first use would differ from Keras's
    (a self-attention reads its key kernel before its query bias). Variables have no inputs, so
    moving one earlier keeps the order topological."""
    from polykeras.layers.variable import Variable

    groups: dict[str, list[SymbolicTensor]] = {}
    for node in nodes:
        if isinstance(node.layer, Variable):
            groups.setdefault(node.layer.owner_name, []).append(node)
    if not groups:
        return nodes
    first = {id(group[0]): sorted(group, key=lambda n: (not n.layer.created_trainable, n.layer.created))
             for group in groups.values()}
    moved = {id(n) for group in groups.values() for n in group}
    out: list[SymbolicTensor] = []
    for node in nodes:
        if id(node) in first:
            out.extend(first[id(node)])
        elif id(node) not in moved:
            out.append(node)
    return out
