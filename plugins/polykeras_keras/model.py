"""A polykeras spec as a real ``keras.Model`` (imports Keras: runs in the
process that owns one Keras backend).

Every layer is Keras's own class built from the spec's config (the spec uses
Keras's ``get_config()`` names), so the math is Keras's. The spec's graph
becomes a Keras functional model: several inputs and outputs, merge layers
(``Add``, ``Concatenate``, ...) called on lists, and a shared layer's later
calls calling the same Keras layer object again. Two graphs share the layers,
and so the weights:

* the *native* graph ``inputs -> outputs``: Keras's own dropout, drawn with
  Keras's RNG -- the fast path, and what ``predict`` runs;
* the *parity* graph ``[*inputs, mask_1, ..., mask_k] -> output``: every
  dropout (``Dropout``, and the input/recurrent dropout of ``SimpleRNN``/
  ``LSTM``/``GRU``) multiplies by a mask fed as an extra model input, drawn
  on the host by :func:`polykeras.random.dropout_mask` exactly as the NumPy
  reference draws it, keyed by the node's index (each call of a shared
  layer has its own). Only built when the model has dropout.

Recurrent layers in the parity graph hand the fed masks to Keras's cell by
pre-setting the cell's cached masks (``DropoutRNNCell._dropout_mask``); the
cell then applies them where Keras applies its own. Keras's cells with
``recurrent_dropout`` (``implementation=1``) take one mask per gate; the
reference uses one mask for all gates, so the same mask is given to each.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import keras
import numpy as np

from polykeras import random as _random
from polykeras.layer_rules import rules_for
from polykeras.spec import LayerSpec, ModelSpec

from .operation import KerasAddLoss, KerasOperation, KerasVariable
from .recurrent import CONV_LSTM, call_recurrent, conv_lstm_masks, pack_bidirectional

#: Spec weight name (or (kind, weight name)) -> the Keras constructor argument of its regularizer.
REGULARIZER_ARGS = {"kernel": "kernel_regularizer", "bias": "bias_regularizer",
                    "recurrent_kernel": "recurrent_regularizer", "embeddings": "embeddings_regularizer",
                    "gamma": "gamma_regularizer", "beta": "beta_regularizer",
                    "depthwise_kernel": "depthwise_regularizer", "pointwise_kernel": "pointwise_regularizer",
                    ("DepthwiseConv2D", "kernel"): "depthwise_regularizer",
                    ("DepthwiseConv1D", "kernel"): "depthwise_regularizer"}
RECURRENT = ("SimpleRNN", "LSTM", "GRU") + CONV_LSTM
#: Keras's merge layers: called on a list of tensors.
MERGE = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot")


def input_dtype(spec_dtype: str, dtype: str) -> str:
    """A model input's Keras dtype: integer ids stay integer, floats take the program's dtype."""
    return spec_dtype if np.dtype(spec_dtype).kind in "iu" else dtype


class HostMaskDropout(keras.layers.Dropout):
    """Keras's ``Dropout``; given ``keep`` (a fed mask, already scaled by
    ``1/(1-rate)``) it multiplies by it in training instead of drawing one."""

    def call(self, inputs, keep=None, training=False):
        if keep is None:
            return super().call(inputs, training=training)
        return inputs * keep if training else inputs


def _host_mask_rnn(base):
    class HostMaskRNN(base):
        __doc__ = f"Keras's ``{base.__name__}``, optionally with fed dropout masks (see the module docstring)."

        def call(self, sequences, keep=None, recurrent_keep=None, initial_state=None, mask=None, training=False):
            if training and (keep is not None or recurrent_keep is not None):
                count = getattr(self.cell, "dropout_mask_count", None)
                if keep is not None:
                    self.cell._dropout_mask = keep if count is None else [keep] * count
                if recurrent_keep is not None:
                    self.cell._recurrent_dropout_mask = recurrent_keep if count is None else [recurrent_keep] * count
            try:
                return super().call(sequences, initial_state=initial_state, mask=mask, training=training)
            finally:
                self.cell.reset_dropout_mask()
                self.cell.reset_recurrent_dropout_mask()

    HostMaskRNN.__name__ = HostMaskRNN.__qualname__ = f"HostMask{base.__name__}"
    return HostMaskRNN


def _host_mask_dropout(base):
    class HostMask(base):
        __doc__ = f"Keras's ``{base.__name__}``; given ``keep`` (a fed mask) it multiplies by it in training."

        def call(self, inputs, keep=None, training=False):
            if keep is None:
                return super().call(inputs, training=training)
            return inputs * keep if training else inputs

    HostMask.__name__ = HostMask.__qualname__ = f"HostMask{base.__name__}"
    return HostMask


class HostMaskBidirectional(keras.layers.Bidirectional):
    """Keras's ``Bidirectional``, optionally with fed dropout masks for each direction's cell
    (``keep``/``recurrent_keep`` forward, ``backward_keep``/``backward_recurrent_keep`` backward)."""

    def call(self, sequences, keep=None, recurrent_keep=None, backward_keep=None, backward_recurrent_keep=None,
             initial_state=None, mask=None, training=False):
        cells = [(self.forward_layer.cell, keep, recurrent_keep),
                 (self.backward_layer.cell, backward_keep, backward_recurrent_keep)]
        if training:
            for cell, fed, recurrent_fed in cells:
                count = getattr(cell, "dropout_mask_count", None)
                if fed is not None:
                    cell._dropout_mask = fed if count is None else [fed] * count
                if recurrent_fed is not None:
                    cell._recurrent_dropout_mask = recurrent_fed if count is None else [recurrent_fed] * count
        try:
            return super().call(sequences, initial_state=initial_state, mask=mask, training=training)
        finally:
            for cell, _, _ in cells:
                cell.reset_dropout_mask()
                cell.reset_recurrent_dropout_mask()


def _bidirectional(layer: LayerSpec, dtype: str):
    """Keras's ``Bidirectional`` of the spec's two wrapped layers, each given its weights' regularizers
    (the spec's weights are named ``<wrapped layer>/<kind>_cell/<weight>``, as Keras's paths below the wrapper).
    ``merge_mode=None`` is built as ``"concat"``: the spec's node outputs the concatenation, split after it."""
    wrapped = []
    for key in ("layer", "backward_layer"):
        kind, config = layer.config[key]["class_name"], dict(layer.config[key]["config"])
        for w in layer.weights:
            if w.name.startswith(f"{config['name']}/") and _regularizer(w):
                config[REGULARIZER_ARGS[w.name.rsplit("/", 1)[-1]]] = _regularizer(w)
        wrapped.append(getattr(keras.layers, kind)(dtype=dtype, **config))
    return HostMaskBidirectional(wrapped[0], backward_layer=wrapped[1], merge_mode=layer.config.get("merge_mode")
                                 or "concat", name=layer.name, dtype=dtype)


class HostMaskTimeDistributed(keras.layers.TimeDistributed):
    """Keras's ``TimeDistributed``; given ``keep`` (a fed mask of the wrapped dropout kind, one per time
    step: :mod:`polykeras.layer_rules.time_distributed`) it multiplies by it in training."""

    def call(self, inputs, keep=None, training=None, mask=None):
        if keep is None:
            return super().call(inputs, training=training, mask=mask)
        return inputs * keep if training else inputs


def _time_distributed(layer: LayerSpec, dtype: str):
    """Keras's ``TimeDistributed`` of the spec's wrapped layer, given its weights' regularizers (the spec's
    weights are named ``<wrapped layer>/<weight>``, as Keras's paths below the wrapper)."""
    kind, config = layer.config["layer"]["class_name"], dict(layer.config["layer"]["config"])
    for w in layer.weights:
        if w.regularizer and w.trainable:
            name = w.name.rsplit("/", 1)[-1]
            arg = REGULARIZER_ARGS.get((kind, name)) or REGULARIZER_ARGS.get(name)
            config[arg] = _regularizer(w)
    wrapped = getattr(keras.layers, kind)(dtype=dtype, **config)
    out = HostMaskTimeDistributed(wrapped, name=layer.name, dtype=dtype)
    if layer.weights and not any(w.trainable for w in layer.weights):
        out.trainable = False
    return out


def _host_noise(base, combine):
    class HostNoise(base):
        __doc__ = (f"Keras's ``{base.__name__}``; given ``keep`` (fed host-drawn Gaussian noise) it combines the "
                   "input with it in training instead of drawing its own.")

        def call(self, inputs, keep=None, training=False):
            if keep is None:
                return super().call(inputs, training=training)
            return combine(inputs, keep) if training else inputs

    HostNoise.__name__ = HostNoise.__qualname__ = f"HostNoise{base.__name__}"
    return HostNoise


class FreshNormalization(keras.layers.Normalization):
    """Keras's ``Normalization``, reading its ``mean``/``variance`` variables at every call: Keras keeps
    reshaped copies (``finalize_state``) that an ``assign`` (``set_weights``) does not refresh on the jax
    backend, nor a stateless call's values."""

    def call(self, inputs):
        self.finalize_state()
        return super().call(inputs)


#: Keras's Gaussian noise layers: the fed noise (:class:`polykeras.random.Normal`'s) is added / multiplied.
GAUSSIAN = {"GaussianNoise": operator.add, "GaussianDropout": operator.mul}
#: Keras's spatial dropouts: Dropout with one mask value per sample and channel.
SPATIAL_DROPOUT = ("SpatialDropout1D", "SpatialDropout2D")
CLASSES = {"Dropout": HostMaskDropout, **{k: _host_mask_rnn(getattr(keras.layers, k)) for k in RECURRENT},
           **{k: _host_mask_dropout(getattr(keras.layers, k)) for k in SPATIAL_DROPOUT},
           **{k: _host_noise(getattr(keras.layers, k), combine) for k, combine in GAUSSIAN.items()},
           "Normalization": FreshNormalization}


@dataclass(frozen=True)
class MaskInput:
    """One fed dropout mask: which layer and stream it is (the reference's
    numbering), its rate, and how its shape follows from the batch size."""

    layer_index: int
    stream: int
    rate: float  # or a polykeras.random.Normal (Gaussian noise)
    shape: tuple  # without the batch dimension
    argument: str  # the keyword the layer takes it as

    def draw(self, step_seed: int, batch: int, dtype) -> np.ndarray:
        return _random.dropout_mask(step_seed, self.layer_index, self.stream, (batch,) + self.shape, self.rate, dtype)


def layer_masks(index: int, layer: LayerSpec) -> list[MaskInput]:
    """The masks the reference draws for ``layer`` in training (same rule as
    the reference kernels: dropout only for ``0 < rate < 1``)."""
    cfg = layer.config
    if layer.kind in CONV_LSTM:  # element-wise, of the step input's and the state's shapes
        return [MaskInput(index, *mask) for mask in conv_lstm_masks(layer)]
    if layer.kind == "Dropout":
        rate = float(cfg.get("rate", 0.0))
        return [] if rate == 0.0 else [MaskInput(index, 0, rate, _noise_shape(layer), "keep")]
    if layer.kind in SPATIAL_DROPOUT:  # one value per channel, shared over the steps / pixels
        rate = float(cfg.get("rate", 0.0))
        shape = (1,) * (len(layer.input_shape) - 2) + (layer.input_shape[-1],)
        return [] if rate == 0.0 else [MaskInput(index, 0, rate, shape, "keep")]
    if layer.kind in GAUSSIAN:  # Gaussian noise of the input's shape, asked for as the reference asks
        rules = rules_for(layer, "the keras backends")
        return [MaskInput(index, 0, rules.noise(), tuple(layer.input_shape[1:]), "keep")] if rules.active(True) else []
    if layer.kind in RECURRENT:  # (the sequence: initial states may follow it)
        return _recurrent_masks(index, cfg, layer.input_shapes[0][-1])
    if layer.kind == "Bidirectional":  # the backward layer's streams follow the forward's (layer_rules.bidirectional)
        return (_recurrent_masks(index, cfg["layer"]["config"], layer.input_shapes[0][-1])
                + _recurrent_masks(index, cfg["backward_layer"]["config"], layer.input_shapes[0][-1], 2, "backward_"))
    if layer.kind == "TimeDistributed":  # a wrapped dropout kind: one mask per time step, batch first
        rules = rules_for(layer, "the keras backends")
        if not rules.dropout or not 0.0 < rules.inner.rate < 1.0:
            return []
        return [MaskInput(index, 0, rules.inner.rate, rules.mask_shape(tuple(layer.input_shape))[1:], "keep")]
    return []


def _recurrent_masks(index: int, cfg: dict, features: int, stream: int = 0, prefix: str = "") -> list[MaskInput]:
    out = []
    dropout, recurrent = float(cfg.get("dropout") or 0.0), float(cfg.get("recurrent_dropout") or 0.0)
    if 0.0 < dropout < 1.0:
        out.append(MaskInput(index, stream, dropout, (features,), f"{prefix}keep"))
    if 0.0 < recurrent < 1.0:
        out.append(MaskInput(index, stream + 1, recurrent, (int(cfg["units"]),), f"{prefix}recurrent_keep"))
    return out


def _noise_shape(layer: LayerSpec) -> tuple:
    shape = tuple(layer.input_shape[1:])
    noise = layer.config.get("noise_shape")
    if noise is None:
        return shape
    noise = tuple(noise)
    if len(noise) != len(shape) + 1:
        raise ValueError(f"Dropout layer {layer.name!r}: noise_shape {noise} does not match the input rank "
                         f"{len(shape) + 1}")
    return tuple(d if n is None else int(n) for n, d in zip(noise[1:], shape))


def make_layer(layer: LayerSpec, dtype: str):
    """The Keras layer for one spec layer, with its regularizers and trainability."""
    if layer.kind == "Operation":
        return KerasOperation(name=layer.name, dtype=dtype, **{k: v for k, v in layer.config.items() if k != "name"})
    if layer.kind == "AddLoss":
        return KerasAddLoss(name=layer.name, dtype=dtype)
    if layer.kind == "Variable":
        (weight,) = layer.weights
        return KerasVariable(weight.name, weight.shape, weight.trainable, _regularizer(weight),
                             name=layer.name.replace("/", "__"), dtype=dtype)
    if layer.kind == "Bidirectional":
        return _bidirectional(layer, dtype)
    if layer.kind == "TimeDistributed":
        return _time_distributed(layer, dtype)
    cls = CLASSES.get(layer.kind) or getattr(keras.layers, layer.kind, None)
    if cls is None:
        raise NotImplementedError(f"Keras has no layer class {layer.kind!r} (layer {layer.name!r})")
    config = dict(layer.config)
    if layer.kind == "Embedding":  # the mask is a node of the spec, handed to the layers that read it, so that
        config["mask_zero"] = False  # Keras applies it exactly where polykeras does (not to the loss, yet)
    for w in layer.weights:
        if w.regularizer and w.trainable:
            arg = REGULARIZER_ARGS.get((layer.kind, w.name)) or REGULARIZER_ARGS.get(w.name)
            if arg is None:
                raise NotImplementedError(f"layer {layer.name!r}: a regularizer on weight {w.name!r} has no Keras "
                                          "equivalent")
            config[arg] = _regularizer(w)
    kl = cls(name=layer.name, dtype=dtype, **config)
    if layer.kind == "BatchNormalization":  # Keras runs a non-trainable one in inference mode (spec training=False)
        kl.trainable = layer.training is not False
    elif layer.weights and not any(w.trainable for w in layer.weights):
        kl.trainable = False
    return kl


class KerasGraphs:
    """The Keras layers of a spec, the native model and (lazily) the parity model.

    The spec's graph becomes a Keras functional model: one ``keras.Input`` per
    spec input, one Keras layer per node that owns its weights (merge layers
    are Keras's own ``Add``, ``Concatenate``... built from the config), and a
    later call of a shared layer calls the *same* Keras layer object again, so
    Keras shares its weights exactly as in a model written in Keras.
    """

    def __init__(self, spec: ModelSpec, dtype: str):
        self.spec, self.dtype = spec, dtype
        self.inputs = [keras.Input(shape=tuple(inp.shape[1:]), dtype=input_dtype(inp.dtype, dtype), name=inp.name)
                       for inp in spec.inputs]
        owners = spec.weight_owners
        #: the Keras layer of each node (a shared layer's later calls: the owner's object)
        self.layers = []
        for index, layer in enumerate(spec.layers):
            self.layers.append(make_layer(layer, dtype) if owners[index] == index else self.layers[owners[index]])
        self.masks = [m for i, layer in enumerate(spec.layers) for m in layer_masks(i, layer)]
        self.native = keras.Model(self._structure(self.inputs), self._structure(self._connect({})), name=spec.name)
        self._parity = None
        self.variables = self._weight_variables()

    @staticmethod
    def _structure(tensors: list):
        """One tensor alone, several as a list (what the model is called with, and returns)."""
        return tensors[0] if len(tensors) == 1 else list(tensors)

    def _connect(self, fed: dict) -> list:
        """Call every node's Keras layer on its inbound tensors (a list for a
        merge layer); ``fed`` gives the parity masks of a node by its index.
        Returns the output tensors."""
        values = {inp.name: tensor for inp, tensor in zip(self.spec.inputs, self.inputs)}
        for index, (layer, kl) in enumerate(zip(self.spec.layers, self.layers)):
            args = [values[name] for name in layer.inbound]
            if not layer.inbound:  # a variable or a constant: anchored on the model's first input, since a
                # Keras functional model drops (and freezes) nodes that no input reaches
                values[layer.name] = kl(self.inputs[0] if layer.kind == "Variable" else [self.inputs[0]])
                continue
            if layer.kind in MERGE or layer.kind in ("Operation", "AddLoss"):
                values[layer.name] = kl(args)
                continue
            if len(args) != 1 and layer.kind not in RECURRENT + ("Bidirectional",):
                raise NotImplementedError(f"layer {layer.name!r} ({layer.kind}) has {len(args)} inputs; the keras "
                                          "backends call only merge layers and recurrent layers on several")
            kwargs = {m.argument: tensor for m, tensor in fed.get(index, [])}
            if layer.mask is not None:  # the spec's mask, passed explicitly (see make_layer)
                kwargs["mask"] = values[layer.mask]
            if layer.kind in RECURRENT:  # initial states; return_state packed (polykeras_keras.recurrent)
                values[layer.name] = call_recurrent(layer, kl, args, kwargs)
                continue
            if len(args) > 1:  # a Bidirectional's initial states: Keras splits the list in half
                kwargs["initial_state"] = list(args[1:])
            values[layer.name] = kl(args[0], **kwargs)
            if layer.kind == "Bidirectional":  # return_state: packed
                values[layer.name] = pack_bidirectional(layer, kl, values[layer.name])
        return [values[name] for name in self.spec.outputs]

    @property
    def parity(self):
        """``[*inputs, *masks] -> output``, sharing the native model's layers."""
        if not self.masks:
            return self.native
        if self._parity is None:
            fed: dict[int, list] = {}
            inputs = list(self.inputs)
            for j, m in enumerate(self.masks):
                tensor = keras.Input(shape=m.shape, dtype=self.dtype, name=f"dropout_mask_{j}")
                inputs.append(tensor)
                fed.setdefault(m.layer_index, []).append((m, tensor))
            self._parity = keras.Model(inputs, self._structure(self._connect(fed)), name=f"{self.spec.name}_parity")
        return self._parity

    def draw_masks(self, step_seed: int, batch: int) -> list[np.ndarray]:
        return [m.draw(step_seed, batch, np.dtype(self.dtype)) for m in self.masks]

    def _weight_variables(self) -> list:
        """The Keras variable of every spec weight, in canonical (spec) order
        (a shared layer's weights once, at its owner node)."""
        out = []
        for layer, kl in zip(self.spec.layers, self.layers):
            if not layer.weights:
                continue
            nested = layer.kind in ("Bidirectional", "TimeDistributed")  # named by their path below the wrapper
            by_name = {(v.path.split("/", 1) if nested else v.path.rsplit("/", 1))[-1]: v for v in kl.weights}
            for w in layer.weights:
                v = by_name.get(w.name)
                if v is None or tuple(v.shape) != tuple(w.shape):
                    raise ValueError(f"layer {layer.name!r}: Keras's {type(kl).__name__} has weights "
                                     f"{[(k, tuple(x.shape)) for k, x in by_name.items()]}, the spec expects "
                                     f"{w.name!r} of shape {tuple(w.shape)}")
                out.append(v)
        return out

    def regularized(self) -> list[tuple[object, float, float]]:
        """``(variable, l1, l2)`` of every regularised trainable weight."""
        return [(v, float(w.regularizer.get("l1", 0.0)), float(w.regularizer.get("l2", 0.0)))
                for (_, w), v in zip(self.spec.weight_specs, self.variables) if w.regularizer and w.trainable]


def _regularizer(weight):
    """Keras's regularizer for a trainable weight's ``{"l1": a, "l2": b}`` penalty (``None`` without one)."""
    if not (weight.regularizer and weight.trainable):
        return None
    penalty = weight.regularizer
    return keras.regularizers.L1L2(l1=float(penalty.get("l1", 0.0)), l2=float(penalty.get("l2", 0.0)))
